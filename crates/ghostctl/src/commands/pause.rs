//! `ghostctl pause --reason TEXT`: pause intake (the record is
//! [`ghost_core::pause`]: while `state/pause.json` exists the bridge answers
//! `503` and inbox files wait; the executor goes on applying what is queued).
//! Pausing what is paused already changes nothing and says who paused it.
//! The action itself is [`ghost_core::actions::pause`].

use std::io::Write;

use ghost_core::actions::{self, Actor};
use ghost_core::cli::EXIT_OK;
use ghost_core::{Config, Layout};

use crate::util::who;
use crate::{io, json_text, CtlError};

/// The outcome of `pause` or `resume`, for the human and the JSON output.
pub use ghost_core::actions::PauseOutcome as PauseState;

/// Pause intake, saying why (the one implementation: [`actions::pause`]).
pub fn pause(config: &Config, reason: &str) -> Result<PauseState, CtlError> {
    Ok(actions::pause(
        &Layout::new(&config.root),
        reason,
        &Actor::new(who(), "ghostctl"),
    )?)
}

pub fn render(s: &PauseState) -> String {
    match (s.paused, s.changed) {
        (true, true) => "intake paused: the bridge answers 503 and the inbox waits (`ghostctl resume --force` ends it)\n".into(),
        (true, false) => format!(
            "already paused: {}\n",
            s.record.as_ref().map(|r| r.to_string()).unwrap_or_default()
        ),
        (false, true) => format!(
            "resumed; the pause record is kept in {}\n",
            s.kept_as.as_deref().unwrap_or("-")
        ),
        (false, false) => "not paused\n".into(),
    }
}

/// Print a pause outcome.
pub(crate) fn print(st: &PauseState, json: bool, out: &mut dyn Write) -> Result<u8, CtlError> {
    if json {
        writeln!(out, "{}", json_text(st)).map_err(io)?;
    } else {
        write!(out, "{}", render(st)).map_err(io)?;
    }
    Ok(EXIT_OK)
}

/// `ghostctl pause --reason TEXT`.
pub fn run(config: &Config, reason: &str, json: bool, out: &mut dyn Write) -> Result<u8, CtlError> {
    print(&pause(config, reason)?, json, out)
}
