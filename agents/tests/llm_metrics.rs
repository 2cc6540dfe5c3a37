//! The LLM-call ledger's metrics: every call it records counts, by model and
//! agent, as a call (by status), tokens in and out, a duration, and the cost
//! the price table gives.

use std::time::Duration;

use floe_agents::llm::ledger::{self, Call, CallSite};
use floe_agents::llm::{ModelError, Usage};
use floe_engine::testing::Exposition;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn recorded_calls_count_by_model_and_agent_with_tokens_and_cost(pool: PgPool) {
    floe_engine::metrics::install().expect("the Prometheus recorder");
    // A model of this test's own, so that other tests in the process do not
    // move its series.
    let model = format!("metrics-test-{}", Uuid::new_v4().simple());
    ledger::set_price(&pool, &model, 2.0, 8.0)
        .await
        .expect("price");
    let site = CallSite {
        workflow_id: Some(Uuid::new_v4()),
        activity_id: Some("a1".into()),
        attempt: Some(1),
        user_id: None,
    };
    let ok = Call {
        site: &site,
        step: 0,
        agent: "greeter",
        model: &model,
        request: json!({ "messages": ["hello"] }),
        outcome: Ok(json!({ "content": "hi" })),
        usage: Usage {
            input_tokens: 1000,
            output_tokens: 250,
        },
        latency_ms: 120,
    };
    assert_eq!(ledger::record(&pool, ok).await.expect("record"), None);
    let timeout = ModelError::Timeout(Duration::from_secs(60));
    let failed = Call {
        site: &site,
        step: 1,
        agent: "greeter",
        model: &model,
        request: json!({ "messages": ["hello again"] }),
        outcome: Err(&timeout),
        usage: Usage::default(),
        latency_ms: 60_000,
    };
    ledger::record(&pool, failed).await.expect("record");

    let text = floe_engine::metrics::render();
    let m = Exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mine = [("model", model.as_str()), ("agent", "greeter")];
    let with = |k: &'static str, v: &'static str| [mine[0], mine[1], (k, v)];
    assert_eq!(m.sum("floe_llm_calls_total", &with("status", "ok")), 1.0);
    assert_eq!(
        m.sum("floe_llm_calls_total", &with("status", "timeout")),
        1.0
    );
    assert_eq!(
        m.sum("floe_llm_tokens_total", &with("direction", "in")),
        1000.0
    );
    assert_eq!(
        m.sum("floe_llm_tokens_total", &with("direction", "out")),
        250.0
    );
    // 1000 × $2 + 250 × $8 per million tokens = $0.004; the failed call has
    // no tokens, so no cost.
    assert_eq!(m.sum("floe_llm_cost_microusd_total", &mine), 4000.0);
    assert_eq!(m.sum("floe_llm_call_seconds_count", &mine), 2.0);
    assert!((m.sum("floe_llm_call_seconds_sum", &mine) - 60.12).abs() < 1e-9);
}
