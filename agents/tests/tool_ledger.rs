//! Tool calls in the ledger (`floe.tool_calls`) against a real database and
//! the scripted fake OpenAI-compatible server: an agent's tool calls are
//! recorded, and a retried attempt of the same activity replays their
//! results — and the model's answers — instead of running the tools or
//! asking the model again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use floe_agents::agent::{self, Agent, AgentError};
use floe_agents::llm::ledger::{CallSite, Recorder};
use floe_agents::llm::openai::OpenAiClient;
use floe_agents::testing::{FakeLlm, Reply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// The tool's dependencies: how many times it really ran.
#[derive(Default)]
struct Runs(AtomicUsize);

#[derive(Deserialize, JsonSchema)]
struct Lookup {
    /// What to look up.
    key: String,
}

#[derive(Debug, PartialEq, Deserialize, JsonSchema)]
struct Answer {
    /// The answer.
    text: String,
}

/// An agent with a `lookup` tool that counts its runs and refuses `"bad"`.
fn agent() -> Agent<Runs, Answer> {
    Agent::new("looker")
        .instructions("Look things up.")
        .tool(agent::tool(
            "lookup",
            "Looks a key up.",
            |runs: &Runs, args: Lookup| {
                runs.0.fetch_add(1, Ordering::SeqCst);
                if args.key == "bad" {
                    Err("no such key".to_owned())
                } else {
                    Ok(json!({ "value": args.key.to_uppercase() }))
                }
            },
        ))
}

fn recorder(fake: &FakeLlm, pool: &PgPool, workflow_id: Uuid, attempt: i32) -> Recorder {
    let client = OpenAiClient::builder(fake.base_url())
        .model("fake-chat")
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let site = CallSite {
        workflow_id: Some(workflow_id),
        activity_id: Some("a1".into()),
        attempt: Some(attempt),
        user_id: Some("u".into()),
    };
    Recorder::new(Arc::new(client), pool.clone(), site)
}

async fn run(recorder: &Recorder, runs: &Runs) -> Result<Answer, AgentError> {
    agent()
        .run(recorder, runs, Vec::new(), "look up a, b and bad", None)
        .await
        .map(|r| r.output)
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct ToolRow {
    attempt: Option<i32>,
    seq: i32,
    llm_step: Option<i32>,
    tool: String,
    arguments: String,
    status: String,
    result: Option<Value>,
    error: Option<String>,
}

async fn tool_rows(pool: &PgPool, workflow_id: Uuid) -> Vec<ToolRow> {
    sqlx::query_as(
        "SELECT attempt, seq, llm_step, tool, arguments, status, result, error
         FROM floe.tool_calls WHERE workflow_id = $1 ORDER BY seq",
    )
    .bind(workflow_id)
    .fetch_all(pool)
    .await
    .expect("tool calls")
}

async fn llm_steps(pool: &PgPool, workflow_id: Uuid) -> Vec<(Option<i32>, i32, String)> {
    sqlx::query_as(
        "SELECT attempt, step, status FROM floe.llm_calls WHERE workflow_id = $1 ORDER BY id",
    )
    .bind(workflow_id)
    .fetch_all(pool)
    .await
    .expect("llm calls")
}

fn script() -> Vec<Reply> {
    vec![
        Reply::tool_call("lookup", json!({ "key": "a" })),
        Reply::tool_calls(vec![
            ("lookup", json!({ "key": "b" })),
            ("lookup", json!({ "key": "bad" })),
        ]),
        Reply::tool_call("final_result", json!({ "text": "A and B" })),
    ]
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_retried_attempt_replays_recorded_tool_results_and_answers(pool: PgPool) {
    let fake = FakeLlm::start(script()).await;
    let workflow_id = Uuid::now_v7();
    let runs = Runs::default();
    let first = run(&recorder(&fake, &pool, workflow_id, 1), &runs)
        .await
        .expect("first attempt");
    assert_eq!(first.text, "A and B");
    assert_eq!(runs.0.load(Ordering::SeqCst), 3);
    assert_eq!(fake.chat_requests().len(), 3);
    let rows = tool_rows(&pool, workflow_id).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.seq, r.llm_step, r.arguments.as_str(), r.status.as_str()))
            .collect::<Vec<_>>(),
        [
            (0, Some(0), r#"{"key":"a"}"#, "ok"),
            (1, Some(1), r#"{"key":"b"}"#, "ok"),
            (2, Some(1), r#"{"key":"bad"}"#, "error"),
        ]
    );
    assert_eq!(rows[0].result, Some(json!({ "value": "A" })));
    assert_eq!(rows[2].error.as_deref(), Some("no such key"));
    assert!(
        rows.iter()
            .all(|r| r.tool == "lookup" && r.attempt == Some(1))
    );

    // The activity runs again (its worker died before acknowledging): every
    // answer and every tool result comes from the ledger.
    let again = run(&recorder(&fake, &pool, workflow_id, 2), &runs)
        .await
        .expect("second attempt");
    assert_eq!(again, first);
    assert_eq!(runs.0.load(Ordering::SeqCst), 3, "no tool ran again");
    assert_eq!(
        fake.chat_requests().len(),
        3,
        "the model was not asked again"
    );
    assert_eq!(tool_rows(&pool, workflow_id).await.len(), 3);
    assert_eq!(
        llm_steps(&pool, workflow_id).await,
        [
            (Some(1), 0, "ok".to_owned()),
            (Some(1), 1, "ok".to_owned()),
            (Some(1), 2, "ok".to_owned())
        ]
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn an_attempt_cut_short_is_carried_on_from_its_recorded_steps(pool: PgPool) {
    // The first attempt's third model call fails: its tools ran, their
    // results are recorded.
    let mut replies = script();
    replies.insert(2, Reply::error(503, "overloaded"));
    let fake = FakeLlm::start(replies).await;
    let workflow_id = Uuid::now_v7();
    let runs = Runs::default();
    let failed = run(&recorder(&fake, &pool, workflow_id, 1), &runs).await;
    assert!(failed.is_err_and(|e| e.retryable()));
    assert_eq!(runs.0.load(Ordering::SeqCst), 3);

    let answer = run(&recorder(&fake, &pool, workflow_id, 2), &runs)
        .await
        .expect("second attempt");
    assert_eq!(answer.text, "A and B");
    assert_eq!(runs.0.load(Ordering::SeqCst), 3, "the tools ran once");
    // Steps 0 and 1 replayed; step 2 asked again (its failure is no answer).
    assert_eq!(fake.chat_requests().len(), 4);
    assert_eq!(
        llm_steps(&pool, workflow_id).await,
        [
            (Some(1), 0, "ok".to_owned()),
            (Some(1), 1, "ok".to_owned()),
            (Some(1), 2, "error".to_owned()),
            (Some(2), 2, "ok".to_owned())
        ]
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_different_call_at_the_same_place_runs_the_tool(pool: PgPool) {
    // The first attempt's answers are abandoned (say its output was
    // invalid); the model asks for something else the second time.
    let fake = FakeLlm::start(vec![
        Reply::tool_call("lookup", json!({ "key": "a" })),
        Reply::tool_call("final_result", json!({ "text": "A" })),
        Reply::tool_call("lookup", json!({ "key": "z" })),
        Reply::tool_call("final_result", json!({ "text": "Z" })),
    ])
    .await;
    let workflow_id = Uuid::now_v7();
    let runs = Runs::default();
    let first = recorder(&fake, &pool, workflow_id, 1);
    run(&first, &runs).await.expect("first attempt");
    first.abandon().await.expect("abandon");
    let answer = run(&recorder(&fake, &pool, workflow_id, 2), &runs)
        .await
        .expect("second attempt");
    assert_eq!(answer.text, "Z");
    assert_eq!(runs.0.load(Ordering::SeqCst), 2);
    let rows = tool_rows(&pool, workflow_id).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.attempt, r.seq, r.arguments.as_str()))
            .collect::<Vec<_>>(),
        [
            (Some(1), 0, r#"{"key":"a"}"#),
            (Some(2), 0, r#"{"key":"z"}"#)
        ]
    );
}
