//! Corpus replay: every file under the repository's `tests/corpus/` (and the
//! shipped `examples/`) goes through the parser, the path validation and the
//! policy, as outside input does. A file named `ok-…` must be accepted, one
//! named `bad-…` refused with an error (never a panic); whatever is accepted
//! is well formed. New hostile inputs are added as files, not code.

use std::path::{Path, PathBuf};

use ghost_core::patch::agent::FileEdit;
use ghost_core::patch::parse::{parse_patch, ParseOptions};
use ghost_core::patch::{policy, Operation, Patch, RelPath, TargetSpec};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn targets() -> Vec<TargetSpec> {
    // The shipped examples run checks; shell stays off.
    vec![TargetSpec {
        name: "default".into(),
        commands: ghost_core::patch::CommandPolicy::Any,
        ..TargetSpec::default()
    }]
}

/// Accepted: parsed, and nothing in it is refused by the target's policy.
fn admit(bytes: &[u8]) -> Result<Patch, String> {
    let targets = targets();
    let p = parse_patch(
        bytes,
        &ParseOptions {
            targets: &targets,
            target_override: None,
        },
    )
    .map_err(|e| e.to_string())?;
    let problems = policy::check(&p, &targets[0]);
    if problems.is_empty() {
        Ok(p)
    } else {
        Err(format!("{problems:?}"))
    }
}

fn well_formed(p: &Patch) {
    let valid = |r: &RelPath| assert_eq!(RelPath::parse(r.as_str()).as_ref(), Ok(r));
    assert!(!p.operations.is_empty());
    for op in &p.operations {
        match op {
            Operation::Write { path, .. }
            | Operation::Replace { path, .. }
            | Operation::Regex { path, .. }
            | Operation::Delete { path, .. }
            | Operation::Chmod { path, .. } => valid(path),
            Operation::Rename { from, to } => {
                valid(from);
                valid(to);
            }
            Operation::Diff { files } => {
                for f in files {
                    f.old_path.iter().chain(f.new_path.iter()).for_each(valid);
                }
            }
            Operation::ApplyPatch { files } => {
                for f in files {
                    valid(f.path());
                    if let FileEdit::Update {
                        move_to: Some(to), ..
                    } = f
                    {
                        valid(to);
                    }
                }
            }
            Operation::SearchReplace { path, .. } => valid(path),
        }
    }
}

#[test]
fn every_patch_of_the_corpus_is_judged_as_its_name_says() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/corpus/patches"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.extend(
        std::fs::read_dir(repo().join("examples"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json")),
    );
    files.sort();
    assert!(files.len() >= 15, "the corpus is there: {files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(f).unwrap();
        let r = admit(&bytes);
        if let Ok(p) = &r {
            well_formed(p);
        }
        if name.starts_with("bad-") {
            assert!(r.is_err(), "{name} was accepted");
        } else {
            // `ok-…` and the shipped examples.
            assert!(r.is_ok(), "{name} was refused: {:?}", r.err());
        }
    }
}

#[test]
fn every_path_of_the_corpus_is_judged_as_its_line_says() {
    let text = std::fs::read_to_string(repo().join("tests/corpus/paths/paths.txt")).unwrap();
    let target = &targets()[0];
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (verdict, rest) = line.split_once(' ').unwrap();
        let (raw, want) = match rest.split_once(" => ") {
            Some((r, w)) => (r, Some(w)),
            None => (rest, None),
        };
        let judged = RelPath::parse(raw).and_then(|p| match policy::protected(&p, target) {
            Some(why) => Err(why),
            None => Ok(p),
        });
        match verdict {
            "ok" => {
                let p = judged.unwrap_or_else(|e| panic!("{raw:?} refused: {e}"));
                assert_eq!(p.as_str(), want.unwrap_or(raw), "{raw:?}");
            }
            "bad" => assert!(judged.is_err(), "{raw:?} accepted"),
            other => panic!("unknown verdict {other:?} in {line:?}"),
        }
        n += 1;
    }
    assert!(n >= 10);
}
