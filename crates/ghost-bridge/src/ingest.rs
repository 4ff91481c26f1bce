//! The one way into the queue for the bridge: validate, deduplicate by id, and
//! write durably before anyone is told "queued".
//!
//! Deduplication: every patch has an id (its own, or `patch-<MD5 of its
//! canonical JSON>` when it has none). The ingestor keeps, in memory, the id,
//! place and content MD5 of every entry in every queue of the root, rebuilt by
//! a scan at start-up. The same id with the same content is a duplicate: the
//! existing entry is the answer, nothing is written. The same id with other
//! content is a conflict. Concurrent submissions of one id are serialised: the
//! second waits for the first to be durable (or to fail) and then decides.
//!
//! Durability: the entry is written to `tmp/`, fsynced, renamed into `pending/`
//! and the directory fsync is group-committed with concurrent writers
//! ([`ghost_core::fs::DirSync`]). Only then does `ingest` return `Queued`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use ghost_core::fs::DirSync;
use ghost_core::patch::parse::{parse_patch_value, resolve_target, ParseOptions};
use ghost_core::patch::{FieldError, PatchError, TargetSpec};
use ghost_core::queue::{new_name, QueueState};
use ghost_core::{Config, Layout, Result};

/// Where a patch came from, for logs and records.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// `http`, `inbox`, …
    pub channel: String,
    /// Route, file name, block number: whatever locates it for a person.
    pub detail: String,
}

/// A patch that is (or already was) durable in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    pub id: String,
    pub name: String,
    pub target: String,
}

/// What became of one patch.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Newly written, durable.
    Queued(Queued),
    /// The same id and content were already in the queue: nothing written.
    Duplicate(Queued),
    /// The id is taken by a patch with other content: nothing written.
    Conflict { id: String, existing: Queued },
    /// Invalid: every problem, by field.
    Rejected(PatchError),
    /// The target's pending queue is above the high-water mark.
    Busy { target: String, depth: usize },
    /// Writing failed (disk full, fsync error): not queued; try again.
    Failed(String),
}

#[derive(Debug, Clone)]
enum Slot {
    /// Durable in the queue.
    Done(Queued, String),
    /// Being written; the sender is dropped when the writer is done.
    InFlight(watch::Receiver<()>),
}

