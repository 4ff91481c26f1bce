//! Each target's due work, kept in memory so that claiming a patch costs the
//! same with ten entries queued as with a hundred thousand: the names in
//! `pending/` (sorted, which is arrival order) and the entries of `deferred/`
//! with the time each becomes due.
//!
//! The disk is the truth; this is a cache of it, kept right three ways:
//!
//! - the file watcher reports names that may have arrived or left
//!   ([`Inbox::touch`], from the watcher's thread); the worker looks at each
//!   one on disk before trusting it ([`DueList::apply`]), so a late or
//!   repeated event can never make a name appear that is not there;
//! - the worker drops a name it claimed, or found gone;
//! - a full rescan every `executor.scan_interval` (and after a watcher
//!   overflow) replaces the lot, covering any event the watcher lost. Names
//!   reported while a rescan lists the directories are looked at after it.
//!
//! Only events that can add or remove work count ([`wakes`]): the watcher
//! also sees the executor's own reads of the directories (open, close without
//! write), and waking on those made an idle executor rescan in a loop.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use notify::event::{AccessKind, AccessMode, EventKind};

use ghost_core::queue::{is_entry_file, Queue, QueueState};
use ghost_core::Result;
use tracing::{info, warn};

/// True for the event kinds that can mean an entry arrived in (or left) a
/// watched directory: a create, a rename in or out, a removal, the close of
/// a file written. Reads of the directory (open, access, close without
/// write) and changes of content or metadata in place do not.
pub fn wakes(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(notify::event::ModifyKind::Name(_)) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        // A queue overflow or an unknown event: cannot tell, so look.
        EventKind::Any | EventKind::Other => true,
        EventKind::Access(_) | EventKind::Modify(_) => false,
    }
}

/// What the watcher hands the worker: names to look at, or "rescan all".
#[derive(Debug, Default)]
pub struct Inbox {
    touched: Mutex<HashSet<(QueueState, String)>>,
    rescan: AtomicBool,
    /// Sizes of the lists, for the heartbeat (kept by the worker).
    pub pending_len: AtomicUsize,
    pub deferred_len: AtomicUsize,
}

