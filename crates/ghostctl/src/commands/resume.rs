//! `ghostctl resume --force`: lift the intake pause, whoever set it. The
//! record is never just deleted: [`ghost_core::pause::lift`] keeps it, with
//! who resumed and when, in `state/pauses/<stamp>.json`.

use std::io::Write;

use tracing::info;

use ghost_core::logging::pause as log_pause;
use ghost_core::{pause, Config, Layout};

use crate::commands::pause::{failed, print, shown, PauseState};
use crate::util::who;
use crate::CtlError;

/// Lift a pause (`force` is required: someone or something set it).
///
/// An executor's log pause (its log cannot be written) is overridden too: the
/// override is recorded in `state/log-pause-override.json` for that outage
/// and in the audit log; the executor claims patches again.
pub fn resume(config: &Config, force: bool) -> Result<PauseState, CtlError> {
    let layout = Layout::new(&config.root);
    let log_paused = log_pause::log_paused(&layout);
    let existing = pause::read(&layout).map_err(failed)?;
    if existing.is_none() && !log_paused {
        return Ok(PauseState {
            paused: false,
            changed: false,
            record: None,
            kept_as: None,
        });
    }
    if !force {
        let mut causes: Vec<String> = existing.iter().map(|e| shown(e).to_string()).collect();
        causes.extend(
            log_pause::causes(&layout)
                .into_iter()
                .filter(|c| matches!(c, log_pause::PauseCause::LogFailure(_)))
                .map(|c| c.describe()),
        );
        return Err(CtlError::Usage(format!(
            "intake is paused ({}); `ghostctl resume --force` overrides the pause",
            causes.join("; ")
        )));
    }
    let by = who();
    if log_paused {
        if let Some(o) = log_pause::write_override(&layout, &by).map_err(failed)? {
            info!(event = "OPERATOR_ACTION", action = "resume_log_pause", by = %o.overridden_by, failing_since = %o.failing_since, "the executor's log pause overridden");
            if existing.is_none() {
                return Ok(PauseState {
                    paused: false,
                    changed: true,
                    record: serde_json::to_value(&o).ok(),
                    kept_as: Some(log_pause::override_path(&layout).display().to_string()),
                });
            }
        }
    }
    let Some((kept, kept_as)) = pause::lift(&layout, &by).map_err(failed)? else {
        // Lifted by someone else between our look and our move.
        return Ok(PauseState {
            paused: false,
            changed: false,
            record: None,
            kept_as: None,
        });
    };
    info!(event = "OPERATOR_ACTION", action = "resume", by = %by, kept_as = %kept_as.display(), "pause overridden");
    Ok(PauseState {
        paused: false,
        changed: true,
        record: Some(shown(&pause::Pause::Record(kept))),
        kept_as: Some(kept_as.display().to_string()),
    })
}

/// `ghostctl resume --force`.
pub fn run(config: &Config, force: bool, json: bool, out: &mut dyn Write) -> Result<u8, CtlError> {
    print(&resume(config, force)?, json, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::pause::pause;

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
        let kept: serde_json::Value =
            serde_json::from_slice(&std::fs::read(r.kept_as.unwrap()).unwrap()).unwrap();
        assert_eq!(kept["reason"], "disk maintenance");
        assert!(kept["resumed_by"].is_string());
        assert!(!resume(&cfg, true).unwrap().changed);
    }
}
