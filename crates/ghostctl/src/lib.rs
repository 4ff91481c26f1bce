//! ghostctl: the operator's command line. It inspects and acts on the queue,
//! the summaries and the logs of one data root (DESIGN.md, "Command-line and
//! configuration contract").
//!
//! Like every other process it coordinates only through the files: entries move
//! by [`ghost_core::queue::Queue::transition`], each move records who did it and
//! why, and nothing is ever unlinked (a deleted entry goes to `trash/`).
//!
//! Each command is a function returning data ([`submit::submit`],
//! [`entries::list`], [`show::show`], [`status::status`], [`actions::act`],
//! [`verify::verify`], [`logs::logs`]) and a rendering of it; [`execute`] runs a
//! parsed command line, prints, and returns the exit code: 0 success, 1 the
//! work failed, 2 bad usage (unknown or ambiguous ID, an action the entry's
//! state does not allow, a missing `--reason`).

pub mod actions;
pub mod entries;
pub mod logs;
pub mod pause;
pub mod show;
pub mod status;
pub mod submit;
pub mod util;
pub mod verify;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use ghost_core::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use ghost_core::queue::QueueState;
use ghost_core::Config;

use crate::actions::Action;

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
        CtlError::Other(e.into())
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
    /// Exit 1 if any file was refused.
    Submit {
        /// Target for patches that name none (a patch naming another target is refused)
        #[arg(long, value_name = "T")]
        target: Option<String>,
        /// Patch files (JSON, native or legacy shapes); `-` reads standard input
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List queue entries
    ///
    /// By default every state except done and trash: pending, active, deferred,
    /// held, failed, stuck. `--state all` lists every state.
    Ls {
        /// State(s) to list: pending, active, deferred, held, done, failed,
        /// stuck (or .stuck), trash, or all; repeat or separate with commas
        /// [default: all but done and trash]
        #[arg(long, value_name = "S", value_delimiter = ',', value_parser = parse_state)]
        state: Vec<StateArg>,
        /// Only this target (name or alias)
        #[arg(long, value_name = "T")]
        target: Option<String>,
    },
    /// Show one entry and its summary
    ///
    /// ID is a queue name, a patch id, or a unique queue-name prefix (8+
    /// characters). With --json: {"entry": …, "summary": … or null}.
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
    /// Check every summary against its backup and repair from the intact copy
    ///
    /// Exit 1 if any summary is unrepairable.
    Verify,
    /// Show the components' logs (logs/<component>.log)
    Logs {
        /// Keep printing new lines as they are written
        #[arg(short, long)]
        follow: bool,
        /// Only this component (executor, bridge, monitor, watchdog, ghostctl)
        #[arg(long, value_name = "C")]
        component: Option<String>,
        /// Only lines about this patch (patch id or queue name)
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
    /// Alerts (not available yet: needs the monitor)
    Alerts {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Silence an alert: FINGERPRINT --for DURATION (not available yet: needs the monitor)
    Silence {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
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
}

impl Command {
    /// Commands that change the data root; their actions also go to
    /// `logs/ghostctl.log`.
    pub fn changes_things(&self) -> bool {
        matches!(
            self,
            Command::Submit { .. }
                | Command::Retry { .. }
                | Command::Hold { .. }
                | Command::Release { .. }
                | Command::Delete { .. }
                | Command::Verify
                | Command::Restart { .. }
                | Command::Pause { .. }
                | Command::Resume { .. }
        )
    }
}

fn json_line<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("plain data serialises")
}

/// Run one command, printing results to `out` and problems to `err`; returns
/// the exit code.
pub fn execute(config: &Config, args: &CtlArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match run(config, args, out, err) {
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

fn io(e: std::io::Error) -> CtlError {
    CtlError::Other(e.into())
}

fn run(
    config: &Config,
    args: &CtlArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    let json = args.json;
    match &args.command {
        Command::Submit { target, files } => {
            let items = submit::submit(
                config,
                target.as_deref(),
                files,
                &mut std::io::stdin().lock(),
            )?;
            let any_failed = items.iter().any(|i| !i.ok);
            if json {
                writeln!(out, "{}", json_line(&items)).map_err(io)?;
            } else {
                for i in &items {
                    if i.ok {
                        writeln!(
                            out,
                            "{}\t{}\t{}\t{}{}",
                            util::clean(&i.file),
                            i.queue_name.as_deref().unwrap_or("-"),
                            util::clean(i.patch_id.as_deref().unwrap_or("-")),
                            i.target.as_deref().unwrap_or("-"),
                            if i.duplicate {
                                "\talready queued: nothing written"
                            } else {
                                ""
                            }
                        )
                        .map_err(io)?;
                    } else {
                        for e in &i.errors {
                            let _ = writeln!(
                                err,
                                "{}: {}: {}",
                                util::clean(&i.file),
                                e.field,
                                e.reason
                            );
                        }
                    }
                }
            }
            Ok(if any_failed { EXIT_FAILURE } else { EXIT_OK })
        }
        Command::Ls { state, target } => {
            let states = if state.is_empty() {
                None
            } else if state.contains(&StateArg::All) {
                Some(QueueState::ALL.to_vec())
            } else {
                Some(
                    state
                        .iter()
                        .filter_map(|s| match s {
                            StateArg::One(q) => Some(*q),
                            StateArg::All => None,
                        })
                        .collect(),
                )
            };
            let filter = entries::ListFilter {
                target: target.clone(),
                states,
            };
            let list = entries::list(config, &filter)?;
            if json {
                writeln!(out, "{}", json_line(&list)).map_err(io)?;
            } else if list.is_empty() {
                let which = if filter.states.is_none() {
                    "in any state but done and trash; `--state all` lists those too".to_string()
                } else {
                    "in the states asked for".to_string()
                };
                writeln!(out, "no entries {which}").map_err(io)?;
            } else {
                write!(out, "{}", render_ls(&list)).map_err(io)?;
            }
            Ok(EXIT_OK)
        }
        Command::Show { id } => {
            let r = show::show(config, id)?;
            if json {
                writeln!(out, "{}", json_line(&r)).map_err(io)?;
            } else {
                write!(out, "{}", show::render(&r)).map_err(io)?;
            }
            Ok(EXIT_OK)
        }
        Command::Status => {
            let s = status::status(config)?;
            if json {
                writeln!(out, "{}", json_line(&s)).map_err(io)?;
            } else {
                write!(out, "{}", status::render(&s, config.heartbeat.stale_after)).map_err(io)?;
            }
            Ok(EXIT_OK)
        }
        Command::Retry { id, reason } => {
            action(config, Action::Retry, id, reason.as_deref(), json, out, err)
        }
        Command::Hold { id, reason } => {
            action(config, Action::Hold, id, reason.as_deref(), json, out, err)
        }
        Command::Release { id, reason } => action(
            config,
            Action::Release,
            id,
            reason.as_deref(),
            json,
            out,
            err,
        ),
        Command::Delete { id, reason } => action(
            config,
            Action::Delete,
            id,
            reason.as_deref(),
            json,
            out,
            err,
        ),
        Command::Verify => {
            let r = verify::verify(config);
            if json {
                writeln!(out, "{}", json_line(&r)).map_err(io)?;
            } else {
                write!(out, "{}", verify::render(&r)).map_err(io)?;
            }
            Ok(if r.failed() { EXIT_FAILURE } else { EXIT_OK })
        }
        Command::Logs {
            follow,
            component,
            patch,
            lines,
            level,
            correlation_id,
        } => {
            let opts = logs::LogsOptions {
                follow: *follow,
                component: component.clone(),
                patch: patch.clone(),
                lines: *lines,
                json,
                level: level.clone(),
                correlation_id: correlation_id.clone(),
            };
            // `-f` runs until the process is interrupted.
            logs::logs(config, &opts, out, &|| false)?;
            Ok(EXIT_OK)
        }
        Command::Alerts { .. } => not_yet("alerts", "the monitor"),
        Command::Silence { .. } => not_yet("silence", "the monitor"),
        Command::Restart { child } => restart(config, child, json, out),
        Command::Pause { reason } => {
            let st = pause::pause(config, reason)?;
            if json {
                writeln!(out, "{}", json_line(&st)).map_err(io)?;
            } else {
                write!(out, "{}", pause::render(&st)).map_err(io)?;
            }
            Ok(EXIT_OK)
        }
        Command::Resume { force } => {
            let st = pause::resume(config, *force)?;
            if json {
                writeln!(out, "{}", json_line(&st)).map_err(io)?;
            } else {
                write!(out, "{}", pause::render(&st)).map_err(io)?;
            }
            Ok(EXIT_OK)
        }
    }
}

fn not_yet(cmd: &str, needs: &str) -> Result<u8, CtlError> {
    Err(CtlError::Usage(format!(
        "`ghostctl {cmd}` is not available yet (needs {needs})"
    )))
}

/// `ghostctl restart CHILD`: a durable request file the watchdog acts on.
fn restart(config: &Config, child: &str, json: bool, out: &mut dyn Write) -> Result<u8, CtlError> {
    let known = config.watchdog.children();
    if !known.contains_key(child) {
        return Err(CtlError::Usage(format!(
            "unknown child {:?}; the watchdog's children are: {}",
            util::clean(child),
            known.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let Some(pid) = status::live_watchdog(config) else {
        return Err(CtlError::Failed(format!(
            "no watchdog is running on {}: nothing to restart (a starting ghost-watchdog starts every child afresh)",
            config.root.display()
        )));
    };
    let by = util::who();
    let layout = ghost_core::Layout::new(&config.root);
    let path = ghost_watchdog::state::write_request(&layout, child, &by)?;
    tracing::info!(event = "OPERATOR_ACTION", action = "restart", child, by = %by, watchdog_pid = pid,
        request = %path.display(), "asked the watchdog to restart {child}");
    if json {
        let v = serde_json::json!({"child": child, "request": path, "watchdog_pid": pid, "by": by});
        writeln!(out, "{}", json_line(&v)).map_err(io)?;
    } else {
        writeln!(
            out,
            "restart of {child} requested ({}); the watchdog (pid {pid}) acts on it within a second: see `ghostctl status`",
            path.display()
        )
        .map_err(io)?;
    }
    Ok(EXIT_OK)
}

fn action(
    config: &Config,
    a: Action,
    id: &str,
    reason: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    let done = actions::act(config, a, id, reason)?;
    if json {
        writeln!(out, "{}", json_line(&done)).map_err(io)?;
    } else {
        let verb = match a {
            Action::Retry => "retried",
            Action::Hold => "held",
            Action::Release => "released",
            Action::Delete => "deleted",
        };
        writeln!(
            out,
            "{verb} {} (patch {}, target {}): {}/ -> {}/",
            done.queue_name,
            util::clean(done.patch_id.as_deref().unwrap_or("-")),
            done.target,
            done.from.dir_name(),
            done.to.dir_name()
        )
        .map_err(io)?;
        for n in &done.notes {
            let _ = writeln!(err, "note: {n}");
        }
    }
    Ok(EXIT_OK)
}

/// The `ls` table.
pub fn render_ls(list: &[entries::EntryInfo]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let age = e.arrived.map(util::relative).unwrap_or_else(|| "-".into());
            vec![
                e.target.clone(),
                e.state.to_string(),
                e.name.clone(),
                util::clip(&e.display_id(), 48),
                e.attempts.to_string(),
                age,
                util::clip(&note(e), 72),
            ]
        })
        .collect();
    util::table(
        &[
            "TARGET",
            "STATE",
            "QUEUE NAME",
            "PATCH ID",
            "ATTEMPTS",
            "ARRIVED",
            "NOTE",
        ],
        &rows,
    )
}

/// The one thing worth knowing about an entry in its state.
fn note(e: &entries::EntryInfo) -> String {
    let r = &e.record;
    if let Some(err) = &e.record_error {
        return format!("record unreadable: {err}");
    }
    match e.state {
        QueueState::Active => r
            .claim
            .as_ref()
            .map(|c| {
                format!(
                    "pid {} on {} since {}",
                    c.pid,
                    c.host,
                    util::relative_str(&c.started_at)
                )
            })
            .unwrap_or_default(),
        QueueState::Deferred => r
            .due_at
            .as_deref()
            .map(|d| format!("due {}", util::relative_str(d)))
            .unwrap_or_else(|| "due now".into()),
        QueueState::Failed | QueueState::Stuck => r
            .reason
            .as_ref()
            .map(|x| format!("{}: {}", x.kind, x.message))
            .unwrap_or_default(),
        QueueState::Held | QueueState::Trash | QueueState::Pending | QueueState::Done => r
            .operator
            .last()
            .map(|a| {
                format!(
                    "{} by {} {}{}",
                    a.action,
                    a.by,
                    util::relative_str(&a.at),
                    a.reason
                        .as_deref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default(),
    }
}
