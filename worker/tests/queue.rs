//! The queue with real worker processes: races, crashes, stalls, restarts,
//! retries, schedules and shutdown, against real PostgreSQL.

mod common;

use std::time::Duration;

use common::{Testbed, database, eventually, free_addr, jobs_left, running_jobs, scalar};
use floe_engine::queue::{JobState, NewJob, store};
use nix::sys::signal::Signal;
use serde_json::json;
use time::OffsetDateTime;

/// Every one of `n` jobs has exactly one recorded run: none lost, none twice.
async fn assert_each_ran_once(pool: &sqlx::PgPool, n: i64) {
    assert_eq!(
        scalar(pool, "SELECT count(DISTINCT job_id) FROM testbed_runs").await,
        n,
        "none lost"
    );
    assert_eq!(
        scalar(pool, "SELECT count(*) FROM testbed_runs").await,
        n,
        "none run twice"
    );
}

fn record_jobs(n: usize, sleep_ms: u64) -> Vec<NewJob> {
    (0..n)
        .map(|_| NewJob::new("test.record", json!({ "sleep_ms": sleep_ms })))
        .collect()
}

#[tokio::test]
async fn four_workers_share_20000_jobs_and_run_each_exactly_once() {
    let (url, pool) = database().await;
    for chunk in record_jobs(20_000, 0).chunks(5_000) {
        store::enqueue_many(&pool, chunk).await.expect("enqueue");
    }
    let workers: Vec<Testbed> = (0..4)
        .map(|_| Testbed::start(&url, &["--concurrency", "16"]))
        .collect();
    assert!(
        eventually(Duration::from_secs(180), || async {
            jobs_left(&pool).await == 0
        })
        .await,
        "jobs left: {}",
        jobs_left(&pool).await
    );
    for worker in workers {
        worker.stop();
    }
    assert_each_ran_once(&pool, 20_000).await;
}

#[tokio::test]
async fn a_killed_worker_s_jobs_run_again_after_its_lease_and_none_is_lost() {
    let (url, pool) = database().await;
    store::enqueue_many(&pool, &record_jobs(20, 1_500))
        .await
        .expect("enqueue");
    let mut victim = Testbed::start(
        &url,
        &[
            "--concurrency",
            "4",
            "--prefetch",
            "0",
            "--lease-ms",
            "2000",
        ],
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            running_jobs(&pool).await == 4
        })
        .await
    );
    victim.signal(Signal::SIGKILL);
    let _ = victim.child.wait();
    let killed_at = OffsetDateTime::now_utc();

    let rescuer = Testbed::start(&url, &["--concurrency", "16", "--lease-ms", "2000"]);
    assert!(
        eventually(Duration::from_secs(60), || async {
            jobs_left(&pool).await == 0
        })
        .await
    );
    rescuer.stop();

    assert_each_ran_once(&pool, 20).await;
    let victim_runs =
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM testbed_runs WHERE worker_pid = $1")
            .bind(victim.pid())
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(victim_runs, 0, "killed mid-job, it finished nothing");
    let second_attempts: Vec<OffsetDateTime> =
        sqlx::query_scalar("SELECT started_at FROM testbed_runs WHERE attempt = 2")
            .fetch_all(&pool)
            .await
            .expect("reruns");
    assert_eq!(
        second_attempts.len(),
        4,
        "the 4 jobs it held ran again, as second attempts"
    );
    assert!(
        second_attempts.iter().all(|t| *t >= killed_at),
        "not before the crash"
    );
}

