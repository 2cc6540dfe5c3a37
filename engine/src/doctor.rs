//! What an operator's health check reads (`floe doctor`, `floe migrate
//! --status`): the server, the migrations, work that is stuck and the age of
//! the backlog. Read-only; every statement is here. Judging the figures (ok,
//! warning, failure) is the caller's business.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::db::MIGRATOR;

/// The server floe talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// `server_version`, e.g. `16.4 (Debian 16.4-1)`.
    pub version: String,
    /// The database connected to.
    pub database: String,
}

/// Which server and database the connection reached.
pub async fn server(db: impl PgExecutor<'_>) -> sqlx::Result<Server> {
    let r = sqlx::query!(
        r#"SELECT current_setting('server_version') AS "version!", current_database() AS "database!""#
    )
    .fetch_one(db)
    .await?;
    Ok(Server {
        version: r.version,
        database: r.database,
    })
}

/// Where one migration stands in the database, against this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationState {
    /// Applied, and the same as this build's.
    Applied,
    /// This build has it; the database does not.
    Pending,
    /// Started and did not finish (`success = false`): migrating stops here
    /// until an operator repairs it.
    Failed,
    /// Applied, but this build's file differs from what was applied (an
    /// edited migration).
    Changed,
    /// Applied, but this build does not have it (a newer build migrated).
    Unknown,
}

impl MigrationState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Changed => "changed",
            Self::Unknown => "unknown",
        }
    }
}

/// One migration, of this build or of the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migration {
    /// Its version (`YYYYMMDDHHMMSS`).
    pub version: i64,
    /// Its description (the file name's words).
    pub description: String,
    /// Where it stands.
    pub state: MigrationState,
    /// When it was applied, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub installed_on: Option<OffsetDateTime>,
}

/// A row of sqlx's migration bookkeeping.
struct Applied {
    version: i64,
    description: String,
    success: bool,
    checksum: Vec<u8>,
    installed_on: OffsetDateTime,
}

/// This build's migrations and the database's, merged, by version. A
/// database never migrated (no bookkeeping table yet) has every migration
/// pending.
pub async fn migrations(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Migration>> {
    // sqlx's migrator owns this table, so it does not exist where `.sqlx/`
    // is prepared (scripts/sqlx-prepare applies the files with psql): a
    // query checked at run time.
    let applied = sqlx::query_as::<_, (i64, String, bool, Vec<u8>, OffsetDateTime)>(
        "SELECT version, description, success, checksum, installed_on FROM floe._sqlx_migrations ORDER BY version",
    )
    .fetch_all(db)
    .await
    .map(|rows| {
        Some(
            rows.into_iter()
                .map(|(version, description, success, checksum, installed_on)| Applied {
                    version,
                    description,
                    success,
                    checksum,
                    installed_on,
                })
                .collect::<Vec<_>>(),
        )
    })
    .or_else(|e| match &e {
        // No table (42P01) or no schema (3F000) yet: nothing is applied.
        sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("42P01" | "3F000")) => {
            Ok(None)
        }
        _ => Err(e),
    })?
    .unwrap_or_default();
    let mut out: Vec<Migration> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| {
            let row = applied.iter().find(|a| a.version == m.version);
            let state = match row {
                None => MigrationState::Pending,
                Some(a) if !a.success => MigrationState::Failed,
                Some(a) if a.checksum != m.checksum.as_ref() => MigrationState::Changed,
                Some(_) => MigrationState::Applied,
            };
            Migration {
                version: m.version,
                description: m.description.to_string(),
                state,
                installed_on: row.map(|a| a.installed_on),
            }
        })
        .collect();
    for a in &applied {
        if !out.iter().any(|m| m.version == a.version) {
            out.push(Migration {
                version: a.version,
                description: a.description.clone(),
                state: if a.success {
                    MigrationState::Unknown
                } else {
                    MigrationState::Failed
                },
                installed_on: Some(a.installed_on),
            });
        }
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

/// Work that should be moving and is not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stuck {
    /// Open workflows whose deadline passed more than the threshold ago: no
    /// scheduler fired it (no worker runs, or none can reach them).
    pub overdue: i64,
    /// Seconds the most overdue of them is late.
    pub most_overdue_secs: Option<f64>,
    /// Running jobs whose lease expired more than the threshold ago: their
    /// worker is gone and no rescuer took them back.
    pub expired_leases: i64,
    /// Seconds since the oldest of those leases expired.
    pub oldest_expiry_secs: Option<f64>,
    /// The owners of those leases (at most ten).
    pub expired_owners: Vec<String>,
    /// Dead jobs: out of attempts, kept for an operator to retry or delete.
    pub dead_jobs: i64,
    /// Workflows that failed within the window.
    pub failed_workflows: i64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Counts stuck work: deadlines and leases overdue by more than `threshold`,
/// dead jobs, and workflows failed within `failed_within`.
pub async fn stuck(
    db: impl PgExecutor<'_>,
    threshold: Duration,
    failed_within: Duration,
) -> sqlx::Result<Stuck> {
    let r = sqlx::query!(
        r#"
        WITH overdue AS (
            SELECT count(*) AS n, extract(epoch FROM now() - min(deadline))::float8 AS worst
              FROM floe.workflows
             WHERE status IN ('running', 'waiting') AND deadline < now() - make_interval(secs => $1)
        ), expired AS (
            SELECT count(*) AS n, extract(epoch FROM now() - min(lease_expires_at))::float8 AS worst,
                   (array_agg(DISTINCT lease_owner))[1:10] AS owners
              FROM floe.jobs
             WHERE state = 'running' AND lease_expires_at < now() - make_interval(secs => $1)
        )
        SELECT overdue.n AS "overdue!", overdue.worst AS most_overdue,
               expired.n AS "expired!", expired.worst AS oldest_expiry,
               coalesce(expired.owners, '{}') AS "owners!",
               (SELECT count(*) FROM floe.jobs WHERE state = 'dead') AS "dead!",
               (SELECT count(*) FROM floe.workflows
                 WHERE finished_at > now() - make_interval(secs => $2) AND status = 'failed') AS "failed!"
          FROM overdue, expired
        "#,
        secs(threshold),
        secs(failed_within),
    )
    .fetch_one(db)
    .await?;
    Ok(Stuck {
        overdue: r.overdue,
        most_overdue_secs: r.most_overdue,
        expired_leases: r.expired,
        oldest_expiry_secs: r.oldest_expiry,
        expired_owners: r.owners,
        dead_jobs: r.dead,
        failed_workflows: r.failed,
    })
}

/// Work waiting to be picked up, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backlog {
    /// Jobs that could run now: available, or scheduled or retrying with a
    /// `run_at` in the past.
    pub jobs_waiting: i64,
    /// Seconds the longest-waiting of them has been due.
    pub oldest_job_secs: Option<f64>,
    /// Inbox events not yet applied to their workflow.
    pub pending_events: i64,
    /// Seconds the oldest of them has waited.
    pub oldest_event_secs: Option<f64>,
}

