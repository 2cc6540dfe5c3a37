//! `GET /ws`: the chat's WebSocket. JSON text frames both ways; the
//! protocol is written out in `docs/api.md` ("The chat's WebSocket").
//!
//! A person holds at most `ws_per_person` connections to one process (the
//! chat's settings): the upgrade takes a place in the push hub's count of
//! their chat's subscribers, and one more is refused with 429.
//!
//! On connect the server waits for the client's `hello` (the last sequence
//! number it saw; [`HELLO_TIMEOUT`] without one means 0), starts the
//! person's onboarding if they have none, subscribes to the push hub
//! (their chat and their onboarding) **before** it reads anything, signals
//! `user_connected`, then sends a `snapshot` and every message after the
//! client's sequence number, then live frames. Each notification only says
//! "look": the connection reads the messages after the last one it sent,
//! so nothing is lost or sent twice whatever the notifications do.
//!
//! Frames go through a bounded per-connection queue ([`QUEUE`]) to a writer
//! task: the connection never waits on its socket, so a slow or stuck
//! client delays nobody but itself. A connection whose queue is full is
//! dropped; one whose subscription lags is sent `resync` and closed; the
//! client reconnects with its last sequence number and misses nothing.
//!
//! What the client sends is bounded ([`MAX_FRAME`], [`HARD_LIMIT`],
//! fragments included; a frame declaring more than [`FRAME_READ_LIMIT`] is
//! never buffered); a frame that breaks the WebSocket protocol, or a text
//! frame that is not UTF-8, closes the connection with its code ([`close`]).
//! An idle connection keeps a read buffer of [`READ_BUFFER`].
//!
//! Replies while the model writes them come with the chat's notifications
//! (`"kind": "stream"`, the text itself) and go out as `stream` frames,
//! before any message notified with them. They are ephemeral: one that
//! finds the queue full is not sent, and nothing re-reads them (the stored
//! message replaces the draft anyway).

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use floe_engine::chat::{self, ReplyChunk};
use floe_engine::metrics::{Open, WS_CONNECTIONS};
use floe_engine::trace;
use floe_engine::workflow::store as workflows;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::chat::{
    ChatMessage, InboxEntry, answer_queries, ensure_onboarding, post_message, read_inbox,
};
use super::error::{ApiError, ErrorBody, ErrorDetail, Result};
use super::session::{Session, TAG};
use super::state::AppState;
use crate::push::{Push, Subscription, Topic};

/// Largest client frame handled, in bytes: a larger one (up to
/// [`HARD_LIMIT`]) is answered with an `error` frame.
pub const MAX_FRAME: usize = 16 * 1024;
/// Largest client message read at all, fragments included: a larger one
/// closes the connection (code 1009). A frame declaring more than
/// [`FRAME_READ_LIMIT`] is refused from its header, unread.
pub const HARD_LIMIT: usize = 64 * 1024;
/// Largest single frame read whole before it is judged. A frame just past
/// [`HARD_LIMIT`] is read to its end and then refused, so that nothing is
/// left unread when the server closes: the kernel answers a close with
/// unread data by a reset, which can overtake the 1009 close frame.
pub const FRAME_READ_LIMIT: usize = 2 * HARD_LIMIT;
/// What an idle connection's read buffer keeps, and the most read from the
/// socket at a time; it grows to a frame's size while reading one.
/// tungstenite's default, 128 KiB, made an idle connection cost 210 KiB
/// (W6c in docs/BENCHMARKS.md).
pub const READ_BUFFER: usize = 4 * 1024;
/// Frames queued for a client's writer; a client that lets it fill is
/// dropped.
pub const QUEUE: usize = 256;
/// How long the server waits for `hello` before it assumes `after: 0`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages read (and queued) at a time when catching a client up.
const PAGE: i64 = 100;
/// How long catching up waits for room in a client's queue before it
/// gives the client up.
const STALL: Duration = Duration::from_secs(10);
/// How long a closing connection's last frames get to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The `Retry-After` of a connection refused for the per-person cap, in
/// seconds.
const FULL_RETRY_AFTER: u64 = 5;

