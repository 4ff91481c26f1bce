//! Patches inside chat transcripts: [`extract`] finds the fenced code blocks of
//! a markdown or plain-text document and returns every one that holds (or was
//! meant to hold) a patch. It never validates a patch (the ingestor does); it
//! only decides which blocks are patch candidates and reads them into JSON.
//!
//! # Fenced blocks (CommonMark's rules, top level only)
//!
//! - Lines end at `\n`, `\r\n` or a lone `\r`; line numbers are 1-based.
//! - An *opening fence* is a line with at most 3 leading spaces, then 3 or more
//!   backticks or 3 or more tildes, then an optional *info string*. A backtick
//!   fence whose info string contains a backtick is not a fence (CommonMark).
//!   The *language* is the info string's first whitespace-separated word,
//!   compared case-insensitively (`JSON` is `json`).
//! - The block's content is every following line up to the *closing fence*: a
//!   line with at most 3 leading spaces, then at least as many of the opening
//!   character as the opening fence had, then nothing but spaces and tabs.
//!   Other fence lines inside (```` ``` ```` within a ```` ```` ```` block,
//!   tildes within backticks) are content. From each content line, as many
//!   leading spaces as the opening fence was indented are removed.
//! - A block with no closing fence runs to the end of the text.
//! - Not recognised: fences indented by 4 or more spaces or by a tab (an
//!   indented code block in CommonMark, including fences nested in list items),
//!   and fences inside block quotes (`> ```json`).
//!
//! Every fenced block is numbered (`block`, 1-based, in order of appearance),
//! whatever its language, so that "block 3" is the third fenced block a person
//! counts in the text; `line` is the line of its opening fence.
//!
//! # Which blocks are candidates
//!
//! | language | read as | if it does not read | if it is not patch-shaped |
//! |---|---|---|---|
//! | `ghostbridge`, `ghost-patch` | JSON if the first non-blank character is `{` or `[`, else YAML | `Err` with the parser's reason | `Err` |
//! | `json` | JSON | `Err` if it *looks like a patch*, else skipped | skipped |
//! | `yaml`, `yml` | YAML 1.2 (below) | `Err` if it *looks like a patch*, else skipped | skipped |
//! | none (empty info string) | JSON | `Err` if it *looks like a patch*, else skipped | skipped |
//! | anything else (`rust`, `sh`, `diff`, …) | — | skipped | skipped |
//!
//! Chats are full of JSON and YAML that are not patches (a `package.json`, a
//! CI file): only a block tagged `ghostbridge`/`ghost-patch` is *declared* a
//! patch and is an error whatever is wrong with it; the others count when they
//! are patches, and when they were evidently meant to be one.
//!
//! A value is *patch-shaped* when it is an object with one of the keys
//! `operations`, `mutations`, `blockId`, `target_file`, `patch` (the shapes the
//! patch parser knows). An array is read as a list of patches: each element is
//! its own [`Extracted`], all with the block's `block` and `line` (so a
//! consumer numbers the elements of one block by counting equal `block`s). An element that is not
//! patch-shaped is an `Err` naming its 1-based position. An untagged array
//! with no patch-shaped element is skipped; a tagged empty array is an `Err`.
//!
//! A JSON or untagged block *looks like a patch* when its first non-blank
//! character is `{` or `[` and it contains one of the keys above as a JSON key
//! (`"operations":`); a YAML block does when one of its lines starts with one
//! of the keys and a colon (`operations:`). Such a block that fails to parse, or that is never
//! closed, is an `Err` rather than silently skipped: a truncated or mistyped
//! patch from an assistant must reach a person.
//!
//! A candidate block that is never closed is an `Err` ("block opened at line N
//! is never closed") even when its content would parse: the text was probably
//! cut off. (An untagged unclosed block is reported only when it would have been
//! a candidate: patch-shaped, or looking like a patch.)
//!
//! Parse errors name the line and column in the *transcript* (the fence line
//! plus the line inside the block; the column counts the indentation removed).
//!
//! # Agents' patches
//!
//! Besides the blocks above, every patch an agent writes is found by its own
//! markers, wherever it stands (in prose, in a fenced block of any language,
//! in a heredoc): `apply_patch` envelopes, SEARCH/REPLACE blocks (together
//! one patch), blocks tagged `diff` or `patch`, and a unified diff outside
//! the fences ([`ghost_core::patch::agent::detect`]). Each is an
//! [`Extracted`] with `agent` set, `line` the line where it starts, and
//! `block` the fenced block it stands in (`None` outside any). The output is
//! ordered by `line`; the items of one block keep their order.
//!
//! # YAML
//!
//! Read with `yaml-rust2` (YAML 1.2 core schema) straight into JSON values:
//! null, booleans, integers (`0x`/`0o` forms included), floats, strings,
//! sequences and mappings map to their JSON equivalents. Refused with a clear
//! reason: mapping keys that are not strings (`1: x`, `true: y`, a sequence as
//! a key; quote the key), duplicate keys, anchors and aliases (`&a`, `*a`:
//! they can expand exponentially), tags other than the core ones (`!!str`,
//! `!!int`, `!!float`, `!!bool`, `!!null`, `!!map`, `!!seq`), floats JSON
//! cannot hold (`.nan`, `.inf`, `1e999`), and nesting deeper than
//! [`MAX_DEPTH`]. A block with several documents (`---`) is read as an array
//! of them. A block with no document, or only an empty one, is an `Err`.

