//! Parsing: raw JSON (native v1 or one of the legacy shapes) to a normalised [`Patch`].
//!
//! The parser never stops at the first problem: it walks the whole document and
//! reports every problem it can find, each with a locator (`operations[2].path`,
//! `checks.after[0].argv`, `mutations[1].contents`, `(document)`, ...) and a reason
//! a person can act on. It never panics, whatever the input.
//!
//! Layout: this file holds the public API, shape detection, target resolution and
//! the small validators every shape shares; `native` parses the v1 format,
//! `legacy` the two shapes of the old project, and `diff` splits unified diffs
//! into per-file parts that `diffy` accepts.
//!
//! Decisions where the contract is silent (see also the module docs of the parts):
//! - A UTF-8 byte order mark at the start of the document is ignored.
//! - `null` for an optional field means "absent", except `expect_md5` on `write`
//!   (where it means "the file must not exist"); on `delete` a `null` `expect_md5`
//!   is rejected, since a file that must not exist cannot be deleted.
//! - Command `timeout_secs` and counts must be JSON integers (`600`, not `600.0`).
//! - `id` is at most 256 characters (Unicode scalar values), not bytes.

use serde_json::{Map, Value};

use super::{FieldError, GitAction, Patch, PatchError, RelPath, SourceFormat, TargetSpec};

mod diff;
mod legacy;
mod native;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

/// The field locator for problems with the document as a whole.
const DOC: &str = "(document)";

/// What the parser needs besides the document itself.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    pub targets: &'a [TargetSpec],
    /// From `ghostctl submit --target T` or a bridge route. If set: used when the patch names no target;
    /// if the patch names a target that resolves to a different canonical name -> error on field "target".
    pub target_override: Option<&'a str>,
}

/// Parse raw bytes (a JSON document) into a normalised Patch. Never panics on any input.
pub fn parse_patch(bytes: &[u8], opts: &ParseOptions) -> Result<Patch, PatchError> {
    let value = document_value(bytes)?;
    parse_patch_value(&value, opts)
}

/// The JSON value of a patch document's bytes, exactly as [`parse_patch`]
/// reads them: UTF-8, a leading byte order mark ignored, then JSON. The id
/// rule ([`document_id`]) and the content MD5 are taken from this value, so
/// whoever reads stored bytes (the id index, the lookups, the executor) sees
/// what the parser saw.
pub fn document_value(bytes: &[u8]) -> Result<Value, PatchError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return Err(PatchError::one(
                DOC,
                format!(
                    "the document is not valid UTF-8 (invalid byte at offset {}); a patch is JSON text, \
                     and binary file data must go in `content_base64` of a write operation",
                    e.valid_up_to()
                ),
            ))
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value = serde_json::from_str(text).map_err(|e| {
        let hint = if e.to_string().contains("recursion limit") {
            " (the document nests arrays/objects more than 128 levels deep)"
        } else {
            ""
        };
        PatchError::one(DOC, format!("not valid JSON: {e}{hint}"))
    })?;
    refuse_duplicate_keys(text)?;
    Ok(value)
}

/// Refuses a JSON text in which an object names a key twice (`{"id": "a",
/// "id": "b"}`). A JSON value keeps only one of them, silently, and readers
/// disagree on which; a patch must mean one thing. The error names the key
/// where it repeats (`id`, `operations[0].path`, `metadata.x`).
/// Run after the text parsed as JSON, so the walk only ever sees valid JSON.
pub fn refuse_duplicate_keys(text: &str) -> Result<(), PatchError> {
    use serde::de::{
        DeserializeSeed, Deserializer as _, Error as _, MapAccess, SeqAccess, Visitor,
    };
    use std::cell::RefCell;
    use std::collections::HashSet;

    /// The locator of the value being walked, and where the first repeat is.
    struct Walk<'a> {
        at: String,
        found: &'a RefCell<Option<(String, String)>>,
    }
    impl<'a> Walk<'a> {
        fn child(&self, at: String) -> Walk<'a> {
            Walk {
                at,
                found: self.found,
            }
        }
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0usize;
            while seq
                .next_element_seed(self.child(format!("{}[{i}]", self.at)))?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let at = key_locator(&self.at, &key);
                if !seen.insert(key.clone()) {
                    *self.found.borrow_mut() = Some((at, key));
                    return Err(A::Error::custom("duplicate key"));
                }
                map.next_value_seed(self.child(at))?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    // The text is valid JSON (parsed just before); an error here is the repeat.
    let _ = de.deserialize_any(Walk {
        at: String::new(),
        found: &found,
    });
    match found.into_inner() {
        None => Ok(()),
        Some((at, key)) => Err(PatchError::one(
            at,
            format!(
                "the key {key:?} appears more than once in this object; JSON readers keep \
                     only one of them, so a patch must name each key once"
            ),
        )),
    }
}

