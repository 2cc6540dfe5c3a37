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

use super::{Bench, Lcg, percentile};

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

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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

/// Frames until a message frame matching `want` arrives.
async fn message_where(
    socket: &mut Socket,
    want: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    loop {
        let f = frame(socket).await?;
        if f["type"] == "message" && want(&f["message"]) {
            return Ok(f["message"].clone());
        }
    }
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
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();

        let mut rng = Lcg(0x5eed_0000 + rep as u64);
        let (mut push, mut reply) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
        let mut user = 0;
        while push.len() < samples {
            user += 1;
            let token = super::scale::sign_up(&http, port, user).await?;
            let (mut socket, _) =
                tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?token={token}"))
                    .await?;
            socket
                .send(Frame::Text(
                    json!({ "type": "hello", "after": 0 }).to_string().into(),
                ))
                .await?;
            // The assistant speaks first.
            message_where(&mut socket, |m| m["role"] == "assistant").await?;
            for text in SCRIPT {
                if push.len() >= samples {
                    break;
                }
                let gap = 50.0 + 250.0 * rng.unit();
                tokio::time::sleep(Duration::from_micros((gap * 1000.0) as u64)).await;
                let client_id = uuid::Uuid::new_v4().to_string();
                let started = Instant::now();
                let posted: Value = http
                    .post(format!("{base}/api/chat/message"))
                    .bearer_auth(&token)
                    .json(&json!({ "content": text, "client_id": client_id }))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let seq = posted["seq"].as_i64().context("no seq")?;
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
        let extra = json!({ "rep": rep, "samples": samples, "users": user });
        for (metric, value) in [
            ("message → own frame p50", percentile(&mut push, 50.0)),
            ("message → own frame p95", percentile(&mut push, 95.0)),
            ("message → own frame p99", percentile(&mut push, 99.0)),
            (
                "message → assistant reply p50",
                percentile(&mut reply, 50.0),
            ),
            (
                "message → assistant reply p95",
                percentile(&mut reply, 95.0),
            ),
            (
                "message → assistant reply p99",
                percentile(&mut reply, 99.0),
            ),
        ] {
            self.record("W6", metric, value, "ms", extra.clone());
        }
        Ok(())
    }
}
