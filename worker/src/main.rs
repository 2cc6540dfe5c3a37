//! `floe-worker`: see [`floe_worker::settings::Cli`].

use std::process::ExitCode;

use clap::Parser;
use floe_engine::{launch, telemetry};
use floe_worker::settings::{Cli, Command};
use floe_worker::startup::{self, Worker};
use floe_worker::workflows::replay_command;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log);
    let migrate_only = cli.command == Some(Command::Migrate);
    launch::main(
        "floe-worker",
        &cli.database,
        migrate_only,
        |pool, stop| async move {
            let workflows = startup::workflows(&cli.llm, &pool)?;
            if let Some(Command::Replay { kind, id, json }) = &cli.command {
                return replay_command(&pool, &workflows.definitions, kind.as_deref(), *id, *json)
                    .await;
            }
            Worker::build(&cli.worker, pool)
                .await?
                .workflows(workflows)
                .run(stop)
                .await?;
            Ok(())
        },
    )
}
