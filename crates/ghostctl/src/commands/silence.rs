//! `ghostctl silence FINGERPRINT|PATTERN --for DURATION --reason TEXT`: a
//! request in `alerts/requests/` ([`ghost_core::alerting::Request`]) that the
//! monitor takes in at its next cycle (within a second of the file's
//! arrival). `*` in the matcher matches any run of characters. The action is
//! [`ghost_core::actions::silence`].

use std::io::Write;

use ghost_core::actions::{self, Actor};
use ghost_core::cli::EXIT_OK;
use ghost_core::{Config, Layout};

use crate::util::{clean, who};
use crate::{io, json_text, CtlError};

pub fn run(
    config: &Config,
    matcher: &str,
    duration: &str,
    reason: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    let (done, d) = actions::silence(
        &Layout::new(&config.root),
        matcher,
        duration,
        reason,
        &Actor::new(who(), "ghostctl"),
    )?;
    let (path, req) = (done.request, done.body);
    if json {
        writeln!(
            out,
            "{}",
            json_text(&serde_json::json!({"request": path, "silence": req}))
        )
        .map_err(io)?;
    } else {
        writeln!(
            out,
            "silence of {} for {} requested; the monitor takes it in at its next cycle (`ghostctl alerts` lists silences)",
            clean(matcher),
            humantime::format_duration(d)
        )
        .map_err(io)?;
    }
    Ok(EXIT_OK)
}
