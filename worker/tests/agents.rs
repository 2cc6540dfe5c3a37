//! The LLM activities run by a real worker process against a fake
//! OpenAI-compatible server (the real client, over HTTP) and real
//! PostgreSQL: answers, tool calls, rate limits, server errors, timeouts,
//! invalid output, the ledger's tokens and cost, and the API key kept out of
//! logs and records.

mod common;

use std::time::Duration;

use common::{Testbed, database, eventually};
use floe_agents::testing::{FakeLlm, Reply};
use floe_engine::workflow::Status;
use floe_engine::workflow::store;
use nix::sys::signal::Signal;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const KEY: &str = "sk-test-0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A worker using the fake model, logging at debug level.
fn worker(url: &SecretString, fake: &FakeLlm, extra: &[&str]) -> Testbed {
    let base = fake.base_url();
    let mut args = vec![
        "--llm-base-url",
        base.as_str(),
        "--llm-api-key",
        KEY,
        "--llm-model",
        "fake-mini",
        "--lease-ms",
        "1500",
        "--poll-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    Testbed::start_logging(url, &args, "debug")
}

/// The Greeter's answer as a `final_result` call.
fn greeting(name: &str) -> Value {
    json!({
        "message": format!("Nice to meet you, {name}! What do you do for work?"),
        "name": name,
        "preferred_name": name,
        "step_completed": true,
        "memory_updates": [format!("Name is {name}")],
    })
}

/// A greeter turn for `user`, answering "I'm Alex".
fn turn_input(user: &str) -> Value {
    json!({
        "agent_type": "greeter",
        "user_message": "Hi, I'm Alex",
        "context": {
            "user_id": user,
            "trigger_type": "user_message",
            "current_step": "greeting",
        },
    })
}

/// Starts `test.once` running `agent.turn` with `policy`.
async fn start_turn(pool: &PgPool, user: &str, policy: Value) -> Uuid {
    start_once(pool, user, "agent.turn", turn_input(user), policy).await
}

/// Starts `test.once` (key `key`) running `activity` on `input`.
async fn start_once(pool: &PgPool, key: &str, activity: &str, input: Value, policy: Value) -> Uuid {
    let input = json!({ "activity": activity, "input": input, "policy": policy });
    let mut tx = pool.begin().await.expect("begin");
    let started = store::start(&mut tx, "test.once", key, &input, 1, None)
        .await
        .expect("start");
    tx.commit().await.expect("commit");
    started.id
}

async fn finished(pool: &PgPool, id: Uuid) -> store::WorkflowRow {
    let done = eventually(Duration::from_secs(30), || async {
        store::get(pool, id)
            .await
            .expect("get")
            .is_some_and(|w| w.status.is_finished())
    })
    .await;
    assert!(done, "workflow {id} did not finish");
    store::get(pool, id).await.expect("get").expect("row")
}

fn policy(max_attempts: i32) -> Value {
    json!({ "max_attempts": max_attempts, "backoff_base_ms": 50, "backoff_max_ms": 200, "timeout_ms": 30000 })
}

#[derive(Debug, sqlx::FromRow)]
struct Call {
    attempt: Option<i32>,
    step: i32,
    agent: String,
    model: String,
    status: String,
    http_status: Option<i32>,
    error: Option<String>,
    tokens_in: i32,
    tokens_out: i32,
    cost_usd: Option<f64>,
    user_id: Option<String>,
    created_ms: f64,
}

async fn calls(pool: &PgPool, id: Uuid) -> Vec<Call> {
    sqlx::query_as(
        "SELECT attempt, step, agent, model, status, http_status, error, tokens_in, tokens_out,
                cost_usd::float8 AS cost_usd, user_id,
                extract(epoch FROM created_at)::float8 * 1000 AS created_ms
         FROM floe.llm_calls WHERE workflow_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("calls")
}

#[tokio::test]
async fn a_structured_answer_is_recorded_with_tokens_and_cost_and_the_key_stays_secret() {
    let (url, pool) = database().await;
    sqlx::query("INSERT INTO floe.llm_prices VALUES ('fake-mini', 0.15, 0.60)")
        .execute(&pool)
        .await
        .expect("price");
    let fake = FakeLlm::start(vec![
        Reply::tool_call("final_result", greeting("Alex")).usage(1200, 300),
    ])
    .await;
    let worker = worker(&url, &fake, &[]);
    let id = start_turn(&pool, "user-a", policy(3)).await;
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Completed, "{row:?}");
    let output = row.output.expect("output");
    assert_eq!(output["agent"], "greeter");
    assert_eq!(output["workflow_signals"]["step_completed"], true);
    assert_eq!(
        output["workflow_signals"]["completion_data"]["name"], "Alex",
        "{output}"
    );

    let calls = calls(&pool, id).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(
        (
            call.status.as_str(),
            call.agent.as_str(),
            call.model.as_str()
        ),
        ("ok", "greeter", "fake-mini")
    );
    assert_eq!((call.tokens_in, call.tokens_out), (1200, 300));
    // 1200 × 0.15 / 1e6 + 300 × 0.60 / 1e6
    let cost = call.cost_usd.expect("priced");
    assert!((cost - 0.00036).abs() < 1e-9, "cost {cost}");
    assert_eq!(call.user_id.as_deref(), Some("user-a"));

    let (per_user, per_workflow, per_day): (f64, f64, i64) = sqlx::query_as(
        "SELECT (SELECT cost_usd::float8 FROM floe.llm_usage_by_user WHERE user_id = 'user-a'),
                (SELECT cost_usd::float8 FROM floe.llm_usage_by_workflow WHERE workflow_id = $1),
                (SELECT sum(tokens_in + tokens_out)::int8 FROM floe.llm_usage_by_day)",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("views");
    assert!((per_user - cost).abs() < 1e-9 && (per_workflow - cost).abs() < 1e-9);
    assert_eq!(per_day, 1500);

    // The key went to the server as a bearer token and nowhere else.
    let sent = fake.chat_requests();
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let log = worker.stop();
    assert!(
        log.contains("LLM configured"),
        "the worker logs its model:\n{log}"
    );
    assert!(!log.contains(KEY), "the API key leaked into the log");
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM floe.llm_calls WHERE request::text LIKE $1")
            .bind(format!("%{KEY}%"))
            .fetch_one(&pool)
            .await
            .expect("ledger");
    assert_eq!(recorded, 0, "the API key leaked into the ledger");
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_the_servers_retry_after() {
    let (url, pool) = database().await;
    let fake = FakeLlm::start(vec![
        Reply::error(429, "slow down").header("retry-after", "1"),
        Reply::tool_call("final_result", greeting("Alex")),
    ])
    .await;
    let _worker = worker(&url, &fake, &[]);
    let id = start_turn(&pool, "user-b", policy(3)).await;
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Completed, "{row:?}");
    let calls = calls(&pool, id).await;
    let summary: Vec<_> = calls
        .iter()
        .map(|c| (c.attempt, c.status.as_str(), c.http_status))
        .collect();
    assert_eq!(
        summary,
        [(Some(1), "rate_limited", Some(429)), (Some(2), "ok", None)]
    );
    // The second attempt waited at least the second the server asked for
    // (a lower bound: the order of events, not a speed).
    let waited = calls[1].created_ms - calls[0].created_ms;
    assert!(waited >= 1000.0, "retried after {waited} ms");
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM floe.activities WHERE workflow_id = $1 AND activity_id = 'only'",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("attempts");
    assert_eq!(attempts, 2);
}

#[tokio::test]
async fn server_errors_until_the_attempts_run_out_fail_the_activity_not_the_worker() {
    let (url, pool) = database().await;
    let fake = FakeLlm::start(vec![
        Reply::error(500, "boom 1"),
        Reply::error(502, "boom 2"),
        Reply::error(503, "boom 3"),
    ])
    .await;
    let mut worker = worker(&url, &fake, &[]);
    let id = start_turn(&pool, "user-c", policy(3)).await;
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Failed, "{row:?}");
    let error = row.error.unwrap_or_default();
    assert!(error.contains("server error (503)"), "{error}");
    let calls = calls(&pool, id).await;
    assert!(
        calls
            .iter()
            .all(|c| c.error.as_deref().is_some_and(|e| e.contains("boom"))),
        "{calls:?}"
    );
    let statuses: Vec<_> = calls
        .iter()
        .map(|c| (c.status.clone(), c.http_status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("error".to_owned(), Some(500)),
            ("error".to_owned(), Some(502)),
            ("error".to_owned(), Some(503))
        ]
    );
    assert!(worker.running(), "the worker survived");
    // And it still serves the next turn.
    fake.push(Reply::tool_call("final_result", greeting("Sam")));
    let next = start_turn(&pool, "user-c2", policy(3)).await;
    assert_eq!(finished(&pool, next).await.status, Status::Completed);
}

#[tokio::test]
async fn a_model_that_does_not_answer_in_time_is_retried() {
    let (url, pool) = database().await;
    let fake = FakeLlm::start(vec![
        Reply::delay(
            Duration::from_secs(5),
            Reply::tool_call("final_result", greeting("Late")),
        ),
        Reply::tool_call("final_result", greeting("Alex")),
    ])
    .await;
    let _worker = worker(&url, &fake, &["--llm-timeout-ms", "400"]);
    let id = start_turn(&pool, "user-d", policy(3)).await;
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Completed, "{row:?}");
    assert_eq!(
        row.output.expect("output")["workflow_signals"]["completion_data"]["name"],
        "Alex"
    );
    let calls = calls(&pool, id).await;
    assert_eq!(calls[0].status, "timeout", "{calls:?}");
    assert_eq!(calls[1].status, "ok");
}

