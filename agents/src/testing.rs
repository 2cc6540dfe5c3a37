//! [`FakeLlm`]: a scripted fake OpenAI-compatible server for tests and
//! benchmarks (they measure floe, not a model).
//!
//! It listens on `127.0.0.1` on a free port inside the test process and
//! answers `POST …/chat/completions` with the next [`Reply`] of its script
//! (or its fallback responder when the script is empty), and
//! `POST …/embeddings` deterministically with [`fake_embedding`]. Every
//! request is recorded, so a test can check what the client sent.
//!
//! ```no_run
//! # async fn example() {
//! use floe_agents::testing::{FakeLlm, Reply};
//!
//! let fake = FakeLlm::start(vec![
//!     Reply::tool_call("lookup", serde_json::json!({ "city": "Lyon" })),
//!     Reply::text("It is sunny in Lyon."),
//! ])
//! .await;
//! let base_url = fake.base_url(); // "http://127.0.0.1:PORT/v1"
//! // ... run the client against base_url ...
//! assert_eq!(fake.calls("/chat/completions"), 2);
//! # }
//! ```
//!
//! A completion reply answers a request with `"stream": true` as a stream of
//! chunks, so a client configured to stream runs the same scripts.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Length of the embeddings [`FakeLlm`] returns.
pub const EMBEDDING_DIMS: usize = 64;

/// Token counts a completion reports unless [`Reply::usage`] says otherwise.
const DEFAULT_USAGE: (u32, u32) = (10, 5);

/// Fragment length used when a plain completion answers a streaming request.
const DEFAULT_FRAGMENT_LEN: usize = 8;

/// Largest request body the fake accepts.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One scripted answer of a [`FakeLlm`] to a chat request.
#[derive(Debug, Clone)]
pub struct Reply {
    kind: ReplyKind,
    headers: Vec<(String, String)>,
    /// Pause before each event of a streamed answer.
    pace: Option<Duration>,
}

#[derive(Debug, Clone)]
enum ReplyKind {
    /// A completion; streamed when the request asks, or always with
    /// `Some(fragment_len)`.
    Completion {
        completion: Completion,
        fragment_len: Option<usize>,
    },
    /// An HTTP status with a JSON body.
    Status { code: u16, body: Value },
    /// Sleep, then answer.
    Delay(Duration, Box<Reply>),
    /// 200 with a body that is not JSON.
    Garbage(String),
    /// Raw SSE chunks, with or without the closing `[DONE]`.
    Stream { chunks: Vec<Value>, done: bool },
}

#[derive(Debug, Clone)]
struct Completion {
    /// Streamed without its end (see [`Reply::truncated`]).
    truncated: bool,
    content: Option<String>,
    tool_calls: Vec<(String, Value)>,
    finish_reason: String,
    usage: (u32, u32),
}

impl Reply {
    fn completion(content: Option<String>, tool_calls: Vec<(String, Value)>) -> Self {
        let finish_reason = if tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        Self {
            kind: ReplyKind::Completion {
                completion: Completion {
                    truncated: false,
                    content,
                    tool_calls,
                    finish_reason: finish_reason.into(),
                    usage: DEFAULT_USAGE,
                },
                fragment_len: None,
            },
            headers: Vec::new(),
            pace: None,
        }
    }

    /// A completion whose content is `text` (finish reason `stop`).
    pub fn text(text: impl Into<String>) -> Self {
        Self::completion(Some(text.into()), Vec::new())
    }

    /// A completion whose content is `value` serialized, as a server
    /// answers with native structured output.
    pub fn json(value: Value) -> Self {
        Self::text(value.to_string())
    }

