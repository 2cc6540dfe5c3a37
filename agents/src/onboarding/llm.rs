//! The LLM agents: each has a typed output (serde + JSON schema, simple
//! enough for OpenAI's strict mode), validators whose errors go back to the
//! model, and a pure mapping to the contract's [`AgentOutput`].
//!
//! | agent           | output                   | checked                                            |
//! |-----------------|--------------------------|----------------------------------------------------|
//! | Coordinator     | [`CoordinatorDecision`]  | `next_step` is not the current step                |
//! | Greeter         | [`GreeterReply`]         | complete only with a name; one question            |
//! | Discovery       | [`DiscoveryReply`]       | one question, and one while fields are missing     |
//! | Inbox Collector | [`InboxReply`]           | titles, `YYYY-MM-DD` dates, confirm only a shown list |
//!
//! Every reply needs a non-empty message without Markdown headings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::Date;

use super::contract::{
    AgentInput, AgentOutput, AgentType, ChatTurn, InboxItem, Speaker, Step, WidgetRequest,
    WorkflowSignals,
};
use super::{
    AgentOptions, DISCOVERY_KEYS, DRAFT_INBOX_ITEMS, INBOX_ITEMS, Routing, Turn, combine, dates,
    items_at, known, prompts, text_at, user_text,
};
use crate::agent::{self, Agent, AgentError, FieldSink, FieldStream, OutputStream};
use crate::llm::Message;
use crate::llm::ledger::Recorder;

/// The field of the Greeter's, Discovery's and the Inbox Collector's
/// outputs that the person reads (the contract's `message`): what a turn
/// streams.
pub const REPLY_FIELD: &str = "message";

/// The agents the Coordinator chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline, transform = plain_enum)]
pub enum Specialist {
    /// Learns the user's name.
    Greeter,
    /// Learns how the user works.
    Discovery,
    /// Collects and confirms the brain dump.
    InboxCollector,
}

impl From<Specialist> for AgentType {
    fn from(specialist: Specialist) -> Self {
        match specialist {
            Specialist::Greeter => Self::Greeter,
            Specialist::Discovery => Self::Discovery,
            Specialist::InboxCollector => Self::InboxCollector,
        }
    }
}

/// The onboarding steps, as the Coordinator names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline, transform = plain_enum)]
pub enum StepName {
    /// Name and how to address the user.
    Greeting,
    /// How the user works.
    Discovery,
    /// Everything on their mind, into the inbox.
    BrainDump,
    /// Onboarding finished.
    Completed,
}

impl From<StepName> for Step {
    fn from(step: StepName) -> Self {
        match step {
            StepName::Greeting => Self::Greeting,
            StepName::Discovery => Self::Discovery,
            StepName::BrainDump => Self::BrainDump,
            StepName::Completed => Self::Completed,
        }
    }
}

/// Schemars writes an enum of documented unit variants as `oneOf` of
/// consts; strict mode wants a plain string `enum` (the variants' docs go
/// into the description). The small types are inlined (`#[schemars(inline)]`)
/// so that no `$ref` carries sibling keywords, which strict mode rejects.
fn plain_enum(schema: &mut schemars::Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(Value::Array(variants)) = object.get("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    let mut notes = Vec::new();
    for variant in variants {
        let Some(value) = variant.get("const").and_then(Value::as_str) else {
            return;
        };
        values.push(json!(value));
        if let Some(doc) = variant.get("description").and_then(Value::as_str) {
            notes.push(format!("{value}: {doc}"));
        }
    }
    object.remove("oneOf");
    object.insert("type".into(), json!("string"));
    object.insert("enum".into(), Value::Array(values));
    if !notes.is_empty() {
        let lead = object
            .get("description")
            .and_then(Value::as_str)
            .map(|d| format!("{d} "))
            .unwrap_or_default();
        object.insert(
            "description".into(),
            json!(format!("{lead}({})", notes.join("; "))),
        );
    }
}

/// The Coordinator's decision for a turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CoordinatorDecision {
    /// Who answers the user's latest message.
    pub agent: Specialist,
    /// Whether the user made clear the current step is finished.
    pub step_done: bool,
    /// The step the user explicitly asked to go to; null to stay.
    pub next_step: Option<StepName>,
    /// One short sentence on why, for the logs.
    pub reason: String,
}

