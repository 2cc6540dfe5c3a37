//! Typed agents, after PydanticAI: instructions (static or built from the
//! run's dependencies), a typed output whose JSON schema the model is held
//! to, optional tools, and a bounded loop that sends validation errors back
//! to the model ("fix the errors and try again").
//!
//! Model calls and tool calls both go through the run's [`Recorder`]: each
//! is recorded in the ledger, and a retried activity attempt gets the
//! recorded answers and tool results instead of calling the model or
//! running the tool again ([`Recorder::tool`]).
//!
//! The output is asked for either as a `final_result` tool whose arguments
//! are the output ([`OutputMode::Tool`], PydanticAI's default, which works
//! with any server that supports tools) or as native structured output
//! (`response_format: json_schema`, [`OutputMode::Native`]). Either way the
//! answer is decoded with serde and checked by the agent's validators; a
//! failure costs one of the agent's retries and is shown to the model. When
//! the retries are spent the run fails with [`AgentError::OutputInvalid`],
//! which the calling activity reports (after abandoning its recorded answers
//! so that a retry of the activity asks afresh).
//!
//! While the model writes, the output's JSON text can be followed through an
//! [`OutputStream`]: the content deltas in native mode, the `final_result`
//! call's argument fragments in tool mode ([`FieldStream`] turns them into
//! the growing text of one field, e.g. the reply a person reads).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::llm::ledger::{CallError, Recorder};
use crate::llm::stream::FieldExtractor;
use crate::llm::{ChatRequest, Message, ResponseFormat, Sinks, ToolChoice, ToolDef, Usage};
use crate::settings::OutputMode;

/// The tool name under which [`OutputMode::Tool`] asks for the output.
pub const FINAL_RESULT: &str = "final_result";

/// Model turns one run may take (tool calls and corrections included).
const MAX_TURNS: u32 = 16;

/// Why an agent run failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model call failed (see [`CallError::retryable`]).
    #[error("agent {agent}: {source}")]
    Call {
        /// The agent.
        agent: String,
        /// Why.
        #[source]
        source: CallError,
    },
    /// The model's output stayed invalid after every retry.
    #[error("agent {agent}: output still invalid after {retries} retries: {last_error}")]
    OutputInvalid {
        /// The agent.
        agent: String,
        /// Retries spent.
        retries: u32,
        /// The last validation error.
        last_error: String,
    },
    /// The model kept calling tools without producing an output.
    #[error("agent {agent}: no output after {turns} model turns")]
    TooManyTurns {
        /// The agent.
        agent: String,
        /// Turns taken.
        turns: u32,
    },
}

impl AgentError {
    /// Whether another attempt of the activity may succeed. An invalid
    /// output may be fixed by a fresh attempt (models are not deterministic);
    /// a rejected request will not.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Call { source, .. } => source.retryable(),
            Self::OutputInvalid { .. } | Self::TooManyTurns { .. } => true,
        }
    }

    /// The wait the model's server asked for, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Call {
                source: CallError::Model(e),
                ..
            } => e.retry_after(),
            _ => None,
        }
    }

    /// Whether the failure was about what the model said (its recorded
    /// answers should not be replayed to a retry).
    pub fn is_output_failure(&self) -> bool {
        matches!(self, Self::OutputInvalid { .. } | Self::TooManyTurns { .. })
    }
}

/// Follows an agent's output while the model writes it (ephemeral: the
/// validated output is what counts).
pub trait OutputStream: Send + Sync {
    /// A model call begins: what was pushed before is superseded (the
    /// answer after a tool call, or a corrected output).
    fn restart(&self);
    /// The next fragment of the output's JSON text.
    fn push(&self, fragment: &str);
}

/// Receives one field's text as it grows: the number of the model call
/// writing it (from 1; a new number means the text before it is
/// superseded) and the whole text so far, trimmed (so it is always a prefix
/// of the final, trimmed value).
pub type FieldSink = dyn Fn(u32, &str) + Send + Sync;

/// An [`OutputStream`] that passes one top-level string field's text, as it
/// grows, to a [`FieldSink`]. Calls are numbered across everything it
/// follows (several agent runs may share it).
pub struct FieldStream<'a> {
    sink: &'a (dyn Fn(u32, &str) + Send + Sync + 'a),
    field: String,
    state: Mutex<Following>,
}