use serde_json::Value;

mod yaml;

/// One patch candidate found in a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// 1-based number of the block among all fenced blocks of the text;
    /// `None` for an agent's patch outside any fenced block.
    pub block: Option<usize>,
    /// 1-based line of the block's opening fence (for an agent's patch: the
    /// line where it starts).
    pub line: usize,
    /// The candidate patch as JSON, or why this block could not be read.
    pub result: Result<Value, String>,
    /// An agent's patch made into a native document (not a JSON or YAML
    /// block): the submission's target belongs in it
    /// (`ghost_core::patch::agent::detect::for_target`).
    pub agent: bool,
}

/// The keys that make an object patch-shaped.
pub const PATCH_KEYS: [&str; 5] = ["operations", "mutations", "blockId", "target_file", "patch"];

/// Deepest nesting of arrays and objects a YAML block may have (the JSON
/// reader has the same limit, serde_json's default).
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Json,
    Yaml,
    /// `ghostbridge`/`ghost-patch`: JSON or YAML by the first character.
    Ghost,
    Untagged,
    Other,
}

impl Lang {
    fn of(info: &str) -> Lang {
        let word = info.split_whitespace().next().unwrap_or("");
        match word.to_ascii_lowercase().as_str() {
            "" => Lang::Untagged,
            "json" => Lang::Json,
            "yaml" | "yml" => Lang::Yaml,
            "ghostbridge" | "ghost-patch" => Lang::Ghost,
            _ => Lang::Other,
        }
    }
}

/// A fenced block as found in the text.
struct Block<'a> {
    number: usize,
    line: usize,
    lang: Lang,
    closed: bool,
    /// Content lines with the fence's indentation removed, and how many spaces
    /// were removed from each.
    lines: Vec<(&'a str, usize)>,
}

impl Block<'_> {
    fn content(&self) -> String {
        let mut s = String::new();
        for (l, _) in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Transcript line and column of a 1-based (line, column) inside the content.
    fn position(&self, line: usize, col: usize) -> (usize, usize) {
        let shift = line
            .checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .map_or(0, |(_, s)| *s);
        (self.line + line, col + shift)
    }
}

/// Split at `\n`, `\r\n` and lone `\r`, without the terminators. A final line
/// terminator does not start another line.
fn split_lines(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\n' => {
                out.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                out.push(&text[start..i]);
                i += 1;
                if b.get(i) == Some(&b'\n') {
                    i += 1;
                }
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        out.push(&text[start..]);
    }
    out
}

fn leading_spaces(line: &str) -> usize {
    line.bytes().take_while(|&c| c == b' ').count()
}

