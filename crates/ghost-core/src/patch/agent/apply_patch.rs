//! The `apply_patch` envelope (OpenAI Codex CLI, OpenCode):
//!
//! ```text
//! *** Begin Patch
//! *** Add File: path        then `+line` lines: the content
//! *** Delete File: path
//! *** Update File: path
//! *** Move to: new/path     optional, right after Update
//! @@ optional anchor        a hunk: ` ` context, `-` removed, `+` added lines
//! *** End of File           optional: the hunk ends the file
//! *** End Patch
//! ```
//!
//! As the tool itself reads it: marker lines may carry leading and trailing
//! whitespace; an empty line inside a hunk is an empty context line; the first
//! hunk of an Update may omit its `@@`; consecutive `@@ anchor` lines narrow
//! the search step by step. Refused: no `*** Begin Patch` first or
//! `*** End Patch` last, no file section at all, an unknown `***` header, an
//! Update without hunks, a hunk without lines, a line that is none of the
//! above, and every path the path rules refuse. Every problem is reported,
//! each with its line in the patch text.

use super::{text_lines, FileEdit, Hunk};
use crate::patch::RelPath;

const BEGIN: &str = "*** Begin Patch";
const END: &str = "*** End Patch";
const ADD: &str = "*** Add File: ";
const DELETE: &str = "*** Delete File: ";
const UPDATE: &str = "*** Update File: ";
const MOVE: &str = "*** Move to: ";
const EOF_MARK: &str = "*** End of File";

/// True when `text` is an envelope: its first non-blank line is `*** Begin Patch`.
pub fn is_envelope(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim() == BEGIN)
}

/// Parses an envelope into file edits, or returns every problem found.
pub fn parse(text: &str) -> Result<Vec<FileEdit>, Vec<String>> {
    let lines = text_lines(text);
    let first = lines.iter().position(|l| !l.trim().is_empty());
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return Err(vec!["the patch is empty".into()]);
    };
    let mut errors = Vec::new();
    if lines[first].trim() != BEGIN {
        errors.push(format!(
            "line {}: the patch must start with `{BEGIN}`",
            first + 1
        ));
    }
    if lines[last].trim() != END || last == first {
        errors.push(format!(
            "line {}: the patch must end with `{END}`",
            last + 1
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut p = Parser {
        lines: &lines[..last],
        pos: first + 1,
        errors,
    };
    let mut edits = Vec::new();
    while p.pos < p.lines.len() {
        let line = p.lines[p.pos];
        let t = line.trim();
        let n = p.pos + 1;
        if t.is_empty() {
            p.pos += 1;
        } else if let Some(raw) = header(line, ADD) {
            p.pos += 1;
            let path = p.path(raw, n);
            let mut content = String::new();
            while let Some(l) = p.lines.get(p.pos) {
                if let Some(rest) = l.strip_prefix('+') {
                    content.push_str(rest);
                    content.push('\n');
                    p.pos += 1;
                } else if l.trim().starts_with("***") || l.trim().is_empty() {
                    break;
                } else {
                    p.err(
                        p.pos + 1,
                        format!("an added file's lines start with `+`, found {l:?}"),
                    );
                    p.pos += 1;
                }
            }
            if let Some(path) = path {
                edits.push(FileEdit::Add { path, content });
            }
        } else if let Some(raw) = header(line, DELETE) {
            p.pos += 1;
            if let Some(path) = p.path(raw, n) {
                edits.push(FileEdit::Delete { path });
            }
        } else if let Some(raw) = header(line, UPDATE) {
            p.pos += 1;
            let path = p.path(raw, n);
            let mut move_to = None;
            if let Some(raw) = p.lines.get(p.pos).and_then(|l| header(l, MOVE)) {
                move_to = p.path(raw, p.pos + 1);
                p.pos += 1;
            }
            let hunks = p.hunks(n);
            if let (Some(path), Some(hunks)) = (path, hunks) {
                edits.push(FileEdit::Update {
                    path,
                    move_to,
                    hunks,
                });
            }
        } else {
            p.err(
                n,
                format!(
                    "expected a file header (`{}`, `{}` or `{}`), found {:?}",
                    ADD.trim(),
                    DELETE.trim(),
                    UPDATE.trim(),
                    crate::text::clip(line, 80)
                ),
            );
            // Skip to the next header.
            p.pos += 1;
            while p
                .lines
                .get(p.pos)
                .is_some_and(|l| !l.trim_start().starts_with("*** "))
            {
                p.pos += 1;
            }
        }
    }
    if edits.is_empty() && p.errors.is_empty() {
        p.errors.push(
            "the patch has no file section (`*** Add File`, `*** Delete File` or `*** Update File`): nothing to do"
                .into(),
        );
    }
    if p.errors.is_empty() {
        Ok(edits)
    } else {
        Err(p.errors)
    }
}

/// Closes the hunk in hand; false when it had no lines (reported).
fn finish_hunk(
    cur: &mut Option<Hunk>,
    hunks: &mut Vec<Hunk>,
    errs: &mut Vec<String>,
    at: usize,
) -> bool {
    if let Some(h) = cur.take() {
        if h.old.is_empty() && h.new.is_empty() {
            errs.push(format!("line {at}: the hunk has no lines"));
            return false;
        }
        hunks.push(h);
    }
    true
}

/// The rest of a header line after `prefix` (surrounding whitespace allowed).
fn header<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let t = line.trim();
    t.strip_prefix(prefix)
        .or_else(|| (t == prefix.trim_end()).then_some(""))
}

struct Parser<'a> {
    lines: &'a [&'a str],
    pos: usize,
    errors: Vec<String>,
}

