//! The worker registry, `floe.workers`: every SQL statement on it.
//!
//! Each worker process (floe-worker, or floe-api `--with-worker`) keeps one
//! row: written at start and every [`HEARTBEAT`] after, deleted on a clean
//! shutdown. Operators read it to tell whether any worker is alive
//! (`floe doctor`). Times are the database's (`now()`), so the machines'
//! clocks do not matter.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;

/// How often a worker writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A worker is alive while its last heartbeat is younger than this: six
/// heartbeats missed (a database restart or a long pause survives it).
pub const ALIVE_WITHIN: Duration = Duration::from_secs(30);

/// Rows silent this long are deleted by live workers: a crashed worker stays
/// visible for an hour.
pub const PRUNE_AFTER: Duration = Duration::from_secs(3600);

/// What a worker says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Its lease owner (`host:pid:random`, new on every start): the value of
    /// `floe.jobs.lease_owner` on the jobs it holds.
    pub id: String,
    /// The program (`floe-worker`, `floe-api`, …).
    pub name: String,
    /// The machine.
    pub host: String,
    /// The process id.
    pub pid: i32,
    /// floe's version.
    pub version: String,
    /// The queues it claims from.
    pub queues: Vec<String>,
}

/// A registered worker, as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Worker {
    /// Its lease owner.
    pub id: String,
    /// The program.
    pub name: String,
    /// The machine.
    pub host: String,
    /// The process id.
    pub pid: i32,
    /// floe's version.
    pub version: String,
    /// The queues it claims from.
    pub queues: Vec<String>,
    /// When it registered.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Its last heartbeat.
    #[serde(with = "time::serde::rfc3339")]
    pub heartbeat_at: OffsetDateTime,
    /// Seconds since its last heartbeat.
    pub silent_secs: f64,
    /// Whether the last heartbeat is younger than [`ALIVE_WITHIN`].
    pub alive: bool,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Registers a worker, or records its heartbeat when registered (a row
/// deleted meanwhile — pruned during a long pause — is written again).
pub async fn heartbeat(db: impl PgExecutor<'_>, worker: &Registration) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO floe.workers (id, name, host, pid, version, queues)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()"#,
        worker.id,
        worker.name,
        worker.host,
        worker.pid,
        worker.version,
        &worker.queues,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes a worker's row (its clean shutdown).
pub async fn deregister(db: impl PgExecutor<'_>, id: &str) -> sqlx::Result<bool> {
    let deleted = sqlx::query!("DELETE FROM floe.workers WHERE id = $1", id)
        .execute(db)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

/// Deletes the rows of workers silent for longer than `after`; returns how
/// many.
pub async fn prune(db: impl PgExecutor<'_>, after: Duration) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM floe.workers WHERE heartbeat_at < now() - make_interval(secs => $1)",
        secs(after)
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Every registered worker, the most recently heard from first.
pub async fn list(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Worker>> {
    let rows = sqlx::query!(
        r#"SELECT id, name, host, pid, version, queues, started_at, heartbeat_at,
                  extract(epoch FROM now() - heartbeat_at)::float8 AS "silent_secs!",
                  heartbeat_at > now() - make_interval(secs => $1) AS "alive!"
             FROM floe.workers ORDER BY heartbeat_at DESC, id"#,
        secs(ALIVE_WITHIN)
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Worker {
            id: r.id,
            name: r.name,
            host: r.host,
            pid: r.pid,
            version: r.version,
            queues: r.queues,
            started_at: r.started_at,
            heartbeat_at: r.heartbeat_at,
            silent_secs: r.silent_secs.max(0.0),
            alive: r.alive,
        })
        .collect())
}
