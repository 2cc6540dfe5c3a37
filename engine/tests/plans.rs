//! The claim and the timer loop cost what one batch costs, not what the
//! backlog costs, whatever the planner's statistics say.
//!
//! Both statements were once planned, on a table autovacuum had not analyzed
//! yet, as a bitmap scan of every candidate row and a sort: each claim (each
//! batch of timers) read the whole backlog (docs/BENCHMARKS.md, "Against the
//! targets"). They are now the functions `floe.claim_jobs` and
//! `floe.fire_timers`, whose planner settings leave only the ordered index
//! scan. These tests count the
//! rows one call reads (the current transaction's counters: rows read
//! sequentially, index entries, heap rows fetched) in a table holding far
//! more candidates than the call takes, never analyzed and then analyzed.
//! Checked when they were written: without the claim function's settings
//! (`ALTER FUNCTION … RESET ALL`) a claim here read 400,200 rows. The
//! plain timer statement did not go wrong in this table's shape (it did in
//! W8x's); the timer test bounds the function's cost all the same.

use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

/// Candidates waiting: far more than one call takes.
const BACKLOG: i64 = 200_000;
/// Rows one call takes.
const BATCH: i64 = 100;
/// Rows one call may read per row it takes: the index entry, the heap row,
/// the primary-key look-up of the UPDATE and of a foreign key, with room to
/// spare — and still a small fraction of the backlog.
const READS_PER_ROW: i64 = 10;

/// Rows read from `table` and its indexes so far in the current transaction:
/// rows read sequentially, index entries returned, heap rows fetched.
async fn rows_read(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (pg_stat_get_xact_tuples_returned(t.oid) + pg_stat_get_xact_tuples_fetched(t.oid)
                 + coalesce((SELECT sum(pg_stat_get_xact_tuples_returned(i.indexrelid)
                                        + pg_stat_get_xact_tuples_fetched(i.indexrelid))
                               FROM pg_index i WHERE i.indrelid = t.oid), 0))::bigint
           FROM pg_class t
          WHERE t.oid = $1::regclass",
    )
    .bind(table)
    .fetch_one(conn)
    .await
    .expect("read the transaction's statistics")
}

/// Runs `call` in a transaction that is rolled back (the backlog stays
/// whole) and returns how many rows it returned and how many rows of
/// `table` it read.
async fn measure(conn: &mut PgConnection, call: &str, table: &str) -> (i64, i64) {
    let mut tx = conn.begin().await.expect("begin");
    let before = rows_read(&mut tx, table).await;
    let taken: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {call}")))
        .fetch_one(&mut *tx)
        .await
        .expect("call");
    let read = rows_read(&mut tx, table).await - before;
    tx.rollback().await.expect("rollback");
    (taken, read)
}

/// Turns autovacuum off for `table` (it must not analyze it behind the
/// test's back) and makes `call` once on the still empty table, as a
/// worker's first claim at start-up is made. PostgreSQL plans each of the
/// next calls afresh (a plan is cached for good only after five), from the
/// size of a table it has no statistics for: the plain statements' plans
/// went bad once the table filled.
async fn empty_and_planned(conn: &mut PgConnection, table: &str, call: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE {table} SET (autovacuum_enabled = false)"
    )))
    .execute(&mut *conn)
    .await
    .expect("autovacuum off");
    let (taken, _) = measure(conn, call, table).await;
    assert_eq!(taken, 0, "{table} starts empty");
}

async fn assert_bounded(conn: &mut PgConnection, call: &str, table: &str, what: &str) {
    for analyzed in [false, true] {
        if analyzed {
            sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {table}")))
                .execute(&mut *conn)
                .await
                .expect("analyze");
        } else {
            let reltuples: f32 =
                sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = $1::regclass")
                    .bind(table)
                    .fetch_one(&mut *conn)
                    .await
                    .expect("reltuples");
            assert_eq!(reltuples, -1.0, "{table} has not been analyzed yet");
        }
        let (taken, read) = measure(conn, call, table).await;
        assert_eq!(
            taken, BATCH,
            "{what} takes a full batch (analyzed: {analyzed})"
        );
        assert!(
            read <= BATCH * READS_PER_ROW,
            "{what} read {read} rows of {table} for {taken} taken with {BACKLOG} waiting \
             (analyzed: {analyzed}): its cost follows the backlog, not the batch"
        );
    }
}

