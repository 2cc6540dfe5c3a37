//! Durable workflows with real worker processes and real PostgreSQL.

mod common;

use std::time::Duration;

use common::{Testbed, database, eventually, scalar};
use floe_engine::workflow::advance::advance;
use floe_engine::workflow::replay::replay;
use floe_engine::workflow::store::{self, Delivered};
use floe_engine::workflow::{Ctx, Event, Registry, Status, Transition, Workflow};
use floe_worker::testbed::{self, Pipeline, PipelineSignal, PipelineState};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

async fn start(pool: &PgPool, kind: &str, key: &str, input: Value) -> store::Started {
    let mut tx = pool.begin().await.expect("begin");
    let started = store::start(&mut tx, kind, key, &input, 1, None)
        .await
        .expect("start");
    tx.commit().await.expect("commit");
    started
}

async fn signal(
    pool: &PgPool,
    id: Uuid,
    name: &str,
    payload: Value,
    key: Option<&str>,
) -> Delivered {
    let mut tx = pool.begin().await.expect("begin");
    let d = store::signal(&mut tx, id, name, &payload, key)
        .await
        .expect("signal");
    tx.commit().await.expect("commit");
    d
}

async fn status(pool: &PgPool, id: Uuid) -> Option<Status> {
    store::get(pool, id).await.expect("get").map(|w| w.status)
}

async fn finished(pool: &PgPool, ids: &[Uuid], timeout: Duration) -> bool {
    eventually(timeout, || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.workflows WHERE id = ANY($1) AND status IN ('running', 'waiting')")
            .bind(ids)
            .fetch_one(pool)
            .await
            .expect("count");
        open == 0
    })
    .await
}

#[tokio::test]
async fn two_hundred_concurrent_signals_are_applied_once_each_in_inbox_order() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &[]);
    let id = start(&pool, "test.counter", "c1", json!({})).await.id;
    let mut senders = Vec::new();
    for task in 0..10 {
        let pool = pool.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..20 {
                signal(&pool, id, "add", json!({ "tag": task * 100 + i }), None).await;
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    signal(&pool, id, "finish", json!(null), None).await;
    assert!(
        finished(&pool, &[id], Duration::from_secs(60)).await,
        "{}",
        worker.log()
    );
    let row = store::get(&pool, id).await.expect("get").expect("row");
    assert_eq!(row.status, Status::Completed);
    let tags: Vec<i64> =
        serde_json::from_value(row.output.expect("output")["tags"].clone()).expect("tags");
    // The inbox order, as recorded in the history.
    let inbox_order: Vec<i64> = sqlx::query_scalar(
        "SELECT (payload->>'tag')::int8 FROM floe.history WHERE workflow_id = $1 AND event = 'signal' AND name = 'add' ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("history");
    assert_eq!(tags.len(), 200, "each signal applied once");
    assert_eq!(tags, inbox_order, "applied in inbox order");
    let mut unique = tags.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 200);
    // Each sender's own signals kept their order.
    for task in 0..10 {
        let mine: Vec<i64> = tags.iter().copied().filter(|t| t / 100 == task).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "task {task}: {mine:?}"
        );
    }
    worker.stop();
}