/// An opening fence: (character, length, indentation, info string).
fn opening_fence(line: &str) -> Option<(u8, usize, usize, &str)> {
    let indent = leading_spaces(line);
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let ch = *rest.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = rest.bytes().take_while(|&c| c == ch).count();
    if len < 3 {
        return None;
    }
    let info = rest[len..].trim_matches([' ', '\t']);
    if ch == b'`' && info.contains('`') {
        return None;
    }
    Some((ch, len, indent, info))
}

fn is_closing_fence(line: &str, ch: u8, len: usize) -> bool {
    let indent = leading_spaces(line);
    if indent > 3 {
        return false;
    }
    let rest = &line[indent..];
    let n = rest.bytes().take_while(|&c| c == ch).count();
    n >= len && rest[n..].bytes().all(|c| c == b' ' || c == b'\t')
}

fn blocks(text: &str) -> Vec<Block<'_>> {
    let lines = split_lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some((ch, len, indent, info)) = opening_fence(lines[i]) else {
            i += 1;
            continue;
        };
        let mut block = Block {
            number: out.len() + 1,
            line: i + 1,
            lang: Lang::of(info),
            closed: false,
            lines: Vec::new(),
        };
        i += 1;
        while i < lines.len() {
            let l = lines[i];
            i += 1;
            if is_closing_fence(l, ch, len) {
                block.closed = true;
                break;
            }
            let strip = leading_spaces(l).min(indent);
            block.lines.push((&l[strip..], strip));
        }
        out.push(block);
    }
    out
}

/// Find every patch candidate in `text` (see the module documentation for the
/// rules). Never panics; the output is in text order.
pub fn extract(text: &str) -> Vec<Extracted> {
    let mut out = Vec::new();
    let all = blocks(text);
    for b in &all {
        if b.lang == Lang::Other {
            continue;
        }
        let content = b.content();
        let declared = b.lang == Lang::Ghost;
        let results: Vec<Result<Value, String>> = if !b.closed {
            let candidate = declared
                || looks_like_patch(&content)
                || (b.lang == Lang::Yaml && looks_like_yaml_patch(&content))
                || serde_json::from_str::<Value>(&content)
                    .is_ok_and(|v| !shape(v, false, "JSON").is_empty());
            if candidate {
                vec![Err(format!(
                    "block opened at line {} is never closed",
                    b.line
                ))]
            } else {
                Vec::new()
            }
        } else {
            read_block(b, &content)
        };
        out.extend(results.into_iter().map(|result| Extracted {
            block: Some(b.number),
            line: b.line,
            result,
            agent: false,
        }));
    }
    // Agents' formats, found by their own markers (lines split as here).
    let normalised = split_lines(text).join("\n");
    for f in ghost_core::patch::agent::detect::find(&normalised) {
        let inside = all.iter().find(|b| {
            let last = b.line + b.lines.len() + usize::from(b.closed);
            b.line <= f.line && f.line <= last
        });
        out.push(Extracted {
            block: inside.map(|b| b.number),
            line: f.line,
            result: f.result,
            agent: true,
        });
    }
    // Stable: the items of one block keep their order.
    out.sort_by_key(|e| e.line);
    out
}

/// The candidates of a closed block (empty: not a candidate).
fn read_block(b: &Block<'_>, content: &str) -> Vec<Result<Value, String>> {
    let first = content.trim_start().chars().next();
    let declared = b.lang == Lang::Ghost;
    if first.is_none() {
        return if declared {
            vec![Err("block is empty".into())]
        } else {
            Vec::new()
        };
    }
    let as_json = match b.lang {
        Lang::Json | Lang::Untagged => true,
        Lang::Ghost => matches!(first, Some('{' | '[')),
        Lang::Yaml | Lang::Other => false,
    };
    if as_json {
        match parse_json(b, content) {
            Ok(v) => shape(v, declared, "JSON"),
            Err(e) if declared || looks_like_patch(content) => vec![Err(e)],
            Err(_) => Vec::new(),
        }
    } else {
        match parse_yaml(b, content) {
            Ok(docs) if docs.iter().all(Value::is_null) => {
                if declared {
                    vec![Err("block is empty".into())]
                } else {
                    Vec::new()
                }
            }
            Ok(mut docs) if docs.len() == 1 => shape(docs.remove(0), declared, "YAML"),
            Ok(docs) => shape(Value::Array(docs), declared, "YAML"),
            Err(e) if declared || looks_like_yaml_patch(content) => vec![Err(e)],
            Err(_) => Vec::new(),
        }
    }
}

