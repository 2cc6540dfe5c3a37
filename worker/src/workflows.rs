//! Running workflows in a worker: the job handlers that advance workflows and
//! run their activities.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use floe_engine::queue::ClaimedJob;
use floe_engine::queue::retry::{Backoff, Retry, next_delay};
use floe_engine::workflow::{self, ActivityPolicy, Registry, advance, store};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::handlers::{Handler, JobError, payload};
use crate::metrics::{self, ActivityAttempt};

/// What an activity knows about its attempt.
#[derive(Debug, Clone)]
pub struct ActivityCtx {
    /// The workflow that asked for it.
    pub workflow_id: Uuid,
    /// Its id within the workflow.
    pub activity_id: String,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Unique per attempt: pass it to services that deduplicate.
    pub idempotency_key: String,
}

/// Why an activity attempt failed.
#[derive(Debug, Clone)]
pub struct ActivityError {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The least wait before the next attempt (a server's `Retry-After`);
    /// the activity's backoff applies when it is longer.
    pub retry_after: Option<Duration>,
}

impl ActivityError {
    /// A failure worth retrying.
    pub fn retryable(e: impl fmt::Display) -> Self {
        Self {
            message: e.to_string(),
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(e: impl fmt::Display) -> Self {
        Self {
            message: e.to_string(),
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure that another attempt may fix, or not.
    pub fn new(e: impl fmt::Display, retryable: bool) -> Self {
        Self {
            message: e.to_string(),
            retryable,
            retry_after: None,
        }
    }

    /// Waits at least `delay` before the next attempt.
    pub fn after(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }
}

/// Decodes an activity's input; a malformed input is the workflow's bug,
/// which no retry fixes.
pub fn decode_input<T: serde::de::DeserializeOwned>(input: Value) -> Result<T, ActivityError> {
    serde_json::from_value(input)
        .map_err(|e| ActivityError::permanent(format!("input does not decode: {e}")))
}

type ActivityFuture = Pin<Box<dyn Future<Output = Result<Value, ActivityError>> + Send + 'static>>;
type ActivityFn = dyn Fn(ActivityCtx, Value) -> ActivityFuture + Send + Sync;

/// Workflow definitions and the activities they use.
#[derive(Clone, Default)]
pub struct Workflows {
    /// The definitions.
    pub definitions: Registry,
    activities: BTreeMap<String, Arc<ActivityFn>>,
}

impl fmt::Debug for Workflows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflows")
            .field("definitions", &self.definitions)
            .field("activities", &self.activities.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Workflows {
    /// Nothing registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers definition `W`.
    pub fn workflow<W: workflow::Workflow>(&mut self) -> &mut Self {
        self.definitions.register::<W>();
        self
    }

    /// Registers activity `name`.
    pub fn activity<F, Fut>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(ActivityCtx, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ActivityError>> + Send + 'static,
    {
        self.activities.insert(
            name.into(),
            Arc::new(move |ctx, input| Box::pin(f(ctx, input))),
        );
        self
    }

    /// The job handlers for advancing workflows and running activities.
    pub fn handlers(self, pool: PgPool) -> Vec<(&'static str, Handler)> {
        let this = Arc::new(self);
        let advancer = Arc::new(Advancer::new(pool.clone(), this.definitions.clone()));
        let recorder = advancer.clone();
        let advance = Handler::new(move |job: ClaimedJob| {
            let advancer = advancer.clone();
            async move {
                let target: AdvanceJob = payload(&job)?;
                advancer
                    .submit(Work::Advance(target.workflow_id))
                    .await
                    .map_err(JobError::retryable)
            }
        })
        .backoff(Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
        });
        let activity = Handler::new(move |job: ClaimedJob| {
            let (pool, workflows, advancer) = (pool.clone(), this.clone(), recorder.clone());
            async move { run_activity(&pool, &workflows, &advancer, job).await }
        })
        // The activity's own policy bounds each attempt (see run_activity).
        .timeout(Duration::from_secs(24 * 3600));
        vec![
            (workflow::ADVANCE_JOB, advance),
            (workflow::ACTIVITY_JOB, activity),
        ]
    }
}

/// Most workflows advanced in one transaction.
const MAX_BATCH: usize = 256;
/// Transactions of transitions one process runs at a time.
const BATCHES_IN_FLIGHT: usize = 2;

/// A workflow to advance, or an activity result to record and apply.
enum Work {
    Advance(Uuid),
    Record(store::ActivityResult),
}

type AdvanceRequest = (Work, oneshot::Sender<Result<(), String>>);

/// Group commit for transitions: the advance jobs and the activity results
/// that arrive at the same time in this process are recorded and applied in
/// one transaction (`advance_many`), so that under load a transaction
/// carries many workflows and at low load each is applied at once. A batch that fails (a deadlock between a parent and a
/// child, say) is retried one workflow per transaction, so that one bad
/// workflow cannot hold up the others.
struct Advancer {
    requests: mpsc::UnboundedSender<AdvanceRequest>,
    receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<AdvanceRequest>>>,
    pool: PgPool,
    definitions: Registry,
    started: OnceLock<()>,
}

impl Advancer {
    fn new(pool: PgPool, definitions: Registry) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        Self {
            requests,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            pool,
            definitions,
            started: OnceLock::new(),
        }
    }

    /// Applies `id`'s pending events, or records an activity's result and
    /// applies it; resolves when that is committed.
    async fn submit(&self, work: Work) -> Result<(), String> {
        // Started on first use, inside the runtime; the loops end when the
        // handlers (and so this sender) are dropped.
        self.started.get_or_init(|| {
            for _ in 0..BATCHES_IN_FLIGHT {
                let receiver = self.receiver.clone();
                let (pool, definitions) = (self.pool.clone(), self.definitions.clone());
                tokio::spawn(run_batches(receiver, pool, definitions));
            }
        });
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((work, reply))
            .map_err(|_| "the advancer stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the advancer stopped".to_owned())?
    }
}

async fn run_batches(
    receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<AdvanceRequest>>>,
    pool: PgPool,
    definitions: Registry,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            batch
        };
        let (mut ids, mut id_replies) = (Vec::new(), Vec::new());
        let (mut results, mut result_replies) = (Vec::new(), Vec::new());
        for (work, reply) in batch {
            match work {
                Work::Advance(id) => {
                    ids.push(id);
                    id_replies.push(reply);
                }
                Work::Record(result) => {
                    results.push(result);
                    result_replies.push(reply);
                }
            }
        }
        match advance::advance_many(&pool, &definitions, &ids, &results).await {
            Ok(_) => {
                for reply in id_replies.into_iter().chain(result_replies) {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) if ids.len() + results.len() > 1 => {
                tracing::warn!(error = %e, workflows = ids.len() + results.len(),
                    "batch of transitions failed; applying them one by one");
                for (id, reply) in ids.iter().zip(id_replies) {
                    let result = advance::advance_many(&pool, &definitions, &[*id], &[]).await;
                    let _ = reply.send(result.map(|_| ()).map_err(|e| e.to_string()));
                }
                for (r, reply) in results.iter().zip(result_replies) {
                    let one = std::slice::from_ref(r);
                    let result = advance::advance_many(&pool, &definitions, &[], one).await;
                    let _ = reply.send(result.map(|_| ()).map_err(|e| e.to_string()));
                }
            }
            Err(e) => {
                for reply in id_replies.into_iter().chain(result_replies) {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct AdvanceJob {
    workflow_id: Uuid,
}

#[derive(Deserialize)]
struct ActivityJob {
    workflow_id: Uuid,
    activity_id: String,
    name: String,
    input: Value,
    #[serde(default)]
    policy: ActivityPolicy,
}

/// Runs one attempt of an activity. Its final result is recorded once and
/// applied to its workflow in the same transaction (through the advancer);
/// a repeated execution of an attempt whose result is recorded does nothing.
async fn run_activity(
    pool: &PgPool,
    workflows: &Workflows,
    advancer: &Advancer,
    job: ClaimedJob,
) -> Result<(), JobError> {
    let task: ActivityJob = payload(&job)?;
    // A later attempt may follow a run that recorded the result and died
    // before acknowledging the job: skip the work then. A first attempt has
    // nothing to find (only runs of this job record its result), so it
    // saves the round trip. Either way the result is recorded once: the
    // recording UPDATE only matches an activity still `scheduled`.
    if job.attempt > 1
        && store::activity_done(pool, task.workflow_id, &task.activity_id)
            .await
            .map_err(JobError::retryable)?
    {
        return Ok(());
    }
    // The spare run (workflow::SPARE_RUNS): the last attempt never reported
    // its outcome — its worker died, or recording failed. Run nothing;
    // record the failure so that the workflow hears of it.
    let last = task.policy.max_attempts.max(1);
    if job.attempt > last {
        tracing::warn!(activity = %task.name, activity_id = %task.activity_id, attempts = last,
            "activity's last attempt was lost; recording it as failed");
        let result = store::ActivityResult {
            workflow_id: task.workflow_id,
            activity_id: task.activity_id,
            attempts: last,
            result: Err(format!(
                "attempt {last} of {last} was lost: its worker died (or could not record the outcome) before reporting"
            )),
        };
        return advancer
            .submit(Work::Record(result))
            .await
            .map_err(JobError::retryable);
    }
    let ctx = ActivityCtx {
        workflow_id: task.workflow_id,
        activity_id: task.activity_id.clone(),
        attempt: job.attempt,
        idempotency_key: format!("{}:{}:{}", task.workflow_id, task.activity_id, job.attempt),
    };
    let started = std::time::Instant::now();
    let registered = workflows.activities.contains_key(&task.name);
    let outcome = match workflows.activities.get(&task.name) {
        None => Err(ActivityError::permanent(format!(
            "no activity named {:?} in this build",
            task.name
        ))),
        Some(f) => {
            match tokio::time::timeout(task.policy.timeout(), f(ctx, task.input.clone())).await {
                Ok(result) => result,
                Err(_) => Err(ActivityError::retryable(format!(
                    "timed out after {:?}",
                    task.policy.timeout()
                ))),
            }
        }
    };
    let result = match outcome {
        Ok(value) => Ok(value),
        Err(e) => {
            let backoff = Backoff {
                base: Duration::from_millis(task.policy.backoff_base_ms),
                max: Duration::from_millis(task.policy.backoff_max_ms),
            };
            let unit = f64::from(job.id as u32 % 1000) / 1000.0;
            let retry = match (e.retryable, e.retry_after) {
                (false, _) => Retry::Never,
                (true, None) => Retry::Backoff,
                (true, Some(least)) => Retry::After(least.max(backoff.delay(job.attempt, unit))),
            };
            match next_delay(retry, &backoff, job.attempt, task.policy.max_attempts, unit) {
                Some(delay) => {
                    tracing::debug!(activity = %task.name, activity_id = %task.activity_id, error = %e.message,
                        "activity attempt failed; retrying");
                    let ran = started.elapsed();
                    metrics::activity_attempt(&task.name, registered, ran, ActivityAttempt::Retry);
                    return Err(JobError::retry_after(e.message, delay));
                }
                None => Err(e.message),
            }
        }
    };
    let how = match &result {
        Ok(_) => ActivityAttempt::Completed,
        Err(_) => ActivityAttempt::Failed,
    };
    tracing::debug!(activity = %task.name, activity_id = %task.activity_id, outcome = ?how, "activity attempt");
    metrics::activity_attempt(&task.name, registered, started.elapsed(), how);
    let result = store::ActivityResult {
        workflow_id: task.workflow_id,
        activity_id: task.activity_id,
        attempts: job.attempt,
        result,
    };
    advancer
        .submit(Work::Record(result))
        .await
        .map_err(JobError::retryable)
}

/// The replay check: replays workflow `id`, or every open workflow of
/// `kind`, or — with neither — every open workflow of every kind, through
/// `registry`, and reports on each (a kind `registry` lacks diverges: this
/// build cannot run it). An unknown `id` is [`store::Error::NotFound`].
pub async fn replay_check(
    pool: &PgPool,
    registry: &Registry,
    kind: Option<&str>,
    id: Option<Uuid>,
) -> anyhow::Result<Vec<workflow::replay::Report>> {
    let ids = match (id, kind) {
        (Some(id), _) => vec![id],
        (None, Some(kind)) => store::open_of_kind(pool, kind).await?,
        (None, None) => {
            let mut ids = Vec::new();
            for kind in floe_engine::inspect::counts(pool, None).await?.kinds {
                ids.extend(store::open_of_kind(pool, &kind).await?);
            }
            ids
        }
    };
    let mut reports = Vec::with_capacity(ids.len());
    for id in ids {
        reports.push(workflow::replay::replay(pool, registry, id).await?);
    }
    Ok(reports)
}

/// `replay`: checks one workflow, or every open one of a kind, against
/// `registry` ([`replay_check`]); prints one line each; fails if any
/// diverges.
pub async fn replay_command(
    pool: &PgPool,
    registry: &Registry,
    kind: Option<&str>,
    id: Option<Uuid>,
    json: bool,
) -> anyhow::Result<()> {
    if id.is_none() && kind.is_none() {
        anyhow::bail!("replay needs --kind or --id");
    }
    let reports = replay_check(pool, registry, kind, id).await?;
    let mut diverged = 0;
    for report in &reports {
        let id = report.workflow_id;
        if report.divergence.is_some() {
            diverged += 1;
        }
        if json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            match &report.divergence {
                None => println!("{id}  ok ({} events)", report.events),
                Some(d) => println!(
                    "{id}  DIVERGES at seq {}: {} recorded {} replayed {}",
                    d.seq.map_or_else(|| "end".to_owned(), |s| s.to_string()),
                    d.field,
                    d.recorded,
                    d.replayed
                ),
            }
        }
    }
    anyhow::ensure!(
        diverged == 0,
        "{diverged} of {} workflows diverge from this build",
        reports.len()
    );
    if !json {
        println!("{} workflows replayed, none diverges", reports.len());
    }
    Ok(())
}
