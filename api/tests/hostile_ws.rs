//! Hostile WebSocket clients against the real `floe-api --with-worker`
//! process (offline agents, real PostgreSQL): garbage and protocol-breaking
//! frames, oversized and fragmented frames, thousands of connections for
//! one person and many `hello`s on one, and clients that never read. Each
//! time the hostile client gets an `error` frame or a close with its code,
//! the process stays up with bounded memory, and a well-behaved client of
//! another person, connected throughout, still gets its frames.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ApiProcess, eventually};
use floe_engine::testing::{fresh_database, wait_for_status};
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

/// Longest wait for any one thing.
const WAIT: Duration = Duration::from_secs(30);
/// The server's limits (`floe_api::http::ws`).
const MAX_FRAME: usize = floe_api::http::ws::MAX_FRAME;
const HARD_LIMIT: usize = floe_api::http::ws::HARD_LIMIT;
/// How much the process's resident memory may grow over a test.
const RSS_BOUND_KIB: u64 = 64 * 1024;

// ------------------------------------------------------------------ the process

/// A running `floe-api --with-worker` on its own database.
struct Api(ApiProcess);

impl std::ops::Deref for Api {
    type Target = ApiProcess;
    fn deref(&self) -> &ApiProcess {
        &self.0
    }
}

impl std::ops::DerefMut for Api {
    fn deref_mut(&mut self) -> &mut ApiProcess {
        &mut self.0
    }
}

impl Api {
    /// Starts it with `env` on top of the defaults; waits until it is ready.
    async fn start(env: &[(&str, &str)]) -> Self {
        let api = ApiProcess::spawn(&fresh_database().await, "hostile-operator-token", env);
        api.ready(Duration::from_secs(60)).await;
        Self(api)
    }

    /// The open WebSocket connections, by `/metrics`.
    async fn ws_gauge(&self) -> f64 {
        self.metrics().await.sum("floe_ws_connections", &[])
    }

    /// Waits until the gauge reads `n`.
    async fn gauge_reaches(&self, n: f64) -> bool {
        eventually(WAIT, || async { self.ws_gauge().await == n }).await
    }

    async fn sign_in(&self, name: &str) -> Person {
        let response = self
            .client
            .post(self.url("/api/session"))
            .json(&json!({ "display_name": name }))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        Person {
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Posts a chat message over HTTP; returns its sequence number.
    async fn say(&self, person: &Person, content: &str) -> i64 {
        let response = self
            .client
            .post(self.url("/api/chat/message"))
            .bearer_auth(&person.token)
            .json(&json!({ "content": content }))
            .send()
            .await
            .expect("send");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, 202, "{body}");
        body["seq"].as_i64().expect("seq")
    }

    /// The person's whole conversation, by the polling endpoint.
    async fn messages(&self, person: &Person) -> Vec<Value> {
        let body: Value = self
            .client
            .get(self.url("/api/chat/messages?after=0&limit=500"))
            .bearer_auth(&person.token)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        body["messages"].as_array().expect("messages").clone()
    }

    /// A WebSocket for `person` that has said `hello`.
    async fn ws(&self, person: &Person, after: i64) -> Ws {
        let mut ws = Ws::open(&self.addr, &person.token, false)
            .await
            .expect("connects");
        ws.send(json!({ "type": "hello", "after": after })).await;
        ws
    }

    /// Asserts the process is still up and serving, then stops it with
    /// SIGTERM: it exits cleanly, and nothing in its log panicked.
    async fn stop(mut self) {
        assert!(
            self.child.try_wait().expect("try_wait").is_none(),
            "floe-api died; log:\n{}",
            self.log_text()
        );
        assert!(
            wait_for_status(&self.addr, "/readyz", 200, WAIT).await,
            "floe-api no longer ready"
        );
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let status = self.child.wait().expect("wait");
        let log = self.log_text();
        assert!(
            status.success(),
            "floe-api exited with {status}; log:\n{log}"
        );
        assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    }
}

/// A signed-in person (by their session token).
struct Person {
    token: String,
}

// ------------------------------------------------------------------ clients

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// With a close frame and this code.
    Closed(u16),
    /// Without a close frame (reset, or cut).
    Cut,
}

/// A WebSocket client on a plain TCP stream (so raw bytes can go out too).
struct Ws {
    socket: WebSocketStream<TcpStream>,
}

