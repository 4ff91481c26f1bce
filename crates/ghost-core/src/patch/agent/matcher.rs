//! Finding an agent's hunks in a file, and applying them.
//!
//! Each hunk's old lines are searched for on a ladder, and the first rung
//! that finds them decides:
//!
//! 1. exactly;
//! 2. ignoring trailing whitespace (the file's lines are replaced by the new
//!    lines as given);
//! 3. ignoring indentation: the old and new lines lose their common leading
//!    whitespace, the file's lines must equal the old ones under one common
//!    prefix of whitespace, and the new lines get that prefix;
//! 4. a search text that starts with a blank line (more than two lines) is
//!    tried again without it (an agent's habit).
//!
//! A hunk found in exactly one place is applied there. A diff's hunk states
//! its line: found there, that place wins; found elsewhere once, it is
//! applied at the offset. Found in several places with no stated line
//! deciding, or nowhere, the hunk fails with the candidate lines; nothing is
//! guessed. Every rung past the first, and every offset, is reported in the
//! notes that go into the summary.
//!
//! Hunks of one file apply in order, each searched from the end of the one
//! before (`@@` anchors first move that position to just after the anchor
//! line). Line endings are kept per line: a CRLF file stays CRLF (new lines get
//! the ending of the file's first line), and a file without a final newline
//! keeps that unless a diff's `\ No newline at end of file` says otherwise.

use super::Hunk;
use crate::patch::RelPath;
use crate::text::clip;

/// A text file as lines, with what is needed to write it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileText {
    lines: Vec<String>,
    /// Per line: it ended in `\r\n` (not only `\n`).
    crlf: Vec<bool>,
    /// The ending new lines get.
    new_crlf: bool,
    final_newline: bool,
}

impl FileText {
    fn parse(text: &str) -> FileText {
        let mut lines = Vec::new();
        let mut crlf = Vec::new();
        let mut parts: Vec<&str> = text.split('\n').collect();
        let last = parts.pop().unwrap_or("");
        for p in parts {
            match p.strip_suffix('\r') {
                Some(l) => {
                    lines.push(l.to_string());
                    crlf.push(true);
                }
                None => {
                    lines.push(p.to_string());
                    crlf.push(false);
                }
            }
        }
        let final_newline = last.is_empty();
        if !final_newline {
            lines.push(last.to_string());
            crlf.push(false);
        }
        let new_crlf = crlf.first().copied().unwrap_or(false);
        FileText {
            lines,
            crlf,
            new_crlf,
            final_newline,
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let n = self.lines.len();
        for (i, l) in self.lines.iter().enumerate() {
            out.push_str(l);
            if i + 1 < n || self.final_newline {
                out.push_str(if self.crlf[i] { "\r\n" } else { "\n" });
            }
        }
        out
    }

    fn splice(&mut self, at: usize, remove: usize, new: Vec<String>) {
        let crlf = vec![self.new_crlf; new.len()];
        self.lines.splice(at..at + remove, new);
        self.crlf.splice(at..at + remove, crlf);
    }
}

/// Which rung of the ladder found a hunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rung {
    Exact,
    TrailingWhitespace,
    Indentation,
}

/// The result of applying one file's hunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub text: String,
    /// Every tolerance used, one sentence each (empty: every hunk matched
    /// exactly where stated).
    pub notes: Vec<String>,
}

