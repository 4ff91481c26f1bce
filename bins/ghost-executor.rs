//! ghost-executor: applies queued patches as all-or-nothing transactions.

use std::process::ExitCode;

use clap::Parser;
use ghost_core::cli::{CommonArgs, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use ghost_executor::{ExecError, RunOptions};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

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
    let log = ghost_core::Layout::new(&config.root)
        .logs()
        .join("executor.log");
    if let Err(e) = ghost_core::logging::init("executor", cli.common.verbosity(), Some(&log)) {
        eprintln!("ghost-executor: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ghost-executor: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                eprintln!("ghost-executor: cannot install signal handlers");
                return EXIT_FAILURE;
            }
        };
        let s = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!(event = "SIGNAL", signal = "SIGTERM", "stopping: no new claims"),
                _ = int.recv() => tracing::info!(event = "SIGNAL", signal = "SIGINT", "stopping: no new claims"),
            }
            s.cancel();
        });
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
    });
    ExitCode::from(code)
}