#[tokio::test]
async fn a_stalled_worker_s_late_completion_is_refused_and_its_successor_s_claim_stands() {
    let (url, pool) = database().await;
    let id = store::enqueue(
        &pool,
        &NewJob::new("test.record", json!({ "sleep_ms": 3_000 })),
    )
    .await
    .expect("enqueue")
    .id()
    .expect("id");
    let stalled = Testbed::start(&url, &["--prefetch", "0", "--lease-ms", "1000"]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            store::get(&pool, id)
                .await
                .ok()
                .flatten()
                .is_some_and(|j| j.state == JobState::Running)
        })
        .await
    );
    stalled.signal(Signal::SIGSTOP); // alive, but silent: no heartbeats

    let successor = Testbed::start(&url, &["--prefetch", "0", "--lease-ms", "60000"]);
    let successor_pid = format!(":{}:", successor.pid());
    assert!(
        eventually(Duration::from_secs(30), || async {
            store::get(&pool, id)
                .await
                .ok()
                .flatten()
                .and_then(|j| j.lease_owner)
                .is_some_and(|o| o.contains(&successor_pid))
        })
        .await,
        "the successor never took the job over"
    );
    // The successor holds its run still (its 60 s lease outlasts this), so
    // that its own completion cannot come first, however slow the machine.
    successor.signal(Signal::SIGSTOP);
    stalled.signal(Signal::SIGCONT);
    assert!(
        eventually(Duration::from_secs(30), || async {
            stalled.log().contains("completion refused")
        })
        .await,
        "the stalled worker's completion was not refused:\n{}",
        stalled.log()
    );
    let job = store::get(&pool, id)
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(
        job.state,
        JobState::Running,
        "the successor's claim is untouched"
    );
    assert!(job.lease_owner.is_some_and(|o| o.contains(&successor_pid)));
    successor.signal(Signal::SIGCONT);

    assert!(
        eventually(Duration::from_secs(30), || async {
            jobs_left(&pool).await == 0
        })
        .await
    );
    successor.stop();
    stalled.stop();
    // At least once: both ran it, one completion counted.
    assert_eq!(scalar(&pool, "SELECT count(*) FROM testbed_runs").await, 2);
}

#[tokio::test]
async fn a_postgres_restart_mid_run_pauses_work_and_loses_nothing() {
    // A cluster of this test's own, to restart.
    let mut pg =
        floe_pg::EmbeddedPostgres::start(&floe_pg::Options::temporary()).expect("start PostgreSQL");
    let url = pg.url("postgres");
    let pool = floe_engine::db::connect(&url, 4, Duration::from_secs(10))
        .await
        .expect("connect");
    floe_engine::db::migrate(&pool).await.expect("migrate");
    let mut worker = Testbed::start(&url, &["--concurrency", "8"]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            sqlx::query("SELECT 1 FROM testbed_runs")
                .execute(&pool)
                .await
                .is_ok()
        })
        .await
    );
    for chunk in record_jobs(3_000, 2).chunks(1_000) {
        store::enqueue_many(&pool, chunk).await.expect("enqueue");
    }
    assert!(
        eventually(Duration::from_secs(60), || async {
            scalar(&pool, "SELECT count(*) FROM testbed_runs").await > 300
        })
        .await
    );

    // Longer than the pool's acquire timeout (5 s), so that claims, outcomes
    // and the listener all see errors, not just slow connections.
    pg.stop_server();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        worker.running(),
        "the worker must survive its database going away"
    );
    pg.start_server().expect("PostgreSQL back");

    assert!(
        eventually(Duration::from_secs(120), || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM floe.jobs")
                .fetch_one(&pool)
                .await
                .is_ok_and(|n| n == 0)
        })
        .await,
        "work did not resume:\n{}",
        worker.log()
    );
    assert!(worker.running());
    let log = worker.stop();
    assert!(
        log.contains("claim failed; retrying"),
        "the outage was not seen:\n{log}"
    );
    assert_eq!(
        scalar(&pool, "SELECT count(DISTINCT job_id) FROM testbed_runs").await,
        3_000,
        "none lost:\n{log}"
    );
    pool.close().await;
    pg.stop().expect("stop");
}

