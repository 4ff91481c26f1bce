//! Finding agents' patches in free text: a chat transcript, an agent's log,
//! a file saved from a reply, `git diff` output. Each patch found becomes a
//! native patch document (`{"operations": [...]}`, no id: the id comes from
//! the content; the submission's target is put in by [`for_target`]) that
//! goes through the one admission path like any other.
//!
//! What is found, in the order of the text:
//!
//! - every `apply_patch` envelope, from a `*** Begin Patch` line to the next
//!   `*** End Patch` line, wherever it stands (in prose, in a fence, in a
//!   shell heredoc `apply_patch <<'EOF'`): one patch each, one
//!   `apply_patch` operation;
//! - every SEARCH/REPLACE block outside the envelopes: together one patch
//!   (an agent's reply is meant as a whole), one `search_replace` operation
//!   per block, in order;
//! - every fenced block tagged `diff` or `patch`, and, outside fences, a
//!   unified diff (from its first file header to the next fence or the
//!   end): one patch each, one `apply_patch` operation with the diff.
//!
//! A patch whose text cannot be read (an envelope never closed, a
//! SEARCH/REPLACE block cut off) is found as an `Err` with the reason, so it
//! reaches a person instead of vanishing. Whether the operations themselves
//! are valid is the parser's business, at admission.

use serde_json::{json, Value};

use super::{diff, search_replace, text_lines};

/// One patch found in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// 1-based line where it starts.
    pub line: usize,
    /// `apply_patch`, `search_replace` or `diff`: what was recognised.
    pub format: &'static str,
    /// The native patch document, or why the text could not be read.
    pub result: Result<Value, String>,
}

/// A fenced block: the fence lines (0-based, `close` is `None` when never
/// closed) and its language.
struct Fence {
    open: usize,
    close: Option<usize>,
    lang: String,
}

fn fences(lines: &[&str]) -> Vec<Fence> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let indent = l.len() - l.trim_start_matches(' ').len();
        let t = &l[indent..];
        let ch = t.chars().next().unwrap_or(' ');
        let n = t.chars().take_while(|&c| c == ch).count();
        if indent > 3 || !(ch == '`' || ch == '~') || n < 3 {
            i += 1;
            continue;
        }
        let lang = t[n..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let close = (i + 1..lines.len()).find(|&j| {
            let c = lines[j].trim();
            c.chars().take_while(|&x| x == ch).count() >= n && c.trim_start_matches(ch).is_empty()
        });
        out.push(Fence {
            open: i,
            close,
            lang,
        });
        i = close.map_or(lines.len(), |c| c + 1);
    }
    out
}

fn doc(op: Value) -> Value {
    json!({ "operations": [op] })
}

