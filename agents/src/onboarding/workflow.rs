//! `onboarding`: the OnboardingWorkflow of the source spec, one per user —
//! greeting → discovery → brain_dump → completed — as a pure transition
//! function over the engine's events.
//!
//! # A turn
//!
//! Activities, one after the other: `memory.get` (what is remembered about
//! the user, best effort: a failure means no memories) → `agent.turn` (the
//! Coordinator routes a user message; a proactive turn goes to the step's
//! owner) → `chat.reply` (stores the assistant's message, which notifies the
//! browser) together with `memory.update` (remember what was said; its
//! outcome changes nothing) and, when the brain dump is confirmed,
//! `inbox.add`. The agent's `workflow_signals` move the steps:
//! `completion_data` is merged into the context on every turn, then the
//! workflow goes to `next_step_override` if set, else to the next step if
//! `step_completed`.
//!
//! # Messages during a turn
//!
//! A message that arrives while a turn runs is queued; when the turn's reply
//! is stored, everything queued is **folded into one turn** (the texts joined
//! in arrival order), so a burst of three messages gets one answer that
//! reads all three, and none is dropped.
//!
//! # Speaking first, and nudges
//!
//! `user_connected` from a user the assistant has not greeted yet makes it
//! speak first. After each reply mid-onboarding the deadline is set
//! `nudge_after_secs` ahead: if the user stays silent, the assistant checks
//! in once (a proactive turn with `nudge` in the context); no second nudge
//! follows until the user has spoken again, and never more than
//! `max_nudges` in all. Any user message clears the deadline.
//!
//! # Failures
//!
//! An agent turn that fails after all its attempts stores a polite error
//! message instead of a reply; the workflow stays as it was and the next
//! message tries again (the failed message stays in the history the agent
//! sees). When the step reaches `completed`, the workflow completes once
//! the last reply is stored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use floe_engine::workflow::{ActivityPolicy, Command, Ctx, Event, Transition, Workflow};

use super::contract::{
    AgentContext, AgentInput, AgentOutput, AgentType, ChatTurn, Speaker, Step, TriggerType,
};

/// The activity that reads memory before a turn.
pub const MEMORY_GET: &str = "memory.get";
/// The activity that runs an agent's turn.
pub const AGENT_TURN: &str = "agent.turn";
/// The activity that remembers what was said after a turn.
pub const MEMORY_UPDATE: &str = "memory.update";
/// The activity that stores (and so pushes) an assistant message.
pub const CHAT_REPLY: &str = "chat.reply";
/// The activity that puts confirmed items in the user's inbox.
pub const INBOX_ADD: &str = "inbox.add";

/// What the user sees when a turn fails after all its attempts.
pub const APOLOGY: &str = "Sorry — I couldn't come up with an answer just now. \
Please send your message again in a moment.";

/// The onboarding workflow.
pub struct Onboarding;

/// How an onboarding behaves (given at start, kept in the state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct OnboardingSettings {
    /// Silence, in seconds, after which the assistant checks in.
    pub nudge_after_secs: u64,
    /// Most check-ins over the whole onboarding.
    pub max_nudges: u32,
    /// Messages of history an agent sees.
    pub history_window: usize,
}

impl Default for OnboardingSettings {
    fn default() -> Self {
        Self {
            nudge_after_secs: 600,
            max_nudges: 1,
            history_window: 12,
        }
    }
}

/// What an onboarding starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OnboardingInput {
    /// The user it serves.
    pub user_id: String,
    /// The name they signed in with.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Nudges and history.
    #[serde(default)]
    pub settings: OnboardingSettings,
}

/// The signals an onboarding takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", content = "payload", rename_all = "snake_case")]
pub enum OnboardingSignal {
    /// The user said something.
    UserMessage {
        /// What.
        content: String,
        /// Its sequence number in the conversation.
        #[serde(default)]
        seq: Option<i64>,
        /// The browser's id for it.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// The user opened the chat.
    UserConnected,
}

/// Where the running turn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading memory.
    Memory,
    /// The agent is answering.
    Agent,
    /// The answer is being stored.
    Reply,
}

