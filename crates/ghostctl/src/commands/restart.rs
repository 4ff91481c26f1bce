//! `ghostctl restart CHILD`: a durable request file
//! (`state/watchdog/requests/CHILD.json`, [`ghost_core::watchdog`]) that the
//! running watchdog acts on within a second. Exit 1 when no watchdog runs on
//! the root, 2 for an unknown child.

use std::io::Write;

use ghost_core::cli::EXIT_OK;
use ghost_core::{Config, Layout};

use crate::commands::status::live_watchdog;
use crate::util::{clean, who};
use crate::{io, json_text, CtlError};

pub fn run(config: &Config, child: &str, json: bool, out: &mut dyn Write) -> Result<u8, CtlError> {
    let known = config.watchdog.children();
    if !known.contains_key(child) {
        return Err(CtlError::Usage(format!(
            "unknown child {:?}; the watchdog's children are: {}",
            clean(child),
            known.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let Some(pid) = live_watchdog(config) else {
        return Err(CtlError::Failed(format!(
            "no watchdog is running on {}: nothing to restart (a starting ghost-watchdog starts every child afresh)",
            config.root.display()
        )));
    };
    let by = who();
    let layout = Layout::new(&config.root);
    let path = ghost_core::watchdog::write_request(&layout, child, &by)?;
    tracing::info!(event = "OPERATOR_ACTION", action = "restart", child, by = %by, watchdog_pid = pid,
        request = %path.display(), "asked the watchdog to restart {child}");
    if json {
        let v = serde_json::json!({"child": child, "request": path, "watchdog_pid": pid, "by": by});
        writeln!(out, "{}", json_text(&v)).map_err(io)?;
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
