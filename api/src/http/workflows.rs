//! The engine's own API, for operators: start, list, inspect, signal,
//! cancel and query any registered kind of workflow. Every route here
//! requires the operator token; see `docs/api.md`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use floe_engine::workflow::Status;
use floe_engine::workflow::store::{self, Delivered, HistoryEntry, WorkflowRow, WorkflowSummary};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Result};
use super::extract::{Json, NUL_REFUSED, Path, Query, json_has_nul};
use super::state::AppState;

/// The OpenAPI tag of these routes.
pub const TAG: &str = "workflows";

/// Longest business key, signal name or idempotency key accepted.
const MAX_NAME: usize = 256;
/// Longest cancellation reason accepted.
const MAX_REASON: usize = 2000;
/// Page size when none is asked for, and the largest allowed.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;
/// History entries per answer when no limit is given, and the most allowed.
const MAX_HISTORY: i64 = 1000;

/// The idempotency key [`store::cancel`] delivers under.
const CANCEL_KEY: &str = "cancel";

/// The request header that makes a signal idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A workflow's status (its definition's own state name is separate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowStatus {
    /// Activities or children it started are in flight.
    Running,
    /// Nothing in flight: it waits for a signal or its deadline.
    Waiting,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl From<Status> for WorkflowStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Running => Self::Running,
            Status::Waiting => Self::Waiting,
            Status::Completed => Self::Completed,
            Status::Failed => Self::Failed,
            Status::Cancelled => Self::Cancelled,
        }
    }
}

