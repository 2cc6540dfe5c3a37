//! Every SQL statement on `floe.jobs`. Callers pass a pool, a connection or a
//! transaction (`impl PgExecutor`), so enqueueing can be part of the caller's
//! own transaction: the transactional outbox the workflow layer relies on.
//!
//! Wake-ups: inserts NOTIFY through a statement-level trigger (one NOTIFY per
//! statement and queue, never per job); the statements here that make jobs
//! claimable again (promote, rescue, release, retry) NOTIFY the same way.
//! A transaction begun with [`BEGIN_DEFERRING_WAKEUPS`] NOTIFYs nothing: the
//! trigger gathers its wake-ups, [`gathered_wakeups`] reads them before
//! COMMIT, and the caller sends them once COMMIT has returned. PostgreSQL
//! serialises the commits of notifying transactions (one lock held until the
//! commit record is flushed); the workflow engine's transactions, the
//! busiest writers, so no longer wait on each other
//! (migrations/20261122001600_wake_after_commit.sql has the figures).

use std::time::Duration;

use sqlx::PgExecutor;
use time::OffsetDateTime;

use super::{ClaimKey, ClaimedJob, Enqueued, JobRecord, JobState, Lease, NewJob};

/// Begins a transaction in which inserting jobs NOTIFYs nothing: the insert
/// trigger gathers the wake-ups instead, for [`gathered_wakeups`].
pub const BEGIN_DEFERRING_WAKEUPS: &str = "BEGIN; SET LOCAL floe.wake_after_commit = on";

/// The wake-ups the insert trigger gathered in a transaction begun with
/// [`BEGIN_DEFERRING_WAKEUPS`], as `(channel, payload)`: one
/// [`CHANNEL_AVAILABLE`](super::CHANNEL_AVAILABLE) per queue that got jobs
/// claimable now, and one [`CHANNEL_SCHEDULED`](super::CHANNEL_SCHEDULED) with
/// the earliest future run_at. Read them last, before COMMIT; send them
/// after it (a job's wake-up must not arrive before the job is visible).
pub async fn gathered_wakeups(
    conn: &mut sqlx::PgConnection,
) -> sqlx::Result<Vec<(&'static str, String)>> {
    let row = sqlx::query!(
        r#"SELECT coalesce(nullif(current_setting('floe.wake_available', true), '')::text[], '{}') AS "queues!",
                  nullif(current_setting('floe.wake_scheduled', true), '') AS scheduled"#
    )
    .fetch_one(conn)
    .await?;
    let available = row
        .queues
        .into_iter()
        .map(|q| (super::CHANNEL_AVAILABLE, q));
    let scheduled = row.scheduled.map(|ms| (super::CHANNEL_SCHEDULED, ms));
    Ok(available.chain(scheduled).collect())
}