/// The close codes the server uses.
pub mod close {
    /// Nothing was received for the idle timeout.
    pub const IDLE: u16 = 1000;
    /// The server is stopping: reconnect (to another process, or soon).
    pub const GOING_AWAY: u16 = 1001;
    /// A frame that breaks the WebSocket protocol (unmasked, a stray
    /// continuation, an unknown opcode, reserved bits set, …).
    pub const PROTOCOL: u16 = 1002;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_TEXT: u16 = 1007;
    /// A frame larger than [`super::HARD_LIMIT`].
    pub const TOO_BIG: u16 = 1009;
    /// An internal error (logged on the server).
    pub const INTERNAL: u16 = 1011;
    /// The connection fell behind its notifications: reconnect with
    /// `hello.after` set to the last sequence number seen.
    pub const RESYNC: u16 = 4000;
}

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The first frame: the last sequence number the client saw (0: none).
    /// Sent again later, it asks for a fresh snapshot and the messages after
    /// `after` again.
    Hello {
        /// The last sequence number seen.
        #[serde(default)]
        after: i64,
    },
    /// A message, as `POST /api/chat/message`: answered with `ack` or
    /// `error`.
    Message {
        /// The text.
        content: String,
        /// The client's id for it: sent twice, it is stored once.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// The client checks the connection: answered with `pong`.
    Ping,
    /// The answer to the server's `ping`.
    Pong,
}

/// A frame to the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Where things stand: sent after `hello`, before the messages the client
    /// missed.
    Snapshot {
        /// The onboarding's `get_state` (`null` until its start is applied).
        state: Value,
        /// The onboarding's `get_progress` (`null` likewise).
        progress: Value,
        /// The conversation's last sequence number now.
        last_seq: i64,
    },
    /// A message of the conversation (the person's own included), in
    /// sequence order, each once.
    Message {
        /// The message.
        message: ChatMessage,
    },
    /// Whether the assistant is working on a reply (sent when it changes).
    Typing {
        /// Whether it is.
        typing: bool,
    },
    /// The onboarding's `get_progress` (sent when it changes).
    Progress {
        /// The answer.
        progress: Value,
    },
    /// The whole inbox (sent when it changes).
    Inbox {
        /// Its items, oldest first.
        items: Vec<InboxEntry>,
    },
    /// A piece of an assistant reply while the model writes it (ephemeral:
    /// the `message` frame with the stored reply replaces it).
    Stream {
        /// The turn: `<workflow id>/<activity id>`.
        turn: String,
        /// The activity's attempt: a later one's text replaces an earlier
        /// one's.
        attempt: i32,
        /// The model call within the attempt: a later one's text replaces
        /// an earlier one's.
        call: u32,
        /// Where `text` starts in the reply, in UTF-16 code units.
        offset: u64,
        /// The reply's text from `offset` on.
        text: String,
    },
    /// A `message` frame was accepted.
    Ack {
        /// Its `client_id`.
        client_id: Option<String>,
        /// Its sequence number (the first one's for a duplicate).
        seq: i64,
        /// Whether the `client_id` was sent before (nothing changed).
        duplicate: bool,
    },
    /// A frame was refused (the connection stays), or the connection is
    /// about to close.
    Error {
        /// As in the HTTP error body: `malformed_json`, `validation_failed`,
        /// `rate_limited`, `payload_too_large`, `onboarding_completed`, …
        code: String,
        /// For people.
        message: String,
        /// The refused message's `client_id`, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// For `rate_limited`: seconds to wait.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// The server's heartbeat: answer with `pong`.
    Ping,
    /// The answer to the client's `ping`.
    Pong,
    /// The connection fell behind: it closes; reconnect with `hello.after`.
    Resync,
}

impl ServerFrame {
    fn error(e: &ApiError, client_id: Option<String>) -> Self {
        Self::Error {
            code: e.code().to_owned(),
            message: e.public_message(),
            client_id,
            retry_after: match e {
                ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
                _ => None,
            },
        }
    }
}

