//! The queue browser's listings: each queue directory's entry names kept in
//! memory as compact keys (a UUID v7 queue name is one `u128` whose top 48
//! bits are its arrival time, as in the monitor's own listings,
//! [`crate::dircache`]), listed again only when the directory changed, and
//! one page of them picked by merging the sorted keys. A page then costs a
//! `stat` per directory and the records of the rows shown, however many
//! entries the queues hold.
//!
//! Invariant: a listing is never staler than its directory. Every entry
//! created, renamed in or out, or removed changes the directory's
//! modification time, so a listing is reused only while the directory's
//! inode and mtime are what they were just before it was listed. File times
//! are coarse (one clock tick, a few ms): a change within the same tick
//! could leave the mtime as it was, so a listing taken less than [`RACY`]
//! after its directory's mtime is used once and not kept (git's "racily
//! clean" rule).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ghost_core::health::name_time_ms;
use ghost_core::queue::QueueState;

use crate::dircache::{entries, key_of, name_of, time_of};

/// A listing taken within this long after its directory's mtime is not kept.
pub const RACY: Duration = Duration::from_millis(100);

/// One directory's entries, as listed.
#[derive(Debug, Default)]
pub struct DirListing {
    /// UUID names, sorted (so by arrival time).
    keys: Vec<u128>,
    /// Other names (placed by hand) with their arrival time if they carry
    /// one (else 0), sorted by both.
    others: Vec<(u64, String)>,
}

impl DirListing {
    fn of(names: impl IntoIterator<Item = String>) -> DirListing {
        let mut l = DirListing::default();
        for n in names {
            match key_of(&n) {
                Some(k) => l.keys.push(k),
                None => l.others.push((name_time_ms(&n).unwrap_or(0), n)),
            }
        }
        l.keys.sort_unstable();
        l.others.sort();
        l
    }

    pub fn len(&self) -> usize {
        self.keys.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a kept listing was taken of: the directory's inode and mtime.
type Stamp = (u64, SystemTime);

fn stamp(dir: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(dir).ok()?;
    Some((m.ino(), m.modified().ok()?))
}

/// A listing unused for this long is dropped ([`Listings::forget_unused`]):
/// a browsed queue of 100,000 entries holds 1.6 MB while a page is open, not
/// for the rest of the monitor's life.
pub const KEEP_UNUSED: Duration = Duration::from_secs(120);

struct Kept {
    stamp: Stamp,
    listing: Arc<DirListing>,
    used: Instant,
}

/// The listings of the directories the dashboard was asked about lately.
#[derive(Default)]
pub struct Listings {
    dirs: Mutex<HashMap<PathBuf, Kept>>,
}

impl std::fmt::Debug for Listings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.dirs.lock().map_or(0, |d| d.len());
        f.debug_struct("Listings").field("kept", &n).finish()
    }
}

impl Listings {
    /// `dir`'s entries as they are now (listed again if it changed).
    pub fn get(&self, dir: &Path) -> Arc<DirListing> {
        let before = stamp(dir);
        let mut kept = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(s), Some(k)) = (before, kept.get_mut(dir)) {
            if k.stamp == s {
                k.used = Instant::now();
                return k.listing.clone();
            }
        }
        drop(kept);
        let started = SystemTime::now();
        let listing = Arc::new(DirListing::of(entries(dir)));
        let settled = before.is_some_and(|(_, mtime)| {
            started
                .duration_since(mtime)
                .is_ok_and(|since| since >= RACY)
        });
        kept = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        match before {
            Some(stamp) if settled => {
                let k = Kept {
                    stamp,
                    listing: listing.clone(),
                    used: Instant::now(),
                };
                kept.insert(dir.to_path_buf(), k);
            }
            _ => {
                kept.remove(dir);
            }
        }
        listing
    }

    /// Drop the listings not asked for in the last `idle`; how many were dropped.
    pub fn forget_unused(&self, idle: Duration) -> usize {
        let mut kept = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let before = kept.len();
        kept.retain(|_, k| k.used.elapsed() < idle);
        before - kept.len()
    }
}

/// One entry of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub target: String,
    pub state: QueueState,
    pub name: String,
    /// Arrival time (Unix ms) from the name; 0 when it carries none.
    pub at_ms: u64,
}

/// The part of one listing within an arrival-time range, read from its end.
struct Cursor<'a> {
    target: &'a str,
    state: QueueState,
    keys: &'a [u128],
    others: &'a [(u64, String)],
}

/// A name to order by: a key's order is its name's order (lowercase hex in
/// fixed positions), so only a key against another name needs the text.
enum Name<'a> {
    Key(u128),
    Text(&'a str),
}

fn cmp_names(a: &Name, b: &Name) -> Ordering {
    match (a, b) {
        (Name::Key(x), Name::Key(y)) => x.cmp(y),
        (Name::Text(x), Name::Text(y)) => x.cmp(y),
        (Name::Key(x), Name::Text(y)) => name_of(*x).as_str().cmp(y),
        (Name::Text(x), Name::Key(y)) => (*x).cmp(name_of(*y).as_str()),
    }
}

impl<'a> Cursor<'a> {
    /// The newest remaining entry: from the keys (`true`) or the others.
    fn head(&self) -> Option<(u64, Name<'a>, bool)> {
        let k = self.keys.last().map(|k| (time_of(*k), Name::Key(*k), true));
        let o = self
            .others
            .last()
            .map(|(t, n)| (*t, Name::Text(n.as_str()), false));
        match (k, o) {
            (Some(k), Some(o)) => Some(if newer(&k, &o) { k } else { o }),
            (k, o) => k.or(o),
        }
    }