/// BACKLOG available jobs of kind `k`.
async fn backlog(conn: &mut PgConnection) {
    sqlx::query(
        "INSERT INTO floe.jobs (kind, payload, state)
         SELECT 'k', jsonb_build_object('n', i), 'available' FROM generate_series(1, $1) i",
    )
    .bind(BACKLOG)
    .execute(conn)
    .await
    .expect("backlog");
}

fn claim(kinds: &str) -> String {
    format!("floe.claim_jobs('default', ARRAY[{kinds}], 'w1', {BATCH}, 30000)")
}

/// The ids of the jobs `call` (a claim) takes, in id order.
async fn taken_ids(conn: &mut PgConnection, call: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT id FROM {call}")))
        .fetch_all(conn)
        .await
        .expect("claim");
    ids.sort_unstable();
    ids
}

/// A claim of `kinds` that starts after the key (priority, run_at, id) of
/// job `id`.
fn claim_after(kinds: &str, id: i64) -> String {
    format!(
        "floe.claim_jobs('default', ARRAY[{kinds}], 'w1', {BATCH}, 30000,
                         (SELECT priority FROM floe.jobs WHERE id = {id}),
                         (SELECT run_at FROM floe.jobs WHERE id = {id}), {id})"
    )
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_claim_reads_its_batch_not_the_backlog(pool: PgPool) {
    let mut conn = pool.acquire().await.expect("connection");
    let call = claim("'k'");
    empty_and_planned(&mut conn, "floe.jobs", &call).await;
    backlog(&mut conn).await;
    assert_bounded(&mut conn, &call, "floe.jobs", "a claim").await;

    // The claim takes the head of the queue, in order.
    let ids = taken_ids(&mut conn, &call).await;
    let first: Vec<i64> = sqlx::query_scalar("SELECT id FROM floe.jobs ORDER BY id LIMIT $1")
        .bind(BATCH)
        .fetch_all(&mut *conn)
        .await
        .expect("head");
    assert_eq!(ids, first, "the oldest {BATCH} jobs are claimed");
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_timer_batch_reads_its_batch_not_every_deadline(pool: PgPool) {
    let mut conn = pool.acquire().await.expect("connection");
    let call = format!("floe.fire_timers({BATCH})");
    empty_and_planned(&mut conn, "floe.workflows", &call).await;
    // BACKLOG overdue deadlines (a worker back after a long stop), and a
    // quarter as many asleep until next week.
    sqlx::query(
        "INSERT INTO floe.workflows (id, kind, key, state, status, deadline, deadline_reason)
         SELECT floe.uuid_v7(), 'test.sleeper', 'w-' || i, 'sleeping', 'waiting',
                CASE WHEN i <= $1 THEN now() - interval '1 hour' + i * interval '1 ms'
                     ELSE now() + interval '7 days' + i * interval '1 ms' END,
                'first'
           FROM generate_series(1, $1 + $1 / 4) i",
    )
    .bind(BACKLOG)
    .execute(&mut *conn)
    .await
    .expect("sleeping workflows");
    assert_bounded(&mut conn, &call, "floe.workflows", "a batch of timers").await;

    // The batch fires the most overdue deadlines, and puts their events in
    // the inbox.
    let fired: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "WITH f AS (SELECT kind FROM {call}) SELECT kind FROM f"
    )))
    .fetch_all(&mut *conn)
    .await
    .expect("fire");
    assert_eq!(fired.len() as i64, BATCH);
    let most_overdue: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.workflows
          WHERE deadline IS NULL AND key IN (SELECT 'w-' || i FROM generate_series(1, $1) i)",
    )
    .bind(BATCH)
    .fetch_one(&mut *conn)
    .await
    .expect("fired");
    assert_eq!(
        most_overdue, BATCH,
        "the {BATCH} most overdue deadlines fire first"
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.inbox WHERE event = 'timer'")
        .fetch_one(&mut *conn)
        .await
        .expect("inbox");
    assert_eq!(events, BATCH, "one timer event per fired deadline");
}

