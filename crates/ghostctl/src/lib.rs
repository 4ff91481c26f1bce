//! ghostctl: the operator's command line. It inspects and acts on the queue,
//! the summaries and the logs of one data root (docs/operations.md; every
//! verb is listed in this crate's README.md).
//!
//! Like every other process it coordinates only through the files: entries move
//! by [`ghost_core::queue::Queue::transition`], each move records who did it and
//! why, and nothing is ever unlinked (a deleted entry goes to `trash/`).
//!
//! Each verb is one module under [`commands`] with a `run` that does the work,
//! prints, and returns the exit code: 0 success, 1 the work failed, 2 bad
//! usage (unknown or ambiguous ID, an action the entry's state does not
//! allow, a missing `--reason`). [`execute`] only dispatches. Whether a verb
//! changes the data root, and so goes to the audit log, is
//! [`Command::changes_things`], an exhaustive `match`: a new verb does not
//! compile until it is decided.

pub mod actions;
pub mod commands;
pub mod entries;
pub mod submit;
pub mod util;

// The verbs' own functions, under the paths they have always had.
pub use commands::{logs, ls, pause, show, status, verify};

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use ghost_core::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use ghost_core::queue::QueueState;
use ghost_core::Config;

/// A command's failure, by exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad usage: unknown or ambiguous ID, action not allowed in the entry's
    /// state, missing argument (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The work failed (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Anything else that went wrong while working (exit 1).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl From<ghost_core::Error> for CtlError {
    fn from(e: ghost_core::Error) -> Self {
        match e {
            // An action the rules refuse is a usage error (exit 2); one that
            // lost a race failed (exit 1).
            ghost_core::Error::Refused(m) => CtlError::Usage(m),
            ghost_core::Error::Conflict(m) => CtlError::Failed(m),
            e => CtlError::Other(e.into()),
        }
    }
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => EXIT_USAGE,
            CtlError::Failed(_) | CtlError::Other(_) => EXIT_FAILURE,
        }
    }
}

/// ghostctl's own arguments (the global ones, `--root` and the like, are
/// `ghost_core::cli::CommonArgs`, flattened beside these by the binary).
#[derive(Debug, Clone, Args)]
pub struct CtlArgs {
    /// Machine-readable JSON on stdout instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// A `--state` value: a queue state, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateArg {
    All,
    One(QueueState),
}

