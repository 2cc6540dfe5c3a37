//! A real API server on port 0 over a fresh, migrated database; an
//! in-process worker on demand; a tiny workflow definition; an SSE reader.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use floe_agents::settings::LlmSettings;
use floe_api::settings::{ChatSettings, HttpSettings};
use floe_api::startup::Application;
use floe_engine::db;
use floe_engine::testing::fresh_database;
use floe_engine::workflow::{Command, Ctx, Event, Registry, Transition, Workflow};
use floe_worker::settings::WorkerSettings;
use floe_worker::startup::Worker;
use floe_worker::workflows::Workflows;
use futures_util::StreamExt;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The operator token the test servers require.
pub const TOKEN: &str = "test-operator-token";
/// The test servers' body limit.
pub const BODY_LIMIT: usize = 64 * 1024;

/// `test.api.tally`: adds numbers; `finish` completes with the total.
pub struct Tally;

/// [`Tally`]'s state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TallyState {
    pub total: i64,
    pub adds: Vec<i64>,
}

/// [`Tally`]'s signals.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "name", content = "payload", rename_all = "snake_case")]
pub enum TallySignal {
    Add { n: i64 },
    Finish,
}

impl Workflow for Tally {
    const KIND: &'static str = "test.api.tally";
    const VERSION: i32 = 3;
    type Input = Value;
    type State = TallyState;
    type Signal = TallySignal;

    fn state_name(_: &TallyState) -> String {
        "counting".into()
    }

    fn apply(
        state: Option<TallyState>,
        event: Event<Value, TallySignal>,
        _ctx: &Ctx,
    ) -> Result<Transition<TallyState>, String> {
        let mut s = state.unwrap_or(TallyState {
            total: 0,
            adds: Vec::new(),
        });
        Ok(match event {
            Event::Start(_) => Transition::to(s),
            Event::Signal(TallySignal::Add { n }) => {
                s.total += n;
                s.adds.push(n);
                Transition::to(s)
            }
            Event::Signal(TallySignal::Finish) => {
                let output = json!({ "total": s.total });
                Transition::to(s).then(Command::Complete { output })
            }
            other => return Err(format!("unexpected {other:?}")),
        })
    }

    fn query(s: &TallyState, name: &str) -> Option<Value> {
        match name {
            "total" => Some(json!(s.total)),
            "adds" => Some(json!(s.adds)),
            _ => None,
        }
    }
}

/// The definitions the test servers' workers run.
pub fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.workflow::<Tally>();
    w
}

/// The definitions the test servers know: this build's production ones
/// (the onboarding) and [`Tally`].
pub fn definitions(pool: &PgPool) -> Registry {
    let mut w = floe_worker::startup::workflows(&LlmSettings::default(), pool)
        .expect("production workflows");
    w.workflow::<Tally>();
    w.definitions
}

/// A migrated, empty database and a pool on it.
pub async fn database() -> PgPool {
    let url = fresh_database().await;
    let pool = db::connect(&url, 10, Duration::from_secs(10))
        .await
        .expect("connect");
    db::migrate(&pool).await.expect("migrate");
    pool
}

/// A running API (and, on demand, a worker) over its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub client: reqwest::Client,
    /// The server's push hub (to watch its subscribers).
    pub hub: floe_api::push::Hub,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    worker: std::sync::Mutex<Option<JoinHandle<anyhow::Result<()>>>>,
}

impl TestApp {
    /// Serves on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_on(database().await).await
    }

    /// Serves on `pool`'s database.
    pub async fn spawn_on(pool: PgPool) -> Self {
        Self::spawn_with(pool, ChatSettings::default()).await
    }

    /// Serves on `pool`'s database with the chat's `chat` settings.
    pub async fn spawn_with(pool: PgPool, chat: ChatSettings) -> Self {
        let settings = HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            static_dir: "/nonexistent".into(),
            body_limit: BODY_LIMIT,
            operator_token: Some(SecretString::from(TOKEN)),
            chat,
        };
        let app = Application::build(&settings, pool.clone(), definitions(&pool))
            .await
            .expect("build");
        let addr = app.local_addr().expect("addr");
        app.hub().listening().await;
        let hub = app.hub().clone();
        let (stop, rx) = watch::channel(false);
        let server = tokio::spawn(app.run(stopped(rx)));
        Self {
            addr,
            pool,
            client: reqwest::Client::new(),
            hub,
            stop,
            server: Some(server),
            worker: std::sync::Mutex::new(None),
        }
    }

    /// Starts a worker in this process that runs [`workflows`].
    pub async fn start_worker(&self) {
        let settings = WorkerSettings {
            shutdown_timeout_ms: 5_000,
            ..WorkerSettings::default()
        };
        let worker = Worker::build(&settings, self.pool.clone())
            .await
            .expect("worker")
            .workflows(workflows());
        let handle = tokio::spawn(worker.run(stopped(self.stop.subscribe())));
        *self.worker.lock().expect("lock") = Some(handle);
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A GET with the operator token.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(TOKEN)
    }

    /// A POST with the operator token.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(TOKEN)
    }

    /// Starts a tally through the API; returns its id.
    pub async fn start_tally(&self, key: &str) -> uuid::Uuid {
        let (status, body) = send(
            self.post("/api/workflows")
                .json(&json!({ "kind": "test.api.tally", "key": key, "input": {} })),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        body["id"].as_str().expect("id").parse().expect("uuid")
    }

    /// Stops the server and the worker, waiting for both.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(20), server)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server");
        }
        let worker = self.worker.lock().expect("lock").take();
        if let Some(worker) = worker {
            worker.await.expect("worker task").expect("worker");
        }
    }
}

