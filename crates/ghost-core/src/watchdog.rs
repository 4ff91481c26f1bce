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
    /// The last lines the process wrote to its `logs/<child>.stderr.log`
    /// (at most [`STDERR_TAIL_LINES`] lines, [`STDERR_TAIL_BYTES`] bytes,
    /// control characters but the newlines replaced): usually the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
}

/// How many lines of a child's stderr travel with its exit.
pub const STDERR_TAIL_LINES: usize = 5;
/// At most this many bytes of them.
pub const STDERR_TAIL_BYTES: usize = 1024;

/// How a process ended, as a person needs to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// Exit code 0: it stopped because something asked it to (a SIGTERM it
    /// handled, say), not because it failed.
    Clean,
    /// Killed by a signal it did not handle.
    Signal,
    /// A non-zero exit code: it failed (a panic, a bad configuration, a port
    /// in use, …).
    Crash,
    /// It never ran: the program could not be started.
    NotStarted,
}

impl LastExit {
    pub fn new(code: Option<i32>, signal: Option<i32>, cause: ExitCause, at: String) -> LastExit {
        LastExit {
            code,
            signal,
            signal_name: signal.map(signal_name),
            cause,
            at,
            stderr_tail: None,
        }
    }

    /// With the end of the child's stderr: `text` is its last bytes.
    pub fn with_stderr_tail(mut self, text: &str) -> LastExit {
        let t = stderr_tail(text);
        self.stderr_tail = (!t.is_empty()).then_some(t);
        self
    }

    pub fn kind(&self) -> ExitKind {
        match (self.code, self.signal) {
            (Some(0), _) => ExitKind::Clean,
            (Some(_), _) => ExitKind::Crash,
            (None, Some(_)) => ExitKind::Signal,
            (None, None) => ExitKind::NotStarted,
        }
    }

    /// `clean exit (code 0)`, `crashed (code 1)`, `killed by SIGKILL`,
    /// `could not start`: the three ways a running process ends never read
    /// alike.
    pub fn describe(&self) -> String {
        match (self.kind(), self.code, &self.signal_name, self.signal) {
            (ExitKind::Clean, _, _, _) => "clean exit (code 0)".into(),
            (ExitKind::Crash, Some(c), _, _) => format!("crashed (code {c})"),
            (ExitKind::Signal, _, Some(n), _) => format!("killed by {n}"),
            (ExitKind::Signal, _, None, Some(s)) => format!("killed by signal {s}"),
            _ => "could not start".into(),
        }
    }

    /// The last non-empty line of the stderr tail: the likeliest reason.
    pub fn reason(&self) -> Option<&str> {
        self.stderr_tail
            .as_deref()?
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
    }
}

/// The last [`STDERR_TAIL_LINES`] non-empty lines of `text`, at most
/// [`STDERR_TAIL_BYTES`] bytes (whole characters), each line
/// [`crate::text::clean`]ed (no escape sequence reaches an alert or a terminal).
pub fn stderr_tail(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(crate::text::clean)
        .collect();
    let mut out = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    if out.len() > STDERR_TAIL_BYTES {
        let mut cut = out.len() - STDERR_TAIL_BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out.drain(..cut);
    }
    out
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
        let crash = LastExit::new(Some(1), None, ExitCause::Exited, at.clone());
        assert_eq!(crash.describe(), "crashed (code 1)");
        assert_eq!(crash.kind(), ExitKind::Crash);
        let clean = LastExit::new(Some(0), None, ExitCause::Exited, at.clone());
        assert_eq!(clean.describe(), "clean exit (code 0)");
        assert_eq!(clean.kind(), ExitKind::Clean);
        let k = LastExit::new(None, Some(9), ExitCause::Hang, at.clone());
        assert_eq!(k.signal_name.as_deref(), Some("SIGKILL"));
        assert_eq!(k.describe(), "killed by SIGKILL");
        assert_eq!(k.kind(), ExitKind::Signal);
        assert_eq!(
            LastExit::new(None, None, ExitCause::SpawnFailed, at).describe(),
            "could not start"
        );
    }

    #[test]
    fn the_stderr_tail_keeps_the_last_clean_lines() {
        let text =
            "one\ntwo\n\nthree\nfour\nfive\n\u{1b}[31msix: Address already in use\u{1b}[0m\n\n";
        let e = LastExit::new(Some(1), None, ExitCause::Exited, "t".into()).with_stderr_tail(text);
        let tail = e.stderr_tail.as_deref().unwrap();
        assert_eq!(tail.lines().count(), STDERR_TAIL_LINES);
        assert!(tail.starts_with("two\n"), "{tail}");
        assert!(!tail.contains('\u{1b}'), "{tail}");
        assert_eq!(e.reason(), Some("?[31msix: Address already in use?[0m"));
        let long = "é".repeat(2000);
        let t = stderr_tail(&long);
        assert!(t.len() <= STDERR_TAIL_BYTES && t.len() > STDERR_TAIL_BYTES - 2);
        let none =
            LastExit::new(Some(1), None, ExitCause::Exited, "t".into()).with_stderr_tail("\n");
        assert_eq!(none.stderr_tail, None);
        assert_eq!(none.reason(), None);
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