#[tokio::test]
async fn failures_back_off_honour_asked_delays_stop_at_max_attempts_and_dead_jobs_can_be_retried() {
    let (url, pool) = database().await;
    let enqueue = |payload: serde_json::Value, max: i32| {
        let pool = pool.clone();
        async move {
            store::enqueue(&pool, &NewJob::new("test.fail", payload).max_attempts(max))
                .await
                .expect("enqueue")
                .id()
                .expect("id")
        }
    };
    let backs_off = enqueue(json!({ "times": 2 }), 5).await;
    let asks = enqueue(json!({ "times": 1, "retry_after_ms": 1500 }), 5).await;
    let exhausts = enqueue(json!({ "times": 10 }), 3).await;
    let permanent = enqueue(json!({ "times": 5, "permanent": true }), 5).await;
    let undecodable = enqueue(json!({ "times": "not a number" }), 5).await;
    let worker = Testbed::start(&url, &[]);

    let runs = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i32, OffsetDateTime, OffsetDateTime)>(
                "SELECT attempt, started_at, finished_at FROM testbed_runs WHERE job_id = $1 ORDER BY attempt",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .expect("runs")
        }
    };
    let state = |id: i64| {
        let pool = pool.clone();
        async move { store::get(&pool, id).await.expect("get").map(|j| j.state) }
    };
    assert!(
        eventually(Duration::from_secs(60), || async {
            state(backs_off).await.is_none()
                && state(asks).await.is_none()
                && state(exhausts).await == Some(JobState::Dead)
                && state(permanent).await == Some(JobState::Dead)
                && state(undecodable).await == Some(JobState::Dead)
        })
        .await,
        "{}",
        worker.log()
    );

    // Exponential backoff from 100 ms with equal jitter: the first wait is at
    // least 50 ms, the second at least 100 ms.
    let r = runs(backs_off).await;
    assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(r[1].1 - r[0].2 >= time::Duration::milliseconds(50), "{r:?}");
    assert!(
        r[2].1 - r[1].2 >= time::Duration::milliseconds(100),
        "{r:?}"
    );

    let r = runs(asks).await;
    assert_eq!(r.len(), 2);
    assert!(
        r[1].1 - r[0].2 >= time::Duration::milliseconds(1500),
        "asked delay not honoured: {r:?}"
    );

    assert_eq!(runs(exhausts).await.len(), 3, "max_attempts = 3");
    let dead = store::get(&pool, exhausts)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(dead.last_error.as_deref(), Some("planned failure 3 of 10"));
    assert_eq!(
        runs(permanent).await.len(),
        1,
        "a permanent error is not retried"
    );
    let undecodable_job = store::get(&pool, undecodable)
        .await
        .expect("get")
        .expect("kept");
    assert!(
        undecodable_job
            .last_error
            .is_some_and(|e| e.contains("does not decode"))
    );

    // An operator retries the dead job: it runs again with a fresh budget.
    assert!(store::retry_now(&pool, exhausts).await.expect("retry"));
    assert!(
        eventually(Duration::from_secs(30), || async {
            runs(exhausts).await.len() == 6
        })
        .await
    );
    worker.stop();
}

#[tokio::test]
async fn a_scheduled_job_waits_for_its_time_and_then_runs_without_polling() {
    let (url, pool) = database().await;
    // The fallback poll is an hour: only the wake-up can run the job in time.
    let worker = Testbed::start(&url, &["--poll-ms", "3600000"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run_at = OffsetDateTime::now_utc() + time::Duration::milliseconds(1_500);
    let id = store::enqueue(&pool, &NewJob::new("test.record", json!({})).run_at(run_at))
        .await
        .expect("enqueue")
        .id()
        .expect("id");
    assert_eq!(
        store::get(&pool, id).await.expect("get").map(|j| j.state),
        Some(JobState::Scheduled)
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            jobs_left(&pool).await == 0
        })
        .await
    );
    let started: OffsetDateTime =
        sqlx::query_scalar("SELECT started_at FROM testbed_runs WHERE job_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("ran");
    assert!(started >= run_at, "ran {} early", run_at - started);
    eprintln!("scheduled job lateness: {}", started - run_at);
    worker.stop();
}

#[tokio::test]
async fn shutdown_finishes_running_jobs_and_releases_the_prefetched_ones() {
    let (url, pool) = database().await;
    store::enqueue_many(&pool, &record_jobs(30, 1_000))
        .await
        .expect("enqueue");
    let worker = Testbed::start(&url, &["--concurrency", "2", "--prefetch", "20"]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            running_jobs(&pool).await == 22
        })
        .await,
        "2 running and 20 prefetched"
    );
    let log = worker.stop();
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM testbed_runs").await,
        2,
        "the two running jobs finished:\n{log}"
    );
    assert_eq!(running_jobs(&pool).await, 0, "nothing left leased");
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM floe.jobs WHERE state = 'available' AND attempts = 0"
        )
        .await,
        28,
        "the 20 prefetched are back, their attempt uncounted"
    );
}

#[tokio::test]
async fn jobs_still_running_on_shutdown_keep_their_leases_and_run_once() {
    let (url, pool) = database().await;
    store::enqueue_many(&pool, &record_jobs(2, 4_000))
        .await
        .expect("enqueue");
    let stopping = Testbed::start(
        &url,
        &[
            "--concurrency",
            "2",
            "--prefetch",
            "0",
            "--lease-ms",
            "1000",
        ],
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            running_jobs(&pool).await == 2
        })
        .await,
        "both jobs running"
    );
    // A second worker whose rescuer would take back a lease that expires
    // while the first one drains its running jobs.
    let other = Testbed::start(&url, &["--prefetch", "0", "--lease-ms", "1000"]);
    let log = stopping.stop();
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM testbed_runs").await,
        2,
        "the running jobs finished on the stopping worker:\n{log}"
    );
    // Past several leases: a rescue, had there been one, has happened.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let other_log = other.stop();
    assert_eq!(jobs_left(&pool).await, 0, "{other_log}");
    assert_each_ran_once(&pool, 2).await;
}