/// Every agent patch in `text` (see the module documentation).
pub fn find(text: &str) -> Vec<Found> {
    let lines = text_lines(text);
    let mut found = Vec::new();
    let mut taken = vec![false; lines.len()];

    // apply_patch envelopes.
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "*** Begin Patch" {
            i += 1;
            continue;
        }
        match (i + 1..lines.len()).find(|&j| lines[j].trim() == "*** End Patch") {
            Some(end) => {
                let mut patch = lines[i..=end].join("\n");
                patch.push('\n');
                taken[i..=end].iter_mut().for_each(|t| *t = true);
                found.push(Found {
                    line: i + 1,
                    format: "apply_patch",
                    result: Ok(doc(json!({"op": "apply_patch", "patch": patch}))),
                });
                i = end + 1;
            }
            None => {
                taken[i..].iter_mut().for_each(|t| *t = true);
                found.push(Found {
                    line: i + 1,
                    format: "apply_patch",
                    result: Err(format!(
                        "the apply_patch envelope opened at line {} is never closed with `*** End Patch`",
                        i + 1
                    )),
                });
                i = lines.len();
            }
        }
    }

    // SEARCH/REPLACE blocks, together.
    let first_head = (0..lines.len()).find(|&i| !taken[i] && search_replace::is_head(lines[i]));
    if let Some(first) = first_head {
        let result = search_replace::find(text, &|i| taken.get(i).copied().unwrap_or(false))
            .map(|blocks| {
                let ops: Vec<Value> = blocks
                    .iter()
                    .map(|b| {
                        json!({"op": "search_replace", "path": b.path, "search": b.search, "replace": b.replace})
                    })
                    .collect();
                json!({ "operations": ops })
            })
            .map_err(|e| e.join("; "));
        // The blocks' lines are theirs, not a diff's.
        let mut in_block = false;
        for (i, l) in lines.iter().enumerate() {
            if !taken[i] && search_replace::is_head(l) {
                in_block = true;
            }
            if in_block {
                taken[i] = true;
            }
            if l.trim_end().starts_with(">>>>>") {
                in_block = false;
            }
        }
        found.push(Found {
            line: first + 1,
            format: "search_replace",
            result,
        });
    }

    // Diffs: tagged fences, then unfenced text.
    let fs = fences(&lines);
    let mut in_fence = vec![false; lines.len()];
    for f in &fs {
        let end = f.close.unwrap_or(lines.len() - 1);
        in_fence[f.open..=end].iter_mut().for_each(|x| *x = true);
        if !(f.lang == "diff" || f.lang == "patch") || taken[f.open..=end].iter().any(|t| *t) {
            continue;
        }
        let body = &lines[f.open + 1..f.close.unwrap_or(lines.len())];
        let mut content = body.join("\n");
        content.push('\n');
        let result = if f.close.is_none() {
            Err(format!(
                "the diff block opened at line {} is never closed",
                f.open + 1
            ))
        } else if !diff::looks_like_diff(&content) {
            Err(format!(
                "the diff block at line {} has no file header (`--- a/path` and `+++ b/path`)",
                f.open + 1
            ))
        } else {
            Ok(doc(json!({"op": "apply_patch", "patch": content})))
        };
        found.push(Found {
            line: f.open + 1,
            format: "diff",
            result,
        });
    }
    let mut i = 0;
    while i < lines.len() {
        let free = |j: usize| !in_fence[j] && !taken[j];
        let header = lines[i].starts_with("diff --git ")
            || (lines[i].starts_with("--- ")
                && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ ")));
        if !free(i) || !header {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < lines.len() && free(end) {
            end += 1;
        }
        let mut content = lines[i..end].join("\n");
        content.push('\n');
        found.push(Found {
            line: i + 1,
            format: "diff",
            result: Ok(doc(json!({"op": "apply_patch", "patch": content}))),
        });
        i = end;
    }
    found.sort_by_key(|f| f.line);
    found
}

/// A found document for `target` (the submission's `--target`, `?target=`,
/// inbox subdirectory): the target goes into the document, so the same
/// agent's text sent for two targets is two patches (an id-less patch's id
/// comes from its content).
pub fn for_target(mut doc: Value, target: Option<&str>) -> Value {
    if let (Some(t), Some(obj)) = (target, doc.as_object_mut()) {
        obj.entry("target").or_insert_with(|| json!(t));
    }
    doc
}

/// For a submission's bytes (`ghostctl submit FILE`, `ghostctl submit -`):
/// `None` when they are a JSON document (the first non-blank character, past
/// a byte order mark, is `{` or `[`), for the JSON parser; otherwise the
/// agents' patches found in the text, or why there is none.
pub fn in_submission(bytes: &[u8]) -> Option<Result<Vec<Found>, String>> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        return None;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Some(Err(format!(
                "neither JSON nor UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            )))
        }
    };
    let found = find(text);
    Some(if found.is_empty() {
        Err(
            "no patch found: the text is neither JSON nor holds an apply_patch envelope, \
             SEARCH/REPLACE blocks or a unified diff"
                .into(),
        )
    } else {
        Ok(found)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_format_beside_prose() {
        let text = "Let me fix it.\n\napply_patch <<'EOF'\n*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\nEOF\n\n\
                    Then:\n\nb.txt\n```\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```\n\n\
                    ```diff\n--- a/c.txt\n+++ b/c.txt\n@@ -1 +1 @@\n-x\n+y\n```\n\nDone.\n";
        let found = find(text);
        let formats: Vec<&str> = found.iter().map(|f| f.format).collect();
        assert_eq!(formats, ["apply_patch", "search_replace", "diff"]);
        assert_eq!(found[0].line, 4);
        let ops = &found[1].result.as_ref().unwrap()["operations"];
        assert_eq!(ops[0]["path"], "b.txt");
        assert_eq!(ops[0]["search"], "old\n");
        let d = found[2].result.as_ref().unwrap()["operations"][0]["patch"]
            .as_str()
            .unwrap();
        assert!(d.starts_with("--- a/c.txt\n"), "{d}");
    }

    #[test]
    fn a_bare_git_diff_is_one_patch_and_unclosed_things_are_errors() {
        let found = find("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].result.is_ok());
        let found = find("*** Begin Patch\n*** Add File: a\n+x\n");
        assert!(found[0]
            .result
            .as_ref()
            .unwrap_err()
            .contains("never closed"));
        assert!(find("no patch here\n```rust\nfn main() {}\n```\n").is_empty());
    }
}