    /// A completion calling one tool (finish reason `tool_calls`; the id is
    /// `call_N`, numbered across the server's life).
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Self::completion(None, vec![(name.into(), arguments)])
    }

    /// A completion calling several tools at once.
    pub fn tool_calls<N: Into<String>>(calls: Vec<(N, Value)>) -> Self {
        Self::completion(
            None,
            calls
                .into_iter()
                .map(|(name, arguments)| (name.into(), arguments))
                .collect(),
        )
    }

    /// An answer with this status and JSON body.
    pub fn status(code: u16, body: Value) -> Self {
        Self {
            kind: ReplyKind::Status { code, body },
            headers: Vec::new(),
            pace: None,
        }
    }

    /// An answer with this status and an OpenAI-shaped error body
    /// (`{"error": {"message": ...}}`).
    pub fn error(code: u16, message: impl Into<String>) -> Self {
        Self::status(code, error_body(&message.into()))
    }

    /// Sleeps for `delay`, then answers with `reply` (for timeouts).
    pub fn delay(delay: Duration, reply: Reply) -> Self {
        Self {
            kind: ReplyKind::Delay(delay, Box::new(reply)),
            headers: Vec::new(),
            pace: None,
        }
    }

    /// A 200 whose body (`application/json`, supposedly) is `text`.
    pub fn garbage(text: impl Into<String>) -> Self {
        Self {
            kind: ReplyKind::Garbage(text.into()),
            headers: Vec::new(),
            pace: None,
        }
    }

    /// A server-sent event stream: each chunk as `data: {json}`, then
    /// `data: [DONE]`.
    pub fn stream(chunks: Vec<Value>) -> Self {
        Self {
            kind: ReplyKind::Stream { chunks, done: true },
            headers: Vec::new(),
            pace: None,
        }
    }

    /// `reply` (a completion) always streamed, its text and tool-call
    /// arguments cut into fragments of `fragment_len` characters. Other
    /// replies are returned unchanged.
    pub fn streamed(reply: Reply, fragment_len: usize) -> Self {
        match reply.kind {
            ReplyKind::Completion { completion, .. } => Self {
                kind: ReplyKind::Completion {
                    completion,
                    fragment_len: Some(fragment_len.max(1)),
                },
                headers: reply.headers,
                pace: reply.pace,
            },
            _ => reply,
        }
    }

    /// A stream that breaks off: [`Reply::stream`]'s chunks without the
    /// closing `data: [DONE]`; a completion always streamed, without its
    /// finish reason, usage and `[DONE]`. Other replies are returned
    /// unchanged.
    pub fn truncated(self) -> Self {
        match self.kind {
            ReplyKind::Stream { chunks, .. } => Self {
                kind: ReplyKind::Stream {
                    chunks,
                    done: false,
                },
                headers: self.headers,
                pace: self.pace,
            },
            ReplyKind::Completion {
                mut completion,
                fragment_len,
            } => {
                completion.truncated = true;
                Self {
                    kind: ReplyKind::Completion {
                        completion,
                        fragment_len: Some(fragment_len.unwrap_or(DEFAULT_FRAGMENT_LEN)),
                    },
                    headers: self.headers,
                    pace: self.pace,
                }
            }
            _ => self,
        }
    }

    /// Pauses `interval` before each event when the answer is streamed (a
    /// slow stream, for timeouts).
    pub fn paced(mut self, interval: Duration) -> Self {
        self.pace = Some(interval);
        self
    }

    /// Sets the token counts a completion reports (default 10 in, 5 out).
    pub fn usage(mut self, input_tokens: u32, output_tokens: u32) -> Self {
        if let ReplyKind::Completion { completion, .. } = &mut self.kind {
            completion.usage = (input_tokens, output_tokens);
        }
        self
    }

    /// Adds a response header (e.g. `Retry-After`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The headers, names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Value::String` of the raw text when it is not JSON).
    pub body: Value,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Responder = dyn Fn(&Value) -> Reply + Send + Sync;

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Arc<Responder>>>,
    requests: Mutex<Vec<Recorded>>,
    embeddings_failure: Mutex<Option<u16>>,
    next_call_id: AtomicU64,
    next_completion_id: AtomicU64,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A scripted fake OpenAI-compatible server; stops when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLlm")
            .field("addr", &self.addr)
            .field("scripted", &locked(&self.shared.script).len())
            .field("requests", &locked(&self.shared.requests).len())
            .finish()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLlm {
    /// Starts a server on `127.0.0.1` (a free port) that answers chat
    /// requests with `script`, in order.
    ///
    /// # Panics
    ///
    /// When no local port can be bound (a test fixture has no one to report
    /// to). Must be called inside a Tokio runtime.
    pub async fn start(script: Vec<Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("FakeLlm: cannot bind a port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("FakeLlm: the listener has no address");
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            next_call_id: AtomicU64::new(1),
            next_completion_id: AtomicU64::new(1),
            ..Shared::default()
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            // The server runs until the FakeLlm is dropped; a failure shows
            // up as refused connections in the test.
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    /// Answers with `responder` whenever the script is empty (instead of a
    /// 500 "script exhausted"); it sees the request body.
    pub fn with_fallback(
        self,
        responder: impl Fn(&Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        *locked(&self.shared.fallback) = Some(Arc::new(responder));
        self
    }

    /// The API's base URL: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: Reply) {
        locked(&self.shared.script).push_back(reply);
    }

    /// Replies left in the script.
    pub fn remaining(&self) -> usize {
        locked(&self.shared.script).len()
    }

    /// Makes `/embeddings` answer `status` (an OpenAI-shaped error), or
    /// work again with `None`.
    pub fn fail_embeddings(&self, status: Option<u16>) {
        *locked(&self.shared.embeddings_failure) = status;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        locked(&self.shared.requests).clone()
    }

    /// The chat requests received so far, in order.
    pub fn chat_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .collect()
    }

    /// How many requests had a path ending in `suffix` (e.g.
    /// `"/chat/completions"`, `"/embeddings"`).
    pub fn calls(&self, suffix: &str) -> usize {
        locked(&self.shared.requests)
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .count()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let path = parts.uri.path().to_owned();
    locked(&shared.requests).push(Recorded {
        path: path.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    });

    if parts.method != axum::http::Method::POST {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &error_body("only POST is faked"),
        );
    }
    if path.ends_with("/chat/completions") {
        let reply = next_reply(&shared, &body);
        answer_chat(&shared, reply, &body).await
    } else if path.ends_with("/embeddings") {
        answer_embeddings(&shared, &body)
    } else {
        json_response(
            StatusCode::NOT_FOUND,
            &error_body(&format!("no such path: {path}")),
        )
    }
}

fn next_reply(shared: &Shared, body: &Value) -> Reply {
    if let Some(reply) = locked(&shared.script).pop_front() {
        return reply;
    }
    let fallback = locked(&shared.fallback).clone();
    match fallback {
        Some(responder) => responder(body),
        None => Reply::error(500, "script exhausted"),
    }
}

async fn answer_chat(shared: &Shared, mut reply: Reply, request: &Value) -> Response {
    let mut headers = Vec::new();
    let mut pace = None;
    // Unwrap delays (headers and pace of every layer apply).
    loop {
        headers.append(&mut reply.headers);
        pace = pace.or(reply.pace);
        match reply.kind {
            ReplyKind::Delay(delay, inner) => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
            kind => {
                reply.kind = kind;
                break;
            }
        }
    }
    let wants_stream = request["stream"] == json!(true);
    let include_usage = request["stream_options"]["include_usage"] == json!(true);
    let model = request["model"].as_str().unwrap_or("fake-model").to_owned();
    let mut response = match reply.kind {
        ReplyKind::Completion {
            completion,
            fragment_len,
        } => {
            let mut next_id = || {
                format!(
                    "call_{}",
                    shared.next_call_id.fetch_add(1, Ordering::Relaxed)
                )
            };
            if wants_stream || fragment_len.is_some() {
                let mut chunks = stream_chunks(
                    &completion,
                    &model,
                    fragment_len.unwrap_or(DEFAULT_FRAGMENT_LEN),
                    &mut next_id,
                    include_usage && !completion.truncated,
                );
                if completion.truncated {
                    // The chunk carrying the finish reason.
                    chunks.pop();
                }
                sse_response(chunks, !completion.truncated, pace)
            } else {
                let id = shared.next_completion_id.fetch_add(1, Ordering::Relaxed);
                json_response(
                    StatusCode::OK,
                    &completion_body(&completion, &model, id, &mut next_id),
                )
            }
        }
        ReplyKind::Status { code, body } => json_response(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &body,
        ),
        ReplyKind::Garbage(text) => {
            let mut response = Response::new(Body::from(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        ReplyKind::Stream { chunks, done } => sse_response(chunks, done, pace),
        ReplyKind::Delay(..) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &error_body("unreachable: delays are unwrapped"),
        ),
    };
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn tool_calls_json(completion: &Completion, next_id: &mut dyn FnMut() -> String) -> Vec<Value> {
    completion
        .tool_calls
        .iter()
        .map(|(name, arguments)| {
            json!({
                "id": next_id(),
                "type": "function",
                "function": { "name": name, "arguments": arguments.to_string() },
            })
        })
        .collect()
}

fn completion_body(
    completion: &Completion,
    model: &str,
    id: u64,
    next_id: &mut dyn FnMut() -> String,
) -> Value {
    let mut message = json!({ "role": "assistant", "content": completion.content });
    if !completion.tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls_json(completion, next_id));
    }
    json!({
        "id": format!("chatcmpl-fake-{id}"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{ "index": 0, "message": message, "finish_reason": completion.finish_reason }],
        "usage": usage_json(completion.usage),
    })
}

fn usage_json((input, output): (u32, u32)) -> Value {
    json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": input + output,
    })
}

