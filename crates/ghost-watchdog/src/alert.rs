//! Alerts the watchdog raises when it gives up on a child, and their
//! resolution when the child runs again.
//!
//! Two copies, so that a person learns of it with or without the monitor:
//! - a [`ghost_core::alert::Alert`] in `alerts/inbox/` (the one shape every
//!   process uses; the monitor correlates and delivers it), fingerprint
//!   `watchdog_gave_up:<child>`;
//! - one human-readable line appended to `alerts/CRITICAL_ALERT` (created
//!   0600), fsynced: `<time> CRITICAL ghost-watchdog: …` and later
//!   `<time> RESOLVED ghost-watchdog: …`. The file only grows; a person reads,
//!   acts, and may truncate it.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use tracing::error;

use ghost_core::alert::{Alert, AlertSource, AlertStatus, Severity};
use ghost_core::watchdog::{ExitCause, ExitKind};
use ghost_core::Layout;

/// What the alert says about the child.
#[derive(Debug, Clone)]
pub struct GaveUp<'a> {
    pub child: &'a str,
    pub restarts: u32,
    pub window: std::time::Duration,
    /// `crashed (code 1)`, `killed by SIGKILL`, … ([`ghost_core::watchdog::LastExit::describe`]).
    pub last_exit: String,
    /// Clean exit, signal or crash.
    pub kind: Option<ExitKind>,
    /// Why the last process ended.
    pub cause: Option<ExitCause>,
    /// The last line of its stderr, the likeliest reason.
    pub reason: Option<String>,
    /// The end of the child's stderr log, for the cause.
    pub stderr_tail: String,
    pub stderr_log: &'a Path,
    pub cool_off: Option<std::time::Duration>,
}

pub fn fingerprint(child: &str) -> String {
    format!("watchdog_gave_up:{child}")
}

/// Raise the give-up alert: inbox file and `CRITICAL_ALERT` line.
pub fn raise(layout: &Layout, g: &GaveUp<'_>) {
    let window = humantime::format_duration(g.window).to_string();
    let then = match g.cool_off {
        Some(c) => format!(
            "it will be tried again in {}, or now with `ghostctl restart {}`",
            humantime::format_duration(c),
            g.child
        ),
        None => format!(
            "it stays down until `ghostctl restart {}` after the cause is fixed",
            g.child
        ),
    };
    let title = format!("ghost-watchdog gave up on {}", g.child);
    // A clean exit, a signal and a crash call for different fixes: never
    // word them alike.
    let how = match g.kind {
        Some(ExitKind::Clean) => {
            "exited cleanly again (code 0: something outside the watchdog asked it to stop)"
        }
        Some(ExitKind::Signal) => "was killed by a signal again",
        Some(ExitKind::Crash) => "crashed again",
        Some(ExitKind::NotStarted) => "could not be started again",
        None => "ended again",
    };
    let message = format!(
        "{} {how} after {} restart(s) within {window} (last: {}, {}){}; {then}. Its output is in {}.",
        g.child,
        g.restarts,
        g.last_exit,
        g.cause.map(ExitCause::as_str).unwrap_or("-"),
        g.reason
            .as_deref()
            .map(|r| format!(": {}", ghost_core::text::clip(r, 300)))
            .unwrap_or_default(),
        g.stderr_log.display()
    );
    let alert = Alert {
        child: Some(g.child.to_string()),
        restarts_in_window: Some(g.restarts),
        restart_window: Some(window),
        last_exit: Some(g.last_exit.clone()),
        cause: g.cause,
        stderr_tail: Some(g.stderr_tail.clone()),
        ..Alert::new(
            fingerprint(g.child),
            Severity::Critical,
            AlertSource::Watchdog,
            title.clone(),
            message.clone(),
        )
    };
    drop_in_inbox(layout, &alert);
    append_line(
        layout,
        &format!(
            "{} CRITICAL ghost-watchdog: {title}: {message}",
            ghost_core::time::now_rfc3339()
        ),
    );
}

/// The child runs again after a give-up: say so in both places.
pub fn resolve(layout: &Layout, child: &str, how: &str) {
    let message = format!("{child} is running again ({how})");
    let alert = Alert {
        status: AlertStatus::Resolved,
        child: Some(child.to_string()),
        ..Alert::new(
            fingerprint(child),
            Severity::Critical,
            AlertSource::Watchdog,
            format!("ghost-watchdog: {child} runs again"),
            message.clone(),
        )
    };
    drop_in_inbox(layout, &alert);
    append_line(
        layout,
        &format!(
            "{} RESOLVED ghost-watchdog: {message}",
            ghost_core::time::now_rfc3339()
        ),
    );
}

fn drop_in_inbox(layout: &Layout, alert: &Alert) {
    if let Err(e) = ghost_core::alert::write(layout, alert) {
        error!(event = "ALERT_WRITE_FAILED", error = %e, "could not raise an alert in alerts/inbox/");
    }
}

/// Append one line to `alerts/CRITICAL_ALERT`; a failure is logged, the
/// watchdog goes on.
fn append_line(layout: &Layout, line: &str) {
    if let Err(e) = ghost_core::logging::fallback::append_critical_line(layout, line) {
        error!(event = "ALERT_WRITE_FAILED", path = %layout.critical_alert().display(), error = %e, "could not append to CRITICAL_ALERT");
    }
}

/// The last `max` bytes of a file, from a line start where possible.
pub fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        if let Some(i) = s.find('\n') {
            s.drain(..=i);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_writes_one_inbox_file_and_one_line_then_resolve_another() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        l.create(["default"]).unwrap();
        let log = d.path().join("logs/executor.stderr.log");
        raise(
            &l,
            &GaveUp {
                child: "executor",
                restarts: 2,
                window: std::time::Duration::from_secs(300),
                last_exit: "crashed (code 2)".into(),
                kind: Some(ExitKind::Crash),
                cause: Some(ExitCause::Exited),
                reason: Some("line two".into()),
                stderr_tail: "bad configuration\nline two".into(),
                stderr_log: &log,
                cool_off: None,
            },
        );
        let files: Vec<_> = std::fs::read_dir(l.alerts_inbox())
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(files.len(), 1);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(files[0].path()).unwrap()).unwrap();
        assert_eq!(v["fingerprint"], "watchdog_gave_up:executor");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["source"], "watchdog");
        assert_eq!(v["status"], "firing");
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("ghostctl restart executor"));
        let text = std::fs::read_to_string(l.critical_alert()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(" CRITICAL ghost-watchdog: ghost-watchdog gave up on executor"));
        assert!(
            text.contains("crashed again after 2 restart(s) within 5m (last: crashed (code 2), exited): line two;"),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(l.critical_alert())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        resolve(&l, "executor", "reset by alice");
        let text = std::fs::read_to_string(l.critical_alert()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().nth(1).unwrap().contains("RESOLVED"));
        assert_eq!(std::fs::read_dir(l.alerts_inbox()).unwrap().count(), 2);
    }

    #[test]
    fn tail_keeps_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        ghost_core::fs::durable_write(&p, b"aaaa\nbbbb\ncccc\n", 0o600).unwrap();
        assert_eq!(tail(&p, 7), "cccc\n");
        assert_eq!(tail(&p, 100), "aaaa\nbbbb\ncccc\n");
        assert_eq!(tail(&d.path().join("none"), 10), "");
    }
}
