//! The onboarding workflow run by the production worker (`floe-worker`)
//! against real PostgreSQL: a person's messages in, the assistant's answers
//! out through `floe.messages`, with the offline agents (and, for failures,
//! the fake OpenAI-compatible server).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Testbed, database, eventually};
use floe_agents::onboarding::workflow::{APOLOGY, Onboarding};
use floe_agents::testing::{FakeLlm, Reply};
use floe_engine::chat::{self, Message, Role};
use floe_engine::workflow::{Registry, Status, store};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// A user with an onboarding workflow (nudges after `nudge_after_secs`).
async fn onboard(pool: &PgPool, user: &str, nudge_after_secs: u64) -> Uuid {
    chat::store::upsert_user(pool, user, "Alex")
        .await
        .expect("user");
    let input = json!({
        "user_id": user, "display_name": "Alex",
        "settings": { "nudge_after_secs": nudge_after_secs, "max_nudges": 1 },
    });
    let mut tx = pool.begin().await.expect("begin");
    let started = chat::store::start_workflow_for(&mut tx, user, "onboarding", &input, 1)
        .await
        .expect("start");
    tx.commit().await.expect("commit");
    started.id
}

async fn connect(pool: &PgPool, id: Uuid) {
    let mut tx = pool.begin().await.expect("begin");
    store::signal(&mut tx, id, "user_connected", &json!({}), None)
        .await
        .expect("signal");
    tx.commit().await.expect("commit");
}

/// Posts the user's messages in one transaction.
async fn say(pool: &PgPool, user: &str, id: Uuid, texts: &[&str]) {
    let mut tx = pool.begin().await.expect("begin");
    for text in texts {
        chat::store::post_user_message(&mut tx, user, id, text, None)
            .await
            .expect("post");
    }
    tx.commit().await.expect("commit");
}

async fn messages(pool: &PgPool, user: &str) -> Vec<Message> {
    chat::store::messages_after(pool, user, 0, 1000)
        .await
        .expect("messages")
}

/// Waits until the conversation holds `n` assistant messages and no turn
/// runs; returns the conversation.
async fn replies(pool: &PgPool, user: &str, id: Uuid, n: usize) -> Vec<Message> {
    let ok = eventually(Duration::from_secs(30), || async {
        let count = messages(pool, user)
            .await
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count();
        count >= n && !state(pool, id).await["typing"].as_bool().unwrap_or(true)
    })
    .await;
    let all = messages(pool, user).await;
    assert!(ok, "expected {n} replies, have {all:#?}");
    all
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register::<Onboarding>();
    registry
}

async fn query(pool: &PgPool, id: Uuid, name: &str) -> Value {
    let row = store::get(pool, id).await.expect("get").expect("row");
    registry()
        .get("onboarding")
        .expect("definition")
        .query(&row.context, name)
        .expect("query")
        .expect("known query")
}

async fn state(pool: &PgPool, id: Uuid) -> Value {
    query(pool, id, "get_state").await
}

fn last(conversation: &[Message]) -> &Message {
    conversation.last().expect("a message")
}

fn worker(url: &SecretString) -> Testbed {
    Testbed::start_production(url, &["--poll-ms", "200"])
}

