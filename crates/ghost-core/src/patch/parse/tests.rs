//! Unit tests: every accepted form and every rejection class.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::patch::{CommandKind, Operation};

pub(super) fn targets(allow_shell: bool, legacy_root: Option<&str>) -> Vec<TargetSpec> {
    vec![
        TargetSpec {
            name: "default".into(),
            aliases: vec![
                "DEV".into(),
                "CYOPS".into(),
                "MAIN".into(),
                "BRAUN".into(),
                "ghost-system".into(),
            ],
            legacy_root: legacy_root.map(str::to_owned),
            allow_shell,
            // These tests are about shapes; the policy has its own below.
            commands: crate::patch::CommandPolicy::Any,
            allow_special_modes: true,
            ..TargetSpec::default()
        },
        TargetSpec {
            name: "other".into(),
            aliases: vec!["OTHER-ALIAS".into()],
            legacy_root: None,
            allow_shell: false,
            commands: crate::patch::CommandPolicy::Any,
            ..TargetSpec::default()
        },
    ]
}

fn parse_with(doc: &Value, t: &[TargetSpec], over: Option<&str>) -> Result<Patch, PatchError> {
    let bytes = serde_json::to_vec(doc).unwrap();
    parse_patch(
        &bytes,
        &ParseOptions {
            targets: t,
            target_override: over,
        },
    )
}

fn ok(doc: Value) -> Patch {
    parse_with(&doc, &targets(true, Some("/tmp")), None).unwrap_or_else(|e| panic!("rejected: {e}"))
}

fn errs(doc: Value) -> Vec<FieldError> {
    parse_with(&doc, &targets(true, Some("/tmp")), None)
        .expect_err("accepted")
        .errors
}

/// Asserts some error is on `field` and its reason contains every needle.
#[track_caller]
fn assert_err(errors: &[FieldError], field: &str, needles: &[&str]) {
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && needles.iter().all(|n| e.reason.contains(n))),
        "no error on {field:?} containing {needles:?}; got {errors:#?}"
    );
}

fn with_op(op: Value) -> Value {
    json!({"operations": [op]})
}

fn op_err(op: Value, field: &str, needles: &[&str]) {
    assert_err(&errs(with_op(op)), field, needles);
}

// ---------------------------------------------------------------- accepted forms

#[test]
fn native_example_parses_in_detail() {
    let p = ok(json!({
        "id": "patch-v3.4.800(P0.01.02)_example", "target": "default", "description": "what and why",
        "operations": [
            {"op": "write", "path": "src/a.txt", "content": "text\n", "mode": "0644", "expect_md5": null},
            {"op": "write", "path": "bin.dat", "content_base64": "AAEC"},
            {"op": "replace", "path": "src/b.txt", "find": "old", "replace": "new", "count": 1},
            {"op": "regex", "path": "src/c.txt", "pattern": "v(\\d+)", "replacement": "w$1", "count": 2},
            {"op": "delete", "path": "old.txt", "expect_md5": "D41D8CD98F00B204E9800998ECF8427E"},
            {"op": "rename", "from": "a.txt", "to": "b.txt"},
            {"op": "chmod", "path": "run.sh", "mode": "0755"},
            {"op": "diff", "diff": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n"}],
        "checks": {"before": [{"argv": ["test", "-d", "src"]}],
                   "after": [{"argv": ["cargo", "check"], "timeout_secs": 600}, {"shell": "make test"}]},
        "retry": {"max_attempts": 3},
        "git": {"commit": "message", "tag": "optional-tag"},
        "metadata": {"anything": [1, 2, {"x": null}]}
    }));
    assert_eq!(p.id, "patch-v3.4.800(P0.01.02)_example");
    assert_eq!(p.target, "default");
    assert_eq!(p.description.as_deref(), Some("what and why"));
    assert_eq!(p.source_format, SourceFormat::Native);
    let rp = |s: &str| RelPath::parse(s).unwrap();
    assert_eq!(
        p.operations[0],
        Operation::Write {
            path: rp("src/a.txt"),
            content: b"text\n".to_vec(),
            mode: Some(0o644),
            expect_md5: Some(None)
        }
    );
    assert_eq!(
        p.operations[1],
        Operation::Write {
            path: rp("bin.dat"),
            content: vec![0, 1, 2],
            mode: None,
            expect_md5: None
        }
    );
    assert_eq!(
        p.operations[2],
        Operation::Replace {
            path: rp("src/b.txt"),
            find: "old".into(),
            replace: "new".into(),
            count: 1
        }
    );
    assert_eq!(
        p.operations[3],
        Operation::Regex {
            path: rp("src/c.txt"),
            pattern: "v(\\d+)".into(),
            replacement: "w$1".into(),
            count: Some(2)
        }
    );
    assert_eq!(
        p.operations[4],
        Operation::Delete {
            path: rp("old.txt"),
            expect_md5: Some("d41d8cd98f00b204e9800998ecf8427e".into())
        }
    );
    assert_eq!(
        p.operations[5],
        Operation::Rename {
            from: rp("a.txt"),
            to: rp("b.txt")
        }
    );
    assert_eq!(
        p.operations[6],
        Operation::Chmod {
            path: rp("run.sh"),
            mode: 0o755
        }
    );
    let Operation::Diff { files } = &p.operations[7] else {
        panic!()
    };
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].new_path, Some(rp("x")));
    assert_eq!(
        p.checks.before[0].kind,
        CommandKind::Argv(vec!["test".into(), "-d".into(), "src".into()])
    );
    assert_eq!(p.checks.before[0].timeout, None);
    assert_eq!(p.checks.after[0].timeout, Some(Duration::from_secs(600)));
    assert_eq!(
        p.checks.after[1].kind,
        CommandKind::Shell("make test".into())
    );
    assert_eq!(p.max_attempts, Some(3));
    assert_eq!(
        p.git,
        Some(GitAction {
            commit: Some("message".into()),
            tag: Some("optional-tag".into())
        })
    );
}

