//! The watchdog's files, shared with `ghostctl`:
//!
//! - `state/watchdog.json` ([`WatchdogState`]): the watchdog and each child —
//!   state, pid, restarts in the window, last exit, next restart. Written
//!   durably whenever something in it changes, and at least every
//!   `heartbeat.interval`.
//! - `state/watchdog/requests/<child>.json` ([`Request`]): an operator's
//!   request (`ghostctl restart CHILD`). The watchdog acts on it within a poll
//!   interval, records it in `watchdog.json`, and removes it. One file per
//!   child, so repeated requests collapse into one.
//! - `alerts/CRITICAL_ALERT`: see [`crate::alert`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ghost_core::Layout;

use crate::policy::{Exit, StopReason};

/// `state/watchdog.json`.
pub fn state_path(layout: &Layout) -> PathBuf {
    layout.state().join("watchdog.json")
}

/// `state/watchdog/requests/`.
pub fn requests_dir(layout: &Layout) -> PathBuf {
    layout.state().join("watchdog").join("requests")
}

/// `alerts/CRITICAL_ALERT`.
pub fn critical_alert_path(layout: &Layout) -> PathBuf {
    layout.alerts().join("CRITICAL_ALERT")
}

/// `state/locks/watchdog.lock`.
pub fn lock_path(layout: &Layout) -> PathBuf {
    layout.lock("watchdog")
}

/// The whole of `state/watchdog.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchdogState {
    pub pid: u32,
    /// `starting`, `running`, `stopping`, `stopped`.
    pub status: String,
    /// Every enabled child whose program exists is running (what `READY=1` says).
    pub ready: bool,
    pub started_at: String,
    pub updated_at: String,
    pub version: String,
    /// Where the configuration came from.
    pub config: String,
    pub children: BTreeMap<String, ChildReport>,
}

/// One child in `state/watchdog.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildReport {
    /// `idle`, `starting`, `running`, `stopping`, `backoff`, `given_up`,
    /// `missing`, `disabled`, `stopped` (see docs/operations.md).
    pub state: String,
    #[serde(default)]
    pub pid: Option<u32>,
    pub enabled: bool,
    /// The program and its arguments.
    pub command: String,
    /// Counted restarts within the last `restart_window`.
    pub restarts_in_window: u32,
    pub max_restarts: u32,
    /// `restart_window`, as a human duration.
    pub restart_window: String,
    /// Restarts since the watchdog started, counted or not.
    #[serde(default)]
    pub restarts_total: u64,
    /// When the current process was spawned.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When its first heartbeat was seen.
    #[serde(default)]
    pub running_since: Option<String>,
    #[serde(default)]
    pub last_exit: Option<LastExit>,
    /// When the pending restart is due (state `backoff`).
    #[serde(default)]
    pub next_restart_at: Option<String>,
    /// When the watchdog gave up (state `given_up`).
    #[serde(default)]
    pub given_up_at: Option<String>,
    /// When a given-up child will be tried again (`cool_off`), if ever.
    #[serde(default)]
    pub retry_at: Option<String>,
    /// Why it is being stopped (state `stopping`).
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// A note for a person (program missing, …).
    #[serde(default)]
    pub message: Option<String>,
    /// The last operator request the watchdog acted on.
    #[serde(default)]
    pub last_request: Option<Request>,
}

/// How and when the child's last process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastExit {
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    /// `SIGKILL`, … when `signal` is set.
    #[serde(default)]
    pub signal_name: Option<String>,
    /// `exited` (on its own), `hang` (stale heartbeat), `start_timeout`,
    /// `spawn_failed`, `stopped` (by the watchdog: shutdown, reload, operator).
    pub cause: String,
    pub at: String,
}

impl LastExit {
    pub fn new(exit: Exit, cause: &str, at: String) -> LastExit {
        LastExit {
            code: exit.code,
            signal: exit.signal,
            signal_name: exit.signal.map(signal_name),
            cause: cause.to_string(),
            at,
        }
    }

    /// `code 1`, `SIGKILL`, `could not start`.
    pub fn describe(&self) -> String {
        match (self.code, &self.signal_name, self.signal) {
            (Some(c), _, _) => format!("code {c}"),
            (None, Some(n), _) => n.clone(),
            (None, None, Some(s)) => format!("signal {s}"),
            (None, None, None) => "could not start".into(),
        }
    }
}

/// `SIGTERM` for 15, and so on.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// An operator's request: `state/watchdog/requests/<child>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub child: String,
    /// `restart` (the only one so far).
    pub action: String,
    /// `$USER (uid N)`.
    pub by: String,
    pub at: String,
    /// The requesting process.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// Write a restart request for `child` durably; returns its path.
pub fn write_request(layout: &Layout, child: &str, by: &str) -> ghost_core::Result<PathBuf> {
    let dir = requests_dir(layout);
    ghost_core::fs::ensure_dir(&dir)?;
    let path = dir.join(format!("{child}.json"));
    let req = Request {
        child: child.to_string(),
        action: "restart".into(),
        by: by.to_string(),
        at: ghost_core::time::now_rfc3339(),
        pid: Some(std::process::id()),
    };
    ghost_core::fs::write_json(&path, &req)?;
    Ok(path)
}

/// The pending requests: (path, request or why it is unreadable).
pub fn pending_requests(layout: &Layout) -> Vec<(PathBuf, Result<Request, String>)> {
    let dir = requests_dir(layout);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Result<Request, String>)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if name.starts_with('.') || !name.ends_with(".json") {
                return None;
            }
            let p = e.path();
            let r = ghost_core::fs::read_json::<Request>(&p).map_err(|e| e.to_string());
            Some((p, r))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Read `state/watchdog.json`, if there is one.
pub fn read_state(layout: &Layout) -> ghost_core::Result<Option<WatchdogState>> {
    read_state_at(&state_path(layout))
}

pub fn read_state_at(path: &Path) -> ghost_core::Result<Option<WatchdogState>> {
    if !path.exists() {
        return Ok(None);
    }
    ghost_core::fs::read_json(path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_collapse_per_child() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        let p = write_request(&l, "executor", "alice (uid 1000)").unwrap();
        assert_eq!(p, d.path().join("state/watchdog/requests/executor.json"));
        write_request(&l, "executor", "bob (uid 1001)").unwrap();
        write_request(&l, "bridge", "bob (uid 1001)").unwrap();
        let reqs = pending_requests(&l);
        assert_eq!(reqs.len(), 2);
        let r = reqs[1].1.as_ref().unwrap();
        assert_eq!(
            (r.child.as_str(), r.by.as_str()),
            ("executor", "bob (uid 1001)")
        );
        assert_eq!(r.action, "restart");
    }

    #[test]
    fn exits_describe_themselves() {
        let at = "t".to_string();
        assert_eq!(
            LastExit::new(Exit::code(1), "exited", at.clone()).describe(),
            "code 1"
        );
        let k = LastExit::new(Exit::signal(9), "hang", at.clone());
        assert_eq!(k.signal_name.as_deref(), Some("SIGKILL"));
        assert_eq!(k.describe(), "SIGKILL");
        assert_eq!(
            LastExit::new(Exit::SPAWN_FAILED, "spawn_failed", at).describe(),
            "could not start"
        );
    }
}
