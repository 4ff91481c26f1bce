//! The archive: where the retention policy (`[retention]`, docs/retention.md)
//! moves what is finished, so that the queue, the summaries and the alert
//! records do not grow forever, and nothing is ever deleted without a copy.
//!
//! Layout, per group (a target's name, or `.alerts`) and month:
//!
//! - `archive/<group>/<YYYY-MM>/<segment>.jsonl.gz`: one gzip file per archiving
//!   run and month, one JSON line per item ([`Record`]) with every file of the
//!   item (its path under the root, mode, MD5 and bytes in base64). Written
//!   once, never changed.
//! - `archive/<group>/<YYYY-MM>.index.jsonl`: one line per archived item
//!   ([`IndexLine`]): its name, patch id, state, segment, position in the
//!   segment and the MD5 of each file. The index says what is in the archive:
//!   a segment no index line names is a leftover of an interrupted run and is
//!   discarded by the next one. Lines are written compactly (`"v": 2`): a file
//!   is named by a short slot (`done`, `sum.md`, `entry`, …) from which its path
//!   follows, given the group, state and name; the segment by its id alone.
//!   Lines of the first format (every path spelled out) are still read.
//!
//! The month of an entry is the month its queue name (a UUID v7) was made,
//! i.e. when the patch arrived, so a lookup by name reads one index.
//!
//! One run, per group and month, in this order (each step a failpoint in test
//! builds, `archive-*`):
//!
//! 1. read the month's index; discard segments it does not name;
//! 2. items whose every present file is already indexed with the same MD5
//!    (a run that stopped while removing) skip to step 6;
//! 3. write the segment durably (temp, fsync, rename, fsync the directory);
//! 4. read it back and check that every file's bytes have the recorded MD5;
//! 5. append the index lines (one write, `fdatasync`): the commit point;
//! 6. remove the originals, the entry file of each item last.
//!
//! A crash before 5 leaves the originals (and at most an unindexed segment,
//! discarded next time); after 5 a verified archive, and the next run removes
//! what is left of the originals without writing them again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::fs::{self, FILE_MODE};
use crate::queue::{QueueState, SIDECAR_KINDS};
use crate::Layout;

/// The group under which alert records are archived.
pub const ALERTS_GROUP: &str = ".alerts";

/// A crash window: with the `failpoints` feature and `FAILPOINTS=<name>=return`
/// the process aborts here, as a `kill -9` would stop it; `return(error)`
/// fails the step with an injected I/O error ([`crate::fault_point`]).
macro_rules! crash_point {
    ($name:literal) => {
        crate::fault_point($name, None)?
    };
}

/// Arm the failpoints named in `FAILPOINTS` (test builds only; a no-op otherwise).
pub fn init_failpoints() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}

/// What an archived item was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A queue entry with its sidecars and summaries.
    Entry,
    /// Summaries whose entry is in no queue state any more.
    Summary,
    /// An alert or request file the monitor had taken in.
    Alert,
}

/// One file of an item inside a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCopy {
    /// Relative to the data root.
    pub path: String,
    pub mode: u32,
    pub md5: String,
    /// The bytes, base64.
    pub data: String,
}

impl FileCopy {
    /// The file's bytes (`None` for bad base64).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        decode(self)
    }
}

/// One line of a segment: an item and all of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    pub kind: Kind,
    pub group: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<QueueState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_id: Option<String>,
    pub archived_at: String,
    pub files: Vec<FileCopy>,
}

/// A file as the index names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: String,
    pub md5: String,
}

/// One line of a month's index, as the readers see it (whatever its format
/// on disk); serialised like this only by `ghostctl archive ls --json`, and
/// read like this from indexes of the first format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexLine {
    pub name: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<QueueState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_id: Option<String>,
    /// The segment, relative to the group's directory (`2026-11/<id>.jsonl.gz`).
    pub segment: String,
    pub archived_at: String,
    pub files: Vec<FileRef>,
    /// The record's position in the segment (not known for the first format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordinal: Option<usize>,
}

