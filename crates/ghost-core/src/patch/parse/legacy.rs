//! The two legacy shapes of the seed's project (examples in `fixtures/legacy/`).
//!
//! Both ignore keys they do not use (the old patches carry lots of metadata:
//! `showInUI`, `version`, `phase`, `role`, `priority`, ...), but the keys they do
//! use must have the right types.
//!
//! - Full schema: `{id | blockId, description, target, mutations: [...],
//!   preMutationValidation/preCommit/postMutationBuild/validate/testing: {shell: [...]},
//!   final: {git: {commit, tag}}}`.
//! - Webhook: `{id, role, target_file, patch: {mutations} | {pattern, replacement} |
//!   {content} | {contents} | "string", ...same shell and final keys}`.
//!
//! Legacy paths may be absolute: they must lie under the target's `legacy_root`
//! and are made relative to it.

use serde_json::{Map, Value};

use super::{check_id, check_regex, finish, parse_git, parse_mode, Ctx, ParseOptions, Parts};
use crate::patch::{
    Checks, Command, CommandKind, Operation, Patch, PatchError, RelPath, SourceFormat,
};

/// Shell arrays that become `checks.before`, in order.
const BEFORE: &[&str] = &["preMutationValidation", "preCommit"];
/// Shell arrays that become `checks.after`, in order.
const AFTER: &[&str] = &["postMutationBuild", "validate", "testing"];

/// The values a legacy mutation's `op` may have.
const LEGACY_OPS: &[&str] = &["upsert", "delete", "chmod"];

pub(super) fn parse_full(
    obj: &Map<String, Value>,
    opts: &ParseOptions<'_>,
) -> Result<Patch, PatchError> {
    let mut ctx = Ctx::new();
    let (id, description) = common_head(&mut ctx, obj, opts);

    let operations = match obj.get("mutations") {
        None | Some(Value::Null) => {
            ctx.err(
                "mutations",
                "missing `mutations` (the legacy full schema lists its changes in `mutations`)",
            );
            Vec::new()
        }
        Some(v) => parse_mutations(&mut ctx, v, "mutations"),
    };
    finish_legacy(
        ctx,
        obj,
        id,
        description,
        operations,
        SourceFormat::LegacyFull,
    )
}

pub(super) fn parse_webhook(
    obj: &Map<String, Value>,
    opts: &ParseOptions<'_>,
) -> Result<Patch, PatchError> {
    let mut ctx = Ctx::new();
    let (id, description) = common_head(&mut ctx, obj, opts);

    // `target_file` is needed by every `patch` form except `{mutations}`.
    let target_file = ctx.opt_str(obj, "target_file", "target_file");
    let file_path = |ctx: &mut Ctx<'_>| -> Option<RelPath> {
        match target_file {
            Some(raw) => legacy_path(ctx, raw, "target_file"),
            None => {
                if !matches!(obj.get("target_file"), Some(v) if !v.is_null()) {
                    ctx.err(
                        "target_file",
                        "missing `target_file` (the file this patch changes)",
                    );
                }
                None
            }
        }
    };

    let mut operations = Vec::new();
    match obj.get("patch") {
        None | Some(Value::Null) => {
            ctx.err(
                "patch",
                "missing `patch` (an object with `mutations`, `pattern`+`replacement` or `content`, or a string)",
            );
        }
        // A bare string is the new whole-file content of `target_file`: the old
        // webhook wrote `patch` into the target file when it was not an object.
        // It is never run as a shell command, even when it looks like one.
        Some(Value::String(content)) => {
            if let Some(path) = file_path(&mut ctx) {
                operations.push(Operation::Write {
                    path,
                    content: content.as_bytes().to_vec(),
                    mode: None,
                    expect_md5: None,
                });
            }
        }
        Some(Value::Object(p)) => {
            let has = |k: &str| matches!(p.get(k), Some(v) if !v.is_null());
            let forms: Vec<&str> = ["mutations", "pattern", "content", "contents"]
                .into_iter()
                .filter(|k| has(k))
                .collect();
            match forms.as_slice() {
                ["mutations"] => {
                    if let Some(v) = p.get("mutations") {
                        operations = parse_mutations(&mut ctx, v, "patch.mutations");
                    }
                }
                ["pattern"] => {
                    let path = file_path(&mut ctx);
                    let pattern = regex_pattern(&mut ctx, p, "patch.pattern");
                    let replacement = ctx.req_str(p, "replacement", "patch.replacement", "the replacement text");
                    if let (Some(path), Some(pattern), Some(replacement)) = (path, pattern, replacement) {
                        operations.push(Operation::Regex {
                            path,
                            pattern: pattern.to_owned(),
                            replacement: replacement.to_owned(),
                            count: None,
                        });
                    }
                }
                [key @ ("content" | "contents")] => {
                    let path = file_path(&mut ctx);
                    let content = ctx.req_str(p, key, &format!("patch.{key}"), "the new file contents");
                    if let (Some(path), Some(content)) = (path, content) {
                        operations.push(Operation::Write {
                            path,
                            content: content.as_bytes().to_vec(),
                            mode: None,
                            expect_md5: None,
                        });
                    }
                }
                [] if p.contains_key("operations") => ctx.err(
                    "patch",
                    "the patch object holds `operations`: it looks like a native patch wrapped in \
                     {\"patch\": ...}; send the inner object itself",
                ),
                [] => ctx.err(
                    "patch",
                    "the patch object needs `mutations`, `pattern`+`replacement`, or `content`",
                ),
                several => ctx.err(
                    "patch",
                    format!(
                        "the patch object has {}; give exactly one of `mutations`, `pattern`+`replacement`, `content`",
                        several.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
                    ),
                ),
            }
        }
        Some(other) => ctx.type_err(
            "patch",
            "an object with `mutations`, `pattern`+`replacement` or `content`, or a string",
            other,
        ),
    }

    finish_legacy(
        ctx,
        obj,
        id,
        description,
        operations,
        SourceFormat::LegacyWebhook,
    )
}

