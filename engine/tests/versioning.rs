//! Definition versions against real PostgreSQL: a row records the version
//! its state was stored under; a newer build upgrades it (lazily on the next
//! event, or ahead of it with `upgrade_open`, which also has a dry run); the
//! replay check compares against the upgraded state; a build older than the
//! row, or one whose upgrade fails, leaves the workflow untouched for a build
//! that can run it.

use floe_engine::workflow::advance::advance_many;
use floe_engine::workflow::replay::replay;
use floe_engine::workflow::store;
use floe_engine::workflow::upgrade::upgrade_open;
use floe_engine::workflow::{Ctx, Event, Registry, Status, Transition, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const KIND: &str = "t.counter";

/// `add` signals with `{n}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "name", content = "payload", rename_all = "snake_case")]
enum Add {
    Add { n: i64 },
}

/// Version 1 keeps `{"count": n}`.
struct V1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Count {
    count: i64,
}

impl Workflow for V1 {
    const KIND: &'static str = KIND;
    const VERSION: i32 = 1;
    type Input = Value;
    type State = Count;
    type Signal = Add;

    fn state_name(_: &Count) -> String {
        "counting".into()
    }

    fn apply(
        state: Option<Count>,
        event: Event<Value, Add>,
        _: &Ctx,
    ) -> Result<Transition<Count>, String> {
        match (state, event) {
            (None, Event::Start(_)) => Ok(Transition::to(Count { count: 0 })),
            (Some(s), Event::Signal(Add::Add { n })) => {
                Ok(Transition::to(Count { count: s.count + n }))
            }
            (_, other) => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Version 2 renamed the field: `{"total": n}`, and says how to get there.
struct V2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Total {
    total: i64,
}

impl Workflow for V2 {
    const KIND: &'static str = KIND;
    const VERSION: i32 = 2;
    // Registered with it; a worker without the kind defers at this priority.
    const PRIORITY: i16 = -3;
    type Input = Value;
    type State = Total;
    type Signal = Add;

    fn state_name(_: &Total) -> String {
        "counting".into()
    }

    fn apply(
        state: Option<Total>,
        event: Event<Value, Add>,
        _: &Ctx,
    ) -> Result<Transition<Total>, String> {
        match (state, event) {
            (None, Event::Start(_)) => Ok(Transition::to(Total { total: 0 })),
            (Some(s), Event::Signal(Add::Add { n })) => {
                Ok(Transition::to(Total { total: s.total + n }))
            }
            (_, other) => Err(format!("unexpected {other:?}")),
        }
    }

    fn query(state: &Total, name: &str) -> Option<Value> {
        (name == "total").then(|| json!(state.total))
    }

    fn upgrade(from_version: i32, state: Value) -> Result<Value, String> {
        match from_version {
            1 => Ok(json!({ "total": state["count"] })),
            other => Err(format!("no upgrade from version {other}")),
        }
    }
}

/// Version 3 forgot to say how to upgrade from 1: the default keeps the
/// JSON, which does not decode.
struct V3Broken;

impl Workflow for V3Broken {
    const KIND: &'static str = KIND;
    const VERSION: i32 = 3;
    type Input = Value;
    type State = Total;
    type Signal = Add;

    fn state_name(_: &Total) -> String {
        "counting".into()
    }

    fn apply(
        state: Option<Total>,
        event: Event<Value, Add>,
        ctx: &Ctx,
    ) -> Result<Transition<Total>, String> {
        V2::apply(state, event, ctx)
    }
}

fn registry<W: Workflow>() -> Registry {
    let mut r = Registry::new();
    r.register::<W>();
    r
}

async fn start(pool: &PgPool, key: &str, version: i32) -> Uuid {
    let mut conn = pool.acquire().await.expect("conn");
    store::start(&mut conn, KIND, key, &json!({}), version, None)
        .await
        .expect("start")
        .id
}

async fn add(pool: &PgPool, id: Uuid, n: i64) {
    let mut conn = pool.acquire().await.expect("conn");
    store::signal(&mut conn, id, "add", &json!({ "n": n }), None)
        .await
        .expect("signal");
}

async fn row(pool: &PgPool, id: Uuid) -> store::WorkflowRow {
    store::get(pool, id).await.expect("get").expect("row")
}

async fn pending(pool: &PgPool, id: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM floe.inbox i JOIN floe.workflows w ON w.id = i.workflow_id
          WHERE i.workflow_id = $1 AND i.seq > w.applied_seq",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("pending")
}

/// The only job about workflow `id` is an advance job a little later.
async fn assert_looked_at_again_later(pool: &PgPool, id: Uuid) {
    let again: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT kind, state::text, run_at > now() FROM floe.jobs WHERE unique_key = $1",
    )
    .bind(id.to_string())
    .fetch_all(pool)
    .await
    .expect("jobs");
    assert_eq!(
        again,
        [("floe.advance".to_owned(), "scheduled".to_owned(), true)]
    );
}

/// A workflow run by version 1 to `{"count": 5}`.
async fn counted_by_v1(pool: &PgPool, key: &str) -> Uuid {
    let id = start(pool, key, 1).await;
    add(pool, id, 2).await;
    add(pool, id, 3).await;
    advance_many(pool, &registry::<V1>(), &[id], &[])
        .await
        .expect("advance");
    let stored = row(pool, id).await;
    assert_eq!(stored.context, json!({ "count": 5 }));
    assert_eq!(stored.definition_version, 1);
    id
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn the_next_event_upgrades_an_older_state_and_says_so(pool: PgPool) {
    let id = counted_by_v1(&pool, "lazy").await;
    let v2 = registry::<V2>();

    // Before the deploy: the new build's replay check agrees with the row
    // (compared as upgraded), and the dry run says it would upgrade.
    let report = replay(&pool, &v2, id).await.expect("replay");
    assert_eq!(report.divergence, None);
    let dry = upgrade_open(&pool, &v2, None, true).await.expect("dry run");
    assert_eq!(dry.len(), 1);
    assert_eq!(
        (dry[0].outcome, dry[0].from_version, dry[0].to_version),
        ("would upgrade", 1, 2)
    );
    assert_eq!(
        row(&pool, id).await.context,
        json!({ "count": 5 }),
        "a dry run writes nothing"
    );

    // After it: the next event is applied to the upgraded state.
    add(&pool, id, 10).await;
    advance_many(&pool, &v2, &[id], &[]).await.expect("advance");
    let upgraded = row(&pool, id).await;
    assert_eq!(upgraded.context, json!({ "total": 15 }));
    assert_eq!(upgraded.definition_version, 2);
    let history = store::history(&pool, id).await.expect("history");
    assert_eq!(
        history.last().and_then(|e| e.note.clone()).as_deref(),
        Some("state upgraded from definition version 1 to 2")
    );
    // And the replay check still agrees, now at version 2.
    assert_eq!(
        replay(&pool, &v2, id).await.expect("replay").divergence,
        None
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn upgrade_open_writes_idle_workflows_ahead_of_their_next_event(pool: PgPool) {
    let idle = counted_by_v1(&pool, "idle").await;
    let v2 = registry::<V2>();
    let done = upgrade_open(&pool, &v2, Some(KIND), false)
        .await
        .expect("upgrade");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].outcome, "upgraded");
    let stored = row(&pool, idle).await;
    assert_eq!(stored.context, json!({ "total": 5 }));
    assert_eq!(stored.definition_version, 2);
    // Queries answer from it; a second run finds nothing left to do.
    let definition = v2.get(KIND).expect("definition");
    assert_eq!(
        definition.query_stored(stored.definition_version, &stored.context, "total"),
        Ok(Some(json!(5)))
    );
    assert!(
        upgrade_open(&pool, &v2, None, false)
            .await
            .expect("again")
            .is_empty()
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn an_idle_older_state_still_answers_queries(pool: PgPool) {
    let id = counted_by_v1(&pool, "query").await;
    let stored = row(&pool, id).await;
    let definition = registry::<V2>();
    let definition = definition.get(KIND).expect("definition");
    assert_eq!(
        definition.query_stored(stored.definition_version, &stored.context, "total"),
        Ok(Some(json!(5)))
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn an_older_build_leaves_a_newer_state_untouched_for_a_newer_worker(pool: PgPool) {
    // Started and run by version 2.
    let id = start(&pool, "newer", 2).await;
    add(&pool, id, 4).await;
    advance_many(&pool, &registry::<V2>(), &[id], &[])
        .await
        .expect("advance");
    assert_eq!(row(&pool, id).await.context, json!({ "total": 4 }));

    // A version-1 worker (mid rolling deploy) gets the next event: it leaves
    // it pending and asks for another look a little later.
    add(&pool, id, 1).await;
    sqlx::query("DELETE FROM floe.jobs")
        .execute(&pool)
        .await
        .expect("clear");
    let done = advance_many(&pool, &registry::<V1>(), &[id], &[])
        .await
        .expect("advance");
    assert_eq!(done[0].1.applied, 0);
    let untouched = row(&pool, id).await;
    assert_eq!(untouched.context, json!({ "total": 4 }));
    assert_eq!(untouched.definition_version, 2);
    assert_eq!(pending(&pool, id).await, 1);
    assert_looked_at_again_later(&pool, id).await;

    // A version-2 worker applies it.
    advance_many(&pool, &registry::<V2>(), &[id], &[])
        .await
        .expect("advance");
    assert_eq!(row(&pool, id).await.context, json!({ "total": 5 }));
    assert_eq!(pending(&pool, id).await, 0);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_failing_upgrade_is_reported_by_the_dry_run_and_changes_nothing(pool: PgPool) {
    let id = counted_by_v1(&pool, "broken").await;
    let broken = registry::<V3Broken>();

    let dry = upgrade_open(&pool, &broken, None, true)
        .await
        .expect("dry run");
    assert_eq!(dry.len(), 1);
    assert!(dry[0].failed());
    assert!(
        dry[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("does not decode"),
        "{dry:?}"
    );
    let report = replay(&pool, &broken, id).await.expect("replay");
    assert!(report.divergence.is_some(), "the replay check flags it too");

    // Deployed anyway: the workflow is not failed, its event waits.
    add(&pool, id, 1).await;
    advance_many(&pool, &broken, &[id], &[])
        .await
        .expect("advance");
    let stored = row(&pool, id).await;
    assert_eq!(stored.status, floe_engine::workflow::Status::Waiting);
    assert_eq!(stored.context, json!({ "count": 5 }));
    assert_eq!(pending(&pool, id).await, 1);

    // The fixed build (version 2 knows the way) carries on.
    advance_many(&pool, &registry::<V2>(), &[id], &[])
        .await
        .expect("advance");
    assert_eq!(row(&pool, id).await.context, json!({ "total": 6 }));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_worker_without_the_kind_leaves_it_for_a_worker_that_registered_it(pool: PgPool) {
    // Another worker (an API process with the onboarding, say) runs this
    // kind and registered it; this one runs other kinds only.
    store::register_definitions(&pool, &registry::<V2>(), "other worker")
        .await
        .expect("register");
    let id = start(&pool, "elsewhere", 2).await;
    add(&pool, id, 4).await;
    sqlx::query("DELETE FROM floe.jobs")
        .execute(&pool)
        .await
        .expect("clear");
    let done = advance_many(&pool, &Registry::new(), &[id], &[])
        .await
        .expect("advance");
    assert_eq!(done[0].1.applied, 0);
    let untouched = row(&pool, id).await;
    assert_eq!(
        (untouched.status, untouched.version, untouched.error),
        (Status::Running, 0, None),
        "not failed, nothing applied"
    );
    assert_eq!(pending(&pool, id).await, 2, "start and signal wait");
    assert_looked_at_again_later(&pool, id).await;
    let priority: i16 = sqlx::query_scalar("SELECT priority FROM floe.jobs WHERE unique_key = $1")
        .bind(id.to_string())
        .fetch_one(&pool)
        .await
        .expect("priority");
    assert_eq!(priority, -3, "the kind's registered priority");

    // The worker that has it applies both.
    advance_many(&pool, &registry::<V2>(), &[id], &[])
        .await
        .expect("advance");
    assert_eq!(row(&pool, id).await.context, json!({ "total": 4 }));
    assert_eq!(pending(&pool, id).await, 0);
}
