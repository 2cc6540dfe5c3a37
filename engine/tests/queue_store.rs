//! The queue's SQL, statement by statement, against real PostgreSQL.

use std::time::Duration;

use floe_engine::queue::{Enqueued, JobState, Lease, NewJob, store};
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;

mod common;
use common::notified_until_marker;

const LEASE: Duration = Duration::from_secs(30);

fn kinds(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

async fn state_of(pool: &PgPool, id: i64) -> Option<JobState> {
    store::get(pool, id).await.expect("get").map(|j| j.state)
}

async fn claim_one(pool: &PgPool, owner: &str) -> Option<floe_engine::queue::ClaimedJob> {
    let mut jobs = store::claim(pool, "default", &kinds(&["k"]), owner, 1, LEASE)
        .await
        .expect("claim");
    jobs.pop()
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn an_enqueued_job_is_claimed_once_and_deleted_on_completion(pool: PgPool) {
    let id = store::enqueue(&pool, &NewJob::new("k", json!({"n": 1})))
        .await
        .expect("enqueue")
        .id()
        .expect("id");
    assert_eq!(state_of(&pool, id).await, Some(JobState::Available));

    let job = claim_one(&pool, "w1").await.expect("claimed");
    assert_eq!(
        (job.id, job.attempt, job.payload.clone()),
        (id, 1, json!({"n": 1}))
    );
    assert_eq!(state_of(&pool, id).await, Some(JobState::Running));
    assert!(
        claim_one(&pool, "w2").await.is_none(),
        "a running job is not claimed again"
    );

    assert_eq!(
        store::complete(&pool, &[job.lease()])
            .await
            .expect("complete"),
        vec![id]
    );
    assert_eq!(
        state_of(&pool, id).await,
        None,
        "completed jobs are deleted"
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_completion_with_a_lost_lease_is_refused(pool: PgPool) {
    store::enqueue(&pool, &NewJob::new("k", json!({})))
        .await
        .expect("enqueue");
    let first = claim_one(&pool, "w1").await.expect("claimed");
    // w1 stalls past its lease; the rescuer hands the job to w2.
    sqlx::query("UPDATE floe.jobs SET lease_expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .expect("expire");
    assert_eq!(store::rescue_expired(&pool, 100).await.expect("rescue"), 1);
    let second = claim_one(&pool, "w2").await.expect("claimed again");
    assert_eq!(second.id, first.id);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease_token, first.lease_token);

    // w1 wakes up and reports: refused, and w2's claim is untouched.
    assert!(
        store::complete(&pool, &[first.lease()])
            .await
            .expect("complete")
            .is_empty()
    );
    assert_eq!(
        store::fail(&pool, first.lease(), "late", None)
            .await
            .expect("fail"),
        None
    );
    assert!(
        store::heartbeat(&pool, &[first.lease()], LEASE)
            .await
            .expect("heartbeat")
            .is_empty()
    );
    assert_eq!(state_of(&pool, first.id).await, Some(JobState::Running));
    assert_eq!(
        store::complete(&pool, &[second.lease()])
            .await
            .expect("complete"),
        vec![first.id]
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn claims_follow_priority_then_age_and_only_registered_kinds(pool: PgPool) {
    let jobs = vec![
        NewJob::new("k", json!({"n": "late low"})).priority(5),
        NewJob::new("k", json!({"n": "early"})),
        NewJob::new("other", json!({"n": "unknown kind"})).priority(-10),
        NewJob::new("k", json!({"n": "urgent"})).priority(-1),
        NewJob::new("k", json!({"n": "elsewhere"}))
            .queue("other-queue")
            .priority(-20),
    ];
    for job in &jobs {
        store::enqueue(&pool, job).await.expect("enqueue");
    }
    let claimed = store::claim(&pool, "default", &kinds(&["k"]), "w", 10, LEASE)
        .await
        .expect("claim");
    let order: Vec<_> = claimed
        .iter()
        .map(|j| j.payload["n"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(order, ["urgent", "early", "late low"]);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn across_kinds_priority_then_age_decide_and_the_limit_cuts_across_them(pool: PgPool) {
    let jobs = vec![
        NewJob::new("a", json!({"n": "a old"})),
        NewJob::new("b", json!({"n": "b old"})),
        NewJob::new("a", json!({"n": "a new"})),
        NewJob::new("b", json!({"n": "b urgent"})).priority(-1),
        NewJob::new("c", json!({"n": "c newest"})),
    ];
    for job in &jobs {
        store::enqueue(&pool, job).await.expect("enqueue");
    }
    let order = |claimed: Vec<floe_engine::queue::ClaimedJob>| -> Vec<String> {
        claimed
            .iter()
            .map(|j| j.payload["n"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // A kind named twice is claimed once.
    let first = store::claim(
        &pool,
        "default",
        &kinds(&["c", "a", "b", "a"]),
        "w",
        3,
        LEASE,
    )
    .await
    .expect("claim");
    assert_eq!(order(first), ["b urgent", "a old", "b old"]);
    // What the limit left is still there, and claimable at once.
    let rest = store::claim(&pool, "default", &kinds(&["a", "b", "c"]), "w", 10, LEASE)
        .await
        .expect("claim");
    assert_eq!(order(rest), ["a new", "c newest"]);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn concurrent_claims_take_disjoint_full_batches(pool: PgPool) {
    let batch: Vec<NewJob> = (0..30)
        .map(|i| NewJob::new(if i % 2 == 0 { "a" } else { "b" }, json!({ "i": i })))
        .collect();
    store::enqueue_many(&pool, &batch).await.expect("enqueue");
    // The first claim's transaction stays open (its rows locked) while the
    // second claims: the second skips them and takes the next ones.
    let mut first = pool.begin().await.expect("begin");
    let a = store::claim(&mut *first, "default", &kinds(&["a", "b"]), "w1", 10, LEASE)
        .await
        .expect("claim 1");
    let b = store::claim(&pool, "default", &kinds(&["a", "b"]), "w2", 10, LEASE)
        .await
        .expect("claim 2");
    first.commit().await.expect("commit");
    let ids = |jobs: &[floe_engine::queue::ClaimedJob]| -> Vec<i64> {
        jobs.iter().map(|j| j.id).collect()
    };
    assert_eq!((a.len(), b.len()), (10, 10), "both batches are full");
    assert!(
        ids(&a).iter().all(|id| !ids(&b).contains(id)),
        "no job is claimed twice: {:?} / {:?}",
        ids(&a),
        ids(&b)
    );
    // The first claim took the oldest ten; whatever it locked and left is
    // claimable again once it committed.
    let oldest: Vec<i64> = sqlx::query_scalar("SELECT id FROM floe.jobs ORDER BY id LIMIT 10")
        .fetch_all(&pool)
        .await
        .expect("ids");
    let mut a_ids = ids(&a);
    a_ids.sort_unstable();
    assert_eq!(a_ids, oldest);
    let rest = store::claim(&pool, "default", &kinds(&["a", "b"]), "w3", 100, LEASE)
        .await
        .expect("claim 3");
    assert_eq!(rest.len(), 10, "the last ten are claimed");
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_unique_key_enqueues_once_while_waiting_and_is_released_by_the_claim(pool: PgPool) {
    let job = NewJob::new("k", json!({})).unique_key("wf-7");
    let first = store::enqueue(&pool, &job).await.expect("enqueue");
    let Enqueued::New(id) = first else {
        panic!("first enqueue must insert: {first:?}")
    };
    assert_eq!(
        store::enqueue(&pool, &job).await.expect("again"),
        Enqueued::Duplicate(Some(id))
    );
    assert_eq!(
        store::enqueue_many(&pool, &[job.clone(), job.clone()])
            .await
            .expect("bulk"),
        0
    );

    let claimed = claim_one(&pool, "w").await.expect("claimed");
    assert_eq!(claimed.id, id);
    // While it runs, a new one with the same key may wait (the next "advance").
    let next = store::enqueue(&pool, &job)
        .await
        .expect("enqueue while running");
    assert!(matches!(next, Enqueued::New(n) if n != id), "{next:?}");
    // And the running one failing and retrying does not collide with it.
    let failed = store::fail(
        &pool,
        claimed.lease(),
        "boom",
        Some(Duration::from_secs(60)),
    )
    .await
    .expect("fail");
    assert_eq!(failed.map(|f| f.state), Some(JobState::Retrying));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_future_job_is_scheduled_and_promoted_when_due(pool: PgPool) {
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let id = store::enqueue(&pool, &NewJob::new("k", json!({})).run_at(later))
        .await
        .expect("enqueue")
        .id()
        .expect("id");
    assert_eq!(state_of(&pool, id).await, Some(JobState::Scheduled));
    assert!(claim_one(&pool, "w").await.is_none(), "not before its time");
    let due = store::next_due_at(&pool)
        .await
        .expect("next due")
        .expect("some");
    assert!(
        (due - later).abs() < time::Duration::milliseconds(1),
        "{due} vs {later}"
    );
    assert_eq!(store::promote_due(&pool, 100).await.expect("promote"), 0);

    sqlx::query("UPDATE floe.jobs SET run_at = now() - interval '1 ms'")
        .execute(&pool)
        .await
        .expect("advance time");
    assert_eq!(store::promote_due(&pool, 100).await.expect("promote"), 1);
    assert_eq!(claim_one(&pool, "w").await.map(|j| j.id), Some(id));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn failures_retry_after_the_delay_and_die_when_told_or_out_of_attempts(pool: PgPool) {
    let id = store::enqueue(&pool, &NewJob::new("k", json!({})).max_attempts(2))
        .await
        .expect("enqueue")
        .id()
        .expect("id");
    let job = claim_one(&pool, "w").await.expect("claimed");
    let before = OffsetDateTime::now_utc();
    let failed = store::fail(&pool, job.lease(), "first", Some(Duration::from_secs(10)))
        .await
        .expect("fail")
        .expect("held");
    assert_eq!(failed.state, JobState::Retrying);
    assert!(
        failed.run_at >= before + time::Duration::seconds(9),
        "retry not before the delay: {}",
        failed.run_at
    );
    let record = store::get(&pool, id).await.expect("get").expect("kept");
    assert_eq!(record.last_error.as_deref(), Some("first"));

    // Retry at once (delay zero): claimable straight away.
    sqlx::query("UPDATE floe.jobs SET run_at = now()")
        .execute(&pool)
        .await
        .expect("due");
    store::promote_due(&pool, 10).await.expect("promote");
    let job = claim_one(&pool, "w").await.expect("second attempt");
    assert_eq!(job.attempt, 2);
    let failed = store::fail(&pool, job.lease(), "second", None)
        .await
        .expect("fail")
        .expect("held");
    assert_eq!(
        failed.state,
        JobState::Dead,
        "no retry asked: dead, and kept"
    );
    assert_eq!(state_of(&pool, id).await, Some(JobState::Dead));

    // An operator retries it with a fresh budget.
    assert!(store::retry_now(&pool, id).await.expect("retry"));
    assert!(
        !store::retry_now(&pool, id).await.expect("retry again"),
        "only dead or retrying jobs"
    );
    let job = claim_one(&pool, "w").await.expect("operator retry runs");
    assert_eq!(job.attempt, 1);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn an_expired_lease_on_the_last_attempt_makes_the_job_dead(pool: PgPool) {
    let id = store::enqueue(&pool, &NewJob::new("k", json!({})).max_attempts(1))
        .await
        .expect("enqueue")
        .id()
        .expect("id");
    claim_one(&pool, "w").await.expect("claimed");
    sqlx::query("UPDATE floe.jobs SET lease_expires_at = now() - interval '1 ms'")
        .execute(&pool)
        .await
        .expect("expire");
    assert_eq!(store::rescue_expired(&pool, 10).await.expect("rescue"), 1);
    let record = store::get(&pool, id).await.expect("get").expect("kept");
    assert_eq!(record.state, JobState::Dead);
    assert!(
        record
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("lease expired")),
        "{record:?}"
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn heartbeats_extend_leases_and_release_gives_jobs_back_uncounted(pool: PgPool) {
    store::enqueue_many(
        &pool,
        &[NewJob::new("k", json!({})), NewJob::new("k", json!({}))],
    )
    .await
    .expect("enqueue");
    let claimed = store::claim(
        &pool,
        "default",
        &kinds(&["k"]),
        "w",
        10,
        Duration::from_secs(1),
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 2);
    let leases: Vec<Lease> = claimed.iter().map(|j| j.lease()).collect();
    let extended = store::heartbeat(&pool, &leases, Duration::from_secs(3600))
        .await
        .expect("heartbeat");
    assert_eq!(extended.len(), 2);
    let expiry = store::next_lease_expiry(&pool)
        .await
        .expect("expiry")
        .expect("some");
    assert!(expiry > OffsetDateTime::now_utc() + time::Duration::minutes(59));

    assert_eq!(store::release(&pool, &leases).await.expect("release"), 2);
    let again = store::claim(&pool, "default", &kinds(&["k"]), "w2", 10, LEASE)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|j| j.attempt).collect::<Vec<_>>(),
        [1, 1],
        "a release does not use an attempt"
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn enqueueing_inside_a_rolled_back_transaction_leaves_nothing(pool: PgPool) {
    let mut tx = pool.begin().await.expect("begin");
    store::enqueue(&mut *tx, &NewJob::new("k", json!({})))
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    assert!(
        store::count_by_state(&pool)
            .await
            .expect("count")
            .is_empty()
    );

    let mut tx = pool.begin().await.expect("begin");
    store::enqueue(&mut *tx, &NewJob::new("k", json!({})))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    assert_eq!(
        store::count_by_state(&pool).await.expect("count"),
        vec![(JobState::Available, 1)]
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn inserts_notify_once_per_statement_and_queue(pool: PgPool) {
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .expect("listener");
    listener
        .listen_all(["floe_jobs_available", "floe_jobs_scheduled"])
        .await
        .expect("listen");
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let batch: Vec<NewJob> = (0..500)
        .map(|i| NewJob::new("k", json!({ "i": i })).queue(if i % 2 == 0 { "a" } else { "b" }))
        .chain([NewJob::new("k", json!({})).run_at(later)])
        .collect();
    assert_eq!(
        store::enqueue_many(&pool, &batch).await.expect("enqueue"),
        501
    );

    let mut got = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
        got.push((n.channel().to_owned(), n.payload().to_owned()));
    }
    got.sort();
    let at_ms = (later.unix_timestamp_nanos() / 1_000_000).to_string();
    assert_eq!(
        got,
        vec![
            ("floe_jobs_available".to_owned(), "a".to_owned()),
            ("floe_jobs_available".to_owned(), "b".to_owned()),
            ("floe_jobs_scheduled".to_owned(), at_ms),
        ],
        "one wake-up per queue, not per job"
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn a_deferring_transaction_gathers_its_wake_ups_and_notifies_nothing(pool: PgPool) {
    use sqlx::Connection;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .expect("listener");
    listener
        .listen_all([
            "floe_jobs_available",
            "floe_jobs_scheduled",
            "floe_test_marker",
        ])
        .await
        .expect("listen");
    let now = OffsetDateTime::now_utc();
    let (soon, later) = (
        now + time::Duration::minutes(5),
        now + time::Duration::hours(2),
    );
    let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000).to_string();

    let mut conn = pool.acquire().await.expect("conn");
    let mut tx = conn
        .begin_with(store::BEGIN_DEFERRING_WAKEUPS)
        .await
        .expect("begin");
    // Three statements: the trigger adds each one's to what it gathered.
    let jobs = [
        NewJob::new("k", json!({})).queue("a"),
        NewJob::new("k", json!({})).queue("b").run_at(later),
    ];
    store::enqueue_many(&mut *tx, &jobs).await.expect("enqueue");
    store::enqueue(&mut *tx, &NewJob::new("k", json!({})).queue("a,b"))
        .await
        .expect("enqueue");
    store::enqueue(
        &mut *tx,
        &NewJob::new("k", json!({})).queue("a").run_at(soon),
    )
    .await
    .expect("enqueue");
    let mut gathered = store::gathered_wakeups(&mut tx).await.expect("gathered");
    tx.commit().await.expect("commit");
    gathered.sort();
    assert_eq!(
        gathered,
        [
            ("floe_jobs_available", "a".to_owned()),
            ("floe_jobs_available", "a,b".to_owned()),
            ("floe_jobs_scheduled", ms(soon)),
        ],
        "each queue with jobs claimable now once; the earliest future run_at"
    );
    assert_eq!(
        notified_until_marker(&pool, &mut listener).await,
        [],
        "the transaction itself notified nothing"
    );

    // A rolled-back deferring transaction leaves nothing for the next one,
    // and a plain transaction on the same connection notifies as before.
    let mut tx = conn
        .begin_with(store::BEGIN_DEFERRING_WAKEUPS)
        .await
        .expect("begin");
    store::enqueue(&mut *tx, &NewJob::new("k", json!({})).queue("x"))
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    let mut tx = conn
        .begin_with(store::BEGIN_DEFERRING_WAKEUPS)
        .await
        .expect("begin");
    assert_eq!(
        store::gathered_wakeups(&mut tx).await.expect("gathered"),
        []
    );
    tx.commit().await.expect("commit");
    store::enqueue(&mut *conn, &NewJob::new("k", json!({})).queue("c"))
        .await
        .expect("enqueue");
    assert_eq!(
        notified_until_marker(&pool, &mut listener).await,
        [("floe_jobs_available".to_owned(), "c".to_owned())]
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn the_sql_function_and_the_rust_enqueue_write_the_same_rows(pool: PgPool) {
    let later = OffsetDateTime::now_utc() + time::Duration::hours(2);
    let job = NewJob::new("k", json!({"x": [1, 2]}))
        .queue("q2")
        .priority(3)
        .max_attempts(7)
        .unique_key("u")
        .run_at(later);
    let rust = store::enqueue(&pool, &job)
        .await
        .expect("rust enqueue")
        .id()
        .expect("id");
    sqlx::query("DELETE FROM floe.jobs")
        .execute(&pool)
        .await
        .expect("clear");
    let sql: i64 = sqlx::query_scalar(
        "SELECT floe.enqueue('k', '{\"x\": [1, 2]}', $1, 'q2', 3::smallint, 7, 'u')",
    )
    .bind(later)
    .fetch_one(&pool)
    .await
    .expect("sql enqueue");
    assert_ne!(rust, sql);
    let row = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, String, serde_json::Value, i16, OffsetDateTime, String, i32, Option<String>)>(
                "SELECT queue, kind, payload, priority, run_at, state::text, max_attempts, unique_key FROM floe.jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("row")
        }
    };
    let from_sql = row(sql).await;
    assert_eq!(from_sql.5, "scheduled");
    store::enqueue(&pool, &job.clone().unique_key("other"))
        .await
        .expect("again");
    let from_rust: i64 = sqlx::query_scalar("SELECT id FROM floe.jobs WHERE unique_key = 'other'")
        .fetch_one(&pool)
        .await
        .expect("id");
    let mut from_rust = row(from_rust).await;
    from_rust.7 = Some("u".into());
    assert_eq!(from_rust, from_sql, "same columns from both paths");
    // And both refuse a duplicate of a waiting key.
    let dup: Option<i64> =
        sqlx::query_scalar("SELECT floe.enqueue('k', '{}', NULL, 'q2', 0::smallint, 20, 'u')")
            .fetch_one(&pool)
            .await
            .expect("dup");
    assert_eq!(dup, None);
    assert_eq!(
        store::enqueue(&pool, &job).await.expect("dup"),
        Enqueued::Duplicate(Some(sql))
    );
}