/// Opens the chat's WebSocket (JSON frames; see docs/api.md for the
/// protocol). The session may also come as `?token=`, for clients that
/// cannot set headers.
#[utoipa::path(
    get, path = "/ws", tag = TAG,
    params(
        ("token" = Option<String>, Query, description = "The session token, for clients that can set neither the cookie nor the Authorization header"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 429, description = "The person has the most connections allowed open already (`rate_limited`)", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_token" = [])),
)]
pub async fn connect(
    session: Session,
    State(state): State<AppState>,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!("expected a WebSocket upgrade: {}", e.body_text()))
    })?;
    let user = session.user_id().to_owned();
    // The person's place among their connections: taken now, given back
    // when the connection ends (or the upgrade fails).
    let max = match state.chat.ws_per_person {
        0 => usize::MAX,
        n => n,
    };
    let Some(chat_sub) = state.hub.subscribe_at_most(Topic::User(user.clone()), max) else {
        tracing::info!(user_id = %user, max, "websocket refused: too many connections");
        return Ok(too_many(max));
    };
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(HARD_LIMIT)
        .max_frame_size(FRAME_READ_LIMIT)
        .on_failed_upgrade(
            move |e| tracing::debug!(user_id = %user, error = %e, "websocket upgrade failed"),
        )
        // The connection runs in the upgrade request's trace.
        .on_upgrade(move |socket| {
            trace::scope(trace::current(), serve(socket, state, session, chat_sub))
        }))
}

/// 429 for one connection more than the person may hold.
fn too_many(max: usize) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: ApiError::RateLimited {
                retry_after_secs: FULL_RETRY_AFTER,
            }
            .code()
            .to_owned(),
            message: format!(
                "too many open connections: at most {max} per person; close one and retry"
            ),
        },
    };
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(FULL_RETRY_AFTER));
    response
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The client closed it, or it broke.
    Gone,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// A frame over [`HARD_LIMIT`].
    TooBig,
    /// A text frame that is not UTF-8.
    InvalidText,
    /// A frame that breaks the WebSocket protocol (what tungstenite said).
    Protocol(String),
    /// The subscription fell behind.
    Lagged,
    /// The client's queue is full.
    Overflow,
    /// The server is stopping (the hub has stopped).
    Stopping,
    /// Something failed on our side.
    Failed(ApiError),
}

impl<E: Into<ApiError>> From<E> for End {
    fn from(e: E) -> Self {
        Self::Failed(e.into())
    }
}

/// Serves one connection until it ends; `chat_sub` is its subscription to
/// the person's chat.
async fn serve(socket: WebSocket, state: AppState, session: Session, chat_sub: Subscription) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = tokio::spawn(write(sink, rx, state.chat.ws_idle()));
    let mut connection = Connection {
        state,
        session,
        tx,
        run_id: Uuid::nil(),
        last_sent: 0,
        typing: None,
        progress: None,
        inbox: None,
        last_received: Instant::now(),
    };
    let _open = Open::new(metrics::gauge!(WS_CONNECTIONS));
    tracing::info!(user_id = %connection.session.user_id(), "websocket connected");
    let end = match connection.run(&mut stream, chat_sub).await {
        Ok(never) => match never {},
        Err(end) => end,
    };
    connection.close(end, writer).await;
}

/// Writes queued frames to the socket, each within `timeout`; ends when the
/// queue closes, after a close frame, or when the socket fails.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Message>,
    timeout: Duration,
) {
    while let Some(message) = queue.recv().await {
        let closing = matches!(message, Message::Close(_));
        match tokio::time::timeout(timeout, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "websocket write failed");
                return;
            }
            Err(_) => {
                tracing::debug!("websocket write timed out");
                return;
            }
        }
        if closing {
            break;
        }
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

/// What changed since the last read, by the notifications received, and
/// the pieces of replies being written that came with them.
#[derive(Debug, Default)]
struct Stale {
    messages: bool,
    inbox: bool,
    workflow: bool,
    streams: Vec<ReplyChunk>,
}