/// Applies `hunks` in order to `text` (the content of `path`). `Err` is a
/// reason naming the hunk and the candidate lines.
pub fn apply(path: &RelPath, text: &str, hunks: &[Hunk]) -> Result<Applied, String> {
    let mut f = FileText::parse(text);
    let mut notes = Vec::new();
    let mut cursor = 0;
    let total = hunks.len();
    for (i, h) in hunks.iter().enumerate() {
        let label = if total > 1 {
            format!("hunk {} of {total}", i + 1)
        } else {
            "the hunk".to_string()
        };
        let mut from = cursor;
        for a in &h.anchors {
            match find_anchor(&f.lines, from, a) {
                Some(at) => from = at + 1,
                None => {
                    return Err(format!(
                        "{path}: {label}: its anchor line `@@ {a}` is not in the file{}",
                        if from > 0 {
                            format!(" after line {from}")
                        } else {
                            String::new()
                        }
                    ))
                }
            }
        }
        if h.old.is_empty() {
            // A pure addition: after the anchor, after the stated line, or at the end.
            let at = if h.at_eof {
                f.lines.len()
            } else if !h.anchors.is_empty() {
                from
            } else if let Some(line) = h.line {
                line.min(f.lines.len())
            } else {
                f.lines.len()
            };
            let n = h.new.len();
            f.splice(at, 0, h.new.clone());
            cursor = at + n;
            if let Some(fnl) = h.final_newline {
                if cursor == f.lines.len() {
                    f.final_newline = fnl;
                }
            }
            continue;
        }
        let found = locate(&f.lines, from, h, path, &label)?;
        if let Some(note) = found.note {
            notes.push(note);
        }
        let n = found.new.len();
        f.splice(found.at, h.old.len() - found.skipped, found.new);
        cursor = found.at + n;
        if let Some(fnl) = h.final_newline {
            if cursor == f.lines.len() {
                f.final_newline = fnl;
            }
        }
    }
    Ok(Applied {
        text: f.render(),
        notes,
    })
}

/// Where a hunk goes and what replaces the old lines there.
struct Found {
    at: usize,
    new: Vec<String>,
    /// Leading old lines dropped (rung 4).
    skipped: usize,
    note: Option<String>,
}

fn find_anchor(lines: &[String], from: usize, anchor: &str) -> Option<usize> {
    let a = anchor.trim();
    (from..lines.len())
        .find(|&i| lines[i] == anchor)
        .or_else(|| (from..lines.len()).find(|&i| lines[i].trim() == a))
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Bytes of indentation: spaces and tabs only, so that slicing there is
/// always at a character boundary.
fn leading_ws(s: &str) -> usize {
    s.bytes().take_while(|b| *b == b' ' || *b == b'\t').count()
}

/// The positions (from `from`) where `old` matches on `rung`, with the
/// replacement each would get.
fn candidates(
    lines: &[String],
    from: usize,
    old: &[String],
    new: &[String],
    rung: Rung,
) -> Vec<(usize, Vec<String>)> {
    let n = old.len();
    if n == 0 || lines.len() < n {
        return Vec::new();
    }
    let mut out = Vec::new();
    match rung {
        Rung::Exact | Rung::TrailingWhitespace => {
            let eq = |a: &str, b: &str| match rung {
                Rung::Exact => a == b,
                _ => a.trim_end() == b.trim_end(),
            };
            for p in from..=lines.len() - n {
                if (0..n).all(|j| eq(&lines[p + j], &old[j])) {
                    out.push((p, new.to_vec()));
                }
            }
        }
        Rung::Indentation => {
            // The common indentation of the old and new lines goes; the
            // file's own comes back.
            let common = old
                .iter()
                .chain(new)
                .filter(|l| !is_blank(l))
                .map(|l| leading_ws(l))
                .min()
                .unwrap_or(0);
            let strip = |l: &String| -> String {
                if is_blank(l) {
                    String::new()
                } else {
                    l[common..].trim_end().to_string()
                }
            };
            let old_s: Vec<String> = old.iter().map(strip).collect();
            let new_s: Vec<String> = new.iter().map(strip).collect();
            let Some(j0) = old_s.iter().position(|l| !l.is_empty()) else {
                return out;
            };
            for p in from..=lines.len() - n {
                let first = lines[p + j0].trim_end();
                let Some(prefix) = first.strip_suffix(old_s[j0].as_str()) else {
                    continue;
                };
                if !prefix.chars().all(char::is_whitespace) {
                    continue;
                }
                let ok = (0..n).all(|j| {
                    if old_s[j].is_empty() {
                        is_blank(&lines[p + j])
                    } else {
                        lines[p + j].trim_end().strip_prefix(prefix) == Some(old_s[j].as_str())
                    }
                });
                if ok {
                    let re: Vec<String> = new_s
                        .iter()
                        .map(|l| {
                            if l.is_empty() {
                                String::new()
                            } else {
                                format!("{prefix}{l}")
                            }
                        })
                        .collect();
                    out.push((p, re));
                }
            }
        }
    }
    out
}

fn rung_words(rung: Rung) -> &'static str {
    match rung {
        Rung::Exact => "exactly",
        Rung::TrailingWhitespace => "ignoring trailing whitespace",
        Rung::Indentation => "ignoring indentation (the new lines re-indented to match)",
    }
}

