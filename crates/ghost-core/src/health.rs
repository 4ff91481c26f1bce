//! The health model (docs/formats.md, "Health"): `state/health.json`, written
//! by the monitor after every cycle, read by `ghostctl status` and the
//! dashboard; and its history, `state/history/<YYYYMMDDHH>.jsonl`, one
//! [`Sample`] a minute, one file per hour, the oldest files removed past
//! `monitor.history_keep`.
//!
//! Invariant: `health.json` is replaced whole by one durable write, so a
//! reader sees one cycle's model or the one before, never a mix. Ages are
//! counted from an entry's arrival (its queue name is a UUID v7, whose first
//! 48 bits are the arrival time in milliseconds), so a cycle needs only the
//! directory listings, not one `stat` per entry.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layout::Layout;

/// A heartbeat's state: `late` (older than `heartbeat.interval`) and `down`
/// (older than `heartbeat.stale_after`, or its pid gone) are different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeatState {
    Ok,
    Late,
    Down,
    /// No heartbeat file at all.
    Absent,
    #[serde(other)]
    Unknown,
}

impl BeatState {
    pub fn as_str(self) -> &'static str {
        match self {
            BeatState::Ok => "ok",
            BeatState::Late => "late",
            BeatState::Down => "down",
            BeatState::Absent => "absent",
            BeatState::Unknown => "unknown",
        }
    }
}

/// The whole of `state/health.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// When the cycle that made this model ended (RFC 3339).
    pub generated_at: String,
    /// The monitor that wrote it.
    pub monitor_pid: u32,
    /// How long that cycle took.
    pub cycle_ms: u64,
    /// Per target.
    pub targets: BTreeMap<String, TargetHealth>,
    /// bridge, executor, watchdog, monitor.
    pub components: BTreeMap<String, ComponentHealth>,
    pub summaries: SummaryHealth,
    pub disks: Vec<DiskHealth>,
    /// Intake paused (`state/pause.json`, or the executor's log pause): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Watchdog children in state `given_up`.
    #[serde(default)]
    pub given_up: Vec<String>,
    /// Log rotations per component within the last hour (`logs/rotations.jsonl`).
    #[serde(default)]
    pub rotations_last_hour: BTreeMap<String, u32>,
    /// Alerts firing now (fingerprints), as the monitor's alert book has them.
    #[serde(default)]
    pub firing: Vec<String>,
}

/// One target's queues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// Per state name (`pending`, `active`, …, `stuck`, `trash`).
    pub states: BTreeMap<String, StateHealth>,
    /// Entries reaching `done/` per minute (since the previous cycle).
    pub done_per_min: f64,
    /// Entries reaching `failed/` per minute (since the previous cycle).
    pub failed_per_min: f64,
    /// Pending entries older than `monitor.stale_pending_after`.
    pub stale_pending: usize,
    /// Queue names in `.stuck/` (at most 100 listed; `states.stuck.count` has them all).
    #[serde(default)]
    pub stuck: Vec<String>,
    /// Queue names in `active/` whose claiming executor process is gone.
    #[serde(default)]
    pub orphaned_claims: Vec<String>,
}

/// One state directory of one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateHealth {
    pub count: usize,
    /// Age of the oldest entry, in seconds since its arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_s: Option<u64>,
    /// Entries by age, buckets that double in width like Postfix's `qshape`:
    /// bucket i holds ages under [`BUCKET_BOUNDS_S`]`[i]` seconds (the last:
    /// everything older).
    pub buckets: Vec<usize>,
}

/// Upper bounds (seconds) of the age buckets: 1 min, 2, 4, … 512 min, then older.
pub const BUCKET_BOUNDS_S: [u64; 10] = [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 30720];

/// The bucket an age falls in (0 ..= `BUCKET_BOUNDS_S.len()`).
pub fn bucket_of(age_s: u64) -> usize {
    BUCKET_BOUNDS_S
        .iter()
        .position(|b| age_s < *b)
        .unwrap_or(BUCKET_BOUNDS_S.len())
}

/// One component: heartbeat state and resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    pub state: BeatState,
    /// The heartbeat's own status (`running`, `paused`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Seconds since the heartbeat was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_s: Option<f64>,
    /// Percent of one CPU since the previous cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Its log health, from the heartbeat's `details.logs`, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogHealthView>,
}

