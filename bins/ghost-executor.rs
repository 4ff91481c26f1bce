//! ghost-executor: applies queued patches as all-or-nothing transactions.

use std::process::ExitCode;

use clap::Parser;

#[path = "daemon.rs"]
mod daemon;
use ghost_core::cli::{CommonArgs, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use ghost_executor::{ExecError, RunOptions};

/// Claims patches from queue/<target>/pending/ and applies each as an
/// all-or-nothing transaction with validation, rollback and a verified summary.
#[derive(Parser, Debug)]
#[command(name = "ghost-executor", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Process every pending patch (and every deferred one already due), then exit
    #[arg(long)]
    drain: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ghost_executor::init_failpoints();
    let config = match cli.common.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ghost-executor: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    daemon::run(
        "ghost-executor",
        "executor",
        cli.common.verbosity(),
        config,
        |config, shutdown| async move {
            match ghost_executor::run(config, shutdown, RunOptions { drain: cli.drain }).await {
                Ok(()) => EXIT_OK,
                Err(e @ ExecError::Locked { .. }) => {
                    eprintln!("ghost-executor: {e}");
                    EXIT_USAGE
                }
                Err(e) => {
                    tracing::error!(event = "EXECUTOR_FAILED", error = %e, "executor failed");
                    eprintln!("ghost-executor: {e}");
                    EXIT_FAILURE
                }
            }
        },
    )
}
