//! The offline agents: scripted, deterministic twins of the LLM agents, for
//! running floe without a model (and for tests). Same input, same output;
//! nothing here reads the clock except [`dates::today`] when the context
//! has no `today`.
//!
//! The script:
//! - Coordinator: the current step's owner answers; "skip" (or "move on",
//!   "no more questions") moves to the next step and "let's do the brain
//!   dump" to the brain dump, as `next_step_override`, and that step's
//!   owner opens it; "actually, call me Sam" after the greeting goes to the
//!   Greeter, and the step stays.
//! - Greeter: asks the name; reads it from "my name is X", "I'm X", "call
//!   me X", "X here" or a short capitalised reply; completes with `name`
//!   and `preferred_name`, leading into Discovery's first question.
//! - Discovery: asks about role, goals, work patterns, tools and pain
//!   points in that order; the answer belongs to the first one the context
//!   lacks; completes after the fifth, inviting the brain dump.
//! - Inbox Collector: invites the brain dump, splits it into items (lines,
//!   bullets, semicolons, sentences, comma lists, "and" before a new verb),
//!   with due dates and #tags, shows them for confirmation (kept as
//!   `draft_inbox_items`), takes "remove the second one" and "add ...",
//!   and completes on "yes"/"looks good"/"confirm"/"done" with
//!   `inbox_items`. After onboarding it wraps up.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};
use time::Date;

use super::contract::{
    AgentInput, AgentOutput, AgentType, InboxItem, Speaker, Step, WidgetRequest, WorkflowSignals,
};
use super::{
    DRAFT_INBOX_ITEMS, INBOX_ITEMS, Routing, Turn, address, combine, dates, items_at,
    missing_discovery, specialist_input, step_index, text_at, user_text,
};

/// Answers one turn with the offline agents: the offline Coordinator routes
/// (for `agent_type: coordinator`), the chosen agent answers. Pure and
/// deterministic: the same input gives the same output.
pub fn offline_turn(input: &AgentInput) -> AgentOutput {
    let turn = Turn::of(input);
    let current = input.context.current_step;
    let routing = route(input, turn);
    let specialist = specialist_input(input, &routing);
    let opening = routing.next_step.is_some();
    let output = match routing.agent {
        AgentType::Greeter => greeter(&specialist, turn, opening),
        AgentType::Discovery => discovery(&specialist, turn, opening),
        AgentType::InboxCollector | AgentType::Coordinator => {
            inbox_collector(&specialist, turn, opening)
        }
    };
    tracing::debug!(
        agent = output.agent.as_str(),
        step = current.as_str(),
        step_completed = output.workflow_signals.step_completed,
        next_step = ?routing.next_step,
        "offline turn"
    );
    combine(current, &routing, output)
}

// ---------------------------------------------------------------- Coordinator

/// The offline Coordinator: the step's owner, unless the user asks to skip
/// ahead.
fn route(input: &AgentInput, turn: Turn) -> Routing {
    if input.agent_type != AgentType::Coordinator {
        return Routing::direct(input.agent_type);
    }
    let current = input.context.current_step;
    let mut next_step = None;
    if let (Turn::Message, Some(text)) = (turn, user_text(input)) {
        if current != Step::Greeting && renames(text) {
            // "Actually, call me Sam": the Greeter takes it, the step stays.
            return Routing::direct(AgentType::Greeter);
        }
        if wants_brain_dump(text) && step_index(current) < step_index(Step::BrainDump) {
            next_step = Some(Step::BrainDump);
        } else if wants_skip(text) && current != Step::Completed {
            next_step = Some(current.next());
        }
    }
    Routing {
        agent: next_step.unwrap_or(current).owner(),
        step_done: false,
        next_step,
    }
}

static BRAIN_DUMP_WISH: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:let'?s|let\s+us|go|jump|skip|move|get|start|begin)\s+(?:just\s+)?(?:on\s+|straight\s+|right\s+|ahead\s+)?(?:to\s+|do\s+|with\s+|into\s+|on\s+)?(?:the\s+|a\s+|my\s+)?(?:brain[\s-]?dump|inbox)\b").ok()
});

static RENAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:(?:actually|oh|btw|by\s+the\s+way)[,!.]?\s+)?(?:please\s+)?(?:you\s+can\s+)?call\s+me\s+\S").ok()
});

/// "Actually, call me Sam" (later in the onboarding).
fn renames(text: &str) -> bool {
    RENAME.as_ref().is_some_and(|r| r.is_match(text))
        && extract_name(text).is_some_and(|n| n.preferred.is_some())
}

fn wants_brain_dump(text: &str) -> bool {
    BRAIN_DUMP_WISH.as_ref().is_some_and(|r| r.is_match(text))
}

static SKIP_WISH: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:ok|okay|um|hmm|actually)\s+)?(?:(?:can|could)\s+(?:we|i)\s+|let'?s\s+|please\s+|i'?d\s+(?:like|rather)\s+(?:to\s+)?|i\s+want\s+to\s+)?(?:just\s+)?(?:skip|move\s+on|pass\s+on\s+this|next\s+step)(?:\s+(?:this|that|it|this\s+step|this\s+part|the\s+rest|the\s+questions|these\s+questions|for\s+now|please|ahead|to\s+the\s+next\s+step))*$").ok()
});

fn wants_skip(text: &str) -> bool {
    let plain = plain(text);
    SKIP_WISH.as_ref().is_some_and(|r| r.is_match(&plain))
        || [
            "no more questions",
            "enough questions",
            "skip the questions",
            "skip the rest",
        ]
        .iter()
        .any(|p| plain.contains(p))
}

/// Lower case, single spaces, no punctuation at the ends.
fn plain(text: &str) -> String {
    text.to_lowercase()
        .replace('’', "'")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_owned()
}

fn reply(agent: AgentType, message: impl Into<String>) -> AgentOutput {
    AgentOutput {
        message: message.into(),
        workflow_signals: WorkflowSignals::default(),
        memory_updates: Vec::new(),
        widget_request: None,
        agent,
    }
}