/// An index line as written: the compact format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CompactLine {
    /// Always 2: this format.
    v: u32,
    n: String,
    #[serde(default = "entry_kind", skip_serializing_if = "is_entry_kind")]
    k: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<QueueState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    /// The segment's id (a UUID v7: when it was written); the month is the index's.
    g: String,
    /// The record's position in the segment.
    o: usize,
    /// Each file as `<slot>:<md5>`; the slot is a short name from which the
    /// path follows ([`slots`]), or the path itself when none fits.
    f: Vec<String>,
}

fn entry_kind() -> Kind {
    Kind::Entry
}

fn is_entry_kind(k: &Kind) -> bool {
    *k == Kind::Entry
}

/// Either format of an index line.
#[derive(Deserialize)]
#[serde(untagged)]
enum AnyLine {
    Compact(CompactLine),
    First(IndexLine),
}

/// Just the name of an index line (of either format), to pick the lines
/// worth reading whole.
#[derive(Deserialize)]
struct LineName {
    #[serde(alias = "name")]
    n: String,
}

/// The short slots of an item's possible files and their paths under the
/// root, for `group`, `kind`, `state` and `name`. Summaries and the entry's
/// sidecars are named after the entry, so their paths follow from the name.
fn slots(
    layout: &Layout,
    group: &str,
    kind: Kind,
    state: Option<QueueState>,
    name: &str,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match kind {
        Kind::Entry | Kind::Summary => {
            if let (Kind::Entry, Some(state)) = (kind, state) {
                let q = layout.queue(group);
                let mut kinds: Vec<&'static str> =
                    QueueState::ALL.iter().map(|s| s.record_kind()).collect();
                kinds.extend(SIDECAR_KINDS);
                kinds.sort();
                kinds.dedup();
                for k in kinds {
                    out.push((k, rel(layout, &q.sidecar_path(state, name, k))));
                }
                out.push(("entry", rel(layout, &q.entry_path(state, name))));
            }
            let s = layout.summaries(group);
            let b = layout.summary_backups(group);
            for (slot, p) in [
                ("sum.md", s.join(format!("{name}.md"))),
                ("sum.json", s.join(format!("{name}.json"))),
                ("bak.md", b.join(format!("{name}.md"))),
                ("bak.json", b.join(format!("{name}.json"))),
                (
                    "kept.json",
                    layout.kept_journals(group).join(format!("{name}.json")),
                ),
            ] {
                out.push((slot, rel(layout, &p)));
            }
        }
        Kind::Alert => {
            let dir = match name.split_once('/') {
                Some(("inbox", _)) => Some(layout.alerts_inbox_done()),
                Some(("requests", _)) => Some(layout.alerts_requests().join(".done")),
                _ => None,
            };
            if let (Some(dir), Some((_, file))) = (dir, name.split_once('/')) {
                out.push(("alert", rel(layout, &dir.join(file))));
            }
        }
    }
    out
}

impl CompactLine {
    fn of(layout: &Layout, group: &str, line: &IndexLine) -> CompactLine {
        let slots = slots(layout, group, line.kind, line.state, &line.name);
        let f = line
            .files
            .iter()
            .map(|r| {
                // The first slot of that name must lead back to this path.
                let slot = slots
                    .iter()
                    .find(|(_, p)| *p == r.path)
                    .map(|(s, _)| *s)
                    .filter(|s| {
                        slots.iter().find(|(t, _)| t == s).map(|(_, p)| p) == Some(&r.path)
                    });
                let key: &str = match slot {
                    Some(s) => s,
                    None => &r.path,
                };
                format!("{key}:{}", r.md5)
            })
            .collect();
        let g = line
            .segment
            .rsplit('/')
            .next()
            .unwrap_or(&line.segment)
            .trim_end_matches(".jsonl.gz")
            .to_string();
        CompactLine {
            v: 2,
            n: line.name.clone(),
            k: line.kind,
            s: line.state,
            p: line.patch_id.clone(),
            g,
            o: line.ordinal.unwrap_or(0),
            f,
        }
    }

