//! `LogHealth`: a cheap, shared view of one process's log writer, for its
//! heartbeat, for `ghostctl status` and for the executor's decision to pause.
//!
//! The writer thread is the only one that changes the state; everyone else
//! reads a snapshot. Counters are atomics so that the hot path (a dropped
//! line) never takes a lock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Shared handle; clones are cheap and see the same state.
#[derive(Debug, Clone, Default)]
pub struct LogHealth(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Lines that reached no file (channel full, or primary and fallback both failed).
    dropped: AtomicU64,
    /// Of `dropped`, those not yet reported by a `LOG_LINES_DROPPED` line.
    unreported: AtomicU64,
    rotations: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failing_since: Option<SystemTime>,
    fallback_path: Option<PathBuf>,
    last_error: Option<String>,
}

/// What a heartbeat carries under `details.logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHealthReport {
    pub primary_ok: bool,
    /// When the primary log last started failing (RFC 3339), while it fails.
    pub failing_since: Option<String>,
    /// Where lines go while the primary fails.
    pub fallback_path: Option<String>,
    /// Lines lost since the start (writer overloaded, or no file writable).
    pub dropped_lines: u64,
    /// Rotations since the start.
    pub rotations: u64,
    /// The error that made the primary fail, while it fails.
    pub last_error: Option<String>,
}

impl LogHealth {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the plain fields in a
        // broken state, so a poisoned lock is still usable.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn report(&self) -> LogHealthReport {
        let s = self.state();
        LogHealthReport {
            primary_ok: s.failing_since.is_none(),
            failing_since: s.failing_since.map(crate::time::rfc3339),
            fallback_path: s.fallback_path.as_ref().map(|p| p.display().to_string()),
            dropped_lines: self.dropped_lines(),
            rotations: self.0.rotations.load(Ordering::Relaxed),
            last_error: s.last_error.clone(),
        }
    }

    pub fn primary_ok(&self) -> bool {
        self.state().failing_since.is_none()
    }

    /// How long the primary log has been failing at `now` (`None`: it works).
    pub fn failing_for(&self, now: SystemTime) -> Option<Duration> {
        self.state()
            .failing_since
            .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
    }

    pub fn dropped_lines(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        self.0.dropped.fetch_add(n, Ordering::Relaxed);
        self.0.unreported.fetch_add(n, Ordering::Relaxed);
    }

    /// The drops not reported in the log yet; the caller reports them.
    pub(crate) fn take_unreported(&self) -> u64 {
        self.0.unreported.swap(0, Ordering::Relaxed)
    }

    /// Put back a count that could not be reported after all.
    pub(crate) fn return_unreported(&self, n: u64) {
        self.0.unreported.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_rotation(&self) {
        self.0.rotations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_failing(&self, since: SystemTime, fallback: Option<PathBuf>, error: String) {
        let mut s = self.state();
        s.failing_since.get_or_insert(since);
        s.fallback_path = fallback;
        s.last_error = Some(error);
    }

    pub(crate) fn set_ok(&self) {
        let mut s = self.state();
        s.failing_since = None;
        s.fallback_path = None;
        s.last_error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_state_and_counters_show_in_the_report() {
        let h = LogHealth::default();
        assert!(h.report().primary_ok);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        h.set_failing(t0, Some("/x/logs".into()), "ENOSPC".into());
        // A second failure keeps the first time: the outage started then.
        h.set_failing(
            t0 + Duration::from_secs(5),
            Some("/x/logs".into()),
            "EIO".into(),
        );
        h.add_dropped(3);
        h.add_rotation();
        let r = h.clone().report();
        assert!(!r.primary_ok);
        assert_eq!(r.failing_since.as_deref(), Some("1970-01-01T00:16:40.000Z"));
        assert_eq!(r.fallback_path.as_deref(), Some("/x/logs"));
        assert_eq!(r.last_error.as_deref(), Some("EIO"));
        assert_eq!((r.dropped_lines, r.rotations), (3, 1));
        assert_eq!(
            h.failing_for(t0 + Duration::from_secs(9)),
            Some(Duration::from_secs(9))
        );
        assert_eq!(h.take_unreported(), 3);
        assert_eq!(h.take_unreported(), 0);
        h.set_ok();
        assert!(h.primary_ok());
        assert_eq!(h.failing_for(t0), None);
        assert_eq!(
            h.dropped_lines(),
            3,
            "the count of lost lines never goes back"
        );
    }
}