fn parse_state(s: &str) -> Result<StateArg, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(StateArg::All);
    }
    QueueState::parse(&s.to_ascii_lowercase())
        .map(StateArg::One)
        .ok_or_else(|| {
            let names: Vec<&str> = QueueState::ALL.iter().map(|q| q.name()).collect();
            format!("unknown state {s:?}; one of: {}, all", names.join(", "))
        })
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Validate patch files and enqueue them, as the bridge would
    ///
    /// Prints one line per enqueued file: FILE, queue name, patch id, target
    /// (tab-separated). An invalid file is reported on stderr with every problem
    /// found and nothing is enqueued for it; the other files still go in.
    /// Exit 1 if any file was refused. While intake is paused nothing is
    /// enqueued and the exit is 2, unless --force.
    Submit {
        /// Target for patches that name none (a patch naming another target is refused)
        #[arg(long, value_name = "T")]
        target: Option<String>,
        /// Enqueue even while intake is paused (`ghostctl pause`, or an
        /// executor that cannot write its log)
        #[arg(long)]
        force: bool,
        /// Patch files (JSON, native or legacy shapes); `-` reads standard input
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List queue entries, a page at a time
    ///
    /// By default every state except done and trash: pending, active, deferred,
    /// held, failed, stuck. `--state all` lists every state. Newest first, 50
    /// to a page; the last line says how many more there are.
    Ls {
        /// State(s) to list: pending, active, deferred, held, done, failed,
        /// stuck (or .stuck), trash, or all; repeat or separate with commas
        /// [default: all but done and trash]
        #[arg(long, value_name = "S", value_delimiter = ',', value_parser = parse_state)]
        state: Vec<StateArg>,
        /// Only this target (name or alias)
        #[arg(long, value_name = "T")]
        target: Option<String>,
        #[command(flatten)]
        paging: ls::Paging,
    },
    /// Show one entry and its summary
    ///
    /// ID is a queue name, a patch id, or an unambiguous prefix or suffix of
    /// either (4+ characters). With --json: {"entry": …, "summary": … or null}.
    Show { id: String },
    /// Queue counts per target, heartbeats, and what needs a person
    Status,
    /// Send a stuck, failed or deferred entry back to pending (attempts reset)
    Retry {
        id: String,
        /// Why (kept in the entry's record)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Park a pending or deferred entry in held/ so the executor leaves it alone
    Hold {
        id: String,
        /// Why (kept in the entry's record)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a held entry back to pending
    Release {
        id: String,
        /// Why (kept in the entry's record)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move an entry to trash/ (recoverable; never unlinked; summaries stay)
    Delete {
        id: String,
        /// Why (required; kept in the entry's record)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Bring an entry back from trash/ to pending/ (or held/ with --held)
    ///
    /// Attempts reset; the record keeps its history, the delete and this
    /// restore (also logged to logs/ghostctl.log).
    Restore {
        id: String,
        /// To held/ instead of pending/, so the executor leaves it alone
        #[arg(long)]
        held: bool,
        /// Why (kept in the entry's record)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Check every summary against its backup and repair from the intact copy
    ///
    /// Exit 1 if any summary is unrepairable.
    Verify,
    /// Show the components' logs (logs/<component>.log)
    Logs {
        /// Keep printing new lines as they are written
        #[arg(short, long)]
        follow: bool,
        /// Only these components (executor, bridge, monitor, watchdog,
        /// ghostctl): repeat the flag or separate with commas
        #[arg(long, value_name = "C", value_delimiter = ',')]
        component: Vec<String>,
        /// Only lines about this entry (an ID as every verb takes it: queue
        /// name, patch id, or an unambiguous prefix or suffix)
        #[arg(long, value_name = "ID")]
        patch: Option<String>,
        /// Only the last N lines of what is there already
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<usize>,
        /// Only lines of this level or more severe (error, warn, info, debug, trace)
        #[arg(long, value_name = "L")]
        level: Option<String>,
        /// Only lines with this correlation_id
        #[arg(long, value_name = "ID")]
        correlation_id: Option<String>,
    },
    /// Alerts firing and recently resolved, and the silences (alerts/state.json)
    ///
    /// Written by ghost-monitor; each episode has a UUID that every
    /// notification about it carries.
    Alerts,
    /// Silence alerts: no notification about matching ones until it ends
    ///
    /// MATCHER is a fingerprint (`patch_stuck:default:0190…`) or a pattern
    /// where `*` matches anything (`heartbeat:*`). The request goes to
    /// alerts/requests/; the monitor takes it in at its next cycle.
    Silence {
        /// A fingerprint or a pattern with `*`
        matcher: String,
        /// How long: 30m, 2h, 1d
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why (kept with the silence)
        #[arg(long)]
        reason: String,
    },
    /// Acknowledge firing alerts: no more reminders (the resolved message still comes)
    Ack {
        /// A fingerprint, a pattern with `*`, or an episode UUID
        matcher: String,
    },
    /// Restart a child of the watchdog with a fresh restart budget
    ///
    /// For a child the watchdog gave up on (after its restart limit): fix the
    /// cause, then restart it. A running child is stopped (SIGTERM, SIGKILL
    /// after the grace) and started again. The request goes to
    /// state/watchdog/requests/CHILD.json; the running watchdog acts on it
    /// within a second and `ghostctl status` shows the result. Exit 1 when no
    /// watchdog runs on this root, 2 for an unknown child.
    Restart {
        /// bridge, executor, monitor, or a child under [watchdog.children]
        child: String,
    },
    /// Pause intake: the bridge answers 503 and inbox files wait (state/pause.json)
    Pause {
        /// Why: shown to whoever resumes
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Override a pause (the pause record is kept in state/pauses/)
    Resume {
        /// Required: a pause may have been set by someone else for a reason
        #[arg(long)]
        force: bool,
    },
    /// Run the retention now: move what it made due into archive/ (docs/retention.md)
    ///
    /// What the monitor does every `retention.interval`, at most
    /// `retention.max_per_cycle` items; prints what moved (with --dry-run,
    /// what would move, and nothing changes). `archive ls` lists what the
    /// archive holds; `archive extract ID` brings one item back, byte for byte.
    Archive {
        /// Only say what would move
        #[arg(long)]
        dry_run: bool,
        #[command(subcommand)]
        verb: Option<ArchiveVerb>,
    },
}

/// `ghostctl archive ls | extract`.
#[derive(Debug, Clone, Subcommand)]
pub enum ArchiveVerb {
    /// List archived items (the last copy of each), oldest month first
    Ls {
        /// Only this target (or `.alerts`)
        #[arg(long, value_name = "T")]
        target: Option<String>,
    },
    /// Bring an archived item back to where it was (the archive keeps its copy)
    ///
    /// ID is a queue name or a patch id. A file in the way with other content
    /// is an error and nothing is written.
    Extract { id: String },
}

impl Command {
    /// Commands that change the data root; their actions also go to
    /// `logs/ghostctl.log`, the audit log.
    pub fn changes_things(&self) -> bool {
        match self {
            Command::Submit { .. }
            | Command::Retry { .. }
            | Command::Hold { .. }
            | Command::Release { .. }
            | Command::Delete { .. }
            | Command::Restore { .. }
            | Command::Verify
            | Command::Restart { .. }
            | Command::Silence { .. }
            | Command::Ack { .. }
            | Command::Pause { .. }
            | Command::Resume { .. } => true,
            Command::Archive { dry_run, verb } => match verb {
                None => !dry_run,
                Some(ArchiveVerb::Extract { .. }) => true,
                Some(ArchiveVerb::Ls { .. }) => false,
            },
            Command::Ls { .. }
            | Command::Show { .. }
            | Command::Status
            | Command::Logs { .. }
            | Command::Alerts => false,
        }
    }
}

/// Pretty JSON for `--json` output.
pub(crate) fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("plain data serialises")
}

/// A failed write to the output, as a command error.
pub(crate) fn io(e: std::io::Error) -> CtlError {
    CtlError::Other(e.into())
}

/// Run one command, printing results to `out` and problems to `err`; returns
/// the exit code.
pub fn execute(config: &Config, args: &CtlArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match commands::dispatch(config, args, out, err) {
        Ok(code) => code,
        Err(CtlError::Other(e))
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            // The reader went away (`ghostctl logs | head`): not a failure.
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(err, "ghostctl: {e}");
            e.exit_code()
        }
    }
}

/// Check that `root` is a ghostbridge data root before any verb runs, so a
/// mistyped `--root` or a run from the wrong directory is refused instead of
/// answering "nothing stuck" or creating a new root. A root is recognised by
/// its `state/` and `logs/` directories, which every daemon creates on its
/// first start ([`ghost_core::layout::Layout::create`]); no verb creates a
/// root. Exit 2 ([`CtlError::Usage`]) when it is not one.
///
/// A verb that changes the root is also refused when ghostctl runs as
/// another user than the root's owner: the entries and logs it would write
/// (mode 0600) could not be read by the service user.
pub fn check_root(root: &std::path::Path, changes_things: bool) -> Result<(), CtlError> {
    use std::os::unix::fs::MetadataExt;
    let layout = ghost_core::layout::Layout::new(root);
    let is_root = root.is_dir() && layout.state().is_dir() && layout.logs().is_dir();
    if !is_root {
        return Err(CtlError::Usage(format!(
            "not a ghostbridge data root: {} (no state/ and logs/ directories; a daemon \
             creates them on its first start); use --root or GHOST_ROOT",
            util::clean(&root.display().to_string())
        )));
    }
    if changes_things {
        let owner = std::fs::metadata(root)
            .map_err(|e| CtlError::Other(e.into()))?
            .uid();
        let me = nix::unistd::geteuid().as_raw();
        if owner != me {
            let name = nix::unistd::User::from_uid(owner.into())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| owner.to_string());
            return Err(CtlError::Usage(format!(
                "the data root {} belongs to {name} (uid {owner}) but ghostctl runs as uid {me}: \
                 what it writes would not be readable by the service; run it as the owner, \
                 e.g. `sudo -u {name} ghostctl --root {} …`",
                util::clean(&root.display().to_string()),
                util::clean(&root.display().to_string())
            )));
        }
    }
    Ok(())
}
