//! The native v1 format (docs/formats.md, "Patch, native format v1"). Strict: unknown keys
//! at the top level (except `metadata`, any JSON, ignored), inside operations,
//! commands, `checks`, `retry` and `git` are errors.

use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{
    check_id, check_regex, diff, finish, kind, parse_git, parse_md5, parse_mode, positive_int,
    unknown_keys, Ctx, ParseOptions, Parts,
};
use crate::patch::{
    agent, Checks, Command, CommandKind, OpKind, Operation, Patch, PatchError, SourceFormat,
};

const TOP_KEYS: &[&str] = &[
    "id",
    "target",
    "description",
    "operations",
    "checks",
    "retry",
    "git",
    "metadata",
];

/// Standard alphabet; padding optional. ASCII whitespace (line wrapping) is removed first.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(super) fn parse(
    obj: &Map<String, Value>,
    opts: &ParseOptions<'_>,
) -> Result<Patch, PatchError> {
    let mut ctx = Ctx::new();
    unknown_keys(&mut ctx, obj, TOP_KEYS, "");

    let id = ctx.opt_str(obj, "id", "id").map(str::to_owned);
    if let Some(id) = &id {
        if let Err(reason) = check_id(id) {
            ctx.err("id", reason);
        }
    }
    let target = ctx.opt_str(obj, "target", "target");
    let target_bad_type = matches!(obj.get("target"), Some(v) if !v.is_null() && !v.is_string());
    if !target_bad_type {
        ctx.resolve_target(opts, target);
    }
    let description = ctx
        .opt_str(obj, "description", "description")
        .map(str::to_owned);

    let mut operations = Vec::new();
    match obj.get("operations") {
        Some(Value::Array(ops)) if ops.is_empty() => {
            ctx.err(
                "operations",
                "operations is empty; a patch needs at least one operation",
            );
        }
        Some(Value::Array(ops)) => {
            for (i, op) in ops.iter().enumerate() {
                if let Some(op) = parse_operation(&mut ctx, op, &format!("operations[{i}]")) {
                    operations.push(op);
                }
            }
        }
        Some(other) => ctx.type_err("operations", "an array of operations", other),
        None => unreachable_shape(&mut ctx),
    }

    let checks = match obj.get("checks") {
        None | Some(Value::Null) => Checks::default(),
        Some(v) => parse_checks(&mut ctx, v),
    };

    let mut max_attempts = None;
    match obj.get("retry") {
        None | Some(Value::Null) => {}
        Some(Value::Object(retry)) => {
            unknown_keys(&mut ctx, retry, &["max_attempts"], "retry");
            match retry.get("max_attempts") {
                None | Some(Value::Null) => {}
                Some(v) => match positive_int(v, "max_attempts") {
                    Ok(n) => match u32::try_from(n) {
                        Ok(n) => max_attempts = Some(n),
                        Err(_) => ctx.err(
                            "retry.max_attempts",
                            format!("max_attempts {n} is too large"),
                        ),
                    },
                    Err(reason) => ctx.err("retry.max_attempts", reason),
                },
            }
        }
        Some(other) => ctx.type_err("retry", "an object like {\"max_attempts\": 3}", other),
    }

    let git = obj
        .get("git")
        .and_then(|v| parse_git(&mut ctx, v, "git", true));

    finish(
        ctx,
        Parts {
            id,
            description,
            operations,
            checks,
            max_attempts,
            git,
            format: SourceFormat::Native,
        },
    )
}

/// `operations` is how the native shape was detected, so it is always present;
/// report rather than panic should that ever change.
fn unreachable_shape(ctx: &mut Ctx<'_>) {
    ctx.err("operations", "missing `operations`");
}

