//! State every part of a worker process shares, and the two loops that keep
//! its claims honest: the completer (batched acknowledgements) and the
//! heartbeat (lease extension).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floe_engine::queue::listener::Wakers;
use floe_engine::queue::{Lease, store};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{Notify, mpsc, watch};

use crate::handlers::Registry;
use crate::settings::WorkerSettings;

/// Most outcomes written in one transaction.
const ACK_BATCH: usize = 1000;

/// What a worker process shares between its claimers, handlers and loops.
pub struct Shared {
    /// The database.
    pub pool: PgPool,
    /// This process's identity, unique per start: `host:pid:random`.
    pub owner: String,
    /// Its settings.
    pub settings: WorkerSettings,
    /// What it can run.
    pub registry: Registry,
    /// Wakes this process's claimers and scheduler.
    pub wakers: Wakers,
    /// Leases this process holds: claimed, and not yet durably finished.
    leases: Mutex<HashMap<i64, Lease>>,
    /// Finished attempts on their way to the database.
    outcomes: mpsc::UnboundedSender<Outcome>,
}

/// A finished attempt, to be recorded.
#[derive(Debug)]
pub struct Outcome {
    /// The claim it finishes.
    pub lease: Lease,
    /// `Ok`, or the error and when to retry (`None`: the job dies).
    pub result: Result<(), (String, Option<Duration>)>,
}

/// Free slots of one queue's claimer: how many claimed jobs are not finished.
#[derive(Debug, Default)]
pub struct Slots {
    in_flight: AtomicUsize,
    freed: Notify,
}

impl Slots {
    /// Jobs claimed and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts `n` newly claimed jobs.
    pub fn take(&self, n: usize) {
        self.in_flight.fetch_add(n, Ordering::AcqRel);
    }

    /// One job finished (or was handed back).
    pub fn free(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }

    /// Resolves after the next [`Slots::free`] (or at once if one happened
    /// since the last wait).
    pub async fn freed(&self) {
        self.freed.notified().await;
    }
}

impl Shared {
    /// Builds the shared state; returns the receiving end of the outcome
    /// channel for [`run_completer`].
    pub fn new(
        pool: PgPool,
        settings: WorkerSettings,
        registry: Registry,
        wakers: Wakers,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Outcome>) {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let random = uuid::Uuid::new_v4().simple().to_string();
        let owner = format!("{host}:{}:{}", std::process::id(), &random[..8]);
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Self {
            pool,
            owner,
            settings,
            registry,
            wakers,
            leases: Mutex::new(HashMap::new()),
            outcomes: tx,
        });
        (shared, rx)
    }

    /// Records leases this process now holds.
    pub fn hold(&self, leases: impl IntoIterator<Item = Lease>) {
        let mut held = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        for lease in leases {
            held.insert(lease.id, lease);
        }
    }

    /// Forgets leases (finished durably, released, or lost).
    pub fn forget(&self, leases: &[Lease]) {
        let mut held = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        for lease in leases {
            if held.get(&lease.id) == Some(lease) {
                held.remove(&lease.id);
            }
        }
    }

    /// The leases held now.
    pub fn held(&self) -> Vec<Lease> {
        let held = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        held.values().copied().collect()
    }

    /// Hands a finished attempt to the completer.
    pub fn finish(&self, outcome: Outcome) {
        if let Err(mpsc::error::SendError(outcome)) = self.outcomes.send(outcome) {
            // The completer is gone (shutdown timed out): the lease expires
            // and another worker runs the job again. At-least-once holds.
            tracing::warn!(
                job_id = outcome.lease.id,
                "outcome dropped: worker is stopping"
            );
        }
    }
}