/// The id of a patch document: the one rule, used by the parser itself and by
/// everything that reads an id from a stored entry.
///
/// A native document (`operations`) has its `id`; a legacy one its `id`, else
/// its `blockId`. A patch without an id gets `patch-<MD5 of its canonical
/// JSON>` (keys sorted, no whitespace): the same patch always gets the same id,
/// whoever parses it and however often, so the id `ghostctl submit` prints is
/// the one the executor uses.
pub fn document_id(value: &Value) -> String {
    let own = value.as_object().and_then(|obj| {
        let text = |key: &str| obj.get(key).and_then(Value::as_str);
        if obj.contains_key("operations") {
            text("id")
        } else {
            text("id").or_else(|| text("blockId"))
        }
    });
    match own {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("patch-{}", canonical_md5(value)),
    }
}

/// MD5 of a document's canonical JSON (keys sorted, no whitespace): what "the
/// same content" means for deduplication, whatever the bytes' formatting.
pub fn canonical_md5(value: &Value) -> String {
    crate::md5_hex(&serde_json::to_vec(value).unwrap_or_default())
}

/// Same for an already-parsed JSON value (used by the HTTP bridge for arrays / {patch, metadata}).
/// The id is always [`document_id`] of the value.
pub fn parse_patch_value(value: &Value, opts: &ParseOptions) -> Result<Patch, PatchError> {
    let mut patch = parse_shape(value, opts)?;
    // The shapes validated the id fields; the id itself comes from the one rule.
    patch.id = document_id(value);
    Ok(patch)
}

fn parse_shape(value: &Value, opts: &ParseOptions) -> Result<Patch, PatchError> {
    let Some(obj) = value.as_object() else {
        return Err(PatchError::one(
            DOC,
            format!(
                "a patch must be a JSON object at the top level, got {}",
                kind(value)
            ),
        ));
    };
    let has = |key: &str| obj.contains_key(key);
    if has("operations") {
        native::parse(obj, opts)
    } else if has("mutations") || (has("blockId") && !has("target_file") && !has("patch")) {
        // A `blockId` with `target_file`/`patch` but no `mutations` is a webhook
        // patch that borrowed the full schema's id key: read it as a webhook.
        legacy::parse_full(obj, opts)
    } else if has("target_file") || has("patch") {
        legacy::parse_webhook(obj, opts)
    } else {
        let mut reason = String::from(
            "not a recognised patch shape (expected `operations`, `mutations`/`blockId`, or `target_file`+`patch`)",
        );
        if obj.contains_key("$schema") {
            reason.push_str("; this looks like a JSON Schema document, not a patch");
        }
        Err(PatchError::one(DOC, reason))
    }
}

/// Resolve a target name or alias (exact match on name, then case-insensitive match on aliases) to its TargetSpec.
pub fn resolve_target<'a>(targets: &'a [TargetSpec], name: &str) -> Option<&'a TargetSpec> {
    targets.iter().find(|t| t.name == name).or_else(|| {
        targets.iter().find(|t| {
            t.aliases
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name) || a.to_lowercase() == name.to_lowercase())
        })
    })
}

