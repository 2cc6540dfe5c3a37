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

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn every_example_in_the_ops_cookbook_runs(pool: PgPool) {
    // Two registered kinds; three onboardings — alex waiting two days on a
    // person, with a signal no worker applied (its advance job held by a
    // worker that died), sam past an unfired deadline, kim with a turn that
    // failed for good and one whose job gave up; a dead job of another kind;
    // LLM calls; the application's expenses table with one started expense.
    sqlx::raw_sql(
        r#"
        INSERT INTO floe.definitions (kind, version, registered_by)
             VALUES ('onboarding', 1, 'floe-worker host:4242:1a2b3c4d'), ('expense', 2, 'floe-api host:4243');
        SELECT floe.workflow_start('01930000-0000-7000-8000-000000000001', 'onboarding', 'onboarding/alex',
                                   '{"user_id": "alex"}', 1),
               floe.workflow_start('01930000-0000-7000-8000-000000000002', 'onboarding', 'onboarding/sam',
                                   '{"user_id": "sam"}', 1),
               floe.workflow_start('01930000-0000-7000-8000-000000000003', 'onboarding', 'onboarding/kim',
                                   '{"user_id": "kim"}', 1);
        DELETE FROM floe.jobs;
        UPDATE floe.workflows SET applied_seq = 1, version = 1, status = 'waiting', state = 'discovery',
               context = '{"turn": {"n": 1}}', updated_at = now() - interval '2 days',
               deadline = now() + interval '1 hour', deadline_reason = 'nudge'
         WHERE key = 'onboarding/alex';
        UPDATE floe.workflows SET applied_seq = 1, version = 1, status = 'waiting', state = 'greeting',
               context = '{}', deadline = now() - interval '10 minutes', deadline_reason = 'nudge'
         WHERE key = 'onboarding/sam';
        UPDATE floe.workflows SET applied_seq = 1, version = 3, status = 'running', state = 'discovery',
               context = '{}', in_flight = 1
         WHERE key = 'onboarding/kim';
        INSERT INTO floe.activities (workflow_id, activity_id, name, input, status, attempts, error, finished_at)
        VALUES ('01930000-0000-7000-8000-000000000003', 'turn-1', 'agent.turn', '{}', 'failed', 5,
                'model timed out', now() - interval '1 hour'),
               ('01930000-0000-7000-8000-000000000003', 'turn-2', 'agent.turn', '{}', 'scheduled', 0, NULL, NULL);
        INSERT INTO floe.jobs (kind, payload, state, attempts, max_attempts, last_error, attempted_at)
        VALUES ('floe.activity',
                '{"workflow_id": "01930000-0000-7000-8000-000000000003", "activity_id": "turn-2",
                  "name": "agent.turn", "input": {}}',
                'dead', 5, 5, 'rate limited (429)', now() - interval '5 minutes'),
               ('floe.noop', '{}', 'dead', 20, 20, 'boom', now());
        SELECT floe.workflow_deliver('01930000-0000-7000-8000-000000000001', 'signal', 'user_connected', '{}');
        UPDATE floe.inbox SET created_at = now() - interval '5 minutes' WHERE seq = 2;
        UPDATE floe.jobs SET state = 'running', attempts = 1, unique_key = NULL, lease_owner = 'host:4242:1a2b3c4d',
               lease_token = 1, lease_expires_at = now() - interval '3 minutes',
               attempted_at = now() - interval '4 minutes'
         WHERE kind = 'floe.advance';
        INSERT INTO floe.llm_prices VALUES ('m', 1, 2);
        INSERT INTO floe.llm_calls (workflow_id, activity_id, attempt, step, user_id, agent, model,
               request, response, status, tokens_in, tokens_out, latency_ms, cost_usd)
        VALUES ('01930000-0000-7000-8000-000000000001', 'turn-1', 1, 0, 'alex', 'greeter', 'm',
                '{}', '{}', 'ok', 100, 20, 340, 0.00014);
        CREATE TABLE expenses (
            id          bigint PRIMARY KEY,
            amount      numeric NOT NULL,
            approved_by text,
            workflow_id uuid
        );
        INSERT INTO expenses (id, amount, workflow_id)
             VALUES (1, 80, floe_ops.start_workflow('expense', 'expense-1', '{"amount": 80}'));
        "#,
    )
    .execute(&pool)
    .await
    .expect("fixtures");

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ops.md"))
        .expect("docs/ops.md");
    let blocks = sql_blocks(&doc);
    assert!(blocks.len() >= 20, "found only {} examples", blocks.len());
    for block in blocks {
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(block.clone()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("docs/ops.md example failed: {e}\n{block}"));
        assert!(
            !rows.is_empty() || block.trim_start().starts_with("CREATE"),
            "example returned nothing on the fixtures:\n{block}"
        );
    }

    // They did what they say.
    let effects: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT w.key, i.event, i.name FROM floe.inbox i JOIN floe.workflows w ON w.id = i.workflow_id
          WHERE i.seq > 1 OR w.kind = 'expense' ORDER BY w.key, i.seq",
    )
    .fetch_all(&pool)
    .await
    .expect("events");
    let effects: Vec<(&str, &str, Option<&str>)> = effects
        .iter()
        .map(|(k, e, n)| (k.as_str(), e.as_str(), n.as_deref()))
        .collect();
    assert_eq!(
        effects,
        vec![
            ("expense-1", "start", None),
            ("expense-1", "signal", Some("approve")),
            ("expense-2", "start", None),
            ("expense-2", "signal", Some("approve")),
            ("onboarding/alex", "signal", Some("user_connected")),
            ("onboarding/alex", "signal", Some("user_connected")),
            (
                "onboarding/sam",
                "cancel",
                Some("the user asked us to stop")
            ),
        ]
    );
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.jobs WHERE state = 'dead'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(dead, 0, "the cookbook's retries revived the dead jobs");
}
