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
    // Keep one hour (1/24 day), sweep every second.
    let worker = Testbed::start(
        &url,
        &["--retention-days", "0.0416667", "--retention-every", "1"],
    );
    let gone = eventually(Duration::from_secs(20), || async {
        !exists(&pool, old).await
    })
    .await;
    assert!(gone, "the old one was not removed:\n{}", worker.log());
    assert!(exists(&pool, recent).await, "the recent one is kept");
    worker.stop();
}

#[tokio::test]
async fn retention_zero_keeps_everything() {
    let (url, pool) = database().await;
    let old = finished(&pool, "old", "400 days").await;
    let worker = Testbed::start(&url, &["--retention-days", "0", "--retention-every", "1"]);
    let log = worker.log();
    // Give it the time of a few sweeps.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(exists(&pool, old).await, "kept forever:\n{log}");
    let log = worker.stop();
    assert!(log.contains("retention off"), "{log}");
}
