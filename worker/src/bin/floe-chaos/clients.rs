//! The scripted clients: people going through the onboarding chat over HTTP
//! (through either API process, at random), and the `test.pipeline`
//! workflows driven from SQL. Both retry what fails with the same
//! identity — the same `client_id`, the same idempotency key — so a retry
//! whose first try did land changes nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::Rng;
use crate::model::SCRIPT;

/// Counters the clients share.
#[derive(Debug, Default)]
pub struct Stats {
    /// HTTP requests sent.
    pub requests: AtomicU64,
    /// Requests sent again after a connection error or a 5xx.
    pub http_retries: AtomicU64,
    /// Messages answered `duplicate: true` (a retry of one that had landed).
    pub duplicate_acks: AtomicU64,
    /// Signals delivered (`floe_ops.signal` returned a sequence number).
    pub signals_delivered: AtomicU64,
    /// Signals sent again and refused as already delivered (NULL).
    pub signals_deduplicated: AtomicU64,
    /// `floe_ops` calls that failed and were retried.
    pub sql_retries: AtomicU64,
    /// Messages sent a second time on purpose after their acknowledgement.
    pub resends: AtomicU64,
    /// Of those, the ones not answered as a duplicate with the first one's
    /// number.
    pub resend_mismatches: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What one person's client saw.
#[derive(Debug, Default)]
pub struct Conversation {
    /// The person (set once signed in).
    pub user_id: Option<String>,
    /// Each message's `client_id` and the sequence number it was
    /// acknowledged with (`None` while unacknowledged).
    pub sent: Vec<(String, Option<i64>)>,
    /// The onboarding reported `completed`.
    pub completed: bool,
    /// Why it stopped short, if it did.
    pub error: Option<String>,
}

/// The API processes' base URLs and an HTTP client.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    bases: Arc<Vec<String>>,
    stats: Arc<Stats>,
    deadline: Instant,
}

impl Http {
    /// Clients of the APIs at `bases`, giving up at `deadline`.
    pub fn new(bases: Vec<String>, stats: Arc<Stats>, deadline: Instant) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .connect_timeout(Duration::from_secs(3))
                .build()?,
            bases: Arc::new(bases),
            stats,
            deadline,
        })
    }

    /// Sends the request to a random API until it gets an answer that is
    /// not a connection error or a 5xx (then it tries another one, after a
    /// pause); 429 waits as told. The status and JSON body.
    async fn call(
        &self,
        rng: &mut Rng,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        loop {
            anyhow::ensure!(
                Instant::now() < self.deadline,
                "deadline passed during {method} {path}"
            );
            let base = &self.bases[rng.below(self.bases.len() as u64) as usize];
            let mut request = self.client.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            bump(&self.stats.requests);
            let pause = Duration::from_millis(200 + rng.below(800));
            match request.send().await {
                Ok(response) if response.status().is_server_error() => {}
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Ok(response) => {
                    let status = response.status();
                    // A body cut off by a restart is a failed try.
                    if let Ok(body) = response.json::<Value>().await {
                        return Ok((status, body));
                    }
                }
                Err(_) => {}
            }
            bump(&self.stats.http_retries);
            tokio::time::sleep(pause).await;
        }
    }
}

/// The message the person sends next, from the onboarding's state; `None`
/// when it has completed.
fn next_message(state: &Value) -> Option<&'static str> {
    match state["current_step"].as_str() {
        Some("completed") => None,
        Some("discovery") => Some(SCRIPT[1]),
        Some("brain_dump") => {
            let shown = state["context"]["draft_inbox_items"]
                .as_array()
                .is_some_and(|items| !items.is_empty());
            Some(if shown { SCRIPT[3] } else { SCRIPT[2] })
        }
        _ => Some(SCRIPT[0]),
    }
}