impl Inbox {
    /// Note that the entry at `path` may have changed, if `path` is an entry
    /// file of `pending/` or `deferred/` of `queue`. True when it was noted.
    pub fn touch(&self, queue: &Queue, path: &Path) -> bool {
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            return false;
        };
        if !is_entry_file(file) {
            return false;
        }
        let Some(parent) = path.parent() else {
            return false;
        };
        let state = [QueueState::Pending, QueueState::Deferred]
            .into_iter()
            .find(|s| parent == queue.dir(*s));
        let Some(state) = state else { return false };
        let name = file.trim_end_matches(".json").to_string();
        self.touched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((state, name));
        true
    }

    /// Ask for a full rescan (the watcher overflowed or failed).
    pub fn request_rescan(&self) {
        self.rescan.store(true, Ordering::Relaxed);
    }

    fn take_rescan(&self) -> bool {
        self.rescan.swap(false, Ordering::Relaxed)
    }

    fn take_touched(&self) -> HashSet<(QueueState, String)> {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One target's due work.
#[derive(Debug)]
pub struct DueList {
    queue: Queue,
    inbox: Arc<Inbox>,
    pending: BTreeSet<String>,
    /// Deferred entries and when each is due.
    deferred: BTreeMap<String, SystemTime>,
}

impl DueList {
    pub fn new(queue: Queue, inbox: Arc<Inbox>) -> Self {
        DueList {
            queue,
            inbox,
            pending: BTreeSet::new(),
            deferred: BTreeMap::new(),
        }
    }

    /// When a deferred entry is due: its record's `due_at`; now when the record
    /// is unreadable or says nothing (promoting it early is the safe side).
    fn due_of(&self, name: &str) -> SystemTime {
        self.queue
            .read_record(QueueState::Deferred, name)
            .ok()
            .and_then(|r| r.due_at)
            .as_deref()
            .and_then(ghost_core::time::parse_rfc3339)
            .unwrap_or_else(SystemTime::now)
    }

    /// Replace everything with a fresh listing of the directories, then look
    /// at every name the watcher reported meanwhile. Also taken: a pending
    /// rescan request.
    pub fn rescan(&mut self) -> Result<()> {
        let inbox = self.inbox.clone();
        inbox.take_rescan();
        let pending: BTreeSet<String> = self.queue.list(QueueState::Pending)?.into_iter().collect();
        let deferred = self
            .queue
            .list(QueueState::Deferred)?
            .into_iter()
            .map(|n| {
                let due = self.due_of(&n);
                (n, due)
            })
            .collect();
        self.pending = pending;
        self.deferred = deferred;
        self.apply()
    }

    /// Bring in what the watcher reported: each name is looked up on disk.
    /// Falls back to a full rescan when one was requested.
    pub fn apply(&mut self) -> Result<()> {
        let inbox = self.inbox.clone();
        if inbox.take_rescan() {
            inbox.request_rescan();
            return self.rescan();
        }
        for (state, name) in inbox.take_touched() {
            let here = self.queue.entry_path(state, &name).exists();
            match (state, here) {
                (QueueState::Pending, true) => {
                    self.pending.insert(name);
                }
                (QueueState::Pending, false) => {
                    self.pending.remove(&name);
                }
                (_, true) => {
                    let due = self.due_of(&name);
                    self.deferred.insert(name, due);
                }
                (_, false) => {
                    self.deferred.remove(&name);
                }
            }
        }
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let inbox = &self.inbox;
        inbox
            .pending_len
            .store(self.pending.len(), Ordering::Relaxed);
        inbox
            .deferred_len
            .store(self.deferred.len(), Ordering::Relaxed);
    }

    /// Up to `n` pending names, oldest first.
    pub fn first(&self, n: usize) -> Vec<String> {
        self.pending.iter().take(n).cloned().collect()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Forget a pending name (claimed, or found gone).
    pub fn forget(&mut self, name: &str) {
        self.pending.remove(name);
        self.publish();
    }

    /// Forget a deferred name (promoted, or found gone).
    pub fn forget_deferred(&mut self, name: &str) {
        self.deferred.remove(name);
        self.publish();
    }

    /// Deferred names due at `now`, and how long until the next one after those.
    pub fn due_deferred(&self, now: SystemTime) -> (Vec<String>, Option<std::time::Duration>) {
        let mut due = Vec::new();
        let mut next: Option<std::time::Duration> = None;
        for (name, at) in &self.deferred {
            match at.duration_since(now) {
                Ok(wait) if !wait.is_zero() => next = Some(next.map_or(wait, |n| n.min(wait))),
                _ => due.push(name.clone()),
            }
        }
        (due, next)
    }

    /// Move the deferred entry `name` back to `pending/` (its time has come)
    /// and take it into the pending list. True when it moved.
    pub fn promote(&mut self, name: &str) -> bool {
        self.deferred.remove(name);
        let q = &self.queue;
        if !q.entry_path(QueueState::Deferred, name).exists() {
            return false;
        }
        let mut r = q
            .read_record(QueueState::Deferred, name)
            .unwrap_or_default();
        r.due_at = None;
        match q.transition(name, QueueState::Deferred, QueueState::Pending, &r) {
            Ok(()) => {
                info!(event = "PATCH_RETRY_DUE", target = %q.target(), queue_name = %name, "deferred patch is due: back to pending");
                self.pending.insert(name.to_string());
                self.publish();
                true
            }
            Err(e) => {
                warn!(target = %q.target(), queue_name = %name, error = %e, "could not promote deferred patch");
                false
            }
        }
    }
}

/// The directories a target's watcher covers.
pub fn watched_dirs(queue: &Queue) -> [PathBuf; 2] {
    [
        queue.dir(QueueState::Pending),
        queue.dir(QueueState::Deferred),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghost_core::queue::EntryRecord;
    use notify::event::{CreateKind, DataChange, ModifyKind, RenameMode};
    use std::time::Duration;

    fn queue() -> (tempfile::TempDir, Queue) {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::new(d.path().join("q"), "default");
        q.create().unwrap();
        (d, q)
    }

    #[test]
    fn only_events_that_can_add_or_remove_work_wake() {
        for k in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(notify::event::RemoveKind::File),
            EventKind::Other,
        ] {
            assert!(wakes(&k), "{k:?}");
        }
        for k in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Any),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any)),
        ] {
            assert!(!wakes(&k), "{k:?}");
        }
    }

    #[test]
    fn touch_takes_only_entry_files_of_the_watched_states() {
        let (_d, q) = queue();
        let inbox = Inbox::default();
        assert!(inbox.touch(&q, &q.entry_path(QueueState::Pending, "a")));
        assert!(inbox.touch(&q, &q.entry_path(QueueState::Deferred, "b")));
        assert!(!inbox.touch(&q, &q.entry_path(QueueState::Active, "c")));
        assert!(!inbox.touch(&q, &q.record_path(QueueState::Pending, "a")));
        assert!(!inbox.touch(&q, &q.dir(QueueState::Pending)));
        assert_eq!(inbox.take_touched().len(), 2);
    }

    #[test]
    fn events_are_checked_against_the_disk() {
        let (_d, q) = queue();
        let inbox = Arc::new(Inbox::default());
        let mut due = DueList::new(q.clone(), inbox.clone());
        let a = q.enqueue(b"{}").unwrap();
        let b = q.enqueue(b"{}").unwrap();
        // Reported: a (present), and a name that is not there.
        inbox.touch(&q, &q.entry_path(QueueState::Pending, &a));
        inbox.touch(&q, &q.entry_path(QueueState::Pending, "ghost"));
        due.apply().unwrap();
        assert_eq!(due.first(10), vec![a.clone()]);
        // b's event was lost: the rescan finds it.
        due.rescan().unwrap();
        assert_eq!(due.first(10), vec![a.clone(), b.clone()]);
        assert_eq!(due.first(1), vec![a.clone()]);
        // a leaves (a late event for it changes nothing).
        q.transition(
            &a,
            QueueState::Pending,
            QueueState::Held,
            &EntryRecord::default(),
        )
        .unwrap();
        inbox.touch(&q, &q.entry_path(QueueState::Pending, &a));
        due.apply().unwrap();
        assert_eq!(due.first(10), vec![b.clone()]);
        assert_eq!(inbox.pending_len.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn deferred_entries_come_due_at_their_time() {
        let (_d, q) = queue();
        let inbox = Arc::new(Inbox::default());
        let mut due = DueList::new(q.clone(), inbox.clone());
        let now = SystemTime::now();
        let later = q.enqueue(b"{}").unwrap();
        let soon = q.enqueue(b"{}").unwrap();
        for (n, at) in [(&later, now + Duration::from_secs(60)), (&soon, now)] {
            let r = EntryRecord {
                due_at: Some(ghost_core::time::rfc3339(at)),
                ..Default::default()
            };
            q.transition(n, QueueState::Pending, QueueState::Deferred, &r)
                .unwrap();
        }
        due.rescan().unwrap();
        assert_eq!(due.pending_len(), 0);
        let (ready, next) = due.due_deferred(now + Duration::from_millis(10));
        assert_eq!(ready, vec![soon.clone()]);
        let next = next.expect("one still waits");
        assert!(next > Duration::from_secs(50) && next <= Duration::from_secs(60));
        due.forget_deferred(&soon);
        assert!(due.due_deferred(now).0.is_empty());
        // A rescan request made from the watcher's side is honoured by apply.
        inbox.request_rescan();
        due.apply().unwrap();
        assert_eq!(due.due_deferred(now + Duration::from_secs(61)).0.len(), 2);
    }
}
