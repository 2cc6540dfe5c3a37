//! User memory against a real database: Mem0's ADD / UPDATE / DELETE with
//! history, with the offline twin and with a model (the scripted fake
//! OpenAI-compatible server); search ranking, the embedding blend, and scopes
//! that never leak between users.

use std::sync::Arc;
use std::time::Duration;

use floe_agents::llm::ledger::{CallSite, Recorder};
use floe_agents::llm::openai::OpenAiClient;
use floe_agents::memory::{
    Brain, HistoryEntry, Memory, MemoryChange, MemoryEvent, MemoryRecord, Scope,
};
use floe_agents::onboarding::contract::{ChatTurn, Speaker};
use floe_agents::settings::OutputMode;
use floe_agents::testing::{FakeLlm, Reply, fake_embedding};
use serde_json::{Value, json};
use sqlx::PgPool;

fn user(text: &str) -> ChatTurn {
    ChatTurn {
        role: Speaker::User,
        content: text.into(),
    }
}

fn assistant(text: &str) -> ChatTurn {
    ChatTurn {
        role: Speaker::Assistant,
        content: text.into(),
    }
}

fn client(fake: &FakeLlm) -> Arc<OpenAiClient> {
    Arc::new(
        OpenAiClient::builder(fake.base_url())
            .model("fake-chat")
            .embedding_model("fake-embed")
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
    )
}

/// A recorder writing to the ledger of `pool`, for `user_id`.
fn recorder(pool: &PgPool, client: Arc<OpenAiClient>, user_id: &str) -> Recorder {
    let site = CallSite {
        user_id: Some(user_id.into()),
        ..CallSite::default()
    };
    Recorder::new(client, pool.clone(), site)
}

fn brain(recorder: &Recorder) -> Brain<'_> {
    Brain::Llm {
        recorder,
        mode: OutputMode::Tool,
        strict: true,
        retries: 1,
    }
}

fn facts_reply(facts: &[&str]) -> Reply {
    Reply::tool_call("final_result", json!({ "facts": facts }))
}

fn texts(records: &[MemoryRecord]) -> Vec<&str> {
    records.iter().map(|r| r.memory.as_str()).collect()
}

fn summary(changes: &[MemoryChange]) -> Vec<(MemoryEvent, Option<&str>, Option<&str>)> {
    changes
        .iter()
        .map(|c| (c.event, c.old_memory.as_deref(), c.new_memory.as_deref()))
        .collect()
}

fn id_of(records: &[MemoryRecord], text: &str) -> uuid::Uuid {
    records
        .iter()
        .find(|r| r.memory == text)
        .unwrap_or_else(|| panic!("no memory {text:?} in {:?}", texts(records)))
        .id
}

/// The user message of a chat request.
fn user_prompt(body: &Value) -> String {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .expect("a user message")
        .to_owned()
}