#[tokio::test]
async fn a_new_user_is_greeted_first_and_completes_the_onboarding() {
    let (url, pool) = database().await;
    let worker = worker(&url);
    let id = onboard(&pool, "alex", 3600).await;
    connect(&pool, id).await;
    let conversation = replies(&pool, "alex", id, 1).await;
    assert_eq!(last(&conversation).kind, "greeting");
    assert_eq!(last(&conversation).seq, 1, "the assistant spoke first");
    // A second connection does not greet again.
    connect(&pool, id).await;

    let script: [&str; 7] = [
        "Hi! I'm Alexandra, but please call me Alex",
        "I'm a product manager at a fintech startup",
        "Ship the new onboarding flow and get better at planning my weeks",
        "Mornings",
        "Notion, Linear and Slack",
        "Too many meetings and context switching",
        "Call the bank tomorrow\nFinish the quarterly report by friday #work\nBuy a birthday present for Sam",
    ];
    let mut expected_replies = 1;
    for text in script {
        say(&pool, "alex", id, &[text]).await;
        expected_replies += 1;
        replies(&pool, "alex", id, expected_replies).await;
    }
    let progress = query(&pool, id, "get_progress").await;
    assert_eq!(progress["current_step"], "brain_dump", "{progress}");
    let conversation = messages(&pool, "alex").await;
    let confirmation = last(&conversation);
    assert_eq!(
        confirmation.widget.as_ref().expect("a widget")["type"],
        "item_confirmation",
        "{confirmation:?}"
    );

    say(&pool, "alex", id, &["Looks good!"]).await;
    let done = eventually(Duration::from_secs(30), || async {
        store::get(&pool, id)
            .await
            .expect("get")
            .is_some_and(|w| w.status == Status::Completed)
    })
    .await;
    assert!(done, "the onboarding completed");
    let row = store::get(&pool, id).await.expect("get").expect("row");
    assert_eq!(row.state, "completed");
    let progress = query(&pool, id, "get_progress").await;
    assert_eq!(progress["percent"], 100, "{progress}");

    // What the onboarding learned, and the inbox it filled.
    let context = &state(&pool, id).await["context"];
    assert_eq!(context["preferred_name"], "Alex", "{context}");
    assert!(
        context["role"]
            .as_str()
            .unwrap_or_default()
            .contains("product manager")
    );
    let inbox = chat::store::inbox(&pool, "alex").await.expect("inbox");
    let titles: Vec<&str> = inbox.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(inbox.len(), 3, "{titles:?}");
    assert!(inbox.iter().any(|i| i.due_date.is_some()), "{inbox:?}");
    assert!(
        inbox.iter().any(|i| i.tags.contains(&"work".to_owned())),
        "{inbox:?}"
    );

    // The conversation: gapless, alternating, every user message answered.
    let conversation = messages(&pool, "alex").await;
    let seqs: Vec<i64> = conversation.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=conversation.len() as i64).collect::<Vec<_>>());
    for pair in conversation.windows(2) {
        assert_ne!(pair[0].role, pair[1].role, "{conversation:#?}");
    }
    // Its history replays through this build to the same row.
    let report = floe_engine::workflow::replay::replay(&pool, &registry(), id)
        .await
        .expect("replay");
    assert!(report.divergence.is_none(), "{report:?}");
    // And the memory heard it.
    let remembered = eventually(Duration::from_secs(10), || async {
        let facts: Vec<String> =
            sqlx::query_scalar("SELECT memory FROM floe.memories WHERE user_id = 'alex'")
                .fetch_all(&pool)
                .await
                .expect("memories");
        facts.iter().any(|f| f.contains("Alex"))
    })
    .await;
    assert!(remembered, "the user's name is remembered");
    worker.stop();
}

#[tokio::test]
async fn messages_sent_during_a_turn_are_folded_into_the_next_one_in_order() {
    let (url, pool) = database().await;
    let _worker = worker(&url);
    let id = onboard(&pool, "sam", 3600).await;
    connect(&pool, id).await;
    replies(&pool, "sam", id, 1).await;
    // Three messages land before the workflow sees the first: the first
    // starts a turn, the other two wait and are answered together.
    say(
        &pool,
        "sam",
        id,
        &["I'm Sam", "I lead a design team", "I use Figma"],
    )
    .await;
    let conversation = replies(&pool, "sam", id, 3).await;
    let roles: Vec<Role> = conversation.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::Assistant,
            Role::User,
            Role::User,
            Role::User,
            Role::Assistant,
            Role::Assistant
        ],
        "{conversation:#?}"
    );
    let state = state(&pool, id).await;
    assert_eq!(state["queued_messages"], 0);
    // The second turn heard both later messages, in order.
    let row = store::get(&pool, id).await.expect("get").expect("row");
    let history: Vec<&str> = row.context["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|t| t["role"] == "user")
        .filter_map(|t| t["content"].as_str())
        .collect();
    assert_eq!(
        history,
        ["I'm Sam", "I lead a design team\n\nI use Figma"],
        "{history:?}"
    );
}

#[tokio::test]
async fn a_message_posted_twice_with_one_client_id_is_answered_once() {
    let (url, pool) = database().await;
    let _worker = worker(&url);
    let id = onboard(&pool, "kim", 3600).await;
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let mut tx = pool.begin().await.expect("begin");
        let posted = chat::store::post_user_message(&mut tx, "kim", id, "Hi, I'm Kim", Some("c-1"))
            .await
            .expect("post");
        tx.commit().await.expect("commit");
        seqs.push(posted);
    }
    assert!(!seqs[0].duplicate && seqs[1].duplicate);
    assert_eq!(seqs[0].seq, seqs[1].seq);
    let conversation = replies(&pool, "kim", id, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages(&pool, "kim").await.len(), 2, "{conversation:#?}");
}