/// Milliseconds in a duration, for SQL intervals.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Enqueues one job. With a unique key that a waiting job already holds,
/// nothing is inserted and [`Enqueued::Duplicate`] says so.
/// The same INSERT as the SQL function `floe.enqueue` (for psql and
/// triggers), sent directly: calling the function costs ~0.1 ms more per
/// enqueue (measured with floe-bench W3: p50 0.47 ms against 0.35–0.40 ms).
/// `engine/tests/queue_store.rs` checks that the two agree.
pub async fn enqueue(db: impl PgExecutor<'_>, job: &NewJob) -> sqlx::Result<Enqueued> {
    let row = sqlx::query!(
        r#"
        WITH ins AS (
            INSERT INTO floe.jobs (queue, kind, payload, priority, run_at, state, max_attempts, unique_key, trace_id)
            SELECT $1, $2, $3, $4, r, CASE WHEN r <= now() THEN 'available' ELSE 'scheduled' END::floe.job_state, $6, $7,
                   coalesce($8, nullif(current_setting('floe.trace_id', true), ''))
              FROM (SELECT coalesce($5, now()) AS r) t
            ON CONFLICT (queue, kind, unique_key)
               WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
            DO NOTHING
            RETURNING id
        )
        SELECT id AS "id?", true AS "inserted!" FROM ins
        UNION ALL
        SELECT j.id, false FROM floe.jobs j
         WHERE NOT EXISTS (SELECT 1 FROM ins)
           AND j.queue = $1 AND j.kind = $2 AND j.unique_key = $7
           AND j.state IN ('scheduled', 'available')
        "#,
        job.queue,
        job.kind,
        job.payload,
        job.priority,
        job.run_at,
        job.max_attempts,
        job.unique_key,
        job.trace_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(match row {
        Some(r) if r.inserted => Enqueued::New(r.id.unwrap_or_default()),
        Some(r) => Enqueued::Duplicate(r.id),
        // The conflicting job committed after this statement's snapshot.
        None => Enqueued::Duplicate(None),
    })
}

/// Enqueues many jobs in one statement; returns how many were inserted
/// (duplicates of waiting unique keys are skipped).
pub async fn enqueue_many(db: impl PgExecutor<'_>, jobs: &[NewJob]) -> sqlx::Result<u64> {
    let mut queues = Vec::with_capacity(jobs.len());
    let mut kinds = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    let mut priorities = Vec::with_capacity(jobs.len());
    let mut run_ats: Vec<Option<OffsetDateTime>> = Vec::with_capacity(jobs.len());
    let mut max_attempts = Vec::with_capacity(jobs.len());
    let mut unique_keys: Vec<Option<String>> = Vec::with_capacity(jobs.len());
    let mut trace_ids: Vec<Option<&str>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        queues.push(job.queue.clone());
        kinds.push(job.kind.clone());
        payloads.push(job.payload.clone());
        priorities.push(job.priority);
        run_ats.push(job.run_at);
        max_attempts.push(job.max_attempts);
        unique_keys.push(job.unique_key.clone());
        trace_ids.push(job.trace_id.as_deref());
    }
    let result = sqlx::query!(
        r#"
        INSERT INTO floe.jobs (queue, kind, payload, priority, run_at, state, max_attempts, unique_key, trace_id)
        SELECT q, k, p, pr, r, CASE WHEN r <= now() THEN 'available' ELSE 'scheduled' END::floe.job_state, m, u,
               coalesce(tr, nullif(current_setting('floe.trace_id', true), ''))
          FROM (SELECT q, k, p, pr, coalesce(r, now()) AS r, m, u, tr
                  FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int2[], $5::timestamptz[], $6::int4[], $7::text[],
                              $8::text[])
                       AS t(q, k, p, pr, r, m, u, tr)) t
        ON CONFLICT (queue, kind, unique_key)
           WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
        DO NOTHING
        "#,
        &queues,
        &kinds,
        &payloads,
        &priorities,
        &run_ats as &[Option<OffsetDateTime>],
        &max_attempts,
        &unique_keys as &[Option<String>],
        &trace_ids as &[Option<&str>],
    )
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}

/// Claims up to `limit` due jobs of `kinds` on `queue` for `owner`, leased for
/// `lease`, highest priority (lowest number) and oldest first. Jobs locked by
/// a concurrent claim are skipped, never waited for.
pub async fn claim(
    db: impl PgExecutor<'_>,
    queue: &str,
    kinds: &[String],
    owner: &str,
    limit: i64,
    lease: Duration,
) -> sqlx::Result<Vec<ClaimedJob>> {
    claim_after(db, queue, kinds, owner, limit, lease, None).await
}

/// [`claim`], from `after` instead of the head of the queue when given: the
/// jobs of a more urgent priority than `after`'s, then those whose key is
/// above it, never reading the index entries below it. A job that lands
/// below the position in its priority (released by a stopping worker with
/// its `run_at`, enqueued by a transaction that began long before it
/// committed) is left to the next claim from the head; see `ClaimCursor` in
/// the worker.
pub async fn claim_after(
    db: impl PgExecutor<'_>,
    queue: &str,
    kinds: &[String],
    owner: &str,
    limit: i64,
    lease: Duration,
    after: Option<ClaimKey>,
) -> sqlx::Result<Vec<ClaimedJob>> {
    // A function, so that its plan is the ordered index scan whatever the
    // table's statistics say (see the migrations that create it).
    let rows = sqlx::query!(
        r#"
        SELECT id AS "id!", queue AS "queue!", kind AS "kind!", payload AS "payload!",
               priority AS "priority!", attempts AS "attempts!", max_attempts AS "max_attempts!",
               lease_token AS "lease_token!", run_at AS "run_at!", created_at AS "created_at!",
               trace_id
          FROM floe.claim_jobs($1, $2, $3, $4, $5, $6, $7, $8)
        "#,
        queue,
        kinds,
        owner,
        limit,
        millis(lease) as f64,
        after.map(|k| k.priority),
        after.map(|k| k.run_at),
        after.map(|k| k.id),
    )
    .fetch_all(db)
    .await?;
    let mut jobs: Vec<ClaimedJob> = rows
        .into_iter()
        .map(|r| ClaimedJob {
            id: r.id,
            queue: r.queue,
            kind: r.kind,
            payload: r.payload,
            priority: r.priority,
            attempt: r.attempts,
            max_attempts: r.max_attempts,
            lease_token: r.lease_token,
            run_at: r.run_at,
            created_at: r.created_at,
            trace_id: r.trace_id,
        })
        .collect();
    // UPDATE ... RETURNING does not keep the picking order.
    jobs.sort_by_key(ClaimedJob::key);
    Ok(jobs)
}

