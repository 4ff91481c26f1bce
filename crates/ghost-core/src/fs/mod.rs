//! The one module that writes to disk durably. Everything that must survive a crash
//! goes through here:
//!
//! - [`durable_write`]: temp file beside the destination (or in a given temp dir on
//!   the same filesystem), write, `fsync`, `rename`, `fsync` the destination directory.
//! - [`durable_move`]: `rename` without replacing an existing destination, then
//!   `fsync` both directories.
//! - [`durable_append`]: one `O_APPEND` write of a whole line, then `fdatasync`
//!   (the alert and rotation logs).
//! - [`LockFile`]: `flock`-based advisory locks (one instance per role and root,
//!   one patch at a time per target).
//! - [`tree`]: the same guarantees inside a target's working tree, with every path
//!   resolved beneath the tree (symlinks cannot lead out).
//!
//! Each step of a durable write is a fault point in test builds
//! ([`crate::fault_point`]): `fs-after-temp-write`, `fs-after-temp-fsync`,
//! `fs-after-rename` (also of [`durable_move`]) and `fs-before-dir-fsync`
//! (every directory fsync), each a crash or an injected error.
//!
//! A failed `fsync` is returned as an error and never retried on the same file
//! descriptor: after a failed fsync Linux may have dropped the dirty pages, so a
//! second fsync that "succeeds" proves nothing. The caller treats the item as not
//! written.

// This module is the reviewed home of the raw `std::fs` writing calls that
// `clippy.toml` bans everywhere else.
#![allow(clippy::disallowed_methods)]

pub mod group;
pub mod groupsync;
pub mod tree;

pub use group::WriteGroup;
pub use groupsync::{durable_write_grouped, DirSync};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, IoContext, Result};

/// Mode of every file ghostbridge creates under the data root.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory ghostbridge creates under the data root.
pub const DIR_MODE: u32 = 0o700;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// How many `fsync`s this process issued through this module (files and
/// directories, failed ones included): what the benchmark divides by the
/// patches applied.
pub fn fsync_count() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

fn note_fsync() {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
}

/// A temp-file name unique within this process and across processes.
pub fn tmp_name(hint: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let hint: String = hint.chars().take(64).collect();
    format!(".{hint}.{}.{n}.tmp", std::process::id())
}

/// True for a name [`tmp_name`] makes: `.<hint>.<pid>.<n>.tmp`.
pub fn is_tmp_name(file: &str) -> bool {
    let Some(inner) = file.strip_prefix('.').and_then(|f| f.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = inner.rsplitn(3, '.');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_some_and(|h| !h.is_empty())
}

/// Remove the temp files a crashed durable write left in `dir` (names from
/// [`tmp_name`]) that are older than `min_age`. Returns what was removed.
pub fn sweep_temp_files(dir: &Path, min_age: std::time::Duration) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_tmp_name(name) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default() >= min_age)
            .unwrap_or(false);
        if old && fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Test builds with the `weaken-for-tests` feature: whether the environment
/// asks for directory fsyncs to be skipped (a deliberately broken durable
/// write, which the power-cut harness must catch).
#[cfg(feature = "weaken-for-tests")]
fn dir_fsync_weakened() -> bool {
    static WEAK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WEAK.get_or_init(|| std::env::var_os("GHOST_TEST_WEAKEN_DIR_FSYNC").is_some_and(|v| v == "1"))
}

/// `fsync` a directory so that the entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(feature = "weaken-for-tests")]
    if dir_fsync_weakened() {
        return Ok(());
    }
    crate::fault_point("fs-before-dir-fsync", Some(dir))?;
    let f = File::open(dir).ctx("open directory", dir)?;
    note_fsync();
    f.sync_all().ctx("fsync directory", dir)
}

/// Create `dir` and its missing parents with mode 0700.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .ctx("create directory", dir)
}