/// The Greeter's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GreeterReply {
    /// The message to the user.
    pub message: String,
    /// The user's name as they gave it; null when not known.
    pub name: Option<String>,
    /// What the user wants to be called; null when not known.
    pub preferred_name: Option<String>,
    /// Whether the greeting is done: the user's name is known.
    pub step_completed: bool,
    /// Other lasting facts from the user's message, as short sentences.
    pub memory_updates: Vec<String>,
}

/// What Discovery learned from the user's latest message; null for what
/// they did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct DiscoveryFacts {
    /// What they do, as a short phrase.
    pub role: Option<String>,
    /// What they want to achieve in the coming months.
    pub goals: Option<Vec<String>>,
    /// When and how they focus best, as a short phrase.
    pub work_patterns: Option<String>,
    /// What they use to keep track of things.
    pub tools: Option<Vec<String>>,
    /// What gets in their way.
    pub pain_points: Option<Vec<String>>,
}

impl DiscoveryFacts {
    /// The facts as context entries (trimmed; empty ones left out).
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| json!(s))
        };
        let list = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| i.trim())
                        .filter(|i| !i.is_empty())
                        .collect::<Vec<_>>()
                })
                .filter(|items| !items.is_empty())
                .map(|items| json!(items))
        };
        let entries = [
            ("role", text(&self.role)),
            ("goals", list(&self.goals)),
            ("work_patterns", text(&self.work_patterns)),
            ("tools", list(&self.tools)),
            ("pain_points", list(&self.pain_points)),
        ];
        for (key, value) in entries {
            if let Some(value) = value {
                map.insert(key.into(), value);
            }
        }
        map
    }
}

/// Discovery's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DiscoveryReply {
    /// The message to the user.
    pub message: String,
    /// What the user told you in their latest message.
    pub learned: DiscoveryFacts,
    /// The user wants no more questions.
    pub user_declined_more_questions: bool,
    /// Short answer buttons for your question (at most four); empty for none.
    pub quick_replies: Vec<String>,
    /// Lasting facts from the user's message, as short sentences.
    pub memory_updates: Vec<String>,
}

/// The Inbox Collector's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InboxReply {
    /// The message to the user.
    pub message: String,
    /// The complete current list of items (after the user's edits).
    pub items: Vec<InboxItem>,
    /// The user's latest message confirms the list they were shown.
    pub user_confirmed: bool,
    /// Lasting facts about the user (not the tasks), as short sentences.
    pub memory_updates: Vec<String>,
}

/// What an agent run knows: the turn, the step it acts for, the context.
#[derive(Debug, Clone)]
pub(crate) struct Deps {
    /// The step the agent acts for.
    pub(crate) step: Step,
    /// The step the user asked to leave for this one, this turn.
    pub(crate) moved_from: Option<Step>,
    /// Why the agent speaks.
    pub(crate) turn: Turn,
    /// The workflow's context.
    pub(crate) context: Map<String, Value>,
    /// Remembered facts.
    pub(crate) memory: Vec<String>,
    /// The user's today.
    pub(crate) today: Date,
}

impl Deps {
    fn new(input: &AgentInput, step: Step, moved_from: Option<Step>, turn: Turn) -> Self {
        Self {
            step,
            moved_from,
            turn,
            context: input.context.workflow_context.clone(),
            memory: input.context.user_memory.clone(),
            today: dates::today(input.context.today.as_deref()),
        }
    }
}

/// Runs one turn with the model (see the module docs of `onboarding`).
pub(crate) async fn turn(
    llm: &Recorder,
    options: &AgentOptions,
    input: &AgentInput,
    stream: Option<&FieldSink>,
) -> Result<AgentOutput, AgentError> {
    // Only the specialist's reply streams (the Coordinator's decision is
    // not for the person).
    let follow = stream.map(|sink| FieldStream::new(REPLY_FIELD, sink));
    let stream = follow.as_ref().map(|f| f as &dyn OutputStream);
    let current = input.context.current_step;
    let turn = Turn::of(input);
    let history = history(&input.context.conversation_history);
    let prompt = user_text(input).unwrap_or_else(|| prompts::proactive_prompt(turn));
    let routing = if input.agent_type != AgentType::Coordinator {
        Routing::direct(input.agent_type)
    } else if turn != Turn::Message || current == Step::Completed {
        // Nothing to route: the step's owner speaks.
        Routing::direct(current.owner())
    } else {
        let deps = Deps::new(input, current, None, turn);
        let run = coordinator(options)
            .run(llm, &deps, history.clone(), prompt, None)
            .await?;
        let decision = run.output;
        tracing::info!(
            agent = ?decision.agent,
            step_done = decision.step_done,
            next_step = ?decision.next_step,
            reason = %decision.reason,
            "coordinator routed the turn"
        );
        routing(current, &decision)
    };
    let step = routing.step(current);
    let moved_from = routing.next_step.map(|_| current);
    let deps = Deps::new(input, step, moved_from, turn);
    let output = match routing.agent {
        AgentType::Greeter => {
            let run = greeter(options)
                .run(llm, &deps, history, prompt, stream)
                .await?;
            greeter_output(&deps, run.output)
        }
        AgentType::Discovery => {
            let run = discovery(options)
                .run(llm, &deps, history, prompt, stream)
                .await?;
            discovery_output(&deps, run.output)
        }
        AgentType::InboxCollector | AgentType::Coordinator => {
            let run = inbox_collector(options)
                .run(llm, &deps, history, prompt, stream)
                .await?;
            inbox_output(&deps, run.output)
        }
    };
    Ok(combine(current, &routing, output))
}

