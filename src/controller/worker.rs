//! The loop shared by the leader's deadline-driven workers (Lockbox expiry, outbox delivery):
//! run a pass, sleep until just after the next deadline it reports (at most `poll`, so work
//! added by other processes is seen), back off on store errors, stop on cancellation.

use crate::store::StoreError;
use std::future::Future;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long to sleep at `now` (Unix seconds) before the deadline `next`: until just after it
/// (deadlines are whole seconds), and never longer than `poll`.
pub fn until(next: Option<i64>, now: i64, poll: Duration) -> Duration {
    next.map_or(poll, |t| Duration::from_secs(u64::try_from(t + 1 - now).unwrap_or(0)).min(poll))
}

/// Run `pass(now)` until `stop`, waking at its next deadline, at most every `poll`, or when
/// `wake` is notified.
pub async fn run<F, Fut>(what: &str, poll: Duration, wake: Option<&Notify>, stop: CancellationToken, mut pass: F)
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<Option<i64>, StoreError>>,
{
    let mut failures = 0;
    loop {
        let now = jiff::Timestamp::now().as_second();
        let wait = match pass(now).await {
            Ok(next) => {
                failures = 0;
                until(next, now, poll)
            }
            Err(e) => {
                failures += 1;
                let delay = super::reconcile::backoff(failures).min(Duration::from_secs(60));
                tracing::warn!(error = %e, retry_in = ?delay, "{what} failed");
                delay
            }
        };
        let woken = async {
            match wake {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = woken => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_sleeps_until_just_after_the_deadline_and_never_past_the_poll() {
        let poll = Duration::from_secs(5);
        assert_eq!(until(None, 100, poll), poll);
        assert_eq!(until(Some(102), 100, poll), Duration::from_secs(3));
        assert_eq!(until(Some(90), 100, poll), Duration::ZERO);
        assert_eq!(until(Some(1_000), 100, poll), poll);
    }
}
