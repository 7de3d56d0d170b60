//! `servicehub run`: the Kubernetes controller. One kube-runtime controller per kind, all
//! sharing one [`Context`] built at start (client, store, Event publisher, metrics, settings).
//!
//! Wiring:
//! - relations through reflector stores: a Customer change requeues its Workspaces,
//!   Memberships and LockboxPolicy; a Workspace change requeues its Memberships and its
//!   Customer (a declared default workspace); a Membership change requeues its Customer
//!   (whose status counts users), debounced;
//! - only the leader reconciles ([`leader`]); losing the lease stops the controllers, which
//!   start again from a fresh list if the lease comes back;
//! - errors back off per object ([`reconcile::backoff`]); a store or API server outage never
//!   ends the process: `/readyz` turns false and work resumes when they return;
//! - SIGTERM/SIGINT: stop taking work, finish in-flight reconciles, release the lease, exit 0.

pub mod delivery;
pub mod events;
pub mod expiry;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod reconcile;
pub mod worker;

use crate::api::{Customer, LockboxPolicy, Membership, Workspace, conditions};
use crate::store::{Store, StoreError};
use crate::validate::Object;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use metrics::Metrics;
use reconcile::Managed;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The finalizer on every object the operator manages.
pub const FINALIZER: &str = "servicehub.io/cleanup";
/// The field manager of every status the operator writes.
pub const FIELD_MANAGER: &str = "servicehub-operator";

/// Errors of a reconcile. Each has a [`category`](Error::category), used as metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed, or the reconcile inside it did.
    #[error("{0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    /// A domain rule holds the deletion back (the last Workspace Administrator).
    #[error("cleanup refused: {0}")]
    CleanupRefused(String),
    /// The object is not one the operator can work with.
    #[error("invalid object: {0}")]
    Invalid(String),
}

impl Error {
    /// Short label for metrics.
    pub fn category(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Store(e) => e.category(),
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "api_conflict",
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "api_unavailable",
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.category(),
                // The JSON patch's `test` failed: the cache had not seen our last write yet.
                F::AddFinalizer(kube::Error::Api(s)) | F::RemoveFinalizer(kube::Error::Api(s))
                    if s.code == 409 || s.code == 422 =>
                {
                    "api_conflict"
                }
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => "finalizer",
                F::UnnamedObject | F::InvalidFinalizer => "invalid_object",
            },
            Error::CleanupRefused(_) => "cleanup_refused",
            Error::Invalid(_) => "invalid_object",
        }
    }

    /// Whether this is an ordinary race (409) that the next pass resolves: retried soon,
    /// counted, but not reported as an Event.
    fn is_race(&self) -> bool {
        matches!(self.category(), "api_conflict" | "store_conflict")
    }
}

/// Settings fixed at start.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace watched, or all.
    pub namespace: Option<String>,
    /// Concurrent reconciles per kind.
    pub concurrency: u16,
    /// Every object is reconciled at least this often, to correct drift in the store.
    pub resync: Duration,
    /// The actor recorded in the audit log.
    pub actor: crate::domain::actor::Actor,
    /// This replica's identity (pod name), for Events and the lease.
    pub identity: String,
}

/// The reflector caches that relations and planning read.
#[derive(Clone)]
pub struct Caches {
    /// Customers.
    pub customers: Cache<Customer>,
    /// Workspaces.
    pub workspaces: Cache<Workspace>,
    /// Memberships.
    pub memberships: Cache<Membership>,
    /// Lockbox policies.
    pub policies: Cache<LockboxPolicy>,
}

/// A parent that exists in the cluster but not yet in the store.
pub(crate) struct ParentPending {
    /// The waiting reason (`WaitingForCustomer`, `WaitingForWorkspace`).
    pub reason: &'static str,
    /// The waiting message.
    pub message: String,
    /// The parent's reconcile has not reported on its current generation: it is on its way
    /// (a cold start, a parent created with its children). Its status write requeues this
    /// object (see `SpecChanges`), so a waiting status now would be replaced within seconds.
    pub in_flight: bool,
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The Event publisher.
    pub events: events::Publisher,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// Reflector caches.
    pub caches: Caches,
    /// The delivery worker's wake-up and the invitation changes it reports.
    pub delivery: delivery::Delivery,
    /// Consecutive failures per object (`Kind/namespace/name`), for backoff.
    failures: std::sync::Mutex<HashMap<String, u32>>,
    /// When each object's unserved change arrived, for the queue-wait metric.
    pub(crate) queued: Queued,
}

