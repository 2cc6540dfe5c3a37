//! The OpenAI-compatible client: Chat Completions (`{base}/chat/completions`,
//! plain or streamed over server-sent events) and Embeddings
//! (`{base}/embeddings`), speaking to OpenAI, vLLM, llama.cpp's server,
//! Ollama and the like.
//!
//! [`OpenAiClient`] implements both [`ChatModel`] and [`Embedder`]. It maps
//! floe's types to the wire format and back, and classifies every failure as a
//! [`ModelError`] so callers know whether to retry:
//!
//! | what happened                              | error                          |
//! |--------------------------------------------|--------------------------------|
//! | 429                                        | [`ModelError::RateLimited`]    |
//! | 5xx                                        | [`ModelError::Server`]         |
//! | any other 4xx                              | [`ModelError::Rejected`]       |
//! | no whole answer within the timeout         | [`ModelError::Timeout`]        |
//! | cannot connect, connection broke           | [`ModelError::Connection`]     |
//! | a 2xx that is not a completion             | [`ModelError::InvalidResponse`]|
//!
//! The API key is sent as a bearer token in a header marked sensitive; it is
//! never logged, never printed by `Debug` and scrubbed from error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use tracing::debug;

use super::{
    BoxFuture, ChatModel, ChatRequest, ChatResponse, Embedder, Embeddings, Message, ModelError,
    ResponseFormat, Role, Sinks, TextSink, ToolCall, ToolChoice, Usage,
};
use crate::settings::LlmSettings;

/// Longest part of an unrecognised error body kept in an error message.
const MAX_ERROR_BODY_CHARS: usize = 500;

/// Longest wait for a TCP (and TLS) connection, capped by the call timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an [`OpenAiClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No base URL configured (floe then runs its offline agents instead).
    #[error("no LLM base URL configured (--llm-base-url / FLOE__LLM__BASE_URL)")]
    MissingBaseUrl,
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid LLM base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// A client of an OpenAI-compatible API: chat completions and embeddings.
///
/// Build it from [`LlmSettings`] with [`OpenAiClient::new`], or field by field
/// with [`OpenAiClient::builder`]. Cloning is cheap (the connection pool is
/// shared).
///
/// As an [`Embedder`] it uses the configured embedding model, or the chat
/// model when none is set; whether to embed at all is the caller's decision
/// (floe embeds only when `LlmSettings::embedding_model` is set).
#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    base_url: String,
    chat_url: String,
    embeddings_url: String,
    api_key: Option<SecretString>,
    model: String,
    embedding_model: String,
    timeout: Duration,
    stream: bool,
}

impl fmt::Debug for OpenAiClient {
    // By hand: the key must never be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("embedding_model", &self.embedding_model)
            .field("timeout", &self.timeout)
            .field("stream", &self.stream)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Builds an [`OpenAiClient`] field by field; unset fields take
/// [`LlmSettings::default`]'s values (no key, `gpt-4o-mini`, 60 s, no
/// streaming, embeddings with the chat model).
#[derive(Debug, Clone)]
pub struct OpenAiClientBuilder {
    base_url: String,
    api_key: Option<SecretString>,
    model: String,
    embedding_model: Option<String>,
    timeout: Duration,
    stream: bool,
}

impl OpenAiClientBuilder {
    /// The API key, sent as a bearer token.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// The chat model (a request's own `model` overrides it).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The embedding model (the chat model when unset).
    pub fn embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = Some(model.into());
        self
    }