fn parse_operation(ctx: &mut Ctx<'_>, v: &Value, field: &str) -> Option<Operation> {
    let Value::Object(obj) = v else {
        ctx.type_err(
            field,
            "an operation object like {\"op\": \"write\", ...}",
            v,
        );
        return None;
    };
    let op = match obj.get("op") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => {
            ctx.err(
                format!("{field}.op"),
                format!("missing `op`; expected one of {}", OpKind::names()),
            );
            return None;
        }
        Some(other) => {
            ctx.type_err(
                &format!("{field}.op"),
                &format!("a string, one of {}", OpKind::names()),
                other,
            );
            return None;
        }
    };
    let Some(kind) = OpKind::from_name(op) else {
        ctx.err(
            format!("{field}.op"),
            format!("unknown op {op:?}; expected one of {}", OpKind::names()),
        );
        return None;
    };
    let errors_before = ctx.errors.len();
    unknown_keys(ctx, obj, kind.keys(), field);
    let f = |key: &str| format!("{field}.{key}");

    let path = if !kind.keys().contains(&"path") {
        None
    } else {
        ctx.req_str(
            obj,
            "path",
            &f("path"),
            "the file's path relative to the tree",
        )
        .and_then(|p| ctx.rel_path(p, &f("path")))
    };

    let op = match kind {
        OpKind::Write => {
            let content = match (obj.get("content"), obj.get("content_base64")) {
                (Some(c), Some(b)) if !c.is_null() && !b.is_null() => {
                    ctx.err(
                        field,
                        "write has both `content` and `content_base64`; give exactly one",
                    );
                    None
                }
                (Some(Value::String(s)), _) => Some(s.as_bytes().to_vec()),
                (Some(other), _) if !other.is_null() => {
                    ctx.type_err(
                        &f("content"),
                        "a string (use `content_base64` for binary data)",
                        other,
                    );
                    None
                }
                (_, Some(Value::String(b))) => {
                    let compact: String = b.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                    match BASE64.decode(compact.as_bytes()) {
                        Ok(bytes) => Some(bytes),
                        Err(e) => {
                            ctx.err(
                                f("content_base64"),
                                format!("content_base64 is not valid base64: {e}"),
                            );
                            None
                        }
                    }
                }
                (_, Some(other)) if !other.is_null() => {
                    ctx.type_err(&f("content_base64"), "a base64 string", other);
                    None
                }
                _ => {
                    ctx.err(
                        field,
                        "write needs the new file contents: `content` (text) or `content_base64` (binary)",
                    );
                    None
                }
            };
            let mode = match obj.get("mode") {
                None | Some(Value::Null) => Some(None),
                Some(v) => match parse_mode(v) {
                    Ok(m) => Some(Some(m)),
                    Err(reason) => {
                        ctx.err(f("mode"), reason);
                        None
                    }
                },
            };
            let expect_md5 = match obj.get("expect_md5") {
                None => Some(None),
                Some(Value::Null) => Some(Some(None)),
                Some(Value::String(s)) => match parse_md5(s) {
                    Ok(h) => Some(Some(Some(h))),
                    Err(reason) => {
                        ctx.err(f("expect_md5"), reason);
                        None
                    }
                },
                Some(other) => {
                    ctx.type_err(
                        &f("expect_md5"),
                        "an MD5 hex string, or null for \"the file must not exist\"",
                        other,
                    );
                    None
                }
            };
            Some(Operation::Write {
                path: path?,
                content: content?,
                mode: mode?,
                expect_md5: expect_md5?,
            })
        }
        OpKind::Replace => {
            let find = ctx.req_str(obj, "find", &f("find"), "the literal text to replace");
            if find == Some("") {
                ctx.err(f("find"), "find is empty; give the literal text to replace");
            }
            let replace = ctx.req_str(
                obj,
                "replace",
                &f("replace"),
                "the replacement text, may be empty",
            );
            let count = parse_count(ctx, obj, &f("count")).map(|c| c.unwrap_or(1));
            Some(Operation::Replace {
                path: path?,
                find: find.filter(|s| !s.is_empty())?.to_owned(),
                replace: replace?.to_owned(),
                count: count?,
            })
        }
        OpKind::Regex => {
            let pattern = ctx.req_str(obj, "pattern", &f("pattern"), "the regular expression");
            let pattern = pattern.and_then(|p| match check_regex(p) {
                Ok(()) => Some(p),
                Err(reason) => {
                    ctx.err(f("pattern"), reason);
                    None
                }
            });
            let replacement = ctx.req_str(
                obj,
                "replacement",
                &f("replacement"),
                "the replacement, may be empty",
            );
            let count = parse_count(ctx, obj, &f("count"));
            Some(Operation::Regex {
                path: path?,
                pattern: pattern?.to_owned(),
                replacement: replacement?.to_owned(),
                count: count?,
            })
        }
        OpKind::Delete => {
            let expect_md5 = match obj.get("expect_md5") {
                None => Some(None),
                Some(Value::Null) => {
                    ctx.err(
                        f("expect_md5"),
                        "expect_md5 null means \"the file must not exist\", which cannot hold for a delete; \
                         give the file's MD5 or omit the field",
                    );
                    None
                }
                Some(Value::String(s)) => match parse_md5(s) {
                    Ok(h) => Some(Some(h)),
                    Err(reason) => {
                        ctx.err(f("expect_md5"), reason);
                        None
                    }
                },
                Some(other) => {
                    ctx.type_err(&f("expect_md5"), "an MD5 hex string", other);
                    None
                }
            };
            Some(Operation::Delete {
                path: path?,
                expect_md5: expect_md5?,
            })
        }
        OpKind::Rename => {
            let from = ctx
                .req_str(obj, "from", &f("from"), "the existing file's path")
                .and_then(|p| ctx.rel_path(p, &f("from")));
            let to = ctx
                .req_str(obj, "to", &f("to"), "the new path")
                .and_then(|p| ctx.rel_path(p, &f("to")));
            if let (Some(a), Some(b)) = (&from, &to) {
                if a == b {
                    ctx.err(
                        f("to"),
                        format!("rename from {a:?} to the same path {b:?} does nothing"),
                    );
                    return None;
                }
            }
            Some(Operation::Rename {
                from: from?,
                to: to?,
            })
        }
        OpKind::Chmod => {
            let mode = match obj.get("mode") {
                None | Some(Value::Null) => {
                    ctx.err(
                        f("mode"),
                        "missing `mode` (an octal string such as \"0755\")",
                    );
                    None
                }
                Some(v) => match parse_mode(v) {
                    Ok(m) => Some(m),
                    Err(reason) => {
                        ctx.err(f("mode"), reason);
                        None
                    }
                },
            };
            Some(Operation::Chmod {
                path: path?,
                mode: mode?,
            })
        }
        OpKind::Diff => {
            let text = ctx.req_str(obj, "diff", &f("diff"), "a unified diff");
            match diff::split_diff(text?) {
                Ok(files) => Some(Operation::Diff { files }),
                Err(reasons) => {
                    for reason in reasons {
                        ctx.err(f("diff"), reason);
                    }
                    None
                }
            }
        }
        OpKind::ApplyPatch => {
            let text = ctx.req_str(obj, "patch", &f("patch"), "the patch text");
            let parsed = text.map(|t| {
                if agent::apply_patch::is_envelope(t) {
                    agent::apply_patch::parse(t)
                } else if agent::diff::looks_like_diff(t) {
                    agent::diff::parse(t)
                } else {
                    Err(vec![
                        "the patch is neither an apply_patch envelope (`*** Begin Patch` … `*** End Patch`) \
                         nor a unified diff (`--- a/path`, `+++ b/path`, `@@` hunks)"
                            .to_string(),
                    ])
                }
            });
            match parsed? {
                Ok(files) => Some(Operation::ApplyPatch { files }),
                Err(reasons) => {
                    for reason in reasons {
                        ctx.err(f("patch"), reason);
                    }
                    None
                }
            }
        }
        OpKind::SearchReplace => {
            let search = ctx.req_str(
                obj,
                "search",
                &f("search"),
                "the lines to find, empty to create the file",
            );
            let replace = ctx.req_str(obj, "replace", &f("replace"), "the new lines, may be empty");
            Some(Operation::SearchReplace {
                path: path?,
                search: search?.to_owned(),
                replace: replace?.to_owned(),
            })
        }
    };
    // An operation is only kept when nothing about it was wrong.
    op.filter(|_| ctx.errors.len() == errors_before)
}

