//! Splitting a unified diff (plain `---`/`+++` or git's format) into per-file
//! [`FileDiff`]s whose `text` `diffy::Patch::from_str` (diffy 0.4) accepts.
//!
//! How it reads a diff:
//! - Text before the first file header, and between files, is ignored (commit
//!   messages, `Index:` lines, `diff -ruN` command lines, mail signatures), as
//!   `git apply` and `patch` do. A file starts at `diff --git ...`, or at a `--- `
//!   line directly followed by a `+++ ` line.
//! - Hunk bodies are delimited by the line counts in their `@@` headers, so a
//!   removed line that reads `-- x` (shown as `--- x`) is never taken for a header.
//!   A body shorter or longer than its header says is an error, not a guess.
//! - git headers: `new file mode`, `deleted file mode`, `old mode`/`new mode`,
//!   `rename from`/`rename to`, `similarity index`, `index` are understood; copies,
//!   binary diffs, symbolic links and submodules are rejected. `FileDiff::new_mode`
//!   holds only the permission bits (`0o755`), like `chmod` and `write`.
//! - Plain diffs: `a/`/`b/` are stripped only when both sides carry them
//!   (`/dev/null` counts as either); a plain diff naming two different files is
//!   rejected (plain diffs cannot express renames; use git's `rename from/to`).
//! - Names: C-quoted names (`"a/x\tb"`, octal escapes) are unquoted; on `---`/`+++`
//!   lines anything after a tab (a timestamp) and trailing spaces are dropped.
//!
//! `FileDiff::text` is rebuilt as `--- a/<old>` / `+++ b/<new>` (or `/dev/null`)
//! from the validated paths, followed by the hunks verbatim, except that every
//! `\ ...` marker becomes `\ No newline at end of file` (git localises it) and a
//! missing newline at the very end of the diff is added: the end of the diff
//! string is not a statement about the file; only the marker is.

use crate::patch::{FileDiff, RelPath};

/// Hunk line numbers above this are refused (diffy adds them unchecked).
const MAX_LINE_NO: u64 = 1_000_000_000;
const NO_NEWLINE: &str = "\\ No newline at end of file\n";
const BINARY: &str =
    "binary diffs are not supported; send the file with a `write` operation and `content_base64`";

