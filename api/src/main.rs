//! `floe-api`: see [`floe_api::settings::Cli`].

use std::process::ExitCode;

use clap::Parser;
use floe_api::settings::{Cli, Command};
use floe_api::startup::Application;
use floe_engine::{launch, telemetry};
use floe_worker::startup::{self, Worker};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log);
    let migrate_only = cli.command == Some(Command::Migrate);
    launch::main(
        "floe-api",
        &cli.database,
        migrate_only,
        |pool, stop| async move {
            // The kinds the engine API may start and answer queries for: the
            // same definitions this build's workers run.
            let workflows = startup::workflows(&cli.llm, &pool)?;
            let app =
                Application::build(&cli.http, pool.clone(), workflows.definitions.clone()).await?;
            let addr = app.local_addr()?;
            // One signal, fanned out to the server and the in-process worker.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let stopped = move || {
                let mut rx = stop_rx.clone();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            };
            let worker = match cli.with_worker {
                true => Some(tokio::spawn(
                    Worker::build(&cli.worker, pool.clone())
                        .await?
                        .workflows(workflows)
                        .run(stopped()),
                )),
                false => None,
            };
            let server = tokio::spawn(app.run(stopped()));
            tracing::info!(%addr, "floe is serving on http://{addr}");
            stop.await;
            let _ = stop_tx.send(true);
            server.await??;
            if let Some(worker) = worker {
                worker.await??;
            }
            Ok(())
        },
    )
}
