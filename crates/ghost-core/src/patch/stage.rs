//! Staging: apply a patch's operations in memory, against a read-only view of
//! the working tree, and compute the exact final state of every path it changes.
//!
//! Nothing here touches the disk. The executor stages a patch, journals
//! [`Staged::originals`], writes [`Staged::new_dirs`] and [`Staged::changes`],
//! runs the checks and rolls back on failure. Because every precondition is
//! verified here, a patch that cannot apply is refused before anything on disk
//! changes.
//!
//! Model: an overlay (`RelPath -> Entry`) over the [`TreeView`]. A path is read
//! through to the view on first access and cached; every operation then reads and
//! writes the overlay, so each one sees the effect of those before it.
//!
//! Error kinds (all permanent except [`StageErrorKind::Io`]):
//! - `Precondition`: the tree is not in the state the patch expects at the level
//!   of a file: a file missing or already there, a wrong MD5, a wrong number of
//!   occurrences, not UTF-8 text, an invalid regex or mode.
//! - `Conflict`: a clash of kinds: a directory or a symlink/special file where a
//!   regular file is needed, a file where a directory is needed, a symlink or
//!   special file among a path's ancestors.
//! - `DiffDoesNotApply`: a unified diff whose hunks do not match the file (or
//!   cannot be parsed, or whose deletion leaves content behind).
//! - `Limit`: a file or the patch's staged total grew past `[limits]`
//!   (`max_file_bytes`, `max_staged_bytes`), or a pattern past the regex
//!   limits. Sizes are checked before the result is allocated where it can be
//!   computed (replace, regex with a literal replacement) and as it grows
//!   otherwise, so a small patch cannot make staging exhaust memory.
//! - `Refused`: the result would carry setuid, setgid or sticky bits on a
//!   target without `allow_special_modes` (also when the mode comes from the
//!   file already in the tree: a patch never rewrites such a file).
//! - `Deadline`: staging ran past its deadline (`executor.stuck_after`); it is
//!   checked between operations, between the files of a diff and while a
//!   regex replaces.
//! - `Io`: the view could not be read; the executor retries later.
//!
//! Directories are never removed and a path never changes between file and
//! directory within one patch: a file deleted earlier in the patch cannot become a
//! directory (`x` deleted, then `x/y` written is a `Conflict`), and a directory
//! cannot become a file. This keeps the executor's write order and its rollback
//! simple (create directories, then write/delete files; undo in reverse).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Instant;

use serde::Serialize;

use crate::config::LimitsConfig;
use crate::hash::md5_hex;
use crate::patch::agent::FileEdit;
use crate::patch::{FileDiff, Operation, RelPath};

/// Permission bits (e.g. 0o644) and bytes of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// What a path is in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Absent,
    File(FileData),
    Dir,
    /// Symlink, socket, fifo, device (the text says which): never read or
    /// written through.
    Other(String),
}

/// Read-only view of the real tree. Paths are validated [`RelPath`]s.
///
/// Implementations report a path under a missing directory as `Absent`; a path
/// that cannot be inspected (permission denied, I/O error) is an `Err`.
pub trait TreeView {
    fn entry(&self, path: &RelPath) -> io::Result<Entry>;
}

/// A simple in-memory [`TreeView`]: regular files, explicit (possibly empty)
/// directories, "other" entries (symlinks and the like) and paths whose read
/// fails. A directory is also implied by any entry below it.
///
/// Builder methods take `&str` paths and panic on an invalid path: this type is
/// meant for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemTree {
    files: BTreeMap<RelPath, FileData>,
    dirs: BTreeSet<RelPath>,
    others: BTreeMap<RelPath, String>,
    io_errors: BTreeSet<RelPath>,
}

fn rel(path: &str) -> RelPath {
    RelPath::parse(path).unwrap_or_else(|e| panic!("MemTree: invalid path {path:?}: {e}"))
}

