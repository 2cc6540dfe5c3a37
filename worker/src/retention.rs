//! The retention sweeper: every worker process removes, in small batches,
//! finished workflows and dead jobs older than the retention period, and
//! ledger rows (LLM and tool calls) of removed workflows older than the
//! ledger's period (see [`floe_engine::retention`]). Several processes sweep
//! side by side without waiting on each other.

use std::time::Duration;

use clap::Args;
use floe_engine::retention::{self, Swept};
use sqlx::PgPool;
use tokio::sync::watch;

/// How long finished work is kept.
#[derive(Args, Clone, Debug, PartialEq)]
#[command(next_help_heading = "Retention")]
pub struct RetentionSettings {
    /// Days to keep finished workflows (with their history) and dead jobs;
    /// 0 keeps them forever. Fractions are allowed (0.5 = 12 hours).
    #[arg(
        long = "retention-days",
        env = "FLOE__RETENTION__DAYS",
        default_value_t = 30.0
    )]
    pub days: f64,

    /// Days to keep the LLM and tool-call ledgers (`floe.llm_calls`,
    /// `floe.tool_calls`, with prompts, answers and costs); a row goes once
    /// it is older than this and its workflow has been removed. 0 keeps
    /// them forever.
    #[arg(
        long = "retention-ledger-days",
        env = "FLOE__RETENTION__LEDGER_DAYS",
        default_value_t = 90.0
    )]
    pub ledger_days: f64,

    /// Seconds between sweeps.
    #[arg(
        long = "retention-every",
        env = "FLOE__RETENTION__EVERY",
        default_value_t = 60
    )]
    pub every_secs: u64,

    /// Rows removed per statement (workflows and dead jobs each).
    #[arg(
        long = "retention-batch",
        env = "FLOE__RETENTION__BATCH",
        default_value_t = 500
    )]
    pub batch: i64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            days: 30.0,
            ledger_days: 90.0,
            every_secs: 60,
            batch: 500,
        }
    }
}

impl RetentionSettings {
    /// How long finished work is kept; `None`: forever.
    pub fn keep(&self) -> Option<Duration> {
        days(self.days)
    }

    /// How long ledger rows are kept; `None`: forever.
    pub fn ledger_keep(&self) -> Option<Duration> {
        days(self.ledger_days)
    }

    /// Whether anything is ever removed.
    fn any(&self) -> bool {
        self.keep().is_some() || self.ledger_keep().is_some()
    }
}

/// `n` days; `None` for 0 (or anything not a positive, finite number).
fn days(n: f64) -> Option<Duration> {
    (n > 0.0 && n.is_finite()).then(|| Duration::from_secs_f64(n * 86_400.0))
}

/// Pause between two batches of one sweep, so a large backlog is removed at
/// a pace the database's other work does not feel.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);

/// Sweeps every `settings.every_secs` until `stop`; does nothing when
/// retention is off.
pub async fn run(pool: PgPool, settings: RetentionSettings, mut stop: watch::Receiver<bool>) {
    if !settings.any() {
        tracing::info!("retention off: finished work and the ledgers are kept forever");
        return;
    }
    let every = Duration::from_secs(settings.every_secs.max(1));
    let batch = settings.batch.clamp(1, 100_000);
    loop {
        match sweep(&pool, &settings, batch, &mut stop).await {
            Ok(total) if total != Swept::default() => tracing::info!(
                workflows = total.workflows,
                dead_jobs = total.dead_jobs,
                llm_calls = total.llm_calls,
                tool_calls = total.tool_calls,
                "retention removed finished work"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; retrying later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One sweep: batches until one comes back short (or `stop`). Workflows go
/// first, so their ledger rows can go in the same sweep.
pub async fn sweep(
    pool: &PgPool,
    settings: &RetentionSettings,
    batch: i64,
    stop: &mut watch::Receiver<bool>,
) -> floe_engine::workflow::store::Result<Swept> {
    let mut total = Swept::default();
    loop {
        let mut swept = Swept::default();
        if let Some(keep) = settings.keep() {
            swept.add(retention::sweep_batch(pool, keep, batch).await?);
        }
        if let Some(keep) = settings.ledger_keep() {
            swept.add(retention::sweep_ledger_batch(pool, keep, batch).await?);
        }
        total.add(swept);
        if !swept.full(batch) || *stop.borrow() {
            return Ok(total);
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}
