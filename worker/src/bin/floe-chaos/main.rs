//! `floe-chaos`: floe under faults, then checked from SQL. Run it through
//! `./scripts/chaos` (docs/chaos.md).
//!
//! One durable embedded PostgreSQL cluster; the fake model on loopback
//! behind a proxy that can cut it off (`model.rs`); `floe-api` and
//! `floe-testbed` worker processes (the workers run the onboarding and the
//! test workflows against the fake model). Scripted clients (`clients.rs`)
//! go through onboarding conversations over HTTP and drive `test.pipeline`
//! workflows from SQL while the chaos loop kills workers with SIGKILL and
//! starts new ones, restarts each API process, restarts PostgreSQL once and
//! takes the model away for a while. Then the faults stop, the work is given
//! time to finish, and `verify.rs` counts what was lost or done twice. The
//! exit status is 1 when any of those counts is not zero.

mod clients;
mod model;
mod verify;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use floe_pg::{EmbeddedPostgres, Options};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinSet;
use tokio::time::Instant;

use clients::{Conversation, Http, Stats};

/// floe under faults: kills, restarts and an LLM outage while scripted
/// clients work; then every loss or duplication counted from SQL.
#[derive(Parser, Debug)]
#[command(name = "floe-chaos")]
struct Cli {
    /// Onboarding conversations (people, over HTTP).
    #[arg(long, default_value_t = 1_000)]
    conversations: usize,
    /// `test.pipeline` workflows (signals through SQL).
    #[arg(long, default_value_t = 1_000)]
    workflows: usize,
    /// The run's budget in minutes: faults in the first 60 % (clients start
    /// over 90 % of that), then the faults stop and the work has the rest to
    /// finish. Starting the
    /// cluster, settling (at most a minute) and the checks come on top.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Worker processes (kept at this number: each one killed is replaced).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// API processes.
    #[arg(long, default_value_t = 2)]
    apis: usize,
    /// Mean seconds between worker kills (each between half and one and a
    /// half times this).
    #[arg(long, default_value_t = 6.0)]
    kill_every_secs: f64,
    /// Longest time the fake model takes to answer, in milliseconds (its
    /// answers' delays are spread evenly up to this).
    #[arg(long, default_value_t = 300)]
    model_delay_ms: u64,
    /// Seconds the model is unreachable.
    #[arg(long, default_value_t = 10.0)]
    outage_secs: f64,
    /// Longest pause of a person before each message, in milliseconds.
    #[arg(long, default_value_t = 1_500)]
    think_ms: u64,
    /// The workers' lease: a killed worker's jobs run again this long after
    /// its last heartbeat.
    #[arg(long, default_value_t = 5_000)]
    lease_ms: u64,
    /// Seed of every random choice (which worker dies, which API a client
    /// uses, pauses); printed, so that a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the cluster's folder and the processes' logs (kept anyway when
    /// the run fails).
    #[arg(long)]
    keep: bool,
}

/// SplitMix64: small, seedable, good enough to pick victims and pauses.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A child process, killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Has the kernel kill the child (SIGKILL) when the thread that starts it
/// ends: a `floe-chaos` killed itself leaves no processes behind. Processes
/// are started from the main thread only.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure makes one system call,
    // prctl(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// The floe processes of the run.
struct Cluster {
    bin_dir: PathBuf,
    url: SecretString,
    llm_url: String,
    logs: PathBuf,
    lease_ms: u64,
    workers: Vec<Proc>,
    /// Each API's port and process.
    apis: Vec<(u16, Proc)>,
    started: usize,
}

