//! What a worker records (names and meanings: `floe_engine::metrics`): job
//! metrics through handles made once per queue and kind, so that a job costs
//! a few atomic additions and no lookup by name; activity attempts; and the
//! task that refreshes the gauges read from the database (queue depth, open
//! workflows) on its own schedule, whatever the scrape rate.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use floe_engine::metrics as names;
use floe_engine::queue::{ClaimedJob, JobState, store};
use floe_engine::workflow::store as workflow_store;
use metrics::{Counter, Histogram, counter, gauge, histogram};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::runtime::Shared;

/// One queue and kind's job metrics.
#[derive(Debug)]
pub struct JobMetrics {
    claimed: Counter,
    completed: Counter,
    failed: Counter,
    dead: Counter,
    wait: Histogram,
    run: Histogram,
}

impl JobMetrics {
    fn new(queue: &str, kind: &str) -> Self {
        let labels = [("queue", queue.to_owned()), ("kind", kind.to_owned())];
        Self {
            claimed: counter!(names::JOBS_CLAIMED, &labels),
            completed: counter!(names::JOBS_COMPLETED, &labels),
            failed: counter!(names::JOBS_FAILED, &labels),
            dead: counter!(names::JOBS_DEAD, &labels),
            wait: histogram!(names::JOB_WAIT, &labels),
            run: histogram!(names::JOB_RUN, &labels),
        }
    }

    /// Records an attempt that ran for `ran`: succeeded, failed and will be
    /// retried (`retried`), or failed for good.
    pub fn finished(&self, ran: Duration, ok: bool, retried: bool) {
        self.run.record(ran.as_secs_f64());
        match (ok, retried) {
            (true, _) => self.completed.increment(1),
            (false, true) => self.failed.increment(1),
            (false, false) => self.dead.increment(1),
        }
    }
}

/// The job metrics of one queue, by kind (the kinds this worker claims),
/// and its claims' durations by where they started.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    by_kind: Arc<HashMap<String, Arc<JobMetrics>>>,
    claim_from_head: Histogram,
    claim_after_position: Histogram,
}

impl QueueMetrics {
    /// Handles for every kind in `kinds` on `queue`.
    pub fn new(queue: &str, kinds: &[String]) -> Self {
        let by_kind = kinds
            .iter()
            .map(|kind| (kind.clone(), Arc::new(JobMetrics::new(queue, kind))))
            .collect();
        let claim = |from: &'static str| histogram!(names::CLAIM_DURATION, "queue" => queue.to_owned(), "from" => from);
        Self {
            by_kind: Arc::new(by_kind),
            claim_from_head: claim("head"),
            claim_after_position: claim("position"),
        }
    }

    /// The handles of `kind`.
    pub fn kind(&self, kind: &str) -> Option<Arc<JobMetrics>> {
        self.by_kind.get(kind).cloned()
    }

    /// Records a claim that took `took`, made from the head of the queue or
    /// after the claimer's position.
    pub fn claim(&self, from_head: bool, took: Duration) {
        let histogram = if from_head {
            &self.claim_from_head
        } else {
            &self.claim_after_position
        };
        histogram.record(took.as_secs_f64());
    }

    /// Counts claimed jobs and how long each waited since its `run_at`
    /// (measured with this host's clock).
    pub fn claimed(&self, jobs: &[ClaimedJob]) {
        let now = OffsetDateTime::now_utc();
        for job in jobs {
            if let Some(m) = self.by_kind.get(&job.kind) {
                m.claimed.increment(1);
                m.wait.record((now - job.run_at).as_seconds_f64().max(0.0));
            }
        }
    }
}

/// How an activity attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityAttempt {
    /// Failed; another attempt follows.
    Retry,
    /// The final result: an output.
    Completed,
    /// The final result: an error.
    Failed,
}

/// Records an attempt of activity `name` (`registered`: this build has it;
/// others are counted as `unregistered`, so a stray name cannot grow the
/// label set) that ran for `ran`.
pub fn activity_attempt(name: &str, registered: bool, ran: Duration, how: ActivityAttempt) {
    let activity = if registered { name } else { "unregistered" }.to_owned();
    histogram!(names::ACTIVITY_RUN, "activity" => activity.clone()).record(ran.as_secs_f64());
    match how {
        ActivityAttempt::Retry => {
            counter!(names::ACTIVITY_RETRIES, "activity" => activity).increment(1);
        }
        ActivityAttempt::Completed | ActivityAttempt::Failed => {
            let outcome = if how == ActivityAttempt::Completed {
                "completed"
            } else {
                "failed"
            };
            counter!(names::ACTIVITIES_FINISHED, "activity" => activity, "outcome" => outcome)
                .increment(1);
        }
    }
}

const STATES: [JobState; 5] = [
    JobState::Scheduled,
    JobState::Available,
    JobState::Running,
    JobState::Retrying,
    JobState::Dead,
];

/// Refreshes the database gauges (`floe_queue_jobs`, `floe_queue_oldest_seconds`,
/// `floe_workflows_open`) every `settings.metrics_refresh_ms` until `stop`
/// (never when that is 0). Two grouped counts per refresh; a scrape only
/// reads what the last refresh left.
pub async fn run_refresher(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(every) = shared.settings.metrics_refresh() else {
        return;
    };
    let mut queues_seen: BTreeSet<(String, &'static str)> = shared
        .settings
        .queues
        .iter()
        .flat_map(|q| STATES.iter().map(move |s| (q.clone(), s.as_str())))
        .collect();
    let mut workflows_seen = BTreeSet::new();
    loop {
        match store::depth(&shared.pool).await {
            Ok(depths) => {
                let mut now_seen = BTreeSet::new();
                for d in depths {
                    let labels = [("queue", d.queue.clone()), ("state", d.state.to_string())];
                    gauge!(names::QUEUE_JOBS, &labels).set(d.jobs as f64);
                    gauge!(names::QUEUE_OLDEST, &labels).set(d.oldest_seconds);
                    now_seen.insert((d.queue, d.state.as_str()));
                }
                // Emptied since the last refresh (or never seen): zero.
                for (queue, state) in queues_seen.difference(&now_seen) {
                    let labels = [("queue", queue.clone()), ("state", state.to_string())];
                    gauge!(names::QUEUE_JOBS, &labels).set(0.0);
                    gauge!(names::QUEUE_OLDEST, &labels).set(0.0);
                }
                queues_seen.extend(now_seen);
            }
            Err(e) => tracing::debug!(error = %e, "cannot refresh the queue gauges"),
        }
        match workflow_store::open_counts(&shared.pool).await {
            Ok(counts) => {
                let mut now_seen = BTreeSet::new();
                for (kind, status, n) in counts {
                    let labels = [("kind", kind.clone()), ("status", status.to_string())];
                    gauge!(names::WORKFLOWS_OPEN, &labels).set(n as f64);
                    now_seen.insert((kind, status.to_string()));
                }
                for (kind, status) in workflows_seen.difference(&now_seen) {
                    let labels = [("kind", kind.clone()), ("status", status.clone())];
                    gauge!(names::WORKFLOWS_OPEN, &labels).set(0.0);
                }
                workflows_seen.extend(now_seen);
            }
            Err(e) => tracing::debug!(error = %e, "cannot refresh the workflow gauges"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
