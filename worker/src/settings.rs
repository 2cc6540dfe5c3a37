//! The worker's command line: `floe-worker [run|migrate]`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use floe_agents::settings::LlmSettings;
use floe_engine::settings::{DatabaseSettings, LogSettings};

/// floe's worker: leases jobs from PostgreSQL and runs them. Start as many as
/// you like, on as many machines, against one database.
#[derive(Parser, Debug)]
#[command(name = "floe-worker", version)]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Logging settings.
    #[command(flatten)]
    pub log: LogSettings,
    /// Worker settings.
    #[command(flatten)]
    pub worker: WorkerSettings,
    /// The language model, if any.
    #[command(flatten)]
    pub llm: LlmSettings,
}

/// The worker's subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the worker until SIGINT or SIGTERM (the default).
    Run,
    /// Apply pending migrations and exit.
    Migrate,
    /// Replay workflows' histories through this build's definitions, calling
    /// no activity, and report the first divergence of each from its stored
    /// row (exit code 1 if any diverges): the check before an upgrade.
    Replay {
        /// The kind whose open workflows to check.
        #[arg(long)]
        kind: Option<String>,
        /// One workflow (open or finished) instead.
        #[arg(long)]
        id: Option<uuid::Uuid>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Settings of a worker process.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Worker")]
pub struct WorkerSettings {
    /// Address to serve /healthz and /readyz on (for container health checks);
    /// none when absent.
    #[arg(long = "health-listen", env = "FLOE__WORKER__HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,

    /// Queues to claim from, comma-separated.
    #[arg(
        long = "queues",
        env = "FLOE__WORKER__QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub queues: Vec<String>,

    /// Jobs run at once, per queue. A handler holds its slot while it waits
    /// (on an LLM, on the transition batcher), so this is well above the
    /// core count: floe-bench W5 ran 179 workflows/s at 16 and 321–332 at 64.
    #[arg(
        long = "concurrency",
        env = "FLOE__WORKER__CONCURRENCY",
        default_value_t = 64
    )]
    pub concurrency: usize,

    /// Jobs claimed ahead of free slots, per queue, so that a finished job is
    /// followed at once by the next (0 claims only for free slots).
    #[arg(
        long = "prefetch",
        env = "FLOE__WORKER__PREFETCH",
        default_value_t = 64
    )]
    pub prefetch: usize,

    /// Most jobs taken in one claim.
    #[arg(
        long = "claim-batch",
        env = "FLOE__WORKER__CLAIM_BATCH",
        default_value_t = 100
    )]
    pub claim_batch: usize,

    /// Three claims in a row from the head of the queue slower than this,
    /// in milliseconds, make the claimer claim after the last job it took
    /// for a while (twenty times the last of them, 1–30 s), instead of reading
    /// again the index entries an old snapshot keeps at the head; 0 counts
    /// every claim from the head as slow (docs/queue.md).
    #[arg(
        long = "slow-claim-ms",
        env = "FLOE__WORKER__SLOW_CLAIM_MS",
        default_value_t = 25
    )]
    pub slow_claim_ms: u64,

    /// Lease length in milliseconds: a worker that stops heartbeating loses
    /// its jobs to others this long after its last heartbeat.
    #[arg(
        long = "lease-ms",
        env = "FLOE__WORKER__LEASE_MS",
        default_value_t = 30_000
    )]
    pub lease_ms: u64,

    /// Fallback poll in milliseconds, for notifications lost while the
    /// LISTEN connection was down.
    #[arg(
        long = "poll-ms",
        env = "FLOE__WORKER__POLL_MS",
        default_value_t = 5_000
    )]
    pub poll_ms: u64,

    /// Time running jobs get to finish on shutdown, in milliseconds; jobs
    /// still running then are released for other workers.
    #[arg(
        long = "shutdown-timeout-ms",
        env = "FLOE__WORKER__SHUTDOWN_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub shutdown_timeout_ms: u64,

    /// How often, in milliseconds, the gauges read from the database
    /// (`floe_queue_jobs`, `floe_queue_oldest_seconds`, `floe_workflows_open`)
    /// are refreshed; 0 never reads them.
    #[arg(
        long = "metrics-refresh-ms",
        env = "FLOE__WORKER__METRICS_REFRESH_MS",
        default_value_t = 10_000
    )]
    pub metrics_refresh_ms: u64,

    /// How long finished workflows and dead jobs are kept.
    #[command(flatten)]
    pub retention: crate::retention::RetentionSettings,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            health_listen: None,
            queues: vec![floe_engine::queue::DEFAULT_QUEUE.to_owned()],
            concurrency: 64,
            prefetch: 64,
            claim_batch: 100,
            slow_claim_ms: 25,
            lease_ms: 30_000,
            poll_ms: 5_000,
            shutdown_timeout_ms: 30_000,
            metrics_refresh_ms: 10_000,
            retention: crate::retention::RetentionSettings::default(),
        }
    }
}

impl WorkerSettings {
    /// The lease length.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(100))
    }

    /// How often leases are extended: three times per lease.
    pub fn heartbeat(&self) -> Duration {
        self.lease() / 3
    }

    /// How long a claim from the head may take before claims resume after
    /// the last job taken ([`crate::cursor`]).
    pub fn slow_claim(&self) -> Duration {
        Duration::from_millis(self.slow_claim_ms)
    }

    /// The fallback poll interval.
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(10))
    }

    /// How often the database gauges are refreshed (`None`: never).
    pub fn metrics_refresh(&self) -> Option<Duration> {
        (self.metrics_refresh_ms > 0)
            .then(|| Duration::from_millis(self.metrics_refresh_ms.max(100)))
    }

    /// The shutdown grace period.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}
