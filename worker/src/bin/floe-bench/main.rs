//! `floe-bench`: the workloads of ../shared/BENCH.md (queue W1, W1b, W2, W3,
//! W7; steady state W4 and soak W9, in `soak.rs`; workflows W5, W5b, W7w,
//! W8; push W6), the scale-out ones (W6x, W6c and W8x, in `scale.rs`),
//! floe's own L1 and L2 (the LLM ledger and memory, in `llm.rs`),
//! and the PostgreSQL ceilings they are judged against, in one run on one
//! durable cluster with PostgreSQL's default configuration.
//!
//! Every figure is printed as a JSON line as it is measured; at the end the
//! medians and ranges over the repetitions are written as Markdown (for
//! docs/BENCHMARKS.md). Run it through `./scripts/bench`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod llm;
mod push;
mod scale;
mod soak;
mod waits;

use anyhow::Context;
use clap::Parser;
use floe_engine::queue::{NewJob, store};
use floe_pg::{EmbeddedPostgres, Options};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;

/// BENCH.md's queue workloads and ceilings.
#[derive(Parser, Debug)]
#[command(name = "floe-bench")]
struct Cli {
    /// Repetitions of each workload (the median and range are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Jobs in W1, W1b and W7.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Samples per W2 repetition.
    #[arg(long, default_value_t = 200)]
    w2_samples: usize,
    /// Scheduled jobs per W2s repetition.
    #[arg(long, default_value_t = 50)]
    w2s_samples: usize,
    /// Workflows in W5.
    #[arg(long, default_value_t = 1_000)]
    w5_workflows: usize,
    /// Workflows in W8.
    #[arg(long, default_value_t = 10_000)]
    w8_workflows: usize,
    /// Serial enqueues in W3.
    #[arg(long, default_value_t = 2_000)]
    w3_enqueues: usize,
    /// Messages in W6, W6x and W6c.
    #[arg(long, default_value_t = 200)]
    w6_samples: usize,
    /// WebSocket clients in W6c, all connected at once to one floe-api.
    #[arg(long, default_value_t = 1_000)]
    w6c_clients: usize,
    /// Sleeping workflows in W8x (deadlines spread over the next 3 days).
    #[arg(long, default_value_t = 100_000)]
    w8x_workflows: usize,
    /// Of W8x's workflows, how many are moved to fall due in the same 10 s.
    #[arg(long, default_value_t = 10_000)]
    w8x_due: usize,
    /// Single starts and single signals timed in W8x, before and after the
    /// bulk of sleeping workflows.
    #[arg(long, default_value_t = 200)]
    w8x_probes: usize,
    /// Agent turns per L1 phase.
    #[arg(long, default_value_t = 300)]
    llm_turns: usize,
    /// Searches (and updates) in L2.
    #[arg(long, default_value_t = 200)]
    memory_queries: usize,
    /// Seconds per pgbench ceiling run.
    #[arg(long, default_value_t = 5)]
    ceiling_secs: u64,
    /// Seconds per W4 load level (200 jobs/s, then 50 % of W1).
    #[arg(long, default_value_t = 120)]
    w4_secs: u64,
    /// The W1 rate (jobs/s) whose half W4 and W9 offer; without it, W1's
    /// median in this run, or one W1 measured first.
    #[arg(long)]
    w1_rate: Option<f64>,
    /// Minutes of W9's load (a soak: it runs once, whatever --reps says).
    #[arg(long = "w9-minutes", visible_alias = "minutes", default_value_t = 30.0)]
    w9_minutes: f64,
    /// The fraction of W1's rate W9 offers (BENCH.md: 0.5, as W4's second
    /// level).
    #[arg(long, default_value_t = 0.5)]
    w9_fraction: f64,
    /// Minutes W9's transaction stays idle, in the middle of the run.
    #[arg(long, default_value_t = 5.0)]
    w9_idle_minutes: f64,
    /// Workloads to run, comma-separated (ceilings, W1, W1b, W2, W2s, W3, W4, W5, W5b, W6, W6l,
    /// W6x, W6c, W7, W7w, W8, W8x, W9, and floe's own L1 and L2: the LLM ledger and memory). W9 (30
    /// minutes), W6c (1,000 WebSocket clients) and W8x (100,000 sleeping workflows) only when
    /// named.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceilings,W1,W1b,W2,W2s,W3,W4,W5,W5b,W6,W6l,W6x,W7,W7w,W8,L1,L2"
    )]
    only: Vec<String>,
    /// Write the Markdown report here (between its floe-bench markers).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write between `<!-- floe-bench:SECTION:start/end -->` instead of the
    /// unnamed markers, so that partial runs can keep sections of their own.
    #[arg(long)]
    section: Option<String>,
}

/// One measurement.
#[derive(Clone, Debug)]
struct Figure {
    workload: String,
    metric: String,
    value: f64,
    unit: &'static str,
}

struct Bench {
    pg: EmbeddedPostgres,
    admin: PgPool,
    figures: Vec<Figure>,
    testbed: PathBuf,
    pgbench: PathBuf,
    /// The W1 rate W4 and W9 take half of, once known.
    w1_rate: Option<f64>,
    /// Text for the report below the table (W8x's query plans): title, body.
    notes: Vec<(String, String)>,
}

/// The queue workloads' worker settings (W1–W4, W7, W9): concurrency 16, as the
/// queue figures in docs/BENCHMARKS.md were measured. The workflow workloads
/// run the worker's defaults.
/// Signals sent one at a time to an idle workflow after W5.
const IDLE_SIGNALS: i64 = 100;