    /// The longest a whole call may take, reading a streamed answer included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether chat answers are streamed over server-sent events.
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// Checks the base URL and builds the client.
    pub fn build(self) -> Result<OpenAiClient, ConfigError> {
        let trimmed = self.base_url.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(ConfigError::MissingBaseUrl);
        }
        let parsed = reqwest::Url::parse(trimmed).map_err(|e| ConfigError::InvalidBaseUrl {
            url: self.base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::InvalidBaseUrl {
                url: self.base_url.clone(),
                reason: format!("scheme {:?} is not http or https", parsed.scheme()),
            });
        }
        let timeout = self.timeout.max(Duration::from_millis(1));
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .user_agent(concat!("floe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::Http)?;
        let base_url = trimmed.to_owned();
        Ok(OpenAiClient {
            http,
            chat_url: format!("{base_url}/chat/completions"),
            embeddings_url: format!("{base_url}/embeddings"),
            base_url,
            api_key: self.api_key,
            embedding_model: self.embedding_model.unwrap_or_else(|| self.model.clone()),
            model: self.model,
            timeout,
            stream: self.stream,
        })
    }
}

impl OpenAiClient {
    /// A client configured by `settings`; fails without a base URL.
    pub fn new(settings: &LlmSettings) -> Result<Self, ConfigError> {
        let base_url = settings.base_url().ok_or(ConfigError::MissingBaseUrl)?;
        let mut builder = Self::builder(base_url)
            .model(settings.model.clone())
            .timeout(settings.timeout())
            .stream(settings.stream);
        builder.api_key = settings.api_key().cloned();
        if let Some(model) = settings.embedding_model() {
            builder = builder.embedding_model(model);
        }
        builder.build()
    }

    /// A builder for a client of the API at `base_url` (e.g.
    /// `http://localhost:8080/v1`; a trailing slash is fine).
    pub fn builder(base_url: impl Into<String>) -> OpenAiClientBuilder {
        let defaults = LlmSettings::default();
        OpenAiClientBuilder {
            base_url: base_url.into(),
            api_key: None,
            timeout: defaults.timeout(),
            model: defaults.model,
            embedding_model: None,
            stream: defaults.stream,
        }
    }

    /// The API's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The model used for embeddings.
    pub fn embedding_model(&self) -> &str {
        &self.embedding_model
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether chat answers are streamed.
    pub fn streams(&self) -> bool {
        self.stream
    }

    /// One chat call, timed and logged.
    async fn chat(
        &self,
        request: &ChatRequest,
        sink: Sinks<'_>,
    ) -> Result<ChatResponse, ModelError> {
        let model = request.model.as_deref().unwrap_or(&self.model);
        let body = chat_body(request, model, self.stream);
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.chat_call(&body, model, sink))
            .await
            .unwrap_or(Err(ModelError::Timeout(self.timeout)));
        let latency_ms = elapsed_ms(started);
        match &result {
            Ok(response) => debug!(
                model,
                status = 200u16,
                latency_ms,
                input_tokens = response.usage.input_tokens,
                output_tokens = response.usage.output_tokens,
                tool_calls = response.message.tool_calls.len(),
                finish_reason = response.finish_reason.as_deref().unwrap_or(""),
                streamed = self.stream,
                "chat completion"
            ),
            Err(error) => debug!(
                model,
                status = error.http_status(),
                latency_ms,
                streamed = self.stream,
                error = %error,
                "chat completion failed"
            ),
        }
        result
    }

    /// Sends a chat request and reads the answer (no timeout of its own).
    async fn chat_call(
        &self,
        body: &Value,
        model: &str,
        sink: Sinks<'_>,
    ) -> Result<ChatResponse, ModelError> {
        let mut builder = self.authorized(self.http.post(&self.chat_url)).json(body);
        if self.stream {
            builder = builder.header(header::ACCEPT, "text/event-stream");
        }
        let response = builder.send().await.map_err(|e| self.transport_error(&e))?;
        let response = self.check_status(response).await?;
        let is_event_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.contains("text/event-stream"));
        if self.stream && is_event_stream {
            return self.read_stream(response, model, sink).await;
        }
        // Not streaming, or a server that ignored `stream` and answered in
        // one piece.
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let parsed = parse_completion(&bytes, model).map_err(|e| self.scrubbed(e))?;
        sink.whole(&parsed);
        Ok(parsed)
    }