/// ", Alex" when the name is known.
fn comma_name(context: &Map<String, Value>) -> String {
    address(context)
        .map(|n| format!(", {n}"))
        .unwrap_or_default()
}

// ------------------------------------------------------------------- Greeter

const WELCOME: &str = "Hi, welcome! I'm your assistant here, and I'll help you get set up in a few minutes: a little about you, a little about how you work, and then we'll get everything on your mind into your inbox.\n\nTo start: what's your name?";

fn greeter(input: &AgentInput, turn: Turn, opening: bool) -> AgentOutput {
    let context = &input.context.workflow_context;
    let said = match turn {
        Turn::Message if !opening => user_text(input).and_then(extract_name),
        _ => None,
    };
    if let Some(said) = said {
        let name = said
            .name
            .or_else(|| text_at(context, "name").map(str::to_owned))
            .or_else(|| said.preferred.clone())
            .unwrap_or_default();
        let preferred = said
            .preferred
            .unwrap_or_else(|| name.split_whitespace().next().unwrap_or(&name).to_owned());
        return named(input, name, preferred);
    }
    if input.context.current_step == Step::Greeting
        && let Some(name) = text_at(context, "name")
    {
        // Already known (told earlier, or set by the app): nothing to ask.
        let preferred = address(context).unwrap_or(name).to_owned();
        return named(input, name.to_owned(), preferred);
    }
    let message = match turn {
        Turn::Opening => WELCOME.to_owned(),
        _ if opening => format!("Sure! {WELCOME}"),
        Turn::Return => "Welcome back! Let's pick up where we left off: what's your name?".into(),
        Turn::Nudge(_) => "Still there? No rush at all. Whenever you're ready, just tell me your name and we'll carry on.".into(),
        Turn::Message if user_text(input).is_some_and(is_greeting) => {
            "Hi there! What's your name?".into()
        }
        Turn::Message if user_text(input).is_some_and(|t| t.ends_with('?')) => {
            "Good question! I'm here to help you set up the app around how you work; it takes a few minutes. First, what's your name?".into()
        }
        Turn::Message => "Sorry, I didn't quite catch your name. What should I call you?".into(),
    };
    reply(AgentType::Greeter, message)
}

/// The Greeter's answer once it knows the name: in the greeting, leading
/// into Discovery's first question; later (a correction), carrying on with
/// Discovery's pending question.
fn named(input: &AgentInput, name: String, preferred: String) -> AgentOutput {
    let mut memory = vec![format!("Name is {name}")];
    if preferred != name {
        memory.push(format!("Prefers to be called {preferred}"));
    }
    let context = &input.context.workflow_context;
    let pending = missing_discovery(context).first().map(|k| question(k));
    let (message, widget_request) = match (input.context.current_step, pending) {
        (Step::Greeting, _) => (
            format!(
                "Nice to meet you, {preferred}! Next, a few quick questions about how you work, so I can set things up around you.\n\n{}",
                QUESTIONS[0].question
            ),
            None,
        ),
        (Step::Discovery, Some(pending)) => {
            let asked = asking(
                format!(
                    "Got it, I'll call you {preferred} from now on. {}",
                    pending.question
                ),
                pending,
            );
            (asked.message, asked.widget_request)
        }
        _ => (
            format!("Got it, I'll call you {preferred} from now on."),
            None,
        ),
    };
    let mut data = Map::new();
    data.insert("name".into(), json!(name));
    data.insert("preferred_name".into(), json!(preferred));
    AgentOutput {
        workflow_signals: WorkflowSignals {
            step_completed: true,
            completion_data: Some(data),
            next_step_override: None,
        },
        memory_updates: memory,
        widget_request,
        ..reply(AgentType::Greeter, message)
    }
}

/// A name the user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SaidName {
    name: Option<String>,
    preferred: Option<String>,
}

/// Words that follow "I'm" without being a name ("I'm fine"), and replies
/// that are not names ("Hello").
const NOT_NAMES: &[&str] = &[
    "actually",
    "oh",
    "btw",
    "um",
    "hmm",
    "wait",
    "anyway",
    "a",
    "an",
    "the",
    "and",
    "but",
    "or",
    "so",
    "just",
    "not",
    "very",
    "really",
    "pretty",
    "also",
    "still",
    "here",
    "there",
    "back",
    "fine",
    "good",
    "great",
    "ok",
    "okay",
    "well",
    "ready",
    "busy",
    "tired",
    "new",
    "excited",
    "happy",
    "sorry",
    "sure",
    "looking",
    "trying",
    "doing",
    "going",
    "hi",
    "hello",
    "hey",
    "yes",
    "no",
    "yeah",
    "nope",
    "thanks",
    "thank",
    "please",
    "what",
    "why",
    "how",
    "who",
    "skip",
    "next",
    "later",
    "in",
    "on",
    "at",
    "from",
    "with",
    "glad",
    "nice",
    "interested",
    "curious",
    "working",
    "married",
    "single",
    "currently",
];

fn name_word(word: &str, must_be_capitalised: bool) -> Option<String> {
    let word = word.trim_matches(|c: char| !c.is_alphabetic());
    let first = word.chars().next()?;
    let ok = word
        .chars()
        .all(|c| c.is_alphabetic() || c == '-' || c == '\'')
        && word.chars().count() <= 30
        && !NOT_NAMES.contains(&word.to_lowercase().as_str())
        && (!must_be_capitalised || first.is_uppercase());
    ok.then(|| capitalise_word(word))
}

fn capitalise_word(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Up to three name words from `words`: the first must be capitalised when
/// `strict`, the later ones always.
fn name_words<'a>(words: impl Iterator<Item = &'a str>, strict: bool) -> Option<String> {
    let mut names = Vec::new();
    for (i, raw) in words.take(3).enumerate() {
        let ends_clause = raw.ends_with([',', '.', '!', '?', ';', ':']);
        match name_word(raw, strict || i > 0) {
            Some(word) => names.push(word),
            None => break,
        }
        if ends_clause {
            break;
        }
    }
    (!names.is_empty()).then(|| names.join(" "))
}

