//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics: the
//! holder renews every `retry_period`; a candidate takes the lease once it has seen the same
//! lease record unchanged for `lease_duration` (measured on its own clock, so clock skew
//! between nodes does not matter) or once the holder released it. Every write is an update
//! guarded by `resourceVersion`, so two candidates racing get one winner and one 409.
//!
//! A leader that cannot renew within `renew_deadline` steps down before its lease can
//! expire, so two replicas never both believe they lead. On shutdown the leader releases
//! the lease (empty holder), and a standby takes over at its next try instead of waiting
//! out the duration.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Namespace of the lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// What a candidate last saw of the lease: the record and when it first saw it.
struct Observed {
    record: (Option<String>, Option<MicroTime>, Option<i32>),
    at: Instant,
}

/// Run the election until `shutdown` is cancelled, publishing whether this replica leads on
/// `leading`. Releases the lease on the way out if held.
pub async fn run(api: Api<Lease>, cfg: LeaseConfig, leading: watch::Sender<bool>, shutdown: CancellationToken) {
    let mut observed: Option<Observed> = None;
    let mut last_renew = Instant::now();
    loop {
        let is_leader = *leading.borrow();
        // Each round is bounded like client-go's: a request that hangs counts as a failure.
        let round = tokio::time::timeout(cfg.renew_deadline, try_acquire_or_renew(&api, &cfg, &mut observed));
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = round => r.unwrap_or_else(|_| Err(kube::Error::Service("lease request timed out".into()))),
        };
        tracing::trace!(lease = %cfg.name, ok = outcome.is_ok(), "lease round");
        match outcome {
            Ok(true) => {
                last_renew = Instant::now();
                if !is_leader {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                    leading.send_replace(true);
                }
            }
            Ok(false) => {
                if is_leader {
                    tracing::warn!(lease = %cfg.name, "another replica holds the lease; stepping down");
                    leading.send_replace(false);
                }
            }
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "lease request failed");
                if is_leader && last_renew.elapsed() >= cfg.renew_deadline {
                    tracing::warn!(lease = %cfg.name, "could not renew the lease in time; stepping down");
                    leading.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(cfg.retry_period) => {}
        }
    }
    tracing::debug!(lease = %cfg.name, "leaving the election");
    if *leading.borrow() {
        leading.send_replace(false);
        // Bounded like a round: an unreachable API server must not hold the exit up.
        match tokio::time::timeout(cfg.renew_deadline, release(&api, &cfg)).await {
            Ok(Ok(())) => tracing::info!(lease = %cfg.name, "released the lease"),
            Ok(Err(e)) => {
                tracing::warn!(lease = %cfg.name, error = %e, "could not release the lease; it expires by itself")
            }
            Err(_) => tracing::warn!(lease = %cfg.name, "releasing the lease timed out; it expires by itself"),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// One round: `Ok(true)` if this replica holds the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(seconds(cfg.lease_duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let record = (holder.clone(), spec.renew_time.clone(), spec.lease_transitions);
    let changed = observed.as_ref().is_none_or(|o| o.record != record);
    if changed {
        *observed = Some(Observed { record, at: Instant::now() });
    }
    let held_by_me = holder.as_deref() == Some(cfg.identity.as_str());
    if !held_by_me {
        let duration = spec.lease_duration_seconds.map_or(cfg.lease_duration, |s| Duration::from_secs(s.max(0) as u64));
        let expired = observed.as_ref().is_some_and(|o| o.at.elapsed() >= duration);
        if holder.is_some() && !expired {
            return Ok(false);
        }
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.lease_duration_seconds = Some(seconds(cfg.lease_duration));
    spec.renew_time = Some(now());
    // `replace` carries the resourceVersion read above: a concurrent writer makes it a 409.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Give the lease up: empty holder, so a standby acquires it at once.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else { return Ok(()) };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    api.replace(&cfg.name, &PostParams::default(), &lease).await.map(|_| ())
}
