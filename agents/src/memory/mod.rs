//! User memory: Mem0's algorithm on Postgres (`floe.memories`,
//! `floe.memory_history`).
//!
//! | module      | responsibility                                                    |
//! |-------------|-------------------------------------------------------------------|
//! | this module | the API: [`Memory`] (search, update, history), its types, errors  |
//! | `prompts`   | the two model calls, `memory.extract` and `memory.decide`         |
//! | `offline`   | their deterministic twin: English patterns and fixed rules        |
//! | `store`     | every SQL statement on the two tables                             |
//!
//! # Update (Mem0's `add`)
//!
//! [`Memory::update`] turns the latest exchange of a conversation into
//! memory changes:
//!
//! 1. **Extract.** One model call (`memory.extract`) lists the facts worth
//!    remembering about the user (`{"facts": [...]}`); the chat agent's own
//!    suggestions (its `memory_updates`, the `hints`) join them. No facts: no
//!    further call, no change.
//! 2. **Retrieve.** For each fact, the 5 most similar live memories of the
//!    scope ([`Memory::search`]'s ranking); the union of them is shown to the
//!    next call with small integer ids (`"0"`, `"1"`, ...) in place of their
//!    uuids, which models garble or invent.
//! 3. **Decide.** One model call (`memory.decide`) answers, for every old
//!    memory and new fact, ADD, UPDATE, DELETE or NONE
//!    (`{"memory": [{"id", "text", "event", "old_memory"}]}`).
//! 4. **Apply.** Ids are mapped back; an UPDATE or DELETE of an id that was
//!    not shown is ignored with a warning (an ADD gets a fresh uuid whatever
//!    its id). Embeddings of the new texts are computed first; then all
//!    changes and their history rows (old and new text) commit in one
//!    transaction, under a per-user lock.
//!
//! The [`Brain::Offline`] update makes no model call: `offline` extracts
//! facts with English patterns, compares them with every live memory of the
//! scope (there is no context window to spare it), and decides by fixed
//! rules (a new name or role UPDATEs the old one, "I no longer use X" DELETEs
//! "Uses X", the rest is ADDed), through the same id mapping and the same
//! transaction.
//!
//! # Search
//!
//! The score of a live memory for a query, in `[0, 1]`:
//!
//! - `text` = the share of the query's lexemes (English stemming, stop
//!   words dropped) that the memory contains. A memory must share at least
//!   one to be a full-text candidate (an OR of the lexemes; `plainto_tsquery`
//!   would AND them and miss most facts). `ts_rank` (length-normalized)
//!   breaks ties: raw `ts_rank` of an OR query is tiny (≈ 0.02 for one word
//!   of three) even normalized with `rank/(rank+1)`, so it cannot take a
//!   threshold or be blended with a cosine.
//! - With an embedder and a recorder, the query is embedded too and
//!   `score = 0.3 × text + 0.7 × max(cosine, 0)` for memories with an
//!   embedding of the same length (every live memory of the scope is then a
//!   candidate); a memory without one scores `text`.
//!
//! Results score above 0 and at least `threshold`, best first (then newer
//! first). A query without lexemes (empty, or stop words only like "who am
//! I") and without an embedding returns the most recently updated memories,
//! score 0, threshold not applied: something to ground a reply in beats
//! nothing.
//!
//! # Scopes
//!
//! Every read and write names a [`Scope`]. A read filters on the ids the
//! scope gives, as Mem0 does: a user-level scope (no agent, no run) sees all
//! of the user's memories, an agent scope sees that agent's (of any run). A
//! write stores the scope's exact ids. A scope never spans users: every
//! statement filters on `user_id`, updates and deletes included.

mod offline;
mod prompts;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::agent::AgentError;
use crate::llm::Embedder;
use crate::llm::ledger::{CallError, Recorder};
use crate::onboarding::contract::ChatTurn;
use crate::settings::{LlmSettings, OutputMode};
use prompts::{Decision, Event, Shown};

/// Similar memories retrieved per fact for the decision (Mem0's 5).
const SIMILAR_PER_FACT: i64 = 5;

/// The ledger's agent name for embedding calls.
const EMBED: &str = "memory.embed";

