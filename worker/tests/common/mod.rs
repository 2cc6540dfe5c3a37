//! Helpers for tests that run real worker processes.
#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use floe_engine::db;
use floe_engine::testing::{expose, fresh_database};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use secrecy::SecretString;
use sqlx::PgPool;

/// A loopback address with a port free a moment ago, for a worker's
/// `--health-listen`.
pub fn free_addr() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    addr.to_string()
}

/// A migrated, empty database and a pool on it.
pub async fn database() -> (SecretString, PgPool) {
    let url = fresh_database().await;
    let pool = db::connect(&url, 4, Duration::from_secs(10))
        .await
        .expect("connect");
    db::migrate(&pool).await.expect("migrate");
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS public.testbed_runs (
             job_id bigint NOT NULL, attempt int NOT NULL, kind text NOT NULL,
             worker_pid int NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("runs table");
    (url, pool)
}

/// A `floe-testbed` worker process; its log goes to a file read by [`Testbed::log`].
pub struct Testbed {
    pub child: Child,
    pub log_path: PathBuf,
}

impl Testbed {
    /// Starts a worker on `url` with extra flags.
    pub fn start(url: &SecretString, args: &[&str]) -> Self {
        Self::start_logging(url, args, "info")
    }

    /// Starts a worker on `url` with extra flags, logging at `filter`.
    pub fn start_logging(url: &SecretString, args: &[&str], filter: &str) -> Self {
        Self::start_program(env!("CARGO_BIN_EXE_floe-testbed"), url, args, filter)
    }

    /// Starts the production `floe-worker` on `url` with extra flags.
    pub fn start_production(url: &SecretString, args: &[&str]) -> Self {
        Self::start_program(env!("CARGO_BIN_EXE_floe-worker"), url, args, "info")
    }

    fn start_program(program: &str, url: &SecretString, args: &[&str], filter: &str) -> Self {
        let log_path = std::env::temp_dir().join(format!(
            "floe-testbed-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let log = File::create(&log_path).expect("log file");
        let child = Command::new(program)
            .args(args)
            .env("DATABASE_URL", expose(url))
            .env("FLOE__LOG__FILTER", filter)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn the worker");
        Self { child, log_path }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signal");
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then waits; panics with the log unless it exits cleanly.
    pub fn stop(mut self) -> String {
        self.signal(Signal::SIGTERM);
        let status = self.child.wait().expect("wait");
        let log = self.log();
        assert!(status.success(), "worker exited with {status}:\n{log}");
        log
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the log of a failed test for reading; drop the others.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A number from a one-value query.
pub async fn scalar(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .expect(sql)
}

/// Jobs left in the queue table.
pub async fn jobs_left(pool: &PgPool) -> i64 {
    scalar(pool, "SELECT count(*) FROM floe.jobs").await
}

/// Jobs leased right now.
pub async fn running_jobs(pool: &PgPool) -> i64 {
    scalar(
        pool,
        "SELECT count(*) FROM floe.jobs WHERE state = 'running'",
    )
    .await
}
