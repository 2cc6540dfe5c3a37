//! The chat through its real server: sessions, the chat endpoints and the
//! WebSocket on port 0, real PostgreSQL, an in-process worker running this
//! build's production workflows with the offline agents, and real
//! WebSocket clients.

mod common;

use std::time::Duration;

use common::{TestApp, TestWorker, assert_error, database, eventually, send};
use floe_api::settings::ChatSettings;
use floe_engine::chat;
use floe_engine::workflow::{Status, store};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use uuid::Uuid;

/// Longest wait for any one thing.
const WAIT: Duration = Duration::from_secs(15);

/// A conversation the offline agents take from the greeting to the end.
const SCRIPT: [&str; 8] = [
    "Hi! I'm Alexandra, but please call me Alex",
    "I'm a product manager at a fintech startup",
    "Ship the new onboarding flow and get better at planning my weeks",
    "Mornings",
    "Notion, Linear and Slack",
    "Too many meetings and context switching",
    "Call the bank tomorrow\nFinish the quarterly report by friday #work\nBuy a birthday present for Sam",
    "Looks good!",
];

// ------------------------------------------------------------------ helpers

/// A signed-in person.
struct Person {
    user_id: String,
    token: String,
}

async fn sign_in(app: &TestApp, name: &str) -> Person {
    let response = app
        .client
        .post(app.url("/api/session"))
        .json(&json!({ "display_name": name }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    let body: Value = response.json().await.expect("json");
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        cookie,
        format!("floe_session={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age=2592000")
    );
    assert_eq!(token.len(), 64);
    assert_eq!(body["display_name"], name.trim());
    let user_id = body["user_id"].as_str().expect("user_id").to_owned();
    assert!(user_id.parse::<Uuid>().is_ok(), "{user_id}");
    Person { user_id, token }
}

impl Person {
    fn get(&self, app: &TestApp, path: &str) -> reqwest::RequestBuilder {
        app.client.get(app.url(path)).bearer_auth(&self.token)
    }

    fn post(&self, app: &TestApp, path: &str) -> reqwest::RequestBuilder {
        app.client.post(app.url(path)).bearer_auth(&self.token)
    }

    /// Posts a message over HTTP; returns `(seq, duplicate)`.
    async fn say(&self, app: &TestApp, content: &str, client_id: &str) -> (i64, bool) {
        let (status, body) = send(
            self.post(app, "/api/chat/message")
                .json(&json!({ "content": content, "client_id": client_id })),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        (
            body["seq"].as_i64().expect("seq"),
            body["duplicate"].as_bool().expect("duplicate"),
        )
    }

    /// The whole conversation, by the polling endpoint.
    async fn messages(&self, app: &TestApp) -> Vec<Value> {
        let (status, body) = send(self.get(app, "/api/chat/messages?after=0&limit=500")).await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().expect("messages").clone()
    }

    /// The onboarding's run id.
    async fn run_id(&self, pool: &PgPool) -> Uuid {
        chat::store::workflow_instance(pool, &self.user_id, "onboarding")
            .await
            .expect("instance")
            .expect("an onboarding")
            .1
    }

    /// Waits until no turn runs and nothing is queued.
    async fn settled(&self, app: &TestApp) {
        let quiet = eventually(WAIT, || async {
            let (status, state) = send(self.get(app, "/api/workflow/state")).await;
            status == 200 && state["typing"] == false && state["queued_messages"] == 0
        })
        .await;
        assert!(quiet, "the onboarding never settled");
    }
}

/// A WebSocket client; it keeps every frame it read (but pings).
struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    seen: Vec<Value>,
}

async fn open(request: tokio_tungstenite::tungstenite::handshake::client::Request) -> Ws {
    let (socket, response) = tokio::time::timeout(WAIT, connect_async(request))
        .await
        .expect("connects in time")
        .expect("connects");
    assert_eq!(response.status(), 101);
    Ws {
        socket,
        seen: Vec::new(),
    }
}

impl Ws {
    /// Connects with the bearer token and says hello.
    async fn connect(app: &TestApp, person: &Person, after: i64) -> Self {
        let mut request = format!("ws://{}/ws", app.addr)
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", person.token).parse().expect("header"),
        );
        let mut ws = open(request).await;
        ws.send(json!({ "type": "hello", "after": after })).await;
        ws
    }

    async fn send(&mut self, frame: Value) {
        self.send_raw(Message::text(frame.to_string())).await;
    }

    async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next frame that is not the server's ping.
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a frame");
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if frame["type"] != "ping" {
                        self.seen.push(frame.clone());
                        return frame;
                    }
                }
                Message::Close(close) => panic!("closed: {close:?}"),
                _ => {}
            }
        }
    }

    /// The sequence numbers of every message frame read so far.
    fn seqs(&self) -> Vec<i64> {
        seqs(&self.seen)
    }

    /// Frames up to and including the first that `done` accepts.
    async fn until(&mut self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let stop = done(&frame);
            frames.push(frame);
            if stop {
                return frames;
            }
        }
    }

    /// The close frame's code, reading past any other frames.
    async fn closed(&mut self) -> Option<CloseCode> {
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("closes in time");
            match next {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(close))) => return close.map(|c| c.code),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends a message frame; returns its ack.
    async fn say(&mut self, content: &str, client_id: &str) -> Value {
        self.send(json!({ "type": "message", "content": content, "client_id": client_id }))
            .await;
        let frames = self
            .until(|f| f["type"] == "ack" || f["type"] == "error")
            .await;
        let ack = frames.last().expect("a frame").clone();
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["client_id"], client_id);
        ack
    }

    /// Sends `ping` and returns every frame before the `pong`.
    async fn round_trip(&mut self) -> Vec<Value> {
        self.send(json!({ "type": "ping" })).await;
        let mut frames = self.until(|f| f["type"] == "pong").await;
        frames.pop();
        frames
    }
}