/// The history's actor for the offline twin's decisions.
const OFFLINE: &str = "offline";

/// The history's actor for [`Memory::delete_all`].
const DELETE_ALL: &str = "delete_all";

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The database failed.
    #[error("memory store: {0}")]
    Database(#[from] sqlx::Error),
    /// An embedding call failed.
    #[error("memory embeddings: {0}")]
    Call(#[from] CallError),
    /// The extraction or decision agent failed.
    #[error("memory: {0}")]
    Agent(#[from] AgentError),
    /// The embedder answered with the wrong number of vectors.
    #[error("memory embeddings: {got} vectors for {expected} texts")]
    Embeddings {
        /// Texts sent.
        expected: usize,
        /// Vectors received.
        got: usize,
    },
    /// The scope names no user, or an empty agent or run.
    #[error("invalid memory scope: {0}")]
    InvalidScope(String),
}

impl MemoryError {
    /// Whether another attempt may succeed: database and model failures
    /// usually pass (a rejected request, a constraint violation or a bad
    /// scope do not).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(e)) => {
                // Class 22 (data exception), 23 (integrity constraint).
                !e.code()
                    .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
            }
            Self::Database(_) => true,
            Self::Call(e) => e.retryable(),
            Self::Agent(e) => e.retryable(),
            Self::Embeddings { .. } => true,
            Self::InvalidScope(_) => false,
        }
    }

    /// Whether the failure was about what the model said: the activity
    /// should abandon its recorded answers before retrying.
    pub fn is_output_failure(&self) -> bool {
        match self {
            Self::Agent(e) => e.is_output_failure(),
            Self::Embeddings { .. } => true,
            _ => false,
        }
    }
}

/// Results of memory operations.
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

/// Whose memories: a user's, optionally narrowed to one agent and one run.
///
/// Reads see the memories matching the ids given (a user-level scope sees
/// all of the user's); writes store exactly these ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// The user (required, never empty).
    pub user_id: String,
    /// The agent, or none for the user level.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The run (a conversation, a workflow), or none.
    #[serde(default)]
    pub run_id: Option<String>,
}

impl Scope {
    /// The user-level scope of `user_id`.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            agent_id: None,
            run_id: None,
        }
    }

    /// Narrowed to `agent_id`.
    pub fn agent(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// Narrowed to `run_id`.
    pub fn run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    fn check(&self) -> Result<()> {
        if self.user_id.trim().is_empty() {
            return Err(MemoryError::InvalidScope("user_id is empty".into()));
        }
        for (name, id) in [("agent_id", &self.agent_id), ("run_id", &self.run_id)] {
            if id.as_deref().is_some_and(|id| id.trim().is_empty()) {
                return Err(MemoryError::InvalidScope(format!(
                    "{name} is empty (leave it out for the user level)"
                )));
            }
        }
        Ok(())
    }
}

/// A remembered fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// Its id.
    pub id: Uuid,
    /// The agent it belongs to (none: the user level).
    pub agent_id: Option<String>,
    /// The run it belongs to.
    pub run_id: Option<String>,
    /// The fact ("Uses Notion").
    pub memory: String,
    /// Free-form metadata (`category` from the offline twin).
    pub metadata: Value,
    /// Relevance to the query in `[0, 1]` (see the module doc); 0 outside
    /// search.
    pub score: f64,
    /// When it was first remembered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its text last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What happened to a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MemoryEvent {
    /// A new fact was remembered.
    Add,
    /// A fact was rewritten.
    Update,
    /// A fact was forgotten (soft-deleted).
    Delete,
}

impl MemoryEvent {
    /// Its name in `floe.memory_history.event`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

impl fmt::Display for MemoryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MemoryEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ADD" => Ok(Self::Add),
            "UPDATE" => Ok(Self::Update),
            "DELETE" => Ok(Self::Delete),
            other => Err(format!("unknown memory event {other:?}")),
        }
    }
}

/// One change an update made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryChange {
    /// The memory.
    pub id: Uuid,
    /// What happened.
    pub event: MemoryEvent,
    /// Its text before (none for an ADD).
    pub old_memory: Option<String>,
    /// Its text after (none for a DELETE).
    pub new_memory: Option<String>,
}

