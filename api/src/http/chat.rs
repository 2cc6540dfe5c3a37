//! The chat's HTTP endpoints: a person's onboarding, their messages, its
//! state and progress, their inbox. Every route here requires a
//! [`Session`] and reaches only that person's data: no id in a path, so
//! nobody can name anyone else's.
//!
//! Sending a message answers 202 at once; the reply arrives by push
//! (`/ws`) or by polling `GET /api/chat/messages`. The WebSocket's
//! `message` frames go through [`post_message`] too, with the same checks.

use axum::extract::State;
use axum::http::StatusCode;
use floe_agents::onboarding::workflow::{OnboardingInput, OnboardingSettings};
use floe_engine::chat::{self, InboxItem, Message, Posted, Role};
use floe_engine::workflow::store as workflows;
use floe_engine::workflow::{Status, store::WorkflowRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Result};
use super::extract::{Json, NUL_REFUSED, Query};
use super::session::{Session, TAG};
use super::state::AppState;

/// The workflow kind that serves each person.
pub const ONBOARDING: &str = "onboarding";

/// Longest client message id, in characters.
pub const MAX_CLIENT_ID: usize = 100;

/// Messages per page when no limit is asked for, and the most allowed.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 500;

/// The person's onboarding, as the source spec names it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OnboardingStarted {
    /// The workflow's business key (stable for the person).
    #[schema(example = "onboarding/0f8e0c7e-5b7f-4f57-9a37-3f6d2f0c9b11")]
    pub workflow_id: String,
    /// The run's id (the engine's workflow id).
    pub run_id: Uuid,
    /// Whether this request started it.
    pub created: bool,
}

/// `POST /api/chat/message`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// What the person says: not blank, at most 4,000 characters (the
    /// server's setting) after trimming.
    #[schema(example = "Hi! I'm Alex")]
    pub content: String,
    /// The client's id for this message (at most 100 characters): sending
    /// it again is answered with the first one's `seq` and changes nothing.
    #[schema(example = "c-1f3a")]
    pub client_id: Option<String>,
}

/// What happened to a message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct MessageAccepted {
    /// Its sequence number in the conversation (the first one's, for a
    /// duplicate).
    pub seq: i64,
    /// `true` when this `client_id` was sent before: nothing changed.
    pub duplicate: bool,
}

impl From<Posted> for MessageAccepted {
    fn from(p: Posted) -> Self {
        Self {
            seq: p.seq,
            duplicate: p.duplicate,
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    /// The person.
    User,
    /// The assistant.
    Assistant,
}

/// A message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// Its place in the conversation, from 1, without gaps.
    pub seq: i64,
    /// Who wrote it.
    pub role: MessageRole,
    /// `message` for the person's; `reply`, `greeting`, `nudge` or `error`
    /// for the assistant's.
    pub kind: String,
    /// The agent that wrote an assistant message.
    pub agent: Option<String>,
    /// The text.
    pub content: String,
    /// A widget to show with it (quick replies, items to confirm).
    #[schema(value_type = Option<Object>)]
    pub widget: Option<Value>,
    /// The client's id of a person's message.
    pub client_id: Option<String>,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<Message> for ChatMessage {
    fn from(m: Message) -> Self {
        Self {
            seq: m.seq,
            role: match m.role {
                Role::User => MessageRole::User,
                Role::Assistant => MessageRole::Assistant,
            },
            kind: m.kind,
            agent: m.agent,
            content: m.content,
            widget: m.widget,
            client_id: m.client_id,
            created_at: m.created_at,
        }
    }
}

/// `GET /api/chat/messages`' page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Only messages with a sequence number above this one (default 0: from
    /// the start).
    pub after: Option<i64>,
    /// At most this many, 1 to 500 (default 100).
    pub limit: Option<i64>,
}

/// Messages of the conversation, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    /// The messages.
    pub messages: Vec<ChatMessage>,
    /// The last one's sequence number (`after` when there are none): pass it
    /// as `after` to read on.
    pub last_seq: i64,
}

/// An item of the person's inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InboxEntry {
    /// Its id.
    pub id: Uuid,
    /// What to do.
    pub title: String,
    /// When it is due, `YYYY-MM-DD`.
    #[schema(example = "2026-11-27")]
    pub due_date: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was collected.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<InboxItem> for InboxEntry {
    fn from(i: InboxItem) -> Self {
        Self {
            id: i.id,
            title: i.title,
            due_date: i
                .due_date
                .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())),
            tags: i.tags,
            created_at: i.created_at,
        }
    }
}

/// The person's inbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Inbox {
    /// Its items, oldest first.
    pub items: Vec<InboxEntry>,
}

