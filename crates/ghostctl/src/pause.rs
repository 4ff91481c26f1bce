//! `ghostctl pause` and `ghostctl resume --force`: the intake pause.
//!
//! While `state/pause.json` exists the bridge answers `503` with `Retry-After`
//! and leaves inbox files where they are; the executor goes on applying what is
//! queued. `pause` writes the file with who, when and why; `resume --force`
//! overrides it, whoever set it. The pause record is never just deleted: it is
//! kept, with who resumed and when, in `state/pauses/<stamp>.json`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use ghost_core::{Config, Layout};

use crate::util::who;
use crate::CtlError;

/// What `state/pause.json` holds (anything else found there is kept as `other`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PauseRecord {
    pub paused_by: String,
    pub paused_at: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<String>,
}

/// The outcome, for the human and the JSON output.
#[derive(Debug, Serialize)]
pub struct PauseState {
    pub paused: bool,
    pub changed: bool,
    pub record: Option<Value>,
    /// Where the overridden pause was kept (`resume`).
    pub kept_as: Option<String>,
}

fn current(layout: &Layout) -> Result<Option<Value>, CtlError> {
    let p = layout.state().join("pause.json");
    match ghost_core::fs::read_opt(&p).map_err(|e| CtlError::Failed(e.to_string()))? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }))),
    }
}

/// Pause intake, saying why.
pub fn pause(config: &Config, reason: &str) -> Result<PauseState, CtlError> {
    if reason.trim().is_empty() {
        return Err(CtlError::Usage(
            "`ghostctl pause` needs --reason TEXT: the person who resumes should know why".into(),
        ));
    }
    let layout = Layout::new(&config.root);
    if let Some(existing) = current(&layout)? {
        return Ok(PauseState {
            paused: true,
            changed: false,
            record: Some(existing),
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
    ghost_core::fs::ensure_dir(&layout.state()).map_err(|e| CtlError::Failed(e.to_string()))?;
    ghost_core::fs::write_json(&layout.state().join("pause.json"), &rec)
        .map_err(|e| CtlError::Failed(e.to_string()))?;
    info!(event = "OPERATOR_ACTION", action = "pause", by = %rec.paused_by, reason = %rec.reason, "intake paused");
    Ok(PauseState {
        paused: true,
        changed: true,
        record: serde_json::to_value(&rec).ok(),
        kept_as: None,
    })
}

/// Override a pause (`force` is required: someone or something set it).
///
/// An executor's log pause (its log cannot be written) is overridden too: the
/// override is recorded in `state/log-pause-override.json` for that outage
/// and in the audit log; the executor claims patches again.
pub fn resume(config: &Config, force: bool) -> Result<PauseState, CtlError> {
    let layout = Layout::new(&config.root);
    let log_paused = ghost_core::logging::pause::log_paused(&layout);
    let existing = current(&layout)?;
    if existing.is_none() && !log_paused {
        return Ok(PauseState {
            paused: false,
            changed: false,
            record: None,
            kept_as: None,
        });
    }
    if !force {
        let causes: Vec<String> = ghost_core::logging::pause::causes(&layout)
            .iter()
            .map(|c| c.describe())
            .collect();
        return Err(CtlError::Usage(format!(
            "intake is paused ({}); `ghostctl resume --force` overrides the pause",
            causes.join("; ")
        )));
    }
    let mut log_override = None;
    if log_paused {
        let o = ghost_core::logging::pause::write_override(&layout, &who())
            .map_err(|e| CtlError::Failed(e.to_string()))?;
        if let Some(o) = &o {
            info!(event = "OPERATOR_ACTION", action = "resume_log_pause", by = %o.overridden_by, failing_since = %o.failing_since, "the executor's log pause overridden");
        }
        log_override = o;
    }
    let Some(existing) = existing else {
        return Ok(PauseState {
            paused: false,
            changed: true,
            record: serde_json::to_value(&log_override).ok(),
            kept_as: Some(
                ghost_core::logging::pause::override_path(&layout)
                    .display()
                    .to_string(),
            ),
        });
    };
    let mut kept = existing.clone();
    if let Value::Object(m) = &mut kept {
        m.insert("resumed_by".into(), Value::String(who()));
        m.insert(
            "resumed_at".into(),
            Value::String(ghost_core::time::now_rfc3339()),
        );
    }
    let dir = layout.state().join("pauses");
    ghost_core::fs::ensure_dir(&dir).map_err(|e| CtlError::Failed(e.to_string()))?;
    let kept_as = dir.join(format!("{}.json", ghost_core::queue::new_name()));
    ghost_core::fs::write_json(&kept_as, &kept).map_err(|e| CtlError::Failed(e.to_string()))?;
    ghost_core::fs::durable_remove(&layout.state().join("pause.json"))
        .map_err(|e| CtlError::Failed(e.to_string()))?;
    info!(event = "OPERATOR_ACTION", action = "resume", by = %who(), kept_as = %kept_as.display(), "pause overridden");
    Ok(PauseState {
        paused: false,
        changed: true,
        record: Some(kept),
        kept_as: Some(kept_as.display().to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_then_resume_keeps_the_record() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config {
            root: d.path().to_path_buf(),
            ..Config::default()
        };
        assert!(matches!(pause(&cfg, " "), Err(CtlError::Usage(_))));
        let p = pause(&cfg, "disk maintenance").unwrap();
        assert!(p.paused && p.changed);
        assert!(d.path().join("state/pause.json").exists());
        assert!(!pause(&cfg, "again").unwrap().changed);
        assert!(matches!(resume(&cfg, false), Err(CtlError::Usage(_))));
        let r = resume(&cfg, true).unwrap();
        assert!(!r.paused && r.changed);
        assert!(!d.path().join("state/pause.json").exists());
        let kept: Value =
            serde_json::from_slice(&std::fs::read(r.kept_as.unwrap()).unwrap()).unwrap();
        assert_eq!(kept["reason"], "disk maintenance");
        assert!(kept["resumed_by"].is_string());
        assert!(!resume(&cfg, true).unwrap().changed);
    }
}
