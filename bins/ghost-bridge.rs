//! ghost-bridge: takes patches in over HTTP, from the inbox directory and from
//! chat transcripts, and queues each durably.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use ghost_bridge::BridgeError;
use ghost_core::cli::{CommonArgs, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

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
    let log = ghost_core::Layout::new(&config.root)
        .logs()
        .join("bridge.log");
    if let Err(e) = ghost_core::logging::init("bridge", cli.common.verbosity(), Some(&log)) {
        eprintln!("ghost-bridge: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ghost-bridge: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                eprintln!("ghost-bridge: cannot install signal handlers");
                return EXIT_FAILURE;
            }
        };
        let s = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!(event = "SIGNAL", signal = "SIGTERM", "stopping: no new requests"),
                _ = int.recv() => tracing::info!(event = "SIGNAL", signal = "SIGINT", "stopping: no new requests"),
            }
            s.cancel();
        });
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
    });
    ExitCode::from(code)
}
