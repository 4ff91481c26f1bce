//! When an inbox entry is ready to be taken: the bookkeeping between scans,
//! as a pure type with the clock passed in (the shell in [`super`] lists the
//! directory, feeds the listing and the rename hints in, takes what is ready
//! and reports back).
//!
//! Invariants (docs in [`super`], "When a file is complete"):
//! - an entry is ready once its fingerprint has been the same for `settle`,
//!   measured from the first observation of that fingerprint, or at once when
//!   it arrived by rename; any change of fingerprint starts the wait again
//!   and forgets the rename;
//! - an entry left in place for a transient reason is not ready again before
//!   `retry_every` has passed, and each reason is reported once per entry;
//! - ready entries come in the order they were first seen (then by name);
//! - an entry no longer listed is forgotten, and so is a rename hint whose
//!   entry is not listed at the next scan.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::time::{Duration, Instant};

/// What is known of one entry between scans.
#[derive(Debug)]
struct Tracked<F> {
    fp: F,
    /// When the current fingerprint was first observed.
    since: Instant,
    /// When the entry was first observed (the order entries are taken in).
    first_seen: Instant,
    /// Arrived by rename: complete.
    renamed: bool,
    /// Left in place for a transient reason: not before this instant.
    retry_at: Option<Instant>,
    /// Reasons already reported for this entry.
    noted: HashSet<&'static str>,
}

/// The readiness of every entry of the inbox; `F` is what a scan sees of an
/// entry (any difference restarts the settle wait).
#[derive(Debug)]
pub(crate) struct Readiness<F> {
    settle: Duration,
    retry_every: Duration,
    tracked: HashMap<OsString, Tracked<F>>,
    renamed: HashSet<OsString>,
}

impl<F: Copy + PartialEq> Readiness<F> {
    pub(crate) fn new(settle: Duration, retry_every: Duration) -> Self {
        Readiness {
            settle,
            retry_every,
            tracked: HashMap::new(),
            renamed: HashSet::new(),
        }
    }

    /// The watcher saw `name` arrive by rename.
    pub(crate) fn renamed(&mut self, name: OsString) {
        self.renamed.insert(name);
    }

    /// A complete listing of the inbox at `now`.
    pub(crate) fn observe(&mut self, now: Instant, entries: Vec<(OsString, F)>) {
        let mut seen = HashSet::new();
        for (name, fp) in entries {
            let t = self.tracked.entry(name.clone()).or_insert_with(|| Tracked {
                fp,
                since: now,
                first_seen: now,
                renamed: false,
                retry_at: None,
                noted: HashSet::new(),
            });
            if t.fp != fp {
                t.fp = fp;
                t.since = now;
                t.renamed = false;
            }
            if self.renamed.remove(&name) {
                t.renamed = true;
            }
            seen.insert(name);
        }
        self.tracked.retain(|n, _| seen.contains(n));
        // A rename whose entry is gone again.
        self.renamed.clear();
    }

    /// The entries ready at `now`, in the order they were first seen.
    pub(crate) fn ready(&self, now: Instant) -> Vec<(OsString, F)> {
        let mut v: Vec<(Instant, &OsString, F)> = self
            .tracked
            .iter()
            .filter(|(_, t)| {
                (t.renamed || now.duration_since(t.since) >= self.settle)
                    && t.retry_at.is_none_or(|r| now >= r)
            })
            .map(|(n, t)| (t.first_seen, n, t.fp))
            .collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v.into_iter().map(|(_, n, fp)| (n.clone(), fp)).collect()
    }

    /// True when `name` was left in place before (a retry).
    pub(crate) fn retrying(&self, name: &OsString) -> bool {
        self.tracked.get(name).is_some_and(|t| !t.noted.is_empty())
    }

    /// `name` was taken, or is gone: forget it (an entry there later is new).
    pub(crate) fn forget(&mut self, name: &OsString) {
        self.tracked.remove(name);
    }

    /// `name` was left in place at `now` for `reason`: not ready again for
    /// `retry_every`. True the first time this reason is given for it (to
    /// report it once).
    pub(crate) fn defer(&mut self, name: &OsString, now: Instant, reason: &'static str) -> bool {
        match self.tracked.get_mut(name) {
            Some(t) => {
                t.retry_at = Some(now + self.retry_every);
                t.noted.insert(reason)
            }
            None => false,
        }
    }