/// The conversation so far as model messages.
fn history(turns: &[ChatTurn]) -> Vec<Message> {
    turns
        .iter()
        .filter(|t| !t.content.trim().is_empty())
        .map(|t| match t.role {
            Speaker::User => Message::user(&t.content),
            Speaker::Assistant => Message::assistant(&t.content),
        })
        .collect()
}

/// The Coordinator's decision as routing: with a next step, that step's
/// owner answers.
pub(crate) fn routing(current: Step, decision: &CoordinatorDecision) -> Routing {
    let next_step = decision
        .next_step
        .map(Step::from)
        .filter(|step| *step != current);
    Routing {
        agent: next_step.map_or_else(|| decision.agent.into(), Step::owner),
        step_done: decision.step_done,
        next_step,
    }
}

// ---------------------------------------------------------------- the agents

/// An agent with the app's description, `role`, (for agents that talk to
/// the user) the writing rules, and the turn's situation.
fn base<O>(name: &str, role: &'static str, talks: bool, options: &AgentOptions) -> Agent<Deps, O>
where
    O: serde::de::DeserializeOwned + JsonSchema,
{
    let agent = Agent::new(name).instructions(prompts::APP);
    let agent = if talks {
        agent.instructions(prompts::STYLE)
    } else {
        agent
    };
    agent
        .instructions(role)
        .dynamic_instructions(prompts::situation)
        .output(options.mode, options.strict, options.retries)
}

fn coordinator(options: &AgentOptions) -> Agent<Deps, CoordinatorDecision> {
    base("coordinator", prompts::COORDINATOR, false, options).validate(
        |deps: &Deps, out: &CoordinatorDecision| match out.next_step.map(Step::from) {
            Some(step) if step == deps.step => Err(format!(
                "next_step is the current step ({}); use null to stay in it",
                step.as_str()
            )),
            _ => Ok(()),
        },
    )
}

fn greeter(options: &AgentOptions) -> Agent<Deps, GreeterReply> {
    base("greeter", prompts::GREETER, true, options)
        .validate(|_, out: &GreeterReply| check_message(&out.message))
        .validate(|deps: &Deps, out: &GreeterReply| {
            for (field, value) in [("name", &out.name), ("preferred_name", &out.preferred_name)] {
                if let Some(value) = value {
                    let value = value.trim();
                    if value.is_empty() {
                        return Err(format!("{field} is empty; use null when you don't know it"));
                    }
                    if value.chars().count() > 60 || value.contains(['?', '\n']) {
                        return Err(format!(
                            "{field} {value:?} is not a name; put only the name the user gave, or null"
                        ));
                    }
                }
            }
            let known_name = out.name.is_some()
                || out.preferred_name.is_some()
                || text_at(&deps.context, "name").is_some();
            if out.step_completed && !known_name {
                return Err(
                    "step_completed is true but the user's name is unknown: ask for it and keep step_completed false"
                        .into(),
                );
            }
            Ok(())
        })
}

fn discovery(options: &AgentOptions) -> Agent<Deps, DiscoveryReply> {
    base("discovery", prompts::DISCOVERY, true, options)
        .validate(|_, out: &DiscoveryReply| check_message(&out.message))
        .validate(|deps: &Deps, out: &DiscoveryReply| {
            let l = &out.learned;
            for (key, text) in [("role", &l.role), ("work_patterns", &l.work_patterns)] {
                if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                    return Err(format!(
                        "learned.{key} is empty; use null when the user did not say"
                    ));
                }
            }
            for (key, list) in [
                ("goals", &l.goals),
                ("tools", &l.tools),
                ("pain_points", &l.pain_points),
            ] {
                if let Some(list) = list
                    && (list.is_empty() || list.iter().any(|i| i.trim().is_empty()))
                {
                    return Err(format!(
                        "learned.{key} has empty entries; use null when the user did not say"
                    ));
                }
            }
            if out.quick_replies.len() > 4
                || out
                    .quick_replies
                    .iter()
                    .any(|q| q.trim().is_empty() || q.chars().count() > 40)
            {
                return Err("quick_replies: at most four short, non-empty answers".into());
            }
            if !discovery_done(deps, out)
                && deps.turn == Turn::Message
                && !out.message.contains(['?', '？'])
            {
                let missing = missing_after(deps, out);
                return Err(format!(
                    "discovery still needs {}: end the message with one question about {}",
                    missing.join(", "),
                    missing.first().copied().unwrap_or("it"),
                ));
            }
            Ok(())
        })
}

