//! Many workflows advanced in one transaction (`advance_many`), against real
//! PostgreSQL: each gets its own events applied once and in order, a bad one
//! fails alone, and an activity result is recorded and applied once however
//! often it is handed in.

use floe_engine::workflow::advance::advance_many;
use floe_engine::workflow::store::{self, ActivityResult};
use floe_engine::workflow::{
    ActivityPolicy, Command, Ctx, Event, Registry, Status, Transition, Workflow,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

mod common;

/// Counts signals; completes on `done`.
struct Tally;

impl Workflow for Tally {
    const KIND: &'static str = "t.tally";
    type Input = Value;
    type State = Vec<String>;
    /// `{"name": ..., "payload": ...}`: the payload is the tag.
    type Signal = Value;

    fn state_name(_: &Vec<String>) -> String {
        "tallying".into()
    }

    fn apply(
        state: Option<Vec<String>>,
        event: Event<Value, Value>,
        _: &Ctx,
    ) -> Result<Transition<Vec<String>>, String> {
        let mut seen = state.unwrap_or_default();
        match event {
            Event::Start(_) => Ok(Transition::to(seen)),
            Event::Signal(s) => {
                let tag = s["payload"].as_str().unwrap_or("?").to_owned();
                let done = tag == "done";
                seen.push(tag);
                let t = Transition::to(seen.clone());
                Ok(if done {
                    t.then(Command::Complete {
                        output: json!(seen),
                    })
                } else {
                    t
                })
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Runs one activity and completes with its result.
struct Once;

impl Workflow for Once {
    const KIND: &'static str = "t.once";
    type Input = Value;
    type State = String;
    type Signal = Value;

    fn state_name(s: &String) -> String {
        s.clone()
    }

    fn apply(
        _: Option<String>,
        event: Event<Value, Value>,
        _: &Ctx,
    ) -> Result<Transition<String>, String> {
        match event {
            Event::Start(_) => Ok(Transition::to("working".into()).then(Command::RunActivity {
                id: "a1".into(),
                name: "t.work".into(),
                input: json!({}),
                policy: ActivityPolicy::default(),
            })),
            Event::Activity { result, .. } => {
                Ok(Transition::to("done".into()).then(Command::Complete {
                    output: result.unwrap_or_else(|e| json!({ "error": e })),
                }))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<Tally>().register::<Once>();
    r
}

async fn start(pool: &PgPool, kind: &str, key: &str) -> Uuid {
    let mut conn = pool.acquire().await.expect("conn");
    store::start(&mut conn, kind, key, &json!({}), 1, None)
        .await
        .expect("start")
        .id
}

async fn signal(pool: &PgPool, id: Uuid, tag: &str) {
    let mut conn = pool.acquire().await.expect("conn");
    store::signal(&mut conn, id, "tag", &json!(tag), None)
        .await
        .expect("signal");
}

async fn row(pool: &PgPool, id: Uuid) -> store::WorkflowRow {
    store::get(pool, id).await.expect("get").expect("exists")
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn one_transaction_applies_each_workflow_s_own_events_in_order(pool: PgPool) {
    let registry = registry();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(start(&pool, "t.tally", &format!("k{i}")).await);
    }
    for (i, id) in ids.iter().enumerate() {
        for n in 0..=i {
            signal(&pool, *id, &format!("{i}.{n}")).await;
        }
    }
    // A kind this build does not know, and an id nobody started.
    let stranger = start(&pool, "t.unknown", "x").await;
    let nobody = Uuid::now_v7();
    let mut asked = ids.clone();
    asked.extend([stranger, nobody]);

    let done = advance_many(&pool, &registry, &asked, &[])
        .await
        .expect("advance");

    for (i, id) in ids.iter().enumerate() {
        let r = row(&pool, *id).await;
        let want: Vec<String> = (0..=i).map(|n| format!("{i}.{n}")).collect();
        assert_eq!(
            r.context,
            json!(want),
            "workflow {i} got its own events in order"
        );
        assert_eq!(
            (r.status, r.version, r.applied_seq),
            (Status::Waiting, i as i64 + 2, i as i64 + 2)
        );
        let applied = done.iter().find(|(d, _)| d == id).expect("reported").1;
        assert_eq!(applied.applied, i + 2);
    }
    let failed = row(&pool, stranger).await;
    assert_eq!(failed.status, Status::Failed);
    assert!(failed.error.unwrap_or_default().contains("no definition"));
    let missing = done.iter().find(|(d, _)| *d == nobody).expect("reported").1;
    assert_eq!(missing.status, None);

    // One transaction wrote all the history: its rows share its start time.
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT applied_at) FROM floe.history")
            .fetch_one(&pool)
            .await
            .expect("history");
    assert_eq!(transactions, 1);

    // Nothing left to apply: a second pass changes nothing.
    let again = advance_many(&pool, &registry, &asked, &[])
        .await
        .expect("advance");
    assert!(again.iter().all(|(_, a)| a.applied == 0));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn an_activity_result_handed_in_twice_is_recorded_and_applied_once(pool: PgPool) {
    let registry = registry();
    let id = start(&pool, "t.once", "k").await;
    advance_many(&pool, &registry, &[id], &[])
        .await
        .expect("start applied");
    assert_eq!(row(&pool, id).await.status, Status::Running);

    let result = ActivityResult {
        workflow_id: id,
        activity_id: "a1".into(),
        attempts: 1,
        result: Ok(json!({ "answer": 42 })),
    };
    // Twice in one batch, then again later (a repeated execution).
    let twice = [result.clone(), result.clone()];
    advance_many(&pool, &registry, &[], &twice)
        .await
        .expect("record");
    let late = ActivityResult {
        result: Ok(json!({ "answer": 0 })),
        attempts: 2,
        ..result
    };
    advance_many(&pool, &registry, &[], &[late])
        .await
        .expect("record again");

    let r = row(&pool, id).await;
    assert_eq!(r.status, Status::Completed);
    assert_eq!(r.output, Some(json!({ "answer": 42 })));
    let counts: (i64, i64, i32) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM floe.inbox WHERE event = 'activity'),
                (SELECT count(*) FROM floe.history WHERE event = 'activity'),
                (SELECT attempts FROM floe.activities WHERE activity_id = 'a1')",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(counts, (1, 1, 1));
}

/// A kind people wait on: its jobs go first. Starts an activity and sets a
/// deadline that has already passed.
struct Urgent;

impl Workflow for Urgent {
    const KIND: &'static str = "t.urgent";
    const PRIORITY: i16 = -7;
    type Input = Value;
    type State = String;
    type Signal = Value;

    fn state_name(s: &String) -> String {
        s.clone()
    }

    fn apply(
        state: Option<String>,
        event: Event<Value, Value>,
        ctx: &Ctx,
    ) -> Result<Transition<String>, String> {
        match (state, event) {
            (None, Event::Start(_)) => Ok(Transition::to("working".into())
                .then(Command::RunActivity {
                    id: "a1".into(),
                    name: "t.work".into(),
                    input: json!({}),
                    policy: ActivityPolicy::default(),
                })
                .then(Command::SetDeadline {
                    at: ctx.now - time::Duration::seconds(1),
                    reason: "late".into(),
                })),
            (Some(s), _) => Ok(Transition::to(s)),
            (None, other) => Err(format!("unexpected {other:?}")),
        }
    }
}

/// (kind, priority) of every job, in id order.
async fn job_priorities(pool: &PgPool) -> Vec<(String, i16)> {
    sqlx::query_as("SELECT kind, priority FROM floe.jobs ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("jobs")
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_kind_s_priority_goes_with_every_job_of_its_workflows(pool: PgPool) {
    let mut registry = registry();
    registry.register::<Urgent>();
    store::register_definitions(&pool, &registry, "test")
        .await
        .expect("register");
    let clear = || sqlx::query("DELETE FROM floe.jobs").execute(&pool);

    // Start (SQL): the advance job.
    let urgent = start(&pool, "t.urgent", "u").await;
    let plain = start(&pool, "t.tally", "p").await;
    assert_eq!(
        job_priorities(&pool).await,
        [("floe.advance".into(), -7), ("floe.advance".into(), 0)]
    );
    clear().await.expect("clear");

    // The transition (Rust): the activity's job.
    advance_many(&pool, &registry, &[urgent, plain], &[])
        .await
        .expect("advance");
    assert_eq!(job_priorities(&pool).await, [("floe.activity".into(), -7)]);
    clear().await.expect("clear");

    // The timer (SQL): its advance job.
    let fired = store::fire_timers(&pool, 10).await.expect("fire");
    assert_eq!(fired.len(), 1);
    assert_eq!(job_priorities(&pool).await, [("floe.advance".into(), -7)]);
    clear().await.expect("clear");

    // A signal (SQL): the advance job.
    signal(&pool, urgent, "x").await;
    signal(&pool, plain, "x").await;
    assert_eq!(
        job_priorities(&pool).await,
        [("floe.advance".into(), -7), ("floe.advance".into(), 0)]
    );

    // A claim takes the urgent one first, though it is not the oldest.
    sqlx::query("UPDATE floe.jobs SET run_at = run_at + interval '1 second' WHERE priority < 0")
        .execute(&pool)
        .await
        .expect("younger");
    let claimed = floe_engine::queue::store::claim(
        &pool,
        "default",
        &["floe.advance".to_owned()],
        "me",
        1,
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("claim");
    assert_eq!(claimed[0].payload["workflow_id"], json!(urgent));
}

/// [`common::notified_until_marker`], payloads read as JSON where they are.
async fn notified(
    pool: &PgPool,
    listener: &mut sqlx::postgres::PgListener,
) -> Vec<(String, Value)> {
    common::notified_until_marker(pool, listener)
        .await
        .into_iter()
        .map(|(c, p)| {
            let payload = serde_json::from_str(&p).unwrap_or(Value::String(p));
            (c, payload)
        })
        .collect()
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_transition_s_changes_and_wake_ups_are_notified_once_it_commits(pool: PgPool) {
    let registry = registry();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .expect("listener");
    listener
        .listen_all([
            floe_engine::workflow::CHANNEL_WORKFLOWS,
            "floe_jobs_available",
            "floe_test_marker",
        ])
        .await
        .expect("listen");
    let id = start(&pool, "t.once", "n").await;
    assert_eq!(
        notified(&pool, &mut listener).await,
        [("floe_jobs_available".to_owned(), json!("default"))],
        "the start's advance job"
    );

    // The start is applied: the activity's job wakes the workers, and the
    // change reaches the API's listener.
    advance_many(&pool, &registry, &[id], &[])
        .await
        .expect("advance");
    let mut got = notified(&pool, &mut listener).await;
    got.sort_by_key(|(c, _)| c.clone());
    assert_eq!(
        got,
        [
            ("floe_jobs_available".to_owned(), json!("default")),
            (
                "floe_workflows".to_owned(),
                json!({ "id": id, "kind": "t.once", "version": 1, "status": "running" })
            ),
        ]
    );

    // Its result completes it: a change, and no job to wake anyone for.
    let result = ActivityResult {
        workflow_id: id,
        activity_id: "a1".into(),
        attempts: 1,
        result: Ok(json!({ "answer": 42 })),
    };
    advance_many(&pool, &registry, &[], &[result])
        .await
        .expect("record");
    assert_eq!(
        notified(&pool, &mut listener).await,
        [(
            "floe_workflows".to_owned(),
            json!({ "id": id, "kind": "t.once", "version": 2, "status": "completed" })
        )]
    );
}
