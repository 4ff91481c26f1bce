//! Property tests: the parser never panics, and whatever it accepts is well formed.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::tests::targets;
use super::*;
use crate::patch::{CommandKind, Operation};

fn prop_targets() -> Vec<TargetSpec> {
    targets(true, Some("/tmp"))
}

/// Every path in an accepted patch is a valid, normalised RelPath.
fn check_invariants(p: &Patch) {
    assert!(!p.operations.is_empty());
    assert!(check_id(&p.id).is_ok(), "{:?}", p.id);
    let valid = |r: &RelPath| assert_eq!(RelPath::parse(r.as_str()).as_ref(), Ok(r));
    for op in &p.operations {
        match op {
            Operation::Write { path, .. }
            | Operation::Replace { path, .. }
            | Operation::Regex { path, .. }
            | Operation::Delete { path, .. }
            | Operation::Chmod { path, .. }
            | Operation::SearchReplace { path, .. } => valid(path),
            Operation::ApplyPatch { files } => {
                assert!(!files.is_empty());
                for f in files {
                    valid(f.path());
                    if let crate::patch::agent::FileEdit::Update {
                        move_to: Some(to), ..
                    } = f
                    {
                        valid(to);
                    }
                }
            }
            Operation::Rename { from, to } => {
                valid(from);
                valid(to);
                assert_ne!(from, to);
            }
            Operation::Diff { files } => {
                assert!(!files.is_empty());
                for f in files {
                    f.old_path.iter().chain(f.new_path.iter()).for_each(valid);
                    assert!(f.old_path.is_some() || f.new_path.is_some());
                    if !f.text.is_empty() {
                        diffy::Patch::from_str(&f.text).unwrap();
                    }
                }
            }
        }
    }
    for c in p.checks.before.iter().chain(&p.checks.after) {
        if let CommandKind::Argv(a) = &c.kind {
            assert!(!a.is_empty());
        }
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0u64..5).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            "a",
            "a/b.txt",
            "./a//b",
            "/tmp/x",
            "/etc/passwd",
            "../x",
            "a\0b",
            "0644",
            "0o755",
            "644",
            "99",
            "d41d8cd98f00b204e9800998ecf8427e",
            "AAEC",
            "!!",
            "(",
            "v(\\d+)",
            "$1",
            "write",
            "replace",
            "regex",
            "delete",
            "rename",
            "apply_patch",
            "search_replace",
            "*** Begin Patch\n*** Update File: a\n@@\n-x\n+y\n*** End Patch\n",
            "--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\n",
            "chmod",
            "diff",
            "upsert",
            "DEV",
            "default",
            "other",
            "nope",
            "v1",
            "bad tag",
            "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n",
            "diff --git a/x b/y\nrename from x\nrename to y\n",
            "--- a/x\n+++ b/x\n@@ -1,2 +1 @@\n-1\n",
        ])
        .prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "op",
        "path",
        "content",
        "content_base64",
        "mode",
        "expect_md5",
        "find",
        "replace",
        "count",
        "pattern",
        "replacement",
        "from",
        "to",
        "diff",
        "argv",
        "shell",
        "timeout_secs",
        "before",
        "after",
        "max_attempts",
        "commit",
        "tag",
        "id",
        "target",
        "operations",
        "checks",
        "retry",
        "git",
        "metadata",
        "mutations",
        "blockId",
        "target_file",
        "patch",
        "contents",
        "insertAfter",
        "insertBefore",
        "insertAt",
        "preCommit",
        "validate",
        "postMutationBuild",
        "final",
        "description",
        "x",
    ]);
    leaf().prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(str::to_owned), inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn pick<T: Clone + std::fmt::Debug + 'static>(items: Vec<T>) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

/// Mostly valid, sometimes invalid, values for the fields operations use.
fn path_value() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => pick(vec!["a", "a/b.txt", "./x//y", "dir/file.rs", "tést file", "q\"uote"]).prop_map(|s| json!(s)),
        1 => pick(vec!["/tmp/x", "/etc/passwd", "../x", "", "a\0b", ".", "/tmp"]).prop_map(|s| json!(s)),
        1 => leaf(),
    ]
    .boxed()
}

