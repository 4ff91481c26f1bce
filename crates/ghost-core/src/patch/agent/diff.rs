//! Unified diffs as chat assistants write them, read leniently (the native
//! `diff` operation reads them strictly, in `patch::parse`).
//!
//! - A file starts at `diff --git …` or at a `--- ` line followed by a `+++ `
//!   line; anything else between files (prose, `Index:` lines) is skipped.
//! - `a/` and `b/` prefixes are dropped; `/dev/null` on the old side creates
//!   the file, on the new side deletes it; git's `rename from`/`rename to`
//!   move it. Binary diffs are refused.
//! - A hunk starts at `@@`. Its `-N` is a hint for where the old lines are,
//!   not a promise; its line counts are ignored: the body is every following
//!   line that starts with ` `, `-`, `+` or `\`, and empty lines (an empty
//!   context line whose space was lost) between them. A line of any other
//!   kind ends the hunk.
//! - `\ No newline at end of file` after a `-` line and not after a `+` line
//!   gives the file a final newline; after a `+` (or context) line it takes
//!   it away.

use super::{text_lines, FileEdit, Hunk};
use crate::patch::RelPath;

/// True when `text` has a diff file header (`diff --git`, or `---` then `+++`).
pub fn looks_like_diff(text: &str) -> bool {
    let lines = text_lines(text);
    lines.iter().enumerate().any(|(i, l)| {
        l.starts_with("diff --git ")
            || (l.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ ")))
    })
}

fn is_file_start(lines: &[&str], i: usize) -> bool {
    let l = lines[i];
    l.starts_with("diff --git ")
        || (l.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ ")))
}

/// A name from a `---`/`+++` line: a tab and what follows (a timestamp) go,
/// then the `a/`/`b/` prefix; `None` for `/dev/null`.
fn header_name(rest: &str, prefix: &str) -> Option<String> {
    let name = rest.split('\t').next().unwrap_or("").trim_end();
    let name = name
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(name);
    if name == "/dev/null" {
        return None;
    }
    Some(name.strip_prefix(prefix).unwrap_or(name).to_string())
}

/// Parses every file of the diff, or returns every problem found.
pub fn parse(text: &str) -> Result<Vec<FileEdit>, Vec<String>> {
    let lines = text_lines(text);
    let mut errors = Vec::new();
    let mut edits = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !is_file_start(&lines, i) {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut old: Option<Option<String>> = None;
        let mut new: Option<Option<String>> = None;
        let mut binary = false;
        if let Some(rest) = lines[i].strip_prefix("diff --git ") {
            // Used only when no ---/+++ follow (a pure rename or mode change).
            let (a, b) = match rest.rsplit_once(" b/") {
                Some((a, b)) => (a.strip_prefix("a/").unwrap_or(a).to_string(), b.to_string()),
                None => (rest.to_string(), rest.to_string()),
            };
            let (mut from, mut to) = (Some(a), Some(b));
            i += 1;
            while i < lines.len() && !is_file_start(&lines, i) && !lines[i].starts_with("@@") {
                let l = lines[i];
                if let Some(p) = l.strip_prefix("rename from ") {
                    from = Some(p.to_string());
                } else if let Some(p) = l.strip_prefix("rename to ") {
                    to = Some(p.to_string());
                } else if l.starts_with("new file mode") {
                    from = None;
                } else if l.starts_with("deleted file mode") {
                    to = None;
                } else if l.starts_with("Binary files ") || l == "GIT binary patch" {
                    binary = true;
                } else if !(l.starts_with("index ")
                    || l.starts_with("similarity index")
                    || l.starts_with("dissimilarity index")
                    || l.starts_with("old mode")
                    || l.starts_with("new mode"))
                {
                    break;
                }
                i += 1;
            }
            old = Some(from);
            new = Some(to);
        }
        if i + 1 < lines.len() && lines[i].starts_with("--- ") && lines[i + 1].starts_with("+++ ") {
            let o = header_name(&lines[i][4..], "a/");
            let n = header_name(&lines[i + 1][4..], "b/");
            // They name the same files as git's header, when there is one.
            old = Some(o);
            new = Some(n);
            i += 2;
        }
        if binary {
            errors.push(format!(
                "line {start}: binary diffs are not supported; send the file with a `write` operation and `content_base64`"
            ));
            continue;
        }
        let mut hunks = Vec::new();
        while i < lines.len() && lines[i].starts_with("@@") {
            let (h, next) = read_hunk(&lines, i);
            hunks.push(h);
            i = next;
        }
        let path = |raw: &str, errors: &mut Vec<String>| match RelPath::parse(raw) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(format!("line {start}: {e}"));
                None
            }
        };
        match (old.flatten(), new.flatten()) {
            (None, None) => errors.push(format!(
                "line {start}: the diff has /dev/null (or no name) on both sides"
            )),
            (None, Some(n)) => {
                let Some(path) = path(&n, &mut errors) else {
                    continue;
                };
                let mut content = String::new();
                let mut final_newline = true;
                for h in &hunks {
                    for l in &h.new {
                        content.push_str(l);
                        content.push('\n');
                    }
                    if h.final_newline == Some(false) {
                        final_newline = false;
                    }
                }
                if !final_newline {
                    content.pop();
                }
                edits.push(FileEdit::Add { path, content });
            }
            (Some(o), None) => {
                if let Some(path) = path(&o, &mut errors) {
                    edits.push(FileEdit::Delete { path });
                }
            }
            (Some(o), Some(n)) => {
                let (Some(from), Some(to)) = (path(&o, &mut errors), path(&n, &mut errors)) else {
                    continue;
                };
                let moved = from != to;
                if hunks.is_empty() && !moved {
                    errors.push(format!("line {start}: the diff of {from} has no hunk"));
                    continue;
                }
                edits.push(FileEdit::Update {
                    path: from,
                    move_to: moved.then_some(to),
                    hunks,
                });
            }
        }
    }
    if edits.is_empty() && errors.is_empty() {
        errors.push("no file in the diff: it needs `---`/`+++` headers and `@@` hunks".into());
    }
    if errors.is_empty() {
        Ok(edits)
    } else {
        Err(errors)
    }
}