/// Splits `text` into per-file diffs, or returns every problem found (reasons
/// for the caller's `operations[i].diff` field).
pub(super) fn split_diff(text: &str) -> Result<Vec<FileDiff>, Vec<String>> {
    if text.trim().is_empty() {
        return Err(vec!["diff is empty".into()]);
    }
    let mut p = Parser {
        lines: text.split_inclusive('\n').collect(),
        pos: 0,
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    while let Some(line) = p.cur() {
        let start = p.pos;
        let n = start + 1;
        let result = if line.starts_with("diff --git ") {
            Some(p.git_section())
        } else if line.starts_with("--- ") && p.peek(1).is_some_and(|l| l.starts_with("+++ ")) {
            Some(p.plain_section())
        } else if line.starts_with("--- ") && p.peek(1).is_some_and(|l| l.starts_with("@@ ")) {
            Some(Err(format!(
                "line {n}: `---` header without a following `+++` header"
            )))
        } else if line.starts_with("+++ ") && p.peek(1).is_some_and(|l| l.starts_with("@@ ")) {
            Some(Err(format!(
                "line {n}: `+++` header without a preceding `---` header"
            )))
        } else if line.starts_with("@@ ") {
            Some(Err(format!(
                "line {n}: hunk {line:?} is not inside any file (it needs `---`/`+++` headers before it)"
            )))
        } else if line.starts_with("Binary files ") || line == "GIT binary patch" {
            Some(Err(format!("line {n}: {BINARY}")))
        } else {
            p.pos += 1;
            None
        };
        match result {
            None => {}
            Some(Ok(file)) => files.push(file),
            Some(Err(e)) => {
                errors.push(e);
                p.pos = p.pos.max(start + 1);
                p.resync();
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if files.is_empty() {
        return Err(vec![
            "diff touches no file: it has no `diff --git` line and no `---`/`+++` header pair"
                .into(),
        ]);
    }
    Ok(files)
}

struct Parser<'a> {
    /// Lines including their `\n` (the last one may lack it). Never empty strings.
    lines: Vec<&'a str>,
    pos: usize,
}

/// A line without its `\n` / `\r\n`.
fn trim_eol(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

impl<'a> Parser<'a> {
    fn cur(&self) -> Option<&'a str> {
        self.lines.get(self.pos).map(|l| trim_eol(l))
    }

    fn peek(&self, ahead: usize) -> Option<&'a str> {
        self.lines.get(self.pos + ahead).map(|l| trim_eol(l))
    }

    /// After an error: skip to the next line that starts a file.
    fn resync(&mut self) {
        while let Some(l) = self.cur() {
            if l.starts_with("diff --git ")
                || (l.starts_with("--- ") && self.peek(1).is_some_and(|n| n.starts_with("+++ ")))
            {
                return;
            }
            self.pos += 1;
        }
    }

    fn plain_section(&mut self) -> Result<FileDiff, String> {
        let n = self.pos + 1;
        let after_marker =
            |l: Option<&str>| l.and_then(|l| l.get(4..)).unwrap_or_default().to_string();
        let (minus, plus) = (after_marker(self.cur()), after_marker(self.peek(1)));
        let minus = header_name(&minus).map_err(|e| format!("line {n}: {e}"))?;
        let plus = header_name(&plus).map_err(|e| format!("line {}: {e}", n + 1))?;
        self.pos += 2;
        let strip = (minus.is_some() || plus.is_some())
            && minus.as_deref().is_none_or(|m| m.starts_with("a/"))
            && plus.as_deref().is_none_or(|p| p.starts_with("b/"));
        let side = |name: Option<String>, prefix: &str| {
            name.map(|s| match s.strip_prefix(prefix) {
                Some(rest) if strip => rest.to_string(),
                _ => s,
            })
        };
        let (old, new) = (side(minus, "a/"), side(plus, "b/"));
        let label = file_label(old.as_deref(), new.as_deref());
        let old = rel(old, n, &label)?;
        let new = rel(new, n + 1, &label)?;
        match (&old, &new) {
            (None, None) => return Err(format!("line {n}: both sides of the diff are /dev/null")),
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "line {n}: this plain diff names two different files ({a} and {b}); plain diffs cannot \
                     rename, so give both sides the same name (or use git's `rename from`/`rename to`)"
                ))
            }
            _ => {}
        }
        let hunks = self.hunks(&label)?;
        if hunks.is_empty() {
            return Err(format!(
                "line {n}: {label}: no hunks (`@@ ... @@`) after the `---`/`+++` headers"
            ));
        }
        finish(old, new, None, hunks, &label)
    }

    fn git_section(&mut self) -> Result<FileDiff, String> {
        let n0 = self.pos + 1;
        let header = self.cur().unwrap_or_default();
        let git_names = git_header_names(header.get("diff --git ".len()..).unwrap_or_default());
        let label = match &git_names {
            Some((_, b)) => format!("file {b}"),
            None => format!("the file of line {n0}"),
        };
        self.pos += 1;

        let (mut old_mode, mut new_mode) = (None, None);
        let (mut created, mut deleted) = (false, false);
        let (mut rename_from, mut rename_to) = (None, None);
        while let Some(l) = self.cur() {
            let n = self.pos + 1;
            let at = |e: String| format!("line {n}: {label}: {e}");
            if let Some(m) = l.strip_prefix("old mode ") {
                old_mode = Some(git_mode(m).map_err(at)?);
            } else if let Some(m) = l.strip_prefix("new mode ") {
                new_mode = Some(git_mode(m).map_err(at)?);
            } else if let Some(m) = l.strip_prefix("deleted file mode ") {
                deleted = true;
                old_mode = Some(git_mode(m).map_err(at)?);
            } else if let Some(m) = l.strip_prefix("new file mode ") {
                created = true;
                new_mode = Some(git_mode(m).map_err(at)?);
            } else if l.starts_with("index ")
                || l.starts_with("similarity index ")
                || l.starts_with("dissimilarity index ")
            {
                // informational
            } else if let Some(p) = l
                .strip_prefix("rename from ")
                .or_else(|| l.strip_prefix("rename old "))
            {
                rename_from = Some(plain_or_quoted(p).map_err(at)?);
            } else if let Some(p) = l
                .strip_prefix("rename to ")
                .or_else(|| l.strip_prefix("rename new "))
            {
                rename_to = Some(plain_or_quoted(p).map_err(at)?);
            } else if l.starts_with("copy from ") || l.starts_with("copy to ") {
                return Err(at(
                    "copies are not supported; create the new file with a `write` operation or a creation diff".into(),
                ));
            } else if l.starts_with("Binary files ") || l == "GIT binary patch" {
                return Err(at(BINARY.into()));
            } else {
                break;
            }
            self.pos += 1;
        }

        let mut headers: Option<(Option<String>, Option<String>)> = None;
        let mut header_line = n0;
        if let Some(l) = self.cur().filter(|l| l.starts_with("--- ")) {
            let n = self.pos + 1;
            let Some(next) = self.peek(1).filter(|l| l.starts_with("+++ ")) else {
                return Err(format!(
                    "line {n}: {label}: `---` header without a following `+++` header"
                ));
            };
            let minus = header_name(l.get(4..).unwrap_or_default())
                .map_err(|e| format!("line {n}: {e}"))?;
            let plus = header_name(next.get(4..).unwrap_or_default())
                .map_err(|e| format!("line {}: {e}", n + 1))?;
            let strip =
                |s: String, prefix: &str| s.strip_prefix(prefix).map(str::to_string).unwrap_or(s);
            headers = Some((minus.map(|s| strip(s, "a/")), plus.map(|s| strip(s, "b/"))));
            header_line = n;
            self.pos += 2;
        }

        if rename_from.is_some() != rename_to.is_some() {
            return Err(format!(
                "line {n0}: {label}: `rename from` and `rename to` must come together"
            ));
        }
        if created && deleted {
            return Err(format!(
                "line {n0}: {label}: a file cannot be both created and deleted"
            ));
        }
        let (git_old, git_new) = git_names.clone().unzip();
        let old = match (&headers, created) {
            (Some((Some(m), _)), true) => {
                return Err(format!(
                    "line {header_line}: {label}: `new file mode` but the `---` header names {m:?} instead of /dev/null"
                ))
            }
            (_, true) => None,
            (Some((m, _)), false) => m.clone().or_else(|| rename_from.clone()),
            (None, false) => rename_from.clone().or(git_old),
        };
        let new = match (&headers, deleted) {
            (Some((_, Some(p))), true) => {
                return Err(format!(
                    "line {header_line}: {label}: `deleted file mode` but the `+++` header names {p:?} instead of /dev/null"
                ))
            }
            (_, true) => None,
            (Some((_, p)), false) => p.clone().or_else(|| rename_to.clone()),
            (None, false) => rename_to.clone().or(git_new),
        };
        if old.is_none() && new.is_none() {
            return Err(format!(
                "line {n0}: {label}: cannot tell which file this `diff --git` section changes"
            ));
        }
        let label = file_label(old.as_deref(), new.as_deref());
        let old = rel(old, header_line, &label)?;
        let new = rel(new, header_line, &label)?;
        let hunks = self.hunks(&label)?;
        let renamed = rename_from.is_some() && old != new;
        if hunks.is_empty() && !created && !deleted && !renamed && new_mode.is_none() {
            return Err(format!(
                "line {n0}: {label}: this section changes nothing (no hunks, creation, deletion, rename or mode change)"
            ));
        }
        let _ = old_mode; // validated above (regular file); the executor checks the tree itself
        finish(old, new, new_mode.map(|m| m & 0o7777), hunks, &label)
    }

    /// Reads consecutive hunks (`@@ ... @@` and their bodies); returns them as
    /// text, empty when there are none.
    fn hunks(&mut self, label: &str) -> Result<String, String> {
        let mut out = String::new();
        while let Some(header) = self.cur().filter(|l| l.starts_with("@@")) {
            let n = self.pos + 1;
            let (old_len, new_len) =
                hunk_header(header).map_err(|e| format!("line {n}: {label}: {e}"))?;
            out.push_str(self.lines[self.pos]);
            self.pos += 1;
            let (mut old_left, mut new_left) = (old_len, new_len);
            while old_left > 0 || new_left > 0 {
                let Some(raw) = self.lines.get(self.pos).copied() else {
                    return Err(format!(
                        "line {n}: {label}: the diff ends inside hunk {header:?}: {old_left} old and {new_left} new \
                         line(s) are missing (do the header's line counts match the body?)"
                    ));
                };
                let m = self.pos + 1;
                let longer = || {
                    format!(
                        "line {m}: {label}: hunk {header:?} has more lines of this kind than its header counts \
                         ({old_left} old and {new_left} new line(s) were left)"
                    )
                };
                match raw.as_bytes().first() {
                    Some(b' ') | Some(b'\n') => {
                        if old_left == 0 || new_left == 0 {
                            return Err(longer());
                        }
                        old_left -= 1;
                        new_left -= 1;
                    }
                    Some(b'-') => {
                        if old_left == 0 {
                            return Err(longer());
                        }
                        old_left -= 1;
                    }
                    Some(b'+') => {
                        if new_left == 0 {
                            return Err(longer());
                        }
                        new_left -= 1;
                    }
                    Some(b'\\') => {
                        out.push_str(NO_NEWLINE);
                        self.pos += 1;
                        continue;
                    }
                    _ => {
                        return Err(format!(
                            "line {m}: {label}: unexpected line {:?} in hunk {header:?} ({old_left} old and \
                             {new_left} new line(s) still expected); hunk lines start with ' ', '-', '+' or '\\'",
                            trim_eol(raw)
                        ))
                    }
                }
                out.push_str(raw);
                self.pos += 1;
            }
            while self.cur().is_some_and(|l| l.starts_with('\\')) {
                out.push_str(NO_NEWLINE);
                self.pos += 1;
            }
            // A body longer than its header says would otherwise be dropped silently.
            if let Some(next) = self.cur() {
                let next_header =
                    next.starts_with("--- ") && self.peek(1).is_some_and(|l| l.starts_with("+++ "));
                let signature = next == "--" || next == "-- ";
                let extra = next.starts_with('+')
                    || next.starts_with(' ')
                    || (next.starts_with('-') && !next_header && !signature);
                if extra {
                    return Err(format!(
                        "line {}: {label}: hunk {header:?} is longer than its header's line counts say \
                         (line {:?} follows its last counted line)",
                        self.pos + 1,
                        next
                    ));
                }
            }
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }
}