static CALL_ME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:call\s+me|go\s+by|prefer|known\s+as)\s+(.+)$").ok());
static INTRO: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(my\s+name\s+is|my\s+name's|name's|i\s+am|i'm|i’m|im|it's|it’s|it\s+is|this\s+is)\s+(.+)$")
        .ok()
});
static HERE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^(?:(?i:hi|hello|hey))?[,!.]?\s*(\p{Lu}[\p{L}'-]+)\s+here\b").ok()
});

/// The name in a reply to "what's your name?".
fn extract_name(text: &str) -> Option<SaidName> {
    let preferred = CALL_ME
        .as_ref()
        .and_then(|r| r.captures(text))
        .and_then(|c| name_words(c[1].split_whitespace(), false))
        .map(|n| n.split_whitespace().next().unwrap_or(&n).to_owned());
    let introduced = INTRO.as_ref().and_then(|r| r.captures(text)).and_then(|c| {
        // "My name is alex" is unambiguous; "i'm tired" is not.
        let unambiguous = c[1].to_lowercase().contains("name");
        name_words(c[2].split_whitespace(), !unambiguous)
    });
    let here = HERE
        .as_ref()
        .and_then(|r| r.captures(text.trim()))
        .and_then(|c| name_word(&c[1], true));
    let bare = || {
        // "Alex", "Alexandra Smith", "Alexandra, but call me Alex".
        let first_clause = text
            .split([',', ';', '.', '!'])
            .next()
            .unwrap_or_default()
            .trim();
        let words: Vec<&str> = first_clause.split_whitespace().collect();
        if words.is_empty() || words.len() > 3 {
            return None;
        }
        let name = name_words(words.iter().copied(), true)?;
        (name.split_whitespace().count() == words.len()).then_some(name)
    };
    let name = introduced.or(here).or_else(bare);
    if name.is_none() && preferred.is_none() {
        return None;
    }
    Some(SaidName { name, preferred })
}

// ----------------------------------------------------------------- Discovery

/// One of Discovery's questions.
struct Question {
    key: &'static str,
    question: &'static str,
    ack: &'static str,
    quick_replies: &'static [&'static str],
}

const QUESTIONS: [Question; 5] = [
    Question {
        key: "role",
        question: "What's your role, and what kind of work fills most of your days?",
        ack: "Got it, thanks.",
        quick_replies: &[],
    },
    Question {
        key: "goals",
        question: "What are one or two things you'd most like to make progress on in the next few months?",
        ack: "Those are worth making room for.",
        quick_replies: &[],
    },
    Question {
        key: "work_patterns",
        question: "When do you usually do your best, most focused work?",
        ack: "Good to know.",
        quick_replies: &["Mornings", "Afternoons", "Evenings", "It varies"],
    },
    Question {
        key: "tools",
        question: "What do you use today to keep track of things: a notes app, a calendar, paper, something else?",
        ack: "Thanks, that helps.",
        quick_replies: &[],
    },
    Question {
        key: "pain_points",
        question: "Last one: what tends to get in your way, like things that slip through the cracks or drain your energy?",
        ack: "Thanks for being honest about that.",
        quick_replies: &[],
    },
];

const BRAIN_DUMP_INVITE: &str = "Now for the satisfying part: let's get everything that's on your mind out of your head. Tell me all of it, work or personal, big or small. One item per line works great, and mention due dates if there are any (like \"call the dentist tomorrow\").";

fn question(key: &str) -> &'static Question {
    QUESTIONS
        .iter()
        .find(|q| q.key == key)
        .unwrap_or(&QUESTIONS[0])
}

/// A message that asks `question`, with its quick replies.
fn asking(message: String, question: &Question) -> AgentOutput {
    let widget_request =
        (!question.quick_replies.is_empty()).then(|| WidgetRequest::QuickReplies {
            options: question
                .quick_replies
                .iter()
                .map(|o| (*o).to_owned())
                .collect(),
        });
    AgentOutput {
        widget_request,
        ..reply(AgentType::Discovery, message)
    }
}

fn discovery(input: &AgentInput, turn: Turn, opening: bool) -> AgentOutput {
    let context = &input.context.workflow_context;
    let missing = missing_discovery(context);
    let name = comma_name(context);
    let Some(pending) = missing.first().map(|k| question(k)) else {
        return discovery_done(context, Map::new(), Vec::new());
    };
    match turn {
        Turn::Message if !opening => {
            let answer = user_text(input).unwrap_or_default();
            if answer.ends_with('?') {
                // A question back ("why do you need this?") is not an answer.
                return asking(
                    format!(
                        "Good question! I ask so I can set things up around how you actually work, and you can skip anything you'd rather not share. {}",
                        pending.question
                    ),
                    pending,
                );
            }
            let value = if declines(answer) {
                json!("not shared")
            } else {
                value_for(pending.key, answer)
            };
            let memory = facts(pending.key, &value);
            let mut data = Map::new();
            data.insert(pending.key.into(), value);
            let Some(next) = missing.get(1).map(|k| question(k)) else {
                return discovery_done(context, data, memory);
            };
            let ack = if declines(answer) {
                "No problem, let's skip that one."
            } else {
                pending.ack
            };
            AgentOutput {
                workflow_signals: WorkflowSignals {
                    step_completed: false,
                    completion_data: Some(data),
                    next_step_override: None,
                },
                memory_updates: memory,
                ..asking(format!("{ack} {}", next.question), next)
            }
        }
        Turn::Return => asking(
            format!(
                "Welcome back{name}! Let's pick up where we left off. {}",
                pending.question
            ),
            pending,
        ),
        Turn::Nudge(_) => asking(
            format!(
                "Just checking in{name}, no rush. Whenever you're ready: {}",
                pending.question
            ),
            pending,
        ),
        Turn::Opening | Turn::Message => asking(
            format!(
                "Let's get to know how you work{name}: a few quick questions, one at a time.\n\n{}",
                pending.question
            ),
            pending,
        ),
    }
}