    /// Reads a streamed answer to its end, passing text deltas and tool-call
    /// argument fragments to `sink`.
    async fn read_stream(
        &self,
        response: reqwest::Response,
        model: &str,
        sink: Sinks<'_>,
    ) -> Result<ChatResponse, ModelError> {
        let mut bytes = response.bytes_stream();
        let mut decoder = SseDecoder::default();
        let mut answer = StreamedAnswer::default();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| self.transport_error(&e))?;
            for data in decoder.push(&chunk) {
                if answer.apply(&data, sink).map_err(|e| self.scrubbed(e))? {
                    return Ok(answer.finish(model));
                }
            }
        }
        for data in decoder.finish() {
            if answer.apply(&data, sink).map_err(|e| self.scrubbed(e))? {
                return Ok(answer.finish(model));
            }
        }
        if answer.finish_reason.is_some() {
            // Some servers close the stream without `[DONE]` once the
            // answer is complete.
            return Ok(answer.finish(model));
        }
        Err(ModelError::InvalidResponse(
            "the stream ended before the answer was complete (no finish_reason, no [DONE])".into(),
        ))
    }

    /// One embeddings call, timed and logged.
    async fn embeddings(&self, inputs: &[String]) -> Result<Embeddings, ModelError> {
        if inputs.is_empty() {
            return Ok(Embeddings {
                vectors: Vec::new(),
                usage: Usage::default(),
            });
        }
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.embeddings_call(inputs))
            .await
            .unwrap_or(Err(ModelError::Timeout(self.timeout)));
        let latency_ms = elapsed_ms(started);
        let model = self.embedding_model.as_str();
        match &result {
            Ok(embeddings) => debug!(
                model,
                status = 200u16,
                latency_ms,
                inputs = inputs.len(),
                input_tokens = embeddings.usage.input_tokens,
                "embeddings"
            ),
            Err(error) => debug!(
                model,
                status = error.http_status(),
                latency_ms,
                inputs = inputs.len(),
                error = %error,
                "embeddings failed"
            ),
        }
        result
    }

    /// Sends an embeddings request and reads the answer.
    async fn embeddings_call(&self, inputs: &[String]) -> Result<Embeddings, ModelError> {
        let body = json!({ "model": self.embedding_model, "input": inputs });
        let response = self
            .authorized(self.http.post(&self.embeddings_url))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let response = self.check_status(response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        parse_embeddings(&bytes, inputs.len()).map_err(|e| self.scrubbed(e))
    }

    /// Adds the bearer token (in a header marked sensitive), if there is one.
    fn authorized(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => builder.bearer_auth(key.expose_secret()),
            None => builder,
        }
    }

    /// Passes a 2xx response through; turns anything else into its error.
    async fn check_status(
        &self,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ModelError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        // An unreadable error body still leaves the status to go by.
        let body = response.text().await.unwrap_or_default();
        Err(self.scrubbed(status_error(status, &headers, &body)))
    }

    /// Classifies a transport failure.
    fn transport_error(&self, error: &reqwest::Error) -> ModelError {
        if error.is_timeout() {
            ModelError::Timeout(self.timeout)
        } else if error.is_decode() {
            ModelError::InvalidResponse(self.scrub(error_chain(error)))
        } else {
            ModelError::Connection(self.scrub(error_chain(error)))
        }
    }

    /// Removes the API key from an error's text, should a server echo it.
    fn scrubbed(&self, error: ModelError) -> ModelError {
        match error {
            ModelError::RateLimited {
                retry_after,
                message,
            } => ModelError::RateLimited {
                retry_after,
                message: self.scrub(message),
            },
            ModelError::Server {
                status,
                retry_after,
                message,
            } => ModelError::Server {
                status,
                retry_after,
                message: self.scrub(message),
            },
            ModelError::Rejected { status, message } => ModelError::Rejected {
                status,
                message: self.scrub(message),
            },
            ModelError::Connection(message) => ModelError::Connection(self.scrub(message)),
            ModelError::InvalidResponse(message) => {
                ModelError::InvalidResponse(self.scrub(message))
            }
            timeout @ ModelError::Timeout(_) => timeout,
        }
    }

    fn scrub(&self, text: String) -> String {
        match &self.api_key {
            Some(key) if !key.expose_secret().is_empty() && text.contains(key.expose_secret()) => {
                text.replace(key.expose_secret(), "[redacted]")
            }
            _ => text,
        }
    }
}

