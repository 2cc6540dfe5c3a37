//! The queue's maintenance services, one job each, run by every worker
//! process (they coordinate through `SKIP LOCKED`, so more are harmless):
//!
//! * the **scheduler** makes scheduled and retrying jobs available when their
//!   time comes and fires workflow deadlines (a timer event in the inbox and
//!   an advance job), sleeping until the earliest of either (woken sooner by
//!   NOTIFY when a nearer one is set);
//! * the **rescuer** takes back jobs whose lease expired (their worker died)
//!   within moments of the expiry.

use std::sync::Arc;
use std::time::Duration;

use floe_engine::queue::store;
use floe_engine::workflow::store as workflow_store;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::runtime::Shared;

/// Rows moved per statement.
const BATCH: i64 = 1000;
/// Longest sleep of the rescuer, so that an expired lease is noticed within
/// about a second whatever else happens.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How long from now until `at` (zero if past), at most `cap`.
fn until(at: Option<OffsetDateTime>, cap: Duration) -> Duration {
    match at {
        Some(at) => {
            let ms = (at - OffsetDateTime::now_utc()).whole_milliseconds().max(0);
            Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)).min(cap)
        }
        None => cap,
    }
}

/// Runs the scheduler until `stop`.
pub async fn run_scheduler(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut scheduled = shared.wakers.subscribe_scheduled();
    loop {
        scheduled.borrow_and_update();
        let next = match due_now(&shared).await {
            Ok(()) => next_wake(&shared).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "scheduler cannot read the next due time");
                None
            }),
            Err(e) => {
                tracing::warn!(error = %e, "scheduler failed; retrying");
                None
            }
        };
        // It sleeps until the next due job or deadline; a nearer one announced
        // by NOTIFY wakes it sooner; the fallback poll covers notifications
        // lost while the LISTEN connection was down.
        tokio::select! {
            _ = tokio::time::sleep(until(next, shared.settings.poll())) => {}
            _ = scheduled.changed() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Promotes every due job and fires every due deadline.
async fn due_now(shared: &Shared) -> anyhow::Result<()> {
    loop {
        let promoted = store::promote_due(&shared.pool, BATCH).await?;
        let fired = workflow_store::fire_due_timers(&shared.pool, BATCH).await?;
        if promoted + fired > 0 {
            tracing::debug!(promoted, fired, "due");
            // This process's claimers need no round trip through NOTIFY.
            shared.wakers.wake_available();
        }
        if promoted < BATCH as u64 && fired < BATCH as u64 {
            return Ok(());
        }
    }
}

/// The earlier of the next due job and the next deadline.
async fn next_wake(shared: &Shared) -> anyhow::Result<Option<OffsetDateTime>> {
    let job = store::next_due_at(&shared.pool).await?;
    let deadline = workflow_store::next_deadline(&shared.pool).await?;
    Ok(match (job, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Runs the rescuer until `stop`.
pub async fn run_rescuer(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let next = match store::rescue_expired(&shared.pool, BATCH).await {
            Ok(rescued) => {
                if rescued > 0 {
                    tracing::warn!(rescued, "took back jobs whose worker stopped heartbeating");
                    shared.wakers.wake_available();
                }
                if rescued == BATCH as u64 {
                    continue;
                }
                store::next_lease_expiry(&shared.pool).await.unwrap_or(None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "rescuer failed; retrying");
                None
            }
        };
        // A little past the expiry, so that it has surely passed in the
        // database's clock too.
        let wait = until(next, MAX_SLEEP) + Duration::from_millis(5);
        tokio::select! {
            _ = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
            _ = stop.changed() => return,
        }
    }
}
