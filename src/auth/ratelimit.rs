//! Fixed-window rate limits per key (a client address, an email address), in memory.
//!
//! Each replica counts on its own: behind a load balancer spreading requests over N
//! replicas, a client gets at most N times the limit. That bounds guessing well enough (a
//! 256-bit token cannot be guessed at any rate); the limits exist to keep the store, the
//! outbox and the audit log from being flooded. The table is bounded: when it is full,
//! windows that ended are dropped, and if none has, the new key is refused (fail closed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most per limiter.
const MAX_KEYS: usize = 100_000;

/// One limit: at most `max` events per key in each `window`.
#[derive(Debug)]
pub struct Limiter {
    max: u32,
    window: Duration,
    keys: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// At most `max` events per key per `window`.
    pub fn new(max: u32, window: Duration) -> Limiter {
        Limiter { max, window, keys: Mutex::new(HashMap::new()) }
    }

    /// Count one event for `key` at `now`: `Ok` when it is within the limit, else how long
    /// until the key's window ends (for `Retry-After`).
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            keys.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if keys.len() >= MAX_KEYS {
                return Err(self.window);
            }
        }
        let (start, count) = keys.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        if *count >= self.max {
            return Err(self.window.saturating_sub(now.duration_since(*start)).max(Duration::from_secs(1)));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_max_events_per_window_then_waits_for_the_window_to_end() {
        let l = Limiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("10.0.0.1", t0), Ok(()));
        }
        let wait = l.check("10.0.0.1", t0 + Duration::from_secs(20)).expect_err("limited");
        assert_eq!(wait, Duration::from_secs(40));
        // Other keys are counted on their own.
        assert_eq!(l.check("10.0.0.2", t0 + Duration::from_secs(20)), Ok(()));
        // A new window.
        assert_eq!(l.check("10.0.0.1", t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn a_full_table_drops_ended_windows_and_refuses_when_none_ended() {
        let l = Limiter::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert!(l.check(&i.to_string(), t0).is_ok());
        }
        assert!(l.check("new", t0 + Duration::from_secs(1)).is_err(), "full: fail closed");
        assert!(l.check("new", t0 + Duration::from_secs(11)).is_ok(), "ended windows were dropped");
    }
}