/// What a [`FieldStream`] follows now.
struct Following {
    /// The model call (0 before the first).
    call: u32,
    extractor: FieldExtractor,
    /// Length of the text last passed on.
    passed: usize,
}

impl fmt::Debug for FieldStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldStream")
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl<'a> FieldStream<'a> {
    /// Follows the output's field `field`, passing its text to `sink` (a
    /// [`FieldSink`], or one borrowing from its caller).
    pub fn new(field: &str, sink: &'a (dyn Fn(u32, &str) + Send + Sync + 'a)) -> Self {
        Self {
            sink,
            field: field.to_owned(),
            state: Mutex::new(Following {
                call: 0,
                extractor: FieldExtractor::new(field),
                passed: 0,
            }),
        }
    }
}

impl OutputStream for FieldStream<'_> {
    fn restart(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.call += 1;
        state.extractor = FieldExtractor::new(self.field.as_str());
        state.passed = 0;
    }

    fn push(&self, fragment: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Following {
            call,
            extractor,
            passed,
        } = &mut *state;
        if extractor.push_str(fragment).is_empty() {
            return;
        }
        // Trimmed as the output's text will be; so only more than
        // whitespace makes it grow.
        let text = extractor.text().trim();
        if text.len() > *passed {
            *passed = text.len();
            (self.sink)((*call).max(1), text);
        }
    }
}

/// Part of an agent's instructions.
pub enum Instruction<D> {
    /// Fixed text.
    Static(String),
    /// Text built from the run's dependencies (the user's name, the step).
    Dynamic(Box<dyn Fn(&D) -> String + Send + Sync>),
}

/// A tool the model may call during a run. Its error text is shown to the
/// model, which may try again (PydanticAI's `ModelRetry`).
pub trait Tool<D>: Send + Sync {
    /// Its definition (name, description, argument schema).
    fn definition(&self, strict: bool) -> ToolDef;
    /// Runs it on the model's JSON arguments.
    fn call(&self, deps: &D, arguments: &str) -> Result<Value, String>;
}

type ToolFn<D, A> = Box<dyn Fn(&D, A) -> Result<Value, String> + Send + Sync>;

struct FnTool<D, A> {
    name: String,
    description: String,
    run: ToolFn<D, A>,
}

impl<D, A: DeserializeOwned + JsonSchema> Tool<D> for FnTool<D, A> {
    fn definition(&self, strict: bool) -> ToolDef {
        ToolDef {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: schema_for::<A>(strict),
            strict,
        }
    }

    fn call(&self, deps: &D, arguments: &str) -> Result<Value, String> {
        let args: A = serde_json::from_str(if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        })
        .map_err(|e| format!("invalid arguments: {e}"))?;
        (self.run)(deps, args)
    }
}

/// A tool from a function of the dependencies and typed arguments.
pub fn tool<D, A, F>(name: &str, description: &str, run: F) -> Arc<dyn Tool<D>>
where
    D: 'static,
    A: DeserializeOwned + JsonSchema + 'static,
    F: Fn(&D, A) -> Result<Value, String> + Send + Sync + 'static,
{
    Arc::new(FnTool {
        name: name.to_owned(),
        description: description.to_owned(),
        run: Box::new(run),
    })
}

type Validator<D, O> = Box<dyn Fn(&D, &O) -> Result<(), String> + Send + Sync>;

/// An agent producing `O` with dependencies `D`.
pub struct Agent<D, O> {
    name: String,
    instructions: Vec<Instruction<D>>,
    tools: Vec<Arc<dyn Tool<D>>>,
    validators: Vec<Validator<D, O>>,
    output_mode: OutputMode,
    strict: bool,
    retries: u32,
    temperature: Option<f32>,
}

impl<D, O> fmt::Debug for Agent<D, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("tools", &self.tools.len())
            .field("output_mode", &self.output_mode)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// A successful run.
#[derive(Debug, Clone)]
pub struct AgentRun<O> {
    /// The validated output.
    pub output: O,
    /// Model turns taken.
    pub turns: u32,
    /// Output retries spent.
    pub retries: u32,
    /// Tokens used, summed over the turns.
    pub usage: Usage,
}

