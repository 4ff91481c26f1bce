//! The data root's directory layout (docs/formats.md and the README's queue tour).
//! Created on first start with mode 0700. Every path under the root is spelled
//! here and nowhere else: the other crates, and the typed file modules of this
//! one ([`crate::watchdog`], [`crate::pause`], [`crate::alert`],
//! [`crate::secrets`]), ask `Layout` for it.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fs::ensure_dir;
use crate::queue::{Queue, QueueState};

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn inbox(&self) -> PathBuf {
        self.root.join("inbox")
    }
    pub fn inbox_processed(&self) -> PathBuf {
        self.inbox().join(".processed")
    }
    pub fn inbox_rejected(&self) -> PathBuf {
        self.inbox().join(".rejected")
    }
    pub fn queue_root(&self) -> PathBuf {
        self.root.join("queue")
    }
    /// The root's durable id index, one file per patch id (`crate::ids`).
    pub fn ids(&self) -> PathBuf {
        self.queue_root().join(".ids")
    }
    pub fn queue(&self, target: &str) -> Queue {
        Queue::new(self.queue_root().join(target), target)
    }
    /// `summaries/`: one directory per target below it.
    pub fn summaries_root(&self) -> PathBuf {
        self.root.join("summaries")
    }
    pub fn summaries(&self, target: &str) -> PathBuf {
        self.summaries_root().join(target)
    }
    /// `summaries/<target>/.backup/`: the second copy of each summary.
    pub fn summary_backups(&self, target: &str) -> PathBuf {
        self.summaries(target).join(".backup")
    }
    /// `summaries/<target>/.journals/`: undo journals kept for a person.
    pub fn kept_journals(&self, target: &str) -> PathBuf {
        self.summaries(target).join(".journals")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `logs/<component>.log`: a component's JSON-lines log.
    pub fn log_file(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }
    /// `logs/<child>.stderr.log`: what a watchdog child wrote to stdout and stderr.
    pub fn child_output_log(&self, child: &str) -> PathBuf {
        self.logs().join(format!("{child}.stderr.log"))
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    /// `state/pause.json`: while it exists, intake is paused.
    pub fn pause_file(&self) -> PathBuf {
        self.state().join("pause.json")
    }
    /// `state/pauses/`: lifted pauses, kept.
    pub fn pauses(&self) -> PathBuf {
        self.state().join("pauses")
    }
    /// `state/watchdog.json`: the watchdog's view of its children.
    pub fn watchdog_state(&self) -> PathBuf {
        self.state().join("watchdog.json")
    }
    /// `state/watchdog/requests/`: operators' requests to the watchdog.
    pub fn watchdog_requests(&self) -> PathBuf {
        self.state().join("watchdog").join("requests")
    }
    pub fn heartbeats(&self) -> PathBuf {
        self.state().join("heartbeats")
    }
    pub fn heartbeat(&self, component: &str) -> PathBuf {
        self.heartbeats().join(format!("{component}.json"))
    }
    pub fn locks(&self) -> PathBuf {
        self.state().join("locks")
    }
    pub fn lock(&self, name: &str) -> PathBuf {
        self.locks().join(format!("{name}.lock"))
    }
    pub fn secrets(&self) -> PathBuf {
        self.state().join("secrets")
    }
    /// `state/secrets/<file>` of one secret.
    pub fn secret(&self, kind: crate::secrets::SecretKind) -> PathBuf {
        crate::secrets::path(self, kind)
    }
    pub fn alerts(&self) -> PathBuf {
        self.root.join("alerts")
    }
    pub fn alerts_inbox(&self) -> PathBuf {
        self.alerts().join("inbox")
    }
    /// `alerts/CRITICAL_ALERT`: one line per critical alert, for a person.
    pub fn critical_alert(&self) -> PathBuf {
        self.alerts().join("CRITICAL_ALERT")
    }
    /// `alerts/inbox/.done/`: inbox alerts the monitor has taken in, kept.
    pub fn alerts_inbox_done(&self) -> PathBuf {
        self.alerts_inbox().join(".done")
    }
    /// `alerts/state.json`: the monitor's alert book (episodes, silences).
    pub fn alerts_state(&self) -> PathBuf {
        self.alerts().join("state.json")
    }
    /// `alerts/outbox/`: notifications not yet delivered on every channel.
    pub fn alerts_outbox(&self) -> PathBuf {
        self.alerts().join("outbox")
    }
    /// `alerts/requests/`: silences and acknowledgements for the monitor.
    pub fn alerts_requests(&self) -> PathBuf {
        self.alerts().join("requests")
    }
    /// `alerts/alerts.jsonl`: every notification and every delivery result.
    pub fn alerts_log(&self) -> PathBuf {
        self.alerts().join("alerts.jsonl")
    }
    /// `alerts/LOCAL_ALERTS`: one line per notification a remote channel failed to take.
    pub fn local_alerts(&self) -> PathBuf {
        self.alerts().join("LOCAL_ALERTS")
    }
    /// `state/health.json`: the monitor's health model.
    pub fn health(&self) -> PathBuf {
        self.state().join("health.json")
    }
    /// `state/history/`: the monitor's one-minute samples, one file per hour.
    pub fn history(&self) -> PathBuf {
        self.state().join("history")
    }
    /// `archive/`: what the retention moved out of the queue (docs/retention.md).
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }
    /// `archive/<group>/`: one target's archive (`.alerts` for the alerts').
    pub fn archive_group(&self, group: &str) -> PathBuf {
        self.archive().join(group)
    }
    /// `archive/<group>/<month>.index.jsonl`: what that month's segments hold.
    pub fn archive_index(&self, group: &str, month: &str) -> PathBuf {
        self.archive_group(group)
            .join(format!("{month}.index.jsonl"))
    }
    /// `archive/<group>/<month>/`: that month's segments (`<id>.jsonl.gz`).
    pub fn archive_month(&self, group: &str, month: &str) -> PathBuf {
        self.archive_group(group).join(month)
    }
    pub fn workspaces(&self) -> PathBuf {
        self.root.join("workspaces")
    }

    /// Create every directory of the layout (mode 0700) for the given targets.
    pub fn create<'a>(&self, targets: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for d in [
            self.root.clone(),
            self.inbox_processed(),
            self.inbox_rejected(),
            self.logs(),
            self.heartbeats(),
            self.locks(),
            self.secrets(),
            self.alerts_inbox(),
            self.workspaces(),
        ] {
            ensure_dir(&d)?;
        }
        for t in targets {
            self.queue(t).create()?;
            ensure_dir(&self.summary_backups(t))?;
        }
        Ok(())
    }

    /// The targets that have a queue directory (configured or not).
    pub fn queue_targets(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.queue_root())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(QueueState::Pending.dir_name()).is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_everything_0700() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path().join("root"));
        l.create(["default", "web"]).unwrap();
        for p in [
            l.inbox_processed(),
            l.inbox_rejected(),
            l.queue("web").dir(QueueState::Stuck),
            l.queue("default").dir(QueueState::Trash),
            l.summaries("default").join(".backup"),
            l.heartbeats(),
            l.alerts_inbox(),
        ] {
            let m = std::fs::metadata(&p).unwrap();
            assert!(m.is_dir(), "{}", p.display());
            assert_eq!(m.permissions().mode() & 0o777, 0o700, "{}", p.display());
        }
        assert_eq!(l.queue_targets(), ["default", "web"]);
    }
}
