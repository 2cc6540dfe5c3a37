//! The Temporal-Lite spec's workflows run by the production worker
//! (`floe-worker`) against real PostgreSQL: `code_review` (approved,
//! rejected and refactored, escalated when nobody decides) and `research`
//! (fan-out to child workflows, one of which fails) with the offline agents;
//! and the spec's crash-recovery case: a long review with a model (the fake
//! OpenAI-compatible server) whose worker is killed with SIGKILL half-way
//! through an agent's tool loop, after which no recorded model call and no
//! recorded tool call is made again.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Testbed, database, eventually};
use floe_agents::review::workflow::CodeReview;
use floe_agents::testing::{FakeLlm, Reply};
use floe_engine::testing::expose;
use floe_engine::workflow::{Registry, Status, Workflow, store};
use nix::sys::signal::Signal;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// The code under review: a secret and an unwrap (blocking), debug output.
const CODE: &str = "fn load(path: &str) -> Config {
    let api_key = \"sk-live-1234\";
    let text = std::fs::read_to_string(path).unwrap();
    println!(\"loaded {path}\");
    parse(&text, api_key)
}
";

fn worker(url: &SecretString) -> Testbed {
    Testbed::start_production(url, &["--poll-ms", "200"])
}

/// Starts a workflow of `kind` as the API does (the store's start).
async fn start(pool: &PgPool, kind: &str, key: &str, input: Value) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let started = store::start(&mut tx, kind, key, &input, 1, None)
        .await
        .expect("start");
    tx.commit().await.expect("commit");
    started.id
}

async fn signal(pool: &PgPool, id: Uuid, name: &str, payload: Value) -> store::Result<()> {
    let mut tx = pool.begin().await.expect("begin");
    store::signal(&mut tx, id, name, &payload, None).await?;
    tx.commit().await.expect("commit");
    Ok(())
}

async fn row(pool: &PgPool, id: Uuid) -> store::WorkflowRow {
    store::get(pool, id).await.expect("get").expect("row")
}

/// Waits until the workflow is in `state` with nothing in flight.
async fn reaches(pool: &PgPool, id: Uuid, state: &str) -> store::WorkflowRow {
    let ok = eventually(WAIT, || async {
        let r = row(pool, id).await;
        r.state == state && r.in_flight == 0
    })
    .await;
    let r = row(pool, id).await;
    assert!(ok, "workflow {id} never reached {state}: {r:#?}");
    r
}

async fn finished(pool: &PgPool, id: Uuid) -> store::WorkflowRow {
    let ok = eventually(WAIT, || async { row(pool, id).await.status.is_finished() }).await;
    let r = row(pool, id).await;
    assert!(ok, "workflow {id} did not finish: {r:#?}");
    r
}

/// The `get_status` query, answered from the row as the API does.
async fn status(pool: &PgPool, id: Uuid) -> Value {
    let mut registry = Registry::new();
    registry.register::<CodeReview>();
    registry
        .get(CodeReview::KIND)
        .expect("definition")
        .query(&row(pool, id).await.context, "get_status")
        .expect("query")
        .expect("known query")
}

#[derive(Debug, sqlx::FromRow)]
struct Notice {
    recipient: String,
    kind: String,
    subject: String,
    body: String,
}

