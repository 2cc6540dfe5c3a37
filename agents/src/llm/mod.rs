//! Talking to a language model: floe's own request and response types, the
//! [`ChatModel`] and [`Embedder`] traits, and how failures are classified.
//!
//! | module       | responsibility                                                      |
//! |--------------|---------------------------------------------------------------------|
//! | this module  | the types (stable: the ledger records them as JSON), the traits     |
//! | [`openai`]   | the OpenAI-compatible Chat Completions and Embeddings client        |
//! | [`ledger`]   | every call recorded in `floe.llm_calls`; recorded answers reused    |
//! | [`stream`]   | a string field of structured output, read while it streams          |
//!
//! The types are ours, not any provider's: the ledger stores requests and
//! responses in this shape, so it stays readable when the provider changes.

pub mod ledger;
pub mod openai;
pub mod stream;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives streamed text as it arrives (ephemeral: the final message is
/// what counts).
pub type TextSink = dyn Fn(&str) + Send + Sync;

/// Receives fragments of tool calls' arguments as they arrive: the call's
/// position in the answer, the tool's name (as far as the server has sent
/// it: usually whole from the first fragment on), and the next piece of the
/// arguments' JSON text. Ephemeral, like [`TextSink`]; it may borrow for
/// `'a`.
pub type ToolArgumentsSink<'a> = dyn Fn(usize, &str, &str) + Send + Sync + 'a;

/// Where the pieces of a streamed answer go as they arrive (nowhere by
/// default).
#[derive(Clone, Copy, Default)]
pub struct Sinks<'a> {
    /// Text deltas (a [`TextSink`], or one borrowing from its caller).
    pub text: Option<&'a (dyn Fn(&str) + Send + Sync + 'a)>,
    /// Tool-call argument fragments.
    pub tool_arguments: Option<&'a ToolArgumentsSink<'a>>,
}

impl<'a> Sinks<'a> {
    /// Text deltas only.
    pub fn text(sink: Option<&'a (dyn Fn(&str) + Send + Sync + 'a)>) -> Self {
        Self {
            text: sink,
            tool_arguments: None,
        }
    }

    /// Passes a whole answer on as if it had streamed in one piece (an
    /// answer that was not streamed, or replayed from the ledger).
    pub fn whole(&self, response: &ChatResponse) {
        if let (Some(sink), Some(text)) = (self.text, response.message.content.as_deref())
            && !text.is_empty()
        {
            sink(text);
        }
        if let Some(sink) = self.tool_arguments {
            for (index, call) in response.message.tool_calls.iter().enumerate() {
                sink(index, &call.name, &call.arguments);
            }
        }
    }
}

impl std::fmt::Debug for Sinks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("text", &self.text.is_some())
            .field("tool_arguments", &self.tool_arguments.is_some())
            .finish()
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions.
    System,
    /// The person (or the program speaking for them).
    User,
    /// The model.
    Assistant,
    /// A tool's answer to a tool call.
    Tool,
}

/// One message of a conversation with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text (absent on an assistant message that only calls tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The tools an assistant message calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// Instructions.
    pub fn system(content: impl Into<String>) -> Self {
        Self::text(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::text(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text(Role::Assistant, content)
    }

    /// A tool's answer to call `call_id`.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::text(Role::Tool, content)
        }
    }
}

/// The model asks for a tool to be called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed in the tool's answer.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments: JSON text as the model wrote it (it may be invalid).
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of its arguments (an object).
    pub parameters: Value,
    /// Ask the server to enforce the schema (OpenAI's strict mode).
    #[serde(default)]
    pub strict: bool,
}

/// Whether and which tools the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must call some tool.
    Required,
    /// The model must not call tools.
    None,
    /// The model must call this tool.
    Tool(String),
}

/// The shape the answer's text must have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The schema.
        schema: Value,
        /// Ask the server to enforce it.
        strict: bool,
    },
}

/// A request for the model's next message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model; the client's configured model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDef>,
    /// Whether it must call one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// The shape of a text answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl ChatRequest {
    /// A request with these messages and nothing else set.
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            model: None,
            messages,
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            temperature: None,
            max_tokens: None,
        }
    }
}

/// Tokens used by a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Completion tokens.
    pub output_tokens: u32,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model that answered, as the server names it.
    pub model: String,
    /// The assistant message: text, tool calls or both.
    pub message: Message,
    /// Why generation stopped (`stop`, `tool_calls`, `length`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Tokens used.
    #[serde(default)]
    pub usage: Usage,
}

/// Why a call failed. [`ModelError::retryable`] says whether another
/// attempt may succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// 429: too many requests; wait `retry_after` when the server said.
    #[error("rate limited (429){}: {message}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
        /// The server's explanation.
        message: String,
    },
    /// 5xx: the server failed.
    #[error("server error ({status}){}: {message}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    Server {
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// The server's explanation.
        message: String,
    },
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed or broke.
    #[error("connection failed: {0}")]
    Connection(String),
    /// Any other 4xx: the request itself is wrong (bad key, unknown model,
    /// too long); retrying cannot help.
    #[error("request rejected ({status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// A 2xx whose body is not a completion (garbage, truncated stream).
    #[error("invalid response: {0}")]
    InvalidResponse(String),
}

impl ModelError {
    /// Whether another attempt may succeed: rate limits, server errors,
    /// timeouts, broken connections and garbled answers are retried; a
    /// rejected request is not.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }

    /// How long the server asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The ledger's status for this failure.
    pub fn status(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Timeout(_) => "timeout",
            _ => "error",
        }
    }

    /// The HTTP status, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::RateLimited { .. } => Some(429),
            Self::Server { status, .. } | Self::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A chat model: one request, one answer.
pub trait ChatModel: Send + Sync {
    /// The model's name, for the ledger.
    fn model_name(&self) -> &str;

    /// Asks for the next message. When `stream` is given and the model
    /// streams, text arrives there as it is generated; the whole answer is
    /// returned either way.
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: Option<&'a TextSink>,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>>;

    /// Asks for the next message, passing what streams to `sinks`: text
    /// deltas and tool-call argument fragments. By default the whole answer
    /// is passed on at once when it has arrived ([`Sinks::whole`]).
    fn complete_streamed<'a>(
        &'a self,
        request: &'a ChatRequest,
        sinks: Sinks<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let response = self.complete(request, None).await?;
            sinks.whole(&response);
            Ok(response)
        })
    }
}

/// Embeddings of some texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens used.
    pub usage: Usage,
}

/// A text-embedding model.
pub trait Embedder: Send + Sync {
    /// The model's name.
    fn model_name(&self) -> &str;

    /// One vector per input, in order.
    fn embed<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Embeddings, ModelError>>;
}
