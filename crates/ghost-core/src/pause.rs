//! The intake pause (docs/formats.md, "The intake pause").
//!
//! While `state/pause.json` exists the bridge answers `503` and leaves inbox
//! files where they are; the executor goes on. Existence is the pause: a file
//! a person created by hand, even an empty one, pauses too. `ghostctl pause`
//! writes a [`PauseRecord`]; lifting a pause never just deletes it: the
//! record, with who lifted it and when, is kept in `state/pauses/<stamp>.json`
//! first ([`lift`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layout::Layout;

/// What `state/pause.json` (and each kept pause in `state/pauses/`) holds.
/// Every field has a default, so a hand-written `{}` still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PauseRecord {
    #[serde(default)]
    pub paused_by: String,
    #[serde(default)]
    pub paused_at: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<String>,
}

/// The pause file as found.
#[derive(Debug, Clone, PartialEq)]
pub enum Pause {
    /// A record that reads.
    Record(PauseRecord),
    /// A file that exists (so intake is paused) but does not read as a record:
    /// its text (lossy UTF-8) and why.
    Unreadable { text: String, error: String },
}

/// True while `state/pause.json` exists.
pub fn is_paused(layout: &Layout) -> bool {
    layout.pause_file().exists()
}

/// The current pause, if intake is paused.
pub fn read(layout: &Layout) -> Result<Option<Pause>> {
    let Some(bytes) = crate::fs::read_opt(&layout.pause_file())? else {
        return Ok(None);
    };
    Ok(Some(match serde_json::from_slice::<PauseRecord>(&bytes) {
        Ok(r) => Pause::Record(r),
        Err(e) => Pause::Unreadable {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            error: e.to_string(),
        },
    }))
}

/// Pause intake: write `state/pause.json` durably.
pub fn write(layout: &Layout, record: &PauseRecord) -> Result<()> {
    crate::fs::ensure_dir(&layout.state())?;
    crate::fs::write_json(&layout.pause_file(), record)
}

/// Lift the pause: keep the record, with `resumed_by`/`resumed_at` added, in
/// `state/pauses/<stamp>.json`, then remove `state/pause.json`. An unreadable
/// pause file is kept as a record whose reason carries its text. Returns the
/// kept record and where it went; `None` when intake was not paused.
pub fn lift(layout: &Layout, by: &str) -> Result<Option<(PauseRecord, PathBuf)>> {
    let Some(found) = read(layout)? else {
        return Ok(None);
    };
    let mut kept = match found {
        Pause::Record(r) => r,
        Pause::Unreadable { text, error } => PauseRecord {
            reason: format!("(unreadable pause file: {error}) {text}"),
            ..PauseRecord::default()
        },
    };
    kept.resumed_by = Some(by.to_string());
    kept.resumed_at = Some(crate::time::now_rfc3339());
    let dir = layout.pauses();
    crate::fs::ensure_dir(&dir)?;
    let path = dir.join(format!("{}.json", crate::queue::new_name()));
    crate::fs::write_json(&path, &kept)?;
    crate::fs::durable_remove(&layout.pause_file())?;
    Ok(Some((kept, path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_then_lift_keeps_the_record() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        assert!(!is_paused(&l));
        assert_eq!(lift(&l, "x").unwrap(), None);
        let rec = PauseRecord {
            paused_by: "alice (uid 1000)".into(),
            paused_at: "t".into(),
            reason: "disk swap".into(),
            ..PauseRecord::default()
        };
        write(&l, &rec).unwrap();
        assert!(is_paused(&l));
        assert_eq!(read(&l).unwrap(), Some(Pause::Record(rec.clone())));
        let (kept, path) = lift(&l, "bob (uid 1001)").unwrap().unwrap();
        assert!(!is_paused(&l));
        assert_eq!(kept.reason, "disk swap");
        assert_eq!(kept.resumed_by.as_deref(), Some("bob (uid 1001)"));
        let back: PauseRecord = crate::fs::read_json(&path).unwrap();
        assert_eq!(back, kept);
    }

    #[test]
    fn a_hand_made_pause_file_pauses_and_is_kept_when_lifted() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        crate::fs::ensure_dir(&l.state()).unwrap();
        crate::fs::durable_write(&l.pause_file(), b"maintenance\n", 0o600).unwrap();
        assert!(is_paused(&l));
        assert!(matches!(read(&l).unwrap(), Some(Pause::Unreadable { .. })));
        let (kept, _) = lift(&l, "bob").unwrap().unwrap();
        assert!(kept.reason.contains("maintenance"), "{}", kept.reason);
        crate::fs::durable_write(&l.pause_file(), b"{}", 0o600).unwrap();
        assert_eq!(
            read(&l).unwrap(),
            Some(Pause::Record(PauseRecord::default()))
        );
    }
}
