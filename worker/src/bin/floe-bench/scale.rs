//! The scale-out workloads (issue 9): W6x, two `floe-api` processes on one
//! database with each message posted through the process its client is not
//! connected to; W6c, 1,000 WebSocket clients on one `floe-api`; W8x,
//! 100,000 workflows asleep on deadlines spread over the next 3 days. (W5b,
//! W5 with 2 and 4 worker processes, is `durable_workflows` in main.rs.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::push::{PER_USER, SCRIPT};
use super::{Bench, Lcg, percentile};

/// How long a client waits for a frame before the workload fails.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Far enough ahead that no probe's or bulk workflow's deadline falls due
/// during W8x (milliseconds).
const FAR_MS: i64 = 2 * 86_400_000;
/// W8x's bulk deadlines: from 1 hour to 3 days ahead (milliseconds).
const SPREAD_FROM_MS: i64 = 3_600_000;
const SPREAD_TO_MS: i64 = 3 * 86_400_000;
/// Time from the statement that moves W8x's deadlines to the first of them:
/// the worker applies the moves (10,000 signals) before they fall due.
const MOVE_LEAD_MS: i64 = 60_000;
/// The window the moved deadlines fall in.
const WINDOW_MS: i64 = 10_000;
/// The statement of `floe.fire_timers` (which the timer loop calls for
/// batches of 1,000), for EXPLAIN: run plainly, and under the planner
/// settings the function carries.
const FIRE_TIMERS: &str = "
        WITH due AS (
            SELECT id, deadline FROM floe.workflows
             WHERE deadline <= now() AND deadline IS NOT NULL AND status IN ('running', 'waiting')
             ORDER BY deadline
             LIMIT 1000
             FOR UPDATE SKIP LOCKED
        ), fired AS (
            UPDATE floe.workflows w SET deadline = NULL, next_seq = w.next_seq + 1
              FROM due WHERE w.id = due.id
            RETURNING w.id, w.kind, w.next_seq, w.deadline_reason, w.deadline_version, due.deadline AS was_due
        ), events AS (
            INSERT INTO floe.inbox (workflow_id, seq, event, name, payload)
            SELECT id, next_seq, 'timer', deadline_reason, jsonb_build_object('deadline_version', deadline_version)
              FROM fired
        ), jobs AS (
            INSERT INTO floe.jobs (kind, payload, state, unique_key, max_attempts, priority)
            SELECT 'floe.advance', jsonb_build_object('workflow_id', f.id), 'available', f.id::text, 1000,
                   coalesce((SELECT d.priority FROM floe.definitions d WHERE d.kind = f.kind), 0)
              FROM fired f
            ON CONFLICT (queue, kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
            DO NOTHING
        )
        SELECT kind, greatest(extract(epoch FROM clock_timestamp() - was_due), 0)::float8 FROM fired";
/// The timer loop's other statement (`store::next_deadline`).
const NEXT_DEADLINE: &str = "SELECT min(deadline) FROM floe.workflows WHERE deadline IS NOT NULL AND status IN ('running', 'waiting')";

/// Resident memory of process `pid` in MiB (`VmRSS` in /proc).
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))?;
    Ok(kib / 1024.0)
}

