//! `ghostctl silence FINGERPRINT|PATTERN --for DURATION --reason TEXT`: a
//! request in `alerts/requests/` ([`ghost_core::alerting::Request`]) that the
//! monitor takes in at its next cycle (within a second of the file's
//! arrival). `*` in the matcher matches any run of characters.

use std::io::Write;

use ghost_core::alerting::{self, Request};
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
    if matcher.trim().is_empty() {
        return Err(CtlError::Usage(
            "the fingerprint or pattern is empty".into(),
        ));
    }
    let d = humantime::parse_duration(duration.trim()).map_err(|e| {
        CtlError::Usage(format!(
            "--for {:?} is not a duration ({e}); write e.g. 30m, 2h, 1d",
            clean(duration)
        ))
    })?;
    if d.is_zero() {
        return Err(CtlError::Usage("--for must be longer than zero".into()));
    }
    if reason.trim().is_empty() {
        return Err(CtlError::Usage("--reason must say why".into()));
    }
    let by = who();
    let layout = Layout::new(&config.root);
    let req = Request::Silence {
        matcher: matcher.to_string(),
        duration: humantime::format_duration(d).to_string(),
        reason: reason.to_string(),
        by: by.clone(),
        at: ghost_core::time::now_rfc3339(),
    };
    let path = alerting::write_request(&layout, &req)?;
    tracing::info!(event = "OPERATOR_ACTION", action = "silence", matcher, by = %by, duration, reason, "silence requested");
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
