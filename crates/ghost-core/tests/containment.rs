//! Property: no path a patch can name reaches outside the working tree, even
//! through symlinks the tree holds (relative, absolute, looping, pointing up)
//! and after renames inside it. Random operations are staged against a real
//! tree and applied as the executor applies them; whatever is accepted or
//! refused, the directory beside the tree never changes.

// Tests: the fixture is built directly, not durably.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use ghost_core::fs::tree::Tree;
use ghost_core::patch::stage::stage;
use ghost_core::patch::{Operation, RelPath};

/// Every file and directory below `dir`, with file contents.
fn listing(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
                out.insert(rel, None);
            } else if m.is_symlink() {
                out.insert(
                    rel,
                    Some(
                        std::fs::read_link(e.path())
                            .unwrap()
                            .display()
                            .to_string()
                            .into_bytes(),
                    ),
                );
            } else {
                out.insert(rel, Some(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

/// `base/tree` holding links that lead out of it, and `base/outside`.
fn fixture() -> (tempfile::TempDir, Tree) {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
    let tree = base.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::create_dir_all(tree.join("e")).unwrap();
    std::fs::write(tree.join("e/f"), "f\n").unwrap();
    std::fs::write(tree.join("a"), "a\n").unwrap();
    use std::os::unix::fs::symlink;
    symlink("../outside", tree.join("out")).unwrap();
    symlink(&outside, tree.join("abs")).unwrap();
    symlink("../..", tree.join("d/up")).unwrap();
    symlink("loop", tree.join("loop")).unwrap();
    symlink("../outside/secret.txt", tree.join("e/secret")).unwrap();
    let t = Tree::open(&tree).unwrap();
    (base, t)
}

fn path() -> impl Strategy<Value = String> {
    let comp = prop::sample::select(vec![
        "out",
        "abs",
        "d",
        "up",
        "e",
        "f",
        "a",
        "loop",
        "secret",
        "sub",
        "secret.txt",
        "..",
        ".",
        "n",
    ]);
    prop::collection::vec(comp, 1..5).prop_map(|v| v.join("/"))
}

#[derive(Debug, Clone)]
enum Op {
    Write(String),
    Delete(String),
    Rename(String, String),
    Chmod(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        path().prop_map(Op::Write),
        path().prop_map(Op::Delete),
        (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        path().prop_map(Op::Chmod),
    ]
}

/// The operation, when every path in it is accepted.
fn operation(op: &Op) -> Option<Operation> {
    let p = |s: &str| RelPath::parse(s).ok();
    Some(match op {
        Op::Write(x) => Operation::Write {
            path: p(x)?,
            content: b"written by a patch\n".to_vec(),
            mode: None,
            expect_md5: None,
        },
        Op::Delete(x) => Operation::Delete {
            path: p(x)?,
            expect_md5: None,
        },
        Op::Rename(a, b) => Operation::Rename {
            from: p(a)?,
            to: p(b)?,
        },
        Op::Chmod(x) => Operation::Chmod {
            path: p(x)?,
            mode: 0o777,
        },
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_accepted_path_resolves_outside_the_tree(ops in prop::collection::vec(op(), 1..6)) {
        let (base, tree) = fixture();
        let outside = base.path().join("outside");
        let before = listing(&outside);
        let ops: Vec<Operation> = ops.iter().filter_map(operation).collect();
        for o in &ops {
            let paths: Vec<&RelPath> = match o {
                Operation::Rename { from, to } => vec![from, to],
                Operation::Write { path, .. } | Operation::Delete { path, .. } | Operation::Chmod { path, .. } => vec![path],
                _ => vec![],
            };
            for p in paths {
                prop_assert!(!p.as_str().split('/').any(|c| c == ".." || c == "." || c.is_empty()), "{p}");
            }
        }
        // Staged one by one and all together, and applied as the executor does.
        let mut batches: Vec<Vec<Operation>> = ops.iter().map(|o| vec![o.clone()]).collect();
        batches.push(ops.clone());
        for batch in batches {
            if let Ok(staged) = stage(&batch, &tree, 0o644) {
                for d in &staged.new_dirs {
                    let _ = tree.create_dir(d);
                }
                for (p, fin) in &staged.changes {
                    let _ = match fin {
                        Some(f) => tree.write_file(p, &f.bytes, f.mode),
                        None => tree.remove_file(p),
                    };
                }
            }
            prop_assert_eq!(&listing(&outside), &before, "after {:?}", batch);
            let top: Vec<String> = std::fs::read_dir(base.path()).unwrap().flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            prop_assert_eq!(top.len(), 2, "beside the tree: {:?}", top);
        }
    }
}