// ---------------------------------------------------------------------------
// Shared machinery
// ---------------------------------------------------------------------------

/// Collects every problem found while walking one document, and knows the
/// resolved target (needed for shell permission and legacy path checks).
struct Ctx<'a> {
    errors: Vec<FieldError>,
    /// `None` when the target could not be resolved (already reported).
    target: Option<&'a TargetSpec>,
}

impl<'a> Ctx<'a> {
    fn new() -> Self {
        Ctx {
            errors: Vec::new(),
            target: None,
        }
    }

    fn err(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Reports a JSON type mismatch.
    fn type_err(&mut self, field: &str, expected: &str, got: &Value) {
        self.err(field, format!("expected {expected}, got {}", kind(got)));
    }

    /// An optional string field: absent or `null` -> `None`; wrong type -> error, `None`.
    fn opt_str<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        key: &str,
        field: &str,
    ) -> Option<&'v str> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.type_err(field, "a string", other);
                None
            }
        }
    }

    /// A required string field; `what` describes it for the "missing" message.
    fn req_str<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        key: &str,
        field: &str,
        what: &str,
    ) -> Option<&'v str> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                self.err(field, format!("missing `{key}` ({what})"));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.type_err(field, "a string", other);
                None
            }
        }
    }

    /// Validates a relative path (native and the relative legacy paths).
    fn rel_path(&mut self, raw: &str, field: &str) -> Option<RelPath> {
        match RelPath::parse(raw) {
            Ok(p) => Some(p),
            Err(reason) => {
                self.err(field, reason);
                None
            }
        }
    }

    /// Resolves the document's target (`raw`: the document's own `target`, if any)
    /// against the override and the configured targets, reporting problems on
    /// `target`. Sets `self.target`.
    fn resolve_target(&mut self, opts: &ParseOptions<'a>, raw: Option<&str>) {
        let from_doc = raw.map(|name| (name, resolve_target(opts.targets, name)));
        let from_override = opts
            .target_override
            .map(|name| (name, resolve_target(opts.targets, name)));
        let known = known_targets(opts.targets);
        self.target = match (from_doc, from_override) {
            (Some((name, None)), _) => {
                self.err("target", format!("unknown target {name:?}; {known}"));
                None
            }
            (_, Some((name, None))) => {
                self.err(
                    "target",
                    format!("unknown target {name:?} (given with the submission, not in the patch); {known}"),
                );
                None
            }
            (Some((name, Some(doc_t))), Some((over_name, Some(over_t)))) => {
                if doc_t.name == over_t.name {
                    Some(doc_t)
                } else {
                    self.err(
                        "target",
                        format!(
                            "the patch names target {name:?} (which is {:?}) but it was submitted for target \
                             {over_name:?} (which is {:?}); remove `target` from the patch or submit it for its own target",
                            doc_t.name, over_t.name
                        ),
                    );
                    None
                }
            }
            (Some((_, Some(t))), None) | (None, Some((_, Some(t)))) => Some(t),
            (None, None) => match resolve_target(opts.targets, "default") {
                Some(t) => Some(t),
                None => {
                    self.err(
                        "target",
                        format!("the patch names no target and no target named \"default\" is configured; {known}"),
                    );
                    None
                }
            },
        };
    }

    /// Reports a shell command (native `shell` or any legacy shell array) at
    /// `field` when the resolved target does not allow shell.
    fn check_shell_allowed(&mut self, field: &str) {
        if let Some(t) = self.target {
            if !t.allow_shell {
                self.err(
                    field,
                    format!(
                        "shell commands are not allowed for target {0} (set allow_shell = true in [targets.{0}])",
                        t.name
                    ),
                );
            }
        }
    }
}

/// "known targets: default (aliases: DEV, CYOPS), other" for unknown-target messages.
fn known_targets(targets: &[TargetSpec]) -> String {
    if targets.is_empty() {
        return "no targets are configured".into();
    }
    let list: Vec<String> = targets
        .iter()
        .map(|t| {
            if t.aliases.is_empty() {
                t.name.clone()
            } else {
                format!("{} (aliases: {})", t.name, t.aliases.join(", "))
            }
        })
        .collect();
    format!("known targets: {}", list.join("; "))
}