#[tokio::test]
async fn a_silent_user_is_nudged_once_and_only_once() {
    let (url, pool) = database().await;
    let _worker = worker(&url);
    let id = onboard(&pool, "lee", 1).await;
    connect(&pool, id).await;
    replies(&pool, "lee", id, 2).await;
    let conversation = messages(&pool, "lee").await;
    assert_eq!(
        conversation
            .iter()
            .map(|m| m.kind.as_str())
            .collect::<Vec<_>>(),
        ["greeting", "nudge"]
    );
    // Three more seconds of silence bring no second nudge.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(messages(&pool, "lee").await.len(), 2);
    assert_eq!(state(&pool, id).await["nudges_sent"], 1);
}

/// The fake model: a valid answer for each agent, after `fail_first`
/// rejected requests of the chat agents.
fn model(failing: Arc<AtomicBool>) -> impl Fn(&Value) -> Reply + Send + Sync + 'static {
    move |request| {
        let text = request.to_string();
        if text.contains("\"facts\"") {
            return Reply::tool_call("final_result", json!({ "facts": [] }));
        }
        if failing.load(Ordering::SeqCst) {
            return Reply::error(400, "this model does not exist");
        }
        if text.contains("step_done") {
            return Reply::tool_call(
                "final_result",
                json!({ "agent": "greeter", "step_done": false, "next_step": null, "reason": "greeting" }),
            );
        }
        Reply::tool_call(
            "final_result",
            json!({
                "message": "Welcome! What should I call you?",
                "name": null, "preferred_name": null, "step_completed": false, "memory_updates": [],
            }),
        )
    }
}

#[tokio::test]
async fn an_agent_that_fails_for_good_apologises_and_the_next_message_is_answered() {
    let (url, pool) = database().await;
    let failing = Arc::new(AtomicBool::new(true));
    let fake = FakeLlm::start(Vec::new())
        .await
        .with_fallback(model(failing.clone()));
    let base = fake.base_url();
    let _worker = Testbed::start_production(&url, &["--poll-ms", "200", "--llm-base-url", &base]);
    let id = onboard(&pool, "ana", 3600).await;
    say(&pool, "ana", id, &["hello?"]).await;
    let conversation = replies(&pool, "ana", id, 1).await;
    let apology = last(&conversation);
    assert_eq!(
        (apology.kind.as_str(), apology.content.as_str()),
        ("error", APOLOGY)
    );
    let row = store::get(&pool, id).await.expect("get").expect("row");
    assert_eq!(row.status, Status::Waiting, "the workflow lives on");
    assert!(
        state(&pool, id).await["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("rejected (400)")
    );

    failing.store(false, Ordering::SeqCst);
    say(&pool, "ana", id, &["hello again"]).await;
    let conversation = replies(&pool, "ana", id, 2).await;
    assert_eq!(last(&conversation).kind, "reply");
    assert_eq!(
        last(&conversation).content,
        "Welcome! What should I call you?"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_turn_is_replaced_and_the_reply_arrives_once() {
    use nix::sys::signal::Signal;
    use std::sync::atomic::AtomicUsize;

    let (url, pool) = database().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let answer = model(Arc::new(AtomicBool::new(false)));
    // The first chat-agent call hangs long enough for its worker to die.
    let fake = FakeLlm::start(Vec::new())
        .await
        .with_fallback(move |request| {
            let text = request.to_string();
            if !text.contains("\"facts\"") && seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return Reply::delay(Duration::from_secs(60), answer(request));
            }
            answer(request)
        });
    let base = fake.base_url();
    let args = [
        "--poll-ms",
        "200",
        "--lease-ms",
        "1500",
        "--llm-base-url",
        &base,
    ];
    let victim = Testbed::start_production(&url, &args);
    let id = onboard(&pool, "max", 3600).await;
    connect(&pool, id).await;
    let hanging = eventually(Duration::from_secs(20), || async {
        calls.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert!(hanging, "the agent was never called");
    victim.signal(Signal::SIGKILL);
    drop(victim);
    let _successor = Testbed::start_production(&url, &args);
    let conversation = replies(&pool, "max", id, 1).await;
    assert_eq!(last(&conversation).kind, "greeting");
    // Nothing more arrives: the greeting was stored once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(messages(&pool, "max").await.len(), 1);
    assert_eq!(state(&pool, id).await["typing"], false);
}
