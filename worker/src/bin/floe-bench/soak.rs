//! W4 (steady state) and W9 (soak): an open-loop load on one queue worker.
//!
//! Four producer tasks, each on its own connection, offer `rate` jobs a
//! second between them by the clock: producer `p`'s `k`-th job is due
//! `(k + p/4) / (rate/4)` seconds after the start, whatever happened to the
//! ones before it. A producer sleeps until its next job is due (or, at high
//! rates, at least 5 ms after its last send) and then sends every job that
//! is due by then, so a slow queue shows as backlog and latency, never as a
//! lower offered rate. How late each send was against the schedule is
//! reported as the schedule lag.
//!
//! End-to-end latency is measured as in W2: from just before the enqueue
//! call to the handler's start, on probe jobs. Up to 200 jobs a second are
//! probes (`test.record`, each enqueued with its own `store::enqueue`, which
//! returns its id; the handler records its start in `testbed_runs`); the
//! rest are `floe.noop`, sent with one `store::enqueue_many` per send. At
//! 200 jobs/s every job is a probe, enqueued one per transaction.
//!
//! W9 runs W4's 50 % load for `--w9-minutes` with one transaction left idle
//! in the middle (`BEGIN; SELECT txid_current();`, then nothing), which
//! holds back the xmin horizon: no vacuum can remove the dead versions of
//! `floe.jobs` meanwhile. Every 10 s it samples `pg_stat_user_tables` and
//! the table's size, every minute the backlog; it reports throughput and
//! latency per minute and how they drift.
//!
//! Backlog samples are estimates from the span of the ids left (see
//! [`backlog_estimate`]); W4's "achieved" rate uses an exact count at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use floe_engine::queue::{NewJob, store};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::{Bench, Cli, QUEUE_WORKER, counters, drained, median, percentile};

/// Producer tasks (connections) offering the load.
const PRODUCERS: usize = 4;
/// Probe jobs per second at most (all jobs below this rate).
const PROBE_RATE: f64 = 200.0;
/// Shortest time between two sends of one producer: above ~800 jobs/s
/// they go in batches of what is due.
const MIN_GAP: Duration = Duration::from_millis(5);
/// Most jobs one producer statement enqueues. A producer that fell behind
/// has many jobs due at once; sent in one statement (the first W9 did:
/// ~670,000 rows each after a stall), they are one long transaction whose
/// uncommitted rows sort at the head of the queue (`run_at` is the
/// transaction's start), so every claim stepped over them until it
/// committed: the queue stood still for minutes and the producers fell
/// further behind. An application enqueues that way only by mistake
/// (docs/queue.md).
const MAX_BATCH: usize = 1_000;
/// W4's backlog sampling interval.
const BACKLOG_EVERY: Duration = Duration::from_millis(250);
/// W9's statistics sampling interval (the backlog once a minute).
const STATS_EVERY: Duration = Duration::from_secs(10);
const MIB: f64 = 1024.0 * 1024.0;

/// A probe job: its id, when its enqueue call started (wall clock, for the
/// handler's start time) and in seconds since the load began.
struct Probe {
    id: i64,
    sent: OffsetDateTime,
    at: f64,
}

#[derive(Default)]
struct Produced {
    probes: Vec<Probe>,
    /// Per send: how late it started against the oldest job it carried (ms).
    lags: Vec<f64>,
}