/// A JSON value's kind, with an article, for "expected X, got Y" messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Everything a shape parser extracted, assembled into a [`Patch`] once no
/// error was found.
struct Parts {
    id: Option<String>,
    description: Option<String>,
    operations: Vec<super::Operation>,
    checks: super::Checks,
    max_attempts: Option<u32>,
    git: Option<GitAction>,
    format: SourceFormat,
}

fn finish(ctx: Ctx<'_>, parts: Parts) -> Result<Patch, PatchError> {
    match ctx.target {
        Some(target) if ctx.errors.is_empty() => {
            let patch = Patch {
                // Empty means "none given": `parse_patch_value` derives it from the content.
                id: parts.id.unwrap_or_default(),
                target: target.name.clone(),
                description: parts.description,
                operations: parts.operations,
                checks: parts.checks,
                max_attempts: parts.max_attempts,
                git: parts.git,
                source_format: parts.format,
            };
            // What the target allows: commands, protected paths, modes.
            let errors = super::policy::check(&patch, target);
            if errors.is_empty() {
                Ok(patch)
            } else {
                Err(PatchError { errors })
            }
        }
        _ => {
            let mut errors = ctx.errors;
            if errors.is_empty() {
                // Unreachable in practice (a missing target is always reported),
                // but the error list must never be empty.
                errors.push(FieldError {
                    field: "target".into(),
                    reason: "the target could not be resolved".into(),
                });
            }
            Err(PatchError { errors })
        }
    }
}

/// Validates a patch id: non-empty, at most 256 characters, no control characters.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("id is empty; omit `id` to have one assigned".into());
    }
    let chars = id.chars().count();
    if chars > 256 {
        return Err(format!("id is {chars} characters long; the limit is 256"));
    }
    if id.chars().any(char::is_control) {
        return Err(
            "id contains a control character (newline, tab, NUL, ...); ids must be printable text"
                .into(),
        );
    }
    Ok(())
}

/// Parses a permission mode: an octal string (`"0644"`, `"644"`, `"0o644"`) up to 0o7777.
fn parse_mode(v: &Value) -> Result<u32, String> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Number(n) => {
            return Err(format!(
                "mode must be an octal string such as \"0644\" or \"0755\", not the number {n} \
                 (JSON has no octal numbers, so 644 and 420 would be ambiguous)"
            ))
        }
        other => {
            return Err(format!(
                "mode must be an octal string such as \"0644\", got {}",
                kind(other)
            ))
        }
    };
    let digits = s
        .strip_prefix("0o")
        .or_else(|| s.strip_prefix("0O"))
        .unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "mode {s:?} is not an octal number; expected a string such as \"0644\", \"755\" or \"0o600\""
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!(
            "mode {s:?} is larger than 0o7777; only permission bits can be set"
        )),
    }
}

/// Validates an MD5 given as hex and returns it lowercased.
fn parse_md5(s: &str) -> Result<String, String> {
    if crate::hash::is_md5_hex(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "expect_md5 {s:?} is not an MD5: expected 32 hexadecimal digits"
        ))
    }
}

/// A strictly positive integer (counts, attempts, seconds).
fn positive_int(v: &Value, what: &str) -> Result<u64, String> {
    match v.as_u64() {
        Some(0) => Err(format!("{what} must be at least 1, got 0")),
        Some(n) => Ok(n),
        None => Err(format!(
            "{what} must be a positive whole number, got {}",
            describe(v)
        )),
    }
}

/// A short rendering of a value for messages: numbers and short strings verbatim.
fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        other => kind(other).to_string(),
    }
}

