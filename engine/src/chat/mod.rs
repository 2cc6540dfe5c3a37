//! The onboarding chat's data: people, the workflow that serves each, their
//! conversation and their inbox (tables `floe.users`, `floe.workflow_instances`,
//! `floe.messages`, `floe.inbox_items`).
//!
//! | module      | responsibility                                          |
//! |-------------|---------------------------------------------------------|
//! | this module | the types, the NOTIFY channel                           |
//! | [`store`]   | every SQL statement on those tables                     |
//!
//! Writes NOTIFY [`CHANNEL_CHAT`] with the user's id and what changed (a
//! message's sequence number, or the inbox), never the content: listeners
//! read the content from the tables. The one exception is ephemeral: a reply
//! while the model writes it goes out in pieces ([`ReplyChunk`]) on
//! [`CHANNEL_CHAT_STREAM`], stored nowhere.

pub mod store;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// NOTIFY channel for chat changes; the payload is JSON:
/// `{"user_id", "kind": "message", "seq"}` or `{"user_id", "kind": "inbox"}`.
pub const CHANNEL_CHAT: &str = "floe_chat";

/// NOTIFY channel for assistant replies while the model writes them; the
/// payload is a [`ReplyChunk`] as JSON, with `"kind": "stream"`. Its own
/// channel, so that listeners of [`CHANNEL_CHAT`] (which re-read the tables
/// on every notification) are not woken ten times a second by text that is
/// stored nowhere.
pub const CHANNEL_CHAT_STREAM: &str = "floe_chat_stream";

/// Largest [`ReplyChunk`] payload sent, in bytes: under NOTIFY's 8000.
pub const MAX_CHUNK_PAYLOAD: usize = 7_500;

/// A piece of an assistant reply while the model writes it: ephemeral, sent
/// on [`CHANNEL_CHAT_STREAM`] and stored nowhere. The stored message, when it
/// comes, is the truth.
///
/// A reply is known by its turn (`workflow_id`, `activity_id`) and grows by
/// pieces at increasing offsets; a later `attempt` of the activity, or a
/// later model `call` within an attempt, starts it again from scratch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyChunk {
    /// The person it is for.
    pub user_id: String,
    /// The workflow whose turn it is.
    pub workflow_id: Uuid,
    /// The `agent.turn` activity writing it.
    pub activity_id: String,
    /// That activity's attempt, from 1.
    pub attempt: i32,
    /// The model call within the attempt writing it, from 1.
    pub call: u32,
    /// Where `text` starts in the reply, in UTF-16 code units (a JavaScript
    /// string's length).
    pub offset: u64,
    /// The reply's text from `offset` on.
    pub text: String,
}

impl ReplyChunk {
    /// The turn's id in frames: `<workflow id>/<activity id>`.
    pub fn turn(&self) -> String {
        format!("{}/{}", self.workflow_id, self.activity_id)
    }

    /// The NOTIFY payload.
    pub fn payload(&self) -> String {
        serde_json::json!({
            "kind": "stream",
            "user_id": self.user_id,
            "workflow_id": self.workflow_id,
            "activity_id": self.activity_id,
            "attempt": self.attempt,
            "call": self.call,
            "offset": self.offset,
            "text": self.text,
        })
        .to_string()
    }
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Their id.
    pub id: String,
    /// The name they signed in with.
    pub display_name: String,
    /// Their conversation's last sequence number.
    pub last_seq: i64,
    /// When they first signed in.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person.
    User,
    /// The assistant.
    Assistant,
}

impl Role {
    /// Its name in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// A message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its place in the conversation, from 1.
    pub seq: i64,
    /// Who wrote it.
    pub role: Role,
    /// `message` for the user's; `reply`, `greeting`, `nudge` or `error` for
    /// the assistant's.
    pub kind: String,
    /// The agent that wrote an assistant message.
    pub agent: Option<String>,
    /// The text.
    pub content: String,
    /// A widget to show with it.
    pub widget: Option<serde_json::Value>,
    /// The browser's id of a user message.
    pub client_id: Option<String>,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An assistant message to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// `reply`, `greeting`, `nudge` or `error`.
    pub kind: String,
    /// The agent that wrote it.
    pub agent: Option<String>,
    /// The text.
    pub content: String,
    /// A widget to show with it.
    pub widget: Option<serde_json::Value>,
}

/// An inbox item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Its id.
    pub id: Uuid,
    /// What to do.
    pub title: String,
    /// When it is due.
    pub due_date: Option<Date>,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was collected.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An inbox item to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInboxItem {
    /// What to do.
    pub title: String,
    /// When it is due.
    pub due_date: Option<Date>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Where it came from: a retried write with the same key lands once.
    pub source_key: String,
}

/// What happened to a user's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    /// Its sequence number (the first one's, for a duplicate).
    pub seq: i64,
    /// Whether this client id was posted before (nothing changed).
    pub duplicate: bool,
}