    fn expand(self, layout: &Layout, group: &str, month: &str) -> Option<IndexLine> {
        let slots = slots(layout, group, self.k, self.s, &self.n);
        let files = self
            .f
            .iter()
            .map(|f| {
                let (slot, md5) = f.rsplit_once(':')?;
                let path = match slots.iter().find(|(s, _)| *s == slot) {
                    Some((_, p)) => p.clone(),
                    None if slot.contains('/') => slot.to_string(),
                    None => return None,
                };
                Some(FileRef {
                    path,
                    md5: md5.to_string(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        // The segment's id is a UUID v7 made when the run wrote it.
        let archived_at = uuid::Uuid::parse_str(&self.g)
            .ok()
            .and_then(|u| u.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                crate::time::rfc3339(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
            })
            .unwrap_or_default();
        Some(IndexLine {
            segment: format!("{month}/{}.jsonl.gz", self.g),
            name: self.n,
            kind: self.k,
            state: self.s,
            patch_id: self.p,
            archived_at,
            files,
            ordinal: Some(self.o),
        })
    }
}

/// An item the retention has made due.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub group: String,
    pub month: String,
    pub name: String,
    pub kind: Kind,
    pub state: Option<QueueState>,
    /// How long ago it last changed, in seconds.
    pub age_s: u64,
    /// Its files, the primary one (the entry) last.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
}

/// What one run did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// Items written into the archive now.
    pub archived: usize,
    /// Items already in the archive whose originals were removed now (the
    /// rest of an interrupted run, or an extracted item expiring again).
    pub completed: usize,
    pub files_removed: usize,
    pub segments_written: usize,
    pub segment_bytes: u64,
    /// Unindexed segments of interrupted runs, discarded.
    pub segments_discarded: usize,
    /// True when `max_per_cycle` stopped the run: more is due.
    pub more_due: bool,
    /// The items (all of them on a dry run).
    pub items: Vec<Candidate>,
}

/// The month (`YYYY-MM`, UTC) of a time.
pub fn month_of(t: SystemTime) -> String {
    crate::time::rfc3339(t)[..7].to_string()
}

/// The month a queue name (UUID v7) was made, if it is one.
pub fn name_month(name: &str) -> Option<String> {
    let u = uuid::Uuid::parse_str(name).ok()?;
    if u.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = u.get_timestamp()?.to_unix();
    Some(month_of(
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos),
    ))
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok()
}

fn rel(layout: &Layout, p: &Path) -> String {
    p.strip_prefix(layout.root())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// A stored relative path, refused if it could lead outside the root.
fn under_root(layout: &Layout, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::Invalid(format!(
            "archived path {rel:?} is not a plain path under the data root; refused"
        )));
    }
    Ok(layout.root().join(p))
}

/// The files of queue entry `name` in `state` that exist: sidecars and
/// summaries first, the entry itself last.
fn entry_files(layout: &Layout, target: &str, state: QueueState, name: &str) -> Vec<PathBuf> {
    let q = layout.queue(target);
    let mut kinds: Vec<&str> = QueueState::ALL.iter().map(|s| s.record_kind()).collect();
    kinds.extend(SIDECAR_KINDS);
    kinds.sort();
    kinds.dedup();
    let mut files: Vec<PathBuf> = kinds
        .into_iter()
        .map(|k| q.sidecar_path(state, name, k))
        .collect();
    files.extend(summary_files(layout, target, name));
    files.retain(|p| p.is_file());
    files.push(q.entry_path(state, name));
    files
}

fn summary_files(layout: &Layout, target: &str, name: &str) -> Vec<PathBuf> {
    let s = layout.summaries(target);
    let b = layout.summary_backups(target);
    vec![
        s.join(format!("{name}.md")),
        b.join(format!("{name}.json")),
        b.join(format!("{name}.md")),
        layout.kept_journals(target).join(format!("{name}.json")),
        s.join(format!("{name}.json")),
    ]
}

/// The items due for the archive under `config`'s retention, oldest queue
/// names first, at most `max`.
pub fn due(config: &Config, layout: &Layout, max: usize) -> Result<(Vec<Candidate>, bool)> {
    let r = &config.retention;
    let now = SystemTime::now();
    let age = |t: Option<SystemTime>| {
        t.map(|t| now.duration_since(t).unwrap_or_default())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for t in layout.queue_targets() {
        let q = layout.queue(&t);
        for state in [QueueState::Done, QueueState::Failed, QueueState::Trash] {
            let Some(after) = r.of(&t, state).and_then(|x| x.after()) else {
                continue;
            };
            for name in q.list(state)? {
                // The record is rewritten at every move: its time is the last move's.
                let a = age(mtime(&q.record_path(state, &name))
                    .or_else(|| mtime(&q.entry_path(state, &name))));
                if a < after {
                    continue;
                }
                if out.len() >= max {
                    return Ok((out, true));
                }
                let files = entry_files(layout, &t, state, &name);
                let month = name_month(&name).unwrap_or_else(|| month_of(now - a));
                out.push(Candidate {
                    group: t.clone(),
                    month,
                    name,
                    kind: Kind::Entry,
                    state: Some(state),
                    age_s: a.as_secs(),
                    files,
                });
            }
        }
        if let Some(after) = r.summaries.after() {
            let dir = layout.summaries(&t);
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|f| !f.starts_with('.'))
                .filter_map(|f| f.strip_suffix(".json").map(str::to_string))
                .collect();
            names.sort();
            for name in names {
                let a = age(mtime(&dir.join(format!("{name}.json"))));
                if a < after || q.find(&name).is_some() {
                    continue;
                }
                if out.len() >= max {
                    return Ok((out, true));
                }
                let mut files = summary_files(layout, &t, &name);
                files.retain(|p| p.is_file());
                let month = name_month(&name).unwrap_or_else(|| month_of(now - a));
                out.push(Candidate {
                    group: t.clone(),
                    month,
                    name,
                    kind: Kind::Summary,
                    state: None,
                    age_s: a.as_secs(),
                    files,
                });
            }
        }
    }
    if let Some(after) = r.alerts.after() {
        for (prefix, dir) in [
            ("inbox", layout.alerts_inbox_done()),
            ("requests", layout.alerts_requests().join(".done")),
        ] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| !fs::is_tmp_name(f))
                })
                .collect();
            files.sort();
            for p in files {
                let t = mtime(&p);
                let a = age(t);
                if a < after {
                    continue;
                }
                if out.len() >= max {
                    return Ok((out, true));
                }
                let file = p.file_name().unwrap_or_default().to_string_lossy();
                out.push(Candidate {
                    group: ALERTS_GROUP.into(),
                    month: month_of(t.unwrap_or(now)),
                    name: format!("{prefix}/{file}"),
                    kind: Kind::Alert,
                    state: None,
                    age_s: a.as_secs(),
                    files: vec![p],
                });
            }
        }
    }
    Ok((out, false))
}

