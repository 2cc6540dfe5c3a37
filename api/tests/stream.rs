//! Streamed replies, end to end: a real API server and a real worker (its
//! production workflows, with `--llm-stream` and the fake OpenAI-compatible
//! server streaming slowly), real PostgreSQL, and a real WebSocket client
//! that sees the reply grow in `stream` frames before the stored `message`.

mod common;

use std::time::Duration;

use common::{TestApp, database};
use floe_agents::settings::LlmSettings;
use floe_agents::testing::{FakeLlm, Reply};
use floe_api::settings::ChatSettings;
use floe_engine::chat;
use floe_worker::settings::WorkerSettings;
use floe_worker::startup::Worker;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// Longest wait for any one thing.
const WAIT: Duration = Duration::from_secs(20);

/// A worker running the production workflows against `fake`, streaming.
struct LlmWorker {
    stop: watch::Sender<bool>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl LlmWorker {
    async fn start(pool: &PgPool, fake: &FakeLlm) -> Self {
        let settings = WorkerSettings {
            poll_ms: 200,
            shutdown_timeout_ms: 5_000,
            ..WorkerSettings::default()
        };
        let llm = LlmSettings {
            base_url: Some(fake.base_url()),
            stream: true,
            ..LlmSettings::default()
        };
        let workflows = floe_worker::startup::workflows(&llm, pool).expect("production workflows");
        let worker = Worker::build(&settings, pool.clone())
            .await
            .expect("worker")
            .workflows(workflows);
        let (stop, mut rx) = watch::channel(false);
        let handle = tokio::spawn(worker.run(async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Self { stop, handle }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("worker stops in time")
            .expect("worker task")
            .expect("worker");
    }
}

/// Signs a person in; returns their user id and token.
async fn sign_in(app: &TestApp, name: &str) -> (String, String) {
    let response = app
        .client
        .post(app.url("/api/session"))
        .json(&json!({ "display_name": name }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    (
        body["user_id"].as_str().expect("user_id").to_owned(),
        body["token"].as_str().expect("token").to_owned(),
    )
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects with the token and says hello (which starts the greeting turn).
async fn connect(app: &TestApp, token: &str) -> Socket {
    let url = format!("ws://{}/ws?token={token}", app.addr);
    let (mut socket, _) = tokio::time::timeout(WAIT, connect_async(url))
        .await
        .expect("connects in time")
        .expect("connects");
    socket
        .send(Message::text(
            json!({ "type": "hello", "after": 0 }).to_string(),
        ))
        .await
        .expect("hello");
    socket
}

/// The next frame that is not a ping; `None` when none comes within `wait`.
async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, socket.next()).await.ok()?;
        match message.expect("the connection is open").expect("a frame") {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                if frame["type"] != "ping" {
                    return Some(frame);
                }
            }
            Message::Close(close) => panic!("closed: {close:?}"),
            _ => {}
        }
    }
}

/// Frames up to the first assistant message and the end of typing after
/// it, then whatever else arrives within a moment.
async fn frames_of_first_reply(socket: &mut Socket) -> Vec<Value> {
    let mut frames = Vec::new();
    let mut replied = false;
    loop {
        let frame = next(socket, WAIT).await.expect("a frame in time");
        replied |= frame["type"] == "message" && frame["message"]["role"] == "assistant";
        let typing_over = replied && frame["type"] == "typing" && frame["typing"] == false;
        frames.push(frame);
        if typing_over {
            break;
        }
    }
    while let Some(frame) = next(socket, Duration::from_millis(500)).await {
        frames.push(frame);
    }
    frames
}

/// A chat whose assistant speaks first with the model's scripted replies,
/// watched over a WebSocket up to the end of that first reply.
struct FirstReply {
    pool: PgPool,
    worker: LlmWorker,
    app: TestApp,
    socket: Socket,
    user_id: String,
    frames: Vec<Value>,
    /// Where in `frames` the stored assistant message is.
    stored: usize,
    _fake: FakeLlm,
}

impl FirstReply {
    async fn watch(script: Vec<Reply>, name: &str) -> Self {
        let fake = FakeLlm::start(script).await;
        let pool = database().await;
        let worker = LlmWorker::start(&pool, &fake).await;
        let app = TestApp::spawn_with(pool.clone(), ChatSettings::default()).await;
        let (user_id, token) = sign_in(&app, name).await;
        let mut socket = connect(&app, &token).await;
        let frames = frames_of_first_reply(&mut socket).await;
        let stored = frames
            .iter()
            .position(|f| f["type"] == "message" && f["message"]["role"] == "assistant")
            .expect("the stored reply");
        Self {
            pool,
            worker,
            app,
            socket,
            user_id,
            frames,
            stored,
            _fake: fake,
        }
    }

    /// The stored reply's text.
    fn reply(&self) -> &Value {
        &self.frames[self.stored]["message"]["content"]
    }

    /// The `stream` frames before the stored reply.
    fn streamed_before(&self) -> Vec<&Value> {
        self.frames[..self.stored]
            .iter()
            .filter(|f| f["type"] == "stream")
            .collect()
    }

    async fn stop(self) {
        drop(self.socket);
        self.app.stop().await;
        self.worker.stop().await;
    }
}

/// A reply as the `stream` frames of one attempt build it: each frame's
/// text placed at its offset (UTF-16 code units).
#[derive(Debug, Default)]
struct Draft {
    units: Vec<u16>,
    /// The text after each frame.
    steps: Vec<String>,
}

impl Draft {
    fn apply(&mut self, frame: &Value) {
        let offset = frame["offset"].as_u64().expect("offset") as usize;
        assert_eq!(offset, self.units.len(), "pieces come in order: {frame}");
        self.units
            .extend(frame["text"].as_str().expect("text").encode_utf16());
        self.steps
            .push(String::from_utf16(&self.units).expect("whole characters"));
    }

    fn text(&self) -> String {
        String::from_utf16_lossy(&self.units)
    }
}

/// The greeting the fake model writes, as the Greeter's `final_result`.
fn greeting(message: &str) -> Value {
    json!({ "message": message, "name": null, "preferred_name": null,
            "step_completed": false, "memory_updates": [] })
}

#[tokio::test]
async fn a_streamed_reply_grows_in_stream_frames_before_the_stored_message() {
    let message = "Hi, welcome to floe! \u{1f44b} I'm here to set things up with you, \
                   one \"small\" step at a time.\nTo start: what's your name?";
    let run = FirstReply::watch(
        vec![
            Reply::streamed(Reply::tool_call("final_result", greeting(message)), 6)
                .paced(Duration::from_millis(40)),
        ],
        "Alex",
    )
    .await;
    let (frames, stored, pool) = (&run.frames, run.stored, &run.pool);
    assert_eq!(run.reply(), message);
    let before = run.streamed_before();
    assert!(
        before.len() >= 2,
        "several stream frames before the message: {frames:#?}"
    );
    let run_id = chat::store::workflow_instance(pool, &run.user_id, "onboarding")
        .await
        .expect("instance")
        .expect("an onboarding")
        .1;
    let mut draft = Draft::default();
    for frame in &before {
        assert_eq!(frame["turn"], format!("{run_id}/t1.agent"), "{frame}");
        assert_eq!(frame["attempt"], 1, "{frame}");
        assert_eq!(frame["call"], 1, "{frame}");
        draft.apply(frame);
    }
    for step in draft.steps.windows(2) {
        assert!(step[1].len() > step[0].len(), "it grows: {:?}", draft.steps);
    }
    for step in &draft.steps {
        assert!(message.starts_with(step.as_str()), "{step:?} is a prefix");
    }
    // The last piece goes out before the turn ends, so before the message.
    assert_eq!(draft.text(), message);
    assert!(
        frames[stored..].iter().all(|f| f["type"] != "stream"),
        "nothing streams after the message: {frames:#?}"
    );

    // Streaming changed nothing recorded: the ledger has the answer whole,
    // as the model wrote it, and the turn's output is the message.
    let recorded: Vec<(String, i32, Value)> = sqlx::query_as(
        "SELECT agent, attempt, response FROM floe.llm_calls WHERE workflow_id = $1 ORDER BY id",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .expect("ledger");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let (agent, attempt, response) = &recorded[0];
    assert_eq!((agent.as_str(), *attempt), ("greeter", 1));
    let call = &response["message"]["tool_calls"][0];
    assert_eq!(call["name"], "final_result");
    let arguments: Value =
        serde_json::from_str(call["arguments"].as_str().expect("arguments")).expect("JSON");
    assert_eq!(arguments, greeting(message));
    assert_eq!(response["finish_reason"], "tool_calls");
    let (status, output): (String, Value) = sqlx::query_as(
        "SELECT status, result FROM floe.activities WHERE workflow_id = $1 AND activity_id = 't1.agent'",
    )
    .bind(run_id)
    .fetch_one(pool)
    .await
    .expect("the turn's activity");
    assert_eq!(status, "completed");
    assert_eq!(output["message"], message, "{output}");

    run.stop().await;
}

#[tokio::test]
async fn a_retried_attempt_streams_again_from_the_start_and_replaces_the_failed_one() {
    let first = "Hello there, this answer breaks off before it is done";
    let second = "Hi, welcome! What should I call you?";
    let run = FirstReply::watch(
        vec![
            // The stream breaks off (no finish reason, no [DONE]): a retryable
            // failure of attempt 1, after its text has streamed.
            Reply::streamed(Reply::tool_call("final_result", greeting(first)), 8)
                .paced(Duration::from_millis(30))
                .truncated(),
            Reply::streamed(Reply::tool_call("final_result", greeting(second)), 8)
                .paced(Duration::from_millis(30)),
        ],
        "Sam",
    )
    .await;
    assert_eq!(run.reply(), second);
    let streams = run.streamed_before();
    let (mut one, mut two) = (Draft::default(), Draft::default());
    for frame in &streams {
        match frame["attempt"].as_i64() {
            Some(1) => {
                assert!(two.units.is_empty(), "attempt 1 comes first: {streams:#?}");
                one.apply(frame);
            }
            Some(2) => two.apply(frame),
            other => panic!("attempt {other:?}: {frame}"),
        }
    }
    assert!(!one.steps.is_empty(), "attempt 1 streamed: {streams:#?}");
    assert!(first.starts_with(one.text().as_str()));
    // Attempt 2 starts at offset 0 (checked by `apply`) and is the reply.
    assert_eq!(two.text(), second);
    assert!(
        streams.iter().all(|f| f["turn"] == streams[0]["turn"]),
        "one turn: {streams:#?}"
    );

    run.stop().await;
}

#[tokio::test]
async fn a_reply_longer_than_a_notification_streams_in_pieces_that_fit() {
    // ~20 kB once escaped: quotes, newlines and a control character in it.
    let line = "A \"long\" line of the brain dump, with é, 中文 and \u{1f600}.\n";
    let message = format!("{}\u{7}Shall I add them?", line.repeat(300));
    let run = FirstReply::watch(
        vec![Reply::streamed(
            Reply::tool_call("final_result", greeting(&message)),
            4_000,
        )],
        "Kim",
    )
    .await;
    assert_eq!(run.reply(), message.as_str());
    let mut draft = Draft::default();
    for frame in run.frames.iter().filter(|f| f["type"] == "stream") {
        assert!(
            frame["text"].as_str().expect("text").len() < 8_000,
            "a piece fits a notification"
        );
        draft.apply(frame);
    }
    assert!(draft.steps.len() > 2, "{} pieces", draft.steps.len());
    assert_eq!(draft.text(), message);

    run.stop().await;
}
