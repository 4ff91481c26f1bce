//! ghostctl: the operator CLI. Inspect and act on the queue, summaries and logs.

use std::process::ExitCode;

use clap::Parser;
use ghost_core::cli::{CommonArgs, EXIT_USAGE};

/// Operator CLI for ghostbridge: inspect and act on the queue, summaries and logs.
///
/// Exit status: 0 success, 1 the work failed, 2 bad usage, bad configuration or
/// an unknown ID.
#[derive(Parser, Debug)]
#[command(name = "ghostctl", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    ctl: ghostctl::CtlArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.common.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ghostctl: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Before anything is opened or created under it (the audit log included).
    if let Err(e) = ghostctl::check_root(&config.root, cli.ctl.command.changes_things()) {
        eprintln!("ghostctl: {e}");
        return ExitCode::from(e.exit_code());
    }
    // Operator actions are logged to logs/ghostctl.log for the monitor and the
    // audit trail; read-only commands leave the root untouched. On stderr only
    // errors by default (-v: warnings, -vv: everything): the command's output
    // is the answer.
    let log = cli.ctl.command.changes_things().then_some(&config);
    let verbosity = cli.common.verbosity() - 2;
    // Held until main returns: dropping it writes and syncs what is queued.
    let _log = match ghost_core::logging::init("ghostctl", verbosity, log) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("ghostctl: warning: cannot start the log ({e}); continuing without it");
            ghost_core::logging::init("ghostctl", verbosity, None).ok()
        }
    };
    let code = ghostctl::execute(
        &config,
        &cli.ctl,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