impl Cluster {
    fn spawn(
        &mut self,
        program: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        self.started += 1;
        let name = format!("{program}-{}", self.started);
        let log = File::create(self.logs.join(format!("{name}.log")))?;
        let path = self.bin_dir.join(program);
        let mut command = Command::new(&path);
        command
            .args(args)
            .env("DATABASE_URL", self.url.expose_secret())
            .env("FLOE__LOG__FILTER", "warn")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (key, value) in env {
            command.env(key, value);
        }
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} (built? see scripts/chaos)", path.display()))?;
        Ok(Proc { child, name })
    }

    /// Starts a worker; its process id.
    fn start_worker(&mut self) -> anyhow::Result<u32> {
        let args: Vec<String> = [
            "--database-migrate",
            "false",
            "--database-max-connections",
            "8",
            "--lease-ms",
            &self.lease_ms.to_string(),
            "--llm-base-url",
            &self.llm_url,
            "--llm-model",
            "fake",
            "--llm-timeout-ms",
            "20000",
        ]
        .map(String::from)
        .to_vec();
        let worker = self.spawn("floe-testbed", &args, &[("FLOE_TESTBED_ONBOARDING", "1")])?;
        let pid = worker.pid();
        self.workers.push(worker);
        Ok(pid)
    }

    /// Starts an API process on `port`.
    fn start_api(&mut self, port: u16) -> anyhow::Result<Proc> {
        let args: Vec<String> = [
            "--database-migrate",
            "false",
            "--database-max-connections",
            "8",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--static-dir",
            "/nonexistent",
            "--messages-per-minute",
            "0",
            "--nudge-after-secs",
            "86400",
            "--operator-token",
            "floe-chaos-operator-token",
        ]
        .map(String::from)
        .to_vec();
        self.spawn("floe-api", &args, &[])
    }

    fn bases(&self) -> Vec<String> {
        self.apis
            .iter()
            .map(|(port, _)| format!("http://127.0.0.1:{port}"))
            .collect()
    }

    fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(Proc::pid).collect()
    }
}