/// Run the retention once: archive what is due, at most
/// `retention.max_per_cycle` items. `dry_run` only says what would move.
/// Fails with [`Error::Locked`] while another archiver runs on the root.
pub fn run(config: &Config, dry_run: bool) -> Result<Report> {
    let layout = Layout::new(&config.root);
    let max = config.retention.max_per_cycle.max(1) as usize;
    let _lock = if dry_run {
        None
    } else {
        Some(fs::LockFile::try_acquire(&layout.lock("archive"))?)
    };
    let (items, more_due) = due(config, &layout, max)?;
    let mut report = Report {
        dry_run,
        more_due,
        ..Report::default()
    };
    if dry_run {
        report.items = items;
        return Ok(report);
    }
    let mut groups: BTreeMap<(String, String), Vec<Candidate>> = BTreeMap::new();
    for c in items {
        groups
            .entry((c.group.clone(), c.month.clone()))
            .or_default()
            .push(c);
    }
    for ((group, month), items) in groups {
        archive_month(&layout, &group, &month, items, &mut report)?;
    }
    Ok(report)
}

/// Read an index (missing = empty), either format. A torn last line (a crash
/// mid-append) is skipped: the run that wrote it removed nothing, and the
/// next redoes it.
pub fn read_index(layout: &Layout, group: &str, month: &str) -> Result<Vec<IndexLine>> {
    read_index_where(layout, group, month, |_| true)
}