/// Builds the [`FileDiff`] and checks diffy accepts its text.
fn finish(
    old: Option<RelPath>,
    new: Option<RelPath>,
    new_mode: Option<u32>,
    hunks: String,
    label: &str,
) -> Result<FileDiff, String> {
    let text = if hunks.is_empty() {
        String::new()
    } else {
        format!(
            "{}{}{hunks}",
            header_line("---", "a", old.as_ref()),
            header_line("+++", "b", new.as_ref())
        )
    };
    if !text.is_empty() {
        let parsed = std::panic::catch_unwind(|| {
            diffy::Patch::from_str(&text)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("{label}: {e}")),
            Err(_) => return Err(format!("{label}: the diff could not be parsed")),
        }
    }
    Ok(FileDiff {
        old_path: old,
        new_path: new,
        new_mode,
        text,
    })
}

/// A `---`/`+++` line diffy reads back as `side/path` (quoted when needed).
fn header_line(marker: &str, side: &str, path: Option<&RelPath>) -> String {
    let Some(path) = path else {
        return format!("{marker} /dev/null\n");
    };
    let name = format!("{side}/{path}");
    // RelPath has no control characters, so only `"` and `\` need escaping.
    if name.contains(['"', '\\']) {
        let escaped: String = name
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("{marker} \"{escaped}\"\n")
    } else {
        format!("{marker} {name}\n")
    }
}

