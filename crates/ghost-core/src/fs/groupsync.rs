//! Group commit of directory fsyncs.
//!
//! A durable write needs the new name's directory entry on disk: one `fsync` of
//! the directory. Under concurrency, one fsync that *starts after* several
//! renames covers them all. [`DirSync::sync`] gives each caller a ticket when it
//! asks (after its rename); a round of fsync covers every ticket issued before
//! the round began; a caller returns once a round covering its ticket has
//! finished. A failed round fails every ticket it covered: those writes are not
//! durable and are never reported as such.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct State {
    /// Last ticket handed out.
    issued: u64,
    /// Every ticket up to this one is covered by a finished round.
    done: u64,
    syncing: bool,
    /// Recent failed rounds: (first ticket, last ticket, error).
    failed: Vec<(u64, u64, String)>,
    rounds: u64,
}

/// Coalesces fsyncs of one directory across concurrent writers.
#[derive(Debug)]
pub struct DirSync {
    dir: PathBuf,
    state: Mutex<State>,
    cv: Condvar,
}

impl DirSync {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirSync {
            dir: dir.into(),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many fsync rounds ran so far (for statistics and tests).
    pub fn rounds(&self) -> u64 {
        self.state.lock().map(|s| s.rounds).unwrap_or(0)
    }

    /// Make every rename this thread did in the directory before the call
    /// durable. Blocks until a covering fsync round finished.
    pub fn sync(&self) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.issued += 1;
        let ticket = st.issued;
        loop {
            if st.done >= ticket {
                return match st
                    .failed
                    .iter()
                    .find(|(lo, hi, _)| (*lo..=*hi).contains(&ticket))
                {
                    Some((_, _, e)) => Err(Error::io(
                        "fsync directory",
                        &self.dir,
                        std::io::Error::other(e.clone()),
                    )),
                    None => Ok(()),
                };
            }
            if !st.syncing {
                st.syncing = true;
                let (lo, hi) = (st.done + 1, st.issued);
                drop(st);
                let result = super::fsync_dir(&self.dir);
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.syncing = false;
                st.rounds += 1;
                if let Err(e) = result {
                    st.failed.push((lo, hi, e.to_string()));
                    if st.failed.len() > 256 {
                        st.failed.remove(0);
                    }
                }
                st.done = hi;
                self.cv.notify_all();
                continue;
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A durable write whose directory fsync is shared through `sync`: temp file
/// in `tmp_dir`, write, fsync, rename onto `dest` without replacing an existing
/// file, then a group-committed fsync of `dest`'s directory (which must be
/// `sync`'s directory).
pub fn durable_write_grouped(
    tmp_dir: &Path,
    dest: &Path,
    bytes: &[u8],
    mode: u32,
    sync: &DirSync,
) -> Result<()> {
    super::write_synced_temp(tmp_dir, dest, bytes, mode, |tmp| {
        super::rename_noreplace(tmp, dest)
    })?;
    sync.sync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_share_rounds_and_all_land() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        let dst = d.path().join("pending");
        crate::fs::ensure_dir(&tmp).unwrap();
        crate::fs::ensure_dir(&dst).unwrap();
        let sync = Arc::new(DirSync::new(&dst));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (tmp, dst, sync) = (tmp.clone(), dst.clone(), sync.clone());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        durable_write_grouped(
                            &tmp,
                            &dst.join(format!("{t}-{i}.json")),
                            b"{}",
                            0o600,
                            &sync,
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 400);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        let rounds = sync.rounds();
        assert!(rounds <= 400, "{rounds}");
        eprintln!("400 writes, {rounds} directory fsyncs");
    }

    #[test]
    fn grouped_write_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let sync = DirSync::new(d.path());
        let p = d.path().join("a.json");
        durable_write_grouped(d.path(), &p, b"1", 0o600, &sync).unwrap();
        assert!(durable_write_grouped(d.path(), &p, b"2", 0o600, &sync).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"1");
        // The loser's temp file is gone.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_round_fails_its_tickets() {
        let d = tempfile::tempdir().unwrap();
        let sync = DirSync::new(d.path().join("missing"));
        assert!(sync.sync().is_err());
        crate::fs::ensure_dir(&d.path().join("missing")).unwrap();
        sync.sync().unwrap();
    }
}