/// Discovery is complete: thank, and invite the brain dump.
fn discovery_done(
    context: &Map<String, Value>,
    data: Map<String, Value>,
    memory: Vec<String>,
) -> AgentOutput {
    let message = format!(
        "Thanks{}! That gives me a good picture of how you work.\n\n{BRAIN_DUMP_INVITE}",
        comma_name(context)
    );
    AgentOutput {
        workflow_signals: WorkflowSignals {
            step_completed: true,
            completion_data: (!data.is_empty()).then_some(data),
            next_step_override: None,
        },
        memory_updates: memory,
        ..reply(AgentType::Discovery, message)
    }
}

/// "I'd rather not say", "pass", "skip this one".
fn declines(answer: &str) -> bool {
    let plain = plain(answer);
    matches!(
        plain.as_str(),
        "pass"
            | "skip"
            | "skip this one"
            | "skip this question"
            | "next question"
            | "n/a"
            | "na"
            | "none of your business"
            | "no idea"
            | "not sure"
            | "i don't know"
            | "dunno"
    ) || plain.starts_with("i'd rather not")
        || plain.starts_with("rather not")
        || plain.starts_with("prefer not")
        || plain.starts_with("i prefer not")
}

static ROLE_PREFIX: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:well,?\s+|so,?\s+)?(?:i'?m|i\s+am|i\s+work\s+as|i\s+work\s+in|my\s+role\s+is|my\s+job\s+is|i'?m\s+currently|currently)\s+(?:currently\s+|working\s+as\s+)?(?:an?\s+|the\s+)?").ok()
});
static LIST_PREFIX: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:(?:i|we)\s+(?:mostly\s+|mainly\s+|usually\s+)?(?:use|want\s+to|would\s+like\s+to|'d\s+like\s+to|hope\s+to|need\s+to|struggle\s+with)\s+|mostly\s+|mainly\s+|just\s+|to\s+)").ok()
});

/// The value stored for an answer to `key`.
fn value_for(key: &str, answer: &str) -> Value {
    let answer = answer.trim().trim_end_matches(['.', '!']);
    match key {
        "role" => {
            let role = ROLE_PREFIX
                .as_ref()
                .map_or(answer.into(), |r| r.replace(answer, ""));
            let role = role.trim();
            json!(if role.is_empty() { answer } else { role })
        }
        "work_patterns" => {
            let lower = answer.to_lowercase();
            let found: Vec<&str> = [
                ("morning", "mornings"),
                ("afternoon", "afternoons"),
                ("evening", "evenings"),
                ("night", "evenings"),
                ("vary", "it varies"),
                ("varies", "it varies"),
                ("depends", "it varies"),
            ]
            .iter()
            .filter(|(word, _)| lower.contains(word))
            .map(|(_, value)| *value)
            .collect();
            match found.as_slice() {
                [one] => json!(one),
                [one, two] if one == two => json!(one),
                _ => json!(answer),
            }
        }
        _ => {
            let items: Vec<String> = split_list(answer)
                .into_iter()
                .map(|item| {
                    LIST_PREFIX
                        .as_ref()
                        .map_or(item.clone(), |r| r.replace(&item, "").into_owned())
                })
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect();
            json!(items)
        }
    }
}