fn locate(
    lines: &[String],
    from: usize,
    h: &Hunk,
    path: &RelPath,
    label: &str,
) -> Result<Found, String> {
    let mut tries: Vec<(usize, &[String], &[String])> = vec![(0, &h.old, &h.new)];
    if h.old.len() > 2 && is_blank(&h.old[0]) {
        let new: &[String] = if h.new.first().is_some_and(|l| is_blank(l)) {
            &h.new[1..]
        } else {
            &h.new
        };
        tries.push((1, &h.old[1..], new));
    }
    for (skipped, old, new) in tries {
        for rung in [Rung::Exact, Rung::TrailingWhitespace, Rung::Indentation] {
            let mut cands = candidates(lines, from, old, new, rung);
            if h.at_eof {
                cands.retain(|(p, _)| p + old.len() == lines.len());
            }
            if cands.is_empty() {
                continue;
            }
            let stated = h.line.map(|l| l.saturating_sub(1) + skipped);
            let pick = match stated.and_then(|s| cands.iter().position(|(p, _)| *p == s)) {
                Some(i) => i,
                None if cands.len() == 1 => 0,
                None => {
                    let places: Vec<String> = cands
                        .iter()
                        .map(|(p, _)| format!("{path}:{}", p + 1))
                        .collect();
                    return Err(format!(
                        "{path}: {label} matches {} in {} places ({}); it must match in exactly one: \
                         add context lines that make it unique",
                        rung_words(rung),
                        cands.len(),
                        places.join(", ")
                    ));
                }
            };
            let (at, new) = cands.swap_remove(pick);
            let mut how = Vec::new();
            if rung != Rung::Exact {
                how.push(rung_words(rung).to_string());
            }
            if skipped > 0 {
                how.push("without the blank line its search text starts with".to_string());
            }
            if let Some(s) = stated {
                if s != at {
                    how.push(format!(
                        "{} lines from the stated line {}",
                        at.abs_diff(s),
                        s + 1
                    ));
                }
            }
            let note = (!how.is_empty()).then(|| {
                format!(
                    "{path}: {label} matched at line {} {}",
                    at + 1,
                    how.join(", ")
                )
            });
            return Ok(Found {
                at,
                new,
                skipped,
                note,
            });
        }
    }
    Err(no_match(lines, from, h, path, label))
}

/// Why a hunk matched nowhere, with the lines that resemble its first line.
fn no_match(lines: &[String], from: usize, h: &Hunk, path: &RelPath, label: &str) -> String {
    let first = h.old.iter().find(|l| !is_blank(l)).map(|l| l.trim());
    let mut near: Vec<String> = match first {
        Some(f) => (0..lines.len())
            .filter(|&i| lines[i].trim() == f)
            .map(|i| format!("{path}:{}", i + 1))
            .collect(),
        None => Vec::new(),
    };
    let shown = first.map_or_else(|| "(blank lines)".to_string(), |f| clip(f, 60));
    let mut msg = format!(
        "{path}: {label} does not match the file{} (its first line: {shown:?}, {} lines to find)",
        if h.at_eof { " at its end" } else { "" },
        h.old.len()
    );
    if from > 0 {
        msg.push_str(&format!("; searched from line {}", from + 1));
    }
    if near.is_empty() {
        msg.push_str("; no line of the file resembles its first line");
    } else {
        near.truncate(10);
        msg.push_str(&format!(
            "; its first line alone is at {}, but the lines after it differ",
            near.join(", ")
        ));
    }
    msg
}

#[cfg(test)]
mod tests;
