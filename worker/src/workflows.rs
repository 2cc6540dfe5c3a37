//! Running workflows in a worker: the job handlers that advance workflows and
//! run their activities.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use floe_engine::queue::ClaimedJob;
use floe_engine::queue::retry::{Backoff, Retry, next_delay};
use floe_engine::workflow::{self, ActivityPolicy, Registry, advance, store};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::handlers::{Handler, JobError, payload};

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
}

impl ActivityError {
    /// A failure worth retrying.
    pub fn retryable(e: impl fmt::Display) -> Self {
        Self {
            message: e.to_string(),
            retryable: true,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(e: impl fmt::Display) -> Self {
        Self {
            message: e.to_string(),
            retryable: false,
        }
    }
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
        let (p1, w1) = (pool.clone(), this.clone());
        let advance = Handler::new(move |job: ClaimedJob| {
            let (pool, workflows) = (p1.clone(), w1.clone());
            async move {
                let target: AdvanceJob = payload(&job)?;
                advance::advance(&pool, &workflows.definitions, target.workflow_id)
                    .await
                    .map(|_| ())
                    .map_err(JobError::retryable)
            }
        })
        .backoff(Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
        });
        let activity = Handler::new(move |job: ClaimedJob| {
            let (pool, workflows) = (pool.clone(), this.clone());
            async move { run_activity(&pool, &workflows, job).await }
        })
        // The activity's own policy bounds each attempt (see run_activity).
        .timeout(Duration::from_secs(24 * 3600));
        vec![
            (workflow::ADVANCE_JOB, advance),
            (workflow::ACTIVITY_JOB, activity),
        ]
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

/// Runs one attempt of an activity. Its result is recorded once (activity
/// row + inbox event, in one transaction); a repeated execution of an
/// attempt whose result is recorded does nothing.
async fn run_activity(
    pool: &PgPool,
    workflows: &Workflows,
    job: ClaimedJob,
) -> Result<(), JobError> {
    let task: ActivityJob = payload(&job)?;
    if store::activity_done(pool, task.workflow_id, &task.activity_id)
        .await
        .map_err(JobError::retryable)?
    {
        return Ok(());
    }
    let ctx = ActivityCtx {
        workflow_id: task.workflow_id,
        activity_id: task.activity_id.clone(),
        attempt: job.attempt,
        idempotency_key: format!("{}:{}:{}", task.workflow_id, task.activity_id, job.attempt),
    };
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
            let retry = if e.retryable {
                Retry::Backoff
            } else {
                Retry::Never
            };
            let unit = f64::from(job.id as u32 % 1000) / 1000.0;
            match next_delay(retry, &backoff, job.attempt, task.policy.max_attempts, unit) {
                Some(delay) => return Err(JobError::retry_after(e.message, delay)),
                None => Err(e.message),
            }
        }
    };
    let mut tx = pool.begin().await.map_err(JobError::retryable)?;
    store::record_activity(
        &mut tx,
        task.workflow_id,
        &task.activity_id,
        job.attempt,
        &result,
    )
    .await
    .map_err(JobError::retryable)?;
    tx.commit().await.map_err(JobError::retryable)?;
    Ok(())
}

/// `replay`: checks one workflow, or every open one of a kind, against
/// `registry`; prints one line each; fails if any diverges.
pub async fn replay_command(
    pool: &PgPool,
    registry: &Registry,
    kind: Option<&str>,
    id: Option<Uuid>,
    json: bool,
) -> anyhow::Result<()> {
    let ids = match (id, kind) {
        (Some(id), _) => vec![id],
        (None, Some(kind)) => store::open_of_kind(pool, kind).await?,
        (None, None) => anyhow::bail!("replay needs --kind or --id"),
    };
    let mut diverged = 0;
    for id in &ids {
        let report = workflow::replay::replay(pool, registry, *id).await?;
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
        ids.len()
    );
    if !json {
        println!("{} workflows replayed, none diverges", ids.len());
    }
    Ok(())
}