async fn notices(pool: &PgPool, id: Uuid) -> Vec<Notice> {
    sqlx::query_as(
        "SELECT recipient, kind, subject, body FROM floe.notifications WHERE workflow_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("notifications")
}

#[derive(Debug, sqlx::FromRow)]
struct Merge {
    approved_by: String,
    revision: i32,
    code: String,
}

async fn merges(pool: &PgPool, id: Uuid) -> Vec<Merge> {
    sqlx::query_as("SELECT approved_by, revision, code FROM floe.merges WHERE workflow_id = $1")
        .bind(id)
        .fetch_all(pool)
        .await
        .expect("merges")
}

fn review_input(timeout_secs: u64) -> Value {
    json!({
        "title": "Load the config", "author": "sam", "language": "rust", "code": CODE,
        "reviewer": "alex", "escalate_to": "leads",
        "approval_timeout_secs": timeout_secs, "max_rounds": 2,
    })
}

#[tokio::test]
async fn an_approved_review_is_merged() {
    let (url, pool) = database().await;
    let worker = worker(&url);
    let id = start(&pool, "code_review", "pr-1", review_input(3600)).await;
    let waiting = reaches(&pool, id, "awaiting_approval").await;
    assert_eq!(waiting.status, Status::Waiting);
    assert_eq!(waiting.deadline_reason.as_deref(), Some("approval_timeout"));
    let status = status(&pool, id).await;
    assert_eq!(status["verdict"], "request_changes", "{status}");
    assert_eq!(
        status["issues"],
        json!({ "critical": 1, "major": 1, "minor": 1 })
    );
    assert!(status["awaiting_approval_until"].is_string(), "{status}");
    // The reviewer was told, with the analysis.
    let told = notices(&pool, id).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (told[0].recipient.as_str(), told[0].kind.as_str()),
        ("alex", "review_requested")
    );
    assert_eq!(
        told[0].subject,
        "Review requested: Load the config (revision 1) by sam"
    );
    assert!(
        told[0].body.contains("critical (line 2)"),
        "{}",
        told[0].body
    );

    let decision = json!({ "approved": true, "reviewer": "alex" });
    signal(&pool, id, "approval", decision)
        .await
        .expect("signal");
    let done = finished(&pool, id).await;
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.state, "merged");
    let output = done.output.expect("output");
    assert_eq!(output["outcome"], "merged");
    assert_eq!(output["revision"], 1);
    let merged = merges(&pool, id).await;
    assert_eq!(merged.len(), 1);
    assert_eq!(
        (merged[0].approved_by.as_str(), merged[0].revision),
        ("alex", 1)
    );
    assert_eq!(merged[0].code, CODE);
    assert_eq!(output["merge"]["revision"], 1);
    worker.stop();
}

#[tokio::test]
async fn a_rejected_review_is_refactored_with_the_feedback_and_approved() {
    let (url, pool) = database().await;
    let worker = worker(&url);
    let id = start(&pool, "code_review", "pr-2", review_input(3600)).await;
    reaches(&pool, id, "awaiting_approval").await;
    let feedback = "Read the key from the environment and handle the read error.";
    signal(
        &pool,
        id,
        "approval",
        json!({ "approved": false, "reviewer": "alex", "feedback": feedback }),
    )
    .await
    .expect("reject");
    // Refactored, analysed again and sent to the reviewer again.
    let ok = eventually(WAIT, || async {
        let r = row(&pool, id).await;
        r.state == "awaiting_approval" && r.context["revision"] == 2
    })
    .await;
    assert!(
        ok,
        "revision 2 never awaited approval: {:#?}",
        row(&pool, id).await
    );
    let status = status(&pool, id).await;
    assert_eq!(status["rounds_left"], 1);
    assert_eq!(status["decisions"][0]["approved"], false);
    assert_eq!(status["decisions"][0]["feedback"], feedback);
    assert!(
        status["changes"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c.as_str().is_some_and(|c| c.contains("unwrap")))),
        "{status}"
    );
    // The unwrap and the debug output are gone; the secret stays, so the
    // Reviewer still asks for changes.
    assert_eq!(status["issues"], json!({ "critical": 1 }), "{status}");
    let told = notices(&pool, id).await;
    assert_eq!(told.len(), 2);
    assert!(
        told[1].subject.contains("(revision 2)"),
        "{}",
        told[1].subject
    );
    // The upgrade check: the history folds through this build's definition
    // to the stored row.
    let replay = Command::new(env!("CARGO_BIN_EXE_floe-worker"))
        .args(["replay", "--kind", "code_review"])
        .env("DATABASE_URL", expose(&url))
        .env("FLOE__LOG__FILTER", "warn")
        .env_remove("RUST_LOG")
        .output()
        .expect("replay");
    let printed = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{printed}");
    assert!(printed.contains(&format!("{id}  ok (")), "{printed}");

    signal(
        &pool,
        id,
        "approval",
        json!({ "approved": true, "revision": 2 }),
    )
    .await
    .expect("approve");
    let done = finished(&pool, id).await;
    assert_eq!(done.status, Status::Completed, "{done:?}");
    let output = done.output.expect("output");
    assert_eq!(output["outcome"], "merged");
    assert_eq!(output["revision"], 2);
    let merged = merges(&pool, id).await;
    assert_eq!(merged[0].revision, 2);
    assert_eq!(
        merged[0].approved_by, "alex",
        "the review's reviewer by default"
    );
    assert!(
        merged[0]
            .code
            .starts_with(&format!("// Revision 2: {feedback}\n")),
        "{}",
        merged[0].code
    );
    assert!(!merged[0].code.contains("unwrap") && !merged[0].code.contains("println"));
    // Every step is in the history, in order.
    let states: Vec<String> = store::history(&pool, id)
        .await
        .expect("history")
        .into_iter()
        .map(|h| h.state_after)
        .collect();
    assert_eq!(
        states,
        [
            "analysing",
            "notifying",
            "awaiting_approval",
            "refactoring",
            "analysing",
            "notifying",
            "awaiting_approval",
            "merging",
            "merged"
        ]
    );
    worker.stop();
}