/// One row of a memory's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Its id (increasing: history is ordered by it).
    pub id: i64,
    /// The memory.
    pub memory_id: Uuid,
    /// What happened.
    pub event: MemoryEvent,
    /// The text before (none for an ADD).
    pub old_memory: Option<String>,
    /// The text after (none for a DELETE).
    pub new_memory: Option<String>,
    /// Who decided: `memory.decide` (the model), `offline`, `delete_all`.
    pub actor: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Who decides what to remember.
#[derive(Debug, Clone, Copy)]
pub enum Brain<'a> {
    /// The model, through the activity's recorder (two calls per update:
    /// `memory.extract`, `memory.decide`).
    Llm {
        /// Records (and replays) the calls.
        recorder: &'a Recorder,
        /// How the agents ask for their typed output.
        mode: OutputMode,
        /// Strict JSON schemas.
        strict: bool,
        /// Output retries per agent run.
        retries: u32,
    },
    /// The deterministic offline twin: no model, no embeddings.
    Offline,
}

impl<'a> Brain<'a> {
    /// The model brain with the output settings of `settings`.
    pub fn llm(recorder: &'a Recorder, settings: &LlmSettings) -> Self {
        Self::Llm {
            recorder,
            mode: settings.output_mode,
            strict: settings.strict,
            retries: settings.output_retries,
        }
    }

    fn recorder(&self) -> Option<&'a Recorder> {
        match self {
            Self::Llm { recorder, .. } => Some(recorder),
            Self::Offline => None,
        }
    }
}

/// [`Brain::Llm`]'s fields.
struct Model<'a> {
    recorder: &'a Recorder,
    mode: OutputMode,
    strict: bool,
    retries: u32,
}

/// A memory as the decision sees it: its small id, its row, and (offline)
/// what it is about.
struct Old {
    shown_id: String,
    id: Uuid,
    text: String,
    metadata: Value,
}

/// A decision, mapped back to rows.
#[derive(Debug)]
enum Op {
    Add {
        text: String,
        metadata: Value,
    },
    Update {
        id: Uuid,
        text: String,
        metadata: Value,
    },
    Delete {
        id: Uuid,
    },
}

/// Users' memories: search and Mem0-style updates.
#[derive(Clone)]
pub struct Memory {
    pool: PgPool,
    embedder: Option<Arc<dyn Embedder>>,
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("embedder", &self.embedder.as_ref().map(|e| e.model_name()))
            .finish_non_exhaustive()
    }
}

impl Memory {
    /// Memory in `pool`; with an `embedder`, search blends cosine similarity
    /// of embeddings with full text (embedding calls go through the
    /// recorder, so only model-backed updates and searches embed).
    pub fn new(pool: PgPool, embedder: Option<Arc<dyn Embedder>>) -> Self {
        Self { pool, embedder }
    }

    /// The live memories of `scope` most relevant to `query`, best first: at
    /// most `limit`, each scoring at least `threshold` (see the module doc
    /// for the score). The query is embedded through `recorder` when there
    /// is an embedder; when that fails, the search degrades to full text.
    #[tracing::instrument(skip_all, fields(user_id = %scope.user_id, limit), err)]
    pub async fn search(
        &self,
        recorder: Option<&Recorder>,
        scope: &Scope,
        query: &str,
        limit: usize,
        threshold: f64,
    ) -> Result<Vec<MemoryRecord>> {
        scope.check()?;
        let query = query.trim();
        let embedding = match (recorder, query.is_empty()) {
            (Some(recorder), false) => {
                let texts = [query.to_owned()];
                match self.embed(recorder, &texts).await {
                    Ok(Some(mut vectors)) => vectors.pop(),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(user_id = %scope.user_id, error = %e,
                            "memory search: query embedding failed; full text only");
                        None
                    }
                }
            }
            _ => None,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(store::search(
            &self.pool,
            scope,
            query,
            embedding.as_deref(),
            limit,
            threshold,
        )
        .await?)
    }