    fn pop(&mut self, from_keys: bool) {
        if from_keys {
            self.keys = &self.keys[..self.keys.len() - 1];
        } else {
            self.others = &self.others[..self.others.len() - 1];
        }
    }
}

/// Newest first: by arrival time, then by name, both descending.
fn newer(a: &(u64, Name, bool), b: &(u64, Name, bool)) -> bool {
    a.0.cmp(&b.0).then_with(|| cmp_names(&a.1, &b.1)) == Ordering::Greater
}

/// The entries of `lists` that arrived within `from_ms..=to_ms`, newest
/// first (by arrival time, then name): how many there are, and the `take`
/// of them after the first `skip`.
pub fn page(
    lists: &[(String, QueueState, Arc<DirListing>)],
    from_ms: u64,
    to_ms: u64,
    skip: usize,
    take: usize,
) -> (usize, Vec<Row>) {
    let mut cursors: Vec<Cursor> = lists
        .iter()
        .map(|(t, s, l)| {
            let k0 = l.keys.partition_point(|k| time_of(*k) < from_ms);
            let k1 = l.keys.partition_point(|k| time_of(*k) <= to_ms);
            let o0 = l.others.partition_point(|(t, _)| *t < from_ms);
            let o1 = l.others.partition_point(|(t, _)| *t <= to_ms);
            Cursor {
                target: t,
                state: *s,
                keys: &l.keys[k0..k1.max(k0)],
                others: &l.others[o0..o1.max(o0)],
            }
        })
        .collect();
    let total = cursors.iter().map(|c| c.keys.len() + c.others.len()).sum();
    let mut rows = Vec::new();
    for i in 0..(skip + take).min(total) {
        let mut best: Option<(usize, (u64, Name, bool))> = None;
        for (j, c) in cursors.iter().enumerate() {
            if let Some(h) = c.head() {
                if best.as_ref().is_none_or(|(_, b)| newer(&h, b)) {
                    best = Some((j, h));
                }
            }
        }
        let Some((j, (at_ms, name, from_keys))) = best else {
            break;
        };
        if i >= skip {
            let c = &cursors[j];
            rows.push(Row {
                target: c.target.to_string(),
                state: c.state,
                name: match name {
                    Name::Key(k) => name_of(k),
                    Name::Text(t) => t.to_string(),
                },
                at_ms,
            });
        }
        cursors[j].pop(from_keys);
    }
    (total, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid_at(ms: u64, low: u128) -> String {
        name_of((u128::from(ms) << 80) | low)
    }

    /// The page is what sorting every name would give, for every slice.
    #[test]
    fn a_page_is_the_slice_of_every_name_sorted_newest_first() {
        let a: Vec<String> = (0..40u64).map(|i| uuid_at(1_000 + i * 7, 1)).collect();
        let b: Vec<String> = (0..25u64)
            .map(|i| uuid_at(1_000 + i * 11, 2))
            .chain(["hand-placed".to_string()])
            .collect();
        let lists = vec![
            (
                "t".to_string(),
                QueueState::Pending,
                Arc::new(DirListing::of(a.clone())),
            ),
            (
                "t".to_string(),
                QueueState::Stuck,
                Arc::new(DirListing::of(b.clone())),
            ),
        ];
        let mut all: Vec<(u64, String, QueueState)> = a
            .iter()
            .map(|n| (name_time_ms(n).unwrap(), n.clone(), QueueState::Pending))
            .chain(
                b.iter()
                    .map(|n| (name_time_ms(n).unwrap_or(0), n.clone(), QueueState::Stuck)),
            )
            .collect();
        all.sort_by(|x, y| y.0.cmp(&x.0).then_with(|| y.1.cmp(&x.1)));
        for (from, to) in [(0, u64::MAX), (1_050, 1_200), (5_000, u64::MAX)] {
            let want: Vec<_> = all
                .iter()
                .filter(|(t, _, _)| *t >= from && *t <= to)
                .collect();
            for (skip, take) in [(0, 10), (7, 5), (60, 50), (0, 100)] {
                let (total, rows) = page(&lists, from, to, skip, take);
                assert_eq!(total, want.len());
                let got: Vec<_> = rows
                    .iter()
                    .map(|r| (r.at_ms, r.name.clone(), r.state))
                    .collect();
                let exp: Vec<_> = want
                    .iter()
                    .skip(skip)
                    .take(take)
                    .map(|(t, n, s)| (*t, n.clone(), *s))
                    .collect();
                assert_eq!(got, exp, "from {from} to {to} skip {skip} take {take}");
            }
        }
    }

    /// A kept listing is never staler than its directory.
    #[test]
    fn a_listing_is_kept_only_while_its_directory_is_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let l = Listings::default();
        let put = |n: &str| {
            ghost_core::fs::durable_write(&d.path().join(format!("{n}.json")), b"{}", 0o600)
                .unwrap()
        };
        put(&uuid_at(5, 1));
        // Just changed: listed, not kept.
        assert_eq!(l.get(d.path()).len(), 1);
        assert!(l.dirs.lock().unwrap().is_empty());
        std::thread::sleep(RACY * 2);
        let first = l.get(d.path());
        assert_eq!(first.len(), 1);
        assert!(Arc::ptr_eq(&first, &l.get(d.path())), "unchanged: reused");
        put(&uuid_at(6, 1));
        assert_eq!(l.get(d.path()).len(), 2, "a new entry is seen at once");
        // Unused listings are dropped; a used one is kept.
        std::thread::sleep(RACY * 2);
        l.get(d.path());
        assert_eq!(l.forget_unused(Duration::from_secs(60)), 0);
        assert_eq!(l.forget_unused(Duration::ZERO), 1);
        assert!(l.dirs.lock().unwrap().is_empty());
    }
}
