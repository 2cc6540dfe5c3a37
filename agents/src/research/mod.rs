//! Multi-agent fan-out (the Temporal-Lite spec's second use case): a
//! Planner splits a task into sub-tasks, one child workflow per sub-task
//! works on it in parallel, and a Summariser combines what came back. A
//! sub-task that fails is reported in the summary, not fatal.
//!
//! | module       | responsibility                                                    |
//! |--------------|-------------------------------------------------------------------|
//! | this module  | the agents' inputs and typed outputs; [`plan`], [`work`], [`summarise`] |
//! | [`llm`]      | the Planner, the Researcher and the Summariser as LLM agents      |
//! | `offline`    | their deterministic twins                                         |
//! | [`workflow`] | the `research` workflow and its `research.subtask` children       |
//!
//! Offline, the Planner splits the task by its lines (a list), else its
//! semicolons, else its sentences; the Researcher notes the sub-task's key
//! terms — and refuses any sub-task containing [`FAIL_MARKER`], so that a
//! failing child can be exercised without a model; the Summariser lists the
//! findings and what was not answered.

pub mod llm;
mod offline;
pub mod workflow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::AgentError;
use crate::llm::ledger::Recorder;
use crate::onboarding::AgentOptions;

pub use self::offline::{offline_finding, offline_plan, offline_summary};

/// A sub-task containing this (in any case) fails with the offline agents.
pub const FAIL_MARKER: &str = "[fail]";

/// Sub-tasks a plan has at most unless the input says otherwise.
pub const DEFAULT_MAX_SUBTASKS: usize = 5;

/// Why an agent of the fan-out failed.
#[derive(Debug, thiserror::Error)]
pub enum ResearchError {
    /// The model call or its output failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The offline Researcher refuses the sub-task (it carries
    /// [`FAIL_MARKER`]); no retry changes that.
    #[error("sub-task refused: {0}")]
    Refused(String),
}

impl ResearchError {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Agent(e) => e.retryable(),
            Self::Refused(_) => false,
        }
    }

    /// The wait the model's server asked for, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Agent(e) => e.retry_after(),
            Self::Refused(_) => None,
        }
    }

    /// Whether the failure was about what the model said.
    pub fn is_output_failure(&self) -> bool {
        matches!(self, Self::Agent(e) if e.is_output_failure())
    }
}

/// The Planner's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// The sub-tasks, each a self-contained instruction for one researcher.
    pub subtasks: Vec<String>,
    /// Why this split, in one sentence.
    pub rationale: String,
}

/// One sub-task's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// The answer to the sub-task, in a short paragraph.
    pub finding: String,
    /// The main points, one short sentence each.
    pub key_points: Vec<String>,
}

/// The Summariser's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// The combined answer to the task.
    pub summary: String,
    /// What could not be answered (the failed sub-tasks), one line each.
    pub gaps: Vec<String>,
}

/// The `research.plan` activity's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInput {
    /// The task.
    pub task: String,
    /// Most sub-tasks.
    pub max_subtasks: usize,
}

/// The `research.work` activity's input (a child's start input too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkInput {
    /// The whole task, for context.
    pub task: String,
    /// This sub-task.
    pub subtask: String,
    /// Its number in the plan, from 1.
    pub index: usize,
}

/// How one sub-task went, as the Summariser sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskResult {
    /// Its number, from 1.
    pub index: usize,
    /// The sub-task.
    pub subtask: String,
    /// Its finding, when it succeeded.
    pub finding: Option<Finding>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The `research.summarise` activity's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummariseInput {
    /// The task.
    pub task: String,
    /// Every sub-task, in plan order.
    pub results: Vec<SubtaskResult>,
}

/// Splits the task: the LLM Planner with a model, else the offline one.
#[tracing::instrument(skip_all, err, fields(llm = llm.is_some()))]
pub async fn plan(
    llm: Option<&Recorder>,
    options: &AgentOptions,
    input: &PlanInput,
) -> Result<Plan, ResearchError> {
    let plan = match llm {
        None => offline_plan(input),
        Some(recorder) => self::llm::plan(recorder, options, input).await?,
    };
    tracing::info!(subtasks = plan.subtasks.len(), "task planned");
    Ok(plan)
}

/// Works on one sub-task: the LLM Researcher with a model, else the offline
/// one (which refuses sub-tasks carrying [`FAIL_MARKER`]).
#[tracing::instrument(skip_all, err, fields(index = input.index, llm = llm.is_some()))]
pub async fn work(
    llm: Option<&Recorder>,
    options: &AgentOptions,
    input: &WorkInput,
) -> Result<Finding, ResearchError> {
    match llm {
        None => offline_finding(input),
        Some(recorder) => Ok(self::llm::work(recorder, options, input).await?),
    }
}

/// Combines the findings: the LLM Summariser with a model, else the offline
/// one (which never fails).
#[tracing::instrument(skip_all, err, fields(results = input.results.len(), llm = llm.is_some()))]
pub async fn summarise(
    llm: Option<&Recorder>,
    options: &AgentOptions,
    input: &SummariseInput,
) -> Result<Summary, ResearchError> {
    match llm {
        None => Ok(offline_summary(input)),
        Some(recorder) => Ok(self::llm::summarise(recorder, options, input).await?),
    }
}