/// The queue's and the inboxes' backlog.
pub async fn backlog(db: impl PgExecutor<'_>) -> sqlx::Result<Backlog> {
    let r = sqlx::query!(
        r#"
        WITH jobs AS (
            SELECT count(*) AS n, extract(epoch FROM now() - min(run_at))::float8 AS oldest
              FROM floe.jobs
             WHERE state = 'available' OR (state IN ('scheduled', 'retrying') AND run_at <= now())
        ), events AS (
            SELECT count(*) AS n, extract(epoch FROM now() - min(i.created_at))::float8 AS oldest
              FROM floe.workflows w
              JOIN floe.inbox i ON i.workflow_id = w.id AND i.seq > w.applied_seq
             WHERE w.next_seq > w.applied_seq
        )
        SELECT jobs.n AS "jobs!", jobs.oldest AS oldest_job, events.n AS "events!", events.oldest AS oldest_event
          FROM jobs, events
        "#
    )
    .fetch_one(db)
    .await?;
    Ok(Backlog {
        jobs_waiting: r.jobs,
        oldest_job_secs: r.oldest_job.map(|s| s.max(0.0)),
        pending_events: r.events,
        oldest_event_secs: r.oldest_event.map(|s| s.max(0.0)),
    })
}

/// A transaction open long enough to hold back vacuum: while it has a
/// snapshot or a transaction id, no row version deleted after it started
/// can be removed, so the queue's dead jobs pile up and every claim walks
/// them (docs/BENCHMARKS.md, W9: a 5-minute idle transaction cut completion
/// from 8,500 to 770 jobs/s).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OldTransaction {
    /// The session's process id; `None` for a prepared transaction.
    pub pid: Option<i32>,
    /// Who: the session's `application_name` and user, or the prepared
    /// transaction's name.
    pub who: String,
    /// The session's state (`idle in transaction`, `active`, …) or
    /// `prepared`.
    pub state: String,
    /// Seconds it has been open.
    pub open_secs: f64,
}

/// Sessions of this database (and prepared transactions) whose transaction
/// has been open for more than `threshold` and holds back vacuum, the
/// oldest first. Only client sessions count: a vacuum's own snapshot does
/// not hold back other vacuums. Without `pg_read_all_stats`, other roles'
/// sessions show no transaction start and are not seen.
pub async fn old_transactions(
    db: impl PgExecutor<'_>,
    threshold: Duration,
) -> sqlx::Result<Vec<OldTransaction>> {
    let rows = sqlx::query!(
        r#"
        SELECT pid, coalesce(nullif(application_name, ''), 'no application name') || ' as ' || coalesce(usename::text, '?') AS "who!",
               coalesce(state, 'unknown') AS "state!",
               extract(epoch FROM now() - xact_start)::float8 AS "open_secs!"
          FROM pg_stat_activity
         WHERE datname = current_database() AND backend_type = 'client backend'
           AND pid <> pg_backend_pid()
           AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
           AND xact_start < now() - make_interval(secs => $1)
        UNION ALL
        SELECT NULL, 'prepared transaction ' || gid || ' as ' || owner::text, 'prepared',
               extract(epoch FROM now() - prepared)::float8
          FROM pg_prepared_xacts
         WHERE database = current_database() AND prepared < now() - make_interval(secs => $1)
         ORDER BY 4 DESC
        "#,
        secs(threshold),
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| OldTransaction {
            pid: r.pid,
            who: r.who,
            state: r.state,
            open_secs: r.open_secs,
        })
        .collect())
}
