//! `floe`, the operator's command: look at workflows and jobs, signal and
//! cancel workflows, retry dead jobs, run the replay check, migrate, and
//! diagnose a deployment (`floe doctor`). See `docs/cli.md`.
//!
//! It goes through the engine's own functions — the ones the HTTP API calls
//! (`workflow::store`, `inspect`) — so a signal or a cancellation from here
//! takes the same inbox-and-job path as one from the API, and is checked
//! against this build's workflow definitions the same way.
//!
//! | module        | responsibility                                                |
//! |---------------|---------------------------------------------------------------|
//! | this one      | the command line, exit codes, errors, dispatch                |
//! | [`database`]  | finding the database (or the embedded cluster); `migrate`     |
//! | [`workflows`] | `workflows list/show/history`, `signal`, `cancel`, `replay`   |
//! | [`jobs`]      | `jobs list/retry`                                             |
//! | [`doctor`]    | `doctor`: the checks and their verdicts                       |
//! | [`output`]    | tables and JSON                                               |

pub mod database;
pub mod doctor;
pub mod jobs;
pub mod output;
pub mod workflows;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use floe_engine::inspect;
use floe_engine::queue::JobState;
use floe_engine::settings::{DatabaseSettings, LogFormat, LogSettings};
use floe_engine::telemetry;
use floe_engine::workflow::{Status, store};
use uuid::Uuid;

use output::Out;

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: no such workflow or job; a replay that diverges; an upgrade
/// that fails; `doctor` with warnings.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: bad usage or input, refused (a signal the definition does not
/// take, a finished workflow, a job that is not dead); `doctor` with a
/// failure.
pub const EXIT_INVALID: u8 = 2;
/// Exit code: the database is unreachable, or something else failed.
pub const EXIT_RUNTIME: u8 = 3;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  not found: no such workflow or job (replay: a workflow diverges;
     upgrade: a workflow cannot be upgraded)
  2  usage or validation error, or refused: bad flags or JSON, a signal the
     workflow's definition does not take, a finished workflow, a job that is
     not dead or retrying
  3  the database is unreachable, or another runtime failure
floe doctor exits 0 when every check is ok, 1 with warnings, 2 with failures.

Errors go to stderr, one line each; --json prints one JSON document on stdout.";

/// floe's operator command: workflows, jobs, signals, cancellation, the
/// replay check, migrations and a health check, against floe's PostgreSQL
/// (DATABASE_URL, or the embedded cluster when it is unset).
#[derive(Parser, Debug)]
#[command(name = "floe", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log what floe does to stderr (RUST_LOG, when set, wins).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Database settings (as for floe-worker and floe-api).
    #[command(flatten)]
    pub database: DatabaseSettings,
}

/// `floe`'s commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Workflows: list, show one, read its history.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Signal a workflow, checked against its definition first (as the API
    /// does): a signal it does not take is refused and nothing is written.
    Signal(SignalArgs),
    /// Cancel a workflow (and its open children) with a reason.
    Cancel(CancelArgs),
    /// Jobs: list, retry a dead one.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Replay open workflows' histories through this build's definitions
    /// and report the first divergence of each (exit 1 if any diverges):
    /// the check before an upgrade.
    Replay(ReplayArgs),
    /// Upgrade open workflows' stored state to this build's definition
    /// versions (each definition's `upgrade`); with --dry-run, only try it
    /// and change nothing (exit 1 if any would fail): the check before a
    /// deploy that bumps a version.
    Upgrade(UpgradeArgs),
    /// Apply pending migrations (or, with --status, list them).
    Migrate(MigrateArgs),
    /// Check the deployment: database, migrations, workers, stuck work,
    /// backlog. Exit 0 all ok, 1 warnings, 2 failures.
    Doctor(DoctorArgs),
}

/// `floe workflows …`.
#[derive(Subcommand, Debug)]
pub enum WorkflowsCommand {
    /// List workflows, newest first.
    List(ListArgs),
    /// Show one workflow: its row, context, input, output and children.
    Show {
        /// The workflow's id.
        id: Uuid,
    },
    /// A workflow's history: every applied event and the change it made.
    History {
        /// The workflow's id.
        id: Uuid,
        /// Only entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
}

/// A workflow status, as a flag value.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusArg {
    /// Activities or children in flight.
    Running,
    /// Waiting for a signal or its deadline.
    Waiting,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl From<StatusArg> for Status {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Running => Self::Running,
            StatusArg::Waiting => Self::Waiting,
            StatusArg::Completed => Self::Completed,
            StatusArg::Failed => Self::Failed,
            StatusArg::Cancelled => Self::Cancelled,
        }
    }
}

