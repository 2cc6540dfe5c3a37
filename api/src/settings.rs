//! The API's command line: `floe-api [serve|migrate]`.

use std::net::SocketAddr;
use std::path::PathBuf;

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
        }
    }
}
