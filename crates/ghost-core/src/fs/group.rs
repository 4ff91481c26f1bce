//! Group commit of durable writes and moves: the same guarantees as
//! [`super::durable_write`] and [`super::durable_move`] for many files at once,
//! with the fsync barriers shared.
//!
//! The steps, for every file of the group: [`WriteGroup::stage`] writes the
//! bytes to a temp file beside the destination; [`WriteGroup::sync`] fsyncs
//! every staged temp file (concurrently: the filesystem merges them into few
//! journal commits); [`WriteGroup::publish`] renames staged files into place,
//! and [`WriteGroup::rename_noreplace`] moves other files, in the caller's
//! order; [`WriteGroup::finish`] fsyncs each directory touched, once.
//!
//! So a file's content is durable before its name is, as with a single
//! durable write, and nothing of the group is durable as a whole before
//! `finish` returns. A failed fsync fails the group (never retried): the
//! caller treats every item as not written. Temp files not yet published are
//! removed when the group is dropped.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Run `sync` on every item, spread over a few threads. The first error wins.
pub fn sync_concurrently<T: Sync>(
    items: &[T],
    sync: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    const THREADS: usize = 8;
    if items.len() <= 1 {
        return items.iter().try_for_each(&sync);
    }
    let per = items.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|chunk| s.spawn(|| chunk.iter().try_for_each(&sync)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an fsync thread panicked"))
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<()>>()
    })
}

struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    file: File,
    /// Fsynced at [`WriteGroup::sync`]; false for a redundant copy.
    durable: bool,
    published: bool,
}

/// See the module documentation.
#[derive(Default)]
pub struct WriteGroup {
    staged: Vec<Staged>,
    dirs: BTreeSet<PathBuf>,
    synced: bool,
}

impl WriteGroup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Write `bytes` with `mode` to a temp file beside `dest`; its index.
    pub fn stage(&mut self, dest: &Path, bytes: &[u8], mode: u32) -> Result<usize> {
        self.stage_with(dest, bytes, mode, true)
    }

    /// Like [`WriteGroup::stage`] for a redundant copy of a file that is
    /// itself written durably (a backup): its name is published and its
    /// directory fsynced with the group, but its content is not fsynced, so
    /// after a power cut it may be short; whoever reads it must check it
    /// against the original (summaries carry their MD5s for that).
    pub fn stage_copy(&mut self, dest: &Path, bytes: &[u8], mode: u32) -> Result<usize> {
        self.stage_with(dest, bytes, mode, false)
    }

    fn stage_with(&mut self, dest: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<usize> {
        let dir = super::parent_of(dest);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let tmp = dir.join(super::tmp_name(&name));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
                .ctx("create temp file", &tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .ctx("chmod temp file", &tmp)?;
            f.write_all(bytes).ctx("write temp file", &tmp)?;
            Ok(f)
        })();
        match result {
            Ok(file) => {
                self.staged.push(Staged {
                    tmp,
                    dest: dest.to_path_buf(),
                    file,
                    durable,
                    published: false,
                });
                self.synced = false;
                Ok(self.staged.len() - 1)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Number of files staged so far.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Make the content of every staged file durable.
    pub fn sync(&mut self) -> Result<()> {
        let todo: Vec<&Staged> = self
            .staged
            .iter()
            .filter(|s| !s.published && s.durable)
            .collect();
        sync_concurrently(&todo, |s| {
            super::note_fsync();
            s.file.sync_all().ctx("fsync", &s.tmp)
        })?;
        self.synced = true;
        Ok(())
    }

    /// Rename the staged files `range` into place (after [`WriteGroup::sync`]).
    pub fn publish(&mut self, range: std::ops::Range<usize>) -> Result<()> {
        assert!(self.synced, "publish before sync");
        for s in &mut self.staged[range] {
            if s.published {
                continue;
            }
            super::rename_raw(&s.tmp, &s.dest)?;
            s.published = true;
            self.dirs.insert(super::parent_of(&s.dest).to_path_buf());
        }
        Ok(())
    }

    /// Move `from` to `to` without replacing an existing `to`; durable at
    /// [`WriteGroup::finish`].
    pub fn rename_noreplace(&mut self, from: &Path, to: &Path) -> Result<()> {
        super::rename_noreplace(from, to)?;
        self.dirs.insert(super::parent_of(from).to_path_buf());
        self.dirs.insert(super::parent_of(to).to_path_buf());
        Ok(())
    }

    /// Note a directory whose entries changed otherwise (a removal), to be
    /// fsynced at [`WriteGroup::finish`].
    pub fn touch_dir(&mut self, dir: &Path) {
        self.dirs.insert(dir.to_path_buf());
    }

    /// Fsync every directory touched, once each: from here the group is durable.
    pub fn finish(&mut self) -> Result<()> {
        let dirs: Vec<PathBuf> = std::mem::take(&mut self.dirs).into_iter().collect();
        sync_concurrently(&dirs, |d| super::fsync_dir(d))
    }
}

impl Drop for WriteGroup {
    fn drop(&mut self) {
        for s in &self.staged {
            if !s.published {
                let _ = std::fs::remove_file(&s.tmp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_appear_only_when_published_and_unpublished_ones_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let before = super::super::fsync_count();
        {
            let mut g = WriteGroup::new();
            g.stage(&a, b"one", 0o600).unwrap();
            g.stage(&b, b"two", 0o640).unwrap();
            assert!(!a.exists() && !b.exists());
            g.sync().unwrap();
            g.publish(0..1).unwrap();
            g.finish().unwrap();
            assert_eq!(std::fs::read(&a).unwrap(), b"one");
            // b is dropped unpublished.
        }
        assert!(!b.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // Two file fsyncs and one of the directory (counts are process-wide,
        // other tests may add to them meanwhile).
        assert!(super::super::fsync_count() - before >= 3);
    }

    #[test]
    fn moves_never_replace_and_many_files_share_one_directory_fsync() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        super::super::ensure_dir(&src).unwrap();
        super::super::ensure_dir(&dst).unwrap();
        let mut g = WriteGroup::new();
        for i in 0..20 {
            g.stage(&src.join(format!("{i}")), b"x", 0o600).unwrap();
        }
        g.sync().unwrap();
        g.publish(0..g.len()).unwrap();
        g.finish().unwrap();
        let mut m = WriteGroup::new();
        for i in 0..20 {
            m.rename_noreplace(&src.join(format!("{i}")), &dst.join(format!("{i}")))
                .unwrap();
        }
        std::fs::File::create(src.join("x")).unwrap();
        std::fs::File::create(dst.join("x")).unwrap();
        assert!(m.rename_noreplace(&src.join("x"), &dst.join("x")).is_err());
        m.finish().unwrap();
        assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 21);
        assert_eq!(std::fs::read_dir(&src).unwrap().count(), 1);
    }
}
