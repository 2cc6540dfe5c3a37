//! The SQL control plane (`floe_ops`, migration 20261122000800) against
//! real PostgreSQL: starting, signalling, cancelling and retrying from SQL
//! go the API's way (same rows; advanced by the worker's transaction,
//! `advance_many`), from psql, from an application's transaction and from
//! its triggers; and the views show what they say.

use std::time::Duration;

use floe_engine::queue::{self, NewJob};
use floe_engine::workflow::advance::advance_many;
use floe_engine::workflow::store::{self, ActivityResult, Delivered};
use floe_engine::workflow::{
    ActivityPolicy, Command, Ctx, Event, Registry, Status, Transition, Workflow,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// An order: waits for `pay`, charges (an activity), completes with the
/// charge's result or fails with its error. A `deadline_in_secs` in the
/// input sets a deadline (reason `nudge`) that far from the start.
struct Order;

impl Workflow for Order {
    const KIND: &'static str = "t.order";
    const VERSION: i32 = 3;
    type Input = Value;
    type State = String;
    /// `{"name": ..., "payload": ...}`.
    type Signal = Value;

    fn state_name(state: &String) -> String {
        state.clone()
    }

    fn apply(
        _: Option<String>,
        event: Event<Value, Value>,
        ctx: &Ctx,
    ) -> Result<Transition<String>, String> {
        match event {
            Event::Start(input) => {
                let t = Transition::to("awaiting_payment".to_owned());
                Ok(match input["deadline_in_secs"].as_i64() {
                    Some(secs) => t.then(Command::SetDeadline {
                        at: ctx.now + time::Duration::seconds(secs),
                        reason: "nudge".into(),
                    }),
                    None => t,
                })
            }
            Event::Signal(s) if s["name"] == "pay" => Ok(Transition::to("charging".to_owned())
                .then(Command::RunActivity {
                    id: "charge".into(),
                    name: "t.charge".into(),
                    input: s["payload"].clone(),
                    policy: ActivityPolicy {
                        max_attempts: 3,
                        ..ActivityPolicy::default()
                    },
                })),
            Event::Signal(s) => Ok(Transition::to(format!(
                "got_{}",
                s["name"].as_str().unwrap_or("?")
            ))),
            Event::Activity { result: Ok(v), .. } => {
                Ok(Transition::to("paid".to_owned()).then(Command::Complete { output: v }))
            }
            Event::Activity { result: Err(e), .. } => {
                Ok(Transition::to("charge_failed".to_owned()).then(Command::Fail { error: e }))
            }
            Event::Timer { reason } => Ok(Transition::to(format!("timer_{reason}"))),
            Event::Child { .. } => Err("no children".into()),
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<Order>();
    r
}

/// A pool whose database knows `t.order` (as a started process registers it).
async fn registered(pool: &PgPool) -> Registry {
    let registry = registry();
    store::register_definitions(pool, &registry, "control_plane test")
        .await
        .expect("register");
    registry
}

/// `SELECT floe_ops.start_workflow(kind, key, input)`.
async fn sql_start(pool: &PgPool, kind: &str, key: Option<&str>, input: Value) -> Uuid {
    sqlx::query_scalar("SELECT floe_ops.start_workflow($1, $2, $3)")
        .bind(kind)
        .bind(key)
        .bind(input)
        .fetch_one(pool)
        .await
        .expect("start from SQL")
}

/// `SELECT floe_ops.signal(...)`.
async fn sql_signal(
    pool: &PgPool,
    id: Uuid,
    name: &str,
    payload: Value,
    key: Option<&str>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT floe_ops.signal($1, $2, $3, $4)")
        .bind(id)
        .bind(name)
        .bind(payload)
        .bind(key)
        .fetch_one(pool)
        .await
}

/// The SQLSTATE of a database error.
fn sqlstate(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()).unwrap_or_default(),
        other => panic!("not a database error: {other}"),
    }
}

/// What a worker does with the advance jobs of `ids`: takes them (their
/// rows go when they complete) and applies the workflows' pending events
/// in one transaction (`advance_many`, the worker's advancer).
async fn advance(pool: &PgPool, registry: &Registry, ids: &[Uuid]) {
    sqlx::query("DELETE FROM floe.jobs WHERE kind = 'floe.advance' AND unique_key = ANY($1::uuid[]::text[])")
        .bind(ids)
        .execute(pool)
        .await
        .expect("take the advance jobs");
    advance_many(pool, registry, ids, &[])
        .await
        .expect("advance");
}

async fn row(pool: &PgPool, id: Uuid) -> store::WorkflowRow {
    store::get(pool, id).await.expect("get").expect("exists")
}

/// Everything the engine stores about a workflow, without what differs
/// between two workflows by nature (id, key, clock readings): its row, its
/// inbox, its history, its activities and its live jobs.
async fn snapshot(pool: &PgPool, id: Uuid) -> Value {
    sqlx::query_scalar(
        r#"
        SELECT jsonb_build_object(
          'row', (SELECT to_jsonb(w) - '{id,key,created_at,updated_at,finished_at}'::text[]
                    FROM floe.workflows w WHERE w.id = $1),
          'inbox', (SELECT jsonb_agg(to_jsonb(i) - '{workflow_id,created_at}'::text[] ORDER BY i.seq)
                      FROM floe.inbox i WHERE i.workflow_id = $1),
          'history', (SELECT jsonb_agg(to_jsonb(h) - '{workflow_id,event_at,applied_at}'::text[] ORDER BY h.seq)
                        FROM floe.history h WHERE h.workflow_id = $1),
          'activities', (SELECT jsonb_agg(to_jsonb(a) - '{workflow_id,created_at,finished_at}'::text[]
                                          ORDER BY a.activity_id)
                           FROM floe.activities a WHERE a.workflow_id = $1),
          'jobs', (SELECT jsonb_agg(jsonb_build_object(
                             'queue', j.queue, 'kind', j.kind, 'payload', j.payload - 'workflow_id',
                             'priority', j.priority, 'state', j.state, 'attempts', j.attempts,
                             'max_attempts', j.max_attempts, 'unique_key_is_id', j.unique_key = $1::text)
                           ORDER BY j.id)
                     FROM floe.jobs j WHERE j.payload->>'workflow_id' = $1::text))
        "#,
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("snapshot")
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn sql_and_the_api_path_write_the_same_rows_at_every_step(pool: PgPool) {
    let registry = registered(&pool).await;
    let input = json!({ "sku": "tea" });

    // Started as the API starts one (store::start with its build's
    // version), and from SQL.
    let mut tx = pool.begin().await.expect("begin");
    let api = store::start(&mut tx, "t.order", "api", &input, Order::VERSION, None)
        .await
        .expect("start")
        .id;
    tx.commit().await.expect("commit");
    let sql = sql_start(&pool, "t.order", Some("sql"), input.clone()).await;
    assert_eq!(
        row(&pool, sql).await.definition_version,
        3,
        "the registered version"
    );
    assert_eq!(
        snapshot(&pool, api).await,
        snapshot(&pool, sql).await,
        "after start"
    );

    // Advanced by the worker's transaction.
    advance(&pool, &registry, &[api, sql]).await;
    assert_eq!(row(&pool, sql).await.state, "awaiting_payment");
    assert_eq!(
        snapshot(&pool, api).await,
        snapshot(&pool, sql).await,
        "after the start applies"
    );

    let mut conn = pool.acquire().await.expect("conn");
    let payload = json!({ "amount": 5 });
    let delivered = store::signal(&mut conn, api, "pay", &payload, Some("pay-1"))
        .await
        .expect("signal");
    assert_eq!(delivered, Delivered::Queued(2));
    let seq = sql_signal(&pool, sql, "pay", payload.clone(), Some("pay-1"))
        .await
        .expect("signal from SQL");
    assert_eq!(seq, Some(2));
    assert_eq!(
        snapshot(&pool, api).await,
        snapshot(&pool, sql).await,
        "after the signal"
    );

    advance(&pool, &registry, &[api, sql]).await;
    let charging = snapshot(&pool, sql).await;
    assert_eq!(charging["row"]["state"], "charging");
    assert_eq!(charging["activities"][0]["status"], "scheduled");
    assert_eq!(
        snapshot(&pool, api).await,
        charging,
        "with the activity scheduled"
    );

    let results: Vec<ActivityResult> = [api, sql]
        .into_iter()
        .map(|id| ActivityResult {
            workflow_id: id,
            activity_id: "charge".into(),
            attempts: 1,
            result: Ok(json!({ "receipt": 7 })),
        })
        .collect();
    // The activity jobs are done once their results are recorded.
    sqlx::query("DELETE FROM floe.jobs WHERE kind = 'floe.activity'")
        .execute(&pool)
        .await
        .expect("complete the activity jobs");
    advance_many(&pool, &registry, &[], &results)
        .await
        .expect("record");
    let paid = snapshot(&pool, sql).await;
    assert_eq!(paid["row"]["status"], "completed");
    assert_eq!(snapshot(&pool, api).await, paid, "completed");

    // Cancelling: the API's store::cancel and floe_ops.cancel.
    let mut tx = pool.begin().await.expect("begin");
    let api = store::start(&mut tx, "t.order", "api-2", &json!({}), 3, None)
        .await
        .expect("start")
        .id;
    tx.commit().await.expect("commit");
    let sql = sql_start(&pool, "t.order", Some("sql-2"), json!({})).await;
    advance(&pool, &registry, &[api, sql]).await;
    store::cancel(&mut conn, api, "changed my mind")
        .await
        .expect("cancel");
    let seq: Option<i64> = sqlx::query_scalar("SELECT floe_ops.cancel($1, 'changed my mind')")
        .bind(sql)
        .fetch_one(&pool)
        .await
        .expect("cancel from SQL");
    assert_eq!(seq, Some(2));
    assert_eq!(
        snapshot(&pool, api).await,
        snapshot(&pool, sql).await,
        "after the cancellation"
    );
    advance(&pool, &registry, &[api, sql]).await;
    let cancelled = snapshot(&pool, sql).await;
    assert_eq!(cancelled["row"]["status"], "cancelled");
    assert_eq!(cancelled["row"]["error"], "changed my mind");
    assert_eq!(snapshot(&pool, api).await, cancelled, "cancelled");
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn starting_twice_returns_the_open_workflow(pool: PgPool) {
    let registry = registered(&pool).await;
    let first = sql_start(&pool, "t.order", Some("order-1"), json!({})).await;
    let again = sql_start(&pool, "t.order", Some("order-1"), json!({ "other": true })).await;
    assert_eq!(first, again, "the open workflow with that kind and key");
    // The API's path finds the same one.
    let mut conn = pool.acquire().await.expect("conn");
    let api = store::start(&mut conn, "t.order", "order-1", &json!({}), 3, None)
        .await
        .expect("start");
    assert_eq!((api.id, api.created), (first, false));
    assert_eq!(count(&pool, "SELECT count(*) FROM floe.workflows").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM floe.inbox").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM floe.jobs").await, 1);

    // Once it has finished, the key starts a new one.
    sqlx::query("SELECT floe_ops.cancel($1, 'done with it')")
        .bind(first)
        .execute(&pool)
        .await
        .expect("cancel");
    advance(&pool, &registry, &[first]).await;
    let next = sql_start(&pool, "t.order", Some("order-1"), json!({})).await;
    assert_ne!(next, first);

    // Without a key, every start is a new workflow (a fresh UUID key, as
    // the API does).
    let a = sql_start(&pool, "t.order", None, json!({})).await;
    let b = sql_start(&pool, "t.order", None, json!({})).await;
    assert_ne!(a, b);
    assert!(row(&pool, a).await.key.parse::<Uuid>().is_ok());
    // Ids are UUIDv7, as the Rust side makes them: time-ordered.
    assert_eq!(a.get_version_num(), 7);
    assert!(a < b);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_start_racing_an_uncommitted_one_returns_that_one(pool: PgPool) {
    registered(&pool).await;
    let mut first = pool.begin().await.expect("begin");
    let id: Uuid = sqlx::query_scalar("SELECT floe_ops.start_workflow('t.order', 'race')")
        .fetch_one(&mut *first)
        .await
        .expect("first start");
    // The second waits on the first's uncommitted row, then finds it.
    let second = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut conn = pool.acquire().await.expect("conn");
            store::start(&mut conn, "t.order", "race", &json!({}), 3, None)
                .await
                .expect("second start")
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "the second start waits for the first"
    );
    first.commit().await.expect("commit");
    let second = second.await.expect("joined");
    assert_eq!((second.id, second.created), (id, false));
    assert_eq!(count(&pool, "SELECT count(*) FROM floe.workflows").await, 1);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn an_unknown_kind_is_refused_and_nothing_is_written(pool: PgPool) {
    registered(&pool).await;
    let refused = sqlx::query_scalar::<_, Uuid>("SELECT floe_ops.start_workflow('t.nobody', 'k')")
        .fetch_one(&pool)
        .await
        .expect_err("an unregistered kind");
    assert_eq!(sqlstate(&refused), "42704");
    assert!(
        refused
            .to_string()
            .contains("unknown workflow kind 't.nobody'"),
        "{refused}"
    );
    let bad_key = sqlx::query_scalar::<_, Uuid>("SELECT floe_ops.start_workflow('t.order', '')")
        .fetch_one(&pool)
        .await
        .expect_err("an empty key");
    assert_eq!(sqlstate(&bad_key), "22023");
    for table in ["floe.workflows", "floe.inbox", "floe.jobs"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&pool)
                .await
                .expect("count");
        assert_eq!(n, 0, "{table} is untouched");
    }
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn processes_register_their_kinds_and_the_last_version_wins(pool: PgPool) {
    let mut none = Registry::new();
    store::register_definitions(&pool, &none, "empty")
        .await
        .expect("nothing to register");
    registered(&pool).await;
    let (version, by): (i32, String) = sqlx::query_as(
        "SELECT version, registered_by FROM floe_ops.definitions WHERE kind = 't.order'",
    )
    .fetch_one(&pool)
    .await
    .expect("registered");
    assert_eq!((version, by.as_str()), (3, "control_plane test"));

    // A newer build (same kind, version 4) starts.
    struct OrderV4;
    impl Workflow for OrderV4 {
        const KIND: &'static str = "t.order";
        const VERSION: i32 = 4;
        type Input = Value;
        type State = String;
        type Signal = Value;
        fn state_name(s: &String) -> String {
            s.clone()
        }
        fn apply(
            s: Option<String>,
            e: Event<Value, Value>,
            c: &Ctx,
        ) -> Result<Transition<String>, String> {
            Order::apply(s, e, c)
        }
    }
    none.register::<OrderV4>();
    store::register_definitions(&pool, &none, "newer")
        .await
        .expect("register again");
    let id = sql_start(&pool, "t.order", Some("v4"), json!({})).await;
    assert_eq!(row(&pool, id).await.definition_version, 4);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM floe.definitions").await,
        1
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_signal_in_a_rolled_back_transaction_is_not_delivered(pool: PgPool) {
    let registry = registered(&pool).await;
    let id = sql_start(&pool, "t.order", Some("o"), json!({})).await;
    advance(&pool, &registry, &[id]).await;
    sqlx::raw_sql("CREATE TABLE payments (order_key text PRIMARY KEY, amount int)")
        .execute(&pool)
        .await
        .expect("app table");

    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO payments VALUES ('o', 5)")
        .execute(&mut *tx)
        .await
        .expect("app write");
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT floe_ops.signal($1, 'pay', '{\"amount\": 5}')")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .expect("signal inside the app's transaction");
    assert_eq!(seq, Some(2));
    tx.rollback().await.expect("rollback");

    assert_eq!(
        count(&pool, "SELECT count(*) FROM floe.inbox").await,
        1,
        "only the start"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM floe.jobs").await,
        0,
        "no advance job"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM payments").await, 0);
    assert_eq!(row(&pool, id).await.next_seq, 1);

    // Committed, it is delivered, with the app's write.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO payments VALUES ('o', 5)")
        .execute(&mut *tx)
        .await
        .expect("app write");
    sqlx::query("SELECT floe_ops.signal($1, 'pay', '{\"amount\": 5}')")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("signal");
    tx.commit().await.expect("commit");
    advance(&pool, &registry, &[id]).await;
    assert_eq!(row(&pool, id).await.state, "charging");
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_signal_with_an_idempotency_key_is_delivered_once(pool: PgPool) {
    let registry = registered(&pool).await;
    let id = sql_start(&pool, "t.order", Some("o"), json!({})).await;
    let first = sql_signal(&pool, id, "pay", json!({ "amount": 5 }), Some("click-1"))
        .await
        .expect("first");
    let second = sql_signal(&pool, id, "pay", json!({ "amount": 5 }), Some("click-1"))
        .await
        .expect("second");
    assert_eq!(
        (first, second),
        (Some(2), None),
        "the second is a duplicate"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM floe.inbox WHERE idempotency_key = 'click-1'"
        )
        .await,
        1
    );
    // The Rust path agrees that it is a duplicate.
    let mut conn = pool.acquire().await.expect("conn");
    let again = store::signal(&mut conn, id, "pay", &json!({}), Some("click-1"))
        .await
        .expect("signal");
    assert_eq!(again, Delivered::Duplicate);
    advance(&pool, &registry, &[id]).await;
    assert_eq!(
        row(&pool, id).await.version,
        2,
        "start and one signal applied"
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn triggers_on_an_application_table_start_and_signal_workflows(pool: PgPool) {
    let registry = registered(&pool).await;
    // The application's own table: a new order starts its workflow; paying
    // it signals the workflow, once per order.
    sqlx::raw_sql(
        r#"
        CREATE TABLE orders (
            id          bigint PRIMARY KEY,
            amount      int NOT NULL,
            paid        boolean NOT NULL DEFAULT false,
            workflow_id uuid
        );
        CREATE FUNCTION orders_start() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.workflow_id := floe_ops.start_workflow('t.order', 'order-' || NEW.id,
                                                       jsonb_build_object('amount', NEW.amount));
            RETURN NEW;
        END $$;
        CREATE TRIGGER orders_start BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_start();
        CREATE FUNCTION orders_paid() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM floe_ops.signal(NEW.workflow_id, 'pay', jsonb_build_object('amount', NEW.amount),
                                    'paid-' || NEW.id);
            RETURN NEW;
        END $$;
        CREATE TRIGGER orders_paid AFTER UPDATE OF paid ON orders FOR EACH ROW
            WHEN (NEW.paid AND NOT OLD.paid) EXECUTE FUNCTION orders_paid();
        "#,
    )
    .execute(&pool)
    .await
    .expect("the application's table and triggers");

    sqlx::query("INSERT INTO orders (id, amount) VALUES (1, 30), (2, 40)")
        .execute(&pool)
        .await
        .expect("insert orders");
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT workflow_id FROM orders ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("their workflows");
    assert_eq!(ids.len(), 2);
    advance(&pool, &registry, &ids).await;

    sqlx::query("UPDATE orders SET paid = true WHERE id = 1")
        .execute(&pool)
        .await
        .expect("pay");
    // Paying again (the application's retry) delivers nothing more.
    sqlx::query("UPDATE orders SET paid = false WHERE id = 1")
        .execute(&pool)
        .await
        .expect("unpay");
    sqlx::query("UPDATE orders SET paid = true WHERE id = 1")
        .execute(&pool)
        .await
        .expect("pay again");
    advance(&pool, &registry, &ids).await;

    let paid = row(&pool, ids[0]).await;
    assert_eq!((paid.state.as_str(), paid.version), ("charging", 2));
    let activity_input: Value = sqlx::query_scalar(
        "SELECT input FROM floe.activities WHERE workflow_id = $1 AND activity_id = 'charge'",
    )
    .bind(ids[0])
    .fetch_one(&pool)
    .await
    .expect("the charge activity");
    assert_eq!(activity_input, json!({ "amount": 30 }));
    assert_eq!(row(&pool, ids[1]).await.state, "awaiting_payment");

    // A trigger's error is the application's statement's error: its write
    // does not happen either.
    sqlx::query("DELETE FROM floe.definitions")
        .execute(&pool)
        .await
        .expect("forget the kinds");
    let refused = sqlx::query("INSERT INTO orders (id, amount) VALUES (3, 50)")
        .execute(&pool)
        .await
        .expect_err("no process defines t.order any more");
    assert_eq!(sqlstate(&refused), "42704");
    assert_eq!(count(&pool, "SELECT count(*) FROM orders").await, 2);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn signalling_what_cannot_take_it_raises_clear_errors(pool: PgPool) {
    let registry = registered(&pool).await;
    let nobody = Uuid::now_v7();
    let e = sql_signal(&pool, nobody, "pay", json!({}), None)
        .await
        .expect_err("no such workflow");
    assert_eq!(sqlstate(&e), "P0002");
    assert!(
        e.to_string().contains(&format!("no workflow {nobody}")),
        "{e}"
    );

    let id = sql_start(&pool, "t.order", Some("o"), json!({})).await;
    let e = sql_signal(&pool, id, "pay", json!({}), Some("cancel"))
        .await
        .expect_err("the reserved key");
    assert_eq!(sqlstate(&e), "22023");
    let e = sql_signal(&pool, id, "", json!({}), None)
        .await
        .expect_err("an empty name");
    assert_eq!(sqlstate(&e), "22023");

    sqlx::query("SELECT floe_ops.cancel($1, 'no')")
        .bind(id)
        .execute(&pool)
        .await
        .expect("cancel");
    advance(&pool, &registry, &[id]).await;
    let e = sql_signal(&pool, id, "pay", json!({}), None)
        .await
        .expect_err("a finished workflow");
    assert_eq!(sqlstate(&e), "55000");
    assert!(e.to_string().contains("is cancelled"), "{e}");
    let e = sqlx::query("SELECT floe_ops.cancel($1, 'again')")
        .bind(id)
        .execute(&pool)
        .await
        .expect_err("cancelling a finished workflow");
    assert_eq!(sqlstate(&e), "55000");
    let e = sqlx::query("SELECT floe_ops.cancel($1, ' ')")
        .bind(nobody)
        .execute(&pool)
        .await
        .expect_err("a blank reason");
    assert_eq!(sqlstate(&e), "22023");
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn cancel_from_sql_is_delivered_once_and_applied(pool: PgPool) {
    let registry = registered(&pool).await;
    let id = sql_start(&pool, "t.order", Some("o"), json!({})).await;
    advance(&pool, &registry, &[id]).await;
    let cancel = |reason: &'static str| {
        sqlx::query_scalar::<_, Option<i64>>("SELECT floe_ops.cancel($1, $2)")
            .bind(id)
            .bind(reason)
            .fetch_one(&pool)
    };
    assert_eq!(cancel("operator said so").await.expect("cancel"), Some(2));
    assert_eq!(
        cancel("twice").await.expect("again"),
        None,
        "delivered once"
    );
    advance(&pool, &registry, &[id]).await;
    let r = row(&pool, id).await;
    assert_eq!(r.status, Status::Cancelled);
    assert_eq!(r.error.as_deref(), Some("operator said so"));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn retry_job_revives_a_dead_job(pool: PgPool) {
    let id = queue::store::enqueue(&pool, &NewJob::new("t.flaky", json!({})).max_attempts(1))
        .await
        .expect("enqueue")
        .id()
        .expect("new");
    let claimed = queue::store::claim(
        &pool,
        "default",
        &["t.flaky".into()],
        "w1",
        1,
        Duration::from_secs(30),
    )
    .await
    .expect("claim");
    queue::store::fail(&pool, claimed[0].lease(), "boom", None)
        .await
        .expect("fail")
        .expect("held");
    let dead = queue::store::get(&pool, id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((dead.state, dead.attempts), (queue::JobState::Dead, 1));

    let retried: bool = sqlx::query_scalar("SELECT floe_ops.retry_job($1)")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("retry");
    assert!(retried);
    let job = queue::store::get(&pool, id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((job.state, job.attempts), (queue::JobState::Available, 0));
    let again: bool = sqlx::query_scalar("SELECT floe_ops.retry_job($1)")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("retry an available job");
    assert!(!again, "only dead or retrying jobs are retried");
    let e = sqlx::query("SELECT floe_ops.retry_job(-1)")
        .execute(&pool)
        .await
        .expect_err("no such job");
    assert_eq!(sqlstate(&e), "P0002");
}

/// A workflow charging (its activity scheduled, its job waiting).
async fn charging(pool: &PgPool, registry: &Registry, key: &str) -> Uuid {
    let id = sql_start(pool, "t.order", Some(key), json!({})).await;
    sql_signal(pool, id, "pay", json!({ "amount": 1 }), None)
        .await
        .expect("pay");
    advance(pool, registry, &[id]).await;
    id
}

/// The live job of a workflow's charge activity, claimed by `owner`.
async fn claim_charge(pool: &PgPool, owner: &str, lease: Duration) -> queue::ClaimedJob {
    let mut claimed =
        queue::store::claim(pool, "default", &["floe.activity".into()], owner, 1, lease)
            .await
            .expect("claim");
    claimed.pop().expect("an activity job")
}

async fn retry_activity(pool: &PgPool, id: Uuid) -> Result<(i64, String), sqlx::Error> {
    sqlx::query_as("SELECT job_id, action FROM floe_ops.retry_activity($1, 'charge')")
        .bind(id)
        .fetch_one(pool)
        .await
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn retry_activity_gets_a_stuck_activity_going_and_never_reruns_a_recorded_one(pool: PgPool) {
    let registry = registered(&pool).await;
    let id = charging(&pool, &registry, "stuck").await;

    // Its job waits: nothing to do.
    let (waiting, action) = retry_activity(&pool, id).await.expect("retry");
    assert_eq!(action, "pending");

    // Its job gave up (a worker died on its last attempt, say): the
    // workflow would wait forever.
    let job = claim_charge(&pool, "w1", Duration::from_secs(30)).await;
    assert_eq!(job.id, waiting);
    queue::store::fail(&pool, job.lease(), "card service down", None)
        .await
        .expect("fail")
        .expect("held");
    let (job_id, action) = retry_activity(&pool, id).await.expect("retry");
    assert_eq!((job_id, action.as_str()), (waiting, "retried"));
    let revived = queue::store::get(&pool, job_id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        (revived.state, revived.attempts),
        (queue::JobState::Available, 0)
    );

    // Its dead job was deleted: a new one, with what the activity row holds.
    let payload: Value = sqlx::query_scalar("SELECT payload FROM floe.jobs WHERE id = $1")
        .bind(job_id)
        .fetch_one(&pool)
        .await
        .expect("payload");
    sqlx::query("DELETE FROM floe.jobs WHERE id = $1")
        .bind(job_id)
        .execute(&pool)
        .await
        .expect("delete");
    // The kind's registered priority goes with the new job, as with every
    // job the engine enqueues for this kind's workflows.
    sqlx::query("UPDATE floe.definitions SET priority = -7 WHERE kind = 't.order'")
        .execute(&pool)
        .await
        .expect("urgent kind");
    let (new_job, action) = retry_activity(&pool, id).await.expect("retry");
    assert_eq!(action, "enqueued");
    let (new_payload, max_attempts, priority): (Value, i32, i16) =
        sqlx::query_as("SELECT payload, max_attempts, priority FROM floe.jobs WHERE id = $1")
            .bind(new_job)
            .fetch_one(&pool)
            .await
            .expect("the new job");
    assert_eq!(priority, -7, "the kind's priority");
    let mut want = payload.clone();
    want.as_object_mut().expect("object").remove("policy");
    assert_eq!(new_payload, want, "the same activity; the default policy");
    assert_eq!(
        max_attempts,
        ActivityPolicy::default().max_attempts + floe_engine::workflow::SPARE_RUNS,
        "the policy's attempts and the spare run"
    );
    let again = retry_activity(&pool, id).await.expect("retry");
    assert_eq!(again, (new_job, "pending".to_owned()), "no second job");

    // Its result is recorded and applied once, as for any activity.
    let result = ActivityResult {
        workflow_id: id,
        activity_id: "charge".into(),
        attempts: 1,
        result: Ok(json!({ "receipt": 1 })),
    };
    for _ in 0..2 {
        advance_many(&pool, &registry, &[], std::slice::from_ref(&result))
            .await
            .expect("record");
    }
    let done = row(&pool, id).await;
    assert_eq!((done.status, done.version), (Status::Completed, 3));

    // A recorded result is never run again.
    let e = retry_activity(&pool, id).await.expect_err("completed");
    assert_eq!(sqlstate(&e), "55000");
    let failed = charging(&pool, &registry, "failed").await;
    let result = ActivityResult {
        workflow_id: failed,
        activity_id: "charge".into(),
        attempts: 3,
        result: Err("card declined".into()),
    };
    advance_many(&pool, &registry, &[], &[result])
        .await
        .expect("record");
    let e = retry_activity(&pool, failed)
        .await
        .expect_err("failed for good");
    assert_eq!(sqlstate(&e), "55000");
    assert!(e.to_string().contains("is failed"), "{e}");
    let e = sqlx::query("SELECT * FROM floe_ops.retry_activity($1, 'nope')")
        .bind(failed)
        .execute(&pool)
        .await
        .expect_err("no such activity");
    assert_eq!(sqlstate(&e), "P0002");

    // An activity of a cancelled workflow is not needed any more.
    let cancelled = charging(&pool, &registry, "cancelled").await;
    sqlx::query("SELECT floe_ops.cancel($1, 'stop')")
        .bind(cancelled)
        .execute(&pool)
        .await
        .expect("cancel");
    advance(&pool, &registry, &[cancelled]).await;
    let e = retry_activity(&pool, cancelled)
        .await
        .expect_err("cancelled");
    assert_eq!(sqlstate(&e), "55000");
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn workflow_state_is_what_queries_read(pool: PgPool) {
    let registry = registered(&pool).await;
    let id = sql_start(
        &pool,
        "t.order",
        Some("o"),
        json!({ "deadline_in_secs": 3600 }),
    )
    .await;
    advance(&pool, &registry, &[id]).await;
    let state: Value = sqlx::query_scalar("SELECT floe_ops.workflow_state($1)")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("state");
    let r = row(&pool, id).await;
    assert_eq!(state["kind"], "t.order");
    assert_eq!(state["key"], "o");
    assert_eq!(state["state"], json!(r.state));
    assert_eq!(state["status"], "waiting");
    assert_eq!(state["context"], r.context);
    assert_eq!(state["deadline_reason"], "nudge");
    assert_eq!(state["version"], 1);
    let deadline: time::OffsetDateTime =
        sqlx::query_scalar("SELECT (floe_ops.workflow_state($1)->>'deadline')::timestamptz")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("deadline");
    assert_eq!(Some(deadline), r.deadline);
    let none: Option<Value> = sqlx::query_scalar("SELECT floe_ops.workflow_state($1)")
        .bind(Uuid::now_v7())
        .fetch_one(&pool)
        .await
        .expect("no such workflow");
    assert_eq!(none, None);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn the_views_show_what_waits_what_is_stuck_and_what_fails(pool: PgPool) {
    let registry = registered(&pool).await;
    // Waiting on a person, its deadline an hour out; and one whose deadline
    // passed a minute ago with no worker to fire it.
    let patient = sql_start(
        &pool,
        "t.order",
        Some("patient"),
        json!({ "deadline_in_secs": 3600 }),
    )
    .await;
    let overdue = sql_start(
        &pool,
        "t.order",
        Some("overdue"),
        json!({ "deadline_in_secs": -60 }),
    )
    .await;
    advance(&pool, &registry, &[patient, overdue]).await;

    let waiting: Vec<(Uuid, String, Option<String>, bool)> = sqlx::query_as(
        "SELECT workflow_id, state, deadline_reason, waited >= interval '0' FROM floe_ops.waiting ORDER BY deadline",
    )
    .fetch_all(&pool)
    .await
    .expect("waiting");
    assert_eq!(
        waiting,
        vec![
            (
                overdue,
                "awaiting_payment".into(),
                Some("nudge".into()),
                true
            ),
            (
                patient,
                "awaiting_payment".into(),
                Some("nudge".into()),
                true
            ),
        ]
    );
    let late: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT workflow_id, overdue_by > interval '59 seconds' FROM floe_ops.overdue_deadlines",
    )
    .fetch_all(&pool)
    .await
    .expect("overdue");
    assert_eq!(late, vec![(overdue, true)], "only the passed deadline");

    // Failing activities: one failed for good, one backing off, one dead.
    let failed = charging(&pool, &registry, "failed").await;
    let retrying = charging(&pool, &registry, "retrying").await;
    let dead = charging(&pool, &registry, "dead").await;
    let result = ActivityResult {
        workflow_id: failed,
        activity_id: "charge".into(),
        attempts: 3,
        result: Err("card declined".into()),
    };
    sqlx::query(
        "DELETE FROM floe.jobs WHERE kind = 'floe.activity' AND payload->>'workflow_id' = $1::text",
    )
    .bind(failed)
    .execute(&pool)
    .await
    .expect("its job is done");
    advance_many(&pool, &registry, &[], &[result])
        .await
        .expect("record the failure");
    let claimed = queue::store::claim(
        &pool,
        "default",
        &["floe.activity".into()],
        "w1",
        10,
        Duration::from_secs(30),
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 2, "the jobs of retrying and dead");
    for job in claimed {
        let retry_in =
            (job.payload["workflow_id"] == json!(retrying)).then(|| Duration::from_secs(600));
        queue::store::fail(&pool, job.lease(), "card service down", retry_in)
            .await
            .expect("fail")
            .expect("held");
    }
    /// Workflow, its status, activity, failure, attempts, last error, and
    /// whether another attempt is scheduled.
    type Failing = (Uuid, String, String, String, i32, Option<String>, bool);
    let failing: Vec<Failing> = sqlx::query_as(
        "SELECT workflow_id, workflow_status::text, activity_id, failure, attempts, last_error,
                next_attempt_at IS NOT NULL
           FROM floe_ops.failing_activities ORDER BY failure",
    )
    .fetch_all(&pool)
    .await
    .expect("failing");
    assert_eq!(
        failing,
        vec![
            (
                dead,
                "running".into(),
                "charge".into(),
                "dead".into(),
                1,
                Some("card service down".into()),
                false
            ),
            (
                failed,
                "failed".into(),
                "charge".into(),
                "failed".into(),
                3,
                Some("card declined".into()),
                false
            ),
            (
                retrying,
                "running".into(),
                "charge".into(),
                "retrying".into(),
                1,
                Some("card service down".into()),
                true
            ),
        ]
    );

    // Expired leases: a job claimed with a lease that ran out (its worker
    // stopped heartbeating).
    sqlx::query("SELECT floe_ops.signal($1, 'poke')")
        .bind(patient)
        .execute(&pool)
        .await
        .expect("signal");
    let claimed = queue::store::claim(
        &pool,
        "default",
        &["floe.advance".into()],
        "host:1:dead",
        1,
        Duration::from_millis(1),
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let expired: Vec<(i64, String, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT job_id, kind, workflow_id, lease_owner FROM floe_ops.expired_leases",
    )
    .fetch_all(&pool)
    .await
    .expect("expired");
    assert_eq!(
        expired,
        vec![(
            claimed[0].id,
            "floe.advance".into(),
            Some(patient),
            "host:1:dead".into()
        )]
    );
    // Its event waits to be applied.
    let pending: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT workflow_id, pending FROM floe_ops.pending_events")
            .fetch_all(&pool)
            .await
            .expect("pending");
    assert_eq!(pending, vec![(patient, 1)]);

    // Counts per kind and state, per status.
    let counts: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT state, total, running, waiting, failed, completed FROM floe_ops.workflow_counts
          WHERE kind = 't.order' ORDER BY state",
    )
    .fetch_all(&pool)
    .await
    .expect("counts");
    assert_eq!(
        counts,
        vec![
            ("awaiting_payment".into(), 2, 0, 2, 0, 0),
            ("charge_failed".into(), 1, 0, 0, 1, 0),
            ("charging".into(), 2, 2, 0, 0, 0),
        ]
    );

    // Queue depth per queue, kind and state.
    let depth: Vec<(String, String, i64, bool)> = sqlx::query_as(
        "SELECT kind, state::text, jobs, oldest_age >= interval '0' FROM floe_ops.queue_depth ORDER BY kind, state::text",
    )
    .fetch_all(&pool)
    .await
    .expect("depth");
    assert_eq!(
        depth,
        vec![
            ("floe.activity".into(), "dead".into(), 1, true),
            ("floe.activity".into(), "retrying".into(), 1, true),
            ("floe.advance".into(), "running".into(), 1, true),
        ]
    );

    // LLM spend: the ledger's views, exposed here.
    sqlx::raw_sql(
        "INSERT INTO floe.llm_prices VALUES ('m', 1, 2);
         INSERT INTO floe.llm_calls (workflow_id, activity_id, attempt, step, user_id, agent, model,
                request, response, status, tokens_in, tokens_out, latency_ms, cost_usd)
         VALUES ('00000000-0000-0000-0000-000000000001', 'turn-1', 1, 0, 'alex', 'greeter', 'm',
                 '{}', '{}', 'ok', 100, 20, 340, 0.00014);",
    )
    .execute(&pool)
    .await
    .expect("an LLM call");
    for view in [
        "llm_usage_by_user",
        "llm_usage_by_workflow",
        "llm_usage_by_day",
    ] {
        let same: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT jsonb_agg(to_jsonb(v)) FROM floe_ops.{view} v)
                  = (SELECT jsonb_agg(to_jsonb(v)) FROM floe.{view} v)
                AND EXISTS (SELECT FROM floe_ops.{view})"
        )))
        .fetch_one(&pool)
        .await
        .expect(view);
        assert!(same, "floe_ops.{view} is floe.{view}");
    }
}
