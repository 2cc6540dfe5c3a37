//! Where a workload's time goes, sampled while it runs: the machine's CPU
//! (`/proc/stat`) and what the database's active sessions wait on
//! (`pg_stat_activity`, every 20 ms, on a connection of its own).
//!
//! W5b uses it to tell contention between worker processes (sessions
//! waiting on each other's row locks, `Lock`) from a machine that is simply
//! busy (CPU near 100 %, sessions running or waiting on I/O).

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What [`Sampler::finish`] saw.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Samples taken.
    pub samples: u64,
    /// Active client sessions of the database, summed over the samples.
    pub active: u64,
    /// Of those, by `wait_event_type:wait_event` (`CPU:running` when none).
    pub by_event: BTreeMap<String, u64>,
    /// Busy share of the machine's CPUs over the run, 0–1.
    pub cpu_busy: f64,
}

impl Profile {
    /// Mean active sessions per sample.
    pub fn mean_active(&self) -> f64 {
        self.active as f64 / self.samples.max(1) as f64
    }

    /// Share of active session-samples waiting on a heavyweight lock (row,
    /// transaction id, tuple, relation): the processes waiting on each other.
    pub fn lock_share(&self) -> f64 {
        let locked: u64 = self
            .by_event
            .iter()
            .filter(|(k, _)| k.starts_with("Lock:"))
            .map(|(_, v)| v)
            .sum();
        locked as f64 / self.active.max(1) as f64
    }

    /// The `n` most frequent events with their shares, for the JSON line.
    pub fn top(&self, n: usize) -> Vec<(String, f64)> {
        let mut events: Vec<_> = self.by_event.iter().collect();
        events.sort_by(|a, b| b.1.cmp(a.1));
        events
            .into_iter()
            .take(n)
            .map(|(k, v)| (k.clone(), *v as f64 / self.active.max(1) as f64))
            .collect()
    }
}

/// A running sampler; [`Sampler::finish`] stops it.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<Profile>>,
    cpu0: (u64, u64),
}

/// `(busy, total)` jiffies of all CPUs, from the first line of /proc/stat.
fn cpu_jiffies() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(fields.len() >= 5, "unexpected /proc/stat: {line}");
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are the 4th and 5th fields.
    Ok((total - fields[3] - fields[4], total))
}

impl Sampler {
    /// Starts sampling the database at `url`.
    pub async fn start(url: &SecretString) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(url.expose_secret()).await?;
        let (stop, mut stopped) = oneshot::channel();
        let cpu0 = cpu_jiffies()?;
        let task = tokio::spawn(async move {
            let mut profile = Profile::default();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, 'running'),
                            count(*)
                       FROM pg_stat_activity
                      WHERE datname = current_database() AND state = 'active'
                        AND backend_type = 'client backend' AND pid <> pg_backend_pid()
                      GROUP BY 1",
                )
                .fetch_all(&mut conn)
                .await?;
                profile.samples += 1;
                for (event, n) in rows {
                    profile.active += n as u64;
                    *profile.by_event.entry(event).or_default() += n as u64;
                }
            }
            conn.close().await?;
            Ok(profile)
        });
        Ok(Self { stop, task, cpu0 })
    }

    /// Stops sampling and returns what was seen.
    pub async fn finish(self) -> anyhow::Result<Profile> {
        let _ = self.stop.send(());
        let mut profile = self.task.await??;
        let (busy1, total1) = cpu_jiffies()?;
        let (busy0, total0) = self.cpu0;
        profile.cpu_busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
        Ok(profile)
    }
}
