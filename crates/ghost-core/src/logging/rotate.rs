//! Rotated log files: their names, listing them in time order, compressing and
//! purging them.
//!
//! `logs/<component>.log` is rotated by renaming it (never copy-and-truncate)
//! to `logs/<component>.<stamp>.log`, where `<stamp>` is the UTC time of the
//! rotation as `YYYYMMDDTHHMMSS.mmmZ` (with `-N` added should two rotations
//! fall in one millisecond), so names sort in time order. Compression writes
//! `<name>.gz` durably before the plain file is removed: at every moment one
//! complete copy exists.
//!
//! The fallback directory holds the same names for the fallback file's
//! rotations, and `<component>.<stamp>.copied.log[.gz]` for fallback files
//! whose lines were copied back into the primary log after an outage (kept as
//! the recoverable copy). [`list`] leaves copied files out (their lines are in
//! the primary log now); [`purge`] counts both kinds against `keep`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::{IoContext, Result};

/// One rotated file of a component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rotated {
    /// Time stamp and sequence number: the sort key.
    pub stamp: String,
    pub seq: u32,
    pub path: PathBuf,
    pub compressed: bool,
}

/// `20260102T030405.678Z` for a time.
pub fn stamp(t: SystemTime) -> String {
    crate::time::rfc3339(t).replace(['-', ':'], "")
}

fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[8] == b'T'
        && b[15] == b'.'
        && b[19] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 15 | 19) || c.is_ascii_digit())
}

/// The marker of a fallback file whose lines were copied back.
const COPIED: &str = ".copied";

/// Parse a file name as a rotated file of `component` (not a copied one).
pub fn parse_name(component: &str, file: &str) -> Option<(String, u32, bool)> {
    match parse_any(component, file)? {
        (st, seq, compressed, false) => Some((st, seq, compressed)),
        _ => None,
    }
}

/// Parse a rotated or copied file name: (stamp, seq, compressed, copied).
fn parse_any(component: &str, file: &str) -> Option<(String, u32, bool, bool)> {
    let rest = file.strip_prefix(component)?.strip_prefix('.')?;
    let (rest, compressed) = match rest.strip_suffix(".log.gz") {
        Some(r) => (r, true),
        None => (rest.strip_suffix(".log")?, false),
    };
    let (rest, copied) = match rest.strip_suffix(COPIED) {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (st, seq) = match rest.split_once('-') {
        Some((st, n)) => (st, n.parse().ok()?),
        None => (rest, 0),
    };
    is_stamp(st).then(|| (st.to_string(), seq, compressed, copied))
}

/// Rotated (`copied == false`) or copied files of `component` in `dir`,
/// oldest first. A file present both plain and compressed (a compression
/// cut short) is listed once, plain.
fn list_kind(dir: &Path, component: &str, copied: Option<bool>) -> Vec<Rotated> {
    let mut out: Vec<Rotated> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (stamp, seq, compressed, c) = parse_any(component, &name)?;
            copied.is_none_or(|want| want == c).then(|| Rotated {
                stamp,
                seq,
                path: e.path(),
                compressed,
            })
        })
        .collect();
    out.sort();
    out.dedup_by(|b, a| {
        a.stamp == b.stamp && a.seq == b.seq && is_copied(&a.path) == is_copied(&b.path)
    });
    out
}

fn is_copied(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(".copied.log"))
}

/// The rotated files of `component` in `dir`, oldest first (copied fallback
/// files left out).
pub fn list(dir: &Path, component: &str) -> Vec<Rotated> {
    list_kind(dir, component, Some(false))
}

/// The fallback files of `component` in `dir` whose lines were copied back.
pub fn list_copied(dir: &Path, component: &str) -> Vec<Rotated> {
    list_kind(dir, component, Some(true))
}

/// A free name for a rotation at `t`: `<component>.<stamp>.log`, with `-N`
/// when that stamp is taken.
pub fn free_name(dir: &Path, component: &str, t: SystemTime) -> PathBuf {
    free_name_marked(dir, component, t, "")
}

/// A free name for a fallback file copied back at `t`:
/// `<component>.<stamp>.copied.log`.
pub fn free_copied_name(dir: &Path, component: &str, t: SystemTime) -> PathBuf {
    free_name_marked(dir, component, t, COPIED)
}

fn free_name_marked(dir: &Path, component: &str, t: SystemTime, mark: &str) -> PathBuf {
    let st = stamp(t);
    let mut seq = 0u32;
    loop {
        let base = if seq == 0 {
            format!("{component}.{st}{mark}.log")
        } else {
            format!("{component}.{st}-{seq}{mark}.log")
        };
        let p = dir.join(&base);
        if !p.exists() && !dir.join(format!("{base}.gz")).exists() {
            return p;
        }
        seq += 1;
    }
}

