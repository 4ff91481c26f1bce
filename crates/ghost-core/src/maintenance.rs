//! The maintenance cycle the monitor runs every `retention.interval` (and
//! `ghostctl archive` by hand): the retention ([`crate::archive`]), bounded by
//! `retention.max_per_cycle`, and one sweep of what crashed writers leave
//! behind (orphan sidecars, stale temp files) in every directory of the root
//! that durable writes go to.
//!
//! The sweep reuses [`crate::queue::Queue::sweep`] and
//! [`crate::fs::sweep_temp_files`]: a sidecar is an orphan only once it is a
//! minute old (a move writes the record ahead of the entry), a temp file is
//! stale only past `executor.tmp_max_age`, so a writer that is alive is never
//! swept from under.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::archive;
use crate::config::Config;
use crate::fs::sweep_temp_files;
use crate::Layout;

/// How old a sidecar with no entry beside it must be before it is an orphan.
pub const ORPHAN_MIN_AGE: Duration = Duration::from_secs(60);

/// What one maintenance cycle did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub at: String,
    pub duration_ms: u64,
    pub archived: usize,
    pub completed: usize,
    pub files_removed: usize,
    pub segments_written: usize,
    pub segment_bytes: u64,
    pub segments_discarded: usize,
    pub more_due: bool,
    /// Orphan sidecars and stale temp files removed.
    pub swept: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Remove orphan sidecars and stale temp files everywhere; returns them.
pub fn sweep(config: &Config, layout: &Layout) -> Vec<PathBuf> {
    let max_age = config.executor.tmp_max_age;
    let mut out = Vec::new();
    for t in layout.queue_targets() {
        if let Ok(r) = layout.queue(&t).sweep(ORPHAN_MIN_AGE, max_age) {
            out.extend(r);
        }
        for d in [
            layout.summaries(&t),
            layout.summary_backups(&t),
            layout.kept_journals(&t),
        ] {
            out.extend(sweep_temp_files(&d, max_age));
        }
    }
    let mut dirs = vec![
        layout.ids(),
        layout.state(),
        layout.heartbeats(),
        layout.alerts(),
        layout.alerts_inbox(),
        layout.alerts_outbox(),
        layout.alerts_requests(),
        layout.history(),
    ];
    for g in archive::groups(layout) {
        let gd = layout.archive_group(&g);
        dirs.extend(
            std::fs::read_dir(&gd)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir()),
        );
        dirs.push(gd);
    }
    for d in dirs {
        out.extend(sweep_temp_files(&d, max_age));
    }
    out
}

/// One maintenance cycle: the retention, then the sweep. An archiving error
/// is reported (and the sweep still runs); nothing is removed by a failed step.
pub fn run(config: &Config) -> Report {
    let started = Instant::now();
    let layout = Layout::new(&config.root);
    let mut report = Report {
        at: crate::time::now_rfc3339(),
        ..Report::default()
    };
    match archive::run(config, false) {
        Ok(a) => {
            report.archived = a.archived;
            report.completed = a.completed;
            report.files_removed = a.files_removed;
            report.segments_written = a.segments_written;
            report.segment_bytes = a.segment_bytes;
            report.segments_discarded = a.segments_discarded;
            report.more_due = a.more_due;
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    report.swept = sweep(config, &layout).len();
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}