fn file_label(old: Option<&str>, new: Option<&str>) -> String {
    match (old, new) {
        (Some(a), Some(b)) if a != b => format!("file {a} -> {b}"),
        (_, Some(p)) | (Some(p), None) => format!("file {p}"),
        (None, None) => "a file".into(),
    }
}

/// Validates one side's path (`None`: /dev/null).
fn rel(name: Option<String>, line: usize, label: &str) -> Result<Option<RelPath>, String> {
    name.map(|n| RelPath::parse(&n).map_err(|e| format!("line {line}: {label}: {e}")))
        .transpose()
}

/// Parses `@@ -a[,b] +c[,d] @@...` and returns the old and new line counts.
fn hunk_header(line: &str) -> Result<(u64, u64), String> {
    if line.starts_with("@@@") {
        return Err(format!(
            "combined (merge) diff hunk {line:?} is not supported"
        ));
    }
    let bad = || {
        format!("malformed hunk header {line:?}; expected `@@ -START[,COUNT] +START[,COUNT] @@`")
    };
    let rest = line.strip_prefix("@@ ").ok_or_else(bad)?;
    let (ranges, _context) = rest.split_once(" @@").ok_or_else(bad)?;
    let (r1, r2) = ranges.split_once(' ').ok_or_else(bad)?;
    let range = |s: &str| -> Option<(u64, u64)> {
        match s.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((s.parse().ok()?, 1)),
        }
    };
    let (a, b) = r1.strip_prefix('-').and_then(range).ok_or_else(bad)?;
    let (c, d) = r2.strip_prefix('+').and_then(range).ok_or_else(bad)?;
    if [a, b, c, d].iter().any(|&x| x > MAX_LINE_NO) {
        return Err(format!(
            "hunk header {line:?} has line numbers above {MAX_LINE_NO}"
        ));
    }
    Ok((b, d))
}

