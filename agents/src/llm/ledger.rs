//! The LLM-call ledger (`floe.llm_calls`): every call recorded with its
//! request, response, tokens, latency, status and cost, and the replay
//! record of an activity's calls.
//!
//! A [`Recorder`] serves one activity attempt. It numbers the attempt's calls
//! (steps, from 0); before calling the model at a step it looks for an answer
//! an earlier attempt of the same activity recorded for the same step and
//! the same request, and returns that instead. So a worker killed half-way
//! through an agent's tool loop costs the retry no repeated calls: the
//! activity's code runs again, its calls are answered from the ledger up to
//! where the dead worker stopped. An attempt that fails on the answers'
//! content calls [`Recorder::abandon`] first, so its retry asks afresh.
//!
//! Tool calls are recorded the same way (`floe.tool_calls`, through
//! [`Recorder::tool`]): the n-th tool call of an attempt, with the same tool
//! and arguments as one an earlier attempt recorded, gets the recorded
//! result and the tool does not run again. Abandoning an attempt leaves its
//! tool results reusable: they are what the tools did, not what the model
//! said.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    ChatModel, ChatRequest, ChatResponse, Embedder, Embeddings, ModelError, Sinks, ToolCall, Usage,
};

/// Where calls are made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallSite {
    /// The workflow whose activity calls.
    pub workflow_id: Option<Uuid>,
    /// The activity's id within the workflow.
    pub activity_id: Option<String>,
    /// The activity attempt, from 1.
    pub attempt: Option<i32>,
    /// The user the call serves (for spend per user).
    pub user_id: Option<String>,
}

/// Why a recorded call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The ledger could not be read or written.
    #[error("LLM-call ledger: {0}")]
    Ledger(#[from] sqlx::Error),
    /// A recorded answer no longer decodes (written by an incompatible build).
    #[error("recorded answer does not decode: {0}")]
    Recorded(String),
}

impl CallError {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Model(e) => e.retryable(),
            Self::Ledger(_) => true,
            Self::Recorded(_) => false,
        }
    }
}

/// One call as the ledger stores it.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// Where from.
    pub site: &'a CallSite,
    /// Its place in the attempt.
    pub step: i32,
    /// Who asked.
    pub agent: &'a str,
    /// The model.
    pub model: &'a str,
    /// The request (floe's shape).
    pub request: Value,
    /// The answer, or why there is none.
    pub outcome: Result<Value, &'a ModelError>,
    /// Tokens used.
    pub usage: Usage,
    /// How long it took.
    pub latency_ms: i32,
}

/// Records one call; its cost comes from `floe.llm_prices`. Returns the
/// answer a concurrent attempt recorded first for this step and request,
/// when there is one (this call's answer is then not kept).
pub async fn record(pool: &PgPool, call: Call<'_>) -> sqlx::Result<Option<Value>> {
    let (status, response, error, http_status) = match &call.outcome {
        Ok(response) => ("ok", Some(response.clone()), None, None),
        Err(e) => (
            e.status(),
            None,
            Some(e.to_string()),
            e.http_status().map(i32::from),
        ),
    };
    let tokens_in = i32::try_from(call.usage.input_tokens).unwrap_or(i32::MAX);
    let tokens_out = i32::try_from(call.usage.output_tokens).unwrap_or(i32::MAX);
    let inserted = sqlx::query!(
        r#"INSERT INTO floe.llm_calls
               (workflow_id, activity_id, attempt, step, user_id, agent, model, request,
                response, status, http_status, error, tokens_in, tokens_out, latency_ms, cost_usd)
           SELECT $1, $2, $3, $4, $5, $6, $7::text, $8, $9, $10, $11, $12, $13::int4, $14::int4, $15,
                  ($13::int4 * p.input_usd_per_mtok + $14::int4 * p.output_usd_per_mtok) / 1000000
           FROM (SELECT 1) AS one
           LEFT JOIN floe.llm_prices p ON p.model = $7
           ON CONFLICT (workflow_id, activity_id, step, request_hash) WHERE status = 'ok' AND reusable
           DO NOTHING
           RETURNING id, cost_usd::float8 AS cost"#,
        call.site.workflow_id,
        call.site.activity_id,
        call.site.attempt,
        call.step,
        call.site.user_id,
        call.agent,
        call.model,
        call.request,
        response,
        status,
        http_status,
        error,
        tokens_in,
        tokens_out,
        call.latency_ms,
    )
    .fetch_optional(pool)
    .await?;
    // Metrics: the call happened either way; its cost is known once recorded.
    let labels = [
        ("model", call.model.to_owned()),
        ("agent", call.agent.to_owned()),
    ];
    let with = |extra: (&'static str, String)| {
        let mut l = labels.to_vec();
        l.push(extra);
        l
    };
    metrics::counter!(
        floe_engine::metrics::LLM_CALLS,
        &with(("status", status.to_owned()))
    )
    .increment(1);
    metrics::counter!(
        floe_engine::metrics::LLM_TOKENS,
        &with(("direction", "in".to_owned()))
    )
    .increment(u64::from(call.usage.input_tokens));
    metrics::counter!(
        floe_engine::metrics::LLM_TOKENS,
        &with(("direction", "out".to_owned()))
    )
    .increment(u64::from(call.usage.output_tokens));
    metrics::histogram!(floe_engine::metrics::LLM_CALL_DURATION, &labels)
        .record(f64::from(call.latency_ms.max(0)) / 1000.0);
    if let Some(cost) = inserted.as_ref().and_then(|r| r.cost) {
        metrics::counter!(floe_engine::metrics::LLM_COST, &labels)
            .increment((cost * 1e6).round() as u64);
    }
    match inserted {
        Some(_) => Ok(None),
        // A concurrent attempt recorded this step's answer first.
        None => recorded(pool, call.site, call.step, &call.request).await,
    }
}

