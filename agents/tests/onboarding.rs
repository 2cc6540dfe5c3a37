//! The onboarding agents: a whole onboarding with the offline agents, driven
//! the way the workflow drives it, and the LLM agents against the fake
//! OpenAI-compatible server.

use std::sync::Arc;

use floe_agents::llm::ledger::Recorder;
use floe_agents::llm::openai::OpenAiClient;
use floe_agents::onboarding::contract::{
    AgentContext, AgentInput, AgentOutput, AgentType, ChatTurn, InboxItem, Speaker, Step,
    TriggerType, WidgetRequest,
};
use floe_agents::onboarding::dates::{format_iso, parse_iso, resolve_date};
use floe_agents::onboarding::{AgentOptions, offline_turn, run_turn};
use floe_agents::settings::OutputMode;
use floe_agents::testing::{FakeLlm, Recorded, Reply};
use serde_json::{Map, Value, json};

/// A Wednesday.
const TODAY: &str = "2026-11-25";

/// The workflow's side of the conversation: its step, its context, the
/// history and the memory, updated from each output the way the workflow
/// applies it.
#[derive(Debug, Clone, Default)]
struct Onboarding {
    step: Step,
    context: Map<String, Value>,
    history: Vec<ChatTurn>,
    memory: Vec<String>,
    outputs: Vec<AgentOutput>,
}

impl Onboarding {
    fn input(&self, message: Option<&str>) -> AgentInput {
        AgentInput {
            agent_type: AgentType::Coordinator,
            user_message: message.map(str::to_owned),
            context: AgentContext {
                user_id: "user-1".into(),
                workflow_context: self.context.clone(),
                conversation_history: self.history.clone(),
                user_memory: self.memory.clone(),
                trigger_type: if message.is_some() {
                    TriggerType::UserMessage
                } else {
                    TriggerType::ProactiveInitiation
                },
                current_step: self.step,
                today: Some(TODAY.into()),
            },
        }
    }

    /// One offline turn, applied.
    fn say(&mut self, message: Option<&str>) -> AgentOutput {
        let output = offline_turn(&self.input(message));
        self.apply(message, &output);
        output
    }

    fn apply(&mut self, message: Option<&str>, output: &AgentOutput) {
        let signals = &output.workflow_signals;
        if let Some(data) = &signals.completion_data {
            for (key, value) in data {
                self.context.insert(key.clone(), value.clone());
            }
        }
        if let Some(step) = signals.next_step_override {
            self.step = step;
        } else if signals.step_completed {
            self.step = self.step.next();
        }
        if let Some(message) = message {
            self.history.push(ChatTurn {
                role: Speaker::User,
                content: message.into(),
            });
        }
        self.history.push(ChatTurn {
            role: Speaker::Assistant,
            content: output.message.clone(),
        });
        self.memory.extend(output.memory_updates.iter().cloned());
        self.outputs.push(output.clone());
    }
}

