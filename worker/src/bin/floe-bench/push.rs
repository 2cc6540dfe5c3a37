//! W6, signal → push: a real `floe-api --with-worker` process, people
//! signed in over HTTP with a WebSocket each; a message posted through
//! `POST /api/chat/message` (which signals the onboarding workflow in the
//! same transaction), timed until the socket pushes it back, and until the
//! assistant's reply (a whole turn through the worker, offline agents)
//! arrives on the socket.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use super::soak::{Load, backlog};
use super::{Bench, Cli, Lcg, QUEUE_WORKER, percentile};

/// Messages each person sends (they stay within the first steps).
pub(crate) const PER_USER: usize = 3;
pub(crate) const SCRIPT: [&str; PER_USER] = [
    "Hi, I'm Sam",
    "I work as a software engineer",
    "Ship the next release on time",
];

/// A floe-api child process, killed when dropped.
pub(crate) struct Api(pub(crate) Child);

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `token`'s WebSocket on the floe-api at `port` and says hello from
/// the start of the chat.
pub(crate) async fn open_chat(port: u16, token: &str) -> anyhow::Result<Socket> {
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?token={token}")).await?;
    socket
        .send(Frame::Text(
            json!({ "type": "hello", "after": 0 }).to_string().into(),
        ))
        .await?;
    Ok(socket)
}

/// The next JSON frame, answering pings.
async fn frame(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("no frame in 30 s")?
            .context("socket closed")??;
        if let Frame::Text(text) = next {
            let value: Value = serde_json::from_str(&text)?;
            if value["type"] == "ping" {
                socket
                    .send(Frame::Text(json!({ "type": "pong" }).to_string().into()))
                    .await?;
                continue;
            }
            return Ok(value);
        }
    }
}