impl Stale {
    fn chat(&mut self, push: Option<Push>, last_sent: i64) -> std::result::Result<(), End> {
        match push {
            Some(Push::Notified(payload)) => match payload.get("kind").and_then(Value::as_str) {
                Some("message") => {
                    let seq = payload.get("seq").and_then(Value::as_i64);
                    self.messages |= seq.is_none_or(|seq| seq > last_sent);
                }
                Some("inbox") => self.inbox = true,
                Some("stream") => match serde_json::from_value(payload) {
                    Ok(chunk) => self.streams.push(chunk),
                    Err(e) => {
                        tracing::debug!(error = %e, "a reply piece that does not decode; ignored")
                    }
                },
                _ => {
                    self.messages = true;
                    self.inbox = true;
                }
            },
            Some(Push::Resync) => {
                self.messages = true;
                self.inbox = true;
                self.workflow = true;
            }
            Some(Push::Lagged) => return Err(End::Lagged),
            None => return Err(End::Stopping),
        }
        Ok(())
    }

    fn workflow(&mut self, push: Option<Push>) -> std::result::Result<(), End> {
        match push {
            Some(Push::Notified(_)) => self.workflow = true,
            Some(Push::Resync) => {
                self.messages = true;
                self.inbox = true;
                self.workflow = true;
            }
            Some(Push::Lagged) => return Err(End::Lagged),
            None => return Err(End::Stopping),
        }
        Ok(())
    }
}

/// One client's connection: what it was sent, and its queue.
struct Connection {
    state: AppState,
    session: Session,
    tx: mpsc::Sender<Message>,
    /// The person's onboarding.
    run_id: Uuid,
    /// The last message sequence number sent (or the client's `after`).
    last_sent: i64,
    /// The `typing` the client knows.
    typing: Option<bool>,
    /// The progress the client knows.
    progress: Option<Value>,
    /// The inbox the client knows.
    inbox: Option<Vec<InboxEntry>>,
    /// When the client's last frame (of any kind) arrived.
    last_received: Instant,
}

type Step = std::result::Result<(), End>;

impl Connection {
    fn user_id(&self) -> &str {
        self.session.user_id()
    }