impl ChatModel for OpenAiClient {
    /// The configured chat model (a request may name another).
    fn model_name(&self) -> &str {
        &self.model
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: Option<&'a TextSink>,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(self.chat(request, Sinks::text(stream)))
    }

    fn complete_streamed<'a>(
        &'a self,
        request: &'a ChatRequest,
        sinks: Sinks<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(self.chat(request, sinks))
    }
}

impl Embedder for OpenAiClient {
    /// The embedding model (the chat model when none is configured).
    fn model_name(&self) -> &str {
        &self.embedding_model
    }

    fn embed<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Embeddings, ModelError>> {
        Box::pin(self.embeddings(inputs))
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An error and its causes, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

// ---------------------------------------------------------------------------
// Request mapping
// ---------------------------------------------------------------------------

/// The Chat Completions request body for `request`.
fn chat_body(request: &ChatRequest, model: &str, stream: bool) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(wire_message).collect()),
    );
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                let mut function = json!({
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                });
                if tool.strict {
                    function["strict"] = json!(true);
                }
                json!({ "type": "function", "function": function })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &request.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool(name) => json!({ "type": "function", "function": { "name": name } }),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(format) = &request.response_format {
        let format = match format {
            ResponseFormat::JsonObject => json!({ "type": "json_object" }),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => json!({
                "type": "json_schema",
                "json_schema": { "name": name, "schema": schema, "strict": strict },
            }),
        };
        body.insert("response_format".into(), format);
    }
    if let Some(temperature) = request.temperature {
        // Through its decimal text, so 0.2f32 is sent as 0.2, not
        // 0.20000000298023224.
        let temperature = temperature
            .to_string()
            .parse::<f64>()
            .unwrap_or(f64::from(temperature));
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    if stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    Value::Object(body)
}

fn wire_message(message: &Message) -> Value {
    match message.role {
        Role::System => json!({ "role": "system", "content": text_of(message) }),
        Role::User => json!({ "role": "user", "content": text_of(message) }),
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": message.tool_call_id.as_deref().unwrap_or_default(),
            "content": text_of(message),
        }),
        Role::Assistant => {
            let mut wire = json!({ "role": "assistant", "content": message.content });
            if !message.tool_calls.is_empty() {
                wire["tool_calls"] = message
                    .tool_calls
                    .iter()
                    .map(|call| {
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": { "name": call.name, "arguments": call.arguments },
                        })
                    })
                    .collect();
            }
            wire
        }
    }
}

fn text_of(message: &Message) -> &str {
    message.content.as_deref().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Response parsing
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct WireCompletion {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    /// A JSON string per the spec; some servers send the object itself.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Self {
            input_tokens: usage.prompt_tokens.unwrap_or(0),
            output_tokens: usage.completion_tokens.unwrap_or(0),
        }
    }
}

