//! One module per `ghostctl` verb. Each has a `run` that does the work,
//! prints the answer (a table, or JSON with `--json`) and returns the exit
//! code; [`dispatch`] only picks the module. The entry moves (retry, hold,
//! release, delete, restore) share one `run`, [`crate::actions::run`]; their
//! rules live with their one implementation, [`ghost_core::actions`].

pub mod ack;
pub mod alerts;
pub mod archive;
pub mod logs;
pub mod ls;
pub mod pause;
pub mod restart;
pub mod resume;
pub mod show;
pub mod silence;
pub mod status;
pub mod submit;
pub mod verify;

use std::io::Write;

use ghost_core::Config;

use crate::actions::{self, Action};
use crate::{Command, CtlArgs, CtlError};

/// Run the verb `args` names.
pub fn dispatch(
    config: &Config,
    args: &CtlArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    let json = args.json;
    // The four moves share their `run` (the rules are in their modules).
    let mut move_entry = |a: Action, id: &str, reason: &Option<String>| {
        actions::run(config, a, id, reason.as_deref(), json, &mut *out, &mut *err)
    };
    match &args.command {
        Command::Submit {
            target,
            files,
            force,
        } => submit::run(config, target.as_deref(), files, *force, json, out, err),
        Command::Ls {
            state,
            target,
            paging,
        } => ls::run(config, state, target.as_deref(), paging, json, out, err),
        Command::Show { id } => show::run(config, id, json, out),
        Command::Status => status::run(config, json, out),
        Command::Retry { id, reason } => move_entry(Action::Retry, id, reason),
        Command::Hold { id, reason } => move_entry(Action::Hold, id, reason),
        Command::Release { id, reason } => move_entry(Action::Release, id, reason),
        Command::Delete { id, reason } => move_entry(Action::Delete, id, reason),
        Command::Restore { id, held, reason } => {
            let a = if *held {
                Action::RestoreHeld
            } else {
                Action::Restore
            };
            move_entry(a, id, reason)
        }
        Command::Verify => verify::run(config, json, out),
        Command::Logs {
            follow,
            component,
            patch,
            lines,
            level,
            correlation_id,
        } => logs::run(
            config,
            logs::LogsOptions {
                follow: *follow,
                components: component.clone(),
                patch: patch.clone(),
                lines: *lines,
                json,
                level: level.clone(),
                correlation_id: correlation_id.clone(),
            },
            out,
        ),
        Command::Alerts => alerts::run(config, json, out),
        Command::Silence {
            matcher,
            duration,
            reason,
        } => silence::run(config, matcher, duration, reason, json, out),
        Command::Ack { matcher } => ack::run(config, matcher, json, out),
        Command::Restart { child } => restart::run(config, child, json, out),
        Command::Pause { reason } => pause::run(config, reason, json, out),
        Command::Resume { force } => resume::run(config, *force, json, out),
        Command::Archive { dry_run, verb } => {
            archive::run(config, *dry_run, verb.as_ref(), json, out)
        }
    }
}