fn inbox_collector(options: &AgentOptions) -> Agent<Deps, InboxReply> {
    base("inbox_collector", prompts::INBOX_COLLECTOR, true, options)
        .tool(agent::tool(
            "resolve_date",
            "Turns the user's words for a day into a date (YYYY-MM-DD), counting from today. Understands today, tomorrow, weekdays (\"friday\" is the coming one, \"next friday\" the Friday of next week), \"in 3 days\", \"next week\", \"end of month\", \"dec 5\" and ISO dates.",
            |deps: &Deps, args: ResolveDate| resolve_date_tool(deps.today, &args.expression),
        ))
        .validate(|_, out: &InboxReply| check_message(&out.message))
        .validate(|deps: &Deps, out: &InboxReply| {
            for (i, item) in out.items.iter().enumerate() {
                let n = i + 1;
                let title = item.title.trim();
                if title.is_empty() {
                    return Err(format!("item {n} has an empty title"));
                }
                if title.chars().count() > 150 {
                    return Err(format!("item {n}'s title is too long: keep it under 150 characters"));
                }
                if let Some(due) = &item.due_date
                    && dates::parse_iso(due).is_none()
                {
                    return Err(format!(
                        "item {n} ({title}) has due_date {due:?}, which is not a YYYY-MM-DD date; call resolve_date or use null"
                    ));
                }
            }
            let draft = items_at(&deps.context, DRAFT_INBOX_ITEMS);
            if deps.step == Step::Completed && (out.user_confirmed || !out.items.is_empty()) {
                return Err("onboarding is finished: items must be empty and user_confirmed false".into());
            }
            if out.user_confirmed {
                if deps.turn != Turn::Message {
                    return Err("user_confirmed is true but the user has not said anything this turn".into());
                }
                if draft.is_empty() && !out.items.is_empty() {
                    return Err("user_confirmed is true but the user has not seen these items yet: show them and ask whether they look right".into());
                }
                if !draft.is_empty() && out.items.is_empty() {
                    return Err("the user confirmed the list, but items is empty: return the confirmed items".into());
                }
            }
            Ok(())
        })
}

/// The `resolve_date` tool's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
struct ResolveDate {
    /// The user's words for the day: "tomorrow", "next friday", "in 3 days", "dec 5".
    expression: String,
}

/// The `resolve_date` tool: the date, or why not (shown to the model).
pub(crate) fn resolve_date_tool(today: Date, expression: &str) -> Result<Value, String> {
    match dates::resolve_date(expression, today) {
        Some(date) => Ok(json!({
            "expression": expression,
            "date": dates::format_iso(date),
            "weekday": dates::weekday_name(date.weekday()),
        })),
        None => Err(format!(
            "{expression:?} is not a date I can resolve (today is {}). Try words like \"tomorrow\", \"next friday\", \"in 3 days\", \"dec 5\" or a YYYY-MM-DD date, or leave due_date null.",
            dates::format_iso(today)
        )),
    }
}