impl Ws {
    /// Connects with the session's bearer token. A `narrow` connection has
    /// a 4 KiB receive buffer and an Ethernet-sized MSS, so what its client
    /// does not read piles up on the server at once (over loopback's 64 KiB
    /// MSS the kernel would buffer megabytes first).
    async fn open(addr: &str, token: &str, narrow: bool) -> Result<Self, WsError> {
        let tcp = TcpSocket::new_v4()?;
        if narrow {
            tcp.set_recv_buffer_size(4096)?;
            socket2::SockRef::from(&tcp).set_tcp_mss(1460)?;
        }
        let stream = tcp.connect(addr.parse().expect("address")).await?;
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (socket, response) = tokio::time::timeout(WAIT, client_async(request, stream))
            .await
            .expect("the upgrade is answered in time")?;
        assert_eq!(response.status(), 101);
        Ok(Self { socket })
    }

    async fn send(&mut self, frame: Value) {
        self.send_raw(Message::text(frame.to_string())).await;
    }

    async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// Writes `bytes` to the socket as they are, past the WebSocket layer.
    async fn write_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.socket.get_mut().write_all(bytes).await
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
                        return frame;
                    }
                }
                Message::Close(close) => panic!("closed: {close:?}"),
                _ => {}
            }
        }
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

    /// Sends `ping` and returns every frame before the `pong`.
    async fn round_trip(&mut self) -> Vec<Value> {
        self.send(json!({ "type": "ping" })).await;
        let mut frames = self.until(|f| f["type"] == "pong").await;
        frames.pop();
        frames
    }

    /// Reads to the end of the connection: the frames before it, and how
    /// it ended.
    async fn ending(&mut self) -> (Vec<Value>, Ending) {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("the connection ends in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    frames.push(serde_json::from_str(text.as_str()).expect("JSON frame"))
                }
                Some(Ok(Message::Close(Some(close)))) => {
                    return (frames, Ending::Closed(close.code.into()));
                }
                Some(Ok(Message::Close(None))) | Some(Err(_)) | None => {
                    return (frames, Ending::Cut);
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// A raw frame header for a client frame: `opcode`, `fin`, a payload of
/// `len` bytes, masked with a zero key (so the payload goes as it is) or
/// not masked at all.
fn raw_header(opcode: u8, fin: bool, len: u64, masked: bool) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask = if masked { 0x80 } else { 0 };
    if len < 126 {
        header.push(mask | len as u8);
    } else if len <= u64::from(u16::MAX) {
        header.push(mask | 126);
        header.extend((len as u16).to_be_bytes());
    } else {
        header.push(mask | 127);
        header.extend(len.to_be_bytes());
    }
    if masked {
        header.extend([0; 4]);
    }
    header
}

/// A text frame of exactly `len` bytes that is a valid `ping` frame.
fn padded_ping(len: usize) -> String {
    let bare = r#"{"type":"ping","pad":""}"#;
    let frame = format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "p".repeat(len - bare.len())
    );
    assert_eq!(frame.len(), len);
    frame
}

fn is_message(frame: &Value) -> bool {
    frame["type"] == "message"
}

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| is_message(f))
        .map(|f| f["message"]["seq"].as_i64().expect("seq"))
        .collect()
}

/// A well-behaved client of its own person, connected throughout: it
/// reads every frame as it comes (answering pings) and notes when each
/// message frame arrived.
struct Bystander {
    person: Person,
    seen: Arc<Mutex<Vec<(Value, Instant)>>>,
    reader: JoinHandle<Ending>,
    delays: Vec<(Duration, Duration)>,
}

