//! The undo journal: `active/<name>.journal.json`, written durably before the
//! first byte of the tree changes, holding every touched file's previous content,
//! mode and MD5, and the directories the patch creates.
//!
//! Rollback is idempotent (a crash during a rollback is followed by the same
//! rollback) and verified: every restored file's MD5 is compared with the
//! journal's. The phase `complete` is written once the patch has fully applied
//! and passed its checks, so recovery finishes such a patch instead of undoing it.
//! With git, the branch head is recorded before the commit (see [`crate::git`]):
//! the commit is part of the transaction, finished or undone with the files.

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use ghost_core::fs::tree::Tree;
use ghost_core::patch::stage::{Entry, FileData, Staged};
use ghost_core::patch::RelPath;
use ghost_core::summary::{RestoredFile, RollbackSummary};
use ghost_core::{md5_hex, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Written before the tree changes; the tree may be anywhere between before and after.
    Prepared,
    /// The patch applied and passed its checks; only the bookkeeping is left.
    Complete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub md5: String,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalFile {
    pub path: RelPath,
    /// `None`: the file did not exist before the patch.
    pub before: Option<Snapshot>,
    /// `None`: the file does not exist after the patch.
    pub after: Option<Snapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub name: String,
    pub patch_id: String,
    pub target: String,
    pub phase: Phase,
    pub created_at: String,
    /// The pid whose temp files may be left in the tree after a crash.
    pub pid: u32,
    pub files: Vec<JournalFile>,
    /// Directories the patch creates, shallowest first.
    pub new_dirs: Vec<RelPath>,
    /// Set (and written) before the patch's git commit: where the branch was,
    /// so that recovery can tell a commit the crash left from none, and undo it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<crate::git::GitBefore>,
}

fn snapshot(d: &FileData, with_content: bool) -> Snapshot {
    Snapshot {
        md5: md5_hex(&d.bytes),
        mode: d.mode,
        content_base64: with_content
            .then(|| base64::engine::general_purpose::STANDARD.encode(&d.bytes)),
    }
}

impl Journal {
    pub fn from_staged(name: &str, patch_id: &str, target: &str, staged: &Staged) -> Journal {
        let files = staged
            .changes
            .iter()
            .map(|(path, after)| JournalFile {
                path: path.clone(),
                before: staged
                    .originals
                    .get(path)
                    .cloned()
                    .flatten()
                    .map(|d| snapshot(&d, true)),
                after: after.as_ref().map(|d| snapshot(d, false)),
            })
            .collect();
        Journal {
            version: 1,
            name: name.to_string(),
            patch_id: patch_id.to_string(),
            target: target.to_string(),
            phase: Phase::Prepared,
            created_at: ghost_core::time::now_rfc3339(),
            pid: std::process::id(),
            files,
            new_dirs: staged.new_dirs.clone(),
            git: None,
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        ghost_core::fs::write_json(path, self)
    }

    pub fn read(path: &Path) -> Result<Option<Journal>> {
        if !path.exists() {
            return Ok(None);
        }
        ghost_core::fs::read_json(path).map(Some)
    }
}

fn current_md5(tree: &Tree, path: &RelPath) -> Result<Option<(String, u32)>> {
    match tree.entry(path) {
        Ok(Entry::File(d)) => Ok(Some((md5_hex(&d.bytes), d.mode))),
        Ok(Entry::Absent) => Ok(None),
        Ok(other) => Ok(Some((format!("({other:?})"), 0))),
        Err(e) => Err(ghost_core::Error::io(
            "read",
            tree.root().join(path.as_str()),
            e,
        )),
    }
}

/// True for a temp file that `Tree::write_file` makes for `base`:
/// `.<base>.<pid>.<n>.tmp`, whatever the pid.
fn is_temp_for(file: &str, base: &str) -> bool {
    let Some(rest) = file
        .strip_prefix('.')
        .and_then(|f| f.strip_prefix(base))
        .and_then(|f| f.strip_prefix('.'))
        .and_then(|f| f.strip_suffix(".tmp"))
    else {
        return false;
    };
    let mut parts = rest.split('.');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// Remove temp files that crashed writers left beside the journal's files: the
/// executor that applied the patch, and any that died rolling it back since.
/// Only the holder of the executor lock writes into the tree, so every such
/// file is one of ours.
fn remove_stray_temp_files(tree: &Tree, journal: &Journal) {
    for f in &journal.files {
        let dir = match f.path.parent() {
            Some(p) => tree.root().join(p.as_str()),
            None => tree.root().to_path_buf(),
        };
        let base: String = f
            .path
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(64)
            .collect();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if is_temp_for(&n, &base) {
                let rel = match f.path.parent() {
                    Some(p) => format!("{p}/{n}"),
                    None => n,
                };
                if let Ok(rel) = RelPath::parse(&rel) {
                    let _ = tree.remove_file(&rel);
                }
            }
        }
    }
}

/// Restore every file of the journal to its previous state, remove the
/// directories the patch created, and verify every file by MD5.
pub fn rollback(tree: &Tree, journal: &Journal) -> Result<RollbackSummary> {
    remove_stray_temp_files(tree, journal);
    for f in &journal.files {
        let now = current_md5(tree, &f.path)?;
        match &f.before {
            Some(b) => {
                if now.as_ref() != Some(&(b.md5.clone(), b.mode)) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b.content_base64.as_deref().unwrap_or_default())
                        .map_err(|e| ghost_core::Error::Corrupt {
                            what: "journal",
                            path: tree.root().join(f.path.as_str()),
                            reason: format!("content of {} is not base64: {e}", f.path),
                        })?;
                    // The parent may have been removed by the patch: recreate it.
                    for anc in f.path.ancestors() {
                        tree.create_dir(&anc)?;
                    }
                    tree.write_file(&f.path, &bytes, b.mode)?;
                    ghost_core::fault_point("crash-mid-rollback", None)?;
                }
            }
            None => {
                if now.is_some() {
                    tree.remove_file(&f.path)?;
                }
            }
        }
    }
    for d in journal.new_dirs.iter().rev() {
        tree.remove_dir_if_empty(d)?;
    }
    let mut files = Vec::new();
    let mut verified = true;
    for f in &journal.files {
        let actual = current_md5(tree, &f.path)?;
        let expected = f.before.as_ref().map(|b| b.md5.clone());
        let ok = match (&f.before, &actual) {
            (Some(b), Some((md5, mode))) => *md5 == b.md5 && *mode == b.mode,
            (None, None) => true,
            _ => false,
        };
        verified &= ok;
        files.push(RestoredFile {
            path: f.path.to_string(),
            expected_md5: expected,
            actual_md5: actual.map(|(m, _)| m),
        });
    }
    Ok(RollbackSummary { files, verified })
}