fn maybe(key: &'static str, v: BoxedStrategy<Value>) -> BoxedStrategy<Option<(String, Value)>> {
    prop::option::weighted(0.5, v.prop_map(move |v| (key.to_owned(), v))).boxed()
}

fn native_op() -> BoxedStrategy<Value> {
    let text = || prop_oneof![4 => ".{0,8}".prop_map(Value::String), 1 => leaf()].boxed();
    let mode = || {
        prop_oneof![4 => pick(vec!["0644", "755", "0o600", "4755"]).prop_map(|s| json!(s)), 1 => leaf()].boxed()
    };
    let count = || prop_oneof![4 => (1u64..4).prop_map(|n| json!(n)), 1 => leaf()].boxed();
    let md5 = || {
        prop_oneof![
        2 => Just(Value::Null),
        2 => pick(vec!["d41d8cd98f00b204e9800998ecf8427e", "D41D8CD98F00B204E9800998ECF8427E"]).prop_map(|s| json!(s)),
        1 => leaf()
    ]
    .boxed()
    };
    let pattern = || {
        prop_oneof![4 => pick(vec!["a", "v(\\d+)", "(?P<n>x)", "^$"]).prop_map(|s| json!(s)), 1 => leaf()].boxed()
    };
    let obj = |op: &'static str,
               fields: Vec<(&'static str, BoxedStrategy<Value>)>,
               opt: Vec<BoxedStrategy<Option<(String, Value)>>>| {
        let (keys, strats): (Vec<_>, Vec<_>) = fields.into_iter().unzip();
        (strats, opt)
            .prop_map(move |(vals, extra)| {
                let mut m = serde_json::Map::new();
                m.insert("op".into(), json!(op));
                for (k, v) in keys.iter().zip(vals) {
                    m.insert((*k).to_owned(), v);
                }
                m.extend(extra.into_iter().flatten());
                Value::Object(m)
            })
            .boxed()
    };
    prop_oneof![
        obj(
            "write",
            vec![("path", path_value()), ("content", text())],
            vec![maybe("mode", mode()), maybe("expect_md5", md5())]
        ),
        obj(
            "write",
            vec![
                ("path", path_value()),
                (
                    "content_base64",
                    pick(vec!["", "AAEC", "aGVsbG8", "!!"])
                        .prop_map(|s| json!(s))
                        .boxed()
                )
            ],
            vec![]
        ),
        obj(
            "replace",
            vec![
                ("path", path_value()),
                ("find", text()),
                ("replace", text())
            ],
            vec![maybe("count", count())]
        ),
        obj(
            "regex",
            vec![
                ("path", path_value()),
                ("pattern", pattern()),
                ("replacement", text())
            ],
            vec![maybe("count", count())]
        ),
        obj(
            "delete",
            vec![("path", path_value())],
            vec![maybe("expect_md5", md5())]
        ),
        obj(
            "rename",
            vec![("from", path_value()), ("to", path_value())],
            vec![]
        ),
        obj(
            "chmod",
            vec![("path", path_value()), ("mode", mode())],
            vec![]
        ),
        obj(
            "diff",
            vec![("diff", diff_text().prop_map(Value::String).boxed())],
            vec![]
        ),
        json_value().boxed(),
    ]
    .boxed()
}

fn command() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::collection::vec(pick(vec!["cargo", "check", "-q", ""]), 0..3).prop_map(|a| json!({"argv": a})),
        2 => pick(vec!["make test", "", "true"]).prop_map(|s| json!({"shell": s})),
        1 => (1u64..5).prop_map(|t| json!({"argv": ["x"], "timeout_secs": t})),
        1 => json_value(),
    ]
    .boxed()
}

fn legacy_mutation() -> BoxedStrategy<Value> {
    let path = || {
        prop_oneof![3 => path_value(), 2 => pick(vec!["/tmp/a", "/tmp//b/c", "/other/x"]).prop_map(|s| json!(s))].boxed()
    };
    prop_oneof![
        (path(), ".{0,6}").prop_map(|(p, c)| json!({"path": p, "contents": c})),
        (path(), pick(vec!["a", "(", "x+"]))
            .prop_map(|(p, r)| json!({"path": p, "pattern": r, "replacement": "y"})),
        (path(), pick(vec!["upsert", "delete", "chmod", "bogus"]))
            .prop_map(|(p, op)| json!({"path": p, "op": op, "contents": "c", "mode": "0755"})),
        (
            path(),
            pick(vec!["insertAfter", "insertBefore", "insertAt"]),
            pick(vec!["", "anchor"])
        )
            .prop_map(|(p, k, a)| json!({"path": p, "contents": "c", k: a})),
        json_value(),
    ]
    .boxed()
}

