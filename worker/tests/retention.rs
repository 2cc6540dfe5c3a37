//! The retention sweeper runs in every worker process, with its settings.

mod common;

use std::time::Duration;

use common::{Testbed, database, eventually};
use floe_engine::workflow::store;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// A workflow that finished `ago` ago.
async fn finished(pool: &PgPool, key: &str, ago: &str) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let id = store::start(&mut tx, "test.none", key, &json!({}), 1, None)
        .await
        .expect("start")
        .id;
    // Finished before any worker looked at it: no advance job left to run.
    sqlx::query(
        "UPDATE floe.workflows SET status = 'completed', finished_at = now() - $2::interval WHERE id = $1;",
    )
    .bind(id)
    .bind(ago)
    .execute(&mut *tx)
    .await
    .expect("finish");
    sqlx::query("DELETE FROM floe.jobs WHERE unique_key = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .expect("no advance");
    tx.commit().await.expect("commit");
    id
}

/// An LLM call of `workflow`, made `ago` ago.
async fn llm_call(pool: &PgPool, workflow: Uuid, ago: &str) {
    sqlx::query(
        "INSERT INTO floe.llm_calls (workflow_id, activity_id, attempt, step, agent, model, request,
                                     response, status, latency_ms, created_at)
         VALUES ($1, 'a1', 1, 0, 'greeter', 'm', '{}', '{}', 'ok', 5, now() - $2::interval)",
    )
    .bind(workflow)
    .bind(ago)
    .execute(pool)
    .await
    .expect("llm call");
}

async fn llm_calls(pool: &PgPool, workflow: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM floe.llm_calls WHERE workflow_id = $1")
        .bind(workflow)
        .fetch_one(pool)
        .await
        .expect("count")
}

async fn exists(pool: &PgPool, id: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM floe.workflows WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("exists")
}

#[tokio::test]
async fn a_worker_removes_finished_workflows_older_than_the_setting() {
    let (url, pool) = database().await;
    let old = finished(&pool, "old", "2 hours").await;
    let recent = finished(&pool, "recent", "0 seconds").await;
    llm_call(&pool, old, "3 hours").await;
    llm_call(&pool, recent, "3 hours").await;
    // Keep one hour (1/24 day) of each, sweep every second.
    let worker = Testbed::start(
        &url,
        &[
            "--retention-days",
            "0.0416667",
            "--retention-ledger-days",
            "0.0416667",
            "--retention-every",
            "1",
        ],
    );
    let gone = eventually(Duration::from_secs(20), || async {
        !exists(&pool, old).await && llm_calls(&pool, old).await == 0
    })
    .await;
    assert!(
        gone,
        "the old one or its ledger row was not removed:\n{}",
        worker.log()
    );
    assert!(exists(&pool, recent).await, "the recent one is kept");
    assert_eq!(
        llm_calls(&pool, recent).await,
        1,
        "an old ledger row of a kept workflow stays with it"
    );
    worker.stop();
}

#[tokio::test]
async fn retention_zero_keeps_everything() {
    let (url, pool) = database().await;
    let old = finished(&pool, "old", "400 days").await;
    let gone = Uuid::now_v7();
    llm_call(&pool, gone, "400 days").await;
    let worker = Testbed::start(
        &url,
        &[
            "--retention-days",
            "0",
            "--retention-ledger-days",
            "0",
            "--retention-every",
            "1",
        ],
    );
    let log = worker.log();
    // Give it the time of a few sweeps.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(exists(&pool, old).await, "kept forever:\n{log}");
    assert_eq!(llm_calls(&pool, gone).await, 1, "kept forever:\n{log}");
    let log = worker.stop();
    assert!(log.contains("retention off"), "{log}");
}
