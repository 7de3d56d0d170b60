//! Prometheus metrics of the operator (prometheus-client), served as text on `/metrics`.
//! Every label set is small and fixed: kind, error category, store operation. Object names
//! never become labels (unbounded cardinality).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Labels naming a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `Customer`, `Workspace`, `Membership` or `LockboxPolicy`.
    pub kind: String,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The kind reconciled.
    pub kind: String,
    /// The error's category (as in the Event reason).
    pub category: String,
}

/// Labels of a store call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `load` or `apply`.
    pub operation: String,
}

/// Labels of an Event emitted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The Event reason (`Invited`, `Granted`, `Revoked`, `DriftCorrected`, ...).
    pub reason: String,
}

/// Labels of a delivery or an invitation outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `invitation` or `lockbox`.
    pub kind: String,
    /// `sent`, `retried`, `failed`; for invitations also `expired`, `reissued`, `accepted`, `refused`.
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started, by kind.
    pub reconciles: Family<KindLabels, Counter>,
    /// Reconciles that failed, by kind and error category.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration in seconds, by kind.
    pub duration: HistogramFamily<KindLabels>,
    /// Seconds from a change of an object reaching the controller to the start of the
    /// reconcile that serves it, by kind (see `controller::Queued`).
    pub queue_wait: HistogramFamily<KindLabels>,
    /// Reconciles running now, by kind (the work the controller has taken and not finished).
    pub in_flight: Family<KindLabels, Gauge>,
    /// Objects waiting to be retried after a failure, by kind.
    pub backing_off: Family<KindLabels, Gauge>,
    /// Store call latency in seconds, by operation.
    pub store_latency: HistogramFamily<StoreLabels>,
    /// Store writes that lost an optimistic-concurrency race and were re-planned.
    pub store_conflicts: Counter,
    /// Status patches written, by kind.
    pub status_writes: Family<KindLabels, Counter>,
    /// Events emitted, by reason.
    pub events: Family<EventLabels, Counter>,
    /// 1 while this replica holds the leader lease (or runs without leader election).
    pub leader: Gauge,
    /// Lockbox requests closed by their deadline, by resulting state.
    pub lockbox_expired: Family<StateLabels, Counter>,
    /// Outbox deliveries and invitation outcomes, by kind and outcome.
    pub notifications: Family<OutcomeLabels, Counter>,
    /// Console and API requests refused before anyone was identified, by endpoint and reason
    /// (`unknown_token`, `malformed`, `rate_limited`, `csrf`): guessing is counted here, and
    /// only summarised in the audit log.
    pub console_refusals: Family<RefusalLabels, Counter>,
}

/// Labels of a refused console request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `signin`, `signin_link`, `invitation`, `api_invitation`, `oidc_callback`.
    pub endpoint: String,
    /// `unknown_token`, `malformed`, `rate_limited`, `csrf`.
    pub reason: String,
}

/// Labels of a Lockbox transition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `Expired` or `AccessExpired`.
    pub state: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("servicehub");
        let m = Metrics {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            queue_wait: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
            backing_off: Family::default(),
            store_latency: Family::new_with_constructor(latency_histogram),
            store_conflicts: Counter::default(),
            status_writes: Family::default(),
            events: Family::default(),
            leader: Gauge::default(),
            lockbox_expired: Family::default(),
            notifications: Family::default(),
            console_refusals: Family::default(),
            registry: Registry::default(),
        };
        registry.register("reconciles", "Reconciles started", m.reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that failed, by error category", m.errors.clone());
        registry.register("reconcile_duration_seconds", "Reconcile duration", m.duration.clone());
        registry.register(
            "reconcile_queue_wait_seconds",
            "Time from a change of an object (spec, finalizers, annotations, deletion) reaching the controller to the start of its reconcile",
            m.queue_wait.clone(),
        );
        registry.register("reconcile_in_flight", "Reconciles running now", m.in_flight.clone());
        registry.register("reconcile_backing_off", "Objects waiting to retry after a failure", m.backing_off.clone());
        registry.register("store_latency_seconds", "Store call latency", m.store_latency.clone());
        registry.register("store_conflicts", "Store writes re-planned after losing a race", m.store_conflicts.clone());
        registry.register("status_writes", "Status patches written", m.status_writes.clone());
        registry.register("events", "Kubernetes Events emitted", m.events.clone());
        registry.register("leader", "1 while this replica is the leader", m.leader.clone());
        registry.register("lockbox_expired", "Lockbox requests closed by their deadline", m.lockbox_expired.clone());
        registry.register(
            "notifications",
            "Outbox deliveries (sent, retried, failed) and invitation outcomes, by kind",
            m.notifications.clone(),
        );
        registry.register(
            "console_refusals",
            "Console and API requests refused before anyone was identified, by endpoint and reason",
            m.console_refusals.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Record a store call's latency.
    pub fn store_call(&self, operation: &str, took: Duration) {
        self.store_latency.get_or_create(&StoreLabels { operation: operation.to_owned() }).observe(took.as_secs_f64());
    }

    /// Count `n` outcomes of `kind` (none: nothing, not even the label set).
    pub fn notified(&self, kind: &str, outcome: &str, n: u64) {
        if n > 0 {
            let labels = OutcomeLabels { kind: kind.to_owned(), outcome: outcome.to_owned() };
            self.notifications.get_or_create(&labels).inc_by(n);
        }
    }

    /// Count a refused console request.
    pub fn refused(&self, endpoint: &str, reason: &str) {
        let labels = RefusalLabels { endpoint: endpoint.to_owned(), reason: reason.to_owned() };
        self.console_refusals.get_or_create(&labels).inc();
    }

    /// Labels for `kind`.
    pub fn kind(kind: &str) -> KindLabels {
        KindLabels { kind: kind.to_owned() }
    }
}