/// Writes finished attempts in batches: successes as one DELETE, failures one
/// by one. A batch forms by itself under load (whatever arrived while the
/// previous one was written); at low load each outcome is written at once.
/// A database error keeps the batch and retries it, so nothing is dropped
/// while PostgreSQL restarts. When `stop` is set it writes what has arrived
/// and returns.
pub async fn run_completer(
    shared: Arc<Shared>,
    mut outcomes: mpsc::UnboundedReceiver<Outcome>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            o = outcomes.recv() => o,
            _ = stop.wait_for(|s| *s) => outcomes.try_recv().ok(),
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < ACK_BATCH {
            match outcomes.try_recv() {
                Ok(outcome) => batch.push(outcome),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match write(&shared, &batch).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, outcomes = batch.len(), retry_in_ms = delay.as_millis() as u64,
                        "cannot record finished jobs; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        let leases: Vec<Lease> = batch.iter().map(|o| o.lease).collect();
        shared.forget(&leases);
        batch.clear();
    }
}

async fn write(shared: &Shared, batch: &[Outcome]) -> sqlx::Result<()> {
    let done: Vec<Lease> = batch
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.lease)
        .collect();
    if !done.is_empty() {
        let completed = store::complete(&shared.pool, &done).await?;
        if completed.len() < done.len() {
            for lease in done.iter().filter(|l| !completed.contains(&l.id)) {
                tracing::warn!(
                    job_id = lease.id,
                    lease_token = lease.token,
                    "completion refused: the lease was lost (expired and taken over)"
                );
            }
        }
    }
    for outcome in batch {
        if let Err((error, retry_in)) = &outcome.result {
            match store::fail(&shared.pool, outcome.lease, error, *retry_in).await? {
                Some(failed) => {
                    tracing::info!(job_id = outcome.lease.id, state = %failed.state, %error, "job attempt failed")
                }
                None => tracing::warn!(
                    job_id = outcome.lease.id,
                    "failure refused: the lease was lost"
                ),
            }
        }
    }
    Ok(())
}

/// Extends this process's leases every third of a lease until `stop`.
///
/// It keeps a connection of its own rather than borrowing one from the
/// pool: when claimers and the completer hold every pooled connection (a
/// long lock wait, a slow `DELETE` behind an idle transaction), a borrowed
/// one arrives only after the pool's acquire timeout, and W9 saw 137,677
/// leases of a live worker expire that way and their jobs run twice. A
/// failed or stuck extension is retried within a quarter second, doubling
/// up to the normal interval, on a new connection, so one dropped
/// connection or a restart of PostgreSQL costs a moment, not a third of
/// the lease.
pub async fn run_heartbeat(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = shared.settings.heartbeat();
    let first_retry = Duration::from_millis(250).min(every);
    let mut conn: Option<PgConnection> = None;
    let mut wait = every;
    let mut retry = first_retry;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        let held = shared.held();
        if held.is_empty() {
            wait = every;
            continue;
        }
        match tokio::time::timeout(every, extend(&shared, &mut conn, &held)).await {
            Ok(Ok(extended)) => {
                wait = every;
                retry = first_retry;
                if extended.len() < held.len() {
                    forget_lost(&shared, held, &extended);
                }
            }
            failed => {
                // A connection that failed, or was cut off mid-statement by
                // the timeout, is not used again.
                conn = None;
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {} ms", every.as_millis()),
                };
                wait = retry;
                retry = (retry * 2).min(every);
                tracing::warn!(%error, leases = held.len(), retry_in_ms = wait.as_millis() as u64,
                    "heartbeat failed; retrying");
            }
        }
    }
    if let Some(conn) = conn {
        let _ = conn.close().await;
    }
}

/// One extension of `held` on the heartbeat's own connection, opened (with
/// the pool's options) when there is none.
async fn extend(
    shared: &Shared,
    conn: &mut Option<PgConnection>,
    held: &[Lease],
) -> sqlx::Result<Vec<i64>> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(PgConnection::connect_with(&shared.pool.connect_options()).await?),
    };
    store::heartbeat(conn, held, shared.settings.lease()).await
}

/// Forgets the leases of `held` that were not extended and are still held:
/// either finished a moment ago (the completer has not forgotten them yet)
/// or really lost; a lost one's completion is refused and logged then.
fn forget_lost(shared: &Shared, held: Vec<Lease>, extended: &[i64]) {
    let extended: HashSet<i64> = extended.iter().copied().collect();
    let now: HashSet<Lease> = shared.held().into_iter().collect();
    let lost: Vec<Lease> = held
        .into_iter()
        .filter(|l| !extended.contains(&l.id) && now.contains(l))
        .collect();
    for lease in &lost {
        tracing::debug!(job_id = lease.id, "lease not extended: finished or lost");
    }
    shared.forget(&lost);
}
