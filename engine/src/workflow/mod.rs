//! Durable workflows: definitions as pure transition functions, workflow
//! instances as rows, every input as an ordered inbox event.
//!
//! | module       | responsibility                                                     |
//! |--------------|--------------------------------------------------------------------|
//! | this module  | the model: [`Workflow`] definitions, [`Event`]s, [`Command`]s      |
//! | [`registry`] | definitions by kind, type-erased to JSON, panics caught            |
//! | [`store`]    | every SQL statement on the workflow tables                         |
//! | [`advance`]  | applying a workflow's pending events in one transaction            |
//! | [`replay`]   | folding a history through the current definition to check it       |
//! | [`upgrade`]  | upgrading open workflows' stored state to this build's versions    |
//!
//! A transition is pure: the state and the event in, the new state and the
//! commands out. Time and ids come in with the event ([`Ctx`]), so replaying
//! the history through the same definition gives the same row.

pub mod advance;
pub mod registry;
pub mod replay;
pub mod store;
pub mod upgrade;

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub use registry::Registry;

/// The job kind that advances a workflow.
pub const ADVANCE_JOB: &str = "floe.advance";
/// The job kind that runs an activity.
pub const ACTIVITY_JOB: &str = "floe.activity";
/// Runs an activity's job gets beyond its policy's attempts. When the worker
/// of the last attempt dies before reporting, the lease rescuer would find
/// the job out of attempts and mark it dead, and the failure would never be
/// recorded: the workflow would wait for ever. The spare run runs nothing;
/// it records the failure, so the workflow hears of it.
pub const SPARE_RUNS: i32 = 1;
/// NOTIFY channel for committed workflow changes; the payload is JSON with
/// the workflow's id, kind, version and status (never its context).
pub const CHANNEL_WORKFLOWS: &str = "floe_workflows";
/// NOTIFY channel for a deadline set; the payload is the deadline in epoch ms.
pub const CHANNEL_DEADLINES: &str = "floe_deadlines";

/// A workflow's status; its definition's own state name is separate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Activities or children it started are in flight.
    Running,
    /// Nothing in flight: it waits for a signal or its deadline.
    Waiting,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled by an operator or its parent.
    Cancelled,
}

impl Status {
    /// The status's name in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether no more events will be applied.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(format!("unknown workflow status {other:?}")),
        })
    }
}

/// What a transition is given besides the state and the event: everything
/// that would otherwise make it impure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// The workflow.
    pub workflow_id: Uuid,
    /// The event's place in the inbox.
    pub seq: i64,
    /// When the event was recorded: a transition's "now".
    pub now: OffsetDateTime,
}

/// An event as a definition sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<I, S> {
    /// The workflow starts with its input.
    Start(I),
    /// A signal from outside.
    Signal(S),
    /// An activity it started finished: its result or its final error.
    Activity {
        /// The id the transition gave it.
        id: String,
        /// The activity's output, or why it failed after all retries.
        result: Result<serde_json::Value, String>,
    },
    /// The deadline came.
    Timer {
        /// The reason given when it was set.
        reason: String,
    },
    /// A child it started finished.
    Child {
        /// The id the transition gave it.
        id: String,
        /// The child's output, or why it failed or was cancelled.
        result: Result<serde_json::Value, String>,
    },
}

/// How an activity is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityPolicy {
    /// Attempts before the activity fails for good.
    pub max_attempts: i32,
    /// Delay after the first failure, in ms (doubling, with jitter).
    pub backoff_base_ms: u64,
    /// Longest delay between attempts, in ms.
    pub backoff_max_ms: u64,
    /// Longest an attempt may take, in ms.
    pub timeout_ms: u64,
}

impl Default for ActivityPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            timeout_ms: 60_000,
        }
    }
}