/// Raises this process's soft limit of open files to the hard limit (the
/// floe-api children inherit it): W6c holds 1,000 sockets on each side.
fn raise_open_files() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// Returns once no job is available or running (the worker has applied
/// everything sent so far), reading the worker's RSS on the way; returns
/// the largest RSS seen, in MiB.
async fn quiet(pool: &PgPool, pid: Option<u32>, limit: Duration) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut most: f64 = 0.0;
    loop {
        if let Some(pid) = pid {
            most = most.max(rss_mib(pid)?);
        }
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM floe.jobs WHERE state IN ('available', 'running')",
        )
        .fetch_one(pool)
        .await?;
        if busy == 0 {
            return Ok(most);
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "{busy} jobs still pending after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One signed-in person with an onboarding and a WebSocket, whose frames a
/// task of its own reads (answering pings), so that idle sockets stay open.
struct Person {
    index: usize,
    token: String,
    /// The floe-api its messages are posted through.
    post_port: u16,
    /// Message frames pushed to the socket.
    messages: mpsc::UnboundedReceiver<Value>,
    sent: usize,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Person {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What the readers saw that they should not have.
#[derive(Default)]
struct Faults {
    /// Sockets that closed or failed.
    closed: AtomicUsize,
    /// Frames of someone else's message.
    stray: AtomicUsize,
}

/// A session and a started onboarding through the floe-api on `port`.
pub(crate) async fn sign_up(
    http: &reqwest::Client,
    port: u16,
    index: usize,
) -> anyhow::Result<String> {
    let base = format!("http://127.0.0.1:{port}");
    let session: Value = http
        .post(format!("{base}/api/session"))
        .json(&json!({ "display_name": format!("Bench {index}") }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = session["token"].as_str().context("no token")?.to_owned();
    http.post(format!("{base}/api/workflow/start"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?;
    Ok(token)
}

/// Connects `token`'s WebSocket to the floe-api on `ws_port`, says hello
/// from the start, and waits for the assistant's first message.
async fn connect(
    index: usize,
    token: String,
    ws_port: u16,
    post_port: u16,
    faults: Arc<Faults>,
) -> anyhow::Result<Person> {
    let mut socket = super::push::open_chat(ws_port, &token).await?;
    let (send, messages) = mpsc::unbounded_channel();
    let mine = format!("p{index}-");
    let reader = tokio::spawn(async move {
        while let Some(Ok(next)) = socket.next().await {
            let Frame::Text(text) = next else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if frame["type"] == "ping" {
                let pong = json!({ "type": "pong" }).to_string();
                if socket.send(Frame::Text(pong.into())).await.is_err() {
                    break;
                }
            } else if frame["type"] == "message" {
                let message = frame["message"].clone();
                if message["client_id"]
                    .as_str()
                    .is_some_and(|c| !c.starts_with(&mine))
                {
                    faults.stray.fetch_add(1, Ordering::Relaxed);
                }
                let _ = send.send(message);
            }
        }
        faults.closed.fetch_add(1, Ordering::Relaxed);
    });
    let mut person = Person {
        index,
        token,
        post_port,
        messages,
        sent: 0,
        reader,
    };
    person.message_where(|m| m["role"] == "assistant").await?;
    Ok(person)
}

impl Person {
    /// Frames until a message matching `want` arrives.
    async fn message_where(&mut self, want: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.messages.recv())
                .await
                .with_context(|| format!("person {}: a frame never arrived", self.index))?
                .with_context(|| format!("person {}: socket closed", self.index))?;
            if want(&message) {
                return Ok(message);
            }
        }
    }

    /// Posts the next line of the script; milliseconds until its own frame
    /// and until the assistant's reply arrive on the socket.
    async fn say(&mut self, http: &reqwest::Client) -> anyhow::Result<(f64, f64)> {
        let text = SCRIPT[self.sent % PER_USER];
        self.sent += 1;
        let client_id = format!("p{}-{}", self.index, uuid::Uuid::new_v4());
        let started = Instant::now();
        let seq =
            super::push::post_message(http, self.post_port, &self.token, text, &client_id).await?;
        self.message_where(|m| m["client_id"] == client_id.as_str())
            .await?;
        let push = started.elapsed().as_secs_f64() * 1000.0;
        self.message_where(|m| {
            m["role"] == "assistant" && m["seq"].as_i64().is_some_and(|s| s > seq)
        })
        .await?;
        Ok((push, started.elapsed().as_secs_f64() * 1000.0))
    }
}

/// Fails when a reader saw a closed socket or someone else's frame.
fn check(faults: &Faults, workload: &str) -> anyhow::Result<()> {
    let closed = faults.closed.load(Ordering::Relaxed);
    let stray = faults.stray.load(Ordering::Relaxed);
    anyhow::ensure!(closed == 0, "{workload}: {closed} sockets closed");
    anyhow::ensure!(
        stray == 0,
        "{workload}: {stray} frames reached the wrong person"
    );
    Ok(())
}

/// The planner settings `floe.fire_timers` runs under.
const FUNCTION_SETTINGS: &str = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off";

/// EXPLAIN (ANALYZE, BUFFERS) of `sql` after `settings`, rolled back.
async fn explain(pool: &PgPool, settings: &str, sql: &str) -> anyhow::Result<String> {
    let mut tx = pool.begin().await?;
    if !settings.is_empty() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(settings.to_owned()))
            .execute(&mut *tx)
            .await?;
    }
    let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS) {sql}"
    )))
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;
    Ok(lines.join("\n"))
}