/// `id` (or `blockId`), `target` (resolved into `ctx`) and `description`.
fn common_head<'a>(
    ctx: &mut Ctx<'a>,
    obj: &Map<String, Value>,
    opts: &ParseOptions<'a>,
) -> (Option<String>, Option<String>) {
    let id = ctx.opt_str(obj, "id", "id");
    let block_id = ctx.opt_str(obj, "blockId", "blockId");
    let (id, id_field) = match (id, block_id) {
        (Some(id), _) => (Some(id), "id"),
        (None, Some(b)) => (Some(b), "blockId"),
        (None, None) => (None, "id"),
    };
    if let Some(id) = id {
        if let Err(reason) = check_id(id) {
            ctx.err(id_field, reason);
        }
    }
    let target = ctx.opt_str(obj, "target", "target");
    if !matches!(obj.get("target"), Some(v) if !v.is_null() && !v.is_string()) {
        ctx.resolve_target(opts, target);
    }
    let description = ctx
        .opt_str(obj, "description", "description")
        .map(str::to_owned);
    (id.map(str::to_owned), description)
}

/// Makes a legacy path relative: absolute paths must lie under the resolved
/// target's `legacy_root`; relative ones go through [`RelPath::parse`].
fn legacy_path(ctx: &mut Ctx<'_>, raw: &str, field: &str) -> Option<RelPath> {
    if !raw.starts_with('/') {
        return ctx.rel_path(raw, field);
    }
    let Some(target) = ctx.target else {
        ctx.err(
            field,
            format!("absolute path {raw:?} cannot be made relative because the target is unknown"),
        );
        return None;
    };
    let Some(root) = &target.legacy_root else {
        ctx.err(
            field,
            format!(
                "absolute path {raw:?} is not accepted: target {} declares no legacy_root \
                 (set legacy_root in [targets.{}] to the absolute prefix legacy patches use)",
                target.name, target.name
            ),
        );
        return None;
    };
    let path = collapse_slashes(raw);
    let root_norm = collapse_slashes(root);
    let root_norm = root_norm.trim_end_matches('/');
    let rest = path
        .strip_prefix(root_norm)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|_| root.starts_with('/'));
    if root.starts_with('/') && path.trim_end_matches('/') == root_norm {
        ctx.err(
            field,
            format!("absolute path {raw:?} names target {}'s legacy_root itself, not a file in the tree", target.name),
        );
        return None;
    }
    match rest {
        Some(rest) => match RelPath::parse(rest) {
            Ok(p) => Some(p),
            Err(reason) => {
                ctx.err(
                    field,
                    format!("absolute path {raw:?} under legacy_root {root:?}: {reason}"),
                );
                None
            }
        },
        None => {
            ctx.err(
                field,
                format!(
                    "absolute path {raw:?} is outside target {}'s legacy_root ({root})",
                    target.name
                ),
            );
            None
        }
    }
}