#[tokio::test]
async fn an_invalid_output_is_fixed_after_the_validation_errors_are_sent_back() {
    let (url, pool) = database().await;
    let fake = FakeLlm::start(vec![
        // Not the output's shape at all.
        Reply::tool_call("final_result", json!({ "msg": 42 })),
        Reply::tool_call("final_result", greeting("Alex")),
    ])
    .await;
    let _worker = worker(&url, &fake, &[]);
    let id = start_turn(&pool, "user-e", policy(1)).await;
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Completed, "{row:?}");
    let sent = fake.chat_requests();
    assert_eq!(sent.len(), 2);
    let feedback = sent[1].body["messages"].to_string();
    assert!(
        feedback.contains("Fix the errors and try again"),
        "{feedback}"
    );
    let steps: Vec<_> = calls(&pool, id)
        .await
        .iter()
        .map(|c| (c.attempt, c.step, c.status.clone()))
        .collect();
    assert_eq!(
        steps,
        [(Some(1), 0, "ok".to_owned()), (Some(1), 1, "ok".to_owned())]
    );
}

#[tokio::test]
async fn output_that_stays_invalid_fails_the_turn_with_a_clear_error() {
    let (url, pool) = database().await;
    let bad = || Reply::tool_call("final_result", json!({ "msg": 42 }));
    // Three retries: four answers per attempt, one attempt.
    let fake = FakeLlm::start(vec![bad(), bad(), bad(), bad()]).await;
    let _worker = worker(&url, &fake, &[]);
    let id = start_turn(&pool, "user-f", policy(1)).await;
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Failed);
    let error = row.error.unwrap_or_default();
    assert!(
        error.contains("output still invalid after 3 retries"),
        "{error}"
    );
    // The failed attempt's answers are not offered to a retry.
    let reusable: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.llm_calls WHERE workflow_id = $1 AND reusable",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("reusable");
    assert_eq!(reusable, 0);
}

