//! The two public conformance suites of agents' patch formats
//! (tests/fixtures/agent-formats/, see its README), run through the parser
//! and the stager: every Codex `apply_patch` scenario (as an `apply_patch`
//! operation and as found in a transcript) and every Aider SEARCH/REPLACE
//! case, with the deliberate differences the README names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use ghost_core::patch::agent::detect;
use ghost_core::patch::parse::{parse_patch_value, ParseOptions};
use ghost_core::patch::stage::{stage, MemTree};
use ghost_core::patch::TargetSpec;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/agent-formats")
}

type Files = BTreeMap<String, Vec<u8>>;

fn read_tree(dir: &Path) -> Files {
    let mut out = Files::new();
    fn walk(base: &Path, dir: &Path, out: &mut Files) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn tree_of(files: &Files) -> MemTree {
    files
        .iter()
        .fold(MemTree::new(), |t, (p, b)| t.with_file(p, b.clone(), 0o644))
}

fn files_of(t: &MemTree) -> Files {
    t.files()
        .iter()
        .map(|(p, d)| (p.to_string(), d.bytes.clone()))
        .collect()
}

/// Parses and stages each document in order against `files`; the files after
/// them all, or the first error.
fn run(files: &Files, docs: &[Value]) -> Result<(Files, Vec<String>), String> {
    let targets = [TargetSpec {
        name: "default".into(),
        ..TargetSpec::default()
    }];
    let opts = ParseOptions {
        targets: &targets,
        target_override: None,
    };
    let mut tree = tree_of(files);
    let mut details = Vec::new();
    for d in docs {
        let patch = parse_patch_value(d, &opts).map_err(|e| e.to_string())?;
        let staged = stage(&patch.operations, &tree, 0o644).map_err(|e| e.to_string())?;
        details.extend(staged.results.iter().map(|r| r.detail.clone()));
        tree.apply(&staged);
    }
    Ok((files_of(&tree), details))
}

fn found_docs(text: &str) -> Result<Vec<Value>, String> {
    detect::find(text).into_iter().map(|f| f.result).collect()
}

#[test]
fn codex_apply_patch_scenarios() {
    let dir = fixtures().join("codex");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 23, "the suite has 23 scenarios");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let patch = std::fs::read_to_string(case.join("patch.txt")).unwrap();
        let input = read_tree(&case.join("input"));
        let mut expected = read_tree(&case.join("expected"));
        if name.starts_with("015_") {
            // All or nothing, by design (see the README).
            expected = input.clone();
        }
        let refused = expected == input;
        let as_op = vec![json!({"operations": [{"op": "apply_patch", "patch": patch}]})];
        let in_transcript =
            format!("The agent ran:\n\napply_patch <<'EOF'\n{patch}EOF\n\nand said it was done.\n");
        for (how, docs) in [
            ("op", Ok(as_op)),
            ("transcript", found_docs(&in_transcript)),
        ] {
            let outcome = docs.and_then(|d| run(&input, &d));
            match outcome {
                Ok((files, _)) => {
                    assert!(!refused, "{name} ({how}): applied, should be refused");
                    assert_eq!(files, expected, "{name} ({how})");
                }
                Err(e) => assert!(refused, "{name} ({how}): refused: {e}"),
            }
        }
    }
}

#[test]
fn aider_search_replace_cases() {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixtures().join("aider/cases.json")).unwrap())
            .unwrap();
    assert_eq!(cases.len(), 20, "the suite has 20 cases");
    let to_files = |v: &Value| -> Files {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let original = to_files(&c["original_files"]);
        let reply = c["llm_output"].as_str().unwrap();
        let outcome = found_docs(reply).and_then(|docs| {
            if docs.is_empty() {
                Err("no patch found".to_string())
            } else {
                run(&original, &docs)
            }
        });
        if c.get("ghostbridge_expect").is_some() {
            let e = outcome.expect_err(name);
            assert!(
                e.contains("file.txt:1") && e.contains("file.txt:3"),
                "{name}: both places must be named: {e}"
            );
        } else if c["expect_error"] == json!(true) {
            assert!(outcome.is_err(), "{name}: {outcome:?}");
        } else {
            let (files, _) = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(files, to_files(&c["expected_files"]), "{name}");
        }
    }
}
