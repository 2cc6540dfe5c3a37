//! The queue's maintenance services, one job each, run by every worker
//! process (they coordinate through `SKIP LOCKED`, so more are harmless):
//!
//! * the **scheduler** makes scheduled and retrying jobs available when their
//!   time comes and fires workflow deadlines (a timer event in the inbox and
//!   an advance job), sleeping until the earliest of either (woken sooner by
//!   NOTIFY when a nearer one is set);
//! * the **rescuer** takes back jobs whose lease expired (their worker died)
//!   within moments of the expiry (within twenty times what its scans cost,
//!   while an old snapshot makes them slow);
//! * the **presence** heartbeat keeps this process's row in the worker
//!   registry (`floe.workers`) fresh, prunes the rows of workers long gone,
//!   and deletes its own row when the worker stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_engine::queue::store;
use floe_engine::workers;
use floe_engine::workflow::store as workflow_store;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::runtime::Shared;

/// Rows moved per statement.
const BATCH: i64 = 1000;
/// Longest sleep of the rescuer, so that an expired lease is noticed within
/// about a second whatever else happens.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How many times what its scans took the rescuer waits at least before
/// scanning again: it spends at most a twentieth of the time scanning.
const RESCUE_COST_RATIO: u32 = 20;

/// How long the rescuer waits before it scans again: until a little past
/// the next lease expiry (`next_in`; a little, so that it has surely
/// passed in the database's clock too), at most [`MAX_SLEEP`] — but at
/// least twenty times what its scans just took, up to a lease. Both scans
/// read `jobs_leases` from its low end; while a transaction holds an old
/// snapshot, every lease since (each job's, and each heartbeat's new
/// version) stays there, and each scan reads them all: ~40 ms per 500,000
/// jobs done, every second, in a stall of minutes.
fn rescue_wait(next_in: Duration, took: Duration, lease: Duration) -> Duration {
    let prompt = (next_in + Duration::from_millis(5)).min(MAX_SLEEP);
    prompt.max((took * RESCUE_COST_RATIO).min(lease))
}

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
        let timers = workflow_store::fire_timers(&shared.pool, BATCH).await?;
        for timer in &timers {
            metrics::histogram!(floe_engine::metrics::TIMER_LATENESS, "kind" => timer.kind.clone())
                .record(timer.lateness_seconds);
        }
        let fired = timers.len() as u64;
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
        let began = Instant::now();
        let next = match store::rescue_expired(&shared.pool, BATCH).await {
            Ok(rescued) => {
                if rescued > 0 {
                    metrics::counter!(floe_engine::metrics::JOBS_RESCUED).increment(rescued);
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
        let wait = rescue_wait(
            until(next, MAX_SLEEP),
            began.elapsed(),
            shared.settings.lease(),
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What this process registers as: its lease owner as id, the program's
/// name (`floe-worker`, `floe-api` for `--with-worker`, …), host, pid, build
/// version and queues.
pub fn registration(shared: &Shared) -> workers::Registration {
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "floe".to_owned());
    workers::Registration {
        id: shared.owner.clone(),
        name,
        // The owner is `host:pid:random`.
        host: shared
            .owner
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned(),
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        queues: shared.settings.queues.clone(),
    }
}

/// Runs the presence heartbeat until `stop`: registers this worker, writes
/// its heartbeat every [`workers::HEARTBEAT`] and prunes the rows of workers
/// silent for [`workers::PRUNE_AFTER`]; on `stop`, deregisters. The worker
/// stops it last, after its jobs are drained, so that it counts as alive
/// for as long as it holds work.
pub async fn run_presence(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let me = registration(&shared);
    let mut registered = false;
    loop {
        match workers::heartbeat(&shared.pool, &me).await {
            Ok(()) => {
                if !registered {
                    tracing::debug!(worker = %me.id, "registered in floe.workers");
                    registered = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "worker heartbeat failed; retrying"),
        }
        match workers::prune(&shared.pool, workers::PRUNE_AFTER).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "forgot workers silent for an hour"),
            Err(e) => tracing::debug!(error = %e, "pruning the worker registry failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(workers::HEARTBEAT) => {}
            _ = stop.changed() => break,
        }
    }
    if let Err(e) = workers::deregister(&shared.pool, &me.id).await {
        tracing::warn!(error = %e, "cannot deregister from floe.workers; the row ages out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_rescuer_wakes_just_past_the_next_expiry_at_most_a_second_away() {
        let quick = Duration::from_micros(200);
        assert_eq!(rescue_wait(MS * 300, quick, LEASE), MS * 305);
        assert_eq!(rescue_wait(Duration::ZERO, quick, LEASE), MS * 5);
        assert_eq!(
            rescue_wait(Duration::from_secs(20), quick, LEASE),
            MAX_SLEEP
        );
    }

    #[test]
    fn slow_scans_space_the_rescuer_out_to_twenty_times_their_cost_up_to_a_lease() {
        assert_eq!(rescue_wait(MS * 300, MS * 80, LEASE), MS * 1_600);
        assert_eq!(rescue_wait(MS * 300, Duration::from_secs(5), LEASE), LEASE);
    }
}
