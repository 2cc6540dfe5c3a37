//! The LLM activities a worker runs for workflows: an agent's turn and the
//! user's memory, read before a turn and updated after it.
//!
//! | activity        | input                                   | output                          |
//! |-----------------|-----------------------------------------|---------------------------------|
//! | `agent.turn`    | the contract's `AgentInput`             | `AgentOutput`                   |
//! | `memory.get`    | `{user_id, query, limit?}`              | `{memories: [text, ...]}`       |
//! | `memory.update` | `{user_id, conversation, hints?}`       | `{changes: [MemoryChange, ...]}`|
//!
//! With a model configured (`--llm-base-url`), every call goes to it
//! through the ledger ([`floe_agents::llm::ledger`]): recorded once, and
//! replayed to a later attempt of the same activity instead of being made
//! again. Without one, the deterministic offline agents and memory run.

use std::sync::Arc;

use floe_agents::agent::AgentError;
use floe_agents::llm::ledger::{CallSite, Recorder};
use floe_agents::llm::openai::OpenAiClient;
use floe_agents::llm::{ChatModel, Embedder};
use floe_agents::memory::{Brain, Memory, Scope};
use floe_agents::onboarding::contract::{AgentInput, ChatTurn};
use floe_agents::onboarding::{AgentOptions, run_turn};
use floe_agents::settings::LlmSettings;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::workflows::{ActivityCtx, ActivityError, Workflows, decode_input};

pub use floe_agents::onboarding::workflow::{AGENT_TURN, MEMORY_GET, MEMORY_UPDATE};

/// Memories handed to an agent when the reader asks for no limit.
const DEFAULT_MEMORY_LIMIT: usize = 10;

/// The model (if any) and memory the activities use.
pub struct Llm {
    model: Option<Arc<dyn ChatModel>>,
    options: AgentOptions,
    memory: Memory,
    pool: PgPool,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("model", &self.model.as_ref().map(|m| m.model_name()))
            .finish_non_exhaustive()
    }
}

impl Llm {
    /// From the settings: the OpenAI-compatible client when a base URL is
    /// set, the offline agents otherwise.
    pub fn from_settings(settings: &LlmSettings, pool: PgPool) -> anyhow::Result<Self> {
        let mut model: Option<Arc<dyn ChatModel>> = None;
        let mut embedder: Option<Arc<dyn Embedder>> = None;
        match settings.base_url() {
            None => {
                tracing::info!("no LLM configured (--llm-base-url): offline agents and memory");
            }
            Some(base_url) => {
                let client = Arc::new(OpenAiClient::new(settings)?);
                tracing::info!(%base_url, model = %settings.model,
                    embedding_model = ?settings.embedding_model(), "LLM configured");
                if settings.embedding_model().is_some() {
                    embedder = Some(client.clone());
                }
                model = Some(client);
            }
        }
        Ok(Self {
            model,
            options: AgentOptions::from(settings),
            memory: Memory::new(pool.clone(), embedder),
            pool,
        })
    }

    /// Registers the activities.
    pub fn register(self, workflows: &mut Workflows) {
        let this = Arc::new(self);
        let (turn, get, update) = (this.clone(), this.clone(), this);
        workflows
            .activity(AGENT_TURN, move |ctx, input| {
                let this = turn.clone();
                async move { this.turn(ctx, input).await }
            })
            .activity(MEMORY_GET, move |ctx, input| {
                let this = get.clone();
                async move { this.memory_get(ctx, input).await }
            })
            .activity(MEMORY_UPDATE, move |ctx, input| {
                let this = update.clone();
                async move { this.memory_update(ctx, input).await }
            });
    }

    fn recorder(&self, ctx: &ActivityCtx, user_id: &str) -> Option<Recorder> {
        let site = CallSite {
            workflow_id: Some(ctx.workflow_id),
            activity_id: Some(ctx.activity_id.clone()),
            attempt: Some(ctx.attempt),
            user_id: Some(user_id.to_owned()),
        };
        self.model
            .as_ref()
            .map(|m| Recorder::new(m.clone(), self.pool.clone(), site))
    }

    async fn turn(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: AgentInput = decode_input(input)?;
        let recorder = self.recorder(&ctx, &input.context.user_id);
        match run_turn(recorder.as_ref(), &self.options, &input, None).await {
            Ok(output) => {
                serde_json::to_value(output).map_err(|e| ActivityError::permanent(e.to_string()))
            }
            Err(e) => Err(agent_error(e, recorder.as_ref()).await),
        }
    }

    async fn memory_get(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: MemoryGet = decode_input(input)?;
        let recorder = self.recorder(&ctx, &input.user_id);
        let scope = Scope::user(&input.user_id);
        let found = self
            .memory
            .search(
                recorder.as_ref(),
                &scope,
                &input.query,
                input.limit.unwrap_or(DEFAULT_MEMORY_LIMIT),
                0.0,
            )
            .await
            .map_err(|e| ActivityError::new(&e, e.retryable()))?;
        let memories: Vec<&str> = found.iter().map(|m| m.memory.as_str()).collect();
        Ok(json!({ "memories": memories }))
    }

    async fn memory_update(&self, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
        let input: MemoryUpdate = decode_input(input)?;
        let recorder = self.recorder(&ctx, &input.user_id);
        let brain = match &recorder {
            Some(recorder) => Brain::Llm {
                recorder,
                mode: self.options.mode,
                strict: self.options.strict,
                retries: self.options.retries,
            },
            None => Brain::Offline,
        };
        let scope = Scope::user(&input.user_id);
        match self
            .memory
            .update(brain, &scope, &input.conversation, &input.hints)
            .await
        {
            Ok(changes) => Ok(json!({ "changes": changes })),
            Err(e) => {
                abandon_if(e.is_output_failure(), recorder.as_ref()).await;
                Err(ActivityError::new(&e, e.retryable()))
            }
        }
    }
}

#[derive(Deserialize)]
struct MemoryGet {
    user_id: String,
    #[serde(default)]
    query: String,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct MemoryUpdate {
    user_id: String,
    conversation: Vec<ChatTurn>,
    #[serde(default)]
    hints: Vec<String>,
}

/// When an attempt failed on what the model said, its recorded answers are
/// not replayed to the retry.
async fn abandon_if(output_failure: bool, recorder: Option<&Recorder>) {
    if let (true, Some(recorder)) = (output_failure, recorder)
        && let Err(ledger) = recorder.abandon().await
    {
        tracing::warn!(error = %ledger, "could not mark the failed attempt's answers unreusable");
    }
}

/// An agent's failure as an activity error.
async fn agent_error(e: AgentError, recorder: Option<&Recorder>) -> ActivityError {
    abandon_if(e.is_output_failure(), recorder).await;
    ActivityError::new(&e, e.retryable()).after(e.retry_after())
}
