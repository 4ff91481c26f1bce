//! The executor's automatic pause while its log cannot be written, and the one
//! visible "intake paused" state it shares with the operator's pause.
//!
//! Two causes, one state: intake is paused while `state/pause.json` exists
//! (the operator's `ghostctl pause`) or while `state/log-pause.json` exists
//! and is not overridden (an executor whose primary log has failed longer than
//! `[logs] pause_after`; it stops claiming new patches). The bridge answers
//! `503` while either holds; `ghostctl status` names each cause.
//!
//! The executor writes `log-pause.json` when it pauses and removes it when its
//! log works again (or at its start: a crashed executor's record means
//! nothing). `ghostctl resume --force` does not touch it: it writes
//! `state/log-pause-override.json` naming the outage it overrides (its
//! `failing_since`), so the override ends with that outage and a new outage
//! pauses again.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layout::Layout;

/// What `state/log-pause.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPause {
    pub component: String,
    pub pid: u32,
    pub paused_at: String,
    /// When the primary log started failing: names the outage.
    pub failing_since: String,
    pub error: Option<String>,
    pub fallback_path: Option<String>,
}

/// What `state/log-pause-override.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPauseOverride {
    pub overridden_by: String,
    pub overridden_at: String,
    /// The outage this override is for.
    pub failing_since: String,
}

pub fn pause_path(layout: &Layout) -> PathBuf {
    layout.state().join("log-pause.json")
}

pub fn override_path(layout: &Layout) -> PathBuf {
    layout.state().join("log-pause-override.json")
}

/// The operator's intake pause file (`crate::pause`).
pub fn operator_pause_path(layout: &Layout) -> PathBuf {
    layout.pause_file()
}

pub fn read(layout: &Layout) -> Option<LogPause> {
    crate::fs::read_json(&pause_path(layout)).ok()
}

pub fn read_override(layout: &Layout) -> Option<LogPauseOverride> {
    crate::fs::read_json(&override_path(layout)).ok()
}

/// True when the operator has overridden the outage that started at `failing_since`.
pub fn overridden(layout: &Layout, failing_since: &str) -> bool {
    read_override(layout).is_some_and(|o| o.failing_since == failing_since)
}

pub fn write(layout: &Layout, p: &LogPause) -> Result<()> {
    crate::fs::ensure_dir(&layout.state())?;
    crate::fs::write_json(&pause_path(layout), p)
}

pub fn clear(layout: &Layout) -> Result<()> {
    crate::fs::durable_remove(&pause_path(layout))
}

/// Record an operator's override of the current log pause. Returns it, or
/// `None` when there is no log pause to override.
pub fn write_override(layout: &Layout, by: &str) -> Result<Option<LogPauseOverride>> {
    let Some(p) = read(layout) else {
        return Ok(None);
    };
    let o = LogPauseOverride {
        overridden_by: by.to_string(),
        overridden_at: crate::time::now_rfc3339(),
        failing_since: p.failing_since,
    };
    crate::fs::write_json(&override_path(layout), &o)?;
    Ok(Some(o))
}

/// The executor's decision, a pure function of what it knows: pause while its
/// log has failed longer than `pause_after`, unless that outage is overridden.
pub fn should_pause(
    failing_for: Option<Duration>,
    pause_after: Duration,
    overridden: bool,
) -> bool {
    failing_for.is_some_and(|f| f > pause_after) && !overridden
}

/// True while an executor's log pause holds (not overridden).
pub fn log_paused(layout: &Layout) -> bool {
    read(layout).is_some_and(|p| !overridden(layout, &p.failing_since))
}

/// Why intake is paused, if it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum PauseCause {
    /// `ghostctl pause`: the record in `state/pause.json`.
    Operator { record: serde_json::Value },
    /// An executor cannot write its log.
    LogFailure(LogPause),
}

impl PauseCause {
    pub fn describe(&self) -> String {
        match self {
            PauseCause::Operator { record } => format!(
                "paused by {} at {}: {}",
                record["paused_by"].as_str().unwrap_or("?"),
                record["paused_at"].as_str().unwrap_or("?"),
                record["reason"].as_str().unwrap_or("?")
            ),
            PauseCause::LogFailure(p) => format!(
                "the {} cannot write its log since {} ({}); lines go to {}; it resumes by itself when the log works, or `ghostctl resume --force`",
                p.component,
                p.failing_since,
                p.error.as_deref().unwrap_or("?"),
                p.fallback_path.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// Every cause that holds now (empty: intake is open).
pub fn causes(layout: &Layout) -> Vec<PauseCause> {
    let mut out = Vec::new();
    let op = operator_pause_path(layout);
    if op.exists() {
        let record = crate::fs::read_opt(&op)
            .ok()
            .flatten()
            .map(|b| {
                serde_json::from_slice(&b).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&b).into_owned())
                })
            })
            .unwrap_or(serde_json::Value::Null);
        out.push(PauseCause::Operator { record });
    }
    if let Some(p) = read(layout).filter(|p| !overridden(layout, &p.failing_since)) {
        out.push(PauseCause::LogFailure(p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision() {
        let s = Duration::from_secs;
        assert!(!should_pause(None, s(30), false));
        assert!(!should_pause(Some(s(30)), s(30), false));
        assert!(should_pause(Some(s(31)), s(30), false));
        assert!(!should_pause(Some(s(31)), s(30), true));
    }

    #[test]
    fn two_causes_one_state_and_an_override_per_outage() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        assert!(causes(&l).is_empty());
        assert_eq!(
            write_override(&l, "op").unwrap(),
            None,
            "nothing to override"
        );
        let p = LogPause {
            component: "executor".into(),
            pid: 1,
            paused_at: "2026-01-02T03:04:35.000Z".into(),
            failing_since: "2026-01-02T03:04:05.000Z".into(),
            error: Some("ENOSPC".into()),
            fallback_path: Some("/tmp/x".into()),
        };
        write(&l, &p).unwrap();
        crate::fs::write_json(
            &operator_pause_path(&l),
            &serde_json::json!({"paused_by": "alice", "paused_at": "t", "reason": "disk swap"}),
        )
        .unwrap();
        let c = causes(&l);
        assert_eq!(c.len(), 2);
        assert!(c[0].describe().contains("disk swap"));
        assert!(c[1]
            .describe()
            .contains("cannot write its log since 2026-01-02T03:04:05.000Z"));
        write_override(&l, "op").unwrap().unwrap();
        assert!(overridden(&l, &p.failing_since));
        assert_eq!(causes(&l).len(), 1, "the log pause is overridden");
        // A new outage is not covered by the old override.
        write(
            &l,
            &LogPause {
                failing_since: "later".into(),
                ..p
            },
        )
        .unwrap();
        assert_eq!(causes(&l).len(), 2);
        clear(&l).unwrap();
        assert_eq!(causes(&l).len(), 1);
    }
}