/// `floe workflows list`'s filters.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only this state (the definition's state name).
    #[arg(long)]
    pub state: Option<String>,
    /// Only open workflows whose deadline has passed.
    #[arg(long)]
    pub overdue: bool,
    /// Only workflows waiting on a signal (status waiting).
    #[arg(long)]
    pub waiting: bool,
    /// Only business keys containing this, ignoring case.
    #[arg(long)]
    pub key_contains: Option<String>,
    /// At most this many (1 to 500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=500))]
    pub limit: i64,
    /// Continue after this id: the previous page's next cursor.
    #[arg(long)]
    pub cursor: Option<Uuid>,
}

/// `floe signal`'s arguments.
#[derive(clap::Args, Debug)]
pub struct SignalArgs {
    /// The workflow's id.
    pub id: Uuid,
    /// The signal's name.
    pub name: String,
    /// The payload: JSON text, @FILE to read it from a file, or - for stdin
    /// (null when absent).
    #[arg(long)]
    pub payload: Option<String>,
    /// Deliver at most once per workflow with this key.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// `floe cancel`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    /// The workflow's id.
    pub id: Uuid,
    /// Why; recorded as the workflow's error.
    #[arg(long)]
    pub reason: String,
}

/// `floe jobs …`.
#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first (completed jobs are deleted: this is live work
    /// and dead jobs).
    List {
        /// Only this state.
        #[arg(long, value_enum)]
        state: Option<JobStateArg>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs of this workflow (its advance and activity jobs).
        #[arg(long)]
        workflow: Option<Uuid>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=500))]
        limit: i64,
    },
    /// Retry a dead (or retrying) job now, with a fresh attempt budget.
    Retry {
        /// The job's id.
        id: i64,
    },
}

/// A job state, as a flag value.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStateArg {
    /// Enqueued for later.
    Scheduled,
    /// Claimable now.
    Available,
    /// Leased by a worker.
    Running,
    /// Waiting for its backoff after a failed attempt.
    Retrying,
    /// Out of attempts, or failed for good.
    Dead,
}

impl From<JobStateArg> for JobState {
    fn from(s: JobStateArg) -> Self {
        match s {
            JobStateArg::Scheduled => Self::Scheduled,
            JobStateArg::Available => Self::Available,
            JobStateArg::Running => Self::Running,
            JobStateArg::Retrying => Self::Retrying,
            JobStateArg::Dead => Self::Dead,
        }
    }
}

/// `floe replay`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Only the open workflows of this kind (default: every open workflow).
    #[arg(long)]
    pub kind: Option<String>,
    /// One workflow, open or finished.
    #[arg(long, conflicts_with = "kind")]
    pub id: Option<Uuid>,
}

/// `floe upgrade`'s arguments.
#[derive(clap::Args, Debug)]
pub struct UpgradeArgs {
    /// Only the open workflows of this kind (default: every kind this build
    /// has).
    #[arg(long)]
    pub kind: Option<String>,
    /// Try every upgrade, report, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `floe migrate`'s arguments.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// List migrations (applied, pending, unknown to this build) and change
    /// nothing.
    #[arg(long)]
    pub status: bool,
}

/// `floe doctor`'s arguments.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Deadlines and leases overdue by more than this many seconds, and jobs
    /// or events waiting longer, count as stuck.
    #[arg(long, default_value_t = 60)]
    pub stuck_after: u64,
}

/// Why a command failed; each kind has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such workflow or job (exit 1).
    #[error("{0}")]
    NotFound(String),
    /// Bad input, or refused (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be reached (exit 3).
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    /// Anything else (exit 3).
    #[error("{0:#}")]
    Unexpected(anyhow::Error),
}

impl Error {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotFound(_) => EXIT_NOT_FOUND,
            Self::Invalid(_) => EXIT_INVALID,
            Self::Unreachable(_) | Self::Unexpected(_) => EXIT_RUNTIME,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_) => Self::Unreachable(e.to_string()),
            // No table (42P01), no schema (3F000), no column (42703).
            sqlx::Error::Database(d)
                if matches!(d.code().as_deref(), Some("42P01" | "3F000" | "42703")) =>
            {
                Self::Unexpected(anyhow::anyhow!(
                    "the database is behind this build ({e}): run `floe migrate`"
                ))
            }
            _ => Self::Unexpected(e.into()),
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NotFound(id) => Self::NotFound(format!("no workflow {id}")),
            store::Error::Finished { id, status } => Self::Invalid(format!(
                "workflow {id} is {status}: it takes no more events"
            )),
            store::Error::Database(e) => e.into(),
        }
    }
}