/// The reusable answer recorded for `step` of the site's activity, if the
/// request was the same.
pub async fn recorded(
    pool: &PgPool,
    site: &CallSite,
    step: i32,
    request: &Value,
) -> sqlx::Result<Option<Value>> {
    let (Some(workflow_id), Some(activity_id)) = (site.workflow_id, site.activity_id.as_deref())
    else {
        return Ok(None);
    };
    sqlx::query_scalar!(
        r#"SELECT response AS "response!"
           FROM floe.llm_calls
           WHERE workflow_id = $1 AND activity_id = $2 AND step = $3
             AND request_hash = md5($4::jsonb::text) AND status = 'ok' AND reusable"#,
        workflow_id,
        activity_id,
        step,
        request,
    )
    .fetch_optional(pool)
    .await
}

/// Marks the answers recorded for the site's activity as not reusable.
pub async fn abandon(pool: &PgPool, site: &CallSite) -> sqlx::Result<u64> {
    let (Some(workflow_id), Some(activity_id)) = (site.workflow_id, site.activity_id.as_deref())
    else {
        return Ok(0);
    };
    let done = sqlx::query!(
        "UPDATE floe.llm_calls SET reusable = false
         WHERE workflow_id = $1 AND activity_id = $2 AND status = 'ok' AND reusable",
        workflow_id,
        activity_id,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// One tool call as the ledger stores it.
#[derive(Debug, Clone)]
pub struct ToolRun<'a> {
    /// Where from.
    pub site: &'a CallSite,
    /// Its place among the attempt's tool calls, from 0.
    pub seq: i32,
    /// The model call that asked for it.
    pub llm_step: Option<i32>,
    /// The agent whose tool it is.
    pub agent: &'a str,
    /// The model's call: id, tool, arguments.
    pub call: &'a ToolCall,
    /// What the tool answered, or why it refused.
    pub outcome: &'a Result<Value, String>,
    /// How long it took.
    pub latency_ms: i32,
}

/// Records one tool call. Returns the result a concurrent attempt recorded
/// first for this place, tool and arguments, when there is one (this call's
/// result is then not kept).
pub async fn record_tool(
    pool: &PgPool,
    run: ToolRun<'_>,
) -> sqlx::Result<Option<Result<Value, String>>> {
    let (Some(workflow_id), Some(activity_id)) =
        (run.site.workflow_id, run.site.activity_id.as_deref())
    else {
        return Ok(None);
    };
    let (status, result, error) = match run.outcome {
        Ok(value) => ("ok", Some(value), None),
        Err(e) => ("error", None, Some(e.as_str())),
    };
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO floe.tool_calls
               (workflow_id, activity_id, attempt, seq, llm_step, call_id, user_id, agent, tool,
                arguments, status, result, error, latency_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           ON CONFLICT (workflow_id, activity_id, seq, tool, arguments_hash) DO NOTHING
           RETURNING id"#,
        workflow_id,
        activity_id,
        run.site.attempt,
        run.seq,
        run.llm_step,
        run.call.id,
        run.site.user_id,
        run.agent,
        run.call.name,
        run.call.arguments,
        status,
        result,
        error,
        run.latency_ms,
    )
    .fetch_optional(pool)
    .await?;
    match inserted {
        Some(_) => Ok(None),
        // A concurrent attempt recorded this call's result first.
        None => recorded_tool(pool, run.site, run.seq, run.call).await,
    }
}

/// The result recorded for the `seq`-th tool call of the site's activity,
/// if it called the same tool with the same arguments.
pub async fn recorded_tool(
    pool: &PgPool,
    site: &CallSite,
    seq: i32,
    call: &ToolCall,
) -> sqlx::Result<Option<Result<Value, String>>> {
    let (Some(workflow_id), Some(activity_id)) = (site.workflow_id, site.activity_id.as_deref())
    else {
        return Ok(None);
    };
    let found = sqlx::query!(
        r#"SELECT result, error
           FROM floe.tool_calls
           WHERE workflow_id = $1 AND activity_id = $2 AND seq = $3 AND tool = $4
             AND arguments_hash = md5($5::text)"#,
        workflow_id,
        activity_id,
        seq,
        call.name,
        call.arguments,
    )
    .fetch_optional(pool)
    .await?;
    Ok(found.map(|row| match row.result {
        Some(value) => Ok(value),
        None => Err(row.error.unwrap_or_default()),
    }))
}

/// Sets the price of `model` in US dollars per million tokens.
pub async fn set_price(
    pool: &PgPool,
    model: &str,
    input_usd_per_mtok: f64,
    output_usd_per_mtok: f64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO floe.llm_prices (model, input_usd_per_mtok, output_usd_per_mtok)
         VALUES ($1, $2::float8::numeric, $3::float8::numeric)
         ON CONFLICT (model) DO UPDATE
         SET input_usd_per_mtok = excluded.input_usd_per_mtok,
             output_usd_per_mtok = excluded.output_usd_per_mtok, updated_at = now()",
        model,
        input_usd_per_mtok,
        output_usd_per_mtok,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A model whose calls are recorded, for one activity attempt (or, without
/// a ledger, not recorded at all: unit tests and tools).
pub struct Recorder {
    model: Arc<dyn ChatModel>,
    ledger: Option<(PgPool, CallSite)>,
    step: AtomicI32,
    /// Tool calls made (or replayed) so far in this attempt.
    tools: AtomicI32,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("model", &self.model.model_name())
            .field("site", &self.ledger.as_ref().map(|(_, site)| site))
            .field("step", &self.step)
            .field("tools", &self.tools)
            .finish()
    }
}

impl Recorder {
    /// Records `model`'s calls from `site` in `pool`'s ledger.
    pub fn new(model: Arc<dyn ChatModel>, pool: PgPool, site: CallSite) -> Self {
        Self {
            model,
            ledger: Some((pool, site)),
            step: AtomicI32::new(0),
            tools: AtomicI32::new(0),
        }
    }

    /// Calls `model` without recording anything.
    pub fn unrecorded(model: Arc<dyn ChatModel>) -> Self {
        Self {
            model,
            ledger: None,
            step: AtomicI32::new(0),
            tools: AtomicI32::new(0),
        }
    }

    /// The model's name.
    pub fn model_name(&self) -> &str {
        self.model.model_name()
    }

    /// Asks the model for its next message as `agent`, or returns the answer
    /// an earlier attempt recorded for this step and request. What the model
    /// streams goes to `stream` (a recorded answer streams nothing).
    pub async fn complete(
        &self,
        agent: &str,
        request: &ChatRequest,
        stream: Sinks<'_>,
    ) -> Result<ChatResponse, CallError> {
        let step = self.step.fetch_add(1, Ordering::Relaxed);
        let Some((pool, site)) = &self.ledger else {
            return Ok(self.model.complete_streamed(request, stream).await?);
        };
        let model = request
            .model
            .clone()
            .unwrap_or_else(|| self.model.model_name().to_owned());
        let mut request = request.clone();
        request.model = Some(model.clone());
        let request_json =
            serde_json::to_value(&request).map_err(|e| CallError::Recorded(e.to_string()))?;
        if let Some(answer) = recorded(pool, site, step, &request_json).await? {
            tracing::info!(agent, step, workflow_id = ?site.workflow_id, activity_id = ?site.activity_id,
                "LLM answer replayed from the ledger");
            // Streamed whole, so that what a person watches still ends
            // with the answer.
            let response = decode(answer)?;
            stream.whole(&response);
            return Ok(response);
        }
        let started = Instant::now();
        let outcome = self.model.complete_streamed(&request, stream).await;
        let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let (usage, response_json) = match &outcome {
            Ok(response) => (
                response.usage,
                Ok(serde_json::to_value(response)
                    .map_err(|e| CallError::Recorded(e.to_string()))?),
            ),
            Err(e) => (Usage::default(), Err(e)),
        };
        let call = Call {
            site,
            step,
            agent,
            model: &model,
            request: request_json,
            outcome: response_json,
            usage,
            latency_ms,
        };
        let kept = record(pool, call).await?;
        match (outcome, kept) {
            (Err(e), _) => Err(e.into()),
            // Another attempt's answer for this step was recorded first:
            // carry on from it so both attempts agree.
            (Ok(_), Some(first)) => decode(first),
            (Ok(response), None) => Ok(response),
        }
    }

    /// Embeds `inputs` with `embedder`, recording the call (as `agent`, with
    /// the vectors' count and size for a response: the vectors themselves
    /// are not kept, and an embedding is computed again on a retry).
    pub async fn embed(
        &self,
        embedder: &dyn Embedder,
        agent: &str,
        inputs: &[String],
    ) -> Result<Embeddings, CallError> {
        let step = self.step.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = embedder.embed(inputs).await;
        let Some((pool, site)) = &self.ledger else {
            return Ok(outcome?);
        };
        let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let (usage, response) = match &outcome {
            Ok(e) => (
                e.usage,
                Ok(serde_json::json!({
                    "vectors": e.vectors.len(),
                    "dimensions": e.vectors.first().map_or(0, Vec::len),
                })),
            ),
            Err(e) => (Usage::default(), Err(e)),
        };
        let call = Call {
            site,
            step,
            agent,
            model: embedder.model_name(),
            request: serde_json::json!({ "model": embedder.model_name(), "input": inputs }),
            outcome: response,
            usage,
            latency_ms,
        };
        record(pool, call).await?;
        Ok(outcome?)
    }

    /// Runs the tool `call` names as `agent` (`run` does it), recording its
    /// result, or returns the result an earlier attempt recorded for this
    /// place among the attempt's tool calls, tool and arguments: then the
    /// tool does not run. Without a ledger, just runs it. The outer error is
    /// the ledger's; the inner one is the tool's (shown to the model).
    pub async fn tool(
        &self,
        agent: &str,
        call: &ToolCall,
        run: impl FnOnce() -> Result<Value, String>,
    ) -> Result<Result<Value, String>, CallError> {
        let seq = self.tools.fetch_add(1, Ordering::Relaxed);
        let Some((pool, site)) = &self.ledger else {
            return Ok(run());
        };
        if let Some(result) = recorded_tool(pool, site, seq, call).await? {
            tracing::info!(agent, tool = %call.name, seq, workflow_id = ?site.workflow_id,
                activity_id = ?site.activity_id, "tool result replayed from the ledger");
            return Ok(result);
        }
        let started = Instant::now();
        let outcome = run();
        let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        tracing::debug!(agent, tool = %call.name, seq, workflow_id = ?site.workflow_id,
            activity_id = ?site.activity_id, ok = outcome.is_ok(), "tool ran");
        let step = self.step.load(Ordering::Relaxed);
        let recorded = ToolRun {
            site,
            seq,
            llm_step: (step > 0).then_some(step - 1),
            agent,
            call,
            outcome: &outcome,
            latency_ms,
        };
        // Another attempt's result for this call was recorded first: carry
        // on from it so both attempts agree.
        Ok(record_tool(pool, recorded).await?.unwrap_or(outcome))
    }

    /// Marks this activity's recorded answers as not reusable: called when
    /// an attempt fails on what the model said, so the retry asks again.
    pub async fn abandon(&self) -> sqlx::Result<()> {
        if let Some((pool, site)) = &self.ledger {
            abandon(pool, site).await?;
        }
        Ok(())
    }
}

fn decode(answer: Value) -> Result<ChatResponse, CallError> {
    serde_json::from_value(answer).map_err(|e| CallError::Recorded(e.to_string()))
}
