//! `ghostctl resume --force`: lift the intake pause, whoever set it. The
//! record is never just deleted: [`ghost_core::pause::lift`] keeps it, with
//! who resumed and when, in `state/pauses/<stamp>.json`.

use std::io::Write;

use ghost_core::actions::{self, Actor};
use ghost_core::{Config, Layout};

use crate::commands::pause::{print, PauseState};
use crate::util::who;
use crate::CtlError;

/// Lift a pause (`force` is required: someone or something set it); an
/// executor's log pause is overridden too ([`actions::resume`]).
pub fn resume(config: &Config, force: bool) -> Result<PauseState, CtlError> {
    Ok(actions::resume(
        &Layout::new(&config.root),
        force,
        &Actor::new(who(), "ghostctl"),
    )?)
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
