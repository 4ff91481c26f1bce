//! Incremental queue listings for the collector: each queue directory is
//! listed once, kept in memory as compact keys (a UUID v7 queue name is one
//! `u128`, whose top 48 bits are its arrival time), and listed again only
//! when a file event touched it, or at `monitor.full_rescan_interval` in case
//! the watcher missed something (an inotify queue overflow marks everything).
//! An idle root therefore costs no directory listing per cycle, however many
//! entries it holds.
//!
//! Without a watcher attached ([`DirCache::watch`]), every refresh lists: the
//! benchmark and tests that call the collector directly see no difference.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Directories touched since they were last listed.
#[derive(Debug, Default)]
pub struct Dirty {
    dirs: HashSet<PathBuf>,
    all: bool,
}

/// Note what a file event touched (an error or an overflow: everything).
pub fn mark(dirty: &Mutex<Dirty>, ev: &notify::Result<notify::Event>) {
    let mut d = dirty.lock().unwrap_or_else(|e| e.into_inner());
    match ev {
        Ok(ev) if !ev.need_rescan() => {
            for p in &ev.paths {
                if let Some(parent) = p.parent() {
                    d.dirs.insert(parent.to_path_buf());
                }
            }
        }
        _ => d.all = true,
    }
}

/// One directory's entries as last listed.
#[derive(Debug, Default)]
pub struct Listing {
    /// UUID names, sorted.
    pub keys: Vec<u128>,
    /// Names that are not UUIDs (placed by hand), sorted.
    pub others: Vec<String>,
    listed_ms: u64,
}

impl Listing {
    pub fn len(&self) -> usize {
        self.keys.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every name, in arrival order (the UUIDs first).
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.keys
            .iter()
            .map(|k| name_of(*k))
            .chain(self.others.iter().cloned())
    }

    /// Arrival times (Unix ms) of the UUID names.
    pub fn times_ms(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().map(|k| time_of(*k))
    }

    pub fn contains(&self, k: u128) -> bool {
        self.keys.binary_search(&k).is_ok()
    }
}

/// The entry names in `dir`, streamed (nothing is held per entry but its key).
pub fn entries(dir: &Path) -> impl Iterator<Item = String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|f| ghost_core::queue::is_entry_file(f))
        .map(|f| f.trim_end_matches(".json").to_string())
}

/// The queue name a key stands for (lowercase, hyphenated).
pub fn name_of(k: u128) -> String {
    uuid::Uuid::from_u128(k).to_string()
}

/// A key's arrival time: the first 48 bits, as `health::name_time_ms` reads them.
pub fn time_of(k: u128) -> u64 {
    (k >> 80) as u64
}

pub fn key_of(name: &str) -> Option<u128> {
    // Only the canonical spelling, so that `name_of` gives the file's name back.
    let u = uuid::Uuid::parse_str(name).ok()?;
    (u.to_string() == name).then(|| u.as_u128())
}

/// What a refresh found.
#[derive(Debug, Default)]
pub struct Refresh {
    /// Listed now (else the cached listing was current).
    pub relisted: bool,
    /// Listed for the first time.
    pub first: bool,
    /// Names that appeared since the previous listing.
    pub added: Vec<String>,
}

/// The listings, and what makes one stale.
#[derive(Debug, Default)]
pub struct DirCache {
    dirs: HashMap<PathBuf, Listing>,
    dirty: Option<Arc<Mutex<Dirty>>>,
    rescan_ms: u64,
}

impl DirCache {
    /// From now on, list a directory only when `mark` saw it touched, or
    /// every `rescan`. Returns the handle the watcher marks.
    pub fn watch(&mut self, rescan: Duration) -> Arc<Mutex<Dirty>> {
        let d = Arc::new(Mutex::new(Dirty::default()));
        self.dirty = Some(d.clone());
        self.rescan_ms = rescan.as_millis() as u64;
        d
    }

    pub fn get(&self, dir: &Path) -> Option<&Listing> {
        self.dirs.get(dir)
    }

    /// Make `dir`'s listing current (listing it with `list` if it must be).
    pub fn refresh<I: IntoIterator<Item = String>>(
        &mut self,
        dir: &Path,
        now_ms: u64,
        list: impl FnOnce() -> I,
    ) -> Refresh {
        let prev = self.dirs.get(dir);
        let must = match (&self.dirty, prev) {
            (None, _) | (_, None) => true,
            (Some(d), Some(p)) => {
                let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
                // Unmarked before listing: an event during the listing marks it again.
                let touched = d.dirs.remove(dir) || d.all;
                touched || now_ms >= p.listed_ms + self.rescan_ms
            }
        };
        if !must {
            return Refresh::default();
        }
        let first = prev.is_none();
        let mut keys = Vec::new();
        let mut others = Vec::new();
        for n in list() {
            match key_of(&n) {
                Some(k) => keys.push(k),
                None => others.push(n),
            }
        }
        keys.sort_unstable();
        others.sort();
        keys.shrink_to_fit();
        let added = match prev {
            None => Vec::new(),
            Some(p) => keys
                .iter()
                .filter(|k| !p.contains(**k))
                .map(|k| name_of(*k))
                .chain(
                    others
                        .iter()
                        .filter(|o| p.others.binary_search(o).is_err())
                        .cloned(),
                )
                .collect(),
        };
        self.dirs.insert(
            dir.to_path_buf(),
            Listing {
                keys,
                others,
                listed_ms: now_ms,
            },
        );
        Refresh {
            relisted: true,
            first,
            added,
        }
    }

    /// After every directory of a cycle is refreshed: an overflow is resolved.
    pub fn cycle_done(&mut self) {
        if let Some(d) = &self.dirty {
            d.lock().unwrap_or_else(|e| e.into_inner()).all = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_when_touched_or_due() {
        let mut c = DirCache::default();
        let dir = Path::new("/q/default/done");
        let a = ghost_core::queue::new_name();
        let b = ghost_core::queue::new_name();
        let dirty = c.watch(Duration::from_secs(600));
        let r = c.refresh(dir, 0, || vec![a.clone(), "hand".into()]);
        assert!(r.relisted && r.first && r.added.is_empty());
        let r = c.refresh(dir, 1000, || -> Vec<String> {
            panic!("not touched: no listing")
        });
        assert!(!r.relisted);
        let ev = notify::Event::new(notify::EventKind::Create(notify::event::CreateKind::File))
            .add_path(dir.join(format!("{b}.json")));
        mark(&dirty, &Ok(ev));
        let r = c.refresh(dir, 2000, || vec![a.clone(), b.clone(), "hand".into()]);
        assert_eq!(r.added, vec![b.clone()]);
        let l = c.get(dir).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(
            l.names().collect::<Vec<_>>(),
            vec![a.clone(), b.clone(), "hand".into()]
        );
        assert_eq!(l.times_ms().next(), ghost_core::health::name_time_ms(&a));
        // The full rescan comes anyway.
        let r = c.refresh(dir, 2000 + 600_000, Vec::new);
        assert!(r.relisted && r.added.is_empty());
        assert!(c.get(dir).unwrap().is_empty());
        // An overflow marks everything.
        mark(&dirty, &Err(notify::Error::generic("overflow")));
        assert!(c.refresh(dir, 2000 + 600_001, Vec::new).relisted);
        c.cycle_done();
        assert!(
            !c.refresh(dir, 2000 + 600_002, || -> Vec<String> { panic!("listed") })
                .relisted
        );
    }
}