/// "Notion, Google Calendar and paper" → three.
fn split_list(answer: &str) -> Vec<String> {
    static SEPARATORS: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r"(?i)\s*(?:[,;\n]|\s+and\s+|\s+&\s+|\s+plus\s+)\s*(?:and\s+)?").ok()
    });
    let Some(separators) = SEPARATORS.as_ref() else {
        return vec![answer.to_owned()];
    };
    separators
        .split(answer)
        .map(|s| {
            s.trim()
                .trim_start_matches(['-', '*', '•'])
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Facts worth remembering from an answer.
fn facts(key: &str, value: &Value) -> Vec<String> {
    if value.as_str() == Some("not shared") {
        return Vec::new();
    }
    let list = || -> Vec<String> {
        value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    match (key, value.as_str()) {
        ("role", Some(role)) => vec![format!("Role: {role}")],
        ("work_patterns", Some("it varies")) => {
            vec!["Their best focus time varies from day to day".into()]
        }
        ("work_patterns", Some(w @ ("mornings" | "afternoons" | "evenings"))) => {
            vec![format!("Does their best focused work in the {w}")]
        }
        ("work_patterns", Some(w)) => vec![format!("Work pattern: {w}")],
        ("goals", _) => list().into_iter().map(|g| format!("Goal: {g}")).collect(),
        ("tools", _) => list().into_iter().map(|t| format!("Uses {t}")).collect(),
        ("pain_points", _) => list()
            .into_iter()
            .map(|p| format!("Struggles with: {p}"))
            .collect(),
        _ => Vec::new(),
    }
}

// ----------------------------------------------------------- Inbox Collector

fn inbox_collector(input: &AgentInput, turn: Turn, opening: bool) -> AgentOutput {
    let context = &input.context.workflow_context;
    let name = comma_name(context);
    if input.context.current_step == Step::Completed {
        return wrap_up(input, turn);
    }
    let today = dates::today(input.context.today.as_deref());
    let draft = items_at(context, DRAFT_INBOX_ITEMS);
    let text = match turn {
        Turn::Message if !opening => user_text(input).unwrap_or_default(),
        Turn::Nudge(_) if !draft.is_empty() => {
            return confirming(
                draft,
                "Just checking in, no rush. Here's the list from before:",
                today,
            );
        }
        Turn::Nudge(_) => {
            return reply(
                AgentType::InboxCollector,
                format!(
                    "Just checking in{name}, no rush. Whenever you're ready, list whatever's on your mind and I'll sort it into your inbox. A few words per item is plenty."
                ),
            );
        }
        Turn::Return if !draft.is_empty() => {
            return confirming(
                draft,
                &format!("Welcome back{name}! Here's the list we were working on:"),
                today,
            );
        }
        Turn::Return => {
            return reply(
                AgentType::InboxCollector,
                format!("Welcome back{name}! {BRAIN_DUMP_INVITE}"),
            );
        }
        Turn::Opening | Turn::Message => {
            let lead = if opening { "Sure! " } else { "" };
            return reply(
                AgentType::InboxCollector,
                format!("{lead}{BRAIN_DUMP_INVITE}"),
            );
        }
    };
    // The list being confirmed: the draft, or (when the workflow did not
    // keep it) the brain dump the last message asked to confirm.
    let shown = if draft.is_empty() {
        shown_in_history(input, today)
    } else {
        draft.clone()
    };
    if !shown.is_empty() && is_confirmation(text) {
        return confirmed(context, shown);
    }
    if !draft.is_empty() {
        if let Some(edited) = edit(&draft, text, today) {
            return match edited {
                Some(items) if items.is_empty() => AgentOutput {
                    workflow_signals: keep_draft(Vec::new()),
                    ..reply(
                        AgentType::InboxCollector,
                        "That empties the list. What else is on your mind?",
                    )
                },
                Some(items) => confirming(items, "Updated. Here's the list now:", today),
                None => confirming(
                    draft,
                    "I couldn't tell which item you meant. Here's the list, numbered:",
                    today,
                ),
            };
        }
        if matches!(
            plain(text).as_str(),
            "start over" | "restart" | "start again"
        ) {
            return AgentOutput {
                workflow_signals: keep_draft(Vec::new()),
                ..reply(
                    AgentType::InboxCollector,
                    format!("No problem, let's start over. {BRAIN_DUMP_INVITE}"),
                )
            };
        }
        if matches!(
            plain(text).as_str(),
            "no" | "nope" | "not really" | "not quite" | "wrong"
        ) {
            return reply(
                AgentType::InboxCollector,
                "No problem. What should I change? You can say things like \"remove the second one\" or \"add call mom on friday\".",
            );
        }
    } else if nothing_to_add(text) {
        return confirmed(context, Vec::new());
    } else if !text.contains('\n') && text.ends_with('?') && sentences(text).len() == 1 {
        // A question ("what should I write?"), not a brain dump.
        return reply(
            AgentType::InboxCollector,
            format!(
                "Anything that's taking up space in your head works: tasks, errands, ideas, things you keep meaning to do. {}",
                "For example: \"call the dentist tomorrow\", \"renew passport\", \"plan Sam's birthday #family\". Just list them, one per line."
            ),
        );
    }
    let found = extract_items(text, today);
    if found.is_empty() {
        let message = if draft.is_empty() {
            "I didn't catch any tasks in that. Just list whatever's on your mind, one item per line, and I'll sort it into your inbox.".to_owned()
        } else {
            "Sorry, I didn't follow. Say \"yes\" and I'll add these to your inbox, or tell me what to change.".to_owned()
        };
        let widget_request =
            (!draft.is_empty()).then_some(WidgetRequest::ItemConfirmation { items: draft });
        return AgentOutput {
            widget_request,
            ..reply(AgentType::InboxCollector, message)
        };
    }
    if draft.is_empty() {
        confirming(found, "Here's what I caught:", today)
    } else {
        let mut items = draft;
        for item in found {
            if !items
                .iter()
                .any(|i| i.title.eq_ignore_ascii_case(&item.title))
            {
                items.push(item);
            }
        }
        confirming(items, "Added. Here's the full list:", today)
    }
}

/// The items of the user's message that the assistant's last message
/// showed for confirmation.
fn shown_in_history(input: &AgentInput, today: Date) -> Vec<InboxItem> {
    let history = &input.context.conversation_history;
    match history.as_slice() {
        [.., dump, asked]
            if dump.role == Speaker::User
                && asked.role == Speaker::Assistant
                && asked.content.contains(CONFIRM_QUESTION) =>
        {
            extract_items(&dump.content, today)
        }
        _ => Vec::new(),
    }
}

const CONFIRM_QUESTION: &str = "Does this look right?";

/// Keeps `items` as the draft in the workflow's context.
fn keep_draft(items: Vec<InboxItem>) -> WorkflowSignals {
    let mut data = Map::new();
    data.insert(DRAFT_INBOX_ITEMS.into(), json!(items));
    WorkflowSignals {
        step_completed: false,
        completion_data: Some(data),
        next_step_override: None,
    }
}

/// Shows `items` and asks to confirm them.
fn confirming(items: Vec<InboxItem>, lead: &str, today: Date) -> AgentOutput {
    let mut message = String::from(lead);
    for (i, item) in items.iter().enumerate() {
        message.push_str(&format!("\n{}. {}", i + 1, item.title));
        if let Some(due) = item.due_date.as_deref().and_then(dates::parse_iso) {
            message.push_str(&format!(" (due {})", dates::describe(due, today)));
        }
        for tag in &item.tags {
            message.push_str(&format!(" #{tag}"));
        }
    }
    message.push_str("\n\n");
    message.push_str(CONFIRM_QUESTION);
    message.push_str(" Say \"yes\" and I'll add them to your inbox, or tell me what to change.");
    AgentOutput {
        workflow_signals: keep_draft(items.clone()),
        widget_request: Some(WidgetRequest::ItemConfirmation { items }),
        ..reply(AgentType::InboxCollector, message)
    }
}

/// The user confirmed: the items go to the inbox, onboarding is done.
fn confirmed(context: &Map<String, Value>, items: Vec<InboxItem>) -> AgentOutput {
    let name = comma_name(context);
    let message = match items.len() {
        0 => format!(
            "A clear head, lovely. That's onboarding done{name}: you're all set. Whenever something comes up, drop it into your inbox and sort it later."
        ),
        1 => format!(
            "Done: 1 item is in your inbox. That's onboarding finished{name}, you're all set! Whenever something new comes up, drop it into your inbox and sort it later."
        ),
        n => format!(
            "Done: {n} items are in your inbox. That's onboarding finished{name}, you're all set! Whenever something new comes up, drop it into your inbox and sort it later."
        ),
    };
    let mut data = Map::new();
    data.insert(INBOX_ITEMS.into(), json!(items));
    data.insert(DRAFT_INBOX_ITEMS.into(), json!([]));
    AgentOutput {
        workflow_signals: WorkflowSignals {
            step_completed: true,
            completion_data: Some(data),
            next_step_override: None,
        },
        ..reply(AgentType::InboxCollector, message)
    }
}

/// After onboarding: a friendly wrap-up.
fn wrap_up(input: &AgentInput, turn: Turn) -> AgentOutput {
    let context = &input.context.workflow_context;
    let name = comma_name(context);
    let count = items_at(context, INBOX_ITEMS).len();
    let inbox = match count {
        0 => "Your inbox is ready for whatever comes up.".to_owned(),
        1 => "Your inbox has the 1 item from our chat.".to_owned(),
        n => format!("Your inbox has the {n} items from our chat."),
    };
    let hello = match turn {
        Turn::Return | Turn::Opening => format!("Welcome back{name}! You're all set up."),
        _ => format!("You're all set{name}! Onboarding is done."),
    };
    reply(
        AgentType::InboxCollector,
        format!(
            "{hello} {inbox} Add new things there whenever they come up, and sort them into tasks or goals when you have a moment."
        ),
    )
}

/// "Hi", "hello!", "hey there".
fn is_greeting(text: &str) -> bool {
    matches!(
        plain(text).as_str(),
        "hi" | "hello"
            | "hey"
            | "hi there"
            | "hello there"
            | "hey there"
            | "hiya"
            | "yo"
            | "good morning"
            | "good afternoon"
            | "good evening"
    )
}

fn is_confirmation(text: &str) -> bool {
    const ANCHORS: &[&str] = &[
        "yes",
        "yep",
        "yeah",
        "yup",
        "y",
        "ok",
        "okay",
        "sure",
        "confirm",
        "confirmed",
        "done",
        "correct",
        "perfect",
        "good",
        "great",
        "right",
        "lgtm",
        "fine",
        "save",
        "exactly",
        "👍",
    ];
    const FILLERS: &[&str] = &[
        "looks",
        "look",
        "sounds",
        "that's",
        "thats",
        "it",
        "all",
        "them",
        "go",
        "ahead",
        "please",
        "thanks",
        "thank",
        "you",
        "add",
        "is",
        "very",
        "that",
        "to",
        "me",
        "absolutely",
        "sir",
    ];
    let plain = plain(text);
    if matches!(
        plain.as_str(),
        "that's it" | "that's all" | "thats it" | "thats all" | "add them" | "go ahead"
    ) {
        return true;
    }
    let words: Vec<String> = plain
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| c.is_ascii_punctuation() && c != '\'')
                .to_owned()
        })
        .filter(|w| !w.is_empty())
        .collect();
    !words.is_empty()
        && words.iter().any(|w| ANCHORS.contains(&w.as_str()))
        && words
            .iter()
            .all(|w| ANCHORS.contains(&w.as_str()) || FILLERS.contains(&w.as_str()))
}