/// The lines of an index whose name passes `want`; the other lines are only
/// skimmed for their name.
fn read_index_where(
    layout: &Layout,
    group: &str,
    month: &str,
    want: impl Fn(&str) -> bool,
) -> Result<Vec<IndexLine>> {
    let p = layout.archive_index(group, month);
    let Some(bytes) = fs::read_opt(&p)? else {
        return Ok(Vec::new());
    };
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter(|l| serde_json::from_slice::<LineName>(l).is_ok_and(|n| want(&n.n)))
        .filter_map(|l| match serde_json::from_slice::<AnyLine>(l).ok()? {
            AnyLine::Compact(c) => c.expand(layout, group, month),
            AnyLine::First(l) => Some(l),
        })
        .collect())
}

/// The segments a month's index names (`<month>/<id>.jsonl.gz`), read from
/// every line without reading the lines whole.
fn indexed_segments(layout: &Layout, group: &str, month: &str) -> Result<BTreeSet<String>> {
    #[derive(Deserialize)]
    struct LineSegment {
        #[serde(default)]
        g: Option<String>,
        #[serde(default)]
        segment: Option<String>,
    }
    let p = layout.archive_index(group, month);
    let Some(bytes) = fs::read_opt(&p)? else {
        return Ok(BTreeSet::new());
    };
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<LineSegment>(l).ok())
        .filter_map(|l| match (l.g, l.segment) {
            (Some(g), _) => Some(format!("{month}/{g}.jsonl.gz")),
            (None, s) => s,
        })
        .collect())
}

/// The months with an index in `group`, oldest first.
fn months(layout: &Layout, group: &str) -> Vec<String> {
    let mut m: Vec<String> = std::fs::read_dir(layout.archive_group(group))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".index.jsonl").map(str::to_string))
        .collect();
    m.sort();
    m
}

/// The groups with an archive (targets, and `.alerts`).
pub fn groups(layout: &Layout) -> Vec<String> {
    let mut g: Vec<String> = std::fs::read_dir(layout.archive())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    g.sort();
    g
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)
        .and_then(|_| enc.finish())
        .map_err(|e| Error::io("compress", "archive segment", e))
}

/// The records of a segment, as they read back.
pub fn read_segment(path: &Path) -> Result<Vec<Record>> {
    let bytes = fs::read(path)?;
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut text)
        .ctx("decompress", path)?;
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).map_err(|e| Error::Corrupt {
                what: "archive segment",
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Record number `o` of a segment, parsed alone (`None` past its end or unparsable).
fn segment_line(path: &Path, o: usize) -> Result<Option<Record>> {
    let bytes = fs::read(path)?;
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut text)
        .ctx("decompress", path)?;
    Ok(text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .nth(o)
        .and_then(|l| serde_json::from_slice(l).ok()))
}

fn decode(f: &FileCopy) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(&f.data)
        .ok()
}