#[test]
fn write_expect_md5_three_states_and_defaults() {
    let md5 = |v: Option<Value>| {
        let mut op = json!({"op": "write", "path": "a", "content": ""});
        if let Some(v) = v {
            op["expect_md5"] = v;
        }
        match &ok(with_op(op)).operations[0] {
            Operation::Write { expect_md5, .. } => expect_md5.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(md5(None), None);
    assert_eq!(md5(Some(Value::Null)), Some(None));
    assert_eq!(
        md5(Some(json!("ABCDEF0123456789ABCDEF0123456789"))),
        Some(Some("abcdef0123456789abcdef0123456789".into()))
    );
    let p = ok(with_op(
        json!({"op": "replace", "path": "a", "find": "x", "replace": ""}),
    ));
    assert!(matches!(
        &p.operations[0],
        Operation::Replace { count: 1, .. }
    ));
    let p = ok(with_op(
        json!({"op": "regex", "path": "a", "pattern": "x", "replacement": ""}),
    ));
    assert!(matches!(
        &p.operations[0],
        Operation::Regex { count: None, .. }
    ));
}

#[test]
fn base64_forms() {
    let p = ok(with_op(
        json!({"op": "write", "path": "b", "content_base64": "aGVs\nbG8="}),
    ));
    assert!(matches!(&p.operations[0], Operation::Write { content, .. } if content == b"hello"));
    let p = ok(with_op(
        json!({"op": "write", "path": "b", "content_base64": "aGVsbG8"}),
    ));
    assert!(matches!(&p.operations[0], Operation::Write { content, .. } if content == b"hello"));
    let p = ok(with_op(
        json!({"op": "write", "path": "b", "content_base64": ""}),
    ));
    assert!(matches!(&p.operations[0], Operation::Write { content, .. } if content.is_empty()));
}

#[test]
fn mode_forms() {
    for (s, m) in [
        ("0644", 0o644),
        ("644", 0o644),
        ("0o644", 0o644),
        ("0O755", 0o755),
        ("4755", 0o4755),
        ("7777", 0o7777),
    ] {
        let p = ok(with_op(json!({"op": "chmod", "path": "a", "mode": s})));
        assert_eq!(
            p.operations[0],
            Operation::Chmod {
                path: RelPath::parse("a").unwrap(),
                mode: m
            },
            "{s}"
        );
    }
    assert_eq!(parse_mode(&json!("0")), Ok(0));
}

#[test]
fn id_is_assigned_when_missing() {
    let p = ok(with_op(json!({"op": "delete", "path": "a"})));
    let hex = p.id.strip_prefix("patch-").expect(&p.id);
    assert!(crate::hash::is_md5_hex(hex), "{}", p.id);
    // Derived from the content: stable across parses, whitespace and key order.
    let again = parse_patch(
        br#"{ "operations" : [ {"path": "a", "op": "delete"} ] }"#,
        &ParseOptions {
            targets: &[TargetSpec {
                name: "default".into(),
                aliases: vec![],
                legacy_root: None,
                allow_shell: false,
                ..TargetSpec::default()
            }],
            target_override: None,
        },
    )
    .unwrap();
    assert_eq!(again.id, p.id);
    assert_ne!(ok(with_op(json!({"op": "delete", "path": "b"}))).id, p.id);
    let p =
        ok(json!({"id": "naïve ✓ id with spaces", "operations": [{"op": "delete", "path": "a"}]}));
    assert_eq!(p.id, "naïve ✓ id with spaces");
}

#[test]
fn null_optional_fields_are_absent() {
    let p = ok(
        json!({"id": null, "target": null, "description": null, "checks": null, "retry": null, "git": null,
        "operations": [{"op": "write", "path": "a", "content": "x", "mode": null, "content_base64": null}]}),
    );
    assert!(p.id.starts_with("patch-"));
    assert_eq!(p.target, "default");
}

#[test]
fn target_resolution() {
    let t = targets(true, None);
    let doc = |target: Option<&str>| {
        let mut d = with_op(json!({"op": "delete", "path": "a"}));
        if let Some(target) = target {
            d["target"] = json!(target);
        }
        d
    };
    assert_eq!(parse_with(&doc(None), &t, None).unwrap().target, "default");
    assert_eq!(
        parse_with(&doc(Some("dev")), &t, None).unwrap().target,
        "default"
    );
    assert_eq!(
        parse_with(&doc(Some("other-alias")), &t, None)
            .unwrap()
            .target,
        "other"
    );
    assert_eq!(
        parse_with(&doc(None), &t, Some("other")).unwrap().target,
        "other"
    );
    assert_eq!(
        parse_with(&doc(Some("OTHER-ALIAS")), &t, Some("other"))
            .unwrap()
            .target,
        "other"
    );
    assert_eq!(
        parse_with(&doc(Some("CYOPS")), &t, Some("default"))
            .unwrap()
            .target,
        "default"
    );

    let e = parse_with(&doc(Some("DEV")), &t, Some("other"))
        .unwrap_err()
        .errors;
    assert_err(&e, "target", &["\"DEV\"", "\"other\"", "default"]);
    let e = parse_with(&doc(Some("BOTH")), &t, None).unwrap_err().errors;
    assert_err(
        &e,
        "target",
        &[
            "unknown target \"BOTH\"",
            "default (aliases: DEV, CYOPS",
            "other (aliases: OTHER-ALIAS)",
        ],
    );
    let e = parse_with(&doc(None), &t, Some("nope")).unwrap_err().errors;
    assert_err(&e, "target", &["unknown target \"nope\"", "submission"]);
    // Names match exactly only.
    let e = parse_with(&doc(Some("DEFAULT")), &t, None)
        .unwrap_err()
        .errors;
    assert_err(&e, "target", &["unknown target"]);
    // No "default" configured and none named.
    let only_other = &t[1..];
    let e = parse_with(&doc(None), only_other, None).unwrap_err().errors;
    assert_err(&e, "target", &["no target named \"default\""]);
    let e = parse_with(&doc(None), &[], None).unwrap_err().errors;
    assert_err(&e, "target", &["no targets are configured"]);
}

#[test]
fn resolve_target_rules() {
    let t = targets(false, None);
    assert_eq!(resolve_target(&t, "default").unwrap().name, "default");
    assert_eq!(resolve_target(&t, "braun").unwrap().name, "default");
    assert_eq!(resolve_target(&t, "Ghost-System").unwrap().name, "default");
    assert!(resolve_target(&t, "Default").is_none());
    assert!(resolve_target(&t, "").is_none());
    // An exact name wins over another target's alias.
    let mut t2 = t.clone();
    t2[0].aliases.push("other".into());
    assert_eq!(resolve_target(&t2, "other").unwrap().name, "other");
}

#[test]
fn bom_is_ignored() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(br#"{"operations": [{"op": "delete", "path": "a"}]}"#);
    let t = targets(false, None);
    assert!(parse_patch(
        &bytes,
        &ParseOptions {
            targets: &t,
            target_override: None
        }
    )
    .is_ok());
}

// ---------------------------------------------------------------- rejections

fn raw_errs(bytes: &[u8]) -> Vec<FieldError> {
    let t = targets(true, None);
    parse_patch(
        bytes,
        &ParseOptions {
            targets: &t,
            target_override: None,
        },
    )
    .expect_err("accepted")
    .errors
}

#[test]
fn malformed_json_names_line_and_column() {
    let e = raw_errs(b"{\n  \"operations\": [,]\n}");
    assert_err(&e, "(document)", &["not valid JSON", "line 2 column"]);
    assert_err(&raw_errs(b""), "(document)", &["not valid JSON", "line 1"]);
    assert_err(&raw_errs(b"{} trailing"), "(document)", &["trailing"]);
}

#[test]
fn invalid_utf8_names_the_offset() {
    let e = raw_errs(b"{\"operations\": \"\xff\"}");
    assert_err(&e, "(document)", &["UTF-8", "offset 16", "content_base64"]);
}

#[test]
fn top_level_must_be_an_object() {
    assert_err(&raw_errs(b"[]"), "(document)", &["JSON object", "an array"]);
    assert_err(&raw_errs(b"\"x\""), "(document)", &["a string"]);
    assert_err(&raw_errs(b"null"), "(document)", &["null"]);
}

#[test]
fn unrecognised_shape() {
    assert_err(
        &raw_errs(b"{\"id\": \"x\"}"),
        "(document)",
        &["not a recognised patch shape", "`operations`"],
    );
    assert_err(
        &raw_errs(b"{\"$schema\": \"x\"}"),
        "(document)",
        &["JSON Schema"],
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        "{{\"operations\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_err(
        &raw_errs(deep.as_bytes()),
        "(document)",
        &["recursion limit", "128 levels"],
    );
    let deep = format!(
        "{{\"metadata\": {}1{}, \"operations\": []}}",
        "{\"a\":".repeat(5000),
        "}".repeat(5000)
    );
    assert_err(
        &raw_errs(deep.as_bytes()),
        "(document)",
        &["not valid JSON"],
    );
}

#[test]
fn wrong_types_are_all_reported() {
    let e = errs(
        json!({"id": 5, "target": ["x"], "description": true, "operations": {}, "checks": [],
        "retry": 3, "git": "commit"}),
    );
    assert_err(&e, "id", &["expected a string, got a number"]);
    assert_err(&e, "target", &["expected a string, got an array"]);
    assert_err(&e, "description", &["got a boolean"]);
    assert_err(
        &e,
        "operations",
        &["expected an array of operations, got an object"],
    );
    assert_err(&e, "checks", &["got an array"]);
    assert_err(&e, "retry", &["got a number"]);
    assert_err(&e, "git", &["got a string"]);
    let e = errs(
        json!({"operations": [5, {"op": 1}, {"op": "write", "path": 1, "content": 2, "mode": true, "expect_md5": 3}]}),
    );
    assert_err(&e, "operations[0]", &["got a number"]);
    assert_err(&e, "operations[1].op", &["got a number"]);
    assert_err(&e, "operations[2].path", &["got a number"]);
    assert_err(&e, "operations[2].content", &["got a number"]);
    assert_err(&e, "operations[2].mode", &["got a boolean"]);
    assert_err(&e, "operations[2].expect_md5", &["got a number"]);
    let e = errs(
        json!({"operations": [{"op": "replace", "path": "a", "find": 1, "replace": null, "count": "2"}]}),
    );
    assert_err(&e, "operations[0].find", &["got a number"]);
    assert_err(&e, "operations[0].replace", &["missing `replace`"]);
    assert_err(
        &e,
        "operations[0].count",
        &["positive whole number", "string"],
    );
}

#[test]
fn unknown_and_missing_op() {
    op_err(
        json!({"op": "patch", "path": "a"}),
        "operations[0].op",
        &[
            "unknown op \"patch\"",
            "write, replace, regex, delete, rename, chmod, diff",
        ],
    );
    op_err(
        json!({"path": "a"}),
        "operations[0].op",
        &["missing `op`", "write"],
    );
}

#[test]
fn empty_operations() {
    assert_err(&errs(json!({"operations": []})), "operations", &["empty"]);
}

#[test]
fn unknown_keys_native() {
    let e = errs(
        json!({"operations": [{"op": "delete", "path": "a", "mode": "0644"}], "extra": 1, "metadata": {"ok": 1}}),
    );
    assert_err(&e, "extra", &["unknown key \"extra\"", "metadata"]);
    assert_err(
        &e,
        "operations[0].mode",
        &["unknown key \"mode\"", "op, path, expect_md5"],
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    let e = errs(json!({"operations": [{"op": "delete", "path": "a"}],
        "checks": {"before": [{"argv": ["x"], "cwd": "/"}], "during": []}, "retry": {"max_attempts": 1, "backoff": 2},
        "git": {"commit": "m", "push": true}}));
    assert_err(
        &e,
        "checks.before[0].cwd",
        &["unknown key", "argv, shell, timeout_secs"],
    );
    assert_err(&e, "checks.during", &["unknown key"]);
    assert_err(&e, "retry.backoff", &["unknown key"]);
    assert_err(&e, "git.push", &["unknown key"]);
}

/// Found by fuzzing (`fuzz/corpus/patch/regression-empty-key`): a key spelled
/// `""` was refused under an empty locator, an error naming no field.
#[test]
fn a_key_spelled_empty_is_named() {
    let e = errs(json!({"": 1, "operations": [{"op": "delete", "path": "a", "": 2}]}));
    assert_err(&e, "\"\"", &["unknown key \"\""]);
    assert_err(&e, "operations[0].\"\"", &["unknown key \"\""]);
    assert!(e.iter().all(|f| !f.field.is_empty()), "{e:#?}");
    let e = parse_text(r#"{"":"","":[]}"#).expect_err("a repeated key");
    assert_err(&e.errors, "\"\"", &["appears more than once"]);
}

/// Found by fuzzing (`fuzz/corpus/path/regression-backslash-after-dot`): `./\x`
/// was accepted as `\x`, a path that is itself refused as absolute, so the
/// normalised form did not parse to itself.
#[test]
fn a_leading_backslash_is_absolute_after_normalising_too() {
    for raw in ["\\x", "./\\x", ".//\\0.//.", "/\\x"] {
        let e = RelPath::parse(raw).expect_err(raw);
        assert!(e.contains("absolute"), "{raw}: {e}");
    }
    // Inside the path a backslash is an ordinary character.
    for raw in ["a/\\x", "./a\\b", "a\\"] {
        let p = RelPath::parse(raw).unwrap();
        assert_eq!(RelPath::parse(p.as_str()), Ok(p), "{raw}");
    }
}

#[test]
fn path_escapes() {
    for (path, needle) in [
        ("/etc/passwd", "absolute"),
        ("a/../../b", ".."),
        ("a\0b", "NUL"),
        ("", "empty"),
        (".", "tree itself"),
    ] {
        op_err(
            json!({"op": "delete", "path": path}),
            "operations[0].path",
            &[needle],
        );
    }
    op_err(
        json!({"op": "rename", "from": "../a", "to": "b"}),
        "operations[0].from",
        &[".."],
    );
    op_err(
        json!({"op": "rename", "from": "a", "to": "/b"}),
        "operations[0].to",
        &["absolute"],
    );
    op_err(
        json!({"op": "delete"}),
        "operations[0].path",
        &["missing `path`"],
    );
}

#[test]
fn write_content_rules() {
    op_err(
        json!({"op": "write", "path": "a", "content": "x", "content_base64": "eA=="}),
        "operations[0]",
        &["both", "exactly one"],
    );
    op_err(
        json!({"op": "write", "path": "a"}),
        "operations[0]",
        &["`content`", "`content_base64`"],
    );
    op_err(
        json!({"op": "write", "path": "a", "content_base64": "not base64!"}),
        "operations[0].content_base64",
        &["not valid base64", "Invalid"],
    );
}

#[test]
fn invalid_modes() {
    for (mode, needle) in [
        (json!(644), "octal string"),
        (json!(420), "ambiguous"),
        (json!("0o10000"), "larger than 0o7777"),
        (json!("99"), "not an octal number"),
        (json!(""), "not an octal number"),
        (json!("0x1ff"), "not an octal number"),
        (json!("-644"), "not an octal number"),
        (json!("77777777777777777"), "larger than"),
    ] {
        op_err(
            json!({"op": "chmod", "path": "a", "mode": mode}),
            "operations[0].mode",
            &[needle],
        );
    }
    op_err(
        json!({"op": "chmod", "path": "a"}),
        "operations[0].mode",
        &["missing `mode`"],
    );
    op_err(
        json!({"op": "write", "path": "a", "content": "", "mode": 755}),
        "operations[0].mode",
        &["octal string"],
    );
}

#[test]
fn invalid_md5() {
    for bad in [
        "",
        "abc",
        "d41d8cd98f00b204e9800998ecf8427",
        "g41d8cd98f00b204e9800998ecf8427e",
        "d41d8cd98f00b204e9800998ecf8427e0",
    ] {
        op_err(
            json!({"op": "write", "path": "a", "content": "", "expect_md5": bad}),
            "operations[0].expect_md5",
            &["32 hexadecimal digits"],
        );
        op_err(
            json!({"op": "delete", "path": "a", "expect_md5": bad}),
            "operations[0].expect_md5",
            &["32 hexadecimal digits"],
        );
    }
    op_err(
        json!({"op": "delete", "path": "a", "expect_md5": null}),
        "operations[0].expect_md5",
        &["must not exist"],
    );
}

#[test]
fn replace_and_regex_rules() {
    op_err(
        json!({"op": "replace", "path": "a", "find": "", "replace": "x"}),
        "operations[0].find",
        &["empty"],
    );
    op_err(
        json!({"op": "replace", "path": "a", "find": "x", "replace": "y", "count": 0}),
        "operations[0].count",
        &["at least 1"],
    );
    op_err(
        json!({"op": "replace", "path": "a", "find": "x", "replace": "y", "count": 1.5}),
        "operations[0].count",
        &["whole number"],
    );
    op_err(
        json!({"op": "replace", "path": "a", "find": "x", "replace": "y", "count": -1}),
        "operations[0].count",
        &["whole number"],
    );
    op_err(
        json!({"op": "regex", "path": "a", "pattern": "v(\\d+", "replacement": ""}),
        "operations[0].pattern",
        &["does not compile", "unclosed group"],
    );
    op_err(
        json!({"op": "regex", "path": "a", "pattern": "x", "replacement": "", "count": 0}),
        "operations[0].count",
        &["at least 1"],
    );
    op_err(
        json!({"op": "regex", "path": "a", "replacement": ""}),
        "operations[0].pattern",
        &["missing `pattern`"],
    );
}

#[test]
fn rename_to_itself() {
    op_err(
        json!({"op": "rename", "from": "a/b", "to": "./a//b"}),
        "operations[0].to",
        &["same path"],
    );
}

#[test]
fn diff_rejections() {
    op_err(
        json!({"op": "diff", "diff": ""}),
        "operations[0].diff",
        &["empty"],
    );
    op_err(
        json!({"op": "diff", "diff": "hello\nworld\n"}),
        "operations[0].diff",
        &["touches no file"],
    );
    op_err(
        json!({"op": "diff", "diff": "--- a/x\n+++ b/x\n@@ -1,2 +1 @@\n-1\n+2\n"}),
        "operations[0].diff",
        &["file x", "missing"],
    );
    op_err(
        json!({"op": "diff", "diff": "diff --git a/x b/x\nBinary files a/x and b/x differ\n"}),
        "operations[0].diff",
        &["binary diffs are not supported"],
    );
    op_err(
        json!({"op": "diff", "diff": "--- a/x\n+++ b/x\n@@ -5 +5 @@\n-1\n+2\n@@ -1 +1 @@\n-1\n+2\n"}),
        "operations[0].diff",
        &["file x", "error parsing patch"],
    );
    op_err(
        json!({"op": "diff", "diff": 3}),
        "operations[0].diff",
        &["got a number"],
    );
    op_err(
        json!({"op": "diff"}),
        "operations[0].diff",
        &["missing `diff`"],
    );
}

#[test]
fn command_rules() {
    let check = |cmd: Value, field: &str, needles: &[&str]| {
        let doc =
            json!({"operations": [{"op": "delete", "path": "a"}], "checks": {"after": [cmd]}});
        assert_err(&errs(doc), field, needles);
    };
    check(json!({"argv": []}), "checks.after[0].argv", &["empty"]);
    check(
        json!({"argv": ["ls", "a\0b"]}),
        "checks.after[0].argv[1]",
        &["NUL"],
    );
    check(
        json!({"argv": [""]}),
        "checks.after[0].argv[0]",
        &["program name is empty"],
    );
    check(
        json!({"argv": ["ls", 3]}),
        "checks.after[0].argv[1]",
        &["got a number"],
    );
    check(
        json!({"argv": "ls -l"}),
        "checks.after[0].argv",
        &["array of strings"],
    );
    check(
        json!({"argv": ["ls"], "shell": "ls"}),
        "checks.after[0]",
        &["not both"],
    );
    check(json!({}), "checks.after[0]", &["`argv`", "`shell`"]);
    check(json!({"timeout_secs": 5}), "checks.after[0]", &["`argv`"]);
    check(json!({"shell": ""}), "checks.after[0].shell", &["empty"]);
    check(json!({"shell": "a\0"}), "checks.after[0].shell", &["NUL"]);
    check(
        json!({"argv": ["x"], "timeout_secs": 0}),
        "checks.after[0].timeout_secs",
        &["at least 1"],
    );
    check(
        json!({"argv": ["x"], "timeout_secs": 1.5}),
        "checks.after[0].timeout_secs",
        &["whole number"],
    );
    check(
        json!({"argv": ["x"], "timeout_secs": "60"}),
        "checks.after[0].timeout_secs",
        &["whole number"],
    );
    check(json!("cargo check"), "checks.after[0]", &["command object"]);
    let doc = json!({"operations": [{"op": "delete", "path": "a"}], "checks": {"before": {}}});
    assert_err(&errs(doc), "checks.before", &["array of commands"]);
}

#[test]
fn native_shell_needs_allow_shell() {
    let doc = json!({"operations": [{"op": "delete", "path": "a"}],
        "checks": {"before": [{"argv": ["true"]}], "after": [{"shell": "make test"}]}});
    let e = parse_with(&doc, &targets(false, None), None)
        .unwrap_err()
        .errors;
    assert_eq!(
        e,
        vec![FieldError {
            field: "checks.after[0].shell".into(),
            reason: "shell commands are not allowed for target default (set allow_shell = true in [targets.default])".into()
        }]
    );
    assert!(parse_with(&doc, &targets(true, None), None).is_ok());
}

#[test]
fn retry_rules() {
    let doc = |r: Value| json!({"operations": [{"op": "delete", "path": "a"}], "retry": r});
    assert_err(
        &errs(doc(json!({"max_attempts": 0}))),
        "retry.max_attempts",
        &["at least 1"],
    );
    assert_err(
        &errs(doc(json!({"max_attempts": "3"}))),
        "retry.max_attempts",
        &["whole number"],
    );
    assert_err(
        &errs(doc(json!({"max_attempts": 5_000_000_000u64}))),
        "retry.max_attempts",
        &["too large"],
    );
    assert_eq!(ok(doc(json!({}))).max_attempts, None);
}

#[test]
fn git_rules() {
    let doc = |g: Value| json!({"operations": [{"op": "delete", "path": "a"}], "git": g});
    assert_err(&errs(doc(json!({}))), "git", &["`commit`", "`tag`"]);
    assert_err(
        &errs(doc(json!({"commit": "  "}))),
        "git.commit",
        &["empty"],
    );
    assert_err(
        &errs(doc(json!({"commit": "a\u{0}b"}))),
        "git.commit",
        &["NUL"],
    );
    for tag in [
        "has space",
        "a..b",
        "-x",
        "/x",
        "x~1",
        "x^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a\u{7}b",
        "",
        "x.lock",
        "x/",
        "a//b",
        "a@{b",
        "@",
        ".hidden",
    ] {
        assert_err(
            &errs(doc(json!({"tag": tag}))),
            "git.tag",
            &["not a safe git ref name"],
        );
    }
    let p = ok(doc(json!({"tag": "v1.2.3-rc.1/x"})));
    assert_eq!(
        p.git,
        Some(GitAction {
            commit: None,
            tag: Some("v1.2.3-rc.1/x".into())
        })
    );
}

#[test]
fn id_rules() {
    let doc = |id: &str| json!({"id": id, "operations": [{"op": "delete", "path": "a"}]});
    assert_err(&errs(doc("")), "id", &["empty"]);
    assert_err(
        &errs(doc(&"x".repeat(257))),
        "id",
        &["257 characters", "256"],
    );
    assert!(parse_with(&doc(&"é".repeat(256)), &targets(true, None), None).is_ok());
    assert_err(&errs(doc("a\nb")), "id", &["control character"]);
    assert_err(&errs(doc("a\u{0}b")), "id", &["control character"]);
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let e = errs(json!({
        "id": "", "target": "nope", "extra": true,
        "operations": [
            {"op": "write", "path": "/abs", "content": "x", "mode": 644},
            {"op": "frobnicate"},
            {"op": "regex", "path": "ok", "pattern": "(", "replacement": "", "count": 0},
        ],
        "checks": {"after": [{"argv": []}]},
        "git": {"tag": "bad tag"}
    }));
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    for f in [
        "id",
        "target",
        "extra",
        "operations[0].path",
        "operations[0].mode",
        "operations[1].op",
        "operations[2].pattern",
        "operations[2].count",
        "checks.after[0].argv",
        "git.tag",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    // The Display form joins them all.
    let shown = PatchError { errors: e }.to_string();
    assert!(shown.contains("operations[1].op: unknown op"));
}

// ---------------------------------------------------------------- legacy shapes

#[test]
fn legacy_full_mutation_forms() {
    let p = ok(json!({
        "blockId": "patch-v1.0.0(P1.0.0)_x", "description": "d", "target": "MAIN", "showInUI": true, "version": "v1",
        "mutations": [
            {"path": "/tmp/a.txt", "contents": "A"},
            {"path": "b.txt", "pattern": "x+", "replacement": "y"},
            {"path": "c.txt", "op": "upsert", "contents": "C"},
            {"path": "/tmp//d.txt", "op": "delete"},
            {"path": "e.sh", "op": "chmod", "mode": "755"},
            {"path": "f.txt", "contents": "NEW", "insertAfter": "anchor"},
            {"path": "g.txt", "contents": "NEW", "insertBefore": "anchor"},
        ],
        "preMutationValidation": {"shell": ["pre1"]},
        "preCommit": {"shell": ["pre2"]},
        "postMutationBuild": {"shell": ["build"]},
        "validate": {"shell": ["check"]},
        "testing": {"shell": ["test"]},
        "final": {"git": {"commit": "msg", "tag": "v1"}, "summary": "ignored"}
    }));
    assert_eq!(p.id, "patch-v1.0.0(P1.0.0)_x");
    assert_eq!(p.target, "default");
    assert_eq!(p.source_format, SourceFormat::LegacyFull);
    let rp = |s: &str| RelPath::parse(s).unwrap();
    assert_eq!(
        p.operations,
        vec![
            Operation::Write {
                path: rp("a.txt"),
                content: b"A".to_vec(),
                mode: None,
                expect_md5: None
            },
            Operation::Regex {
                path: rp("b.txt"),
                pattern: "x+".into(),
                replacement: "y".into(),
                count: None
            },
            Operation::Write {
                path: rp("c.txt"),
                content: b"C".to_vec(),
                mode: None,
                expect_md5: None
            },
            Operation::Delete {
                path: rp("d.txt"),
                expect_md5: None
            },
            Operation::Chmod {
                path: rp("e.sh"),
                mode: 0o755
            },
            Operation::Replace {
                path: rp("f.txt"),
                find: "anchor".into(),
                replace: "anchorNEW".into(),
                count: 1
            },
            Operation::Replace {
                path: rp("g.txt"),
                find: "anchor".into(),
                replace: "NEWanchor".into(),
                count: 1
            },
        ]
    );
    let shells = |cmds: &[crate::patch::Command]| -> Vec<String> {
        cmds.iter()
            .map(|c| match &c.kind {
                CommandKind::Shell(s) => s.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(shells(&p.checks.before), ["pre1", "pre2"]);
    assert_eq!(shells(&p.checks.after), ["build", "check", "test"]);
    assert_eq!(
        p.git,
        Some(GitAction {
            commit: Some("msg".into()),
            tag: Some("v1".into())
        })
    );
}

#[test]
fn legacy_id_prefers_id_over_block_id() {
    let p =
        ok(json!({"id": "one", "blockId": "two", "mutations": [{"path": "a", "contents": ""}]}));
    assert_eq!(p.id, "one");
    let p = ok(json!({"mutations": [{"path": "a", "contents": ""}]}));
    assert!(p.id.starts_with("patch-"));
}

#[test]
fn legacy_full_rejections() {
    let e = errs(json!({"blockId": "x"}));
    assert_err(&e, "mutations", &["missing `mutations`"]);
    assert_err(&errs(json!({"mutations": []})), "mutations", &["empty"]);
    assert_err(
        &errs(json!({"mutations": {}})),
        "mutations",
        &["array of mutations"],
    );
    let e = errs(json!({"mutations": [
        {"path": "a", "contents": "x", "insertAt": "line 3"},
        {"path": "a", "contents": "x", "insertAfter": "y", "fallback": "append"},
        {"path": "a"},
        {"path": "a", "op": "rewrite"},
        {"path": "a", "op": "chmod", "mode": 755},
        {"contents": "x"},
        {"path": "a", "pattern": "(", "replacement": "x"},
        {"path": "a", "pattern": "x"},
        {"path": "a", "contents": "x", "insertAfter": ""},
        {"path": "a", "contents": "x", "insertAfter": "p", "insertBefore": "q"},
        {"path": 5, "contents": 6},
        "not an object",
    ]}));
    assert_err(&e, "mutations[0].insertAt", &["not supported"]);
    assert_err(&e, "mutations[1].fallback", &["not supported"]);
    assert_err(&e, "mutations[2]", &["needs `contents`"]);
    assert_err(
        &e,
        "mutations[3].op",
        &["unknown legacy op \"rewrite\"", "upsert, delete, chmod"],
    );
    assert_err(&e, "mutations[4].mode", &["octal string"]);
    assert_err(&e, "mutations[5].path", &["missing `path`"]);
    assert_err(&e, "mutations[6].pattern", &["does not compile"]);
    assert_err(&e, "mutations[7].replacement", &["missing `replacement`"]);
    assert_err(&e, "mutations[8].insertAfter", &["empty"]);
    assert_err(&e, "mutations[9]", &["not both"]);
    assert_err(&e, "mutations[10].path", &["got a number"]);
    assert_err(&e, "mutations[10].contents", &["got a number"]);
    assert_err(&e, "mutations[11]", &["got a string"]);
    // Used keys must have the right types; unused ones are ignored.
    let e = errs(
        json!({"blockId": 3, "description": [], "target": 1, "mutations": [{"path": "a", "contents": ""}],
        "validate": {"shell": "make"}, "testing": [], "final": {"git": {"commit": 1}}, "showInUI": "whatever"}),
    );
    assert_err(&e, "blockId", &["got a number"]);
    assert_err(&e, "description", &["got an array"]);
    assert_err(&e, "target", &["got a number"]);
    assert_err(&e, "validate.shell", &["array of shell command strings"]);
    assert_err(&e, "testing", &["got an array"]);
    assert_err(&e, "final.git.commit", &["got a number"]);
    assert!(!e.iter().any(|e| e.field == "showInUI"));
    let e = errs(
        json!({"mutations": [{"path": "a", "contents": ""}], "validate": {"shell": ["ok", "", 3]}}),
    );
    assert_err(&e, "validate.shell[1]", &["empty"]);
    assert_err(&e, "validate.shell[2]", &["got a number"]);
}

#[test]
fn legacy_absolute_paths_and_legacy_root() {
    let doc = |path: &str| json!({"mutations": [{"path": path, "contents": "x"}]});
    let path_of = |p: Patch| match &p.operations[0] {
        Operation::Write { path, .. } => path.to_string(),
        other => panic!("{other:?}"),
    };
    let root = |r: &str| targets(true, Some(r));
    let parse = |path: &str, r: &str| parse_with(&doc(path), &root(r), None);
    assert_eq!(
        path_of(parse("/Users/me/app/src/x.ts", "/Users/me/app").unwrap()),
        "src/x.ts"
    );
    assert_eq!(
        path_of(parse("/Users/me/app/src/x.ts", "/Users/me/app/").unwrap()),
        "src/x.ts"
    );
    assert_eq!(
        path_of(parse("//Users//me/app///src/x.ts", "/Users/me//app").unwrap()),
        "src/x.ts"
    );
    assert_eq!(path_of(parse("/anything/x", "/").unwrap()), "anything/x");
    let e = parse("/Users/me/application/x", "/Users/me/app")
        .unwrap_err()
        .errors;
    assert_err(&e, "mutations[0].path", &["absolute path \"/Users/me/application/x\" is outside target default's legacy_root (/Users/me/app)"]);
    let e = parse("/Users/me/app", "/Users/me/app").unwrap_err().errors;
    assert_err(&e, "mutations[0].path", &["legacy_root itself"]);
    let e = parse("/Users/me/app/../etc/passwd", "/Users/me/app")
        .unwrap_err()
        .errors;
    assert_err(&e, "mutations[0].path", &[".."]);
    let e = parse_with(&doc("/tmp/x"), &targets(true, None), None)
        .unwrap_err()
        .errors;
    assert_err(
        &e,
        "mutations[0].path",
        &["/tmp/x", "target default declares no legacy_root"],
    );
    // Native paths are never made relative, whatever the legacy_root.
    let e = parse_with(
        &with_op(json!({"op": "delete", "path": "/tmp/x"})),
        &root("/tmp"),
        None,
    )
    .unwrap_err()
    .errors;
    assert_err(&e, "operations[0].path", &["absolute"]);
    // Unknown target: the path cannot be checked, and says so.
    let mut d = doc("/tmp/x");
    d["target"] = json!("nowhere");
    let e = parse_with(&d, &root("/tmp"), None).unwrap_err().errors;
    assert_err(&e, "mutations[0].path", &["target is unknown"]);
}

#[test]
fn legacy_webhook_forms() {
    let rp = |s: &str| RelPath::parse(s).unwrap();
    let p = ok(
        json!({"id": "w", "role": "x", "target_file": "f.txt", "patch": {"pattern": "a(b)", "replacement": "$1"}}),
    );
    assert_eq!(p.source_format, SourceFormat::LegacyWebhook);
    assert_eq!(
        p.operations,
        vec![Operation::Regex {
            path: rp("f.txt"),
            pattern: "a(b)".into(),
            replacement: "$1".into(),
            count: None
        }]
    );
    for key in ["content", "contents"] {
        let p = ok(json!({"target_file": "/tmp/f.txt", "patch": {key: "new"}}));
        assert_eq!(
            p.operations,
            vec![Operation::Write {
                path: rp("f.txt"),
                content: b"new".to_vec(),
                mode: None,
                expect_md5: None
            }]
        );
    }
    let p = ok(json!({"target_file": "f.txt", "patch": "whole file"}));
    assert_eq!(
        p.operations,
        vec![Operation::Write {
            path: rp("f.txt"),
            content: b"whole file".to_vec(),
            mode: None,
            expect_md5: None
        }]
    );
    let p = ok(
        json!({"patch": {"mutations": [{"path": "g.txt", "op": "delete"}]}, "final": {"git": {"commit": "c"}}}),
    );
    assert_eq!(
        p.operations,
        vec![Operation::Delete {
            path: rp("g.txt"),
            expect_md5: None
        }]
    );
    assert_eq!(p.git.unwrap().commit.as_deref(), Some("c"));
}

#[test]
fn webhook_with_block_id_and_wrapped_native() {
    let p = ok(json!({"blockId": "b-1", "target_file": "f", "patch": "x"}));
    assert_eq!(p.id, "b-1");
    assert_eq!(p.source_format, SourceFormat::LegacyWebhook);
    let e = errs(json!({"patch": {"operations": [{"op": "delete", "path": "a"}]}, "metadata": {}}));
    assert_err(&e, "patch", &["native patch wrapped"]);
}

#[test]
fn legacy_webhook_rejections() {
    assert_err(
        &errs(json!({"target_file": "f"})),
        "patch",
        &["missing `patch`"],
    );
    assert_err(
        &errs(json!({"patch": "x"})),
        "target_file",
        &["missing `target_file`"],
    );
    assert_err(
        &errs(json!({"patch": {"pattern": "x", "replacement": "y"}})),
        "target_file",
        &["missing"],
    );
    assert_err(
        &errs(json!({"target_file": 3, "patch": "x"})),
        "target_file",
        &["got a number"],
    );
    assert_err(
        &errs(json!({"target_file": "f", "patch": 3})),
        "patch",
        &["got a number"],
    );
    assert_err(
        &errs(json!({"target_file": "f", "patch": {}})),
        "patch",
        &["needs `mutations`"],
    );
    assert_err(
        &errs(json!({"target_file": "f", "patch": {"content": "a", "pattern": "b"}})),
        "patch",
        &["`pattern` and `content`", "exactly one"],
    );
    assert_err(
        &errs(json!({"target_file": "f", "patch": {"pattern": "b"}})),
        "patch.replacement",
        &["missing"],
    );
    assert_err(
        &errs(json!({"target_file": "f", "patch": {"pattern": "(", "replacement": ""}})),
        "patch.pattern",
        &["does not compile"],
    );
    assert_err(
        &errs(json!({"target_file": "../f", "patch": "x"})),
        "target_file",
        &[".."],
    );
    assert_err(
        &errs(json!({"target_file": "f", "patch": {"content": 1}})),
        "patch.content",
        &["got a number"],
    );
    assert_err(
        &errs(
            json!({"target_file": "f", "patch": {"mutations": [{"path": "/etc/x", "contents": ""}]}}),
        ),
        "patch.mutations[0].path",
        &["outside"],
    );
}

#[test]
fn legacy_shell_needs_allow_shell() {
    let doc = json!({"target_file": "f", "patch": "x", "preCommit": {"shell": ["a", "b"]},
        "validate": {"shell": []}, "postMutationBuild": {"shell": ["c"]}});
    let e = parse_with(&doc, &targets(false, None), None)
        .unwrap_err()
        .errors;
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["preCommit.shell", "postMutationBuild.shell"]);
    assert_err(&e, "preCommit.shell", &["shell commands are not allowed for target default (set allow_shell = true in [targets.default])"]);
}

#[test]
fn the_targets_policy_is_applied_to_every_shape() {
    let strict = [TargetSpec {
        name: "default".into(),
        protected_paths: vec!["ci".into()],
        ..TargetSpec::default()
    }];
    let doc = json!({"operations": [
        {"op": "write", "path": ".git/hooks/post-commit", "content": "x", "mode": "0755"},
        {"op": "write", "path": "s", "content": "x", "mode": "4755"},
        {"op": "chmod", "path": "t", "mode": "2755"},
        {"op": "rename", "from": "a", "to": ".GIT/x"},
        {"op": "delete", "path": "ci/check.sh"},
        {"op": "diff", "diff": "diff --git a/b b/b\nnew file mode 101755\n--- /dev/null\n+++ b/b\n@@ -0,0 +1 @@\n+x\n"}
    ], "checks": {"after": [{"argv": ["sh", "-c", "touch x"]}]}});
    let e = parse_with(&doc, &strict, None).unwrap_err();
    let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "operations[0].path",
            "operations[1].mode",
            "operations[2].mode",
            "operations[3].to",
            "operations[4].path",
            "operations[5].diff (file 1)",
            "checks.after[0]",
        ],
        "{e}"
    );
    let all = e.to_string();
    for needle in [
        "sticky",
        "setgid",
        "setuid",
        ".git",
        "protected_paths",
        "targets.default.commands",
    ] {
        assert!(all.contains(needle), "{needle} missing in {all}");
    }
    // The legacy shapes are judged the same way.
    let legacy = json!({"blockId": "b", "target": "default", "mutations": [{"path": ".git/config", "contents": "x"}]});
    let e = parse_with(&legacy, &strict, None).unwrap_err();
    assert!(e.to_string().contains(".git"), "{e}");
}

/// The raw text through the parser (a duplicate key cannot be built as a `Value`).
fn parse_text(text: &str) -> Result<Patch, PatchError> {
    parse_patch(
        text.as_bytes(),
        &ParseOptions {
            targets: &targets(true, Some("/tmp")),
            target_override: None,
        },
    )
}

#[test]
fn a_key_named_twice_is_refused_wherever_it_is() {
    let op = r#"{"op": "write", "path": "a.txt", "content": "x"}"#;
    let cases = [
        // The last `id` used to win silently.
        (
            format!(r#"{{"id": "first", "operations": [{op}], "id": "second"}}"#),
            "id",
        ),
        // Escaped spelling of the same key.
        (
            format!(r#"{{"id": "a", "\u0069d": "b", "operations": [{op}]}}"#),
            "id",
        ),
        (
            format!(r#"{{"operations": [{op}], "operations": [{op}, {op}]}}"#),
            "operations",
        ),
        (
            format!(
                r#"{{"operations": [{op}, {{"op": "write", "path": "a", "path": "/etc/passwd", "content": ""}}]}}"#
            ),
            "operations[1].path",
        ),
        (
            r#"{"operations": [{"op": "delete", "op": "write", "path": "a", "content": ""}]}"#
                .to_string(),
            "operations[0].op",
        ),
        (
            format!(r#"{{"operations": [{op}], "metadata": {{"k": 1, "k": 2}}}}"#),
            "metadata.k",
        ),
        // Legacy shapes too.
        (
            r#"{"blockId": "a", "blockId": "b", "mutations": []}"#.to_string(),
            "blockId",
        ),
    ];
    for (text, field) in cases {
        let e = parse_text(&text).expect_err(&text);
        assert_err(
            &e.errors,
            field,
            &["appears more than once", "must name each key once"],
        );
        // The id rule does not read such a document either.
        assert!(crate::entry::stored_id(text.as_bytes()).is_none(), "{text}");
    }
    // The same key in different objects is fine.
    let text = format!(r#"{{"id": "x", "operations": [{op}, {op}], "metadata": {{"id": "y"}}}}"#);
    assert_eq!(parse_text(&text).unwrap().id, "x");
}