/// The ids and tokens of `leases`, in id order: statements that lock
/// several jobs lock them in the order given, so the completer, the
/// heartbeat and a release locking overlapping jobs in one order cannot
/// deadlock (W9 saw a few a minute with the order jobs finished in).
fn split(leases: &[Lease]) -> (Vec<i64>, Vec<i64>) {
    let mut pairs: Vec<(i64, i64)> = leases.iter().map(|l| (l.id, l.token)).collect();
    pairs.sort_unstable();
    pairs.into_iter().unzip()
}

/// Completes jobs: deletes each one whose lease is still the one given.
/// Returns the ids completed; the others' leases had been lost (expired and
/// rescued, maybe claimed again), so their completion is refused.
pub async fn complete(db: impl PgExecutor<'_>, leases: &[Lease]) -> sqlx::Result<Vec<i64>> {
    let (ids, tokens) = split(leases);
    sqlx::query_scalar!(
        r#"
        DELETE FROM floe.jobs j
         USING unnest($1::int8[], $2::int8[]) AS c(id, token)
         WHERE j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
        RETURNING j.id
        "#,
        &ids,
        &tokens,
    )
    .fetch_all(db)
    .await
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// `Retrying`, `Available` (retry at once) or `Dead`.
    pub state: JobState,
    /// When it runs again (meaningless when dead).
    pub run_at: OffsetDateTime,
}

/// Records a failed attempt: the job retries after `retry_in`, or dies when
/// that is `None`. Returns `None` when the lease had been lost (fencing).
pub async fn fail(
    db: impl PgExecutor<'_>,
    lease: Lease,
    error: &str,
    retry_in: Option<Duration>,
) -> sqlx::Result<Option<Failed>> {
    let delay = retry_in.map(|d| millis(d) as f64);
    let row = sqlx::query!(
        r#"
        WITH failed AS (
            UPDATE floe.jobs
               SET state = CASE WHEN $3::float8 IS NULL THEN 'dead'
                                WHEN $3 <= 0 THEN 'available'
                                ELSE 'retrying' END::floe.job_state,
                   run_at = CASE WHEN $3 IS NULL THEN run_at
                                 ELSE now() + $3 * interval '1 millisecond' END,
                   last_error = $4,
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_token = $2 AND state = 'running'
            RETURNING state, run_at, queue
        )
        SELECT state::text AS "state!", run_at AS "run_at!",
               (SELECT count(pg_notify('floe_jobs_available', queue)) FROM failed WHERE state = 'available') AS "notified!"
          FROM failed
        "#,
        lease.id,
        lease.token,
        delay,
        error,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Failed {
        state: r.state.parse().unwrap_or(JobState::Dead),
        run_at: r.run_at,
    }))
}

/// Extends the leases still held by `owner` to `lease` from now; returns the
/// ids extended (a missing one was lost).
pub async fn heartbeat(
    db: impl PgExecutor<'_>,
    leases: &[Lease],
    lease: Duration,
) -> sqlx::Result<Vec<i64>> {
    let (ids, tokens) = split(leases);
    sqlx::query_scalar!(
        r#"
        UPDATE floe.jobs j
           SET lease_expires_at = now() + $3 * interval '1 millisecond'
          FROM unnest($1::int8[], $2::int8[]) AS c(id, token)
         WHERE j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
        RETURNING j.id
        "#,
        &ids,
        &tokens,
        millis(lease) as f64,
    )
    .fetch_all(db)
    .await
}

/// Gives claimed jobs back without counting the attempt (a worker shutting
/// down with jobs it never started). Returns how many were released.
pub async fn release(db: impl PgExecutor<'_>, leases: &[Lease]) -> sqlx::Result<u64> {
    let (ids, tokens) = split(leases);
    let row = sqlx::query!(
        r#"
        WITH released AS (
            UPDATE floe.jobs j
               SET state = 'available', attempts = greatest(j.attempts - 1, 0),
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
              FROM unnest($1::int8[], $2::int8[]) AS c(id, token)
             WHERE j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
            RETURNING j.queue
        )
        SELECT count(*) AS "released!",
               (SELECT count(pg_notify('floe_jobs_available', q)) FROM (SELECT DISTINCT queue AS q FROM released) d) AS "notified!"
          FROM released
        "#,
        &ids,
        &tokens,
    )
    .fetch_one(db)
    .await?;
    Ok(row.released as u64)
}