fn archive_month(
    layout: &Layout,
    group: &str,
    month: &str,
    items: Vec<Candidate>,
    report: &mut Report,
) -> Result<()> {
    let segments = indexed_segments(layout, group, month)?;
    report.segments_discarded += discard_unindexed(layout, group, month, &segments);
    // Only the lines of this run's items are read whole: the index of a busy
    // month is long, and this runs every cycle.
    let names: BTreeSet<&str> = items.iter().map(|c| c.name.as_str()).collect();
    let index = read_index_where(layout, group, month, |n| names.contains(n))?;
    let mut last: BTreeMap<&str, &IndexLine> = BTreeMap::new();
    for l in &index {
        last.insert(&l.name, l);
    }
    let now = crate::time::now_rfc3339();
    let mut to_write: Vec<(Candidate, Record)> = Vec::new();
    let mut to_remove: Vec<Candidate> = Vec::new();
    for c in items {
        let mut copies = Vec::new();
        for p in &c.files {
            // Gone since it was listed (a concurrent move): not part of the item.
            let Some(bytes) = fs::read_opt(p)? else {
                continue;
            };
            let mode = std::fs::symlink_metadata(p)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(FILE_MODE);
            copies.push(FileCopy {
                path: rel(layout, p),
                mode,
                md5: crate::md5_hex(&bytes),
                data: base64::engine::general_purpose::STANDARD.encode(&bytes),
            });
        }
        if copies.is_empty() {
            continue;
        }
        let indexed = last.get(c.name.as_str()).is_some_and(|l| {
            copies
                .iter()
                .all(|f| l.files.iter().any(|r| r.path == f.path && r.md5 == f.md5))
        });
        if indexed {
            report.completed += 1;
            to_remove.push(c);
            continue;
        }
        let patch_id = match c.kind {
            Kind::Entry => c
                .files
                .last()
                .and_then(|p| fs::read_opt(p).ok().flatten())
                .and_then(|b| crate::entry::stored_id(&b)),
            _ => None,
        };
        let rec = Record {
            v: 1,
            kind: c.kind,
            group: group.to_string(),
            name: c.name.clone(),
            state: c.state,
            patch_id,
            archived_at: now.clone(),
            files: copies,
        };
        to_write.push((c, rec));
    }
    if !to_write.is_empty() {
        let segment = format!("{month}/{}.jsonl.gz", uuid::Uuid::now_v7());
        let path = layout.archive_group(group).join(&segment);
        let mut text = Vec::new();
        for (_, r) in &to_write {
            serde_json::to_writer(&mut text, r).expect("a record serialises");
            text.push(b'\n');
        }
        let gz = gzip(&text)?;
        crash_point!("archive-before-segment");
        fs::ensure_dir(&layout.archive_month(group, month))?;
        fs::durable_write(&path, &gz, FILE_MODE)?;
        crash_point!("archive-after-segment");
        verify_segment(&path, to_write.iter().map(|(_, r)| r))?;
        crash_point!("archive-after-verify");
        let mut lines = Vec::new();
        for (i, (_, r)) in to_write.iter().enumerate() {
            let l = IndexLine {
                name: r.name.clone(),
                kind: r.kind,
                state: r.state,
                patch_id: r.patch_id.clone(),
                segment: segment.clone(),
                archived_at: r.archived_at.clone(),
                files: r
                    .files
                    .iter()
                    .map(|f| FileRef {
                        path: f.path.clone(),
                        md5: f.md5.clone(),
                    })
                    .collect(),
                ordinal: Some(i),
            };
            let l = CompactLine::of(layout, group, &l);
            serde_json::to_writer(&mut lines, &l).expect("an index line serialises");
            lines.push(b'\n');
        }
        append_index(&layout.archive_index(group, month), &lines)?;
        crash_point!("archive-after-index");
        report.archived += to_write.len();
        report.segments_written += 1;
        report.segment_bytes += gz.len() as u64;
        to_remove.extend(to_write.into_iter().map(|(c, _)| c));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (i, c) in to_remove.iter().enumerate() {
        if i == 1 {
            crash_point!("archive-mid-remove");
        }
        for p in &c.files {
            // The archived copy is verified and indexed (above, or by the run
            // that was interrupted): this is the move's second half.
            #[allow(clippy::disallowed_methods)]
            match std::fs::remove_file(p) {
                Ok(()) => report.files_removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove archived original", p, e)),
            }
            let d = fs::parent_of(p).to_path_buf();
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    for d in dirs {
        fs::fsync_dir(&d)?;
    }
    report.items.extend(to_remove);
    Ok(())
}

/// Read the segment back and check every file of every expected record.
fn verify_segment<'a>(path: &Path, expected: impl Iterator<Item = &'a Record>) -> Result<()> {
    let got = read_segment(path)?;
    let expected: Vec<&Record> = expected.collect();
    let bad = |reason: String| Error::Corrupt {
        what: "archive segment (read back)",
        path: path.to_path_buf(),
        reason,
    };
    if got.len() != expected.len() {
        return Err(bad(format!(
            "{} records read back, {} written",
            got.len(),
            expected.len()
        )));
    }
    for (g, e) in got.iter().zip(expected) {
        if g.name != e.name || g.files.len() != e.files.len() {
            return Err(bad(format!("record {} differs", e.name)));
        }
        for (gf, ef) in g.files.iter().zip(&e.files) {
            let ok = gf.path == ef.path && decode(gf).is_some_and(|b| crate::md5_hex(&b) == ef.md5);
            if !ok {
                return Err(bad(format!("{} of {}: MD5 mismatch", ef.path, e.name)));
            }
        }
    }
    Ok(())
}

/// Append `lines` to an index in one write; a torn line left by a crash is
/// ended first so that it cannot swallow the first new line.
fn append_index(path: &Path, lines: &[u8]) -> Result<()> {
    let torn = fs::read_opt(path)?.is_some_and(|b| !b.is_empty() && !b.ends_with(b"\n"));
    let mut buf = Vec::with_capacity(lines.len() + 1);
    if torn {
        buf.push(b'\n');
    }
    buf.extend_from_slice(lines);
    fs::durable_append(path, &buf)
}

/// Remove the segments of `month` that no index line names (written by a run
/// that stopped before its commit point; their originals are all still there).
fn discard_unindexed(
    layout: &Layout,
    group: &str,
    month: &str,
    indexed: &BTreeSet<String>,
) -> usize {
    let dir = layout.archive_month(group, month);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let Some(f) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !f.ends_with(".jsonl.gz") {
            continue;
        }
        let seg = format!("{month}/{f}");
        if indexed.contains(&seg) {
            continue;
        }
        if fs::durable_remove(&e.path()).is_ok() {
            tracing::info!(event = "ARCHIVE_SEGMENT_DISCARDED", path = %e.path().display(), "discarded a segment an interrupted run left unindexed");
            n += 1;
        }
    }
    n
}

/// An archived item, found.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub group: String,
    pub month: String,
    pub line: IndexLine,
}