/// Waits until `base` answers `/readyz` with 200.
async fn ready(base: &str, within: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + within;
    loop {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{base} did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM and waits (at most `within`, then SIGKILL).
async fn terminate(mut proc: Proc, within: Duration) {
    let _ = kill(Pid::from_raw(proc.pid() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if matches!(proc.child.try_wait(), Ok(Some(_))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(proc);
}

/// What happened when, for the report.
struct Events {
    t0: Instant,
    list: Vec<(f64, String)>,
}

impl Events {
    fn add(&mut self, what: String) {
        let t = self.t0.elapsed().as_secs_f64();
        eprintln!("floe-chaos: t={t:7.1}s {what}");
        self.list.push((t, what));
    }
}

#[derive(Default)]
struct Faults {
    kills: u32,
    api_restarts: u32,
    postgres_restarts: u32,
    llm_outages: u32,
}

/// The one-off faults, at fractions of the chaos window.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Restart API process `.0`: with SIGKILL when `.1`, else SIGTERM.
    RestartApi(usize, bool),
    RestartPostgres,
    ModelOutage,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    match start(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("floe-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Starts the cluster (on this thread: PostgreSQL is tied to the thread
/// that starts it, and restarted from it) and runs; whether the run passed.
fn start(cli: &Cli) -> anyhow::Result<bool> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("floe-chaos-{}", &id[..12]));
    // Durable, default configuration: a restart must lose nothing committed.
    let mut pg = EmbeddedPostgres::start(&Options::persistent(dir.join("postgres")))?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let passed = runtime.block_on(run(cli, &mut pg, &logs));
    drop(runtime);
    drop(pg);
    match passed {
        Ok(true) if !cli.keep => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => eprintln!("floe-chaos: kept {} (cluster and logs)", dir.display()),
    }
    passed
}

async fn run(cli: &Cli, pg: &mut EmbeddedPostgres, logs: &Path) -> anyhow::Result<bool> {
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut rng = Rng::new(seed);
    let total = Duration::from_secs_f64(cli.minutes * 60.0);
    let chaos = total.mul_f64(0.6);
    println!(
        "floe-chaos: {} conversations, {} workflows, {} workers, {} APIs, {:.1} minutes ({:.0} s of faults), seed {seed}",
        cli.conversations,
        cli.workflows,
        cli.workers,
        cli.apis,
        cli.minutes,
        chaos.as_secs_f64()
    );

    // The database.
    let admin = floe_engine::db::connect(&pg.url("postgres"), 2, Duration::from_secs(10)).await?;
    sqlx::raw_sql("CREATE DATABASE chaos")
        .execute(&admin)
        .await?;
    admin.close().await;
    let url = pg.url("chaos");
    let pool = floe_engine::db::connect(&url, 8, Duration::from_secs(10)).await?;
    floe_engine::db::migrate(&pool).await?;
    // floe-testbed creates it too, but several starting at once would race.
    sqlx::raw_sql(
        "CREATE TABLE public.testbed_runs (job_id bigint NOT NULL, attempt int NOT NULL, kind text NOT NULL,
           worker_pid int NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL)",
    )
    .execute(&pool)
    .await?;

    // The model, the workers, the APIs.
    let model = model::Model::start(Duration::from_millis(cli.model_delay_ms)).await?;
    let exe = std::env::current_exe()?;
    let mut cluster = Cluster {
        bin_dir: exe.parent().context("no folder")?.to_path_buf(),
        url: url.clone(),
        llm_url: model.proxy.base_url(),
        logs: logs.to_path_buf(),
        lease_ms: cli.lease_ms,
        workers: Vec::new(),
        apis: Vec::new(),
        started: 0,
    };
    for _ in 0..cli.workers {
        cluster.start_worker()?;
    }
    for _ in 0..cli.apis {
        let port = free_port()?;
        let api = cluster.start_api(port)?;
        cluster.apis.push((port, api));
    }
    for base in cluster.bases() {
        ready(&base, Duration::from_secs(60)).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM floe.definitions WHERE kind = 'test.pipeline'",
    )
    .fetch_one(&pool)
    .await?
        == 0
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no worker registered test.pipeline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The clients.
    let t0 = Instant::now();
    let mut events = Events {
        t0,
        list: Vec::new(),
    };
    let stats = Arc::new(Stats::default());
    let http = Http::new(cluster.bases(), stats.clone(), t0 + total)?;
    let spread = chaos.mul_f64(0.9);
    let mut conversations = JoinSet::new();
    let mut records = Vec::new();
    for n in 0..cli.conversations {
        let record = Arc::new(Mutex::new(Conversation::default()));
        records.push(record.clone());
        let start_after = spread.mul_f64(rng.unit());
        conversations.spawn(clients::conversation(
            http.clone(),
            n,
            start_after,
            Duration::from_millis(cli.think_ms),
            rng.next_u64(),
            record,
        ));
    }
    let pipelines = tokio::spawn(clients::pipelines(
        pool.clone(),
        cli.workflows,
        spread,
        t0 + total,
        stats.clone(),
    ));
    events.add(format!(
        "started: {} workers (pids {:?}), APIs {:?}, model at {}",
        cli.workers,
        cluster.worker_pids(),
        cluster.bases(),
        model.proxy.base_url()
    ));

    // The chaos.
    let mut faults = Faults::default();
    let mut schedule: Vec<(f64, Fault)> =
        vec![(0.30, Fault::RestartPostgres), (0.55, Fault::ModelOutage)];
    for api in 0..cli.apis {
        let first = 0.15 + 0.30 * api as f64 / cli.apis.max(1) as f64;
        schedule.push((first, Fault::RestartApi(api, false)));
        schedule.push((first + 0.45, Fault::RestartApi(api, true)));
    }
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut schedule = schedule.into_iter().peekable();
    let kill_gap =
        |rng: &mut Rng| Duration::from_secs_f64(cli.kill_every_secs * (0.5 + rng.unit()));
    let mut next_kill = kill_gap(&mut rng);
    let mut outage_until: Option<Duration> = None;
    let mut chaos_over = false;
    let mut timed_out = false;
    loop {
        let t = t0.elapsed();
        while conversations.try_join_next().is_some() {}
        if t < chaos {
            if t >= next_kill && !cluster.workers.is_empty() {
                let victim = cluster
                    .workers
                    .remove(rng.below(cluster.workers.len() as u64) as usize);
                let pid = victim.pid();
                let held: Option<i64> = tokio::time::timeout(
                    Duration::from_secs(2),
                    sqlx::query_scalar(
                        "SELECT count(*) FROM floe.jobs WHERE state = 'running' AND lease_owner LIKE $1",
                    )
                    .bind(format!("%:{pid}:%"))
                    .fetch_one(&pool),
                )
                .await
                .ok()
                .and_then(Result::ok);
                drop(victim); // SIGKILL
                faults.kills += 1;
                let successor = cluster.start_worker()?;
                events.add(format!(
                    "kill -9 worker pid {pid} (holding {} running jobs); started worker pid {successor}",
                    held.map_or("?".into(), |h| h.to_string())
                ));
                next_kill = t + kill_gap(&mut rng);
            }
            while let Some((_, fault)) = schedule.next_if(|(at, _)| t >= chaos.mul_f64(*at)) {
                match fault {
                    Fault::RestartApi(i, crash) => {
                        let (port, old) = cluster.apis.remove(i);
                        let pid = old.pid();
                        let stopped = Instant::now();
                        if crash {
                            drop(old); // SIGKILL
                        } else {
                            terminate(old, Duration::from_secs(20)).await;
                        }
                        let new = cluster.start_api(port)?;
                        let new_pid = new.pid();
                        cluster.apis.insert(i, (port, new));
                        ready(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await?;
                        faults.api_restarts += 1;
                        events.add(format!(
                            "restarted API {i} ({} pid {pid}, new pid {new_pid} on port {port}; {:.1} s without it)",
                            if crash { "SIGKILL" } else { "SIGTERM" },
                            stopped.elapsed().as_secs_f64()
                        ));
                    }
                    Fault::RestartPostgres => {
                        let stopped = Instant::now();
                        // Immediate shutdown (SIGQUIT): no checkpoint, as
                        // in a crash; the start replays the WAL.
                        if let Some(pid) = pg.pid() {
                            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGQUIT);
                        }
                        pg.stop_server();
                        events.add("PostgreSQL: immediate shutdown (SIGQUIT)".into());
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        pg.start_server()?;
                        faults.postgres_restarts += 1;
                        events.add(format!(
                            "PostgreSQL: started again ({:.1} s down)",
                            stopped.elapsed().as_secs_f64()
                        ));
                    }
                    Fault::ModelOutage => {
                        model.proxy.set_up(false);
                        faults.llm_outages += 1;
                        outage_until = Some(t + Duration::from_secs_f64(cli.outage_secs));
                        events.add(format!(
                            "model outage: connections cut, new ones refused for {:.0} s",
                            cli.outage_secs
                        ));
                    }
                }
            }
        }
        if outage_until.is_some_and(|until| t >= until || t >= chaos) {
            model.proxy.set_up(true);
            outage_until = None;
            events.add(format!(
                "model back ({} open connections were cut)",
                model.proxy.cut()
            ));
        }
        if t >= chaos && !chaos_over {
            chaos_over = true;
            events.add("faults stop".into());
        }
        if chaos_over && conversations.is_empty() && pipelines.is_finished() {
            events.add("every client finished".into());
            break;
        }
        if t >= total {
            timed_out = true;
            events.add("deadline: clients stopped".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    conversations.abort_all();
    while conversations.join_next().await.is_some() {}
    let pipeline_result = if pipelines.is_finished() {
        pipelines.await.ok()
    } else {
        pipelines.abort();
        None
    };

    // Settle: the last background activities (memory updates) finish.
    let settle = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.jobs WHERE state <> 'dead'")
            .fetch_one(&pool)
            .await
            .unwrap_or(-1);
        if left == 0 || settle.elapsed() > Duration::from_secs(60) {
            events.add(format!(
                "settled after {:.1} s ({left} jobs left)",
                settle.elapsed().as_secs_f64()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The checks.
    let records: Vec<Conversation> = records
        .iter()
        .map(|r| std::mem::take(&mut *clients::locked(r)))
        .collect();
    let users: Vec<String> = records.iter().filter_map(|r| r.user_id.clone()).collect();
    let messages: Vec<(String, String, Option<i64>)> = records
        .iter()
        .filter_map(|r| r.user_id.as_ref().map(|u| (u, &r.sent)))
        .flat_map(|(u, sent)| sent.iter().map(|(c, s)| (u.clone(), c.clone(), *s)))
        .collect();
    let live = cluster.worker_pids();
    let counts = verify::run(
        &pool,
        &verify::Expected {
            pipelines: cli.workflows as i64,
            users: &users,
            messages: &messages,
            model_requests: model.fake.calls("/chat/completions") as i64,
            live_workers: &live,
        },
    )
    .await?;

    // The report.
    let unfinished: Vec<&Conversation> = records.iter().filter(|r| !r.completed).collect();
    println!("events:");
    for (t, what) in &events.list {
        println!("  t={t:7.1}s  {what}");
    }
    println!(
        "faults: kills={} api_restarts={} postgres_restarts={} llm_outages={}",
        faults.kills, faults.api_restarts, faults.postgres_restarts, faults.llm_outages
    );
    let a = &model.asked;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "load: {} people signed in, {} messages sent ({} sent again on purpose), {} HTTP requests ({} retried), {} duplicate acknowledgements; \
         signals {} delivered, {} deduplicated, {} SQL retries; model asked {} times (coordinator {}, greeter {}, \
         discovery {}, inbox {}, memory {}, unknown {}); {} model connections cut",
        users.len(),
        messages.len(),
        load(&stats.resends),
        load(&stats.requests),
        load(&stats.http_retries),
        load(&stats.duplicate_acks),
        load(&stats.signals_delivered),
        load(&stats.signals_deduplicated),
        load(&stats.sql_retries),
        a.total(),
        load(&a.coordinator),
        load(&a.greeter),
        load(&a.discovery),
        load(&a.inbox),
        load(&a.memory),
        load(&a.other),
        model.proxy.cut(),
    );
    let mut counts = counts;
    counts.push(verify::Count {
        what: "messages sent again not answered as a duplicate of the first".into(),
        value: load(&stats.resend_mismatches) as i64,
        fails: true,
    });
    println!("checks (any non-zero count marked FAIL fails the run):");
    let mut passed = true;
    for count in &counts {
        let mark = match (count.fails, count.value) {
            (true, 0) => "ok  ",
            (true, _) => {
                passed = false;
                "FAIL"
            }
            (false, _) => "info",
        };
        println!("  [{mark}] {:>8}  {}", count.value, count.what);
    }
    println!(
        "  [{}] {:>8}  conversations that did not complete on the client",
        if unfinished.is_empty() {
            "ok  "
        } else {
            "FAIL"
        },
        unfinished.len()
    );
    for r in unfinished.iter().take(5) {
        println!(
            "         e.g. user {:?}: {}",
            r.user_id,
            r.error.as_deref().unwrap_or("stopped at the deadline")
        );
    }
    passed &= unfinished.is_empty();
    if let Some(Err(e)) = &pipeline_result {
        println!("  pipeline driver: {e:#}");
        passed = false;
    }
    if timed_out {
        passed = false;
    }
    if faults.kills == 0
        || faults.postgres_restarts == 0
        || faults.api_restarts == 0
        || faults.llm_outages == 0
    {
        println!("  not every fault happened: the run is too short to count");
        passed = false;
    }
    println!("result: {}", if passed { "PASS" } else { "FAIL" });
    for proc in cluster.workers.drain(..) {
        let name = proc.name.clone();
        terminate(proc, Duration::from_secs(5)).await;
        tracing::debug!(%name, "stopped");
    }
    for (_, proc) in cluster.apis.drain(..) {
        terminate(proc, Duration::from_secs(5)).await;
    }
    pool.close().await;
    Ok(passed)
}
