//! A queue entry's identity, and finding an entry by it.
//!
//! One rule for an entry's patch id: [`stored_id`] reads the stored bytes
//! exactly as the parser does (UTF-8, a leading byte order mark ignored, the
//! legacy shapes' `blockId`, `patch-<MD5>` for a patch without an id), so the
//! id a lookup or the id index reads is always the id the parser gives. One
//! lookup: [`find`] / [`find_all`] take a queue name or a patch id and search
//! every state of every target under the root.
//!
//! A patch id is looked up in the root's durable id index first
//! ([`crate::ids`]), then, for entries that came in around it (placed by
//! hand, or written by an older version), by reading every entry.
//!
//! What a person types is resolved by one rule, [`resolve`], that every verb
//! of `ghostctl` and the bridge's `GET /v1/patches/{id}` share: an exact queue
//! name or patch id, else an unambiguous prefix or suffix (at least
//! [`MIN_PARTIAL`] characters) of either. The first characters of a UUID v7
//! queue name are a timestamp, so the suffix is what tells entries apart.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::Result;
use crate::fs;
use crate::patch::parse::{canonical_md5, document_id, document_value};
use crate::queue::{Queue, QueueState};
use crate::Layout;

/// The patch id of stored entry bytes, as the parser gives it; `None` for
/// bytes that are not a JSON document (they have no id).
pub fn stored_id(bytes: &[u8]) -> Option<String> {
    document_value(bytes).ok().map(|v| document_id(&v))
}

/// The content MD5 of stored entry bytes: MD5 of the document's canonical
/// JSON, so a byte order mark or other formatting is the same content.
/// `None` for bytes that are not a JSON document.
pub fn stored_md5(bytes: &[u8]) -> Option<String> {
    document_value(bytes).ok().map(|v| canonical_md5(&v))
}

/// Where a queue entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located {
    pub target: String,
    pub state: QueueState,
    /// The queue name (file name without `.json`).
    pub name: String,
    pub path: PathBuf,
    /// [`stored_id`] of the entry (else the record's `patch_id`); `None` when
    /// neither has one.
    pub patch_id: Option<String>,
}

/// True for a string that can be a queue name (never a path): the one name
/// rule, [`crate::text::is_name`].
pub fn is_queue_name(s: &str) -> bool {
    crate::text::is_name(s)
}

/// Describe entry `name` in `state` of queue `q`, reading its id.
pub fn locate(q: &Queue, state: QueueState, name: &str) -> Located {
    let path = q.entry_path(state, name);
    let patch_id = fs::read_opt(&path)
        .ok()
        .flatten()
        .and_then(|b| stored_id(&b))
        .or_else(|| q.read_record(state, name).ok().and_then(|r| r.patch_id));
    Located {
        target: q.target().to_string(),
        state,
        name: name.to_string(),
        path,
        patch_id,
    }
}

/// The one entry `key` (a queue name or a patch id) means, if any: the first
/// of [`find_all`].
pub fn find(layout: &Layout, key: &str) -> Result<Option<Located>> {
    Ok(find_all(layout, key)?.into_iter().next())
}

/// Every entry `key` means, at the first level that matches anything: the
/// entries with that queue name (in any target), else the entry the id index
/// holds for that patch id, else every entry whose stored id is `key` (more
/// than one only in roots written before the id index).
pub fn find_all(layout: &Layout, key: &str) -> Result<Vec<Located>> {
    let targets = layout.queue_targets();
    if is_queue_name(key) {
        let by_name: Vec<Located> = targets
            .iter()
            .map(|t| layout.queue(t))
            .filter_map(|q| q.find(key).map(|s| locate(&q, s, key)))
            .collect();
        if !by_name.is_empty() {
            return Ok(by_name);
        }
    }
    if let Some(found) = crate::ids::lookup(layout, key)? {
        return Ok(vec![found]);
    }
    let mut by_id = Vec::new();
    for t in &targets {
        let q = layout.queue(t);
        for state in QueueState::ALL {
            for name in q.list(state)? {
                let e = locate(&q, state, &name);
                if e.patch_id.as_deref() == Some(key) {
                    by_id.push(e);
                }
            }
        }
    }
    Ok(by_id)
}

/// The shortest prefix or suffix [`resolve`] accepts: shorter keys match too
/// much to be typed on purpose.
pub const MIN_PARTIAL: usize = 4;

/// What a key a person typed means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Nothing matches.
    None,
    /// Exactly one entry.
    One(Located),
    /// Several entries, to list for the person to choose among (sorted by
    /// queue name).
    Many(Vec<Located>),
}

impl Resolved {
    fn of(mut v: Vec<Located>) -> Resolved {
        match v.len() {
            0 => Resolved::None,
            1 => Resolved::One(v.remove(0)),
            _ => {
                v.sort_by(|a, b| a.name.cmp(&b.name).then(a.target.cmp(&b.target)));
                Resolved::Many(v)
            }
        }
    }
}

