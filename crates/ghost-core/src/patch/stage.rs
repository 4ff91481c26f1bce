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
            op: op_name(op),
            files,
            detail,
        });
    }
    Ok(ov.finish(results))
}

fn op_name(op: &Operation) -> &'static str {
    match op {
        Operation::Write { .. } => "write",
        Operation::Replace { .. } => "replace",
        Operation::Regex { .. } => "regex",
        Operation::Delete { .. } => "delete",
        Operation::Rename { .. } => "rename",
        Operation::Chmod { .. } => "chmod",
        Operation::Diff { .. } => "diff",
    }
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
        }
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEF: u32 = 0o644;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }
    fn fd(bytes: &[u8], mode: u32) -> FileData {
        FileData {
            bytes: bytes.to_vec(),
            mode,
        }
    }
    fn write(path: &str, content: &str) -> Operation {
        Operation::Write {
            path: p(path),
            content: content.as_bytes().to_vec(),
            mode: None,
            expect_md5: None,
        }
    }
    fn write_full(
        path: &str,
        content: &str,
        mode: Option<u32>,
        expect: Option<Option<&str>>,
    ) -> Operation {
        Operation::Write {
            path: p(path),
            content: content.as_bytes().to_vec(),
            mode,
            expect_md5: expect.map(|e| e.map(str::to_string)),
        }
    }
    fn replace(path: &str, find: &str, with: &str, count: usize) -> Operation {
        Operation::Replace {
            path: p(path),
            find: find.into(),
            replace: with.into(),
            count,
        }
    }
    fn regex(path: &str, pattern: &str, replacement: &str, count: Option<usize>) -> Operation {
        Operation::Regex {
            path: p(path),
            pattern: pattern.into(),
            replacement: replacement.into(),
            count,
        }
    }
    fn delete(path: &str, expect: Option<&str>) -> Operation {
        Operation::Delete {
            path: p(path),
            expect_md5: expect.map(str::to_string),
        }
    }
    fn rename(from: &str, to: &str) -> Operation {
        Operation::Rename {
            from: p(from),
            to: p(to),
        }
    }
    fn chmod(path: &str, mode: u32) -> Operation {
        Operation::Chmod {
            path: p(path),
            mode,
        }
    }
    fn file_diff(old: Option<&str>, new: Option<&str>, mode: Option<u32>, text: &str) -> FileDiff {
        FileDiff {
            old_path: old.map(p),
            new_path: new.map(p),
            new_mode: mode,
            text: text.into(),
        }
    }
    fn ok(ops: &[Operation], tree: &MemTree) -> Staged {
        stage(ops, tree, DEF).unwrap_or_else(|e| panic!("stage failed: {e}"))
    }
    fn err(ops: &[Operation], tree: &MemTree) -> StageError {
        match stage(ops, tree, DEF) {
            Ok(s) => panic!("stage succeeded: {:?}", s.changes),
            Err(e) => e,
        }
    }
    fn md5(s: &[u8]) -> Option<String> {
        Some(md5_hex(s))
    }
    /// The tree's files after applying `staged`.
    fn after(tree: &MemTree, staged: &Staged) -> BTreeMap<String, (String, u32)> {
        let mut t = tree.clone();
        t.apply(staged);
        t.files()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    (String::from_utf8_lossy(&v.bytes).into_owned(), v.mode),
                )
            })
            .collect()
    }
    fn files_of(pairs: &[(&str, &str, u32)]) -> BTreeMap<String, (String, u32)> {
        pairs
            .iter()
            .map(|(k, v, m)| (k.to_string(), (v.to_string(), *m)))
            .collect()
    }

    // ---------- MemTree ----------

    #[test]
    fn memtree_entries() {
        let t = MemTree::new()
            .with_file("a/b/c.txt", "x", 0o600)
            .with_dir("empty")
            .with_other("link", "symlink")
            .with_io_error("bad");
        assert_eq!(
            t.entry(&p("a/b/c.txt")).unwrap(),
            Entry::File(fd(b"x", 0o600))
        );
        assert_eq!(t.entry(&p("a")).unwrap(), Entry::Dir);
        assert_eq!(t.entry(&p("a/b")).unwrap(), Entry::Dir);
        assert_eq!(t.entry(&p("empty")).unwrap(), Entry::Dir);
        assert_eq!(t.entry(&p("link")).unwrap(), Entry::Other("symlink".into()));
        assert_eq!(t.entry(&p("a/b/c")).unwrap(), Entry::Absent);
        assert_eq!(t.entry(&p("ab")).unwrap(), Entry::Absent);
        assert!(t.entry(&p("bad")).is_err());
    }

    // ---------- write ----------

    #[test]
    fn write_creates_file_and_missing_dirs() {
        let tree = MemTree::new().with_file("a/keep.txt", "k", DEF);
        let s = ok(&[write("a/b/c/new.txt", "hello")], &tree);
        assert_eq!(s.changes.len(), 1);
        assert_eq!(s.changes[&p("a/b/c/new.txt")], Some(fd(b"hello", DEF)));
        assert_eq!(s.originals[&p("a/b/c/new.txt")], None);
        assert_eq!(s.new_dirs, vec![p("a/b"), p("a/b/c")]);
        assert_eq!(
            s.results,
            vec![OpResult {
                index: 0,
                op: "write",
                files: vec![FileChange {
                    path: "a/b/c/new.txt".into(),
                    md5_before: None,
                    md5_after: md5(b"hello"),
                }],
                detail: "created (5 bytes)".into(),
            }]
        );
    }

    #[test]
    fn write_mode_rules() {
        let tree = MemTree::new().with_file("run.sh", "old", 0o755);
        // Existing file keeps its mode.
        let s = ok(&[write("run.sh", "new")], &tree);
        assert_eq!(s.changes[&p("run.sh")], Some(fd(b"new", 0o755)));
        assert_eq!(s.originals[&p("run.sh")], Some(fd(b"old", 0o755)));
        assert_eq!(s.results[0].detail, "rewritten (3 bytes)");
        // Explicit mode wins.
        let s = ok(&[write_full("run.sh", "new", Some(0o700), None)], &tree);
        assert_eq!(s.changes[&p("run.sh")], Some(fd(b"new", 0o700)));
        // New file without mode: the default.
        let s = stage(&[write("n", "x")], &tree, 0o600).unwrap();
        assert_eq!(s.changes[&p("n")], Some(fd(b"x", 0o600)));
        // Invalid mode.
        let e = err(&[write_full("n", "x", Some(0o120777), None)], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
    }

    #[test]
    fn write_expect_md5() {
        let tree = MemTree::new().with_file("a", "one", DEF);
        let h = md5_hex(b"one");
        let s = ok(&[write_full("a", "two", None, Some(Some(&h)))], &tree);
        assert_eq!(s.changes[&p("a")], Some(fd(b"two", DEF)));
        // Upper-case hex is accepted.
        ok(
            &[write_full("a", "two", None, Some(Some(&h.to_uppercase())))],
            &tree,
        );

        let wrong = md5_hex(b"other");
        let e = err(&[write_full("a", "two", None, Some(Some(&wrong)))], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert_eq!(e.index, Some(0));
        assert!(
            e.message.contains(&wrong) && e.message.contains(&h) && e.message.contains('a'),
            "{e}"
        );

        let e = err(&[write_full("a", "two", None, Some(None))], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert!(
            e.message.contains("no file") && e.message.contains(&h),
            "{e}"
        );

        let e = err(&[write_full("b", "two", None, Some(Some(&h)))], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert!(e.message.contains("absent"), "{e}");

        let s = ok(&[write_full("b", "two", None, Some(None))], &tree);
        assert_eq!(s.changes[&p("b")], Some(fd(b"two", DEF)));
    }

    #[test]
    fn write_conflicts() {
        let tree = MemTree::new()
            .with_file("f", "x", DEF)
            .with_file("d/inner", "x", DEF)
            .with_other("link", "symlink")
            .with_other("sock", "socket");
        for (path, needle) in [
            ("d", "directory"),
            ("f/child", "f is a file"),
            ("link", "symlink"),
            ("link/x", "symlink"),
            ("link/x/y", "symlink"),
            ("sock", "socket"),
        ] {
            let e = err(&[write(path, "y")], &tree);
            assert_eq!(e.kind, StageErrorKind::Conflict, "{path}: {e}");
            assert!(e.message.contains(needle), "{path}: {e}");
        }
        let e = err(&[write("link/x", "y")], &tree);
        assert!(
            e.message.contains("never reads or writes through links"),
            "{e}"
        );
    }

    // ---------- replace ----------

    #[test]
    fn replace_success_and_counts() {
        let tree = MemTree::new().with_file("a.txt", "foo bar foo\n", 0o600);
        let s = ok(&[replace("a.txt", "foo", "baz", 2)], &tree);
        assert_eq!(s.changes[&p("a.txt")], Some(fd(b"baz bar baz\n", 0o600)));
        assert_eq!(s.results[0].detail, "2 replacements");
        assert_eq!(s.results[0].files[0].md5_before, md5(b"foo bar foo\n"));
        assert_eq!(s.results[0].files[0].md5_after, md5(b"baz bar baz\n"));

        let e = err(&[replace("a.txt", "foo", "baz", 1)], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert_eq!(
            e.message,
            "expected 1 occurrence of \"foo\" in a.txt, found 2"
        );
        // Non-overlapping, like str::matches.
        let tree2 = MemTree::new().with_file("b", "aaaa", DEF);
        let s = ok(&[replace("b", "aa", "x", 2)], &tree2);
        assert_eq!(s.changes[&p("b")], Some(fd(b"xx", DEF)));
        // Long find text is truncated.
        let long = "y".repeat(200);
        let e = err(&[replace("a.txt", &long, "z", 1)], &tree);
        assert!(
            e.message.contains(&format!("\"{}\"…", "y".repeat(80))),
            "{e}"
        );
        assert!(!e.message.contains(&"y".repeat(81)));
    }

    #[test]
    fn replace_failures() {
        let tree = MemTree::new()
            .with_file("bin", vec![0xff, 0xfe, b'a'], DEF)
            .with_dir("dir")
            .with_other("link", "symlink");
        let e = err(&[replace("missing", "a", "b", 1)], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert_eq!(e.message, "missing does not exist");
        let e = err(&[replace("bin", "a", "b", 1)], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert_eq!(e.message, "bin is not UTF-8 text");
        assert_eq!(
            err(&[replace("dir", "a", "b", 1)], &tree).kind,
            StageErrorKind::Conflict
        );
        assert_eq!(
            err(&[replace("link", "a", "b", 1)], &tree).kind,
            StageErrorKind::Conflict
        );
        // Under a missing directory: simply absent.
        assert_eq!(
            err(&[replace("no/such", "a", "b", 1)], &tree).kind,
            StageErrorKind::Precondition
        );
    }

    // ---------- regex ----------

    #[test]
    fn regex_success_and_failures() {
        let tree = MemTree::new().with_file("c.txt", "v1 v22 x\n", DEF);
        let s = ok(&[regex("c.txt", r"v(\d+)", "w$1", None)], &tree);
        assert_eq!(s.changes[&p("c.txt")], Some(fd(b"w1 w22 x\n", DEF)));
        assert_eq!(s.results[0].detail, "2 matches replaced");
        let s = ok(
            &[regex("c.txt", r"v(?P<n>\d+)", "${n}_${1}", Some(2))],
            &tree,
        );
        assert_eq!(s.changes[&p("c.txt")], Some(fd(b"1_1 22_22 x\n", DEF)));

        let e = err(&[regex("c.txt", r"q\d", "", None)], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert!(e.message.contains("does not match c.txt"), "{e}");
        let e = err(&[regex("c.txt", r"v\d+", "", Some(3))], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert!(
            e.message.contains("expected 3 matches") && e.message.contains("found 2"),
            "{e}"
        );
        let e = err(&[regex("c.txt", r"(", "", None)], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert!(e.message.contains("invalid regular expression"), "{e}");
        assert_eq!(
            err(&[regex("nope", "a", "", None)], &tree).kind,
            StageErrorKind::Precondition
        );
        let bin = MemTree::new().with_file("b", vec![0xc3, 0x28], DEF);
        assert_eq!(
            err(&[regex("b", "a", "", None)], &bin).kind,
            StageErrorKind::Precondition
        );
    }

    // ---------- delete ----------

    #[test]
    fn delete_success_and_failures() {
        let tree = MemTree::new()
            .with_file("old.txt", "bye", DEF)
            .with_file("d/x", "", DEF);
        let s = ok(&[delete("old.txt", Some(&md5_hex(b"bye")))], &tree);
        assert_eq!(s.changes[&p("old.txt")], None);
        assert_eq!(s.originals[&p("old.txt")], Some(fd(b"bye", DEF)));
        assert_eq!(s.results[0].detail, "deleted");
        assert_eq!(s.results[0].files[0].md5_after, None);
        assert!(s.new_dirs.is_empty());

        let e = err(&[delete("old.txt", Some(&md5_hex(b"hi")))], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert!(e.message.contains(&md5_hex(b"bye")), "{e}");
        let e = err(&[delete("gone", None)], &tree);
        assert_eq!(
            (e.kind, e.message.as_str()),
            (StageErrorKind::Precondition, "gone does not exist")
        );
        assert_eq!(
            err(&[delete("d", None)], &tree).kind,
            StageErrorKind::Conflict
        );
    }

    // ---------- rename ----------

    #[test]
    fn rename_success_and_failures() {
        let tree = MemTree::new()
            .with_file("a.txt", "A", 0o755)
            .with_file("b.txt", "B", DEF)
            .with_dir("dir");
        let s = ok(&[rename("a.txt", "new/place/a.txt")], &tree);
        assert_eq!(s.changes[&p("a.txt")], None);
        assert_eq!(s.changes[&p("new/place/a.txt")], Some(fd(b"A", 0o755)));
        assert_eq!(s.originals[&p("new/place/a.txt")], None);
        assert_eq!(s.new_dirs, vec![p("new"), p("new/place")]);
        assert_eq!(
            s.results[0].files,
            vec![
                FileChange {
                    path: "a.txt".into(),
                    md5_before: md5(b"A"),
                    md5_after: None
                },
                FileChange {
                    path: "new/place/a.txt".into(),
                    md5_before: None,
                    md5_after: md5(b"A")
                },
            ]
        );

        let e = err(&[rename("a.txt", "b.txt")], &tree);
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert_eq!(e.message, "b.txt already exists");
        assert_eq!(
            err(&[rename("a.txt", "a.txt")], &tree).kind,
            StageErrorKind::Precondition
        );
        assert_eq!(
            err(&[rename("zz", "yy")], &tree).kind,
            StageErrorKind::Precondition
        );
        assert_eq!(
            err(&[rename("a.txt", "dir")], &tree).kind,
            StageErrorKind::Conflict
        );
        assert_eq!(
            err(&[rename("dir", "x")], &tree).kind,
            StageErrorKind::Conflict
        );
        // Moving a file under itself: it is still a file when its child is created.
        assert_eq!(
            err(&[rename("a.txt", "a.txt/x")], &tree).kind,
            StageErrorKind::Conflict
        );
    }

    // ---------- chmod ----------

    #[test]
    fn chmod_success_and_failures() {
        let tree = MemTree::new()
            .with_file("run.sh", "#!/bin/sh\n", DEF)
            .with_dir("d");
        let s = ok(&[chmod("run.sh", 0o755)], &tree);
        assert_eq!(s.changes[&p("run.sh")], Some(fd(b"#!/bin/sh\n", 0o755)));
        assert_eq!(s.results[0].detail, "mode 0755 (was 0644)");
        assert_eq!(
            s.results[0].files[0].md5_before,
            s.results[0].files[0].md5_after
        );
        // git's regular-file mode is accepted.
        let s = ok(&[chmod("run.sh", 0o100755)], &tree);
        assert_eq!(s.changes[&p("run.sh")], Some(fd(b"#!/bin/sh\n", 0o755)));

        for bad in [0o120777, 0o40755, 0o17777] {
            let e = err(&[chmod("run.sh", bad)], &tree);
            assert_eq!(e.kind, StageErrorKind::Precondition, "{bad:o}");
        }
        assert_eq!(
            err(&[chmod("nope", 0o755)], &tree).kind,
            StageErrorKind::Precondition
        );
        assert_eq!(
            err(&[chmod("d", 0o755)], &tree).kind,
            StageErrorKind::Conflict
        );
    }

    // ---------- sequences ----------

    #[test]
    fn ops_see_earlier_effects() {
        let tree = MemTree::new();
        let s = ok(
            &[
                write("a.txt", "hello world\n"),
                replace("a.txt", "world", "there", 1),
            ],
            &tree,
        );
        assert_eq!(s.changes.len(), 1);
        assert_eq!(s.changes[&p("a.txt")], Some(fd(b"hello there\n", DEF)));
        assert_eq!(s.originals[&p("a.txt")], None);
        assert_eq!(s.results[1].files[0].md5_before, md5(b"hello world\n"));
        assert_eq!(s.results[1].files[0].md5_after, md5(b"hello there\n"));
        assert_eq!(
            s.results[0].files[0].md5_after,
            s.results[1].files[0].md5_before
        );

        // Rename then modify under the new name; the old name is gone.
        let tree = MemTree::new().with_file("x", "1\n", DEF);
        let s = ok(
            &[
                rename("x", "y"),
                regex("y", "1", "2", Some(1)),
                chmod("y", 0o700),
            ],
            &tree,
        );
        assert_eq!(s.changes[&p("x")], None);
        assert_eq!(s.changes[&p("y")], Some(fd(b"2\n", 0o700)));
        let e = err(&[rename("x", "y"), replace("x", "1", "2", 1)], &tree);
        assert_eq!(e.index, Some(1));
        assert_eq!(e.kind, StageErrorKind::Precondition);
        assert_eq!(e.to_string(), "operations[1]: x does not exist");

        // Delete then recreate with other content.
        let s = ok(
            &[delete("x", None), write_full("x", "new", None, Some(None))],
            &tree,
        );
        assert_eq!(s.changes[&p("x")], Some(fd(b"new", DEF)));
        assert_eq!(s.originals[&p("x")], Some(fd(b"1\n", DEF)));
        // Delete then delete again fails.
        let e = err(&[delete("x", None), delete("x", None)], &tree);
        assert_eq!(e.index, Some(1));
    }

    #[test]
    fn no_op_patches_change_nothing() {
        let tree = MemTree::new().with_file("a", "same", 0o755);
        for ops in [
            vec![],
            vec![write("a", "same")],
            vec![replace("a", "same", "same", 1)],
            vec![chmod("a", 0o755)],
            vec![
                delete("a", None),
                write_full("a", "same", Some(0o755), None),
            ],
            vec![rename("a", "b"), rename("b", "a")],
            vec![write("n/m/new", "x"), delete("n/m/new", None)],
            vec![write("a", "other"), write("a", "same")],
        ] {
            let s = ok(&ops, &tree);
            assert!(s.changes.is_empty(), "{ops:?}: {:?}", s.changes);
            assert!(s.originals.is_empty());
            assert!(s.new_dirs.is_empty(), "{ops:?}: {:?}", s.new_dirs);
            assert_eq!(s.results.len(), ops.len());
        }
        let s = ok(&[write("a", "same")], &tree);
        assert_eq!(s.results[0].detail, "unchanged (4 bytes)");
    }

    #[test]
    fn new_dirs_are_shallowest_first_and_only_needed_ones() {
        let tree = MemTree::new().with_file("top/f", "", DEF);
        let s = ok(
            &[
                write("z/y/x/f", "1"),
                write("top/a/b", "2"),
                write("a/f", "3"),
                write("gone/f", "4"),
                delete("gone/f", None),
                write("moved/f", "5"),
                rename("moved/f", "z/g"),
            ],
            &tree,
        );
        assert_eq!(
            s.new_dirs,
            vec![p("a"), p("z"), p("top/a"), p("z/y"), p("z/y/x")]
        );
        let final_files = after(&tree, &s);
        assert_eq!(final_files.len(), 5);
    }

    #[test]
    fn file_deleted_then_used_as_directory_is_a_conflict() {
        let tree = MemTree::new().with_file("x", "file", DEF);
        let e = err(&[delete("x", None), write("x/y", "z")], &tree);
        assert_eq!(e.kind, StageErrorKind::Conflict);
        assert_eq!(e.index, Some(1));
        assert!(e.message.contains("deleted earlier in this patch"), "{e}");
        // A directory created by the patch cannot become a file either.
        let e = err(
            &[write("d/f", "1"), delete("d/f", None), write("d", "2")],
            &MemTree::new(),
        );
        assert_eq!(e.kind, StageErrorKind::Conflict);
    }

    #[test]
    fn io_errors_are_transient() {
        // "a/bad" is only read when "a" is a directory: below a missing one the
        // view is not asked.
        let tree = MemTree::new()
            .with_dir("a")
            .with_io_error("a/bad")
            .with_io_error("dir");
        ok(
            &[write("elsewhere/bad", "x")],
            &MemTree::new().with_io_error("elsewhere/bad"),
        );
        let e = err(&[write("ok", "1"), write("a/bad", "x")], &tree);
        assert_eq!(e.kind, StageErrorKind::Io);
        assert_eq!(e.index, Some(1));
        assert!(e.is_transient());
        assert!(e.message.contains("injected"), "{e}");
        // An unreadable ancestor too.
        assert_eq!(
            err(&[replace("dir/f", "a", "b", 1)], &tree).kind,
            StageErrorKind::Io
        );
        assert!(!err(&[delete("nope", None)], &tree).is_transient());
    }

    #[test]
    fn error_display_and_serialisation() {
        let e = StageError {
            index: Some(3),
            kind: StageErrorKind::DiffDoesNotApply,
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "operations[3]: m");
        let e = StageError { index: None, ..e };
        assert_eq!(e.to_string(), "m");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "diff_does_not_apply");
    }

    // ---------- diff ----------

    #[test]
    fn multi_file_git_diff() {
        let tree = MemTree::new()
            .with_file("src/x.rs", "a\nb\nc\n", DEF)
            .with_file("gone.txt", "bye\nnow\n", DEF)
            .with_file("old/name.txt", "1\n2\n3\n", 0o600)
            .with_file("run.sh", "echo\n", DEF);
        let files = vec![
            file_diff(
                Some("src/x.rs"),
                Some("src/x.rs"),
                None,
                "--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
            ),
            file_diff(
                None,
                Some("new/dir/y.txt"),
                Some(0o100755),
                "--- /dev/null\n+++ b/new/dir/y.txt\n@@ -0,0 +1,2 @@\n+fresh\n+file\n",
            ),
            file_diff(
                Some("gone.txt"),
                None,
                None,
                "--- a/gone.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-bye\n-now\n",
            ),
            file_diff(
                Some("old/name.txt"),
                Some("renamed.txt"),
                None,
                "--- a/old/name.txt\n+++ b/renamed.txt\n@@ -1,3 +1,3 @@\n 1\n-2\n+two\n 3\n",
            ),
            file_diff(Some("run.sh"), Some("run.sh"), Some(0o100755), ""),
        ];
        let s = ok(&[Operation::Diff { files }], &tree);
        assert_eq!(
            after(&tree, &s),
            files_of(&[
                ("src/x.rs", "a\nB\nc\n", DEF),
                ("new/dir/y.txt", "fresh\nfile\n", 0o755),
                ("renamed.txt", "1\ntwo\n3\n", 0o600),
                ("run.sh", "echo\n", 0o755),
            ])
        );
        assert_eq!(s.changes.len(), 6);
        assert_eq!(s.originals[&p("gone.txt")], Some(fd(b"bye\nnow\n", DEF)));
        assert_eq!(s.new_dirs, vec![p("new"), p("new/dir")]);
        let r = &s.results[0];
        assert_eq!(r.op, "diff");
        assert_eq!(
            r.detail,
            "4 hunks in 5 files (1 created, 1 deleted, 1 renamed)"
        );
        let touched: Vec<(&str, bool, bool)> = r
            .files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.md5_before.is_some(),
                    f.md5_after.is_some(),
                )
            })
            .collect();
        assert_eq!(
            touched,
            [
                ("src/x.rs", true, true),
                ("new/dir/y.txt", false, true),
                ("gone.txt", true, false),
                ("old/name.txt", true, false),
                ("renamed.txt", false, true),
                ("run.sh", true, true),
            ]
        );
    }

    #[test]
    fn diff_sees_earlier_ops_and_applies_at_offset() {
        let tree = MemTree::new().with_file("f", "1\n2\n3\n", DEF);
        let d = file_diff(
            Some("f"),
            Some("f"),
            None,
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n 2\n-3\n+three\n",
        );
        let s = ok(
            &[
                write("f", "0\n1\n2\n3\n"),
                Operation::Diff { files: vec![d] },
            ],
            &tree,
        );
        assert_eq!(s.changes[&p("f")], Some(fd(b"0\n1\n2\nthree\n", DEF)));
        assert_eq!(s.results[1].detail, "1 hunk in 1 file");
    }

    #[test]
    fn diff_context_mismatch_does_not_apply() {
        let tree = MemTree::new().with_file("x", "a\nb\nc\nd\ne\nf\ng\n", DEF);
        let text = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n@@ -5,3 +5,3 @@\n e\n-NOT THERE\n+F\n g\n";
        let e = err(
            &[
                write("other", "1"),
                Operation::Diff {
                    files: vec![file_diff(Some("x"), Some("x"), None, text)],
                },
            ],
            &tree,
        );
        assert_eq!(e.kind, StageErrorKind::DiffDoesNotApply);
        assert_eq!(e.index, Some(1));
        assert_eq!(
            e.message,
            "diff does not apply to x: hunk 2 of 2 (@@ -5,3 +5,3 @@) does not match the file"
        );
        // Unparseable text.
        let e = err(
            &[Operation::Diff {
                files: vec![file_diff(Some("x"), Some("x"), None, "@@ garbage\n")],
            }],
            &tree,
        );
        assert_eq!(e.kind, StageErrorKind::DiffDoesNotApply);
        assert!(e.message.contains("cannot be parsed"), "{e}");
        // A deletion whose hunks leave content behind.
        let e = err(
            &[Operation::Diff {
                files: vec![file_diff(
                    Some("x"),
                    None,
                    None,
                    "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n",
                )],
            }],
            &tree,
        );
        assert_eq!(e.kind, StageErrorKind::DiffDoesNotApply);
        assert!(e.message.contains("leave"), "{e}");
    }

    #[test]
    fn diff_preconditions() {
        let tree = MemTree::new()
            .with_file("x", "a\n", DEF)
            .with_file("y", "b\n", DEF)
            .with_dir("d");
        let create = |path: &str| Operation::Diff {
            files: vec![file_diff(
                None,
                Some(path),
                None,
                &format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+n\n"),
            )],
        };
        let e = err(&[create("x")], &tree);
        assert_eq!(
            (e.kind, e.message.as_str()),
            (StageErrorKind::Precondition, "x already exists")
        );
        assert_eq!(err(&[create("d")], &tree).kind, StageErrorKind::Conflict);
        assert_eq!(err(&[create("x/z")], &tree).kind, StageErrorKind::Conflict);
        let s = ok(&[create("d/new")], &tree);
        assert_eq!(s.changes[&p("d/new")], Some(fd(b"n\n", DEF)));
        assert!(s.new_dirs.is_empty());

        let modify_missing = Operation::Diff {
            files: vec![file_diff(
                Some("m"),
                Some("m"),
                None,
                "--- a/m\n+++ b/m\n@@ -1 +1 @@\n-a\n+b\n",
            )],
        };
        assert_eq!(
            err(&[modify_missing], &tree).kind,
            StageErrorKind::Precondition
        );
        let rename_onto = Operation::Diff {
            files: vec![file_diff(Some("x"), Some("y"), None, "")],
        };
        assert_eq!(
            err(&[rename_onto], &tree).kind,
            StageErrorKind::Precondition
        );
        let neither = Operation::Diff {
            files: vec![file_diff(None, None, None, "")],
        };
        assert_eq!(err(&[neither], &tree).kind, StageErrorKind::Precondition);
        // Deleting with no hunks (e.g. an empty file) is fine.
        let s = ok(
            &[Operation::Diff {
                files: vec![file_diff(Some("y"), None, None, "")],
            }],
            &tree,
        );
        assert_eq!(s.changes[&p("y")], None);
    }

    #[test]
    fn diff_works_on_non_utf8_files() {
        let tree = MemTree::new().with_file("bin", b"\xff\xfe\nline2\n".to_vec(), DEF);
        let d = file_diff(
            Some("bin"),
            Some("bin"),
            None,
            "--- a/bin\n+++ b/bin\n@@ -2 +2 @@\n-line2\n+LINE2\n",
        );
        let s = ok(&[Operation::Diff { files: vec![d] }], &tree);
        assert_eq!(s.changes[&p("bin")], Some(fd(b"\xff\xfe\nLINE2\n", DEF)));
    }

    #[test]
    fn diff_missing_newline_at_eof() {
        let tree = MemTree::new().with_file("n", "a\nb", DEF);
        let text = "--- a/n\n+++ b/n\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n";
        let s = ok(
            &[Operation::Diff {
                files: vec![file_diff(Some("n"), Some("n"), None, text)],
            }],
            &tree,
        );
        assert_eq!(s.changes[&p("n")], Some(fd(b"a\nc\n", DEF)));
    }

    // ---------- property: staging agrees with a naive sequential model ----------

    #[derive(Debug, Clone)]
    enum MOp {
        Write(usize, usize, Option<u32>, Option<Option<usize>>),
        Delete(usize),
        Rename(usize, usize),
    }

    const CONTENTS: [&str; 3] = ["", "x", "y\n"];

    fn to_op(op: &MOp, paths: &[&str]) -> Operation {
        match op {
            MOp::Write(i, c, mode, expect) => write_full(
                paths[*i],
                CONTENTS[*c],
                *mode,
                expect
                    .map(|e| e.map(|c| md5_hex(CONTENTS[c].as_bytes())))
                    .as_ref()
                    .map(|e| e.as_deref()),
            ),
            MOp::Delete(i) => delete(paths[*i], None),
            MOp::Rename(a, b) => rename(paths[*a], paths[*b]),
        }
    }

    type Model = BTreeMap<RelPath, FileData>;

    /// Applies one op to the model; `None` when a file-level precondition fails.
    fn model_step(m: &mut Model, op: &MOp, paths: &[&str]) -> Option<()> {
        match op {
            MOp::Write(i, c, mode, expect) => {
                let path = p(paths[*i]);
                let cur = m.get(&path);
                if let Some(e) = expect {
                    let want = e.map(|c| CONTENTS[c].as_bytes().to_vec());
                    if cur.map(|d| d.bytes.clone()) != want {
                        return None;
                    }
                }
                let mode = mode.or(cur.map(|d| d.mode)).unwrap_or(DEF);
                m.insert(path, fd(CONTENTS[*c].as_bytes(), mode));
            }
            MOp::Delete(i) => {
                m.remove(&p(paths[*i]))?;
            }
            MOp::Rename(a, b) => {
                let (a, b) = (p(paths[*a]), p(paths[*b]));
                if m.contains_key(&b) {
                    return None;
                }
                let d = m.remove(&a)?;
                m.insert(b, d);
            }
        }
        Some(())
    }

    fn mop(n: usize) -> impl Strategy<Value = MOp> {
        let mode = prop::option::of(prop::sample::select(vec![0o644u32, 0o755]));
        let expect = prop::option::of(prop::option::of(0..CONTENTS.len()));
        prop_oneof![
            3 => (0..n, 0..CONTENTS.len(), mode, expect).prop_map(|(i, c, m, e)| MOp::Write(i, c, m, e)),
            2 => (0..n).prop_map(MOp::Delete),
            2 => (0..n, 0..n).prop_map(|(a, b)| MOp::Rename(a, b)),
        ]
    }

    fn initial(n: usize) -> impl Strategy<Value = Vec<Option<(usize, bool)>>> {
        prop::collection::vec(prop::option::of((0..CONTENTS.len(), any::<bool>())), n)
    }

    fn check(
        paths: &[&str],
        init: &[Option<(usize, bool)>],
        ops: &[MOp],
        must_succeed_if_model_does: bool,
    ) -> Result<(), TestCaseError> {
        let mut tree = MemTree::new();
        let mut model = Model::new();
        for (i, f) in init.iter().enumerate() {
            if let Some((c, exec)) = f {
                let mode = if *exec { 0o755 } else { DEF };
                // Skip files that would make the initial tree inconsistent
                // (a file with a file as ancestor).
                let path = p(paths[i]);
                if path.ancestors().iter().any(|a| model.contains_key(a))
                    || model.keys().any(|k| k.ancestors().contains(&path))
                {
                    continue;
                }
                tree = tree.with_file(paths[i], CONTENTS[*c], mode);
                model.insert(path, fd(CONTENTS[*c].as_bytes(), mode));
            }
        }
        let initial_model = model.clone();
        let real_ops: Vec<Operation> = ops.iter().map(|o| to_op(o, paths)).collect();
        let mut model_ok = true;
        let mut states = vec![model.clone()];
        for op in ops {
            if model_step(&mut model, op, paths).is_none() {
                model_ok = false;
                break;
            }
            states.push(model.clone());
        }
        match stage(&real_ops, &tree, DEF) {
            Err(e) => {
                prop_assert!(e.index.is_some());
                prop_assert_ne!(e.kind, StageErrorKind::Io);
                if must_succeed_if_model_does {
                    prop_assert!(!model_ok, "stage failed but the model succeeded: {}", e);
                }
            }
            Ok(s) => {
                prop_assert!(model_ok, "stage succeeded but the model failed");
                // Same keys; changes differ from originals; originals are the initial tree.
                prop_assert_eq!(
                    s.changes.keys().collect::<Vec<_>>(),
                    s.originals.keys().collect::<Vec<_>>()
                );
                for (k, v) in &s.changes {
                    prop_assert_ne!(v, &s.originals[k]);
                    prop_assert_eq!(&s.originals[k], &initial_model.get(k).cloned());
                }
                let mut applied = initial_model.clone();
                for (k, v) in &s.changes {
                    match v {
                        Some(d) => applied.insert(k.clone(), d.clone()),
                        None => applied.remove(k),
                    };
                }
                prop_assert_eq!(&applied, &model);
                // Every directory the final files need either existed or is in new_dirs.
                for k in model.keys() {
                    for a in k.ancestors() {
                        let existed = initial_model.keys().any(|f| f.ancestors().contains(&a));
                        prop_assert!(
                            existed != s.new_dirs.contains(&a),
                            "dir {} existed={}",
                            a,
                            existed
                        );
                    }
                }
                // Per-op md5 chain matches the model's intermediate states.
                prop_assert_eq!(s.results.len(), ops.len());
                for (i, r) in s.results.iter().enumerate() {
                    for f in &r.files {
                        let k = p(&f.path);
                        prop_assert_eq!(
                            &f.md5_before,
                            &states[i].get(&k).map(|d| md5_hex(&d.bytes))
                        );
                        prop_assert_eq!(
                            &f.md5_after,
                            &states[i + 1].get(&k).map(|d| md5_hex(&d.bytes))
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// No path is an ancestor of another: staging succeeds exactly when the model does.
    const FLAT: [&str; 5] = ["a", "b", "d/e", "d/f", "x/y/z"];
    /// "d" and "d/e" clash: staging may refuse what the model accepts, never the reverse.
    const NESTED: [&str; 5] = ["a", "d", "d/e", "d/f/g", "x/y"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn staging_matches_sequential_model_flat(
            init in initial(FLAT.len()),
            ops in prop::collection::vec(mop(FLAT.len()), 0..8),
        ) {
            check(&FLAT, &init, &ops, true)?;
        }

        #[test]
        fn staging_matches_sequential_model_nested(
            init in initial(NESTED.len()),
            ops in prop::collection::vec(mop(NESTED.len()), 0..8),
        ) {
            check(&NESTED, &init, &ops, false)?;
        }
    }

    // ---------- limits, modes, deadline ----------

    fn small(max_file: u64, max_total: u64) -> StageOptions {
        let mut o = StageOptions::new(DEF);
        o.limits.max_file_bytes = max_file;
        o.limits.max_staged_bytes = max_total;
        o
    }

    #[test]
    fn the_regex_bomb_stops_at_the_file_limit() {
        let mut ops = vec![write("a", "a")];
        ops.extend((0..40).map(|_| regex("a", "a", "aa", None)));
        let e = stage_with(&ops, &MemTree::new(), &small(1 << 16, 1 << 20)).unwrap_err();
        assert_eq!(e.kind, StageErrorKind::Limit);
        // 2^16 bytes are fine, the 17th doubling is not.
        assert_eq!(e.index, Some(17), "{e}");
        assert!(
            e.to_string()
                .contains("the limit is 65536 (limits.max_file_bytes)"),
            "{e}"
        );
        // Group expansion is checked as the result grows.
        let mut ops = vec![write("a", "a")];
        ops.extend((0..40).map(|_| regex("a", "(a)", "$1$1", None)));
        let e = stage_with(&ops, &MemTree::new(), &small(1 << 16, 1 << 20)).unwrap_err();
        assert_eq!((e.kind, e.index), (StageErrorKind::Limit, Some(17)), "{e}");
    }

    #[test]
    fn replace_size_and_the_patch_total_are_bounded() {
        let tree = MemTree::new().with_file("a", "xxxx", DEF);
        let e = stage_with(
            &[replace("a", "x", "0123456789", 4)],
            &tree,
            &small(32, 1 << 20),
        )
        .unwrap_err();
        assert_eq!(e.kind, StageErrorKind::Limit, "{e}");
        let ops = [
            write("a", "0123456789"),
            write("b", "0123456789"),
            write("c", "01"),
        ];
        let e = stage_with(&ops, &MemTree::new(), &small(16, 20)).unwrap_err();
        assert_eq!((e.kind, e.index), (StageErrorKind::Limit, Some(2)), "{e}");
        assert!(e.to_string().contains("limits.max_staged_bytes"), "{e}");
        // A file deleted again no longer counts.
        let ops = [
            write("a", "0123456789"),
            delete("a", None),
            write("b", "0123456789"),
            write("c", "0123456789"),
        ];
        assert!(stage_with(&ops, &MemTree::new(), &small(16, 20)).is_ok());
    }

    #[test]
    fn special_bits_are_refused_even_when_inherited() {
        let tree = MemTree::new().with_file("suid", "x", 0o4755);
        for ops in [
            vec![write_full("n", "x", Some(0o4755), None)],
            vec![chmod("suid", 0o2755)],
            vec![replace("suid", "x", "y", 1)],
            vec![rename("suid", "moved")],
        ] {
            let e = stage(&ops, &tree, DEF).unwrap_err();
            assert_eq!(e.kind, StageErrorKind::Refused, "{ops:?}: {e}");
        }
        // Deleting it, or taking the bits off, is fine.
        assert!(stage(&[delete("suid", None)], &tree, DEF).is_ok());
        assert!(stage(&[chmod("suid", 0o755)], &tree, DEF).is_ok());
        let mut o = StageOptions::new(DEF);
        o.allow_special_modes = true;
        assert!(stage_with(&[chmod("suid", 0o6755)], &tree, &o).is_ok());
    }

    #[test]
    fn staging_past_its_deadline_stops() {
        let mut o = StageOptions::new(DEF);
        o.deadline = Some(std::time::Instant::now());
        let e = stage_with(&[write("a", "x")], &MemTree::new(), &o).unwrap_err();
        assert_eq!(e.kind, StageErrorKind::Deadline);
    }
}
