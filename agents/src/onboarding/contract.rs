//! The agent activity's contract, as the source spec gives it: what a turn
//! is given (`agent_type`, `user_message`, `context`) and what it returns
//! (`message`, `workflow_signals`, `memory_updates`, `widget_request`).
//! These are stored in activity inputs and results: change them only in
//! ways old rows still decode.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The onboarding's agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentType {
    /// Decides which agent handles the turn and whether the step is done.
    Coordinator,
    /// Welcomes the user, learns their name and how to address them.
    Greeter,
    /// Learns role, goals, work patterns, tools and pain points.
    Discovery,
    /// Turns a brain dump into inbox items and confirms them.
    InboxCollector,
}

impl AgentType {
    /// Its name in the contract (`inbox_collector`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coordinator => "coordinator",
            Self::Greeter => "greeter",
            Self::Discovery => "discovery",
            Self::InboxCollector => "inbox_collector",
        }
    }
}

/// The onboarding's steps, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Hello, and what to call the user.
    #[default]
    Greeting,
    /// How the user works.
    Discovery,
    /// Everything on their mind, into the inbox.
    BrainDump,
    /// Done.
    Completed,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 4] = [
        Self::Greeting,
        Self::Discovery,
        Self::BrainDump,
        Self::Completed,
    ];

    /// Its name (`brain_dump`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greeting => "greeting",
            Self::Discovery => "discovery",
            Self::BrainDump => "brain_dump",
            Self::Completed => "completed",
        }
    }

    /// The step after this one.
    pub fn next(self) -> Step {
        match self {
            Self::Greeting => Self::Discovery,
            Self::Discovery => Self::BrainDump,
            Self::BrainDump | Self::Completed => Self::Completed,
        }
    }

    /// The agent that handles this step's turns.
    pub fn owner(self) -> AgentType {
        match self {
            Self::Greeting => AgentType::Greeter,
            Self::Discovery => AgentType::Discovery,
            Self::BrainDump | Self::Completed => AgentType::InboxCollector,
        }
    }
}

/// Why the agent is asked to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    /// The user said something.
    UserMessage,
    /// The assistant speaks first (the user connected, or went quiet).
    ProactiveInitiation,
}

/// Who wrote a message of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The person.
    User,
    /// The assistant.
    Assistant,
}

/// One message of the conversation so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatTurn {
    /// Who wrote it.
    pub role: Speaker,
    /// What was said.
    pub content: String,
}

/// What an agent knows about the user and the onboarding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentContext {
    /// The user.
    pub user_id: String,
    /// What the onboarding has collected (the workflow's context): `name`,
    /// `preferred_name`, `role`, `goals`, `tools`, `work_patterns`,
    /// `pain_points`, `inbox_items`, ...
    #[serde(default)]
    pub workflow_context: Map<String, Value>,
    /// The last messages, oldest first (not including `user_message`).
    #[serde(default)]
    pub conversation_history: Vec<ChatTurn>,
    /// Facts remembered about the user, most relevant first.
    #[serde(default)]
    pub user_memory: Vec<String>,
    /// Why the agent speaks.
    pub trigger_type: TriggerType,
    /// The onboarding step the turn belongs to.
    #[serde(default)]
    pub current_step: Step,
    /// The user's local date (`YYYY-MM-DD`), for relative due dates; the
    /// activity's own date when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today: Option<String>,
}

/// The agent activity's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInput {
    /// Which agent to run; `coordinator` lets the Coordinator choose.
    pub agent_type: AgentType,
    /// What the user said; absent for a proactive turn.
    #[serde(default)]
    pub user_message: Option<String>,
    /// Everything else the agent knows.
    pub context: AgentContext,
}

/// What the agent tells the workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSignals {
    /// The current step's goal is met.
    pub step_completed: bool,
    /// Data to merge into the workflow's context (whether or not the step
    /// completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_data: Option<Map<String, Value>>,
    /// Go to this step next instead of the following one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_override: Option<Step>,
}

/// An item for the user's inbox, from the brain dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InboxItem {
    /// Short, actionable title.
    pub title: String,
    /// Due date as `YYYY-MM-DD`, when the user gave one.
    #[serde(default)]
    pub due_date: Option<String>,
    /// Lower-case tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A widget the chat shows under the assistant's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WidgetRequest {
    /// Buttons that send their text as the user's answer.
    QuickReplies {
        /// The choices.
        options: Vec<String>,
    },
    /// A list of items to confirm before they go to the inbox.
    ItemConfirmation {
        /// The items.
        items: Vec<InboxItem>,
    },
}

/// The agent activity's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentOutput {
    /// The assistant's message to the user.
    pub message: String,
    /// What the workflow should do.
    pub workflow_signals: WorkflowSignals,
    /// Facts worth remembering about the user.
    #[serde(default)]
    pub memory_updates: Vec<String>,
    /// A widget to show with the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widget_request: Option<WidgetRequest>,
    /// The agent that wrote the message.
    pub agent: AgentType,
}