impl ActivityPolicy {
    /// The attempt timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// What a transition asks the engine to do, as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Run an activity; its result comes back as [`Event::Activity`].
    RunActivity {
        /// Unique within the workflow, chosen by the transition.
        id: String,
        /// The registered activity to run.
        name: String,
        /// Its input.
        input: serde_json::Value,
        /// Its retry policy.
        #[serde(default)]
        policy: ActivityPolicy,
    },
    /// Wake the workflow at `at` with [`Event::Timer`] unless another
    /// transition moves or clears the deadline first.
    SetDeadline {
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// Why (shown to operators, passed back with the timer).
        reason: String,
    },
    /// Forget the deadline.
    ClearDeadline,
    /// Start a child workflow; its outcome comes back as [`Event::Child`].
    StartChild {
        /// Unique within the workflow, chosen by the transition; also the
        /// child's key.
        id: String,
        /// The child's kind.
        kind: String,
        /// Its input.
        input: serde_json::Value,
    },
    /// Tell the outside world something (a NOTIFY on `floe_workflows`).
    Emit {
        /// What happened.
        name: String,
        /// Details.
        payload: serde_json::Value,
    },
    /// Finish successfully.
    Complete {
        /// The workflow's result.
        output: serde_json::Value,
    },
    /// Finish with an error.
    Fail {
        /// Why.
        error: String,
    },
}

/// A transition's result: the next state and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition<S> {
    /// The next state.
    pub state: S,
    /// What to do, in order.
    pub commands: Vec<Command>,
}

impl<S> Transition<S> {
    /// Moves to `state` and does nothing else.
    pub fn to(state: S) -> Self {
        Self {
            state,
            commands: Vec::new(),
        }
    }

    /// Adds a command.
    pub fn then(mut self, command: Command) -> Self {
        self.commands.push(command);
        self
    }
}

/// A workflow definition: typed state, typed signals, a pure transition
/// function and pure queries.
pub trait Workflow: Send + Sync + 'static {
    /// The kind name it is registered and stored under.
    const KIND: &'static str;
    /// Bumped when the definition changes incompatibly; stored per workflow.
    const VERSION: i32 = 1;
    /// The priority of this kind's jobs, its transitions and its
    /// activities (`floe.jobs.priority`: lower first, 0 by default). A
    /// workflow a person waits on goes ahead of bulk work in a shared queue:
    /// the onboarding's is -10, so that a reply does not queue behind a
    /// backlog of other jobs (W6l). Registered in `floe.definitions`, where
    /// the SQL paths (start, signal, timer) read it.
    const PRIORITY: i16 = 0;
    /// What it starts with.
    type Input: DeserializeOwned + Serialize;
    /// Its state, stored as the row's `context`.
    type State: DeserializeOwned + Serialize + Clone + PartialEq + fmt::Debug;
    /// The signals it accepts (usually an enum tagged by name).
    type Signal: DeserializeOwned + Serialize;

    /// The state's name, stored in the row's `state` column for operators.
    fn state_name(state: &Self::State) -> String;

    /// The transition function: `None` before the start event. Must be pure:
    /// no I/O, no clock (use `ctx.now`), no randomness.
    fn apply(
        state: Option<Self::State>,
        event: Event<Self::Input, Self::Signal>,
        ctx: &Ctx,
    ) -> Result<Transition<Self::State>, String>;

    /// Answers a query from the state alone; `None` for an unknown query.
    fn query(state: &Self::State, name: &str) -> Option<serde_json::Value> {
        let _ = (state, name);
        None
    }

    /// Converts a state stored under an older [`VERSION`](Self::VERSION)
    /// (`from_version`, what the row's `definition_version` says) into this
    /// version's, before the next event is applied to it. Pure, like
    /// [`apply`](Self::apply). The default keeps the stored JSON as it is:
    /// right when a version changes transitions but not the state's shape.
    /// Whatever it returns must decode as [`State`](Self::State); check
    /// open workflows before a deploy with `floe upgrade --dry-run`.
    fn upgrade(from_version: i32, state: serde_json::Value) -> Result<serde_json::Value, String> {
        let _ = from_version;
        Ok(state)
    }
}