/// Shared buffers (hit + read) of a plan's top node.
fn buffers(plan: &str) -> f64 {
    let Some(line) = plan
        .lines()
        .find(|l| l.trim_start().starts_with("Buffers:"))
    else {
        return 0.0;
    };
    ["hit=", "read="]
        .iter()
        .filter_map(|k| {
            let rest = &line[line.find(&format!("shared {k}")).or_else(|| line.find(k))?..];
            let digits: String = rest[rest.find('=')? + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<f64>().ok()
        })
        .sum()
}

impl Bench {
    /// Records p50, p95 and p99 of message → own frame and → reply.
    fn record_push(&mut self, workload: &str, push: &mut [f64], reply: &mut [f64], extra: Value) {
        for (what, values) in [
            ("message → own frame", push),
            ("message → assistant reply", reply),
        ] {
            for p in [50.0, 95.0, 99.0] {
                let value = percentile(values, p);
                self.record(
                    workload,
                    &format!("{what} p{p}"),
                    value,
                    "ms",
                    extra.clone(),
                );
            }
        }
    }

    /// W6x: two `floe-api --with-worker` processes on the same database;
    /// people signed in and connected alternately to each, every message
    /// posted through the other; push and reply latencies. Fails if a frame
    /// never arrives or reaches the wrong person.
    pub(crate) async fn two_apis(&mut self, samples: usize, rep: usize) -> anyhow::Result<()> {
        let (url, pool) = self.database(&format!("bench_w6x_{rep}")).await?;
        let (_a, port_a) = self.api(&url, &[]).await?;
        let (_b, port_b) = self.api(&url, &[]).await?;
        let ports = [port_a, port_b];
        let http = reqwest::Client::new();
        let faults = Arc::new(Faults::default());
        let people_n = samples.div_ceil(PER_USER).max(2);
        let mut people = Vec::with_capacity(people_n);
        for i in 0..people_n {
            let (home, other) = (ports[i % 2], ports[(i + 1) % 2]);
            let token = sign_up(&http, home, i).await?;
            people.push(connect(i, token, home, other, faults.clone()).await?);
        }
        let mut rng = Lcg(0x6_0000 + rep as u64);
        let (mut push, mut reply) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
        'rounds: for _ in 0..PER_USER {
            for person in &mut people {
                if push.len() >= samples {
                    break 'rounds;
                }
                tokio::time::sleep(Duration::from_secs_f64(0.05 + 0.25 * rng.unit())).await;
                let (p, r) = person.say(&http).await?;
                push.push(p);
                reply.push(r);
            }
        }
        check(&faults, "W6x")?;
        let extra = json!({ "rep": rep, "samples": push.len(), "people": people_n, "apis": 2 });
        self.record_push("W6x", &mut push, &mut reply, extra);
        drop(people);
        pool.close().await;
        Ok(())
    }

    /// W6c: `clients` people, each with an onboarding and a WebSocket, on
    /// one `floe-api --with-worker`; its RSS before and after they connect
    /// and go idle; then `samples` messages from random people while all
    /// stay connected.
    pub(crate) async fn many_sockets(
        &mut self,
        clients: usize,
        samples: usize,
        rep: usize,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            clients > 0 && samples <= clients * PER_USER,
            "W6c: at most {PER_USER} messages per client"
        );
        let open_files = raise_open_files()?;
        let (url, pool) = self.database(&format!("bench_w6c_{rep}")).await?;
        // No nudges while the sockets idle.
        let (api, port) = self.api(&url, &["--nudge-after-secs", "86400"]).await?;
        let pid = api.0.id();
        let http = reqwest::Client::new();
        let mut tokens = Vec::with_capacity(clients);
        for i in 0..clients {
            tokens.push(sign_up(&http, port, i).await?);
        }
        // Every first turn taken, then the process at rest.
        quiet(&pool, None, Duration::from_secs(600)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = rss_mib(pid)?;
        let faults = Arc::new(Faults::default());
        let connecting = Instant::now();
        let mut people: Vec<Person> = futures_util::stream::iter(tokens.into_iter().enumerate())
            .map(|(i, token)| connect(i, token, port, port, faults.clone()))
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        let connect_secs = connecting.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = rss_mib(pid)?;
        check(&faults, "W6c")?;
        let extra = json!({ "rep": rep, "clients": clients, "open_files": open_files, "connect_s": connect_secs });
        self.record(
            "W6c",
            "API RSS before sockets",
            before,
            "MiB",
            extra.clone(),
        );
        self.record(
            "W6c",
            "API RSS with sockets idle",
            idle,
            "MiB",
            extra.clone(),
        );
        self.record(
            "W6c",
            "RSS per idle socket",
            (idle - before) * 1024.0 / clients as f64,
            "KiB",
            extra,
        );
        let mut rng = Lcg(0x6c00 + rep as u64);
        let (mut push, mut reply) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
        while push.len() < samples {
            let pick = (rng.unit() * people.len() as f64) as usize % people.len();
            let person = &mut people[pick];
            if person.sent >= PER_USER {
                continue;
            }
            tokio::time::sleep(Duration::from_secs_f64(0.05 + 0.25 * rng.unit())).await;
            let (p, r) = person.say(&http).await?;
            push.push(p);
            reply.push(r);
        }
        check(&faults, "W6c")?;
        let after = rss_mib(pid)?;
        let extra = json!({ "rep": rep, "clients": clients, "samples": samples });
        self.record("W6c", "API RSS after messages", after, "MiB", extra.clone());
        self.record_push("W6c", &mut push, &mut reply, extra);
        drop(people);
        pool.close().await;
        Ok(())
    }

    /// Times `probes` single starts of `test.sleeper` and then a `move`
    /// signal to each, one at a time on one connection.
    async fn probe(
        &mut self,
        pool: &PgPool,
        probes: usize,
        phase: &str,
        rep: usize,
    ) -> anyhow::Result<()> {
        use floe_engine::workflow::store as wf;
        let mut conn = pool.acquire().await?;
        let (mut starts, mut signals, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..probes {
            let t = Instant::now();
            let started = wf::start(
                &mut conn,
                "test.sleeper",
                &format!("probe-{phase}-{i}"),
                &json!({ "after_ms": FAR_MS }),
                1,
                None,
            )
            .await?;
            starts.push(t.elapsed().as_secs_f64() * 1000.0);
            ids.push(started.id);
        }
        quiet(pool, None, Duration::from_secs(120)).await?;
        for id in ids {
            let t = Instant::now();
            wf::signal(
                &mut conn,
                id,
                "move",
                &json!({ "after_ms": FAR_MS + 1000 }),
                None,
            )
            .await?;
            signals.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        drop(conn);
        quiet(pool, None, Duration::from_secs(120)).await?;
        let extra = json!({ "rep": rep, "probes": probes, "table": phase });
        for (what, values) in [
            ("single start", &mut starts),
            ("single signal", &mut signals),
        ] {
            for p in [50.0, 95.0] {
                let value = percentile(values, p);
                self.record(
                    "W8x",
                    &format!("{what} p{p} ({phase})"),
                    value,
                    "ms",
                    extra.clone(),
                );
            }
        }
        Ok(())
    }

    /// EXPLAIN (ANALYZE, BUFFERS) of the timer loop's statements: the
    /// plans go into the report; whether each walked the deadline index in
    /// order (no bitmap scan and sort), and how many buffers, into the
    /// figures.
    async fn timer_plans(&mut self, pool: &PgPool, phase: &str, rep: usize) -> anyhow::Result<()> {
        let (tuples, analyzed): (f64, bool) = sqlx::query_as(
            "SELECT c.reltuples::float8, s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL
               FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
              WHERE c.oid = 'floe.workflows'::regclass",
        )
        .fetch_one(pool)
        .await?;
        let extra = json!({ "rep": rep, "reltuples": tuples, "analyzed": analyzed });
        for (name, settings, sql) in [
            ("fire_timers statement, plain", "", FIRE_TIMERS),
            ("floe.fire_timers", FUNCTION_SETTINGS, FIRE_TIMERS),
            ("next_deadline", "", NEXT_DEADLINE),
        ] {
            let plan = explain(pool, settings, sql).await?;
            let indexed = plan.contains("Index Scan using workflows_deadline")
                || plan.contains("Index Only Scan using workflows_deadline");
            self.record(
                "W8x",
                &format!("{name}: ordered scan of workflows_deadline ({phase})"),
                if indexed { 1.0 } else { 0.0 },
                "yes=1",
                extra.clone(),
            );
            self.record(
                "W8x",
                &format!("{name} buffers ({phase})"),
                buffers(&plan),
                "pages",
                extra.clone(),
            );
            eprintln!("W8x {name} ({phase}, reltuples {tuples}, analyzed {analyzed}):\n{plan}");
            self.notes.push((
                format!("W8x: `{name}` with the sleeping workflows, {phase} (reltuples {tuples})"),
                plan,
            ));
        }
        Ok(())
    }

    /// W8x: `n` `test.sleeper` workflows started in one statement, their
    /// deadlines spread from 1 hour to 3 days ahead; the worker's RSS
    /// before, during and after; the timer loop's plans before and after the
    /// table is first analyzed; single starts and signals with the full
    /// table against the empty one; then `due` of them, spread over the 3
    /// days, moved to fall due within the same 10 s: how late each fires,
    /// and whether all did (and no other).
    pub(crate) async fn sleepers_at_scale(
        &mut self,
        n: usize,
        due: usize,
        probes: usize,
        rep: usize,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(due > 0 && due <= n, "W8x: due must be within 1..=workflows");
        let (url, pool) = self.database(&format!("bench_w8x_{rep}")).await?;
        // As if autovacuum had not visited yet (it may take minutes to reach
        // a new database): the first plans see a never-analyzed table.
        sqlx::raw_sql("ALTER TABLE floe.workflows SET (autovacuum_enabled = false)")
            .execute(&pool)
            .await?;
        let worker = self.worker(&pool, &url, &[]).await?;
        let pid = worker.0.id();
        let extra = json!({ "rep": rep, "workflows": n, "due": due });
        let rss_before = rss_mib(pid)?;
        self.probe(&pool, probes, "empty table", rep).await?;

        let t = Instant::now();
        let started: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM generate_series(0, $1 - 1) i,
                    LATERAL floe.workflow_start(floe.uuid_v7(), 'test.sleeper', 'w8x-' || i,
                        jsonb_build_object('after_ms', $2 + (i * ($3 - $2)) / $1), 1) s
              WHERE s.created",
        )
        .bind(n as i64)
        .bind(SPREAD_FROM_MS)
        .bind(SPREAD_TO_MS)
        .fetch_one(&pool)
        .await?;
        let insert_secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(started == n as i64, "W8x: {started} of {n} started");
        let rss_applying = quiet(&pool, Some(pid), Duration::from_secs(1800)).await?;
        let apply_secs = t.elapsed().as_secs_f64() - insert_secs;
        let asleep: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM floe.workflows WHERE key LIKE 'w8x-%' AND status = 'waiting' AND deadline IS NOT NULL",
        )
        .fetch_one(&pool)
        .await?;
        anyhow::ensure!(asleep == n as i64, "W8x: {asleep} of {n} asleep");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_asleep = rss_mib(pid)?;
        self.record(
            "W8x",
            "bulk start",
            n as f64 / insert_secs,
            "workflows/s",
            extra.clone(),
        );
        self.record(
            "W8x",
            "start events applied",
            n as f64 / apply_secs,
            "workflows/s",
            extra.clone(),
        );

        self.timer_plans(&pool, "never analyzed", rep).await?;
        self.probe(&pool, probes, "full table", rep).await?;
        sqlx::raw_sql(
            "ANALYZE floe.workflows; ALTER TABLE floe.workflows RESET (autovacuum_enabled)",
        )
        .execute(&pool)
        .await?;
        self.timer_plans(&pool, "analyzed", rep).await?;
        // Again once the planner knows the table: whether a slower start or
        // signal with 100,000 rows is the size or the missing statistics.
        self.probe(&pool, probes, "full table, analyzed", rep)
            .await?;

        // Every (n / due)-th by deadline: spread over the 3 days, all moved
        // into one 10 s window `MOVE_LEAD_MS` from now, by one statement.
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT id FROM floe.workflows WHERE key LIKE 'w8x-%' ORDER BY deadline",
        )
        .fetch_all(&pool)
        .await?;
        let stride = n / due;
        let moved: Vec<uuid::Uuid> = ids.iter().step_by(stride).take(due).copied().collect();
        let signalled: i64 = sqlx::query_scalar(
            "SELECT count(floe_ops.signal(u.id, 'move',
                    jsonb_build_object('after_ms', $2 + ((u.k - 1) * $3) / $4)))
               FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, k)",
        )
        .bind(&moved)
        .bind(MOVE_LEAD_MS)
        .bind(WINDOW_MS)
        .bind(due as i64)
        .fetch_one(&pool)
        .await?;
        anyhow::ensure!(
            signalled == due as i64,
            "W8x: {signalled} of {due} moves delivered"
        );
        let limit =
            Duration::from_millis((MOVE_LEAD_MS + WINDOW_MS) as u64) + Duration::from_secs(300);
        let waiting = Instant::now();
        let mut rss_firing: f64 = 0.0;
        let mut fired = 0;
        while fired < due as i64 && waiting.elapsed() < limit {
            rss_firing = rss_firing.max(rss_mib(pid)?);
            fired = sqlx::query_scalar(
                "SELECT count(*) FROM floe.workflows WHERE id = ANY($1) AND status = 'completed'",
            )
            .bind(&moved)
            .fetch_one(&pool)
            .await?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut lateness: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM t.applied_at - (s.commands->0->>'at')::timestamptz)::float8 * 1000
               FROM unnest($1::uuid[]) AS u(id)
               JOIN floe.history t ON t.workflow_id = u.id AND t.event = 'timer'
               CROSS JOIN LATERAL (SELECT commands FROM floe.history s
                                    WHERE s.workflow_id = u.id AND s.event = 'signal'
                                    ORDER BY s.seq DESC LIMIT 1) s",
        )
        .bind(&moved)
        .fetch_all(&pool)
        .await?;
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM floe.workflows WHERE key LIKE 'w8x-%' AND status = 'waiting' AND NOT id = ANY($1)",
        )
        .bind(&moved)
        .fetch_one(&pool)
        .await?;
        let rss_after = rss_mib(pid)?;
        for (metric, value) in [
            ("worker RSS before", rss_before),
            ("worker RSS max while applying starts", rss_applying),
            ("worker RSS with all asleep", rss_asleep),
            ("worker RSS max while firing", rss_firing),
            ("worker RSS after", rss_after),
        ] {
            self.record("W8x", metric, value, "MiB", extra.clone());
        }
        let window =
            json!({ "rep": rep, "workflows": n, "due": due, "window_s": WINDOW_MS / 1000 });
        for p in [50.0, 99.0, 100.0] {
            let label = if p == 100.0 {
                "max".to_owned()
            } else {
                format!("p{p}")
            };
            let value = percentile(&mut lateness, p);
            self.record(
                "W8x",
                &format!("timer lateness {label}"),
                value,
                "ms",
                window.clone(),
            );
        }
        self.record(
            "W8x",
            "timers fired",
            lateness.len() as f64,
            "timers",
            window.clone(),
        );
        self.record(
            "W8x",
            "others still asleep",
            others as f64,
            "workflows",
            window,
        );
        anyhow::ensure!(
            fired == due as i64 && lateness.len() == due,
            "W8x: {fired} of {due} moved workflows completed, {} timers fired",
            lateness.len()
        );
        anyhow::ensure!(
            others == (n - due) as i64,
            "W8x: {others} of {} unmoved workflows still asleep",
            n - due
        );
        drop(worker);
        pool.close().await;
        self.overdue_backlog(n, rep).await
    }

    /// W8x's backlog: `n` deadlines all overdue (as after a long stop of
    /// every worker) in a fresh, never-analyzed `floe.workflows` (rows put
    /// there directly: no worker runs), fired in batches of 1,000 until
    /// none is left, by the plain statement and by `floe.fire_timers`.
    async fn overdue_backlog(&mut self, n: usize, rep: usize) -> anyhow::Result<()> {
        let function = "SELECT kind, lateness FROM floe.fire_timers(1000)";
        for (name, sql) in [
            ("plain statement", FIRE_TIMERS),
            ("floe.fire_timers", function),
        ] {
            let database = format!("bench_w8x_backlog_{}_{rep}", name.len());
            let (_url, pool) = self.database(&database).await?;
            sqlx::raw_sql("ALTER TABLE floe.workflows SET (autovacuum_enabled = false)")
                .execute(&pool)
                .await?;
            sqlx::query(
                "INSERT INTO floe.workflows (id, kind, key, state, status, deadline, deadline_reason)
                 SELECT floe.uuid_v7(), 'test.sleeper', 'b-' || i, 'sleeping', 'waiting',
                        now() - interval '1 hour' + i * interval '1 ms', 'first'
                   FROM generate_series(1, $1) i",
            )
            .bind(n as i64)
            .execute(&pool)
            .await?;
            let started = Instant::now();
            let (mut fired, mut batches) = (0, 0);
            loop {
                let batch: Vec<(String, f64)> = sqlx::query_as(sql).fetch_all(&pool).await?;
                if batch.is_empty() {
                    break;
                }
                fired += batch.len();
                batches += 1;
            }
            let secs = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                fired == n,
                "W8x backlog: {fired} of {n} fired by the {name}"
            );
            let extra = json!({ "rep": rep, "overdue": n, "batches": batches, "analyzed": false });
            self.record(
                "W8x",
                &format!("overdue backlog fired per second ({name})"),
                n as f64 / secs,
                "timers/s",
                extra.clone(),
            );
            self.record(
                "W8x",
                &format!("overdue backlog batch of 1,000 ({name})"),
                secs * 1000.0 / batches as f64,
                "ms",
                extra,
            );
            pool.close().await;
        }
        Ok(())
    }
}
