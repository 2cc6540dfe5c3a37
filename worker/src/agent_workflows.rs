//! The Temporal-Lite spec's agent workflows in a worker: `code_review` (a
//! person approves, or the code is refactored, or it escalates) and
//! `research` with its `research.subtask` children (fan-out, fan-in), and
//! the activities they run (see docs/examples.md).
//!
//! | activity             | input                       | does                                        |
//! |----------------------|-----------------------------|---------------------------------------------|
//! | `review.analyse`     | `AnalyseInput`              | the Reviewer: `Analysis` (summary, issues, verdict) |
//! | `review.refactor`    | `RefactorInput`             | the Refactorer: `Revision` (code, changes)  |
//! | `review.notify`      | `NewNotification`           | a row in `floe.notifications`, once; `{notification_id}` |
//! | `review.escalate`    | `NewNotification`           | the same, for an escalation                 |
//! | `review.merge`       | `NewMerge`                  | a row in `floe.merges`, once; `{merge_id, code_md5, revision}` |
//! | `research.plan`      | `PlanInput`                 | the Planner: `Plan`                         |
//! | `research.work`      | `WorkInput`                 | the Researcher: `Finding`                   |
//! | `research.summarise` | `SummariseInput`            | the Summariser: `Summary`                   |
//!
//! With a model configured (`--llm-base-url`) the agents call it through
//! the ledger: every model call and every tool call is recorded once and
//! replayed to a later attempt of the same activity (a worker killed half
//! way through a review costs its successor no repeated call). Without one,
//! the deterministic offline agents answer.

use std::sync::Arc;

use floe_agents::agent::AgentError;
use floe_agents::llm::ChatModel;
use floe_agents::llm::ledger::{CallSite, Recorder};
use floe_agents::llm::openai::OpenAiClient;
use floe_agents::onboarding::AgentOptions;
use floe_agents::research::workflow::{PLAN, Research, SUMMARISE, Subtask, WORK};
use floe_agents::research::{self, PlanInput, ResearchError, SummariseInput, WorkInput};
use floe_agents::review::store::{self, NewMerge, NewNotification};
use floe_agents::review::workflow::{ANALYSE, CodeReview, ESCALATE, MERGE, NOTIFY, REFACTOR};
use floe_agents::review::{self, AnalyseInput, RefactorInput};
use floe_agents::settings::LlmSettings;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::workflows::{ActivityCtx, ActivityError, Workflows, decode_input};

/// The model (if any) the agents use, and the database.
struct Agents {
    model: Option<Arc<dyn ChatModel>>,
    options: AgentOptions,
    pool: PgPool,
}

impl Agents {
    /// A recorder for this activity attempt (serving `user_id`, for spend
    /// per user), when a model is configured.
    fn recorder(&self, ctx: &ActivityCtx, user_id: Option<&str>) -> Option<Recorder> {
        let site = CallSite {
            workflow_id: Some(ctx.workflow_id),
            activity_id: Some(ctx.activity_id.clone()),
            attempt: Some(ctx.attempt),
            user_id: user_id.map(str::to_owned),
        };
        self.model
            .as_ref()
            .map(|m| Recorder::new(m.clone(), self.pool.clone(), site))
    }
}

/// Registers `code_review`, `research` and `research.subtask`, and their
/// activities, with the model `llm` names (or the offline agents).
pub fn register(workflows: &mut Workflows, llm: &LlmSettings, pool: &PgPool) -> anyhow::Result<()> {
    let model: Option<Arc<dyn ChatModel>> = match llm.base_url() {
        None => None,
        Some(_) => Some(Arc::new(OpenAiClient::new(llm)?)),
    };
    let agents = Arc::new(Agents {
        model,
        options: AgentOptions::from(llm),
        pool: pool.clone(),
    });
    workflows
        .workflow::<CodeReview>()
        .workflow::<Research>()
        .workflow::<Subtask>();
    let a = agents.clone();
    workflows.activity(ANALYSE, move |ctx, input| {
        let a = a.clone();
        async move { a.analyse(ctx, input).await }
    });
    let a = agents.clone();
    workflows.activity(REFACTOR, move |ctx, input| {
        let a = a.clone();
        async move { a.refactor(ctx, input).await }
    });
    for name in [NOTIFY, ESCALATE] {
        let a = agents.clone();
        workflows.activity(name, move |ctx, input| {
            let a = a.clone();
            async move { a.notify(ctx, input).await }
        });
    }
    let a = agents.clone();
    workflows.activity(MERGE, move |ctx, input| {
        let a = a.clone();
        async move { a.merge(ctx, input).await }
    });
    let a = agents.clone();
    workflows.activity(PLAN, move |ctx, input| {
        let a = a.clone();
        async move { a.plan(ctx, input).await }
    });
    let a = agents.clone();
    workflows.activity(WORK, move |ctx, input| {
        let a = a.clone();
        async move { a.work(ctx, input).await }
    });
    let a = agents;
    workflows.activity(SUMMARISE, move |ctx, input| {
        let a = a.clone();
        async move { a.summarise(ctx, input).await }
    });
    Ok(())
}