fn is_message(frame: &Value) -> bool {
    frame["type"] == "message"
}

fn is_reply_after(frame: &Value, seq: i64) -> bool {
    is_message(frame)
        && frame["message"]["role"] == "assistant"
        && frame["message"]["seq"].as_i64().expect("seq") > seq
}

/// The sequence numbers of the message frames among `frames`.
fn seqs(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| is_message(f))
        .map(|f| f["message"]["seq"].as_i64().expect("seq"))
        .collect()
}

async fn wait_completed(pool: &PgPool, run: Uuid) {
    let done = eventually(WAIT, || async {
        store::status(pool, run).await.expect("status") == Some(Status::Completed)
    })
    .await;
    assert!(done, "the onboarding never completed");
}

/// An API and a production worker on a fresh database.
async fn chat_app(settings: ChatSettings) -> (TestApp, TestWorker) {
    let pool = database().await;
    let worker = TestWorker::production(&pool).await;
    let app = TestApp::spawn_with(pool, settings).await;
    (app, worker)
}

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn a_person_onboards_from_session_to_completed_over_http_and_the_websocket() {
    let (app, worker) = chat_app(ChatSettings::default()).await;
    let alex = sign_in(&app, "  Alex ").await;
    let (status, me) = send(alex.get(&app, "/api/session")).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], alex.user_id.as_str());
    assert_eq!(me["display_name"], "Alex");

    // Connecting starts the onboarding; the assistant speaks first.
    let mut ws = Ws::connect(&app, &alex, 0).await;
    let snapshot = ws.next().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["last_seq"], 0);
    let frames = ws.until(|f| is_reply_after(f, 0)).await;
    let greeting = &frames.last().expect("greeting")["message"];
    assert_eq!(greeting["kind"], "greeting", "{greeting}");
    assert_eq!(greeting["seq"], 1);

    for (i, text) in SCRIPT.iter().enumerate() {
        let ack = ws.say(text, &format!("c{i}")).await;
        assert_eq!(ack["duplicate"], false);
        let seq = ack["seq"].as_i64().expect("seq");
        ws.until(|f| is_reply_after(f, seq)).await;
    }
    // The last answer completes the onboarding: progress reaches 100 and
    // the confirmed items land in the inbox.
    let percent = |frames: &[Value]| {
        frames
            .iter()
            .filter(|f| f["type"] == "progress")
            .filter_map(|f| f["progress"]["percent"].as_i64())
            .max()
            .unwrap_or(0)
    };
    let has_inbox = |frames: &[Value]| frames.iter().any(|f| f["type"] == "inbox");
    while !has_inbox(&ws.seen) || percent(&ws.seen) < 100 {
        ws.next().await;
    }
    let frames = ws.seen.clone();
    let items = &frames
        .iter()
        .rev()
        .find(|f| f["type"] == "inbox")
        .expect("an inbox frame")["items"];
    assert_eq!(items.as_array().expect("items").len(), 3, "{items}");
    let progress: Vec<i64> = frames
        .iter()
        .filter(|f| f["type"] == "progress")
        .map(|f| f["progress"]["percent"].as_i64().expect("%"))
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&100));
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "typing" && f["typing"] == true)
    );

    let run = alex.run_id(&app.pool).await;
    wait_completed(&app.pool, run).await;

    // Every message once, in order, the person's own with their client id.
    alex.settled(&app).await;
    let frames = {
        ws.round_trip().await;
        ws.seen.clone()
    };
    let conversation = alex.messages(&app).await;
    assert_eq!(
        seqs(&frames),
        (1..=conversation.len() as i64).collect::<Vec<_>>()
    );
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "typing" && f["typing"] == false)
    );
    let mine: Vec<&str> = frames
        .iter()
        .filter(|f| is_message(f) && f["message"]["role"] == "user")
        .map(|f| f["message"]["client_id"].as_str().expect("client id"))
        .collect();
    assert_eq!(mine, ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]);

    // The HTTP side agrees.
    let (status, body) = send(alex.get(&app, "/api/inbox")).await;
    assert_eq!(status, 200, "{body}");
    let titles: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["title"].as_str().expect("title"))
        .collect();
    assert_eq!(titles.len(), 3, "{body}");
    assert!(
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["due_date"].is_string()),
        "{body}"
    );
    let (_, progress) = send(alex.get(&app, "/api/workflow/progress")).await;
    assert_eq!(progress["percent"], 100, "{progress}");
    assert_eq!(progress["current_step"], "completed");
    let (_, state) = send(alex.get(&app, "/api/workflow/state")).await;
    assert_eq!(state["context"]["preferred_name"], "Alex", "{state}");
    let (status, started) = send(alex.post(&app, "/api/workflow/start")).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["created"], false);
    assert_eq!(started["run_id"], run.to_string());
    assert_eq!(
        started["workflow_id"],
        format!("onboarding/{}", alex.user_id)
    );

    // A completed onboarding takes no more messages, by either path.
    let (status, body) = send(
        alex.post(&app, "/api/chat/message")
            .json(&json!({ "content": "one more thing" })),
    )
    .await;
    assert_error(status, &body, 409, "onboarding_completed");
    ws.send(json!({ "type": "message", "content": "one more thing", "client_id": "late" }))
        .await;
    let refused = ws.until(|f| f["type"] == "error").await;
    let refused = refused.last().expect("error");
    assert_eq!(refused["code"], "onboarding_completed", "{refused}");
    assert_eq!(refused["client_id"], "late");
    assert_eq!(alex.messages(&app).await.len(), conversation.len());

    app.stop().await;
    worker.stop().await;
}