/// Reads the hunk whose `@@` line is `lines[i]`; returns it and the index of
/// the first line after it.
fn read_hunk(lines: &[&str], mut i: usize) -> (Hunk, usize) {
    let mut h = Hunk {
        line: lines[i]
            .strip_prefix("@@ -")
            .and_then(|r| r.split([',', ' ']).next())
            .and_then(|n| n.parse::<usize>().ok()),
        ..Hunk::default()
    };
    i += 1;
    let (mut old_no_eol, mut new_no_eol) = (false, false);
    let mut last = ' ';
    // Empty lines taken as context, not yet followed by a hunk line.
    let mut pending_empty = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.starts_with("@@") || is_file_start(lines, i) {
            break;
        }
        match l.chars().next() {
            None => {
                pending_empty += 1;
                i += 1;
                continue;
            }
            Some(c @ (' ' | '-' | '+')) => {
                for _ in 0..pending_empty {
                    h.old.push(String::new());
                    h.new.push(String::new());
                }
                pending_empty = 0;
                let rest = l[1..].to_string();
                match c {
                    ' ' => {
                        h.old.push(rest.clone());
                        h.new.push(rest);
                    }
                    '-' => h.old.push(rest),
                    _ => h.new.push(rest),
                }
                last = c;
            }
            Some('\\') => match last {
                '-' => old_no_eol = true,
                '+' => new_no_eol = true,
                _ => {
                    old_no_eol = true;
                    new_no_eol = true;
                }
            },
            Some(_) => break,
        }
        i += 1;
    }
    h.final_newline = match (old_no_eol, new_no_eol) {
        (_, true) => Some(false),
        (true, false) => Some(true),
        (false, false) => None,
    };
    (h, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrong_counts_prose_and_git_headers() {
        let text = "Here is the fix:\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -10,2 +10,9 @@ fn f()\n a\n-b\n+c\n\n d\nThat's all.\n\
                    diff --git a/old.txt b/new.txt\nsimilarity index 90%\nrename from old.txt\nrename to new.txt\n\
                    --- a/old.txt\n+++ b/new.txt\n@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+y\n\
                    --- /dev/null\n+++ b/n.txt\n@@ -0,0 +1,2 @@\n+1\n+2\n\
                    --- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-z\n";
        let edits = parse(text).unwrap();
        assert_eq!(edits.len(), 4, "{edits:?}");
        let FileEdit::Update {
            path,
            move_to,
            hunks,
        } = &edits[0]
        else {
            panic!()
        };
        assert_eq!((path.as_str(), move_to.is_none()), ("src/x.rs", true));
        assert_eq!(hunks[0].line, Some(10));
        assert_eq!(hunks[0].old, ["a", "b", "", "d"]);
        assert_eq!(hunks[0].new, ["a", "c", "", "d"]);
        let FileEdit::Update {
            path,
            move_to,
            hunks,
        } = &edits[1]
        else {
            panic!()
        };
        assert_eq!(
            (path.as_str(), move_to.as_ref().unwrap().as_str()),
            ("old.txt", "new.txt")
        );
        assert_eq!(hunks[0].final_newline, Some(true));
        assert_eq!(
            edits[2],
            FileEdit::Add {
                path: RelPath::parse("n.txt").unwrap(),
                content: "1\n2\n".into()
            }
        );
        assert_eq!(
            edits[3],
            FileEdit::Delete {
                path: RelPath::parse("gone.txt").unwrap()
            }
        );
    }

    #[test]
    fn refuses_binary_escapes_and_nothing() {
        let e = parse("diff --git a/i.png b/i.png\nBinary files a/i.png and b/i.png differ\n")
            .unwrap_err();
        assert!(e[0].contains("binary"), "{e:?}");
        let e = parse("--- a/../x\n+++ b/../x\n@@ -1 +1 @@\n-a\n+b\n").unwrap_err();
        assert!(e[0].contains("'..'"), "{e:?}");
        let e = parse("just prose\n").unwrap_err();
        assert!(e[0].contains("no file"), "{e:?}");
    }
}