fn item(title: &str, due_date: Option<&str>, tags: &[&str]) -> InboxItem {
    InboxItem {
        title: title.into(),
        due_date: due_date.map(str::to_owned),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

const BRAIN_DUMP: &str = "Call the dentist tomorrow\n\
- Finish the quarterly report by friday #work\n\
- buy a birthday present for Sam; renew passport on 2026-12-01";

/// The whole onboarding, from the first hello to the confirmed inbox.
fn full_onboarding() -> Onboarding {
    let mut o = Onboarding::default();

    let hello = o.say(None);
    assert_eq!(hello.agent, AgentType::Greeter);
    assert!(hello.message.contains("name"), "{}", hello.message);
    assert!(!hello.workflow_signals.step_completed);
    assert_eq!(o.step, Step::Greeting);

    let named = o.say(Some("Hi! I'm Alexandra, but please call me Alex"));
    assert_eq!(named.agent, AgentType::Greeter);
    assert_eq!(o.step, Step::Discovery);
    assert_eq!(o.context["name"], "Alexandra");
    assert_eq!(o.context["preferred_name"], "Alex");
    assert_eq!(
        named.memory_updates,
        ["Name is Alexandra", "Prefers to be called Alex"]
    );
    assert!(named.message.contains("Alex") && named.message.contains("role"));

    // A correction mid-discovery goes to the Greeter; discovery carries on.
    let mut renamed = o.clone();
    let fixed = renamed.say(Some("Actually, call me Lexi"));
    assert_eq!(fixed.agent, AgentType::Greeter);
    assert_eq!(renamed.step, Step::Discovery);
    assert_eq!(renamed.context["preferred_name"], "Lexi");
    assert_eq!(renamed.context["name"], "Alexandra");
    assert!(fixed.message.contains("Lexi") && fixed.message.contains("role"));

    let role = o.say(Some("I'm a product manager at a fintech startup"));
    assert_eq!(role.agent, AgentType::Discovery);
    assert_eq!(o.context["role"], "product manager at a fintech startup");

    // Gone quiet: the check-in asks the pending question again, and changes
    // nothing.
    let mut quiet = o.clone();
    quiet.context.insert("nudge".into(), json!(true));
    let nudge = offline_turn(&quiet.input(None));
    assert_eq!(nudge.agent, AgentType::Discovery);
    assert!(
        nudge.message.starts_with("Just checking in, Alex"),
        "{}",
        nudge.message
    );
    assert!(
        nudge.message.contains("next few months"),
        "{}",
        nudge.message
    );
    assert_eq!(nudge.workflow_signals, Default::default());

    o.say(Some("Ship the mobile app and hire two engineers"));
    assert_eq!(
        o.context["goals"],
        json!(["Ship the mobile app", "hire two engineers"])
    );
    let asked = o.outputs.last().and_then(|out| out.widget_request.clone());
    assert_eq!(
        asked,
        Some(WidgetRequest::QuickReplies {
            options: vec![
                "Mornings".into(),
                "Afternoons".into(),
                "Evenings".into(),
                "It varies".into()
            ]
        })
    );

    o.say(Some("Mornings"));
    assert_eq!(o.context["work_patterns"], "mornings");
    o.say(Some("Notion, Google Calendar and a paper notebook"));
    assert_eq!(
        o.context["tools"],
        json!(["Notion", "Google Calendar", "a paper notebook"])
    );
    assert_eq!(o.step, Step::Discovery);

    let last = o.say(Some("Too many meetings and I forget follow-ups"));
    assert!(last.workflow_signals.step_completed);
    assert_eq!(o.step, Step::BrainDump);
    assert_eq!(
        o.context["pain_points"],
        json!(["Too many meetings", "I forget follow-ups"])
    );
    assert!(
        last.message.contains("everything that's on your mind"),
        "{}",
        last.message
    );

    let shown = o.say(Some(BRAIN_DUMP));
    assert_eq!(shown.agent, AgentType::InboxCollector);
    assert!(!shown.workflow_signals.step_completed);
    let expected = vec![
        item("Call the dentist", Some("2026-11-26"), &[]),
        item("Finish the quarterly report", Some("2026-11-27"), &["work"]),
        item("Buy a birthday present for Sam", None, &[]),
        item("Renew passport", Some("2026-12-01"), &[]),
    ];
    assert_eq!(
        shown.widget_request,
        Some(WidgetRequest::ItemConfirmation {
            items: expected.clone()
        })
    );
    assert!(
        shown
            .message
            .contains("2. Finish the quarterly report (due Fri, Nov 27) #work")
    );
    assert_eq!(o.step, Step::BrainDump);

    let done = o.say(Some("Looks good!"));
    assert!(done.workflow_signals.step_completed);
    assert_eq!(o.step, Step::Completed);
    assert_eq!(o.context["inbox_items"], json!(expected));
    assert_eq!(o.context["draft_inbox_items"], json!([]));
    assert!(done.message.contains("4 items"), "{}", done.message);

    let after = o.say(Some("thanks!"));
    assert_eq!(o.step, Step::Completed);
    assert!(!after.workflow_signals.step_completed);
    assert!(after.message.contains("all set"), "{}", after.message);
    o
}

#[test]
fn offline_agents_complete_a_whole_onboarding() {
    let o = full_onboarding();
    let mut expected = serde_json::from_value::<Map<String, Value>>(json!({
        "name": "Alexandra",
        "preferred_name": "Alex",
        "role": "product manager at a fintech startup",
        "goals": ["Ship the mobile app", "hire two engineers"],
        "work_patterns": "mornings",
        "tools": ["Notion", "Google Calendar", "a paper notebook"],
        "pain_points": ["Too many meetings", "I forget follow-ups"],
        "draft_inbox_items": [],
    }))
    .unwrap_or_default();
    let items = o.context.get("inbox_items").cloned().unwrap_or_default();
    expected.insert("inbox_items".into(), items);
    assert_eq!(o.context, expected);
    assert!(
        o.memory
            .contains(&"Role: product manager at a fintech startup".to_owned())
    );
    assert!(
        o.memory
            .contains(&"Does their best focused work in the mornings".to_owned())
    );
    assert!(o.memory.contains(&"Uses Notion".to_owned()));
    // Every assistant message asks at most one question.
    for output in &o.outputs {
        assert!(
            output.message.matches('?').count() <= 1,
            "{}",
            output.message
        );
    }
}

#[test]
fn offline_agents_are_deterministic() {
    let first = full_onboarding();
    let second = full_onboarding();
    let as_json = |o: &Onboarding| {
        o.outputs
            .iter()
            .map(|out| serde_json::to_value(out).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(as_json(&first), as_json(&second));
    let input = first.input(Some(BRAIN_DUMP));
    assert_eq!(offline_turn(&input), offline_turn(&input));
}

#[test]
fn offline_coordinator_honours_skipping_ahead() {
    let mut o = Onboarding::default();
    o.say(None);
    let skipped = o.say(Some("skip"));
    assert_eq!(
        skipped.workflow_signals.next_step_override,
        Some(Step::Discovery)
    );
    assert!(!skipped.workflow_signals.step_completed);
    assert_eq!(skipped.agent, AgentType::Discovery);
    assert!(skipped.message.contains("role"), "{}", skipped.message);
    assert_eq!(o.step, Step::Discovery);
    // The skip was not taken as an answer.
    assert!(!o.context.contains_key("role"));

    let jump = o.say(Some("Actually, let's do the brain dump"));
    assert_eq!(
        jump.workflow_signals.next_step_override,
        Some(Step::BrainDump)
    );
    assert_eq!(jump.agent, AgentType::InboxCollector);
    assert!(jump.message.contains("on your mind"), "{}", jump.message);
    assert_eq!(o.step, Step::BrainDump);

    let nothing = o.say(Some("Nothing right now"));
    assert!(nothing.workflow_signals.step_completed);
    assert_eq!(o.step, Step::Completed);
    assert_eq!(o.context["inbox_items"], json!([]));
}

#[test]
fn offline_inbox_collector_takes_edits_before_confirming() {
    let mut o = Onboarding {
        step: Step::BrainDump,
        ..Onboarding::default()
    };
    o.say(None);
    o.say(Some("call mom\nbuy milk and book flights"));
    let removed = o.say(Some("remove the second one"));
    assert_eq!(
        removed.widget_request,
        Some(WidgetRequest::ItemConfirmation {
            items: vec![item("Call mom", None, &[]), item("Book flights", None, &[])]
        })
    );
    o.say(Some("add pay rent by next monday #home"));
    // A nudge while the list waits shows it again.
    let mut quiet = o.clone();
    quiet.context.insert("nudge_count".into(), json!(2));
    let nudge = offline_turn(&quiet.input(None));
    assert!(matches!(
        nudge.widget_request,
        Some(WidgetRequest::ItemConfirmation { .. })
    ));
    assert!(!nudge.workflow_signals.step_completed);

    let done = o.say(Some("yes"));
    assert!(done.workflow_signals.step_completed);
    assert_eq!(
        o.context["inbox_items"],
        json!([
            item("Call mom", None, &[]),
            item("Book flights", None, &[]),
            item("Pay rent", Some("2026-11-30"), &["home"]),
        ])
    );
}

#[test]
fn offline_greeter_reads_names() {
    let cases = [
        ("my name is priya", "Priya", "Priya"),
        ("I'm Alex Smith", "Alex Smith", "Alex"),
        ("call me Jo", "Jo", "Jo"),
        ("Sam", "Sam", "Sam"),
    ];
    for (said, name, preferred) in cases {
        let mut o = Onboarding::default();
        o.say(None);
        let out = o.say(Some(said));
        assert!(out.workflow_signals.step_completed, "{said}");
        assert_eq!(o.context["name"], name, "{said}");
        assert_eq!(o.context["preferred_name"], preferred, "{said}");
    }
    let mut o = Onboarding::default();
    o.say(None);
    for said in ["hello!", "hmm, what is this?", "whatever"] {
        let unclear = o.say(Some(said));
        assert!(!unclear.workflow_signals.step_completed, "{said}");
        assert!(unclear.message.contains("name"), "{said}");
        assert_eq!(
            unclear.message.matches('?').count(),
            1,
            "{}",
            unclear.message
        );
    }
    assert_eq!(o.step, Step::Greeting);
}

#[test]
fn offline_agents_do_not_take_questions_for_answers() {
    let mut o = Onboarding {
        step: Step::Discovery,
        ..Onboarding::default()
    };
    o.say(None);
    let why = o.say(Some("Why do you need to know that?"));
    assert!(!o.context.contains_key("role"));
    assert!(why.message.contains("role"), "{}", why.message);

    let mut o = Onboarding {
        step: Step::BrainDump,
        ..Onboarding::default()
    };
    o.say(None);
    let what = o.say(Some("What kind of things should I write?"));
    assert_eq!(what.widget_request, None);
    assert!(!o.context.contains_key("draft_inbox_items"));
}

#[test]
fn date_resolution() {
    let today = parse_iso(TODAY).unwrap_or(time::Date::MIN);
    let cases = [
        ("today", "2026-11-25"),
        ("tomorrow", "2026-11-26"),
        ("friday", "2026-11-27"),
        ("next friday", "2026-12-04"),
        ("next monday", "2026-11-30"),
        ("in 3 days", "2026-11-28"),
        ("in two weeks", "2026-12-09"),
        ("dec 5", "2026-12-05"),
        ("5 January", "2027-01-05"),
        ("on 2026-12-01", "2026-12-01"),
        ("end of month", "2026-11-30"),
    ];
    for (expression, expected) in cases {
        assert_eq!(
            resolve_date(expression, today).map(format_iso).as_deref(),
            Some(expected),
            "{expression}"
        );
    }
    assert_eq!(resolve_date("whenever", today), None);
}

// ------------------------------------------------------------- LLM agents

async fn model(script: Vec<Reply>) -> (FakeLlm, Recorder) {
    let fake = FakeLlm::start(script).await;
    let client = OpenAiClient::builder(fake.base_url())
        .model("test-model")
        .build()
        .expect("client");
    (fake, Recorder::unrecorded(Arc::new(client)))
}

fn messages(request: &Recorded) -> Vec<Value> {
    request.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn system_prompt(request: &Recorded) -> String {
    messages(request)
        .first()
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn last_user_text(request: &Recorded) -> String {
    messages(request)
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn tool_answers(request: &Recorded) -> Vec<(String, String)> {
    messages(request)
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn tool_names(request: &Recorded) -> Vec<String> {
    request.body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn options() -> AgentOptions {
    AgentOptions {
        mode: OutputMode::Tool,
        strict: true,
        retries: 2,
    }
}

#[tokio::test]
async fn coordinator_routes_to_the_greeter_and_the_outputs_combine() {
    let (fake, llm) = model(vec![
        Reply::tool_call(
            "final_result",
            json!({ "agent": "greeter", "step_done": false, "next_step": null,
                    "reason": "The user gave their name." }),
        ),
        Reply::tool_call(
            "final_result",
            json!({ "message": "Lovely to meet you, Alex! What's your role, and what fills most of your days?",
                    "name": "Alexandra", "preferred_name": "Alex", "step_completed": true,
                    "memory_updates": ["Lives in Lisbon"] }),
        ),
    ])
    .await;
    let mut o = Onboarding::default();
    o.history.push(ChatTurn {
        role: Speaker::Assistant,
        content: "Hi, welcome! What's your name?".into(),
    });
    let said = "I'm Alexandra from Lisbon, call me Alex";
    let output = run_turn(Some(&llm), &options(), &o.input(Some(said)), None)
        .await
        .expect("turn");

    assert_eq!(output.agent, AgentType::Greeter);
    assert_eq!(
        output.message,
        "Lovely to meet you, Alex! What's your role, and what fills most of your days?"
    );
    assert!(output.workflow_signals.step_completed);
    assert_eq!(output.workflow_signals.next_step_override, None);
    assert_eq!(
        output.workflow_signals.completion_data.map(Value::Object),
        Some(json!({ "name": "Alexandra", "preferred_name": "Alex" }))
    );
    assert_eq!(
        output.memory_updates,
        [
            "Name is Alexandra",
            "Prefers to be called Alex",
            "Lives in Lisbon"
        ]
    );
    assert_eq!(output.widget_request, None);

    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 2);
    let (coordinator, greeter) = (&requests[0], &requests[1]);
    assert!(system_prompt(coordinator).contains("You are the Coordinator"));
    assert!(!system_prompt(coordinator).contains("How you write"));
    assert!(system_prompt(greeter).contains("How you write"));
    assert_eq!(tool_names(coordinator), ["final_result"]);
    assert!(system_prompt(greeter).contains("You are the Greeter"));
    assert!(system_prompt(greeter).contains("Current step: greeting"));
    // The history went to the model as messages, then the user's words.
    let sent = messages(greeter);
    assert_eq!(sent[1]["role"], "assistant");
    assert_eq!(sent[1]["content"], "Hi, welcome! What's your name?");
    assert_eq!(last_user_text(greeter), said);
}

#[tokio::test]
async fn inbox_collector_resolves_dates_with_its_tool() {
    let (fake, llm) = model(vec![
        Reply::tool_call("resolve_date", json!({ "expression": "next friday" })),
        Reply::tool_call(
            "final_result",
            json!({ "message": "Here's what I caught:\n1. Send the invoices (due Fri, Dec 4)\n2. Call mom\nDoes this look right?",
                    "items": [
                        { "title": "Send the invoices", "due_date": "2026-12-04", "tags": ["#Work"] },
                        { "title": "Call mom", "due_date": null, "tags": [] }
                    ],
                    "user_confirmed": false, "memory_updates": [] }),
        ),
        // The next turn: the user confirms.
        Reply::tool_call(
            "final_result",
            json!({ "message": "Done, both are in your inbox. You're all set!",
                    "items": [
                        { "title": "Send the invoices", "due_date": "2026-12-04", "tags": ["work"] },
                        { "title": "Call mom", "due_date": null, "tags": [] }
                    ],
                    "user_confirmed": true, "memory_updates": [] }),
        ),
    ])
    .await;
    let mut o = Onboarding {
        step: Step::BrainDump,
        ..Onboarding::default()
    };
    let said = "send the invoices by next friday, call mom";
    let mut input = o.input(Some(said));
    input.agent_type = AgentType::InboxCollector;
    let shown = run_turn(Some(&llm), &options(), &input, None)
        .await
        .expect("turn");

    let items = vec![
        item("Send the invoices", Some("2026-12-04"), &["work"]),
        item("Call mom", None, &[]),
    ];
    assert!(!shown.workflow_signals.step_completed);
    assert_eq!(
        shown.widget_request,
        Some(WidgetRequest::ItemConfirmation {
            items: items.clone()
        })
    );
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(tool_names(&requests[0]), ["resolve_date", "final_result"]);
    assert!(system_prompt(&requests[0]).contains("Today is Wednesday, 2026-11-25."));
    // The tool's answer went back to the model, for the call it made.
    let call_id = requests[1].body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "assistant"))
        .and_then(|m| m["tool_calls"][0]["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let answers = tool_answers(&requests[1]);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].0, call_id);
    let answer: Value = serde_json::from_str(&answers[0].1).expect("tool answer is JSON");
    assert_eq!(
        answer,
        json!({ "expression": "next friday", "date": "2026-12-04", "weekday": "Friday" })
    );

    // The workflow keeps the draft; "yes" confirms it.
    o.apply(Some(said), &shown);
    assert_eq!(o.context["draft_inbox_items"], json!(items));
    let mut input = o.input(Some("yes, perfect"));
    input.agent_type = AgentType::InboxCollector;
    let done = run_turn(Some(&llm), &options(), &input, None)
        .await
        .expect("turn");
    assert!(done.workflow_signals.step_completed);
    assert_eq!(done.widget_request, None);
    assert_eq!(
        done.workflow_signals.completion_data.map(Value::Object),
        Some(json!({ "inbox_items": items, "draft_inbox_items": [] }))
    );
    let confirm = &fake.chat_requests()[2];
    assert!(system_prompt(confirm).contains("1. Send the invoices (due 2026-12-04) [tags: work]"));
}

#[tokio::test]
async fn greeter_fixes_an_output_the_validator_rejects() {
    let (fake, llm) = model(vec![
        Reply::tool_call(
            "final_result",
            json!({ "message": "Hey! Great to have you here.", "name": null,
                    "preferred_name": null, "step_completed": true, "memory_updates": [] }),
        ),
        Reply::tool_call(
            "final_result",
            json!({ "message": "Hey! Great to have you here. What should I call you?", "name": null,
                    "preferred_name": null, "step_completed": false, "memory_updates": [] }),
        ),
    ])
    .await;
    let o = Onboarding::default();
    let mut input = o.input(Some("hey there"));
    input.agent_type = AgentType::Greeter;
    let output = run_turn(Some(&llm), &options(), &input, None)
        .await
        .expect("turn");

    assert!(!output.workflow_signals.step_completed);
    assert_eq!(
        output.message,
        "Hey! Great to have you here. What should I call you?"
    );
    assert_eq!(output.workflow_signals.completion_data, None);
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 2);
    let feedback = tool_answers(&requests[1]);
    assert_eq!(feedback.len(), 1);
    assert!(
        feedback[0]
            .1
            .contains("step_completed is true but the user's name is unknown"),
        "{feedback:?}"
    );
    assert!(feedback[0].1.contains("Fix the errors and try again."));
}

#[tokio::test]
async fn a_nudge_goes_straight_to_the_steps_agent() {
    let (fake, llm) = model(vec![Reply::tool_call(
        "final_result",
        json!({ "message": "No rush, Alex. When you have a moment: what do you use to keep track of things?",
                "learned": { "role": null, "goals": null, "work_patterns": null, "tools": null, "pain_points": null },
                "user_declined_more_questions": false,
                "quick_replies": ["Notes app", "Calendar", "Paper"],
                "memory_updates": [] }),
    )])
    .await;
    let mut o = Onboarding {
        step: Step::Discovery,
        ..Onboarding::default()
    };
    for (key, value) in [
        ("name", json!("Alexandra")),
        ("preferred_name", json!("Alex")),
        ("role", json!("designer")),
        ("goals", json!(["ship v2"])),
        ("work_patterns", json!("mornings")),
        ("nudge", json!(true)),
    ] {
        o.context.insert(key.into(), value);
    }
    o.history.push(ChatTurn {
        role: Speaker::Assistant,
        content: "What do you use to keep track of things?".into(),
    });
    let output = run_turn(Some(&llm), &options(), &o.input(None), None)
        .await
        .expect("turn");

    assert_eq!(output.agent, AgentType::Discovery);
    assert!(!output.workflow_signals.step_completed);
    assert_eq!(output.workflow_signals.completion_data, None);
    assert_eq!(
        output.widget_request,
        Some(WidgetRequest::QuickReplies {
            options: vec!["Notes app".into(), "Calendar".into(), "Paper".into()]
        })
    );
    // No Coordinator call: a proactive turn has nothing to route.
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 1);
    let system = system_prompt(&requests[0]);
    assert!(system.contains("You are Discovery"));
    assert!(system.contains("check-in 1"), "{system}");
    assert!(system.contains("Still to learn in discovery (in this order): tools, pain_points."));
    assert!(system.contains("Address the user as: Alex."));
    assert!(system.contains(
        "- name: Alexandra\n- preferred_name: Alex\n- role: designer\n- goals: ship v2\n- work_patterns: mornings"
    ));
    assert!(!system.contains("nudge"), "{system}");
    assert!(last_user_text(&requests[0]).contains("Speak first"));
}

#[tokio::test]
async fn coordinator_moves_to_the_step_the_user_asks_for() {
    let (fake, llm) = model(vec![
        Reply::tool_call(
            "final_result",
            json!({ "agent": "discovery", "step_done": false, "next_step": "brain_dump",
                    "reason": "The user wants to skip to the brain dump." }),
        ),
        Reply::tool_call(
            "final_result",
            json!({ "message": "Sure! Tell me everything that's on your mind, big or small.",
                    "items": [], "user_confirmed": false, "memory_updates": [] }),
        ),
    ])
    .await;
    let o = Onboarding {
        step: Step::Discovery,
        ..Onboarding::default()
    };
    let output = run_turn(
        Some(&llm),
        &options(),
        &o.input(Some("can we skip to the brain dump?")),
        None,
    )
    .await
    .expect("turn");

    assert_eq!(output.agent, AgentType::InboxCollector);
    assert_eq!(
        output.workflow_signals.next_step_override,
        Some(Step::BrainDump)
    );
    assert!(!output.workflow_signals.step_completed);
    let requests = fake.chat_requests();
    let system = system_prompt(&requests[1]);
    assert!(system.contains("You are the Inbox Collector"));
    assert!(system.contains("Current step: brain_dump"));
    assert!(system.contains("move on from the discovery step"));
}

#[tokio::test]
async fn native_structured_output_works_too() {
    let (fake, llm) = model(vec![Reply::json(json!({
        "message": "Nice to meet you, Sam! What's your role?",
        "name": "Sam", "preferred_name": null, "step_completed": true, "memory_updates": []
    }))])
    .await;
    let o = Onboarding::default();
    let mut input = o.input(Some("Sam"));
    input.agent_type = AgentType::Greeter;
    let options = AgentOptions {
        mode: OutputMode::Native,
        ..options()
    };
    let output = run_turn(Some(&llm), &options, &input, None)
        .await
        .expect("turn");
    assert!(output.workflow_signals.step_completed);
    assert_eq!(
        output.workflow_signals.completion_data.map(Value::Object),
        Some(json!({ "name": "Sam", "preferred_name": "Sam" }))
    );
    let request = &fake.chat_requests()[0];
    assert_eq!(request.body["response_format"]["type"], "json_schema");
}

#[tokio::test]
async fn without_a_model_the_offline_agents_answer() {
    let o = Onboarding::default();
    let input = o.input(None);
    let output = run_turn(None, &AgentOptions::default(), &input, None)
        .await
        .expect("offline turns never fail");
    assert_eq!(output, offline_turn(&input));
}