/// `text` cut into pieces of at most `len` characters.
fn fragments(text: &str, len: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(len.max(1))
        .map(|piece| piece.iter().collect())
        .collect()
}

/// A completion as the chunks OpenAI streams: role, text fragments, each
/// tool call's id and name then its argument fragments, the finish reason,
/// and the usage when asked.
fn stream_chunks(
    completion: &Completion,
    model: &str,
    fragment_len: usize,
    next_id: &mut dyn FnMut() -> String,
    include_usage: bool,
) -> Vec<Value> {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": "chatcmpl-fake-stream",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
        })
    };
    let mut chunks = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    if let Some(content) = &completion.content {
        for piece in fragments(content, fragment_len) {
            chunks.push(chunk(json!({ "content": piece }), Value::Null));
        }
    }
    for (index, (name, arguments)) in completion.tool_calls.iter().enumerate() {
        chunks.push(chunk(
            json!({ "tool_calls": [{
                "index": index,
                "id": next_id(),
                "type": "function",
                "function": { "name": name, "arguments": "" },
            }] }),
            Value::Null,
        ));
        for piece in fragments(&arguments.to_string(), fragment_len) {
            chunks.push(chunk(
                json!({ "tool_calls": [{ "index": index, "function": { "arguments": piece } }] }),
                Value::Null,
            ));
        }
    }
    chunks.push(chunk(json!({}), json!(completion.finish_reason)));
    if include_usage {
        chunks.push(json!({
            "id": "chatcmpl-fake-stream",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": usage_json(completion.usage),
        }));
    }
    chunks
}