const QUEUE_WORKER: &[&str] = &["--concurrency", "16"];

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let dir = std::env::temp_dir().join(format!("floe-bench-{}", uuid::Uuid::new_v4().simple()));
    // Durable, default configuration: not the test suite's fsync-off cluster.
    let pg = EmbeddedPostgres::start(&Options::persistent(&dir))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let admin =
            floe_engine::db::connect(&pg.url("postgres"), 4, Duration::from_secs(10)).await?;
        let exe = std::env::current_exe()?;
        let bindir = String::from_utf8(Command::new("pg_config").arg("--bindir").output()?.stdout)?;
        let mut bench = Bench {
            pg,
            admin,
            figures: Vec::new(),
            testbed: exe.with_file_name("floe-testbed"),
            pgbench: PathBuf::from(bindir.trim()).join("pgbench"),
            w1_rate: None,
            notes: Vec::new(),
        };
        let want = |w: &str| cli.only.iter().any(|o| o.eq_ignore_ascii_case(w));
        if want("ceilings") {
            bench.ceilings(cli.ceiling_secs, cli.reps).await?;
        }
        for rep in 0..cli.reps {
            if want("W1") {
                let result = bench.burn_down("W1", 1, cli.jobs, rep).await;
                bench.survive("burn_down", result);
            }
            if want("W1b") {
                let result = bench.burn_down("W1b", 2, cli.jobs, rep).await;
                bench.survive("burn_down", result);
                let result = bench.burn_down("W1b", 4, cli.jobs, rep).await;
                bench.survive("burn_down", result);
            }
            if want("W2") {
                let result = bench.idle_pickup(cli.w2_samples, rep).await;
                bench.survive("idle_pickup", result);
            }
            if want("W2s") {
                let result = bench.scheduled_lateness(cli.w2s_samples, rep).await;
                bench.survive("scheduled_lateness", result);
            }
            if want("W3") {
                let result = bench.enqueue_cost(cli.w3_enqueues, cli.jobs, rep).await;
                bench.survive("enqueue_cost", result);
            }
            if want("W4") {
                let result = bench.steady_state(&cli, rep).await;
                bench.survive("steady_state", result);
            }
            if want("W5") {
                let result = bench
                    .durable_workflows(cli.w5_workflows, rep, false, 1)
                    .await;
                bench.survive("durable_workflows", result);
            }
            if want("W5b") {
                for processes in [2, 4] {
                    let result = bench
                        .durable_workflows(cli.w5_workflows, rep, false, processes)
                        .await;
                    bench.survive("durable_workflows", result);
                }
            }
            if want("W7w") {
                let result = bench
                    .durable_workflows(cli.w5_workflows, rep, true, 1)
                    .await;
                bench.survive("durable_workflows", result);
            }
            if want("W7") {
                let result = bench.crash_recovery(cli.jobs, rep).await;
                bench.survive("crash_recovery", result);
            }
            if want("W8") {
                let result = bench.timers(cli.w8_workflows, rep).await;
                bench.survive("timers", result);
            }
            if want("W6") {
                let result = bench.signal_to_push(cli.w6_samples, rep).await;
                bench.survive("signal_to_push", result);
            }
            if want("W6l") {
                let result = bench.signal_to_push_loaded(&cli, rep).await;
                bench.survive("signal_to_push_loaded", result);
            }
            if want("W6x") {
                let result = bench.two_apis(cli.w6_samples, rep).await;
                bench.survive("two_apis", result);
            }
            if want("W6c") {
                let result = bench
                    .many_sockets(cli.w6c_clients, cli.w6_samples, rep)
                    .await;
                bench.survive("many_sockets", result);
            }
            if want("W8x") {
                let result = bench
                    .sleepers_at_scale(cli.w8x_workflows, cli.w8x_due, cli.w8x_probes, rep)
                    .await;
                bench.survive("sleepers_at_scale", result);
            }
            if want("L1") {
                let result = bench.llm_turns(cli.llm_turns, rep).await;
                bench.survive("llm_turns", result);
            }
            if want("L2") {
                let result = bench.memory(cli.memory_queries, rep).await;
                bench.survive("memory", result);
            }
            if want("W9") && rep == 0 {
                let result = bench.soak(&cli, rep).await;
                bench.survive("soak", result);
            }
        }
        let report = bench.report(&cli);
        if let Some(out) = &cli.out {
            write_between_markers(out, cli.section.as_deref(), &report)?;
            eprintln!("report written to {}", out.display());
        } else {
            println!("{report}");
        }
        bench.admin.close().await;
        anyhow::Ok(bench.pg)
    });
    drop(runtime);
    let pg = result?;
    pg.stop()?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Median of a sample (upper median for even sizes).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `p`-th percentile (nearest rank).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[(rank - 1).min(v.len() - 1)]
}

/// A tiny deterministic generator for W2's random gaps.
struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Transaction id and WAL position, to count transactions and WAL bytes.
async fn counters(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    let (xid, wal): (i64, i64) =
        sqlx::query_as("SELECT txid_current(), pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8")
            .fetch_one(pool)
            .await?;
    Ok((xid, wal))
}

