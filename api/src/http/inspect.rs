//! The web inspector's API, for operators: counts for its filters, a
//! workflow's activities and LLM calls, the job list and retrying a job, and
//! the dashboard. Every route here requires the operator token; the SQL is
//! in [`floe_engine::inspect`]; see `docs/api.md`.

use axum::extract::State;
use floe_engine::inspect::{self, JobFilter};
use floe_engine::queue::JobState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Result};
use super::extract::{Json, Path, Query};
use super::state::AppState;
use super::workflows::WorkflowStatus;

/// The OpenAPI tag of these routes.
pub const TAG: &str = "inspect";

/// Page size of the job list when none is asked for, and the largest allowed.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

impl From<inspect::Error> for ApiError {
    fn from(e: inspect::Error) -> Self {
        use inspect::Error;
        match e {
            Error::UnknownWorkflow(_) | Error::UnknownJob(_) => Self::NotFound(e.to_string()),
            Error::NotRetryable { .. } => Self::Conflict(e.to_string()),
            Error::Database(e) => Self::unexpected(e, "inspector query"),
        }
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStateName {
    /// Waits for its future `run_at`.
    Scheduled,
    /// Claimable now.
    Available,
    /// Leased by a worker.
    Running,
    /// An attempt failed; the next one is at `run_at`.
    Retrying,
    /// Out of attempts, or failed for good; kept until an operator retries it.
    Dead,
}

impl From<JobState> for JobStateName {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Scheduled => Self::Scheduled,
            JobState::Available => Self::Available,
            JobState::Running => Self::Running,
            JobState::Retrying => Self::Retrying,
            JobState::Dead => Self::Dead,
        }
    }
}

/// `GET /api/inspect/counts`'s filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountsQuery {
    /// Count only this kind (`kinds` still lists every kind).
    pub kind: Option<String>,
}

/// Workflows by status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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

/// How many workflows there are, and the values the filters offer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// All workflows (of `kind`, when given).
    pub total: i64,
    /// By status.
    pub by_status: StatusCounts,
    /// Open ones whose deadline has passed (the list's `overdue=true`).
    pub overdue: i64,
    /// Waiting on a signal from a person: status `waiting`, the deadline
    /// being its time limit (the list's `waiting=true`).
    pub waiting_on_person: i64,
    /// Every kind present, sorted; never narrowed by `kind`.
    pub kinds: Vec<String>,
    /// Every state name present (of `kind`, when given), sorted.
    pub states: Vec<String>,
}

impl From<inspect::Counts> for Counts {
    fn from(c: inspect::Counts) -> Self {
        Self {
            total: c.total,
            by_status: StatusCounts {
                running: c.by_status.running,
                waiting: c.by_status.waiting,
                completed: c.by_status.completed,
                failed: c.by_status.failed,
                cancelled: c.by_status.cancelled,
            },
            overdue: c.overdue,
            waiting_on_person: c.waiting_on_person,
            kinds: c.kinds,
            states: c.states,
        }
    }
}

/// An activity's live job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivityJob {
    /// The job's id (what `POST /api/jobs/{id}/retry` takes).
    pub id: i64,
    /// Its state.
    pub state: JobStateName,
    /// Attempts made (the one under way included, when running).
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it is due: for a `retrying` job, the next attempt.
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The worker holding it, when running.
    pub lease_owner: Option<String>,
    /// Until when, unless extended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub lease_expires_at: Option<OffsetDateTime>,
}

impl From<inspect::ActivityJob> for ActivityJob {
    fn from(j: inspect::ActivityJob) -> Self {
        Self {
            id: j.id,
            state: j.state.into(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            run_at: j.run_at,
            last_error: j.last_error,
            lease_owner: j.lease_owner,
            lease_expires_at: j.lease_expires_at,
        }
    }
}

/// An activity a workflow asked for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivityItem {
    /// Its id within the workflow.
    pub activity_id: String,
    /// The registered activity.
    pub name: String,
    /// `scheduled`, `completed`, `failed` or `cancelled`.
    #[schema(example = "scheduled")]
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
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its result was recorded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Its job while one is live (`null` once it succeeded: the queue
    /// deletes completed jobs).
    pub job: Option<ActivityJob>,
}

impl From<inspect::Activity> for ActivityItem {
    fn from(a: inspect::Activity) -> Self {
        Self {
            activity_id: a.activity_id,
            name: a.name,
            status: a.status,
            attempts: a.attempts,
            input: a.input,
            result: a.result,
            error: a.error,
            created_at: a.created_at,
            finished_at: a.finished_at,
            job: a.job.map(ActivityJob::from),
        }
    }
}

/// A workflow's activities, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivityList {
    /// The activities.
    pub items: Vec<ActivityItem>,
}