/// Write `bytes` to `dest` durably with the given mode: temp file in the same
/// directory, fsync, rename over `dest`, fsync the directory.
pub fn durable_write(dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    durable_write_via(parent_of(dest), dest, bytes, mode)
}

/// Like [`durable_write`], with the temp file in `tmp_dir` (which must be on the
/// same filesystem as `dest`): queue entries are staged in the queue's `tmp/` so
/// that nobody listing `pending/` ever sees a half-written file.
pub fn durable_write_via(tmp_dir: &Path, dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    write_synced_temp(tmp_dir, dest, bytes, mode, |tmp| rename_raw(tmp, dest))?;
    crate::fault_point("fs-after-rename", Some(dest))?;
    fsync_dir(parent_of(dest))
}

/// Replace `dest` atomically (temp file beside it, rename) but without any
/// `fsync`: for a record that only matters while this boot lasts (which
/// process group a check runs in, say), which another process must see whole
/// after a `kill -9` but which a power cut makes meaningless anyway. Never for
/// anything that must survive a crash of the machine.
pub fn write_volatile(dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = parent_of(dest).join(tmp_name(&name));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .ctx("create temp file", &tmp)?;
        f.write_all(bytes).ctx("write temp file", &tmp)?;
        drop(f);
        rename_raw(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Write `bytes` to a new temp file in `tmp_dir` with `mode`, fsync it, and
/// hand it to `publish` (a rename). The temp file is removed on any failure.
fn write_synced_temp(
    tmp_dir: &Path,
    dest: &Path,
    bytes: &[u8],
    mode: u32,
    publish: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = tmp_dir.join(tmp_name(&name));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .ctx("create temp file", &tmp)?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .ctx("chmod temp file", &tmp)?;
        f.write_all(bytes).ctx("write temp file", &tmp)?;
        crate::fault_point("fs-after-temp-write", Some(dest))?;
        note_fsync();
        f.sync_all().ctx("fsync", &tmp)?;
        crate::fault_point("fs-after-temp-fsync", Some(dest))?;
        drop(f);
        publish(&tmp)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A file written and fsynced under a temp name, not yet published: the two
/// halves of a durable write, for a caller that must decide under a lock
/// whether and where to publish it. Removed on drop unless published.
#[derive(Debug)]
pub struct Staged {
    path: Option<PathBuf>,
}

impl Staged {
    /// Write `bytes` to a new temp file in `tmp_dir` (named after `hint`) with
    /// `mode`, and fsync it.
    pub fn write(tmp_dir: &Path, hint: &str, bytes: &[u8], mode: u32) -> Result<Staged> {
        let mut out = None;
        write_synced_temp(tmp_dir, Path::new(hint), bytes, mode, |tmp| {
            out = Some(tmp.to_path_buf());
            Ok(())
        })?;
        Ok(Staged { path: out })
    }

    /// Rename onto `dest`, failing with `AlreadyExists` (and keeping the temp
    /// file) if `dest` exists. The caller fsyncs `dest`'s directory.
    pub fn publish_new(&mut self, dest: &Path) -> Result<()> {
        let tmp = self.path.as_deref().expect("published once");
        rename_noreplace(tmp, dest)?;
        self.path = None;
        Ok(())
    }

    /// Rename onto `dest`, replacing what is there. The caller fsyncs
    /// `dest`'s directory.
    pub fn publish_over(&mut self, dest: &Path) -> Result<()> {
        let tmp = self.path.as_deref().expect("published once");
        rename_raw(tmp, dest)?;
        self.path = None;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// True when an error is "the destination exists" (from [`Staged::publish_new`]
/// or [`durable_move`]).
pub fn is_already_exists(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists)
}

/// A directory filled with many small files and made durable as a whole:
/// each file is written without its own fsync, then [`BatchDir::finish`] makes
/// them all durable with one `syncfs` and fsyncs the directory. For large
/// derived sets (the id index built from an older root), where one fsync per
/// file would take minutes; the caller then publishes the directory with one
/// rename.
#[derive(Debug)]
pub struct BatchDir {
    dir: PathBuf,
    files: usize,
}

impl BatchDir {
    pub fn create(dir: &Path) -> Result<BatchDir> {
        ensure_dir(dir)?;
        Ok(BatchDir {
            dir: dir.to_path_buf(),
            files: 0,
        })
    }

    /// Add file `name`; `false` (and nothing written) if it exists already.
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> Result<bool> {
        let p = self.dir.join(name);
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(Error::io("create", p, e)),
        };
        f.write_all(bytes).ctx("write", &p)?;
        self.files += 1;
        Ok(true)
    }

    /// Make every file and the directory durable; returns the number of files.
    pub fn finish(self) -> Result<usize> {
        let d = File::open(&self.dir).ctx("open directory", &self.dir)?;
        nix::unistd::syncfs(&d).map_err(|e| Error::io("syncfs", &self.dir, io::Error::from(e)))?;
        d.sync_all().ctx("fsync directory", &self.dir)?;
        Ok(self.files)
    }
}

#[allow(clippy::disallowed_methods)] // this is the durable helper
pub(crate) fn rename_raw(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| {
        Error::io(
            "rename",
            format!("{} -> {}", from.display(), to.display()),
            e,
        )
    })
}

/// Rename `from` to `to` without replacing an existing `to`, then fsync both
/// directories. This is the only way an entry changes state.
pub fn durable_move(from: &Path, to: &Path) -> Result<()> {
    rename_noreplace(from, to)?;
    crate::fault_point("fs-after-rename", Some(to))?;
    let (fd, td) = (parent_of(from), parent_of(to));
    fsync_dir(td)?;
    if fd != td {
        fsync_dir(fd)?;
    }
    Ok(())
}

/// Rename that fails with `AlreadyExists` instead of silently replacing `to`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => {
            // Filesystem without RENAME_NOREPLACE: check, then rename. Only the
            // lock holder moves queue entries, so the window is not a race between
            // ghostbridge processes.
            if to.exists() {
                return Err(Error::io(
                    "rename",
                    format!("{} -> {}", from.display(), to.display()),
                    io::Error::new(io::ErrorKind::AlreadyExists, "destination exists"),
                ));
            }
            rename_raw(from, to)
        }
        Err(e) => Err(Error::io(
            "rename",
            format!("{} -> {}", from.display(), to.display()),
            io::Error::from(e),
        )),
    }
}