#[tokio::test]
async fn the_polling_fallback_alone_carries_a_whole_onboarding() {
    let (app, worker) = chat_app(ChatSettings::default()).await;
    let sam = sign_in(&app, "Sam").await;
    let (status, body) = send(sam.get(&app, "/api/workflow/progress")).await;
    assert_error(status, &body, 404, "not_found");

    let (status, started) = send(sam.post(&app, "/api/workflow/start")).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["created"], true);
    let (_, again) = send(sam.post(&app, "/api/workflow/start")).await;
    assert_eq!(again["created"], false);
    assert_eq!(again["run_id"], started["run_id"]);
    let ready = eventually(WAIT, || async {
        send(sam.get(&app, "/api/workflow/progress")).await.0 == 200
    })
    .await;
    assert!(ready, "the start was applied");
    let (_, progress) = send(sam.get(&app, "/api/workflow/progress")).await;
    assert_eq!(progress["current_step"], "greeting", "{progress}");
    assert_eq!(progress["percent"], 0);

    let mut last_seq = 0;
    let mut read = Vec::new();
    for (i, text) in SCRIPT.iter().enumerate() {
        let (seq, duplicate) = sam.say(&app, text, &format!("p{i}")).await;
        assert!(!duplicate);
        // Poll until the reply is there, reading each message once.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let path = format!("/api/chat/messages?after={last_seq}");
            let (status, page) = send(sam.get(&app, &path)).await;
            assert_eq!(status, 200, "{page}");
            let messages = page["messages"].as_array().expect("messages").clone();
            let answered = messages
                .iter()
                .any(|m| m["role"] == "assistant" && m["seq"].as_i64() > Some(seq));
            last_seq = page["last_seq"].as_i64().expect("last_seq");
            read.extend(messages);
            if answered {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no answer to {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let run = sam.run_id(&app.pool).await;
    wait_completed(&app.pool, run).await;
    let (_, progress) = send(sam.get(&app, "/api/workflow/progress")).await;
    assert_eq!(progress["percent"], 100, "{progress}");
    let (_, inbox) = send(sam.get(&app, "/api/inbox")).await;
    assert_eq!(
        inbox["items"].as_array().expect("items").len(),
        3,
        "{inbox}"
    );

    // Each message was read once, in order, and the pages add up.
    let read_seqs: Vec<i64> = read
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    let all = sam.messages(&app).await;
    assert_eq!(read_seqs, (1..=all.len() as i64).collect::<Vec<_>>());
    assert_eq!(all[0]["role"], "user", "the person spoke first");
    let (status, page) = send(sam.get(&app, "/api/chat/messages?after=2&limit=2")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(seqs_of(&page["messages"]), [3, 4]);
    assert_eq!(page["last_seq"], 4);
    let (_, page) = send(sam.get(&app, &format!("/api/chat/messages?after={}", all.len()))).await;
    assert_eq!(page["messages"], json!([]));
    assert_eq!(page["last_seq"], all.len());

    app.stop().await;
    worker.stop().await;
}

fn seqs_of(messages: &Value) -> Vec<i64> {
    messages
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn a_client_id_sent_twice_is_stored_and_delivered_once_over_http_and_the_websocket() {
    let (app, worker) = chat_app(ChatSettings::default()).await;
    let kim = sign_in(&app, "Kim").await;
    let first = kim.say(&app, "Hi, I'm Kim", "dup-http").await;
    let second = kim.say(&app, "Hi, I'm Kim", "dup-http").await;
    assert_eq!(first, (first.0, false));
    assert_eq!(second, (first.0, true));

    let mut ws = Ws::connect(&app, &kim, 0).await;
    let a = ws.say("I lead a design team", "dup-ws").await;
    let b = ws.say("I lead a design team", "dup-ws").await;
    assert_eq!(a["duplicate"], false);
    assert_eq!(b["duplicate"], true);
    assert_eq!(a["seq"], b["seq"]);
    kim.settled(&app).await;

    let conversation = kim.messages(&app).await;
    let mine: Vec<&str> = conversation
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["client_id"].as_str().expect("client id"))
        .collect();
    assert_eq!(mine, ["dup-http", "dup-ws"], "{conversation:#?}");
    // The workflow heard each once.
    let run = kim.run_id(&app.pool).await;
    let (status, history) = send(app.get(&format!("/api/workflows/{run}/history"))).await;
    assert_eq!(status, 200, "{history}");
    let heard = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["name"] == "user_message")
        .count();
    assert_eq!(heard, 2, "{history}");
    // And the socket showed each message once.
    let frames = ws.round_trip().await;
    let user_frames = frames
        .iter()
        .filter(|f| is_message(f) && f["message"]["client_id"] == "dup-ws")
        .count();
    assert!(user_frames <= 1, "{frames:#?}");

    app.stop().await;
    worker.stop().await;
}

#[tokio::test]
async fn a_burst_of_messages_is_stored_in_order_and_all_answered() {
    let (app, worker) = chat_app(ChatSettings::default()).await;
    let lee = sign_in(&app, "Lee").await;
    let mut ws = Ws::connect(&app, &lee, 0).await;
    ws.until(|f| is_reply_after(f, 0)).await;

    let burst = [
        "I'm Lee",
        "I run a bakery",
        "I want more time for recipes",
        "Evenings work best",
        "I use a paper notebook",
        "Ordering flour takes forever",
    ];
    for (i, text) in burst.iter().enumerate() {
        ws.send(json!({ "type": "message", "content": text, "client_id": format!("b{i}") }))
            .await;
    }
    let mut acks = Vec::new();
    while acks.len() < burst.len() {
        let frame = ws.next().await;
        if frame["type"] == "ack" {
            acks.push(frame["seq"].as_i64().expect("seq"));
        }
    }
    assert!(
        acks.windows(2).all(|w| w[0] < w[1]),
        "stored in order: {acks:?}"
    );
    let last = *acks.last().expect("acks");
    ws.until(|f| is_reply_after(f, last)).await;
    lee.settled(&app).await;
    ws.round_trip().await;

    // Every message reached the socket once, in order.
    let conversation = lee.messages(&app).await;
    assert_eq!(
        ws.seqs(),
        (1..=conversation.len() as i64).collect::<Vec<_>>()
    );
    let said: Vec<&str> = conversation
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(said, burst);
    assert_eq!(
        conversation.last().expect("messages")["role"],
        "assistant",
        "the last word is an answer"
    );
    // The assistant heard all of them, in order (folded while it was busy).
    let run = lee.run_id(&app.pool).await;
    let row = store::get(&app.pool, run).await.expect("get").expect("row");
    let heard: Vec<String> = row.context["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|t| t["role"] == "user")
        .map(|t| t["content"].as_str().expect("content").to_owned())
        .collect();
    assert_eq!(heard.join("\n\n"), burst.join("\n\n"));

    app.stop().await;
    worker.stop().await;
}

#[tokio::test]
async fn a_client_reconnecting_with_after_gets_exactly_the_messages_it_missed() {
    let (app, worker) = chat_app(ChatSettings::default()).await;
    let ana = sign_in(&app, "Ana").await;
    let mut ws = Ws::connect(&app, &ana, 0).await;
    ws.until(|f| is_reply_after(f, 0)).await;
    for (i, text) in SCRIPT[..2].iter().enumerate() {
        let seq = ws.say(text, &format!("r{i}")).await["seq"]
            .as_i64()
            .expect("seq");
        ws.until(|f| is_reply_after(f, seq)).await;
    }
    ana.settled(&app).await;
    drop(ws);
    let total = ana.messages(&app).await.len() as i64;
    assert!(total >= 5, "{total}");

    for after in [0, 2, total - 1, total] {
        let mut ws = Ws::connect(&app, &ana, after).await;
        let snapshot = ws.next().await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        assert_eq!(snapshot["last_seq"], total);
        assert_eq!(snapshot["progress"]["current_step"], "discovery");
        let frames = ws.round_trip().await;
        assert_eq!(
            seqs(&frames),
            ((after + 1)..=total).collect::<Vec<_>>(),
            "after {after}: {frames:#?}"
        );
    }
    // The token as ?token=, for clients that cannot set headers; a second
    // hello asks again.
    let request = format!("ws://{}/ws?token={}", app.addr, ana.token)
        .into_client_request()
        .expect("request");
    let mut ws = open(request).await;
    ws.send(json!({ "type": "hello", "after": total })).await;
    assert_eq!(ws.next().await["type"], "snapshot");
    assert!(seqs(&ws.round_trip().await).is_empty());
    ws.send(json!({ "type": "hello", "after": total - 2 }))
        .await;
    let frames = ws.round_trip().await;
    assert_eq!(frames[0]["type"], "snapshot");
    assert_eq!(seqs(&frames), [total - 1, total]);

    app.stop().await;
    worker.stop().await;
}

#[tokio::test]
async fn the_api_restarted_mid_conversation_loses_and_repeats_nothing() {
    let (app, worker) = chat_app(ChatSettings::default()).await;
    let pool = app.pool.clone();
    let max = sign_in(&app, "Max").await;
    let mut ws = Ws::connect(&app, &max, 0).await;
    ws.until(|f| is_reply_after(f, 0)).await;
    let seq = ws.say(SCRIPT[0], "m0").await["seq"].as_i64().expect("seq");
    ws.until(|f| is_reply_after(f, seq)).await;
    // A message in flight when the API goes away.
    let pending = ws.say(SCRIPT[1], "m1").await["seq"].as_i64().expect("seq");
    app.stop().await;
    // The server says it is going away; the client keeps what it saw.
    loop {
        match tokio::time::timeout(WAIT, ws.socket.next())
            .await
            .expect("closes in time")
        {
            Some(Ok(Message::Text(text))) => {
                ws.seen
                    .push(serde_json::from_str(text.as_str()).expect("JSON"));
            }
            Some(Ok(Message::Close(close))) => {
                assert_eq!(close.map(|c| c.code), Some(CloseCode::Away));
                break;
            }
            None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    let seen = ws.seqs();
    let last_seen = *seen.last().expect("messages");
    // The reply to the message in flight may have come before the close.
    let replied = ws.seen.iter().any(|f| is_reply_after(f, pending));

    // A new API process on the same database; the client resumes.
    let app = TestApp::spawn_on(pool.clone()).await;
    let mut ws = Ws::connect(&app, &max, last_seen).await;
    let snapshot = ws.next().await;
    assert_eq!(snapshot["type"], "snapshot");
    if !replied {
        ws.until(|f| is_reply_after(f, pending)).await;
    }
    let seq = ws.say(SCRIPT[2], "m2").await["seq"].as_i64().expect("seq");
    ws.until(|f| is_reply_after(f, seq)).await;
    max.settled(&app).await;
    ws.round_trip().await;

    let mut all = seen.clone();
    all.extend(ws.seqs());
    let conversation = max.messages(&app).await;
    assert_eq!(
        all,
        (1..=conversation.len() as i64).collect::<Vec<_>>(),
        "every message once, in order, across the restart"
    );

    app.stop().await;
    worker.stop().await;
}

#[tokio::test]
async fn one_person_cannot_see_or_signal_another() {
    let (app, worker) = chat_app(ChatSettings::default()).await;
    let alice = sign_in(&app, "Alice").await;
    let bob = sign_in(&app, "Bob").await;

    let mut alice_ws = Ws::connect(&app, &alice, 0).await;
    alice_ws.until(|f| is_reply_after(f, 0)).await;
    let seq = alice_ws.say("My name is Alice Secret", "shared-id").await["seq"]
        .as_i64()
        .expect("seq");
    alice_ws.until(|f| is_reply_after(f, seq)).await;
    let alice_before = alice.messages(&app).await;

    // Bob's token reaches Bob's (empty) world only.
    let (_, me) = send(bob.get(&app, "/api/session")).await;
    assert_eq!(me["user_id"], bob.user_id.as_str());
    let (_, page) = send(bob.get(&app, "/api/chat/messages")).await;
    assert_eq!(page, json!({ "messages": [], "last_seq": 0 }));
    let (status, body) = send(bob.get(&app, "/api/workflow/state")).await;
    assert_error(status, &body, 404, "not_found");
    let (_, inbox) = send(bob.get(&app, "/api/inbox")).await;
    assert_eq!(inbox, json!({ "items": [] }));

    let mut bob_ws = Ws::connect(&app, &bob, 0).await;
    let snapshot = bob_ws.next().await;
    assert_eq!(snapshot["last_seq"], 0, "{snapshot}");
    bob_ws.until(|f| is_reply_after(f, 0)).await;
    // Alice speaks while Bob listens: nothing of it reaches Bob.
    let seq = alice_ws.say("I'm a product manager", "a-2").await["seq"]
        .as_i64()
        .expect("seq");
    alice_ws.until(|f| is_reply_after(f, seq)).await;
    bob.settled(&app).await;
    bob_ws.round_trip().await;
    // Bob's own message, with Alice's client id: his, not a duplicate.
    let ack = bob_ws.say("I'm Bob", "shared-id").await;
    assert_eq!(ack["duplicate"], false);
    bob_ws.round_trip().await;
    let shown = serde_json::to_string(&bob_ws.seen).expect("json");
    assert!(!shown.contains("Alice"), "{shown}");
    assert!(!shown.contains("product manager"), "{shown}");

    // Bob's runs and Alice's differ; Alice's conversation is untouched by Bob.
    assert_ne!(bob.run_id(&app.pool).await, alice.run_id(&app.pool).await);
    alice.settled(&app).await;
    let alice_after = alice.messages(&app).await;
    assert_eq!(&alice_after[..alice_before.len()], &alice_before[..]);
    assert!(
        alice_after
            .iter()
            .all(|m| m["content"].as_str() != Some("I'm Bob"))
    );
    let bob_messages = bob.messages(&app).await;
    assert!(
        bob_messages
            .iter()
            .all(|m| !m["content"].as_str().unwrap_or_default().contains("Alice"))
    );

    // Without a valid session, no socket.
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        "Bearer 0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .expect("header"),
    );
    match connect_async(request).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // The cookie works as well as the bearer token.
    let (status, me) = send(app.client.get(app.url("/api/session")).header(
        "cookie",
        format!("theme=dark; floe_session={}", alice.token),
    ))
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], alice.user_id.as_str());

    app.stop().await;
    worker.stop().await;
}

#[tokio::test]
async fn bad_input_gets_its_status_and_error_body_and_changes_nothing() {
    let settings = ChatSettings {
        messages_per_minute: 3,
        ..ChatSettings::default()
    };
    let app = TestApp::spawn_with(database().await, settings).await;

    // Sessions.
    for (body, code) in [
        ("{\"display_name\": ", "malformed_json"),
        ("{\"display_name\": \"   \"}", "validation_failed"),
        ("{\"name\": \"Al\"}", "validation_failed"),
        ("{\"display_name\": 42}", "validation_failed"),
    ] {
        let (status, error) = send(
            app.client
                .post(app.url("/api/session"))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        let expected = if code == "malformed_json" { 400 } else { 422 };
        assert_error(status, &error, expected, code);
    }
    let (status, error) = send(
        app.client
            .post(app.url("/api/session"))
            .json(&json!({ "display_name": "x".repeat(81) })),
    )
    .await;
    assert_error(status, &error, 422, "validation_failed");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.users")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(users, 0);

    // No session, or a wrong one.
    let zed = sign_in(&app, "Zed").await;
    for request in [
        app.client.get(app.url("/api/inbox")),
        app.client.get(app.url("/api/session")),
        app.client.get(app.url("/api/inbox")).bearer_auth("nope"),
        app.client.get(app.url("/api/inbox?token=nope")),
        app.client
            .get(app.url("/api/inbox"))
            .header("cookie", "floe_session=nope"),
        app.client
            .get(app.url(&format!("/api/inbox?token={}", zed.token))),
        app.client
            .post(app.url("/api/chat/message"))
            .json(&json!({ "content": "hi" })),
        app.get("/api/inbox"),
    ] {
        let (status, body) = send(request).await;
        assert_error(status, &body, 401, "unauthorized");
    }

    // Messages.
    let post = |body: String| {
        zed.post(&app, "/api/chat/message")
            .header("content-type", "application/json")
            .body(body)
    };
    for (body, status, code) in [
        ("{\"content\": \"hi\"".to_owned(), 400, "malformed_json"),
        ("[1, 2]".to_owned(), 422, "validation_failed"),
        ("{}".to_owned(), 422, "validation_failed"),
        (
            "{\"content\": \"   \"}".to_owned(),
            422,
            "validation_failed",
        ),
        (
            json!({ "content": "é".repeat(4001) }).to_string(),
            422,
            "validation_failed",
        ),
        (
            json!({ "content": "hi", "client_id": "c".repeat(101) }).to_string(),
            422,
            "validation_failed",
        ),
        (
            json!({ "content": "hi", "client_id": "" }).to_string(),
            422,
            "validation_failed",
        ),
        (
            json!({ "content": "hi", "mood": "happy" }).to_string(),
            422,
            "validation_failed",
        ),
        (
            json!({ "content": "x".repeat(common::BODY_LIMIT + 1) }).to_string(),
            413,
            "payload_too_large",
        ),
    ] {
        let (got, error) = send(post(body)).await;
        assert_error(got, &error, status, code);
    }
    let (status, error) = send(
        zed.post(&app, "/api/chat/message")
            .header("content-type", "text/plain")
            .body("{\"content\": \"hi\"}"),
    )
    .await;
    assert_error(status, &error, 400, "malformed_json");
    for query in ["after=-1", "limit=0", "limit=501", "after=abc"] {
        let (status, error) = send(zed.get(&app, &format!("/api/chat/messages?{query}"))).await;
        assert_error(status, &error, 400, "bad_request");
    }
    // Nothing was stored, and no onboarding started.
    assert!(zed.messages(&app).await.is_empty());
    let (status, error) = send(zed.get(&app, "/api/workflow/progress")).await;
    assert_error(status, &error, 404, "not_found");

    // The rate limit: three a minute here. A 4,000-character message is fine.
    zed.say(&app, &"é".repeat(4000), "ok-0").await;
    zed.say(&app, "two", "ok-1").await;
    zed.say(&app, "three", "ok-2").await;
    let response = zed
        .post(&app, "/api/chat/message")
        .json(&json!({ "content": "four", "client_id": "no-3" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = response.json().await.expect("json");
    assert_error(429, &body, 429, "rate_limited");
    let mut ws = Ws::connect(&app, &zed, 0).await;
    ws.send(json!({ "type": "message", "content": "five", "client_id": "no-4" }))
        .await;
    let refused = ws.until(|f| f["type"] == "error").await;
    let refused = refused.last().expect("error");
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["client_id"], "no-4");
    assert!(refused["retry_after"].as_u64().is_some_and(|s| s >= 1));
    let stored: Vec<String> = zed
        .messages(&app)
        .await
        .iter()
        .filter_map(|m| m["client_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(stored, ["ok-0", "ok-1", "ok-2"]);
    let (status, body) = send(zed.get(&app, "/api/workflow/nothing")).await;
    assert_error(status, &body, 404, "not_found");

    app.stop().await;
}

#[tokio::test]
async fn garbage_websocket_frames_get_an_error_frame_and_the_connection_keeps_working() {
    let app = TestApp::spawn().await;
    let uma = sign_in(&app, "Uma").await;
    let mut ws = Ws::connect(&app, &uma, 0).await;
    assert_eq!(ws.next().await["type"], "snapshot");

    let garbage = [
        (Message::text("not json"), "malformed_json"),
        (Message::text("{\"type\": \"dance\"}"), "validation_failed"),
        (Message::text("{\"after\": 3}"), "validation_failed"),
        (
            Message::text("{\"type\": \"message\"}"),
            "validation_failed",
        ),
        (
            Message::text("{\"type\": \"message\", \"content\": \"  \"}"),
            "validation_failed",
        ),
        (Message::binary(vec![1u8, 2, 3]), "bad_request"),
        (
            Message::text(
                json!({ "type": "message", "content": "x".repeat(20 * 1024) }).to_string(),
            ),
            "payload_too_large",
        ),
    ];
    for (frame, code) in garbage {
        ws.send_raw(frame).await;
        let error = ws.until(|f| f["type"] == "error").await;
        let error = error.last().expect("error");
        assert_eq!(error["code"], code, "{error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still working: a ping is answered and a message accepted.
    ws.round_trip().await;
    let ack = ws.say("Hello there, I'm Uma", "u-1").await;
    assert_eq!(ack["seq"], 1);
    let echo = ws.until(is_message).await;
    assert_eq!(echo.last().expect("echo")["message"]["client_id"], "u-1");

    // A frame beyond what is read at all closes that connection only.
    ws.send_raw(Message::text("x".repeat(100 * 1024))).await;
    let code = ws.closed().await;
    assert!(
        matches!(code, None | Some(CloseCode::Size)),
        "closed with {code:?}"
    );
    let mut again = Ws::connect(&app, &uma, 1).await;
    assert_eq!(again.next().await["type"], "snapshot");
    assert!(
        again
            .round_trip()
            .await
            .iter()
            .all(|f| f["type"] != "error")
    );
    let (status, _) = send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(status, 200);

    app.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_delay_another_and_is_dropped() {
    // Frequent pings fill a stuck client's queue quickly.
    let settings = ChatSettings {
        ws_ping_ms: 10,
        ..ChatSettings::default()
    };
    let app = TestApp::spawn_with(database().await, settings).await;
    let stuck = sign_in(&app, "Stuck").await;
    let lively = sign_in(&app, "Lively").await;
    let mut stuck_ws = Ws::connect(&app, &stuck, 0).await;
    assert_eq!(stuck_ws.next().await["type"], "snapshot");
    // Far more than the sockets' buffers hold lands in the stuck client's
    // conversation; it reads none of it.
    let flood = 60;
    let big = "z".repeat(256 * 1024);
    let mut tx = app.pool.begin().await.expect("begin");
    for i in 0..flood {
        let reply = chat::Reply {
            kind: "reply".into(),
            agent: None,
            content: big.clone(),
            widget: None,
        };
        chat::store::post_reply(&mut tx, &stuck.user_id, &format!("flood:{i}"), &reply)
            .await
            .expect("reply");
    }
    tx.commit().await.expect("commit");

    // Meanwhile another person's frames flow as usual.
    let mut ws = Ws::connect(&app, &lively, 0).await;
    assert_eq!(ws.next().await["type"], "snapshot");
    for i in 0..5 {
        let ack = ws.say(&format!("message {i}"), &format!("l-{i}")).await;
        assert_eq!(ack["seq"], i + 1);
        let echo = ws.until(is_message).await;
        assert_eq!(echo.last().expect("echo")["message"]["seq"], i + 1);
    }
    let (status, _) = send(lively.get(&app, "/api/session")).await;
    assert_eq!(status, 200);

    // The stuck client is dropped once its queue is full (its
    // subscriptions end; the lively one's two remain). Reading now, it
    // finds part of the flood and then the end of the connection.
    let dropped = eventually(WAIT, || async { app.hub.subscribers() == 2 }).await;
    assert!(dropped, "the stuck client is still connected");
    let mut got = Vec::new();
    loop {
        let next = tokio::time::timeout(WAIT, stuck_ws.socket.next())
            .await
            .expect("the stuck connection ends");
        match next {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if is_message(&frame) {
                    got.push(frame["message"]["seq"].as_i64().expect("seq"));
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(got.len() < flood, "dropped before the end: {}", got.len());
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>());
    // Reconnecting from its last sequence number, it gets the rest.
    let after = got.len() as i64;
    let mut again = Ws::connect(&app, &stuck, after).await;
    assert_eq!(again.next().await["type"], "snapshot");
    assert_eq!(
        seqs(&again.round_trip().await),
        ((after + 1)..=flood as i64).collect::<Vec<_>>()
    );

    app.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_a_live_client_and_close_a_silent_one() {
    let settings = ChatSettings {
        ws_ping_ms: 100,
        ws_idle_ms: 1500,
        ..ChatSettings::default()
    };
    let app = TestApp::spawn_with(database().await, settings).await;
    let vic = sign_in(&app, "Vic").await;

    // One that says nothing after its hello is closed.
    let mut silent = Ws::connect(&app, &vic, 0).await;
    assert_eq!(silent.closed().await, Some(CloseCode::Normal));

    // One that answers every ping stays open well past the idle timeout.
    let mut live = Ws::connect(&app, &vic, 0).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        let message = tokio::time::timeout(WAIT, live.socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        match message {
            Message::Text(text) if text.as_str().contains("\"ping\"") => {
                pings += 1;
                live.send(json!({ "type": "pong" })).await;
            }
            Message::Close(close) => panic!("a live client was closed: {close:?}"),
            _ => {}
        }
    }
    assert!(pings >= 2, "{pings} pings");
    assert!(live.round_trip().await.iter().all(|f| f["type"] != "error"));

    app.stop().await;
}

#[tokio::test]
async fn a_conversation_whose_workflow_retention_removed_reads_as_finished() {
    let (app, worker) = chat_app(ChatSettings::default()).await;
    let alex = sign_in(&app, "Alex").await;
    let started: Value = alex
        .post(&app, "/api/workflow/start")
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let run: Uuid = started["run_id"]
        .as_str()
        .expect("run_id")
        .parse()
        .expect("uuid");
    let (status, _) = send(
        alex.post(&app, "/api/chat/message")
            .json(&json!({ "content": "Hi, I'm Alex" })),
    )
    .await;
    assert_eq!(status, 202);
    let answered = eventually(WAIT, || async {
        let replies: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM floe.messages WHERE user_id = $1 AND role = 'assistant'",
        )
        .bind(&alex.user_id)
        .fetch_one(&app.pool)
        .await
        .expect("count");
        replies == 1
            && store::status(&app.pool, run).await.expect("status") == Some(Status::Waiting)
    })
    .await;
    assert!(answered, "the first turn never finished");
    // Finished long ago (as if onboarding completed 40 days back), then swept.
    sqlx::query(
        "UPDATE floe.workflows SET status = 'completed', state = 'completed',
                finished_at = now() - interval '40 days' WHERE id = $1",
    )
    .bind(run)
    .execute(&app.pool)
    .await
    .expect("age");
    let swept =
        floe_engine::retention::sweep_batch(&app.pool, Duration::from_secs(30 * 86_400), 100)
            .await
            .expect("sweep");
    assert_eq!(swept.workflows, 1);

    // The conversation stays; the chat says the onboarding is over.
    let sent = alex
        .post(&app, "/api/chat/message")
        .json(&json!({ "content": "hello again" }))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), 409);
    let body: Value = sent.json().await.expect("json");
    assert_eq!(body["error"]["code"], "onboarding_completed");
    let progress = alex
        .get(&app, "/api/workflow/progress")
        .send()
        .await
        .expect("progress");
    assert_eq!(progress.status(), 409);
    let body: Value = progress.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("archived"),
        "{body}"
    );
    let messages = alex
        .get(&app, "/api/chat/messages?after=0")
        .send()
        .await
        .expect("messages");
    assert_eq!(messages.status(), 200, "the conversation itself is kept");
    let greeting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.messages WHERE user_id = $1 AND role = 'assistant'",
    )
    .bind(&alex.user_id)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(greeting, 1, "the reply outlives the workflow");
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.messages WHERE user_id = $1 AND content = 'hello again'",
    )
    .bind(&alex.user_id)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(count, 0, "a refused message is not stored");
    app.stop().await;
    worker.stop().await;
}

/// Found by `scripts/fuzz-api`: PostgreSQL cannot store the NUL character,
/// so a display name or a message holding one failed in the database as a
/// 500 (an `internal` error frame on the WebSocket).
#[tokio::test]
async fn text_with_a_nul_character_is_refused_with_422_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (status, error) = send(
        app.client
            .post(app.url("/api/session"))
            .json(&json!({ "display_name": "Al\u{0}ex" })),
    )
    .await;
    assert_error(status, &error, 422, "validation_failed");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.users")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(users, 0);

    let nia = sign_in(&app, "Nia").await;
    for body in [
        json!({ "content": "hi\u{0}there" }),
        json!({ "content": "hi", "client_id": "c\u{0}" }),
    ] {
        let (status, error) = send(nia.post(&app, "/api/chat/message").json(&body)).await;
        assert_error(status, &error, 422, "validation_failed");
    }
    // No onboarding was started for them either.
    let (status, error) = send(nia.get(&app, "/api/workflow/progress")).await;
    assert_error(status, &error, 404, "not_found");

    let mut ws = Ws::connect(&app, &nia, 0).await;
    ws.send(json!({ "type": "message", "content": "a\u{0}b", "client_id": "w-1" }))
        .await;
    let refused = ws.until(|f| f["type"] == "error").await;
    let refused = refused.last().expect("error");
    assert_eq!(refused["code"], "validation_failed", "{refused}");
    assert_eq!(refused["client_id"], "w-1");
    // The connection goes on; the refused messages were never stored.
    let ack = ws.say("Hello, I'm Nia", "w-2").await;
    assert_eq!(ack["seq"], 1);
    let stored: Vec<Value> = nia
        .messages(&app)
        .await
        .into_iter()
        .filter(|m| m["role"] == "user")
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["client_id"], "w-2");
    app.stop().await;
}