/// The person's onboarding, started now if they have none (with the
/// server's nudge settings).
pub async fn ensure_onboarding(state: &AppState, session: &Session) -> Result<OnboardingStarted> {
    let user = session.user_id();
    if let Some((workflow_id, run_id)) =
        chat::store::workflow_instance(&state.pool, user, ONBOARDING).await?
    {
        return Ok(OnboardingStarted {
            workflow_id,
            run_id,
            created: false,
        });
    }
    let definition = state.definitions.get(ONBOARDING).ok_or_else(|| {
        ApiError::Unexpected(anyhow::anyhow!(
            "this server has no {ONBOARDING:?} workflow definition"
        ))
    })?;
    let input = OnboardingInput {
        user_id: user.to_owned(),
        display_name: Some(session.user.display_name.clone()),
        settings: OnboardingSettings {
            nudge_after_secs: state.chat.nudge_after_secs,
            max_nudges: state.chat.max_nudges,
            ..OnboardingSettings::default()
        },
    };
    let input =
        serde_json::to_value(input).map_err(|e| ApiError::unexpected(e, "onboarding input"))?;
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::unexpected(e, "begin"))?;
    let started =
        chat::store::start_workflow_for(&mut tx, user, ONBOARDING, &input, definition.version())
            .await?;
    let (workflow_id, run_id) = chat::store::workflow_instance(&mut *tx, user, ONBOARDING)
        .await?
        .ok_or_else(|| {
            ApiError::Unexpected(anyhow::anyhow!("the onboarding just started is not linked"))
        })?;
    tx.commit()
        .await
        .map_err(|e| ApiError::unexpected(e, "commit onboarding start"))?;
    if started.created {
        tracing::info!(user_id = %user, workflow_id = %run_id, "onboarding started");
    }
    Ok(OnboardingStarted {
        workflow_id,
        run_id,
        created: started.created,
    })
}

/// Checks and stores a person's message and signals it to their
/// onboarding (started first if they have none): what both
/// `POST /api/chat/message` and the WebSocket's `message` frame do.
pub async fn post_message(
    state: &AppState,
    session: &Session,
    content: &str,
    client_id: Option<&str>,
) -> Result<MessageAccepted> {
    let content = content.trim();
    let max = state.chat.max_message_chars;
    if content.is_empty() || content.chars().count() > max {
        return Err(ApiError::Validation(format!(
            "content must be 1 to {max} characters long (after trimming)"
        )));
    }
    if let Some(id) = client_id
        && (id.is_empty() || id.chars().count() > MAX_CLIENT_ID)
    {
        return Err(ApiError::Validation(format!(
            "client_id must be 1 to {MAX_CLIENT_ID} characters long"
        )));
    }
    // The WebSocket's frames come here without the JSON extractor's check.
    if content.contains('\0') || client_id.is_some_and(|id| id.contains('\0')) {
        return Err(ApiError::Validation(NUL_REFUSED.to_owned()));
    }
    let user = session.user_id();
    state
        .limiter
        .check(user)
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let onboarding = ensure_onboarding(state, session).await?;
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::unexpected(e, "begin"))?;
    let posted =
        chat::store::post_user_message(&mut tx, user, onboarding.run_id, content, client_id)
            .await
            .map_err(finished)?;
    tx.commit()
        .await
        .map_err(|e| ApiError::unexpected(e, "commit message"))?;
    tracing::info!(user_id = %user, seq = posted.seq, duplicate = posted.duplicate, "chat message accepted");
    Ok(posted.into())
}

/// A finished onboarding takes no more messages: 409. One whose record is
/// gone was removed by retention, which removes only finished workflows.
fn finished(e: chat::store::Error) -> ApiError {
    match e {
        chat::store::Error::Workflow(
            workflows::Error::Finished {
                status: Status::Completed,
                ..
            }
            | workflows::Error::NotFound(_),
        ) => ApiError::OnboardingCompleted,
        chat::store::Error::Workflow(workflows::Error::Finished { status, .. }) => {
            ApiError::Conflict(format!(
                "your onboarding was {status}; it takes no more messages"
            ))
        }
        other => other.into(),
    }
}

/// The answers of a stored onboarding row to `get_state` and
/// `get_progress` (`None` before its start is applied).
pub fn answer_queries(state: &AppState, row: &WorkflowRow) -> Result<Option<(Value, Value)>> {
    if row.context.is_null() {
        return Ok(None);
    }
    let definition = state.definitions.get(&row.kind).ok_or_else(|| {
        ApiError::Unexpected(anyhow::anyhow!(
            "this server has no {:?} workflow definition",
            row.kind
        ))
    })?;
    let ask = |name: &str| -> Result<Value> {
        match definition.query_stored(row.definition_version, &row.context, name) {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(ApiError::Unexpected(anyhow::anyhow!(
                "kind {:?} has no query {name:?}",
                row.kind
            ))),
            Err(e) => Err(ApiError::unexpected(
                anyhow::anyhow!(e),
                "answering a query",
            )),
        }
    };
    Ok(Some((ask("get_state")?, ask("get_progress")?)))
}

/// The person's onboarding row: 404 when they have none.
async fn onboarding_row(state: &AppState, session: &Session) -> Result<WorkflowRow> {
    let none = || {
        ApiError::NotFound(
            "you have no onboarding yet: POST /api/workflow/start starts it".to_owned(),
        )
    };
    let (_, run_id) = chat::store::workflow_instance(&state.pool, session.user_id(), ONBOARDING)
        .await?
        .ok_or_else(none)?;
    workflows::get(&state.pool, run_id).await?.ok_or_else(|| {
        // Linked once, gone now: retention removed it after it finished.
        ApiError::Conflict(
            "your onboarding finished long ago and its record has been archived".to_owned(),
        )
    })
}

