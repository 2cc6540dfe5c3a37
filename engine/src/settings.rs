//! Typed settings shared by every floe binary.
//!
//! Each area is a `clap::Args` struct, so a binary flattens the areas it needs
//! into its own command line: every setting is a flag, an environment variable
//! (`FLOE__SECTION__KEY`, plus the conventional `DATABASE_URL`) and has a working
//! default, and `--help` lists them all. Tests build the structs directly.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use secrecy::SecretString;

/// Where the database is and how to use it.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Database")]
pub struct DatabaseSettings {
    /// PostgreSQL URL (postgres://user:password@host:port/db). When absent, floe
    /// starts its embedded cluster from the machine's PostgreSQL binaries.
    #[arg(long = "database-url", env = "DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub url: Option<SecretString>,

    /// Most connections this process opens to PostgreSQL.
    #[arg(
        long = "database-max-connections",
        env = "FLOE__DATABASE__MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,

    /// How long to keep retrying the first connection before giving up, in seconds.
    #[arg(
        long = "database-connect-timeout",
        env = "FLOE__DATABASE__CONNECT_TIMEOUT",
        default_value_t = 30
    )]
    pub connect_timeout_secs: u64,

    /// Apply pending migrations at startup (safe with many processes: they take turns).
    #[arg(long = "database-migrate", env = "FLOE__DATABASE__MIGRATE", default_value_t = true, action = ArgAction::Set)]
    pub migrate: bool,

    /// Folder of the embedded cluster (data, password, log). Used only without DATABASE_URL.
    #[arg(
        long = "embedded-dir",
        env = "FLOE__DATABASE__EMBEDDED_DIR",
        default_value = ".floe/postgres"
    )]
    pub embedded_dir: PathBuf,

    /// Folder holding PostgreSQL's `postgres` and `initdb`; found on PATH, through
    /// `pg_config --bindir` or in /usr/lib/postgresql/*/bin when absent.
    #[arg(long = "pg-bindir", env = "FLOE__DATABASE__PG_BINDIR")]
    pub pg_bindir: Option<PathBuf>,
}

impl DatabaseSettings {
    /// [`Self::connect_timeout_secs`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

/// How the process logs.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Logging")]
pub struct LogSettings {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long = "log-format", env = "FLOE__LOG__FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,

    /// Which events to log, in tracing's filter syntax (RUST_LOG is honoured too).
    #[arg(
        long = "log-filter",
        env = "FLOE__LOG__FILTER",
        default_value = "info,sqlx=warn"
    )]
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info,sqlx=warn".into(),
        }
    }
}

/// The shape of log lines.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines with colours on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Reads a secret from the command line or environment without ever echoing it.
pub fn parse_secret(raw: &str) -> Result<SecretString, String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(raw.to_owned()))
}