/// What the monitor reads of a heartbeat's `details.logs` (docs/formats.md,
/// "Heartbeats"). Fields it does not know are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogHealthView {
    #[serde(default = "yes")]
    pub primary_ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_path: Option<String>,
    #[serde(default)]
    pub dropped_lines: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn yes() -> bool {
    true
}

/// Summaries of terminal entries checked against their backups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryHealth {
    /// Summaries known intact.
    pub verified: usize,
    /// `<target>/<name>` of summaries that are missing or differ from their
    /// backup: at most the first 1,000 (`corrupt_count` has them all).
    pub corrupt: Vec<String>,
    /// How many summaries are not intact, per target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub corrupt_count: BTreeMap<String, usize>,
    /// When every summary was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full_sweep: Option<String>,
}

/// Free space of one filesystem the system writes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskHealth {
    /// `root` or `log_fallback`.
    pub name: String,
    pub path: PathBuf,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub free_percent: f64,
}

/// One line of `state/history/*.jsonl`: what the dashboard charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Per target: pending, active, stuck, failed counts; done and failed per minute.
    pub targets: BTreeMap<String, SampleTarget>,
    /// Alerts firing.
    pub firing: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleTarget {
    pub pending: usize,
    pub active: usize,
    pub stuck: usize,
    pub failed: usize,
    pub done_per_min: f64,
    pub failed_per_min: f64,
}

/// Read `state/health.json`, if a monitor ever wrote one.
pub fn read(layout: &Layout) -> Result<Option<Health>> {
    let p = layout.health();
    if !p.exists() {
        return Ok(None);
    }
    crate::fs::read_json(&p).map(Some)
}

/// Replace `state/health.json` durably.
pub fn write(layout: &Layout, health: &Health) -> Result<()> {
    crate::fs::ensure_dir(&layout.state())?;
    crate::fs::write_json(&layout.health(), health)
}

/// The history file a sample taken at `at_ms` belongs in.
pub fn history_file(layout: &Layout, at_ms: u64) -> PathBuf {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // 2026-01-02T03:04:05Z → 2026010203
    let hour: String = s[..13].chars().filter(|c| c.is_ascii_digit()).collect();
    layout.history().join(format!("{hour}.jsonl"))
}

/// Every sample in the history, oldest first (unreadable lines skipped).
pub fn read_history(layout: &Layout) -> Vec<Sample> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(layout.history())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Sample>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The arrival time (Unix ms) a UUID v7 queue name carries.
pub fn name_time_ms(name: &str) -> Option<u64> {
    let hex: String = name.chars().filter(|c| *c != '-').take(12).collect();
    if hex.len() != 12 || name.len() != 36 {
        return None;
    }
    u64::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(59), 0);
        assert_eq!(bucket_of(60), 1);
        assert_eq!(bucket_of(239), 2);
        assert_eq!(bucket_of(1_000_000), BUCKET_BOUNDS_S.len());
        for w in BUCKET_BOUNDS_S.windows(2) {
            assert_eq!(w[1], 2 * w[0]);
        }
    }

    #[test]
    fn name_time_is_the_uuid_v7_time() {
        let before = crate::time::unix_ms(std::time::SystemTime::now());
        let n = crate::queue::new_name();
        let t = name_time_ms(&n).unwrap();
        assert!(t >= before && t <= before + 5_000, "{t} vs {before}");
        assert_eq!(name_time_ms("not-a-name"), None);
    }

    #[test]
    fn health_round_trips_and_history_files_are_hourly() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        assert!(read(&l).unwrap().is_none());
        let mut h = Health {
            generated_at: crate::time::now_rfc3339(),
            ..Health::default()
        };
        h.components.insert(
            "executor".into(),
            ComponentHealth {
                state: BeatState::Late,
                status: Some("running".into()),
                pid: Some(7),
                updated_at: None,
                age_s: Some(31.0),
                cpu_percent: None,
                rss_bytes: None,
                logs: None,
            },
        );
        write(&l, &h).unwrap();
        assert_eq!(read(&l).unwrap().unwrap(), h);
        let v: serde_json::Value = crate::fs::read_json(&l.health()).unwrap();
        assert_eq!(v["components"]["executor"]["state"], "late");
        let f = history_file(&l, 1_767_323_045_000); // 2026-01-02T03:04:05Z
        assert!(f.ends_with("2026010203.jsonl"), "{}", f.display());
    }
}
