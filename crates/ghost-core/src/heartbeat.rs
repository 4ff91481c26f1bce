//! Heartbeats: `state/heartbeats/<component>.json`, written on a change of content
//! or every `interval`, deduplicated by the MD5 of the content without timestamps.
//! Details carry the process's log health under `logs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layout::Layout;
use crate::time::{age, now_rfc3339, parse_rfc3339};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub component: String,
    pub pid: u32,
    /// `starting`, `running`, `paused`, `stopping`, `stopped`.
    pub status: String,
    pub started_at: String,
    pub updated_at: String,
    pub version: String,
    /// Component details: queue statistics, counters.
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Heartbeat {
    /// True when the heartbeat is older than `stale_after` (or unreadable time).
    pub fn is_stale(&self, stale_after: Duration) -> bool {
        parse_rfc3339(&self.updated_at)
            .map(|t| age(t) > stale_after)
            .unwrap_or(true)
    }
}

pub fn read(path: &Path) -> Result<Heartbeat> {
    crate::fs::read_json(path)
}

/// Writes one component's heartbeat, skipping writes that would change nothing
/// but the timestamp until `interval` has passed.
#[derive(Debug)]
pub struct HeartbeatWriter {
    path: PathBuf,
    component: String,
    started_at: String,
    interval: Duration,
    last: Option<(String, Instant)>,
}

impl HeartbeatWriter {
    pub fn new(layout: &Layout, component: &str, interval: Duration) -> Self {
        HeartbeatWriter {
            path: layout.heartbeat(component),
            component: component.to_string(),
            started_at: now_rfc3339(),
            interval,
            last: None,
        }
    }

    /// Write the heartbeat if its content changed or `interval` passed since the
    /// last write. Returns whether it wrote.
    /// The process's log health is added to object details as `logs` (see
    /// `logging::LogHealthReport`), so every daemon's heartbeat carries it.
    pub fn beat(&mut self, status: &str, mut details: serde_json::Value) -> Result<bool> {
        if let (Some(m), Some(h)) = (details.as_object_mut(), crate::logging::health()) {
            m.entry("logs")
                .or_insert_with(|| serde_json::to_value(h.report()).unwrap_or_default());
        }
        let hash = crate::md5_hex(
            serde_json::to_string(&(&self.component, status, &details))
                .unwrap_or_default()
                .as_bytes(),
        );
        if let Some((h, at)) = &self.last {
            if *h == hash && at.elapsed() < self.interval {
                return Ok(false);
            }
        }
        let hb = Heartbeat {
            component: self.component.clone(),
            pid: std::process::id(),
            status: status.to_string(),
            started_at: self.started_at.clone(),
            updated_at: now_rfc3339(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            details,
        };
        crate::fs::write_json(&self.path, &hb)?;
        self.last = Some((hash, Instant::now()));
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debounced_by_content() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        l.create(["default"]).unwrap();
        let mut w = HeartbeatWriter::new(&l, "executor", Duration::from_secs(3600));
        assert!(w.beat("running", json!({"n": 1})).unwrap());
        assert!(!w.beat("running", json!({"n": 1})).unwrap());
        assert!(w.beat("running", json!({"n": 2})).unwrap());
        let hb = read(w.path()).unwrap();
        assert_eq!(hb.details["n"], 2);
        assert!(!hb.is_stale(Duration::from_secs(60)));
        let mut w2 = HeartbeatWriter::new(&l, "x", Duration::ZERO);
        assert!(w2.beat("running", json!({})).unwrap());
        assert!(
            w2.beat("running", json!({})).unwrap(),
            "interval elapsed: must write again"
        );
    }
}
