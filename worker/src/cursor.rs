//! Where a claimer's next claim starts: at the head of the queue, or after
//! the last job it claimed.
//!
//! A claim from the head reads the claim index in order. While some
//! transaction holds an old snapshot, the entries of every job claimed since
//! stay at the head (PostgreSQL may neither remove them nor mark them dead),
//! and each claim fetches all of their rows before it reaches one it can
//! take: claims slow down with every job done, and a queue that kept up
//! falls behind (W9 in docs/BENCHMARKS.md). A claim that starts after a
//! position reads only what lies above it (`floe.claim_jobs` with
//! `p_after_*`), but does not see a job that lands below the position.
//!
//! So a claimer claims from the head while that is cheap, which keeps the
//! exact order. When a claim from the head takes longer than the worker's
//! `slow_claim` setting, it claims after its position for a while — twenty
//! times what that claim took, between one second and one minute — and then
//! from the head again, which takes whatever was left below the position and
//! sets a new one. The position trails the last key claimed by
//! [`SLACK`] of `run_at`, so that jobs of producers' transactions that
//! committed shortly after later ones, and scheduled jobs promoted on time,
//! are not left for the next claim from the head. Jobs that land further
//! below wait for it: a job released by a stopping worker (it keeps its `run_at`),
//! a job enqueued with a past `run_at` or by a transaction that ran for longer than
//! [`SLACK`], one promoted later than that after its time.

use std::time::{Duration, Instant};

use floe_engine::queue::{ClaimKey, ClaimedJob};

/// How far below the last key claimed (in `run_at`) a claim after the
/// position starts.
pub const SLACK: Duration = Duration::from_millis(100);
/// How long, in multiples of the slow claim from the head, claims start
/// after the position before the next claim from the head.
const RESUME_FOR_CLAIMS: u32 = 20;
/// Bounds of that time.
const RESUME_MIN: Duration = Duration::from_secs(1);
const RESUME_MAX: Duration = Duration::from_secs(60);

/// A claimer's position in the claim order and whether to use it.
#[derive(Debug)]
pub struct ClaimCursor {
    slow: Duration,
    /// The greatest key claimed since the last claim from the head (none
    /// if that claim took nothing).
    last: Option<ClaimKey>,
    /// Until when claims start after `last`.
    resume_until: Option<Instant>,
}

impl ClaimCursor {
    /// A cursor that claims after its position once a claim from the head
    /// has taken `slow` or longer.
    pub fn new(slow: Duration) -> Self {
        Self {
            slow,
            last: None,
            resume_until: None,
        }
    }

    /// Where the claim made at `now` starts: `None` for the head.
    pub fn start(&self, now: Instant) -> Option<ClaimKey> {
        match (self.last, self.resume_until) {
            (Some(last), Some(until)) if now < until => Some(ClaimKey {
                priority: last.priority,
                run_at: last.run_at - SLACK,
                id: 0,
            }),
            _ => None,
        }
    }