fn collapse_slashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_slash = false;
    for c in s.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
    out
}

fn parse_mutations(ctx: &mut Ctx<'_>, v: &Value, field: &str) -> Vec<Operation> {
    let Value::Array(items) = v else {
        ctx.type_err(field, "an array of mutations", v);
        return Vec::new();
    };
    if items.is_empty() {
        ctx.err(
            field,
            "mutations is empty; a patch needs at least one mutation",
        );
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, m)| parse_mutation(ctx, m, &format!("{field}[{i}]")))
        .collect()
}

/// What both legacy shapes end with: their shell arrays as checks, `final.git`,
/// and the assembled patch.
fn finish_legacy(
    mut ctx: Ctx<'_>,
    obj: &Map<String, Value>,
    id: Option<String>,
    description: Option<String>,
    operations: Vec<Operation>,
    format: SourceFormat,
) -> Result<Patch, PatchError> {
    let checks = shell_checks(&mut ctx, obj);
    let git = final_git(&mut ctx, obj);
    finish(
        ctx,
        Parts {
            id,
            description,
            operations,
            checks,
            max_attempts: None,
            git,
            format,
        },
    )
}

fn parse_mutation(ctx: &mut Ctx<'_>, v: &Value, field: &str) -> Option<Operation> {
    let Value::Object(m) = v else {
        ctx.type_err(
            field,
            "a mutation object like {\"path\": ..., \"contents\": ...}",
            v,
        );
        return None;
    };
    let errors_before = ctx.errors.len();
    let f = |k: &str| format!("{field}.{k}");
    let path = ctx
        .req_str(m, "path", &f("path"), "the file's path")
        .and_then(|raw| legacy_path(ctx, raw, &f("path")));
    let has = |k: &str| matches!(m.get(k), Some(v) if !v.is_null());
    for key in ["insertAt", "fallback"] {
        if has(key) {
            ctx.err(
                f(key),
                format!(
                    "`{key}` is not supported; use `insertAfter`/`insertBefore`, a `pattern`, or a native \
                     `replace`/`regex` operation"
                ),
            );
        }
    }
    let op = ctx.opt_str(m, "op", &f("op"));
    let out = match op {
        Some("delete") => Some(Operation::Delete {
            path: path.clone()?,
            expect_md5: None,
        }),
        Some("chmod") => {
            let mode = match m.get("mode") {
                None | Some(Value::Null) => {
                    ctx.err(
                        f("mode"),
                        "missing `mode` (an octal string such as \"0755\")",
                    );
                    None
                }
                Some(v) => parse_mode(v)
                    .map_err(|reason| ctx.err(f("mode"), reason))
                    .ok(),
            };
            Some(Operation::Chmod {
                path: path.clone()?,
                mode: mode?,
            })
        }
        Some("upsert") => {
            let contents = ctx.req_str(m, "contents", &f("contents"), "the new file contents");
            Some(Operation::Write {
                path: path.clone()?,
                content: contents?.as_bytes().to_vec(),
                mode: None,
                expect_md5: None,
            })
        }
        Some(other) => {
            ctx.err(
                f("op"),
                format!(
                    "unknown legacy op {other:?}; expected one of {} (or no `op` for contents/pattern mutations)",
                    LEGACY_OPS.join(", ")
                ),
            );
            None
        }
        None if has("pattern") => {
            if has("contents") {
                ctx.err(
                    field,
                    "a mutation has either `pattern`+`replacement` or `contents`, not both",
                );
            }
            let pattern = regex_pattern(ctx, m, &f("pattern"));
            let replacement =
                ctx.req_str(m, "replacement", &f("replacement"), "the replacement text");
            Some(Operation::Regex {
                path: path.clone()?,
                pattern: pattern?.to_owned(),
                replacement: replacement?.to_owned(),
                count: None,
            })
        }
        None if has("insertAfter") || has("insertBefore") => {
            let contents = ctx.req_str(m, "contents", &f("contents"), "the text to insert");
            let after = ctx.opt_str(m, "insertAfter", &f("insertAfter"));
            let before = ctx.opt_str(m, "insertBefore", &f("insertBefore"));
            let (anchor, key, is_after) = match (after, before) {
                (Some(_), Some(_)) => {
                    ctx.err(
                        field,
                        "a mutation has either `insertAfter` or `insertBefore`, not both",
                    );
                    (None, "insertAfter", true)
                }
                (Some(a), None) => (Some(a), "insertAfter", true),
                (None, Some(b)) => (Some(b), "insertBefore", false),
                (None, None) => (None, "insertAfter", true), // wrong types, reported above
            };
            if anchor == Some("") {
                ctx.err(
                    f(key),
                    format!("`{key}` is empty; give the text to insert next to"),
                );
            }
            let (anchor, contents) = (anchor.filter(|a| !a.is_empty())?, contents?);
            let replace = if is_after {
                format!("{anchor}{contents}")
            } else {
                format!("{contents}{anchor}")
            };
            Some(Operation::Replace {
                path: path.clone()?,
                find: anchor.to_owned(),
                replace,
                count: 1,
            })
        }
        None if has("contents") => {
            let contents = ctx.req_str(m, "contents", &f("contents"), "the new file contents");
            Some(Operation::Write {
                path: path.clone()?,
                content: contents?.as_bytes().to_vec(),
                mode: None,
                expect_md5: None,
            })
        }
        None => {
            if m.get("op").is_none_or(Value::is_null) && !has("insertAt") && !has("fallback") {
                ctx.err(
                    field,
                    "a mutation needs `contents`, `pattern`+`replacement`, or `op` (upsert, delete, chmod)",
                );
            }
            None
        }
    };
    out.filter(|_| ctx.errors.len() == errors_before)
}

