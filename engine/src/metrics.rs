//! Metrics: every `floe_*` metric's name and meaning, the process's
//! Prometheus recorder, and the `GET /metrics` route that renders it.
//!
//! Code records through the [`metrics`] facade (`metrics::counter!(NAME,
//! "kind" => ...)`); [`install`] puts a Prometheus recorder behind it, once
//! per process (the API with `--with-worker` shares one between both). The
//! route renders what the recorder holds: a scrape never touches the
//! database. Gauges read from the database (queue depth) are refreshed by a
//! worker task on its own schedule.
//!
//! Labels are bounded: job kinds, queues, workflow kinds, activity names,
//! route templates, models and agents — never ids. docs/deployment.md lists
//! every metric.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::{Gauge, Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Jobs claimed, by `queue` and `kind`.
pub const JOBS_CLAIMED: &str = "floe_jobs_claimed_total";
/// Job attempts that succeeded, by `queue` and `kind`.
pub const JOBS_COMPLETED: &str = "floe_jobs_completed_total";
/// Job attempts that failed and will be retried, by `queue` and `kind`.
pub const JOBS_FAILED: &str = "floe_jobs_failed_total";
/// Job attempts that failed for good (the job is dead), by `queue` and `kind`.
pub const JOBS_DEAD: &str = "floe_jobs_dead_total";
/// Jobs whose lease expired and that a rescuer took back.
pub const JOBS_RESCUED: &str = "floe_jobs_rescued_total";
/// Seconds from a job's `run_at` until it was claimed, by `queue` and `kind`.
pub const JOB_WAIT: &str = "floe_job_wait_seconds";
/// Seconds a job's handler ran, by `queue` and `kind`.
pub const JOB_RUN: &str = "floe_job_run_seconds";
/// Seconds one claim took, by `queue` and `from` (`head` of the queue, or
/// after the claimer's `position`).
pub const CLAIM_DURATION: &str = "floe_claim_seconds";
/// Jobs in the table, by `queue` and `state` (refreshed periodically).
pub const QUEUE_JOBS: &str = "floe_queue_jobs";
/// Age of the oldest `run_at` per `queue` and `state`, in seconds.
pub const QUEUE_OLDEST: &str = "floe_queue_oldest_seconds";
/// Open workflows by `kind` and `status` (refreshed periodically).
pub const WORKFLOWS_OPEN: &str = "floe_workflows_open";
/// Inbox events applied by transitions, by workflow `kind` and `event`.
pub const TRANSITIONS: &str = "floe_workflow_transitions_total";
/// Workflows that finished, by `kind` and `status`.
pub const WORKFLOWS_FINISHED: &str = "floe_workflows_finished_total";
/// Activity attempts that failed and will be retried, by `activity`.
pub const ACTIVITY_RETRIES: &str = "floe_activity_retries_total";
/// Activities whose final result was reached, by `activity` and `outcome`.
pub const ACTIVITIES_FINISHED: &str = "floe_activities_finished_total";
/// Seconds one activity attempt ran, by `activity`.
pub const ACTIVITY_RUN: &str = "floe_activity_run_seconds";
/// Seconds from a workflow's deadline until its timer fired, by `kind`.
pub const TIMER_LATENESS: &str = "floe_timer_lateness_seconds";
/// HTTP requests answered, by `method`, `route` (template) and `status`.
pub const HTTP_REQUESTS: &str = "floe_http_requests_total";
/// Seconds until the response's head, by `method` and `route`.
pub const HTTP_DURATION: &str = "floe_http_request_duration_seconds";
/// Open WebSocket connections.
pub const WS_CONNECTIONS: &str = "floe_ws_connections";
/// Open Server-Sent-Event streams.
pub const SSE_STREAMS: &str = "floe_sse_streams";
/// Calls to a language model, by `model`, `agent` and `status`.
pub const LLM_CALLS: &str = "floe_llm_calls_total";
/// Tokens, by `model`, `agent` and `direction` (`in`, `out`).
pub const LLM_TOKENS: &str = "floe_llm_tokens_total";
/// Cost of recorded calls in millionths of a US dollar, by `model` and `agent`.
pub const LLM_COST: &str = "floe_llm_cost_microusd_total";
/// Seconds one model call took, by `model` and `agent`.
pub const LLM_CALL_DURATION: &str = "floe_llm_call_seconds";