impl Bystander {
    /// Signs in, connects, and waits for the assistant's greeting.
    async fn join(api: &Api, name: &str) -> Self {
        let person = api.sign_in(name).await;
        let mut ws = api.ws(&person, 0).await;
        assert_eq!(ws.next().await["type"], "snapshot");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let reader = tokio::spawn(async move {
            loop {
                match ws.socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                        if frame["type"] == "ping" {
                            ws.send(json!({ "type": "pong" })).await;
                        } else if is_message(&frame) {
                            log.lock().expect("lock").push((frame, Instant::now()));
                        }
                    }
                    Some(Ok(Message::Close(close))) => {
                        return close.map_or(Ending::Cut, |c| Ending::Closed(c.code.into()));
                    }
                    Some(Err(_)) | None => return Ending::Cut,
                    Some(Ok(_)) => {}
                }
            }
        });
        let bystander = Self {
            person,
            seen,
            reader,
            delays: Vec::new(),
        };
        bystander
            .arrival(|f| f["message"]["role"] == "assistant")
            .await;
        bystander
    }

    /// When the first message frame `matches` accepts arrived.
    async fn arrival(&self, matches: impl Fn(&Value) -> bool) -> Instant {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .seen
                .lock()
                .expect("lock")
                .iter()
                .find(|(f, _)| matches(f))
                .map(|(_, at)| *at);
            if let Some(at) = found {
                return at;
            }
            assert!(
                !self.reader.is_finished(),
                "the bystander's connection ended"
            );
            assert!(
                Instant::now() < deadline,
                "the bystander's frame never came"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Says something over HTTP; waits for its own message frame and the
    /// assistant's reply frame, and notes how long each took.
    async fn round(&mut self, api: &Api) {
        let sent = Instant::now();
        let seq = api
            .say(
                &self.person,
                &format!("Just checking in, round {}", self.delays.len()),
            )
            .await;
        let own = self.arrival(|f| f["message"]["seq"] == seq).await;
        let reply = self
            .arrival(|f| {
                f["message"]["role"] == "assistant"
                    && f["message"]["seq"].as_i64().is_some_and(|s| s > seq)
            })
            .await;
        self.delays.push((own - sent, reply - sent));
    }

    /// Prints the delays seen; asserts the connection is still open and got
    /// every message of the conversation exactly once, in order.
    async fn finish(self, api: &Api, what: &str) {
        let summary = |pick: fn(&(Duration, Duration)) -> Duration| {
            let mut ms: Vec<u128> = self.delays.iter().map(|d| pick(d).as_millis()).collect();
            ms.sort_unstable();
            format!(
                "median {} ms, max {} ms",
                ms[ms.len() / 2],
                ms[ms.len() - 1]
            )
        };
        println!(
            "{what}: the bystander's {} messages: own frame {}; reply {}",
            self.delays.len(),
            summary(|d| d.0),
            summary(|d| d.1)
        );
        assert!(
            !self.reader.is_finished(),
            "the bystander's connection ended: {:?}",
            self.reader.await
        );
        self.reader.abort();
        let stored: Vec<i64> = api
            .messages(&self.person)
            .await
            .iter()
            .map(|m| m["seq"].as_i64().expect("seq"))
            .collect();
        let frames: Vec<Value> = self
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(f, _)| f.clone())
            .collect();
        assert_eq!(seqs(&frames), stored, "every message once, in order");
    }
}

/// `n` connection attempts for `person`, `in_flight` at a time: the
/// connections served (each has said hello) and how many were refused with
/// 429 (anything else fails the test).
async fn storm(addr: &str, person: &Arc<Person>, n: usize, in_flight: usize) -> (Vec<Ws>, usize) {
    let attempts: Vec<Result<Ws, WsError>> = futures_util::stream::iter(0..n)
        .map(|_| async move {
            let mut ws = Ws::open(addr, &person.token, false).await?;
            ws.send(json!({ "type": "hello", "after": 0 })).await;
            Ok(ws)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let mut served = Vec::new();
    let mut refused = 0;
    for attempt in attempts {
        match attempt {
            Ok(ws) => served.push(ws),
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 429);
                refused += 1;
            }
            Err(e) => panic!("neither served nor refused: {e}"),
        }
    }
    (served, refused)
}