fn nothing_to_add(text: &str) -> bool {
    matches!(
        plain(text).as_str(),
        "nothing"
            | "nothing really"
            | "nothing right now"
            | "nothing at the moment"
            | "none"
            | "no tasks"
            | "nothing on my mind"
            | "i have nothing"
            | "i've got nothing"
            | "all clear"
            | "my mind is clear"
    )
}

static REMOVE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:(?:yes|yeah|ok|okay|sure|looks\s+good|great)[,!.]?\s+)?(?:but\s+)?(?:(?:please|can\s+you|could\s+you)\s+)?(?:remove|delete|drop|cross\s+off|take\s+out|scratch)\s+(?:the\s+)?(?:item\s+)?(?:#|number\s+|no\.?\s*)?(.+?)(?:\s+one|\s+item)?(?:\s+please)?[.!]?$").ok()
});
static ADD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:(?:yes|yeah|ok|okay|sure|looks\s+good|great)[,!.]?\s+)?(?:but\s+)?(?:(?:please|can\s+you|could\s+you)\s+)?(?:also\s+)?(?:add|include|plus)\s*:?\s+(.+)$").ok()
});

/// An edit of the draft: `Some(Some(items))` edited, `Some(None)` an edit
/// whose target is unclear, `None` not an edit.
fn edit(draft: &[InboxItem], text: &str, today: Date) -> Option<Option<Vec<InboxItem>>> {
    if let Some(caps) = REMOVE.as_ref().and_then(|r| r.captures(text.trim())) {
        let target = caps[1].trim().to_lowercase();
        let ordinal = match target.as_str() {
            "first" | "1st" => Some(0),
            "second" | "2nd" => Some(1),
            "third" | "3rd" => Some(2),
            "fourth" | "4th" => Some(3),
            "fifth" | "5th" => Some(4),
            "sixth" | "6th" => Some(5),
            "seventh" | "7th" => Some(6),
            "eighth" | "8th" => Some(7),
            "ninth" | "9th" => Some(8),
            "tenth" | "10th" => Some(9),
            "last" => draft.len().checked_sub(1),
            digits => digits.parse::<usize>().ok().and_then(|n| n.checked_sub(1)),
        };
        let index = ordinal.filter(|i| *i < draft.len()).or_else(|| {
            let matching: Vec<usize> = (0..draft.len())
                .filter(|i| target.len() >= 3 && draft[*i].title.to_lowercase().contains(&target))
                .collect();
            (matching.len() == 1).then(|| matching[0])
        });
        return Some(index.map(|index| {
            let mut items = draft.to_vec();
            items.remove(index);
            items
        }));
    }
    if let Some(caps) = ADD.as_ref().and_then(|r| r.captures(text.trim())) {
        let added = extract_items(&caps[1], today);
        if added.is_empty() {
            return Some(None);
        }
        let mut items = draft.to_vec();
        items.extend(added);
        return Some(Some(items));
    }
    None
}