/// True when every file of the journal is in its `after` state.
pub fn is_applied(tree: &Tree, journal: &Journal) -> Result<bool> {
    for f in &journal.files {
        let now = current_md5(tree, &f.path)?;
        let want = f.after.as_ref().map(|a| (a.md5.clone(), a.mode));
        if now != want {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghost_core::patch::stage::stage;
    use ghost_core::patch::Operation;

    fn rp(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if m.is_dir() {
                    out.push((
                        format!("{rel}/"),
                        Vec::new(),
                        m.permissions().mode() & 0o7777,
                    ));
                    stack.push(e.path());
                } else {
                    out.push((
                        rel,
                        std::fs::read(e.path()).unwrap(),
                        m.permissions().mode() & 0o7777,
                    ));
                }
            }
        }
        out.sort();
        out
    }

    /// A tree with a few files, and a patch that touches all of them in every way.
    fn setup() -> (tempfile::TempDir, Tree, Staged) {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::open(d.path()).unwrap();
        t.write_file(&rp("a.txt"), b"alpha\n", 0o644).unwrap();
        t.create_dir(&rp("bin")).unwrap();
        t.write_file(&rp("bin/run.sh"), b"#!/bin/sh\n", 0o755)
            .unwrap();
        t.write_file(&rp("old.txt"), b"old\n", 0o600).unwrap();
        let ops = vec![
            Operation::Write {
                path: rp("a.txt"),
                content: b"ALPHA\n".to_vec(),
                mode: None,
                expect_md5: None,
            },
            Operation::Chmod {
                path: rp("bin/run.sh"),
                mode: 0o700,
            },
            Operation::Rename {
                from: rp("old.txt"),
                to: rp("x/y/new.txt"),
            },
            Operation::Write {
                path: rp("x/z.txt"),
                content: vec![0, 159, 146, 150],
                mode: Some(0o640),
                expect_md5: Some(None),
            },
        ];
        let staged = stage(&ops, &t, 0o644).unwrap();
        (d, t, staged)
    }

    fn apply(t: &Tree, s: &Staged, limit: usize) {
        for dir in &s.new_dirs {
            t.create_dir(dir).unwrap();
        }
        for (p, fin) in s.changes.iter().take(limit) {
            match fin {
                Some(f) => t.write_file(p, &f.bytes, f.mode).unwrap(),
                None => t.remove_file(p).unwrap(),
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const PATHS: [&str; 5] = ["a", "b", "d/e", "d/f", "x/y/z"];

        fn content() -> impl Strategy<Value = Vec<u8>> {
            prop::sample::select(vec![&b""[..], b"one\n", b"two\n", b"\0\xff bytes"])
                .prop_map(<[u8]>::to_vec)
        }

        fn mode() -> impl Strategy<Value = u32> {
            prop::sample::select(vec![0o644u32, 0o600, 0o755])
        }

        fn op() -> impl Strategy<Value = Operation> {
            let p = || prop::sample::select(PATHS.to_vec()).prop_map(rp);
            prop_oneof![
                (p(), content(), prop::option::of(mode())).prop_map(|(path, content, mode)| {
                    Operation::Write {
                        path,
                        content,
                        mode,
                        expect_md5: None,
                    }
                }),
                p().prop_map(|path| Operation::Delete {
                    path,
                    expect_md5: None
                }),
                (p(), p()).prop_map(|(from, to)| Operation::Rename { from, to }),
                (p(), mode()).prop_map(|(path, mode)| Operation::Chmod { path, mode }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            /// Apply then roll back is the identity on the tree, however
            /// much of the patch was applied, and rolling back twice too.
            #[test]
            fn apply_then_roll_back_is_the_identity(
                initial in prop::collection::vec(prop::option::of((content(), mode())), PATHS.len()),
                ops in prop::collection::vec(op(), 1..6),
                cut in any::<prop::sample::Index>(),
            ) {
                let d = tempfile::tempdir().unwrap();
                let t = Tree::open(d.path()).unwrap();
                for (p, f) in PATHS.iter().zip(&initial) {
                    if let Some((bytes, mode)) = f {
                        let p = rp(p);
                        for anc in p.ancestors() {
                            let _ = t.create_dir(&anc);
                        }
                        t.write_file(&p, bytes, *mode).unwrap();
                    }
                }
                let before = snapshot(d.path());
                let Ok(staged) = stage(&ops, &t, 0o644) else {
                    return Ok(());
                };
                let j = Journal::from_staged("n", "id", "default", &staged);
                let limit = cut.index(staged.changes.len() + 1);
                apply(&t, &staged, limit);
                if limit == staged.changes.len() {
                    prop_assert!(is_applied(&t, &j).unwrap());
                }
                prop_assert!(rollback(&t, &j).unwrap().verified);
                prop_assert!(rollback(&t, &j).unwrap().verified);
                prop_assert_eq!(snapshot(d.path()), before);
            }
        }
    }

    #[test]
    fn records_before_and_after_of_every_change() {
        let (_d, _t, s) = setup();
        let j = Journal::from_staged("n", "id", "default", &s);
        let paths: Vec<&str> = j.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["a.txt", "bin/run.sh", "old.txt", "x/y/new.txt", "x/z.txt"]
        );
        let old = &j.files[2];
        assert_eq!(old.before.as_ref().unwrap().md5, md5_hex(b"old\n"));
        assert!(old.before.as_ref().unwrap().content_base64.is_some());
        assert!(old.after.is_none());
        assert!(j.files[4].before.is_none());
        assert_eq!(j.files[4].after.as_ref().unwrap().mode, 0o640);
        assert_eq!(j.new_dirs, [rp("x"), rp("x/y")]);
    }

    #[test]
    fn round_trips_through_disk() {
        let (d, _t, s) = setup();
        let j = Journal::from_staged("n", "id", "default", &s);
        let p = d.path().join("j.json");
        j.write(&p).unwrap();
        assert_eq!(Journal::read(&p).unwrap(), Some(j));
        assert_eq!(Journal::read(&d.path().join("none.json")).unwrap(), None);
    }

    #[test]
    fn rollback_after_full_apply_restores_exactly() {
        let (d, t, s) = setup();
        let before = snapshot(d.path());
        let j = Journal::from_staged("n", "id", "default", &s);
        apply(&t, &s, usize::MAX);
        assert!(is_applied(&t, &j).unwrap());
        let r = rollback(&t, &j).unwrap();
        assert!(r.verified, "{r:?}");
        assert_eq!(r.files.len(), 5);
        assert_eq!(snapshot(d.path()), before);
        assert!(!is_applied(&t, &j).unwrap());
    }

    #[test]
    fn rollback_after_every_partial_apply_and_twice_restores_exactly() {
        let (d, t, s) = setup();
        let before = snapshot(d.path());
        let j = Journal::from_staged("n", "id", "default", &s);
        for limit in 0..=s.changes.len() {
            apply(&t, &s, limit);
            assert!(rollback(&t, &j).unwrap().verified, "after {limit} files");
            // A crash during the rollback is followed by the same rollback.
            assert!(rollback(&t, &j).unwrap().verified);
            assert_eq!(snapshot(d.path()), before, "after {limit} files");
        }
    }

    #[test]
    fn rollback_clears_temp_files_a_crashed_writer_left() {
        let (d, t, s) = setup();
        let before = snapshot(d.path());
        let j = Journal::from_staged("n", "id", "default", &s);
        apply(&t, &s, 1);
        // One from the executor that applied, one from another that died rolling back.
        let strays = [
            d.path().join(format!(".a.txt.{}.7.tmp", j.pid)),
            d.path().join(".a.txt.99999.0.tmp"),
        ];
        for s in &strays {
            ghost_core::fs::durable_write(s, b"half", 0o600).unwrap();
        }
        // Look-alikes that are not ours stay.
        let theirs = d.path().join(".a.txt.backup.tmp");
        ghost_core::fs::durable_write(&theirs, b"keep", 0o600).unwrap();
        assert!(rollback(&t, &j).unwrap().verified);
        assert!(strays.iter().all(|s| !s.exists()));
        assert!(theirs.exists());
        ghost_core::fs::durable_remove(&theirs).unwrap();
        assert_eq!(snapshot(d.path()), before);
    }

    #[test]
    fn rollback_leaves_a_directory_someone_else_filled_and_says_so_by_md5() {
        let (d, t, s) = setup();
        let j = Journal::from_staged("n", "id", "default", &s);
        apply(&t, &s, usize::MAX);
        // Another process drops a file into a directory the patch created.
        t.write_file(&rp("x/theirs.txt"), b"not ours", 0o644)
            .unwrap();
        let r = rollback(&t, &j).unwrap();
        assert!(r.verified, "our files are all restored");
        assert!(
            d.path().join("x/theirs.txt").exists(),
            "never removes what it did not create"
        );
        // And a file the rollback cannot restore is reported, not hidden.
        let mut bad = j.clone();
        bad.files[0].before.as_mut().unwrap().md5 = "0".repeat(32);
        let r = rollback(&t, &bad).unwrap();
        assert!(!r.verified);
    }
}