fn is_patch(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| PATCH_KEYS.iter().any(|k| o.contains_key(*k)))
}

fn expected() -> String {
    format!(
        "expected an object with one of the keys {}",
        PATCH_KEYS.join(", ")
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object without any of them",
    }
}

/// Patch candidates in a parsed value (empty: not a candidate).
fn shape(v: Value, tagged: bool, format: &str) -> Vec<Result<Value, String>> {
    match v {
        v if is_patch(&v) => vec![Ok(v)],
        Value::Array(items) => {
            if !tagged && !items.iter().any(is_patch) {
                return Vec::new();
            }
            if items.is_empty() {
                return vec![Err(format!(
                    "block is an empty {format} array: no patch in it"
                ))];
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    if is_patch(&v) {
                        Ok(v)
                    } else {
                        Err(format!(
                            "element {} of the array is not a patch: {}, found {}",
                            i + 1,
                            expected(),
                            kind(&v)
                        ))
                    }
                })
                .collect()
        }
        v if tagged => vec![Err(format!(
            "block is {format} but not a patch: {}, found {}",
            expected(),
            kind(&v)
        ))],
        _ => Vec::new(),
    }
}

/// A YAML block with a line that starts with a patch key and a colon.
fn looks_like_yaml_patch(content: &str) -> bool {
    content.lines().any(|l| {
        let l = l.trim_start().trim_start_matches("- ");
        PATCH_KEYS
            .iter()
            .any(|k| l.strip_prefix(k).is_some_and(|rest| rest.starts_with(':')))
    })
}

/// A block that starts like JSON and names a patch key as a key.
fn looks_like_patch(content: &str) -> bool {
    if !matches!(content.trim_start().chars().next(), Some('{' | '[')) {
        return false;
    }
    PATCH_KEYS.iter().any(|k| {
        let quoted = format!("\"{k}\"");
        content.match_indices(&quoted).any(|(at, m)| {
            content[at + m.len()..]
                .trim_start_matches([' ', '\t', '\r', '\n'])
                .starts_with(':')
        })
    })
}

fn parse_json(b: &Block<'_>, content: &str) -> Result<Value, String> {
    let value = serde_json::from_str(content).map_err(|e| {
        let msg = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
        if e.line() == 0 {
            return format!("invalid JSON: {msg}");
        }
        let (line, col) = b.position(e.line(), e.column());
        format!("invalid JSON at line {line} column {col}: {msg}")
    })?;
    // A key named twice: the value kept only one of them (see the parser).
    ghost_core::patch::parse::refuse_duplicate_keys(content).map_err(|e| {
        let e = &e.errors[0];
        format!("{}: {}", e.field, e.reason)
    })?;
    Ok(value)
}

