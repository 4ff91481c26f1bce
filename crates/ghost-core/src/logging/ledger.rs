//! The rotation ledger, `logs/rotations.jsonl`: one JSON line per rotation of
//! any component, appended durably (one `write`, then `fdatasync`), so the
//! monitor and an operator can see how often each log turns over.
//!
//! ```json
//! {"component":"executor","at":"…","from_size":5242880,"rotated":"executor.20260102T030405.678Z.log.gz","reason":"size"}
//! ```
//!
//! A record with reason `fallback_copied` is not a rotation: the lines a
//! process wrote to its fallback file during an outage were copied back into
//! `logs/<component>.log`; `rotated` names the fallback file as kept, in `dir`
//! (the fallback directory), and `from_size` is its size. Rotation counts
//! leave these records out.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::Result;

pub const LEDGER_FILE: &str = "rotations.jsonl";
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Size,
    Age,
    /// Not a rotation: a fallback file's lines were copied back (see above).
    FallbackCopied,
}

impl Reason {
    /// Whether the record is a rotation of `logs/<component>.log`.
    pub fn is_rotation(self) -> bool {
        self != Reason::FallbackCopied
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    pub component: String,
    pub at: String,
    /// Size of the file when it was rotated.
    pub from_size: u64,
    /// File name of the rotated file (in `logs/`), as finally kept.
    pub rotated: String,
    pub reason: Reason,
    /// Where `rotated` is when it is not in `logs/` (a fallback file copied back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

pub fn path(logs_dir: &Path) -> PathBuf {
    logs_dir.join(LEDGER_FILE)
}

/// Append one record: a single `write` of the whole line on an `O_APPEND`
/// file (records of concurrent processes never interleave), then `fdatasync`.
pub fn append(logs_dir: &Path, rec: &RotationRecord) -> Result<()> {
    let p = path(logs_dir);
    let mut line = serde_json::to_vec(rec).expect("a plain record serialises");
    line.push(b'\n');
    crate::fs::durable_append(&p, &line)
}

/// The records in the last `tail_bytes` of the ledger (a cut first line is skipped).
pub fn read_tail(logs_dir: &Path, tail_bytes: u64) -> Vec<RotationRecord> {
    let p = path(logs_dir);
    let Ok(mut f) = File::open(&p) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(tail_bytes);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.lines();
    if start > 0 {
        lines.next();
    }
    lines.filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Rotations of one component within the sliding hour, and whether the
/// rapid-rotation alert is raised for the current episode.
#[derive(Debug, Default)]
pub struct RapidWindow {
    times: VecDeque<SystemTime>,
    alerted: bool,
}

impl RapidWindow {
    /// Seed from the ledger so a restarted process remembers the last hour.
    pub fn from_ledger(records: &[RotationRecord], component: &str, now: SystemTime) -> Self {
        let mut w = RapidWindow::default();
        for r in records
            .iter()
            .filter(|r| r.component == component && r.reason.is_rotation())
        {
            if let Some(t) = crate::time::parse_rfc3339(&r.at) {
                if now.duration_since(t).is_ok_and(|a| a < HOUR) {
                    w.times.push_back(t);
                }
            }
        }
        w
    }

    /// Record a rotation at `now`. Returns the count within the hour when it
    /// just went above `limit` (raise the alert once per episode); an episode
    /// ends when the count is back at or below `limit`.
    pub fn record(&mut self, now: SystemTime, limit: u32) -> Option<usize> {
        self.times.push_back(now);
        while let Some(t) = self.times.front() {
            if now.duration_since(*t).is_ok_and(|a| a >= HOUR) {
                self.times.pop_front();
            } else {
                break;
            }
        }
        let n = self.times.len();
        if n > limit as usize {
            if !self.alerted {
                self.alerted = true;
                return Some(n);
            }
        } else {
            self.alerted = false;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_append_and_read_back_and_the_window_slides() {
        let d = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045);
        for (i, c) in ["executor", "bridge", "executor"].iter().enumerate() {
            append(
                d.path(),
                &RotationRecord {
                    component: c.to_string(),
                    at: crate::time::rfc3339(t0 + Duration::from_secs(60 * i as u64)),
                    from_size: 10,
                    rotated: format!("{c}.x.log"),
                    reason: Reason::Size,
                    dir: None,
                },
            )
            .unwrap();
        }
        let recs = read_tail(d.path(), 1 << 16);
        assert_eq!(recs.len(), 3);
        assert_eq!(read_tail(d.path(), 50).len(), 0, "a cut line is skipped");
        let now = t0 + Duration::from_secs(180);
        let mut w = RapidWindow::from_ledger(&recs, "executor", now);
        assert_eq!(w.times.len(), 2);
        // 3 allowed per hour: the third is fine, the fourth alerts once.
        assert_eq!(w.record(now, 3), None);
        assert_eq!(w.record(now, 3), Some(4));
        assert_eq!(w.record(now, 3), None, "one alert per episode");
        // An hour later the window has emptied: a new episode may alert again.
        let later = now + HOUR;
        assert_eq!(w.record(later, 3), None);
        for _ in 0..2 {
            assert_eq!(w.record(later, 3), None);
        }
        assert_eq!(w.record(later, 3), Some(4));
    }
}