/// A worker in this process running this build's production workflows
/// (the onboarding, with the offline agents), on its own lifecycle.
pub struct TestWorker {
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestWorker {
    /// Starts it on `pool`'s database.
    pub async fn production(pool: &PgPool) -> Self {
        let settings = WorkerSettings {
            poll_ms: 200,
            shutdown_timeout_ms: 5_000,
            ..WorkerSettings::default()
        };
        let workflows = floe_worker::startup::workflows(&LlmSettings::default(), pool)
            .expect("production workflows");
        let worker = Worker::build(&settings, pool.clone())
            .await
            .expect("worker")
            .workflows(workflows);
        let (stop, rx) = watch::channel(false);
        let handle = tokio::spawn(worker.run(stopped(rx)));
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops it, waiting for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(20), handle)
                .await
                .expect("worker stops in time")
                .expect("worker task")
                .expect("worker");
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Sends `request`; returns the status and the body as JSON (`null` when
/// empty, a string when not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Asserts the JSON error body with `code`.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }
}

/// Reads events off a `text/event-stream` response.
pub struct SseReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buf: String,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
}

impl SseReader {
    /// Reads `response`'s body.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            stream: response.bytes_stream().boxed(),
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event; `None` when the stream ended; panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        tokio::time::timeout(timeout, self.next_event())
            .await
            .expect("an SSE event in time")
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut data = Vec::new();
                for line in frame.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if event.id.is_some() || event.event.is_some() || !data.is_empty() {
                    event.data = data.join("\n");
                    return Some(event);
                }
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Some(Err(e)) => panic!("SSE stream failed: {e}"),
                None => return None,
            }
        }
    }
}

/// A real `floe-api --with-worker` child process (offline agents, JSON logs
/// to a file) on `127.0.0.1` and a free port; killed when dropped.
pub struct ApiProcess {
    pub child: std::process::Child,
    pub addr: String,
    pub log_path: std::path::PathBuf,
    pub client: reqwest::Client,
}

impl ApiProcess {
    /// Starts it on `url`'s database with operator token `operator` and
    /// `env` on top of the defaults; returns at once (see [`Self::ready`]).
    pub fn spawn(url: &SecretString, operator: &str, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log_path =
            std::env::temp_dir().join(format!("floe-api-{}.log", uuid::Uuid::new_v4().simple()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_floe-api"));
        command
            .args([
                "--with-worker",
                "--listen",
                &addr,
                "--static-dir",
                "/nonexistent",
            ])
            .env("DATABASE_URL", floe_engine::testing::expose(url))
            .env("FLOE__API__OPERATOR_TOKEN", operator)
            .env("FLOE__LOG__FORMAT", "json")
            .env_remove("RUST_LOG")
            .env_remove("FLOE__LLM__BASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(log));
        for (name, value) in env {
            command.env(name, value);
        }
        Self {
            child: command.spawn().expect("spawn floe-api"),
            addr,
            log_path,
            client: reqwest::Client::new(),
        }
    }

    /// Waits until `/readyz` answers 200; panics with the log if it never does.
    pub async fn ready(&self, timeout: Duration) {
        assert!(
            floe_engine::testing::wait_for_status(&self.addr, "/readyz", 200, timeout).await,
            "floe-api never became ready; log:\n{}",
            self.log_text()
        );
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Its log lines so far, parsed.
    pub fn log_json(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> floe_engine::testing::Exposition {
        let text = floe_engine::testing::http_get(&self.addr, "/metrics")
            .await
            .expect("GET /metrics");
        floe_engine::testing::Exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Its resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log_path);
        } else {
            eprintln!("floe-api's log: {}", self.log_path.display());
        }
    }
}
