//! Admission: the one way a patch enters the queue, whoever brings it (the
//! bridge's HTTP routes and inbox, `ghostctl submit`).
//!
//! In order: the size limit, the parse (every problem by field), the bounds on
//! the patch's work (`[limits]`, the same check the executor makes), the
//! duplicate/conflict decision against the root's durable id index
//! ([`crate::ids`]), the target's high-water mark, and the durable enqueue
//! with its record (`patch_id` and the content MD5, which the executor checks
//! at claim so that a hand-edited entry is refused). The answer is one
//! [`Outcome`].
//!
//! Concurrency between processes: the decision and the commit happen under the
//! target's admission lock (`state/locks/admit-<target>.lock`, an `flock`), and
//! under the lock of the target an existing record points at when that is
//! another one (both taken in name order, so two admitters never deadlock).
//! Under the lock nobody else can be between publishing a record and renaming
//! its entry in, so the pending count is exact (the high-water mark is never
//! overshot) and a record without its entry is stale. The record's rename never
//! replaces, so two admitters of one id on different targets cannot both win.
//! The expensive writes (the entry's and the record's temp files with their
//! fsyncs) happen before the lock; the `pending/` directory fsync after it,
//! group-committed between the threads of one process ([`DirSync`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::Config;
use crate::config::LimitsConfig;
use crate::error::Result;
use crate::fs::{self, DirSync, LockFile, Staged, FILE_MODE};
use crate::ids::{self, IdRecord};
use crate::patch::parse::{canonical_md5, document_value, parse_patch_value, ParseOptions};
use crate::patch::validate_limits;
use crate::patch::{PatchError, TargetSpec};
use crate::queue::{new_name, EntryRecord, QueueState};
use crate::Layout;

/// A patch that is (or already was) in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    /// The patch id.
    pub id: String,
    /// The entry's queue name.
    pub name: String,
    pub target: String,
}

/// What became of one patch.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Newly written, durable.
    Queued(Queued),
    /// The same id and content are already in the queue: nothing written.
    Duplicate(Queued),
    /// The id is taken by a patch with other content: nothing written.
    Conflict { id: String, existing: Queued },
    /// Invalid or over the size limit: every problem, by field.
    Rejected(PatchError),
    /// The target's `pending/` holds `depth` entries, at or above the
    /// high-water mark: nothing written; try again later.
    Full { target: String, depth: usize },
    /// Writing failed (disk full, fsync error): not queued; try again.
    Failed(String),
}

/// The one wording of a conflict, for every channel.
pub fn conflict_reason(id: &str, existing: &Queued) -> String {
    format!(
        "the id {id:?} is already used by queue entry {} (target {}) with other content; \
         nothing was written: send the same content, or this change as a new patch with another id",
        existing.name, existing.target
    )
}

/// What admission needs from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `bridge.max_patch_bytes`.
    pub max_patch_bytes: u64,
    /// `bridge.high_water_mark`; 0: none.
    pub high_water_mark: u64,
}

/// Admits patches into one data root. Cheap to share between threads.
#[derive(Debug)]
pub struct Admission {
    layout: Layout,
    specs: Vec<TargetSpec>,
    limits: Limits,
    /// The bounds on a patch's work ([limits]); checked here so that a patch
    /// the executor would refuse is refused at the door, naming the limit.
    work: LimitsConfig,
    syncs: Mutex<BTreeMap<String, Arc<DirSync>>>,
    ids_sync: DirSync,
}