    /// Every live memory of `scope`, oldest first.
    pub async fn all(&self, scope: &Scope) -> Result<Vec<MemoryRecord>> {
        scope.check()?;
        Ok(store::all(&self.pool, scope).await?)
    }

    /// What happened to memory `id`, oldest first; empty when it is not in
    /// `scope`. A deleted memory keeps its history.
    pub async fn history(&self, scope: &Scope, id: Uuid) -> Result<Vec<HistoryEntry>> {
        scope.check()?;
        Ok(store::history(&self.pool, scope, id).await?)
    }

    /// Forgets every live memory of `scope` (soft delete, with history).
    #[tracing::instrument(skip_all, fields(user_id = %scope.user_id), err)]
    pub async fn delete_all(&self, scope: &Scope) -> Result<Vec<MemoryChange>> {
        scope.check()?;
        let mut tx = self.pool.begin().await?;
        store::lock_user(&mut *tx, &scope.user_id).await?;
        let changes = store::delete_all(&mut *tx, scope, DELETE_ALL).await?;
        tx.commit().await?;
        tracing::info!(user_id = %scope.user_id, deleted = changes.len(), "memories deleted");
        Ok(changes)
    }

    /// Mem0's add: remembers what the latest `exchange` (and the chat
    /// agent's `hints`) says about the user, adding, rewriting and
    /// forgetting memories of `scope` (see the module doc). Returns the
    /// changes made, in order; facts already remembered change nothing.
    #[tracing::instrument(skip_all, fields(user_id = %scope.user_id, brain = brain_name(&brain)), err)]
    pub async fn update(
        &self,
        brain: Brain<'_>,
        scope: &Scope,
        exchange: &[ChatTurn],
        hints: &[String],
    ) -> Result<Vec<MemoryChange>> {
        scope.check()?;
        let (ops, actor, embeddings) = match brain {
            Brain::Llm {
                recorder,
                mode,
                strict,
                retries,
            } => {
                let model = Model {
                    recorder,
                    mode,
                    strict,
                    retries,
                };
                let (ops, embeddings) = self
                    .decide_with_model(&model, scope, exchange, hints)
                    .await?;
                (ops, prompts::DECIDE, embeddings)
            }
            Brain::Offline => (
                self.decide_offline(scope, exchange, hints).await?,
                OFFLINE,
                HashMap::new(),
            ),
        };
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let embeddings = self
            .embed_new_texts(brain.recorder(), &ops, embeddings)
            .await?;
        let changes = self.apply(scope, &ops, &embeddings, actor).await?;
        tracing::info!(
            user_id = %scope.user_id,
            added = changes.iter().filter(|c| c.event == MemoryEvent::Add).count(),
            updated = changes.iter().filter(|c| c.event == MemoryEvent::Update).count(),
            deleted = changes.iter().filter(|c| c.event == MemoryEvent::Delete).count(),
            "memory updated"
        );
        Ok(changes)
    }

    /// Steps 1–3 with the model; also returns the facts' embeddings.
    async fn decide_with_model(
        &self,
        model: &Model<'_>,
        scope: &Scope,
        exchange: &[ChatTurn],
        hints: &[String],
    ) -> Result<(Vec<Op>, HashMap<String, Vec<f32>>)> {
        let mut facts = Vec::new();
        if exchange.iter().any(|t| !t.content.trim().is_empty()) {
            let run = prompts::extractor(model.mode, model.strict, model.retries)
                .run(
                    model.recorder,
                    &(),
                    Vec::new(),
                    &prompts::conversation(exchange),
                    None,
                )
                .await?;
            facts = run.output.facts;
        }
        facts.extend(hints.iter().cloned());
        let facts = unique_facts(facts);
        if facts.is_empty() {
            tracing::debug!(user_id = %scope.user_id, "no facts to remember");
            return Ok((Vec::new(), HashMap::new()));
        }

        let vectors = self.embed(model.recorder, &facts).await?;
        let mut embeddings = HashMap::new();
        let mut old: Vec<Old> = Vec::new();
        for (index, fact) in facts.iter().enumerate() {
            let vector = vectors.as_ref().and_then(|v| v.get(index)).cloned();
            let similar = store::search(
                &self.pool,
                scope,
                fact,
                vector.as_deref(),
                SIMILAR_PER_FACT,
                0.0,
            )
            .await?;
            if let Some(vector) = vector {
                embeddings.insert(fact.clone(), vector);
            }
            for record in similar {
                if !old.iter().any(|o| o.id == record.id) {
                    old.push(Old {
                        shown_id: old.len().to_string(),
                        id: record.id,
                        text: record.memory,
                        metadata: record.metadata,
                    });
                }
            }
        }

        let shown: Vec<Shown<'_>> = old
            .iter()
            .map(|o| Shown {
                id: o.shown_id.clone(),
                text: &o.text,
            })
            .collect();
        let run = prompts::decider(model.mode, model.strict, model.retries)
            .run(
                model.recorder,
                &(),
                Vec::new(),
                &prompts::decision_request(&shown, &facts),
                None,
            )
            .await?;
        let ops = resolve(
            scope,
            &old,
            run.output.memory.into_iter().map(|d| (d, None)),
        );
        Ok((ops, embeddings))
    }