/// Every message: not empty, no headings, at most one question.
fn check_message(message: &str) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("message is empty: write your reply to the user".into());
    }
    if message.lines().any(|line| {
        let line = line.trim_start();
        let hashes = line.chars().take_while(|c| *c == '#').count();
        (1..=6).contains(&hashes) && line[hashes..].starts_with(' ')
    }) {
        return Err("message has a Markdown heading: write plain text".into());
    }
    // Items of a list may end in "?" ("Decide what to do about the car?").
    let questions: usize = message
        .lines()
        .filter(|line| !is_list_line(line))
        .map(|line| line.matches(['?', '？']).count())
        .sum();
    if questions > 1 {
        return Err(format!(
            "message asks {questions} questions: ask at most one question per message"
        ));
    }
    Ok(())
}

/// "1. Call mom", "- Call mom", "• Call mom".
fn is_list_line(line: &str) -> bool {
    let line = line.trim_start();
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        return line[digits..].starts_with(['.', ')']);
    }
    line.starts_with(['-', '*', '•'])
}

// ------------------------------------------------------------ the mappings

fn memory(updates: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for update in updates {
        let update = update.trim().to_owned();
        if !update.is_empty() && !out.iter().any(|u| u.eq_ignore_ascii_case(&update)) {
            out.push(update);
        }
    }
    out
}

fn output(agent: AgentType, message: String) -> AgentOutput {
    AgentOutput {
        message: message.trim().to_owned(),
        workflow_signals: WorkflowSignals::default(),
        memory_updates: Vec::new(),
        widget_request: None,
        agent,
    }
}

/// The Greeter's reply as the contract's output: `completion_data` has
/// `name` and `preferred_name` when it learned them.
pub(crate) fn greeter_output(deps: &Deps, reply: GreeterReply) -> AgentOutput {
    let clean = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let said_name = clean(reply.name);
    let said_preferred = clean(reply.preferred_name);
    let mut facts = Vec::new();
    let mut data = None;
    if said_name.is_some() || said_preferred.is_some() {
        let name = said_name
            .clone()
            .or_else(|| text_at(&deps.context, "name").map(str::to_owned))
            .or_else(|| said_preferred.clone())
            .unwrap_or_default();
        let preferred = said_preferred
            .unwrap_or_else(|| name.split_whitespace().next().unwrap_or(&name).to_owned());
        if said_name.is_some() {
            facts.push(format!("Name is {name}"));
        }
        if preferred != name {
            facts.push(format!("Prefers to be called {preferred}"));
        }
        let mut map = Map::new();
        map.insert("name".into(), json!(name));
        map.insert("preferred_name".into(), json!(preferred));
        data = Some(map);
    }
    facts.extend(reply.memory_updates);
    AgentOutput {
        workflow_signals: WorkflowSignals {
            step_completed: reply.step_completed,
            completion_data: data,
            next_step_override: None,
        },
        memory_updates: memory(facts),
        ..output(AgentType::Greeter, reply.message)
    }
}

/// The fields Discovery still lacks after this reply.
fn missing_after(deps: &Deps, reply: &DiscoveryReply) -> Vec<&'static str> {
    let learned = reply.learned.to_map();
    DISCOVERY_KEYS
        .into_iter()
        .filter(|key| !known(&deps.context, key) && !learned.contains_key(*key))
        .collect()
}

/// Discovery is done when all five are known or the user wants no more
/// questions.
fn discovery_done(deps: &Deps, reply: &DiscoveryReply) -> bool {
    reply.user_declined_more_questions || missing_after(deps, reply).is_empty()
}

/// Discovery's reply as the contract's output: `completion_data` has what
/// it learned this turn; complete when all five are known or the user
/// declined further questions.
pub(crate) fn discovery_output(deps: &Deps, reply: DiscoveryReply) -> AgentOutput {
    let done = discovery_done(deps, &reply);
    let learned = reply.learned.to_map();
    let options: Vec<String> = reply
        .quick_replies
        .iter()
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty())
        .collect();
    AgentOutput {
        workflow_signals: WorkflowSignals {
            step_completed: done,
            completion_data: (!learned.is_empty()).then_some(learned),
            next_step_override: None,
        },
        memory_updates: memory(reply.memory_updates),
        widget_request: (!done && !options.is_empty())
            .then_some(WidgetRequest::QuickReplies { options }),
        ..output(AgentType::Discovery, reply.message)
    }
}