fn find_in(
    layout: &Layout,
    group: &str,
    months: &[String],
    pred: impl Fn(&IndexLine) -> bool,
) -> Result<Option<Found>> {
    for m in months.iter().rev() {
        if let Some(l) = read_index(layout, group, m)?.into_iter().rev().find(&pred) {
            return Ok(Some(Found {
                group: group.to_string(),
                month: m.clone(),
                line: l,
            }));
        }
    }
    Ok(None)
}

/// The archived entry `name` of `target`, if any (the last copy archived).
pub fn find_name(layout: &Layout, target: &str, name: &str) -> Result<Option<Found>> {
    let months = match name_month(name) {
        Some(m) if layout.archive_index(target, &m).exists() => vec![m],
        Some(_) => return Ok(None),
        None => months(layout, target),
    };
    for m in months.iter().rev() {
        let lines = read_index_where(layout, target, m, |n| n == name)?;
        if let Some(l) = lines.into_iter().next_back() {
            return Ok(Some(Found {
                group: target.to_string(),
                month: m.clone(),
                line: l,
            }));
        }
    }
    Ok(None)
}

/// True when the archive holds entry `name` of `target`: its id stays taken.
pub fn holds(layout: &Layout, target: &str, name: &str) -> bool {
    matches!(find_name(layout, target, name), Ok(Some(_)))
}

