//! `ghostctl alerts [--json]`: the monitor's alert book (`alerts/state.json`,
//! [`ghost_core::alerting`]): episodes firing, recently resolved, silences.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use ghost_core::alerting::{self, Episode, EpisodeStatus, Silence};
use ghost_core::cli::EXIT_OK;
use ghost_core::{Config, Layout};

use crate::util::{cell, relative, table};
use crate::{io, json_text, CtlError};

#[derive(Debug, Serialize)]
pub struct AlertsView {
    pub firing: Vec<Episode>,
    /// Resolved, newest first (at most 20 shown as text, all with --json).
    pub resolved: Vec<Episode>,
    pub silences: Vec<Silence>,
    /// The monitor has written an alert book on this root.
    pub monitor_seen: bool,
}

pub fn view(config: &Config) -> Result<AlertsView, CtlError> {
    let layout = Layout::new(&config.root);
    let monitor_seen = layout.alerts_state().exists();
    let book = alerting::read_book(&layout)?;
    let firing = book
        .episodes
        .values()
        .filter(|e| e.status == EpisodeStatus::Firing)
        .cloned()
        .collect();
    let mut resolved: Vec<Episode> = book
        .episodes
        .values()
        .filter(|e| e.status == EpisodeStatus::Resolved)
        .cloned()
        .chain(book.resolved.iter().rev().cloned())
        .collect();
    resolved.sort_by_key(|e| std::cmp::Reverse(e.resolved_ms.unwrap_or(0)));
    Ok(AlertsView {
        firing,
        resolved,
        silences: book.silences,
        monitor_seen,
    })
}

pub(crate) fn ago(ms: u64) -> String {
    relative(UNIX_EPOCH + Duration::from_millis(ms))
}

pub fn run(config: &Config, json: bool, out: &mut dyn Write) -> Result<u8, CtlError> {
    let v = view(config)?;
    if json {
        writeln!(out, "{}", json_text(&v)).map_err(io)?;
        return Ok(EXIT_OK);
    }
    if !v.monitor_seen {
        writeln!(
            out,
            "no alert book yet: ghost-monitor has not run on this root"
        )
        .map_err(io)?;
        return Ok(EXIT_OK);
    }
    writeln!(out, "firing: {}", v.firing.len()).map_err(io)?;
    let sev = |e: &Episode| format!("{:?}", e.severity).to_lowercase();
    let rows: Vec<Vec<String>> = v
        .firing
        .iter()
        .map(|e| {
            let mut note = Vec::new();
            if let Some(by) = &e.acked_by {
                note.push(format!("acked by {}", cell(by, 20)));
            }
            if !e.firing_sent {
                note.push("not yet notified".into());
            }
            vec![
                format!("  {}", cell(&e.fingerprint, 60)),
                sev(e),
                ago(e.started_ms),
                e.uuid.clone(),
                format!(
                    "{}{}",
                    cell(&e.title, 60),
                    if note.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", note.join(", "))
                    }
                ),
            ]
        })
        .collect();
    if !rows.is_empty() {
        write!(
            out,
            "{}",
            table(
                &["  FINGERPRINT", "SEVERITY", "SINCE", "EPISODE", "TITLE"],
                &rows
            )
        )
        .map_err(io)?;
    }
    writeln!(out, "\nresolved (latest):").map_err(io)?;
    let rows: Vec<Vec<String>> = v
        .resolved
        .iter()
        .take(20)
        .map(|e| {
            vec![
                format!("  {}", cell(&e.fingerprint, 60)),
                sev(e),
                e.resolved_ms.map(ago).unwrap_or_else(|| "-".into()),
                e.uuid.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        write!(
            out,
            "{}",
            table(&["  FINGERPRINT", "SEVERITY", "RESOLVED", "EPISODE"], &rows)
        )
        .map_err(io)?;
    }
    if !v.silences.is_empty() {
        writeln!(out, "\nsilences:").map_err(io)?;
        let rows: Vec<Vec<String>> = v
            .silences
            .iter()
            .map(|s| {
                vec![
                    format!("  {}", cell(&s.matcher, 60)),
                    ago(s.until_ms),
                    cell(&s.by, 20),
                    cell(&s.reason, 60),
                ]
            })
            .collect();
        write!(
            out,
            "{}",
            table(&["  MATCHER", "UNTIL", "BY", "REASON"], &rows)
        )
        .map_err(io)?;
    }
    Ok(EXIT_OK)
}
