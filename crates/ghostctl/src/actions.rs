//! `ghostctl retry|hold|release|delete|restore`: the ID resolved to one entry
//! ([`crate::entries::find`]), then the one implementation of the move,
//! [`ghost_core::actions::act`] (its module has the table of who may move
//! what, and appends the audit line), then what was done printed.

use std::io::Write;

pub use ghost_core::actions::Action;
use ghost_core::actions::{self, Actor, MoveOutcome, MoveRequest};
use ghost_core::entry::Located;
use ghost_core::{Config, Layout};

use crate::entries::find;
use crate::util::{clean, who};
use crate::{io, json_text, CtlError};

/// What an action did.
pub type ActionDone = MoveOutcome;

/// Apply `action` to the entry `id` names. `reason` is required for delete.
pub fn act(
    config: &Config,
    action: Action,
    id: &str,
    reason: Option<&str>,
) -> Result<ActionDone, CtlError> {
    if action.needs_reason() && reason.is_none_or(|r| r.trim().is_empty()) {
        // Before the look-up, as before: the missing reason is the first thing to say.
        return Err(CtlError::Usage(
            "delete needs --reason TEXT: say why, it is kept with the entry in trash/".into(),
        ));
    }
    let entry = find(config, id)?;
    let located = Located {
        target: entry.target.clone(),
        state: entry.state,
        name: entry.name.clone(),
        path: entry.path.clone(),
        patch_id: entry.patch_id.clone(),
    };
    let actor = Actor::new(who(), "ghostctl");
    Ok(actions::act(
        &Layout::new(&config.root),
        &MoveRequest {
            action,
            entry: &located,
            reason,
            actor: &actor,
        },
    )?)
}

/// `ghostctl retry|hold|release|delete`: act, then print what was done (and
/// notes on stderr).
pub fn run(
    config: &Config,
    action: Action,
    id: &str,
    reason: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    let done = act(config, action, id, reason)?;
    if json {
        writeln!(out, "{}", json_text(&done)).map_err(io)?;
        return Ok(ghost_core::cli::EXIT_OK);
    }
    writeln!(
        out,
        "{} {} (patch {}, target {}): {}/ -> {}/",
        action.done_verb(),
        done.queue_name,
        clean(done.patch_id.as_deref().unwrap_or("-")),
        done.target,
        done.from.dir_name(),
        done.to.dir_name()
    )
    .map_err(io)?;
    for n in &done.notes {
        let _ = writeln!(err, "note: {n}");
    }
    Ok(ghost_core::cli::EXIT_OK)
}
