//! `ghostctl submit`: validate patch files and enqueue them, as the bridge would.
//!
//! Each file is judged on its own: an invalid one is reported with every field
//! error and enqueues nothing, the others still go in, in command-line order
//! (so FIFO order is the order given). What is enqueued is the file's bytes,
//! unchanged; the parse is only the gate.
//!
//! Like the bridge, `submit` deduplicates by patch id (the patch's own, or
//! `patch-<MD5 of its canonical JSON>`) against every entry of every queue of
//! the root: the same id with the same content is reported as already queued
//! and nothing is written; the same id with other content is refused.
//!
//! Beside each new entry goes a record carrying the patch id the parse found,
//! written *before* the entry appears in `pending/` (the queue's invariant:
//! the record beside an entry is accurate). It lets `ls`/`show` find an entry
//! by the id printed here even when the patch had no id of its own and the
//! parser assigned one.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::info;

use ghost_core::patch::parse::{parse_patch, ParseOptions};
use ghost_core::patch::FieldError;
use ghost_core::queue::{content_md5, index_ids, new_name, EntryRecord, KnownEntry, QueueState};
use ghost_core::{Config, Layout};

/// The outcome for one file.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitItem {
    /// The file as given (`-` for standard input).
    pub file: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The same patch was already queued: `queue_name` is that entry's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl SubmitItem {
    fn failed(file: &str, field: &str, reason: String) -> Self {
        SubmitItem {
            file: file.to_string(),
            ok: false,
            queue_name: None,
            patch_id: None,
            target: None,
            duplicate: false,
            errors: vec![FieldError {
                field: field.into(),
                reason,
            }],
        }
    }
}

/// Read at most `max` bytes of a patch; more is an error naming the limit.
fn read_limited(
    file: &Path,
    stdin: &mut dyn Read,
    max: u64,
) -> Result<Vec<u8>, (&'static str, String)> {
    let too_big = |n: u64| {
        (
            "(document)",
            format!("the patch is {n} bytes or more; the limit is {max} (bridge.max_patch_bytes)"),
        )
    };
    let mut buf = Vec::new();
    if file == Path::new("-") {
        stdin
            .take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ("(file)", format!("cannot read standard input: {e}")))?;
    } else {
        let f = std::fs::File::open(file).map_err(|e| ("(file)", format!("cannot open: {e}")))?;
        let meta = f
            .metadata()
            .map_err(|e| ("(file)", format!("cannot stat: {e}")))?;
        if !meta.is_file() {
            return Err(("(file)", "not a regular file".into()));
        }
        if meta.len() > max {
            return Err(too_big(meta.len()));
        }
        f.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ("(file)", format!("cannot read: {e}")))?;
    }
    if buf.len() as u64 > max {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

/// Validate and enqueue every file. `Err` only for a failure that is not about
/// one file (the data root cannot be created); per-file problems are items
/// with `ok == false`.
pub fn submit(
    config: &Config,
    target: Option<&str>,
    files: &[PathBuf],
    stdin: &mut dyn Read,
) -> anyhow::Result<Vec<SubmitItem>> {
    use anyhow::Context;
    let layout = Layout::new(&config.root);
    layout
        .create(config.targets.keys().map(String::as_str))
        .with_context(|| format!("cannot create the data root {}", config.root.display()))?;
    let specs = config.target_specs();
    let opts = ParseOptions {
        targets: &specs,
        target_override: target,
    };
    let mut known = index_ids(&layout, config.targets.keys().cloned())
        .with_context(|| format!("cannot read the queues under {}", config.root.display()))?;
    let mut out = Vec::new();
    for file in files {
        let label = file.display().to_string();
        let bytes = match read_limited(file, stdin, config.bridge.max_patch_bytes) {
            Ok(b) => b,
            Err((field, reason)) => {
                out.push(SubmitItem::failed(&label, field, reason));
                continue;
            }
        };
        let patch = match parse_patch(&bytes, &opts) {
            Ok(p) => p,
            Err(e) => {
                out.push(SubmitItem {
                    file: label,
                    ok: false,
                    queue_name: None,
                    patch_id: None,
                    target: None,
                    duplicate: false,
                    errors: e.errors,
                });
                continue;
            }
        };
        // The parse succeeded, so the bytes are JSON.
        let md5 = serde_json::from_slice::<serde_json::Value>(&bytes)
            .map(|v| content_md5(&v))
            .unwrap_or_default();
        if let Some(k) = known.get(&patch.id) {
            if k.md5 == md5 {
                out.push(SubmitItem {
                    file: label,
                    ok: true,
                    queue_name: Some(k.name.clone()),
                    patch_id: Some(patch.id),
                    target: Some(k.target.clone()),
                    duplicate: true,
                    errors: Vec::new(),
                });
            } else {
                out.push(SubmitItem::failed(
                    &label,
                    "id",
                    format!(
                        "id {:?} is already used by entry {} ({}, {}) with other content; give this patch another id",
                        patch.id, k.name, k.target, k.state
                    ),
                ));
            }
            continue;
        }
        let q = layout.queue(&patch.target);
        let name = new_name();
        let record = EntryRecord {
            patch_id: Some(patch.id.clone()),
            ..EntryRecord::default()
        };
        let enqueued = q
            .write_record(QueueState::Pending, &name, &record)
            .and_then(|()| q.enqueue_named(&name, &bytes));
        if let Err(e) = enqueued {
            // Nothing is in pending/ under this name: the record is scratch.
            let _ = ghost_core::fs::durable_remove(&q.record_path(QueueState::Pending, &name));
            out.push(SubmitItem::failed(
                &label,
                "(queue)",
                format!("cannot enqueue: {e}"),
            ));
            continue;
        }
        info!(event = "PATCH_SUBMITTED", target = %patch.target, queue_name = %name, patch_id = %patch.id,
              file = %label, by = %crate::util::who(), "enqueued by ghostctl submit");
        known.insert(
            patch.id.clone(),
            KnownEntry {
                target: patch.target.clone(),
                name: name.clone(),
                state: QueueState::Pending,
                md5,
            },
        );
        out.push(SubmitItem {
            file: label,
            ok: true,
            queue_name: Some(name),
            patch_id: Some(patch.id),
            target: Some(patch.target),
            duplicate: false,
            errors: Vec::new(),
        });
    }
    Ok(out)
}
