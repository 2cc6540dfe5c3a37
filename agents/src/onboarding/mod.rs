//! The onboarding's agents: Coordinator, Greeter, Discovery and Inbox
//! Collector, each as an LLM agent with a typed output and as a
//! deterministic offline twin that needs no model.
//!
//! | module       | responsibility                                                   |
//! |--------------|------------------------------------------------------------------|
//! | [`contract`] | the agent activity's input and output (fixed, stored in history) |
//! | this module  | [`run_turn`] and [`offline_turn`]: one turn, coordinator first   |
//! | [`llm`]      | the LLM agents: typed outputs, validators, mapping to the output |
//! | `prompts`    | their instructions                                               |
//! | `offline`    | the scripted twins                                               |
//! | [`dates`]    | "next friday" → `2026-11-27`, for due dates                      |
//! | [`workflow`] | the `onboarding` workflow: steps, turns as activities, nudges    |
//!
//! # One turn
//!
//! With `agent_type: coordinator` the Coordinator picks the agent for the
//! turn (normally the current step's owner), may say the current step is
//! done, and may say the user asked for another step (`next_step_override`);
//! then that agent answers. A proactive turn (no user message) has nothing
//! to route and goes straight to the step's owner. Any other `agent_type`
//! runs that agent directly.
//!
//! The two answers combine into one [`AgentOutput`]:
//! - `message`, `widget_request`, `completion_data`, `memory_updates` and
//!   `agent` are the specialist's;
//! - `next_step_override` is the Coordinator's (a step other than the
//!   current one); the specialist then answers as that step's owner, opening
//!   it, and its own `step_completed` (about the new step) is dropped;
//! - `step_completed` is true when the Coordinator says the current step is
//!   done, or when the specialist says so and owns the current step (the
//!   Greeter fixing a name during discovery does not complete discovery);
//!   never in `completed`.
//!
//! A workflow applies the output by merging `completion_data` into its
//! context (on every turn: the Inbox Collector keeps its unconfirmed list
//! there as `draft_inbox_items`), then moving to `next_step_override` if
//! set, else to the next step if `step_completed`.
//!
//! # Proactive turns
//!
//! The assistant speaks first when the user connects for the first time
//! (no history: a welcome), when they come back (history: pick up where
//! they left off), and as a nudge when they have gone quiet mid-onboarding:
//! the workflow puts `"nudge": true` (or a number, or `"nudge_count": n`)
//! in `workflow_context`, and the agent checks in briefly, never pushy
//! (the flag only counts on a proactive turn with some history; the
//! workflow clears it once the user answers, or a later reconnection is
//! taken for another check-in).

pub mod contract;
pub mod dates;
pub mod llm;
mod offline;
mod prompts;
pub mod workflow;

use serde_json::{Map, Value};

use self::contract::{AgentInput, AgentOutput, AgentType, InboxItem, Step, TriggerType};
use crate::agent::{AgentError, FieldSink};
use crate::llm::ledger::Recorder;
use crate::settings::{LlmSettings, OutputMode};

pub use self::offline::offline_turn;

/// How the LLM agents ask for their typed output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentOptions {
    /// A `final_result` tool, or native structured output.
    pub mode: OutputMode,
    /// Ask the server to enforce the schemas (OpenAI's strict mode).
    pub strict: bool,
    /// Times an output may be sent back with its validation errors.
    pub retries: u32,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self::from(&LlmSettings::default())
    }
}

impl From<&LlmSettings> for AgentOptions {
    fn from(settings: &LlmSettings) -> Self {
        Self {
            mode: settings.output_mode,
            strict: settings.strict,
            retries: settings.output_retries,
        }
    }
}

/// Runs one turn of the onboarding conversation. Without a model (`llm`
/// `None`) the offline agents answer, and this never fails. With one, the
/// Coordinator routes the turn (see the module docs) and the chosen agent
/// answers; its reply ([`llm::REPLY_FIELD`]) goes to `stream` as it grows,
/// with the number of the model call writing it (see [`FieldSink`]). The
/// offline agents stream nothing.
///
/// Fails when a model call fails or an output stays invalid after the
/// retries ([`AgentError::retryable`] says whether the activity should try
/// again).
#[tracing::instrument(skip_all, err, fields(
    user_id = %input.context.user_id,
    agent_type = input.agent_type.as_str(),
    step = input.context.current_step.as_str(),
    trigger = ?input.context.trigger_type,
    llm = llm.is_some(),
))]
pub async fn run_turn(
    llm: Option<&Recorder>,
    options: &AgentOptions,
    input: &AgentInput,
    stream: Option<&FieldSink>,
) -> Result<AgentOutput, AgentError> {
    let output = match llm {
        None => offline_turn(input),
        Some(recorder) => self::llm::turn(recorder, options, input, stream).await?,
    };
    let signals = &output.workflow_signals;
    tracing::info!(
        agent = output.agent.as_str(),
        step_completed = signals.step_completed,
        next_step = signals.next_step_override.map(Step::as_str),
        data = ?signals.completion_data.as_ref().map(|d| d.keys().collect::<Vec<_>>()),
        memory_updates = output.memory_updates.len(),
        widget = output.widget_request.is_some(),
        "agent turn answered"
    );
    Ok(output)
}