// ------------------------------------------------------ brain dump → items

/// Verbs that start a new task: "buy milk and call mom" is two.
const ACTION_VERBS: &[&str] = &[
    "apply", "ask", "back", "book", "bring", "buy", "call", "cancel", "check", "clean", "clear",
    "collect", "cook", "draft", "email", "e-mail", "file", "find", "finish", "fix", "follow",
    "get", "go", "hire", "learn", "make", "meet", "message", "move", "order", "organise",
    "organize", "pay", "pick", "ping", "plan", "practice", "practise", "prep", "prepare", "print",
    "read", "register", "remind", "renew", "reply", "research", "respond", "return", "review",
    "schedule", "send", "set", "ship", "sign", "sort", "start", "study", "submit", "take", "tell",
    "text", "update", "visit", "walk", "wash", "water", "write",
];

static BULLET: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\s*(?:[-*•–·]|\d{1,2}[.)]|\[\s?[xX]?\s?\])\s*").ok());
static FILLER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:(?:and|also|oh|plus|then|so|maybe|um|uh|well|ok|okay)\b[,\s]*)*(?:(?:i|we)\s+)?(?:also\s+)?(?:really\s+)?(?:need\s+to|have\s+to|'ve\s+got\s+to|’ve\s+got\s+to|got\s+to|gotta|should|must|want\s+to|'d\s+like\s+to|would\s+like\s+to|don'?t\s+forget\s+to|remember\s+to|must\s+remember\s+to)\s+").ok()
});
static LEADING_CONNECTOR: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)^(?:(?:and|also|oh|plus|then|so|um|uh|well)\b[,\s]*)+").ok());
static TAG: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"#([\p{L}\p{N}_][\p{L}\p{N}_-]*)").ok());
static TRAILING_CONNECTOR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:[\s,;:.!?-]+|\s+(?:and|by|on|due|before|until|for|at)\b)+$").ok()
});

/// Not tasks: what people say around a list.
const CHATTER: &[&str] = &[
    "that's it",
    "that's all",
    "thats it",
    "thats all",
    "ok",
    "okay",
    "hmm",
    "um",
    "thanks",
    "thank you",
    "here goes",
    "let me think",
    "so",
    "well",
    "where do i start",
    "let's see",
    "lets see",
    "sure",
    "ok here goes",
    "here you go",
    "here's my list",
    "yes",
];

/// The inbox items in a brain dump, seen from `today` (for due dates).
pub(super) fn extract_items(text: &str, today: Date) -> Vec<InboxItem> {
    let mut items: Vec<InboxItem> = Vec::new();
    for piece in pieces(text) {
        let Some(item) = item_from(&piece, today) else {
            continue;
        };
        if !items
            .iter()
            .any(|i| i.title.eq_ignore_ascii_case(&item.title))
        {
            items.push(item);
        }
    }
    items
}

/// Lines, bullets, semicolons, sentences, comma lists and "and <verb>".
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut line = line.trim();
        while let Some(found) = BULLET.as_ref().and_then(|r| r.find(line)) {
            if found.end() == 0 {
                break;
            }
            line = line[found.end()..].trim();
        }
        // "Here's my list: a, b" → "a, b"; a header line ("Work:") goes.
        if let Some((head, rest)) = line.split_once(':')
            && head.split_whitespace().count() <= 6
            && !head.contains('#')
            && !starts_with_verb(head)
            && !rest.trim_start().starts_with(|c: char| c.is_ascii_digit())
        {
            line = rest.trim();
        }
        for clause in line.split(';') {
            for sentence in sentences(clause) {
                for part in comma_parts(&sentence) {
                    out.extend(and_parts(&part));
                }
            }
        }
    }
    out
}

/// Splits at `.`, `!` or `?` followed by a space.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_some_and(|n| n.is_whitespace()) {
            out.push(std::mem::take(&mut current));
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The first word after fillers, lower case.
fn first_word(text: &str) -> String {
    let stripped = strip(&LEADING_CONNECTOR, &strip(&FILLER, text.trim()));
    stripped
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '-')
        .to_lowercase()
}

/// `text` without what `pattern` matches first.
fn strip(pattern: &LazyLock<Option<Regex>>, text: &str) -> String {
    match pattern.as_ref() {
        Some(r) => r.replace(text, "").into_owned(),
        None => text.to_owned(),
    }
}

fn starts_with_verb(text: &str) -> bool {
    ACTION_VERBS.contains(&first_word(text).as_str())
}

/// A comma list: split where a new task starts ("call mom, buy milk"), or
/// everywhere when it is a list of nouns ("dentist, taxes, groceries"), but
/// not inside one task's objects ("buy milk, eggs and bread") or a date
/// ("dec 5, 2026").
fn comma_parts(text: &str) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    for chunk in text.split(',') {
        let year = chunk
            .trim_start()
            .chars()
            .take(4)
            .filter(char::is_ascii_digit)
            .count()
            == 4;
        match chunks.last_mut() {
            Some(last) if year => {
                last.push(',');
                last.push_str(chunk);
            }
            _ => chunks.push(chunk.to_owned()),
        }
    }
    if chunks.len() < 2 {
        return chunks;
    }
    let later_verbs = chunks[1..].iter().any(|c| starts_with_verb(c));
    if !later_verbs && starts_with_verb(&chunks[0]) {
        return vec![chunks.join(",")];
    }
    if !later_verbs {
        return chunks;
    }
    let mut out: Vec<String> = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        match out.last_mut() {
            Some(last) if i > 0 && !starts_with_verb(&chunk) => {
                last.push(',');
                last.push_str(&chunk);
            }
            _ => out.push(chunk),
        }
    }
    out
}