impl Admission {
    /// Admission for the root and targets of `config`. Builds the id index if
    /// the root predates it (see [`ids::ensure`]).
    pub fn new(config: &Config) -> Result<Admission> {
        let layout = Layout::new(&config.root);
        layout.create(config.targets.keys().map(String::as_str))?;
        ids::ensure(&layout)?;
        Ok(Admission {
            ids_sync: DirSync::new(layout.ids()),
            layout,
            specs: config.target_specs(),
            limits: Limits {
                max_patch_bytes: config.bridge.max_patch_bytes,
                high_water_mark: u64::from(config.bridge.high_water_mark),
            },
            work: config.limits.clone(),
            syncs: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Admit one patch document. `bytes` are stored unchanged;
    /// `target_override` is the target the submission names (a route, a
    /// `--target`), if any. Blocking (file I/O and locks).
    pub fn admit(&self, bytes: &[u8], target_override: Option<&str>) -> Outcome {
        let max = self.limits.max_patch_bytes;
        if bytes.len() as u64 > max {
            return Outcome::Rejected(PatchError::one(
                "(document)",
                format!(
                    "the patch is {} bytes; the limit is {max} (bridge.max_patch_bytes)",
                    bytes.len()
                ),
            ));
        }
        let value = match document_value(bytes) {
            Ok(v) => v,
            Err(e) => return Outcome::Rejected(e),
        };
        let opts = ParseOptions {
            targets: &self.specs,
            target_override,
        };
        let patch = match parse_patch_value(&value, &opts) {
            Ok(p) => p,
            Err(e) => return Outcome::Rejected(e),
        };
        if let Err(e) = validate_limits(&patch, &self.work) {
            return Outcome::Rejected(e);
        }
        let md5 = canonical_md5(&value);
        match self.enqueue(&patch.id, &md5, &patch.target, bytes) {
            Ok(o) => o,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// Duplicate or conflict, judged from a record whose entry exists.
    fn judge(rec: &IdRecord, md5: &str) -> Outcome {
        let existing = Queued {
            id: rec.id.clone(),
            name: rec.name.clone(),
            target: rec.target.clone(),
        };
        if rec.md5 == md5 {
            Outcome::Duplicate(existing)
        } else {
            Outcome::Conflict {
                id: rec.id.clone(),
                existing,
            }
        }
    }

    fn enqueue(&self, id: &str, md5: &str, target: &str, bytes: &[u8]) -> Result<Outcome> {
        let layout = &self.layout;
        // Without a lock, the common repeat: a record whose entry is there.
        if let Some(rec) = ids::read(layout, id)? {
            if ids::entry_kept(layout, &rec) {
                return Ok(Self::judge(&rec, md5));
            }
        }
        let q = layout.queue(target);
        let name = new_name();
        let mut entry = Staged::write(&q.tmp_dir(), &format!("{name}.json"), bytes, FILE_MODE)?;
        let rec = IdRecord {
            id: id.to_string(),
            md5: md5.to_string(),
            target: target.to_string(),
            name: name.clone(),
        };
        // Staged beside the entry's temp file (same filesystem), so that the
        // index directory itself only ever holds records.
        let mut record = Staged::write(&q.tmp_dir(), "id", &ids::encode(&rec), FILE_MODE)?;
        // The entry's own record, ahead of the entry (the queue's invariant);
        // an orphan until the entry is renamed in.
        let sidecar = q.record_path(QueueState::Pending, &name);
        fs::write_json(
            &sidecar,
            &EntryRecord {
                patch_id: Some(id.to_string()),
                content_md5: Some(md5.to_string()),
                ..EntryRecord::default()
            },
        )?;
        let outcome = self.commit(&rec, &mut entry, &mut record);
        if !matches!(outcome, Ok(Outcome::Queued(_))) {
            let _ = fs::durable_remove(&sidecar);
        }
        let outcome = outcome?;
        if matches!(outcome, Outcome::Queued(_)) {
            self.sync_for(target).sync()?;
        }
        Ok(outcome)
    }

    /// The locked part: decide, check the mark, publish record then entry.
    fn commit(&self, rec: &IdRecord, entry: &mut Staged, record: &mut Staged) -> Result<Outcome> {
        let layout = &self.layout;
        let q = layout.queue(&rec.target);
        let record_path = ids::record_path(layout, &rec.id);
        loop {
            let seen = ids::read(layout, &rec.id)?.map(|r| r.target);
            let mut held = vec![rec.target.clone()];
            held.extend(seen);
            held.sort();
            held.dedup();
            let _locks: Vec<LockFile> = held
                .iter()
                .map(|t| LockFile::acquire_brief(&layout.lock(&format!("admit-{t}"))))
                .collect::<Result<_>>()?;
            let now = ids::read(layout, &rec.id)?;
            let stale = match &now {
                Some(r) if !held.contains(&r.target) => continue, // changed meanwhile
                Some(r) => {
                    if ids::entry_kept(layout, r) {
                        return Ok(Self::judge(r, &rec.md5));
                    }
                    true
                }
                None => false,
            };
            let mark = self.limits.high_water_mark as usize;
            if mark > 0 {
                let depth = q.list(QueueState::Pending)?.len();
                if depth >= mark {
                    return Ok(Outcome::Full {
                        target: rec.target.clone(),
                        depth,
                    });
                }
            }
            if stale {
                // Held under its target's lock: nobody is about to rename its entry in.
                record.publish_over(&record_path)?;
            } else if let Err(e) = record.publish_new(&record_path) {
                if fs::is_already_exists(&e) {
                    // Another target's admitter took the id just now: judge theirs.
                    continue;
                }
                return Err(e);
            }
            self.ids_sync.sync()?;
            entry.publish_new(&q.entry_path(QueueState::Pending, &rec.name))?;
            return Ok(Outcome::Queued(Queued {
                id: rec.id.clone(),
                name: rec.name.clone(),
                target: rec.target.clone(),
            }));
        }
    }

    fn sync_for(&self, target: &str) -> Arc<DirSync> {
        let mut m = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(target.to_string())
            .or_insert_with(|| {
                Arc::new(DirSync::new(
                    self.layout.queue(target).dir(QueueState::Pending),
                ))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests;
