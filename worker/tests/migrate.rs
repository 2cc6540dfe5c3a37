//! Migrations applied again and by several processes at once, and the worker
//! process's own life cycle, against real PostgreSQL.

use std::process::{Command, Stdio};
use std::time::Duration;

use floe_engine::db::{self, MIGRATOR};
use floe_engine::testing::{expose, fresh_database, wait_for_status};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::PgPool;

async fn applied(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE success) FROM floe._sqlx_migrations")
        .fetch_one(pool)
        .await
        .expect("count migrations")
}

async fn schemas_named_floe(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'floe'")
        .fetch_one(pool)
        .await
        .expect("count schemas")
}

#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let url = fresh_database().await;
    let pool = db::connect(&url, 2, Duration::from_secs(5))
        .await
        .expect("connect");
    db::migrate(&pool).await.expect("first");
    db::migrate(&pool).await.expect("second");
    let n = MIGRATOR.iter().count() as i64;
    assert_eq!(applied(&pool).await, (n, n));
    assert_eq!(schemas_named_floe(&pool).await, 1);
}

#[tokio::test]
async fn four_processes_migrating_at_once_all_succeed_with_one_schema() {
    let url = fresh_database().await;
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_floe-worker"))
                .arg("migrate")
                .env("DATABASE_URL", expose(&url))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn floe-worker migrate")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a migrator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pool = db::connect(&url, 2, Duration::from_secs(5))
        .await
        .expect("connect");
    let n = MIGRATOR.iter().count() as i64;
    assert_eq!(applied(&pool).await, (n, n), "each migration recorded once");
    assert_eq!(schemas_named_floe(&pool).await, 1);
}

#[tokio::test]
async fn a_worker_process_serves_its_probes_and_stops_on_sigterm() {
    let url = fresh_database().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_floe-worker"))
        .args(["--health-listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", expose(&url))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floe-worker");
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_for_status(&addr, "/readyz", 200, Duration::from_secs(60)).await);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_database_that_never_answers_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_floe-worker"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://floe:x@127.0.0.1:1/floe")
        .env("FLOE__DATABASE__CONNECT_TIMEOUT", "1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(
        !stderr.contains("x@"),
        "the password must not be printed: {stderr}"
    );
}

#[test]
fn help_lists_the_worker_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_floe-worker"))
        .arg("--help")
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DATABASE_URL",
        "FLOE__WORKER__HEALTH_LISTEN",
        "FLOE__LOG__FORMAT",
        "FLOE__DATABASE__MIGRATE",
    ] {
        assert!(help.contains(var), "--help does not mention {var}:\n{help}");
    }
}