#[tokio::test]
async fn a_review_nobody_decides_is_escalated_when_the_deadline_passes() {
    let (url, pool) = database().await;
    let worker = worker(&url);
    let id = start(&pool, "code_review", "pr-3", review_input(2)).await;
    let done = finished(&pool, id).await;
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.state, "escalated");
    let output = done.output.expect("output");
    assert_eq!(output["outcome"], "escalated");
    assert_eq!(
        output["escalation"],
        "no decision from alex within 2 seconds"
    );
    let told = notices(&pool, id).await;
    assert_eq!(
        told.iter()
            .map(|n| (n.recipient.as_str(), n.kind.as_str()))
            .collect::<Vec<_>>(),
        [("alex", "review_requested"), ("leads", "escalation")]
    );
    assert!(
        told[1]
            .body
            .starts_with("no decision from alex within 2 seconds"),
        "{}",
        told[1].body
    );
    assert!(merges(&pool, id).await.is_empty());
    // The timer is in the history; a late decision is refused.
    let events: Vec<String> = store::history(&pool, id)
        .await
        .expect("history")
        .into_iter()
        .map(|h| h.event.event)
        .collect();
    assert!(events.contains(&"timer".to_owned()), "{events:?}");
    let late = signal(&pool, id, "approval", json!({ "approved": true })).await;
    assert!(
        matches!(late, Err(store::Error::Finished { .. })),
        "{late:?}"
    );
    worker.stop();
}

#[tokio::test]
async fn research_fans_out_to_children_and_reports_the_one_that_failed() {
    let (url, pool) = database().await;
    let worker = worker(&url);
    let task = "Job queues on PostgreSQL:
- How does SELECT FOR UPDATE SKIP LOCKED behave under contention?
- Benchmark advisory locks against row locks [fail]
- When does LISTEN/NOTIFY lose notifications?";
    let id = start(&pool, "research", "r-1", json!({ "task": task })).await;
    let done = finished(&pool, id).await;
    assert_eq!(done.status, Status::Completed, "{done:?}");
    let output = done.output.expect("output");
    assert_eq!(output["subtasks"], 3);
    assert_eq!(output["answered"], 2);
    assert_eq!(
        output["failed"].as_array().map(Vec::len),
        Some(1),
        "{output}"
    );
    assert_eq!(output["failed"][0]["index"], 2);
    let summary = output["summary"].as_str().expect("summary");
    assert!(summary.contains("2 of 3 sub-tasks answered"), "{summary}");
    assert!(
        summary.contains("1. Notes on \"How does SELECT FOR UPDATE SKIP LOCKED"),
        "{summary}"
    );
    assert!(
        summary.contains("Not answered:\n2. Benchmark advisory locks against row locks [fail] — failed: sub-task refused"),
        "{summary}"
    );
    assert_eq!(output["gaps"].as_array().map(Vec::len), Some(1));
    // One child workflow per sub-task, run in parallel; the failed one is
    // failed, not the parent.
    let children = store::children(&pool, id).await.expect("children");
    assert_eq!(children.len(), 3);
    let mut outcomes = BTreeMap::new();
    for child in children {
        let c = row(&pool, child).await;
        assert_eq!(c.kind, "research.subtask");
        outcomes.insert(
            c.key.rsplit('/').next().unwrap_or_default().to_owned(),
            c.status,
        );
    }
    assert_eq!(
        outcomes.into_iter().collect::<Vec<_>>(),
        [
            ("subtask-1".to_owned(), Status::Completed),
            ("subtask-2".to_owned(), Status::Failed),
            ("subtask-3".to_owned(), Status::Completed)
        ]
    );
    // The children were started together, in the plan's transition.
    let started: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT created_at) FROM floe.workflows WHERE parent_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("started");
    assert_eq!(started, 1);
    worker.stop();
}

