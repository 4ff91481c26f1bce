//! Alerts (docs/formats.md, "Alert files"): one [`Alert`] type that every
//! process writes into `alerts/inbox/` and the monitor reads.
//!
//! An alert is one JSON file, written durably under a fresh time-ordered name,
//! so files sort in the order they were raised and a writer never replaces
//! another's file. The same `fingerprint` coming again with `status:
//! resolved` ends what an earlier `firing` one started. Fields about a patch
//! (`target`, `queue_name`, `patch_id`) or about a watchdog child (`child`,
//! `restarts_in_window`, …) are present only for alerts of that kind.
//!
//! Invariant: an alert carries no secret; `stderr_tail` is a child's output,
//! which the processes never write secrets to.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layout::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Something needs a person. (An alert written without `status`, as the
    /// executor's were before this field, is firing.)
    #[default]
    Firing,
    /// What the same fingerprint reported earlier is over.
    Resolved,
}

/// The process that raised the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSource {
    Executor,
    Bridge,
    Watchdog,
    Monitor,
    Ghostctl,
    #[serde(other)]
    Unknown,
}

/// One file in `alerts/inbox/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What the alert is about, stable across raises and its resolution:
    /// `patch_stuck:<target>:<queue name>`, `watchdog_gave_up:<child>`.
    pub fingerprint: String,
    pub severity: Severity,
    #[serde(default)]
    pub status: AlertStatus,
    pub source: AlertSource,
    pub title: String,
    pub message: String,
    /// When it was raised (RFC 3339).
    pub at: String,

    // About a patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_id: Option<String>,

    // About a watchdog child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts_in_window: Option<u32>,
    /// `restart_window`, as a human duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_window: Option<String>,
    /// `code 1`, `SIGKILL`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// Why the last process ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<crate::watchdog::ExitCause>,
    /// The end of the child's output log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,

    // About a process's log (the log writer's alerts).
    /// The component whose log it is (`executor`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Why the log could not be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `logs/<component>.log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_path: Option<String>,
    /// Where its lines go while the primary fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_path: Option<String>,
    /// Lines written to the fallback during the outage (resolved alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines_in_fallback: Option<u64>,
    /// Rotations of the log within the last hour (rapid-rotation alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotations_in_hour: Option<u32>,
}

impl Alert {
    /// A firing alert with no kind-specific fields, stamped now.
    pub fn new(
        fingerprint: impl Into<String>,
        severity: Severity,
        source: AlertSource,
        title: impl Into<String>,
        message: impl Into<String>,
    ) -> Alert {
        Alert {
            fingerprint: fingerprint.into(),
            severity,
            status: AlertStatus::Firing,
            source,
            title: title.into(),
            message: message.into(),
            at: crate::time::now_rfc3339(),
            target: None,
            queue_name: None,
            patch_id: None,
            child: None,
            restarts_in_window: None,
            restart_window: None,
            last_exit: None,
            cause: None,
            stderr_tail: None,
            component: None,
            error: None,
            primary_path: None,
            fallback_path: None,
            lines_in_fallback: None,
            rotations_in_hour: None,
        }
    }

    /// The executor's alert for a patch parked in `.stuck/`.
    pub fn patch_stuck(target: &str, queue_name: &str, patch_id: &str, message: &str) -> Alert {
        Alert {
            target: Some(target.to_string()),
            queue_name: Some(queue_name.to_string()),
            patch_id: Some(patch_id.to_string()),
            ..Alert::new(
                format!("patch_stuck:{target}:{queue_name}"),
                Severity::Critical,
                AlertSource::Executor,
                format!("patch {patch_id} is stuck on target {target}"),
                message,
            )
        }
    }
}

/// Write `alert` durably into `alerts/inbox/` under a fresh name; returns its path.
pub fn write(layout: &Layout, alert: &Alert) -> Result<PathBuf> {
    let dir = layout.alerts_inbox();
    crate::fs::ensure_dir(&dir)?;
    let path = dir.join(format!("{}.json", crate::queue::new_name()));
    crate::fs::write_json(&path, alert)?;
    Ok(path)
}

/// Read one alert file.
pub fn read(path: &Path) -> Result<Alert> {
    crate::fs::read_json(path)
}

/// The alert files in `alerts/inbox/`, oldest first (durable-write temp files
/// left out).
pub fn inbox(layout: &Layout) -> Result<Vec<PathBuf>> {
    let dir = layout.alerts_inbox();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::Error::io("list", dir, e)),
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|f| !f.starts_with('.') && f.ends_with(".json"))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_alerts_read_back_in_order() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        assert!(inbox(&l).unwrap().is_empty());
        let a = Alert::patch_stuck("default", "0190-x", "p-1", "attempts spent");
        let mut b = Alert::new(
            "watchdog_gave_up:executor",
            Severity::Critical,
            AlertSource::Watchdog,
            "t",
            "m",
        );
        b.status = AlertStatus::Resolved;
        b.child = Some("executor".into());
        write(&l, &a).unwrap();
        write(&l, &b).unwrap();
        let files = inbox(&l).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(read(&files[0]).unwrap(), a);
        assert_eq!(read(&files[1]).unwrap(), b);
        let v: serde_json::Value = crate::fs::read_json(&files[0]).unwrap();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["fingerprint"], "patch_stuck:default:0190-x");
        assert!(v.get("child").is_none(), "{v}");
    }
}
