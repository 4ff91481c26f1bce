//! ghost-monitor: the health model and the alert pipeline (docs/monitor.md).

use std::process::ExitCode;

use clap::Parser;

#[path = "daemon.rs"]
mod daemon;
use ghost_core::cli::{CommonArgs, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use ghost_monitor::MonitorError;

/// Watches the queues, heartbeats, logs, summaries and disks; turns problems
/// and the other processes' alerts into one notification per problem (Slack,
/// webhooks, Alertmanager, alerts/LOCAL_ALERTS).
#[derive(Parser, Debug)]
#[command(name = "ghost-monitor", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.common.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ghost-monitor: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    daemon::run(
        "ghost-monitor",
        "monitor",
        cli.common.verbosity(),
        config,
        |config, shutdown| async move {
            match ghost_monitor::run(config, shutdown).await {
                Ok(()) => EXIT_OK,
                Err(e @ MonitorError::Locked(_)) => {
                    eprintln!("ghost-monitor: {e}");
                    EXIT_USAGE
                }
                Err(e) => {
                    tracing::error!(event = "MONITOR_FAILED", error = %e, "monitor failed");
                    eprintln!("ghost-monitor: {e}");
                    EXIT_FAILURE
                }
            }
        },
    )
}