/// What a workflow activity writes once: its workflow and activity.
fn source_key(ctx: &ActivityCtx) -> String {
    format!("{}:{}", ctx.workflow_id, ctx.activity_id)
}

fn encode<T: Serialize>(value: T) -> Result<Value, ActivityError> {
    serde_json::to_value(value).map_err(ActivityError::permanent)
}

/// When an attempt failed on what the model said, its recorded answers are
/// not replayed to the retry (its tool results are: they are facts).
async fn abandon_if(output_failure: bool, recorder: Option<&Recorder>) {
    if let (true, Some(recorder)) = (output_failure, recorder)
        && let Err(ledger) = recorder.abandon().await
    {
        tracing::warn!(error = %ledger, "could not mark the failed attempt's answers unreusable");
    }
}

async fn agent_error(e: AgentError, recorder: Option<&Recorder>) -> ActivityError {
    abandon_if(e.is_output_failure(), recorder).await;
    ActivityError::new(&e, e.retryable()).after(e.retry_after())
}

async fn research_error(e: ResearchError, recorder: Option<&Recorder>) -> ActivityError {
    abandon_if(e.is_output_failure(), recorder).await;
    ActivityError::new(&e, e.retryable()).after(e.retry_after())
}

impl Agents {
    async fn analyse(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: AnalyseInput = decode_input(input)?;
        let recorder = self.recorder(&ctx, Some(&input.author));
        match review::analyse(recorder.as_ref(), &self.options, &input).await {
            Ok(analysis) => encode(analysis),
            Err(e) => Err(agent_error(e, recorder.as_ref()).await),
        }
    }

    async fn refactor(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: RefactorInput = decode_input(input)?;
        let recorder = self.recorder(&ctx, None);
        match review::refactor(recorder.as_ref(), &self.options, &input).await {
            Ok(revision) => encode(revision),
            Err(e) => Err(agent_error(e, recorder.as_ref()).await),
        }
    }

    async fn notify(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let notice: NewNotification = decode_input(input)?;
        let id = store::notify(&self.pool, ctx.workflow_id, &source_key(&ctx), &notice)
            .await
            .map_err(ActivityError::retryable)?;
        tracing::info!(workflow_id = %ctx.workflow_id, recipient = %notice.recipient,
            kind = %notice.kind, notification_id = id, "notification recorded");
        Ok(json!({ "notification_id": id }))
    }

    async fn merge(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let merge: NewMerge = decode_input(input)?;
        let (id, md5) = store::merge(&self.pool, ctx.workflow_id, &source_key(&ctx), &merge)
            .await
            .map_err(ActivityError::retryable)?;
        tracing::info!(workflow_id = %ctx.workflow_id, merge_id = id, revision = merge.revision,
            approved_by = %merge.approved_by, "merge recorded");
        Ok(json!({ "merge_id": id, "code_md5": md5, "revision": merge.revision }))
    }

    async fn plan(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: PlanInput = decode_input(input)?;
        let recorder = self.recorder(&ctx, None);
        match research::plan(recorder.as_ref(), &self.options, &input).await {
            Ok(plan) => encode(plan),
            Err(e) => Err(research_error(e, recorder.as_ref()).await),
        }
    }

    async fn work(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: WorkInput = decode_input(input)?;
        let recorder = self.recorder(&ctx, None);
        match research::work(recorder.as_ref(), &self.options, &input).await {
            Ok(finding) => encode(finding),
            Err(e) => Err(research_error(e, recorder.as_ref()).await),
        }
    }

    async fn summarise(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: SummariseInput = decode_input(input)?;
        let recorder = self.recorder(&ctx, None);
        match research::summarise(recorder.as_ref(), &self.options, &input).await {
            Ok(summary) => encode(summary),
            Err(e) => Err(research_error(e, recorder.as_ref()).await),
        }
    }
}