/// One producer's share of an open-loop load of `rate` jobs/s for `secs`.
async fn produce(
    url: SecretString,
    p: usize,
    rate: f64,
    t0: Instant,
    secs: f64,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<Produced> {
    let mut conn = PgConnection::connect(url.expose_secret()).await?;
    let r = rate / PRODUCERS as f64;
    let phase = p as f64 / PRODUCERS as f64;
    let slot = |k: usize| (k as f64 + phase) / r;
    let slots = (secs * r - phase).ceil().max(0.0) as usize;
    // Which jobs are probes: evenly spread, `fraction` of them.
    let fraction = (PROBE_RATE / rate).min(1.0);
    let is_probe = |k: usize| ((k + 1) as f64 * fraction).floor() > (k as f64 * fraction).floor();
    let mut out = Produced::default();
    let mut k = 0;
    let mut last: Option<Instant> = None;
    while k < slots {
        let mut wake = t0 + Duration::from_secs_f64(slot(k));
        if let Some(last) = last {
            wake = wake.max(last + MIN_GAP);
        }
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        let elapsed = (now - t0).as_secs_f64();
        // Every job due by now (at least the one woken for).
        let due = ((elapsed * r - phase).floor().max(0.0) as usize + 1).clamp(k + 1, slots);
        out.lags.push((elapsed - slot(k)) * 1000.0);
        let mut noops = 0;
        for j in k..due {
            if is_probe(j) {
                let at = t0.elapsed().as_secs_f64();
                let sent_at = OffsetDateTime::now_utc();
                let id = store::enqueue(&mut conn, &NewJob::new("test.record", json!({})))
                    .await?
                    .id()
                    .unwrap_or(0);
                out.probes.push(Probe {
                    id,
                    sent: sent_at,
                    at,
                });
            } else {
                noops += 1;
            }
        }
        while noops > 0 {
            let n = noops.min(MAX_BATCH);
            let batch = vec![NewJob::new("floe.noop", json!({})); n];
            store::enqueue_many(&mut conn, &batch).await?;
            noops -= n;
        }
        sent.fetch_add((due - k) as u64, Ordering::Relaxed);
        k = due;
        last = Some(now);
    }
    conn.close().await?;
    Ok(out)
}

/// The jobs in `floe.jobs` (waiting, running, or finished but not yet
/// acknowledged), counted.
pub(crate) async fn backlog(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM floe.jobs")
        .fetch_one(pool)
        .await
}

/// The same, estimated from the span of their ids (two index look-ups):
/// jobs are claimed oldest first, so those left hold nearly all ids between
/// the oldest and the newest (the holes: jobs finished out of order, a few
/// hundred at most). Sampling with `count(*)` would scan every dead version
/// of a large backlog and hold a snapshot while it does, which keeps vacuum
/// and index clean-up from removing them: it slowed the queue it measured.
async fn backlog_estimate(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(max(id) - min(id) + 1, 0) FROM floe.jobs")
        .fetch_one(pool)
        .await
}

/// An open-loop load in progress.
pub(crate) struct Load {
    pub(crate) t0: Instant,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    producers: Vec<JoinHandle<anyhow::Result<Produced>>>,
    sampler: Option<JoinHandle<anyhow::Result<Vec<i64>>>>,
}

/// What a load did.
pub(crate) struct Loaded {
    /// Jobs enqueued.
    pub(crate) sent: u64,
    /// From the first due job until the last producer finished.
    pub(crate) secs: f64,
    probes: Vec<Probe>,
    lags: Vec<f64>,
    /// Backlog samples (W4).
    backlogs: Vec<i64>,
}

impl Load {
    pub(crate) fn start(
        url: &SecretString,
        pool: &PgPool,
        rate: f64,
        secs: f64,
        sample_backlog: Option<Duration>,
    ) -> Self {
        // A moment for the producers to connect before the first job is due.
        let t0 = Instant::now() + Duration::from_millis(500);
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let producers = (0..PRODUCERS)
            .map(|p| tokio::spawn(produce(url.clone(), p, rate, t0, secs, sent.clone())))
            .collect();
        let sampler = sample_backlog.map(|every| {
            let (pool, stop) = (pool.clone(), stop.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut next = tokio::time::Instant::from_std(t0);
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep_until(next).await;
                    samples.push(backlog_estimate(&pool).await?);
                    next += every;
                }
                anyhow::Ok(samples)
            })
        });
        Self {
            t0,
            sent,
            stop,
            producers,
            sampler,
        }
    }

    /// Waits for the producers to send their last jobs.
    pub(crate) async fn finish(self) -> anyhow::Result<Loaded> {
        let mut probes = Vec::new();
        let mut lags = Vec::new();
        let mut failed = None;
        for p in self.producers {
            match p.await? {
                Ok(out) => {
                    probes.extend(out.probes);
                    lags.extend(out.lags);
                }
                Err(e) => failed = Some(e),
            }
        }
        let secs = self.t0.elapsed().as_secs_f64();
        self.stop.store(true, Ordering::Relaxed);
        let backlogs = match self.sampler {
            Some(s) => s.await??,
            None => Vec::new(),
        };
        if let Some(e) = failed {
            return Err(e.context("a producer failed"));
        }
        Ok(Loaded {
            sent: self.sent.load(Ordering::Relaxed),
            secs,
            probes,
            lags,
            backlogs,
        })
    }
}