#[tokio::test]
async fn a_worker_killed_mid_turn_is_followed_by_one_that_replays_the_recorded_answers() {
    let (url, pool) = database().await;
    // The Greeter first answers invalidly (recorded, step 0), then its
    // corrected answer takes long enough for the worker to be killed
    // waiting for it.
    let fake = FakeLlm::start(vec![
        Reply::tool_call("final_result", json!({ "msg": 42 })),
        Reply::delay(
            Duration::from_secs(30),
            Reply::tool_call("final_result", greeting("Never")),
        ),
        Reply::tool_call("final_result", greeting("Alex")),
    ])
    .await;
    let victim = worker(&url, &fake, &[]);
    let id = start_turn(&pool, "user-g", policy(3)).await;
    let waiting = eventually(Duration::from_secs(20), || async {
        fake.chat_requests().len() == 2
    })
    .await;
    assert!(waiting, "the worker never made its second call");
    victim.signal(Signal::SIGKILL);
    drop(victim);
    let _successor = worker(&url, &fake, &[]);
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Completed, "{row:?}");
    assert_eq!(
        row.output.expect("output")["workflow_signals"]["completion_data"]["name"],
        "Alex"
    );
    // Step 0 was answered from the ledger: the model saw three requests,
    // not four, and step 0 is recorded once.
    assert_eq!(fake.chat_requests().len(), 3);
    let steps: Vec<_> = calls(&pool, id)
        .await
        .iter()
        .map(|c| (c.attempt, c.step))
        .collect();
    assert_eq!(steps, [(Some(1), 0), (Some(2), 1)]);
}

