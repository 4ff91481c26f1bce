//! The inbox directory, `<root>/inbox/`: files dropped there are read, their
//! patches handed to the [`Ingestor`], and the original moved aside with a
//! record of what became of it. Nothing in the inbox is ever deleted.
//!
//! # Watching
//!
//! `inbox/` and `inbox/<target>/` for every configured target (created at
//! start) are watched (not recursively) with `notify`, and rescanned every
//! `bridge.inbox_scan_interval` in case the watcher misses an event (an
//! overflowed queue, a filesystem without inotify). Every event only prompts a
//! scan; the scan decides.
//!
//! # When a file is complete (taken)
//!
//! - Never taken: names starting with `.` (hidden), and names ending in `.tmp`,
//!   `.part`, `.partial`, `.swp` or `~` (any case). Write under such a name and
//!   rename the finished file to its real name: that is the reliable way in.
//! - Ignored: subdirectories other than the targets' (`.processed/` and
//!   `.rejected/` among them), and anything below a target's subdirectory.
//! - A file that arrives by rename (the watcher reports a rename *to* it) is
//!   complete and taken at once.
//! - Any other entry is taken once it has looked the same — size, mtime,
//!   ctime and inode — at two observations at least `bridge.inbox_settle`
//!   (500 ms by default) apart, measured on the monotonic clock from the first
//!   observation of that state. Any change starts the wait again. A writer
//!   that pauses for longer than the settle time mid-file can therefore be
//!   taken early: such writers must use a temporary name and a rename.
//! - Entries that are not regular files (symlinks, FIFOs, sockets, devices)
//!   are never read; once settled they are moved to `.rejected/` with the
//!   reason. An entry swapped for one of them after it was looked at is
//!   caught at the open (`O_NOFOLLOW | O_NONBLOCK`, then `fstat` of the
//!   descriptor: a regular file with the inode that was looked at, or not
//!   read), so nothing in the inbox can block the bridge.
//!
//! Settled files are taken in the order they were first seen, one at a time.
//!
//! # What a file holds
//!
//! By extension (any case): `.json` is one patch (an object, stored with its
//! exact bytes) or an array of patches; `.md`, `.markdown`, `.txt`, `.diff`
//! and `.patch` are chat transcripts and agents' patches, read with
//! [`crate::transcript::extract`]. A file in `inbox/<target>/` is for that
//! target when its patches name none (a patch naming another target is
//! refused); it is filed in the same `.processed/` and `.rejected/` as the
//! others, its record's `file` being `<target>/<name>`. Anything else, a
//! file larger than `bridge.max_body_bytes` (checked before reading, and
//! reading stops past the limit), malformed JSON, an empty array, a transcript
//! that is not UTF-8, and a transcript with no candidate block at all
//! ("no patch found in the transcript") are rejected as a whole.
//!
//! Each patch is ingested with the source `inbox` / `<file name>`, plus
//! `#item K` for the K-th element of a JSON array and `#block N` for a
//! transcript block (`#block N item K` when a block holds an array).
//!
//! # Where the original goes
//!
//! Every item queued or already queued (a duplicate) →
//! `inbox/.processed/<stamp>-<name>` with `<stamp>-<name>.result.json`:
//! `{file, stored_as, taken_at, items: [{item, block?, line?, outcome, id, name, target}]}`
//! where `outcome` is `queued` or `duplicate`, `name` the queue entry.
//!
//! Any item refused (invalid patch, id conflict, a transcript block that could
//! not be read) or the file refused as a whole → `inbox/.rejected/<stamp>-<name>`
//! with `<stamp>-<name>.error.json`:
//! `{file, stored_as, taken_at, errors: [{item?, block?, line?, id?, error, reason, errors?, existing?}], queued: [...]}`.
//! `error` is a kind (`invalid_patch`, `conflict`, `extraction_failed`,
//! `invalid_json`, `empty_array`, `no_patch`, `not_utf8`, `too_large`,
//! `unsupported_type`, `not_a_regular_file`, `unreadable`), `errors` the field
//! errors of an invalid patch, `existing` the queue entry holding a conflicting
//! id, and `queued` the items of the file that did go in (same shape as
//! `items` above). The good items of a file are queued even when others fail.
//!
//! `<stamp>` is a UUID v7, so names never collide and sort by time. The record
//! is written durably *before* the original is moved: a crash leaves at worst
//! a record without its original (harmless), never an original without its
//! record. A crash after ingesting but before the move leaves the original in
//! the inbox; it is taken again after the restart and the ingestor's id
//! deduplication makes that idempotent (the second record then says
//! `duplicate`).
//!
//! # When nothing is decided
//!
//! While the bridge is paused (`state/pause.json`), or when an item meets a
//! full queue (`Full`) or a failed write (`Failed`), the file is left in the
//! inbox untouched and tried again one scan interval later (items already
//! queued come back as duplicates). Each such reason is logged once per file.
//! If writing the record or moving the original fails, the record is removed
//! again and the file retried the same way. (The ingestor's own per-patch logs
//! and counters, `PATCH_RECEIVED` and the busy refusal, repeat on each retry.)
//!
//! Just before the record is written the file is looked at once more: if it
//! is no longer the file that was read (written to, or replaced by a rename),
//! nothing is recorded or moved and it is observed afresh as a new file. What
//! was already ingested from it stays queued; if the same content comes again
//! it is a duplicate.
//!
//! On shutdown the file in hand is finished (its items ingested, the original
//! moved) and [`run`] returns.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ingest::{document_id, Ingestor, Outcome, Queued, Source};
use readiness::Readiness;

mod readiness;
use ghost_core::fs::{durable_move, durable_remove, ensure_dir, sweep_temp_files, write_json};
use ghost_core::text::clip;
use ghost_core::Result;

