//! Retention removes finished workflows (with their inbox, history and
//! activities) and dead jobs once they are older than the period, in
//! batches, parents after their children, and nothing else; the ledgers'
//! rows once old and their workflow is gone.

use std::time::Duration;

use floe_engine::retention::{Swept, sweep_batch};
use floe_engine::workflow::store;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(86_400);

/// A workflow with an inbox event, a history entry and an activity,
/// finished `days_ago` days ago (`None`: still open).
async fn workflow(pool: &PgPool, key: &str, days_ago: Option<i32>, parent: Option<Uuid>) -> Uuid {
    let mut conn = pool.acquire().await.expect("conn");
    let id = store::start(&mut conn, "test.kind", key, &json!({}), 1, parent)
        .await
        .expect("start")
        .id;
    sqlx::query(
        "INSERT INTO floe.history (workflow_id, seq, event, payload, event_at, state_after, status_after)
         VALUES ($1, 1, 'start', '{}', now(), 'done', 'waiting');
         ",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .expect("history");
    sqlx::query("INSERT INTO floe.activities (workflow_id, activity_id, name, input) VALUES ($1, 'a1', 'x', '{}')")
        .bind(id)
        .execute(&mut *conn)
        .await
        .expect("activity");
    if let Some(days) = days_ago {
        sqlx::query(
            "UPDATE floe.workflows SET status = 'completed', state = 'done',
                    finished_at = now() - make_interval(days => $2)
              WHERE id = $1",
        )
        .bind(id)
        .bind(days)
        .execute(&mut *conn)
        .await
        .expect("finish");
    }
    id
}

async fn exists(pool: &PgPool, id: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM floe.workflows WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("exists")
}

async fn count(pool: &PgPool, table: &str, id: Uuid) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM floe.{table} WHERE workflow_id = $1"
    )))
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("count")
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn removes_old_finished_workflows_with_their_records_and_keeps_the_rest(pool: PgPool) {
    let old = workflow(&pool, "old", Some(40), None).await;
    let recent = workflow(&pool, "recent", Some(5), None).await;
    let open = workflow(&pool, "open", None, None).await;
    // An open workflow whose deadline is long past is not finished: kept.
    sqlx::query("UPDATE floe.workflows SET deadline = now() - interval '90 days' WHERE id = $1")
        .bind(open)
        .execute(&pool)
        .await
        .expect("deadline");

    let swept = sweep_batch(&pool, 30 * DAY, 100).await.expect("sweep");
    assert_eq!(swept.workflows, 1);
    assert!(!exists(&pool, old).await);
    for table in ["inbox", "history", "activities"] {
        assert_eq!(
            count(&pool, table, old).await,
            0,
            "{table} of the removed one"
        );
        assert_eq!(
            count(&pool, table, recent).await,
            1,
            "{table} of a kept one"
        );
    }
    assert!(exists(&pool, recent).await);
    assert!(exists(&pool, open).await);

    // Nothing left to remove: a second sweep removes nothing.
    assert_eq!(
        sweep_batch(&pool, 30 * DAY, 100).await.expect("sweep"),
        Swept::default()
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_parent_goes_only_after_its_children_and_batches_are_bounded(pool: PgPool) {
    let parent = workflow(&pool, "parent", Some(60), None).await;
    let done_child = workflow(&pool, "child-1", Some(61), Some(parent)).await;
    let recent_child = workflow(&pool, "child-2", Some(1), Some(parent)).await;
    let others = [
        workflow(&pool, "a", Some(50), None).await,
        workflow(&pool, "b", Some(50), None).await,
        workflow(&pool, "c", Some(50), None).await,
    ];

    // Batches of 2: oldest first, never the parent while a child is left.
    let first = sweep_batch(&pool, 30 * DAY, 2).await.expect("sweep");
    assert_eq!(first.workflows, 2);
    assert!(first.full(2));
    assert!(!exists(&pool, done_child).await, "the oldest goes first");
    let second = sweep_batch(&pool, 30 * DAY, 2).await.expect("sweep");
    let third = sweep_batch(&pool, 30 * DAY, 2).await.expect("sweep");
    assert_eq!(second.workflows + third.workflows, 2);
    for id in others {
        assert!(!exists(&pool, id).await);
    }
    // The recent child is kept, so its parent is too.
    assert!(exists(&pool, parent).await);
    assert!(exists(&pool, recent_child).await);

    // Once the child ages out, both go: the child first, then the parent.
    sqlx::query("UPDATE floe.workflows SET finished_at = now() - interval '31 days' WHERE id = $1")
        .bind(recent_child)
        .execute(&pool)
        .await
        .expect("age");
    let mut removed = 0;
    for _ in 0..3 {
        removed += sweep_batch(&pool, 30 * DAY, 10)
            .await
            .expect("sweep")
            .workflows;
    }
    assert_eq!(removed, 2);
    assert!(!exists(&pool, parent).await);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn removes_only_old_dead_jobs(pool: PgPool) {
    sqlx::raw_sql(
        "SELECT floe.enqueue('floe.noop', '{}') FROM generate_series(1, 4);
         UPDATE floe.jobs SET state = 'dead', last_error = 'boom', attempted_at = now() - interval '40 days'
          WHERE id IN (SELECT id FROM floe.jobs ORDER BY id LIMIT 2);
         UPDATE floe.jobs SET state = 'dead', last_error = 'boom', attempted_at = now() - interval '1 day'
          WHERE id = (SELECT max(id) FROM floe.jobs);",
    )
    .execute(&pool)
    .await
    .expect("fixtures");

    let swept = sweep_batch(&pool, 30 * DAY, 100).await.expect("sweep");
    assert_eq!(swept.dead_jobs, 2);
    let left: Vec<(String,)> = sqlx::query_as("SELECT state::text FROM floe.jobs ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("jobs");
    // The recent dead job and the available one stay.
    assert_eq!(left, [("available".to_owned(),), ("dead".to_owned(),)]);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn concurrent_sweeps_split_the_work(pool: PgPool) {
    for i in 0..40 {
        workflow(&pool, &format!("w{i}"), Some(45), None).await;
    }
    let (a, b) = tokio::join!(
        sweep_batch(&pool, 30 * DAY, 25),
        sweep_batch(&pool, 30 * DAY, 25)
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a.workflows + b.workflows, 40, "{a:?} {b:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.workflows")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

/// A ledger row of each kind for `workflow` (`None`: an LLM call made
/// outside any workflow), made `days_ago` days ago (also its step and seq,
/// which the ledgers' unique keys include).
async fn ledger_rows(pool: &PgPool, workflow: Option<Uuid>, days_ago: i32) {
    sqlx::query(
        "INSERT INTO floe.llm_calls (workflow_id, activity_id, attempt, step, agent, model, request,
                                     response, status, latency_ms, created_at)
         VALUES ($1, 'a1', 1, $2, 'greeter', 'm', '{}', '{}', 'ok', 5, now() - make_interval(days => $2))",
    )
    .bind(workflow)
    .bind(days_ago)
    .execute(pool)
    .await
    .expect("llm call");
    if let Some(id) = workflow {
        sqlx::query(
            "INSERT INTO floe.tool_calls (workflow_id, activity_id, attempt, seq, agent, tool, arguments,
                                          status, result, latency_ms, created_at)
             VALUES ($1, 'a1', 1, $2, 'greeter', 'lookup', '{}', 'ok', '{}', 5, now() - make_interval(days => $2))",
        )
        .bind(id)
        .bind(days_ago)
        .execute(pool)
        .await
        .expect("tool call");
    }
}

/// `(llm_calls, tool_calls)` rows of `workflow` (`None`: without one).
async fn ledger(pool: &PgPool, workflow: Option<Uuid>) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM floe.llm_calls WHERE workflow_id IS NOT DISTINCT FROM $1),
                (SELECT count(*) FROM floe.tool_calls WHERE workflow_id IS NOT DISTINCT FROM $1)",
    )
    .bind(workflow)
    .fetch_one(pool)
    .await
    .expect("ledger")
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn ledger_rows_go_once_old_and_their_workflow_is_gone(pool: PgPool) {
    use floe_engine::retention::sweep_ledger_batch;
    let open = workflow(&pool, "open", None, None).await;
    let finished = workflow(&pool, "finished", Some(200), None).await;
    let removed = Uuid::now_v7();
    // Old rows: of an open workflow (its retries replay them), of a finished
    // one still kept (the inspector shows them), of one retention removed,
    // and of no workflow. Then a recent row of the removed one.
    for w in [Some(open), Some(finished), Some(removed), None] {
        ledger_rows(&pool, w, 120).await;
    }
    ledger_rows(&pool, Some(removed), 10).await;

    let swept = sweep_ledger_batch(&pool, 90 * DAY, 100)
        .await
        .expect("sweep");
    assert_eq!((swept.llm_calls, swept.tool_calls), (2, 1));
    assert_eq!((swept.workflows, swept.dead_jobs), (0, 0), "ledgers only");
    assert_eq!(ledger(&pool, Some(open)).await, (1, 1));
    assert_eq!(ledger(&pool, Some(finished)).await, (1, 1));
    assert_eq!(ledger(&pool, Some(removed)).await, (1, 1), "the recent row");
    assert_eq!(ledger(&pool, None).await, (0, 0));

    // Once retention removes the finished workflow, its old rows go too;
    // the open one's never do.
    assert_eq!(
        sweep_batch(&pool, 30 * DAY, 100)
            .await
            .expect("sweep")
            .workflows,
        1
    );
    let swept = sweep_ledger_batch(&pool, 90 * DAY, 100)
        .await
        .expect("sweep");
    assert_eq!((swept.llm_calls, swept.tool_calls), (1, 1));
    assert_eq!(ledger(&pool, Some(finished)).await, (0, 0));
    assert_eq!(ledger(&pool, Some(open)).await, (1, 1));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn ledger_batches_are_bounded_oldest_first(pool: PgPool) {
    use floe_engine::retention::sweep_ledger_batch;
    let gone = Uuid::now_v7();
    for days in [100, 300, 200] {
        ledger_rows(&pool, Some(gone), days).await;
    }
    let first = sweep_ledger_batch(&pool, 90 * DAY, 2).await.expect("sweep");
    assert_eq!((first.llm_calls, first.tool_calls), (2, 2));
    assert!(first.full(2));
    let left: Vec<i32> = sqlx::query_scalar(
        "SELECT extract(day FROM now() - created_at)::int FROM floe.llm_calls
         UNION ALL SELECT extract(day FROM now() - created_at)::int FROM floe.tool_calls",
    )
    .fetch_all(&pool)
    .await
    .expect("left");
    assert_eq!(left, [100, 100], "the two oldest of each went first");
    let second = sweep_ledger_batch(&pool, 90 * DAY, 2).await.expect("sweep");
    assert!(!second.full(2));
    assert_eq!((second.llm_calls, second.tool_calls), (1, 1));
}
