//! The delivery worker (leader only): drains the outbox with the [`Notifier`], wakes at the
//! next delivery deadline (a retry or an invitation's expiry), at least every `POLL`, and at
//! once when a reconcile queued an invitation. Memberships whose invitation changed are sent
//! to the Membership controller so their status shows it without waiting for a resync; that
//! includes invitations accepted by another process, which each pass looks for.

use super::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::MembershipRef;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

/// Longest sleep between two looks at the outbox.
pub const POLL: Duration = Duration::from_secs(5);

/// What the delivery worker shares with the controllers.
#[derive(Clone)]
pub struct Delivery {
    /// The notifier, when delivery is configured.
    pub notifier: Option<Arc<Notifier>>,
    /// Wakes the worker (a reconcile queued a message).
    pub wake: Arc<Notify>,
    /// Memberships whose invitation changed.
    pub touched: broadcast::Sender<MembershipRef>,
}

impl Delivery {
    /// Delivery through `notifier` (none: messages stay queued).
    pub fn new(notifier: Option<Arc<Notifier>>) -> Delivery {
        Delivery { notifier, wake: Arc::new(Notify::new()), touched: broadcast::channel(1024).0 }
    }
}

/// Run until `stop`.
pub async fn run(delivery: Delivery, metrics: Arc<Metrics>, stop: CancellationToken) {
    let Some(notifier) = delivery.notifier.clone() else { return };
    let wake = delivery.wake.clone();
    // Acceptances are looked for from this term's start (earlier ones were reconciled since).
    let seen = std::sync::atomic::AtomicI64::new(jiff::Timestamp::now().as_second());
    super::worker::run("outbox delivery", POLL, Some(&wake), stop, |now| {
        pass(&notifier, &delivery, &metrics, &seen, now)
    })
    .await;
}

/// One pass; the next deadline.
async fn pass(
    notifier: &Notifier,
    delivery: &Delivery,
    metrics: &Metrics,
    seen: &std::sync::atomic::AtomicI64,
    now: i64,
) -> Result<Option<i64>, crate::store::StoreError> {
    let store = notifier.store();
    // Invitations accepted by another process (a standby's endpoint, the CLI): refresh their
    // Memberships. One index read; the previous second is read again, as acceptances are
    // stamped in whole seconds.
    let since = seen.load(std::sync::atomic::Ordering::Relaxed) - 1;
    for m in store.invitations_accepted_since(since, 1_000).await? {
        let _ = delivery.touched.send(m);
    }
    seen.store(now, std::sync::atomic::Ordering::Relaxed);
    let next = store.outbox_next_due().await?;
    if next.is_none_or(|t| t > now) {
        return Ok(next);
    }
    let report = notifier.drain(now).await?;
    for ((kind, outcome), n) in &report.by_kind {
        metrics.notified(kind, outcome, *n);
    }
    metrics.notified("invitation", "expired", report.expired);
    metrics.notified("invitation", "reissued", report.reissued);
    for m in report.touched {
        // No receiver (between leadership terms) is fine: the next reconcile reads the store.
        let _ = delivery.touched.send(m);
    }
    store.outbox_next_due().await
}