/// Takes back up to `limit` jobs whose lease expired (their worker is
/// presumed dead): available again, or dead when out of attempts. Returns
/// how many were rescued.
pub async fn rescue_expired(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<u64> {
    let row = sqlx::query!(
        r#"
        WITH expired AS (
            SELECT id FROM floe.jobs
             WHERE state = 'running' AND lease_expires_at < now()
             ORDER BY lease_expires_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
        ), rescued AS (
            UPDATE floe.jobs j
               SET state = CASE WHEN j.attempts < j.max_attempts THEN 'available' ELSE 'dead' END::floe.job_state,
                   run_at = now(),
                   last_error = 'lease expired: worker ' || j.lease_owner || ' presumed dead',
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
              FROM expired
             WHERE j.id = expired.id
            RETURNING j.queue, j.state
        )
        SELECT count(*) AS "rescued!",
               (SELECT count(pg_notify('floe_jobs_available', q))
                  FROM (SELECT DISTINCT queue AS q FROM rescued WHERE state = 'available') d) AS "notified!"
          FROM rescued
        "#,
        limit,
    )
    .fetch_one(db)
    .await?;
    Ok(row.rescued as u64)
}

/// Makes up to `limit` scheduled or retrying jobs whose time has come
/// available. Returns how many.
pub async fn promote_due(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<u64> {
    let row = sqlx::query!(
        r#"
        WITH due AS (
            SELECT id FROM floe.jobs
             WHERE state IN ('scheduled', 'retrying') AND run_at <= now()
             ORDER BY run_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
        ), promoted AS (
            UPDATE floe.jobs j SET state = 'available'
              FROM due WHERE j.id = due.id
            RETURNING j.queue
        )
        SELECT count(*) AS "promoted!",
               (SELECT count(pg_notify('floe_jobs_available', q)) FROM (SELECT DISTINCT queue AS q FROM promoted) d) AS "notified!"
          FROM promoted
        "#,
        limit,
    )
    .fetch_one(db)
    .await?;
    Ok(row.promoted as u64)
}

/// When the next scheduled or retrying job falls due, if any.
pub async fn next_due_at(db: impl PgExecutor<'_>) -> sqlx::Result<Option<OffsetDateTime>> {
    sqlx::query_scalar!(
        "SELECT min(run_at) FROM floe.jobs WHERE state IN ('scheduled', 'retrying')"
    )
    .fetch_one(db)
    .await
}

/// When the next lease expires, if any job is running.
pub async fn next_lease_expiry(db: impl PgExecutor<'_>) -> sqlx::Result<Option<OffsetDateTime>> {
    sqlx::query_scalar!("SELECT min(lease_expires_at) FROM floe.jobs WHERE state = 'running'")
        .fetch_one(db)
        .await
}

/// An operator's retry: a dead (or retrying) job becomes available now with
/// a fresh attempt budget. False when no such job is dead or retrying.
pub async fn retry_now(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<bool> {
    // One implementation for psql and for Rust: the migration's function.
    let retried = sqlx::query_scalar!(r#"SELECT floe.retry_job($1) AS "retried!""#, id)
        .fetch_one(db)
        .await?;
    Ok(retried)
}

/// One job as an operator sees it.
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<JobRecord>> {
    let row = sqlx::query!(
        r#"
        SELECT id, queue, kind, state::text AS "state!", attempts, max_attempts, run_at, last_error, lease_owner
          FROM floe.jobs WHERE id = $1
        "#,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| JobRecord {
        id: r.id,
        queue: r.queue,
        kind: r.kind,
        state: r.state.parse().unwrap_or(JobState::Dead),
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        run_at: r.run_at,
        last_error: r.last_error,
        lease_owner: r.lease_owner,
    }))
}

/// How many jobs are in each state.
pub async fn count_by_state(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(JobState, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT state::text AS "state!", count(*) AS "n!" FROM floe.jobs GROUP BY state"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.state.parse().ok()?, r.n)))
        .collect())
}

/// Jobs in one queue and state, and how old the oldest is.
#[derive(Debug, Clone, PartialEq)]
pub struct Depth {
    /// The queue.
    pub queue: String,
    /// The state.
    pub state: JobState,
    /// How many jobs.
    pub jobs: i64,
    /// Seconds since the earliest `run_at` among them (0 when it is ahead).
    pub oldest_seconds: f64,
}

/// How many jobs each queue holds in each state, and the age of the oldest
/// (what the `floe_queue_*` gauges show). One pass over the table: run it
/// every few seconds, not per request.
pub async fn depth(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Depth>> {
    let rows = sqlx::query!(
        r#"SELECT queue, state::text AS "state!", count(*) AS "jobs!",
                  greatest(extract(epoch FROM now() - min(run_at)), 0)::float8 AS "oldest!"
             FROM floe.jobs GROUP BY queue, state"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Depth {
                queue: r.queue,
                state: r.state.parse().ok()?,
                jobs: r.jobs,
                oldest_seconds: r.oldest,
            })
        })
        .collect())
}
