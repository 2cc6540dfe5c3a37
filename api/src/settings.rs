//! The API's command line: `floe-api [serve|migrate]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use floe_agents::settings::LlmSettings;
use floe_engine::settings::{DatabaseSettings, LogSettings};
use floe_worker::settings::WorkerSettings;
use secrecy::SecretString;

/// floe's API server: chat and workflow endpoints, live push, the web chat.
/// With `--with-worker` it also runs a worker in the same process.
#[derive(Parser, Debug)]
#[command(name = "floe-api", version)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// HTTP settings.
    #[command(flatten)]
    pub http: HttpSettings,
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Logging settings.
    #[command(flatten)]
    pub log: LogSettings,
    /// Run a worker inside this process too (the one-command development setup).
    #[arg(long = "with-worker", env = "FLOE__API__WITH_WORKER", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub with_worker: bool,
    /// Settings of the in-process worker.
    #[command(flatten)]
    pub worker: WorkerSettings,
    /// The language model the in-process worker's agents use, if any.
    #[command(flatten)]
    pub llm: LlmSettings,
}

/// The API's subcommands.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Serve HTTP until SIGINT or SIGTERM (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
}

/// How the API serves HTTP.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// Address and port to listen on.
    #[arg(
        long = "listen",
        env = "FLOE__HTTP__LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Folder of the built web front end (served at /).
    #[arg(
        long = "static-dir",
        env = "FLOE__HTTP__STATIC_DIR",
        default_value = "frontend/dist"
    )]
    pub static_dir: PathBuf,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long = "body-limit", env = "FLOE__HTTP__BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// Bearer token the engine's operator routes (/api/workflows...) require.
    /// When unset (or blank), a random development token is generated at
    /// start-up and logged once at WARN.
    #[arg(
        long = "operator-token",
        env = "FLOE__API__OPERATOR_TOKEN",
        value_parser = parse_secret,
        hide_env_values = true
    )]
    pub operator_token: Option<SecretString>,

    /// The chat's sessions, limits, WebSocket heartbeats and onboarding.
    #[command(flatten)]
    pub chat: ChatSettings,
}

/// Reads a secret without echoing it anywhere.
fn parse_secret(raw: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(raw.to_owned()))
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            static_dir: PathBuf::from("frontend/dist"),
            body_limit: 1024 * 1024,
            operator_token: None,
            chat: ChatSettings::default(),
        }
    }
}

/// How the chat serves people: sessions, limits, the WebSocket's
/// heartbeats, and the onboardings it starts.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
#[command(next_help_heading = "Chat")]
pub struct ChatSettings {
    /// How long a session (its cookie and token) stays valid, in seconds.
    #[arg(
        long = "session-ttl-secs",
        env = "FLOE__CHAT__SESSION_TTL_SECS",
        default_value_t = 30 * 24 * 3600
    )]
    pub session_ttl_secs: u64,

    /// Longest chat message accepted, in characters (after trimming);
    /// longer ones get 422.
    #[arg(
        long = "max-message-chars",
        env = "FLOE__CHAT__MAX_MESSAGE_CHARS",
        default_value_t = 4000
    )]
    pub max_message_chars: usize,

    /// Messages a person may send per minute, counted by each API process
    /// on its own (in memory); more get 429 with `Retry-After`.
    #[arg(
        long = "messages-per-minute",
        env = "FLOE__CHAT__MESSAGES_PER_MINUTE",
        default_value_t = 30
    )]
    pub messages_per_minute: u32,

    /// How often the server pings an idle WebSocket, in milliseconds.
    #[arg(
        long = "ws-ping-ms",
        env = "FLOE__CHAT__WS_PING_MS",
        default_value_t = 20_000
    )]
    pub ws_ping_ms: u64,

    /// A WebSocket from which nothing (not even a pong) has arrived for
    /// this long, in milliseconds, is closed.
    #[arg(
        long = "ws-idle-ms",
        env = "FLOE__CHAT__WS_IDLE_MS",
        default_value_t = 60_000
    )]
    pub ws_idle_ms: u64,

    /// WebSocket connections one person may hold open to this API process
    /// at once; more are refused with 429 before the upgrade. 0: no limit.
    #[arg(
        long = "ws-per-person",
        env = "FLOE__CHAT__WS_PER_PERSON",
        default_value_t = 8
    )]
    pub ws_per_person: usize,

    /// Silence, in seconds, after which the onboarding checks in on a
    /// person (given to onboardings this server starts).
    #[arg(
        long = "nudge-after-secs",
        env = "FLOE__CHAT__NUDGE_AFTER_SECS",
        default_value_t = 600
    )]
    pub nudge_after_secs: u64,

    /// Most check-ins over a whole onboarding (given to onboardings this
    /// server starts).
    #[arg(
        long = "max-nudges",
        env = "FLOE__CHAT__MAX_NUDGES",
        default_value_t = 1
    )]
    pub max_nudges: u32,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            session_ttl_secs: 30 * 24 * 3600,
            max_message_chars: 4000,
            messages_per_minute: 30,
            ws_ping_ms: 20_000,
            ws_idle_ms: 60_000,
            ws_per_person: 8,
            nudge_after_secs: 600,
            max_nudges: 1,
        }
    }
}

impl ChatSettings {
    /// The server's heartbeat interval.
    pub fn ws_ping(&self) -> Duration {
        Duration::from_millis(self.ws_ping_ms.max(10))
    }

    /// How long a silent WebSocket is kept.
    pub fn ws_idle(&self) -> Duration {
        Duration::from_millis(self.ws_idle_ms.max(10))
    }
}
