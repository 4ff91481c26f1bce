//! The maintenance cycle's schedule in the monitor: every `retention.interval`
//! it runs [`ghost_core::maintenance::run`] (the retention, bounded by
//! `retention.max_per_cycle`, then the sweep of orphans and stale temp files),
//! logs what it did (`MAINTENANCE`) and keeps the report for the heartbeat.
//! When a cycle stops at its bound with more due, the next one comes after a
//! tenth of the interval, so a backlog drains without monopolising the disk.

use std::time::Duration;

use tracing::{error, info};

use ghost_core::maintenance::{self, Report};
use ghost_core::Config;

pub struct Maintenance {
    next_ms: u64,
    last: Option<Report>,
}

impl Maintenance {
    /// The first cycle comes one interval after start.
    pub fn new(config: &Config, now_ms: u64) -> Self {
        Maintenance {
            next_ms: now_ms + config.retention.interval.as_millis() as u64,
            last: None,
        }
    }

    pub fn next_ms(&self) -> u64 {
        self.next_ms
    }

    pub fn last(&self) -> Option<&Report> {
        self.last.as_ref()
    }

    /// Run a cycle if one is due; returns its report when it ran.
    pub fn tick(&mut self, config: &Config, now_ms: u64) -> Option<&Report> {
        if now_ms < self.next_ms {
            return None;
        }
        let r = maintenance::run(config);
        let interval = config.retention.interval;
        let wait = if r.more_due {
            (interval / 10).max(Duration::from_millis(10))
        } else {
            interval
        };
        self.next_ms = now_ms + wait.as_millis() as u64;
        match &r.error {
            Some(e) => {
                error!(event = "MAINTENANCE_FAILED", error = %e, archived = r.archived, swept = r.swept, "maintenance: archiving failed; nothing was removed without a verified copy; trying again next cycle")
            }
            None => info!(
                event = "MAINTENANCE",
                archived = r.archived,
                completed = r.completed,
                files_removed = r.files_removed,
                segments = r.segments_written,
                bytes = r.segment_bytes,
                discarded = r.segments_discarded,
                swept = r.swept,
                more_due = r.more_due,
                ms = r.duration_ms,
                "maintenance cycle"
            ),
        }
        self.last = Some(r);
        self.last.as_ref()
    }
}
