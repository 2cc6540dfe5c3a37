//! floe's own LLM-layer workloads (beyond BENCH.md's list): what the ledger
//! and memory cost per turn, against the fake OpenAI-compatible server so
//! that the figures are floe's, not a model's.
//!
//! - **L1** agent turns (the Greeter through the real client over loopback
//!   HTTP): latency without the ledger, with it (a recorded call), and
//!   replayed from it (a retry after a crash: no model call); WAL per
//!   recorded call.
//! - **L2** memory: search among 500 memories of one user (of 10,000 rows
//!   over 20 users), full text and blended with embeddings; an offline
//!   update (extract, decide, apply with history) per exchange.

use std::sync::Arc;
use std::time::Instant;

use floe_agents::llm::ledger::{CallSite, Recorder};
use floe_agents::llm::openai::OpenAiClient;
use floe_agents::llm::{ChatModel, Embedder};
use floe_agents::memory::{Brain, Memory, Scope};
use floe_agents::onboarding::contract::{AgentInput, ChatTurn, Speaker};
use floe_agents::onboarding::{AgentOptions, run_turn};
use floe_agents::testing::{FakeLlm, Reply, fake_embedding};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Bench, counters, percentile};

/// The Greeter's input for `user`.
fn greeter_input(user: &str) -> anyhow::Result<AgentInput> {
    Ok(serde_json::from_value(json!({
        "agent_type": "greeter",
        "user_message": "Hi, I'm Alex",
        "context": { "user_id": user, "trigger_type": "user_message", "current_step": "greeting" },
    }))?)
}

/// Every request answered with a valid Greeter output.
async fn fake_model() -> FakeLlm {
    FakeLlm::start(Vec::new()).await.with_fallback(|_| {
        Reply::tool_call(
            "final_result",
            json!({
                "message": "Nice to meet you, Alex! What do you do for work?",
                "name": "Alex", "preferred_name": "Alex", "step_completed": true,
                "memory_updates": ["Name is Alex"],
            }),
        )
    })
}

