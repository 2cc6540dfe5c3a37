//! `floe-worker`: see [`floe_worker::settings::Cli`].

use std::process::ExitCode;

use clap::Parser;
use floe_engine::{launch, telemetry};
use floe_worker::settings::{Cli, Command};
use floe_worker::startup::Worker;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log);
    let migrate_only = cli.command == Some(Command::Migrate);
    launch::main(
        "floe-worker",
        &cli.database,
        migrate_only,
        |pool, stop| async move {
            Worker::build(&cli.worker, pool).await?.run(stop).await?;
            Ok(())
        },
    )
}