/// Documents shaped like patches, so that most code paths are reached and a
/// good share of them is accepted.
fn patchish() -> impl Strategy<Value = Value> {
    let shells = || prop_oneof![3 => Just(Value::Null), 1 => prop::collection::vec(pick(vec!["make", ""]), 0..2).prop_map(|v| json!({"shell": v})), 1 => leaf()];
    prop_oneof![
        2 => (prop::collection::vec(native_op(), 0..3), prop::collection::vec(command(), 0..3), pick(vec![None, Some("DEV"), Some("other"), Some("nope")]))
            .prop_map(|(ops, cmds, target)| {
                let mut d = json!({"operations": ops, "checks": {"after": cmds}});
                if let Some(t) = target {
                    d["target"] = json!(t);
                }
                d
            }),
        1 => (prop::collection::vec(legacy_mutation(), 0..4), prop::option::of(".{0,4}"), shells(), shells())
            .prop_map(|(ms, id, pre, post)| json!({"mutations": ms, "blockId": id, "preCommit": pre, "validate": post})),
        1 => (path_value(), prop_oneof![
            ".{0,6}".prop_map(Value::String),
            pick(vec!["a", "("]).prop_map(|p| json!({"pattern": p, "replacement": "r"})),
            ".{0,6}".prop_map(|c| json!({"content": c})),
            prop::collection::vec(legacy_mutation(), 0..3).prop_map(|m| json!({"mutations": m})),
            json_value(),
        ], shells())
            .prop_map(|(tf, patch, post)| json!({"target_file": tf, "patch": patch, "postMutationBuild": post})),
    ]
}

/// One well-formed hunk body and its header, starting at `start`.
fn hunk(start: u64) -> impl Strategy<Value = String> {
    prop::collection::vec((pick(vec![' ', '-', '+']), "[a-z ]{0,4}"), 1..5).prop_map(move |lines| {
        let old = lines.iter().filter(|(k, _)| *k != '+').count();
        let new = lines.iter().filter(|(k, _)| *k != '-').count();
        let body: String = lines.iter().map(|(k, t)| format!("{k}{t}\n")).collect();
        format!("@@ -{start},{old} +{start},{new} @@\n{body}")
    })
}

/// Well-formed multi-file diffs (plain and git), sometimes with one line replaced
/// by something from the diff vocabulary.
fn diff_text() -> impl Strategy<Value = String> {
    let file = (
        pick(vec!["x", "src/y.rs", "a b", "../z", "q\"q"]),
        pick(vec!["plain", "git", "git-new", "git-delete", "git-rename"]),
        prop::collection::vec(Just(()), 1..3).prop_flat_map(|v| {
            (0..v.len() as u64).map(|i| hunk(1 + 20 * i).boxed()).collect::<Vec<_>>()
        }),
    )
        .prop_map(|(name, style, hunks)| {
            let hunks = hunks.concat();
            match style {
                "plain" => format!("--- a/{name}\n+++ b/{name}\n{hunks}"),
                "git" => format!("diff --git a/{name} b/{name}\nindex 1..2 100644\n--- a/{name}\n+++ b/{name}\n{hunks}"),
                "git-new" => format!("diff --git a/{name} b/{name}\nnew file mode 100755\n--- /dev/null\n+++ b/{name}\n@@ -0,0 +1 @@\n+new\n"),
                "git-delete" => format!("diff --git a/{name} b/{name}\ndeleted file mode 100644\n"),
                _ => format!("diff --git a/{name} b/{name}.new\nsimilarity index 90%\nrename from {name}\nrename to {name}.new\n"),
            }
        });
    (
        prop::collection::vec(file, 1..4),
        prop::option::weighted(0.3, (any::<prop::sample::Index>(), diffish())),
    )
        .prop_map(|(files, corrupt)| {
            let text = files.concat();
            match corrupt {
                None => text,
                Some((at, junk)) => {
                    let mut lines: Vec<&str> = text.lines().collect();
                    let i = at.index(lines.len());
                    lines[i] = &junk;
                    lines.join("\n")
                }
            }
        })
}

