//! What the web inspector reads, and its one action: every SQL statement
//! behind the operator's inspector routes (counts for the filters, a
//! workflow's activities and LLM calls, the job list, retrying a job, the
//! dashboard). Read-only except [`retry_job`].
//!
//! Functions that need more than one statement take an [`Acquire`]r (a pool,
//! a connection or a transaction).

use serde_json::Value;
use sqlx::{Acquire, PgExecutor, Postgres};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::queue::{self, JobState};
use crate::workflow::{ACTIVITY_JOB, Status};

/// Errors of the inspector's queries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No workflow with that id.
    #[error("no workflow {0}")]
    UnknownWorkflow(Uuid),
    /// No job with that id.
    #[error("no job {0}")]
    UnknownJob(i64),
    /// The job is neither dead nor retrying, so there is nothing to retry.
    #[error("job {id} is {state}: only a dead or retrying job can be retried")]
    NotRetryable {
        /// The job.
        id: i64,
        /// Its state.
        state: JobState,
    },
    /// A database error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Results of the inspector's queries.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Workflows by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Activities or children in flight.
    pub running: i64,
    /// Nothing in flight: waiting for a signal or the deadline.
    pub waiting: i64,
    /// Finished with an output.
    pub completed: i64,
    /// Finished with an error.
    pub failed: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// How many workflows there are, and the values the inspector's filters
/// offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// All workflows (of the kind, when one is given).
    pub total: i64,
    /// By status.
    pub by_status: StatusCounts,
    /// Open ones whose deadline has passed (no timer loop fired it yet).
    pub overdue: i64,
    /// Waiting on a signal from a person: status `waiting` (nothing in
    /// flight), the deadline, if any, being its time limit. The same
    /// workflows as the list's `waiting=true`.
    pub waiting_on_person: i64,
    /// Every kind present, sorted (never narrowed by the kind asked for).
    pub kinds: Vec<String>,
    /// Every state name present (of the kind, when one is given), sorted.
    pub states: Vec<String>,
}

/// Counts workflows, all of them or those of `kind`. The census by status
/// and state reads every workflow of the kind once; the kinds come from a
/// loose scan of the `(kind, status)` index, one probe per kind.
pub async fn counts(db: impl PgExecutor<'_>, kind: Option<&str>) -> Result<Counts> {
    let r = sqlx::query!(
        r#"
        WITH RECURSIVE census AS (
            SELECT status, state, count(*) AS n FROM floe.workflows
             WHERE ($1::text IS NULL OR kind = $1)
             GROUP BY status, state
        ), kinds(kind) AS (
            SELECT min(kind) FROM floe.workflows
            UNION ALL
            SELECT (SELECT min(w.kind) FROM floe.workflows w WHERE w.kind > kinds.kind)
              FROM kinds WHERE kinds.kind IS NOT NULL
        )
        SELECT coalesce((SELECT sum(n) FROM census), 0)::int8 AS "total!",
               coalesce((SELECT sum(n) FROM census WHERE status = 'running'), 0)::int8 AS "running!",
               coalesce((SELECT sum(n) FROM census WHERE status = 'waiting'), 0)::int8 AS "waiting!",
               coalesce((SELECT sum(n) FROM census WHERE status = 'completed'), 0)::int8 AS "completed!",
               coalesce((SELECT sum(n) FROM census WHERE status = 'failed'), 0)::int8 AS "failed!",
               coalesce((SELECT sum(n) FROM census WHERE status = 'cancelled'), 0)::int8 AS "cancelled!",
               (SELECT count(*) FROM floe.workflows
                 WHERE deadline < now() AND status IN ('running', 'waiting')
                   AND ($1::text IS NULL OR kind = $1)) AS "overdue!",
               coalesce((SELECT array_agg(DISTINCT state ORDER BY state) FROM census), '{}') AS "states!",
               coalesce((SELECT array_agg(kind ORDER BY kind) FROM kinds WHERE kind IS NOT NULL), '{}')
                   AS "kinds!"
        "#,
        kind,
    )
    .fetch_one(db)
    .await?;
    Ok(Counts {
        total: r.total,
        by_status: StatusCounts {
            running: r.running,
            waiting: r.waiting,
            completed: r.completed,
            failed: r.failed,
            cancelled: r.cancelled,
        },
        overdue: r.overdue,
        waiting_on_person: r.waiting,
        kinds: r.kinds,
        states: r.states,
    })
}

