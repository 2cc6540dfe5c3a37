//! The worker's command line: `floe-worker [run|migrate]`.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use floe_engine::settings::{DatabaseSettings, LogSettings};

/// floe's worker: leases jobs from PostgreSQL and runs them. Start as many as
/// you like, on as many machines, against one database.
#[derive(Parser, Debug)]
#[command(name = "floe-worker", version)]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Logging settings.
    #[command(flatten)]
    pub log: LogSettings,
    /// Worker settings.
    #[command(flatten)]
    pub worker: WorkerSettings,
}

/// The worker's subcommands.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Run the worker until SIGINT or SIGTERM (the default).
    Run,
    /// Apply pending migrations and exit.
    Migrate,
}

/// Settings of a worker process.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Worker")]
pub struct WorkerSettings {
    /// Address to serve /healthz and /readyz on (for container health checks);
    /// none when absent.
    #[arg(long = "health-listen", env = "FLOE__WORKER__HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
}