/// Gzip `plain` into `plain.gz` (durably), then remove `plain`. Returns the
/// compressed file's path.
pub fn compress(plain: &Path) -> Result<PathBuf> {
    let mut gz_name = plain.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz = PathBuf::from(gz_name);
    let mut input = Vec::new();
    File::open(plain)
        .and_then(|mut f| f.read_to_end(&mut input))
        .ctx("read rotated log", plain)?;
    let mut enc = GzEncoder::new(Vec::with_capacity(input.len() / 8), Compression::default());
    enc.write_all(&input).ctx("compress rotated log", plain)?;
    let bytes = enc.finish().ctx("compress rotated log", plain)?;
    crate::fs::durable_write(&gz, &bytes, crate::fs::FILE_MODE)?;
    crate::fs::durable_remove(plain)?;
    Ok(gz)
}

/// Remove the oldest rotated (and copied) files of `component` until `keep`
/// are left. Returns what was removed.
pub fn purge(dir: &Path, component: &str, keep: usize) -> Result<Vec<PathBuf>> {
    let all = list_kind(dir, component, None);
    let mut removed = Vec::new();
    for r in all.iter().take(all.len().saturating_sub(keep)) {
        crate::fs::durable_remove(&r.path)?;
        // A plain twin of a compressed file (or the reverse) goes too.
        let twin = if r.compressed {
            r.path.with_extension("")
        } else {
            let mut n = r.path.as_os_str().to_owned();
            n.push(".gz");
            PathBuf::from(n)
        };
        crate::fs::durable_remove(&twin)?;
        removed.push(r.path.clone());
    }
    Ok(removed)
}

/// Read a log file, plain or gzip (by the `.gz` suffix), whole.
pub fn read_log(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        MultiGzDecoder::new(f).read_to_end(&mut out)?;
    } else {
        f.read_to_end(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_parse_and_sort_in_time_order() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_323_045_678);
        assert_eq!(stamp(t), "20260102T030405.678Z");
        assert_eq!(
            parse_name("executor", "executor.20260102T030405.678Z.log.gz"),
            Some(("20260102T030405.678Z".into(), 0, true))
        );
        assert_eq!(
            parse_name("executor", "executor.20260102T030405.678Z-2.log"),
            Some(("20260102T030405.678Z".into(), 2, false))
        );
        for bad in [
            "executor.log",
            "executor.stderr.log",
            "bridge.20260102T030405.678Z.log",
            "executor.2026010T030405.678Z.log",
            "executor.20260102T030405.678Z.txt",
        ] {
            assert_eq!(parse_name("executor", bad), None, "{bad}");
        }
        let d = tempfile::tempdir().unwrap();
        let a = free_name(d.path(), "x", t);
        crate::fs::durable_write(&a, b"1\n", 0o600).unwrap();
        let b = free_name(d.path(), "x", t);
        assert!(
            b.ends_with("x.20260102T030405.678Z-1.log"),
            "{}",
            b.display()
        );
        crate::fs::durable_write(&b, b"2\n", 0o600).unwrap();
        let gz = compress(&a).unwrap();
        assert!(!a.exists());
        assert_eq!(read_log(&gz).unwrap(), b"1\n");
        let l = list(d.path(), "x");
        assert_eq!(l.len(), 2);
        assert!(l[0].compressed && !l[1].compressed);
        assert_eq!(purge(d.path(), "x", 1).unwrap(), vec![gz]);
        assert_eq!(list(d.path(), "x")[0].path, b);
    }

    #[test]
    fn copied_files_are_listed_apart_and_purged_with_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_323_045_678);
        assert_eq!(
            parse_any("x", "x.20260102T030405.678Z-1.copied.log.gz"),
            Some(("20260102T030405.678Z".into(), 1, true, true))
        );
        assert_eq!(parse_name("x", "x.20260102T030405.678Z.copied.log"), None);
        let rotated = free_name(d.path(), "x", t);
        crate::fs::durable_write(&rotated, b"1\n", 0o600).unwrap();
        let copied = free_copied_name(d.path(), "x", t + Duration::from_secs(1));
        assert!(copied.ends_with("x.20260102T030406.678Z.copied.log"));
        crate::fs::durable_write(&copied, b"2\n", 0o600).unwrap();
        let copied2 = free_copied_name(d.path(), "x", t + Duration::from_secs(1));
        assert!(copied2.ends_with("x.20260102T030406.678Z-1.copied.log"));
        crate::fs::durable_write(&copied2, b"3\n", 0o600).unwrap();
        assert_eq!(list(d.path(), "x").len(), 1);
        assert_eq!(
            list_copied(d.path(), "x")
                .into_iter()
                .map(|r| r.path)
                .collect::<Vec<_>>(),
            [copied.clone(), copied2.clone()]
        );
        // Both kinds count against `keep`, oldest first.
        assert_eq!(purge(d.path(), "x", 2).unwrap(), vec![rotated]);
        assert_eq!(purge(d.path(), "x", 1).unwrap(), vec![copied]);
        assert_eq!(list_copied(d.path(), "x")[0].path, copied2);
    }
}