impl MemTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a regular file.
    pub fn with_file(mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.insert(
            rel(path),
            FileData {
                bytes: bytes.into(),
                mode,
            },
        );
        self
    }

    /// Adds a directory (needed only for empty ones; others are implied).
    pub fn with_dir(mut self, path: &str) -> Self {
        self.dirs.insert(rel(path));
        self
    }

    /// Adds a symlink, socket, fifo or device; `what` names it (e.g. "symlink").
    pub fn with_other(mut self, path: &str, what: &str) -> Self {
        self.others.insert(rel(path), what.to_string());
        self
    }

    /// Makes reading `path` fail with an I/O error.
    pub fn with_io_error(mut self, path: &str) -> Self {
        self.io_errors.insert(rel(path));
        self
    }

    /// The regular files in the tree.
    pub fn files(&self) -> &BTreeMap<RelPath, FileData> {
        &self.files
    }

    /// Applies a staging result as the executor would: creates `new_dirs`, then
    /// writes or removes every path in `changes`.
    pub fn apply(&mut self, staged: &Staged) {
        for d in &staged.new_dirs {
            self.dirs.insert(d.clone());
        }
        for (path, state) in &staged.changes {
            match state {
                Some(data) => {
                    self.files.insert(path.clone(), data.clone());
                }
                None => {
                    self.files.remove(path);
                }
            }
        }
    }

    fn has_descendant(&self, path: &RelPath) -> bool {
        let prefix = format!("{}/", path.as_str());
        let below = |p: &RelPath| p.as_str().starts_with(&prefix);
        self.files.keys().any(below) || self.dirs.iter().any(below) || self.others.keys().any(below)
    }
}

impl TreeView for MemTree {
    fn entry(&self, path: &RelPath) -> io::Result<Entry> {
        if self.io_errors.contains(path) {
            return Err(io::Error::other(format!(
                "injected I/O error reading {path}"
            )));
        }
        if let Some(what) = self.others.get(path) {
            return Ok(Entry::Other(what.clone()));
        }
        if let Some(data) = self.files.get(path) {
            return Ok(Entry::File(data.clone()));
        }
        if self.dirs.contains(path) || self.has_descendant(path) {
            return Ok(Entry::Dir);
        }
        Ok(Entry::Absent)
    }
}

/// One file an operation touched, with its MD5 just before and just after that
/// operation (`None` = absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    pub md5_before: Option<String>,
    pub md5_after: Option<String>,
}

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpResult {
    /// Position in the patch's `operations` (0-based).
    pub index: usize,
    /// The operation's name as in the native format (`write`, `replace`, ...).
    pub op: &'static str,
    pub files: Vec<FileChange>,
    /// A short human description ("2 replacements", "created (12 bytes)", ...).
    pub detail: String,
}

/// The outcome of staging a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Final state of every path whose content or mode changes (None = absent at
    /// the end), ordered.
    pub changes: BTreeMap<RelPath, Option<FileData>>,
    /// Original state, as read from the view, of every path in `changes` (None =
    /// was absent).
    pub originals: BTreeMap<RelPath, Option<FileData>>,
    /// Directories that must be created (did not exist, needed by a file present at
    /// the end), shallowest first (then by path).
    pub new_dirs: Vec<RelPath>,
    /// One entry per operation, in order.
    pub results: Vec<OpResult>,
}

/// Why a patch cannot be staged. `index` is the failing operation's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}{}", index_prefix(.index), .message)]
pub struct StageError {
    pub index: Option<usize>,
    pub kind: StageErrorKind,
    pub message: String,
}

fn index_prefix(index: &Option<usize>) -> String {
    index
        .map(|i| format!("operations[{i}]: "))
        .unwrap_or_default()
}

/// See the module documentation. Only `Io` is transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageErrorKind {
    Precondition,
    DiffDoesNotApply,
    Conflict,
    Limit,
    Refused,
    Deadline,
    Io,
}

impl StageError {
    fn new(kind: StageErrorKind, message: impl Into<String>) -> Self {
        StageError {
            index: None,
            kind,
            message: message.into(),
        }
    }
    fn precondition(message: impl Into<String>) -> Self {
        Self::new(StageErrorKind::Precondition, message)
    }
    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StageErrorKind::Conflict, message)
    }
    fn diff(message: impl Into<String>) -> Self {
        Self::new(StageErrorKind::DiffDoesNotApply, message)
    }

    /// True for errors worth retrying later (the tree could not be read).
    pub fn is_transient(&self) -> bool {
        self.kind == StageErrorKind::Io
    }
}

type Result<T, E = StageError> = std::result::Result<T, E>;

/// How to stage: the defaults of files, what the target allows, the bounds.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Mode of a file created without an explicit mode (e.g. 0o644).
    pub default_file_mode: u32,
    /// The target's `allow_special_modes`.
    pub allow_special_modes: bool,
    /// Target name, for messages.
    pub target: String,
    pub limits: LimitsConfig,
    /// Staging past this instant fails with `Deadline`.
    pub deadline: Option<Instant>,
}