/// The memories a decision request shows, as (id, text).
fn shown_memories(body: &Value) -> Vec<(String, String)> {
    let prompt = user_prompt(body);
    let Some(start) = prompt.find("Current memory:\n```json\n") else {
        return Vec::new();
    };
    let rest = &prompt[start + "Current memory:\n```json\n".len()..];
    let end = rest.find("\n```").expect("closing fence");
    let items: Vec<Value> = serde_json::from_str(&rest[..end]).expect("shown memories are JSON");
    items
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_owned(),
                i["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect()
}

/// The new facts a decision request lists.
fn shown_facts(body: &Value) -> Vec<String> {
    let prompt = user_prompt(body);
    let start =
        prompt.find("New facts:\n```json\n").expect("new facts") + "New facts:\n```json\n".len();
    let end = start + prompt[start..].find("\n```").expect("closing fence");
    serde_json::from_str(&prompt[start..end]).expect("facts are JSON")
}

fn is_decision(body: &Value) -> bool {
    user_prompt(body).contains("New facts:")
}

/// A model that adds every new fact (for seeding through the model brain).
fn adds_everything(body: &Value) -> Reply {
    if !is_decision(body) {
        return Reply::error(500, "only decisions are answered");
    }
    let memory: Vec<Value> = shown_facts(body)
        .iter()
        .enumerate()
        .map(|(i, f)| json!({ "id": (100 + i).to_string(), "text": f, "event": "ADD", "old_memory": null }))
        .collect();
    Reply::tool_call("final_result", json!({ "memory": memory }))
}

async fn ledger_agents(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar::<_, String>("SELECT agent FROM floe.llm_calls ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("ledger")
}

fn looks_like_uuid(text: &str) -> bool {
    regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
        .expect("regex")
        .is_match(text)
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn offline_adds_updates_and_deletes_with_history(pool: PgPool) {
    let memory = Memory::new(pool.clone(), None);
    let scope = Scope::user("alex");

    let first = [
        assistant("Hi! What should I call you, and what do you do?"),
        user("Hi! My name is Alex. I work as a product manager at Acme. We use Notion and Slack."),
    ];
    let changes = memory
        .update(Brain::Offline, &scope, &first, &[])
        .await
        .expect("first update");
    assert_eq!(
        summary(&changes),
        [
            (MemoryEvent::Add, None, Some("Name is Alex")),
            (
                MemoryEvent::Add,
                None,
                Some("Works as a product manager at Acme")
            ),
            (MemoryEvent::Add, None, Some("Uses Notion")),
            (MemoryEvent::Add, None, Some("Uses Slack")),
        ]
    );
    let all = memory.all(&scope).await.expect("all");
    let categories: Vec<&str> = all
        .iter()
        .map(|r| r.metadata["category"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(categories, ["name", "role", "tool", "tool"]);

    // Saying it again changes nothing.
    let again = memory
        .update(Brain::Offline, &scope, &first, &["Uses Notion".into()])
        .await
        .expect("repeat");
    assert!(again.is_empty(), "{again:?}");

    // A new name and role replace the old ones; a dropped tool is forgotten.
    let second = [user(
        "Actually, I'm Sam. I now work as a design lead. I no longer use Slack.",
    )];
    let changes = memory
        .update(Brain::Offline, &scope, &second, &[])
        .await
        .expect("second update");
    assert_eq!(
        summary(&changes),
        [
            (
                MemoryEvent::Update,
                Some("Name is Alex"),
                Some("Name is Sam")
            ),
            (
                MemoryEvent::Update,
                Some("Works as a product manager at Acme"),
                Some("Works as a design lead")
            ),
            (MemoryEvent::Delete, Some("Uses Slack"), None),
        ]
    );
    let live = memory.all(&scope).await.expect("all");
    assert_eq!(
        texts(&live),
        ["Name is Sam", "Works as a design lead", "Uses Notion"]
    );

    let name_history = memory
        .history(&scope, id_of(&all, "Name is Alex"))
        .await
        .expect("history");
    let rows: Vec<_> = events(&name_history);
    assert_eq!(
        rows,
        [
            (
                MemoryEvent::Add,
                None,
                Some("Name is Alex"),
                Some("offline")
            ),
            (
                MemoryEvent::Update,
                Some("Name is Alex"),
                Some("Name is Sam"),
                Some("offline")
            ),
        ]
    );
    let slack_history = memory
        .history(&scope, id_of(&all, "Uses Slack"))
        .await
        .expect("history");
    let rows: Vec<_> = slack_history
        .iter()
        .map(|h| (h.event, h.old_memory.as_deref(), h.new_memory.as_deref()))
        .collect();
    assert_eq!(
        rows,
        [
            (MemoryEvent::Add, None, Some("Uses Slack")),
            (MemoryEvent::Delete, Some("Uses Slack"), None),
        ]
    );

    // The chat agent's hints are facts too.
    let hinted = memory
        .update(
            Brain::Offline,
            &scope,
            &[user("ok")],
            &["Prefers to be called Sammy".into()],
        )
        .await
        .expect("hints");
    assert_eq!(
        summary(&hinted),
        [(MemoryEvent::Add, None, Some("Prefers to be called Sammy"))]
    );
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn model_adds_updates_and_deletes_with_history(pool: PgPool) {
    let fake = FakeLlm::start(vec![
        facts_reply(&["Name is Alex", "Works as a product manager", "Uses Notion"]),
        Reply::tool_call(
            "final_result",
            json!({ "memory": [
                { "id": "0", "text": "Name is Alex", "event": "ADD", "old_memory": null },
                { "id": "1", "text": "Works as a product manager", "event": "ADD", "old_memory": null },
                { "id": "2", "text": "Uses Notion", "event": "ADD", "old_memory": null },
            ] }),
        ),
        facts_reply(&["Works as a design lead", "No longer uses Notion"]),
    ])
    .await;
    // The second decision answers by the ids it was shown, plus an invented
    // id, a uuid, and a fact already remembered.
    let fake = fake.with_fallback(|body| {
        let shown = shown_memories(body);
        let id = |text: &str| {
            shown
                .iter()
                .find(|(_, t)| t == text)
                .map(|(id, _)| id.clone())
                .unwrap_or_else(|| "missing".into())
        };
        Reply::tool_call(
            "final_result",
            json!({ "memory": [
                { "id": id("Works as a product manager"), "text": "Works as a design lead",
                  "event": "UPDATE", "old_memory": "Works as a product manager" },
                { "id": id("Uses Notion"), "text": "Uses Notion", "event": "DELETE", "old_memory": null },
                { "id": "17", "text": "Hacked", "event": "UPDATE", "old_memory": "whatever" },
                { "id": "9b2f7a44-5e0c-4d7e-8a3b-1f2e3d4c5b6a", "text": "Name is Alex", "event": "DELETE", "old_memory": null },
                { "id": "42", "text": "Name is Alex", "event": "ADD", "old_memory": null },
            ] }),
        )
    });
    let client = client(&fake);
    let memory = Memory::new(pool.clone(), Some(client.clone()));
    let recorder = recorder(&pool, client, "alex");
    let scope = Scope::user("alex");

    let changes = memory
        .update(
            brain(&recorder),
            &scope,
            &[
                assistant("Welcome! Tell me about yourself."),
                user("Hi, I'm Alex, a product manager. I plan everything in Notion."),
            ],
            &[],
        )
        .await
        .expect("first update");
    assert_eq!(
        summary(&changes),
        [
            (MemoryEvent::Add, None, Some("Name is Alex")),
            (MemoryEvent::Add, None, Some("Works as a product manager")),
            (MemoryEvent::Add, None, Some("Uses Notion")),
        ]
    );
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 2);
    let extraction = user_prompt(&requests[0].body);
    assert!(extraction.contains("user: Hi, I'm Alex"), "{extraction}");
    assert!(extraction.contains("assistant: Welcome!"), "{extraction}");
    assert!(user_prompt(&requests[1].body).contains("Current memory is empty."));
    let all = memory.all(&scope).await.expect("all");

    let changes = memory
        .update(
            brain(&recorder),
            &scope,
            &[user("I'm a design lead now, and I stopped using Notion.")],
            &[],
        )
        .await
        .expect("second update");
    assert_eq!(
        summary(&changes),
        [
            (
                MemoryEvent::Update,
                Some("Works as a product manager"),
                Some("Works as a design lead")
            ),
            (MemoryEvent::Delete, Some("Uses Notion"), None),
        ]
    );

    // The decision saw small integer ids, never the rows' uuids.
    let decision = &fake.chat_requests()[3].body;
    let shown = shown_memories(decision);
    assert!(!shown.is_empty());
    for (index, (id, _)) in shown.iter().enumerate() {
        assert_eq!(id, &index.to_string());
    }
    let sent = decision.to_string();
    assert!(!looks_like_uuid(&sent), "a uuid reached the model: {sent}");
    for record in &all {
        assert!(!sent.contains(&record.id.to_string()));
    }
    assert_eq!(
        shown_facts(decision),
        ["Works as a design lead", "No longer uses Notion"]
    );

    // The invented ids changed nothing; the name is still there, once.
    let live = memory.all(&scope).await.expect("all");
    assert_eq!(texts(&live), ["Name is Alex", "Works as a design lead"]);

    let role = memory
        .history(&scope, id_of(&all, "Works as a product manager"))
        .await
        .expect("history");
    let rows: Vec<_> = events(&role);
    assert_eq!(
        rows,
        [
            (
                MemoryEvent::Add,
                None,
                Some("Works as a product manager"),
                Some("memory.decide")
            ),
            (
                MemoryEvent::Update,
                Some("Works as a product manager"),
                Some("Works as a design lead"),
                Some("memory.decide")
            ),
        ]
    );
    let notion = memory
        .history(&scope, id_of(&all, "Uses Notion"))
        .await
        .expect("history");
    let rows: Vec<_> = notion
        .iter()
        .map(|h| (h.event, h.old_memory.as_deref(), h.new_memory.as_deref()))
        .collect();
    assert_eq!(
        rows,
        [
            (MemoryEvent::Add, None, Some("Uses Notion")),
            (MemoryEvent::Delete, Some("Uses Notion"), None),
        ]
    );

    // Every call went through the ledger; stored texts have embeddings.
    let agents = ledger_agents(&pool).await;
    let count = |name: &str| agents.iter().filter(|a| a.as_str() == name).count();
    assert_eq!(count("memory.extract"), 2, "{agents:?}");
    assert_eq!(count("memory.decide"), 2, "{agents:?}");
    assert!(count("memory.embed") >= 2, "{agents:?}");
    let dims: Vec<Option<i32>> = sqlx::query_scalar(
        "SELECT cardinality(embedding) FROM floe.memories WHERE deleted_at IS NULL ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .expect("dims");
    assert_eq!(dims, [Some(64), Some(64)]);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn no_facts_means_no_decision(pool: PgPool) {
    let fake = FakeLlm::start(vec![facts_reply(&[])]).await;
    let client = client(&fake);
    let memory = Memory::new(pool.clone(), Some(client.clone()));
    let recorder = recorder(&pool, client, "alex");
    let changes = memory
        .update(brain(&recorder), &Scope::user("alex"), &[user("Hi!")], &[])
        .await
        .expect("update");
    assert!(changes.is_empty());
    assert_eq!(fake.calls("/chat/completions"), 1);
    assert_eq!(fake.calls("/embeddings"), 0);

    // Nothing said, nothing hinted: no call at all.
    let changes = memory
        .update(brain(&recorder), &Scope::user("alex"), &[], &[])
        .await
        .expect("update");
    assert!(changes.is_empty());
    assert_eq!(fake.calls("/chat/completions"), 1);
}

const FIXTURE: [&str; 6] = [
    "Name is Alex",
    "Works as a product manager",
    "Wants to ship the beta by March",
    "Uses Notion and Linear for planning",
    "Struggles with too many meetings",
    "Works best in the morning",
];

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn search_ranks_the_relevant_fact_first(pool: PgPool) {
    let memory = Memory::new(pool.clone(), None);
    let scope = Scope::user("alex");
    let hints: Vec<String> = FIXTURE.iter().map(|f| (*f).to_owned()).collect();
    let added = memory
        .update(Brain::Offline, &scope, &[], &hints)
        .await
        .expect("seed");
    assert_eq!(added.len(), 6);

    let tools = memory
        .search(None, &scope, "which tools does the user use", 3, 0.0)
        .await
        .expect("search");
    assert_eq!(
        tools.first().map(|r| r.memory.as_str()),
        Some("Uses Notion and Linear for planning"),
        "{tools:?}"
    );
    assert!(tools[0].score > 0.0 && tools[0].score <= 1.0);

    let best = memory
        .search(None, &scope, "When does Alex work best?", 3, 0.0)
        .await
        .expect("search");
    assert_eq!(
        texts(&best)[0],
        "Works best in the morning",
        "{:?}",
        texts(&best)
    );
    assert!(best.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(best.len() <= 3);

    let meetings = memory
        .search(None, &scope, "meetings", 5, 0.5)
        .await
        .expect("search");
    assert_eq!(texts(&meetings), ["Struggles with too many meetings"]);
    assert!((meetings[0].score - 1.0).abs() < 1e-9);

    // Above the threshold only.
    let strict = memory
        .search(None, &scope, "which tools does the user use", 3, 0.9)
        .await
        .expect("search");
    assert!(strict.is_empty(), "{strict:?}");

    // Nothing to match on: the most recent memories.
    let recent = memory
        .search(None, &scope, "who am I?", 2, 0.5)
        .await
        .expect("search");
    assert_eq!(recent.len(), 2);
    assert!(recent.iter().all(|r| r.score == 0.0));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn search_blends_embeddings_with_full_text(pool: PgPool) {
    let fake = FakeLlm::start(Vec::new())
        .await
        .with_fallback(adds_everything);
    let client = client(&fake);
    let memory = Memory::new(pool.clone(), Some(client.clone()));
    let recorder = recorder(&pool, client, "alex");
    let scope = Scope::user("alex");
    let stored = ["Used Notion daily before", "Uses notion", "Name is Alex"];
    let hints: Vec<String> = stored.iter().map(|f| (*f).to_owned()).collect();
    let added = memory
        .update(brain(&recorder), &scope, &[], &hints)
        .await
        .expect("seed");
    assert_eq!(added.len(), 3);

    let query = "uses notion daily";
    // Full text alone: the memory holding all three words comes first.
    let text_only = memory
        .search(None, &scope, query, 5, 0.0)
        .await
        .expect("search");
    assert_eq!(
        texts(&text_only)[..2],
        ["Used Notion daily before", "Uses notion"]
    );
    assert!((text_only[0].score - 1.0).abs() < 1e-9);

    // Blended: the memory whose words are the query's wins.
    let blended = memory
        .search(Some(&recorder), &scope, query, 5, 0.0)
        .await
        .expect("search");
    assert_eq!(
        texts(&blended)[..2],
        ["Uses notion", "Used Notion daily before"]
    );
    let cosine = |a: &str| {
        let (x, y) = (fake_embedding(query), fake_embedding(a));
        let dot: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        dot.max(0.0)
    };
    let expected = 0.3 * (2.0 / 3.0) + 0.7 * cosine("Uses notion");
    assert!(
        (blended[0].score - expected).abs() < 1e-4,
        "{} vs {expected}",
        blended[0].score
    );
    let expected = 0.3 * 1.0 + 0.7 * cosine("Used Notion daily before");
    assert!((blended[1].score - expected).abs() < 1e-4);

    // The query's embedding went through the ledger.
    let agents = ledger_agents(&pool).await;
    assert_eq!(agents.last().map(String::as_str), Some("memory.embed"));

    // Embeddings down: search degrades to full text.
    fake.fail_embeddings(Some(500));
    let degraded = memory
        .search(Some(&recorder), &scope, query, 5, 0.0)
        .await
        .expect("search");
    assert_eq!(texts(&degraded), texts(&text_only));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn scopes_never_leak_between_users(pool: PgPool) {
    let memory = Memory::new(pool.clone(), None);
    let a = Scope::user("user-a");
    let b = Scope::user("user-b");
    let said = [user("My name is Alex. I use Notion.")];
    memory
        .update(Brain::Offline, &a, &said, &[])
        .await
        .expect("a");
    memory
        .update(Brain::Offline, &b, &said, &[])
        .await
        .expect("b");
    let a_all = memory.all(&a).await.expect("a");
    let b_all = memory.all(&b).await.expect("b");
    assert_eq!(texts(&a_all), ["Name is Alex", "Uses Notion"]);
    assert_eq!(texts(&b_all), ["Name is Alex", "Uses Notion"]);
    assert!(a_all.iter().all(|r| b_all.iter().all(|s| s.id != r.id)));

    let found = memory
        .search(None, &b, "notion", 10, 0.0)
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id_of(&b_all, "Uses Notion"));

    // B drops Notion and changes name: A's memories stay as they were.
    let changes = memory
        .update(
            Brain::Offline,
            &b,
            &[user("I'm Bea. I stopped using Notion.")],
            &[],
        )
        .await
        .expect("b update");
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|c| b_all.iter().any(|r| r.id == c.id)));
    assert_eq!(memory.all(&a).await.expect("a"), a_all);
    assert!(
        memory
            .history(&b, id_of(&a_all, "Uses Notion"))
            .await
            .expect("history")
            .is_empty(),
        "B reads A's history"
    );

    // The model brain of B is shown none of A's memories.
    let fake = FakeLlm::start(vec![facts_reply(&["Uses Notion", "Name is Alex"])])
        .await
        .with_fallback(adds_everything);
    let client = client(&fake);
    let recorder = recorder(&pool, client, "user-c");
    let c = Scope::user("user-c");
    let changes = memory
        .update(
            brain(&recorder),
            &c,
            &[user("I'm Alex and I use Notion")],
            &[],
        )
        .await
        .expect("c update");
    assert_eq!(changes.len(), 2);
    let decision = &fake.chat_requests()[1].body;
    assert!(user_prompt(decision).contains("Current memory is empty."));
    assert_eq!(memory.all(&a).await.expect("a"), a_all);

    // Agents narrow a user's scope; the user level sees them all.
    let greeter = Scope::user("user-a").agent("greeter");
    memory
        .update(Brain::Offline, &greeter, &[], &["Likes green tea".into()])
        .await
        .expect("greeter");
    let tea = |scope: Scope| {
        let memory = memory.clone();
        async move {
            memory
                .search(None, &scope, "green tea", 10, 0.0)
                .await
                .expect("search")
                .len()
        }
    };
    assert_eq!(tea(Scope::user("user-a")).await, 1);
    assert_eq!(tea(Scope::user("user-a").agent("greeter")).await, 1);
    assert_eq!(tea(Scope::user("user-a").agent("discovery")).await, 0);
    assert_eq!(tea(Scope::user("user-b")).await, 0);

    // Forgetting B forgets nothing of A's.
    let deleted = memory.delete_all(&b).await.expect("delete all");
    assert_eq!(
        summary(&deleted),
        [(MemoryEvent::Delete, Some("Name is Bea"), None)]
    );
    assert!(memory.all(&b).await.expect("b").is_empty());
    assert_eq!(memory.all(&a).await.expect("a").len(), 3);
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn an_empty_user_is_refused(pool: PgPool) {
    let memory = Memory::new(pool, None);
    let error = memory
        .search(None, &Scope::user(" "), "x", 5, 0.0)
        .await
        .expect_err("empty user");
    assert!(!error.retryable());
    let error = memory
        .all(&Scope::user("a").agent(""))
        .await
        .expect_err("empty agent");
    assert!(error.to_string().contains("agent_id"));
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn native_structured_output_works_too(pool: PgPool) {
    // Native JSON-schema answers; a model writing numeric ids is understood.
    let fake = FakeLlm::start(vec![
        Reply::json(json!({ "facts": ["Uses Notion"] })),
        Reply::json(json!({ "memory": [
            { "id": 0, "text": "Uses Notion", "event": "ADD", "old_memory": null },
        ] })),
    ])
    .await;
    let client = client(&fake);
    let memory = Memory::new(pool.clone(), None);
    let recorder = recorder(&pool, client, "alex");
    let native = Brain::Llm {
        recorder: &recorder,
        mode: OutputMode::Native,
        strict: true,
        retries: 1,
    };
    let changes = memory
        .update(native, &Scope::user("alex"), &[user("I use Notion")], &[])
        .await
        .expect("update");
    assert_eq!(
        summary(&changes),
        [(MemoryEvent::Add, None, Some("Uses Notion"))]
    );
    let request = &fake.chat_requests()[1].body;
    assert_eq!(request["response_format"]["type"], "json_schema");
}

/// A history row as (event, old text, new text, actor).
type Event<'a> = (
    MemoryEvent,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

/// A history as rows.
fn events(history: &[HistoryEntry]) -> Vec<Event<'_>> {
    history
        .iter()
        .map(|h| {
            (
                h.event,
                h.old_memory.as_deref(),
                h.new_memory.as_deref(),
                h.actor.as_deref(),
            )
        })
        .collect()
}
