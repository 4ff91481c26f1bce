//! `ghostctl ack FINGERPRINT|PATTERN|EPISODE`: acknowledge firing alerts (no
//! more reminders; the resolved message still comes). A request in
//! `alerts/requests/` that the monitor takes in at its next cycle.

use std::io::Write;

use ghost_core::alerting::{self, Request};
use ghost_core::cli::EXIT_OK;
use ghost_core::{Config, Layout};

use crate::util::{clean, who};
use crate::{io, json_text, CtlError};

pub fn run(
    config: &Config,
    matcher: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    let layout = Layout::new(&config.root);
    let book = alerting::read_book(&layout)?;
    let hits = book
        .episodes
        .values()
        .filter(|e| {
            e.status == alerting::EpisodeStatus::Firing
                && (e.uuid == matcher || alerting::glob_match(matcher, &e.fingerprint))
        })
        .count();
    if hits == 0 {
        return Err(CtlError::Usage(format!(
            "no firing alert matches {:?} (see `ghostctl alerts`)",
            clean(matcher)
        )));
    }
    let by = who();
    let req = Request::Ack {
        matcher: matcher.to_string(),
        by: by.clone(),
        at: ghost_core::time::now_rfc3339(),
    };
    let path = alerting::write_request(&layout, &req)?;
    tracing::info!(event = "OPERATOR_ACTION", action = "ack", matcher, by = %by, "acknowledged");
    if json {
        writeln!(
            out,
            "{}",
            json_text(&serde_json::json!({"request": path, "matching": hits, "ack": req}))
        )
        .map_err(io)?;
    } else {
        writeln!(
            out,
            "acknowledged {hits} firing alert(s) matching {}: no more reminders",
            clean(matcher)
        )
        .map_err(io)?;
    }
    Ok(EXIT_OK)
}
