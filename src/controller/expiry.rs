//! The Lockbox expiry worker (leader only): applies every transition that falls due, driven
//! by the store's next deadline (`MIN(due_at)` over a partial index), never by a scan. It
//! wakes at the next deadline, and at least every `POLL` so that requests opened through
//! the CLI since the last look are seen. An idle pass reads one index entry and writes
//! nothing.

use super::metrics::{Metrics, StateLabels};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest sleep between two looks at the next deadline.
pub const POLL: Duration = Duration::from_secs(5);

/// Run until `stop`.
pub async fn run(store: Arc<dyn Store>, metrics: Arc<Metrics>, stop: CancellationToken) {
    super::worker::run("lockbox expiry", POLL, None, stop, |now| pass(store.as_ref(), &metrics, now)).await;
}

/// One pass: sweep what is due at `now`; the next deadline.
async fn pass(store: &dyn Store, metrics: &Metrics, now: i64) -> Result<Option<i64>, crate::store::StoreError> {
    let next = store.lockbox_next_due().await?;
    if next.is_none_or(|t| t > now) {
        // Nothing due: one index read, no writes.
        return Ok(next);
    }
    for s in crate::lockbox::sweep(store, now, None, false).await? {
        tracing::info!(request = s.after.id, from = %s.before.state, to = %s.after.state, "lockbox request closed by its deadline");
        metrics.lockbox_expired.get_or_create(&StateLabels { state: s.after.state.to_string() }).inc();
    }
    store.lockbox_next_due().await
}
