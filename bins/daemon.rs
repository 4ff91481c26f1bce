//! What the long-running binaries share around their `run`: logging to
//! `logs/<component>.log` (kept until the runtime has finished), a multi-threaded runtime, and SIGTERM/SIGINT turned
//! into a cancellation token. Included by `ghost-executor`, `ghost-bridge` and `ghost-monitor`
//! with `#[path]` (the watchdog runs on one thread and also handles SIGHUP).

use std::future::Future;
use std::process::ExitCode;

use ghost_core::cli::EXIT_FAILURE;
use ghost_core::Config;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Initialise logging, then run `body(config, shutdown)` on a runtime until it
/// returns its exit code; the first SIGTERM or SIGINT cancels `shutdown`.
pub fn run<F, Fut>(
    binary: &str,
    component: &str,
    verbosity: i8,
    config: Config,
    body: F,
) -> ExitCode
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = u8>,
{
    // Held until main returns: dropping it writes and syncs what is queued.
    let _log = match ghost_core::logging::init(component, verbosity, Some(&config)) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{binary}: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                eprintln!("{binary}: cannot install signal handlers");
                return EXIT_FAILURE;
            }
        };
        let s = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!(event = "SIGNAL", signal = "SIGTERM", "stopping"),
                _ = int.recv() => tracing::info!(event = "SIGNAL", signal = "SIGINT", "stopping"),
            }
            s.cancel();
        });
        body(config, shutdown).await
    });
    ExitCode::from(code)
}