/// The turn in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnInFlight {
    /// Its number (activity ids are `t{n}.…`).
    pub n: u64,
    /// Where it is.
    pub stage: Stage,
    /// Why the assistant speaks.
    pub trigger: TriggerType,
    /// What the user said (folded messages joined), if anything.
    pub user_message: Option<String>,
    /// What memory returned.
    #[serde(default)]
    pub memory: Vec<String>,
}

/// An onboarding's state: the row's `context`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnboardingState {
    /// The user.
    pub user_id: String,
    /// Their sign-in name.
    pub display_name: Option<String>,
    /// The current step.
    pub step: Step,
    /// What has been collected (the agents' `completion_data`, merged).
    pub context: Map<String, Value>,
    /// The last messages, oldest first.
    pub history: Vec<ChatTurn>,
    /// The turn in flight.
    pub turn: Option<TurnInFlight>,
    /// Messages that arrived during the turn, in order.
    pub pending: Vec<String>,
    /// Turns started so far.
    pub turns: u64,
    /// Whether the assistant has spoken.
    pub greeted: bool,
    /// Check-ins sent.
    pub nudges_sent: u32,
    /// A check-in was sent since the user last spoke.
    pub nudged_since_message: bool,
    /// Agent turns that failed.
    pub failures: u32,
    /// The last activity failure, for operators.
    pub last_error: Option<String>,
    /// Settings.
    pub settings: OnboardingSettings,
}

fn policy(
    max_attempts: i32,
    backoff_base_ms: u64,
    backoff_max_ms: u64,
    timeout_ms: u64,
) -> ActivityPolicy {
    ActivityPolicy {
        max_attempts,
        backoff_base_ms,
        backoff_max_ms,
        timeout_ms,
    }
}

/// Reading memory: quick, best effort.
fn memory_policy() -> ActivityPolicy {
    policy(3, 200, 2_000, 15_000)
}

/// An agent's turn: a model may be slow or rate limited.
fn agent_policy() -> ActivityPolicy {
    policy(4, 1_000, 30_000, 180_000)
}

/// Storing what people see: keep trying.
fn store_policy() -> ActivityPolicy {
    policy(20, 200, 10_000, 15_000)
}

/// Remembering: a few tries, in the background.
fn remember_policy() -> ActivityPolicy {
    policy(3, 1_000, 10_000, 120_000)
}

/// A transition's result.
type Outcome = Result<Transition<OnboardingState>, String>;

impl OnboardingState {
    fn new(input: OnboardingInput) -> Self {
        Self {
            user_id: input.user_id,
            display_name: input.display_name,
            step: Step::Greeting,
            context: Map::new(),
            history: Vec::new(),
            turn: None,
            pending: Vec::new(),
            turns: 0,
            greeted: false,
            nudges_sent: 0,
            nudged_since_message: false,
            failures: 0,
            last_error: None,
            settings: input.settings,
        }
    }

    fn remember_turn(&mut self, role: Speaker, content: &str) {
        self.history.push(ChatTurn {
            role,
            content: content.to_owned(),
        });
        let window = self.settings.history_window.max(2);
        if self.history.len() > window {
            let excess = self.history.len() - window;
            self.history.drain(..excess);
        }
    }

    fn start_turn(mut self, trigger: TriggerType, message: Option<String>) -> Outcome {
        self.turns += 1;
        let n = self.turns;
        let query = message.clone().unwrap_or_else(|| {
            format!(
                "the user's name, role, goals and tools ({})",
                self.step.as_str()
            )
        });
        self.turn = Some(TurnInFlight {
            n,
            stage: Stage::Memory,
            trigger,
            user_message: message,
            memory: Vec::new(),
        });
        let input = json!({ "user_id": self.user_id, "query": query, "limit": 10 });
        Ok(Transition::to(self)
            .then(Command::ClearDeadline)
            .then(Command::RunActivity {
                id: format!("t{n}.memory"),
                name: MEMORY_GET.into(),
                input,
                policy: memory_policy(),
            }))
    }

    fn message(mut self, content: String) -> Outcome {
        let content = content.trim().to_owned();
        if content.is_empty() {
            return Ok(Transition::to(self));
        }
        self.context.remove("nudge");
        self.nudged_since_message = false;
        if self.turn.is_some() {
            self.pending.push(content);
            return Ok(Transition::to(self).then(Command::ClearDeadline));
        }
        self.start_turn(TriggerType::UserMessage, Some(content))
    }