/// Remove a file and fsync its directory. For internal scratch files only
/// (claim records, finished journals, stale temp files): user data is never
/// unlinked, it is moved to a recoverable place.
pub fn durable_remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fsync_dir(parent_of(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Append `line` (a newline is added when missing) to the log file at `path`
/// durably: open with `O_APPEND` (created with [`FILE_MODE`] if missing), one
/// `write` of the whole line so concurrent writers never interleave, then
/// `fdatasync`; a new file also fsyncs its directory. A short write or a failed
/// sync is an error and is not retried: the caller treats the line as not
/// written.
pub fn durable_append(path: &Path, line: &[u8]) -> Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line);
    if buf.last() != Some(&b'\n') {
        buf.push(b'\n');
    }
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .ctx("open for append", path)?;
    let n = f.write(&buf).ctx("append", path)?;
    if n != buf.len() {
        return Err(Error::io(
            "append",
            path,
            io::Error::new(io::ErrorKind::WriteZero, "short write"),
        ));
    }
    note_fsync();
    f.sync_data().ctx("fdatasync", path)?;
    if !existed {
        fsync_dir(parent_of(path))?;
    }
    Ok(())
}

/// Read a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).ctx("read", path)
}

/// Read a file if it exists.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Read and parse a JSON file; a parse failure is reported as `Corrupt`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        what: "JSON file",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Serialise to pretty JSON (with a trailing newline) and write durably with mode 0600.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).expect("serialising a plain struct cannot fail");
    bytes.push(b'\n');
    durable_write(path, &bytes, FILE_MODE)
}