/// Each probe's end-to-end latency in ms (enqueue call → first handler
/// start), with its send time in seconds since the load began; and how many
/// probes never ran.
async fn probe_latencies(
    pool: &PgPool,
    probes: &[Probe],
) -> anyhow::Result<(Vec<(f64, f64)>, usize)> {
    let starts: HashMap<i64, OffsetDateTime> = sqlx::query_as::<_, (i64, OffsetDateTime)>(
        "SELECT job_id, min(started_at) FROM testbed_runs GROUP BY job_id",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let mut out = Vec::with_capacity(probes.len());
    let mut missing = 0;
    for p in probes {
        match starts.get(&p.id) {
            Some(started) => out.push((p.at, (*started - p.sent).as_seconds_f64() * 1000.0)),
            None => missing += 1,
        }
    }
    Ok((out, missing))
}

/// Latencies of the probes sent in `[from, to)` seconds.
fn between(latencies: &[(f64, f64)], from: f64, to: f64) -> Vec<f64> {
    latencies
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, ms)| *ms)
        .collect()
}

/// One W9 sample of `floe.jobs`.
#[derive(Clone, Copy)]
struct TableSample {
    /// Seconds since the load began.
    at: f64,
    live: i64,
    dead: i64,
    bytes: i64,
    autovacuums: i64,
    /// The oldest transaction snapshot's age (`age(backend_xmin)`).
    xmin_age: i64,
}

async fn table_sample(pool: &PgPool, at: f64) -> sqlx::Result<TableSample> {
    let (live, dead, bytes, autovacuums, xmin_age): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT n_live_tup, n_dead_tup, pg_total_relation_size(relid), autovacuum_count,
                (SELECT coalesce(max(age(backend_xmin)), 0)::int8 FROM pg_stat_activity)
           FROM pg_stat_user_tables WHERE relid = 'floe.jobs'::regclass",
    )
    .fetch_one(pool)
    .await?;
    Ok(TableSample {
        at,
        live,
        dead,
        bytes,
        autovacuums,
        xmin_age,
    })
}

/// A W9 minute mark: jobs sent, and jobs completed (deleted) so far.
#[derive(Clone, Copy)]
struct Mark {
    at: f64,
    sent: u64,
    deleted: i64,
    /// The worker's `floe_jobs_rescued_total`: its own jobs taken back
    /// after their lease expired while it lived (each runs again).
    rescued: u64,
}

impl Mark {
    fn done(&self) -> f64 {
        self.deleted as f64
    }

    fn backlog(&self) -> i64 {
        self.sent as i64 - self.deleted
    }
}

/// A worker's `floe_jobs_rescued_total`, from its `/metrics` (0 until the
/// first rescue: the counter appears when first counted).
async fn rescued(client: &reqwest::Client, metrics: &str) -> anyhow::Result<u64> {
    let text = client
        .get(metrics)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with(floe_engine::metrics::JOBS_RESCUED))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Ok(total as u64)
}