/// Histogram buckets for every `*_seconds` metric: 0.5 ms to an hour.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
];

/// How often histogram samples are folded into their buckets (so that memory
/// stays bounded whether or not anyone scrapes).
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder (once; later calls return the
/// same handle) and describes every metric. `None` if another recorder was
/// installed first (then `/metrics` renders nothing).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .ok()?;
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    return None;
                }
            };
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("floe-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics upkeep thread not started");
            }
            Some(handle)
        })
        .clone()
}

/// The Prometheus text exposition of every metric this process recorded.
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

/// `GET /metrics`: the Prometheus text exposition (no authentication, like
/// the health probes).
pub fn router() -> Router {
    install();
    Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                render(),
            )
                .into_response()
        }),
    )
}

/// A gauge counting something open (a connection, a stream): one more while
/// this value lives.
#[derive(Debug)]
pub struct Open(Gauge);

impl Open {
    /// Counts one more on `gauge` until dropped.
    pub fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

fn describe() {
    let counters = [
        (
            JOBS_CLAIMED,
            "Jobs claimed by this process, by queue and kind.",
        ),
        (
            JOBS_COMPLETED,
            "Job attempts that succeeded, by queue and kind.",
        ),
        (
            JOBS_FAILED,
            "Job attempts that failed and will be retried, by queue and kind.",
        ),
        (
            JOBS_DEAD,
            "Job attempts that failed for good (the job is dead), by queue and kind.",
        ),
        (
            JOBS_RESCUED,
            "Jobs whose lease expired, taken back by this process's rescuer.",
        ),
        (
            TRANSITIONS,
            "Inbox events applied to workflows, by workflow kind and event.",
        ),
        (
            WORKFLOWS_FINISHED,
            "Workflows that finished, by kind and status.",
        ),
        (
            ACTIVITY_RETRIES,
            "Activity attempts that failed and will be retried, by activity.",
        ),
        (
            ACTIVITIES_FINISHED,
            "Activities that reached their final result, by activity and outcome.",
        ),
        (
            HTTP_REQUESTS,
            "HTTP requests answered, by method, route template and status.",
        ),
        (
            LLM_CALLS,
            "Calls to a language model, by model, agent and status.",
        ),
        (
            LLM_TOKENS,
            "Language-model tokens, by model, agent and direction (in, out).",
        ),
        (
            LLM_COST,
            "Cost of recorded model calls in millionths of a US dollar, by model and agent.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
    }
    let gauges = [
        (
            QUEUE_JOBS,
            "Jobs in floe.jobs by queue and state (refreshed periodically by workers).",
        ),
        (
            QUEUE_OLDEST,
            "Seconds since the oldest run_at, by queue and state (refreshed periodically by workers).",
        ),
        (
            WORKFLOWS_OPEN,
            "Open workflows by kind and status (refreshed periodically by workers).",
        ),
        (WS_CONNECTIONS, "Open WebSocket connections."),
        (SSE_STREAMS, "Open Server-Sent-Event streams."),
    ];
    for (name, help) in gauges {
        describe_gauge!(name, help);
    }
    let histograms = [
        (
            JOB_WAIT,
            "Seconds from a job's run_at until it was claimed, by queue and kind.",
        ),
        (JOB_RUN, "Seconds a job's handler ran, by queue and kind."),
        (
            CLAIM_DURATION,
            "Seconds one claim took, by queue and where it started (head, or position: after the claimer's last job).",
        ),
        (
            ACTIVITY_RUN,
            "Seconds one activity attempt ran, by activity.",
        ),
        (
            TIMER_LATENESS,
            "Seconds from a workflow's deadline until its timer fired, by kind.",
        ),
        (
            HTTP_DURATION,
            "Seconds until an HTTP response's head, by method and route template.",
        ),
        (
            LLM_CALL_DURATION,
            "Seconds one language-model call took, by model and agent.",
        ),
    ];
    for (name, help) in histograms {
        describe_histogram!(name, Unit::Seconds, help);
    }
}