impl StageOptions {
    /// The default limits, no special modes, no deadline.
    pub fn new(default_file_mode: u32) -> Self {
        StageOptions {
            default_file_mode,
            allow_special_modes: false,
            target: "default".into(),
            limits: LimitsConfig::default(),
            deadline: None,
        }
    }
}

/// Stages `ops` against `view` with [`StageOptions::new`]`(default_file_mode)`.
pub fn stage(
    ops: &[Operation],
    view: &dyn TreeView,
    default_file_mode: u32,
) -> Result<Staged, StageError> {
    stage_with(ops, view, &StageOptions::new(default_file_mode))
}

/// Stages `ops` against `view`.
pub fn stage_with(
    ops: &[Operation],
    view: &dyn TreeView,
    opts: &StageOptions,
) -> Result<Staged, StageError> {
    let mut ov = Overlay {
        view,
        original: BTreeMap::new(),
        current: BTreeMap::new(),
        created_dirs: BTreeSet::new(),
        default_mode: opts.default_file_mode,
        opts,
        staged_sizes: BTreeMap::new(),
        staged_total: 0,
    };
    let mut results = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let (files, detail) =
            ov.check_deadline()
                .and_then(|()| ov.apply(op))
                .map_err(|mut e| {
                    e.index = Some(index);
                    e
                })?;
        results.push(OpResult {
            index,
            op: op.name(),
            files,
            detail,
        });
    }
    Ok(ov.finish(results))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn md5_of(entry: &Entry) -> Option<String> {
    match entry {
        Entry::File(d) => Some(md5_hex(&d.bytes)),
        _ => None,
    }
}

fn change(path: &RelPath, before: Option<&FileData>, after: Option<&FileData>) -> FileChange {
    FileChange {
        path: path.to_string(),
        md5_before: before.map(|d| md5_hex(&d.bytes)),
        md5_after: after.map(|d| md5_hex(&d.bytes)),
    }
}

/// Permission bits of `mode`. Accepts plain permission bits (<= 0o7777) and, as
/// git writes them, a regular-file mode (0o100644); anything else is refused.
fn permission_bits(mode: u32, path: &RelPath) -> Result<u32> {
    const TYPE_MASK: u32 = 0o170000;
    const REGULAR: u32 = 0o100000;
    let kind = mode & TYPE_MASK;
    if mode & !(TYPE_MASK | 0o7777) == 0 && (kind == 0 || kind == REGULAR) {
        Ok(mode & 0o7777)
    } else {
        Err(StageError::precondition(format!(
            "mode {mode:o} for {path} is not the mode of a regular file (permission bits, at most 7777)"
        )))
    }
}

fn link_message(path: &RelPath, what: &str) -> String {
    format!(
        "{path} is not a regular file or directory ({what}); \
         ghostbridge never reads or writes through links or special files"
    )
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

fn as_text<'a>(data: &'a FileData, path: &RelPath) -> Result<&'a str> {
    std::str::from_utf8(&data.bytes)
        .map_err(|_| StageError::precondition(format!("{path} is not UTF-8 text")))
}

fn check_md5(path: &RelPath, entry: &Entry, expected: Option<&str>) -> Result<()> {
    let actual = md5_of(entry);
    let ok = match (expected, &actual) {
        (None, None) => true,
        (Some(e), Some(a)) => e.eq_ignore_ascii_case(a),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(StageError::precondition(format!(
        "{path}: expected {}, found {}",
        expected.map_or_else(
            || "no file".to_string(),
            |e| format!("md5 {}", e.to_ascii_lowercase())
        ),
        actual.map_or_else(|| "absent".to_string(), |a| format!("md5 {a}")),
    )))
}

struct Overlay<'v> {
    view: &'v dyn TreeView,
    /// The view's answer for every path read.
    original: BTreeMap<RelPath, Entry>,
    /// The state after the operations staged so far, for every path read.
    current: BTreeMap<RelPath, Entry>,
    /// Directories this patch creates.
    created_dirs: BTreeSet<RelPath>,
    default_mode: u32,
    opts: &'v StageOptions,
    /// Size of the content staged for each path written so far.
    staged_sizes: BTreeMap<RelPath, u64>,
    staged_total: u64,
}

type Outcome = (Vec<FileChange>, String);

