//! `ghostctl ack FINGERPRINT|PATTERN|EPISODE`: acknowledge firing alerts (no
//! more reminders; the resolved message still comes). A request in
//! `alerts/requests/` that the monitor takes in at its next cycle, written by
//! the one implementation, [`ghost_core::actions::ack`].

use std::io::Write;

use ghost_core::actions::{self, Actor};
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
    let done = actions::ack(
        &Layout::new(&config.root),
        matcher,
        &Actor::new(who(), "ghostctl"),
    )?;
    let (path, hits, req) = (done.request, done.matching, done.body);
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