// ------------------------------------------------------------ crash recovery

/// Tool calls the fake Reviewer makes, two per model turn, before it
/// answers.
const REVIEW_TOOL_CALLS: usize = 20;
/// Tool calls the fake Refactorer makes before it answers.
const REFACTOR_TOOL_CALLS: usize = 6;
/// The model request the first worker is killed waiting for (1-based).
const KILL_AT_REQUEST: usize = 6;

/// A `floe-worker` with the fake model, logging the ledger at debug level
/// (every tool run is a `tool ran` line).
fn model_worker(url: &SecretString, fake: &FakeLlm) -> Testbed {
    let log_path = std::env::temp_dir().join(format!("floe-crash-{}.log", Uuid::new_v4().simple()));
    let log = File::create(&log_path).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_floe-worker"))
        .args([
            "--llm-base-url",
            &fake.base_url(),
            "--llm-model",
            "fake-mini",
            "--lease-ms",
            "1500",
            "--poll-ms",
            "200",
        ])
        .env("DATABASE_URL", expose(url))
        .env("FLOE__LOG__FILTER", "info,floe_agents::llm::ledger=debug")
        .env("FLOE__LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn the worker");
    Testbed { child, log_path }
}

/// How many tool results are in the request (the agent's loop so far).
fn tool_results(request: &Value) -> usize {
    request["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "tool").count())
        .unwrap_or(0)
}

fn system_prompt(request: &Value) -> &str {
    request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
}

fn user_prompt(request: &Value) -> &str {
    request["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
}

/// A model that reads the code with tools, two calls a turn, then answers:
/// a pure function of the request, so a retried attempt sends the same
/// requests. The `KILL_AT_REQUEST`-th request is answered a minute late, the
/// first time only: the worker is killed waiting for it.
fn fake_model(
    requests: Arc<std::sync::atomic::AtomicUsize>,
    delayed: Arc<AtomicBool>,
) -> impl Fn(&Value) -> Reply + Send + Sync + 'static {
    move |request: &Value| {
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        let done = tool_results(request);
        let reviewer = system_prompt(request).contains("senior engineer reviewing");
        let wanted = if reviewer {
            REVIEW_TOOL_CALLS
        } else {
            REFACTOR_TOOL_CALLS
        };
        let reply = if done < wanted {
            let line = done % 5 + 1;
            Reply::tool_calls(vec![
                ("read_lines", json!({ "start": line, "end": line + 1 })),
                (
                    "search",
                    json!({ "text": if done.is_multiple_of(4) { "unwrap" } else { "api_key" } }),
                ),
            ])
        } else if reviewer && user_prompt(request).contains("Review revision 1") {
            Reply::tool_call(
                "final_result",
                json!({
                    "summary": "Loads the config; a secret is hard-coded and a read error panics.",
                    "issues": [
                        { "severity": "critical", "line": 2, "message": "Hard-coded API key." },
                        { "severity": "major", "line": 3, "message": "unwrap() panics." },
                    ],
                    "verdict": "request_changes",
                }),
            )
        } else if reviewer {
            Reply::tool_call(
                "final_result",
                json!({ "summary": "The key comes from the environment; errors propagate.",
                        "issues": [], "verdict": "approve" }),
            )
        } else {
            Reply::tool_call(
                "final_result",
                json!({
                    "code": CODE.replace("\"sk-live-1234\"", "std::env::var(\"API_KEY\")?")
                        .replace(".unwrap()", "?"),
                    "changes": ["Read the key from API_KEY.", "Propagate the read error."],
                }),
            )
        };
        if n == KILL_AT_REQUEST && !delayed.swap(true, Ordering::SeqCst) {
            return Reply::delay(Duration::from_secs(60), reply);
        }
        reply
    }
}

/// The JSON log lines of a worker whose message is `message`.
fn logged(log: &str, message: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == message)
        .collect()
}

