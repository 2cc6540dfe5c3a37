//! Every SQL example in docs/ runs against the current schema.

use sqlx::PgPool;

/// The ```sql blocks of a Markdown file.
fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sql") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn every_example_in_the_queue_cookbook_runs(pool: PgPool) {
    // Something to look at: available, running, dead and expired jobs.
    sqlx::raw_sql(
        "SELECT floe.enqueue('floe.noop', '{}') FROM generate_series(1, 3);
         UPDATE floe.jobs SET state = 'running', lease_owner = 'w', lease_token = 1,
                lease_expires_at = now() - interval '1 minute'
          WHERE id = (SELECT min(id) FROM floe.jobs);
         UPDATE floe.jobs SET state = 'dead', last_error = 'boom'
          WHERE id = (SELECT max(id) FROM floe.jobs);",
    )
    .execute(&pool)
    .await
    .expect("fixtures");

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/queue.md"))
        .expect("docs/queue.md");
    let blocks = sql_blocks(&doc);
    assert!(blocks.len() >= 7, "found only {} examples", blocks.len());
    for block in blocks {
        sqlx::raw_sql(sqlx::AssertSqlSafe(block.clone()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("docs/queue.md example failed: {e}\n{block}"));
    }
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.jobs WHERE state = 'dead'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        dead, 0,
        "the cookbook's retry or delete removed the dead job"
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn every_example_in_the_workflow_cookbook_runs(pool: PgPool) {
    // A workflow with history, an activity and a deadline to look at.
    let mut tx = pool.begin().await.expect("begin");
    let started =
        floe_engine::workflow::store::start(&mut tx, "k", "key", &serde_json::json!({}), 1, None)
            .await
            .expect("start");
    tx.commit().await.expect("commit");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE floe.workflows SET status = 'waiting', deadline = now() - interval '1 minute' WHERE id = '{id}';
         INSERT INTO floe.history (workflow_id, seq, event, payload, event_at, state_after, status_after)
              VALUES ('{id}', 1, 'start', '{{}}', now(), 'started', 'waiting');
         INSERT INTO floe.activities (workflow_id, activity_id, name, input, status, error)
              VALUES ('{id}', 'a1', 'llm', '{{}}', 'failed', 'timeout');",
        id = started.id
    )))
    .execute(&pool)
    .await
    .expect("fixtures");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/workflows.md"))
        .expect("docs/workflows.md");
    let blocks = sql_blocks(&doc);
    assert!(blocks.len() >= 6, "found only {} examples", blocks.len());
    for block in blocks {
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(block.clone()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("docs/workflows.md example failed: {e}\n{block}"));
        assert!(
            !rows.is_empty(),
            "example returned nothing on the fixtures:\n{block}"
        );
    }
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn every_example_in_the_llm_cookbook_runs(pool: PgPool) {
    // Calls of one workflow (one failed within the hour), and a user's
    // memories with their history.
    sqlx::raw_sql(
        "INSERT INTO floe.llm_prices VALUES ('m', 1, 2);
         INSERT INTO floe.llm_calls (workflow_id, activity_id, attempt, step, user_id, agent, model,
                request, response, status, http_status, error, tokens_in, tokens_out, latency_ms, cost_usd)
         VALUES ('00000000-0000-0000-0000-000000000001', 'turn-1', 1, 0, 'alex', 'greeter', 'm',
                 '{}', NULL, 'rate_limited', 429, 'slow down', 0, 0, 12, NULL),
                ('00000000-0000-0000-0000-000000000001', 'turn-1', 2, 0, 'alex', 'greeter', 'm',
                 '{}', '{\"message\": {\"role\": \"assistant\", \"content\": \"hi\"}}', 'ok', NULL, NULL,
                 100, 20, 340, 0.00014);
         INSERT INTO floe.memories (user_id, memory, metadata) VALUES ('alex', 'Uses Notion', '{\"category\": \"tool\"}');
         INSERT INTO floe.memory_history (memory_id, user_id, event, new_memory, actor)
              SELECT id, user_id, 'ADD', memory, 'offline' FROM floe.memories;",
    )
    .execute(&pool)
    .await
    .expect("fixtures");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/llm.md"))
        .expect("docs/llm.md");
    let blocks = sql_blocks(&doc);
    assert!(blocks.len() >= 3, "found only {} examples", blocks.len());
    for block in blocks {
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(block.clone()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("docs/llm.md example failed: {e}\n{block}"));
        assert!(
            !rows.is_empty() || block.trim_start().starts_with("INSERT"),
            "example returned nothing on the fixtures:\n{block}"
        );
    }
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn every_example_in_the_onboarding_cookbook_runs(pool: PgPool) {
    // A user whose onboarding is mid-turn with a failure behind it, a
    // conversation and an inbox item.
    let mut tx = pool.begin().await.expect("begin");
    floe_engine::chat::store::upsert_user(&mut *tx, "alex", "Alex")
        .await
        .expect("user");
    let started = floe_engine::workflow::store::start(
        &mut tx,
        "onboarding",
        "onboarding/alex",
        &serde_json::json!({ "user_id": "alex" }),
        1,
        None,
    )
    .await
    .expect("start");
    floe_engine::chat::store::link_workflow(
        &mut *tx,
        "alex",
        "onboarding",
        "onboarding/alex",
        started.id,
    )
    .await
    .expect("link");
    floe_engine::chat::store::post_user_message(&mut tx, "alex", started.id, "hi", None)
        .await
        .expect("message");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE floe.workflows SET context = '{{\"turn\": {{\"n\": 1}}, \"pending\": [], \"failures\": 1, \"last_error\": \"agent.turn: boom\"}}'
          WHERE id = '{id}';
         INSERT INTO floe.inbox_items (user_id, title, source_key) VALUES ('alex', 'Call the bank', 'k');",
        id = started.id
    )))
    .execute(&mut *tx)
    .await
    .expect("fixtures");
    tx.commit().await.expect("commit");
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/onboarding.md"
    ))
    .expect("docs/onboarding.md");
    let blocks = sql_blocks(&doc);
    assert!(!blocks.is_empty(), "no examples");
    for block in blocks {
        for statement in block.split(";\n").filter(|s| !s.trim().is_empty()) {
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("docs/onboarding.md example failed: {e}\n{statement}"));
            assert!(
                !rows.is_empty(),
                "example returned nothing on the fixtures:\n{statement}"
            );
        }
    }
}