    fn connected(self) -> Outcome {
        if self.greeted || self.turn.is_some() || self.step == Step::Completed {
            return Ok(Transition::to(self));
        }
        self.start_turn(TriggerType::ProactiveInitiation, None)
    }

    fn nudge(mut self) -> Outcome {
        let due = self.turn.is_none()
            && self.greeted
            && self.step != Step::Completed
            && !self.nudged_since_message
            && self.nudges_sent < self.settings.max_nudges;
        if !due {
            return Ok(Transition::to(self));
        }
        self.nudges_sent += 1;
        self.nudged_since_message = true;
        self.context.insert("nudge".into(), json!(self.nudges_sent));
        self.start_turn(TriggerType::ProactiveInitiation, None)
    }

    fn agent_input(&self, turn: &TurnInFlight, ctx: &Ctx) -> AgentInput {
        let mut workflow_context = self.context.clone();
        if let Some(name) = &self.display_name {
            workflow_context
                .entry("display_name")
                .or_insert_with(|| json!(name));
        }
        let date = ctx.now.date();
        AgentInput {
            agent_type: match turn.trigger {
                TriggerType::UserMessage => AgentType::Coordinator,
                TriggerType::ProactiveInitiation => self.step.owner(),
            },
            user_message: turn.user_message.clone(),
            context: AgentContext {
                user_id: self.user_id.clone(),
                workflow_context,
                conversation_history: self.history.clone(),
                user_memory: turn.memory.clone(),
                trigger_type: turn.trigger,
                current_step: self.step,
                today: Some(format!(
                    "{:04}-{:02}-{:02}",
                    date.year(),
                    u8::from(date.month()),
                    date.day()
                )),
            },
        }
    }

