//! The LLM activities a worker runs for workflows: an agent's turn and the
//! user's memory, read before a turn and updated after it.
//!
//! | activity        | input                                   | output                          |
//! |-----------------|-----------------------------------------|---------------------------------|
//! | `agent.turn`    | the contract's `AgentInput`             | `AgentOutput`                   |
//! | `memory.get`    | `{user_id, query, limit?}`              | `{memories: [text, ...]}`       |
//! | `memory.update` | `{user_id, conversation, hints?}`       | `{changes: [MemoryChange, ...]}`|
//!
//! With a model configured (`--llm-base-url`), every call goes to it
//! through the ledger ([`floe_agents::llm::ledger`]): recorded once, and
//! replayed to a later attempt of the same activity instead of being made
//! again. Without one, the deterministic offline agents and memory run.
//!
//! # Streamed replies
//!
//! With `--llm-stream`, `agent.turn` sends the reply to the person's browsers
//! while the model writes it: the reply field's text as it grows
//! ([`floe_agents::onboarding::llm::REPLY_FIELD`]) goes, at most every
//! [`STREAM_EVERY`] and once more at the end, as [`ReplyChunk`]s NOTIFYed on
//! `floe_chat_stream` (the API's push hub turns them into WebSocket `stream`
//! frames). Each chunk carries the text since the last one and its offset,
//! so a long reply never meets NOTIFY's 8000-byte limit, and the activity's
//! attempt and the model call, so a retry's text replaces a failed one's.
//! Streaming never fails or holds up a turn: the model's stream only updates
//! a shared draft, a task of its own sends it, a failed send is logged and
//! the turn carries on, and the turn waits at most [`STREAM_FLUSH`] for the
//! last piece (so that it goes out before the stored message).

use std::sync::Arc;
use std::time::Duration;

use floe_agents::agent::{AgentError, FieldSink};
use floe_agents::llm::ledger::{CallSite, Recorder};
use floe_agents::llm::openai::OpenAiClient;
use floe_agents::llm::{ChatModel, Embedder};
use floe_agents::memory::{Brain, Memory, Scope};
use floe_agents::onboarding::contract::{AgentInput, ChatTurn};
use floe_agents::onboarding::{AgentOptions, run_turn};
use floe_agents::settings::LlmSettings;
use floe_engine::chat::{MAX_CHUNK_PAYLOAD, ReplyChunk, store as chat};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::workflows::{ActivityCtx, ActivityError, Workflows, decode_input};

pub use floe_agents::onboarding::workflow::{AGENT_TURN, MEMORY_GET, MEMORY_UPDATE};

/// Memories handed to an agent when the reader asks for no limit.
const DEFAULT_MEMORY_LIMIT: usize = 10;

/// Least time between two pieces of a streamed reply (the last piece is
/// sent at once).
pub const STREAM_EVERY: Duration = Duration::from_millis(100);

/// Longest a turn waits, once the model has answered, for the last piece of
/// its streamed reply to go out.
pub const STREAM_FLUSH: Duration = Duration::from_millis(250);

/// Most bytes of reply text tried in one piece (fewer when escaping makes
/// the payload too long).
const PIECE_BYTES: usize = 4_096;

/// The model (if any) and memory the activities use.
pub struct Llm {
    model: Option<Arc<dyn ChatModel>>,
    options: AgentOptions,
    memory: Memory,
    pool: PgPool,
    /// Stream replies to the person while the model writes them.
    stream: bool,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("model", &self.model.as_ref().map(|m| m.model_name()))
            .finish_non_exhaustive()
    }
}

impl Llm {
    /// From the settings: the OpenAI-compatible client when a base URL is
    /// set, the offline agents otherwise.
    pub fn from_settings(settings: &LlmSettings, pool: PgPool) -> anyhow::Result<Self> {
        let mut model: Option<Arc<dyn ChatModel>> = None;
        let mut embedder: Option<Arc<dyn Embedder>> = None;
        match settings.base_url() {
            None => {
                tracing::info!("no LLM configured (--llm-base-url): offline agents and memory");
            }
            Some(base_url) => {
                let client = Arc::new(OpenAiClient::new(settings)?);
                tracing::info!(%base_url, model = %settings.model,
                    embedding_model = ?settings.embedding_model(), "LLM configured");
                if settings.embedding_model().is_some() {
                    embedder = Some(client.clone());
                }
                model = Some(client);
            }
        }
        Ok(Self {
            // Only a model streams: the offline agents answer at once.
            stream: settings.stream && model.is_some(),
            model,
            options: AgentOptions::from(settings),
            memory: Memory::new(pool.clone(), embedder),
            pool,
        })
    }