    /// Runs the protocol; returns only why it ended.
    async fn run(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        mut chat_sub: Subscription,
    ) -> std::result::Result<std::convert::Infallible, End> {
        // hello (or a first frame that is not one, or the timeout: after 0).
        let mut first = None;
        let mut after = 0;
        let hello = tokio::time::sleep(HELLO_TIMEOUT);
        tokio::pin!(hello);
        loop {
            tokio::select! {
                _ = &mut hello => break,
                next = stream.next() => match self.receive(next)? {
                    Some(ClientFrame::Hello { after: a }) => {
                        after = a;
                        break;
                    }
                    Some(ClientFrame::Ping) => self.send(&ServerFrame::Pong)?,
                    Some(ClientFrame::Pong) | None => {}
                    Some(frame @ ClientFrame::Message { .. }) => {
                        first = Some(frame);
                        break;
                    }
                },
                // Everything is read after hello anyway; this only keeps
                // the subscription from lagging meanwhile.
                push = chat_sub.recv() => match push {
                    Some(Push::Lagged) => return Err(End::Lagged),
                    None => return Err(End::Stopping),
                    Some(Push::Notified(_) | Push::Resync) => {}
                },
            }
        }

        let onboarding = ensure_onboarding(&self.state, &self.session).await?;
        self.run_id = onboarding.run_id;
        // Subscribe first, then read: whatever commits in between is both
        // read and notified, never missed.
        let mut workflow_sub = self.state.hub.subscribe(Topic::Workflow(self.run_id));
        self.signal_connected().await?;
        self.catch_up(after).await?;
        if let Some(frame) = first {
            self.handle(frame).await?;
        }

        let every = self.state.chat.ws_ping();
        let idle = self.state.chat.ws_idle();
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let mut stale = Stale::default();
            tokio::select! {
                next = stream.next() => {
                    if let Some(frame) = self.receive(next)? {
                        self.handle(frame).await?;
                    }
                }
                push = chat_sub.recv() => stale.chat(push, self.last_sent)?,
                push = workflow_sub.recv() => stale.workflow(push)?,
                _ = ping.tick() => self.send(&ServerFrame::Ping)?,
                _ = tokio::time::sleep_until(self.last_received + idle) => return Err(End::Idle),
            }
            // One read covers every change notified so far.
            while let Some(push) = chat_sub.try_recv() {
                stale.chat(Some(push), self.last_sent)?;
            }
            while let Some(push) = workflow_sub.try_recv() {
                stale.workflow(Some(push))?;
            }
            // Reply pieces first: a stored reply notified with them comes
            // after its drafts.
            for chunk in std::mem::take(&mut stale.streams) {
                self.send_stream(chunk)?;
            }
            if stale.messages {
                self.send_messages().await?;
            }
            if stale.inbox {
                self.send_inbox().await?;
            }
            if stale.workflow {
                self.send_workflow().await?;
            }
        }
    }

    /// Takes what the socket delivered: a client frame to act on, `None`
    /// for what needs nothing more (heartbeats, frames refused with an
    /// `error` frame), or why the connection ends.
    fn receive(
        &mut self,
        next: Option<std::result::Result<Message, axum::Error>>,
    ) -> std::result::Result<Option<ClientFrame>, End> {
        let message = match next {
            None => return Err(End::Gone),
            Some(Err(e)) => {
                tracing::debug!(user_id = %self.user_id(), error = %e, "websocket read failed");
                return Err(read_failed(&e));
            }
            Some(Ok(message)) => message,
        };
        self.last_received = Instant::now();
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.refuse(ApiError::BadRequest(
                    "frames must be JSON text, not binary".to_owned(),
                ))?;
                return Ok(None);
            }
            Message::Ping(_) | Message::Pong(_) => return Ok(None),
            Message::Close(_) => return Err(End::Gone),
        };
        if text.len() > MAX_FRAME {
            self.refuse(ApiError::PayloadTooLarge)?;
            return Ok(None);
        }
        match parse(text.as_str()) {
            Ok(frame) => Ok(Some(frame)),
            Err(e) => {
                self.refuse(e)?;
                Ok(None)
            }
        }
    }

    /// Answers a client frame.
    async fn handle(&mut self, frame: ClientFrame) -> Step {
        match frame {
            ClientFrame::Hello { after } => self.catch_up(after).await,
            ClientFrame::Message { content, client_id } => {
                // Each message starts a trace of its own.
                let id = trace::TraceId::generate();
                tracing::debug!(user_id = %self.user_id(), trace_id = %id, "websocket message");
                let post = post_message(&self.state, &self.session, &content, client_id.as_deref());
                let posted = trace::scope(Some(id), post).await;
                match posted {
                    Ok(accepted) => self.send(&ServerFrame::Ack {
                        client_id,
                        seq: accepted.seq,
                        duplicate: accepted.duplicate,
                    }),
                    Err(e) => {
                        e.log();
                        self.send(&ServerFrame::error(&e, client_id))
                    }
                }
            }
            ClientFrame::Ping => self.send(&ServerFrame::Pong),
            ClientFrame::Pong => Ok(()),
        }
    }

    /// Passes a piece of a reply on as a `stream` frame, if the queue has
    /// room (it is ephemeral: dropping it loses nothing stored).
    fn send_stream(&self, chunk: ReplyChunk) -> Step {
        let frame = ServerFrame::Stream {
            turn: chunk.turn(),
            attempt: chunk.attempt,
            call: chunk.call,
            offset: chunk.offset,
            text: chunk.text,
        };
        let text = serde_json::to_string(&frame)
            .map_err(|e| ApiError::unexpected(e, "encoding a frame"))?;
        match self.tx.try_send(Message::text(text)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(user_id = %self.user_id(), "stream frame dropped: the queue is full");
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(End::Gone),
        }
    }

    /// An `error` frame for a refused frame; the connection stays.
    fn refuse(&self, e: ApiError) -> Step {
        e.log();
        self.send(&ServerFrame::error(&e, None))
    }

    /// Queues `frame` without waiting: a full queue ends the connection.
    fn send(&self, frame: &ServerFrame) -> Step {
        let text = serde_json::to_string(frame)
            .map_err(|e| ApiError::unexpected(e, "encoding a frame"))?;
        self.tx.try_send(Message::text(text)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => End::Overflow,
            mpsc::error::TrySendError::Closed(_) => End::Gone,
        })
    }

    /// Tells the onboarding the person is here (the assistant speaks first
    /// to someone it has not greeted). A finished onboarding is left alone.
    async fn signal_connected(&self) -> Step {
        let mut tx = self
            .state
            .pool
            .begin()
            .await
            .map_err(|e| ApiError::unexpected(e, "begin"))?;
        match workflows::signal(&mut tx, self.run_id, "user_connected", &json!({}), None).await {
            Ok(_) => tx
                .commit()
                .await
                .map_err(|e| ApiError::unexpected(e, "commit user_connected"))?,
            Err(workflows::Error::Finished { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// The snapshot, then every message after `after`, then the inbox if
    /// it has anything.
    async fn catch_up(&mut self, after: i64) -> Step {
        let user = chat::store::user(&self.state.pool, self.user_id())
            .await?
            .ok_or(ApiError::NoSession)?;
        let answers = self.read_queries().await?;
        let (state, progress) = answers.clone().unwrap_or((Value::Null, Value::Null));
        self.typing = answers
            .as_ref()
            .and_then(|(s, _)| s.get("typing").and_then(Value::as_bool));
        self.progress = answers.map(|(_, p)| p);
        self.last_sent = after.clamp(0, user.last_seq);
        tracing::debug!(user_id = %self.user_id(), after = self.last_sent, last_seq = user.last_seq, "websocket catching up");
        self.send(&ServerFrame::Snapshot {
            state,
            progress,
            last_seq: user.last_seq,
        })?;
        self.send_messages().await?;
        self.inbox = Some(Vec::new());
        self.send_inbox().await
    }

    /// Every message after the last one sent, a page at a time, each page
    /// once the queue has room for it.
    async fn send_messages(&mut self) -> Step {
        loop {
            let permits =
                match tokio::time::timeout(STALL, self.tx.reserve_many(PAGE as usize)).await {
                    Ok(Ok(permits)) => permits,
                    Ok(Err(_)) => return Err(End::Gone),
                    Err(_) => return Err(End::Overflow),
                };
            let page =
                chat::store::messages_after(&self.state.pool, self.user_id(), self.last_sent, PAGE)
                    .await?;
            let full = page.len() as i64 == PAGE;
            for (message, permit) in page.into_iter().zip(permits) {
                self.last_sent = message.seq;
                let frame = ServerFrame::Message {
                    message: message.into(),
                };
                let text = serde_json::to_string(&frame)
                    .map_err(|e| ApiError::unexpected(e, "encoding a frame"))?;
                permit.send(Message::text(text));
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The inbox, when it differs from what the client has.
    async fn send_inbox(&mut self) -> Step {
        let items = read_inbox(&self.state, &self.session).await?.items;
        if self.inbox.as_ref() == Some(&items) {
            return Ok(());
        }
        self.send(&ServerFrame::Inbox {
            items: items.clone(),
        })?;
        self.inbox = Some(items);
        Ok(())
    }

    /// `typing` and `progress`, each when it differs from what the client
    /// has.
    async fn send_workflow(&mut self) -> Step {
        let Some((state, progress)) = self.read_queries().await? else {
            return Ok(());
        };
        let typing = state.get("typing").and_then(Value::as_bool);
        if let Some(typing) = typing
            && self.typing != Some(typing)
        {
            self.send(&ServerFrame::Typing { typing })?;
            self.typing = Some(typing);
        }
        if self.progress.as_ref() != Some(&progress) {
            self.send(&ServerFrame::Progress {
                progress: progress.clone(),
            })?;
            self.progress = Some(progress);
        }
        Ok(())
    }

    /// The onboarding's `get_state` and `get_progress`, from its row.
    async fn read_queries(&self) -> std::result::Result<Option<(Value, Value)>, End> {
        let Some(row) = workflows::get(&self.state.pool, self.run_id).await? else {
            return Ok(None);
        };
        Ok(answer_queries(&self.state, &row)?)
    }

    /// Says why (when there is something to say), closes, and lets the
    /// writer finish; a connection dropped for a full queue is cut at once.
    async fn close(self, end: End, mut writer: JoinHandle<()>) {
        let user_id = self.user_id().to_owned();
        let last: Option<(Option<ServerFrame>, u16, &str)> = match &end {
            End::Gone => None,
            End::Overflow => {
                tracing::info!(user_id = %user_id, "websocket dropped: the client does not keep up");
                writer.abort();
                return;
            }
            End::Idle => Some((None, close::IDLE, "idle")),
            End::Stopping => Some((None, close::GOING_AWAY, "server stopping")),
            End::Lagged => Some((Some(ServerFrame::Resync), close::RESYNC, "resync")),
            End::TooBig => Some((
                Some(ServerFrame::error(&ApiError::PayloadTooLarge, None)),
                close::TOO_BIG,
                "frame too large",
            )),
            End::InvalidText => Some((
                Some(ServerFrame::error(
                    &ApiError::BadRequest("a text frame must be valid UTF-8".to_owned()),
                    None,
                )),
                close::INVALID_TEXT,
                "invalid UTF-8",
            )),
            End::Protocol(what) => Some((
                Some(ServerFrame::error(
                    &ApiError::BadRequest(format!("WebSocket protocol error: {what}")),
                    None,
                )),
                close::PROTOCOL,
                "protocol error",
            )),
            End::Failed(e) => {
                e.log();
                Some((
                    Some(ServerFrame::error(e, None)),
                    close::INTERNAL,
                    "internal error",
                ))
            }
        };
        if let Some((frame, code, reason)) = last {
            if let Some(frame) = frame {
                let _ = self.send(&frame);
            }
            let _ = self.tx.try_send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })));
        }
        drop(self.tx);
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        tracing::info!(user_id = %user_id, reason = ?end, "websocket closed");
    }
}

/// A client frame from its text: not JSON is `malformed_json`, JSON that
/// is no known frame `validation_failed`.
fn parse(text: &str) -> Result<ClientFrame> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::MalformedJson(format!("a frame must be a JSON object: {e}")))?;
    serde_json::from_value(value).map_err(|e| {
        ApiError::Validation(format!(
            "not a known frame ({e}); expected type hello, message, ping or pong"
        ))
    })
}

