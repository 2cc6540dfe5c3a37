//! Which model floe talks to, if any: `--llm-*` flags and `FLOE__LLM__*`
//! environment variables. With no base URL, floe runs its offline agents.

use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

/// How an agent asks for its typed output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputMode {
    /// A `final_result` tool whose arguments are the output (works with most
    /// servers that support tools, as PydanticAI's default does).
    Tool,
    /// `response_format: json_schema` (OpenAI, vLLM, llama.cpp's server).
    Native,
}

/// The language model floe's agents and memory use.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "LLM")]
pub struct LlmSettings {
    /// Base URL of an OpenAI-compatible API: https://api.openai.com/v1,
    /// http://localhost:11434/v1 (Ollama), http://localhost:8080/v1
    /// (llama.cpp's server), a vLLM server's /v1. Without it floe runs its
    /// deterministic offline agents and memory.
    #[arg(long = "llm-base-url", env = "FLOE__LLM__BASE_URL")]
    pub base_url: Option<String>,

    /// API key, sent as a bearer token (never logged, never recorded).
    #[arg(long = "llm-api-key", env = "FLOE__LLM__API_KEY", value_parser = parse_key, hide_env_values = true)]
    pub api_key: Option<SecretString>,

    /// Chat model name.
    #[arg(
        long = "llm-model",
        env = "FLOE__LLM__MODEL",
        default_value = "gpt-4o-mini"
    )]
    pub model: String,

    /// Longest a model call may take, in milliseconds.
    #[arg(
        long = "llm-timeout-ms",
        env = "FLOE__LLM__TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub timeout_ms: u64,

    /// Stream answers over SSE (text deltas are pushed as they arrive).
    #[arg(long = "llm-stream", env = "FLOE__LLM__STREAM", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub stream: bool,

    /// How agents ask for structured output.
    #[arg(
        long = "llm-output-mode",
        env = "FLOE__LLM__OUTPUT_MODE",
        value_enum,
        default_value = "tool"
    )]
    pub output_mode: OutputMode,

    /// Ask the server to enforce JSON schemas (OpenAI's strict mode); turn off
    /// for servers that reject `strict`.
    #[arg(long = "llm-strict", env = "FLOE__LLM__STRICT", default_value_t = true, action = ArgAction::Set)]
    pub strict: bool,

    /// Times an agent may send its output back to the model with the
    /// validation errors before the turn fails.
    #[arg(
        long = "llm-output-retries",
        env = "FLOE__LLM__OUTPUT_RETRIES",
        default_value_t = 3
    )]
    pub output_retries: u32,

    /// Embedding model for memory search (OpenAI-compatible /embeddings);
    /// memory search is full-text only without it.
    #[arg(long = "llm-embedding-model", env = "FLOE__LLM__EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            model: "gpt-4o-mini".into(),
            timeout_ms: 60_000,
            stream: false,
            output_mode: OutputMode::Tool,
            strict: true,
            output_retries: 3,
            embedding_model: None,
        }
    }
}

/// Reads the key without echoing it; empty (a compose file's unset
/// variable) means none, see [`LlmSettings::api_key`].
fn parse_key(raw: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(raw.to_owned()))
}

/// `None` for an absent or blank value: an empty environment variable (as a
/// compose file passes an unset one) means "not configured".
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

impl LlmSettings {
    /// The API base URL, if one is configured (blank counts as none).
    pub fn base_url(&self) -> Option<&str> {
        present(self.base_url.as_deref())
    }

    /// The API key, if one is configured (blank counts as none).
    pub fn api_key(&self) -> Option<&SecretString> {
        self.api_key
            .as_ref()
            .filter(|key| !key.expose_secret().trim().is_empty())
    }

    /// The embedding model, if one is configured (blank counts as none).
    pub fn embedding_model(&self) -> Option<&str> {
        present(self.embedding_model.as_deref())
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_values_mean_not_configured() {
        let blank = LlmSettings {
            base_url: Some(" ".into()),
            api_key: Some(SecretString::from(String::new())),
            embedding_model: Some(String::new()),
            ..LlmSettings::default()
        };
        assert_eq!(blank.base_url(), None);
        assert!(blank.api_key().is_none());
        assert_eq!(blank.embedding_model(), None);
        let set = LlmSettings {
            base_url: Some("http://localhost:11434/v1".into()),
            api_key: Some(SecretString::from("k".to_owned())),
            embedding_model: Some("nomic-embed-text".into()),
            ..LlmSettings::default()
        };
        assert_eq!(set.base_url(), Some("http://localhost:11434/v1"));
        assert!(set.api_key().is_some());
        assert_eq!(set.embedding_model(), Some("nomic-embed-text"));
    }
}