/// Name endings that mark a file still being written (compared case-insensitively).
const TEMP_SUFFIXES: [&str; 5] = [".tmp", ".part", ".partial", ".swp", "~"];
const JSON_EXTS: [&str; 1] = ["json"];
const TRANSCRIPT_EXTS: [&str; 5] = ["md", "markdown", "txt", "diff", "patch"];

/// True for a name the inbox never takes (hidden or temporary).
pub fn never_taken(name: &OsStr) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b[0] == b'.' {
        return true;
    }
    let lower = b.to_ascii_lowercase();
    TEMP_SUFFIXES.iter().any(|s| lower.ends_with(s.as_bytes()))
}

/// What a scan sees of an entry; any difference restarts the settle wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    /// `file`, or what else it is.
    kind: &'static str,
}

impl Fingerprint {
    fn of(m: &std::fs::Metadata) -> Fingerprint {
        let t = m.file_type();
        let kind = if t.is_file() {
            "file"
        } else if t.is_symlink() {
            "symbolic link"
        } else if t.is_fifo() {
            "FIFO"
        } else if t.is_socket() {
            "socket"
        } else if t.is_dir() {
            "directory"
        } else {
            "device"
        };
        Fingerprint {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            kind,
        }
    }
}

/// The entries of the inbox that may one day be taken: the files of
/// `inbox/` and of each `inbox/<target>/` of `targets`, keyed by their path
/// relative to `inbox/` (`name` or `target/name`).
fn scan(dir: &Path, targets: &[String]) -> std::io::Result<Vec<(OsString, Fingerprint)>> {
    let mut out = Vec::new();
    list(dir, None, &mut out)?;
    for t in targets {
        let sub = dir.join(t);
        // Only a real directory: a symlink there is not followed.
        if std::fs::symlink_metadata(&sub).is_ok_and(|m| m.is_dir()) {
            list(&sub, Some(t), &mut out)?;
        }
    }
    Ok(out)
}

fn list(
    dir: &Path,
    target: Option<&str>,
    out: &mut Vec<(OsString, Fingerprint)>,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let name = e.file_name();
        if never_taken(&name) {
            continue;
        }
        // Gone since the listing: the next scan will not see it either.
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if m.is_dir() {
            continue;
        }
        let key = match target {
            Some(t) => {
                let mut k = OsString::from(format!("{t}/"));
                k.push(&name);
                k
            }
            None => name,
        };
        out.push((key, Fingerprint::of(&m)));
    }
    Ok(())
}

/// The target a key's subdirectory names, and the file's own name.
fn split_key(key: &OsStr) -> (Option<String>, OsString) {
    let p = Path::new(key);
    let file = p.file_name().unwrap_or(key).to_os_string();
    let target = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.to_string_lossy().into_owned());
    (target, file)
}

enum Msg {
    /// A name that appeared in the inbox by rename.
    Renamed(OsString),
    /// Anything else: look again.
    Changed,
}

/// Why a decided file was not moved.
enum Unmoved {
    Gone(String),
    /// Replaced or modified since it was read: observe it afresh.
    Changed,
    Failed(String),
}