    /// When something may next become ready, at the latest `latest`.
    pub(crate) fn next_due(&self, now: Instant, latest: Instant) -> Instant {
        let mut wake = latest;
        for t in self.tracked.values() {
            let due = match t.retry_at {
                Some(r) => r,
                None if t.renamed => now,
                None => t.since + self.settle,
            };
            wake = wake.min(due.max(now));
        }
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(500);
    const RETRY: Duration = Duration::from_secs(2);

    fn n(s: &str) -> OsString {
        OsString::from(s)
    }

    fn names(v: Vec<(OsString, u32)>) -> Vec<String> {
        v.into_iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn an_entry_is_ready_after_settling_unchanged_and_a_change_restarts_the_wait() {
        let t0 = Instant::now();
        let mut r = Readiness::<u32>::new(SETTLE, RETRY);
        r.observe(t0, vec![(n("a"), 1)]);
        assert!(r.ready(t0).is_empty());
        assert_eq!(r.next_due(t0, t0 + RETRY), t0 + SETTLE);
        // Grew at 400 ms: the wait starts again from there.
        r.observe(t0 + Duration::from_millis(400), vec![(n("a"), 2)]);
        assert!(r.ready(t0 + SETTLE).is_empty());
        assert_eq!(
            names(r.ready(t0 + Duration::from_millis(900))),
            ["a"],
            "settled 500 ms after its last change"
        );
    }

    #[test]
    fn a_rename_is_ready_at_once_until_it_changes() {
        let t0 = Instant::now();
        let mut r = Readiness::<u32>::new(SETTLE, RETRY);
        r.renamed(n("r"));
        r.observe(t0, vec![(n("r"), 1), (n("w"), 1)]);
        assert_eq!(names(r.ready(t0)), ["r"]);
        assert_eq!(r.next_due(t0, t0 + RETRY), t0);
        // Written to after the rename: it settles like any other.
        r.observe(
            t0 + Duration::from_millis(10),
            vec![(n("r"), 2), (n("w"), 1)],
        );
        assert!(r.ready(t0 + Duration::from_millis(10)).is_empty());
        // A hint for a name not listed is dropped at the next scan.
        r.renamed(n("ghost"));
        r.observe(
            t0 + Duration::from_millis(20),
            vec![(n("r"), 2), (n("w"), 1)],
        );
        r.observe(
            t0 + Duration::from_millis(30),
            vec![(n("ghost"), 1), (n("r"), 2), (n("w"), 1)],
        );
        assert!(!names(r.ready(t0 + Duration::from_millis(30))).contains(&"ghost".to_string()));
    }

    #[test]
    fn ready_entries_come_in_first_seen_order_then_by_name() {
        let t0 = Instant::now();
        let mut r = Readiness::<u32>::new(SETTLE, RETRY);
        r.observe(t0, vec![(n("b"), 1), (n("a"), 1)]);
        r.observe(
            t0 + Duration::from_millis(100),
            vec![(n("b"), 1), (n("a"), 1), (n("0"), 1)],
        );
        assert_eq!(names(r.ready(t0 + Duration::from_secs(1))), ["a", "b", "0"]);
    }

    #[test]
    fn a_deferred_entry_waits_and_each_reason_is_reported_once() {
        let t0 = Instant::now();
        let mut r = Readiness::<u32>::new(SETTLE, RETRY);
        r.observe(t0, vec![(n("a"), 1)]);
        let t1 = t0 + SETTLE;
        assert!(!r.retrying(&n("a")));
        assert!(r.defer(&n("a"), t1, "paused"));
        assert!(r.retrying(&n("a")));
        assert!(r.ready(t1 + RETRY - Duration::from_millis(1)).is_empty());
        assert_eq!(r.next_due(t1, t1 + Duration::from_secs(60)), t1 + RETRY);
        assert_eq!(names(r.ready(t1 + RETRY)), ["a"]);
        assert!(!r.defer(&n("a"), t1 + RETRY, "paused"), "reported once");
        assert!(
            r.defer(&n("a"), t1 + RETRY, "busy"),
            "a new reason is reported"
        );
        assert!(!r.defer(&n("unknown"), t1, "paused"));
    }

    #[test]
    fn forgotten_and_vanished_entries_start_afresh() {
        let t0 = Instant::now();
        let mut r = Readiness::<u32>::new(SETTLE, RETRY);
        r.observe(t0, vec![(n("a"), 1)]);
        r.forget(&n("a"));
        let t1 = t0 + SETTLE;
        r.observe(t1, vec![(n("a"), 1)]);
        assert!(r.ready(t1).is_empty(), "observed afresh after being taken");
        // Gone from a listing: forgotten.
        r.observe(t1 + SETTLE, vec![]);
        r.observe(t1 + SETTLE * 2, vec![(n("a"), 1)]);
        assert!(r.ready(t1 + SETTLE * 2).is_empty());
        assert_eq!(
            r.next_due(t1, t1 + Duration::from_secs(60)),
            t1 + SETTLE * 3
        );
    }
}
