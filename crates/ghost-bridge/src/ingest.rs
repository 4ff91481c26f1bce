//! The bridge's side of admission: every patch that comes in (HTTP, inbox,
//! transcripts) goes through [`ghost_core::admit::Admission`], the one
//! admission path that `ghostctl submit` uses too. It decides duplicates and
//! conflicts against the root's durable id index, so what any process queued
//! before, or since this bridge started, counts; the bridge keeps no per-entry
//! state in memory. This module adds the logs and the heartbeat counters, and
//! runs the blocking admission off the async threads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tracing::{debug, info, warn};

use ghost_core::admit::Admission;
use ghost_core::entry::{Located, Resolved};
use ghost_core::patch::parse::resolve_target;
use ghost_core::patch::{FieldError, PatchError, TargetSpec};
use ghost_core::queue::QueueState;
use ghost_core::{Config, Layout, Result};

pub use ghost_core::admit::{conflict_reason, Outcome, Queued};
pub use ghost_core::queue::{content_md5, document_id};

/// Where a patch came from, for logs and records.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// `http`, `inbox`, …
    pub channel: String,
    /// Route, file name, block number: whatever locates it for a person.
    pub detail: String,
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

/// Admits patches for the bridge, with its logs and counters.
pub struct Ingestor {
    cfg: Arc<Config>,
    admission: Arc<Admission>,
    specs: Vec<TargetSpec>,
    pub counters: Counters,
}

impl Ingestor {
    /// The ingestor for a root: builds the id index once if the root predates
    /// it (blocking; the bridge calls this off the async threads).
    pub fn new(cfg: Arc<Config>) -> Result<Ingestor> {
        let admission = Arc::new(Admission::new(&cfg)?);
        Ok(Ingestor {
            specs: cfg.target_specs(),
            admission,
            counters: Counters::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn layout(&self) -> &Layout {
        self.admission.layout()
    }

    /// The pending depth of every configured target, read from the
    /// directories (for the heartbeat, about once a second).
    pub fn refresh_depths(&self) -> BTreeMap<String, usize> {
        self.cfg
            .targets
            .keys()
            .map(|t| {
                let n = self
                    .layout()
                    .queue(t)
                    .list(QueueState::Pending)
                    .map(|v| v.len())
                    .unwrap_or(0);
                (t.clone(), n)
            })
            .collect()
    }

    /// True while intake is paused: `state/pause.json` (the operator) or an
    /// executor's log pause (`state/log-pause.json`, not overridden). The
    /// bridge then answers 503.
    pub fn paused(&self) -> bool {
        ghost_core::pause::is_paused(self.layout())
            || ghost_core::logging::pause::log_paused(self.layout())
    }

    /// The file that makes intake paused (the operator's first).
    pub fn pause_file(&self) -> PathBuf {
        let op = self.layout().pause_file();
        if !op.exists() && ghost_core::logging::pause::log_paused(self.layout()) {
            return ghost_core::logging::pause::pause_path(self.layout());
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

    /// Admit `value`. `original` is the exact bytes to store when the value
    /// came alone in a request or file (else the value is serialised).
    pub async fn ingest(
        self: &Arc<Self>,
        value: Value,
        original: Option<Vec<u8>>,
        target_override: Option<&str>,
        source: &Source,
    ) -> Outcome {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        // Debug: a transcript of thousands of blocks must not write thousands
        // of lines at info; the outcome of each patch is logged below.
        debug!(event = "PATCH_RECEIVED", channel = %source.channel, source = %source.detail, "patch received");
        let bytes =
            original.unwrap_or_else(|| serde_json::to_vec_pretty(&value).unwrap_or_default());
        let admission = self.admission.clone();
        let over = target_override.map(str::to_string);
        let mut outcome =
            tokio::task::spawn_blocking(move || admission.admit(&bytes, over.as_deref()))
                .await
                .unwrap_or_else(|e| Outcome::Failed(format!("the admission task failed: {e}")));
        // The crash window between the durable write and the answer; its
        // error variant is a write reported failed after the entry went in
        // (the client's retry then finds it: a duplicate, not a second entry).
        if matches!(outcome, Outcome::Queued(_)) {
            if let Err(e) = ghost_core::fault_point("bridge-crash-before-answer", None) {
                outcome = Outcome::Failed(e.to_string());
            }
        }
        self.account(&outcome, source);
        outcome
    }

    /// Count and log an outcome.
    fn account(&self, outcome: &Outcome, source: &Source) {
        let c = &self.counters;
        match outcome {
            Outcome::Queued(q) => {
                c.queued.fetch_add(1, Ordering::Relaxed);
                c.last_ingest_ms.store(
                    ghost_core::time::unix_ms(std::time::SystemTime::now()),
                    Ordering::Relaxed,
                );
                info!(event = "PATCH_QUEUED", patch_id = %q.id, queue_name = %q.name, target = %q.target, channel = %source.channel, source = %source.detail, "queued durably");
            }
            Outcome::Duplicate(q) => {
                c.duplicate.fetch_add(1, Ordering::Relaxed);
                info!(event = "PATCH_DUPLICATE", patch_id = %q.id, queue_name = %q.name, target = %q.target, channel = %source.channel, source = %source.detail, "already queued; nothing written");
            }
            Outcome::Conflict { id, existing } => {
                c.conflict.fetch_add(1, Ordering::Relaxed);
                warn!(event = "PATCH_REJECTED", reason = "conflict", patch_id = %id, queue_name = %existing.name, channel = %source.channel, source = %source.detail, "id already used by a patch with other content");
            }
            Outcome::Rejected(e) => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                warn!(event = "PATCH_REJECTED", reason = "invalid", channel = %source.channel, source = %source.detail, error = %e, "refused");
            }
            Outcome::Full { target, depth } => {
                c.busy.fetch_add(1, Ordering::Relaxed);
                warn!(event = "PATCH_REJECTED", reason = "busy", target = %target, depth, high_water_mark = self.cfg.bridge.high_water_mark, "queue at its high-water mark");
            }
            Outcome::Failed(e) => {
                c.write_failed.fetch_add(1, Ordering::Relaxed);
                warn!(event = "PATCH_REJECTED", reason = "write_failed", channel = %source.channel, source = %source.detail, error = %e, "could not write the patch durably");
            }
        }
    }

    /// Where the entry with queue name or patch id `key` is now (blocking):
    /// exactly that entry, or none.
    pub fn locate(&self, key: &str) -> Option<Located> {
        match ghost_core::entry::find(self.layout(), key) {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "cannot look the entry up");
                None
            }
        }
    }

    /// What `key` means by the root's one rule
    /// ([`ghost_core::entry::resolve`]: exact, else an unambiguous prefix or
    /// suffix of a queue name or patch id) (blocking).
    pub fn resolve(&self, key: &str) -> Resolved {
        match ghost_core::entry::resolve(self.layout(), key) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot look the entry up");
                Resolved::None
            }
        }
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
        assert_eq!(ing.locate("p1").unwrap().state, QueueState::Pending);
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
            Outcome::Full { depth, .. } => assert_eq!(depth, 2),
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