/// Counters for the heartbeat.
#[derive(Debug, Default, Serialize)]
pub struct Counters {
    pub received: AtomicU64,
    pub queued: AtomicU64,
    pub rejected: AtomicU64,
    pub duplicate: AtomicU64,
    pub conflict: AtomicU64,
    pub busy: AtomicU64,
    pub write_failed: AtomicU64,
    pub extraction_failures: AtomicU64,
    /// Unix milliseconds of the last patch queued (0: none yet).
    pub last_ingest_ms: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

pub use ghost_core::queue::{content_md5, document_id};

/// Validates, deduplicates and durably enqueues patches.
pub struct Ingestor {
    cfg: Arc<Config>,
    layout: Layout,
    specs: Vec<TargetSpec>,
    syncs: BTreeMap<String, Arc<DirSync>>,
    depth: BTreeMap<String, AtomicUsize>,
    ids: Mutex<HashMap<String, Slot>>,
    pub counters: Counters,
}

impl Ingestor {
    /// Build the ingestor for a root whose layout exists: scans every queue to
    /// learn the ids already there.
    pub fn new(cfg: Arc<Config>) -> Result<Ingestor> {
        let layout = Layout::new(cfg.root.clone());
        let mut syncs = BTreeMap::new();
        let mut depth = BTreeMap::new();
        for t in cfg.targets.keys() {
            let q = layout.queue(t);
            syncs.insert(
                t.clone(),
                Arc::new(DirSync::new(q.dir(QueueState::Pending))),
            );
            depth.insert(
                t.clone(),
                AtomicUsize::new(q.list(QueueState::Pending)?.len()),
            );
        }
        let ing = Ingestor {
            specs: cfg.target_specs(),
            layout,
            syncs,
            depth,
            ids: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            cfg,
        };
        let n = ing.rebuild_ids()?;
        info!(
            event = "ID_INDEX_BUILT",
            entries = n,
            "learned the ids of every queued entry"
        );
        Ok(ing)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Scan every entry of every queue of the root (configured targets and
    /// others) for its id and content MD5.
    fn rebuild_ids(&self) -> Result<usize> {
        let known = ghost_core::queue::index_ids(&self.layout, self.cfg.targets.keys().cloned())?;
        let map: HashMap<String, Slot> = known
            .into_iter()
            .map(|(id, k)| {
                let q = Queued {
                    id: id.clone(),
                    name: k.name,
                    target: k.target,
                };
                (id, Slot::Done(q, k.md5))
            })
            .collect();
        let n = map.len();
        *self.ids.lock().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(n)
    }

    /// Refresh the pending-depth estimates from the directories (the
    /// heartbeat calls this about once a second).
    pub fn refresh_depths(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (t, d) in &self.depth {
            let n = self
                .layout
                .queue(t)
                .list(QueueState::Pending)
                .map(|v| v.len())
                .unwrap_or(0);
            d.store(n, Ordering::Relaxed);
            out.insert(t.clone(), n);
        }
        out
    }

    /// True while intake is paused: `state/pause.json` (the operator) or an
    /// executor's log pause (`state/log-pause.json`, not overridden). The
    /// bridge then answers 503.
    pub fn paused(&self) -> bool {
        ghost_core::pause::is_paused(&self.layout)
            || ghost_core::logging::pause::log_paused(&self.layout)
    }

    /// The file that makes intake paused (the operator's first).
    pub fn pause_file(&self) -> PathBuf {
        let op = self.layout.pause_file();
        if !op.exists() && ghost_core::logging::pause::log_paused(&self.layout) {
            return ghost_core::logging::pause::pause_path(&self.layout);
        }
        op
    }

    /// The canonical name of a target or alias, or an error naming the known ones.
    pub fn resolve_target(&self, name: &str) -> std::result::Result<String, PatchError> {
        resolve_target(&self.specs, name)
            .map(|s| s.name.clone())
            .ok_or_else(|| PatchError::one("target", self.unknown_target_reason(name)))
    }

    fn unknown_target_reason(&self, name: &str) -> String {
        let known: Vec<String> = self
            .specs
            .iter()
            .map(|s| {
                if s.aliases.is_empty() {
                    s.name.clone()
                } else {
                    format!("{} (aliases: {})", s.name, s.aliases.join(", "))
                }
            })
            .collect();
        format!(
            "unknown target {name:?}; known targets: {}",
            known.join("; ")
        )
    }

    /// Validate `value`, deduplicate it, and write it durably into its
    /// target's `pending/`. `original` is the exact bytes to store when the
    /// value came alone in a request or file (else the value is serialised).
    pub async fn ingest(
        self: &Arc<Self>,
        value: Value,
        original: Option<Vec<u8>>,
        target_override: Option<&str>,
        source: &Source,
    ) -> Outcome {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        info!(event = "PATCH_RECEIVED", channel = %source.channel, source = %source.detail, "patch received");
        let max = self.cfg.bridge.max_patch_bytes;
        let bytes =
            original.unwrap_or_else(|| serde_json::to_vec_pretty(&value).unwrap_or_default());
        if bytes.len() as u64 > max {
            return self.rejected(
                PatchError::one(
                    "(document)",
                    format!(
                        "the patch is {} bytes; the limit is {max} (bridge.max_patch_bytes)",
                        bytes.len()
                    ),
                ),
                source,
            );
        }
        let opts = ParseOptions {
            targets: &self.specs,
            target_override,
        };
        let patch = match parse_patch_value(&value, &opts) {
            Ok(p) => p,
            Err(e) => return self.rejected(e, source),
        };
        let md5 = content_md5(&value);
        let id = patch.id.clone();
        // Take the id, or learn what already holds it.
        let tx = loop {
            let waiting = {
                let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
                match ids.get(&id) {
                    Some(Slot::Done(q, m)) => {
                        let q = q.clone();
                        let same = *m == md5;
                        drop(ids);
                        return self.existing(q, same, source);
                    }
                    Some(Slot::InFlight(rx)) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(());
                        ids.insert(id.clone(), Slot::InFlight(rx));
                        break tx;
                    }
                }
            };
            let mut waiting = waiting;
            // Returns when the writer drops its sender, whether before or after this call.
            let _ = waiting.changed().await;
        };
        let target = patch.target.clone();
        let depth = self
            .depth
            .get(&target)
            .map(|d| d.load(Ordering::Relaxed))
            .unwrap_or(0);
        let hwm = self.cfg.bridge.high_water_mark as usize;
        if hwm > 0 && depth >= hwm {
            self.ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            drop(tx);
            self.counters.busy.fetch_add(1, Ordering::Relaxed);
            warn!(event = "PATCH_REJECTED", reason = "busy", target = %target, depth, high_water_mark = hwm, "queue above its high-water mark");
            return Outcome::Busy { target, depth };
        }
        let name = new_name();
        let (q, sync) = (self.layout.queue(&target), self.syncs.get(&target).cloned());
        let written = tokio::task::spawn_blocking({
            let name = name.clone();
            move || match sync {
                Some(sync) => q.enqueue_grouped(&name, &bytes, &sync),
                None => q.enqueue_named(&name, &bytes),
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(ghost_core::Error::Invalid(format!(
                "write task failed: {e}"
            )))
        });
        let queued = Queued {
            id: id.clone(),
            name,
            target: target.clone(),
        };
        {
            let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
            match &written {
                Ok(()) => {
                    ids.insert(id.clone(), Slot::Done(queued.clone(), md5));
                }
                Err(_) => {
                    ids.remove(&id);
                }
            }
        }
        drop(tx);
        match written {
            Ok(()) => {
                if let Some(d) = self.depth.get(&target) {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                self.counters.last_ingest_ms.store(
                    ghost_core::time::unix_ms(std::time::SystemTime::now()),
                    Ordering::Relaxed,
                );
                info!(event = "PATCH_QUEUED", patch_id = %id, queue_name = %queued.name, target = %target, channel = %source.channel, source = %source.detail, "queued durably");
                Outcome::Queued(queued)
            }
            Err(e) => {
                self.counters.write_failed.fetch_add(1, Ordering::Relaxed);
                warn!(event = "PATCH_REJECTED", reason = "write_failed", patch_id = %id, target = %target, error = %e, "could not write the patch durably");
                Outcome::Failed(e.to_string())
            }
        }
    }

    fn existing(&self, q: Queued, same: bool, source: &Source) -> Outcome {
        if same {
            self.counters.duplicate.fetch_add(1, Ordering::Relaxed);
            info!(event = "PATCH_DUPLICATE", patch_id = %q.id, queue_name = %q.name, target = %q.target, channel = %source.channel, source = %source.detail, "already queued; nothing written");
            Outcome::Duplicate(q)
        } else {
            self.counters.conflict.fetch_add(1, Ordering::Relaxed);
            warn!(event = "PATCH_REJECTED", reason = "conflict", patch_id = %q.id, queue_name = %q.name, channel = %source.channel, source = %source.detail, "id already used by a patch with other content");
            Outcome::Conflict {
                id: q.id.clone(),
                existing: q,
            }
        }
    }

    fn rejected(&self, e: PatchError, source: &Source) -> Outcome {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        warn!(event = "PATCH_REJECTED", reason = "invalid", channel = %source.channel, source = %source.detail, error = %e, "refused");
        Outcome::Rejected(e)
    }

    /// Where entry `id` is now, if the ingestor knows it: (state, queued).
    pub fn locate(&self, id: &str) -> Option<(QueueState, Queued)> {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Slot::Done(q, _)) = ids.get(id) else {
            return None;
        };
        let q = q.clone();
        drop(ids);
        self.layout.queue(&q.target).find(&q.name).map(|s| (s, q))
    }
}

/// A field error list as JSON (`[{field, reason}]`).
pub fn errors_json(e: &PatchError) -> Value {
    serde_json::to_value(&e.errors).unwrap_or_default()
}

/// One error as a [`FieldError`].
pub fn field_error(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup(extra: &str) -> (tempfile::TempDir, Arc<Ingestor>) {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::from_toml(d.path(), extra, "test").unwrap();
        let layout = Layout::new(d.path());
        layout
            .create(cfg.targets.keys().map(String::as_str))
            .unwrap();
        let ing = Arc::new(Ingestor::new(Arc::new(cfg)).unwrap());
        (d, ing)
    }

    fn src() -> Source {
        Source {
            channel: "test".into(),
            detail: "unit".into(),
        }
    }

    fn patch(id: &str, content: &str) -> Value {
        json!({"id": id, "operations": [{"op": "write", "path": "a.txt", "content": content}]})
    }

    #[tokio::test]
    async fn queues_dedups_and_conflicts() {
        let (_d, ing) = setup("");
        let Outcome::Queued(q) = ing.ingest(patch("p1", "x"), None, None, &src()).await else {
            panic!()
        };
        assert_eq!((q.id.as_str(), q.target.as_str()), ("p1", "default"));
        let pending = ing
            .layout()
            .queue("default")
            .list(QueueState::Pending)
            .unwrap();
        assert_eq!(pending, vec![q.name.clone()]);
        match ing.ingest(patch("p1", "x"), None, None, &src()).await {
            Outcome::Duplicate(d) => assert_eq!(d, q),
            o => panic!("{o:?}"),
        }
        match ing.ingest(patch("p1", "y"), None, None, &src()).await {
            Outcome::Conflict { existing, .. } => assert_eq!(existing, q),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            ing.layout()
                .queue("default")
                .list(QueueState::Pending)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(ing.locate("p1").unwrap().0, QueueState::Pending);
    }

    #[tokio::test]
    async fn ids_survive_a_restart() {
        let (d, ing) = setup("");
        let Outcome::Queued(q) = ing.ingest(patch("p1", "x"), None, None, &src()).await else {
            panic!()
        };
        // An id-less patch is known by its content.
        let anon = json!({"operations": [{"op": "delete", "path": "z"}]});
        let Outcome::Queued(a) = ing.ingest(anon.clone(), None, None, &src()).await else {
            panic!()
        };
        let cfg = Config::from_toml(d.path(), "", "test").unwrap();
        let again = Arc::new(Ingestor::new(Arc::new(cfg)).unwrap());
        match again.ingest(patch("p1", "x"), None, None, &src()).await {
            Outcome::Duplicate(d) => assert_eq!(d, q),
            o => panic!("{o:?}"),
        }
        match again.ingest(anon, None, None, &src()).await {
            Outcome::Duplicate(d) => assert_eq!(d, a),
            o => panic!("{o:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_same_id_is_written_once() {
        let (_d, ing) = setup("");
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let ing = ing.clone();
                tokio::spawn(
                    async move { ing.ingest(patch("same", "x"), None, None, &src()).await },
                )
            })
            .collect();
        let mut queued = 0;
        for t in tasks {
            match t.await.unwrap() {
                Outcome::Queued(_) => queued += 1,
                Outcome::Duplicate(_) => {}
                o => panic!("{o:?}"),
            }
        }
        assert_eq!(queued, 1);
        assert_eq!(
            ing.layout()
                .queue("default")
                .list(QueueState::Pending)
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn rejects_invalid_and_unknown_targets_and_respects_the_high_water_mark() {
        let (_d, ing) =
            setup("[bridge]\nhigh_water_mark = 2\n[targets.default]\naliases = [\"DEV\"]\n");
        match ing
            .ingest(json!({"operations": []}), None, None, &src())
            .await
        {
            Outcome::Rejected(e) => assert_eq!(e.errors[0].field, "operations"),
            o => panic!("{o:?}"),
        }
        let mut p = patch("t", "x");
        p["target"] = json!("nowhere");
        match ing.ingest(p, None, None, &src()).await {
            Outcome::Rejected(e) => {
                assert!(e.to_string().contains("default (aliases: DEV)"), "{e}")
            }
            o => panic!("{o:?}"),
        }
        for i in 0..2 {
            assert!(matches!(
                ing.ingest(patch(&format!("h{i}"), "x"), None, None, &src())
                    .await,
                Outcome::Queued(_)
            ));
        }
        match ing.ingest(patch("h3", "x"), None, None, &src()).await {
            Outcome::Busy { depth, .. } => assert_eq!(depth, 2),
            o => panic!("{o:?}"),
        }
        // Refused ids are free again.
        assert!(ing.locate("h3").is_none());
    }

    #[tokio::test]
    async fn original_bytes_are_stored_unchanged() {
        let (_d, ing) = setup("");
        let raw =
            br#"{ "id": "raw",   "operations": [{"op": "write", "path": "a", "content": "x"}] }"#
                .to_vec();
        let v: Value = serde_json::from_slice(&raw).unwrap();
        let Outcome::Queued(q) = ing.ingest(v, Some(raw.clone()), None, &src()).await else {
            panic!()
        };
        let stored = std::fs::read(
            ing.layout()
                .queue("default")
                .entry_path(QueueState::Pending, &q.name),
        )
        .unwrap();
        assert_eq!(stored, raw);
    }
}