impl From<WorkflowStatus> for Status {
    fn from(s: WorkflowStatus) -> Self {
        match s {
            WorkflowStatus::Running => Self::Running,
            WorkflowStatus::Waiting => Self::Waiting,
            WorkflowStatus::Completed => Self::Completed,
            WorkflowStatus::Failed => Self::Failed,
            WorkflowStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// `POST /api/workflows`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWorkflow {
    /// A kind this server has a definition for.
    #[schema(example = "onboarding")]
    pub kind: String,
    /// Business key, unique among open workflows of the kind: starting an
    /// open key again returns that workflow. A fresh UUID when omitted.
    #[schema(example = "user-42")]
    pub key: Option<String>,
    /// The definition's start input.
    pub input: Value,
}

/// A started (or already open) workflow.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Started {
    /// Its id.
    pub id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Its business key.
    pub key: String,
    /// `false` when an open workflow of the kind already had the key (its
    /// id is returned; nothing was started).
    pub created: bool,
}

/// `GET /api/workflows`'s filters and page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this status.
    pub status: Option<WorkflowStatus>,
    /// Only this state name.
    pub state: Option<String>,
    /// `true`: only open workflows whose deadline has passed.
    pub overdue: Option<bool>,
    /// Only keys containing this, ignoring case (`%`, `_` and `\` are not
    /// wildcards: they match themselves).
    pub q: Option<String>,
    /// `true`: only workflows waiting on a signal from a person, that is of
    /// status `waiting` (nothing in flight), with the deadline, if any, as
    /// the time limit of that wait. `false` filters nothing.
    pub waiting: Option<bool>,
    /// Only the children of this workflow.
    pub parent: Option<Uuid>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A workflow in a list (without its data).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowItem {
    /// Id.
    pub id: Uuid,
    /// Kind.
    pub kind: String,
    /// Business key.
    pub key: String,
    /// The definition's state name.
    pub state: String,
    /// Status.
    pub status: WorkflowStatus,
    /// When it will be woken if nothing else happens.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// Why.
    pub deadline_reason: Option<String>,
    /// Transitions applied.
    pub version: i64,
    /// The workflow that started it.
    pub parent_id: Option<Uuid>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<WorkflowSummary> for WorkflowItem {
    fn from(w: WorkflowSummary) -> Self {
        Self {
            id: w.id,
            kind: w.kind,
            key: w.key,
            state: w.state,
            status: w.status.into(),
            deadline: w.deadline,
            deadline_reason: w.deadline_reason,
            version: w.version,
            parent_id: w.parent_id,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A page of workflows, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowPage {
    /// The workflows.
    pub items: Vec<WorkflowItem>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// One workflow, whole.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowDetail {
    /// Id.
    pub id: Uuid,
    /// Kind.
    pub kind: String,
    /// Business key.
    pub key: String,
    /// The definition's state name.
    pub state: String,
    /// Status.
    pub status: WorkflowStatus,
    /// The definition's state (`null` until the start event is applied).
    pub context: Value,
    /// The start input.
    pub input: Value,
    /// The result, once completed.
    pub output: Option<Value>,
    /// Why it failed (or the cancellation reason).
    pub error: Option<String>,
    /// When it will be woken if nothing else happens.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// Why.
    pub deadline_reason: Option<String>,
    /// Transitions applied.
    pub version: i64,
    /// The definition's version that started it.
    pub definition_version: i32,
    /// The workflow that started it.
    pub parent_id: Option<Uuid>,
    /// The workflows it started, oldest first.
    pub children: Vec<Uuid>,
    /// Activities and children in flight.
    pub in_flight: i32,
    /// Last inbox sequence given out.
    pub next_seq: i64,
    /// Last inbox sequence applied (events above it are pending).
    pub applied_seq: i64,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl WorkflowDetail {
    fn new(w: WorkflowRow, children: Vec<Uuid>) -> Self {
        Self {
            id: w.id,
            kind: w.kind,
            key: w.key,
            state: w.state,
            status: w.status.into(),
            context: w.context,
            input: w.input,
            output: w.output,
            error: w.error,
            deadline: w.deadline,
            deadline_reason: w.deadline_reason,
            version: w.version,
            definition_version: w.definition_version,
            parent_id: w.parent_id,
            children,
            in_flight: w.in_flight,
            next_seq: w.next_seq,
            applied_seq: w.applied_seq,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// An applied event and the state change it made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    /// Its place in the workflow's inbox (also the SSE event id).
    pub seq: i64,
    /// `start`, `signal`, `activity`, `timer`, `child` or `cancel`.
    pub event: String,
    /// The signal's name (or the activity, child or timer reason).
    pub name: Option<String>,
    /// The event's data.
    pub payload: Value,
    /// When the event was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// State name before (`null` for the start).
    pub state_before: Option<String>,
    /// State name after.
    pub state_after: String,
    /// Status after.
    pub status_after: WorkflowStatus,
    /// The commands the transition returned.
    #[schema(value_type = Vec<Object>)]
    pub commands: Value,
    /// Why the event changed nothing, if it did not.
    pub note: Option<String>,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(e: HistoryEntry) -> Self {
        Self {
            seq: e.event.seq,
            event: e.event.event,
            name: e.event.name,
            payload: e.event.payload,
            created_at: e.event.created_at,
            state_before: e.state_before,
            state_after: e.state_after,
            status_after: e.status_after.into(),
            commands: e.commands,
            note: e.note,
        }
    }
}

/// `GET /api/workflows/{id}/history`'s page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only entries with a sequence above this one (default 0: all).
    pub after: Option<i64>,
    /// At most this many, 1 to 1000 (default 1000).
    pub limit: Option<i64>,
}

/// A workflow's history, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// The entries; to read on, pass the last one's `seq` as `after`.
    pub items: Vec<HistoryItem>,
}

/// What a signal or a cancellation did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// `false` when an event with the same idempotency key was delivered
    /// before (nothing changed).
    pub delivered: bool,
    /// Its inbox sequence, when delivered now.
    pub seq: Option<i64>,
}

impl From<Delivered> for Accepted {
    fn from(d: Delivered) -> Self {
        match d {
            Delivered::Queued(seq) => Self {
                delivered: true,
                seq: Some(seq),
            },
            Delivered::Duplicate => Self {
                delivered: false,
                seq: None,
            },
        }
    }
}

/// `POST /api/workflows/{id}/cancel`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why; recorded as the workflow's error.
    #[schema(example = "customer asked to stop")]
    pub reason: String,
}

/// A query's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryAnswer {
    /// What the definition's query returned.
    pub result: Value,
}

fn check_name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(ApiError::Validation(format!(
            "{what} must be 1 to {MAX_NAME} bytes long"
        )));
    }
    Ok(())
}

/// Starts a workflow of a registered kind (or finds the open one with the
/// same kind and key). The start is applied by a worker, after this answers.
#[utoipa::path(
    post, path = "/api/workflows", tag = TAG,
    request_body = StartWorkflow,
    responses(
        (status = 202, description = "Started, or the open workflow with that kind and key (`created: false`)", body = Started,
            headers(("Location" = String, description = "The workflow's URL"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Unknown kind, or missing or invalid fields", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn start_workflow(
    State(state): State<AppState>,
    Json(body): Json<StartWorkflow>,
) -> Result<Response> {
    let definition = state
        .definitions
        .get(&body.kind)
        .ok_or_else(|| ApiError::Validation(format!("unknown workflow kind {:?}", body.kind)))?;
    let key = match body.key {
        Some(key) => {
            check_name("key", &key)?;
            key
        }
        None => Uuid::now_v7().to_string(),
    };
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::unexpected(e, "begin"))?;
    let started = store::start(
        &mut tx,
        &body.kind,
        &key,
        &body.input,
        definition.version(),
        None,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::unexpected(e, "commit start"))?;
    tracing::info!(workflow_id = %started.id, kind = %body.kind, key = %key, created = started.created,
        "workflow start requested");
    let location = HeaderValue::from_str(&format!("/api/workflows/{}", started.id))
        .map_err(|e| ApiError::unexpected(e, "location header"))?;
    let body = Started {
        id: started.id,
        kind: body.kind,
        key,
        created: started.created,
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Lists workflows, newest first, filtered; one page at a time.
#[utoipa::path(
    get, path = "/api/workflows", tag = TAG,
    params(ListQuery),
    responses(
        (status = 200, description = "A page of workflows", body = WorkflowPage),
        (status = 400, description = "A filter, the limit or the cursor does not parse", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn list_workflows(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<WorkflowPage>> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<Uuid>()
                .map_err(|_| ApiError::BadRequest("cursor does not parse".to_owned()))
        })
        .transpose()?;
    let filter = store::ListFilter {
        kind: query.kind,
        status: query.status.map(Into::into),
        state: query.state,
        overdue: query.overdue.unwrap_or(false),
        key_contains: query.q.filter(|q| !q.is_empty()),
        waiting: query.waiting.unwrap_or(false),
        parent: query.parent,
        before,
        limit: limit + 1,
    };
    let mut rows = store::list(&state.pool, &filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(WorkflowPage {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// One workflow: its row and its children's ids.
#[utoipa::path(
    get, path = "/api/workflows/{id}", tag = TAG,
    params(("id" = Uuid, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowDetail),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn get_workflow(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<WorkflowDetail>> {
    let row = store::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workflow {id}")))?;
    let children = store::children(&state.pool, id).await?;
    Ok(Json(WorkflowDetail::new(row, children)))
}

/// A workflow's history: every applied event, in order.
#[utoipa::path(
    get, path = "/api/workflows/{id}/history", tag = TAG,
    params(("id" = Uuid, Path, description = "The workflow's id"), HistoryQuery),
    responses(
        (status = 200, description = "The history entries", body = HistoryPage),
        (status = 400, description = "The id, `after` or `limit` does not parse", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn workflow_history(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>> {
    let limit = query.limit.unwrap_or(MAX_HISTORY);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_HISTORY}"
        )));
    }
    if store::status(&state.pool, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no workflow {id}")));
    }
    let entries = store::history_after(&state.pool, id, query.after.unwrap_or(0), limit).await?;
    Ok(Json(HistoryPage {
        items: entries.into_iter().map(Into::into).collect(),
    }))
}

/// The idempotency key a request carries, if any.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".to_owned()))?;
    if key.is_empty() || key.len() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_NAME} bytes long"
        )));
    }
    // Cancellation delivers under this key; a signal using it would make a
    // later cancellation look like a duplicate.
    if key == CANCEL_KEY {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key {CANCEL_KEY:?} is reserved for cancellation"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// A JSON body that may be empty (then `null`).
fn optional_json(headers: &HeaderMap, body: &Bytes) -> Result<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::MalformedJson(
            "expected a JSON body with `Content-Type: application/json`".to_owned(),
        ));
    }
    let value = serde_json::from_slice(body)
        .map_err(|e| ApiError::MalformedJson(format!("invalid JSON: {e}")))?;
    if json_has_nul(body) {
        return Err(ApiError::Validation(NUL_REFUSED.to_owned()));
    }
    Ok(value)
}

/// Signals a workflow: the body (any JSON, or empty for `null`) is the
/// signal's payload. With an `Idempotency-Key`, a repeated request delivers
/// nothing more. The signal is applied by a worker, after this answers.
#[utoipa::path(
    post, path = "/api/workflows/{id}/signals/{name}", tag = TAG,
    params(
        ("id" = Uuid, Path, description = "The workflow's id"),
        ("name" = String, Path, description = "The signal's name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Deliver at most once per workflow with this key"),
    ),
    request_body(content = Option<serde_json::Value>, description = "The signal's payload (any JSON; empty for null)", content_type = "application/json"),
    responses(
        (status = 202, description = "Delivered, or a duplicate of an earlier delivery (`delivered: false`)", body = Accepted),
        (status = 400, description = "Malformed JSON, id or header", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "The workflow has finished", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Signal name too long, or a signal the workflow's definition does not take", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn signal_workflow(
    State(state): State<AppState>,
    Path((id, name)): Path<(Uuid, String)>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>)> {
    let body = body?;
    check_name("signal name", &name)?;
    let key = idempotency_key(&headers)?;
    let payload = optional_json(&headers, &body)?;
    // A signal the definition cannot take would change nothing when
    // applied: refuse it here, where the operator sees why.
    let row = store::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workflow {id}")))?;
    if let Some(definition) = state.definitions.get(&row.kind) {
        definition.check_signal(&name, &payload).map_err(|e| {
            ApiError::Validation(format!("{} does not take this signal: {e}", row.kind))
        })?;
    }
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::unexpected(e, "begin"))?;
    let delivered = store::signal(&mut tx, id, &name, &payload, key.as_deref()).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::unexpected(e, "commit signal"))?;
    tracing::info!(workflow_id = %id, signal = %name, ?delivered, "signal delivered");
    Ok((StatusCode::ACCEPTED, Json(delivered.into())))
}

/// Cancels a workflow (and its open children) with a reason. Cancelling
/// twice delivers once.
#[utoipa::path(
    post, path = "/api/workflows/{id}/cancel", tag = TAG,
    params(("id" = Uuid, Path, description = "The workflow's id")),
    request_body = CancelRequest,
    responses(
        (status = 202, description = "Cancellation delivered (or delivered before: `delivered: false`)", body = Accepted),
        (status = 400, description = "Malformed JSON or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "The workflow has finished", body = ErrorBody),
        (status = 422, description = "Missing or invalid reason", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn cancel_workflow(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Json(body): Json<CancelRequest>,
) -> Result<(StatusCode, Json<Accepted>)> {
    if body.reason.trim().is_empty() || body.reason.len() > MAX_REASON {
        return Err(ApiError::Validation(format!(
            "reason must be 1 to {MAX_REASON} bytes long"
        )));
    }
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::unexpected(e, "begin"))?;
    let delivered = store::cancel(&mut tx, id, &body.reason).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::unexpected(e, "commit cancel"))?;
    tracing::info!(workflow_id = %id, ?delivered, "cancellation delivered");
    Ok((StatusCode::ACCEPTED, Json(delivered.into())))
}

/// Answers one of the definition's queries from the stored state (no
/// worker involved).
#[utoipa::path(
    get, path = "/api/workflows/{id}/queries/{name}", tag = TAG,
    params(
        ("id" = Uuid, Path, description = "The workflow's id"),
        ("name" = String, Path, description = "The query's name"),
    ),
    responses(
        (status = 200, description = "The query's result", body = QueryAnswer),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such workflow, or its definition has no such query", body = ErrorBody),
        (status = 409, description = "The workflow has no state yet (its start is not applied)", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn query_workflow(
    State(state): State<AppState>,
    Path((id, name)): Path<(Uuid, String)>,
) -> Result<Json<QueryAnswer>> {
    let row = store::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workflow {id}")))?;
    let definition = state.definitions.get(&row.kind).ok_or_else(|| {
        ApiError::NotFound(format!(
            "this server has no definition of kind {:?} to answer queries",
            row.kind
        ))
    })?;
    if row.context.is_null() {
        return Err(ApiError::Conflict(format!(
            "workflow {id} has no state yet: its start is not applied"
        )));
    }
    match definition.query_stored(row.definition_version, &row.context, &name) {
        Ok(Some(result)) => Ok(Json(QueryAnswer { result })),
        Ok(None) => Err(ApiError::NotFound(format!(
            "kind {:?} has no query {name:?}",
            row.kind
        ))),
        Err(e) => Err(ApiError::unexpected(
            anyhow::anyhow!(e),
            "answering a query",
        )),
    }
}