#[tokio::test]
async fn leases_are_extended_while_every_pooled_connection_is_busy() {
    use floe_worker::handlers::Registry;
    use floe_worker::runtime::{Shared, run_heartbeat};
    use floe_worker::settings::WorkerSettings;

    let (url, pool) = database().await;
    store::enqueue_many(&pool, &record_jobs(3, 0))
        .await
        .expect("enqueue");
    let lease = Duration::from_millis(1_500);
    // The worker's pool has one connection, and something else holds it
    // for longer than a lease (a claimer stuck behind a lock, say).
    let busy = floe_engine::db::connect(&url, 1, Duration::from_secs(10))
        .await
        .expect("connect");
    let settings = WorkerSettings {
        lease_ms: lease.as_millis() as u64,
        ..WorkerSettings::default()
    };
    let (shared, _outcomes) = Shared::new(
        busy.clone(),
        settings,
        Registry::new(),
        floe_engine::queue::listener::Wakers::new(),
    );
    let claimed = store::claim(
        &pool,
        "default",
        &["test.record".to_owned()],
        &shared.owner,
        10,
        lease,
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 3);
    shared.hold(claimed.iter().map(|j| j.lease()));
    let held_elsewhere = busy.acquire().await.expect("the pool's only connection");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let heartbeat = tokio::spawn(run_heartbeat(shared.clone(), stop));

    // Three leases long, while the pool has nothing to lend.
    tokio::time::sleep(lease * 3).await;
    let expired = scalar(
        &pool,
        "SELECT count(*) FROM floe.jobs WHERE state = 'running' AND lease_expires_at < now()",
    )
    .await;
    let rescued = store::rescue_expired(&pool, 100).await.expect("rescue");
    let _ = stop_tx.send(true);
    heartbeat.await.expect("heartbeat stops");
    drop(held_elsewhere);
    assert_eq!((expired, rescued), (0, 0), "no lease expired");
    assert_eq!(running_jobs(&pool).await, 3, "all three still leased");
}

/// A worker for which every claim from the head is slow (`--slow-claim-ms
/// 0`) claims after the last job it took between claims from the head.
/// Jobs that land below that position meanwhile — due an hour ago, as a
/// job released by a stopping worker keeps its old `run_at` — still run, at
/// its next claim from the head, and so do more urgent ones added
/// meanwhile. None is lost, none runs twice. (That the claim after a
/// position takes more urgent jobs first is `engine/tests/plans.rs`.)
#[tokio::test]
async fn claims_after_the_position_leave_no_job_behind() {
    use floe_engine::testing::{Exposition, http_get, wait_for_status};

    let (url, pool) = database().await;
    store::enqueue_many(&pool, &record_jobs(2_000, 10))
        .await
        .expect("enqueue");
    let addr = free_addr();
    let worker = Testbed::start(
        &url,
        &[
            "--slow-claim-ms",
            "0",
            "--concurrency",
            "8",
            "--prefetch",
            "8",
            "--claim-batch",
            "16",
            "--health-listen",
            &addr,
        ],
    );
    assert!(
        eventually(Duration::from_secs(60), || async {
            scalar(&pool, "SELECT count(*) FROM testbed_runs").await >= 200
        })
        .await,
        "the worker runs the backlog:\n{}",
        worker.log()
    );
    let an_hour_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let late: Vec<NewJob> = (0..50)
        .map(|_| NewJob::new("test.record", json!({})).run_at(an_hour_ago))
        .chain((0..50).map(|_| NewJob::new("test.record", json!({})).priority(-1)))
        .collect();
    store::enqueue_many(&pool, &late)
        .await
        .expect("enqueue late");
    assert!(
        eventually(Duration::from_secs(120), || async {
            jobs_left(&pool).await == 0
        })
        .await,
        "jobs left: {}\n{}",
        jobs_left(&pool).await,
        worker.log()
    );
    assert!(
        scalar(&pool, "SELECT count(*) FROM testbed_runs").await >= 2_100,
        "every job ran"
    );
    assert!(wait_for_status(&addr, "/readyz", 200, Duration::from_secs(10)).await);
    let metrics = Exposition::parse(&http_get(&addr, "/metrics").await.expect("metrics"))
        .expect("exposition");
    let after_position = metrics.sum(
        "floe_claim_seconds_count",
        &[("queue", "default"), ("from", "position")],
    );
    assert!(
        after_position > 0.0,
        "claims after the position were made (and counted)"
    );
    worker.stop();
    assert_each_ran_once(&pool, 2_100).await;
}