/// The OpenAI error shape, `{"error": {"message": ...}}`, or the
/// `{"error": "..."}` some servers send.
#[derive(Deserialize)]
struct WireErrorBody {
    error: WireError,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireError {
    Object { message: String },
    Text(String),
}

impl WireError {
    fn into_message(self) -> String {
        match self {
            Self::Object { message } | Self::Text(message) => message,
        }
    }
}

fn parse_completion(bytes: &[u8], requested_model: &str) -> Result<ChatResponse, ModelError> {
    let wire: WireCompletion = serde_json::from_slice(bytes).map_err(|e| {
        ModelError::InvalidResponse(format!(
            "the body is not a chat completion ({e}): {}",
            truncate(&String::from_utf8_lossy(bytes), 200)
        ))
    })?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::InvalidResponse("the completion has no choices".into()))?;
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, call)| ToolCall {
            id: call.id.unwrap_or_else(|| format!("call_{}", i + 1)),
            name: call.function.name,
            arguments: match call.function.arguments {
                Some(Value::String(text)) => text,
                None | Some(Value::Null) => "{}".into(),
                Some(other) => other.to_string(),
            },
        })
        .collect();
    Ok(ChatResponse {
        model: wire
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| requested_model.to_owned()),
        message: Message {
            role: Role::Assistant,
            content: choice.message.content,
            tool_calls,
            tool_call_id: None,
        },
        finish_reason: choice.finish_reason,
        usage: wire.usage.map(Usage::from).unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct WireEmbeddings {
    data: Vec<WireEmbedding>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

fn parse_embeddings(bytes: &[u8], expected: usize) -> Result<Embeddings, ModelError> {
    let wire: WireEmbeddings = serde_json::from_slice(bytes).map_err(|e| {
        ModelError::InvalidResponse(format!(
            "the body is not an embeddings list ({e}): {}",
            truncate(&String::from_utf8_lossy(bytes), 200)
        ))
    })?;
    if wire.data.len() != expected {
        return Err(ModelError::InvalidResponse(format!(
            "{} embeddings for {expected} inputs",
            wire.data.len()
        )));
    }
    let mut indexed: Vec<(usize, Vec<f32>)> = wire
        .data
        .into_iter()
        .enumerate()
        .map(|(position, item)| (item.index.unwrap_or(position), item.embedding))
        .collect();
    indexed.sort_by_key(|(index, _)| *index);
    if indexed
        .iter()
        .enumerate()
        .any(|(i, (index, _))| i != *index)
    {
        return Err(ModelError::InvalidResponse(
            "embedding indexes do not match the inputs".into(),
        ));
    }
    Ok(Embeddings {
        vectors: indexed.into_iter().map(|(_, vector)| vector).collect(),
        usage: wire.usage.map(Usage::from).unwrap_or_default(),
    })
}

/// The error for a non-2xx answer.
fn status_error(status: StatusCode, headers: &HeaderMap, body: &str) -> ModelError {
    let message = error_message(status, body);
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        ModelError::RateLimited {
            retry_after: retry_after(headers),
            message,
        }
    } else if status.is_server_error() {
        ModelError::Server {
            status: code,
            retry_after: retry_after(headers),
            message,
        }
    } else if status.is_client_error() {
        ModelError::Rejected {
            status: code,
            message,
        }
    } else {
        // 1xx/3xx: nothing a chat call should see.
        ModelError::InvalidResponse(format!("unexpected status {status}: {message}"))
    }
}

/// The server's explanation: `error.message` when the body is OpenAI-shaped,
/// else the body itself, shortened.
fn error_message(status: StatusCode, body: &str) -> String {
    if let Ok(wire) = serde_json::from_str::<WireErrorBody>(body) {
        return wire.error.into_message();
    }
    let body = body.trim();
    if body.is_empty() {
        status.canonical_reason().unwrap_or("no explanation").into()
    } else {
        truncate(body, MAX_ERROR_BODY_CHARS)
    }
}

/// At most `max` characters of `text`, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// How long the server asked us to wait: `retry-after-ms` (milliseconds),
/// else `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header_text("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && let Ok(wait) = Duration::try_from_secs_f64(ms / 1000.0)
    {
        return Some(wait);
    }
    let value = header_text("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let date = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let wait = date - OffsetDateTime::now_utc();
    // A date already past means "now".
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// Splits a server-sent event stream into the `data` of its events.
///
/// Lines end in `\n` or `\r\n`; an empty line ends an event; its `data:`
/// lines are joined with `\n`; comments (`:`) and other fields are ignored.
#[derive(Default)]
struct SseDecoder {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// `data` lines of the current event.
    data: Option<String>,
}

impl SseDecoder {
    /// Feeds bytes; returns the events they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..newline]);
            rest = &rest[newline + 1..];
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.line_done(&line) {
                events.push(event);
            }
        }
        self.line.extend_from_slice(rest);
        events
    }

    /// The stream ended: the last event, even without its blank line.
    fn finish(&mut self) -> Vec<String> {
        let line = std::mem::take(&mut self.line);
        let mut events = Vec::new();
        if let Some(event) = self.line_done(&line) {
            events.push(event);
        }
        events.extend(self.data.take());
        events
    }

    fn line_done(&mut self, line: &[u8]) -> Option<String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.data.take();
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
        None
    }
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCallDelta>>,
}