/// True when `key` is a prefix or a suffix of `s`.
fn partial_match(s: &str, key: &str) -> bool {
    s.starts_with(key) || s.ends_with(key)
}

/// Resolve `key` to the entries it means: first exactly ([`find_all`]: a queue
/// name, else a patch id), else, for a key of [`MIN_PARTIAL`]+ characters,
/// every entry whose queue name or patch id starts or ends with it. An exact
/// match always wins over a partial one, so a full id is never ambiguous
/// because it is also the prefix of a longer one.
pub fn resolve(layout: &Layout, key: &str) -> Result<Resolved> {
    let exact = find_all(layout, key)?;
    if !exact.is_empty() || key.chars().count() < MIN_PARTIAL {
        return Ok(Resolved::of(exact));
    }
    let mut found = Vec::new();
    for t in layout.queue_targets() {
        let q = layout.queue(&t);
        for state in QueueState::ALL {
            for name in q.list(state)? {
                if partial_match(&name, key) {
                    found.push(locate(&q, state, &name));
                    continue;
                }
                let e = locate(&q, state, &name);
                if e.patch_id
                    .as_deref()
                    .is_some_and(|id| partial_match(id, key))
                {
                    found.push(e);
                }
            }
        }
    }
    Ok(Resolved::of(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_id_follows_the_parser_for_bom_legacy_and_anonymous_patches() {
        let native = br#"{"id": "n", "blockId": "b", "operations": []}"#;
        assert_eq!(stored_id(native).as_deref(), Some("n"));
        // A native document's blockId is not its id.
        let native_block = br#"{"blockId": "b", "operations": []}"#;
        assert!(stored_id(native_block).unwrap().starts_with("patch-"));
        let legacy = br#"{"blockId": "b", "mutations": []}"#;
        assert_eq!(stored_id(legacy).as_deref(), Some("b"));
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(br#"{"id": "with-bom", "operations": []}"#);
        assert_eq!(stored_id(&bom).as_deref(), Some("with-bom"));
        let anon = br#"{ "operations" : [ ] }"#;
        let v: serde_json::Value = serde_json::from_slice(anon).unwrap();
        assert_eq!(
            stored_id(anon).unwrap(),
            format!("patch-{}", canonical_md5(&v))
        );
        assert_eq!(stored_md5(anon), stored_md5(br#"{"operations":[]}"#));
        assert_eq!(stored_id(b"not json"), None);
    }

    #[test]
    fn find_by_name_and_by_id_across_targets_and_states() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.create(["default", "web"]).unwrap();
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(br#"{"id": "b1", "operations": []}"#);
        let a = layout.queue("web").enqueue(&bom).unwrap();
        let q = layout.queue("web");
        q.transition(
            &a,
            QueueState::Pending,
            QueueState::Held,
            &Default::default(),
        )
        .unwrap();
        let by_id = find(&layout, "b1").unwrap().unwrap();
        assert_eq!(
            (by_id.target.as_str(), by_id.state, by_id.name.as_str()),
            ("web", QueueState::Held, a.as_str())
        );
        assert_eq!(by_id.path, q.entry_path(QueueState::Held, &a));
        let by_name = find(&layout, &a).unwrap().unwrap();
        assert_eq!(by_name, by_id);
        assert_eq!(by_name.patch_id.as_deref(), Some("b1"));
        assert!(find(&layout, "nope").unwrap().is_none());
        assert!(find(&layout, "../etc").unwrap().is_none());
    }

    #[test]
    fn resolve_takes_exact_then_unambiguous_prefix_or_suffix() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.create(["default", "web"]).unwrap();
        let a = layout
            .queue("default")
            .enqueue(br#"{"id": "alpha-one", "operations": []}"#)
            .unwrap();
        let b = layout
            .queue("web")
            .enqueue(br#"{"id": "alpha-two", "operations": []}"#)
            .unwrap();
        let one = |k: &str| match resolve(&layout, k).unwrap() {
            Resolved::One(l) => l.name,
            other => panic!("{k}: {other:?}"),
        };
        // Exact id and queue name.
        assert_eq!(one("alpha-one"), a);
        assert_eq!(one(&b), b);
        // Suffix and prefix of a patch id.
        assert_eq!(one("-two"), b);
        assert_eq!(one("alpha-o"), a);
        // Suffix and prefix of a queue name.
        assert_eq!(one(&a[a.len() - 6..]), a);
        // A shared prefix lists both, sorted by queue name.
        match resolve(&layout, "alpha").unwrap() {
            Resolved::Many(v) => {
                let names: Vec<&str> = v.iter().map(|l| l.name.as_str()).collect();
                let mut want = vec![a.as_str(), b.as_str()];
                want.sort();
                assert_eq!(names, want);
            }
            other => panic!("{other:?}"),
        }
        // Too short to be partial; unknown.
        assert_eq!(resolve(&layout, "two").unwrap(), Resolved::None);
        assert_eq!(resolve(&layout, "zzzzzz").unwrap(), Resolved::None);
    }
}