fn parse_yaml(b: &Block<'_>, content: &str) -> Result<Vec<Value>, String> {
    yaml::load(content).map_err(|(m, info)| match m {
        Some(m) => {
            let (line, col) = b.position(m.line(), m.col() + 1);
            format!("invalid YAML at line {line} column {col}: {info}")
        }
        None => info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn oks(x: &[Extracted]) -> Vec<&Value> {
        x.iter().filter_map(|e| e.result.as_ref().ok()).collect()
    }

    fn errs(x: &[Extracted]) -> Vec<(usize, usize, &str)> {
        x.iter()
            .filter_map(|e| {
                e.result
                    .as_ref()
                    .err()
                    .map(|r| (e.block.unwrap_or(0), e.line, r.as_str()))
            })
            .collect()
    }

    const THREE: &str = "Here is the first patch:\n\
        \n\
        ```json\n\
        {\"id\": \"p1\", \"operations\": [{\"op\": \"delete\", \"path\": \"a\"}]}\n\
        ```\n\
        \n\
        And a broken one:\n\
        \n\
        ```json\n\
        {\"id\": \"p2\",\n\
        \x20\"operations\": [{\"op\": \"delete\" \"path\": \"b\"}]}\n\
        ```\n\
        \n\
        ```\n\
        {\"id\": \"p3\", \"operations\": [{\"op\": \"delete\", \"path\": \"c\"}]}\n\
        ```\n";

    #[test]
    fn three_blocks_one_invalid() {
        let x = extract(THREE);
        assert_eq!(x.len(), 3, "{x:?}");
        assert_eq!((x[0].block, x[0].line), (Some(1), 3));
        assert_eq!(x[0].result.as_ref().unwrap()["id"], "p1");
        assert_eq!((x[1].block, x[1].line), (Some(2), 9));
        let e = x[1].result.as_ref().unwrap_err();
        // The error is on the block's second line: transcript line 11.
        assert!(e.contains("invalid JSON at line 11 column"), "{e}");
        assert!(e.contains("expected `,` or `}`"), "{e}");
        assert_eq!((x[2].block, x[2].line), (Some(3), 14));
        assert_eq!(x[2].result.as_ref().unwrap()["id"], "p3");
    }

    #[test]
    fn crlf_and_lone_cr_line_endings() {
        let crlf = THREE.replace('\n', "\r\n");
        let cr = THREE.replace('\n', "\r");
        for text in [crlf, cr] {
            let x = extract(&text);
            assert_eq!(x.len(), 3);
            assert_eq!(x.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 9, 14]);
            assert_eq!(oks(&x).len(), 2);
            let e = x[1].result.as_ref().unwrap_err();
            assert!(e.contains("at line 11 column"), "{e}");
        }
    }

    #[test]
    fn yaml_block_equals_the_json_block() {
        let json_text = r#"```json
{"id": "y1", "target": "default", "description": "both",
 "operations": [{"op": "write", "path": "a.txt", "content": "line\n", "mode": "0644",
                 "expect_md5": null, "count": 2, "ratio": 1.5, "flag": true, "neg": -3}]}
```"#;
        let yaml_text = r#"```yaml
id: y1
target: default
description: "both"
operations:
  - op: write
    path: a.txt
    content: |
      line
    mode: "0644"
    expect_md5: null
    count: 2
    ratio: 1.5
    flag: true
    neg: -3
```
"#;
        let j = extract(json_text);
        let y = extract(yaml_text);
        assert_eq!(j.len(), 1);
        assert_eq!(y.len(), 1, "{y:?}");
        assert_eq!(y[0].result, j[0].result);
        // yml and ghostbridge tags read YAML too.
        let yml = yaml_text.replacen("yaml", "yml", 1);
        assert_eq!(extract(&yml)[0].result, j[0].result);
        let ghost = yaml_text.replacen("yaml", "ghostbridge", 1);
        assert_eq!(extract(&ghost)[0].result, j[0].result);
        let ghost_json = json_text.replacen("json", "ghost-patch", 1);
        assert_eq!(extract(&ghost_json)[0].result, j[0].result);
    }

    #[test]
    fn yaml_refusals_are_clear() {
        let cases = [
            ("operations: []\n1: x\n", "mapping key 1 is not a string"),
            (
                "operations: []\n? [a]\n: x\n",
                "mapping key must be a string, found a sequence",
            ),
            (
                "base: &b {op: delete}\noperations: [*b]\n",
                "anchors and aliases",
            ),
            (
                "operations: []\nratio: .nan\n",
                "cannot be represented in JSON",
            ),
            (
                "operations: []\nratio: -.inf\n",
                "cannot be represented in JSON",
            ),
            (
                "operations: []\nbig: 1e999\n",
                "cannot be represented in JSON",
            ),
            (
                "operations: []\noperations: []\n",
                "duplicate key \"operations\"",
            ),
            (
                "operations: !!binary aGk=\n",
                "tag !!binary is not supported",
            ),
            ("operations: !custom x\n", "tag !custom is not supported"),
            ("operations: [\n", "invalid YAML at line"),
            ("name: just config\n", "block is YAML but not a patch"),
            ("", "block is empty"),
            ("---\n", "block is empty"),
        ];
        for (body, want) in cases {
            // Declared patches: every refusal is reported.
            let text = format!("intro\n```ghost-patch\n{body}```\n");
            let x = extract(&text);
            assert_eq!(x.len(), 1, "{body:?}: {x:?}");
            let e = x[0].result.as_ref().expect_err(body);
            assert!(e.contains(want), "{body:?}: {e}");
            // Plain YAML blocks: reported when they were meant as a patch, else skipped.
            let x = extract(&format!("intro\n```yaml\n{body}```\n"));
            if body.contains("operations") {
                assert!(x[0].result.as_ref().unwrap_err().contains(want), "{body:?}");
            } else {
                assert!(x.is_empty(), "{body:?}: {x:?}");
            }
        }
        // Positions are in the transcript: line 2 is the fence, the key is on line 4.
        let x = extract("intro\n```yaml\noperations: []\n1: x\n```\n");
        let e = x[0].result.as_ref().unwrap_err();
        assert!(e.starts_with("invalid YAML at line 4 column 1:"), "{e}");
    }

    #[test]
    fn yaml_scalars_and_documents() {
        let text = "```yaml\n\
operations: []\n\
hex: 0x1F\n\
oct: 0o17\n\
plus: +5\n\
tilde: ~\n\
yes_is_a_string: yes\n\
quoted_int: \"12\"\n\
tagged: !!str 12\n\
float: !!float 3\n\
'1': quoted key\n\
---\n\
target_file: x\n\
```\n";
        let x = extract(text);
        assert_eq!(x.len(), 2, "{x:?}");
        assert_eq!(
            x[0].result.as_ref().unwrap(),
            &json!({"operations": [], "hex": 31, "oct": 15, "plus": 5, "tilde": null,
                    "yes_is_a_string": "yes", "quoted_int": "12", "tagged": "12",
                    "float": 3.0, "1": "quoted key"})
        );
        assert_eq!(x[1].result.as_ref().unwrap(), &json!({"target_file": "x"}));
        assert!(x.iter().all(|e| (e.block, e.line) == (Some(1), 1)));
    }

    #[test]
    fn deep_yaml_is_refused_without_overflowing_the_stack() {
        for body in [
            "- ".repeat(100_000),
            "[".repeat(100_000),
            "{a: ".repeat(100_000),
        ] {
            // Not meant as a patch: skipped, but read without overflowing.
            let x = extract(&format!("```yaml\n{body}x\n```\n"));
            assert!(x.iter().all(|e| e.result.is_err()), "{}", x.len());
            // Declared as a patch: refused by the depth limit.
            let x = extract(&format!("```ghost-patch\n# deep\n{body}x\n```\n"));
            assert_eq!(x.len(), 1);
            let e = x[0].result.as_ref().unwrap_err();
            // Flow collections may hit the scanner's own limit first.
            assert!(
                e.contains("nested deeper than 128 levels")
                    || (!body.starts_with('-') && e.contains("recursion limit exceeded")),
                "{e}"
            );
        }
        let deep_json = format!("```ghost-patch\n{}\n```\n", "[".repeat(100_000));
        assert!(extract(&deep_json)[0].result.is_err());
    }

    #[test]
    fn nested_fences_and_tildes() {
        let text = "````json\n\
{\"operations\": [{\"op\": \"write\", \"path\": \"README.md\",\n\
  \"content\": \"\n\
```\n\
code\n\
```\n\
\"}]}\n\
````\n\
~~~\n\
{\"target_file\": \"x\", \"patch\": {\"content\": \"```\"}}\n\
```\n\
~~~~~\n\
after\n";
        // Raw newlines inside a JSON string are invalid; use a text that only
        // nests fences inside a non-candidate block for the first check.
        let x = extract(text);
        assert_eq!(x.len(), 2, "{x:?}");
        assert_eq!((x[0].block, x[0].line), (Some(1), 1));
        assert!(x[0].result.as_ref().unwrap_err().contains("invalid JSON"));
        // The tilde block ends at the ~~~~~ line, not at the ``` inside it,
        // and its content (with a ``` line) is not valid JSON: untagged but
        // looks like a patch, so it is reported.
        assert_eq!((x[1].block, x[1].line), (Some(2), 9));
        assert!(x[1].result.as_ref().unwrap_err().contains("invalid JSON"));

        let ok = "````markdown\n```json\n{\"operations\": []}\n```\n````\n\
~~~ json title=\"p.json\"\n{\"id\": \"t\", \"operations\": []}\n~~~\n";
        let x = extract(ok);
        assert_eq!(x.len(), 1, "{x:?}");
        assert_eq!((x[0].block, x[0].line), (Some(2), 6));
        assert_eq!(x[0].result.as_ref().unwrap()["id"], "t");
    }

    #[test]
    fn fence_details() {
        // Indented up to three spaces; content de-indented; closing needs >= length.
        let text = "   ```JSON\n   {\"id\": \"i\",\n    \"patch\": {}}\n   ``\n``````\n";
        let x = extract(text);
        assert_eq!(x.len(), 1, "{x:?}");
        // The `` line is content, so the JSON is invalid; the error column
        // counts the removed indentation.
        let e = x[0].result.as_ref().unwrap_err();
        assert!(e.contains("at line 4 column"), "{e}");
        // Four spaces: an indented code block, not a fence.
        assert!(extract("    ```json\n    {\"operations\": []}\n    ```\n").is_empty());
        // A backtick fence's info string may not hold a backtick.
        assert!(extract("```json`\n{\"operations\": []}\n```\n").is_empty());
        // Closing fence with trailing spaces but no other text.
        let x = extract("```json\n{\"operations\": []}\n```   \t\n");
        assert_eq!(oks(&x).len(), 1);
    }

    #[test]
    fn unclosed_fence() {
        let x = extract("a\n```json\n{\"operations\": []}\n");
        assert_eq!(errs(&x), [(1, 2, "block opened at line 2 is never closed")]);
        let x = extract("```\n{\"operations\": [\n");
        assert_eq!(errs(&x), [(1, 1, "block opened at line 1 is never closed")]);
        // Untagged prose in an unclosed fence, or another language: nothing.
        assert!(extract("```\njust some output\n").is_empty());
        assert!(extract("```rust\nfn main() {}\n").is_empty());
        // A fence line with an info string does not close a block.
        let x = extract("```sh\nls\n```json\n{\"operations\": []}\n```\n");
        assert!(x.is_empty(), "{x:?}");
    }

    #[test]
    fn agents_formats_beside_json_blocks_and_prose() {
        let text = "Plan:\n\n```json\n{\"operations\": [{\"op\": \"delete\", \"path\": \"x\"}]}\n```\n\
Then the agent ran:\n\napply_patch <<'EOF'\n*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\nEOF\n\n\
b.txt\n```python\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```\n\n\
```diff\n--- a/c.txt\n+++ b/c.txt\n@@ -1 +1 @@\n-x\n+y\n```\n";
        let x = extract(text);
        let at: Vec<(Option<usize>, usize)> = x.iter().map(|e| (e.block, e.line)).collect();
        assert_eq!(at, [(Some(1), 3), (None, 9), (Some(2), 17), (Some(3), 24)]);
        let op = |i: usize| oks(&x[i..=i])[0]["operations"][0]["op"].clone();
        assert_eq!(
            [op(0), op(1), op(2), op(3)],
            [
                json!("delete"),
                json!("apply_patch"),
                json!("search_replace"),
                json!("apply_patch")
            ]
        );
    }

    #[test]
    fn untagged_and_other_languages() {
        let text = "```\n$ cargo test\nok\n```\n\
```\n{\"name\": \"not a patch\"}\n```\n\
```rust\n{\"operations\": [}\n```\n\
```sh\necho '{\"operations\": []}'\n```\n\
```\n[1, 2]\n```\n\
```\n\n```\n";
        assert!(extract(text).is_empty());
        // A diff block is an agent's patch (read at admission).
        let x = extract("```diff\n--- a\n+++ b\n```\n");
        assert_eq!((x.len(), x[0].block, x[0].line), (1, Some(1), 1));
        assert!(x[0].result.is_ok());
        // JSON that is not a patch (a package.json in a chat) is skipped…
        assert!(extract("```json\n{\"name\": \"package\"}\n```\n").is_empty());
        assert!(extract("```json\n\"text\"\n```\n").is_empty());
        assert!(extract("```json\n\n```\n").is_empty());
        // …unless the block is declared a patch.
        let x = extract("```ghost-patch\n{\"name\": \"package\"}\n```\n");
        let e = x[0].result.as_ref().unwrap_err();
        assert!(e.starts_with("block is JSON but not a patch: expected an object with one of the keys operations, mutations, blockId, target_file, patch"), "{e}");
        let x = extract("```ghost-patch\n\"text\"\n```\n");
        assert!(x[0].result.as_ref().unwrap_err().contains("found a string"));
        assert_eq!(
            extract("```ghost-patch\n\n```\n")[0].result,
            Err("block is empty".to_string())
        );
        // A JSON block meant as a patch but broken is reported.
        let x = extract("```json\n{\"operations\": [}\n```\n");
        assert!(x[0].result.is_err());
    }

    #[test]
    fn arrays_give_one_candidate_per_element() {
        let x = extract(
            "x\n```json\n[{\"operations\": []}, 5, {\"blockId\": \"b\", \"mutations\": []}]\n```\n",
        );
        assert_eq!(x.len(), 3);
        assert!(x.iter().all(|e| (e.block, e.line) == (Some(1), 2)));
        assert!(x[0].result.is_ok() && x[2].result.is_ok());
        let e = x[1].result.as_ref().unwrap_err();
        assert!(
            e.starts_with("element 2 of the array is not a patch"),
            "{e}"
        );
        // Untagged arrays count when one element is a patch.
        let x = extract("```\n[{\"patch\": {}}, {\"a\": 1}]\n```\n");
        assert_eq!((oks(&x).len(), errs(&x).len()), (1, 1));
        assert!(extract("```json\n[]\n```\n").is_empty());
        assert!(extract("```ghost-patch\n[]\n```\n")[0].result.is_err());
    }

    #[test]
    fn no_blocks() {
        assert!(extract("").is_empty());
        assert!(
            extract("just a chat message with `inline` code and {\"operations\": []}").is_empty()
        );
        assert!(extract("``\n{\"operations\": []}\n``\n").is_empty());
    }

    fn line_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("```".to_string()),
            Just("````".to_string()),
            Just("~~~".to_string()),
            Just("```json".to_string()),
            Just("```yaml".to_string()),
            Just("~~~ yml".to_string()),
            Just("```ghostbridge".to_string()),
            Just("```rust".to_string()),
            Just("   ```".to_string()),
            Just("{\"operations\": []}".to_string()),
            Just("[{\"patch\": {}}, 1]".to_string()),
            Just("operations: []".to_string()),
            Just("- &a x".to_string()),
            Just("- *a".to_string()),
            Just("? [x]".to_string()),
            Just("{\"operations\": [".to_string()),
            "[ -~]{0,20}",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn extract_never_panics_and_is_ordered(
            lines in prop::collection::vec(line_strategy(), 0..24),
            endings in prop::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r")], 24),
        ) {
            let mut text = String::new();
            for (l, e) in lines.iter().zip(&endings) {
                text.push_str(l);
                text.push_str(e);
            }
            let n_lines = split_lines(&text).len();
            let x = extract(&text);
            for w in x.windows(2) {
                prop_assert!(w[0].line <= w[1].line);
            }
            let fenced: Vec<&Extracted> = x.iter().filter(|e| e.block.is_some()).collect();
            for w in fenced.windows(2) {
                prop_assert!(w[0].block <= w[1].block);
            }
            for e in &x {
                prop_assert!(e.line >= 1 && e.line <= n_lines);
                if let Some(b) = e.block {
                    prop_assert!(b >= 1 && b <= e.line);
                }
            }
        }

        #[test]
        fn extract_never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = extract(&text);
        }
    }
}