#[tokio::test]
async fn starting_twice_and_a_keyed_signal_twice_take_effect_once() {
    let (_url, pool) = database().await;
    let first = start(&pool, "test.counter", "same-key", json!({})).await;
    let second = start(&pool, "test.counter", "same-key", json!({})).await;
    assert!(first.created && !second.created);
    assert_eq!(first.id, second.id);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM floe.workflows").await,
        1
    );

    let a = signal(&pool, first.id, "add", json!({ "tag": 1 }), Some("click-1")).await;
    let b = signal(&pool, first.id, "add", json!({ "tag": 1 }), Some("click-1")).await;
    assert!(matches!(a, Delivered::Queued(_)));
    assert_eq!(b, Delivered::Duplicate);
    let registry = testbed::workflows().definitions;
    advance(&pool, &registry, first.id).await.expect("advance");
    let row = store::get(&pool, first.id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(row.context, json!([1]), "the keyed signal applied once");
    // At most one advance job waits per workflow.
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM floe.jobs WHERE kind = 'floe.advance'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_pipeline_runs_its_signals_and_activities_to_the_end_and_replays_to_its_row() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &[]);
    let id = start(&pool, "test.pipeline", "p1", json!({})).await.id;
    for round in 1..=3 {
        let waiting = format!("await_s{round}");
        assert!(
            eventually(Duration::from_secs(30), || async {
                store::get(&pool, id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|w| w.state == waiting && w.status == Status::Waiting)
            })
            .await,
            "never reached {waiting}"
        );
        signal(&pool, id, &format!("s{round}"), json!(null), None).await;
    }
    assert!(finished(&pool, &[id], Duration::from_secs(30)).await);
    assert_eq!(status(&pool, id).await, Some(Status::Completed));
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM floe.history").await,
        7,
        "start, 3 signals, 3 activity results"
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM floe.activities WHERE status = 'completed'"
        )
        .await,
        3
    );

    let registry = testbed::workflows().definitions;
    let report = replay(&pool, &registry, id).await.expect("replay");
    assert_eq!(report.events, 7);
    assert_eq!(report.divergence, None, "{report:?}");

    // The same check as an operator runs it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floe-testbed"))
        .args(["replay", "--id", &id.to_string()])
        .env("DATABASE_URL", floe_engine::testing::expose(&url))
        .output()
        .expect("floe-testbed replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("none diverges"), "{stdout}");

    // A definition that changed its mind about round 2 is caught.
    let mut changed = Registry::new();
    changed.register::<ChangedPipeline>();
    let report = replay(&pool, &changed, id).await.expect("replay");
    let divergence = report.divergence.expect("must diverge");
    // Seq 3 is a1's result: the changed definition moves to round 3 there.
    assert_eq!(divergence.seq, Some(3), "{divergence:?}");
    assert_eq!(divergence.field, "state");
    assert_eq!(divergence.recorded, json!("await_s2"));
    assert_eq!(divergence.replayed, json!("await_s3"));
    worker.stop();
}

/// [`Pipeline`] with round 2 skipped: a deliberately incompatible change.
struct ChangedPipeline;
impl Workflow for ChangedPipeline {
    const KIND: &'static str = "test.pipeline";
    type Input = Value;
    type State = PipelineState;
    type Signal = PipelineSignal;
    fn state_name(state: &PipelineState) -> String {
        Pipeline::state_name(state)
    }
    fn apply(
        state: Option<PipelineState>,
        event: Event<Value, PipelineSignal>,
        ctx: &Ctx,
    ) -> Result<Transition<PipelineState>, String> {
        match (&state, &event) {
            (
                Some(PipelineState::RunActivity { round: 1 }),
                Event::Activity { result: Ok(_), .. },
            ) => Ok(Transition::to(PipelineState::AwaitSignal { round: 3 })),
            _ => Pipeline::apply(state, event, ctx),
        }
    }
}

#[tokio::test]
async fn a_thousand_deadlines_fire_and_a_moved_one_s_stale_timer_does_not() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &["--concurrency", "32"]);
    let mut ids = Vec::new();
    let mut tx = pool.begin().await.expect("begin");
    for i in 0..1000 {
        let after = 1000 + (i * 2) as i64; // 1–3 s ahead
        let s = store::start(
            &mut tx,
            "test.sleeper",
            &format!("s{i}"),
            &json!({ "after_ms": after }),
            1,
            None,
        )
        .await
        .expect("start");
        ids.push(s.id);
    }
    tx.commit().await.expect("commit");
    assert!(
        finished(&pool, &ids, Duration::from_secs(90)).await,
        "{}",
        worker.log()
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM floe.workflows WHERE status = 'completed' AND kind = 'test.sleeper'").await,
        1000
    );
    // Not early: each fired at or after its deadline (the timer event's time).
    let early: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.history h JOIN floe.workflows w ON w.id = h.workflow_id
          WHERE h.event = 'timer' AND h.event_at < w.created_at + ((w.input->>'after_ms')::int * interval '1 ms')",
    )
    .fetch_one(&pool)
    .await
    .expect("early");
    assert_eq!(early, 0);
    worker.stop();
}