/// `(activity_id, seq)` of every tool a worker ran, from its log.
fn tools_ran(log: &str) -> Vec<(String, i64)> {
    logged(log, "tool ran")
        .iter()
        .map(|l| {
            // Logged with Debug: `Some("r1.analyse")`.
            let activity = l["activity_id"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("Some(")
                .trim_end_matches(')')
                .trim_matches('"')
                .to_owned();
            (activity, l["seq"].as_i64().unwrap_or(-1))
        })
        .collect()
}

#[tokio::test]
async fn a_worker_killed_mid_review_is_followed_by_one_that_repeats_no_model_or_tool_call() {
    let (url, pool) = database().await;
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let delayed = Arc::new(AtomicBool::new(false));
    let fake = FakeLlm::start(Vec::new())
        .await
        .with_fallback(fake_model(requests.clone(), delayed));
    let victim = model_worker(&url, &fake);
    let id = start(&pool, "code_review", "pr-crash", review_input(3600)).await;

    // The Reviewer is five model turns and ten tool calls in, waiting for
    // its sixth answer: kill -9.
    let waiting = eventually(WAIT, || async {
        fake.chat_requests().len() == KILL_AT_REQUEST
    })
    .await;
    assert!(
        waiting,
        "the worker never made its {KILL_AT_REQUEST}th call:\n{}",
        victim.log()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    victim.signal(Signal::SIGKILL);
    let mut victim = victim;
    let _ = victim.child.wait();
    let victim_log = victim.log();
    let recorded_before: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.llm_calls")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(recorded_before, (KILL_AT_REQUEST - 1) as i64);
    drop(victim);

    // A new worker carries on; the reviewer rejects, the Refactorer
    // rewrites, the Reviewer looks again, the reviewer approves.
    let successor = model_worker(&url, &fake);
    reaches(&pool, id, "awaiting_approval").await;
    signal(
        &pool,
        id,
        "approval",
        json!({ "approved": false, "feedback": "No secrets in code; no unwrap." }),
    )
    .await
    .expect("reject");
    let ok = eventually(WAIT, || async {
        let r = row(&pool, id).await;
        r.state == "awaiting_approval" && r.context["revision"] == 2
    })
    .await;
    assert!(
        ok,
        "revision 2 never awaited approval:\n{}",
        successor.log()
    );
    signal(&pool, id, "approval", json!({ "approved": true }))
        .await
        .expect("approve");
    let done = finished(&pool, id).await;
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.output.as_ref().expect("output")["outcome"], "merged");
    let merged = merges(&pool, id).await;
    assert!(
        merged[0].code.contains("std::env::var(\"API_KEY\")?"),
        "{}",
        merged[0].code
    );

    // The ledger: 11 + 4 + 11 model calls and 20 + 6 + 20 tool calls, each
    // recorded once.
    let calls: Vec<(String, i32, i32, String)> = sqlx::query_as(
        "SELECT activity_id, attempt, step, status FROM floe.llm_calls WHERE workflow_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("llm calls");
    let tools: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT activity_id, attempt, seq FROM floe.tool_calls WHERE workflow_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("tool calls");
    let review_turns = REVIEW_TOOL_CALLS / 2 + 1;
    let refactor_turns = REFACTOR_TOOL_CALLS / 2 + 1;
    assert_eq!(calls.len(), 2 * review_turns + refactor_turns);
    assert_eq!(tools.len(), 2 * REVIEW_TOOL_CALLS + REFACTOR_TOOL_CALLS);
    assert!(calls.iter().all(|c| c.3 == "ok"), "{calls:?}");
    let mut steps: Vec<(&str, i32)> = calls.iter().map(|c| (c.0.as_str(), c.2)).collect();
    steps.sort_unstable();
    steps.dedup();
    assert_eq!(steps.len(), calls.len(), "a step recorded twice: {calls:?}");
    // The interrupted analysis: steps before the kill by attempt 1, the
    // rest by attempt 2 (which replayed the first five from the ledger).
    let by_attempt = |attempt: i32| {
        calls
            .iter()
            .filter(|c| c.0 == "r1.analyse" && c.1 == attempt)
            .count()
    };
    assert_eq!(by_attempt(1), KILL_AT_REQUEST - 1);
    assert_eq!(by_attempt(2), review_turns - (KILL_AT_REQUEST - 1));
    let tools_by_attempt = |attempt: i32| {
        tools
            .iter()
            .filter(|t| t.0 == "r1.analyse" && t.1 == attempt)
            .count()
    };
    assert_eq!(tools_by_attempt(1), 2 * (KILL_AT_REQUEST - 1));
    assert_eq!(
        tools_by_attempt(2),
        REVIEW_TOOL_CALLS - 2 * (KILL_AT_REQUEST - 1)
    );

    // The model saw every recorded request once, and one more: the request
    // in flight when the worker died (its answer never arrived), asked again
    // by the successor. Every other request body is distinct.
    let seen = fake.chat_requests();
    assert_eq!(seen.len(), calls.len() + 1);
    let mut bodies = BTreeMap::new();
    for r in &seen {
        *bodies.entry(r.body.to_string()).or_insert(0) += 1;
    }
    let repeated: Vec<usize> = bodies.values().copied().filter(|n| *n > 1).collect();
    assert_eq!(repeated, [2], "only the interrupted request was sent twice");
    let interrupted = &seen[KILL_AT_REQUEST - 1].body;
    assert_eq!(tool_results(interrupted), 2 * (KILL_AT_REQUEST - 1));
    assert_eq!(bodies[&interrupted.to_string()], 2);

    // Every tool ran once, in one process or the other: the workers' own
    // logs say when a tool ran (never when its result was replayed).
    let successor_log = successor.stop();
    let mut ran = tools_ran(&victim_log);
    ran.extend(tools_ran(&successor_log));
    assert_eq!(
        ran.len(),
        tools.len(),
        "tool runs in the logs vs the ledger"
    );
    let mut distinct = ran.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ran.len(), "a tool ran twice: {ran:?}");
    assert_eq!(
        logged(&successor_log, "tool result replayed from the ledger").len(),
        2 * (KILL_AT_REQUEST - 1)
    );
    assert_eq!(
        logged(&successor_log, "LLM answer replayed from the ledger").len(),
        KILL_AT_REQUEST - 1
    );
    println!(
        "crash demo: {} model requests for {} recorded calls (1 lost in flight), {} tool runs for {} recorded tool calls; \
         replayed after the kill: {} answers, {} tool results",
        seen.len(),
        calls.len(),
        ran.len(),
        tools.len(),
        KILL_AT_REQUEST - 1,
        2 * (KILL_AT_REQUEST - 1)
    );
}

// ------------------------------------------------------------------- the docs

/// The ```sql blocks of docs/examples.md, in order.
fn sql_blocks() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples.md"))
        .expect("docs/examples.md");
    doc.split("```sql\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

/// No workflow running and no event waiting to be applied.
async fn settled(pool: &PgPool) -> bool {
    let busy: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.workflows WHERE status = 'running' OR next_seq > applied_seq",
    )
    .fetch_one(pool)
    .await
    .expect("busy");
    busy == 0
}

#[tokio::test]
async fn the_sql_in_examples_md_runs() {
    let (url, pool) = database().await;
    let worker = worker(&url);
    let registered = eventually(WAIT, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM floe.definitions WHERE kind IN ('code_review', 'research')",
        )
        .fetch_one(&pool)
        .await
        .is_ok_and(|n| n == 2)
    })
    .await;
    assert!(registered, "the worker never registered its kinds");
    let blocks = sql_blocks();
    assert!(blocks.len() >= 8, "{blocks:#?}");
    for block in &blocks {
        sqlx::raw_sql(sqlx::AssertSqlSafe(block.clone()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin\n{block}"));
        if block.contains("floe_ops.start_workflow(") || block.contains("floe_ops.signal(") {
            assert!(
                eventually(WAIT, || settled(&pool)).await,
                "the workflows did not settle after\n{block}"
            );
        }
    }
    // What the statements did.
    let outcomes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT kind, key, state FROM floe.workflows WHERE parent_id IS NULL ORDER BY kind, key",
    )
    .fetch_all(&pool)
    .await
    .expect("outcomes");
    assert_eq!(
        outcomes,
        [
            (
                "code_review".to_owned(),
                "pr-43".to_owned(),
                "merged".to_owned()
            ),
            ("research".to_owned(), "q-2".to_owned(), "done".to_owned())
        ]
    );
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.workflows WHERE kind = 'research.subtask' AND status = 'failed'",
    )
    .fetch_one(&pool)
    .await
    .expect("failed");
    assert_eq!(failed, 1);
    worker.stop();
}