/// Optional `count`: absent/null -> `Some(None)`; a positive integer -> `Some(Some(n))`;
/// anything else is reported and gives `None`.
fn parse_count(ctx: &mut Ctx<'_>, obj: &Map<String, Value>, field: &str) -> Option<Option<usize>> {
    match obj.get("count") {
        None | Some(Value::Null) => Some(None),
        Some(v) => match positive_int(v, "count")
            .and_then(|n| usize::try_from(n).map_err(|_| "count is too large".into()))
        {
            Ok(n) => Some(Some(n)),
            Err(reason) => {
                ctx.err(field, reason);
                None
            }
        },
    }
}

fn parse_checks(ctx: &mut Ctx<'_>, v: &Value) -> Checks {
    let mut checks = Checks::default();
    let Value::Object(obj) = v else {
        ctx.type_err(
            "checks",
            "an object like {\"before\": [...], \"after\": [...]}",
            v,
        );
        return checks;
    };
    unknown_keys(ctx, obj, &["before", "after"], "checks");
    for (key, list) in [("before", &mut checks.before), ("after", &mut checks.after)] {
        let field = format!("checks.{key}");
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(cmds)) => {
                for (i, cmd) in cmds.iter().enumerate() {
                    if let Some(cmd) = parse_command(ctx, cmd, &format!("{field}[{i}]")) {
                        list.push(cmd);
                    }
                }
            }
            Some(other) => ctx.type_err(&field, "an array of commands", other),
        }
    }
    checks
}

