//! `ghostctl pause --reason TEXT`: pause intake (the record is
//! [`ghost_core::pause`]: while `state/pause.json` exists the bridge answers
//! `503` and inbox files wait; the executor goes on applying what is queued).
//! Pausing what is paused already changes nothing and says who paused it.

use std::io::Write;

use serde::Serialize;
use tracing::info;

use ghost_core::cli::EXIT_OK;
use ghost_core::pause::{self, Pause, PauseRecord};
use ghost_core::{Config, Layout};

use crate::util::who;
use crate::{io, json_text, CtlError};

/// The outcome of `pause` or `resume`, for the human and the JSON output.
#[derive(Debug, Serialize)]
pub struct PauseState {
    pub paused: bool,
    pub changed: bool,
    /// The pause record (the one in force, or the one just lifted). A pause
    /// file that does not read as a record shows as its text.
    pub record: Option<serde_json::Value>,
    /// Where the lifted pause was kept (`resume`).
    pub kept_as: Option<String>,
}

/// A pause as JSON for the output: the record, or the text of a file that
/// does not read as one.
pub(crate) fn shown(p: &Pause) -> serde_json::Value {
    match p {
        Pause::Record(r) => serde_json::to_value(r).unwrap_or_default(),
        Pause::Unreadable { text, .. } => serde_json::Value::String(text.clone()),
    }
}

pub(crate) fn failed(e: ghost_core::Error) -> CtlError {
    CtlError::Failed(e.to_string())
}

/// Pause intake, saying why.
pub fn pause(config: &Config, reason: &str) -> Result<PauseState, CtlError> {
    if reason.trim().is_empty() {
        return Err(CtlError::Usage(
            "`ghostctl pause` needs --reason TEXT: the person who resumes should know why".into(),
        ));
    }
    let layout = Layout::new(&config.root);
    if let Some(existing) = pause::read(&layout).map_err(failed)? {
        return Ok(PauseState {
            paused: true,
            changed: false,
            record: Some(shown(&existing)),
            kept_as: None,
        });
    }
    let rec = PauseRecord {
        paused_by: who(),
        paused_at: ghost_core::time::now_rfc3339(),
        reason: reason.to_string(),
        resumed_by: None,
        resumed_at: None,
    };
    pause::write(&layout, &rec).map_err(failed)?;
    info!(event = "OPERATOR_ACTION", action = "pause", by = %rec.paused_by, reason = %rec.reason, "intake paused");
    Ok(PauseState {
        paused: true,
        changed: true,
        record: Some(shown(&Pause::Record(rec))),
        kept_as: None,
    })
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