    /// The memories arrived (or failed): ask the agent.
    fn memory_read(mut self, result: Result<Value, String>, ctx: &Ctx) -> Outcome {
        let Some(mut turn) = self.turn.take() else {
            return Ok(Transition::to(self));
        };
        match result {
            Ok(found) => {
                turn.memory = found["memories"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Err(e) => self.last_error = Some(format!("memory.get: {e}")),
        }
        turn.stage = Stage::Agent;
        let input = serde_json::to_value(self.agent_input(&turn, ctx))
            .map_err(|e| format!("agent input does not encode: {e}"))?;
        let n = turn.n;
        self.turn = Some(turn);
        Ok(Transition::to(self).then(Command::RunActivity {
            id: format!("t{n}.agent"),
            name: AGENT_TURN.into(),
            input,
            policy: agent_policy(),
        }))
    }

    /// The agent answered (or failed for good): store the reply, remember,
    /// move the steps.
    fn answered(mut self, result: Result<Value, String>) -> Outcome {
        let Some(mut turn) = self.turn.take() else {
            return Ok(Transition::to(self));
        };
        let n = turn.n;
        let output = result.and_then(|v| {
            serde_json::from_value::<AgentOutput>(v)
                .map_err(|e| format!("agent output does not decode: {e}"))
        });
        if let Some(said) = &turn.user_message {
            self.remember_turn(Speaker::User, said);
        }
        let mut commands = Vec::new();
        let reply = match output {
            Err(e) => {
                self.failures += 1;
                self.last_error = Some(format!("agent.turn: {e}"));
                json!({ "kind": "error", "agent": null, "content": APOLOGY, "widget": null })
            }
            Ok(output) => {
                let signals = output.workflow_signals;
                if let Some(data) = signals.completion_data {
                    if let Some(items) = data
                        .get("inbox_items")
                        .filter(|i| i.as_array().is_some_and(|a| !a.is_empty()))
                    {
                        commands.push(Command::RunActivity {
                            id: format!("t{n}.inbox"),
                            name: INBOX_ADD.into(),
                            input: json!({ "user_id": self.user_id, "items": items }),
                            policy: store_policy(),
                        });
                    }
                    self.context.extend(data);
                }
                if let Some(step) = signals.next_step_override {
                    self.step = step;
                } else if signals.step_completed {
                    self.step = self.step.next();
                }
                self.greeted = true;
                self.remember_turn(Speaker::Assistant, &output.message);
                if turn.user_message.is_some() || !output.memory_updates.is_empty() {
                    let mut conversation = Vec::new();
                    if let Some(said) = &turn.user_message {
                        conversation.push(json!({ "role": "user", "content": said }));
                    }
                    conversation.push(json!({ "role": "assistant", "content": output.message }));
                    commands.push(Command::RunActivity {
                        id: format!("t{n}.remember"),
                        name: MEMORY_UPDATE.into(),
                        input: json!({
                            "user_id": self.user_id,
                            "conversation": conversation,
                            "hints": output.memory_updates,
                        }),
                        policy: remember_policy(),
                    });
                }
                let kind = match (turn.trigger, self.context.contains_key("nudge")) {
                    (TriggerType::UserMessage, _) => "reply",
                    (TriggerType::ProactiveInitiation, true) => "nudge",
                    (TriggerType::ProactiveInitiation, false) => "greeting",
                };
                json!({
                    "kind": kind,
                    "agent": output.agent.as_str(),
                    "content": output.message,
                    "widget": output.widget_request,
                })
            }
        };
        commands.insert(
            0,
            Command::RunActivity {
                id: format!("t{n}.reply"),
                name: CHAT_REPLY.into(),
                input: json!({ "user_id": self.user_id, "reply": reply }),
                policy: store_policy(),
            },
        );
        turn.stage = Stage::Reply;
        self.turn = Some(turn);
        Ok(Transition {
            state: self,
            commands,
        })
    }

    /// The reply is stored: the turn is over. Queued messages make the next
    /// turn; otherwise wait (with a nudge armed), or finish.
    fn replied(mut self, result: Result<Value, String>, ctx: &Ctx) -> Outcome {
        if let Err(e) = result {
            self.last_error = Some(format!("chat.reply: {e}"));
        }
        self.turn = None;
        if !self.pending.is_empty() {
            let folded = std::mem::take(&mut self.pending).join("\n\n");
            return self.start_turn(TriggerType::UserMessage, Some(folded));
        }
        if self.step == Step::Completed {
            let output = json!({ "user_id": self.user_id, "context": self.context });
            return Ok(Transition::to(self).then(Command::Complete { output }));
        }
        let arm = !self.nudged_since_message && self.nudges_sent < self.settings.max_nudges;
        let after = i64::try_from(self.settings.nudge_after_secs).unwrap_or(i64::MAX);
        // A nudge too far ahead for any calendar never comes: none is armed.
        let at = ctx.now.checked_add(time::Duration::seconds(after));
        let transition = Transition::to(self);
        Ok(match at {
            Some(at) if arm => transition.then(Command::SetDeadline {
                at,
                reason: "nudge".into(),
            }),
            _ => transition,
        })
    }

    fn activity(mut self, id: &str, result: Result<Value, String>, ctx: &Ctx) -> Outcome {
        let (turn, what) = id.split_once('.').unwrap_or((id, ""));
        let current = self.turn.as_ref().map(|t| format!("t{}", t.n));
        let is_current = current.as_deref() == Some(turn);
        match (what, is_current) {
            ("memory", true) => self.memory_read(result, ctx),
            ("agent", true) => self.answered(result),
            ("reply", true) => self.replied(result, ctx),
            // Background work, or a late answer of an earlier turn: only a
            // failure is worth keeping, for operators.
            _ => {
                if let Err(e) = result {
                    self.last_error = Some(format!("{id}: {e}"));
                }
                Ok(Transition::to(self))
            }
        }
    }

    /// The `get_progress` query.
    pub fn progress(&self) -> Value {
        let current = Step::ALL.iter().position(|s| *s == self.step).unwrap_or(0);
        let steps: Vec<Value> = Step::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let status = match i.cmp(&current) {
                    std::cmp::Ordering::Less => "done",
                    std::cmp::Ordering::Equal if self.step == Step::Completed => "done",
                    std::cmp::Ordering::Equal => "current",
                    std::cmp::Ordering::Greater => "upcoming",
                };
                json!({ "name": s.as_str(), "status": status })
            })
            .collect();
        let real_steps = Step::ALL.len() - 1;
        let done = current.min(real_steps);
        json!({
            "current_step": self.step.as_str(),
            "steps": steps,
            "completed_steps": Step::ALL[..done].iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "remaining_steps": Step::ALL[done..real_steps].iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "percent": (done * 100 / real_steps) as u64,
        })
    }