/// While a transaction holds an old snapshot, the index entries of every
/// job claimed since stay at the head of the claim order, and a claim from
/// the head reads through all of them (W9's stall: docs/BENCHMARKS.md,
/// "Soak"). A claim that starts after the last job claimed reads its batch
/// — and still takes, first, jobs of a more urgent priority that arrive
/// meanwhile. A job left below the position (here: one released with its
/// old key) waits for the next claim from the head.
#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_claim_after_a_position_skips_what_an_old_snapshot_keeps(pool: PgPool) {
    const DONE: i64 = 100_000;
    let mut conn = pool.acquire().await.expect("connection");
    backlog(&mut conn).await;

    // A session left idle in a transaction, holding its snapshot.
    let mut idle = pool.acquire().await.expect("idle connection");
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM floe.workflows")
        .execute(&mut *idle)
        .await
        .expect("idle transaction");

    // DONE jobs are claimed meanwhile; the last one is the position.
    let position: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(id) FROM floe.claim_jobs('default', ARRAY['k'], 'w0', {DONE}, 30000)"
    )))
    .fetch_one(&mut *conn)
    .await
    .expect("claim what is done meanwhile");

    let (taken, read) = measure(&mut conn, &claim("'k'"), "floe.jobs").await;
    assert_eq!(taken, BATCH);
    assert!(
        read > DONE,
        "from the head, a claim reads what the old snapshot keeps ({read} rows read): \
         the case the position is for"
    );
    let (taken, read) = measure(&mut conn, &claim_after("'k'", position), "floe.jobs").await;
    assert_eq!(
        taken, BATCH,
        "a claim after the position takes a full batch"
    );
    assert!(
        read <= BATCH * READS_PER_ROW,
        "a claim after the position read {read} rows for {taken} taken with {DONE} claimed \
         under an old snapshot: it walked what the snapshot keeps"
    );

    // It takes the next jobs in order.
    let ids = taken_ids(&mut conn, &claim_after("'k'", position)).await;
    let next: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM floe.jobs WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(position)
            .bind(BATCH)
            .fetch_all(&mut *conn)
            .await
            .expect("next");
    assert_eq!(ids, next, "the {BATCH} jobs after the position are claimed");

    // More urgent jobs that arrive meanwhile come first, and one released
    // with its old key (below the position) is left to a claim from the head.
    let urgent: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO floe.jobs (kind, payload, state, priority)
         SELECT 'k', '{}', 'available', -1 FROM generate_series(1, 3) RETURNING id",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("urgent jobs");
    let released: i64 = sqlx::query_scalar(
        "UPDATE floe.jobs SET state = 'available', lease_owner = NULL, lease_token = NULL,
                lease_expires_at = NULL
          WHERE id = (SELECT min(id) FROM floe.jobs) RETURNING id",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("release one");
    let latest: i64 = sqlx::query_scalar(
        "SELECT max(id) FROM floe.jobs WHERE priority = 0 AND state = 'running'",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("latest claimed");
    let ids = taken_ids(&mut conn, &claim_after("'k'", latest)).await;
    assert_eq!(ids.len() as i64, BATCH);
    for id in &urgent {
        assert!(
            ids.contains(id),
            "the more urgent job {id} is claimed after a position"
        );
    }
    assert!(
        !ids.contains(&released),
        "a job below the position is left to a claim from the head"
    );
    let head = taken_ids(&mut conn, &claim("'k'")).await;
    assert!(
        head.contains(&released),
        "a claim from the head takes the released job"
    );

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *idle)
        .await
        .expect("end idle");
}
