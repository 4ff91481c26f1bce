//! SEARCH/REPLACE blocks (Aider):
//!
//! ````text
//! path/to/file.py
//! ```python
//! <<<<<<< SEARCH
//! the exact old lines
//! =======
//! the new lines
//! >>>>>>> REPLACE
//! ```
//! ````
//!
//! Markers: 5 to 9 `<`, `=` or `>` (7 is usual), then ` SEARCH` / ` REPLACE`,
//! trailing whitespace allowed. The file name is looked for in the (at most
//! three) lines just above `<<<<<<< SEARCH`, nearest first: a fence line
//! (```` ```python ````) is passed over unless it reads like a file name
//! (```` ```src/x.py ````); the first other line is the name once stripped of
//! `#`, a trailing `:`, backticks and `*`, provided it has no space in it;
//! the search stops there. A block with no name there takes the previous
//! block's file. A block that is not closed, or with no file name at all, is
//! refused.
//!
//! Applying (see `matcher`): the SEARCH text must match exactly one place of
//! the file. An empty SEARCH creates the file with the REPLACE text; on a
//! file that exists and is not empty it is refused (Aider appends there,
//! which an agent rarely means).

use super::text_lines;

/// One block as found in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// 1-based line of `<<<<<<< SEARCH`.
    pub line: usize,
    pub path: String,
    /// The lines between the markers, each with `\n`.
    pub search: String,
    pub replace: String,
}

fn marker(line: &str, ch: char, word: &str) -> bool {
    let t = line.trim_end();
    let n = t.chars().take_while(|&c| c == ch).count();
    (5..=9).contains(&n) && t[n..].trim() == word && (word.is_empty() || t[n..].starts_with(' '))
}

/// `<<<<<<< SEARCH`.
pub fn is_head(line: &str) -> bool {
    marker(line, '<', "SEARCH")
}

fn is_divider(line: &str) -> bool {
    marker(line, '=', "")
}

fn is_updated(line: &str) -> bool {
    marker(line, '>', "REPLACE")
}

fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// A file name read from one line above a block (see the module documentation).
fn strip_filename(line: &str) -> Option<String> {
    let t = line.trim();
    if t == "..." || t.is_empty() {
        return None;
    }
    if is_fence(t) {
        let rest = t.trim_start_matches(['`', '~']).trim();
        return (!rest.is_empty()
            && (rest.contains('.') || rest.contains('/'))
            && !rest.contains(' '))
        .then(|| rest.to_string());
    }
    let name = t.trim_end_matches(':').trim_start_matches('#').trim();
    let name = name.trim_matches('`').trim_matches('*').trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_string())
}

fn find_filename(above: &[&str]) -> Option<String> {
    for line in above.iter().rev() {
        if let Some(name) = strip_filename(line) {
            return Some(name);
        }
        if !is_fence(line) {
            return None;
        }
    }
    None
}

/// Every SEARCH/REPLACE block of `text`, in order, or every problem found.
/// `skip(i)` is true for (0-based) lines that belong to something else (an
/// `apply_patch` envelope).
pub fn find(text: &str, skip: &dyn Fn(usize) -> bool) -> Result<Vec<Block>, Vec<String>> {
    let lines = text_lines(text);
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut current: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        if skip(i) || !is_head(lines[i]) {
            i += 1;
            continue;
        }
        let head = i;
        let above = &lines[head.saturating_sub(3)..head];
        let path = find_filename(above).or_else(|| current.clone());
        let Some(path) = path else {
            errors.push(format!(
                "line {}: a SEARCH/REPLACE block needs the file's path on the line just above it (or above its opening fence)",
                head + 1
            ));
            i += 1;
            continue;
        };
        current = Some(path.clone());
        let mut j = head + 1;
        let mut search = String::new();
        while j < lines.len()
            && !is_divider(lines[j])
            && !is_updated(lines[j])
            && !is_head(lines[j])
        {
            search.push_str(lines[j]);
            search.push('\n');
            j += 1;
        }
        if j >= lines.len() || !is_divider(lines[j]) {
            errors.push(format!(
                "line {}: the SEARCH/REPLACE block for {path} has no `=======` line: it is cut off or malformed",
                head + 1
            ));
            i = j.max(head + 1);
            continue;
        }
        j += 1;
        let mut replace = String::new();
        while j < lines.len()
            && !is_updated(lines[j])
            && !is_head(lines[j])
            && !is_divider(lines[j])
        {
            replace.push_str(lines[j]);
            replace.push('\n');
            j += 1;
        }
        if j >= lines.len() || !is_updated(lines[j]) {
            errors.push(format!(
                "line {}: the SEARCH/REPLACE block for {path} is never closed with `>>>>>>> REPLACE`",
                head + 1
            ));
            i = j.max(head + 1);
            continue;
        }
        blocks.push(Block {
            line: head + 1,
            path,
            search,
            replace,
        });
        i = j + 1;
    }
    if errors.is_empty() {
        Ok(blocks)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: usize) -> bool {
        false
    }

    #[test]
    fn file_names_above_fences_and_carried_over() {
        let text = "Here:\n\nsrc/a.py\n```python\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```\n\n\
                    ```python\n<<<<<<< SEARCH\nx\n=======\n>>>>>>> REPLACE\n```\n\
                    **b.txt**\n<<<<<<< SEARCH\n=======\nhello\n>>>>>>> REPLACE\n";
        let blocks = find(text, &none).unwrap();
        let got: Vec<(&str, &str, &str)> = blocks
            .iter()
            .map(|b| (b.path.as_str(), b.search.as_str(), b.replace.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("src/a.py", "old\n", "new\n"),
                ("src/a.py", "x\n", ""),
                ("b.txt", "", "hello\n")
            ]
        );
        assert_eq!(blocks[0].line, 5);
    }

    #[test]
    fn unclosed_and_nameless_blocks_are_refused() {
        let e = find("a.txt\n<<<<<<< SEARCH\nx\n=======\ny\n", &none).unwrap_err();
        assert!(e[0].contains("never closed"), "{e:?}");
        let e = find(
            "Here's the change:\n\n```text\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n",
            &none,
        )
        .unwrap_err();
        assert!(e[0].contains("path"), "{e:?}");
    }
}
