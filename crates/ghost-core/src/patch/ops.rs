//! The patch operations, declared once.
//!
//! Every operation is one row of the [`operations!`] table below: its
//! [`OpKind`] variant, its name in the native format (`"op": "write"`), the
//! keys it takes besides `op`, and the text of its row in the operation table
//! of docs/formats.md. The parser takes the names and keys from here, the
//! stager and the summary the names, and a unit test checks docs/formats.md
//! against the doc strings. [`Operation::kind`], the parser's dispatch, the
//! stager's `apply` and the policy's path walk are exhaustive `match`es on
//! [`OpKind`] or [`Operation`], so a new row does not compile until every one
//! of them handles it.

use super::Operation;

/// Declares [`OpKind`] with its table: `Variant = "name" [keys] "doc row"`.
macro_rules! operations {
    ($( $variant:ident = $name:literal [$($key:literal),* $(,)?] $doc:literal ),* $(,)?) => {
        /// Which operation: one variant per row of the table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum OpKind {
            $( $variant, )*
        }

        impl OpKind {
            /// Every operation, in the order of the table (and of docs/formats.md).
            pub const ALL: &'static [OpKind] = &[$( OpKind::$variant ),*];

            /// The name in the native format (`"op": "<name>"`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( OpKind::$variant => $name, )*
                }
            }

            /// The keys of the operation's object, `op` included.
            pub const fn keys(self) -> &'static [&'static str] {
                match self {
                    $( OpKind::$variant => &["op", $($key),*], )*
                }
            }

            /// Its rules, as the row of docs/formats.md's operation table says them.
            pub const fn doc(self) -> &'static str {
                match self {
                    $( OpKind::$variant => $doc, )*
                }
            }
        }
    };
}

operations! {
    Write = "write" ["path", "content", "content_base64", "mode", "expect_md5"]
        "`content` (text) or `content_base64` (binary), exactly one. `mode` is an octal string (`\"0644\"`, `\"644\"`, `\"0o644\"`); without it an existing file keeps its mode and a new file gets `executor.default_file_mode`. `expect_md5`: absent means no precondition, `null` means the file must not exist, a hex string means the file must have that MD5.",
    Replace = "replace" ["path", "find", "replace", "count"]
        "Literal text. `find` must occur exactly `count` times (default 1); all of them are replaced. The file must be UTF-8.",
    Regex = "regex" ["path", "pattern", "replacement", "count"]
        "Rust `regex` syntax. Every match is replaced; `count`, when given, must equal the number of matches. No match is an error. `$1`, `${1}` and `${name}` expand groups.",
    Delete = "delete" ["path", "expect_md5"]
        "The file must exist, with `expect_md5` if given.",
    Rename = "rename" ["from", "to"]
        "`from` must be a file and `to` must not exist. Missing directories are created.",
    Chmod = "chmod" ["path", "mode"]
        "Permission bits, at most `0o7777`; setuid, setgid and sticky bits only where the target has `allow_special_modes = true`.",
    Diff = "diff" ["diff"]
        "A unified diff. git's format is accepted too: `diff --git`, `new file mode`, `deleted file mode`, `old mode`/`new mode`, `rename from`/`rename to`, and quoted names. It may touch several files, and hunks are bounded by their `@@` counts. Binary diffs, copies, symlinks and submodules are refused.",
    ApplyPatch = "apply_patch" ["patch"]
        "`patch` is an agent's patch text: the `*** Begin Patch` envelope of Codex's `apply_patch` tool, or a unified diff as an assistant writes it (line numbers are hints, hunk counts are ignored). Hunks are matched as described under \"Agent formats\" below; `*** Add File` and `*** Move to` overwrite an existing file, as the tool does.",
    SearchReplace = "search_replace" ["path", "search", "replace"]
        "Aider's SEARCH/REPLACE: `search` (lines) must match exactly one place of the file, matched as described under \"Agent formats\" below, and is replaced by `replace`. An empty `search` creates the file (refused if it exists and is not empty).",
}

impl OpKind {
    /// The operation named `name` in the native format.
    pub fn from_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// "write, replace, …" for messages.
    pub fn names() -> String {
        OpKind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Operation {
    /// Which operation this is.
    pub fn kind(&self) -> OpKind {
        match self {
            Operation::Write { .. } => OpKind::Write,
            Operation::Replace { .. } => OpKind::Replace,
            Operation::Regex { .. } => OpKind::Regex,
            Operation::Delete { .. } => OpKind::Delete,
            Operation::Rename { .. } => OpKind::Rename,
            Operation::Chmod { .. } => OpKind::Chmod,
            Operation::Diff { .. } => OpKind::Diff,
            Operation::ApplyPatch { .. } => OpKind::ApplyPatch,
            Operation::SearchReplace { .. } => OpKind::SearchReplace,
        }
    }

    /// Its name in the native format.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/formats.md's field table of the native format has exactly one
    /// row per operation, in the table's order, with the table's text.
    #[test]
    fn docs_list_every_operation_as_declared() {
        let docs = include_str!("../../../../docs/formats.md");
        let native = docs
            .split("## Patch, native format v1")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("docs/formats.md has the native format's section");
        // The rows that are not operations.
        let fields = [
            "id",
            "target",
            "operations",
            "paths",
            "checks",
            "retry.max_attempts",
            "git",
        ];
        let rows: Vec<(&str, &str)> = native
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("| `")?;
                let (name, rest) = rest.split_once("` | ")?;
                Some((name, rest.strip_suffix(" |")?))
            })
            .filter(|(name, _)| !fields.contains(name))
            .collect();
        let expected: Vec<(&str, &str)> = OpKind::ALL.iter().map(|k| (k.name(), k.doc())).collect();
        assert_eq!(
            rows, expected,
            "docs/formats.md's operation rows differ from patch::ops"
        );
        // The native example shows every operation.
        for k in OpKind::ALL {
            assert!(
                native.contains(&format!("{{\"op\": \"{}\"", k.name())),
                "the example in docs/formats.md has no {:?} operation",
                k.name()
            );
        }
    }

    #[test]
    fn names_and_keys_are_unique_and_match_serde() {
        let mut names: Vec<&str> = OpKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OpKind::ALL.len());
        for k in OpKind::ALL {
            assert_eq!(k.keys()[0], "op");
            assert_eq!(OpKind::from_name(k.name()), Some(*k));
        }
        // serde's tag is the table's name.
        let p = crate::patch::RelPath::parse("a").unwrap();
        let samples = [
            Operation::Write {
                path: p.clone(),
                content: vec![],
                mode: None,
                expect_md5: None,
            },
            Operation::Delete {
                path: p.clone(),
                expect_md5: None,
            },
            Operation::Diff { files: vec![] },
        ];
        for op in samples {
            let v = serde_json::to_value(&op).unwrap();
            assert_eq!(v["op"], op.name());
        }
    }
}