/// What became of a file that was taken.
enum Taken {
    /// Moved to `.processed/` or `.rejected/`.
    Done,
    /// Disappeared (or changed) before it could be moved: forget what was
    /// known of it; a file there now is observed afresh.
    Gone,
    /// Left in place; try again later. (reason kind, detail)
    Retry(&'static str, String),
}

/// Watch the inbox and ingest what is dropped into it until `shutdown`.
pub async fn run(ingestor: Arc<Ingestor>, shutdown: CancellationToken) -> Result<()> {
    run_inner(ingestor, shutdown, None).await
}

/// True for the events that can mean a file arrived in the inbox or grew:
/// a create, a rename, a write, the close of a file written, or an event
/// that cannot be told apart. Not the opens, reads and closes without write
/// that listing the inbox causes, nor a file leaving it.
fn prompts_scan(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Create(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Remove(_) => false,
    }
}

/// [`run`], telling `ready` once the watcher is in place (for tests that must
/// not race the watcher's start).
async fn run_inner(
    ing: Arc<Ingestor>,
    shutdown: CancellationToken,
    ready: Option<oneshot::Sender<()>>,
) -> Result<()> {
    let layout = ing.layout().clone();
    let bridge = ing.config().bridge.clone();
    let (settle, scan_every) = (
        bridge.inbox_settle,
        bridge.inbox_scan_interval.max(Duration::from_millis(1)),
    );
    let inbox = layout.inbox();
    let targets: Vec<String> = ing.config().targets.keys().cloned().collect();
    for d in [
        inbox.clone(),
        layout.inbox_processed(),
        layout.inbox_rejected(),
    ]
    .into_iter()
    .chain(targets.iter().map(|t| inbox.join(t)))
    {
        ensure_dir(&d)?;
    }
    // Records whose durable write was cut short by a crash.
    for d in [layout.inbox_processed(), layout.inbox_rejected()] {
        for p in sweep_temp_files(&d, ing.config().executor.tmp_max_age) {
            info!(event = "STALE_FILE_REMOVED", path = %p.display(), "removed a stale temp file");
        }
    }

    let (tx, rx) = mpsc::channel::<Msg>(1024);
    let root = inbox.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let msg = match res {
            Ok(ev) => {
                let to = match ev.kind {
                    EventKind::Modify(ModifyKind::Name(RenameMode::To)) => ev.paths.first(),
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => ev.paths.get(1),
                    _ => None,
                };
                match to.and_then(|p| p.strip_prefix(&root).ok()) {
                    Some(n) => Msg::Renamed(n.as_os_str().to_os_string()),
                    None if prompts_scan(&ev.kind) => Msg::Changed,
                    // The bridge's own reads of the inbox (and files leaving
                    // it): waking on those made every scan trigger the next.
                    None => return,
                }
            }
            Err(_) => Msg::Changed,
        };
        // A full channel loses only a hint: the rescan and the settle rule remain.
        let _ = tx.try_send(msg);
    })
    .and_then(|mut w| {
        w.watch(&inbox, RecursiveMode::NonRecursive)?;
        for t in &targets {
            w.watch(&inbox.join(t), RecursiveMode::NonRecursive)?;
        }
        Ok(w)
    });
    let (watcher, mut rx) = match watcher {
        Ok(w) => (Some(w), Some(rx)),
        Err(e) => {
            warn!(event = "INBOX_WATCH_FAILED", dir = %inbox.display(), error = %e, "cannot watch the inbox; relying on the periodic rescan");
            (None, None)
        }
    };
    info!(event = "INBOX_STARTED", dir = %inbox.display(), settle = ?settle, scan_interval = ?scan_every, "watching the inbox");
    if let Some(r) = ready {
        let _ = r.send(());
    }

    // A burst of events is served by one scan per `gap`.
    let gap = (settle / 5).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let mut files = Readiness::<Fingerprint>::new(settle, scan_every);
    let mut scan_failed = false;
    while !shutdown.is_cancelled() {
        if let Some(r) = rx.as_mut() {
            while let Ok(m) = r.try_recv() {
                if let Msg::Renamed(n) = m {
                    files.renamed(n);
                }
            }
        }
        let (dir, ts) = (inbox.clone(), targets.clone());
        let listing = tokio::task::spawn_blocking(move || scan(&dir, &ts))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let last_scan = Instant::now();
        match listing {
            Ok(entries) => {
                scan_failed = false;
                files.observe(last_scan, entries);
            }
            Err(e) => {
                if !scan_failed {
                    warn!(event = "INBOX_SCAN_FAILED", dir = %inbox.display(), error = %e, "cannot list the inbox; retrying");
                }
                scan_failed = true;
            }
        }

        let ready_files = files.ready(Instant::now());
        for (name, fp) in ready_files {
            if shutdown.is_cancelled() {
                break;
            }
            let retrying = files.retrying(&name);
            let outcome = if ing.paused() {
                Taken::Retry(
                    "paused",
                    format!(
                        "the bridge is paused ({} exists)",
                        ing.pause_file().display()
                    ),
                )
            } else {
                take(&ing, &name, fp, retrying).await
            };
            match outcome {
                Taken::Done | Taken::Gone => files.forget(&name),
                Taken::Retry(kind, detail) => {
                    if files.defer(&name, Instant::now(), kind) {
                        warn!(event = "INBOX_DEFERRED", file = %name.to_string_lossy(), reason = kind, detail = %detail, "left in the inbox; it is tried again on a later scan");
                    }
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }

        // Sleep until the next scan is due, the next file settles, or a
        // rename arrives.
        let now = Instant::now();
        let mut wake = files.next_due(now, now + scan_every);
        loop {
            let recv = async {
                match rx.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake.into()) => break,
                m = recv => match m {
                    Some(Msg::Renamed(n)) => {
                        if !never_taken(&split_key(&n).1) {
                            files.renamed(n);
                            break;
                        }
                    }
                    Some(Msg::Changed) => wake = wake.min((last_scan + gap).max(Instant::now())),
                    // The watcher is gone: rescans only.
                    None => rx = None,
                },
            }
        }
    }
    drop(watcher);
    info!(event = "INBOX_STOPPED", "inbox watcher stopped");
    Ok(())
}

/// One patch candidate of a file, and where it sits.
struct Item {
    item: usize,
    block: Option<usize>,
    line: Option<usize>,
    detail: String,
    /// The patch and, for a lone `.json` patch, its exact bytes; or why this
    /// block could not be read.
    value: std::result::Result<(Value, Option<Vec<u8>>), String>,
}

/// Why a whole file is refused: (kind, reason).
type Refusal = (&'static str, String);

enum Content {
    Json,
    Transcript,
}

fn content_kind(name: &OsStr) -> std::result::Result<Content, Refusal> {
    let ext = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some(e) if JSON_EXTS.contains(&e) => Ok(Content::Json),
        Some(e) if TRANSCRIPT_EXTS.contains(&e) => Ok(Content::Transcript),
        other => Err((
            "unsupported_type",
            format!(
                "{}; the inbox takes .json (one patch or an array of patches) and .md, .markdown, .txt, .diff, .patch (chat transcripts and agents' patches)",
                match other {
                    Some(e) => format!("unsupported file type .{e}"),
                    None => "the file name has no extension".to_string(),
                }
            ),
        )),
    }
}

enum ReadOutcome {
    Bytes(Vec<u8>),
    Gone,
    Refused(Refusal),
}

/// Read at most `max` bytes of the regular file with inode `ino`; more is a
/// refusal (the file grew past the limit).
///
/// The entry may have been swapped since it was looked at (a FIFO, a device
/// or a symlink renamed over it): it is opened with `O_NOFOLLOW | O_NONBLOCK`,
/// so that neither a symlink is followed nor a FIFO without writer blocks the
/// open, and the descriptor itself is checked to be that regular file before
/// a byte is read.
fn read_limited(path: &Path, max: u64, ino: u64) -> ReadOutcome {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    #[allow(clippy::disallowed_methods)] // opens for reading only
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ReadOutcome::Gone,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return ReadOutcome::Refused((
                "not_a_regular_file",
                "the entry is a symbolic link; only regular files are taken".into(),
            ))
        }
        Err(e) => {
            return ReadOutcome::Refused(("unreadable", format!("cannot open the file: {e}")))
        }
    };
    match f.metadata() {
        Ok(m) if !m.file_type().is_file() => {
            return ReadOutcome::Refused((
                "not_a_regular_file",
                format!(
                    "the entry is a {}; only regular files are taken",
                    Fingerprint::of(&m).kind
                ),
            ))
        }
        // Another file was renamed over the one looked at: observe it afresh.
        Ok(m) if m.ino() != ino => return ReadOutcome::Gone,
        Ok(_) => {}
        Err(e) => {
            return ReadOutcome::Refused(("unreadable", format!("cannot inspect the file: {e}")))
        }
    }
    let mut bytes = Vec::new();
    match f.take(max.saturating_add(1)).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 > max => ReadOutcome::Refused(too_large(None, max)),
        Ok(_) => ReadOutcome::Bytes(bytes),
        Err(e) => ReadOutcome::Refused(("unreadable", format!("cannot read the file: {e}"))),
    }
}

