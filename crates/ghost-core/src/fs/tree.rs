//! Durable file operations inside a target's working tree, with containment that
//! cannot be escaped.
//!
//! The tree is opened once as a capability ([`cap_std::fs::Dir`]); every path is
//! resolved beneath it (`openat2(RESOLVE_BENEATH)` where the kernel has it, a
//! component-by-component walk otherwise), so neither `..` nor a symlink can lead
//! outside, whatever the patch says and whatever the tree contains. Writes never
//! follow a symlink at the final component: a link is reported as
//! [`Entry::Other`] and the stager refuses to touch it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt, Permissions, PermissionsExt};

use crate::error::{Error, IoContext, Result};
use crate::patch::stage::{Entry, FileData, TreeView};
use crate::patch::RelPath;

/// An open working tree.
#[derive(Debug)]
pub struct Tree {
    dir: Dir,
    root: PathBuf,
}

fn split(rel: &RelPath) -> (Option<&str>, &str) {
    match rel.as_str().rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, rel.as_str()),
    }
}

impl Tree {
    /// Open (and create, if missing) the tree at `root`.
    pub fn open(root: &Path) -> Result<Tree> {
        if !root.exists() {
            std::fs::create_dir_all(root).ctx("create working tree", root)?;
        }
        let dir =
            Dir::open_ambient_dir(root, ambient_authority()).ctx("open working tree", root)?;
        Ok(Tree {
            dir,
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn abs(&self, rel: &RelPath) -> PathBuf {
        self.root.join(rel.as_str())
    }

    fn parent_dir(&self, rel: &RelPath) -> Result<(Dir, String)> {
        let (parent, name) = split(rel);
        let dir = match parent {
            Some(p) => self
                .dir
                .open_dir(p)
                .ctx("open directory", self.root.join(p))?,
            None => self.dir.try_clone().ctx("open directory", &self.root)?,
        };
        Ok((dir, name.to_string()))
    }

    fn fsync(dir: &Dir, path: &Path) -> Result<()> {
        // cap-std may hold directories as O_PATH descriptors, which fsync(2)
        // refuses; a read-only descriptor of the same directory is fsync-able.
        let handle = dir.open(".").ctx("open directory", path)?;
        super::note_fsync();
        handle.sync_all().ctx("fsync directory", path)
    }

    /// What is at `rel` now (regular files are read whole).
    pub fn entry(&self, rel: &RelPath) -> io::Result<Entry> {
        let meta = match self.dir.symlink_metadata(rel.as_str()) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Entry::Absent),
            // A parent that is a file: nothing can exist below it.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => return Ok(Entry::Absent),
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            return Ok(Entry::Other("a symlink".into()));
        }
        if ft.is_dir() {
            return Ok(Entry::Dir);
        }
        if !ft.is_file() {
            return Ok(Entry::Other("not a regular file".into()));
        }
        let bytes = self.dir.read(rel.as_str())?;
        Ok(Entry::File(FileData {
            bytes,
            mode: meta.permissions().mode() & 0o7777,
        }))
    }

    /// Durably replace (or create) the file at `rel` with `bytes` and `mode`:
    /// temp file in the same directory, fsync, rename, fsync the directory.
    pub fn write_file(&self, rel: &RelPath, bytes: &[u8], mode: u32) -> Result<()> {
        let (dir, name) = self.parent_dir(rel)?;
        let abs = self.abs(rel);
        let tmp = super::tmp_name(&name);
        let result = (|| {
            let f = write_temp(&dir, &tmp, bytes, mode, &abs)?;
            super::note_fsync();
            f.sync_all().ctx("fsync temp file for", &abs)?;
            drop(f);
            dir.rename(&tmp, &dir, &name)
                .ctx("rename temp file onto", &abs)?;
            Self::fsync(&dir, &abs)
        })();
        if result.is_err() {
            let _ = dir.remove_file(&tmp);
        }
        result
    }

    /// The parent directory of `rel`, or `None` when it does not exist.
    fn parent_dir_opt(&self, rel: &RelPath) -> Result<Option<(Dir, String)>> {
        match self.parent_dir(rel) {
            Ok(x) => Ok(Some(x)),
            Err(Error::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(nix::libc::ENOTDIR) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Remove the file at `rel` (absent, or its directory absent, is fine) and
    /// fsync its directory.
    pub fn remove_file(&self, rel: &RelPath) -> Result<()> {
        let Some((dir, name)) = self.parent_dir_opt(rel)? else {
            return Ok(());
        };
        match dir.remove_file(&name) {
            Ok(()) => Self::fsync(&dir, &self.abs(rel)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", self.abs(rel), e)),
        }
    }

    /// Create the directory `rel` (its parent must exist; existing is fine).
    pub fn create_dir(&self, rel: &RelPath) -> Result<()> {
        let (dir, name) = self.parent_dir(rel)?;
        match dir.create_dir(&name) {
            Ok(()) => Self::fsync(&dir, &self.abs(rel)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir(&name) => Ok(()),
            Err(e) => Err(Error::io("create directory", self.abs(rel), e)),
        }
    }

    /// Remove the directory `rel` if it exists and is empty; a non-empty one is
    /// left alone (someone else put something there) and reported as `false`.
    pub fn remove_dir_if_empty(&self, rel: &RelPath) -> Result<bool> {
        let Some((dir, name)) = self.parent_dir_opt(rel)? else {
            return Ok(true);
        };
        match dir.remove_dir(&name) {
            Ok(()) => Self::fsync(&dir, &self.abs(rel)).map(|_| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTEMPTY) => Ok(false),
            Err(e) => Err(Error::io("remove directory", self.abs(rel), e)),
        }
    }

    /// Set the permission bits of the file at `rel`.
    pub fn set_mode(&self, rel: &RelPath, mode: u32) -> Result<()> {
        let (dir, name) = self.parent_dir(rel)?;
        let f = dir.open(&name).ctx("open", self.abs(rel))?;
        f.set_permissions(Permissions::from_mode(mode))
            .ctx("chmod", self.abs(rel))?;
        super::note_fsync();
        f.sync_all().ctx("fsync", self.abs(rel))
    }
}

/// Group commit inside a tree, as [`super::WriteGroup`] does for plain paths:
/// [`TreeGroup::stage`] writes temp files, [`TreeGroup::sync`] fsyncs them
/// together, [`TreeGroup::publish`] renames (or removes) in the caller's order,
/// [`TreeGroup::finish`] fsyncs each directory touched once. Unpublished temp
/// files are removed on drop.
pub struct TreeGroup<'t> {
    tree: &'t Tree,
    items: Vec<GroupItem>,
    dirs: Vec<(String, Dir)>,
    synced: bool,
}

struct GroupItem {
    /// Index into `dirs` of the parent directory.
    dir: usize,
    name: String,
    /// The temp file and its name; `None` for a removal.
    tmp: Option<(String, cap_std::fs::File)>,
    abs: PathBuf,
    published: bool,
}

impl<'t> TreeGroup<'t> {
    pub fn new(tree: &'t Tree) -> Self {
        TreeGroup {
            tree,
            items: Vec::new(),
            dirs: Vec::new(),
            synced: false,
        }
    }

    fn dir_index(&mut self, rel: &RelPath) -> Result<(usize, String)> {
        let (parent, name) = split(rel);
        let key = parent.unwrap_or("").to_string();
        if let Some(i) = self.dirs.iter().position(|(k, _)| *k == key) {
            return Ok((i, name.to_string()));
        }
        let (dir, name) = self.tree.parent_dir(rel)?;
        self.dirs.push((key, dir));
        Ok((self.dirs.len() - 1, name))
    }

    /// Stage `rel`'s new content (`Some`) or its removal (`None`); the index.
    pub fn stage(&mut self, rel: &RelPath, content: Option<(&[u8], u32)>) -> Result<usize> {
        let (di, name) = self.dir_index(rel)?;
        let abs = self.tree.abs(rel);
        let tmp = match content {
            None => None,
            Some((bytes, mode)) => {
                let dir = &self.dirs[di].1;
                let tmp = super::tmp_name(&name);
                match write_temp(dir, &tmp, bytes, mode, &abs) {
                    Ok(f) => Some((tmp, f)),
                    Err(e) => {
                        let _ = dir.remove_file(&tmp);
                        return Err(e);
                    }
                }
            }
        };
        self.items.push(GroupItem {
            dir: di,
            name,
            tmp,
            abs,
            published: false,
        });
        self.synced = false;
        Ok(self.items.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Make the content of every staged file durable.
    pub fn sync(&mut self) -> Result<()> {
        let files: Vec<(&cap_std::fs::File, &PathBuf)> = self
            .items
            .iter()
            .filter(|i| !i.published)
            .filter_map(|i| i.tmp.as_ref().map(|(_, f)| (f, &i.abs)))
            .collect();
        super::group::sync_concurrently(&files, |(f, abs)| {
            super::note_fsync();
            f.sync_all().ctx("fsync temp file for", abs)
        })?;
        self.synced = true;
        Ok(())
    }

    /// Rename (or remove) the staged items `range` (after [`TreeGroup::sync`]).
    pub fn publish(&mut self, range: std::ops::Range<usize>) -> Result<()> {
        assert!(self.synced, "publish before sync");
        for i in range {
            let it = &mut self.items[i];
            if it.published {
                continue;
            }
            let dir = &self.dirs[it.dir].1;
            match &it.tmp {
                Some((tmp, _)) => dir
                    .rename(tmp, dir, &it.name)
                    .ctx("rename temp file onto", &it.abs)?,
                None => match dir.remove_file(&it.name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove", &it.abs, e)),
                },
            }
            it.published = true;
        }
        Ok(())
    }

    /// Fsync each directory an item was published in, once.
    pub fn finish(&mut self) -> Result<()> {
        let mut used: Vec<usize> = self
            .items
            .iter()
            .filter(|i| i.published)
            .map(|i| i.dir)
            .collect();
        used.sort_unstable();
        used.dedup();
        let dirs: Vec<(&Dir, PathBuf)> = used
            .into_iter()
            .map(|i| {
                let (k, d) = &self.dirs[i];
                (d, self.tree.root.join(k))
            })
            .collect();
        super::group::sync_concurrently(&dirs, |(d, p)| Tree::fsync(d, p))
    }
}

impl Drop for TreeGroup<'_> {
    fn drop(&mut self) {
        for it in &self.items {
            if let (false, Some((tmp, _))) = (it.published, &it.tmp) {
                let _ = self.dirs[it.dir].1.remove_file(tmp);
            }
        }
    }
}

impl TreeView for Tree {
    fn entry(&self, path: &RelPath) -> io::Result<Entry> {
        Tree::entry(self, path)
    }
}

/// A new temp file `tmp` in `dir` holding `bytes` with exactly `mode` (the
/// umask does not apply), not yet synced; `abs` names it in errors.
fn write_temp(
    dir: &Dir,
    tmp: &str,
    bytes: &[u8],
    mode: u32,
    abs: &Path,
) -> Result<cap_std::fs::File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true).mode(mode);
    let mut f = dir.open_with(tmp, &opts).ctx("create temp file for", abs)?;
    f.set_permissions(Permissions::from_mode(mode))
        .ctx("chmod temp file for", abs)?;
    f.write_all(bytes).ctx("write temp file for", abs)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn write_read_remove() {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::open(d.path()).unwrap();
        assert_eq!(t.entry(&rp("a.txt")).unwrap(), Entry::Absent);
        t.create_dir(&rp("src")).unwrap();
        t.write_file(&rp("src/a.txt"), b"hi", 0o755).unwrap();
        match t.entry(&rp("src/a.txt")).unwrap() {
            Entry::File(f) => assert_eq!((f.bytes.as_slice(), f.mode), (&b"hi"[..], 0o755)),
            e => panic!("{e:?}"),
        }
        t.set_mode(&rp("src/a.txt"), 0o600).unwrap();
        t.remove_file(&rp("src/a.txt")).unwrap();
        assert!(t.remove_dir_if_empty(&rp("src")).unwrap());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn symlinks_cannot_lead_out() {
        let outside = tempfile::tempdir().unwrap();
        crate::fs::durable_write(&outside.path().join("secret"), b"s", 0o600).unwrap();
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
        let t = Tree::open(d.path()).unwrap();
        // The link itself is reported, never followed.
        assert!(matches!(t.entry(&rp("link")).unwrap(), Entry::Other(_)));
        assert!(matches!(t.entry(&rp("out")).unwrap(), Entry::Other(_)));
        // Through a directory link: refused by the beneath-resolution.
        assert!(t.entry(&rp("out/secret")).is_err());
        assert!(t.write_file(&rp("out/new"), b"x", 0o644).is_err());
        assert!(!outside.path().join("new").exists());
        assert!(t.remove_file(&rp("out/secret")).is_err());
        assert!(outside.path().join("secret").exists());
    }
}