impl Context {
    /// The time plans are made for.
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    /// Await a store call, recording its latency.
    async fn timed<T>(&self, op: &str, f: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = f.await;
        self.metrics.store_call(op, started.elapsed());
        out
    }

    /// The Workspace in the cluster that declares itself `customer`'s default, if any.
    fn declared_default(&self, namespace: &str, customer: &str) -> Option<String> {
        self.caches.workspaces.state().iter().find_map(|w| {
            (w.namespace().as_deref() == Some(namespace)
                && w.spec.customer_ref.name == customer
                && w.spec.default
                && w.meta().deletion_timestamp.is_none())
            .then(|| w.name_any())
        })
    }

    /// When the planner stalled `o` for a missing parent that the cluster does hold (it is
    /// on its way into the store), the waiting reason and message to report instead.
    fn parent_pending(&self, o: &Object, conds: &[Condition]) -> Option<ParentPending> {
        let reason = conditions::get(conds, conditions::STALLED)?.reason.as_str();
        let ns = o.namespace();
        // In flight: the parent's own reconcile has not reported on its current generation.
        fn pending<P: reconcile::Managed>(parent: &P, reason: &'static str, message: String) -> ParentPending {
            let in_flight = conditions::get(parent.conditions(), conditions::READY)
                .is_none_or(|c| c.observed_generation != parent.meta().generation);
            ParentPending { reason, message, in_flight }
        }
        match reason {
            "CustomerNotFound" => {
                let key = ObjectRef::<Customer>::new(o.customer()).within(ns);
                let c = self.caches.customers.get(&key)?;
                let message = format!("waiting for Customer {} to be provisioned", o.customer());
                Some(pending(c.as_ref(), "WaitingForCustomer", message))
            }
            "WorkspaceNotFound" => {
                let Object::Membership(m) = o else { return None };
                let name = &m.spec.workspace_ref.as_ref()?.name;
                let key = ObjectRef::<Workspace>::new(name).within(ns);
                let w = self.caches.workspaces.get(&key)?;
                Some(pending(
                    w.as_ref(),
                    "WaitingForWorkspace",
                    format!("waiting for Workspace {name} to be provisioned"),
                ))
            }
            _ => None,
        }
    }

    /// Publish an Event about `obj`; a failure is logged, never fails the reconcile.
    async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, event: Event) {
        let reason = event.reason.clone();
        match self.events.publish(&event, &obj.object_ref(&())).await {
            Ok(()) => {
                self.metrics.events.get_or_create(&metrics::EventLabels { reason }).inc();
            }
            Err(e) => tracing::warn!(error = %e, %reason, "could not publish an Event"),
        }
    }

    /// When to look again: at the next time boundary the plan reported (plus up to a second,
    /// so the boundary has passed), or after the resync period (±10%), whichever is first.
    fn requeue_after(&self, now: jiff::Timestamp, at: Option<jiff::Timestamp>) -> Action {
        let resync = self.settings.resync.mul_f64(rand::random_range(0.9..1.1));
        let boundary = at.map(|t| {
            let secs = t.duration_since(now).as_secs_f64().max(0.0);
            Duration::from_secs_f64(secs) + Duration::from_millis(rand::random_range(100..1000))
        });
        Action::requeue(boundary.map_or(resync, |b| b.min(resync)))
    }

    fn succeeded(&self, kind: &str, key: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.remove(key).is_some() {
            self.metrics.backing_off.get_or_create(&Metrics::kind(kind)).dec();
        }
    }

    /// Count a failure of `key`; the number of consecutive failures.
    fn failed(&self, kind: &str, key: &str) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_owned()).or_insert(0);
        if *n == 0 {
            self.metrics.backing_off.get_or_create(&Metrics::kind(kind)).inc();
        }
        *n += 1;
        *n
    }
}

