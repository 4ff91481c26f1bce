//! ghost-watchdog: starts the bridge, the executor and the monitor, restarts
//! them within limits, detects hangs, and stops them all on SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ghost_core::cli::{CommonArgs, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use ghost_watchdog::{RunOptions, WatchdogError};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Starts and supervises the ghostbridge processes (bridge, executor,
/// monitor): restarts with a limit, hang detection, clean stop.
///
/// SIGTERM/SIGINT: stop every child, then exit 0 (a second signal: SIGKILL
/// them at once, and exit 1). SIGHUP: reload the configuration and restart the children
/// whose settings changed.
#[derive(Parser, Debug)]
#[command(name = "ghost-watchdog", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Do not print the start-up summary on stdout
    #[arg(long)]
    no_banner: bool,
    /// Check that it could start, change nothing, and exit: the data root
    /// exists, belongs to and is writable by this user, the configuration is
    /// valid, every enabled child's program exists. Exit 1 naming every
    /// problem (for ExecStartPre= and the PM2 and launchd wrappers)
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.common.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ghost-watchdog: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if cli.check {
        return check(&cli, &config);
    }
    // Held until main returns: dropping it writes and syncs what is queued.
    let _log = match ghost_core::logging::init("watchdog", cli.common.verbosity(), Some(&config)) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("ghost-watchdog: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // A current-thread runtime: the supervising task, and so every spawn of a
    // child, runs on the main thread, which lives as long as the process
    // (PR_SET_PDEATHSIG is tied to the thread that forked; see spawn.rs).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ghost-watchdog: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = rt.block_on(async move {
        let (mut term, mut int, mut hup) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => (t, i, h),
            _ => {
                eprintln!("ghost-watchdog: cannot install signal handlers");
                return EXIT_FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        let opts = RunOptions {
            config_file: cli.common.config.clone(),
            banner: !cli.no_banner,
            ..RunOptions::default()
        };
        let (s, hard, reload) = (shutdown.clone(), opts.hard_stop.clone(), Arc::clone(&opts.reload));
        let hard_stopped = opts.hard_stop.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    _ = hup.recv() => {
                        tracing::info!(event = "SIGNAL", signal = "SIGHUP", "reloading the configuration");
                        reload.notify_one();
                        continue;
                    }
                };
                if first {
                    tracing::info!(event = "SIGNAL", signal = name, "stopping every child");
                    s.cancel();
                    first = false;
                } else {
                    tracing::warn!(event = "SIGNAL", signal = name, "second stop signal: killing every child now");
                    hard.cancel();
                }
            }
        });
        match ghost_watchdog::run(config, shutdown, opts).await {
            // Children were SIGKILLed mid-work: a service manager must not
            // take that for a clean stop.
            Ok(()) if hard_stopped.is_cancelled() => {
                eprintln!("ghost-watchdog: hard stop: every child was killed with SIGKILL (work in progress is recovered at the next start)");
                EXIT_FAILURE
            }
            Ok(()) => EXIT_OK,
            Err(e @ WatchdogError::Locked { .. }) => {
                eprintln!("ghost-watchdog: {e}");
                EXIT_USAGE
            }
            Err(e) => {
                tracing::error!(event = "WATCHDOG_FAILED", error = %e, "watchdog failed");
                eprintln!("ghost-watchdog: {e}");
                EXIT_FAILURE
            }
        }
    });
    ExitCode::from(code)
}

/// `--check`: print what was verified on stdout, every problem on stderr.
fn check(cli: &Cli, config: &ghost_core::Config) -> ExitCode {
    let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
    else {
        eprintln!("ghost-watchdog --check: cannot tell where ghost-watchdog is");
        return ExitCode::from(EXIT_FAILURE);
    };
    let config_file = cli
        .common
        .config
        .as_deref()
        .and_then(|f| std::path::absolute(f).ok());
    let r = ghost_watchdog::check::check(config, config_file.as_deref(), &exe_dir);
    for l in &r.ok {
        println!("ok: {l}");
    }
    if r.problems.is_empty() {
        println!("ghost-watchdog --check: ready to start");
        return ExitCode::from(EXIT_OK);
    }
    for p in &r.problems {
        eprintln!("ghost-watchdog --check: FAILED: {p}");
    }
    eprintln!(
        "ghost-watchdog --check: {} problem(s); the watchdog would not run as intended",
        r.problems.len()
    );
    ExitCode::from(EXIT_FAILURE)
}