    /// The `get_state` query.
    pub fn summary(&self) -> Value {
        json!({
            "current_step": self.step.as_str(),
            "context": self.context,
            "typing": self.turn.is_some(),
            "queued_messages": self.pending.len(),
            "greeted": self.greeted,
            "nudges_sent": self.nudges_sent,
            "failures": self.failures,
            "last_error": self.last_error,
        })
    }
}

impl Workflow for Onboarding {
    const KIND: &'static str = "onboarding";
    // A person waits on every turn: its jobs go ahead of bulk work.
    const PRIORITY: i16 = -10;
    type Input = OnboardingInput;
    type State = OnboardingState;
    type Signal = OnboardingSignal;

    fn state_name(state: &OnboardingState) -> String {
        state.step.as_str().to_owned()
    }

    fn apply(
        state: Option<OnboardingState>,
        event: Event<OnboardingInput, OnboardingSignal>,
        ctx: &Ctx,
    ) -> Result<Transition<OnboardingState>, String> {
        match (state, event) {
            (None, Event::Start(input)) => Ok(Transition::to(OnboardingState::new(input))),
            (None, other) => Err(format!("{other:?} before the start")),
            (Some(_), Event::Start(_)) => Err("started twice".into()),
            (Some(s), Event::Signal(OnboardingSignal::UserMessage { content, .. })) => {
                s.message(content)
            }
            (Some(s), Event::Signal(OnboardingSignal::UserConnected)) => s.connected(),
            (Some(s), Event::Activity { id, result }) => s.activity(&id, result, ctx),
            (Some(s), Event::Timer { reason }) if reason == "nudge" => s.nudge(),
            (Some(s), Event::Timer { .. } | Event::Child { .. }) => Ok(Transition::to(s)),
        }
    }