/// One LLM call (its request and response are not sent).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LlmCallItem {
    /// Id (the ledger's order).
    pub id: i64,
    /// The activity that made it.
    pub activity_id: Option<String>,
    /// That activity's attempt.
    pub attempt: Option<i32>,
    /// Its place within the attempt, from 0.
    pub step: i32,
    /// Who asked: an agent, or `memory.*`.
    #[schema(example = "greeter")]
    pub agent: String,
    /// The model.
    pub model: String,
    /// `ok`, `error`, `rate_limited` or `timeout`.
    #[schema(example = "ok")]
    pub status: String,
    /// The provider's HTTP status, when there was one.
    pub http_status: Option<i32>,
    /// Prompt tokens.
    pub tokens_in: i32,
    /// Completion tokens.
    pub tokens_out: i32,
    /// How long it took.
    pub latency_ms: i32,
    /// What it cost in US dollars; `null` when the model had no price.
    pub cost_usd: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<inspect::LlmCall> for LlmCallItem {
    fn from(c: inspect::LlmCall) -> Self {
        Self {
            id: c.id,
            activity_id: c.activity_id,
            attempt: c.attempt,
            step: c.step,
            agent: c.agent,
            model: c.model,
            status: c.status,
            http_status: c.http_status,
            tokens_in: c.tokens_in,
            tokens_out: c.tokens_out,
            latency_ms: c.latency_ms,
            cost_usd: c.cost_usd,
            error: c.error,
            created_at: c.created_at,
        }
    }
}

/// A workflow's LLM calls summed up.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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

/// A workflow's LLM calls, oldest first, and their totals.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LlmCallList {
    /// The calls.
    pub items: Vec<LlmCallItem>,
    /// Their totals.
    pub total: LlmTotal,
}

/// `GET /api/jobs`'s filters and page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only this state: `scheduled`, `available`, `running`, `retrying` or
    /// `dead` (anything else is 422).
    pub state: Option<String>,
    /// Only this kind (`floe.activity`, `floe.advance`, ...).
    pub kind: Option<String>,
    /// Only jobs of this workflow (its advance and activity jobs).
    pub workflow_id: Option<Uuid>,
    /// Page size, 1 to 500 (default 50; anything else is 422).
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A job in the list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobItem {
    /// Its id, state, attempts and lease.
    #[serde(flatten)]
    pub live: ActivityJob,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Enqueued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The workflow its payload names (advance and activity jobs).
    pub workflow_id: Option<Uuid>,
    /// The activity its payload names (activity jobs).
    pub activity_id: Option<String>,
}

impl From<inspect::Job> for JobItem {
    fn from(j: inspect::Job) -> Self {
        Self {
            live: j.live.into(),
            queue: j.queue,
            kind: j.kind,
            created_at: j.created_at,
            workflow_id: j.workflow_id,
            activity_id: j.activity_id,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub items: Vec<JobItem>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// What a retry did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Retried {
    /// Always `true`: the job is available now, with a fresh attempt budget.
    pub retried: bool,
}

/// Workflows of one kind, state and status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowGroup {
    /// Kind.
    pub kind: String,
    /// The definition's state name.
    pub state: String,
    /// Status.
    pub status: WorkflowStatus,
    /// How many.
    pub count: i64,
}

/// Live jobs of one queue, kind and state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueGroup {
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// State.
    pub state: JobStateName,
    /// How many.
    pub count: i64,
    /// Seconds since the oldest of them was enqueued.
    pub oldest_age_seconds: f64,
}

/// One minute of the last hour.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Minute {
    /// The minute's start.
    #[serde(with = "time::serde::rfc3339")]
    pub minute: OffsetDateTime,
    /// Workflows that completed in it.
    pub completed: i64,
    /// Workflows that failed in it.
    pub failed: i64,
    /// Workflows cancelled in it.
    pub cancelled: i64,
    /// Transitions applied (history entries).
    pub transitions: i64,
    /// Activities that failed for good.
    pub activities_failed: i64,
}

/// LLM spend on one day (UTC).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SpendDay {
    /// The day.
    #[schema(example = "2026-11-22")]
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

/// The operator's dashboard.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Dashboard {
    /// When it was read (the database's clock; the minutes below are
    /// relative to it).
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// Every workflow by kind, state and status.
    pub workflows: Vec<WorkflowGroup>,
    /// Every live job by queue, kind and state.
    pub queue: Vec<QueueGroup>,
    /// The last hour: exactly 60 minutes, oldest first, the last one the
    /// current (partial) minute.
    pub throughput: Vec<Minute>,
    /// The last 30 days (UTC) that had LLM calls, oldest first.
    pub llm_spend: Vec<SpendDay>,
}