/// What to do after a failed reconcile: count it, report the first failure of a streak as
/// an Event, and retry after a per-object exponential backoff.
fn error_policy<K: Managed>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let kind = K::kind(&()).to_string();
    let category = err.category();
    ctx.metrics.errors.get_or_create(&metrics::ErrorLabels { kind: kind.clone(), category: category.into() }).inc();
    let key = reconcile::failure_key::<K>(&obj.namespace().unwrap_or_default(), &obj.name_any());
    let n = ctx.failed(&kind, &key);
    if err.is_race() {
        tracing::debug!(%kind, name = %obj.name_any(), error = %err, "conflict; retrying");
        return Action::requeue(Duration::from_millis(rand::random_range(50..500)));
    }
    let delay = reconcile::backoff(n);
    tracing::warn!(%kind, namespace = ?obj.namespace(), name = %obj.name_any(), %category, error = %err, failures = n, retry_in = ?delay, "reconcile failed");
    if n == 1 {
        let event = Event {
            type_: EventType::Warning,
            reason: "ReconcileFailed".into(),
            note: Some(format!("{category}: {err}").chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let ctx = ctx.clone();
        // error_policy is synchronous; the Event goes out on its own task.
        tokio::spawn(async move { ctx.publish(obj.as_ref(), event).await });
    }
    Action::requeue(delay)
}

/// The controller of a kind over a cache that holds no `managedFields`: the operator never
/// reads them (status is written by server-side apply with one field manager, finalizers
/// by a guarded JSON patch), and they are a large share of each cached object's memory
/// (every manager's field set, for the user's and the operator's writes alike).
///
/// The cache sees every event; the controller is triggered only by a change of what a pass
/// acts on: the generation (spec, deletion), finalizers, annotations (pause, adoption) or
/// the deletion timestamp. A status write, the operator's own above all, does not requeue
/// the object it was written to (it cost every Membership one more load that found nothing
/// to do); a status someone else overwrites is restored by the resync. Parents' status
/// changes still reach their children through the relations (see `SpecChanges`). Each
/// change that passes is stamped in `queued` for the queue-wait metric.
fn cached<K: Managed>(api: Api<K>, wc: watcher::Config, queued: Queued) -> Controller<K> {
    use futures::TryStreamExt;
    use kube::runtime::{Predicate, WatchStreamExt, predicates};
    let (reader, writer) = kube::runtime::reflector::store();
    let acted_on = predicates::generation
        .combine(predicates::finalizers)
        .combine(predicates::annotations)
        .combine(|o: &K| Some(u64::from(o.meta().deletion_timestamp.is_some())));
    let objects = watcher(api, wc)
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(acted_on, Default::default())
        .inspect_ok(move |o: &K| queued.arrived(o.meta().uid.as_deref().unwrap_or_default()));
    Controller::for_stream(objects, reader)
}

/// When the oldest change of each object that no reconcile has served yet reached the
/// controller, by uid (unique across kinds): a reconcile starting takes its entry and
/// observes the wait (`servicehub_reconcile_queue_wait_seconds`), which covers kube's
/// scheduler, the concurrency limit and the debounce. Later changes before that reconcile
/// keep the oldest stamp, as the one reconcile serves them all.
#[derive(Clone, Default)]
pub(crate) struct Queued(Arc<std::sync::Mutex<QueuedState>>);

#[derive(Default)]
struct QueuedState {
    since: HashMap<String, std::time::Instant>,
    /// Size at which entries an hour old are dropped: an object deleted before any reconcile
    /// took it leaves one behind.
    prune_at: usize,
}

impl Queued {
    fn arrived(&self, uid: &str) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        q.since.entry(uid.to_owned()).or_insert(now);
        if q.since.len() >= q.prune_at {
            q.since.retain(|_, t| now.duration_since(*t) < Duration::from_secs(3600));
            q.prune_at = (q.since.len() * 2).max(1024);
        }
    }

    /// How long the change that a reconcile of `uid` now serves has waited, if one is stamped.
    pub(crate) fn take(&self, uid: &str) -> Option<Duration> {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.since.remove(uid).map(|t| t.elapsed())
    }
}

fn api<K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(
    client: &Client,
    namespace: Option<&str>,
) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The relation "this object changed -> requeue its Customer", for a kind naming its
/// Customer with `customer_of`; fires on state changes only.
fn to_customer<K: Managed>(customer_of: fn(&K) -> &String) -> impl Fn(K) -> Option<ObjectRef<Customer>> + Send + Sync {
    let seen = SpecChanges::default();
    move |o| {
        let namespace = o.namespace().unwrap_or_default();
        seen.changed(&o).then(|| ObjectRef::<Customer>::new(customer_of(&o)).within(&namespace))
    }
}