impl Overlay<'_> {
    fn check_deadline(&self) -> Result<()> {
        match self.opts.deadline {
            Some(d) if Instant::now() >= d => Err(StageError::new(
                StageErrorKind::Deadline,
                "staging ran past the patch's deadline (executor.stuck_after)",
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a file of `size` bytes at `path` past `limits.max_file_bytes`.
    fn check_file_size(&self, path: &RelPath, size: u64) -> Result<()> {
        let max = self.opts.limits.max_file_bytes;
        if size > max {
            return Err(StageError::new(
                StageErrorKind::Limit,
                format!(
                    "{path} would be {size} bytes or more; the limit is {max} (limits.max_file_bytes)"
                ),
            ));
        }
        Ok(())
    }

    /// The entry of `path` itself, cached, with no regard to its ancestors.
    fn raw(&mut self, path: &RelPath) -> Result<Entry> {
        if let Some(e) = self.current.get(path) {
            return Ok(e.clone());
        }
        let e = self.view.entry(path).map_err(|err| {
            StageError::new(StageErrorKind::Io, format!("cannot read {path}: {err}"))
        })?;
        self.remember(path, e.clone());
        Ok(e)
    }

    fn remember(&mut self, path: &RelPath, e: Entry) {
        self.original.insert(path.clone(), e.clone());
        self.current.insert(path.clone(), e);
    }

    /// The current entry of `path`: a symlink or special file among its ancestors
    /// is a `Conflict`; a path under a missing directory or under a file is
    /// `Absent` (without asking the view).
    fn lookup(&mut self, path: &RelPath) -> Result<Entry> {
        if let Some(e) = self.current.get(path) {
            return Ok(e.clone());
        }
        for anc in path.ancestors() {
            match self.raw(&anc)? {
                Entry::Dir => {}
                Entry::Other(what) => return Err(StageError::conflict(link_message(&anc, &what))),
                Entry::Absent | Entry::File(_) => {
                    self.remember(path, Entry::Absent);
                    return Ok(Entry::Absent);
                }
            }
        }
        self.raw(path)
    }

    /// An existing regular file at `path`.
    fn existing_file(&mut self, path: &RelPath) -> Result<FileData> {
        match self.lookup(path)? {
            Entry::File(d) => Ok(d),
            Entry::Absent => Err(StageError::precondition(format!("{path} does not exist"))),
            Entry::Dir => Err(StageError::conflict(format!(
                "{path} is a directory, not a file"
            ))),
            Entry::Other(what) => Err(StageError::conflict(link_message(path, &what))),
        }
    }

    /// The state of `path` where a regular file is about to be written: `None`
    /// when absent, the file otherwise; a directory or special file is a conflict.
    fn writable(&mut self, path: &RelPath) -> Result<Option<FileData>> {
        match self.lookup(path)? {
            Entry::File(d) => Ok(Some(d)),
            Entry::Absent => Ok(None),
            Entry::Dir => Err(StageError::conflict(format!(
                "{path} is a directory; a file cannot replace it"
            ))),
            Entry::Other(what) => Err(StageError::conflict(link_message(path, &what))),
        }
    }

    /// Makes every ancestor of `path` a directory, creating missing ones.
    fn make_parents(&mut self, path: &RelPath) -> Result<()> {
        let mut missing = false;
        for anc in path.ancestors() {
            if missing {
                // Below a directory that does not exist yet: nothing to ask the view.
                if !self.current.contains_key(&anc) {
                    self.remember(&anc, Entry::Absent);
                }
            }
            match self.raw(&anc)? {
                Entry::Dir => continue,
                Entry::Other(what) => return Err(StageError::conflict(link_message(&anc, &what))),
                Entry::File(_) => {
                    return Err(StageError::conflict(format!(
                        "{anc} is a file; cannot create {path} under it"
                    )))
                }
                Entry::Absent => {
                    if matches!(self.original.get(&anc), Some(Entry::File(_))) {
                        // See the module documentation: a path does not turn from
                        // file into directory within one patch.
                        return Err(StageError::conflict(format!(
                            "{anc} was a file deleted earlier in this patch; \
                             it cannot become a directory for {path} in the same patch"
                        )));
                    }
                    missing = true;
                    self.current.insert(anc.clone(), Entry::Dir);
                    self.created_dirs.insert(anc);
                }
            }
        }
        Ok(())
    }

    /// Puts a regular file at `path` (callers have checked what is there).
    fn put(&mut self, path: &RelPath, data: FileData) -> Result<()> {
        if let Some(why) = super::policy::special_mode_reason(
            data.mode,
            path,
            self.opts.allow_special_modes,
            &self.opts.target,
        ) {
            return Err(StageError::new(StageErrorKind::Refused, why));
        }
        let size = data.bytes.len() as u64;
        self.check_file_size(path, size)?;
        let total = self.staged_total - self.staged_sizes.get(path).copied().unwrap_or(0) + size;
        let max = self.opts.limits.max_staged_bytes;
        if total > max {
            return Err(StageError::new(
                StageErrorKind::Limit,
                format!(
                    "with {path} the patch would write {total} bytes; the limit is {max} (limits.max_staged_bytes)"
                ),
            ));
        }
        if !self.original.contains_key(path) {
            self.lookup(path)?;
        }
        self.make_parents(path)?;
        self.staged_sizes.insert(path.clone(), size);
        self.staged_total = total;
        self.current.insert(path.clone(), Entry::File(data));
        Ok(())
    }

    fn remove(&mut self, path: &RelPath) {
        if let Some(size) = self.staged_sizes.remove(path) {
            self.staged_total -= size;
        }
        self.current.insert(path.clone(), Entry::Absent);
    }

    fn apply(&mut self, op: &Operation) -> Result<Outcome> {
        match op {
            Operation::Write {
                path,
                content,
                mode,
                expect_md5,
            } => self.write(path, content, *mode, expect_md5.as_ref()),
            Operation::Replace {
                path,
                find,
                replace,
                count,
            } => self.replace(path, find, replace, *count),
            Operation::Regex {
                path,
                pattern,
                replacement,
                count,
            } => self.regex(path, pattern, replacement, *count),
            Operation::Delete { path, expect_md5 } => self.delete(path, expect_md5.as_deref()),
            Operation::Rename { from, to } => self.rename(from, to),
            Operation::Chmod { path, mode } => self.chmod(path, *mode),
            Operation::Diff { files } => self.diff(files),
            Operation::ApplyPatch { files } => self.agent_edits(files),
            Operation::SearchReplace {
                path,
                search,
                replace,
            } => self.search_replace(path, search, replace),
        }
    }

    /// An agent's file edits (`apply_patch`), in order; the notes of every
    /// tolerant match go into the detail.
    fn agent_edits(&mut self, edits: &[FileEdit]) -> Result<Outcome> {
        let mut files = Vec::new();
        let mut notes = Vec::new();
        let (mut added, mut deleted, mut updated, mut moved) = (0, 0, 0, 0);
        for edit in edits {
            self.check_deadline()?;
            match edit {
                FileEdit::Add { path, content } => {
                    let before = self.writable(path)?;
                    let after = FileData {
                        bytes: content.as_bytes().to_vec(),
                        mode: before.as_ref().map_or(self.default_mode, |d| d.mode),
                    };
                    files.push(change(path, before.as_ref(), Some(&after)));
                    self.put(path, after)?;
                    added += 1;
                }
                FileEdit::Delete { path } => {
                    let before = self.existing_file(path)?;
                    files.push(change(path, Some(&before), None));
                    self.remove(path);
                    deleted += 1;
                }
                FileEdit::Update {
                    path,
                    move_to,
                    hunks,
                } => {
                    let before = self.existing_file(path)?;
                    let text = as_text(&before, path)?;
                    let applied = super::agent::matcher::apply(path, text, hunks)
                        .map_err(StageError::diff)?;
                    notes.extend(applied.notes);
                    let after = FileData {
                        bytes: applied.text.into_bytes(),
                        mode: before.mode,
                    };
                    match move_to {
                        Some(to) if to != path => {
                            // The tool's semantics: the destination is overwritten.
                            let existing = self.writable(to)?;
                            files.push(change(path, Some(&before), None));
                            files.push(change(to, existing.as_ref(), Some(&after)));
                            self.remove(path);
                            self.put(to, after)?;
                            moved += 1;
                        }
                        _ => {
                            files.push(change(path, Some(&before), Some(&after)));
                            self.put(path, after)?;
                            updated += 1;
                        }
                    }
                }
            }
        }
        let counts: Vec<String> = [
            (added, "added"),
            (updated, "updated"),
            (moved, "moved"),
            (deleted, "deleted"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{} {what}", plural(*n, "file", "files")))
        .collect();
        let mut detail = counts.join(", ");
        for n in notes {
            detail.push_str("; ");
            detail.push_str(&n);
        }
        Ok((files, detail))
    }

    /// A SEARCH/REPLACE block.
    fn search_replace(&mut self, path: &RelPath, search: &str, replace: &str) -> Result<Outcome> {
        if search.trim().is_empty() {
            let before = self.writable(path)?;
            if before.as_ref().is_some_and(|d| !d.bytes.is_empty()) {
                return Err(StageError::precondition(format!(
                    "{path} exists and is not empty: an empty SEARCH creates a file; \
                     to change this one, SEARCH for the lines to replace"
                )));
            }
            let after = FileData {
                bytes: replace.as_bytes().to_vec(),
                mode: before.as_ref().map_or(self.default_mode, |d| d.mode),
            };
            let fc = change(path, before.as_ref(), Some(&after));
            self.put(path, after)?;
            return Ok((vec![fc], "created".into()));
        }
        let before = self.existing_file(path)?;
        let text = as_text(&before, path)?;
        let lines = |s: &str| -> Vec<String> {
            super::agent::text_lines(s)
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let hunk = super::agent::Hunk {
            old: lines(search),
            new: lines(replace),
            ..Default::default()
        };
        let applied = super::agent::matcher::apply(path, text, std::slice::from_ref(&hunk))
            .map_err(StageError::diff)?;
        let after = FileData {
            bytes: applied.text.into_bytes(),
            mode: before.mode,
        };
        let fc = change(path, Some(&before), Some(&after));
        self.put(path, after)?;
        let mut detail = String::from("replaced");
        for n in applied.notes {
            detail.push_str("; ");
            detail.push_str(&n);
        }
        Ok((vec![fc], detail))
    }

    fn write(
        &mut self,
        path: &RelPath,
        content: &[u8],
        mode: Option<u32>,
        expect_md5: Option<&Option<String>>,
    ) -> Result<Outcome> {
        let before = self.writable(path)?;
        if let Some(expected) = expect_md5 {
            let entry = before.clone().map_or(Entry::Absent, Entry::File);
            check_md5(path, &entry, expected.as_deref())?;
        }
        let mode = match mode {
            Some(m) => permission_bits(m, path)?,
            None => before.as_ref().map_or(self.default_mode, |d| d.mode),
        };
        let after = FileData {
            bytes: content.to_vec(),
            mode,
        };
        let size = plural(content.len(), "byte", "bytes");
        let detail = match &before {
            None => format!("created ({size})"),
            Some(b) if *b == after => format!("unchanged ({size})"),
            Some(_) => format!("rewritten ({size})"),
        };
        let fc = change(path, before.as_ref(), Some(&after));
        self.put(path, after)?;
        Ok((vec![fc], detail))
    }

    fn replace(
        &mut self,
        path: &RelPath,
        find: &str,
        replace: &str,
        count: usize,
    ) -> Result<Outcome> {
        let before = self.existing_file(path)?;
        let text = as_text(&before, path)?;
        if find.is_empty() {
            return Err(StageError::precondition(format!(
                "the text to find in {path} is empty"
            )));
        }
        let found = text.matches(find).count();
        if found != count {
            return Err(StageError::precondition(format!(
                "expected {} of {} in {path}, found {found}",
                plural(count, "occurrence", "occurrences"),
                truncate(find, 80),
            )));
        }
        // The exact size, before the result is allocated.
        let size = (text.len() as u64 - (found * find.len()) as u64)
            .saturating_add((found as u64).saturating_mul(replace.len() as u64));
        self.check_file_size(path, size)?;
        let after = FileData {
            bytes: text.replace(find, replace).into_bytes(),
            mode: before.mode,
        };
        let fc = change(path, Some(&before), Some(&after));
        self.put(path, after)?;
        Ok((vec![fc], plural(found, "replacement", "replacements")))
    }

    fn regex(
        &mut self,
        path: &RelPath,
        pattern: &str,
        replacement: &str,
        count: Option<usize>,
    ) -> Result<Outcome> {
        let before = self.existing_file(path)?;
        let text = as_text(&before, path)?;
        let re = super::limits::compile_regex(pattern, &self.opts.limits).map_err(|e| {
            let kind = if e.contains("(limits.") {
                StageErrorKind::Limit
            } else {
                StageErrorKind::Precondition
            };
            StageError::new(
                kind,
                format!("regular expression {}: {e}", truncate(pattern, 80)),
            )
        })?;
        let (mut found, mut matched) = (0usize, 0u64);
        for m in re.find_iter(text) {
            found += 1;
            matched += m.len() as u64;
        }
        if found == 0 {
            return Err(StageError::precondition(format!(
                "regular expression {} does not match {path}",
                truncate(pattern, 80)
            )));
        }
        if let Some(n) = count {
            if found != n {
                return Err(StageError::precondition(format!(
                    "expected {} of regular expression {} in {path}, found {found}",
                    plural(n, "match", "matches"),
                    truncate(pattern, 80),
                )));
            }
        }
        let bytes = self.replace_all(&re, text, replacement, path, found, matched)?;
        let after = FileData {
            bytes,
            mode: before.mode,
        };
        let fc = change(path, Some(&before), Some(&after));
        self.put(path, after)?;
        Ok((
            vec![fc],
            format!("{} replaced", plural(found, "match", "matches")),
        ))
    }

    /// `re.replace_all(text, replacement)`, refused past `limits.max_file_bytes`
    /// before it is allocated: exactly computed for a literal replacement,
    /// checked as it grows when `$` expands groups. `found` matches of total
    /// length `matched` are known from a first pass.
    fn replace_all(
        &self,
        re: &regex::Regex,
        text: &str,
        replacement: &str,
        path: &RelPath,
        found: usize,
        matched: u64,
    ) -> Result<Vec<u8>> {
        if !replacement.contains('$') {
            let size = (text.len() as u64 - matched)
                .saturating_add((found as u64).saturating_mul(replacement.len() as u64));
            self.check_file_size(path, size)?;
            return Ok(re
                .replace_all(text, regex::NoExpand(replacement))
                .into_owned()
                .into_bytes());
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (i, caps) in re.captures_iter(text).enumerate() {
            let m = caps.get(0).expect("group 0 always matches");
            out.push_str(&text[last..m.start()]);
            caps.expand(replacement, &mut out);
            last = m.end();
            self.check_file_size(path, out.len() as u64)?;
            if i % 4096 == 4095 {
                self.check_deadline()?;
            }
        }
        out.push_str(&text[last..]);
        self.check_file_size(path, out.len() as u64)?;
        Ok(out.into_bytes())
    }

    fn delete(&mut self, path: &RelPath, expect_md5: Option<&str>) -> Result<Outcome> {
        let before = self.existing_file(path)?;
        if let Some(expected) = expect_md5 {
            check_md5(path, &Entry::File(before.clone()), Some(expected))?;
        }
        self.remove(path);
        Ok((vec![change(path, Some(&before), None)], "deleted".into()))
    }

    /// Checks that `to` can receive a new file: absent (a regular file there is a
    /// `Precondition` failure, a directory or special file a `Conflict`).
    fn must_be_absent(&mut self, to: &RelPath) -> Result<()> {
        match self.writable(to)? {
            None => Ok(()),
            Some(_) => Err(StageError::precondition(format!("{to} already exists"))),
        }
    }

    fn rename(&mut self, from: &RelPath, to: &RelPath) -> Result<Outcome> {
        let data = self.existing_file(from)?;
        self.must_be_absent(to)?;
        let files = vec![
            change(from, Some(&data), None),
            change(to, None, Some(&data)),
        ];
        self.remove(from);
        self.put(to, data)?;
        Ok((files, format!("renamed {from} -> {to}")))
    }

    fn chmod(&mut self, path: &RelPath, mode: u32) -> Result<Outcome> {
        let before = self.existing_file(path)?;
        let mode = permission_bits(mode, path)?;
        let after = FileData {
            bytes: before.bytes.clone(),
            mode,
        };
        let detail = if before.mode == mode {
            format!("mode {mode:04o} (unchanged)")
        } else {
            format!("mode {mode:04o} (was {:04o})", before.mode)
        };
        let fc = change(path, Some(&before), Some(&after));
        self.put(path, after)?;
        Ok((vec![fc], detail))
    }

    fn diff(&mut self, diffs: &[FileDiff]) -> Result<Outcome> {
        let mut files = Vec::new();
        let (mut hunks, mut created, mut deleted, mut renamed) = (0, 0, 0, 0);
        for fd in diffs {
            self.check_deadline()?;
            let (old, new) = match (&fd.old_path, &fd.new_path) {
                (None, None) => {
                    return Err(StageError::precondition(
                        "a file in the diff has /dev/null on both sides",
                    ))
                }
                (old, new) => (old.as_ref(), new.as_ref()),
            };
            let shown = new.or(old).expect("one side is a path");
            let before = match old {
                Some(o) => Some(self.existing_file(o)?),
                None => {
                    let n = new.expect("new side is a path");
                    self.must_be_absent(n)?;
                    None
                }
            };
            let base: &[u8] = before.as_ref().map_or(&[], |d| &d.bytes);
            let (patched, n_hunks) = apply_diff(base, &fd.text, shown)?;
            hunks += n_hunks;
            match (old, new) {
                (Some(o), None) => {
                    if !fd.text.is_empty() && !patched.is_empty() {
                        return Err(StageError::diff(format!(
                            "diff deletes {o} but its hunks leave {} bytes of content",
                            patched.len()
                        )));
                    }
                    files.push(change(o, before.as_ref(), None));
                    self.remove(o);
                    deleted += 1;
                }
                (old, Some(n)) => {
                    let mode = match fd.new_mode {
                        Some(m) => permission_bits(m, n)?,
                        None => before.as_ref().map_or(self.default_mode, |d| d.mode),
                    };
                    let after = FileData {
                        bytes: patched,
                        mode,
                    };
                    match old {
                        Some(o) if o != n => {
                            self.must_be_absent(n)?;
                            files.push(change(o, before.as_ref(), None));
                            files.push(change(n, None, Some(&after)));
                            self.remove(o);
                            renamed += 1;
                        }
                        Some(_) => files.push(change(n, before.as_ref(), Some(&after))),
                        None => {
                            files.push(change(n, None, Some(&after)));
                            created += 1;
                        }
                    }
                    self.put(n, after)?;
                }
                (None, None) => unreachable!("rejected above"),
            }
        }
        let mut detail = format!(
            "{} in {}",
            plural(hunks, "hunk", "hunks"),
            plural(diffs.len(), "file", "files")
        );
        let extras: Vec<String> = [
            (created, "created"),
            (deleted, "deleted"),
            (renamed, "renamed"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !extras.is_empty() {
            detail.push_str(&format!(" ({})", extras.join(", ")));
        }
        Ok((files, detail))
    }

    fn finish(self, results: Vec<OpResult>) -> Staged {
        fn as_file(e: &Entry) -> Option<Option<&FileData>> {
            match e {
                Entry::Absent => Some(None),
                Entry::File(d) => Some(Some(d)),
                Entry::Dir | Entry::Other(_) => None,
            }
        }
        let mut changes = BTreeMap::new();
        let mut originals = BTreeMap::new();
        for (path, cur) in &self.current {
            let orig = &self.original[path];
            if let (Some(o), Some(c)) = (as_file(orig), as_file(cur)) {
                if o != c {
                    changes.insert(path.clone(), c.cloned());
                    originals.insert(path.clone(), o.cloned());
                }
            }
        }
        // Only the created directories that hold a file at the end: one made for a
        // file that was then deleted or moved away is not created at all.
        let needed: BTreeSet<RelPath> = changes
            .iter()
            .filter(|(_, c)| c.is_some())
            .flat_map(|(p, _)| p.ancestors())
            .collect();
        let mut new_dirs: Vec<RelPath> = self
            .created_dirs
            .into_iter()
            .filter(|d| needed.contains(d))
            .collect();
        new_dirs.sort_by(|a, b| {
            let depth = |p: &RelPath| p.as_str().matches('/').count();
            depth(a).cmp(&depth(b)).then_with(|| a.cmp(b))
        });
        Staged {
            changes,
            originals,
            new_dirs,
            results,
        }
    }
}

/// Applies one file's diff text to `base`. Returns the new content and the
/// number of hunks. Empty text leaves the content unchanged.
fn apply_diff(base: &[u8], text: &str, path: &RelPath) -> Result<(Vec<u8>, usize)> {
    if text.is_empty() {
        return Ok((base.to_vec(), 0));
    }
    let patch = diffy::Patch::from_bytes(text.as_bytes())
        .map_err(|e| StageError::diff(format!("the diff for {path} cannot be parsed: {e}")))?;
    let total = patch.hunks().len();
    let out = diffy::apply_bytes(base, &patch).map_err(|e| {
        // diffy reports "error applying hunk #N" (1-based) and keeps N private.
        let shown = e.to_string();
        let hunk = shown
            .rsplit('#')
            .next()
            .and_then(|n| n.trim().parse::<usize>().ok())
            .filter(|n| (1..=total).contains(n));
        match hunk {
            Some(n) => {
                let h = &patch.hunks()[n - 1];
                StageError::diff(format!(
                    "diff does not apply to {path}: hunk {n} of {total} (@@ -{} +{} @@) does not match the file",
                    h.old_range(),
                    h.new_range()
                ))
            }
            None => StageError::diff(format!("diff does not apply to {path}: {shown}")),
        }
    })?;
    Ok((out, total))
}

#[cfg(test)]
mod tests;
