//! `ghostctl submit`: admit patch files through the one admission path the
//! bridge uses ([`ghost_core::admit`]).
//!
//! Each file is judged on its own: an invalid one is reported with every field
//! error and enqueues nothing, the others still go in, in command-line order
//! (so FIFO order is the order given). What is enqueued is the file's bytes,
//! unchanged; the parse is only the gate.
//!
//! Duplicates are decided against the root's durable id index, whoever queued
//! the first copy (the bridge, another `submit`): the same id with the same
//! content is reported as already queued and nothing is written; the same id
//! with other content is refused with the bridge's wording, and so is a target
//! at its high-water mark. Beside each new entry goes its record with the
//! patch id, so `ls`/`show` find it by the id printed here.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::info;

use ghost_core::admit::{conflict_reason, Admission, Outcome, Queued};
use ghost_core::patch::FieldError;
use ghost_core::queue::QueueState;
use ghost_core::Config;

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
    /// Where that entry is now (for a duplicate): `done` and `trash` mean it
    /// will not be applied by this submit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<QueueState>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl SubmitItem {
    /// Refused, with every problem.
    fn refused(file: &str, errors: Vec<FieldError>) -> Self {
        SubmitItem {
            file: file.to_string(),
            ok: false,
            queue_name: None,
            patch_id: None,
            target: None,
            duplicate: false,
            state: None,
            errors,
        }
    }

    /// Refused, with one problem.
    fn failed(file: &str, field: &str, reason: String) -> Self {
        Self::refused(
            file,
            vec![FieldError {
                field: field.into(),
                reason,
            }],
        )
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
    let admission = Admission::new(config)
        .with_context(|| format!("cannot open the data root {}", config.root.display()))?;
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
        let item = |q: Queued, duplicate: bool| SubmitItem {
            file: label.clone(),
            ok: true,
            state: duplicate
                .then(|| admission.layout().queue(&q.target).find(&q.name))
                .flatten(),
            queue_name: Some(q.name),
            patch_id: Some(q.id),
            target: Some(q.target),
            duplicate,
            errors: Vec::new(),
        };
        match admission.admit(&bytes, target) {
            Outcome::Queued(q) => {
                info!(event = "PATCH_SUBMITTED", target = %q.target, queue_name = %q.name, patch_id = %q.id,
                      file = %label, by = %crate::util::who(), "enqueued by ghostctl submit");
                out.push(item(q, false));
            }
            Outcome::Duplicate(q) => out.push(item(q, true)),
            Outcome::Conflict { id, existing } => out.push(SubmitItem::failed(
                &label,
                "id",
                conflict_reason(&id, &existing),
            )),
            Outcome::Rejected(e) => out.push(SubmitItem::refused(&label, e.errors)),
            Outcome::Full { target, depth } => out.push(SubmitItem::failed(
                &label,
                "target",
                format!(
                    "target {target} has {depth} pending patches, at or above bridge.high_water_mark ({}); try again later",
                    config.bridge.high_water_mark
                ),
            )),
            Outcome::Failed(msg) => out.push(SubmitItem::failed(
                &label,
                "(queue)",
                format!("cannot enqueue: {msg}"),
            )),
        }
    }
    Ok(out)
}