impl Bench {
    /// L1: agent turns without the ledger, recorded, and replayed.
    pub(crate) async fn llm_turns(&mut self, turns: usize, rep: usize) -> anyhow::Result<()> {
        let (_, pool) = self.database(&format!("bench_l1_{rep}")).await?;
        let fake = fake_model().await;
        let model: Arc<dyn ChatModel> = Arc::new(
            OpenAiClient::builder(fake.base_url())
                .model("fake")
                .build()?,
        );
        let options = AgentOptions::default();
        let input = greeter_input("bench-user")?;
        let sites: Vec<CallSite> = (0..turns)
            .map(|_| CallSite {
                workflow_id: Some(Uuid::now_v7()),
                activity_id: Some("turn".into()),
                attempt: Some(1),
                user_id: Some("bench-user".into()),
            })
            .collect();
        // Warm the connection pool and the server.
        run_turn(
            Some(&Recorder::unrecorded(model.clone())),
            &options,
            &input,
            None,
        )
        .await?;

        let mut plain = Vec::with_capacity(turns);
        for _ in 0..turns {
            let recorder = Recorder::unrecorded(model.clone());
            let t = Instant::now();
            run_turn(Some(&recorder), &options, &input, None).await?;
            plain.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (_, wal0) = counters(&pool).await?;
        let mut recorded = Vec::with_capacity(turns);
        for site in &sites {
            let recorder = Recorder::new(model.clone(), pool.clone(), site.clone());
            let t = Instant::now();
            run_turn(Some(&recorder), &options, &input, None).await?;
            recorded.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (_, wal1) = counters(&pool).await?;
        let calls_before = fake.calls("/chat/completions");
        let mut replayed = Vec::with_capacity(turns);
        for site in &sites {
            let retry = CallSite {
                attempt: Some(2),
                ..site.clone()
            };
            let recorder = Recorder::new(model.clone(), pool.clone(), retry);
            let t = Instant::now();
            run_turn(Some(&recorder), &options, &input, None).await?;
            replayed.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let model_calls = fake.calls("/chat/completions") - calls_before;
        let extra = json!({ "rep": rep, "turns": turns });
        let (p_plain, p_recorded) = (
            percentile(&mut plain, 50.0),
            percentile(&mut recorded, 50.0),
        );
        for (metric, value, unit) in [
            ("turn p50, no ledger", p_plain, "ms"),
            ("turn p95, no ledger", percentile(&mut plain, 95.0), "ms"),
            ("turn p50, recorded", p_recorded, "ms"),
            ("turn p95, recorded", percentile(&mut recorded, 95.0), "ms"),
            (
                "ledger cost per turn (p50 difference)",
                p_recorded - p_plain,
                "ms",
            ),
            (
                "WAL per recorded call",
                (wal1 - wal0) as f64 / turns as f64,
                "B",
            ),
            (
                "turn p50, replayed from the ledger",
                percentile(&mut replayed, 50.0),
                "ms",
            ),
            ("model calls while replaying", model_calls as f64, "calls"),
        ] {
            self.record("L1", metric, value, unit, extra.clone());
        }
        pool.close().await;
        Ok(())
    }

    /// L2: memory search and offline update.
    pub(crate) async fn memory(&mut self, queries: usize, rep: usize) -> anyhow::Result<()> {
        const USERS: i32 = 20;
        const PER_USER: i32 = 500;
        let (_, pool) = self.database(&format!("bench_l2_{rep}")).await?;
        seed_memories(&pool, USERS, PER_USER).await?;
        let fake = fake_model().await;
        let client = Arc::new(
            OpenAiClient::builder(fake.base_url())
                .model("fake")
                .embedding_model("fake-embed")
                .build()?,
        );
        let scope = Scope::user("user-0");
        let topics = [
            "tools",
            "morning routine",
            "project deadlines",
            "team meetings",
            "reading",
        ];
        let query = |i: usize| format!("what does the user say about {}", topics[i % topics.len()]);

        let text_only = Memory::new(pool.clone(), None);
        let mut text = Vec::with_capacity(queries);
        for i in 0..queries {
            let t = Instant::now();
            text_only.search(None, &scope, &query(i), 10, 0.0).await?;
            text.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let embedder: Arc<dyn Embedder> = client.clone();
        let blended_memory = Memory::new(pool.clone(), Some(embedder));
        let recorder = Recorder::unrecorded(client.clone());
        let mut blended = Vec::with_capacity(queries);
        for i in 0..queries {
            let t = Instant::now();
            blended_memory
                .search(Some(&recorder), &scope, &query(i), 10, 0.0)
                .await?;
            blended.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let mut updates = Vec::with_capacity(queries);
        for i in 0..queries {
            let exchange = [
                ChatTurn {
                    role: Speaker::Assistant,
                    content: "Which tools do you use?".into(),
                },
                ChatTurn {
                    role: Speaker::User,
                    content: format!("I use Tool{i} and my goal is to ship feature {i}."),
                },
            ];
            let t = Instant::now();
            text_only
                .update(Brain::Offline, &Scope::user("user-1"), &exchange, &[])
                .await?;
            updates.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let extra = json!({ "rep": rep, "queries": queries, "memories": USERS * PER_USER, "per_user": PER_USER });
        for (metric, value) in [
            ("search p50, full text", percentile(&mut text, 50.0)),
            ("search p95, full text", percentile(&mut text, 95.0)),
            (
                "search p50, blended with embeddings",
                percentile(&mut blended, 50.0),
            ),
            (
                "search p95, blended with embeddings",
                percentile(&mut blended, 95.0),
            ),
            ("offline update p50", percentile(&mut updates, 50.0)),
            ("offline update p95", percentile(&mut updates, 95.0)),
        ] {
            self.record("L2", metric, value, "ms", extra.clone());
        }
        pool.close().await;
        Ok(())
    }
}

/// `users` × `per_user` memories from a small vocabulary, each with its
/// fake embedding.
async fn seed_memories(pool: &PgPool, users: i32, per_user: i32) -> anyhow::Result<()> {
    let subjects = [
        "Uses Notion for notes",
        "Prefers deep work in the morning",
        "Has team meetings on Mondays",
        "Reads about product design",
        "Tracks project deadlines in Linear",
        "Works as a product manager",
        "Wants to exercise before work",
        "Struggles with email overload",
        "Plans the week on Sunday",
        "Uses Slack with the team",
    ];
    let (mut user_ids, mut texts, mut vectors) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..users {
        for i in 0..per_user {
            let text = format!("{} ({i})", subjects[i as usize % subjects.len()]);
            vectors.push(serde_json::to_value(fake_embedding(&text))?);
            texts.push(text);
            user_ids.push(format!("user-{u}"));
        }
    }
    sqlx::query(
        "INSERT INTO floe.memories (user_id, memory, embedding)
         SELECT u, m, ARRAY(SELECT jsonb_array_elements_text(e)::real)
         FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS t(u, m, e)",
    )
    .bind(&user_ids)
    .bind(&texts)
    .bind(&vectors)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE floe.memories").execute(pool).await?;
    Ok(())
}