    /// Registers the activities.
    pub fn register(self, workflows: &mut Workflows) {
        let this = Arc::new(self);
        let (turn, get, update) = (this.clone(), this.clone(), this);
        workflows
            .activity(AGENT_TURN, move |ctx, input| {
                let this = turn.clone();
                async move { this.turn(ctx, input).await }
            })
            .activity(MEMORY_GET, move |ctx, input| {
                let this = get.clone();
                async move { this.memory_get(ctx, input).await }
            })
            .activity(MEMORY_UPDATE, move |ctx, input| {
                let this = update.clone();
                async move { this.memory_update(ctx, input).await }
            });
    }

    fn recorder(&self, ctx: &ActivityCtx, user_id: &str) -> Option<Recorder> {
        let site = CallSite {
            workflow_id: Some(ctx.workflow_id),
            activity_id: Some(ctx.activity_id.clone()),
            attempt: Some(ctx.attempt),
            user_id: Some(user_id.to_owned()),
        };
        self.model
            .as_ref()
            .map(|m| Recorder::new(m.clone(), self.pool.clone(), site))
    }

    async fn turn(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: AgentInput = decode_input(input)?;
        let recorder = self.recorder(&ctx, &input.context.user_id);
        let publisher = (self.stream && recorder.is_some())
            .then(|| ReplyPublisher::start(self.pool.clone(), &ctx, &input.context.user_id));
        let sink = publisher.as_ref().map(ReplyPublisher::sink);
        let result = run_turn(recorder.as_ref(), &self.options, &input, sink.as_deref()).await;
        if let Some(publisher) = publisher {
            publisher.finish().await;
        }
        match result {
            Ok(output) => {
                serde_json::to_value(output).map_err(|e| ActivityError::permanent(e.to_string()))
            }
            Err(e) => Err(agent_error(e, recorder.as_ref()).await),
        }
    }

    async fn memory_get(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: MemoryGet = decode_input(input)?;
        let recorder = self.recorder(&ctx, &input.user_id);
        let scope = Scope::user(&input.user_id);
        let found = self
            .memory
            .search(
                recorder.as_ref(),
                &scope,
                &input.query,
                input.limit.unwrap_or(DEFAULT_MEMORY_LIMIT),
                0.0,
            )
            .await
            .map_err(|e| ActivityError::new(&e, e.retryable()))?;
        let memories: Vec<&str> = found.iter().map(|m| m.memory.as_str()).collect();
        Ok(json!({ "memories": memories }))
    }

    async fn memory_update(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: MemoryUpdate = decode_input(input)?;
        let recorder = self.recorder(&ctx, &input.user_id);
        let brain = match &recorder {
            Some(recorder) => Brain::Llm {
                recorder,
                mode: self.options.mode,
                strict: self.options.strict,
                retries: self.options.retries,
            },
            None => Brain::Offline,
        };
        let scope = Scope::user(&input.user_id);
        match self
            .memory
            .update(brain, &scope, &input.conversation, &input.hints)
            .await
        {
            Ok(changes) => Ok(json!({ "changes": changes })),
            Err(e) => {
                abandon_if(e.is_output_failure(), recorder.as_ref()).await;
                Err(ActivityError::new(&e, e.retryable()))
            }
        }
    }
}