fn diffish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "diff --git a/x b/x",
            "diff --git \"a/q\\\"x\" \"b/q\\\"x\"",
            "--- a/x",
            "+++ b/x",
            "--- /dev/null",
            "+++ /dev/null",
            "--- \"unterminated",
            "@@ -1 +1 @@",
            "@@ -0,0 +1,2 @@",
            "@@ -1,2 +1 @@",
            "@@ -1,1 +1,1 @@ fn",
            "@@ -18446744073709551615,1 +1 @@",
            "@@ -1 +18446744073709551615 @@",
            "@@@ -1 +1 @@@",
            "@@ x",
            "-1",
            "+2",
            " ctx",
            "",
            "\\ No newline at end of file",
            "new file mode 100755",
            "deleted file mode 100644",
            "old mode 100644",
            "new mode 100755",
            "new mode 120000",
            "rename from x",
            "rename to y",
            "copy from x",
            "index 1..2",
            "similarity index 100%",
            "Binary files a/x and b/x differ",
            "-- ",
            "garbage",
        ]),
        0..24,
    )
    .prop_flat_map(|lines| (Just(lines.join("\n")), any::<bool>()))
    .prop_map(|(text, nl)| if nl { text + "\n" } else { text })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let t = prop_targets();
        if let Ok(p) = parse_patch(&bytes, &ParseOptions { targets: &t, target_override: None }) {
            check_invariants(&p);
        }
    }

    #[test]
    fn never_panics_on_json_text(s in "[\\[\\]{}\",:0-9a-z \\\\]{0,64}") {
        let t = prop_targets();
        let _ = parse_patch(s.as_bytes(), &ParseOptions { targets: &t, target_override: None });
    }

    #[test]
    fn never_panics_on_json_values(v in json_value()) {
        let t = prop_targets();
        if let Ok(p) = parse_patch_value(&v, &ParseOptions { targets: &t, target_override: None }) {
            check_invariants(&p);
        }
    }

    #[test]
    fn accepted_patches_are_well_formed(v in patchish(), shell in any::<bool>(), over in prop::option::of(prop::sample::select(vec!["default", "other", "DEV", "x"]))) {
        let t = targets(shell, Some("/tmp"));
        match parse_patch_value(&v, &ParseOptions { targets: &t, target_override: over }) {
            Ok(p) => check_invariants(&p),
            Err(e) => {
                prop_assert!(!e.errors.is_empty());
                prop_assert!(e.errors.iter().all(|e| !e.field.is_empty() && !e.reason.is_empty()));
            }
        }
    }

    #[test]
    fn diffs_never_panic_and_accepted_ones_satisfy_diffy(text in prop_oneof![diffish(), diff_text()]) {
        let doc = json!({"operations": [{"op": "diff", "diff": text}]});
        let t = prop_targets();
        if let Ok(p) = parse_patch_value(&doc, &ParseOptions { targets: &t, target_override: None }) {
            check_invariants(&p);
        }
    }
}

/// A patch-like document with an id, a `blockId`, both or neither.
fn with_ids() -> impl Strategy<Value = Value> {
    let id = || prop::option::of(prop_oneof![".{0,6}".prop_map(Value::String), leaf()]);
    (patchish(), id(), id()).prop_map(|(mut d, id, block)| {
        if let Some(obj) = d.as_object_mut() {
            if let Some(id) = id {
                obj.insert("id".into(), id);
            }
            if let Some(b) = block {
                obj.insert("blockId".into(), b);
            }
        }
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The one id rule: for any bytes the parser accepts, the id read from the
    /// stored bytes (what the id index and every lookup use) is the id the
    /// parser gives, whatever the formatting and with or without a byte order mark.
    #[test]
    fn the_stored_id_is_the_parsers_id(v in with_ids(), pretty in any::<bool>(), bom in any::<bool>(), shell in any::<bool>()) {
        let t = targets(shell, Some("/tmp"));
        let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        bytes.extend(if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap());
        if let Ok(p) = parse_patch(&bytes, &ParseOptions { targets: &t, target_override: None }) {
            prop_assert_eq!(crate::entry::stored_id(&bytes), Some(p.id));
        }
    }
}
