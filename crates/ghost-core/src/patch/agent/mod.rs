//! The formats coding agents emit, normalised to edits the stager applies:
//! the `apply_patch` envelope (`*** Begin Patch`, [`apply_patch`]), unified
//! diffs read leniently ([`diff`]: hunk line counts are not trusted, line
//! numbers are hints), and SEARCH/REPLACE blocks ([`search_replace`]).
//! [`detect`] finds them in free text (a chat transcript, an agent's log,
//! a file) and turns each into a native patch document.
//!
//! Every format becomes [`FileEdit`]s whose [`Hunk`]s say which lines to find
//! and what to put there; [`matcher`] finds them. Nothing here touches a file:
//! the stager applies the edits against its overlay, so a patch of many files
//! is all or nothing like every other.

use serde::Serialize;

use super::RelPath;

pub mod apply_patch;
pub mod detect;
pub mod diff;
pub mod matcher;
pub mod search_replace;

/// One file's part of an agent's patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileEdit {
    /// Create the file with `content`, or overwrite it (the `apply_patch`
    /// tool's own semantics: `*** Add File` replaces an existing file).
    Add { path: RelPath, content: String },
    /// Remove an existing regular file.
    Delete { path: RelPath },
    /// Change an existing file hunk by hunk, then move it to `move_to` (which
    /// is overwritten if it exists, as the `apply_patch` tool does).
    Update {
        path: RelPath,
        move_to: Option<RelPath>,
        hunks: Vec<Hunk>,
    },
}

impl FileEdit {
    /// The path the edit reads (the source of a move).
    pub fn path(&self) -> &RelPath {
        match self {
            FileEdit::Add { path, .. }
            | FileEdit::Delete { path }
            | FileEdit::Update { path, .. } => path,
        }
    }
}

/// One hunk: lines to find (`old`, context and removals in order) and the
/// lines to put in their place (`new`, context and additions in order). Lines
/// carry no line terminator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hunk {
    /// `@@ <anchor>` lines of an `apply_patch` hunk: each is found, in order,
    /// from the current position, and the hunk is searched after the last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anchors: Vec<String>,
    pub old: Vec<String>,
    pub new: Vec<String>,
    /// `*** End of File`: the old lines must end the file.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub at_eof: bool,
    /// The 1-based line a diff's `@@ -N` header states for `old` (a hint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What a diff's `\ No newline at end of file` markers say about the end
    /// of the file after the hunk: `Some(false)` no final newline, `Some(true)`
    /// one (the marker was on the old side only), `None` unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_newline: Option<bool>,
}

/// Lines of patch text with their terminators (`\n`, `\r\n`) removed; a
/// final terminator does not start another line.
pub(crate) fn text_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if text.is_empty() || text.ends_with('\n') {
        lines.pop();
    }
    lines
}