    /// Steps 1–3 offline: patterns, every live memory of the scope, rules.
    async fn decide_offline(
        &self,
        scope: &Scope,
        exchange: &[ChatTurn],
        hints: &[String],
    ) -> Result<Vec<Op>> {
        let facts = offline::facts(exchange, hints);
        if facts.is_empty() {
            return Ok(Vec::new());
        }
        let old: Vec<Old> = store::all(&self.pool, scope)
            .await?
            .into_iter()
            .enumerate()
            .map(|(index, record)| Old {
                shown_id: index.to_string(),
                id: record.id,
                text: record.memory,
                metadata: record.metadata,
            })
            .collect();
        let known: Vec<offline::Known> = old
            .iter()
            .map(|o| offline::Known::new(o.shown_id.clone(), o.text.clone(), &o.metadata))
            .collect();
        let proposals = offline::decide(&known, &facts);
        let decisions = proposals.into_iter().map(|p| {
            (
                Decision {
                    id: p.id,
                    text: p.text,
                    event: p.event,
                    old_memory: None,
                },
                Some(p.metadata),
            )
        });
        Ok(resolve(scope, &old, decisions))
    }

    /// Embeddings of the texts `ops` write that are not in `known` yet (one
    /// call), when there is an embedder and a recorder.
    async fn embed_new_texts(
        &self,
        recorder: Option<&Recorder>,
        ops: &[Op],
        mut known: HashMap<String, Vec<f32>>,
    ) -> Result<HashMap<String, Vec<f32>>> {
        let Some(recorder) = recorder else {
            return Ok(known);
        };
        let mut missing: Vec<String> = Vec::new();
        for op in ops {
            if let Op::Add { text, .. } | Op::Update { text, .. } = op
                && !known.contains_key(text)
                && !missing.contains(text)
            {
                missing.push(text.clone());
            }
        }
        if missing.is_empty() {
            return Ok(known);
        }
        if let Some(vectors) = self.embed(recorder, &missing).await? {
            known.extend(missing.into_iter().zip(vectors));
        }
        Ok(known)
    }

