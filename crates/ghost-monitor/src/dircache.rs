//! Incremental queue listings for the collector: each queue directory is
//! listed once, kept in memory, and listed again only when a file event
//! touched it, or at `monitor.full_rescan_interval` in case the watcher
//! missed something (an inotify queue overflow marks everything). An idle
//! root therefore costs no directory listing per cycle, however many entries
//! it holds.
//!
//! What is kept of a listing is what the collector needs of that state, so
//! that 100,000 entries of history cost the idle monitor little memory:
//!
//! - where names are needed (`active/`, `stuck/`, `failed/`), the names as
//!   compact keys: a UUID v7 queue name is one `u128` (16 bytes), whose top
//!   48 bits are its arrival time;
//! - elsewhere (`pending/`, `done/`, …) only each entry's arrival time, in
//!   whole seconds (4 bytes), for the counts and the age buckets. The names
//!   that arrived since the previous listing (a `done/` entry's summary is
//!   checked once, when it arrives) are the ones the file events named
//!   ([`mark`]) that the new listing holds. Should the events have been lost
//!   (an overflow, or more names than [`NOTED_MAX`] between two cycles) the
//!   refresh says so ([`Refresh::lost`]) and the caller looks at every entry.
//!
//! Without a watcher attached ([`DirCache::watch`]), every refresh lists and
//! keeps the names: the benchmark and tests that call the collector directly
//! see no difference.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Entry names noted per directory between two refreshes, at most; past it
/// the directory's names are dropped and its next refresh reports them lost.
pub const NOTED_MAX: usize = 20_000;

/// Directories touched since they were last listed.
#[derive(Debug, Default)]
pub struct Dirty {
    dirs: HashSet<PathBuf>,
    /// Entry names the events named, per directory.
    names: HashMap<PathBuf, HashSet<String>>,
    /// Directories whose noted names overflowed [`NOTED_MAX`].
    lost: HashSet<PathBuf>,
    all: bool,
}

/// Note what a file event touched (an error or an overflow: everything).
pub fn mark(dirty: &Mutex<Dirty>, ev: &notify::Result<notify::Event>) {
    let mut d = dirty.lock().unwrap_or_else(|e| e.into_inner());
    match ev {
        Ok(ev) if !ev.need_rescan() => {
            for p in &ev.paths {
                let Some(parent) = p.parent() else { continue };
                d.dirs.insert(parent.to_path_buf());
                let Some(file) = p.file_name().and_then(|f| f.to_str()) else {
                    continue;
                };
                if !ghost_core::queue::is_entry_file(file) || d.lost.contains(parent) {
                    continue;
                }
                let names = d.names.entry(parent.to_path_buf()).or_default();
                names.insert(file.trim_end_matches(".json").to_string());
                if names.len() > NOTED_MAX {
                    d.names.remove(parent);
                    d.lost.insert(parent.to_path_buf());
                }
            }
        }
        _ => d.all = true,
    }
}

/// One directory's entries as last listed.
#[derive(Debug, Default)]
pub struct Listing {
    /// UUID names, sorted, where the names are kept.
    pub keys: Vec<u128>,
    /// Arrival times (Unix seconds) of the UUID names, sorted, where only
    /// the times are kept.
    secs: Vec<u32>,
    /// Names that are not UUIDs (placed by hand), sorted.
    pub others: Vec<String>,
    listed_ms: u64,
}

impl Listing {
    pub fn len(&self) -> usize {
        self.keys.len() + self.secs.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the names are kept (else only the arrival times).
    pub fn has_names(&self) -> bool {
        self.secs.is_empty()
    }

    /// Every name, in arrival order (the UUIDs first); only where the names
    /// are kept ([`Listing::has_names`]).
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        debug_assert!(self.has_names(), "names of a times-only listing");
        self.keys
            .iter()
            .map(|k| name_of(*k))
            .chain(self.others.iter().cloned())
    }

