//! `GET /api/workflows/{id}/events`: a workflow's history as Server-Sent
//! Events, then its changes live.
//!
//! Each history entry is one event: `id:` its inbox sequence, `event:` its
//! kind (`start`, `signal`, `activity`, `timer`, `child`, `cancel`), `data:`
//! the entry as JSON (as in `/history`). A client that reconnects with
//! `Last-Event-ID` gets only the entries after it. When the workflow has
//! finished, an `end` event (`data: {"status": ...}`) closes the stream. A
//! comment line every 15 s keeps idle connections open.
//!
//! The stream subscribes to the push hub before it reads the tables, then
//! re-reads them (entries above the last one sent) on every notification:
//! the notification says only that something changed. After a listener
//! reconnect or a lag it does the same, so nothing is lost or repeated.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use floe_engine::metrics::{Open, SSE_STREAMS};
use floe_engine::workflow::Status;
use floe_engine::workflow::store;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Result};
use super::extract::Path;
use super::state::AppState;
use super::workflows::{HistoryItem, TAG, WorkflowStatus};
use crate::push::{Hub, Push, Subscription, Topic};

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// History entries read per query.
const PAGE: i64 = 200;

/// The `end` event's data: how the workflow finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamEnd {
    /// Its status at the end (`null` if it no longer exists).
    pub status: Option<WorkflowStatus>,
}

/// One event of the stream, as the OpenAPI document describes it (the
/// fields of an SSE event, `data` being JSON): a history entry (`id` its
/// sequence, `event` its kind, `data` a [`HistoryItem`]), or the last one,
/// `end` (`data` a [`StreamEnd`]). Used only in the document.
pub struct WorkflowEvent;

/// An SSE event's `data`: JSON text that is `schema`.
fn json_data(schema: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .content_media_type("application/json")
        .content_schema(Some(Ref::from_schema_name(schema)))
}

impl PartialSchema for WorkflowEvent {
    fn schema() -> RefOr<Schema> {
        let entry = ObjectBuilder::new()
            .description(Some("A history entry"))
            .property("id", ObjectBuilder::new().schema_type(Type::String))
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([
                        "start", "signal", "activity", "timer", "child", "cancel",
                    ])),
            )
            .property("data", json_data(&HistoryItem::name()))
            .required("id")
            .required("event")
            .required("data");
        let end = ObjectBuilder::new()
            .description(Some("The workflow has finished: the stream closes"))
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["end"])),
            )
            .property("data", json_data(&StreamEnd::name()))
            .required("event")
            .required("data");
        OneOfBuilder::new().item(entry).item(end).into()
    }
}

impl ToSchema for WorkflowEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((HistoryItem::name().into_owned(), HistoryItem::schema()));
        HistoryItem::schemas(schemas);
        schemas.push((StreamEnd::name().into_owned(), StreamEnd::schema()));
        StreamEnd::schemas(schemas);
    }
}

/// Streams a workflow's history, then its changes, as Server-Sent Events;
/// resumable with `Last-Event-ID`.
#[utoipa::path(
    get, path = "/api/workflows/{id}/events", tag = TAG,
    params(
        ("id" = Uuid, Path, description = "The workflow's id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Send only entries with a sequence above this one"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: one event per history entry (`id` = its sequence, \
            `event` = its kind, `data` = the entry as JSON), then live ones; `end` when the workflow finishes",
            content_type = "text/event-stream", body = WorkflowEvent),
        (status = 400, description = "The id or Last-Event-ID does not parse", body = ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ),
    security(("operator_token" = [])),
)]
pub async fn workflow_events(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an integer".to_owned()))?
            .max(0),
    };
    // Subscribe before reading, so that a change committed in between is
    // notified as well as read.
    let subscription = state.hub.subscribe(Topic::Workflow(id));
    if store::status(&state.pool, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no workflow {id}")));
    }
    tracing::debug!(workflow_id = %id, after, "event stream opened");
    let feed = Feed {
        _open: Open::new(metrics::gauge!(SSE_STREAMS)),
        pool: state.pool.clone(),
        hub: state.hub.clone(),
        id,
        subscription,
        last_seq: after,
        queue: VecDeque::new(),
        stale: true,
        round: None,
        done: false,
    };
    let stream = futures_util::stream::unfold(feed, Feed::next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

/// The stream's state between events.
struct Feed {
    /// Counts the stream in `floe_sse_streams` while it lives.
    _open: Open,
    pool: PgPool,
    hub: Hub,
    id: Uuid,
    subscription: Subscription,
    /// The last sequence sent (or the client's `Last-Event-ID`).
    last_seq: i64,
    /// Events read and not yet sent.
    queue: VecDeque<Event>,
    /// The tables must be read again.
    stale: bool,
    /// The workflow's status when the current catch-up began (`Some(None)`:
    /// it no longer exists).
    round: Option<Option<Status>>,
    /// The `end` event is queued; nothing follows it.
    done: bool,
}

impl Feed {
    async fn next(mut self) -> Option<(std::result::Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            if self.stale {
                self.stale = false;
                if let Err(e) = self.read().await {
                    // The client reconnects with Last-Event-ID and misses nothing.
                    tracing::warn!(workflow_id = %self.id, error = %e, "event stream ended: cannot read history");
                    return None;
                }
                continue;
            }
            match self.subscription.recv().await {
                Some(Push::Notified(_) | Push::Resync) => {
                    self.stale = true;
                    // One read covers every change notified so far.
                    while let Some(push) = self.subscription.try_recv() {
                        if push == Push::Lagged {
                            self.resubscribe();
                        }
                    }
                }
                Some(Push::Lagged) => {
                    self.resubscribe();
                    self.stale = true;
                }
                // The hub stopped: the server is shutting down.
                None => return None,
            }
        }
    }

    fn resubscribe(&mut self) {
        self.subscription = self.hub.subscribe(Topic::Workflow(self.id));
    }

    /// Reads one page of entries after the last sent; when that reaches the
    /// end of the history and the workflow had finished when the catch-up
    /// began, queues `end`.
    async fn read(&mut self) -> store::Result<()> {
        // Status before history: if it had finished then, the history read
        // after it holds every entry.
        let status = match self.round {
            Some(status) => status,
            None => {
                let status = store::status(&self.pool, self.id).await?;
                self.round = Some(status);
                status
            }
        };
        let entries = store::history_after(&self.pool, self.id, self.last_seq, PAGE).await?;
        let full = entries.len() as i64 == PAGE;
        for entry in entries {
            let item = HistoryItem::from(entry);
            self.last_seq = item.seq;
            let event = Event::default()
                .id(item.seq.to_string())
                .event(item.event.as_str());
            match event.json_data(&item) {
                Ok(event) => self.queue.push_back(event),
                Err(e) => {
                    tracing::warn!(workflow_id = %self.id, seq = item.seq, error = %e, "history entry not sent")
                }
            }
        }
        if full {
            self.stale = true;
            return Ok(());
        }
        self.round = None;
        if status.is_none_or(Status::is_finished) {
            let end = StreamEnd {
                status: status.map(WorkflowStatus::from),
            };
            match Event::default().event("end").json_data(end) {
                Ok(event) => self.queue.push_back(event),
                Err(e) => {
                    tracing::warn!(workflow_id = %self.id, error = %e, "end event not sent")
                }
            }
            self.done = true;
        }
        Ok(())
    }
}