/// Jobs completed so far: rows deleted from `floe.jobs` (the statistics
/// counter, a second behind at most). W9's first runs estimated the
/// backlog from the span of ids left, which a single job sent back to the
/// queue (a lease that expired during the idle transaction) pinned at its
/// low end: "0 jobs/s done" for minutes while the worker completed
/// thousands a second.
async fn deleted(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = 'floe.jobs'::regclass",
    )
    .fetch_one(pool)
    .await
}

impl Bench {
    /// The W1 rate whose half W4 and W9 offer: `--w1-rate`, else W1's
    /// median in this run, else one W1 measured now (printed, kept out of
    /// the table). Measured once per run, so that every repetition offers
    /// the same load.
    pub(crate) async fn w1_rate(&mut self, cli: &Cli, rep: usize) -> anyhow::Result<f64> {
        if let Some(rate) = cli.w1_rate.or(self.w1_rate) {
            return Ok(rate);
        }
        let mut measured: Vec<f64> = self
            .figures
            .iter()
            .filter(|f| f.workload == "W1" && f.metric == "jobs/s (1 proc)")
            .map(|f| f.value)
            .collect();
        let rate = if measured.is_empty() {
            let kept = self.figures.len();
            self.burn_down("W1", 1, cli.jobs, rep).await?;
            let rate = self.figures.get(kept).map(|f| f.value);
            self.figures.truncate(kept);
            rate.context("W1 measured no rate")?
        } else {
            median(&mut measured)
        };
        self.w1_rate = Some(rate);
        Ok(rate)
    }

    /// W4: 200 jobs/s, then 50 % of W1's rate, for `--w4-secs` each.
    pub(crate) async fn steady_state(&mut self, cli: &Cli, rep: usize) -> anyhow::Result<()> {
        let w1 = self.w1_rate(cli, rep).await?;
        self.record(
            "W4",
            "W1 rate the 50 % load is half of",
            w1,
            "jobs/s",
            json!({ "rep": rep, "given": cli.w1_rate.is_some() }),
        );
        let secs = cli.w4_secs as f64;
        self.steady_level("200/s", "200", 200.0, secs, rep).await?;
        self.steady_level("50 % of W1", "half", w1 / 2.0, secs, rep)
            .await
    }

    async fn steady_level(
        &mut self,
        label: &str,
        tag: &str,
        rate: f64,
        secs: f64,
        rep: usize,
    ) -> anyhow::Result<()> {
        let (url, pool) = self.database(&format!("bench_w4_{tag}_{rep}")).await?;
        let worker = self.worker(&pool, &url, QUEUE_WORKER).await?;
        let (xid0, wal0) = counters(&pool).await?;
        let load = Load::start(&url, &pool, rate, secs, Some(BACKLOG_EVERY))
            .finish()
            .await?;
        let left = backlog(&pool).await?;
        let ended = Instant::now();
        drained(&pool, "W4").await?;
        let drain_s = ended.elapsed().as_secs_f64();
        let (xid1, wal1) = counters(&pool).await?;
        drop(worker);
        let (latencies, missing) = probe_latencies(&pool, &load.probes).await?;
        anyhow::ensure!(missing == 0, "W4: {missing} probe jobs never ran");
        let mut ms: Vec<f64> = latencies.iter().map(|(_, ms)| *ms).collect();
        let mut lags = load.lags;
        let n = load.sent as f64;
        let extra = json!({
            "rep": rep, "offered_per_s": rate, "seconds": load.secs, "jobs": load.sent,
            "probes": ms.len(), "producers": PRODUCERS, "left_at_end": left, "drain_s": drain_s,
            "schedule_lag_max_ms": percentile(&mut lags, 100.0),
        });
        let m = |what: &str| format!("{what} ({label})");
        let figures = [
            ("offered jobs/s", n / load.secs, "jobs/s"),
            ("achieved jobs/s", (n - left as f64) / load.secs, "jobs/s"),
            ("end-to-end p50", percentile(&mut ms, 50.0), "ms"),
            ("end-to-end p95", percentile(&mut ms, 95.0), "ms"),
            ("end-to-end p99", percentile(&mut ms, 99.0), "ms"),
            (
                "max backlog",
                load.backlogs.iter().copied().max().unwrap_or(0) as f64,
                "jobs",
            ),
            ("schedule lag p99", percentile(&mut lags, 99.0), "ms"),
            ("tx/job", (xid1 - xid0 - 1) as f64 / n, "tx"),
            ("WAL/job", (wal1 - wal0) as f64 / n, "B"),
        ];
        for (what, value, unit) in figures {
            self.record("W4", &m(what), value, unit, extra.clone());
        }
        pool.close().await;
        Ok(())
    }