impl From<inspect::Dashboard> for Dashboard {
    fn from(d: inspect::Dashboard) -> Self {
        Self {
            generated_at: d.generated_at,
            workflows: d
                .workflows
                .into_iter()
                .map(|w| WorkflowGroup {
                    kind: w.kind,
                    state: w.state,
                    status: w.status.into(),
                    count: w.count,
                })
                .collect(),
            queue: d
                .queue
                .into_iter()
                .map(|q| QueueGroup {
                    queue: q.queue,
                    kind: q.kind,
                    state: q.state.into(),
                    count: q.count,
                    oldest_age_seconds: q.oldest_age_seconds,
                })
                .collect(),
            throughput: d
                .throughput
                .into_iter()
                .map(|m| Minute {
                    minute: m.minute,
                    completed: m.completed,
                    failed: m.failed,
                    cancelled: m.cancelled,
                    transitions: m.transitions,
                    activities_failed: m.activities_failed,
                })
                .collect(),
            llm_spend: d
                .llm_spend
                .into_iter()
                .map(|s| SpendDay {
                    day: s.day,
                    calls: s.calls,
                    tokens_in: s.tokens_in,
                    tokens_out: s.tokens_out,
                    cost_usd: s.cost_usd,
                })
                .collect(),
        }
    }
}

/// How many workflows there are by status, overdue and waiting on a
/// person, and the kinds and state names present (for the filters).
#[utoipa::path(
    get, path = "/api/inspect/counts", tag = TAG,
    params(CountsQuery),
    responses(
        (status = 200, description = "The counts", body = Counts),
        (status = 400, description = "A query parameter does not parse", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn counts(
    State(state): State<AppState>,
    Query(query): Query<CountsQuery>,
) -> Result<Json<Counts>> {
    let counts = inspect::counts(&state.pool, query.kind.as_deref()).await?;
    Ok(Json(counts.into()))
}

/// A workflow's activities, oldest first, each with its live job (attempts,
/// next retry, last error, lease).
#[utoipa::path(
    get, path = "/api/workflows/{id}/activities", tag = TAG,
    params(("id" = Uuid, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "The activities", body = ActivityList),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn workflow_activities(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<ActivityList>> {
    let activities = inspect::activities(&state.pool, id).await?;
    Ok(Json(ActivityList {
        items: activities.into_iter().map(Into::into).collect(),
    }))
}

/// A workflow's LLM calls, oldest first (without requests and responses),
/// and their totals.
#[utoipa::path(
    get, path = "/api/workflows/{id}/llm-calls", tag = TAG,
    params(("id" = Uuid, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "The calls and their totals", body = LlmCallList),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn workflow_llm_calls(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<LlmCallList>> {
    let (calls, total) = inspect::llm_calls(&state.pool, id).await?;
    Ok(Json(LlmCallList {
        items: calls.into_iter().map(Into::into).collect(),
        total: LlmTotal {
            calls: total.calls,
            tokens_in: total.tokens_in,
            tokens_out: total.tokens_out,
            cost_usd: total.cost_usd,
        },
    }))
}

/// Lists live jobs (the queue deletes completed ones), newest first,
/// filtered; one page at a time.
#[utoipa::path(
    get, path = "/api/jobs", tag = TAG,
    params(JobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "`workflow_id`, `limit` or the cursor does not parse", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 422, description = "An unknown state, or a limit outside 1 to 500", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    Query(query): Query<JobsQuery>,
) -> Result<Json<JobPage>> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let job_state = query
        .state
        .as_deref()
        .map(|s| {
            s.parse::<JobState>().map_err(|_| {
                ApiError::Validation(format!(
                    "unknown job state {s:?}: one of scheduled, available, running, retrying, dead"
                ))
            })
        })
        .transpose()?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::BadRequest("cursor does not parse".to_owned()))
        })
        .transpose()?;
    let filter = JobFilter {
        state: job_state,
        kind: query.kind,
        workflow_id: query.workflow_id,
        before,
        limit: limit + 1,
    };
    let mut jobs = inspect::jobs(&state.pool, &filter).await?;
    let more = jobs.len() as i64 > limit;
    jobs.truncate(limit as usize);
    let next_cursor = more
        .then(|| jobs.last().map(|j| j.live.id.to_string()))
        .flatten();
    Ok(Json(JobPage {
        items: jobs.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// Retries a dead or retrying job now, with a fresh attempt budget (the
/// workers are woken).
#[utoipa::path(
    post, path = "/api/jobs/{id}/retry", tag = TAG,
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job is available now", body = Retried),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such job (a completed job is deleted)", body = ErrorBody),
        (status = 409, description = "The job is neither dead nor retrying", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Retried>> {
    inspect::retry_job(&state.pool, id).await?;
    Ok(Json(Retried { retried: true }))
}

/// The dashboard: workflows by kind, state and status; live jobs by queue,
/// kind and state; the last hour minute by minute; LLM spend by day.
#[utoipa::path(
    get, path = "/api/inspect/dashboard", tag = TAG,
    responses(
        (status = 200, description = "The dashboard", body = Dashboard),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn dashboard(State(state): State<AppState>) -> Result<Json<Dashboard>> {
    let dashboard = inspect::dashboard(&state.pool).await?;
    Ok(Json(dashboard.into()))
}
