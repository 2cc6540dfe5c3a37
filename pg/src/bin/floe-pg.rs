//! `floe-pg`: floe's embedded PostgreSQL on its own.
//!
//! * `floe-pg serve` keeps the project's cluster running until Ctrl-C and
//!   prints its URL (for psql while floe is stopped);
//! * `floe-pg exec --temporary -- CMD...` runs CMD with `DATABASE_URL` set to a
//!   throwaway cluster, then removes it: this is how `./scripts/test` gets its
//!   database. The exit code is CMD's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use floe_pg::{EmbeddedPostgres, Options};
use secrecy::ExposeSecret;

/// floe's embedded PostgreSQL cluster.
#[derive(Parser, Debug)]
#[command(name = "floe-pg", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// The cluster's folder (ignored with --temporary).
    #[arg(
        long = "embedded-dir",
        env = "FLOE__DATABASE__EMBEDDED_DIR",
        default_value = ".floe/postgres",
        global = true
    )]
    dir: PathBuf,
    /// Folder holding `postgres` and `initdb`.
    #[arg(long = "pg-bindir", env = "FLOE__DATABASE__PG_BINDIR", global = true)]
    bindir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the cluster until SIGINT or SIGTERM.
    Serve,
    /// Run a command with DATABASE_URL pointing at the cluster, then stop it.
    Exec {
        /// Use a throwaway cluster, removed afterwards, instead of the project's.
        #[arg(long)]
        temporary: bool,
        /// Database in DATABASE_URL.
        #[arg(long, default_value = "postgres")]
        database: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "floe-pg failed");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let temporary = matches!(
        cli.command,
        Cmd::Exec {
            temporary: true,
            ..
        }
    );
    let mut options = if temporary {
        Options::temporary()
    } else {
        Options::persistent(&cli.dir)
    };
    options.bindir = cli.bindir;
    // Started on the main thread, which lives until the end: see `start`.
    let pg = EmbeddedPostgres::start(&options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = match cli.command {
        Cmd::Serve => {
            let url = pg.url(floe_pg::DATABASE);
            runtime.block_on(async {
                let stop = stop_signal()?;
                floe_pg::ensure_database(&url).await?;
                println!("DATABASE_URL={}", url.expose_secret());
                stop.await;
                anyhow::Ok(())
            })?;
            ExitCode::SUCCESS
        }
        Cmd::Exec {
            database, command, ..
        } => {
            let url = pg.url(&database);
            runtime.block_on(async {
                floe_pg::ensure_database(&url).await?;
                exec(&command, url.expose_secret()).await
            })?
        }
    };
    drop(runtime);
    pg.stop()?;
    Ok(code)
}

/// Runs `command` with `DATABASE_URL`, passing SIGINT and SIGTERM on to it.
async fn exec(command: &[String], url: &str) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("DATABASE_URL", url)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", command[0]))?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status?,
            _ = int.recv() => nix::sys::signal::Signal::SIGINT,
            _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), forward);
        }
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}

/// Listens for SIGINT and SIGTERM from now on; resolves on the first.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