/// A required regex `pattern` at `field` that must compile.
fn regex_pattern<'v>(
    ctx: &mut Ctx<'_>,
    obj: &'v Map<String, Value>,
    field: &str,
) -> Option<&'v str> {
    let p = ctx.req_str(obj, "pattern", field, "a regular expression")?;
    match check_regex(p) {
        Ok(()) => Some(p),
        Err(reason) => {
            ctx.err(field, reason);
            None
        }
    }
}

/// The legacy `X.shell` arrays, turned into shell commands (before/after).
fn shell_checks(ctx: &mut Ctx<'_>, obj: &Map<String, Value>) -> Checks {
    let mut checks = Checks::default();
    for (keys, list) in [(BEFORE, &mut checks.before), (AFTER, &mut checks.after)] {
        for key in keys {
            let container = match obj.get(*key) {
                None | Some(Value::Null) => continue,
                Some(Value::Object(c)) => c,
                Some(other) => {
                    ctx.type_err(key, "an object like {\"shell\": [\"command\", ...]}", other);
                    continue;
                }
            };
            let field = format!("{key}.shell");
            let items = match container.get("shell") {
                None | Some(Value::Null) => continue,
                Some(Value::Array(items)) => items,
                Some(other) => {
                    ctx.type_err(&field, "an array of shell command strings", other);
                    continue;
                }
            };
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if s.trim().is_empty() => {
                        ctx.err(format!("{field}[{i}]"), "shell command is empty");
                    }
                    Value::String(s) if s.contains('\0') => {
                        ctx.err(format!("{field}[{i}]"), "shell command contains a NUL byte");
                    }
                    Value::String(s) => list.push(Command {
                        kind: CommandKind::Shell(s.clone()),
                        timeout: None,
                    }),
                    other => {
                        ctx.type_err(&format!("{field}[{i}]"), "a shell command string", other)
                    }
                }
            }
            if !items.is_empty() {
                ctx.check_shell_allowed(&field);
            }
        }
    }
    checks
}

/// `final.git {commit, tag}`.
fn final_git(ctx: &mut Ctx<'_>, obj: &Map<String, Value>) -> Option<crate::patch::GitAction> {
    match obj.get("final") {
        None | Some(Value::Null) => None,
        Some(Value::Object(f)) => f
            .get("git")
            .and_then(|g| parse_git(ctx, g, "final.git", false)),
        Some(other) => {
            ctx.type_err(
                "final",
                "an object like {\"git\": {\"commit\": ...}}",
                other,
            );
            None
        }
    }
}