#[derive(Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A tool call being reassembled from its fragments.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// The answer so far, built from stream chunks.
#[derive(Default)]
struct StreamedAnswer {
    model: Option<String>,
    text: String,
    calls: BTreeMap<usize, PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl StreamedAnswer {
    /// Applies one event's data; `true` once the stream says it is done.
    fn apply(&mut self, data: &str, sink: Sinks<'_>) -> Result<bool, ModelError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|e| {
            ModelError::InvalidResponse(format!(
                "a stream chunk is not JSON ({e}): {}",
                truncate(data, 200)
            ))
        })?;
        if let Some(error) = chunk.error {
            return Err(ModelError::InvalidResponse(format!(
                "the server failed mid-stream: {}",
                error.into_message()
            )));
        }
        if self.model.is_none() {
            self.model = chunk.model.filter(|m| !m.is_empty());
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    if let Some(sink) = sink.text {
                        sink(&text);
                    }
                    self.text.push_str(&text);
                }
                for (position, fragment) in
                    delta.tool_calls.unwrap_or_default().into_iter().enumerate()
                {
                    let index = fragment.index.unwrap_or(position);
                    // Sinks key calls as the reassembled answer does: by
                    // position among the calls.
                    let position = self.calls.range(..index).count();
                    let call = self.calls.entry(index).or_default();
                    if let Some(id) = fragment.id.filter(|id| !id.is_empty())
                        && call.id.is_empty()
                    {
                        call.id = id;
                    }
                    if let Some(function) = fragment.function {
                        if let Some(name) = function.name.filter(|n| !n.is_empty())
                            && call.name.is_empty()
                        {
                            call.name = name;
                        }
                        if let Some(arguments) = function.arguments {
                            if let Some(sink) = sink.tool_arguments
                                && !arguments.is_empty()
                            {
                                sink(position, &call.name, &arguments);
                            }
                            call.arguments.push_str(&arguments);
                        }
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        Ok(false)
    }

    fn finish(self, requested_model: &str) -> ChatResponse {
        let tool_calls = self
            .calls
            .into_values()
            .enumerate()
            .map(|(i, call)| ToolCall {
                id: if call.id.is_empty() {
                    format!("call_{}", i + 1)
                } else {
                    call.id
                },
                name: call.name,
                arguments: if call.arguments.is_empty() {
                    "{}".into()
                } else {
                    call.arguments
                },
            })
            .collect();
        ChatResponse {
            model: self.model.unwrap_or_else(|| requested_model.to_owned()),
            message: Message {
                role: Role::Assistant,
                content: (!self.text.is_empty()).then_some(self.text),
                tool_calls,
                tool_call_id: None,
            },
            finish_reason: self.finish_reason,
            usage: self.usage.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_survive_any_split_and_crlf() {
        let stream = "data: {\"a\":1}\r\n\r\n: comment\n\nevent: x\ndata: two\ndata: lines\n\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut decoder = SseDecoder::default();
            let mut events = decoder.push(&stream.as_bytes()[..cut]);
            events.extend(decoder.push(&stream.as_bytes()[cut..]));
            events.extend(decoder.finish());
            assert_eq!(
                events,
                ["{\"a\":1}", "two\nlines", "[DONE]"],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn sse_last_event_without_blank_line_is_kept() {
        let mut decoder = SseDecoder::default();
        let mut events = decoder.push(b"data: [DONE]");
        events.extend(decoder.finish());
        assert_eq!(events, ["[DONE]"]);
    }

    #[test]
    fn retry_after_in_seconds_milliseconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", header::HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", header::HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));

        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            header::HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let later = OffsetDateTime::now_utc() + time::Duration::seconds(120);
        let later = later.format(&Rfc2822).unwrap_or_default();
        headers.insert(
            "retry-after",
            header::HeaderValue::from_str(&later).unwrap_or(header::HeaderValue::from_static("")),
        );
        let wait = retry_after(&headers).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );

        let mut headers = HeaderMap::new();
        headers.insert("retry-after", header::HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn error_messages_are_taken_from_openai_bodies_or_truncated() {
        assert_eq!(
            error_message(
                StatusCode::BAD_REQUEST,
                r#"{"error":{"message":"bad model","type":"x"}}"#
            ),
            "bad model"
        );
        assert_eq!(
            error_message(StatusCode::BAD_REQUEST, r#"{"error":"plain"}"#),
            "plain"
        );
        let long = "é".repeat(2000);
        assert_eq!(
            error_message(StatusCode::BAD_REQUEST, &long)
                .chars()
                .count(),
            MAX_ERROR_BODY_CHARS + 1
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, ""), "Bad Gateway");
    }

    #[test]
    fn tool_argument_fragments_reach_the_sink_with_the_calls_position_and_name() {
        let seen = std::sync::Mutex::new(Vec::new());
        let arguments = |index: usize, name: &str, fragment: &str| {
            seen.lock()
                .expect("lock")
                .push((index, name.to_owned(), fragment.to_owned()));
        };
        let texts = std::sync::Mutex::new(Vec::new());
        let text = |t: &str| texts.lock().expect("lock").push(t.to_owned());
        let sinks = Sinks {
            text: Some(&text),
            tool_arguments: Some(&arguments),
        };
        let mut answer = StreamedAnswer::default();
        for chunk in [
            json!({ "choices": [{ "delta": { "content": "Let me look." } }] }),
            json!({ "choices": [{ "delta": { "tool_calls": [
                { "index": 0, "id": "a", "function": { "name": "resolve_date", "arguments": "" } },
            ] } }] }),
            json!({ "choices": [{ "delta": { "tool_calls": [
                { "index": 0, "function": { "arguments": "{\"expression\":" } },
            ] } }] }),
            json!({ "choices": [{ "delta": { "tool_calls": [
                { "index": 1, "id": "b", "function": { "name": "final_result", "arguments": "{\"message\"" } },
                { "index": 0, "function": { "arguments": "\"friday\"}" } },
            ] } }] }),
            json!({ "choices": [{ "delta": { "tool_calls": [
                { "index": 1, "function": { "arguments": ":\"Hi\"}" } },
            ] }, "finish_reason": "tool_calls" }] }),
        ] {
            assert!(!answer.apply(&chunk.to_string(), sinks).expect("chunk"));
        }
        let response = answer.finish("m");
        assert_eq!(texts.into_inner().expect("lock"), ["Let me look."]);
        let seen = seen.into_inner().expect("lock");
        let strings = |v: &[(usize, &str, &str)]| -> Vec<(usize, String, String)> {
            v.iter()
                .map(|(i, n, f)| (*i, (*n).to_owned(), (*f).to_owned()))
                .collect()
        };
        assert_eq!(
            seen,
            strings(&[
                (0, "resolve_date", "{\"expression\":"),
                (1, "final_result", "{\"message\""),
                (0, "resolve_date", "\"friday\"}"),
                (1, "final_result", ":\"Hi\"}"),
            ])
        );
        assert_eq!(
            response.message.tool_calls[1].arguments,
            "{\"message\":\"Hi\"}"
        );
    }

    #[test]
    fn temperature_is_sent_as_written() {
        let mut request = ChatRequest::new(vec![Message::user("hi")]);
        request.temperature = Some(0.2);
        assert_eq!(chat_body(&request, "m", false)["temperature"], json!(0.2));
    }
}