/// The archived item `key` (a queue name or a patch id) means, if any.
pub fn find(layout: &Layout, key: &str) -> Result<Option<Found>> {
    let targets: Vec<String> = groups(layout)
        .into_iter()
        .filter(|g| g != ALERTS_GROUP)
        .collect();
    if crate::entry::is_queue_name(key) {
        for t in &targets {
            if let Some(f) = find_name(layout, t, key)? {
                return Ok(Some(f));
            }
        }
    }
    if let Some(rec) = crate::ids::read(layout, key)? {
        if let Some(f) = find_name(layout, &rec.target, &rec.name)? {
            return Ok(Some(f));
        }
    }
    // An id the index does not know (an entry placed by hand): every index.
    for t in &targets {
        let by_id = |l: &IndexLine| l.patch_id.as_deref() == Some(key);
        if let Some(f) = find_in(layout, t, &months(layout, t), by_id)? {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

/// Every archived item of `group` (or of all groups), the last copy of each
/// name, oldest month first.
pub fn list(layout: &Layout, group: Option<&str>) -> Result<Vec<Found>> {
    let gs = match group {
        Some(g) => vec![g.to_string()],
        None => groups(layout),
    };
    let mut out = Vec::new();
    for g in gs {
        for m in months(layout, &g) {
            let mut last: BTreeMap<String, IndexLine> = BTreeMap::new();
            for l in read_index(layout, &g, &m)? {
                last.insert(l.name.clone(), l);
            }
            out.extend(last.into_values().map(|line| Found {
                group: g.clone(),
                month: m.clone(),
                line,
            }));
        }
    }
    Ok(out)
}

/// The record of a found item, read from its segment and checked against the index.
pub fn record(layout: &Layout, found: &Found) -> Result<Record> {
    let path = layout.archive_group(&found.group).join(&found.line.segment);
    under_root(layout, &rel(layout, &path))?;
    let at = found
        .line
        .ordinal
        .and_then(|o| segment_line(&path, o).transpose())
        .transpose()?
        .filter(|r| r.name == found.line.name);
    let rec = match at {
        Some(r) => Some(r),
        None => read_segment(&path)?
            .into_iter()
            .find(|r| r.name == found.line.name),
    };
    let rec = rec.ok_or_else(|| Error::Corrupt {
        what: "archive segment",
        path: path.clone(),
        reason: format!("has no record {}", found.line.name),
    })?;
    for f in &found.line.files {
        let ok = rec
            .files
            .iter()
            .find(|c| c.path == f.path)
            .and_then(decode)
            .is_some_and(|b| crate::md5_hex(&b) == f.md5);
        if !ok {
            return Err(Error::Corrupt {
                what: "archive segment",
                path,
                reason: format!("{} of {} does not match its index MD5", f.path, rec.name),
            });
        }
    }
    Ok(rec)
}

/// Bring an archived item back to where it was, byte for byte (files that
/// are there already with the same bytes are left alone; a different file in
/// the way is an error and nothing is written). The archive keeps its copy.
/// Returns the files written.
pub fn extract(layout: &Layout, found: &Found) -> Result<Vec<PathBuf>> {
    let rec = record(layout, found)?;
    let mut plan = Vec::new();
    for f in &rec.files {
        let dest = under_root(layout, &f.path)?;
        let bytes = decode(f).ok_or_else(|| Error::Corrupt {
            what: "archive segment",
            path: dest.clone(),
            reason: "bad base64".into(),
        })?;
        match fs::read_opt(&dest)? {
            Some(b) if crate::md5_hex(&b) == f.md5 => continue,
            Some(_) => {
                return Err(Error::Invalid(format!(
                    "{} exists with other content; move it away first",
                    dest.display()
                )))
            }
            None => plan.push((dest, bytes, f.mode)),
        }
    }
    // In record order: sidecars and summaries first, the entry last, so the
    // entry never appears without its record.
    let mut written = Vec::new();
    for (dest, bytes, mode) in plan {
        fs::ensure_dir(fs::parent_of(&dest))?;
        let mut staged = fs::Staged::write(fs::parent_of(&dest), "extract", &bytes, mode & 0o777)?;
        staged.publish_new(&dest)?;
        fs::fsync_dir(fs::parent_of(&dest))?;
        written.push(dest);
    }
    Ok(written)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: fixtures are set up and aged directly
mod tests;