#[tokio::test]
async fn a_timer_fired_before_its_deadline_moved_is_dropped_as_stale() {
    let (_url, pool) = database().await;
    let registry = testbed::workflows().definitions;
    let id = start(
        &pool,
        "test.sleeper",
        "stale",
        json!({ "after_ms": 60_000 }),
    )
    .await
    .id;
    advance(&pool, &registry, id).await.expect("start applied");
    // The deadline comes due and fires while a "move" waits in the inbox.
    signal(&pool, id, "move", json!({ "after_ms": 60_000 }), None).await;
    sqlx::query("UPDATE floe.workflows SET deadline = now() - interval '1 ms' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .expect("due");
    assert_eq!(store::fire_due_timers(&pool, 10).await.expect("fire"), 1);
    advance(&pool, &registry, id).await.expect("advance");
    let row = store::get(&pool, id).await.expect("get").expect("row");
    assert_eq!(
        row.status,
        Status::Waiting,
        "still asleep: the timer was for the old deadline"
    );
    assert_eq!(row.deadline_reason.as_deref(), Some("moved"));
    assert!(row.deadline.is_some());
    let notes: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT note FROM floe.history WHERE workflow_id = $1 AND event = 'timer'",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("history");
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].as_deref().is_some_and(|n| n.contains("stale")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn twenty_children_fan_out_and_in_and_cancelling_a_parent_cancels_its_children() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &[]);
    let quick = start(
        &pool,
        "test.fanout",
        "f1",
        json!({ "n": 20, "child_kind": "test.sleeper", "child_input": { "after_ms": 200 } }),
    )
    .await
    .id;
    assert!(
        finished(&pool, &[quick], Duration::from_secs(60)).await,
        "{}",
        worker.log()
    );
    let row = store::get(&pool, quick).await.expect("get").expect("row");
    assert_eq!(row.status, Status::Completed);
    assert_eq!(
        row.output.expect("output").as_object().map(|o| o.len()),
        Some(20),
        "all 20 results gathered"
    );

    let slow = start(
        &pool,
        "test.fanout",
        "f2",
        json!({ "n": 5, "child_kind": "test.sleeper", "child_input": { "after_ms": 3_600_000 } }),
    )
    .await
    .id;
    assert!(
        eventually(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM floe.workflows WHERE parent_id = $1 AND status = 'waiting'",
            )
            .bind(slow)
            .fetch_one(&pool)
            .await
            .is_ok_and(|n| n == 5)
        })
        .await
    );
    let mut tx = pool.begin().await.expect("begin");
    store::cancel(&mut tx, slow, "operator said so")
        .await
        .expect("cancel");
    tx.commit().await.expect("commit");
    assert!(
        eventually(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM floe.workflows WHERE parent_id = $1 AND status = 'cancelled'",
            )
            .bind(slow)
            .fetch_one(&pool)
            .await
            .is_ok_and(|n| n == 5)
        })
        .await,
        "children not cancelled"
    );
    let parent = store::get(&pool, slow).await.expect("get").expect("row");
    assert_eq!(parent.status, Status::Cancelled);
    assert_eq!(parent.error.as_deref(), Some("operator said so"));
    worker.stop();
}

#[tokio::test]
async fn killing_workers_mid_activity_and_mid_transition_loses_nothing_and_doubles_nothing() {
    let (url, pool) = database().await;
    let args = ["--lease-ms", "1500"];
    let mut workers = vec![Testbed::start(&url, &args), Testbed::start(&url, &args)];
    let mut ids = Vec::new();
    for i in 0..100 {
        let input = json!({ "activity": "test.slow", "input": { "ms": 300 + (i % 7) * 100 } });
        ids.push(start(&pool, "test.once", &format!("o{i}"), input).await.id);
    }
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let victim = workers.remove(round % workers.len());
        victim.signal(Signal::SIGKILL);
        drop(victim);
        workers.push(Testbed::start(&url, &args));
    }
    assert!(finished(&pool, &ids, Duration::from_secs(120)).await);
    for worker in workers {
        worker.stop();
    }
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM floe.workflows WHERE status = 'completed'"
        )
        .await,
        100
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM floe.activities WHERE status = 'completed'"
        )
        .await,
        100,
        "one result each"
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM floe.history WHERE event = 'activity'"
        )
        .await,
        100,
        "each result delivered and applied once"
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM floe.history").await,
        200,
        "start + result, once each"
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM floe.jobs").await,
        0,
        "no job left behind"
    );
}