impl From<inspect::Error> for Error {
    fn from(e: inspect::Error) -> Self {
        match e {
            inspect::Error::UnknownWorkflow(id) => Self::NotFound(format!("no workflow {id}")),
            inspect::Error::UnknownJob(id) => Self::NotFound(format!("no job {id}")),
            e @ inspect::Error::NotRetryable { .. } => Self::Invalid(e.to_string()),
            inspect::Error::Database(e) => e.into(),
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        // Keep the kinds of errors that have an exit code of their own.
        let e = match e.downcast::<store::Error>() {
            Ok(e) => return e.into(),
            Err(e) => e,
        };
        let e = match e.downcast::<sqlx::Error>() {
            Ok(e) => return e.into(),
            Err(e) => e,
        };
        Self::Unexpected(e)
    }
}

/// The command line, with the database flags made global (they may come
/// before or after the subcommand), a short connect timeout (an operator
/// waits at a terminal), and no start-up migration (only `floe migrate`
/// changes the schema).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command()
        .mut_arg("connect_timeout_secs", |a| a.default_value("5"))
        .mut_arg("migrate", |a| a.hide(true));
    for id in [
        "url",
        "max_connections",
        "connect_timeout_secs",
        "migrate",
        "embedded_dir",
        "pg_bindir",
    ] {
        cmd = cmd.mut_arg(id, |a| a.global(true));
    }
    cmd
}

/// Parses the command line; on bad usage, prints why and exits 2 (on
/// `--help` and `--version`, prints them and exits 0).
pub fn parse() -> Cli {
    parse_from(command().get_matches())
}

fn parse_from(matches: ArgMatches) -> Cli {
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `floe`'s `main`: parses, runs the command, prints an error as one line
/// on stderr, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = parse();
    telemetry::init(&LogSettings {
        format: LogFormat::Text,
        filter: if cli.verbose {
            "info,sqlx=warn".into()
        } else {
            "off".into()
        },
    });
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("floe: {}", one_line(&e.to_string()));
            e.exit_code()
        }
    };
    ExitCode::from(code)
}

/// `text` with its line breaks folded into one line.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Runs the command against the database; returns the exit code.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let out = Out { json: cli.json };
    // The embedded cluster, when used, is started (or found) on this
    // thread, before the runtime: its server is tied to this thread's life.
    let target = database::Target::find(&cli.database);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Unexpected(e.into()))?;
    let result = runtime.block_on(async {
        let pool = match &target {
            Ok(target) => target.connect(&cli.database).await,
            Err(e) => Err(Error::Unreachable(e.to_string())),
        };
        match cli.command {
            // The doctor reports an unreachable database as a failed check.
            Command::Doctor(args) => doctor::run(pool, &args, out).await,
            command => dispatch(command, pool?, out).await,
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Ok(target) = target {
        target.stop();
    }
    result
}

async fn dispatch(command: Command, pool: sqlx::PgPool, out: Out) -> Result<u8, Error> {
    match command {
        Command::Workflows(WorkflowsCommand::List(args)) => {
            workflows::list(&pool, &args, out).await
        }
        Command::Workflows(WorkflowsCommand::Show { id }) => workflows::show(&pool, id, out).await,
        Command::Workflows(WorkflowsCommand::History { id, after, limit }) => {
            workflows::history(&pool, id, after, limit, out).await
        }
        Command::Signal(args) => workflows::signal(&pool, &args, out).await,
        Command::Cancel(args) => workflows::cancel(&pool, &args, out).await,
        Command::Replay(args) => workflows::replay(&pool, &args, out).await,
        Command::Upgrade(args) => workflows::upgrade(&pool, &args, out).await,
        Command::Jobs(JobsCommand::List {
            state,
            kind,
            workflow,
            limit,
        }) => {
            let filter = inspect::JobFilter {
                state: state.map(Into::into),
                kind,
                workflow_id: workflow,
                before: None,
                limit,
            };
            jobs::list(&pool, &filter, out).await
        }
        Command::Jobs(JobsCommand::Retry { id }) => jobs::retry(&pool, id, out).await,
        Command::Migrate(args) => database::migrate(&pool, args.status, out).await,
        Command::Doctor(args) => doctor::run(Ok(pool), &args, out).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn database_flags_go_after_the_subcommand_too() {
        let m = command()
            .try_get_matches_from([
                "floe",
                "workflows",
                "list",
                "--database-url",
                "postgres://x@y/z",
                "--json",
            ])
            .expect("parses");
        let cli = Cli::from_arg_matches(&m).expect("cli");
        assert!(cli.json);
        assert!(cli.database.url.is_some());
        assert_eq!(cli.database.connect_timeout_secs, 5);
    }

    #[test]
    fn lines_are_folded() {
        assert_eq!(one_line("a\n  b\n\nc"), "a / b / c");
    }
}