/// A job's live state: as the inspector shows it beside its activity,
/// and in the job list.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityJob {
    /// Id.
    pub id: i64,
    /// State.
    pub state: JobState,
    /// Attempts made (the one under way included, when running).
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it is due: for a `retrying` job, its next attempt.
    pub run_at: OffsetDateTime,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The worker holding it, when running.
    pub lease_owner: Option<String>,
    /// Until when, unless extended.
    pub lease_expires_at: Option<OffsetDateTime>,
}

/// An activity a workflow asked for, with its live job.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// Its id within the workflow.
    pub activity_id: String,
    /// The registered activity.
    pub name: String,
    /// `scheduled`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Attempts made: once it has a result, the attempts it took; while
    /// scheduled, its job's attempts so far.
    pub attempts: i32,
    /// Its input.
    pub input: Value,
    /// Its output, once completed.
    pub result: Option<Value>,
    /// Why it failed, once failed.
    pub error: Option<String>,
    /// When the transition asked for it.
    pub created_at: OffsetDateTime,
    /// When its result was recorded.
    pub finished_at: Option<OffsetDateTime>,
    /// Its job, while one is live (the queue deletes a job that succeeded).
    pub job: Option<ActivityJob>,
}

/// A workflow's activities, oldest first, each with its live job if any.
/// Activity jobs are found by their payload's workflow id in a scan of the
/// jobs of kind [`ACTIVITY_JOB`]: the queue table holds live work only.
pub async fn activities<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    workflow_id: Uuid,
) -> Result<Vec<Activity>> {
    let mut conn = db.acquire().await?;
    require_workflow(&mut *conn, workflow_id).await?;
    let rows = sqlx::query!(
        r#"
        WITH jobs AS (
            SELECT DISTINCT ON (payload->>'activity_id') payload->>'activity_id' AS activity_id,
                   id, state, attempts, max_attempts, run_at, last_error, lease_owner, lease_expires_at
              FROM floe.jobs
             WHERE kind = $2 AND payload->>'workflow_id' = $1::uuid::text
             ORDER BY payload->>'activity_id', id DESC
        )
        SELECT a.activity_id, a.name, a.status, a.input, a.result, a.error, a.created_at, a.finished_at,
               CASE WHEN a.status = 'scheduled' AND j.id IS NOT NULL THEN greatest(a.attempts, j.attempts)
                    ELSE a.attempts END AS "attempts!",
               j.id AS "job_id?", j.state::text AS "job_state?", j.attempts AS "job_attempts?",
               j.max_attempts AS "job_max_attempts?", j.run_at AS "job_run_at?", j.last_error AS "job_last_error?",
               j.lease_owner AS "job_lease_owner?", j.lease_expires_at AS "job_lease_expires_at?"
          FROM floe.activities a
          LEFT JOIN jobs j ON j.activity_id = a.activity_id
         WHERE a.workflow_id = $1
         ORDER BY a.created_at, a.activity_id
        "#,
        workflow_id,
        ACTIVITY_JOB,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let job = match (
                r.job_id,
                r.job_state,
                r.job_attempts,
                r.job_max_attempts,
                r.job_run_at,
            ) {
                (Some(id), Some(state), Some(attempts), Some(max_attempts), Some(run_at)) => {
                    Some(ActivityJob {
                        id,
                        state: state.parse().unwrap_or(JobState::Dead),
                        attempts,
                        max_attempts,
                        run_at,
                        last_error: r.job_last_error,
                        lease_owner: r.job_lease_owner,
                        lease_expires_at: r.job_lease_expires_at,
                    })
                }
                _ => None,
            };
            Activity {
                activity_id: r.activity_id,
                name: r.name,
                status: r.status,
                attempts: r.attempts,
                input: r.input,
                result: r.result,
                error: r.error,
                created_at: r.created_at,
                finished_at: r.finished_at,
                job,
            }
        })
        .collect())
}