/// An SSE response; each event is sent as two body frames cut mid-line, so
/// clients meet events split across reads; with `pace`, after a pause each.
fn sse_response(chunks: Vec<Value>, done: bool, pace: Option<Duration>) -> Response {
    let mut frames: Vec<Result<Bytes, Infallible>> = Vec::new();
    let events = chunks
        .iter()
        .map(|chunk| format!("data: {chunk}\n\n"))
        .chain(done.then(|| "data: [DONE]\n\n".to_owned()));
    for event in events {
        let (head, tail) = event.split_at(event.len() / 2);
        frames.push(Ok(Bytes::from(head.to_owned())));
        frames.push(Ok(Bytes::from(tail.to_owned())));
    }
    let frames = futures_util::stream::iter(frames);
    let body = match pace {
        None => Body::from_stream(frames),
        Some(interval) => {
            Body::from_stream(frames.enumerate().then(move |(i, frame)| async move {
                if i % 2 == 0 {
                    tokio::time::sleep(interval).await;
                }
                frame
            }))
        }
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_body(message: &str) -> Value {
    json!({ "error": { "message": message, "type": "fake_error", "code": null } })
}

fn answer_embeddings(shared: &Shared, request: &Value) -> Response {
    if let Some(code) = *locked(&shared.embeddings_failure) {
        return json_response(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &error_body("embeddings failing as asked"),
        );
    }
    let inputs: Vec<String> = match &request["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &error_body("`input` must be a string or an array of strings"),
            );
        }
    };
    let tokens: usize = inputs.iter().map(|text| words(text).count()).sum();
    let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({ "object": "embedding", "index": index, "embedding": fake_embedding(text) })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": request["model"].as_str().unwrap_or("fake-embedding"),
            "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        }),
    )
}

/// Lowercased runs of alphanumeric characters.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

/// 64-bit FNV-1a: stable across runs and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The embedding [`FakeLlm`] gives `text`: a bag of its lowercased words,
/// each hashed (FNV-1a) to one of [`EMBEDDING_DIMS`] dimensions with a
/// hashed sign, normalized to length 1. Texts sharing words point the same
/// way; a text without words is the unit vector of dimension 0.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; EMBEDDING_DIMS];
    for word in words(text) {
        let hash = fnv1a(word.as_bytes());
        let dim = usize::try_from(hash % EMBEDDING_DIMS as u64).unwrap_or(0);
        let sign = if (hash >> 32) & 1 == 0 { 1.0 } else { -1.0 };
        vector[dim] += sign;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        vector[0] = 1.0;
    } else {
        for x in &mut vector {
            *x /= norm;
        }
    }
    vector
}