/// "buy milk and call mom" → two; "buy bread and butter" → one.
fn and_parts(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        let connector = matches!(
            word.to_lowercase().as_str(),
            "and" | "then" | "also" | "plus"
        );
        if connector && !current.is_empty() {
            // "and then call", "and also email": look past the connectors.
            let mut j = i + 1;
            while j < words.len()
                && matches!(
                    words[j].to_lowercase().as_str(),
                    "and" | "then" | "also" | "plus"
                )
            {
                j += 1;
            }
            if j < words.len() && starts_with_verb(words[j]) {
                out.push(current.join(" "));
                current.clear();
                i = j;
                continue;
            }
        }
        current.push(word);
        i += 1;
    }
    if !current.is_empty() {
        out.push(current.join(" "));
    }
    out
}

/// One item from one piece: tags, due date, a clean title.
fn item_from(piece: &str, today: Date) -> Option<InboxItem> {
    let mut text = piece.trim().to_owned();
    if CHATTER.contains(&plain(&text).as_str()) {
        return None;
    }
    let mut tags: Vec<String> = Vec::new();
    if let Some(tag) = TAG.as_ref() {
        for caps in tag.captures_iter(&text) {
            let name = caps[1].to_lowercase();
            if !tags.contains(&name) {
                tags.push(name);
            }
        }
        text = tag.replace_all(&text, "").into_owned();
    }
    let mut due_date = None;
    if let Some(found) = dates::find_date(&text, today) {
        due_date = Some(dates::format_iso(found.date));
        text = format!("{} {}", &text[..found.start], &text[found.end..]);
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = strip(&FILLER, &text);
    let text = strip(&LEADING_CONNECTOR, &text);
    let text = strip(&TRAILING_CONNECTOR, &text);
    let title = capitalise_word(text.trim());
    if title.chars().filter(|c| c.is_alphabetic()).count() < 2
        || CHATTER.contains(&plain(&title).as_str())
    {
        return None;
    }
    Some(InboxItem {
        title,
        due_date,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        dates::parse_iso("2026-11-25").unwrap_or(Date::MIN)
    }

    fn titles(text: &str) -> Vec<String> {
        extract_items(text, today())
            .into_iter()
            .map(|i| i.title)
            .collect()
    }

    #[test]
    fn names_from_replies() {
        let name = |text: &str| extract_name(text).map(|n| (n.name, n.preferred));
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(name("My name is alex"), Some((some("Alex"), None)));
        assert_eq!(
            name("Hi! I'm Alex Smith."),
            Some((some("Alex Smith"), None))
        );
        assert_eq!(
            name("Alexandra, but call me Alex"),
            Some((some("Alexandra"), some("Alex")))
        );
        assert_eq!(name("call me Al"), Some((None, some("Al"))));
        assert_eq!(name("Sam here"), Some((some("Sam"), None)));
        assert_eq!(name("Priya"), Some((some("Priya"), None)));
        assert_eq!(name("i'm fine thanks"), None);
        assert_eq!(name("Hello"), None);
        assert_eq!(name("what is this app?"), None);
    }

    #[test]
    fn skip_wishes() {
        assert!(wants_skip("skip"));
        assert!(wants_skip("Can we skip this?"));
        assert!(wants_skip("let's move on"));
        assert!(wants_skip("no more questions please"));
        assert!(!wants_skip("skip the gym on friday"));
        assert!(wants_brain_dump("let's do the brain dump"));
        assert!(wants_brain_dump("can we skip to the brain dump?"));
        assert!(wants_brain_dump("Let's just move on to the inbox"));
        assert!(!wants_brain_dump("I never do a brain dump"));
        assert!(!wants_brain_dump("I get overwhelmed by my inbox"));
    }

    #[test]
    fn brain_dumps_split_into_tasks() {
        assert_eq!(
            titles("buy milk and call mom; email Sarah. Book flights!"),
            ["Buy milk", "Call mom", "Email Sarah", "Book flights"]
        );
        assert_eq!(titles("buy bread and butter"), ["Buy bread and butter"]);
        assert_eq!(
            titles("Buy milk, eggs and bread"),
            ["Buy milk, eggs and bread"]
        );
        assert_eq!(
            titles("dentist, taxes, groceries"),
            ["Dentist", "Taxes", "Groceries"]
        );
        assert_eq!(
            titles(
                "Here's my list:\n- I need to renew my passport\n* [ ] water the plants\n1. that's it"
            ),
            ["Renew my passport", "Water the plants"]
        );
        assert_eq!(titles("review today's notes"), ["Review today's notes"]);
    }

    #[test]
    fn items_carry_due_dates_and_tags() {
        let items = extract_items(
            "call the dentist tomorrow\nFinish the report by next monday #work #Q4",
            today(),
        );
        assert_eq!(
            items,
            [
                InboxItem {
                    title: "Call the dentist".into(),
                    due_date: Some("2026-11-26".into()),
                    tags: vec![],
                },
                InboxItem {
                    title: "Finish the report".into(),
                    due_date: Some("2026-11-30".into()),
                    tags: vec!["work".into(), "q4".into()],
                },
            ]
        );
    }

    #[test]
    fn confirmations() {
        for yes in [
            "yes",
            "Looks good!",
            "confirm",
            "done",
            "yes please",
            "that's it",
            "ok 👍",
        ] {
            assert!(is_confirmation(yes), "{yes}");
        }
        for no in ["yes but remove the second one", "no", "call mom", ""] {
            assert!(!is_confirmation(no), "{no}");
        }
    }

    #[test]
    fn edits_of_the_draft() {
        let draft = extract_items("call mom\nbuy milk\nbook flights", today());
        let after = |text: &str| {
            edit(&draft, text, today())
                .flatten()
                .map(|items| items.into_iter().map(|i| i.title).collect::<Vec<_>>())
        };
        assert_eq!(
            after("remove the second one"),
            Some(vec!["Call mom".into(), "Book flights".into()])
        );
        assert_eq!(
            after("delete 3"),
            Some(vec!["Call mom".into(), "Buy milk".into()])
        );
        assert_eq!(
            after("remove milk"),
            Some(vec!["Call mom".into(), "Book flights".into()])
        );
        assert_eq!(after("add pay rent by friday").map(|t| t.len()), Some(4));
        assert_eq!(edit(&draft, "sounds great", today()), None);
    }
}