#[tokio::test]
async fn a_worker_dying_in_an_activitys_last_attempt_fails_it_instead_of_stranding_the_workflow() {
    let (url, pool) = database().await;
    let args = ["--lease-ms", "1500"];
    let victim = Testbed::start(&url, &args);
    // One attempt allowed, and it takes a minute: the worker dies during it.
    let input = json!({
        "activity": "test.slow",
        "input": { "ms": 60_000 },
        "policy": { "max_attempts": 1, "backoff_base_ms": 50, "backoff_max_ms": 1_000, "timeout_ms": 120_000 },
    });
    let id = start(&pool, "test.once", "last-attempt", input).await.id;
    let running =
        "SELECT count(*) FROM floe.jobs WHERE kind = 'floe.activity' AND state = 'running'";
    assert!(
        eventually(Duration::from_secs(30), || async {
            scalar(&pool, running).await == 1
        })
        .await,
        "the only attempt started"
    );
    victim.signal(Signal::SIGKILL);
    drop(victim);

    // The lease expires; the spare run records the lost attempt as a failure.
    let worker = Testbed::start(&url, &args);
    assert!(
        finished(&pool, &[id], Duration::from_secs(60)).await,
        "the workflow heard of its activity"
    );
    let row = store::get(&pool, id).await.expect("get").expect("row");
    assert_eq!(row.status, Status::Failed);
    let error = row.error.unwrap_or_default();
    assert!(error.contains("attempt 1 of 1 was lost"), "{error}");
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM floe.activities WHERE status = 'failed' AND attempts = 1"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM floe.jobs").await,
        0,
        "no dead job left behind"
    );
    worker.stop();
}

#[tokio::test]
async fn a_transition_that_fails_fails_only_its_workflow() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &[]);
    // test.sleeper cannot decode this input: recorded on the workflow.
    let bad = start(&pool, "test.sleeper", "bad", json!({ "after_ms": "soon" }))
        .await
        .id;
    let unknown = start(&pool, "test.no-such-kind", "x", json!({})).await.id;
    let good = start(&pool, "test.sleeper", "good", json!({ "after_ms": 100 }))
        .await
        .id;
    assert!(
        finished(&pool, &[bad, unknown, good], Duration::from_secs(30)).await,
        "{}",
        worker.log()
    );
    let bad = store::get(&pool, bad).await.expect("get").expect("row");
    assert_eq!(bad.status, Status::Failed);
    assert!(bad.error.is_some_and(|e| e.contains("does not decode")));
    let unknown = store::get(&pool, unknown).await.expect("get").expect("row");
    assert_eq!(unknown.status, Status::Failed);
    assert!(unknown.error.is_some_and(|e| e.contains("no definition")));
    assert_eq!(status(&pool, good).await, Some(Status::Completed));
    worker.stop();
}

#[tokio::test]
async fn a_signal_the_definition_cannot_take_is_ignored_with_a_note() {
    let (_url, pool) = database().await;
    let registry = testbed::workflows().definitions;
    let id = start(&pool, "test.counter", "c", json!({})).await.id;
    signal(&pool, id, "bogus", json!({ "x": 1 }), None).await;
    signal(&pool, id, "add", json!({ "tag": 7 }), None).await;
    signal(&pool, id, "add", json!({ "tag": "not a number" }), None).await;
    advance(&pool, &registry, id).await.expect("advance");
    let row = store::get(&pool, id).await.expect("get").expect("row");
    assert_eq!(row.status, Status::Waiting, "{row:?}");
    assert_eq!(row.context, json!([7]));
    let history = store::history(&pool, id).await.expect("history");
    let notes: Vec<Option<&str>> = history.iter().map(|h| h.note.as_deref()).collect();
    assert_eq!(notes.len(), 4);
    assert!(
        notes[1].is_some_and(|n| n.starts_with("signal ignored")),
        "{notes:?}"
    );
    assert_eq!(notes[2], None);
    assert!(
        notes[3].is_some_and(|n| n.starts_with("signal ignored")),
        "{notes:?}"
    );
    // The definition itself says so before delivery, for the API.
    let counter = registry.get("test.counter").expect("counter");
    assert!(counter.check_signal("add", &json!({ "tag": 1 })).is_ok());
    assert!(counter.check_signal("bogus", &json!({})).is_err());
    // And replaying that history gives the same row.
    let report = replay(&pool, &registry, id).await.expect("replay");
    assert!(report.divergence.is_none(), "{report:?}");
}
