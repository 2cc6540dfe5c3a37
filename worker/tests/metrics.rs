//! `GET /metrics` of a real worker process: after it ran known jobs, a
//! workflow with activities, a retried activity and a timer, the counters
//! moved by exactly those amounts and the text is valid Prometheus
//! exposition.

mod common;

use std::time::Duration;

use common::{Testbed, database, eventually, free_addr};
use floe_engine::queue::{NewJob, store as queue_store};
use floe_engine::testing::{Exposition, http_get, wait_for_status};
use floe_engine::workflow::store;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

async fn start(pool: &PgPool, kind: &str, key: &str, input: Value) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let started = store::start(&mut tx, kind, key, &input, 1, None)
        .await
        .expect("start");
    tx.commit().await.expect("commit");
    started.id
}

async fn state(pool: &PgPool, id: Uuid) -> String {
    let w = store::get(pool, id).await.expect("get").expect("workflow");
    format!("{}/{}", w.status, w.state)
}

async fn scrape(addr: &str) -> Exposition {
    let text = http_get(addr, "/metrics").await.expect("GET /metrics");
    Exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test]
async fn a_worker_counts_its_jobs_workflows_activities_and_timers() {
    let (url, pool) = database().await;
    let addr = free_addr();
    let worker = Testbed::start(
        &url,
        &["--health-listen", &addr, "--metrics-refresh-ms", "100"],
    );
    assert!(
        wait_for_status(&addr, "/readyz", 200, WAIT).await,
        "{}",
        worker.log()
    );

    // 20 jobs that succeed; one that fails once and then succeeds; one that
    // dies at once.
    let mut jobs: Vec<NewJob> = (0..20)
        .map(|i| NewJob::new("test.record", json!({ "i": i })))
        .collect();
    jobs.push(NewJob::new(
        "test.fail",
        json!({ "times": 1, "retry_after_ms": 10 }),
    ));
    jobs.push(NewJob::new(
        "test.fail",
        json!({ "times": 5, "permanent": true }),
    ));
    queue_store::enqueue_many(&pool, &jobs)
        .await
        .expect("enqueue");

    // A pipeline (3 signals, 3 activities), an activity that fails once, a
    // timer 300 ms out.
    let pipeline = start(&pool, "test.pipeline", "p", json!({})).await;
    let once = start(
        &pool,
        "test.once",
        "o",
        json!({ "activity": "test.slow", "input": { "fail_times": 1 } }),
    )
    .await;
    let sleeper = start(&pool, "test.sleeper", "s", json!({ "after_ms": 300 })).await;
    for round in 1..=3 {
        let waiting = format!("waiting/await_s{round}");
        assert!(
            eventually(WAIT, || async { state(&pool, pipeline).await == waiting }).await,
            "pipeline never reached {waiting}: {}",
            state(&pool, pipeline).await
        );
        let mut tx = pool.begin().await.expect("begin");
        store::signal(&mut tx, pipeline, &format!("s{round}"), &json!({}), None)
            .await
            .expect("signal");
        tx.commit().await.expect("commit");
    }
    for id in [pipeline, once, sleeper] {
        assert!(
            eventually(WAIT, || async {
                state(&pool, id).await.starts_with("completed/")
            })
            .await,
            "{id} did not complete: {}\n{}",
            state(&pool, id).await,
            worker.log()
        );
    }
    // Only the dead job is left; the gauges catch up within a refresh.
    let settled = eventually(WAIT, || async {
        let m = scrape(&addr).await;
        m.sum(
            "floe_queue_jobs",
            &[("queue", "default"), ("state", "dead")],
        ) == 1.0
            && m.sum("floe_queue_jobs", &[("state", "available")]) == 0.0
            && m.sum("floe_queue_jobs", &[("state", "running")]) == 0.0
            && m.sum("floe_workflows_open", &[]) == 0.0
    })
    .await;
    assert!(
        settled,
        "gauges never settled:\n{}",
        http_get(&addr, "/metrics").await.unwrap_or_default()
    );

    let m = scrape(&addr).await;
    let at = |name: &str, labels: &[(&str, &str)]| m.sum(name, labels);
    let record = [("queue", "default"), ("kind", "test.record")];
    assert_eq!(at("floe_jobs_claimed_total", &record), 20.0);
    assert_eq!(at("floe_jobs_completed_total", &record), 20.0);
    assert_eq!(at("floe_jobs_failed_total", &record), 0.0);
    assert_eq!(at("floe_job_wait_seconds_count", &record), 20.0);
    assert_eq!(at("floe_job_run_seconds_count", &record), 20.0);
    let fail = [("kind", "test.fail")];
    assert_eq!(at("floe_jobs_claimed_total", &fail), 3.0);
    assert_eq!(at("floe_jobs_completed_total", &fail), 1.0);
    assert_eq!(at("floe_jobs_failed_total", &fail), 1.0);
    assert_eq!(at("floe_jobs_dead_total", &fail), 1.0);
    assert_eq!(m.types["floe_jobs_claimed_total"], "counter");
    assert_eq!(m.types["floe_job_run_seconds"], "histogram");
    assert_eq!(m.types["floe_queue_jobs"], "gauge");

    // Activity jobs: 3 echoes, and test.slow's two attempts.
    let activity = [("kind", "floe.activity")];
    assert_eq!(at("floe_jobs_claimed_total", &activity), 5.0);
    assert_eq!(at("floe_jobs_completed_total", &activity), 4.0);
    assert_eq!(at("floe_jobs_failed_total", &activity), 1.0);
    assert!(at("floe_jobs_completed_total", &[("kind", "floe.advance")]) >= 1.0);

    // Transitions by workflow kind and event.
    let transitions = |kind: &str, event: &str| {
        at(
            "floe_workflow_transitions_total",
            &[("kind", kind), ("event", event)],
        )
    };
    assert_eq!(transitions("test.pipeline", "start"), 1.0);
    assert_eq!(transitions("test.pipeline", "signal"), 3.0);
    assert_eq!(transitions("test.pipeline", "activity"), 3.0);
    assert_eq!(transitions("test.once", "activity"), 1.0);
    assert_eq!(transitions("test.sleeper", "timer"), 1.0);
    for kind in ["test.pipeline", "test.once", "test.sleeper"] {
        let finished = [("kind", kind), ("status", "completed")];
        assert_eq!(
            at("floe_workflows_finished_total", &finished),
            1.0,
            "{kind}"
        );
    }

    // Activities by name: the retry, the final results, the attempts' times.
    assert_eq!(
        at("floe_activity_retries_total", &[("activity", "test.slow")]),
        1.0
    );
    assert_eq!(
        at("floe_activity_retries_total", &[("activity", "test.echo")]),
        0.0
    );
    let finished = |name: &str| {
        at(
            "floe_activities_finished_total",
            &[("activity", name), ("outcome", "completed")],
        )
    };
    assert_eq!(finished("test.echo"), 3.0);
    assert_eq!(finished("test.slow"), 1.0);
    assert_eq!(
        at(
            "floe_activity_run_seconds_count",
            &[("activity", "test.slow")]
        ),
        2.0
    );

    // The timer fired once, a little after its deadline.
    let sleeper = [("kind", "test.sleeper")];
    assert_eq!(at("floe_timer_lateness_seconds_count", &sleeper), 1.0);
    let late = at("floe_timer_lateness_seconds_sum", &sleeper);
    assert!((0.0..5.0).contains(&late), "lateness {late}");

    // No label carries an id.
    for (name, labels, _) in &m.samples {
        for (key, value) in labels.iter().filter(|(k, _)| *k != "le") {
            assert!(
                value.parse::<Uuid>().is_err() && value.parse::<i64>().map_or(true, |n| n < 1000),
                "{name} has an id-like label {key}={value}"
            );
        }
    }
    worker.stop();
}
