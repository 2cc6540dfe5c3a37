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
//! exact order. When [`SLOW_IN_A_ROW`] claims from the head in a row take
//! longer than the worker's `slow_claim` setting — an old snapshot makes
//! every one slow, a passing stall (a checkpoint, an `ANALYZE`) one or two —
//! it claims after its position for a while: twenty times what the last
//! claim from the head took, between one and thirty seconds. Then it claims
//! from the head again, which takes whatever was left below the position
//! and sets a new one.
//!
//! The position trails the last key claimed by [`SLACK`] of `run_at`. A
//! job's `run_at` is its enqueueing transaction's start, and transactions
//! commit out of order: a job whose transaction took longer than the slack
//! lands below a position already past it. The slack is cheap — reading a
//! dead index entry and its heap row costs about 80 ns, so a second of them
//! at 10,000 jobs/s is about a millisecond per claim — and jobs that still
//! land below (a job released by a stopping worker, which keeps its
//! `run_at`; one enqueued with a past `run_at`; a transaction longer than
//! the slack) wait for the next claim from the head, never longer than
//! thirty seconds. A soak found the trigger: with a single slow claim, one
//! 2.5 s claim with no old snapshot about opened a 50 s window of claims
//! after the position, and most of the producers' rows landed below it.

use std::time::{Duration, Instant};

use floe_engine::queue::{ClaimKey, ClaimedJob};

/// How far below the last key claimed (in `run_at`) a claim after the
/// position starts.
pub const SLACK: Duration = Duration::from_secs(1);
/// Slow claims from the head in a row that make claims start after the
/// position.
pub const SLOW_IN_A_ROW: u32 = 3;
/// How long, in multiples of the last slow claim from the head, claims
/// start after the position before the next claim from the head: claims
/// from the head then take at most a twenty-first of the time.
const RESUME_FOR_CLAIMS: u32 = 20;
/// Bounds of that time.
const RESUME_MIN: Duration = Duration::from_secs(1);
const RESUME_MAX: Duration = Duration::from_secs(30);

/// A claimer's position in the claim order and whether to use it.
#[derive(Debug)]
pub struct ClaimCursor {
    slow: Duration,
    /// The greatest key claimed since the last claim from the head (none
    /// if that claim took nothing).
    last: Option<ClaimKey>,
    /// Claims from the head in a row that took `slow` or longer.
    slow_in_a_row: u32,
    /// Until when claims start after `last`.
    resume_until: Option<Instant>,
}

impl ClaimCursor {
    /// A cursor that claims after its position once [`SLOW_IN_A_ROW`]
    /// claims from the head in a row have taken `slow` or longer.
    pub fn new(slow: Duration) -> Self {
        Self {
            slow,
            last: None,
            slow_in_a_row: 0,
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
            self.slow_in_a_row = if took >= self.slow {
                self.slow_in_a_row.saturating_add(1)
            } else {
                0
            };
            self.resume_until = (self.slow_in_a_row >= SLOW_IN_A_ROW)
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
    const T: OffsetDateTime = datetime!(2026-11-23 00:00 UTC);

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

    /// A cursor after `SLOW_IN_A_ROW` claims from the head of `took` each,
    /// the last of which took `jobs`.
    fn slowed(took: Duration, jobs: &[ClaimedJob], now: Instant) -> ClaimCursor {
        let mut cursor = ClaimCursor::new(SLOW);
        for _ in 1..SLOW_IN_A_ROW {
            cursor.claimed(None, &[job(0, T, 1)], took, now);
            assert_eq!(cursor.start(now), None, "one slow claim is not enough");
        }
        cursor.claimed(None, jobs, took, now);
        cursor
    }

    #[test]
    fn claims_from_the_head_while_that_is_cheap() {
        let mut cursor = ClaimCursor::new(SLOW);
        let now = Instant::now();
        assert_eq!(cursor.start(now), None, "the first claim is from the head");
        for _ in 0..10 {
            cursor.claimed(None, &[job(0, T, 1), job(0, T, 2)], SLOW / 2, now);
            assert_eq!(cursor.start(now), None);
        }
    }

    #[test]
    fn a_passing_stall_does_not_move_claims_off_the_head() {
        let mut cursor = ClaimCursor::new(SLOW);
        let now = Instant::now();
        for _ in 0..5 {
            for _ in 1..SLOW_IN_A_ROW {
                cursor.claimed(None, &[job(0, T, 1)], Duration::from_secs(2), now);
            }
            cursor.claimed(None, &[job(0, T, 1)], SLOW / 2, now);
            assert_eq!(cursor.start(now), None);
        }
    }

    #[test]
    fn slow_claims_from_the_head_in_a_row_resume_after_the_greatest_key_for_a_while() {
        let now = Instant::now();
        let jobs = [job(-1, T, 9), job(0, T, 3), job(0, T, 7)];
        let cursor = slowed(Duration::from_millis(200), &jobs, now);
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
        let now = Instant::now();
        let cursor = slowed(SLOW, &[job(0, T, 1)], now);
        assert!(cursor.start(now + Duration::from_millis(999)).is_some());
        assert_eq!(cursor.start(now + RESUME_MIN), None, "at least a second");
        let mut cursor = slowed(Duration::from_secs(5), &[job(0, T, 1)], now);
        assert!(
            cursor
                .start(now + RESUME_MAX - Duration::from_millis(1))
                .is_some()
        );
        assert_eq!(
            cursor.start(now + RESUME_MAX),
            None,
            "at most thirty seconds"
        );
        // Still slow at the next claim from the head: another while.
        let later = now + RESUME_MAX;
        cursor.claimed(None, &[job(0, T, 2)], SLOW, later);
        assert!(cursor.start(later).is_some());
        // Cheap again: back to the head.
        cursor.claimed(None, &[job(0, T, 3)], SLOW / 2, later);
        assert_eq!(cursor.start(later), None);
    }

    #[test]
    fn the_position_moves_forward_only_between_claims_from_the_head() {
        let now = Instant::now();
        let mut cursor = slowed(SLOW * 2, &[job(0, T, 5)], now);
        let at_5 = cursor.start(now);
        assert!(at_5.is_some());
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
        let now = Instant::now();
        let mut cursor = slowed(SLOW * 2, &[job(0, T, 5)], now);
        cursor.claimed(None, &[], SLOW * 2, now);
        assert_eq!(
            cursor.start(now),
            None,
            "nothing to start after: from the head"
        );
    }

    #[test]
    fn a_zero_threshold_resumes_after_every_claim_from_the_head_once_in_a_row() {
        let mut cursor = ClaimCursor::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..SLOW_IN_A_ROW {
            cursor.claimed(None, &[job(0, T, 1)], Duration::ZERO, now);
        }
        assert!(cursor.start(now).is_some());
    }
}