/// Append one line (a newline is added) to `path`, creating it with mode
/// 0600, and `fdatasync` it. For append-only records (`alerts/alerts.jsonl`,
/// `alerts/LOCAL_ALERTS`): one `write(2)` on an `O_APPEND` file, so
/// concurrent appenders never interleave within a line.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .ctx("open for append", path)?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    f.write_all(&buf).ctx("append", path)?;
    f.sync_data().ctx("fdatasync", path)
}

/// An exclusive advisory lock held for the life of the value.
///
/// The lock file holds the holder's pid for the error message of the next
/// would-be holder; the lock itself is the `flock`, never the file's existence,
/// so a crashed holder never leaves a stale lock behind.
#[derive(Debug)]
pub struct LockFile {
    _lock: Flock<File>,
    path: PathBuf,
}

impl LockFile {
    /// Take the lock or fail at once with [`Error::Locked`] naming the holder's pid.
    pub fn try_acquire(path: &Path) -> Result<LockFile> {
        Self::acquire_with(path, FlockArg::LockExclusiveNonblock, true)
    }

    /// Like [`LockFile::try_acquire`], but when the recorded holder is dead,
    /// wait up to `grace` for the lock. A child that a killed holder forked a
    /// moment before its death keeps a copy of the lock's descriptor until it
    /// execs (which closes it: every descriptor here is close-on-exec), so a
    /// replacement started at once can find the lock still taken by nobody
    /// alive. A live holder is refused at once.
    pub fn try_acquire_after(path: &Path, grace: std::time::Duration) -> Result<LockFile> {
        let until = std::time::Instant::now() + grace;
        loop {
            match Self::try_acquire(path) {
                Err(Error::Locked { pid: Some(pid), .. })
                    if !pid_alive(pid) && std::time::Instant::now() < until =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Wait for the lock.
    pub fn acquire(path: &Path) -> Result<LockFile> {
        Self::acquire_with(path, FlockArg::LockExclusive, true)
    }

    /// Wait for a lock held only for a moment (admission), without writing
    /// the holder's pid: that would cost a write and an fsync per holding.
    pub fn acquire_brief(path: &Path) -> Result<LockFile> {
        Self::acquire_with(path, FlockArg::LockExclusive, false)
    }

    fn acquire_with(path: &Path, arg: FlockArg, record_pid: bool) -> Result<LockFile> {
        if let Some(dir) = path.parent() {
            ensure_dir(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path)
            .ctx("open lock file", path)?;
        match Flock::lock(file, arg) {
            Ok(mut lock) => {
                // Record our pid for whoever finds the lock taken. Informational only.
                if record_pid {
                    let _ = lock.set_len(0);
                    let _ = writeln!(&mut *lock, "{}", std::process::id());
                    let _ = lock.sync_data();
                }
                Ok(LockFile {
                    _lock: lock,
                    path: path.to_path_buf(),
                })
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::Locked {
                path: path.to_path_buf(),
                pid: lock_holder(path),
            }),
            Err((_, e)) => Err(Error::io("flock", path, io::Error::from(e))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An exclusive `flock` on a directory itself (a working tree), so that no
/// file has to be added to it. `None` when another process holds it.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

impl DirLock {
    pub fn try_acquire(dir: &Path) -> Result<Option<DirLock>> {
        let f = File::open(dir).ctx("open directory to lock", dir)?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(DirLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(Error::io("flock", dir, io::Error::from(e))),
        }
    }
}

/// The pid written into a lock file by its holder, if readable.
/// Whether a process with this pid exists (signal 0; a process of another
/// user counts as alive).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

pub fn lock_holder(path: &Path) -> Option<u32> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_left_to_a_dead_holder_is_waited_for_a_live_one_is_not() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let held = LockFile::try_acquire(&p).unwrap();
        // A live holder (this process): refused at once, naming it.
        let t = std::time::Instant::now();
        match LockFile::try_acquire_after(&p, std::time::Duration::from_secs(5)) {
            Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            o => panic!("{o:?}"),
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(4));
        // The recorded holder is dead (a reaped child's pid) and the lock is
        // released a moment later: taken.
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        assert!(!pid_alive(dead));
        #[allow(clippy::disallowed_methods)] // test: fake the holder's pid record
        std::fs::write(&p, format!("{dead}\n")).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(held);
        });
        LockFile::try_acquire_after(&p, std::time::Duration::from_secs(10)).unwrap();
        release.join().unwrap();
    }

    #[test]
    fn durable_write_replaces_atomically_with_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        durable_write(&p, b"one", FILE_MODE).unwrap();
        durable_write(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        // No temp files left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn durable_append_adds_whole_lines_with_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("CRITICAL_ALERT");
        durable_append(&p, b"one").unwrap();
        durable_append(&p, b"two\n").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one\ntwo\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            FILE_MODE
        );
    }

    #[test]
    fn durable_append_reports_an_unopenable_file() {
        let d = tempfile::tempdir().unwrap();
        let err = durable_append(&d.path().join("missing/log"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing/log"), "{err}");
    }

    #[test]
    fn durable_write_via_tmp_dir() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        let dst = d.path().join("pending");
        ensure_dir(&tmp).unwrap();
        ensure_dir(&dst).unwrap();
        durable_write_via(&tmp, &dst.join("x.json"), b"{}", FILE_MODE).unwrap();
        assert_eq!(fs::read(dst.join("x.json")).unwrap(), b"{}");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn failed_write_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        // Destination is a directory: rename fails, temp file is cleaned.
        let dest = d.path().join("dir");
        ensure_dir(&dest.join("sub")).unwrap();
        assert!(durable_write(&dest, b"x", FILE_MODE).is_err());
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn temp_names_are_recognised_and_swept() {
        let n = tmp_name("a.b.json");
        assert!(is_tmp_name(&n), "{n}");
        for not in [
            ".a.json",
            "a.1.2.tmp",
            ".1.2.tmp",
            ".a.x.2.tmp",
            ".a.1.2.tmpx",
        ] {
            assert!(!is_tmp_name(not), "{not}");
        }
        let d = tempfile::tempdir().unwrap();
        let keep = d.path().join("a.json");
        durable_write(&keep, b"x", FILE_MODE).unwrap();
        File::create(d.path().join(&n)).unwrap();
        assert!(
            sweep_temp_files(d.path(), std::time::Duration::from_secs(3600)).is_empty(),
            "too young"
        );
        assert_eq!(
            sweep_temp_files(d.path(), std::time::Duration::ZERO),
            vec![d.path().join(&n)]
        );
        assert!(keep.exists());
    }

    #[test]
    fn durable_move_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        durable_write(&a, b"a", FILE_MODE).unwrap();
        durable_write(&b, b"b", FILE_MODE).unwrap();
        let err = durable_move(&a, &b).unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
        assert_eq!(fs::read(&b).unwrap(), b"b");
        fs::remove_file(&b).unwrap();
        durable_move(&a, &b).unwrap();
        assert!(!a.exists());
    }

    #[test]
    fn directory_lock_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let held = DirLock::try_acquire(d.path()).unwrap().expect("free");
        assert!(DirLock::try_acquire(d.path()).unwrap().is_none());
        drop(held);
        assert!(DirLock::try_acquire(d.path()).unwrap().is_some());
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "nothing added to the directory"
        );
    }

    #[test]
    fn second_lock_names_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("locks/executor.lock");
        let held = LockFile::try_acquire(&p).unwrap();
        match LockFile::try_acquire(&p) {
            Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        LockFile::try_acquire(&p).unwrap();
    }
}