/// Why the agent speaks this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The user wrote something.
    Message,
    /// The user connected for the first time: the assistant opens.
    Opening,
    /// The user came back: the assistant picks up where they left off.
    Return,
    /// The user went quiet mid-onboarding: the `n`th check-in.
    Nudge(u32),
}

impl Turn {
    /// The turn `input` asks for. A user message wins over the trigger; a
    /// proactive turn is an opening when there is no history yet, a nudge
    /// when the workflow says so, else a return.
    pub(crate) fn of(input: &AgentInput) -> Self {
        if user_text(input).is_some() {
            return Self::Message;
        }
        if input.context.trigger_type == TriggerType::UserMessage {
            tracing::debug!("user-message turn without a message; treating it as proactive");
        }
        let nudges = nudge_count(&input.context.workflow_context);
        if input.context.conversation_history.is_empty() {
            // Nobody has said anything yet: a nudge would be a welcome.
            Self::Opening
        } else if nudges > 0 {
            Self::Nudge(nudges)
        } else {
            Self::Return
        }
    }
}

/// What the user said this turn, trimmed, unless blank.
pub(crate) fn user_text(input: &AgentInput) -> Option<&str> {
    input
        .user_message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
}

/// The check-in number the workflow asks for: `"nudge": true` is 1, a
/// number is itself, `"nudge_count"`/`"nudges"` likewise; 0 for none.
pub(crate) fn nudge_count(context: &Map<String, Value>) -> u32 {
    ["nudge", "nudge_count", "nudges"]
        .iter()
        .filter_map(|key| context.get(*key))
        .map(|value| match value {
            Value::Bool(true) => 1,
            Value::Number(n) => n
                .as_u64()
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The five things Discovery learns, in the order it asks about them.
pub const DISCOVERY_KEYS: [&str; 5] = ["role", "goals", "work_patterns", "tools", "pain_points"];

/// The context key of the confirmed inbox items.
pub const INBOX_ITEMS: &str = "inbox_items";

/// The context key of the items shown for confirmation, not yet confirmed.
pub const DRAFT_INBOX_ITEMS: &str = "draft_inbox_items";

/// Whether the context holds a real value at `key` (not null, not an
/// empty string or list).
pub(crate) fn known(context: &Map<String, Value>, key: &str) -> bool {
    match context.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// The Discovery fields not known yet, in asking order.
pub(crate) fn missing_discovery(context: &Map<String, Value>) -> Vec<&'static str> {
    DISCOVERY_KEYS
        .into_iter()
        .filter(|key| !known(context, key))
        .collect()
}

/// A string the context holds at `key`.
pub(crate) fn text_at<'a>(context: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    context
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// What to call the user: their preferred name, else their name.
pub(crate) fn address(context: &Map<String, Value>) -> Option<&str> {
    text_at(context, "preferred_name").or_else(|| text_at(context, "name"))
}

/// Inbox items the context holds at `key` (items that do not decode are
/// skipped).
pub(crate) fn items_at(context: &Map<String, Value>, key: &str) -> Vec<InboxItem> {
    context
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| serde_json::from_value(i.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Which agent answers, and what the Coordinator decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routing {
    /// The agent that answers.
    pub(crate) agent: AgentType,
    /// The Coordinator says the current step is done.
    pub(crate) step_done: bool,
    /// The step the user asked to go to (never the current one).
    pub(crate) next_step: Option<Step>,
}

impl Routing {
    /// `agent` answers, nothing decided.
    pub(crate) fn direct(agent: AgentType) -> Self {
        Self {
            agent,
            step_done: false,
            next_step: None,
        }
    }

    /// The step the answering agent acts for.
    pub(crate) fn step(&self, current: Step) -> Step {
        self.next_step.unwrap_or(current)
    }
}

/// The input the specialist sees: the step it acts for.
pub(crate) fn specialist_input(input: &AgentInput, routing: &Routing) -> AgentInput {
    let mut input = input.clone();
    input.agent_type = routing.agent;
    input.context.current_step = routing.step(input.context.current_step);
    input
}

/// One output from the routing and the specialist's answer (the rule in the
/// module docs).
pub(crate) fn combine(current: Step, routing: &Routing, mut output: AgentOutput) -> AgentOutput {
    let specialist_done = output.workflow_signals.step_completed
        && routing.next_step.is_none()
        && output.agent == current.owner();
    output.workflow_signals.step_completed =
        current != Step::Completed && (routing.step_done || specialist_done);
    output.workflow_signals.next_step_override = routing
        .next_step
        .or(output.workflow_signals.next_step_override)
        .filter(|step| *step != current);
    output
}

/// The position of `step` in the onboarding.
pub(crate) fn step_index(step: Step) -> usize {
    Step::ALL.iter().position(|s| *s == step).unwrap_or(0)
}