/// Checks a git tag is a safe ref name.
fn check_tag(tag: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("tag {tag:?} is not a safe git ref name: {why}"));
    if tag.is_empty() {
        return bad("it is empty");
    }
    if tag.chars().any(char::is_whitespace) {
        return bad("it contains whitespace");
    }
    if tag.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if tag.contains("..") {
        return bad("it contains \"..\"");
    }
    if tag.starts_with('-') || tag.starts_with('/') {
        return bad("it starts with '-' or '/'");
    }
    if let Some(c) = tag.chars().find(|c| "~^:?*[\\".contains(*c)) {
        return bad(&format!(
            "it contains {c:?} (none of ~ ^ : ? * [ \\ are allowed)"
        ));
    }
    if tag.ends_with('/') || tag.ends_with('.') || tag.ends_with(".lock") {
        return bad("it ends with '/', '.' or \".lock\"");
    }
    if tag.contains("//")
        || tag.contains("@{")
        || tag == "@"
        || tag.split('/').any(|c| c.starts_with('.'))
    {
        return bad("it contains \"//\" or \"@{\", is \"@\", or has a component starting with '.'");
    }
    Ok(())
}

/// Parses a `git` object (`{commit, tag}`) at `field`. `strict` rejects unknown keys
/// (native); legacy `final.git` ignores them.
fn parse_git(ctx: &mut Ctx<'_>, v: &Value, field: &str, strict: bool) -> Option<GitAction> {
    let obj = match v {
        Value::Null => return None,
        Value::Object(o) => o,
        other => {
            ctx.type_err(
                field,
                "an object like {\"commit\": \"message\", \"tag\": \"v1\"}",
                other,
            );
            return None;
        }
    };
    if strict {
        unknown_keys(ctx, obj, &["commit", "tag"], field);
    }
    let commit = ctx.opt_str(obj, "commit", &format!("{field}.commit"));
    let tag = ctx.opt_str(obj, "tag", &format!("{field}.tag"));
    let commit_present = matches!(obj.get("commit"), Some(v) if !v.is_null());
    let tag_present = matches!(obj.get("tag"), Some(v) if !v.is_null());
    if !commit_present && !tag_present {
        ctx.err(field, "git needs a `commit` message, a `tag`, or both");
        return None;
    }
    if let Some(c) = commit {
        if c.trim().is_empty() {
            ctx.err(format!("{field}.commit"), "commit message is empty");
        } else if c.contains('\0') {
            ctx.err(
                format!("{field}.commit"),
                "commit message contains a NUL byte",
            );
        }
    }
    if let Some(t) = tag {
        if let Err(reason) = check_tag(t) {
            ctx.err(format!("{field}.tag"), reason);
        }
    }
    Some(GitAction {
        commit: commit.map(str::to_owned),
        tag: tag.map(str::to_owned),
    })
}

/// The locator of `key` inside the value at `parent` (`""` is the document):
/// `id`, `metadata.x`. A key spelled `""` is named as such (`""`,
/// `metadata.""`): an error always names a field, and an empty locator would
/// name none.
fn key_locator(parent: &str, key: &str) -> String {
    let key = if key.is_empty() { "\"\"" } else { key };
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Reports every key of `obj` not in `allowed`.
fn unknown_keys(ctx: &mut Ctx<'_>, obj: &Map<String, Value>, allowed: &[&str], field: &str) {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            ctx.err(
                key_locator(field, key),
                format!(
                    "unknown key {key:?}; allowed keys here: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
}

/// Checks a regex pattern's syntax, returning a one-line reason on failure.
/// Only the syntax: compiling is bounded work done under `[limits]` (see
/// `patch::limits`), which the parser does not know.
fn check_regex(pattern: &str) -> Result<(), String> {
    match regex_syntax::Parser::new().parse(pattern) {
        Ok(_) => Ok(()),
        Err(e) => {
            let s = e.to_string();
            let detail = s
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error:"))
                .map(|l| l.trim().to_string())
                .unwrap_or_else(|| s.split_whitespace().collect::<Vec<_>>().join(" "));
            Err(format!(
                "pattern {pattern:?} does not compile as a regular expression: {detail}"
            ))
        }
    }
}
