//! ghost-bridge: takes patches in over HTTP, from the inbox directory and from
//! chat transcripts, and queues each durably.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

#[path = "daemon.rs"]
mod daemon;
use ghost_bridge::BridgeError;
use ghost_core::cli::{CommonArgs, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

/// Validates incoming patches (HTTP, inbox/, transcripts), deduplicates them
/// by id and queues each durably in queue/<target>/pending/.
#[derive(Parser, Debug)]
#[command(name = "ghost-bridge", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on [default: bridge.listen, 127.0.0.1:7878]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ghost_core::init_failpoints();
    let mut config = match cli.common.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ghost-bridge: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(addr) = cli.listen {
        config.bridge.listen = addr.to_string();
    }
    daemon::run(
        "ghost-bridge",
        "bridge",
        cli.common.verbosity(),
        config,
        |config, shutdown| async move {
            match ghost_bridge::run(config, shutdown).await {
                Ok(()) => EXIT_OK,
                Err(e @ (BridgeError::Locked { .. } | BridgeError::Secrets(_))) => {
                    eprintln!("ghost-bridge: {e}");
                    EXIT_USAGE
                }
                Err(e) => {
                    tracing::error!(event = "BRIDGE_FAILED", error = %e, "bridge failed");
                    eprintln!("ghost-bridge: {e}");
                    EXIT_FAILURE
                }
            }
        },
    )
}