/// A git file mode (`100644`): regular files only; returns the full mode.
fn git_mode(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let mode = (!s.is_empty() && s.len() <= 7 && s.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(s, 8).ok())
        .flatten()
        .ok_or_else(|| format!("file mode {s:?} is not an octal number"))?;
    match mode & 0o170000 {
        0o100000 => Ok(mode),
        0o120000 => Err("symbolic links (mode 120000) are not supported".into()),
        0o160000 => Err("submodules (mode 160000) are not supported".into()),
        _ => Err(format!("file mode {s} is not a regular file's")),
    }
}

/// A `---`/`+++` name (after the marker and space): `None` for /dev/null.
fn header_name(rest: &str) -> Result<Option<String>, String> {
    let name = if rest.starts_with('"') {
        c_unquote(rest)?.0
    } else {
        rest.split('\t')
            .next()
            .unwrap_or_default()
            .trim_end_matches(' ')
            .to_string()
    };
    Ok((name != "/dev/null").then_some(name))
}

/// A name on a `rename from`/`rename to` line.
fn plain_or_quoted(rest: &str) -> Result<String, String> {
    if rest.starts_with('"') {
        Ok(c_unquote(rest)?.0)
    } else {
        Ok(rest.to_string())
    }
}

/// The two names of `diff --git a/x b/x`, without their `a/`/`b/` prefixes.
fn git_header_names(rest: &str) -> Option<(String, String)> {
    let (a, b) = if rest.starts_with('"') {
        let (a, tail) = c_unquote(rest).ok()?;
        let tail = tail.strip_prefix(' ')?;
        (a, plain_or_quoted(tail).ok()?)
    } else if let Some(idx) = rest.find(" \"") {
        (rest[..idx].to_string(), c_unquote(&rest[idx + 1..]).ok()?.0)
    } else if let Some(names) = symmetric(rest) {
        names
    } else if let Some(idx) = rest.find(" b/") {
        (rest[..idx].to_string(), rest[idx + 1..].to_string())
    } else {
        return None;
    };
    let strip = |s: String, prefix: &str| s.strip_prefix(prefix).map(str::to_string).unwrap_or(s);
    Some((strip(a, "a/"), strip(b, "b/")))
}

/// `a/N b/N` or `N N`: the same name on both sides (spaces allowed), split.
fn symmetric(rest: &str) -> Option<(String, String)> {
    let bytes = rest.as_bytes();
    let len = bytes.len();
    if rest.starts_with("a/") && len >= 5 && (len - 5) % 2 == 0 {
        let n = (len - 5) / 2;
        if &bytes[2 + n..5 + n] == b" b/" && bytes[2..2 + n] == bytes[5 + n..] {
            return Some((rest[..2 + n].to_string(), rest[3 + n..].to_string()));
        }
    }
    if len % 2 == 1 {
        let n = len / 2;
        if bytes[n] == b' ' && bytes[..n] == bytes[n + 1..] {
            return Some((rest[..n].to_string(), rest[n + 1..].to_string()));
        }
    }
    None
}

/// Unquotes a C-style quoted name at the start of `s` (git's quoting: `\t`,
/// `\"`, `\\`, octal `\303\251`, ...). Returns the name and the text after it.
fn c_unquote(s: &str) -> Result<(String, &str), String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(format!("quoted file name {s:?} is not terminated"));
        };
        match b {
            b'"' => {
                let name = String::from_utf8(out)
                    .map_err(|_| format!("quoted file name {s:?} is not valid UTF-8"))?;
                return Ok((name, &s[i + 1..]));
            }
            b'\\' => {
                i += 1;
                let Some(&e) = bytes.get(i) else {
                    return Err(format!("quoted file name {s:?} ends in a backslash"));
                };
                let c = match e {
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 11,
                    b'\\' | b'"' => e,
                    b'0'..=b'7' => {
                        let mut v: u32 = 0;
                        let mut k = 0;
                        while k < 3 && bytes.get(i + k).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                            v = v * 8 + u32::from(bytes[i + k] - b'0');
                            k += 1;
                        }
                        i += k - 1;
                        u8::try_from(v).map_err(|_| {
                            format!("quoted file name {s:?} has an octal escape above \\377")
                        })?
                    }
                    _ => {
                        return Err(format!(
                            "quoted file name {s:?} has an unknown escape \\{}",
                            char::from(e)
                        ))
                    }
                };
                out.push(c);
            }
            _ => out.push(b),
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests;
