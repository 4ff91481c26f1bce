//! The root's durable id index: `queue/.ids/<MD5 of the patch id>.json`, one
//! small file per patch id ever admitted, holding the id, the content MD5
//! (of the canonical JSON), the target and the queue name of its entry.
//!
//! It is what makes duplicate detection a property of the data root rather
//! than of a process: every admission ([`crate::admit`]) decides against it and
//! creates the record with a rename that never replaces (`RENAME_NOREPLACE`),
//! so two processes racing on one id cannot both win. Invariants:
//!
//! - A record is durable before its entry appears in `pending/` (the record is
//!   published and its directory fsynced, then the entry is renamed in), both
//!   under the admission lock of the record's target.
//! - A record whose entry is in no state of its target and not in its
//!   target's archive ([`crate::archive`]), read under that target's admission
//!   lock, is stale (a crash between the two renames, or an
//!   entry removed by hand): the next admission of the id takes it over.
//! - A root written before the index has no `queue/.ids/`: [`ensure`] builds it
//!   once from the entries, in a scratch directory published with one rename,
//!   so the index is either absent or complete.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::entry::{locate, Located};
use crate::error::{Error, Result};
use crate::fs;
use crate::patch::parse::{canonical_md5, document_id, document_value};
use crate::queue::QueueState;
use crate::Layout;

/// One record of the id index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRecord {
    /// The patch id, as [`crate::entry::stored_id`] reads it.
    pub id: String,
    /// MD5 of the patch's canonical JSON: "the same content".
    pub md5: String,
    pub target: String,
    /// The entry's queue name.
    pub name: String,
}

/// Where the record of `id` lives. The file name is the MD5 of the id, so any
/// id (up to 256 characters of any text) maps to a safe, fixed-length name.
pub fn record_path(layout: &Layout, id: &str) -> PathBuf {
    layout
        .ids()
        .join(format!("{}.json", crate::md5_hex(id.as_bytes())))
}

/// The record of `id`, if there is one.
pub fn read(layout: &Layout, id: &str) -> Result<Option<IdRecord>> {
    let p = record_path(layout, id);
    let Some(bytes) = fs::read_opt(&p)? else {
        return Ok(None);
    };
    let rec: IdRecord = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        what: "id index record",
        path: p.clone(),
        reason: e.to_string(),
    })?;
    // Two ids with one MD5 are not expected; never answer for the wrong one.
    Ok((rec.id == id).then_some(rec))
}

/// The record's bytes as written to disk.
pub fn encode(rec: &IdRecord) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(rec).expect("serialising a plain struct cannot fail");
    b.push(b'\n');
    b
}

/// True while the record's entry is kept: in a state of its target, or in
/// the target's archive (so an archived id stays taken as long as its
/// archive exists).
pub fn entry_kept(layout: &Layout, rec: &IdRecord) -> bool {
    layout.queue(&rec.target).find(&rec.name).is_some()
        || crate::archive::holds(layout, &rec.target, &rec.name)
}

/// The entry the index holds for patch id `id`, if it is still in some state
/// of its target and still has that id.
pub fn lookup(layout: &Layout, id: &str) -> Result<Option<Located>> {
    let Some(rec) = read(layout, id)? else {
        return Ok(None);
    };
    let q = layout.queue(&rec.target);
    Ok(q.find(&rec.name)
        .map(|state| locate(&q, state, &rec.name))
        .filter(|e| e.patch_id.as_deref() == Some(id)))
}

/// Make sure the index exists: on a root from before it, build it from every
/// entry (once, under the `ids` lock, published with one rename). Returns the
/// number of records when it was built now.
pub fn ensure(layout: &Layout) -> Result<Option<usize>> {
    let dir = layout.ids();
    if dir.is_dir() {
        return Ok(None);
    }
    let _lock = fs::LockFile::acquire(&layout.lock("ids"))?;
    if dir.is_dir() {
        return Ok(None);
    }
    let scratch = layout.queue_root().join(".ids.build");
    // A build that crashed half-way: derived data, rebuilt from the entries.
    if scratch.exists() {
        #[allow(clippy::disallowed_methods)] // derived scratch data, rebuilt from the entries
        std::fs::remove_dir_all(&scratch).map_err(|e| Error::io("remove", &scratch, e))?;
    }
    fs::ensure_dir(&layout.queue_root())?;
    let mut batch = fs::BatchDir::create(&scratch)?;
    // Streamed: no per-entry state is held, however many entries there are.
    // The first entry of an id wins, in the order targets (by name), states
    // ([`QueueState::ALL`]), queue names. Entries that are not JSON have no id.
    for t in layout.queue_targets() {
        let q = layout.queue(&t);
        for state in QueueState::ALL {
            for name in q.list(state)? {
                let Ok(Some(bytes)) = fs::read_opt(&q.entry_path(state, &name)) else {
                    continue;
                };
                // Parsed once: the same as `stored_id` and `stored_md5`.
                let Ok(value) = document_value(&bytes) else {
                    continue;
                };
                let (id, md5) = (document_id(&value), canonical_md5(&value));
                let file = format!("{}.json", crate::md5_hex(id.as_bytes()));
                let rec = IdRecord {
                    id,
                    md5,
                    target: t.clone(),
                    name,
                };
                batch.add(&file, &encode(&rec))?;
            }
        }
    }
    let n = batch.finish()?;
    fs::durable_move(&scratch, &dir)?;
    info!(
        event = "ID_INDEX_BUILT",
        entries = n,
        "built the id index from the entries of a root that had none"
    );
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{stored_id, stored_md5};

    #[test]
    fn an_older_root_gets_its_index_once_and_lookups_use_it() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.create(["default", "web"]).unwrap();
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(br#"{"id": "b", "operations": []}"#);
        let a = layout.queue("web").enqueue(&bom).unwrap();
        let anon = layout
            .queue("default")
            .enqueue(br#"{"operations": []}"#)
            .unwrap();
        layout.queue("default").enqueue(b"not json").unwrap();
        assert!(!layout.ids().exists());
        assert_eq!(ensure(&layout).unwrap(), Some(2));
        assert_eq!(ensure(&layout).unwrap(), None);
        let rec = read(&layout, "b").unwrap().unwrap();
        assert_eq!(
            (rec.target.as_str(), rec.name.as_str()),
            ("web", a.as_str())
        );
        assert_eq!(rec.md5, stored_md5(&bom).unwrap());
        let anon_id = stored_id(br#"{"operations": []}"#).unwrap();
        assert_eq!(lookup(&layout, &anon_id).unwrap().unwrap().name, anon);
        assert!(!layout.queue_root().join(".ids.build").exists());
        // The index directory is not a target.
        assert_eq!(layout.queue_targets(), vec!["default", "web"]);
    }
}