    fn query(state: &OnboardingState, name: &str) -> Option<Value> {
        match name {
            "get_state" => Some(state.summary()),
            "get_progress" => Some(state.progress()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use uuid::Uuid;

    fn ctx(seq: i64) -> Ctx {
        Ctx {
            workflow_id: Uuid::nil(),
            seq,
            now: datetime!(2026-11-25 09:00 UTC),
        }
    }

    fn start() -> OnboardingState {
        let input = OnboardingInput {
            user_id: "u".into(),
            display_name: None,
            settings: OnboardingSettings::default(),
        };
        Onboarding::apply(None, Event::Start(input), &ctx(1))
            .expect("start")
            .state
    }

    fn apply(
        state: OnboardingState,
        event: Event<OnboardingInput, OnboardingSignal>,
    ) -> Transition<OnboardingState> {
        Onboarding::apply(Some(state), event, &ctx(2)).expect("apply")
    }

    fn say(state: OnboardingState, text: &str) -> Transition<OnboardingState> {
        apply(
            state,
            Event::Signal(OnboardingSignal::UserMessage {
                content: text.into(),
                seq: None,
                client_id: None,
            }),
        )
    }

    fn done(
        state: OnboardingState,
        id: &str,
        result: Result<Value, String>,
    ) -> Transition<OnboardingState> {
        apply(
            state,
            Event::Activity {
                id: id.into(),
                result,
            },
        )
    }

    fn activities(t: &Transition<OnboardingState>) -> Vec<(String, String)> {
        t.commands
            .iter()
            .filter_map(|c| match c {
                Command::RunActivity { id, name, .. } => Some((id.clone(), name.clone())),
                _ => None,
            })
            .collect()
    }

    fn reply(message: &str, step_completed: bool) -> Value {
        json!({
            "message": message,
            "workflow_signals": { "step_completed": step_completed },
            "memory_updates": [],
            "agent": "greeter",
        })
    }

    #[test]
    fn a_turn_reads_memory_then_asks_the_agent_then_stores_the_reply() {
        let t = say(start(), "Hi, I'm Alex");
        assert_eq!(activities(&t), [("t1.memory".into(), MEMORY_GET.into())]);
        let t = done(
            t.state,
            "t1.memory",
            Ok(json!({ "memories": ["Uses Notion"] })),
        );
        assert_eq!(activities(&t), [("t1.agent".into(), AGENT_TURN.into())]);
        let Command::RunActivity { input, .. } = &t.commands[0] else {
            panic!("not an activity");
        };
        assert_eq!(input["agent_type"], "coordinator");
        assert_eq!(input["context"]["user_memory"], json!(["Uses Notion"]));
        assert_eq!(input["context"]["today"], "2026-11-25");
        let t = done(t.state, "t1.agent", Ok(reply("Nice to meet you!", true)));
        assert_eq!(
            activities(&t),
            [
                ("t1.reply".into(), CHAT_REPLY.into()),
                ("t1.remember".into(), MEMORY_UPDATE.into())
            ]
        );
        assert_eq!(t.state.step, Step::Discovery);
        assert!(t.state.summary()["typing"].as_bool().unwrap_or(false));
        let t = done(t.state, "t1.reply", Ok(json!({ "seq": 2 })));
        assert!(t.state.turn.is_none());
        assert!(matches!(t.commands[..], [Command::SetDeadline { .. }]));
        assert_eq!(t.state.progress()["percent"], 33);
    }

    #[test]
    fn a_late_result_of_an_earlier_turn_changes_nothing() {
        let t = say(start(), "hello");
        let before = t.state.clone();
        let t = done(t.state, "t7.agent", Ok(reply("stale", true)));
        assert_eq!(t.state, before);
        assert!(t.commands.is_empty());
    }

    #[test]
    fn a_failed_agent_turn_apologises_and_keeps_the_step() {
        let t = say(start(), "hello");
        let t = done(t.state, "t1.memory", Err("memory down".into()));
        let t = done(t.state, "t1.agent", Err("server error (503)".into()));
        let Command::RunActivity { input, .. } = &t.commands[0] else {
            panic!("not an activity");
        };
        assert_eq!(input["reply"]["content"], APOLOGY);
        assert_eq!(t.state.step, Step::Greeting);
        assert_eq!(t.state.failures, 1);
        // The failed message stays in what the agent will see next.
        assert_eq!(t.state.history.len(), 1);
    }

    #[test]
    fn after_a_nudge_no_other_is_armed_until_the_user_speaks() {
        let mut state = start();
        state.greeted = true;
        let t = apply(
            state,
            Event::Timer {
                reason: "nudge".into(),
            },
        );
        assert_eq!(t.state.nudges_sent, 1);
        let t = done(t.state, "t1.memory", Ok(json!({ "memories": [] })));
        let t = done(t.state, "t1.agent", Ok(reply("Still there?", false)));
        let t = done(t.state, "t1.reply", Ok(json!({})));
        assert!(t.commands.is_empty(), "{:?}", t.commands);
        // A second timer (stale) does nothing either.
        let t = apply(
            t.state,
            Event::Timer {
                reason: "nudge".into(),
            },
        );
        assert!(t.commands.is_empty());
        assert_eq!(t.state.nudges_sent, 1);
    }

    #[test]
    fn reaching_completed_finishes_once_the_last_reply_is_stored() {
        let mut state = start();
        state.step = Step::BrainDump;
        let t = say(state, "looks good");
        let t = done(t.state, "t1.memory", Ok(json!({ "memories": [] })));
        let mut output = reply("All set!", true);
        output["workflow_signals"]["completion_data"] =
            json!({ "inbox_items": [{ "title": "Call the bank", "due_date": null, "tags": [] }] });
        let t = done(t.state, "t1.agent", Ok(output));
        assert!(activities(&t).contains(&("t1.inbox".into(), INBOX_ADD.into())));
        assert_eq!(t.state.step, Step::Completed);
        let t = done(t.state, "t1.reply", Ok(json!({})));
        assert!(matches!(t.commands[..], [Command::Complete { .. }]));
        assert_eq!(t.state.progress()["percent"], 100);
    }
}