#[derive(Deserialize)]
struct MemoryGet {
    user_id: String,
    #[serde(default)]
    query: String,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct MemoryUpdate {
    user_id: String,
    conversation: Vec<ChatTurn>,
    #[serde(default)]
    hints: Vec<String>,
}

/// When an attempt failed on what the model said, its recorded answers are
/// not replayed to the retry.
async fn abandon_if(output_failure: bool, recorder: Option<&Recorder>) {
    if let (true, Some(recorder)) = (output_failure, recorder)
        && let Err(ledger) = recorder.abandon().await
    {
        tracing::warn!(error = %ledger, "could not mark the failed attempt's answers unreusable");
    }
}

/// The reply as the model has written it so far.
#[derive(Debug, Clone, Default)]
struct Draft {
    /// The model call writing it (a new one starts the text again).
    call: u32,
    /// Its text so far.
    text: String,
    /// The model has answered: send what is left, and stop.
    done: bool,
}

/// Sends one `agent.turn` attempt's reply, as it grows, to the person's
/// browsers (see the module docs).
struct ReplyPublisher {
    draft: Arc<watch::Sender<Draft>>,
    task: JoinHandle<()>,
}

impl ReplyPublisher {
    /// Starts the task that sends the draft of `user_id`'s reply, written by
    /// the activity attempt `ctx`.
    fn start(pool: PgPool, ctx: &ActivityCtx, user_id: &str) -> Self {
        let (draft, updates) = watch::channel(Draft::default());
        let head = ReplyChunk {
            user_id: user_id.to_owned(),
            workflow_id: ctx.workflow_id,
            activity_id: ctx.activity_id.clone(),
            attempt: ctx.attempt,
            call: 0,
            offset: 0,
            text: String::new(),
        };
        Self {
            draft: Arc::new(draft),
            task: tokio::spawn(publish(pool, head, updates)),
        }
    }

    /// What the agents stream the reply to: it only updates the draft.
    fn sink(&self) -> Box<FieldSink> {
        let draft = self.draft.clone();
        Box::new(move |call: u32, text: &str| {
            draft.send_modify(|d| {
                if d.call == call && text.starts_with(d.text.as_str()) {
                    let known = d.text.len();
                    d.text.push_str(&text[known..]);
                } else {
                    d.call = call;
                    d.text.clear();
                    d.text.push_str(text);
                }
            });
        })
    }

    /// The model has answered: lets the last piece go out, waiting at most
    /// [`STREAM_FLUSH`] for it.
    async fn finish(self) {
        self.draft.send_modify(|d| d.done = true);
        if tokio::time::timeout(STREAM_FLUSH, self.task).await.is_err() {
            tracing::debug!("the streamed reply's last piece is late; not waiting for it");
        }
    }
}

/// What has been sent of the draft.
#[derive(Debug, Default)]
struct Sent {
    call: u32,
    /// The draft's text sent.
    text: String,
    /// Its length in UTF-16 code units: the next piece's offset.
    units: u64,
    /// A send has failed (logged once per turn).
    failed: bool,
}

/// The publishing task: sends what is new in the draft at most every
/// [`STREAM_EVERY`], and what is left at once when it is done; stops then, or
/// when the turn is dropped.
async fn publish(pool: PgPool, head: ReplyChunk, mut updates: watch::Receiver<Draft>) {
    let mut sent = Sent::default();
    let mut next = Instant::now();
    loop {
        if updates.changed().await.is_err() {
            return;
        }
        if !updates.borrow().done {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = updates.wait_for(|d| d.done) => {}
            }
        }
        let draft = updates.borrow_and_update().clone();
        send_new(&pool, &head, &draft, &mut sent).await;
        next = Instant::now() + STREAM_EVERY;
        if draft.done {
            return;
        }
    }
}

