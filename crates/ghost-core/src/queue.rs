//! The filesystem queue of one target: `queue/<target>/<state>/`.
//!
//! An entry is one file, `<name>.json`, holding the patch exactly as it was
//! submitted; `<name>` is a time-ordered UUID v7, so a sorted listing is arrival
//! order. Its state is the directory it is in, and a state change is one
//! [`durable_move`] of that file. Beside an entry lie sidecars, `<name>.<kind>.json`:
//! the entry's [`EntryRecord`] (attempts, history, claim, reason, operator action)
//! under a kind that depends on the state (`claim` in `active/`, `retry` in
//! `pending/`/`deferred/`, `reason` in `.stuck/`/`failed/`, `hold`, `trash`, `done`),
//! and the executor's undo `journal` in `active/`.
//!
//! Invariant: the record beside an entry is accurate. [`Queue::transition`] keeps
//! it by writing the new record into the destination *before* the move (the
//! commit point) and removing the source's sidecars *after*. A crash leaves at
//! worst an orphan sidecar with no entry beside it, which [`Queue::sweep`] clears.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::fs::{self, durable_move, durable_write_via, ensure_dir, FILE_MODE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Pending,
    Active,
    Deferred,
    Held,
    Done,
    Failed,
    Stuck,
    Trash,
}

impl QueueState {
    pub const ALL: [QueueState; 8] = [
        QueueState::Pending,
        QueueState::Active,
        QueueState::Deferred,
        QueueState::Held,
        QueueState::Done,
        QueueState::Failed,
        QueueState::Stuck,
        QueueState::Trash,
    ];

    /// The states whose entries are not finished: everything but `done` and `trash`.
    pub const OPEN: [QueueState; 6] = [
        QueueState::Pending,
        QueueState::Active,
        QueueState::Deferred,
        QueueState::Held,
        QueueState::Failed,
        QueueState::Stuck,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            QueueState::Pending => "pending",
            QueueState::Active => "active",
            QueueState::Deferred => "deferred",
            QueueState::Held => "held",
            QueueState::Done => "done",
            QueueState::Failed => "failed",
            QueueState::Stuck => ".stuck",
            QueueState::Trash => "trash",
        }
    }

    pub fn name(self) -> &'static str {
        self.dir_name().trim_start_matches('.')
    }

    pub fn parse(s: &str) -> Option<QueueState> {
        let s = s.trim_start_matches('.');
        QueueState::ALL.into_iter().find(|q| q.name() == s)
    }

    /// The sidecar kind under which an entry's record is kept in this state.
    pub fn record_kind(self) -> &'static str {
        match self {
            QueueState::Pending | QueueState::Deferred => "retry",
            QueueState::Active => "claim",
            QueueState::Held => "hold",
            QueueState::Done => "done",
            QueueState::Failed | QueueState::Stuck => "reason",
            QueueState::Trash => "trash",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            QueueState::Done | QueueState::Failed | QueueState::Trash
        )
    }
}

impl std::fmt::Display for QueueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A new, time-ordered queue name (UUID v7, lowercase, hyphenated).
pub fn new_name() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Sidecar kinds besides the records of the states: the executor's undo
/// journal, and the records an operator's move keeps under another name.
pub const SIDECAR_KINDS: [&str; 4] = ["journal", "previous-record", "unreadable-record", "procs"];

/// True for an entry file name (`<name>.json` with no other dot, not hidden).
pub fn is_entry_file(file: &str) -> bool {
    match file.strip_suffix(".json") {
        Some(stem) => !stem.is_empty() && !stem.contains('.'),
        None => false,
    }
}