/// Posts a chat message through `POST /api/chat/message` on the floe-api
/// at `port`; returns its sequence number.
pub(crate) async fn post_message(
    http: &reqwest::Client,
    port: u16,
    token: &str,
    text: &str,
    client_id: &str,
) -> anyhow::Result<i64> {
    let posted: Value = http
        .post(format!("http://127.0.0.1:{port}/api/chat/message"))
        .bearer_auth(token)
        .json(&json!({ "content": text, "client_id": client_id }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    posted["seq"].as_i64().context("no seq")
}

/// Frames until a message frame matching `want` arrives, for a minute at
/// most (the server's pings keep each single read alive).
async fn message_where(
    socket: &mut Socket,
    want: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let wait = async {
        loop {
            let f = frame(socket).await?;
            if f["type"] == "message" && want(&f["message"]) {
                return anyhow::Ok(f["message"].clone());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .context("the message did not arrive within 60 s")?
}

impl Bench {
    /// Starts `floe-api --with-worker` (no message rate limit, plus `extra`
    /// settings) on a free port; returns it and the port once it is ready.
    pub(crate) async fn api(
        &self,
        url: &SecretString,
        extra: &[&str],
    ) -> anyhow::Result<(Api, u16)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let api = self.testbed.with_file_name("floe-api");
        let child = Api(Command::new(&api)
            .args([
                "--with-worker",
                "--database-migrate",
                "false",
                "--messages-per-minute",
                "0",
            ])
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--static-dir",
                "/nonexistent",
            ])
            .args(extra)
            .env("DATABASE_URL", url.expose_secret())
            .env("FLOE__LOG__FILTER", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", api.display()))?);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            anyhow::ensure!(Instant::now() < deadline, "floe-api did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((child, port))
    }

    /// W6: `samples` messages, idle system; push and reply latencies.
    pub(crate) async fn signal_to_push(
        &mut self,
        samples: usize,
        rep: usize,
    ) -> anyhow::Result<()> {
        let (url, _pool) = self.database(&format!("bench_w6_{rep}")).await?;
        let (_api, port) = self.api(&url, &[]).await?;
        let chat = chat_samples(port, samples, None, rep).await?;
        let extra = json!({ "rep": rep, "samples": samples, "users": chat.users });
        self.record_chat("W6", "", chat, extra);
        Ok(())
    }

    /// W6 under W4's 50 % load, as BENCH.md's W6 asks: the same people and
    /// messages while W4's producers offer half of W1's rate to the same
    /// database (a queue worker beside the API's own), for W4's duration;
    /// as many of `samples` as fit in it. The chat's jobs share the queue
    /// with the load's.
    pub(crate) async fn signal_to_push_loaded(
        &mut self,
        cli: &Cli,
        rep: usize,
    ) -> anyhow::Result<()> {
        let rate = self.w1_rate(cli, rep).await? / 2.0;
        let (url, pool) = self.database(&format!("bench_w6l_{rep}")).await?;
        let (_api, port) = self.api(&url, &[]).await?;
        // It takes the chat's jobs too (the queue is shared), so it knows the
        // onboarding workflow: a worker without a kind's definition leaves
        // the workflow's events for another worker and looks again 5 s later
        // (docs/workflows.md), which would measure that wait, not the push.
        let _worker = self
            .worker_with(
                &pool,
                &url,
                QUEUE_WORKER,
                &[("FLOE_TESTBED_ONBOARDING", "1")],
            )
            .await?;
        let secs = cli.w4_secs as f64;
        let load = Load::start(&url, &pool, rate, secs, None);
        let until = load.t0 + Duration::from_secs_f64(secs);
        let chat = chat_samples(port, cli.w6_samples, Some(until), rep).await?;
        let loaded = load.finish().await?;
        let left = backlog(&pool).await?;
        let achieved = (loaded.sent as f64 - left as f64) / loaded.secs;
        let extra = json!({
            "rep": rep, "samples": chat.push.len(), "users": chat.users,
            "offered_per_s": rate, "load_jobs": loaded.sent, "left_at_end": left,
        });
        self.record(
            "W6l",
            "samples taken under load",
            chat.push.len() as f64,
            "samples",
            extra.clone(),
        );
        self.record(
            "W6l",
            "load achieved (offered: 50 % of W1)",
            achieved,
            "jobs/s",
            extra.clone(),
        );
        self.record_chat("W6l", " under W4 50 %", chat, extra);
        pool.close().await;
        Ok(())
    }

    fn record_chat(&mut self, workload: &str, suffix: &str, chat: Chat, extra: Value) {
        let (mut push, mut reply) = (chat.push, chat.reply);
        for (series, values) in [("own frame", &mut push), ("assistant reply", &mut reply)] {
            for p in [50.0, 95.0, 99.0] {
                let value = percentile(values, p);
                let metric = format!("message → {series} p{p}{suffix}");
                self.record(workload, &metric, value, "ms", extra.clone());
            }
        }
    }
}

/// What a run of chat samples measured, in ms.
struct Chat {
    push: Vec<f64>,
    reply: Vec<f64>,
    users: usize,
}

/// People signed up one after another on the API at `port`, each sending
/// [`SCRIPT`] over HTTP with a WebSocket open, until `samples` messages (or
/// `until` passes): each message timed until the socket pushes it back and
/// until the assistant's reply arrives on it.
async fn chat_samples(
    port: u16,
    samples: usize,
    until: Option<Instant>,
    rep: usize,
) -> anyhow::Result<Chat> {
    let http = reqwest::Client::new();
    let mut rng = Lcg(0x5eed_0000 + rep as u64);
    let (mut push, mut reply) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    let mut user = 0;
    let more = |taken: usize| taken < samples && until.is_none_or(|u| Instant::now() < u);
    while more(push.len()) {
        user += 1;
        let token = super::scale::sign_up(&http, port, user).await?;
        let mut socket = open_chat(port, &token).await?;
        // The assistant speaks first.
        message_where(&mut socket, |m| m["role"] == "assistant").await?;
        for text in SCRIPT {
            if !more(push.len()) {
                break;
            }
            let gap = 50.0 + 250.0 * rng.unit();
            tokio::time::sleep(Duration::from_micros((gap * 1000.0) as u64)).await;
            let client_id = uuid::Uuid::new_v4().to_string();
            let started = Instant::now();
            let seq = post_message(&http, port, &token, text, &client_id).await?;
            message_where(&mut socket, |m| m["client_id"] == client_id.as_str()).await?;
            push.push(started.elapsed().as_secs_f64() * 1000.0);
            message_where(&mut socket, |m| {
                m["role"] == "assistant" && m["seq"].as_i64().is_some_and(|s| s > seq)
            })
            .await?;
            reply.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = socket.close(None).await;
    }
    Ok(Chat {
        push,
        reply,
        users: user,
    })
}
