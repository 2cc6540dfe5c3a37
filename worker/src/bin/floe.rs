//! `floe`: the operator's command. See [`floe_worker::cli`] and
//! `docs/cli.md`.

fn main() -> std::process::ExitCode {
    floe_worker::cli::main()
}
