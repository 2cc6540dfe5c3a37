//! When a failed job runs again: exponential backoff with jitter, or exactly
//! the delay its handler asked for.

use std::time::Duration;

/// How a kind of job backs off between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (from 1):
    /// `base · 2^(attempt-1)`, capped at `max`, then "equal jitter" — a random
    /// point in its upper half — so that jobs that failed together do not
    /// retry together. `unit` is a random number in `[0, 1)`.
    pub fn delay(&self, attempt: i32, unit: f64) -> Duration {
        let exp = attempt.saturating_sub(1).clamp(0, 62) as u32;
        let full = self
            .base
            .checked_mul(1u32.checked_shl(exp.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let half = full / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// What a failed attempt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The kind's backoff.
    Backoff,
    /// Exactly this delay (a rate limit's Retry-After, say).
    After(Duration),
    /// Never again: the job is dead.
    Never,
}

/// The delay before the next attempt, or `None` when the job must die:
/// out of attempts, or not retryable.
pub fn next_delay(
    retry: Retry,
    backoff: &Backoff,
    attempt: i32,
    max_attempts: i32,
    unit: f64,
) -> Option<Duration> {
    if attempt >= max_attempts {
        return None;
    }
    match retry {
        Retry::Never => None,
        Retry::After(delay) => Some(delay),
        Retry::Backoff => Some(backoff.delay(attempt, unit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn grows_exponentially_within_the_jitter_band() {
        for attempt in 1..=5 {
            let full = Duration::from_secs(1 << (attempt - 1));
            assert_eq!(
                B.delay(attempt, 0.0),
                full / 2,
                "lowest point, attempt {attempt}"
            );
            assert!(
                B.delay(attempt, 0.999) < full,
                "below the full delay, attempt {attempt}"
            );
            assert!(
                B.delay(attempt + 1, 0.0) >= B.delay(attempt, 0.999),
                "never shrinks"
            );
        }
    }

    #[test]
    fn is_capped_and_never_overflows() {
        assert_eq!(B.delay(7, 0.0), Duration::from_secs(30));
        assert_eq!(B.delay(1000, 0.0), Duration::from_secs(30));
        assert!(B.delay(i32::MAX, 1.0) <= B.max);
        assert_eq!(
            B.delay(0, 0.0),
            Duration::from_millis(500),
            "attempt 0 is treated as 1"
        );
    }

    #[test]
    fn honours_the_requested_delay_and_the_attempt_budget() {
        let asked = Duration::from_millis(1234);
        assert_eq!(next_delay(Retry::After(asked), &B, 1, 3, 0.5), Some(asked));
        assert_eq!(
            next_delay(Retry::Backoff, &B, 3, 3, 0.5),
            None,
            "third of three attempts failed"
        );
        assert_eq!(next_delay(Retry::Never, &B, 1, 3, 0.5), None);
        assert!(next_delay(Retry::Backoff, &B, 2, 3, 0.5).is_some());
    }
}