/// One LLM call, without its request and response.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmCall {
    /// Id (the ledger's order).
    pub id: i64,
    /// The activity that made it.
    pub activity_id: Option<String>,
    /// That activity's attempt.
    pub attempt: Option<i32>,
    /// Its place within the attempt, from 0.
    pub step: i32,
    /// Who asked: an agent, or `memory.*`.
    pub agent: String,
    /// The model.
    pub model: String,
    /// `ok`, `error`, `rate_limited` or `timeout`.
    pub status: String,
    /// The provider's HTTP status, when there was one.
    pub http_status: Option<i32>,
    /// Prompt tokens.
    pub tokens_in: i32,
    /// Completion tokens.
    pub tokens_out: i32,
    /// How long it took.
    pub latency_ms: i32,
    /// What it cost in US dollars; `None` when the model had no price.
    pub cost_usd: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was made.
    pub created_at: OffsetDateTime,
}

/// A workflow's LLM calls summed up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmTotal {
    /// Calls.
    pub calls: i64,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// US dollars (calls without a price add nothing).
    pub cost_usd: f64,
}

/// A workflow's LLM calls, oldest first, and their totals (summed exactly,
/// in `numeric`, before becoming a float).
pub async fn llm_calls<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    workflow_id: Uuid,
) -> Result<(Vec<LlmCall>, LlmTotal)> {
    let mut conn = db.acquire().await?;
    require_workflow(&mut *conn, workflow_id).await?;
    let calls = sqlx::query_as!(
        LlmCall,
        r#"SELECT id, activity_id, attempt, step, agent, model, status, http_status, tokens_in, tokens_out,
                  latency_ms, cost_usd::float8 AS cost_usd, error, created_at
             FROM floe.llm_calls WHERE workflow_id = $1 ORDER BY id"#,
        workflow_id,
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_as!(
        LlmTotal,
        r#"SELECT count(*) AS "calls!", coalesce(sum(tokens_in), 0)::int8 AS "tokens_in!",
                  coalesce(sum(tokens_out), 0)::int8 AS "tokens_out!",
                  coalesce(sum(cost_usd), 0)::float8 AS "cost_usd!"
             FROM floe.llm_calls WHERE workflow_id = $1"#,
        workflow_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((calls, total))
}

/// Which jobs [`jobs`] returns; every filter left `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs whose payload names this workflow (advance and activity
    /// jobs).
    pub workflow_id: Option<Uuid>,
    /// Only ids below this one: the keyset cursor (the last id of the
    /// previous page).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// A job as an operator sees it in a list: its live state, and where it
/// belongs.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its state, attempts and lease.
    pub live: ActivityJob,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Enqueued.
    pub created_at: OffsetDateTime,
    /// The workflow its payload names, if any.
    pub workflow_id: Option<Uuid>,
    /// The activity its payload names, if any.
    pub activity_id: Option<String>,
}

/// Jobs matching `filter`, newest first; page on with `before` set to the
/// last id returned.
pub async fn jobs(db: impl PgExecutor<'_>, filter: &JobFilter) -> Result<Vec<Job>> {
    let rows = sqlx::query!(
        r#"
        SELECT id, queue, kind, state::text AS "state!", attempts, max_attempts, run_at, last_error, lease_owner,
               lease_expires_at, created_at,
               CASE WHEN payload->>'workflow_id'
                         ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
                    THEN (payload->>'workflow_id')::uuid END AS workflow_id,
               CASE WHEN jsonb_typeof(payload->'activity_id') = 'string' THEN payload->>'activity_id' END
                   AS activity_id
          FROM floe.jobs
         WHERE ($1::text IS NULL OR state = $1::text::floe.job_state)
           AND ($2::text IS NULL OR kind = $2)
           AND ($3::uuid IS NULL OR payload->>'workflow_id' = $3::text)
           AND ($4::int8 IS NULL OR id < $4)
         ORDER BY id DESC
         LIMIT $5
        "#,
        filter.state.map(JobState::as_str),
        filter.kind,
        filter.workflow_id,
        filter.before,
        filter.limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Job {
            live: ActivityJob {
                id: r.id,
                state: r.state.parse().unwrap_or(JobState::Dead),
                attempts: r.attempts,
                max_attempts: r.max_attempts,
                run_at: r.run_at,
                last_error: r.last_error,
                lease_owner: r.lease_owner,
                lease_expires_at: r.lease_expires_at,
            },
            queue: r.queue,
            kind: r.kind,
            created_at: r.created_at,
            workflow_id: r.workflow_id,
            activity_id: r.activity_id,
        })
        .collect())
}

