//! The chat's per-person rate limit: a sliding window over the last
//! minute, kept in this process's memory. Each API process counts on its
//! own, so with N processes behind a load balancer a person may send up to
//! N times the limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The window the limit counts over.
const WINDOW: Duration = Duration::from_secs(60);
/// Forget idle people every this many checks.
const SWEEP_EVERY: u64 = 1024;

/// Counts what each key did in the last minute.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    state: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    hits: HashMap<String, VecDeque<Instant>>,
    checks: u64,
}

impl RateLimiter {
    /// At most `per_minute` per key in any 60 seconds; 0 means no limit.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            state: Mutex::new(Windows::default()),
        }
    }

    /// Counts one for `key` now if the limit allows it; otherwise counts
    /// nothing and returns the whole seconds until it will (at least 1).
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.checks += 1;
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            state
                .hits
                .retain(|_, hits| hits.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let hits = state.hits.entry(key.to_owned()).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            hits.pop_front();
        }
        if hits.len() >= self.per_minute as usize {
            let oldest = hits.front().copied().unwrap_or(now);
            let wait = WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs_f64().ceil().max(1.0) as u64);
        }
        hits.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_says_when_to_retry() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        let retry = limiter.check("a").expect_err("over the limit");
        assert!((1..=60).contains(&retry), "{retry}");
        // Others are counted apart.
        assert_eq!(limiter.check("b"), Ok(()));
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        for _ in 0..1000 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
    }
}