    /// Step 4: the changes and their history, in one transaction.
    async fn apply(
        &self,
        scope: &Scope,
        ops: &[Op],
        embeddings: &HashMap<String, Vec<f32>>,
        actor: &str,
    ) -> Result<Vec<MemoryChange>> {
        let mut tx = self.pool.begin().await?;
        store::lock_user(&mut *tx, &scope.user_id).await?;
        let mut changes = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Add { text, metadata } => {
                    let embedding = embeddings.get(text).map(Vec::as_slice);
                    // Time-ordered ids keep the order of one update's additions.
                    let id = Uuid::now_v7();
                    match store::insert(&mut *tx, id, scope, text, metadata, embedding, actor)
                        .await?
                    {
                        Some(id) => changes.push(MemoryChange {
                            id,
                            event: MemoryEvent::Add,
                            old_memory: None,
                            new_memory: Some(text.clone()),
                        }),
                        None => tracing::debug!(user_id = %scope.user_id, memory = %text,
                            "already remembered; not added again"),
                    }
                }
                Op::Update { id, text, metadata } => {
                    let embedding = embeddings.get(text).map(Vec::as_slice);
                    let old = store::update(
                        &mut *tx,
                        &scope.user_id,
                        *id,
                        text,
                        metadata,
                        embedding,
                        actor,
                    )
                    .await?;
                    match old {
                        Some(old) => changes.push(MemoryChange {
                            id: *id,
                            event: MemoryEvent::Update,
                            old_memory: Some(old),
                            new_memory: Some(text.clone()),
                        }),
                        None => tracing::warn!(user_id = %scope.user_id, memory_id = %id,
                            "memory to update is gone (deleted meanwhile); skipped"),
                    }
                }
                Op::Delete { id } => {
                    match store::delete(&mut *tx, &scope.user_id, *id, actor).await? {
                        Some(old) => changes.push(MemoryChange {
                            id: *id,
                            event: MemoryEvent::Delete,
                            old_memory: Some(old),
                            new_memory: None,
                        }),
                        None => tracing::warn!(user_id = %scope.user_id, memory_id = %id,
                        "memory to delete is gone already; skipped"),
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(changes)
    }

    /// One embedding call for `texts` through `recorder`; `None` without an
    /// embedder.
    async fn embed(&self, recorder: &Recorder, texts: &[String]) -> Result<Option<Vec<Vec<f32>>>> {
        let Some(embedder) = &self.embedder else {
            return Ok(None);
        };
        if texts.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let embeddings = recorder.embed(embedder.as_ref(), EMBED, texts).await?;
        if embeddings.vectors.len() != texts.len() {
            return Err(MemoryError::Embeddings {
                expected: texts.len(),
                got: embeddings.vectors.len(),
            });
        }
        Ok(Some(embeddings.vectors))
    }
}

fn brain_name(brain: &Brain<'_>) -> &'static str {
    match brain {
        Brain::Llm { .. } => "llm",
        Brain::Offline => "offline",
    }
}

/// Trimmed, non-empty facts without case-insensitive repeats, in order.
fn unique_facts(facts: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    facts
        .into_iter()
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty() && seen.insert(f.to_lowercase()))
        .collect()
}

/// Maps decisions on shown ids back to rows (step 4's first half). NONE
/// changes nothing; an UPDATE or DELETE of an id that was not shown, an
/// empty text, or an UPDATE to the same text is dropped.
fn resolve(
    scope: &Scope,
    old: &[Old],
    decisions: impl IntoIterator<Item = (Decision, Option<Value>)>,
) -> Vec<Op> {
    let by_shown: HashMap<&str, &Old> = old.iter().map(|o| (o.shown_id.as_str(), o)).collect();
    let mut ops = Vec::new();
    for (decision, metadata) in decisions {
        let text = decision.text.trim().to_owned();
        let metadata = metadata.unwrap_or_else(|| Value::Object(Default::default()));
        match decision.event {
            Event::None => {}
            Event::Add if text.is_empty() => {
                tracing::warn!(user_id = %scope.user_id, "memory decision: ADD without text; ignored");
            }
            Event::Add => ops.push(Op::Add { text, metadata }),
            Event::Update | Event::Delete => {
                let Some(target) = by_shown.get(decision.id.trim()) else {
                    tracing::warn!(user_id = %scope.user_id, id = %decision.id, event = ?decision.event,
                        "memory decision names an id it was not shown; ignored");
                    continue;
                };
                if decision.event == Event::Delete {
                    ops.push(Op::Delete { id: target.id });
                } else if text.is_empty() {
                    tracing::warn!(user_id = %scope.user_id, id = %decision.id,
                        "memory decision: UPDATE without text; ignored");
                } else if text != target.text {
                    // The history keeps the stored text, whatever the model
                    // remembers of it.
                    if decision
                        .old_memory
                        .as_deref()
                        .is_some_and(|o| o.trim() != target.text)
                    {
                        tracing::debug!(user_id = %scope.user_id, id = %decision.id,
                            "memory decision misquotes the old text");
                    }
                    ops.push(Op::Update {
                        id: target.id,
                        text,
                        metadata,
                    });
                }
            }
        }
    }
    ops
}