/// An operator's retry of a dead or retrying job: available now, with a
/// fresh attempt budget (`floe.retry_job`, which also wakes the workers).
pub async fn retry_job<'c>(db: impl Acquire<'c, Database = Postgres>, id: i64) -> Result<()> {
    let mut conn = db.acquire().await?;
    if queue::store::retry_now(&mut *conn, id).await? {
        tracing::info!(job_id = id, "job retried by an operator");
        return Ok(());
    }
    match queue::store::get(&mut *conn, id).await? {
        None => Err(Error::UnknownJob(id)),
        Some(job) => Err(Error::NotRetryable {
            id,
            state: job.state,
        }),
    }
}

/// How many workflows are in one kind, state and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowGroup {
    /// Kind.
    pub kind: String,
    /// The definition's state name.
    pub state: String,
    /// Status.
    pub status: Status,
    /// How many.
    pub count: i64,
}

/// How many jobs are in one queue, kind and state, and how old the oldest
/// is.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueGroup {
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// State.
    pub state: JobState,
    /// How many.
    pub count: i64,
    /// Seconds since the oldest of them was enqueued.
    pub oldest_age_seconds: f64,
}

/// What finished and happened in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minute {
    /// The minute's start.
    pub minute: OffsetDateTime,
    /// Workflows that completed in it.
    pub completed: i64,
    /// Workflows that failed in it.
    pub failed: i64,
    /// Workflows cancelled in it.
    pub cancelled: i64,
    /// Transitions applied (history entries).
    pub transitions: i64,
    /// Activities that failed for good (their failure recorded and applied).
    pub activities_failed: i64,
}

/// LLM spend on one day (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct SpendDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Calls.
    pub calls: i64,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// US dollars (calls without a price add nothing).
    pub cost_usd: f64,
}

/// The operator's dashboard, read in one transaction (so every part agrees
/// on `now()`, which is `generated_at`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// When it was read.
    pub generated_at: OffsetDateTime,
    /// Every workflow, by kind, state and status.
    pub workflows: Vec<WorkflowGroup>,
    /// Every live job, by queue, kind and state.
    pub queue: Vec<QueueGroup>,
    /// The last hour, one entry per minute, oldest first (exactly 60; the
    /// last is the current, partial minute).
    pub throughput: Vec<Minute>,
    /// The last 30 days (UTC) that had calls, oldest first.
    pub llm_spend: Vec<SpendDay>,
}