    /// W9: W4 at 50 % of W1 for `--w9-minutes`, a transaction idle for
    /// `--w9-idle-minutes` in the middle.
    pub(crate) async fn soak(&mut self, cli: &Cli, rep: usize) -> anyhow::Result<()> {
        let rate = self.w1_rate(cli, rep).await? * cli.w9_fraction;
        let secs = cli.w9_minutes * 60.0;
        let idle_secs = (cli.w9_idle_minutes * 60.0).min(secs);
        let idle_from = (secs - idle_secs) / 2.0;
        let (url, pool) = self.database(&format!("bench_w9_{rep}")).await?;
        // Its /metrics says how many of its leases expired while it lived.
        let health = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let health = health.to_string();
        let args: Vec<&str> = QUEUE_WORKER
            .iter()
            .copied()
            .chain(["--health-listen", &health])
            .collect();
        let worker = self.worker(&pool, &url, &args).await?;
        let (client, metrics) = (reqwest::Client::new(), format!("http://{health}/metrics"));
        let load = Load::start(&url, &pool, rate, secs, None);
        let t0 = load.t0;
        let since = move || t0.elapsed().as_secs_f64();
        eprintln!(
            "W9: {rate:.0} jobs/s for {:.1} min, a transaction idle from minute {:.1} to {:.1}",
            cli.w9_minutes,
            idle_from / 60.0,
            (idle_from + idle_secs) / 60.0
        );

        // The idle transaction, on a connection of its own.
        let idle = {
            let url = url.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until((t0 + Duration::from_secs_f64(idle_from)).into()).await;
                let mut conn = PgConnection::connect(url.expose_secret()).await?;
                let mut tx = conn.begin().await?;
                let xid: i64 = sqlx::query_scalar("SELECT txid_current()")
                    .fetch_one(&mut *tx)
                    .await?;
                let began = since();
                tokio::time::sleep(Duration::from_secs_f64(idle_secs)).await;
                tx.rollback().await?;
                conn.close().await?;
                anyhow::Ok((xid, began, since()))
            })
        };

        // Samples: the table every 10 s, the backlog every minute.
        let mut tables = vec![table_sample(&pool, 0.0).await?];
        let mut marks = vec![Mark {
            at: 0.0,
            sent: 0,
            deleted: deleted(&pool).await?,
            rescued: rescued(&client, &metrics).await?,
        }];
        let mut tick = 1u32;
        loop {
            let at = (STATS_EVERY.as_secs_f64() * f64::from(tick)).min(secs);
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(at)).into()).await;
            let sample = table_sample(&pool, since()).await?;
            tables.push(sample);
            let minute_mark = (at / 60.0).fract() < 1e-9 || at >= secs;
            if minute_mark {
                let sent = load.sent.load(Ordering::Relaxed);
                let mark = Mark {
                    at: since(),
                    sent,
                    deleted: deleted(&pool).await?,
                    rescued: rescued(&client, &metrics).await?,
                };
                let prev = marks.last().copied().unwrap_or(mark);
                eprintln!(
                    "W9 {:5.1} min: offered {:6.0}/s, done {:6.0}/s, backlog {:7}, n_dead_tup {:8}, jobs {:7.1} MiB, oldest xmin age {}, rescued {}",
                    mark.at / 60.0,
                    (mark.sent - prev.sent) as f64 / (mark.at - prev.at),
                    (mark.done() - prev.done()) / (mark.at - prev.at),
                    mark.backlog(),
                    sample.dead,
                    sample.bytes as f64 / MIB,
                    sample.xmin_age,
                    mark.rescued - prev.rescued
                );
                marks.push(mark);
            }
            if at >= secs {
                break;
            }
            tick += 1;
        }
        let loaded = load.finish().await?;
        let (xid, idle_began, idle_ended) = idle.await??;
        let (autovacuums, last_autovacuum, autoanalyzes): (i64, Option<OffsetDateTime>, i64) =
            sqlx::query_as(
                "SELECT autovacuum_count, last_autovacuum, autoanalyze_count
                   FROM pg_stat_user_tables WHERE relid = 'floe.jobs'::regclass",
            )
            .fetch_one(&pool)
            .await?;
        drained(&pool, "W9").await?;
        let rescued_total = rescued(&client, &metrics).await?;
        drop(worker);
        let (latencies, missing) = probe_latencies(&pool, &loaded.probes).await?;
        anyhow::ensure!(missing == 0, "W9: {missing} probe jobs never ran");

        // Per minute: throughput, latency, the table at the minute's end.
        for pair in marks.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let mut ms = between(&latencies, a.at, b.at);
            let within: Vec<&TableSample> = tables
                .iter()
                .filter(|t| t.at > a.at && t.at <= b.at + 1.0)
                .collect();
            let end = within.last().copied().copied().unwrap_or(tables[0]);
            let line = json!({
                "workload": "W9", "metric": "minute", "rep": rep,
                "minute": (b.at / 60.0 * 10.0).round() / 10.0,
                "offered_per_s": (b.sent - a.sent) as f64 / (b.at - a.at),
                "done_per_s": (b.done() - a.done()) / (b.at - a.at),
                "p50_ms": percentile(&mut ms, 50.0), "p99_ms": percentile(&mut ms, 99.0),
                "probes": ms.len(), "backlog": b.backlog(), "rescued": b.rescued - a.rescued,
                "n_live_tup": end.live, "n_dead_tup": end.dead,
                "n_dead_tup_peak": within.iter().map(|t| t.dead).max().unwrap_or(0),
                "jobs_bytes": end.bytes, "oldest_xmin_age": end.xmin_age,
                "autovacuum_count": end.autovacuums,
                "idle_tx": a.at < idle_ended && b.at > idle_began,
            });
            println!("{line}");
        }

        // The summary: first and last minutes, dead tuples, size.
        let window = (cli.w9_minutes / 6.0).round().clamp(1.0, 5.0);
        let w = (window as usize)
            .min(marks.len().saturating_sub(1) / 2)
            .max(1);
        let (first_a, first_b) = (marks[0], marks[w.min(marks.len() - 1)]);
        let (last_a, last_b) = (
            marks[marks.len().saturating_sub(1 + w)],
            marks[marks.len() - 1],
        );
        let rate_of = |a: Mark, b: Mark| (b.done() - a.done()) / (b.at - a.at);
        let mut first = between(&latencies, first_a.at, first_b.at);
        let mut last = between(&latencies, last_a.at, last_b.at);
        let idle_tables: Vec<&TableSample> = tables
            .iter()
            .filter(|t| t.at >= idle_began && t.at <= idle_ended + STATS_EVERY.as_secs_f64())
            .collect();
        let peak_idle = idle_tables.iter().map(|t| t.dead).max().unwrap_or(0);
        let peak_other = tables
            .iter()
            .filter(|t| t.at < idle_began || t.at > idle_ended + STATS_EVERY.as_secs_f64())
            .map(|t| t.dead)
            .max()
            .unwrap_or(0);
        let end = tables.last().copied().unwrap_or(tables[0]);
        // The size once the load is steady (the table starts empty).
        let start_bytes = tables
            .iter()
            .find(|t| t.at >= 59.0)
            .map_or(end.bytes, |t| t.bytes);
        let peak_bytes = tables.iter().map(|t| t.bytes).max().unwrap_or(0);
        let mut all: Vec<f64> = latencies.iter().map(|(_, ms)| *ms).collect();
        let extra = json!({
            "rep": rep, "minutes": cli.w9_minutes, "offered_per_s": rate, "jobs": loaded.sent,
            "idle_tx": { "xid": xid, "from_min": idle_began / 60.0, "to_min": idle_ended / 60.0 },
            "window_min": w, "last_autovacuum": last_autovacuum.map(|t| t.to_string()),
            "autoanalyze_count": autoanalyzes, "max_backlog": marks.iter().map(Mark::backlog).max(),
            "p99_overall_ms": percentile(&mut all, 99.0),
        });
        let figures = [
            (
                format!("throughput, first {w} min"),
                rate_of(first_a, first_b),
                "jobs/s",
            ),
            (
                format!("throughput, last {w} min"),
                rate_of(last_a, last_b),
                "jobs/s",
            ),
            (
                format!("end-to-end p50, first {w} min"),
                percentile(&mut first, 50.0),
                "ms",
            ),
            (
                format!("end-to-end p50, last {w} min"),
                percentile(&mut last, 50.0),
                "ms",
            ),
            (
                format!("end-to-end p99, first {w} min"),
                percentile(&mut first, 99.0),
                "ms",
            ),
            (
                format!("end-to-end p99, last {w} min"),
                percentile(&mut last, 99.0),
                "ms",
            ),
            (
                "n_dead_tup peak, tx idle".to_owned(),
                peak_idle as f64,
                "tuples",
            ),
            (
                "n_dead_tup peak, otherwise".to_owned(),
                peak_other as f64,
                "tuples",
            ),
            (
                "n_dead_tup at the end".to_owned(),
                end.dead as f64,
                "tuples",
            ),
            (
                "floe.jobs size after minute 1".to_owned(),
                start_bytes as f64 / MIB,
                "MiB",
            ),
            (
                "floe.jobs size, peak".to_owned(),
                peak_bytes as f64 / MIB,
                "MiB",
            ),
            (
                "floe.jobs size at the end".to_owned(),
                end.bytes as f64 / MIB,
                "MiB",
            ),
            (
                "autovacuums of floe.jobs".to_owned(),
                autovacuums as f64,
                "runs",
            ),
            (
                "jobs taken back from the live worker (lease expired)".to_owned(),
                rescued_total as f64,
                "jobs",
            ),
        ];
        for (metric, value, unit) in figures {
            self.record("W9", &metric, value, unit, extra.clone());
        }
        eprintln!(
            "W9 summary: throughput {:.0} → {:.0} jobs/s (first/last {w} min); p99 {:.1} → {:.1} ms; \
             n_dead_tup peak {peak_idle} with the tx idle ({peak_other} otherwise), {} at the end; \
             floe.jobs {:.1} → {:.1} (peak) → {:.1} MiB; {autovacuums} autovacuums; \
             {rescued_total} leases of the live worker expired",
            rate_of(first_a, first_b),
            rate_of(last_a, last_b),
            percentile(&mut first, 99.0),
            percentile(&mut last, 99.0),
            end.dead,
            start_bytes as f64 / MIB,
            peak_bytes as f64 / MIB,
            end.bytes as f64 / MIB,
        );
        pool.close().await;
        Ok(())
    }
}