fn too_large(len: Option<u64>, max: u64) -> Refusal {
    let size = len.map_or_else(|| "more than that".to_string(), |n| format!("{n} bytes"));
    (
        "too_large",
        format!("the file is {size}; the limit is {max} bytes (bridge.max_body_bytes)"),
    )
}

/// The items of a file, or why the whole file is refused.
fn items_of(
    name: &str,
    kind: Content,
    bytes: Vec<u8>,
    target: Option<&str>,
) -> std::result::Result<Vec<Item>, Refusal> {
    match kind {
        Content::Json => {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ("invalid_json", format!("the file is not valid JSON: {e}")))?;
            // A key named twice: the value kept only one of them (see the parser).
            if let Ok(text) = std::str::from_utf8(&bytes) {
                ghost_core::patch::parse::refuse_duplicate_keys(text).map_err(|e| {
                    let e = &e.errors[0];
                    ("invalid_patch", format!("{}: {}", e.field, e.reason))
                })?;
            }
            match v {
                Value::Array(vs) if vs.is_empty() => Err((
                    "empty_array",
                    "the file is an empty array: no patch in it".to_string(),
                )),
                Value::Array(vs) => Ok(vs
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Item {
                        item: i + 1,
                        block: None,
                        line: None,
                        detail: format!("{name}#item {}", i + 1),
                        value: Ok((v, None)),
                    })
                    .collect()),
                v => Ok(vec![Item {
                    item: 1,
                    block: None,
                    line: None,
                    detail: name.to_string(),
                    value: Ok((v, Some(bytes))),
                }]),
            }
        }
        Content::Transcript => {
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                (
                    "not_utf8",
                    format!(
                        "the transcript is not UTF-8 text (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                )
            })?;
            let found = crate::transcript::extract(text);
            if found.is_empty() {
                return Err((
                    "no_patch",
                    "no patch found in the transcript: put each patch in a fenced ```json (or ```yaml) block, or give an apply_patch envelope, SEARCH/REPLACE blocks or a unified diff"
                        .to_string(),
                ));
            }
            // Elements of one block's array are numbered within the block.
            let mut per_block: HashMap<Option<usize>, usize> = HashMap::new();
            for e in &found {
                *per_block.entry(e.block).or_default() += 1;
            }
            let mut within = 0;
            let mut prev = Some(0);
            let mut items = Vec::with_capacity(found.len());
            for (i, e) in found.iter().enumerate() {
                within = if e.block == prev { within + 1 } else { 1 };
                prev = e.block;
                let detail = match e.block {
                    None => format!("{name}#line {}", e.line),
                    Some(b) if per_block.get(&e.block).copied().unwrap_or(0) > 1 => {
                        format!("{name}#block {b} item {within}")
                    }
                    Some(b) => format!("{name}#block {b}"),
                };
                items.push(Item {
                    item: i + 1,
                    block: e.block,
                    line: Some(e.line),
                    detail,
                    value: e.result.clone().map(|v| {
                        let v = if e.agent {
                            ghost_core::patch::agent::detect::for_target(v, target)
                        } else {
                            v
                        };
                        (v, None)
                    }),
                });
            }
            Ok(items)
        }
    }
}

fn at(item: &Item) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("item".into(), json!(item.item));
    if let Some(b) = item.block {
        m.insert("block".into(), json!(b));
    }
    if let Some(l) = item.line {
        m.insert("line".into(), json!(l));
    }
    m
}

fn went_in(item: &Item, outcome: &str, q: &Queued) -> Value {
    let mut m = at(item);
    m.insert("outcome".into(), json!(outcome));
    m.insert("id".into(), json!(q.id));
    m.insert("name".into(), json!(q.name));
    m.insert("target".into(), json!(q.target));
    Value::Object(m)
}