/// When the testbed handler of job `id` started, once it has.
async fn wait_for_start(pool: &PgPool, id: i64) -> anyhow::Result<OffsetDateTime> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row: Option<OffsetDateTime> =
            sqlx::query_scalar("SELECT started_at FROM testbed_runs WHERE job_id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
        if let Some(t) = row {
            return Ok(t);
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} never ran");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Returns once `floe.jobs` is empty (polled every 5 ms). The probe reads
/// the primary key from its low end, where the deleted jobs' entries are
/// marked dead after their first visit; `EXISTS (SELECT 1 FROM floe.jobs)`
/// was a sequential scan that re-read every page of deleted jobs at the
/// table's head on each poll: with a large backlog, most of a core.
async fn drained(pool: &PgPool, workload: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let left: Option<i64> = sqlx::query_scalar("SELECT id FROM floe.jobs ORDER BY id LIMIT 1")
            .fetch_optional(pool)
            .await?;
        if left.is_none() {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{workload} did not drain"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Connections of this database that LISTEN (one per worker process).
async fn listeners(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_one(pool)
    .await
}

struct Worker(Child);
impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Bench {
    /// A workload that failed is reported and the run goes on.
    fn survive(&mut self, workload: &str, result: anyhow::Result<()>) {
        if let Err(e) = result {
            eprintln!("{workload} failed: {e:#}");
            println!(
                "{}",
                json!({ "workload": workload, "error": format!("{e:#}") })
            );
        }
    }

    fn record(
        &mut self,
        workload: &str,
        metric: &str,
        value: f64,
        unit: &'static str,
        extra: Value,
    ) {
        let mut line =
            json!({ "workload": workload, "metric": metric, "value": value, "unit": unit });
        if let (Some(obj), Value::Object(more)) = (line.as_object_mut(), extra) {
            obj.extend(more);
        }
        println!("{line}");
        self.figures.push(Figure {
            workload: workload.to_owned(),
            metric: metric.to_owned(),
            value,
            unit,
        });
    }

    /// Records the p50, p95 and maximum of latencies in milliseconds.
    fn record_distribution(
        &mut self,
        workload: &str,
        what: &str,
        values: &mut [f64],
        extra: Value,
    ) {
        for (label, p) in [("p50", 50.0), ("p95", 95.0), ("max", 100.0)] {
            let value = percentile(values, p);
            self.record(
                workload,
                &format!("{what} {label}"),
                value,
                "ms",
                extra.clone(),
            );
        }
    }

    /// A fresh, migrated database with the testbed's table; CHECKPOINT after.
    async fn database(&self, name: &str) -> anyhow::Result<(SecretString, PgPool)> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&self.admin)
        .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&self.admin)
            .await?;
        let url = self.pg.url(name);
        let pool = floe_engine::db::connect(&url, 4, Duration::from_secs(10)).await?;
        floe_engine::db::migrate(&pool).await?;
        sqlx::raw_sql(
            "CREATE TABLE public.testbed_runs (job_id bigint NOT NULL, attempt int NOT NULL, kind text NOT NULL,
               worker_pid int NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL);
             CHECKPOINT;",
        )
        .execute(&pool)
        .await?;
        Ok((url, pool))
    }

    /// Starts a worker process and waits until it listens for wake-ups.
    async fn worker(
        &self,
        pool: &PgPool,
        url: &SecretString,
        extra: &[&str],
    ) -> anyhow::Result<Worker> {
        self.worker_with(pool, url, extra, &[]).await
    }

    /// [`Bench::worker`] with environment variables of its own.
    async fn worker_with(
        &self,
        pool: &PgPool,
        url: &SecretString,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Worker> {
        let listening = || listeners(pool);
        let before = listening().await?;
        let child = Command::new(&self.testbed)
            .args(["--database-migrate", "false"])
            .args(extra)
            .envs(envs.iter().copied())
            .env("DATABASE_URL", url.expose_secret())
            .env("FLOE__LOG__FILTER", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", self.testbed.display()))?;
        let worker = Worker(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while listening().await? <= before {
            anyhow::ensure!(Instant::now() < deadline, "worker did not become ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let its claimers reach their first idle wait.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(worker)
    }

    /// W1 / W1b: a backlog appears at once (one bulk insert, committed while
    /// the workers idle); time until the table is empty.
    async fn burn_down(
        &mut self,
        workload: &str,
        processes: usize,
        jobs: usize,
        rep: usize,
    ) -> anyhow::Result<()> {
        let (url, pool) = self
            .database(&format!("bench_w1_{processes}_{rep}"))
            .await?;
        let mut workers = Vec::new();
        for _ in 0..processes {
            workers.push(self.worker(&pool, &url, QUEUE_WORKER).await?);
        }
        let batch: Vec<NewJob> = (0..jobs)
            .map(|_| NewJob::new("floe.noop", json!({})))
            .collect();
        store::enqueue_many(&pool, &batch).await?;
        let started = Instant::now();
        let (xid0, wal0) = counters(&pool).await?;
        drained(&pool, workload).await?;
        let secs = started.elapsed().as_secs_f64();
        let (xid1, wal1) = counters(&pool).await?;
        drop(workers);
        let n = jobs as f64;
        let extra = json!({ "processes": processes, "rep": rep, "jobs": jobs, "seconds": secs });
        let metric = |m: &str| format!("{m} ({processes} proc)");
        self.record(
            workload,
            &metric("jobs/s"),
            n / secs,
            "jobs/s",
            extra.clone(),
        );
        self.record(
            workload,
            &metric("tx/job"),
            (xid1 - xid0 - 1) as f64 / n,
            "tx",
            extra.clone(),
        );
        self.record(
            workload,
            &metric("WAL/job"),
            (wal1 - wal0) as f64 / n,
            "B",
            extra,
        );
        pool.close().await;
        Ok(())
    }

    /// W2: an idle worker; one job at a time after a random gap; time from
    /// the enqueue call to the handler's start.
    async fn idle_pickup(&mut self, samples: usize, rep: usize) -> anyhow::Result<()> {
        let (url, pool) = self.database(&format!("bench_w2_{rep}")).await?;
        let _worker = self.worker(&pool, &url, QUEUE_WORKER).await?;
        let mut rng = Lcg(42 + rep as u64);
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            tokio::time::sleep(Duration::from_secs_f64(0.1 + 2.4 * rng.unit())).await;
            let sent = OffsetDateTime::now_utc();
            let id = store::enqueue(&pool, &NewJob::new("test.record", json!({})))
                .await?
                .id()
                .unwrap_or(0);
            let started = wait_for_start(&pool, id).await?;
            latencies.push((started - sent).as_seconds_f64() * 1000.0);
        }
        let extra = json!({ "rep": rep, "samples": samples });
        self.record_distribution("W2", "pickup", &mut latencies, extra);
        pool.close().await;
        Ok(())
    }

    /// W2s: an idle worker; jobs scheduled 0.5–1.5 s ahead, one at a time;
    /// how late each handler starts after its run_at.
    async fn scheduled_lateness(&mut self, samples: usize, rep: usize) -> anyhow::Result<()> {
        let (url, pool) = self.database(&format!("bench_w2s_{rep}")).await?;
        let _worker = self.worker(&pool, &url, QUEUE_WORKER).await?;
        let mut rng = Lcg(7 + rep as u64);
        let mut lateness = Vec::with_capacity(samples);
        for _ in 0..samples {
            let run_at = OffsetDateTime::now_utc() + time::Duration::seconds_f64(0.5 + rng.unit());
            let id = store::enqueue(&pool, &NewJob::new("test.record", json!({})).run_at(run_at))
                .await?
                .id()
                .unwrap_or(0);
            let started = wait_for_start(&pool, id).await?;
            lateness.push((started - run_at).as_seconds_f64() * 1000.0);
        }
        let extra = json!({ "rep": rep, "samples": samples });
        self.record_distribution("W2s", "scheduled lateness", &mut lateness, extra);
        pool.close().await;
        Ok(())
    }

    /// W3: serial single enqueues from one client, then one bulk enqueue.
    async fn enqueue_cost(
        &mut self,
        singles: usize,
        bulk: usize,
        rep: usize,
    ) -> anyhow::Result<()> {
        let (url, pool) = self.database(&format!("bench_w3_{rep}")).await?;
        let mut conn = PgConnection::connect(url.expose_secret()).await?;
        let (xid0, wal0) = counters(&pool).await?;
        let mut calls = Vec::with_capacity(singles);
        let started = Instant::now();
        for i in 0..singles {
            let t = Instant::now();
            store::enqueue(&mut conn, &NewJob::new("floe.noop", json!({ "i": i }))).await?;
            calls.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let secs = started.elapsed().as_secs_f64();
        let (xid1, wal1) = counters(&pool).await?;
        let extra = json!({ "rep": rep, "enqueues": singles });
        self.record(
            "W3",
            "single enqueues/s",
            singles as f64 / secs,
            "enqueues/s",
            extra.clone(),
        );
        self.record(
            "W3",
            "single call p50",
            percentile(&mut calls, 50.0),
            "ms",
            extra.clone(),
        );
        self.record(
            "W3",
            "single call p95",
            percentile(&mut calls, 95.0),
            "ms",
            extra.clone(),
        );
        self.record(
            "W3",
            "single tx/enqueue",
            (xid1 - xid0 - 1) as f64 / singles as f64,
            "tx",
            extra.clone(),
        );
        self.record(
            "W3",
            "single WAL/enqueue",
            (wal1 - wal0) as f64 / singles as f64,
            "B",
            extra,
        );

        let batch: Vec<NewJob> = (0..bulk)
            .map(|i| NewJob::new("floe.noop", json!({ "i": i })))
            .collect();
        let (_, wal0) = counters(&pool).await?;
        let t = Instant::now();
        store::enqueue_many(&mut conn, &batch).await?;
        let secs = t.elapsed().as_secs_f64();
        let (_, wal1) = counters(&pool).await?;
        let extra = json!({ "rep": rep, "enqueues": bulk });
        self.record(
            "W3",
            "bulk enqueues/s",
            bulk as f64 / secs,
            "enqueues/s",
            extra.clone(),
        );
        self.record(
            "W3",
            "bulk WAL/enqueue",
            (wal1 - wal0) as f64 / bulk as f64,
            "B",
            extra,
        );
        conn.close().await?;
        pool.close().await;
        Ok(())
    }

    /// W5: workflows of 3 signals and 3 activities (test.pipeline); an
    /// external client LISTENs for `floe_workflows` and sends each signal as
    /// soon as its workflow waits for it.
    ///
    /// With `crash` (W7w), the worker is killed with SIGKILL when 30 % of
    /// the workflows have completed and a successor started: how long until
    /// the jobs it held run again, whether every workflow still completes
    /// with each transition applied once, and how many activities ran again.
    ///
    /// With more than one of `processes` (W5b), that many worker processes
    /// share the workflows, and the idle part is left out.
    async fn durable_workflows(
        &mut self,
        n: usize,
        rep: usize,
        crash: bool,
        processes: usize,
    ) -> anyhow::Result<()> {
        use floe_engine::workflow::store as wf;
        let workload = match (crash, processes) {
            (true, _) => "W7w",
            (false, 1) => "W5",
            (false, _) => "W5b",
        };
        let database = match processes {
            1 => format!("bench_{}_{rep}", workload.to_lowercase()),
            _ => format!("bench_{}_{processes}_{rep}", workload.to_lowercase()),
        };
        let (url, pool) = self.database(&database).await?;
        let lease = ["--lease-ms", "5000"];
        let settings: &[&str] = if crash { &lease } else { &[] };
        let mut worker = self.worker(&pool, &url, settings).await?;
        let mut others = Vec::new();
        for _ in 1..processes {
            others.push(self.worker(&pool, &url, settings).await?);
        }
        let label = |m: &str| match processes {
            1 => m.to_owned(),
            _ => format!("{m} ({processes} proc)"),
        };
        let mut successor = None;
        let mut crashed_at = None;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener
            .listen(floe_engine::workflow::CHANNEL_WORKFLOWS)
            .await?;
        let (xid0, wal0) = counters(&pool).await?;
        let sampler = waits::Sampler::start(&url).await?;
        let started = Instant::now();
        let mut tx = pool.begin().await?;
        for i in 0..n {
            wf::start(
                &mut tx,
                "test.pipeline",
                &format!("w5-{i}"),
                &json!({}),
                1,
                None,
            )
            .await?;
        }
        tx.commit().await?;
        // Four senders, so that one slow signal does not hold up the others.
        let (send, receive) = tokio::sync::mpsc::unbounded_channel::<(uuid::Uuid, String)>();
        let receive = std::sync::Arc::new(tokio::sync::Mutex::new(receive));
        let mut senders = Vec::new();
        for _ in 0..4 {
            let (pool, receive) = (pool.clone(), receive.clone());
            senders.push(tokio::spawn(async move {
                loop {
                    let next = receive.lock().await.recv().await;
                    let Some((id, name)) = next else {
                        return anyhow::Ok(());
                    };
                    let mut conn = pool.acquire().await?;
                    wf::signal(&mut conn, id, &name, &Value::Null, None).await?;
                }
            }));
        }
        let mut completed = 0;
        while completed < n {
            let note = tokio::time::timeout(Duration::from_secs(60), listener.recv()).await??;
            let change: Value = serde_json::from_str(note.payload())?;
            match change["status"].as_str() {
                Some("waiting") => {
                    let version = change["version"].as_i64().unwrap_or(0);
                    let id: uuid::Uuid = serde_json::from_value(change["id"].clone())?;
                    let _ = send.send((id, format!("s{}", (version + 1) / 2)));
                }
                Some("completed") => {
                    completed += 1;
                    if crash && completed == n * 3 / 10 {
                        let pattern = format!("%:{}:%", worker.0.id());
                        let alive = listeners(&pool).await?;
                        worker.0.kill()?;
                        let killed = Instant::now();
                        // Its LISTEN connection must be gone before the
                        // successor's readiness (one more) can be seen.
                        while listeners(&pool).await? >= alive {
                            anyhow::ensure!(
                                killed.elapsed() < Duration::from_secs(10),
                                "killed worker's connection stays"
                            );
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        let held: Vec<i64> = sqlx::query_scalar(
                            "SELECT id FROM floe.jobs WHERE lease_owner LIKE $1",
                        )
                        .bind(&pattern)
                        .fetch_all(&pool)
                        .await?;
                        successor = Some(self.worker(&pool, &url, settings).await?);
                        crashed_at = Some((killed, held, pattern));
                    }
                }
                Some("failed") => anyhow::bail!("a {workload} workflow failed: {change}"),
                _ => {}
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let profile = sampler.finish().await?;
        drop(send);
        for s in senders {
            s.await??;
        }
        if let Some((killed, held, pattern)) = crashed_at {
            drop(listener);
            self.crash_figures(&pool, n, rep, killed, &held, &pattern)
                .await?;
            drop((worker, successor));
            pool.close().await;
            return Ok(());
        }
        let (xid1, wal1) = counters(&pool).await?;
        let mut resume: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM h.applied_at - i.created_at)::float8 * 1000 FROM floe.history h
               JOIN floe.inbox i USING (workflow_id, seq) WHERE h.event = 'signal'",
        )
        .fetch_all(&pool)
        .await?;
        let history: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.history")
            .fetch_one(&pool)
            .await?;
        // History rows written by one transaction share its start time.
        let per_tx: f64 = sqlx::query_scalar(
            "SELECT count(*)::float8 / count(DISTINCT applied_at) FROM floe.history",
        )
        .fetch_one(&pool)
        .await?;
        let nf = n as f64;
        let extra = json!({ "rep": rep, "workflows": n, "seconds": secs, "processes": processes });
        self.record(
            workload,
            &label("workflows/s"),
            nf / secs,
            "workflows/s",
            extra.clone(),
        );
        self.record(
            workload,
            &label("signal→resume p50"),
            percentile(&mut resume, 50.0),
            "ms",
            extra.clone(),
        );
        self.record(
            workload,
            &label("signal→resume p95"),
            percentile(&mut resume, 95.0),
            "ms",
            extra.clone(),
        );
        self.record(
            workload,
            &label("tx/workflow"),
            (xid1 - xid0 - 1) as f64 / nf,
            "tx",
            extra.clone(),
        );
        self.record(
            workload,
            &label("WAL/workflow"),
            (wal1 - wal0) as f64 / nf,
            "B",
            extra.clone(),
        );
        self.record(
            workload,
            &label("history rows/workflow"),
            history as f64 / nf,
            "rows",
            extra.clone(),
        );
        self.record(
            workload,
            &label("events applied/transaction"),
            per_tx,
            "events",
            extra.clone(),
        );
        // Where the time went: a busy machine, or processes waiting on
        // each other's row locks.
        let mut extra = extra;
        extra["waits"] = json!(profile.top(6));
        eprintln!(
            "{workload} ({processes} proc): CPU {:.0} % busy, {:.2} active sessions, waits {:?}",
            profile.cpu_busy * 100.0,
            profile.mean_active(),
            profile.top(6)
        );
        self.record(
            workload,
            &label("CPU busy"),
            profile.cpu_busy * 100.0,
            "%",
            extra.clone(),
        );
        self.record(
            workload,
            &label("active sessions"),
            profile.mean_active(),
            "sessions",
            extra.clone(),
        );
        self.record(
            workload,
            &label("active sessions waiting on a lock"),
            profile.lock_share() * 100.0,
            "%",
            extra,
        );

        if processes > 1 {
            drop(listener);
            drop(others);
            pool.close().await;
            return Ok(());
        }

        // The same path idle: one workflow, one signal at a time after a
        // random gap, each sent once the previous one is applied.
        let idle = {
            let mut conn = pool.acquire().await?;
            wf::start(&mut conn, "test.counter", "w5-idle", &json!({}), 1, None)
                .await?
                .id
        };
        let mut rng = Lcg(7 + rep as u64);
        for i in 0..=IDLE_SIGNALS {
            // i = 0 waits for the start event to be applied.
            if i > 0 {
                tokio::time::sleep(Duration::from_secs_f64(0.02 + 0.08 * rng.unit())).await;
                let mut conn = pool.acquire().await?;
                wf::signal(&mut conn, idle, "add", &json!({ "tag": i }), None).await?;
            }
            loop {
                let note = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await??;
                let change: Value = serde_json::from_str(note.payload())?;
                if change["id"] == json!(idle) && change["version"] == json!(i + 1) {
                    break;
                }
            }
        }
        let mut idle_resume: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM h.applied_at - i.created_at)::float8 * 1000 FROM floe.history h
               JOIN floe.inbox i USING (workflow_id, seq) WHERE h.event = 'signal' AND h.workflow_id = $1",
        )
        .bind(idle)
        .fetch_all(&pool)
        .await?;
        let extra = json!({ "rep": rep, "samples": idle_resume.len() });
        for p in [50.0, 95.0] {
            self.record(
                "W5",
                &format!("signal→resume idle p{p}"),
                percentile(&mut idle_resume, p),
                "ms",
                extra.clone(),
            );
        }
        // The listener holds one of the pool's connections: close() would
        // wait for it forever.
        drop(listener);
        pool.close().await;
        Ok(())
    }

    /// W7w's figures, once every workflow has completed.
    async fn crash_figures(
        &mut self,
        pool: &PgPool,
        n: usize,
        rep: usize,
        killed: Instant,
        held: &[i64],
        victim: &str,
    ) -> anyhow::Result<()> {
        // The victim's jobs run again once the rescuer takes them back and
        // the successor claims them (or are finished and gone by now).
        let rerun = loop {
            let still: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM floe.jobs WHERE id = ANY($1) AND lease_owner LIKE $2",
            )
            .bind(held)
            .bind(victim)
            .fetch_one(pool)
            .await?;
            if still == 0 {
                break killed.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (completed, wrong_versions, history, reruns): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM floe.workflows WHERE status = 'completed'),
                    (SELECT count(*) FROM floe.workflows WHERE version <> 7),
                    (SELECT count(*) FROM floe.history),
                    (SELECT coalesce(sum(attempts - 1), 0)::int8 FROM floe.activities)",
        )
        .fetch_one(pool)
        .await?;
        let extra =
            json!({ "rep": rep, "workflows": n, "lease_ms": 5000, "jobs_held": held.len() });
        let figures = [
            ("held jobs run again after (s)", rerun, "s"),
            ("workflows lost", (n as i64 - completed) as f64, "workflows"),
            (
                "workflows not at 7 transitions",
                wrong_versions as f64,
                "workflows",
            ),
            ("history rows/workflow", history as f64 / n as f64, "rows"),
            ("activity re-executions", reruns as f64, "runs"),
        ];
        for (metric, value, unit) in figures {
            self.record("W7w", metric, value, unit, extra.clone());
        }
        Ok(())
    }

    /// W8: `n` sleeping workflows whose deadlines fall in the same 10 s
    /// window; how late each resumes (its timer applied) after its deadline.
    async fn timers(&mut self, n: usize, rep: usize) -> anyhow::Result<()> {
        use floe_engine::workflow::store as wf;
        let (url, pool) = self.database(&format!("bench_w8_{rep}")).await?;
        let _worker = self.worker(&pool, &url, &[]).await?;
        let mut tx = pool.begin().await?;
        // test.sleeper's deadline is its start event's time (this
        // transaction's now()) plus after_ms: offsets from that instant
        // spread the deadlines evenly over the window.
        let for_ms = |i: usize| 30_000 + (i as i64 * 10_000) / n as i64;
        for i in 0..n {
            let after_ms = for_ms(i);
            wf::start(
                &mut tx,
                "test.sleeper",
                &format!("w8-{i}"),
                &json!({ "after_ms": after_ms }),
                1,
                None,
            )
            .await?;
        }
        tx.commit().await?;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM floe.workflows WHERE status IN ('running', 'waiting')",
            )
            .fetch_one(&pool)
            .await?;
            if open == 0 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "W8: {open} workflows never woke");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut lateness: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM t.applied_at - (s.commands->0->>'at')::timestamptz)::float8 * 1000
               FROM floe.history t JOIN floe.history s ON s.workflow_id = t.workflow_id AND s.event = 'start'
              WHERE t.event = 'timer'",
        )
        .fetch_all(&pool)
        .await?;
        let extra = json!({ "rep": rep, "workflows": n, "window_s": 10 });
        self.record(
            "W8",
            "timer lateness p50",
            percentile(&mut lateness, 50.0),
            "ms",
            extra.clone(),
        );
        self.record(
            "W8",
            "timer lateness p99",
            percentile(&mut lateness, 99.0),
            "ms",
            extra.clone(),
        );
        self.record(
            "W8",
            "timer lateness max",
            percentile(&mut lateness, 100.0),
            "ms",
            extra.clone(),
        );
        self.record("W8", "timers fired", lateness.len() as f64, "timers", extra);
        pool.close().await;
        Ok(())
    }

    /// W7: kill -9 a worker after 5,000 recorded jobs, start another; how
    /// long until the killed worker's jobs run again, and what was lost or
    /// run twice.
    async fn crash_recovery(&mut self, jobs: usize, rep: usize) -> anyhow::Result<()> {
        let lease_ms = 5_000u64;
        let lease = lease_ms.to_string();
        let (url, pool) = self.database(&format!("bench_w7_{rep}")).await?;
        let batch: Vec<NewJob> = (0..jobs)
            .map(|_| NewJob::new("test.record", json!({})))
            .collect();
        store::enqueue_many(&pool, &batch).await?;
        let mut victim = self
            .worker(
                &pool,
                &url,
                &[QUEUE_WORKER, &["--lease-ms", &lease]].concat(),
            )
            .await?;
        let kill_after = (jobs / 4) as i64;
        loop {
            let done: i64 = sqlx::query_scalar("SELECT count(*) FROM testbed_runs")
                .fetch_one(&pool)
                .await?;
            if done >= kill_after {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        victim.0.kill()?; // SIGKILL
        let _ = victim.0.wait();
        let killed_at = OffsetDateTime::now_utc();
        let held: Vec<i64> = sqlx::query_scalar("SELECT id FROM floe.jobs WHERE state = 'running'")
            .fetch_all(&pool)
            .await?;
        let _successor = self
            .worker(
                &pool,
                &url,
                &[QUEUE_WORKER, &["--lease-ms", &lease]].concat(),
            )
            .await?;
        drained(&pool, "W7").await?;
        let last_rerun: Option<OffsetDateTime> = sqlx::query_scalar(
            "SELECT max(started_at) FROM testbed_runs WHERE job_id = ANY($1) AND started_at >= $2",
        )
        .bind(&held)
        .bind(killed_at)
        .fetch_one(&pool)
        .await?;
        let (runs, distinct): (i64, i64) =
            sqlx::query_as("SELECT count(*), count(DISTINCT job_id) FROM testbed_runs")
                .fetch_one(&pool)
                .await?;
        let twice_before_kill: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT job_id FROM testbed_runs WHERE started_at < $1 GROUP BY job_id HAVING count(*) > 1) d",
        )
        .bind(killed_at)
        .fetch_one(&pool)
        .await?;
        let extra =
            json!({ "rep": rep, "jobs": jobs, "lease_ms": lease_ms, "held_by_killed": held.len() });
        let rerun_ms = last_rerun.map_or(f64::NAN, |t| (t - killed_at).as_seconds_f64() * 1000.0);
        self.record(
            "W7",
            "killed worker's jobs all rerun after",
            rerun_ms,
            "ms",
            extra.clone(),
        );
        self.record(
            "W7",
            "lost",
            (jobs as i64 - distinct) as f64,
            "jobs",
            extra.clone(),
        );
        self.record(
            "W7",
            "run again after the crash",
            (runs - distinct) as f64,
            "jobs",
            extra.clone(),
        );
        self.record(
            "W7",
            "run twice within a lease",
            twice_before_kill as f64,
            "jobs",
            extra,
        );
        pool.close().await;
        Ok(())
    }

    /// BENCH.md's pgbench ceilings, 8 clients, on this cluster.
    async fn ceilings(&mut self, secs: u64, reps: usize) -> anyhow::Result<()> {
        let (url, pool) = self.database("bench_ceilings").await?;
        sqlx::raw_sql(
            "CREATE TABLE q (id bigserial PRIMARY KEY, payload jsonb NOT NULL DEFAULT '{}', state int NOT NULL DEFAULT 0, lease timestamptz);
             CREATE INDEX q_waiting ON q (id) WHERE state = 0;
             CREATE TABLE ins (id bigserial PRIMARY KEY, payload jsonb NOT NULL DEFAULT '{}');",
        )
        .execute(&pool)
        .await?;
        let patterns: [(&str, &str, f64, bool); 7] = [
            (
                "claim + DELETE, 1 job per tx",
                "DELETE FROM q WHERE id = (SELECT id FROM q ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED);",
                1.0,
                true,
            ),
            (
                "lease UPDATE then ack UPDATE (2 tx per job)",
                "UPDATE q SET state = 1, lease = now() WHERE id = (SELECT id FROM q WHERE state = 0 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id AS jid \\gset\nUPDATE q SET state = 2 WHERE id = :jid;",
                1.0,
                true,
            ),
            (
                "claim + DELETE, 100 jobs per tx",
                "DELETE FROM q WHERE id IN (SELECT id FROM q ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED);",
                100.0,
                true,
            ),
            (
                "lease + ack, 100 jobs per tx",
                "WITH c AS (UPDATE q SET state = 1, lease = now() WHERE id IN (SELECT id FROM q WHERE state = 0 ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING id) SELECT coalesce(min(id), 0) AS lo, coalesce(max(id), 0) AS hi FROM c \\gset\nUPDATE q SET state = 2 WHERE id BETWEEN :lo AND :hi AND state = 1;",
                100.0,
                true,
            ),
            (
                "INSERT, 1 per tx",
                "INSERT INTO ins DEFAULT VALUES;",
                1.0,
                false,
            ),
            (
                "INSERT + NOTIFY, 1 per tx",
                "BEGIN;\nINSERT INTO ins DEFAULT VALUES;\nNOTIFY ceiling;\nCOMMIT;",
                1.0,
                false,
            ),
            ("raw commit", "SELECT txid_current();", 1.0, false),
        ];
        for rep in 0..reps {
            for (name, script, per_tx, needs_backlog) in patterns {
                if needs_backlog {
                    sqlx::raw_sql("TRUNCATE q; INSERT INTO q (payload) SELECT '{}' FROM generate_series(1, 1500000)")
                        .execute(&pool)
                        .await?;
                    sqlx::raw_sql("VACUUM ANALYZE q").execute(&pool).await?;
                }
                sqlx::raw_sql("CHECKPOINT").execute(&pool).await?;
                let file = std::env::temp_dir().join(format!(
                    "floe-ceiling-{}.sql",
                    uuid::Uuid::new_v4().simple()
                ));
                std::fs::write(&file, script)?;
                let out = Command::new(&self.pgbench)
                    .args(["-n", "-c", "8", "-j", "2", "-T", &secs.to_string(), "-f"])
                    .arg(&file)
                    .arg(url.expose_secret())
                    .output()
                    .context("running pgbench")?;
                std::fs::remove_file(&file).ok();
                let text = String::from_utf8_lossy(&out.stdout);
                let tps = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("tps = "))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .with_context(|| {
                        format!(
                            "pgbench output for {name}: {text}{}",
                            String::from_utf8_lossy(&out.stderr)
                        )
                    })?;
                self.record(
                    "ceiling",
                    name,
                    tps * per_tx,
                    "jobs or tx/s",
                    json!({ "rep": rep, "clients": 8, "seconds": secs }),
                );
            }
        }
        pool.close().await;
        Ok(())
    }

    /// Medians and ranges, as Markdown.
    fn report(&self, cli: &Cli) -> String {
        let mut groups: Vec<(String, String, &'static str, Vec<f64>)> = Vec::new();
        for f in &self.figures {
            match groups
                .iter_mut()
                .find(|g| g.0 == f.workload && g.1 == f.metric)
            {
                Some(g) => g.3.push(f.value),
                None => groups.push((f.workload.clone(), f.metric.clone(), f.unit, vec![f.value])),
            }
        }
        let ceiling = |name: &str| {
            groups
                .iter()
                .find(|g| g.0 == "ceiling" && g.1 == name)
                .map(|g| median(&mut g.3.clone()))
        };
        let lease_ack = ceiling("lease + ack, 100 jobs per tx");
        let mut md = String::new();
        md.push_str(&format!(
            "Measured {} with `./scripts/bench` ({} repetitions; {} jobs; W2 {} samples; ceilings {} s each, 8 clients).\n\n",
            OffsetDateTime::now_utc().date(),
            cli.reps,
            cli.jobs,
            cli.w2_samples,
            cli.ceiling_secs
        ));
        md.push_str("| workload | figure | median | range | unit | of ceiling |\n|---|---|---|---|---|---|\n");
        for (workload, metric, unit, values) in &groups {
            let mut v = values.clone();
            let med = median(&mut v);
            let (lo, hi) = (
                v.first().copied().unwrap_or(f64::NAN),
                v.last().copied().unwrap_or(f64::NAN),
            );
            let of = match (workload.as_str(), lease_ack) {
                ("W1" | "W1b", Some(c)) if metric.starts_with("jobs/s") => {
                    format!("{:.0} % of lease + ack ×100", 100.0 * med / c)
                }
                _ => String::new(),
            };
            md.push_str(&format!(
                "| {workload} | {metric} | {} | {} – {} | {unit} | {of} |\n",
                fmt(med),
                fmt(lo),
                fmt(hi)
            ));
        }
        for (title, body) in &self.notes {
            md.push_str(&format!("\n{title}:\n\n```\n{}\n```\n", body.trim_end()));
        }
        md
    }
}

/// Replaces what stands between the markers in `path` (appends both when
/// missing), leaving the hand-written text around them alone.
fn write_between_markers(
    path: &std::path::Path,
    section: Option<&str>,
    report: &str,
) -> anyhow::Result<()> {
    let name = section.map_or_else(String::new, |s| format!("{s}:"));
    let start = format!("<!-- floe-bench:{name}start -->");
    let end = format!("<!-- floe-bench:{name}end -->");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{start}\n{report}{end}");
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if a < b => format!("{}{block}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{old}\n{block}\n"),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