/// Why a failed read ends the connection: a frame over the limit, text
/// that is not UTF-8 and a protocol violation are the client's doing (and
/// answered with their close codes); anything else means it is gone.
fn read_failed(e: &axum::Error) -> End {
    use tungstenite::error::{Error, ProtocolError};
    match std::error::Error::source(e).and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::Capacity(_)) => End::TooBig,
        Some(Error::Utf8(_)) => End::InvalidText,
        Some(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => End::Gone,
        Some(Error::Protocol(what)) => End::Protocol(what.to_string()),
        _ => End::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_or_say_why_not() {
        assert_eq!(
            parse(r#"{"type":"hello","after":7}"#).expect("hello"),
            ClientFrame::Hello { after: 7 }
        );
        assert_eq!(
            parse(r#"{"type":"message","content":"hi","client_id":"c1"}"#).expect("message"),
            ClientFrame::Message {
                content: "hi".into(),
                client_id: Some("c1".into())
            }
        );
        assert_eq!(
            parse("not json").expect_err("garbage").code(),
            "malformed_json"
        );
        assert_eq!(
            parse(r#"{"type":"dance"}"#).expect_err("unknown").code(),
            "validation_failed"
        );
        assert_eq!(
            parse(r#"{"type":"message"}"#)
                .expect_err("no content")
                .code(),
            "validation_failed"
        );
    }

    #[test]
    fn frames_encode_with_their_type() {
        let frame = serde_json::to_value(ServerFrame::Typing { typing: true }).expect("encode");
        assert_eq!(frame, json!({ "type": "typing", "typing": true }));
        let frame = serde_json::to_value(ServerFrame::error(
            &ApiError::RateLimited {
                retry_after_secs: 3,
            },
            Some("c1".into()),
        ))
        .expect("encode");
        assert_eq!(frame["code"], "rate_limited");
        assert_eq!(frame["retry_after"], 3);
        assert_eq!(frame["client_id"], "c1");
        let frame = serde_json::to_value(ServerFrame::Stream {
            turn: "w/t1.agent".into(),
            attempt: 2,
            call: 1,
            offset: 5,
            text: "lo!".into(),
        })
        .expect("encode");
        assert_eq!(
            frame,
            json!({ "type": "stream", "turn": "w/t1.agent", "attempt": 2, "call": 1, "offset": 5, "text": "lo!" })
        );
    }
}