fn whole_file_error(kind: &str, reason: &str) -> Value {
    json!({"error": kind, "reason": reason})
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Take one settled file: read it, ingest its items, record and move it.
async fn take(ing: &Arc<Ingestor>, name: &OsStr, fp: Fingerprint, retrying: bool) -> Taken {
    let layout = ing.layout();
    let path = layout.inbox().join(name);
    let fname = name.to_string_lossy().into_owned();
    // `inbox/<target>/`: the target of what names none.
    let (target, file_name) = split_key(name);
    let max = ing.config().bridge.max_body_bytes;
    let taken_at = ghost_core::time::now_rfc3339();
    if retrying {
        debug!(event = "INBOX_TAKEN", file = %fname, bytes = fp.len, "trying a waiting file again");
    } else {
        info!(event = "INBOX_TAKEN", file = %fname, bytes = fp.len, "taking a file from the inbox");
    }

    let refusal_or_items = if fp.kind != "file" {
        Err((
            "not_a_regular_file",
            format!("the entry is a {}; only regular files are taken", fp.kind),
        ))
    } else {
        match content_kind(name) {
            Err(r) => Err(r),
            Ok(_) if fp.len > max => Err(too_large(Some(fp.len), max)),
            Ok(kind) => {
                let p = path.clone();
                match blocking(move || read_limited(&p, max, fp.ino)).await {
                    None => return Taken::Retry("read_failed", "the read task failed".into()),
                    Some(ReadOutcome::Gone) => return Taken::Gone,
                    Some(ReadOutcome::Refused(r)) => Err(r),
                    Some(ReadOutcome::Bytes(bytes)) => {
                        let (n, t) = (fname.clone(), target.clone());
                        match blocking(move || items_of(&n, kind, bytes, t.as_deref())).await {
                            Some(r) => r,
                            None => {
                                return Taken::Retry(
                                    "read_failed",
                                    "the extraction task failed".into(),
                                )
                            }
                        }
                    }
                }
            }
        }
    };

    let mut errors: Vec<Value> = Vec::new();
    let mut ok: Vec<Value> = Vec::new();
    let mut failed_blocks: Vec<(usize, usize, String)> = Vec::new();
    match refusal_or_items {
        Err((kind, reason)) => errors.push(whole_file_error(kind, &reason)),
        Ok(items) => {
            for item in &items {
                let (value, original) = match &item.value {
                    Ok(v) => v.clone(),
                    Err(reason) => {
                        let mut m = at(item);
                        m.insert("error".into(), json!("extraction_failed"));
                        m.insert("reason".into(), json!(reason));
                        errors.push(Value::Object(m));
                        failed_blocks.push((
                            item.block.unwrap_or(0),
                            item.line.unwrap_or(0),
                            reason.clone(),
                        ));
                        continue;
                    }
                };
                let id = document_id(&value);
                let source = Source {
                    channel: "inbox".into(),
                    detail: item.detail.clone(),
                };
                match ing.ingest(value, original, target.as_deref(), &source).await {
                    Outcome::Queued(q) => ok.push(went_in(item, "queued", &q)),
                    Outcome::Duplicate(q) => ok.push(went_in(item, "duplicate", &q)),
                    Outcome::Rejected(e) => {
                        let mut m = at(item);
                        m.insert("id".into(), json!(id));
                        m.insert("error".into(), json!("invalid_patch"));
                        m.insert("reason".into(), json!(e.to_string()));
                        m.insert("errors".into(), json!(e.errors));
                        errors.push(Value::Object(m));
                    }
                    Outcome::Conflict { id, existing } => {
                        let mut m = at(item);
                        m.insert("id".into(), json!(id));
                        m.insert("error".into(), json!("conflict"));
                        m.insert(
                            "reason".into(),
                            json!(crate::ingest::conflict_reason(&id, &existing)),
                        );
                        m.insert("existing".into(), json!(existing));
                        errors.push(Value::Object(m));
                    }
                    Outcome::Full { target, depth } => {
                        return Taken::Retry(
                            "busy",
                            format!(
                                "target {target} has {depth} pending patches (bridge.high_water_mark {})",
                                ing.config().bridge.high_water_mark
                            ),
                        )
                    }
                    Outcome::Failed(msg) => return Taken::Retry("write_failed", msg),
                }
            }
        }
    }

    // Decided: write the record, then move the original beside it.
    let stamp = ghost_core::queue::new_name();
    let mut stored = OsString::from(format!("{stamp}-"));
    stored.push(&file_name);
    let good = errors.is_empty();
    let (dir, suffix) = if good {
        (layout.inbox_processed(), ".result.json")
    } else {
        (layout.inbox_rejected(), ".error.json")
    };
    let mut record_name = stored.clone();
    record_name.push(suffix);
    let (record_path, dest) = (dir.join(&record_name), dir.join(&stored));
    let stored_as = stored.to_string_lossy().into_owned();
    let record = if good {
        json!({"file": fname, "stored_as": stored_as, "taken_at": taken_at, "items": ok})
    } else {
        json!({"file": fname, "stored_as": stored_as, "taken_at": taken_at, "errors": errors, "queued": ok})
    };
    let moved = {
        let (rp, src, dst) = (record_path.clone(), path.clone(), dest.clone());
        blocking(move || -> std::result::Result<(), Unmoved> {
            // Still the file that was read? A file replaced (renamed over) or
            // written to meanwhile must not be filed under this record.
            match std::fs::symlink_metadata(&src) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Unmoved::Gone(e.to_string()))
                }
                Ok(m) if Fingerprint::of(&m) != fp => return Err(Unmoved::Changed),
                _ => {}
            }
            write_json(&rp, &record)
                .map_err(|e| Unmoved::Failed(format!("cannot write the record: {e}")))?;
            durable_move(&src, &dst).map_err(|e| {
                // Without its original the record would mislead: remove it.
                let _ = durable_remove(&rp);
                match &e {
                    ghost_core::Error::Io { source, .. }
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Unmoved::Gone(e.to_string())
                    }
                    _ => Unmoved::Failed(format!("cannot move the original: {e}")),
                }
            })
        })
        .await
    };
    match moved {
        None => return Taken::Retry("move_failed", "the record task failed".into()),
        Some(Err(Unmoved::Gone(msg))) => {
            warn!(event = "INBOX_FILE_VANISHED", file = %fname, error = %msg, "the file disappeared while it was being processed");
            return Taken::Gone;
        }
        Some(Err(Unmoved::Changed)) => {
            warn!(event = "INBOX_FILE_CHANGED", file = %fname, "the file changed while it was being processed; it is taken again once it is complete");
            return Taken::Gone;
        }
        Some(Err(Unmoved::Failed(msg))) => return Taken::Retry("move_failed", msg),
        Some(Ok(())) => {}
    }

    // One line per file, however many blocks failed (each is in the record).
    ing.counters
        .extraction_failures
        .fetch_add(failed_blocks.len() as u64, Ordering::Relaxed);
    if let Some((block, line, reason)) = failed_blocks.first() {
        warn!(event = "EXTRACTION_FAILED", channel = "inbox", file = %fname, blocks = failed_blocks.len(), first_block = block, first_line = line, first_reason = %clip(reason, 300), "fenced blocks could not be read as patches (each is listed in the .error.json)");
    }
    let dest_display = dest.display().to_string();
    if good {
        info!(event = "INBOX_PROCESSED", file = %fname, moved_to = %dest_display, items = ok.len(), "every item is in the queue");
    } else {
        warn!(event = "INBOX_REJECTED", file = %fname, moved_to = %dest_display, queued = ok.len(), failed = errors.len(), "refused, in whole or in part; see the .error.json beside it");
    }
    Taken::Done
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: fixtures are set up and damaged directly, not durably
mod tests {
    use super::*;
    use ghost_core::fs::{durable_write, FILE_MODE};
    use ghost_core::queue::QueueState;
    use ghost_core::{Config, Layout};
    use std::io::Write;
    use std::path::PathBuf;
    use tokio::task::JoinHandle;

