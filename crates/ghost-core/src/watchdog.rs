//! The watchdog's shared files (format in docs/formats.md, "Watchdog state" and
//! "Watchdog requests"):
//!
//! - `state/watchdog.json` ([`WatchdogState`]): the watchdog and each child —
//!   state, pid, restarts in the window, last exit, next restart. Written by
//!   the watchdog only, durably, whenever something in it changes and at least
//!   every `heartbeat.interval`; read by `ghostctl status` and the monitor.
//! - `state/watchdog/requests/<child>.json` ([`Request`]): an operator's
//!   request (`ghostctl restart CHILD`). Written by `ghostctl`, acted on and
//!   removed by the watchdog. One file per child, so repeated requests
//!   collapse into one.
//!
//! States and causes are enums; a state or cause this build does not know
//! (written by a newer watchdog) reads as `Unknown` rather than failing the
//! whole file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layout::Layout;

/// The watchdog's own status in `state/watchdog.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchdogStatus {
    Starting,
    Running,
    Stopping,
    Stopped,
    #[serde(other)]
    Unknown,
}

impl WatchdogStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchdogStatus::Starting => "starting",
            WatchdogStatus::Running => "running",
            WatchdogStatus::Stopping => "stopping",
            WatchdogStatus::Stopped => "stopped",
            WatchdogStatus::Unknown => "unknown",
        }
    }
}

/// A child's state as reported (docs/operations.md, "The child states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildState {
    Idle,
    Spawning,
    Starting,
    Running,
    Stopping,
    Backoff,
    GivenUp,
    Missing,
    Disabled,
    Stopped,
    #[serde(other)]
    Unknown,
}

impl ChildState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Idle => "idle",
            ChildState::Spawning => "spawning",
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Stopping => "stopping",
            ChildState::Backoff => "backoff",
            ChildState::GivenUp => "given_up",
            ChildState::Missing => "missing",
            ChildState::Disabled => "disabled",
            ChildState::Stopped => "stopped",
            ChildState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ChildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the watchdog stops a live child (state `stopping`); the watchdog's
/// restart policy decides on it what follows the child's exit, so the set is
/// closed (no `Unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Its heartbeat went stale: a failure, counted.
    Hang,
    /// No first heartbeat within `start_timeout`: a failure, counted.
    StartTimeout,
    /// The watchdog is stopping.
    Shutdown,
    /// Its settings changed: started again at once, not counted.
    Reconfigure,
    /// `ghostctl restart`: started again at once with a fresh budget.
    OperatorRestart,
    /// Disabled by the configuration.
    Disable,
}

/// Why a child's last process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitCause {
    /// On its own.
    Exited,
    /// Stopped by the watchdog for a stale heartbeat.
    Hang,
    /// Stopped by the watchdog: no first heartbeat in time.
    StartTimeout,
    /// The program could not be started.
    SpawnFailed,
    /// Stopped by the watchdog: shutdown, reload, operator.
    Stopped,
    #[serde(other)]
    Unknown,
}

impl ExitCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Exited => "exited",
            ExitCause::Hang => "hang",
            ExitCause::StartTimeout => "start_timeout",
            ExitCause::SpawnFailed => "spawn_failed",
            ExitCause::Stopped => "stopped",
            ExitCause::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ExitCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole of `state/watchdog.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchdogState {
    pub pid: u32,
    pub status: WatchdogStatus,
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
    pub state: ChildState,
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
    pub cause: ExitCause,
    pub at: String,
}

impl LastExit {
    pub fn new(code: Option<i32>, signal: Option<i32>, cause: ExitCause, at: String) -> LastExit {
        LastExit {
            code,
            signal,
            signal_name: signal.map(signal_name),
            cause,
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

/// What an operator asks the watchdog to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestAction {
    /// Stop the child if it runs and start it again with a fresh budget.
    Restart,
    #[serde(other)]
    Unknown,
}

/// An operator's request: `state/watchdog/requests/<child>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub child: String,
    pub action: RequestAction,
    /// `$USER (uid N)`.
    pub by: String,
    pub at: String,
    /// The requesting process.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// Write a restart request for `child` durably; returns its path.
pub fn write_request(layout: &Layout, child: &str, by: &str) -> Result<PathBuf> {
    let dir = layout.watchdog_requests();
    crate::fs::ensure_dir(&dir)?;
    let path = dir.join(format!("{child}.json"));
    let req = Request {
        child: child.to_string(),
        action: RequestAction::Restart,
        by: by.to_string(),
        at: crate::time::now_rfc3339(),
        pid: Some(std::process::id()),
    };
    crate::fs::write_json(&path, &req)?;
    Ok(path)
}

/// The pending requests, in name order: (path, request or why it is unreadable).
pub fn pending_requests(layout: &Layout) -> Vec<(PathBuf, Result<Request, String>)> {
    let Ok(rd) = std::fs::read_dir(layout.watchdog_requests()) else {
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
            let r = crate::fs::read_json::<Request>(&p).map_err(|e| e.to_string());
            Some((p, r))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Read `state/watchdog.json`, if there is one.
pub fn read_state(layout: &Layout) -> Result<Option<WatchdogState>> {
    let path = layout.watchdog_state();
    if !path.exists() {
        return Ok(None);
    }
    crate::fs::read_json(&path).map(Some)
}

/// Write `state/watchdog.json` durably.
pub fn write_state(layout: &Layout, state: &WatchdogState) -> Result<()> {
    crate::fs::write_json(&layout.watchdog_state(), state)
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
        assert_eq!(r.action, RequestAction::Restart);
    }

    #[test]
    fn exits_describe_themselves() {
        let at = "t".to_string();
        assert_eq!(
            LastExit::new(Some(1), None, ExitCause::Exited, at.clone()).describe(),
            "code 1"
        );
        let k = LastExit::new(None, Some(9), ExitCause::Hang, at.clone());
        assert_eq!(k.signal_name.as_deref(), Some("SIGKILL"));
        assert_eq!(k.describe(), "SIGKILL");
        assert_eq!(
            LastExit::new(None, None, ExitCause::SpawnFailed, at).describe(),
            "could not start"
        );
    }

    #[test]
    fn state_round_trips_and_unknown_values_read() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        assert_eq!(read_state(&l).unwrap(), None);
        let child: ChildReport = serde_json::from_value(serde_json::json!({
            "state": "given_up", "enabled": true, "command": "x", "restarts_in_window": 2,
            "max_restarts": 2, "restart_window": "5m", "stop_reason": "operator_restart",
            "last_exit": {"code": 1, "cause": "exited", "at": "t"},
        }))
        .unwrap();
        assert_eq!(child.state, ChildState::GivenUp);
        let st = WatchdogState {
            pid: 7,
            status: WatchdogStatus::Running,
            ready: true,
            started_at: "a".into(),
            updated_at: "b".into(),
            version: "0".into(),
            config: "embedded defaults".into(),
            children: BTreeMap::from([("executor".to_string(), child)]),
        };
        crate::fs::ensure_dir(&l.state()).unwrap();
        write_state(&l, &st).unwrap();
        assert_eq!(read_state(&l).unwrap(), Some(st));
        // A state a later watchdog may add does not make the file unreadable.
        let c: ChildReport = serde_json::from_value(serde_json::json!({
            "state": "hibernating", "enabled": true, "command": "x", "restarts_in_window": 0,
            "max_restarts": 2, "restart_window": "5m",
        }))
        .unwrap();
        assert_eq!(c.state, ChildState::Unknown);
    }
}