/// One query of the person's onboarding.
async fn query(state: &AppState, session: &Session, progress: bool) -> Result<Value> {
    let row = onboarding_row(state, session).await?;
    let (state_answer, progress_answer) = answer_queries(state, &row)?.ok_or_else(|| {
        ApiError::Conflict("your onboarding is starting; ask again in a moment".to_owned())
    })?;
    Ok(if progress {
        progress_answer
    } else {
        state_answer
    })
}

/// Starts the person's onboarding, or finds the one they have. A worker
/// applies the start after this answers.
#[utoipa::path(
    post, path = "/api/workflow/start", tag = TAG,
    responses(
        (status = 202, description = "Started, or the person's existing onboarding (`created: false`)", body = OnboardingStarted),
        (status = 401, description = "No valid session", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_token" = [])),
)]
pub async fn start_onboarding(
    session: Session,
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<OnboardingStarted>)> {
    let started = ensure_onboarding(&state, &session).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Sends the person's message to their onboarding (starting it if
/// needed). Answers at once; the reply comes by push or polling.
#[utoipa::path(
    post, path = "/api/chat/message", tag = TAG,
    request_body = NewMessage,
    responses(
        (status = 202, description = "Stored and signalled, or a duplicate of an earlier `client_id` (`duplicate: true`)", body = MessageAccepted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 409, description = "`onboarding_completed`: the onboarding has completed (or `conflict`: it was cancelled or failed)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Blank or too long content, a bad client_id, unknown fields", body = ErrorBody),
        (status = 429, description = "Too many messages this minute; `Retry-After` says when to retry", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("session_cookie" = []), ("session_token" = [])),
)]
pub async fn send_message(
    session: Session,
    State(state): State<AppState>,
    Json(body): Json<NewMessage>,
) -> Result<(StatusCode, Json<MessageAccepted>)> {
    let accepted = post_message(&state, &session, &body.content, body.client_id.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// The onboarding's `get_progress` query: steps done and remaining, percent.
#[utoipa::path(
    get, path = "/api/workflow/progress", tag = TAG,
    responses(
        (status = 200, description = "`{current_step, steps: [{name, status}], completed_steps, remaining_steps, percent}`", body = Object),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "The person has no onboarding yet", body = ErrorBody),
        (status = 409, description = "The onboarding's start is not applied yet", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_token" = [])),
)]
pub async fn workflow_progress(
    session: Session,
    State(state): State<AppState>,
) -> Result<Json<Value>> {
    Ok(Json(query(&state, &session, true).await?))
}

/// The onboarding's `get_state` query: the step, what was collected,
/// whether the assistant is typing.
#[utoipa::path(
    get, path = "/api/workflow/state", tag = TAG,
    responses(
        (status = 200, description = "`{current_step, context, typing, queued_messages, greeted, nudges_sent, failures, last_error}`", body = Object),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "The person has no onboarding yet", body = ErrorBody),
        (status = 409, description = "The onboarding's start is not applied yet", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_token" = [])),
)]
pub async fn workflow_state(
    session: Session,
    State(state): State<AppState>,
) -> Result<Json<Value>> {
    Ok(Json(query(&state, &session, false).await?))
}

/// The conversation after a sequence number: the polling fallback of `/ws`.
#[utoipa::path(
    get, path = "/api/chat/messages", tag = TAG,
    params(MessagesQuery),
    responses(
        (status = 200, description = "Messages after `after`, oldest first", body = MessagePage),
        (status = 400, description = "`after` or `limit` does not parse or is out of range", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_token" = [])),
)]
pub async fn list_messages(
    session: Session,
    State(state): State<AppState>,
    Query(query): Query<MessagesQuery>,
) -> Result<Json<MessagePage>> {
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::BadRequest("after must be 0 or more".to_owned()));
    }
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let messages: Vec<ChatMessage> =
        chat::store::messages_after(&state.pool, session.user_id(), after, limit)
            .await?
            .into_iter()
            .map(ChatMessage::from)
            .collect();
    let last_seq = messages.last().map_or(after, |m| m.seq);
    Ok(Json(MessagePage { messages, last_seq }))
}

/// The person's inbox: what the brain dump collected.
#[utoipa::path(
    get, path = "/api/inbox", tag = TAG,
    responses(
        (status = 200, description = "The inbox, oldest first", body = Inbox),
        (status = 401, description = "No valid session", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_token" = [])),
)]
pub async fn inbox(session: Session, State(state): State<AppState>) -> Result<Json<Inbox>> {
    Ok(Json(read_inbox(&state, &session).await?))
}

/// The person's inbox, as the API shows it.
pub async fn read_inbox(state: &AppState, session: &Session) -> Result<Inbox> {
    let items = chat::store::inbox(&state.pool, session.user_id())
        .await?
        .into_iter()
        .map(InboxEntry::from)
        .collect();
    Ok(Inbox { items })
}