    /// Records a claim that started at `start` (from [`Self::start`]),
    /// took `jobs`, and was answered after `took`, at `now`.
    pub fn claimed(
        &mut self,
        start: Option<ClaimKey>,
        jobs: &[ClaimedJob],
        took: Duration,
        now: Instant,
    ) {
        let greatest = jobs.iter().map(ClaimedJob::key).max();
        if start.is_some() {
            // Never backwards: a batch of more urgent jobs alone must not
            // send the next claim through the dead entries of the
            // position's own priority.
            self.last = self.last.max(greatest);
        } else {
            // A claim from the head sets the position afresh, so that one
            // left in a less urgent priority than the queue's backlog does
            // not outlive it.
            self.last = greatest;
            self.resume_until = (took >= self.slow)
                .then(|| now + (took * RESUME_FOR_CLAIMS).clamp(RESUME_MIN, RESUME_MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;

    const SLOW: Duration = Duration::from_millis(25);

    fn job(priority: i16, run_at: OffsetDateTime, id: i64) -> ClaimedJob {
        ClaimedJob {
            id,
            queue: "default".into(),
            kind: "k".into(),
            payload: serde_json::json!({}),
            priority,
            attempt: 1,
            max_attempts: 3,
            lease_token: id,
            run_at,
            created_at: run_at,
            trace_id: None,
        }
    }

    const T: OffsetDateTime = datetime!(2026-11-23 00:00 UTC);

    #[test]
    fn claims_from_the_head_while_that_is_cheap() {
        let mut cursor = ClaimCursor::new(SLOW);
        let now = Instant::now();
        assert_eq!(cursor.start(now), None, "the first claim is from the head");
        cursor.claimed(None, &[job(0, T, 1), job(0, T, 2)], SLOW / 2, now);
        assert_eq!(cursor.start(now), None);
    }

    #[test]
    fn a_slow_claim_from_the_head_resumes_after_the_greatest_key_for_a_while() {
        let mut cursor = ClaimCursor::new(SLOW);
        let now = Instant::now();
        let jobs = [job(-1, T, 9), job(0, T, 3), job(0, T, 7)];
        cursor.claimed(None, &jobs, Duration::from_millis(200), now);
        let start = cursor.start(now).expect("claims resume after the position");
        assert_eq!(
            start,
            ClaimKey {
                priority: 0,
                run_at: T - SLACK,
                id: 0
            },
            "after the greatest key claimed, less the slack"
        );
        // Twenty times 200 ms: from the head again after four seconds.
        assert!(cursor.start(now + Duration::from_millis(3_900)).is_some());
        assert_eq!(cursor.start(now + Duration::from_secs(4)), None);
    }

    #[test]
    fn the_time_after_the_position_is_bounded() {
        let mut cursor = ClaimCursor::new(SLOW);
        let now = Instant::now();
        cursor.claimed(None, &[job(0, T, 1)], SLOW, now);
        assert!(cursor.start(now + Duration::from_millis(999)).is_some());
        assert_eq!(cursor.start(now + RESUME_MIN), None, "at least a second");
        cursor.claimed(None, &[job(0, T, 1)], Duration::from_secs(10), now);
        assert!(
            cursor
                .start(now + RESUME_MAX - Duration::from_millis(1))
                .is_some()
        );
        assert_eq!(cursor.start(now + RESUME_MAX), None, "at most a minute");
    }

    #[test]
    fn the_position_moves_forward_only_between_claims_from_the_head() {
        let mut cursor = ClaimCursor::new(SLOW);
        let now = Instant::now();
        cursor.claimed(None, &[job(0, T, 5)], SLOW * 2, now);
        let at_5 = cursor.start(now);
        // A batch of only more urgent jobs leaves the position where it was.
        cursor.claimed(at_5, &[job(-10, T, 8)], SLOW, now);
        assert_eq!(cursor.start(now), at_5);
        // A short or empty batch too.
        cursor.claimed(at_5, &[], SLOW, now);
        assert_eq!(cursor.start(now), at_5);
        // A later job moves it.
        let later = T + Duration::from_secs(1);
        cursor.claimed(at_5, &[job(0, later, 6)], SLOW, now);
        assert_eq!(cursor.start(now).map(|k| k.run_at), Some(later - SLACK));
        // A claim from the head sets it afresh, here in a more urgent
        // priority than before (a backlog there now).
        cursor.claimed(None, &[job(-5, T, 2)], SLOW * 2, now);
        assert_eq!(cursor.start(now).map(|k| k.priority), Some(-5));
    }

    #[test]
    fn a_slow_claim_from_the_head_that_took_nothing_leaves_no_position() {
        let mut cursor = ClaimCursor::new(SLOW);
        let now = Instant::now();
        cursor.claimed(None, &[job(0, T, 5)], SLOW * 2, now);
        cursor.claimed(None, &[], SLOW * 2, now);
        assert_eq!(
            cursor.start(now),
            None,
            "nothing to start after: from the head"
        );
    }

    #[test]
    fn a_zero_threshold_resumes_after_every_claim_from_the_head() {
        let mut cursor = ClaimCursor::new(Duration::ZERO);
        let now = Instant::now();
        cursor.claimed(None, &[job(0, T, 1)], Duration::ZERO, now);
        assert!(cursor.start(now).is_some());
    }
}