#[tokio::test]
async fn with_no_model_configured_the_offline_agents_answer() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &[]);
    let id = start_turn(&pool, "user-h", policy(3)).await;
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Completed, "{row:?}");
    let output = row.output.expect("output");
    assert_eq!(output["agent"], "greeter");
    assert_eq!(
        output["workflow_signals"]["completion_data"]["name"], "Alex",
        "{output}"
    );
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.llm_calls")
        .fetch_one(&pool)
        .await
        .expect("ledger");
    assert_eq!(recorded, 0, "offline turns call no model");
    worker.stop();
}

#[tokio::test]
async fn a_streamed_answer_split_into_fragments_gives_the_same_turn() {
    let (url, pool) = database().await;
    let fake = FakeLlm::start(vec![Reply::streamed(
        Reply::tool_call("final_result", greeting("Alex")),
        3,
    )])
    .await;
    let _worker = worker(&url, &fake, &["--llm-stream"]);
    let id = start_turn(&pool, "user-s", policy(1)).await;
    let row = finished(&pool, id).await;
    assert_eq!(row.status, Status::Completed, "{row:?}");
    assert_eq!(
        row.output.expect("output")["workflow_signals"]["completion_data"]["name"],
        "Alex"
    );
    assert_eq!(fake.chat_requests()[0].body["stream"], true);
}

#[tokio::test]
async fn memory_activities_remember_what_a_user_said_and_find_it_again() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &[]);
    let said = json!({
        "user_id": "user-m",
        "conversation": [
            { "role": "assistant", "content": "What tools do you use?" },
            { "role": "user", "content": "My name is Alex. I use Notion and Linear." },
        ],
    });
    let update = start_once(&pool, "update", "memory.update", said, policy(3)).await;
    let row = finished(&pool, update).await;
    assert_eq!(row.status, Status::Completed, "{row:?}");
    let changes = row.output.expect("output")["changes"].clone();
    let added: Vec<&str> = changes
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["event"] == "ADD")
        .filter_map(|c| c["new_memory"].as_str())
        .collect();
    assert!(added.contains(&"Uses Notion"), "{changes}");

    let query = json!({ "user_id": "user-m", "query": "which tools does the user use" });
    let get = start_once(&pool, "get", "memory.get", query, policy(3)).await;
    let row = finished(&pool, get).await;
    let memories = row.output.expect("output")["memories"].clone();
    let first = memories[0].as_str().unwrap_or_default();
    assert!(first.starts_with("Uses "), "{memories}");
    // Another user's memory is not theirs.
    let other = json!({ "user_id": "user-n", "query": "which tools does the user use" });
    let get = start_once(&pool, "other", "memory.get", other, policy(3)).await;
    let row = finished(&pool, get).await;
    assert_eq!(row.output.expect("output")["memories"], json!([]));
    worker.stop();
}