/// One person: sign in, start the onboarding, then answer the assistant
/// (after a pause of up to `think`) until the onboarding completes. What it
/// does is written to `record` as it goes, so a client stopped at the
/// deadline leaves its record behind.
pub async fn conversation(
    http: Http,
    n: usize,
    start_after: Duration,
    think: Duration,
    seed: u64,
    record: Arc<Mutex<Conversation>>,
) {
    if let Err(e) = converse(&http, n, start_after, think, seed, &record).await {
        locked(&record).error = Some(format!("{e:#}"));
    }
}

/// The record, even if a client panicked holding it.
pub fn locked(record: &Mutex<Conversation>) -> MutexGuard<'_, Conversation> {
    record.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn converse(
    http: &Http,
    n: usize,
    start_after: Duration,
    think: Duration,
    seed: u64,
    record: &Mutex<Conversation>,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    tokio::time::sleep(start_after).await;
    // Signing in twice would make two people: a retry after a lost answer
    // leaves an unused one behind, which the checks do not count.
    let (status, session) = http
        .call(
            &mut rng,
            Method::POST,
            "/api/session",
            None,
            Some(&json!({ "display_name": format!("Chaos {n}") })),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "sign-in: {status} {session}");
    let token = session["token"].as_str().unwrap_or_default().to_owned();
    locked(record).user_id = session["user_id"].as_str().map(str::to_owned);
    let token = Some(token.as_str());
    let (status, body) = http
        .call(&mut rng, Method::POST, "/api/workflow/start", token, None)
        .await?;
    anyhow::ensure!(status.is_success(), "start: {status} {body}");
    let mut last_reply_to = 0;
    loop {
        let (status, state) = http
            .call(&mut rng, Method::GET, "/api/workflow/state", token, None)
            .await?;
        // 409: the start (or a turn's result) is not applied yet.
        if status != StatusCode::OK || state["typing"] == json!(true) {
            tokio::time::sleep(Duration::from_millis(300 + rng.below(500))).await;
            continue;
        }
        let Some(text) = next_message(&state) else {
            locked(record).completed = true;
            return Ok(());
        };
        tokio::time::sleep(Duration::from_millis(
            rng.below(think.as_millis() as u64 + 1),
        ))
        .await;
        let client_id = {
            let mut record = locked(record);
            let client_id = format!("chaos-{n}-{}", record.sent.len() + 1);
            record.sent.push((client_id.clone(), None));
            client_id
        };
        let body = json!({ "content": text, "client_id": client_id });
        let (status, posted) = http
            .call(
                &mut rng,
                Method::POST,
                "/api/chat/message",
                token,
                Some(&body),
            )
            .await?;
        if status == StatusCode::CONFLICT
            && posted["error"]["code"] == json!("onboarding_completed")
        {
            locked(record).completed = true;
            return Ok(());
        }
        anyhow::ensure!(status == StatusCode::ACCEPTED, "message: {status} {posted}");
        if posted["duplicate"] == json!(true) {
            bump(&http.stats.duplicate_acks);
        }
        let seq = posted["seq"].as_i64().unwrap_or_default();
        if let Some(last) = locked(record).sent.last_mut() {
            last.1 = Some(seq);
        }
        // One message in ten is sent again (a double click, an outbox resent
        // after a reconnect): it must be answered as a duplicate of the
        // first, with its number — or refused, the onboarding having
        // completed meanwhile.
        if rng.below(10) == 0 {
            let (status, again) = http
                .call(
                    &mut rng,
                    Method::POST,
                    "/api/chat/message",
                    token,
                    Some(&body),
                )
                .await?;
            bump(&http.stats.resends);
            let same = status == StatusCode::ACCEPTED
                && again["duplicate"] == json!(true)
                && again["seq"].as_i64() == Some(seq);
            let completed = status == StatusCode::CONFLICT
                && again["error"]["code"] == json!("onboarding_completed");
            if !same && !completed {
                bump(&http.stats.resend_mismatches);
            }
        }
        anyhow::ensure!(seq > last_reply_to, "message acknowledged out of order");
        // Wait for the assistant's answer (polling, as the chat's fallback does).
        loop {
            tokio::time::sleep(Duration::from_millis(400 + rng.below(600))).await;
            let (status, page) = http
                .call(
                    &mut rng,
                    Method::GET,
                    &format!("/api/chat/messages?after={seq}&limit=100"),
                    token,
                    None,
                )
                .await?;
            let answered = status == StatusCode::OK
                && page["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["role"] == "assistant");
            if answered {
                last_reply_to = seq;
                break;
            }
        }
    }
}

/// Starts `n` `test.pipeline` workflows (in ten batches over `spread`)
/// and signals each one as it waits (`s1`, `s2`, `s3`, the signal's name
/// as its idempotency key), all through `floe_ops` in SQL, until every one
/// has completed or `deadline` passes. The workflows' ids.
pub async fn pipelines(
    pool: PgPool,
    n: usize,
    spread: Duration,
    deadline: Instant,
    stats: Arc<Stats>,
) -> anyhow::Result<Vec<Uuid>> {
    let started_at = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut sent: HashMap<(Uuid, String), Instant> = HashMap::new();
    let batches = 10.min(n.max(1));
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "deadline passed with pipelines unfinished"
        );
        // Start the batches that are due.
        let due = ((started_at.elapsed().as_secs_f64() / spread.as_secs_f64().max(0.001)
            * batches as f64)
            .floor() as usize
            + 1)
        .min(batches);
        let want = n * due / batches;
        while ids.len() < want {
            let key = format!("chaos-pipeline-{}", ids.len());
            match sqlx::query_scalar::<_, Uuid>(
                "SELECT floe_ops.start_workflow('test.pipeline', $1, '{}')",
            )
            .bind(&key)
            .fetch_one(&pool)
            .await
            {
                Ok(id) => ids.push(id),
                Err(_) => {
                    bump(&stats.sql_retries);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
        // Signal what waits; again after 10 s if it still waits.
        let waiting: Vec<(Uuid, String)> = match sqlx::query_as(
            "SELECT id, state FROM floe.workflows
              WHERE kind = 'test.pipeline' AND key LIKE 'chaos-pipeline-%'
                AND state LIKE 'await_s%' AND status NOT IN ('completed', 'failed', 'cancelled')",
        )
        .fetch_all(&pool)
        .await
        {
            Ok(rows) => rows,
            Err(_) => {
                bump(&stats.sql_retries);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let now = Instant::now();
        let to_send: Vec<(Uuid, String)> = waiting
            .into_iter()
            .map(|(id, state)| (id, state.trim_start_matches("await_").to_owned()))
            .filter(|key| {
                sent.get(key)
                    .is_none_or(|at| now.duration_since(*at) > Duration::from_secs(10))
            })
            .collect();
        for key in &to_send {
            sent.insert(key.clone(), now);
        }
        let results: Vec<((Uuid, String), bool)> = futures_util::stream::iter(to_send)
            .map(|(id, name)| {
                let (pool, stats) = (pool.clone(), stats.clone());
                async move {
                    let delivered = sqlx::query_scalar::<_, Option<i64>>(
                        "SELECT floe_ops.signal($1, $2, 'null'::jsonb, $2)",
                    )
                    .bind(id)
                    .bind(&name)
                    .fetch_one(&pool)
                    .await;
                    let ok = match delivered {
                        Ok(Some(_)) => {
                            bump(&stats.signals_delivered);
                            true
                        }
                        Ok(None) => {
                            bump(&stats.signals_deduplicated);
                            true
                        }
                        Err(_) => {
                            bump(&stats.sql_retries);
                            false
                        }
                    };
                    ((id, name), ok)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for (key, ok) in results {
            if !ok {
                // Failed: send again on the next sweep.
                sent.remove(&key);
            }
        }
        if ids.len() == n {
            let done: Result<i64, _> = sqlx::query_scalar(
                "SELECT count(*) FROM floe.workflows
                  WHERE kind = 'test.pipeline' AND key LIKE 'chaos-pipeline-%' AND status = 'completed'",
            )
            .fetch_one(&pool)
            .await;
            if done.is_ok_and(|d| d as usize >= n) {
                return Ok(ids);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
