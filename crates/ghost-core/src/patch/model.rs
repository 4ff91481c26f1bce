//! The one internal form every accepted patch is normalised to.
//!
//! Native v1 patches and the legacy shapes all parse into [`Patch`]; nothing past
//! the parser looks at the original JSON again. Every path in here is a validated
//! [`RelPath`], so later stages never see an absolute path, `..` or a NUL byte.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A path relative to a target's working tree that passed lexical validation:
/// non-empty, relative, no `..`, no NUL, no empty or `.` components (they are
/// normalised away), `/`-separated. Symlink containment is enforced when the
/// tree is opened (see `ghost_core::fs::tree`), not here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RelPath(String);

impl RelPath {
    /// Validates and normalises `raw`. The error is a human reason without the
    /// field name (the caller knows the field).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("path is empty".into());
        }
        if raw.contains('\0') {
            return Err("path contains a NUL byte".into());
        }
        let absolute = || {
            Err(format!(
                "path {raw:?} is absolute; paths are relative to the target's working tree"
            ))
        };
        if raw.starts_with('/') || raw.starts_with('\\') {
            return absolute();
        }
        if raw.len() > 4096 {
            return Err(format!(
                "path is {} bytes long; the limit is 4096",
                raw.len()
            ));
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => continue,
                ".." => return Err(format!("path {raw:?} contains '..'")),
                p => {
                    if p.chars().any(|c| c.is_control()) {
                        return Err(format!("path {raw:?} contains a control character"));
                    }
                    if p.len() > 255 {
                        return Err(format!(
                            "path {raw:?} has a component longer than 255 bytes"
                        ));
                    }
                    parts.push(p);
                }
            }
        }
        if parts.is_empty() {
            return Err(format!(
                "path {raw:?} names the tree itself, not a file in it"
            ));
        }
        // `./\x` normalises to `\x`, which is refused as absolute on its own:
        // the normalised form must parse to itself.
        if parts[0].starts_with('\\') {
            return absolute();
        }
        Ok(RelPath(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent directory, `None` for a file at the top of the tree.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rsplit_once('/').map(|(p, _)| RelPath(p.to_string()))
    }

    /// Every ancestor directory, shallowest first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> Vec<RelPath> {
        let mut out = Vec::new();
        let mut acc = String::new();
        let parts: Vec<&str> = self.0.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            out.push(RelPath(acc.clone()));
        }
        out
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which shape the patch arrived in; kept for the summary and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    Native,
    LegacyFull,
    LegacyWebhook,
}

/// A validated, normalised patch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Patch {
    /// The patch's own id (any printable text, at most 256 characters); assigned
    /// (`patch-<uuid v7>`) when the input has none.
    pub id: String,
    /// Canonical target name (aliases already resolved).
    pub target: String,
    pub description: Option<String>,
    pub operations: Vec<Operation>,
    pub checks: Checks,
    /// Per-patch override of `[executor] max_attempts`.
    pub max_attempts: Option<u32>,
    pub git: Option<GitAction>,
    pub source_format: SourceFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Create or overwrite a file. `expect_md5`: `None` = no precondition,
    /// `Some(None)` = the file must not exist, `Some(Some(hex))` = it must have that MD5.
    Write {
        path: RelPath,
        #[serde(skip)]
        content: Vec<u8>,
        mode: Option<u32>,
        expect_md5: Option<Option<String>>,
    },
    /// Replace exactly `count` occurrences of `find` (literal text).
    Replace {
        path: RelPath,
        find: String,
        replace: String,
        count: usize,
    },
    /// Replace every match of `pattern` (exactly `count` when given); fails when
    /// nothing matches. `$1`, `${1}`, `${name}` in `replacement` expand groups.
    Regex {
        path: RelPath,
        pattern: String,
        replacement: String,
        count: Option<usize>,
    },
    /// Remove a file; with `expect_md5` only when it has that MD5.
    Delete {
        path: RelPath,
        expect_md5: Option<String>,
    },
    /// Move a file inside the tree; `to` must not exist.
    Rename { from: RelPath, to: RelPath },
    /// Set a file's permission bits (e.g. 0o755).
    Chmod { path: RelPath, mode: u32 },
    /// A unified diff (git's format included), already split per file.
    Diff { files: Vec<FileDiff> },
    /// An agent's patch: an `apply_patch` envelope, or a unified diff read
    /// leniently, as file edits (see `patch::agent`).
    ApplyPatch { files: Vec<super::agent::FileEdit> },
    /// A SEARCH/REPLACE block: `search` must match exactly one place of `path`
    /// (see `patch::agent::matcher`); empty, it creates the file.
    SearchReplace {
        path: RelPath,
        search: String,
        replace: String,
    },
}

