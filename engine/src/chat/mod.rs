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
//! read the content from the tables.

pub mod store;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// NOTIFY channel for chat changes; the payload is JSON:
/// `{"user_id", "kind": "message", "seq"}` or `{"user_id", "kind": "inbox"}`.
pub const CHANNEL_CHAT: &str = "floe_chat";

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