    /// Arrival times (Unix ms) of the UUID names (whole seconds where only
    /// the times are kept).
    pub fn times_ms(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys
            .iter()
            .map(|k| time_of(*k))
            .chain(self.secs.iter().map(|s| u64::from(*s) * 1000))
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
    /// A times-only listing whose new names are not known (the events were
    /// lost): every entry should be looked at as if listed for the first time.
    pub lost: bool,
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
    /// `keep_names`: keep the names, not only the arrival times (always so
    /// without a watcher, where the new names come from comparing listings).
    pub fn refresh<I: IntoIterator<Item = String>>(
        &mut self,
        dir: &Path,
        now_ms: u64,
        keep_names: bool,
        list: impl FnOnce() -> I,
    ) -> Refresh {
        let keep_names = keep_names || self.dirty.is_none();
        let prev = self.dirs.get(dir);
        let (must, noted, lost) = match &self.dirty {
            None => (true, HashSet::new(), false),
            Some(d) => {
                let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
                // Unmarked before listing: an event during the listing marks it again.
                let touched = d.dirs.remove(dir) || d.all;
                let due = prev.is_none_or(|p| touched || now_ms >= p.listed_ms + self.rescan_ms);
                if due {
                    let noted = d.names.remove(dir).unwrap_or_default();
                    let lost = d.lost.remove(dir) || d.all;
                    (true, noted, lost)
                } else {
                    (false, HashSet::new(), false)
                }
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
        let added: Vec<String> = match prev {
            None => Vec::new(),
            Some(p) if p.has_names() => keys
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
            Some(_) => {
                let mut v: Vec<String> = noted
                    .into_iter()
                    .filter(|n| match key_of(n) {
                        Some(k) => keys.binary_search(&k).is_ok(),
                        None => others.binary_search(n).is_ok(),
                    })
                    .collect();
                v.sort_unstable();
                v
            }
        };
        let lost = !first && !keep_names && lost;
        let listing = if keep_names {
            keys.shrink_to_fit();
            Listing {
                keys,
                secs: Vec::new(),
                others,
                listed_ms: now_ms,
            }
        } else {
            let secs: Vec<u32> = keys
                .iter()
                .map(|k| u32::try_from(time_of(*k) / 1000).unwrap_or(u32::MAX))
                .collect();
            Listing {
                keys: Vec::new(),
                secs,
                others,
                listed_ms: now_ms,
            }
        };
        self.dirs.insert(dir.to_path_buf(), listing);
        Refresh {
            relisted: true,
            first,
            added,
            lost,
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
        let r = c.refresh(dir, 0, true, || vec![a.clone(), "hand".into()]);
        assert!(r.relisted && r.first && r.added.is_empty());
        let r = c.refresh(dir, 1000, true, || -> Vec<String> {
            panic!("not touched: no listing")
        });
        assert!(!r.relisted);
        let ev = notify::Event::new(notify::EventKind::Create(notify::event::CreateKind::File))
            .add_path(dir.join(format!("{b}.json")));
        mark(&dirty, &Ok(ev));
        let r = c.refresh(dir, 2000, true, || {
            vec![a.clone(), b.clone(), "hand".into()]
        });
        assert_eq!(r.added, vec![b.clone()]);
        let l = c.get(dir).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(
            l.names().collect::<Vec<_>>(),
            vec![a.clone(), b.clone(), "hand".into()]
        );
        assert_eq!(l.times_ms().next(), ghost_core::health::name_time_ms(&a));
        // The full rescan comes anyway.
        let r = c.refresh(dir, 2000 + 600_000, true, Vec::new);
        assert!(r.relisted && r.added.is_empty());
        assert!(c.get(dir).unwrap().is_empty());
        // An overflow marks everything.
        mark(&dirty, &Err(notify::Error::generic("overflow")));
        assert!(c.refresh(dir, 2000 + 600_001, true, Vec::new).relisted);
        c.cycle_done();
        assert!(
            !c.refresh(dir, 2000 + 600_002, true, || -> Vec<String> {
                panic!("listed")
            })
            .relisted
        );
    }

    fn created(dir: &Path, name: &str) -> notify::Result<notify::Event> {
        Ok(
            notify::Event::new(notify::EventKind::Create(notify::event::CreateKind::File))
                .add_path(dir.join(format!("{name}.json"))),
        )
    }

    #[test]
    fn a_times_only_listing_keeps_the_ages_and_learns_new_names_from_the_events() {
        let mut c = DirCache::default();
        let dir = Path::new("/q/default/done");
        let dirty = c.watch(Duration::from_secs(600));
        let a = ghost_core::queue::new_name();
        let b = ghost_core::queue::new_name();
        let r = c.refresh(dir, 0, false, || vec![a.clone(), "hand".into()]);
        assert!(r.first && !r.lost);
        let l = c.get(dir).unwrap();
        assert!(!l.has_names() && l.keys.is_empty() && l.len() == 2);
        let want = ghost_core::health::name_time_ms(&a).unwrap() / 1000 * 1000;
        assert_eq!(l.times_ms().collect::<Vec<_>>(), vec![want]);

        // b arrives; an event also names a temp file and a name gone again.
        mark(&dirty, &created(dir, &b));
        mark(&dirty, &created(dir, ".x.json.1.tmp"));
        mark(&dirty, &created(dir, &ghost_core::queue::new_name()));
        let r = c.refresh(dir, 10, false, || vec![a.clone(), b.clone(), "hand".into()]);
        assert!(r.relisted && !r.lost);
        assert_eq!(r.added, vec![b.clone()]);
        assert_eq!(c.get(dir).unwrap().len(), 3);

        // The periodic rescan with no event: nothing new.
        let r = c.refresh(dir, 10 + 600_000, false, || vec![a.clone(), b.clone()]);
        assert!(r.relisted && r.added.is_empty() && !r.lost);

        // An overflow: the new names are not known.
        mark(&dirty, &Err(notify::Error::generic("overflow")));
        let r = c.refresh(dir, 10 + 600_001, false, || vec![a.clone()]);
        assert!(r.relisted && r.lost);
        c.cycle_done();

        // More names than are noted: lost too, and only for that directory.
        let other = Path::new("/q/default/trash");
        c.refresh(other, 0, false, Vec::new);
        for _ in 0..=NOTED_MAX {
            mark(&dirty, &created(dir, &ghost_core::queue::new_name()));
        }
        mark(&dirty, &created(other, &b));
        assert!(c.refresh(dir, 10 + 600_002, false, Vec::new).lost);
        let r = c.refresh(other, 10 + 600_002, false, || vec![b.clone()]);
        assert!(!r.lost && r.added == vec![b.clone()]);
    }
}