/// The claim part of a record: who is applying the entry now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub pid: u32,
    pub host: String,
    pub started_at: String,
    pub attempt: u32,
    pub version: String,
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub started_at: String,
    pub ended_at: String,
    /// `applied`, `failed`, `deferred`, `stuck`, `interrupted`, …
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why an entry is in `failed/` or `.stuck/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub kind: String,
    pub message: String,
    pub at: String,
    /// What a person can do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// An operator's action on an entry (hold, release, retry, delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAction {
    pub action: String,
    pub by: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The state the entry was in before the action.
    pub from: QueueState,
}

/// Everything known about an entry besides its patch: the sidecar record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// The patch id: set at admission, and again at each claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_id: Option<String>,
    /// MD5 of the patch's canonical JSON when it was admitted: the executor
    /// refuses an entry whose bytes no longer match (a hand edit). Absent in
    /// entries from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    /// Attempts started so far (the current one included while active).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptRecord>,
    /// When a deferred entry becomes due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator: Vec<OperatorAction>,
}

/// One target's queue directory.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
    target: String,
}

impl Queue {
    pub fn new(dir: PathBuf, target: &str) -> Self {
        Queue {
            dir,
            target: target.to_string(),
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn root(&self) -> &Path {
        &self.dir
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn dir(&self, state: QueueState) -> PathBuf {
        self.dir.join(state.dir_name())
    }

    pub fn entry_path(&self, state: QueueState, name: &str) -> PathBuf {
        self.dir(state).join(format!("{name}.json"))
    }

    pub fn sidecar_path(&self, state: QueueState, name: &str, kind: &str) -> PathBuf {
        self.dir(state).join(format!("{name}.{kind}.json"))
    }

    pub fn record_path(&self, state: QueueState, name: &str) -> PathBuf {
        self.sidecar_path(state, name, state.record_kind())
    }

    pub fn create(&self) -> Result<()> {
        ensure_dir(&self.tmp_dir())?;
        for s in QueueState::ALL {
            ensure_dir(&self.dir(s))?;
        }
        Ok(())
    }

    /// Entry names in `state`, in arrival order.
    pub fn list(&self, state: QueueState) -> Result<Vec<String>> {
        let dir = self.dir(state);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(crate::Error::io("list", dir, e)),
        };
        let mut names: Vec<String> = Vec::new();
        for e in rd {
            let e = e.ctx("list", &dir)?;
            if let Some(file) = e.file_name().to_str() {
                if is_entry_file(file) {
                    names.push(file.trim_end_matches(".json").to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Which state holds entry `name`, if any.
    pub fn find(&self, name: &str) -> Option<QueueState> {
        QueueState::ALL
            .into_iter()
            .find(|s| self.entry_path(*s, name).exists())
    }

    /// Durably add `bytes` as a new entry in `pending/` (staged in `tmp/`).
    pub fn enqueue(&self, bytes: &[u8]) -> Result<String> {
        let name = new_name();
        self.enqueue_named(&name, bytes)?;
        Ok(name)
    }

    /// Like [`Queue::enqueue`] with a name chosen by the caller.
    pub fn enqueue_named(&self, name: &str, bytes: &[u8]) -> Result<()> {
        durable_write_via(
            &self.tmp_dir(),
            &self.entry_path(QueueState::Pending, name),
            bytes,
            FILE_MODE,
        )
    }

    /// Like [`Queue::enqueue_named`], with the `pending/` directory fsync shared
    /// with concurrent writers through `sync` (which must be for `pending/`).
    /// Never replaces an existing entry.
    pub fn enqueue_grouped(&self, name: &str, bytes: &[u8], sync: &fs::DirSync) -> Result<()> {
        fs::durable_write_grouped(
            &self.tmp_dir(),
            &self.entry_path(QueueState::Pending, name),
            bytes,
            FILE_MODE,
            sync,
        )
    }

    /// The record beside an entry (the default when there is none yet).
    pub fn read_record(&self, state: QueueState, name: &str) -> Result<EntryRecord> {
        let p = self.record_path(state, name);
        match fs::read_opt(&p)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| crate::Error::Corrupt {
                what: "entry record",
                path: p,
                reason: e.to_string(),
            }),
            None => Ok(EntryRecord::default()),
        }
    }

    /// Write the record beside an entry that stays where it is.
    pub fn write_record(&self, state: QueueState, name: &str, record: &EntryRecord) -> Result<()> {
        fs::write_json(&self.record_path(state, name), record)
    }

    /// Move entry `name` from `from` to `to`, carrying `record`: the record is
    /// written into `to` first, then the entry moves (the commit point), then
    /// the sidecars left in `from` are removed.
    pub fn transition(
        &self,
        name: &str,
        from: QueueState,
        to: QueueState,
        record: &EntryRecord,
    ) -> Result<()> {
        fs::write_json(&self.record_path(to, name), record)?;
        crate::fault_point("crash-before-move", Some(&self.entry_path(to, name)))?;
        durable_move(&self.entry_path(from, name), &self.entry_path(to, name))?;
        self.remove_sidecars(from, name);
        Ok(())
    }

    /// Claim `name`: move it from `pending/` to `active/`, then write its
    /// record there. The rename comes first so that an entry is taken the
    /// moment the executor sees it, without waiting for an fsync; the record's
    /// durable write that follows makes the rename durable too (both are in
    /// `active/`, whose directory it fsyncs), then `pending/` is fsynced. A
    /// crash between the two leaves the entry in `active/` beside no record,
    /// its record still in `pending/`: [`Queue::read_claimed_record`] falls
    /// back to that one, so an attempt that never started is not counted.
    /// Fails with the rename's error when the entry has left `pending/`.
    pub fn claim(&self, name: &str, record: &EntryRecord) -> Result<()> {
        fs::rename_noreplace(
            &self.entry_path(QueueState::Pending, name),
            &self.entry_path(QueueState::Active, name),
        )?;
        crate::fault_point(
            "crash-after-claim-rename",
            Some(&self.entry_path(QueueState::Active, name)),
        )?;
        fs::write_json(&self.record_path(QueueState::Active, name), record)?;
        fs::fsync_dir(&self.dir(QueueState::Pending))?;
        self.remove_sidecars(QueueState::Pending, name);
        Ok(())
    }

    /// The record of a claimed entry: the one in `active/`, or the one it had
    /// in `pending/` when a crash came between its claim's rename and record.
    pub fn read_claimed_record(&self, name: &str) -> Result<EntryRecord> {
        if self.record_path(QueueState::Active, name).exists() {
            return self.read_record(QueueState::Active, name);
        }
        self.read_record(QueueState::Pending, name)
    }

    /// Remove every sidecar of `name` in `state`. Best effort and without fsync:
    /// one that reappears after a crash is an orphan that [`Queue::sweep`] clears.
    /// Each kind ghostbridge writes is unlinked by name: listing the directory
    /// would make every move cost as much as the directory is large.
    pub fn remove_sidecars(&self, state: QueueState, name: &str) {
        let kinds = QueueState::ALL
            .iter()
            .map(|s| s.record_kind())
            .chain(SIDECAR_KINDS);
        for kind in kinds {
            #[allow(clippy::disallowed_methods)] // best effort by design: sweep clears a survivor
            let _ = std::fs::remove_file(self.sidecar_path(state, name, kind));
        }
    }

    /// Remove sidecars with no entry beside them and older than `min_age`, temp
    /// files in `tmp/`, and durable-write temp files in the state directories,
    /// older than `tmp_max_age`. Returns what was removed.
    pub fn sweep(&self, min_age: Duration, tmp_max_age: Duration) -> Result<Vec<PathBuf>> {
        self.sweep_in(&QueueState::ALL, min_age, tmp_max_age)
    }

    /// [`Queue::sweep`] over `states` only (and `tmp/`). The executor's
    /// start-up sweeps the open states: `done/` and `trash/` may hold
    /// 100,000 entries with their records, and listing them at every start
    /// would make a start cost as much as the history is long (the monitor's
    /// maintenance sweeps them, docs/retention.md).
    pub fn sweep_in(
        &self,
        states: &[QueueState],
        min_age: Duration,
        tmp_max_age: Duration,
    ) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let old = |p: &Path, age: Duration| {
            std::fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() >= age)
                .unwrap_or(false)
        };
        for &state in states {
            let dir = self.dir(state);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let Some(f) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if is_entry_file(&f) || !f.ends_with(".json") {
                    continue;
                }
                let stem = f.split('.').next().unwrap_or_default();
                if stem.is_empty() || self.entry_path(state, stem).exists() {
                    continue;
                }
                if old(&e.path(), min_age) && crate::fs::durable_remove(&e.path()).is_ok() {
                    removed.push(e.path());
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.tmp_dir()) {
            for e in rd.flatten() {
                // Only what was really removed is reported.
                if old(&e.path(), tmp_max_age) && crate::fs::durable_remove(&e.path()).is_ok() {
                    removed.push(e.path());
                }
            }
        }
        Ok(removed)
    }
}

pub use crate::patch::parse::{canonical_md5 as content_md5, document_id};

/// Count of entries per state.
pub fn counts(q: &Queue) -> Result<std::collections::BTreeMap<String, usize>> {
    let mut m = std::collections::BTreeMap::new();
    for s in QueueState::ALL {
        m.insert(s.name().to_string(), q.list(s)?.len());
    }
    Ok(m)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: fixtures are set up and damaged directly, not durably
mod tests {
    use super::*;

    fn queue() -> (tempfile::TempDir, Queue) {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::new(d.path().join("q"), "default");
        q.create().unwrap();
        (d, q)
    }

    #[test]
    fn names_sort_in_arrival_order() {
        let names: Vec<String> = (0..500).map(|_| new_name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names.iter().all(|n| is_entry_file(&format!("{n}.json"))));
        assert!(!is_entry_file(&format!("{}.claim.json", names[0])));
        assert!(!is_entry_file(".x.json"));
    }

    #[test]
    fn enqueue_list_transition() {
        let (_d, q) = queue();
        let a = q.enqueue(b"{\"a\":1}").unwrap();
        let b = q.enqueue(b"{\"b\":1}").unwrap();
        assert_eq!(
            q.list(QueueState::Pending).unwrap(),
            vec![a.clone(), b.clone()]
        );
        let rec = EntryRecord {
            attempts: 1,
            ..Default::default()
        };
        q.transition(&a, QueueState::Pending, QueueState::Active, &rec)
            .unwrap();
        assert_eq!(q.find(&a), Some(QueueState::Active));
        assert_eq!(q.read_record(QueueState::Active, &a).unwrap().attempts, 1);
        std::fs::File::create(q.sidecar_path(QueueState::Active, &a, "journal")).unwrap();
        q.transition(&a, QueueState::Active, QueueState::Done, &rec)
            .unwrap();
        // The claim and journal do not linger in active/.
        assert_eq!(
            std::fs::read_dir(q.dir(QueueState::Active))
                .unwrap()
                .count(),
            0
        );
        assert!(q.record_path(QueueState::Done, &a).exists());
        assert_eq!(counts(&q).unwrap()["done"], 1);
        assert!(q.list(QueueState::Trash).unwrap().is_empty());
    }

    #[test]
    fn a_claim_moves_first_and_its_record_falls_back_to_pending() {
        let (_d, q) = queue();
        let a = q.enqueue(b"{\"a\":1}").unwrap();
        let old = EntryRecord {
            attempts: 2,
            ..Default::default()
        };
        q.write_record(QueueState::Pending, &a, &old).unwrap();
        // A crash between the claim's rename and its record: the entry is in
        // active/, its record still the one in pending/.
        fs::rename_noreplace(
            &q.entry_path(QueueState::Pending, &a),
            &q.entry_path(QueueState::Active, &a),
        )
        .unwrap();
        assert_eq!(q.read_claimed_record(&a).unwrap().attempts, 2);
        // A whole claim: the new record in active/, none left in pending/.
        let b = q.enqueue(b"{\"b\":1}").unwrap();
        q.write_record(QueueState::Pending, &b, &old).unwrap();
        let new = EntryRecord {
            attempts: 3,
            ..Default::default()
        };
        q.claim(&b, &new).unwrap();
        assert_eq!(q.find(&b), Some(QueueState::Active));
        assert_eq!(q.read_claimed_record(&b).unwrap().attempts, 3);
        assert!(!q.record_path(QueueState::Pending, &b).exists());
        // An entry that left pending/ meanwhile is not claimed, and nothing is written.
        let err = q.claim(&b, &new).unwrap_err();
        assert!(err.to_string().contains("rename"), "{err}");
        assert_eq!(q.find(&b), Some(QueueState::Active));
    }

    #[test]
    fn transition_of_a_missing_entry_fails_and_moves_nothing() {
        let (_d, q) = queue();
        let err = q
            .transition(
                "nope",
                QueueState::Pending,
                QueueState::Held,
                &EntryRecord::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        // The record written ahead is an orphan the sweep clears.
        let removed = q.sweep(Duration::ZERO, Duration::from_secs(3600)).unwrap();
        assert_eq!(removed.len(), 1);
    }

    #[test]
    fn sweep_keeps_records_of_present_entries() {
        let (_d, q) = queue();
        let a = q.enqueue(b"{}").unwrap();
        q.write_record(QueueState::Pending, &a, &EntryRecord::default())
            .unwrap();
        std::fs::File::create(q.tmp_dir().join("partial")).unwrap();
        let removed = q.sweep(Duration::ZERO, Duration::ZERO).unwrap();
        assert_eq!(removed, vec![q.tmp_dir().join("partial")]);
        assert!(q.record_path(QueueState::Pending, &a).exists());
    }

    #[test]
    fn a_sweep_of_some_states_leaves_the_others_alone() {
        let (_d, q) = queue();
        let gone = new_name();
        for state in [QueueState::Pending, QueueState::Done] {
            q.write_record(state, &gone, &EntryRecord::default())
                .unwrap();
        }
        let removed = q
            .sweep_in(&QueueState::OPEN, Duration::ZERO, Duration::ZERO)
            .unwrap();
        assert_eq!(removed, vec![q.record_path(QueueState::Pending, &gone)]);
        assert!(q.record_path(QueueState::Done, &gone).exists());
        let removed = q.sweep(Duration::ZERO, Duration::ZERO).unwrap();
        assert_eq!(removed, vec![q.record_path(QueueState::Done, &gone)]);
    }

    #[test]
    fn sweep_does_not_count_what_it_failed_to_remove() {
        let (_d, q) = queue();
        q.enqueue(b"{}").unwrap();
        // A directory cannot be unlinked as a file, even by root.
        std::fs::create_dir(q.tmp_dir().join("not-a-file")).unwrap();
        let removed = q.sweep(Duration::ZERO, Duration::ZERO).unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        assert!(q.tmp_dir().join("not-a-file").is_dir());
    }
}