/// Sends the draft's text after what was sent, in pieces that fit a NOTIFY.
async fn send_new(pool: &PgPool, head: &ReplyChunk, draft: &Draft, sent: &mut Sent) {
    if draft.call != sent.call || !draft.text.starts_with(sent.text.as_str()) {
        // A new model call writes the reply again: from the start (a piece
        // at offset 0 replaces whatever the browser has of this call).
        *sent = Sent {
            call: draft.call,
            failed: sent.failed,
            ..Sent::default()
        };
    }
    while sent.text.len() < draft.text.len() {
        let rest = &draft.text[sent.text.len()..];
        let Some(chunk) = piece(head, draft.call, sent.units, rest) else {
            tracing::warn!(workflow_id = %head.workflow_id, activity_id = %head.activity_id,
                "a streamed reply piece does not fit a notification; not streaming the rest");
            sent.text.clone_from(&draft.text);
            return;
        };
        if let Err(e) = chat::notify_reply_chunk(pool, &chunk).await {
            if !sent.failed {
                tracing::warn!(workflow_id = %head.workflow_id, activity_id = %head.activity_id,
                    error = %e, "cannot stream the reply; the turn goes on");
            }
            sent.failed = true;
            // Tried again with what comes next.
            return;
        }
        sent.units += chunk.text.encode_utf16().count() as u64;
        sent.text.push_str(&chunk.text);
    }
}

/// The longest start of `rest` (at most [`PIECE_BYTES`]) whose chunk fits
/// [`MAX_CHUNK_PAYLOAD`]; `None` when not even one character does.
fn piece(head: &ReplyChunk, call: u32, offset: u64, rest: &str) -> Option<ReplyChunk> {
    let mut len = floor_char_boundary(rest, PIECE_BYTES);
    loop {
        let chunk = ReplyChunk {
            call,
            offset,
            text: rest[..len].to_owned(),
            ..head.clone()
        };
        if chunk.payload().len() <= MAX_CHUNK_PAYLOAD {
            return Some(chunk);
        }
        let first = rest.chars().next().map_or(0, char::len_utf8);
        if len <= first {
            return None;
        }
        len = floor_char_boundary(rest, len / 2).max(first);
    }
}

/// The largest char boundary of `text` at or before `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

/// An agent's failure as an activity error.
async fn agent_error(e: AgentError, recorder: Option<&Recorder>) -> ActivityError {
    abandon_if(e.is_output_failure(), recorder).await;
    ActivityError::new(&e, e.retryable()).after(e.retry_after())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn head(user_id: &str) -> ReplyChunk {
        ReplyChunk {
            user_id: user_id.into(),
            workflow_id: Uuid::nil(),
            activity_id: "t1.agent".into(),
            attempt: 1,
            call: 0,
            offset: 0,
            text: String::new(),
        }
    }

    #[test]
    fn pieces_fit_a_notification_whatever_the_text() {
        let head = head("u1");
        for text in [
            "plain ".repeat(3_000),
            "é€😀".repeat(2_000),
            // Control characters take six bytes each once escaped.
            "\u{1}\"\n".repeat(3_000),
        ] {
            let mut offset = 0;
            let mut bytes = 0;
            let mut rebuilt = String::new();
            while bytes < text.len() {
                let chunk = piece(&head, 1, offset, &text[bytes..]).expect("a piece");
                assert!(chunk.payload().len() <= MAX_CHUNK_PAYLOAD);
                assert!(!chunk.text.is_empty());
                assert_eq!(chunk.offset, rebuilt.encode_utf16().count() as u64);
                rebuilt.push_str(&chunk.text);
                bytes += chunk.text.len();
                offset += chunk.text.encode_utf16().count() as u64;
            }
            assert_eq!(rebuilt, text);
        }
    }

    #[tokio::test]
    async fn an_unreachable_database_neither_fails_nor_holds_up_the_turn() {
        // Nothing listens on port 1: every send waits for a connection that
        // never comes.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy("postgres://nobody@127.0.0.1:1/nothing")
            .expect("lazy pool");
        let ctx = ActivityCtx {
            workflow_id: Uuid::nil(),
            activity_id: "t1.agent".into(),
            attempt: 1,
            idempotency_key: "k".into(),
        };
        let publisher = ReplyPublisher::start(pool, &ctx, "u1");
        let sink = publisher.sink();
        let started = std::time::Instant::now();
        for n in 1..=1_000 {
            sink(1, &"x".repeat(n));
        }
        sink(2, "again");
        publisher.finish().await;
        assert!(
            started.elapsed() < STREAM_FLUSH + Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_head_too_long_for_a_notification_gives_no_piece() {
        assert!(piece(&head(&"u".repeat(MAX_CHUNK_PAYLOAD)), 1, 0, "hi").is_none());
    }
}