/// The Inbox Collector's reply as the contract's output: on confirmation
/// `step_completed` with `inbox_items`; otherwise the list, if any, is kept
/// as `draft_inbox_items` and shown with an item-confirmation widget.
pub(crate) fn inbox_output(deps: &Deps, reply: InboxReply) -> AgentOutput {
    let items: Vec<InboxItem> = reply
        .items
        .into_iter()
        .map(|item| {
            let mut tags: Vec<String> = Vec::new();
            for tag in item.tags {
                let tag = tag.trim().trim_start_matches('#').trim().to_lowercase();
                if !tag.is_empty() && !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            InboxItem {
                title: item.title.trim().to_owned(),
                due_date: item
                    .due_date
                    .map(|d| d.trim().to_owned())
                    .filter(|d| !d.is_empty()),
                tags,
            }
        })
        .collect();
    let had_draft = !items_at(&deps.context, DRAFT_INBOX_ITEMS).is_empty();
    let mut signals = WorkflowSignals::default();
    let mut widget = None;
    if deps.step == Step::Completed {
        // After onboarding there is nothing to collect.
    } else if reply.user_confirmed {
        let mut data = Map::new();
        data.insert(INBOX_ITEMS.into(), json!(items));
        data.insert(DRAFT_INBOX_ITEMS.into(), json!([]));
        signals.step_completed = true;
        signals.completion_data = Some(data);
    } else if !items.is_empty() || had_draft {
        let mut data = Map::new();
        data.insert(DRAFT_INBOX_ITEMS.into(), json!(items));
        signals.completion_data = Some(data);
        if !items.is_empty() {
            widget = Some(WidgetRequest::ItemConfirmation { items });
        }
    }
    AgentOutput {
        workflow_signals: signals,
        memory_updates: memory(reply.memory_updates),
        widget_request: widget,
        ..output(AgentType::InboxCollector, reply.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::schema_for;
    use crate::onboarding::contract::{AgentContext, TriggerType};

    fn deps(step: Step, context: Value) -> Deps {
        let input = AgentInput {
            agent_type: AgentType::Coordinator,
            user_message: Some("hi".into()),
            context: AgentContext {
                user_id: "u1".into(),
                workflow_context: context.as_object().cloned().unwrap_or_default(),
                conversation_history: Vec::new(),
                user_memory: vec!["Likes short answers".into()],
                trigger_type: TriggerType::UserMessage,
                current_step: step,
                today: Some("2026-11-25".into()),
            },
        };
        Deps::new(&input, step, None, Turn::Message)
    }

    /// Whether some `$ref` has sibling keywords (strict mode rejects them).
    fn ref_with_siblings(schema: &Value) -> bool {
        match schema {
            Value::Object(map) => {
                (map.contains_key("$ref") && map.len() > 1) || map.values().any(ref_with_siblings)
            }
            Value::Array(items) => items.iter().any(ref_with_siblings),
            _ => false,
        }
    }

    #[test]
    fn strict_schemas_use_plain_enums() {
        let schema = schema_for::<CoordinatorDecision>(true).to_string();
        assert!(!schema.contains("oneOf"), "{schema}");
        assert!(
            schema.contains(r#""enum":["greeter","discovery","inbox_collector"]"#),
            "{schema}"
        );
        assert!(
            schema.contains(r#""additionalProperties":false"#),
            "{schema}"
        );
        for schema in [
            schema_for::<CoordinatorDecision>(true),
            schema_for::<GreeterReply>(true),
            schema_for::<DiscoveryReply>(true),
            schema_for::<InboxReply>(true),
        ] {
            let text = schema.to_string();
            assert!(
                !text.contains("oneOf") && !text.contains("\"default\""),
                "{text}"
            );
            assert!(!ref_with_siblings(&schema), "{text}");
        }
    }

    #[test]
    fn messages_are_checked() {
        assert!(check_message("Hi! What's your name?").is_ok());
        assert!(check_message("  ").is_err());
        assert!(check_message("## Welcome\nHi").is_err());
        assert!(check_message("#work is a tag").is_ok());
        assert!(check_message("What's your role? And your goals?").is_err());
        assert!(check_message("1. Sell the car?\n2. Call mom\nDoes this look right?").is_ok());
    }

    #[test]
    fn greeter_maps_names_and_facts() {
        let d = deps(Step::Greeting, json!({}));
        let out = greeter_output(
            &d,
            GreeterReply {
                message: "Nice to meet you, Al!".into(),
                name: Some("Alex".into()),
                preferred_name: Some("Al".into()),
                step_completed: true,
                memory_updates: vec!["Name is Alex".into(), "Has a dog".into()],
            },
        );
        assert!(out.workflow_signals.step_completed);
        assert_eq!(
            out.workflow_signals.completion_data.map(Value::Object),
            Some(json!({ "name": "Alex", "preferred_name": "Al" }))
        );
        assert_eq!(
            out.memory_updates,
            ["Name is Alex", "Prefers to be called Al", "Has a dog"]
        );
    }

    #[test]
    fn discovery_completes_when_all_five_are_known() {
        let d = deps(
            Step::Discovery,
            json!({ "role": "designer", "goals": ["ship v2"], "work_patterns": "mornings", "tools": ["Notion"] }),
        );
        let reply = DiscoveryReply {
            message: "Thanks! Now tell me everything on your mind.".into(),
            learned: DiscoveryFacts {
                pain_points: Some(vec!["too many meetings".into()]),
                ..DiscoveryFacts::default()
            },
            user_declined_more_questions: false,
            quick_replies: vec![],
            memory_updates: vec![],
        };
        let out = discovery_output(&d, reply);
        assert!(out.workflow_signals.step_completed);
        assert_eq!(
            out.workflow_signals.completion_data.map(Value::Object),
            Some(json!({ "pain_points": ["too many meetings"] }))
        );
    }

    #[test]
    fn inbox_keeps_a_draft_until_confirmed() {
        let item = InboxItem {
            title: " Call the dentist ".into(),
            due_date: Some("2026-11-26".into()),
            tags: vec!["#Health".into()],
        };
        let d = deps(Step::BrainDump, json!({}));
        let shown = inbox_output(
            &d,
            InboxReply {
                message: "1. Call the dentist. Look right?".into(),
                items: vec![item.clone()],
                user_confirmed: false,
                memory_updates: vec![],
            },
        );
        assert!(!shown.workflow_signals.step_completed);
        let clean =
            json!([{ "title": "Call the dentist", "due_date": "2026-11-26", "tags": ["health"] }]);
        assert_eq!(
            shown.workflow_signals.completion_data.map(Value::Object),
            Some(json!({ "draft_inbox_items": clean }))
        );
        assert!(matches!(
            shown.widget_request,
            Some(WidgetRequest::ItemConfirmation { .. })
        ));
        let d = deps(Step::BrainDump, json!({ "draft_inbox_items": clean }));
        let done = inbox_output(
            &d,
            InboxReply {
                message: "Done!".into(),
                items: vec![item],
                user_confirmed: true,
                memory_updates: vec![],
            },
        );
        assert!(done.workflow_signals.step_completed);
        assert_eq!(
            done.workflow_signals.completion_data.map(Value::Object),
            Some(json!({ "inbox_items": clean, "draft_inbox_items": [] }))
        );
    }

    #[test]
    fn the_date_tool_answers_or_explains() {
        let today = dates::parse_iso("2026-11-25").unwrap_or(Date::MIN);
        assert_eq!(
            resolve_date_tool(today, "next friday"),
            Ok(json!({ "expression": "next friday", "date": "2026-12-04", "weekday": "Friday" }))
        );
        assert!(resolve_date_tool(today, "someday").is_err());
    }

    #[test]
    fn coordinator_overrides_route_to_the_steps_owner() {
        let decision = CoordinatorDecision {
            agent: Specialist::Discovery,
            step_done: false,
            next_step: Some(StepName::BrainDump),
            reason: "wants the brain dump".into(),
        };
        let r = routing(Step::Discovery, &decision);
        assert_eq!(r.agent, AgentType::InboxCollector);
        assert_eq!(r.next_step, Some(Step::BrainDump));
        let stay = CoordinatorDecision {
            next_step: Some(StepName::Discovery),
            ..decision
        };
        assert_eq!(routing(Step::Discovery, &stay).next_step, None);
    }

    #[test]
    fn the_reply_field_is_every_talking_agents_message() {
        for schema in [
            schema_for::<GreeterReply>(true),
            schema_for::<DiscoveryReply>(true),
            schema_for::<InboxReply>(true),
        ] {
            assert_eq!(
                schema["properties"][REPLY_FIELD]["type"], "string",
                "{schema}"
            );
        }
    }

    /// The texts a turn streamed, by model call.
    type Streamed = std::sync::Arc<std::sync::Mutex<Vec<(u32, String)>>>;

    async fn streaming_turn(
        script: Vec<crate::testing::Reply>,
        mode: crate::settings::OutputMode,
        input: &AgentInput,
    ) -> (AgentOutput, Vec<(u32, String)>) {
        let fake = crate::testing::FakeLlm::start(script).await;
        let client = crate::llm::openai::OpenAiClient::builder(fake.base_url())
            .stream(true)
            .build()
            .expect("client");
        let llm = Recorder::unrecorded(std::sync::Arc::new(client));
        let streamed = Streamed::default();
        let seen = streamed.clone();
        let sink = move |call: u32, text: &str| {
            seen.lock().expect("lock").push((call, text.to_owned()));
        };
        let options = AgentOptions {
            mode,
            strict: true,
            retries: 2,
        };
        let output = turn(&llm, &options, input, Some(&sink))
            .await
            .expect("turn");
        let streamed = streamed.lock().expect("lock").clone();
        (output, streamed)
    }

    fn input(agent: AgentType, step: Step, message: &str) -> AgentInput {
        AgentInput {
            agent_type: agent,
            user_message: Some(message.into()),
            context: AgentContext {
                user_id: "u1".into(),
                workflow_context: Map::new(),
                conversation_history: Vec::new(),
                user_memory: Vec::new(),
                trigger_type: TriggerType::UserMessage,
                current_step: step,
                today: Some("2026-11-25".into()),
            },
        }
    }

    /// Each call's texts grow, each a prefix of the next.
    fn growing(streamed: &[(u32, String)]) {
        for pair in streamed.windows(2) {
            let ((call_a, a), (call_b, b)) = (&pair[0], &pair[1]);
            assert!(call_a <= call_b, "{streamed:?}");
            if call_a == call_b {
                assert!(
                    b.starts_with(a.as_str()) && b.len() > a.len(),
                    "{streamed:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_reply_streams_from_the_final_result_arguments_past_tool_calls_and_corrections() {
        use crate::testing::Reply;
        let reply = "  Got it: 1. Call the bank (Fri) \"today\" \u{1f600}\nLook right?  ";
        let items = json!([{ "title": "Call the bank", "due_date": "2026-12-04", "tags": [] }]);
        let script = vec![
            Reply::streamed(
                Reply::tool_call("resolve_date", json!({ "expression": "next friday" })),
                3,
            ),
            // A heading: rejected, and the model corrects itself.
            Reply::streamed(
                Reply::tool_call(
                    "final_result",
                    json!({ "message": "## Items\nCall the bank?", "items": items,
                            "user_confirmed": false, "memory_updates": [] }),
                ),
                5,
            ),
            Reply::streamed(
                Reply::tool_call(
                    "final_result",
                    json!({ "items": items, "message": reply,
                            "user_confirmed": false, "memory_updates": [] }),
                ),
                4,
            ),
        ];
        let (output, streamed) = streaming_turn(
            script,
            crate::settings::OutputMode::Tool,
            &input(
                AgentType::InboxCollector,
                Step::BrainDump,
                "call the bank next friday",
            ),
        )
        .await;
        growing(&streamed);
        // Nothing from the resolve_date call (call 1); the rejected output
        // (call 2) streamed, then the corrected one (call 3) from scratch.
        assert!(streamed.iter().all(|(call, _)| *call >= 2), "{streamed:?}");
        assert!(
            streamed
                .iter()
                .any(|(call, text)| *call == 2 && text.starts_with("## Items")),
            "{streamed:?}"
        );
        let last: Vec<&String> = streamed
            .iter()
            .filter(|(call, _)| *call == 3)
            .map(|(_, text)| text)
            .collect();
        assert!(last.len() > 5, "many pieces: {last:?}");
        assert_eq!(output.message, reply.trim());
        assert_eq!(
            last.last().map(|t| t.as_str()),
            Some(output.message.as_str())
        );
    }

    #[tokio::test]
    async fn the_reply_streams_from_native_json_content() {
        use crate::testing::Reply;
        let reply = "Nice to meet you, Zoë! \u{1f44b} What's your \"role\"?";
        let script = vec![Reply::streamed(
            Reply::json(
                json!({ "name": "Zoë", "message": reply, "preferred_name": null,
                                "step_completed": true, "memory_updates": [] }),
            ),
            3,
        )];
        let (output, streamed) = streaming_turn(
            script,
            crate::settings::OutputMode::Native,
            &input(AgentType::Greeter, Step::Greeting, "I'm Zoë"),
        )
        .await;
        growing(&streamed);
        assert!(streamed.len() > 5, "{streamed:?}");
        assert!(streamed.iter().all(|(call, _)| *call == 1));
        assert_eq!(output.message, reply);
        assert_eq!(streamed.last().map(|(_, t)| t.as_str()), Some(reply));
    }
}