/// Reads the dashboard. The census reads every workflow and every live job;
/// the throughput reads the last hour through the indexes of migration
/// `20261122000700_inspector_indexes` (history by `applied_at`, finished
/// workflows by `finished_at`); the spend uses `llm_calls_created`.
pub async fn dashboard<'c>(db: impl Acquire<'c, Database = Postgres>) -> Result<Dashboard> {
    let mut tx = db.begin().await?;
    let generated_at = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(&mut *tx)
        .await?;
    let workflows = sqlx::query!(
        r#"SELECT kind, state, status::text AS "status!", count(*) AS "count!"
             FROM floe.workflows GROUP BY kind, state, status ORDER BY kind, state, status"#
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| WorkflowGroup {
        kind: r.kind,
        state: r.state,
        status: r.status.parse().unwrap_or(Status::Failed),
        count: r.count,
    })
    .collect();
    let queue = sqlx::query!(
        r#"SELECT queue, kind, state::text AS "state!", count(*) AS "count!",
                  greatest(extract(epoch FROM now() - min(created_at)), 0)::float8 AS "oldest_age_seconds!"
             FROM floe.jobs GROUP BY queue, kind, state ORDER BY queue, kind, state"#
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| QueueGroup {
        queue: r.queue,
        kind: r.kind,
        state: r.state.parse().unwrap_or(JobState::Dead),
        count: r.count,
        oldest_age_seconds: r.oldest_age_seconds,
    })
    .collect();
    // A failed activity's result is recorded and applied to its workflow in
    // one transaction, so its history entry's applied_at is its finished_at:
    // counting those entries reads the history's BRIN index instead of
    // needing an index on floe.activities (see the migration).
    let throughput = sqlx::query_as!(
        Minute,
        r#"
        WITH buckets AS (
            SELECT generate_series(date_trunc('minute', now()) - interval '59 minutes',
                                   date_trunc('minute', now()), interval '1 minute') AS minute
        ), finished AS (
            SELECT date_trunc('minute', finished_at) AS minute,
                   count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'cancelled') AS cancelled
              FROM floe.workflows
             WHERE finished_at >= date_trunc('minute', now()) - interval '59 minutes'
             GROUP BY 1
        ), applied AS (
            SELECT date_trunc('minute', applied_at) AS minute, count(*) AS transitions,
                   count(*) FILTER (WHERE event = 'activity' AND payload ? 'error') AS activities_failed
              FROM floe.history
             WHERE applied_at >= date_trunc('minute', now()) - interval '59 minutes'
             GROUP BY 1
        )
        SELECT b.minute AS "minute!",
               coalesce(f.completed, 0) AS "completed!", coalesce(f.failed, 0) AS "failed!",
               coalesce(f.cancelled, 0) AS "cancelled!", coalesce(a.transitions, 0) AS "transitions!",
               coalesce(a.activities_failed, 0) AS "activities_failed!"
          FROM buckets b
          LEFT JOIN finished f ON f.minute = b.minute
          LEFT JOIN applied a ON a.minute = b.minute
         ORDER BY b.minute
        "#
    )
    .fetch_all(&mut *tx)
    .await?;
    let llm_spend = sqlx::query_as!(
        SpendDay,
        r#"
        SELECT to_char(day, 'YYYY-MM-DD') AS "day!", calls AS "calls!", tokens_in AS "tokens_in!",
               tokens_out AS "tokens_out!", cost_usd AS "cost_usd!"
          FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS calls,
                       coalesce(sum(tokens_in), 0)::int8 AS tokens_in,
                       coalesce(sum(tokens_out), 0)::int8 AS tokens_out,
                       coalesce(sum(cost_usd), 0)::float8 AS cost_usd
                  FROM floe.llm_calls
                 WHERE created_at >= ((now() AT TIME ZONE 'UTC')::date - 29)::timestamp AT TIME ZONE 'UTC'
                 GROUP BY 1) d
         ORDER BY day
        "#
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Dashboard {
        generated_at,
        workflows,
        queue,
        throughput,
        llm_spend,
    })
}

/// `Err(UnknownWorkflow)` unless the workflow exists.
async fn require_workflow(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    let found = sqlx::query_scalar!(
        r#"SELECT true AS "found!" FROM floe.workflows WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::UnknownWorkflow(id)),
    }
}