fn parse_command(ctx: &mut Ctx<'_>, v: &Value, field: &str) -> Option<Command> {
    let Value::Object(obj) = v else {
        ctx.type_err(
            field,
            "a command object like {\"argv\": [\"cargo\", \"check\"]} or {\"shell\": \"make test\"}",
            v,
        );
        return None;
    };
    unknown_keys(ctx, obj, &["argv", "shell", "timeout_secs"], field);
    let timeout = match obj.get("timeout_secs") {
        None | Some(Value::Null) => Some(None),
        Some(v) => match positive_int(v, "timeout_secs") {
            Ok(n) => Some(Some(Duration::from_secs(n))),
            Err(reason) => {
                ctx.err(format!("{field}.timeout_secs"), reason);
                None
            }
        },
    };
    let argv = obj.get("argv").filter(|v| !v.is_null());
    let shell = obj.get("shell").filter(|v| !v.is_null());
    let kind = match (argv, shell) {
        (Some(_), Some(_)) => {
            ctx.err(field, "a command has either `argv` or `shell`, not both");
            None
        }
        (None, None) => {
            ctx.err(
                field,
                "a command needs `argv` (an array: program and arguments) or `shell` (a string for /bin/sh -c)",
            );
            None
        }
        (Some(argv), None) => {
            parse_argv(ctx, argv, &format!("{field}.argv")).map(CommandKind::Argv)
        }
        (None, Some(shell)) => {
            let sfield = format!("{field}.shell");
            match shell {
                Value::String(s) => {
                    let mut ok = true;
                    if s.trim().is_empty() {
                        ctx.err(&sfield, "shell command is empty");
                        ok = false;
                    }
                    if s.contains('\0') {
                        ctx.err(&sfield, "shell command contains a NUL byte");
                        ok = false;
                    }
                    let before = ctx.errors.len();
                    ctx.check_shell_allowed(&sfield);
                    (ok && ctx.errors.len() == before).then(|| CommandKind::Shell(s.clone()))
                }
                other => {
                    ctx.type_err(&sfield, "a string", other);
                    None
                }
            }
        }
    };
    Some(Command {
        kind: kind?,
        timeout: timeout?,
    })
}

fn parse_argv(ctx: &mut Ctx<'_>, v: &Value, field: &str) -> Option<Vec<String>> {
    let Value::Array(items) = v else {
        ctx.type_err(field, "an array of strings (program, then arguments)", v);
        return None;
    };
    if items.is_empty() {
        ctx.err(field, "argv is empty; it needs at least the program to run");
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if s.contains('\0') => {
                ctx.err(format!("{field}[{i}]"), "argument contains a NUL byte");
                ok = false;
            }
            Value::String(s) if i == 0 && s.is_empty() => {
                ctx.err(format!("{field}[0]"), "the program name is empty");
                ok = false;
            }
            Value::String(s) => out.push(s.clone()),
            other => {
                ctx.err(
                    format!("{field}[{i}]"),
                    format!("expected a string argument, got {}", kind(other)),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}