/// The next snapshot; only `typing` and `progress` frames may come before it.
async fn snapshot_after_status_frames(ws: &mut Ws) -> Value {
    let mut frames = ws.until(|f| f["type"] == "snapshot").await;
    let snapshot = frames.pop().expect("the snapshot");
    assert!(
        frames
            .iter()
            .all(|f| f["type"] == "typing" || f["type"] == "progress"),
        "before the snapshot: {frames:?}"
    );
    snapshot
}

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn garbage_gets_an_error_frame_or_a_close_with_its_code_and_others_carry_on() {
    let api = Api::start(&[]).await;
    let mut bea = Bystander::join(&api, "Bea").await;
    let hal = api.sign_in("Hal").await;
    let mut ws = api.ws(&hal, 0).await;
    assert_eq!(ws.next().await["type"], "snapshot");
    ws.until(|f| is_message(f) && f["message"]["role"] == "assistant")
        .await;

    let deep_array = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(2000), "}".repeat(2000));
    let garbage = [
        (Message::text("not json"), "malformed_json"),
        (Message::text(""), "malformed_json"),
        (Message::text("{\"type\": \"hello\""), "malformed_json"),
        (Message::text(deep_array), "malformed_json"),
        (Message::text(deep_object), "malformed_json"),
        (
            Message::text(r#"{"type":"hello","after":1e999}"#),
            "malformed_json",
        ),
        (
            Message::text(r#"{"type":"message","content":"\ud800"}"#),
            "malformed_json",
        ),
        (
            Message::text(r#"{"type":"message","content":"a\u0000b"}"#),
            "validation_failed",
        ),
        (Message::text("null"), "validation_failed"),
        (Message::text("\"hello\""), "validation_failed"),
        (Message::text("[1, 2, 3]"), "validation_failed"),
        (Message::text(r#"{"type":"dance"}"#), "validation_failed"),
        (Message::text(r#"{"type":7}"#), "validation_failed"),
        (
            Message::text(r#"{"type":"hello","after":"7"}"#),
            "validation_failed",
        ),
        (
            Message::text(r#"{"type":"hello","after":123456789012345678901234567890}"#),
            "validation_failed",
        ),
        (
            Message::text(r#"{"type":"message","content":["hi"]}"#),
            "validation_failed",
        ),
        (
            Message::text(r#"{"type":"message","content":"hi","client_id":7}"#),
            "validation_failed",
        ),
        (Message::binary(vec![0u8, 159, 146, 150]), "bad_request"),
        (Message::binary(Vec::new()), "bad_request"),
    ];
    for (frame, code) in garbage {
        let shown = format!("{frame:?}");
        ws.send_raw(frame).await;
        let error = ws.until(|f| f["type"] == "error").await;
        let error = error.last().expect("error");
        assert_eq!(error["code"], code, "{shown:.80}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        // The connection goes on.
        let between = ws.round_trip().await;
        assert!(between.iter().all(|f| f["type"] != "error"), "{between:?}");
    }

    // Numbers at the edges of a valid hello: clamped, not refused.
    let conversation = api.messages(&hal).await;
    let last = conversation.len() as i64;
    // (The onboarding's `typing` and `progress` frames may come at any
    // moment, before a snapshot too: the assistant's turn goes on.)
    ws.send(json!({ "type": "hello", "after": i64::MAX })).await;
    let snapshot = snapshot_after_status_frames(&mut ws).await;
    assert_eq!(snapshot["last_seq"], last);
    assert!(seqs(&ws.round_trip().await).is_empty());
    ws.send(json!({ "type": "hello", "after": i64::MIN })).await;
    snapshot_after_status_frames(&mut ws).await;
    assert_eq!(seqs(&ws.round_trip().await), (1..=last).collect::<Vec<_>>());
    // Nothing the garbage said was stored.
    assert_eq!(api.messages(&hal).await, conversation);

    // Frames that break the protocol close that connection, with its code.
    let invalid_utf8 = Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    ));
    let mut ws = api.ws(&hal, last).await;
    assert_eq!(ws.next().await["type"], "snapshot");
    ws.send_raw(invalid_utf8).await;
    let (frames, ending) = ws.ending().await;
    assert_eq!(ending, Ending::Closed(1007), "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "error" && f["code"] == "bad_request"),
        "{frames:?}"
    );

    let stray_continuation = Message::Frame(Frame::message(
        b"{}".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    ));
    let reserved_opcode = Message::Frame(Frame::message(
        b"{}".to_vec(),
        OpCode::Data(Data::Reserved(3)),
        true,
    ));
    let big_ping = Message::Frame(Frame::ping(vec![0u8; 200]));
    for (name, frame) in [
        ("a stray continuation", Some(stray_continuation)),
        ("a reserved opcode", Some(reserved_opcode)),
        ("a control frame over 125 bytes", Some(big_ping)),
        ("an unmasked frame", None),
    ] {
        let mut ws = api.ws(&hal, last).await;
        assert_eq!(ws.next().await["type"], "snapshot");
        match frame {
            Some(frame) => ws.send_raw(frame).await,
            None => {
                let mut bytes = raw_header(0x1, true, 15, false);
                bytes.extend(br#"{"type":"ping"}"#);
                ws.write_bytes(&bytes).await.expect("write");
            }
        }
        let (frames, ending) = ws.ending().await;
        assert_eq!(ending, Ending::Closed(1002), "{name}: {frames:?}");
    }

    // The bystander, connected all along, still gets its frames.
    for _ in 0..3 {
        bea.round(&api).await;
    }
    bea.finish(&api, "garbage").await;
    api.stop().await;
}

#[tokio::test]
async fn oversized_frames_are_refused_or_closed_with_1009_and_never_buffered() {
    let api = Api::start(&[]).await;
    let mut bea = Bystander::join(&api, "Bea").await;
    let otto = api.sign_in("Otto").await;
    let mut ws = api.ws(&otto, 0).await;
    assert_eq!(ws.next().await["type"], "snapshot");
    ws.until(|f| is_message(f) && f["message"]["role"] == "assistant")
        .await;

    // Up to MAX_FRAME is handled; one byte more is refused; the connection
    // stays either way.
    ws.send_raw(Message::text(padded_ping(MAX_FRAME))).await;
    let frames = ws
        .until(|f| f["type"] == "pong" || f["type"] == "error")
        .await;
    assert_eq!(frames.last().expect("frame")["type"], "pong", "{frames:?}");
    ws.send_raw(Message::text(padded_ping(MAX_FRAME + 1))).await;
    let error = ws.until(|f| f["type"] == "error").await;
    assert_eq!(error.last().expect("error")["code"], "payload_too_large");
    ws.round_trip().await;

    // Fragments count as one frame: a ping in three pieces is a ping, and
    // pieces adding up past MAX_FRAME are refused.
    let ping = padded_ping(300).into_bytes();
    for (i, piece) in ping.chunks(100).enumerate() {
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        let fin = i == 2;
        ws.send_raw(Message::Frame(Frame::message(
            piece.to_vec(),
            OpCode::Data(opcode),
            fin,
        )))
        .await;
    }
    let frames = ws
        .until(|f| f["type"] == "pong" || f["type"] == "error")
        .await;
    assert_eq!(frames.last().expect("frame")["type"], "pong", "{frames:?}");
    let big = padded_ping(MAX_FRAME + 4000).into_bytes();
    let pieces: Vec<&[u8]> = big.chunks(5000).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        ws.send_raw(Message::Frame(Frame::message(
            piece.to_vec(),
            OpCode::Data(opcode),
            i == pieces.len() - 1,
        )))
        .await;
    }
    let error = ws.until(|f| f["type"] == "error").await;
    assert_eq!(error.last().expect("error")["code"], "payload_too_large");
    ws.round_trip().await;

    // Past HARD_LIMIT: closed with 1009, in one frame or in fragments.
    ws.send_raw(Message::text(padded_ping(HARD_LIMIT + 1)))
        .await;
    let (frames, ending) = ws.ending().await;
    assert_eq!(ending, Ending::Closed(1009), "{frames:?}");
    assert!(
        frames.iter().any(|f| f["code"] == "payload_too_large"),
        "{frames:?}"
    );
    let mut ws = api.ws(&otto, 0).await;
    assert_eq!(ws.next().await["type"], "snapshot");
    for i in 0..3 {
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        let piece = vec![b' '; 30_000];
        ws.send_raw(Message::Frame(Frame::message(
            piece,
            OpCode::Data(opcode),
            false,
        )))
        .await;
    }
    let (frames, ending) = ws.ending().await;
    assert_eq!(ending, Ending::Closed(1009), "{frames:?}");

    // Frames of a gigabyte each, pushed as fast as the server takes them:
    // it reads their headers, closes, and buffers none of it.
    let before = api.rss_kib();
    let declared: u64 = 1 << 30;
    let mut pushers = Vec::new();
    for _ in 0..4 {
        let mut ws = api.ws(&otto, 0).await;
        assert_eq!(ws.next().await["type"], "snapshot");
        pushers.push(tokio::spawn(async move {
            let mut written = 0u64;
            let header = raw_header(0x1, true, declared, true);
            let chunk = vec![b'x'; 64 * 1024];
            let mut result = ws.write_bytes(&header).await;
            while result.is_ok() && written < declared {
                result = ws.write_bytes(&chunk).await;
                if result.is_ok() {
                    written += chunk.len() as u64;
                }
            }
            let ending = tokio::time::timeout(WAIT, ws.ending())
                .await
                .map(|(_, e)| e)
                .unwrap_or(Ending::Cut);
            (written, result.is_err(), ending)
        }));
    }
    for pusher in pushers {
        let (written, failed, ending) = tokio::time::timeout(WAIT, pusher)
            .await
            .expect("the server cuts a gigabyte frame short")
            .expect("pusher");
        println!(
            "oversized: a 1 GiB frame: {} KiB written before the server cut it ({ending:?})",
            written / 1024
        );
        assert!(failed, "all of a 1 GiB frame was taken");
        assert!(
            matches!(ending, Ending::Closed(1009) | Ending::Cut),
            "{ending:?}"
        );
    }
    let after = api.rss_kib();
    println!(
        "oversized: floe-api RSS {} MiB before the 1 GiB frames, {} MiB after",
        before / 1024,
        after / 1024
    );
    assert!(
        after < before + RSS_BOUND_KIB,
        "RSS grew from {before} KiB to {after} KiB"
    );

    for _ in 0..3 {
        bea.round(&api).await;
    }
    bea.finish(&api, "oversized").await;
    api.stop().await;
}

#[tokio::test]
async fn thousands_of_connections_for_one_person_are_capped_and_their_places_given_back() {
    let cap = floe_api::settings::ChatSettings::default().ws_per_person;
    let api = Api::start(&[]).await;
    let mut bea = Bystander::join(&api, "Bea").await;
    assert!(api.gauge_reaches(1.0).await);
    let before = api.rss_kib();

    // 64 at once: `cap` are served (the count is taken atomically), the
    // rest refused before the upgrade.
    let mob = Arc::new(api.sign_in("Mob").await);
    let (mut served, refused) = storm(&api.addr, &mob, 64, 64).await;
    assert_eq!(served.len(), cap);
    assert_eq!(refused, 64 - cap);
    for ws in &mut served {
        assert_eq!(ws.next().await["type"], "snapshot");
    }
    // Then 2,000 more, 16 in flight (as many as the server's database pool
    // has connections; each costs a session lookup): every one refused.
    let started = Instant::now();
    let (more, refused) = storm(&api.addr, &mob, 2000, 16).await;
    println!(
        "connections: 2,000 more refused in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!((more.len(), refused), (0, 2000));
    assert!(api.gauge_reaches(1.0 + cap as f64).await);
    // The refusal says why, in the usual error body.
    let response = api
        .client
        .get(api.url("/ws"))
        .bearer_auth(&mob.token)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("at most {cap}"))),
        "{body}"
    );

    // A thousand hellos on one connection, read as they come: each gets
    // its snapshot; the bystander's frames flow meanwhile.
    let hellos = 1000;
    let ws = served.pop().expect("a connection");
    let (mut sink, mut stream) = ws.socket.split();
    let writer = tokio::spawn(async move {
        for _ in 0..hellos {
            let hello = json!({ "type": "hello", "after": 0 }).to_string();
            sink.send(Message::text(hello)).await.expect("send");
        }
        sink
    });
    let reader = async {
        let mut snapshots = 0;
        while snapshots < hellos {
            let message = tokio::time::timeout(WAIT, stream.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("frame");
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                assert_ne!(frame["type"], "error", "{frame}");
                if frame["type"] == "snapshot" {
                    snapshots += 1;
                }
            }
        }
        snapshots
    };
    let started = Instant::now();
    let (snapshots, ()) = tokio::join!(reader, async {
        for _ in 0..3 {
            bea.round(&api).await;
        }
    });
    assert_eq!(snapshots, hellos);
    println!(
        "connections: {hellos} hellos on one connection answered in {} ms",
        started.elapsed().as_millis()
    );
    let sink = writer.await.expect("writer");
    served.push(Ws {
        socket: sink.reunite(stream).expect("the same socket"),
    });

    let during = api.rss_kib();
    // Half close properly, half just vanish: every place comes back.
    for (i, mut ws) in served.drain(..).enumerate() {
        if i % 2 == 0 {
            ws.socket.close(None).await.expect("close");
        }
        drop(ws);
    }
    assert!(
        api.gauge_reaches(1.0).await,
        "the WebSocket gauge did not come back"
    );
    for _ in 0..cap {
        let mut ws = api.ws(&mob, 0).await;
        assert_eq!(ws.next().await["type"], "snapshot");
        served.push(ws);
    }
    match Ws::open(&api.addr, &mob.token, false).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 429),
        Err(e) => panic!("expected 429, got {e}"),
        Ok(_) => panic!("one more than the cap was served"),
    }
    drop(served);
    assert!(api.gauge_reaches(1.0).await);
    let after = api.rss_kib();
    println!(
        "connections: floe-api RSS {} MiB before, {} MiB with the mob, {} MiB after",
        before / 1024,
        during / 1024,
        after / 1024
    );
    assert!(
        during.max(after) < before + RSS_BOUND_KIB,
        "RSS grew from {before} KiB to {during} / {after} KiB"
    );

    bea.round(&api).await;
    bea.finish(&api, "connections").await;
    api.stop().await;
}

#[tokio::test]
async fn clients_that_never_read_are_dropped_and_delay_nobody() {
    // No per-minute limit: the flood goes through the chat's own endpoint.
    let api = Api::start(&[("FLOE__CHAT__MESSAGES_PER_MINUTE", "0")]).await;
    let mut bea = Bystander::join(&api, "Bea").await;

    // Three connections of one person that say hello and never read again.
    let stan = api.sign_in("Stan").await;
    let mut stuck = Vec::new();
    for _ in 0..3 {
        let mut ws = Ws::open(&api.addr, &stan.token, true)
            .await
            .expect("connects");
        ws.send(json!({ "type": "hello", "after": 0 })).await;
        stuck.push(ws);
    }
    assert!(api.gauge_reaches(4.0).await);
    let before = api.rss_kib();

    // Stan's chat floods until the server has dropped the three; the
    // bystander talks all the while.
    let text = "z".repeat(4000);
    let flooding = AtomicBool::new(true);
    let started = Instant::now();
    let flood = async {
        let mut posted = 0;
        while flooding.load(Ordering::Relaxed) {
            futures_util::stream::iter(0..8)
                .for_each_concurrent(None, |_| async {
                    api.say(&stan, &text).await;
                })
                .await;
            posted += 8;
        }
        posted
    };
    let watch = async {
        // About 20 s here (the server gives a stalled client 10 s); the
        // deadline only bounds a broken run.
        let deadline = Instant::now() + Duration::from_secs(120);
        let dropped = loop {
            bea.round(&api).await;
            if api.ws_gauge().await == 1.0 {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        flooding.store(false, Ordering::Relaxed);
        dropped
    };
    let (posted, dropped) = tokio::join!(flood, watch);
    println!(
        "never-read: {posted} messages of 4,000 characters posted in {} ms; the three dropped: {dropped}",
        started.elapsed().as_millis()
    );
    assert!(dropped, "the clients that never read are still connected");
    let overflowed = api
        .log_text()
        .lines()
        .filter(|l| l.contains("websocket dropped: the client does not keep up"))
        .count();
    assert_eq!(overflowed, 3, "dropped for their full queues");
    let after = api.rss_kib();
    println!(
        "never-read: floe-api RSS {} MiB before the flood, {} MiB after",
        before / 1024,
        after / 1024
    );
    assert!(
        after < before + RSS_BOUND_KIB,
        "RSS grew from {before} KiB to {after} KiB"
    );

    // Nothing was lost: reconnecting from 0, Stan gets the whole
    // conversation, each message once, in order.
    drop(stuck);
    let mut ws = api.ws(&stan, 0).await;
    let snapshot = ws.next().await;
    assert_eq!(snapshot["type"], "snapshot");
    let last = snapshot["last_seq"].as_i64().expect("last_seq");
    assert!(last >= posted, "{last} < {posted}");
    let frames = ws
        .until(|f| is_message(f) && f["message"]["seq"] == last)
        .await;
    assert_eq!(seqs(&frames), (1..=last).collect::<Vec<_>>());
    drop(ws);

    bea.finish(&api, "never-read").await;
    api.stop().await;
}