/// One file's part of a unified diff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileDiff {
    /// `None` when the old side is `/dev/null` (file creation).
    pub old_path: Option<RelPath>,
    /// `None` when the new side is `/dev/null` (file deletion).
    pub new_path: Option<RelPath>,
    /// Mode from git's `new file mode` / `new mode` header, if any.
    pub new_mode: Option<u32>,
    /// The `---`/`+++` headers and hunks, as `diffy::Patch::from_str` takes them.
    /// Empty for a pure rename or mode change without content change.
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Checks {
    pub before: Vec<Command>,
    pub after: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Command {
    pub kind: CommandKind,
    /// Per-command override of `[executor] command_timeout`.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Run directly, no shell. Never empty.
    Argv(Vec<String>),
    /// Run with `/bin/sh -c`; only accepted for targets with `allow_shell` and
    /// `commands = "any"` (see `policy`).
    Shell(String),
}

impl Command {
    /// A short human rendering for logs and summaries.
    pub fn display(&self) -> String {
        match &self.kind {
            CommandKind::Argv(argv) => argv.join(" "),
            CommandKind::Shell(s) => format!("sh -c {s:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GitAction {
    pub commit: Option<String>,
    pub tag: Option<String>,
}

/// What the parser needs to know about one configured target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetSpec {
    pub name: String,
    pub aliases: Vec<String>,
    /// Absolute prefix that legacy patches use for this tree.
    pub legacy_root: Option<String>,
    pub allow_shell: bool,
    /// Which commands (checks) the target's patches may run.
    pub commands: CommandPolicy,
    /// Path prefixes no operation may touch, besides every `.git` component.
    pub protected_paths: Vec<String>,
    /// Whether files may get setuid, setgid or sticky bits.
    pub allow_special_modes: bool,
}

/// Which commands a target lets its patches run (`targets.<name>.commands`):
/// `"none"` (the default), `"any"`, or a list of argv prefixes such as
/// `[["cargo", "test"], ["npm", "test"]]`. See `policy` for the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CommandPolicy {
    #[default]
    None,
    Any,
    /// A command's argv must start with one of these, element by element.
    Allow(Vec<Vec<String>>),
}

impl fmt::Display for CommandPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandPolicy::None => f.write_str("\"none\""),
            CommandPolicy::Any => f.write_str("\"any\""),
            CommandPolicy::Allow(list) => {
                let shown: Vec<String> = list.iter().map(|p| format!("{p:?}")).collect();
                write!(f, "[{}]", shown.join(", "))
            }
        }
    }
}

impl Serialize for CommandPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CommandPolicy::None => s.serialize_str("none"),
            CommandPolicy::Any => s.serialize_str("any"),
            CommandPolicy::Allow(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for CommandPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            L(Vec<Vec<String>>),
        }
        const HOW: &str = "expected \"none\", \"any\" or a list of argv prefixes such as [[\"cargo\", \"test\"], [\"npm\", \"test\"]]";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(HOW))? {
            Raw::S(s) if s == "none" => Ok(CommandPolicy::None),
            Raw::S(s) if s == "any" => Ok(CommandPolicy::Any),
            Raw::S(s) => Err(serde::de::Error::custom(format!("{s:?}: {HOW}"))),
            Raw::L(list) => {
                if let Some(bad) = list
                    .iter()
                    .find(|p| p.is_empty() || p[0].is_empty() || p.iter().any(|a| a.contains('\0')))
                {
                    return Err(serde::de::Error::custom(format!(
                        "{bad:?} is not an argv prefix: it needs a program name and no NUL bytes"
                    )));
                }
                Ok(CommandPolicy::Allow(list))
            }
        }
    }
}

/// One problem with an input patch: which field (a JSON-path-like locator such
/// as `operations[2].path`, or `(document)`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// Every problem found in one input patch (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", .errors.iter().map(|e| format!("{}: {}", e.field, e.reason)).collect::<Vec<_>>().join("; "))]
pub struct PatchError {
    pub errors: Vec<FieldError>,
}

impl PatchError {
    pub fn one(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PatchError {
            errors: vec![FieldError {
                field: field.into(),
                reason: reason.into(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relpath_normalises_and_rejects() {
        assert_eq!(RelPath::parse("./a//b/./c").unwrap().as_str(), "a/b/c");
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a\0b",
            ".",
            "./",
            "a/\u{7}",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        let p = RelPath::parse("a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        let anc: Vec<_> = p.ancestors().iter().map(|a| a.to_string()).collect();
        assert_eq!(anc, ["a", "a/b"]);
        assert!(RelPath::parse("c").unwrap().parent().is_none());
    }
}