impl Parser<'_> {
    fn err(&mut self, line: usize, reason: String) {
        self.errors.push(format!("line {line}: {reason}"));
    }

    fn path(&mut self, raw: &str, line: usize) -> Option<RelPath> {
        match RelPath::parse(raw.trim()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(line, e);
                None
            }
        }
    }

    /// The hunks of the Update section that starts at line `n`.
    fn hunks(&mut self, n: usize) -> Option<Vec<Hunk>> {
        let mut hunks: Vec<Hunk> = Vec::new();
        let mut cur: Option<Hunk> = None;
        let mut cur_line = n;
        let mut ok = true;
        while let Some(&line) = self.lines.get(self.pos) {
            let t = line.trim();
            if t == EOF_MARK {
                match cur.as_mut() {
                    Some(h) => h.at_eof = true,
                    None => {
                        self.err(self.pos + 1, format!("`{EOF_MARK}` outside a hunk"));
                        ok = false;
                    }
                }
                self.pos += 1;
                ok &= finish_hunk(&mut cur, &mut hunks, &mut self.errors, cur_line);
                continue;
            }
            if t.starts_with("*** ") || t == "***" {
                break;
            }
            if line == "@@" || line.starts_with("@@ ") || t == "@@" {
                let anchor = line.trim_start().strip_prefix("@@").unwrap_or("").trim();
                match cur.as_mut() {
                    // `@@ a` then `@@ b` with nothing between: one hunk, two anchors.
                    Some(h) if h.old.is_empty() && h.new.is_empty() => {
                        if !anchor.is_empty() {
                            h.anchors.push(anchor.to_string());
                        }
                    }
                    _ => {
                        ok &= finish_hunk(&mut cur, &mut hunks, &mut self.errors, cur_line);
                        cur_line = self.pos + 1;
                        cur = Some(Hunk {
                            anchors: if anchor.is_empty() {
                                Vec::new()
                            } else {
                                vec![anchor.to_string()]
                            },
                            ..Hunk::default()
                        });
                    }
                }
                self.pos += 1;
                continue;
            }
            let (kind, rest) = match line.chars().next() {
                Some(c @ (' ' | '-' | '+')) => (c, &line[1..]),
                None => (' ', ""),
                Some(_) => {
                    self.err(
                        self.pos + 1,
                        format!(
                            "a hunk line starts with ` `, `-` or `+`, found {:?}",
                            crate::text::clip(line, 80)
                        ),
                    );
                    ok = false;
                    self.pos += 1;
                    continue;
                }
            };
            let h = cur.get_or_insert_with(|| {
                cur_line = self.pos + 1;
                Hunk::default()
            });
            match kind {
                ' ' => {
                    h.old.push(rest.to_string());
                    h.new.push(rest.to_string());
                }
                '-' => h.old.push(rest.to_string()),
                _ => h.new.push(rest.to_string()),
            }
            self.pos += 1;
        }
        ok &= finish_hunk(&mut cur, &mut hunks, &mut self.errors, cur_line);
        if hunks.is_empty() && ok {
            self.err(n, "an Update File section needs at least one hunk".into());
            return None;
        }
        ok.then_some(hunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_section_kind() {
        let text = "*** Begin Patch\n*** Add File: a.txt\n+one\n+two\n*** Delete File: b.txt\n\
                    *** Update File: c.txt\n*** Move to: d/c.txt\n@@ fn main\n ctx\n-old\n+new\n\
                    @@\n-x\n*** End of File\n*** End Patch\n";
        let edits = parse(text).unwrap();
        assert_eq!(edits.len(), 3);
        assert_eq!(
            edits[0],
            FileEdit::Add {
                path: RelPath::parse("a.txt").unwrap(),
                content: "one\ntwo\n".into()
            }
        );
        let FileEdit::Update { move_to, hunks, .. } = &edits[2] else {
            panic!("{edits:?}")
        };
        assert_eq!(move_to.as_ref().unwrap().as_str(), "d/c.txt");
        assert_eq!(hunks[0].anchors, ["fn main"]);
        assert_eq!(hunks[0].old, ["ctx", "old"]);
        assert_eq!(hunks[0].new, ["ctx", "new"]);
        assert!(!hunks[0].at_eof && hunks[1].at_eof);
        assert_eq!(hunks[1].old, ["x"]);
        assert!(hunks[1].new.is_empty());
    }

    #[test]
    fn refuses_what_the_tool_refuses() {
        for (text, want) in [
            ("", "empty"),
            ("*** Begin Patch\n*** End Patch\n", "no file section"),
            ("*** Add File: a\n+x\n*** End Patch\n", "must start with"),
            ("*** Begin Patch\n*** Add File: a\n+x\n", "must end with"),
            (
                "*** Begin Patch\n*** Frobnicate File: foo\n*** End Patch\n",
                "expected a file header",
            ),
            (
                "*** Begin Patch\n*** Update File: foo\n*** End Patch\n",
                "at least one hunk",
            ),
            (
                "*** Begin Patch\n*** Update File: foo\n@@\n*** End Patch\n",
                "no lines",
            ),
            (
                "*** Begin Patch\n*** Delete File: /etc/passwd\n*** End Patch\n",
                "absolute",
            ),
            (
                "*** Begin Patch\n*** Delete File: a/../../b\n*** End Patch\n",
                "'..'",
            ),
            (
                "*** Begin Patch\n*** Update File: a\n@@\n?x\n*** End Patch\n",
                "starts with",
            ),
        ] {
            let e = parse(text).unwrap_err().join("; ");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn padded_markers_crlf_and_stacked_anchors() {
        let text = " *** Begin Patch \r\n  *** Update File: f \r\n@@ class A\r\n@@   def m():\r\n-a\r\n+b\r\n*** End Patch \r\n";
        let edits = parse(text).unwrap();
        let FileEdit::Update { path, hunks, .. } = &edits[0] else {
            panic!()
        };
        assert_eq!(path.as_str(), "f");
        assert_eq!(hunks.len(), 1);
        assert_eq!(hunks[0].anchors, ["class A", "def m():"]);
        assert_eq!(
            (hunks[0].old.clone(), hunks[0].new.clone()),
            (vec!["a".to_string()], vec!["b".to_string()])
        );
    }
}