    #[test]
    fn reading_the_inbox_does_not_prompt_a_scan() {
        use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, RemoveKind};
        for k in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(!prompts_scan(&k), "{k:?}");
        }
        for k in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Other,
        ] {
            assert!(prompts_scan(&k), "{k:?}");
        }
    }

    struct Env {
        _dir: tempfile::TempDir,
        ing: Arc<Ingestor>,
        stop: CancellationToken,
        task: Option<JoinHandle<Result<()>>>,
    }

    impl Env {
        async fn start(bridge: &str) -> Env {
            let dir = tempfile::tempdir().unwrap();
            let cfg = Config::from_toml(dir.path(), &format!("[bridge]\n{bridge}"), "t").unwrap();
            Layout::new(dir.path())
                .create(cfg.targets.keys().map(String::as_str))
                .unwrap();
            let ing = Arc::new(Ingestor::new(Arc::new(cfg)).unwrap());
            let stop = CancellationToken::new();
            let (tx, rx) = oneshot::channel();
            let task = tokio::spawn(run_inner(ing.clone(), stop.clone(), Some(tx)));
            rx.await.expect("the inbox starts");
            Env {
                _dir: dir,
                ing,
                stop,
                task: Some(task),
            }
        }

        async fn fast() -> Env {
            Env::start("inbox_settle = \"100ms\"\ninbox_scan_interval = \"50ms\"\n").await
        }

        fn inbox(&self) -> PathBuf {
            self.ing.layout().inbox()
        }

        fn pending(&self) -> Vec<String> {
            self.ing
                .layout()
                .queue("default")
                .list(QueueState::Pending)
                .unwrap()
        }

        fn names(dir: &Path) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }

        fn processed(&self) -> Vec<String> {
            Env::names(&self.ing.layout().inbox_processed())
        }

        fn rejected(&self) -> Vec<String> {
            Env::names(&self.ing.layout().inbox_rejected())
        }

        /// Drop a file in by rename (durable_write writes a hidden temp file first).
        fn drop_file(&self, name: &str, bytes: &[u8]) {
            durable_write(&self.inbox().join(name), bytes, FILE_MODE).unwrap();
        }

        async fn stop(mut self) {
            self.stop.cancel();
            let t = self.task.take().unwrap();
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("run returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn patch(id: &str) -> String {
        format!(
            r#"{{"id": "{id}", "operations": [{{"op": "write", "path": "a.txt", "content": "x"}}]}}"#
        )
    }

    fn read_json(p: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn names_never_taken() {
        for n in [
            ".hidden.json",
            "a.json.part",
            "a.JSON.TMP",
            "x.partial",
            "x.swp",
            "x.json~",
            "",
        ] {
            assert!(never_taken(OsStr::new(n)), "{n}");
        }
        for n in ["a.json", "notes.md", "x.tmp.json", "README"] {
            assert!(!never_taken(OsStr::new(n)), "{n}");
        }
    }

    #[tokio::test]
    async fn a_json_patch_is_queued_and_the_original_processed() {
        let env = Env::fast().await;
        let raw = patch("p1");
        env.drop_file("one.json", raw.as_bytes());
        wait_until("processed", || env.processed().len() == 2).await;
        let pending = env.pending();
        assert_eq!(pending.len(), 1);
        // The exact bytes are queued.
        let stored = std::fs::read(
            env.ing
                .layout()
                .queue("default")
                .entry_path(QueueState::Pending, &pending[0]),
        )
        .unwrap();
        assert_eq!(stored, raw.as_bytes());
        let p = env.processed();
        assert!(
            p[0].ends_with("-one.json") && p[1].ends_with("-one.json.result.json"),
            "{p:?}"
        );
        assert_eq!(
            std::fs::read(env.ing.layout().inbox_processed().join(&p[0])).unwrap(),
            raw.as_bytes()
        );
        let rec = read_json(&env.ing.layout().inbox_processed().join(&p[1]));
        assert_eq!(rec["file"], "one.json");
        assert_eq!(rec["stored_as"], p[0].as_str());
        assert_eq!(rec["items"][0]["outcome"], "queued");
        assert_eq!(rec["items"][0]["id"], "p1");
        assert_eq!(rec["items"][0]["name"], pending[0].as_str());
        assert_eq!(rec["items"][0]["target"], "default");
        assert!(rec["taken_at"].is_string());
        assert_eq!(
            Env::names(&env.inbox()),
            [".processed", ".rejected", "default"]
        );
        env.stop().await;
    }

    #[tokio::test]
    async fn a_transcript_with_one_bad_block_queues_the_others() {
        let env = Env::fast().await;
        let text = format!(
            "# Chat\n\nassistant:\n\n```json\n{}\n```\n\nand\n\n```json\n{{\"id\": \"t2\", \"operations\": [}}\n```\n\n```yaml\nid: t3\noperations:\n  - op: delete\n    path: z\n```\n",
            patch("t1")
        );
        env.drop_file("chat.md", text.as_bytes());
        wait_until("rejected", || env.rejected().len() == 2).await;
        assert_eq!(env.pending().len(), 2);
        assert!(env.processed().is_empty());
        let r = env.rejected();
        assert!(
            r[0].ends_with("-chat.md") && r[1].ends_with("-chat.md.error.json"),
            "{r:?}"
        );
        let rec = read_json(&env.ing.layout().inbox_rejected().join(&r[1]));
        let errs = rec["errors"].as_array().unwrap();
        assert_eq!(errs.len(), 1, "{rec}");
        assert_eq!(errs[0]["item"], 2);
        assert_eq!(errs[0]["block"], 2);
        assert_eq!(errs[0]["line"], 11);
        assert_eq!(errs[0]["error"], "extraction_failed");
        assert!(
            errs[0]["reason"]
                .as_str()
                .unwrap()
                .contains("invalid JSON at line 12"),
            "{rec}"
        );
        let queued = rec["queued"].as_array().unwrap();
        assert_eq!(queued.len(), 2);
        assert_eq!(
            (queued[0]["id"].as_str(), queued[0]["block"].as_u64()),
            (Some("t1"), Some(1))
        );
        assert_eq!(
            (queued[1]["id"].as_str(), queued[1]["line"].as_u64()),
            (Some("t3"), Some(15))
        );
        // Counted once the original is filed (just after the move).
        wait_until("the failure counted", || {
            env.ing.counters.extraction_failures.load(Ordering::Relaxed) == 1
        })
        .await;
        env.stop().await;
    }

    #[tokio::test]
    async fn a_slowly_written_file_is_not_taken_early() {
        let env = Env::fast().await;
        let path = env.inbox().join("slow.json");
        let raw = patch("slow");
        let (head, tail) = raw.as_bytes().split_at(raw.len() - 5);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&head[..5]).unwrap();
        // Append a byte every 20 ms (a fifth of the 100 ms settle time) for
        // over a second: many scans and settle intervals pass meanwhile.
        for b in &head[5..] {
            tokio::time::sleep(Duration::from_millis(20)).await;
            f.write_all(&[*b]).unwrap();
            assert!(path.exists(), "taken while being written");
            assert!(env.pending().is_empty());
            assert!(env.rejected().is_empty() && env.processed().is_empty());
        }
        f.write_all(tail).unwrap();
        drop(f);
        wait_until("processed", || env.processed().len() == 2).await;
        assert_eq!(env.pending().len(), 1);
        assert!(env.rejected().is_empty());
        assert!(!path.exists());
        env.stop().await;
    }

    #[tokio::test]
    async fn hidden_and_partial_files_are_never_taken() {
        let env = Env::fast().await;
        let inbox = env.inbox();
        for n in [".hidden.json", "x.json.part", "y.json.tmp", "z.json~"] {
            let mut f = std::fs::File::create(inbox.join(n)).unwrap();
            f.write_all(patch(n).as_bytes()).unwrap();
        }
        // Give them many settle intervals, then use a later file as a barrier.
        tokio::time::sleep(Duration::from_millis(400)).await;
        env.drop_file("barrier.json", patch("barrier").as_bytes());
        wait_until("barrier processed", || env.processed().len() == 2).await;
        assert_eq!(env.pending().len(), 1);
        assert_eq!(
            Env::names(&inbox),
            [
                ".hidden.json",
                ".processed",
                ".rejected",
                "default",
                "x.json.part",
                "y.json.tmp",
                "z.json~"
            ]
        );
        env.stop().await;
    }

    #[tokio::test]
    async fn a_file_moved_in_by_rename_is_taken_at_once() {
        // A settle time far beyond the test's patience: only the rename rule can take it.
        let env = Env::start("inbox_settle = \"1h\"\ninbox_scan_interval = \"1h\"\n").await;
        let outside = env.ing.layout().root().join("staging.json");
        durable_write(&outside, patch("moved").as_bytes(), FILE_MODE).unwrap();
        durable_move(&outside, &env.inbox().join("moved.json")).unwrap();
        wait_until("processed", || env.processed().len() == 2).await;
        assert_eq!(env.pending().len(), 1);
        // Whereas a file written in place waits for the settle time.
        let mut f = std::fs::File::create(env.inbox().join("inplace.json")).unwrap();
        f.write_all(patch("inplace").as_bytes()).unwrap();
        drop(f);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(env.inbox().join("inplace.json").exists());
        assert_eq!(env.pending().len(), 1);
        env.stop().await;
    }

    #[tokio::test]
    async fn a_duplicate_file_is_queued_once() {
        let env = Env::fast().await;
        env.drop_file("a.json", patch("dup").as_bytes());
        wait_until("first processed", || env.processed().len() == 2).await;
        env.drop_file("b.json", patch("dup").as_bytes());
        wait_until("second processed", || env.processed().len() == 4).await;
        assert_eq!(env.pending().len(), 1);
        let rec = env
            .processed()
            .into_iter()
            .find(|n| n.ends_with("-b.json.result.json"))
            .unwrap();
        let rec = read_json(&env.ing.layout().inbox_processed().join(rec));
        assert_eq!(rec["items"][0]["outcome"], "duplicate");
        assert_eq!(rec["items"][0]["name"], env.pending()[0].as_str());
        env.stop().await;
    }

    #[tokio::test]
    async fn arrays_conflicts_and_whole_file_refusals() {
        let env = Env::fast().await;
        env.drop_file("first.json", patch("c1").as_bytes());
        wait_until("first", || env.processed().len() == 2).await;
        // An array: one good, one invalid, one conflicting with c1.
        let arr = format!(
            "[{}, {{\"operations\": []}}, {}]",
            patch("a1"),
            patch("c1").replace("\"x\"", "\"other\"")
        );
        env.drop_file("arr.json", arr.as_bytes());
        env.drop_file("bad.json", b"{\"operations\": [");
        env.drop_file("notes.txt", b"no fences here");
        env.drop_file("image.png", b"\x89PNG");
        env.drop_file("empty.json", b"[]");
        wait_until("all rejected", || env.rejected().len() == 10).await;
        assert_eq!(env.pending().len(), 2);
        let rec = |suffix: &str| {
            let n = env
                .rejected()
                .into_iter()
                .find(|n| n.ends_with(&format!("-{suffix}.error.json")))
                .unwrap();
            read_json(&env.ing.layout().inbox_rejected().join(n))
        };
        let a = rec("arr.json");
        assert_eq!(a["queued"][0]["id"], "a1");
        assert_eq!(a["errors"][0]["item"], 2);
        assert_eq!(a["errors"][0]["error"], "invalid_patch");
        assert_eq!(a["errors"][0]["errors"][0]["field"], "operations");
        assert_eq!(a["errors"][1]["item"], 3);
        assert_eq!(a["errors"][1]["error"], "conflict");
        assert_eq!(a["errors"][1]["existing"]["id"], "c1");
        assert_eq!(rec("bad.json")["errors"][0]["error"], "invalid_json");
        let n = rec("notes.txt");
        assert_eq!(n["errors"][0]["error"], "no_patch");
        assert!(n["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no patch found in the transcript"));
        let p = rec("image.png");
        assert_eq!(p["errors"][0]["error"], "unsupported_type");
        assert!(
            p["errors"][0]["reason"].as_str().unwrap().contains(".json"),
            "{p}"
        );
        assert_eq!(rec("empty.json")["errors"][0]["error"], "empty_array");
        env.stop().await;
    }

    /// The open that takes a file never follows a symlink, never blocks on
    /// a FIFO (a writer-less FIFO blocks a plain open forever) and reads
    /// only the regular file with the inode that was looked at.
    #[test]
    fn the_open_takes_only_the_regular_file_that_was_looked_at() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("a.json");
        durable_write(&file, b"{}", FILE_MODE).unwrap();
        let ino = std::fs::metadata(&file).unwrap().ino();
        assert!(matches!(read_limited(&file, 100, ino), ReadOutcome::Bytes(b) if b == b"{}"));
        // Another file renamed over it: observed afresh, not read.
        assert!(matches!(
            read_limited(&file, 100, ino + 1),
            ReadOutcome::Gone
        ));
        let fifo = d.path().join("f.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let link = d.path().join("l.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        for p in [fifo, link] {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(match read_limited(&p, 100, ino) {
                    ReadOutcome::Refused((kind, reason)) => Some((kind, reason)),
                    _ => None,
                });
            });
            let (kind, reason) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the open blocked")
                .expect("refused");
            assert_eq!(kind, "not_a_regular_file");
            assert!(
                reason.contains("FIFO") || reason.contains("symbolic link"),
                "{reason}"
            );
        }
    }

    #[tokio::test]
    async fn too_large_and_symlinks_are_rejected_unread() {
        let env = Env::start(
            "inbox_settle = \"100ms\"\ninbox_scan_interval = \"50ms\"\nmax_body_bytes = 64\n",
        )
        .await;
        env.drop_file("big.json", &[b' '; 65]);
        std::os::unix::fs::symlink("/etc/passwd", env.inbox().join("link.json")).unwrap();
        wait_until("both rejected", || env.rejected().len() == 4).await;
        let find = |s: &str| {
            let n = env.rejected().into_iter().find(|n| n.ends_with(s)).unwrap();
            read_json(&env.ing.layout().inbox_rejected().join(n))
        };
        let big = find("-big.json.error.json");
        assert_eq!(big["errors"][0]["error"], "too_large");
        assert!(big["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("65 bytes"));
        let link = find("-link.json.error.json");
        assert_eq!(link["errors"][0]["error"], "not_a_regular_file");
        // The link itself was moved, not what it points to.
        let moved = env
            .rejected()
            .into_iter()
            .find(|n| n.ends_with("-link.json"))
            .unwrap();
        assert!(
            std::fs::symlink_metadata(env.ing.layout().inbox_rejected().join(moved))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        env.stop().await;
    }

    #[tokio::test]
    async fn paused_and_busy_files_wait_in_place() {
        let env = Env::start(
            "inbox_settle = \"50ms\"\ninbox_scan_interval = \"50ms\"\nhigh_water_mark = 1\n",
        )
        .await;
        durable_write(&env.ing.pause_file(), b"{}", FILE_MODE).unwrap();
        env.drop_file("p.json", patch("p").as_bytes());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(env.inbox().join("p.json").exists());
        assert!(env.pending().is_empty());
        ghost_core::fs::durable_remove(&env.ing.pause_file()).unwrap();
        wait_until("taken after the pause", || env.processed().len() == 2).await;
        // The queue is now at its high-water mark: the next file waits.
        env.drop_file("q.json", patch("q").as_bytes());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(env.inbox().join("q.json").exists());
        assert_eq!(env.pending().len(), 1);
        assert!(env.rejected().is_empty());
        // Make room (as the executor would by claiming the entry).
        let q = env.ing.layout().queue("default");
        let name = env.pending()[0].clone();
        durable_move(
            &q.entry_path(QueueState::Pending, &name),
            &q.entry_path(QueueState::Held, &name),
        )
        .unwrap();
        env.ing.refresh_depths();
        wait_until("taken after room was made", || env.processed().len() == 4).await;
        env.stop().await;
    }

    #[tokio::test]
    async fn shutdown_returns() {
        let env = Env::fast().await;
        env.stop().await;
    }
}