impl<D, O> Agent<D, O>
where
    O: DeserializeOwned + JsonSchema,
{
    /// An agent called `name` (recorded in the ledger), with tool-call output,
    /// strict schemas and 3 retries.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            instructions: Vec::new(),
            tools: Vec::new(),
            validators: Vec::new(),
            output_mode: OutputMode::Tool,
            strict: true,
            retries: 3,
            temperature: None,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds fixed instructions.
    pub fn instructions(mut self, text: impl Into<String>) -> Self {
        self.instructions.push(Instruction::Static(text.into()));
        self
    }

    /// Adds instructions built from the run's dependencies.
    pub fn dynamic_instructions(
        mut self,
        build: impl Fn(&D) -> String + Send + Sync + 'static,
    ) -> Self {
        self.instructions
            .push(Instruction::Dynamic(Box::new(build)));
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: Arc<dyn Tool<D>>) -> Self {
        self.tools.push(tool);
        self
    }

    /// Adds an output check; its error is shown to the model, which tries
    /// again while retries remain.
    pub fn validate(
        mut self,
        check: impl Fn(&D, &O) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validators.push(Box::new(check));
        self
    }

    /// How the output is asked for, whether schemas are strict, and how many
    /// retries a run gets.
    pub fn output(mut self, mode: OutputMode, strict: bool, retries: u32) -> Self {
        self.output_mode = mode;
        self.strict = strict;
        self.retries = retries;
        self
    }

    /// Sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// The system prompt for `deps`.
    pub fn system_prompt(&self, deps: &D) -> String {
        self.instructions
            .iter()
            .map(|i| match i {
                Instruction::Static(text) => text.clone(),
                Instruction::Dynamic(build) => build(deps),
            })
            .filter(|text| !text.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    fn check(&self, deps: &D, raw: &str) -> Result<O, String> {
        let output: O = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        let errors: Vec<String> = self
            .validators
            .iter()
            .filter_map(|v| v(deps, &output).err())
            .collect();
        if errors.is_empty() {
            Ok(output)
        } else {
            Err(errors.join("; "))
        }
    }

    /// Runs the agent: `history` (earlier turns, oldest first) and the
    /// user's `prompt` after the instructions. The output's JSON text, as
    /// the model streams it, goes to `stream`.
    pub async fn run(
        &self,
        llm: &Recorder,
        deps: &D,
        history: Vec<Message>,
        prompt: &str,
        stream: Option<&dyn OutputStream>,
    ) -> Result<AgentRun<O>, AgentError> {
        let mut messages = Vec::with_capacity(history.len() + 2);
        messages.push(Message::system(self.system_prompt(deps)));
        messages.extend(history);
        messages.push(Message::user(prompt));
        let mut tools: Vec<ToolDef> = self
            .tools
            .iter()
            .map(|t| t.definition(self.strict))
            .collect();
        let (tool_choice, response_format) = match self.output_mode {
            OutputMode::Tool => {
                tools.push(ToolDef {
                    name: FINAL_RESULT.into(),
                    description: "The final response which ends this conversation turn.".into(),
                    parameters: schema_for::<O>(self.strict),
                    strict: self.strict,
                });
                (Some(ToolChoice::Required), None)
            }
            OutputMode::Native => (
                None,
                Some(ResponseFormat::JsonSchema {
                    name: FINAL_RESULT.into(),
                    schema: schema_for::<O>(self.strict),
                    strict: self.strict,
                }),
            ),
        };
        let mut usage = Usage::default();
        let mut retries = 0;
        let mut last_error = String::new();
        for turn in 1..=MAX_TURNS {
            let request = ChatRequest {
                tools: tools.clone(),
                tool_choice: tool_choice.clone(),
                response_format: response_format.clone(),
                temperature: self.temperature,
                ..ChatRequest::new(messages.clone())
            };
            // The output's JSON goes to `stream`: the content in native
            // mode, the first `final_result` call's arguments in tool mode.
            if let Some(out) = stream {
                out.restart();
            }
            let followed = Mutex::new(None::<usize>);
            let text = |fragment: &str| {
                if let Some(out) = stream {
                    out.push(fragment);
                }
            };
            let arguments = |index: usize, name: &str, fragment: &str| {
                let Some(out) = stream else { return };
                if name != FINAL_RESULT {
                    return;
                }
                let mut followed = followed.lock().unwrap_or_else(PoisonError::into_inner);
                if *followed.get_or_insert(index) == index {
                    out.push(fragment);
                }
            };
            let sinks = match (stream, self.output_mode) {
                (None, _) => Sinks::default(),
                (Some(_), OutputMode::Native) => Sinks::text(Some(&text)),
                (Some(_), OutputMode::Tool) => Sinks {
                    text: None,
                    tool_arguments: Some(&arguments),
                },
            };
            let response = llm
                .complete(&self.name, &request, sinks)
                .await
                .map_err(|source| AgentError::Call {
                    agent: self.name.clone(),
                    source,
                })?;
            usage.input_tokens += response.usage.input_tokens;
            usage.output_tokens += response.usage.output_tokens;
            let reply = response.message;
            messages.push(reply.clone());
            let mut output = None;
            let mut feedback = Vec::new();
            let mut failed = false;
            match self.output_mode {
                OutputMode::Native if reply.tool_calls.is_empty() => {
                    let text = reply.content.as_deref().unwrap_or_default();
                    match self.check(deps, strip_fences(text)) {
                        Ok(o) => output = Some(o),
                        Err(e) => {
                            failed = true;
                            last_error = e.clone();
                            feedback.push(Message::user(retry_prompt(&e)));
                        }
                    }
                }
                OutputMode::Tool if reply.tool_calls.is_empty() => {
                    failed = true;
                    last_error = "answered in text instead of calling final_result".into();
                    feedback.push(Message::user(format!(
                        "Please answer by calling the `{FINAL_RESULT}` tool with your response."
                    )));
                }
                _ => {
                    // Every call gets an answer, as the API requires.
                    for call in &reply.tool_calls {
                        if call.name == FINAL_RESULT && self.output_mode == OutputMode::Tool {
                            if output.is_some() {
                                feedback.push(Message::tool(
                                    &call.id,
                                    "Output tool not used - a final result was already processed.",
                                ));
                                continue;
                            }
                            match self.check(deps, &call.arguments) {
                                Ok(o) => {
                                    output = Some(o);
                                    feedback
                                        .push(Message::tool(&call.id, "Final result processed."));
                                }
                                Err(e) => {
                                    failed = true;
                                    last_error = e.clone();
                                    feedback.push(Message::tool(&call.id, retry_prompt(&e)));
                                }
                            }
                        } else if let Some(tool) = tools[..self.tools.len()]
                            // The definitions built above, in the tools' order.
                            .iter()
                            .position(|t| t.name == call.name)
                            .map(|i| &self.tools[i])
                        {
                            // Recorded, and replayed to a retried attempt
                            // instead of running again.
                            let result = llm
                                .tool(&self.name, call, || tool.call(deps, &call.arguments))
                                .await
                                .map_err(|source| AgentError::Call {
                                    agent: self.name.clone(),
                                    source,
                                })?;
                            let answer = match result {
                                Ok(value) => value.to_string(),
                                Err(e) => {
                                    failed = true;
                                    last_error = format!("tool {}: {e}", call.name);
                                    retry_prompt(&e)
                                }
                            };
                            feedback.push(Message::tool(&call.id, answer));
                        } else {
                            failed = true;
                            last_error = format!("unknown tool {:?}", call.name);
                            let known: Vec<String> = tools.iter().map(|t| t.name.clone()).collect();
                            feedback.push(Message::tool(
                                &call.id,
                                format!(
                                    "Unknown tool name: {:?}. Available tools: {}",
                                    call.name,
                                    known.join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
            if let Some(output) = output {
                return Ok(AgentRun {
                    output,
                    turns: turn,
                    retries,
                    usage,
                });
            }
            if failed {
                retries += 1;
                if retries > self.retries {
                    return Err(AgentError::OutputInvalid {
                        agent: self.name.clone(),
                        retries: self.retries,
                        last_error,
                    });
                }
                tracing::info!(agent = %self.name, retry = retries, error = %last_error,
                    "agent output rejected; asking the model to fix it");
            }
            messages.extend(feedback);
        }
        Err(AgentError::TooManyTurns {
            agent: self.name.clone(),
            turns: MAX_TURNS,
        })
    }
}

/// PydanticAI's words for a rejected output.
fn retry_prompt(errors: &str) -> String {
    format!("Validation errors:\n{errors}\n\nFix the errors and try again.")
}

/// Models often wrap JSON in Markdown fences even when asked not to.
fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    let Some(inner) = t.strip_prefix("```") else {
        return t;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

/// The JSON schema of `T` as a model is given it. Strict schemas follow
/// OpenAI's strict-mode rules: every object closed (`additionalProperties:
/// false`) with all its properties required (optional ones are nullable),
/// and no keywords strict mode rejects (`default`, `oneOf`, keywords beside
/// a `$ref`, `format` other than the few it knows).
pub fn schema_for<T: JsonSchema>(strict: bool) -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
        map.remove("title");
    }
    if strict {
        tighten(&mut schema);
    }
    schema
}

fn tighten(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("default");
            // Strict mode takes `$ref` alone, and `anyOf` where schemars
            // writes `oneOf` (documented enum variants).
            if map.contains_key("$ref") {
                map.retain(|key, _| key == "$ref");
            }
            if let Some(variants) = map.remove("oneOf") {
                map.insert("anyOf".into(), variants);
            }
            if let Some(Value::String(format)) = map.get("format")
                && !matches!(
                    format.as_str(),
                    "date-time" | "date" | "time" | "email" | "uuid"
                )
            {
                map.remove("format");
            }
            if let Some(Value::Object(properties)) = map.get("properties") {
                let names: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
                map.insert("required".into(), Value::Array(names));
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (key, value) in map.iter_mut() {
                // Property names are data, not keywords.
                if matches!(key.as_str(), "properties" | "$defs" | "definitions") {
                    if let Value::Object(props) = value {
                        props.values_mut().for_each(tighten);
                    }
                } else {
                    tighten(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tighten),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onboarding::contract::{AgentType, WidgetRequest};

    /// Every keyword strict mode rejects, wherever it sits.
    fn rejected(schema: &Value, path: &str, found: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                for key in ["oneOf", "default"] {
                    if map.contains_key(key) {
                        found.push(format!("{path}/{key}"));
                    }
                }
                if map.contains_key("$ref") && map.len() > 1 {
                    found.push(format!("{path}: $ref with siblings"));
                }
                if map.contains_key("properties") {
                    let props: Vec<&String> = map["properties"]
                        .as_object()
                        .map(|p| p.keys().collect())
                        .unwrap_or_default();
                    let required: Vec<&str> = map
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    if props.iter().any(|p| !required.contains(&p.as_str()))
                        || map.get("additionalProperties") != Some(&Value::Bool(false))
                    {
                        found.push(format!("{path}: open or optional properties"));
                    }
                }
                for (key, value) in map {
                    rejected(value, &format!("{path}/{key}"), found);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    rejected(item, &format!("{path}/{i}"), found);
                }
            }
            _ => {}
        }
    }

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Sample {
        /// A documented enum (schemars writes `oneOf`).
        agent: AgentType,
        /// A tagged enum behind a `$ref` with a description beside it.
        widget: Option<WidgetRequest>,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn strict_schemas_keep_only_what_strict_mode_accepts() {
        let mut found = Vec::new();
        let schema = schema_for::<Sample>(true);
        rejected(&schema, "", &mut found);
        assert!(found.is_empty(), "{found:?} in {schema:#}");
        // And the loose one is left as schemars wrote it.
        let loose = schema_for::<Sample>(false);
        let mut found = Vec::new();
        rejected(&loose, "", &mut found);
        assert!(!found.is_empty());
    }

    #[test]
    fn a_field_stream_numbers_calls_and_passes_the_trimmed_text() {
        let seen = Mutex::new(Vec::new());
        let sink = |call: u32, text: &str| {
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((call, text.to_owned()));
        };
        let stream = FieldStream::new("message", &sink);
        stream.restart();
        stream.push(r#"{"message": "  \n "#);
        stream.push(r#"Hi "#);
        stream.push(r#"there ", "x": "not this"}"#);
        stream.restart();
        stream.push(r#"{"message": "Again"}"#);
        let seen = seen.into_inner().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(
            seen,
            [
                (1, "Hi".to_owned()),
                (1, "Hi there".to_owned()),
                (2, "Again".to_owned())
            ]
        );
    }

    #[test]
    fn fenced_json_is_unwrapped() {
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences(" {\"a\":1} "), "{\"a\":1}");
    }
}