/// The relation "a Customer changed -> requeue its objects of kind `K`" (those of `cache` in
/// its namespace naming it with `customer_of`); fires on state changes only.
fn of_customer<K: Managed>(
    cache: Cache<K>,
    customer_of: fn(&K) -> &String,
) -> impl Fn(Customer) -> Vec<ObjectRef<K>> + Send + Sync {
    let seen = SpecChanges::default();
    move |c| {
        if !seen.changed(&c) {
            return Vec::new();
        }
        related(&cache, c.namespace(), |k: &K| *customer_of(k) == c.name_any())
    }
}

/// The objects of `cache` in `namespace` that `pick` selects, as references to requeue.
fn related<K: Managed>(cache: &Cache<K>, namespace: Option<String>, pick: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>> {
    cache
        .state()
        .iter()
        .filter(|o| o.namespace() == namespace && pick(o))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Remembers the last generation, deletion state and conditions (type, status, reason) seen
/// of each object of a watched kind, so that a relation triggers its dependents when the
/// parent's spec or state changes (created, provisioned, waiting, stalled, deleted), not on
/// every status write: a Customer's counts move with every Membership of a rollout, and
/// each move would otherwise requeue all of its Memberships. (kube's `predicate_filter` does this on a stream, but attaching a stream to
/// a controller is still behind an unstable kube feature.)
#[derive(Clone, Default)]
struct SpecChanges(Arc<std::sync::Mutex<HashMap<String, Seen>>>);

/// What a relation last saw of an object: generation, being deleted, hash of its conditions
/// (with the generation each reports).
type Seen = (Option<i64>, bool, u64);

impl SpecChanges {
    /// Whether `obj` has a generation, deletion state or condition state not seen before.
    fn changed<K: Managed>(&self, obj: &K) -> bool {
        use std::hash::{Hash, Hasher};
        let meta = obj.meta();
        let key = meta.uid.clone().unwrap_or_default();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        // The conditions' observedGeneration too: a parent whose spec changed is seen once
        // when the change arrives and once more when its reconcile has written the store
        // (its status then reports the new generation). Children reconciled on the first
        // sight may have read the store before the parent's write; the second sight makes
        // them look again (a Membership refused because of its Workspace recovers when the
        // Workspace is fixed).
        for c in obj.conditions() {
            (&c.type_, &c.status, &c.reason, c.observed_generation).hash(&mut h);
        }
        let seen = (meta.generation, meta.deletion_timestamp.is_some(), h.finish());
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key, seen) != Some(seen)
    }
}

/// Log the outcome of each reconcile the controller stream reports.
async fn log_outcome<K: Managed>(res: Result<(ObjectRef<K>, Action), controller::Error<Error, watcher::Error>>) {
    match res {
        Ok((obj, action)) => tracing::trace!(%obj, ?action, "reconciled"),
        // Already counted and logged by error_policy.
        Err(controller::Error::ReconcilerFailed(_, _)) => {}
        Err(controller::Error::QueueError(e)) => tracing::warn!(error = %e, "watch failed; retrying"),
        Err(e) => tracing::warn!(error = %e, "controller error"),
    }
}

/// Run the four controllers until `shutdown` (graceful: in-flight reconciles finish) or
/// until the future is dropped (leadership lost). `synced` turns true once every cache has
/// its first full list.
pub async fn run_controllers(
    client: Client,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    settings: Settings,
    synced: Arc<AtomicBool>,
    delivery: delivery::Delivery,
    shutdown: CancellationToken,
) {
    // Not synced until this term's caches hold their first list (a term that ended by
    // losing the lease was dropped before it could reset the flag).
    synced.store(false, Ordering::SeqCst);
    let ns = settings.namespace.as_deref();
    let wc = watcher::Config::default();
    let cfg = controller::Config::default().concurrency(settings.concurrency);
    let queued = Queued::default();
    let customers = cached(api::<Customer>(&client, ns), wc.clone(), queued.clone())
        .with_config(cfg.clone().debounce(Duration::from_secs(1)));
    let workspaces = cached(api::<Workspace>(&client, ns), wc.clone(), queued.clone()).with_config(cfg.clone());
    let memberships = cached(api::<Membership>(&client, ns), wc.clone(), queued.clone()).with_config(cfg.clone());
    let policies = cached(api::<LockboxPolicy>(&client, ns), wc.clone(), queued.clone()).with_config(cfg);
    let (c_cache, w_cache, m_cache, p_cache) =
        (customers.store(), workspaces.store(), memberships.store(), policies.store());

    // Relations fire on state changes of the related object (see SpecChanges), never on
    // status-only writes.
    let customers = customers.watches(
        api::<Workspace>(&client, ns),
        wc.clone(),
        to_customer(|w: &Workspace| &w.spec.customer_ref.name),
    );
    // A Customer's status counts its users: new and removed Memberships refresh it (the
    // Customer controller is debounced, so a rollout costs a few passes, not one each).
    let customers = customers.watches(
        api::<Membership>(&client, ns),
        wc.clone(),
        to_customer(|m: &Membership| &m.spec.customer_ref.name),
    );
    let workspaces = workspaces.watches(
        api::<Customer>(&client, ns),
        wc.clone(),
        of_customer(w_cache.clone(), |w: &Workspace| &w.spec.customer_ref.name),
    );
    let memberships = memberships.watches(
        api::<Customer>(&client, ns),
        wc.clone(),
        of_customer(m_cache.clone(), |m: &Membership| &m.spec.customer_ref.name),
    );
    let (cache, seen) = (m_cache.clone(), SpecChanges::default());
    let memberships = memberships.watches(api::<Workspace>(&client, ns), wc.clone(), move |w| {
        if !seen.changed(&w) {
            return Vec::new();
        }
        related(&cache, w.namespace(), |m: &Membership| {
            m.spec.customer_ref.name == w.spec.customer_ref.name
                && m.spec.workspace_ref.as_ref().is_some_and(|r| r.name == w.name_any())
        })
    });
    // The delivery worker reports invitation changes (its own, and acceptances made by any
    // process); the Membership's status shows them at once instead of at the next resync.
    let touched = futures::stream::unfold(delivery.touched.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(m) => return Some((m, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(|m| async move {
        (m.origin == "Membership").then(|| ObjectRef::<Membership>::new(&m.name).within(&m.namespace))
    });
    let memberships = memberships.reconcile_on(touched);
    let policies = policies.watches(
        api::<Customer>(&client, ns),
        wc,
        of_customer(p_cache.clone(), |p: &LockboxPolicy| &p.spec.customer_ref.name),
    );

    let ctx = Arc::new(Context {
        events: events::Publisher::new(client.clone(), FIELD_MANAGER, &settings.identity),
        client,
        store,
        metrics,
        settings,
        caches: Caches {
            customers: c_cache.clone(),
            workspaces: w_cache.clone(),
            memberships: m_cache.clone(),
            policies: p_cache.clone(),
        },
        delivery: delivery.clone(),
        failures: Default::default(),
        queued,
    });
    let sync = {
        let synced = synced.clone();
        async move {
            let _ = futures::join!(
                c_cache.wait_until_ready(),
                w_cache.wait_until_ready(),
                m_cache.wait_until_ready(),
                p_cache.wait_until_ready()
            );
            synced.store(true, Ordering::SeqCst);
            tracing::info!("caches synced");
        }
    };
    let stop = || shutdown.clone().cancelled_owned();
    let c = customers
        .graceful_shutdown_on(stop())
        .run(reconcile::reconcile::<Customer>, error_policy::<Customer>, ctx.clone())
        .for_each(log_outcome);
    let w = workspaces
        .graceful_shutdown_on(stop())
        .run(reconcile::reconcile::<Workspace>, error_policy::<Workspace>, ctx.clone())
        .for_each(log_outcome);
    let m = memberships
        .graceful_shutdown_on(stop())
        .run(reconcile::reconcile::<Membership>, error_policy::<Membership>, ctx.clone())
        .for_each(log_outcome);
    // Background workers run with the controllers: on the leader only.
    let expiry = expiry::run(ctx.store.clone(), ctx.metrics.clone(), shutdown.clone());
    let deliver = delivery::run(delivery, ctx.metrics.clone(), shutdown.clone());
    let p = policies
        .graceful_shutdown_on(stop())
        .run(reconcile::reconcile::<LockboxPolicy>, error_policy::<LockboxPolicy>, ctx)
        .for_each(log_outcome);
    let run = async {
        futures::join!(c, w, m, p, expiry, deliver);
    };
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => {}
        _ = sync => run.await,
    }
    synced.store(false, Ordering::SeqCst);
}
