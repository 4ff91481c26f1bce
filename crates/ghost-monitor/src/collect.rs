//! The health model's collection: one [`Collector::collect`] per cycle builds a
//! [`Health`] from the data root (docs/formats.md, "Health").
//!
//! Incremental by construction: queue states are counted and aged from
//! directory listings alone (an entry's arrival time is in its UUID v7 name),
//! and a directory is listed again only when a file event touched it or at
//! `monitor.full_rescan_interval` ([`crate::dircache`]); only `active/` claims
//! are read (a handful of files); a summary is read once, when its entry is
//! first seen terminal, and again only in the full sweep every
//! `monitor.summary_sweep_interval` (or while it is corrupt); the rotation
//! ledger is read from where the previous cycle stopped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ghost_core::health::{
    bucket_of, name_time_ms, BeatState, ComponentHealth, DiskHealth, Health, LogHealthView,
    StateHealth, SummaryHealth, TargetHealth, BUCKET_BOUNDS_S,
};
use ghost_core::queue::{EntryRecord, QueueState};
use ghost_core::watchdog::ChildState;
use ghost_core::{Config, Layout};

/// The components whose heartbeats the monitor judges.
pub const COMPONENTS: [&str; 4] = ["bridge", "executor", "watchdog", "monitor"];

/// How many stuck queue names `health.json` lists per target.
pub const STUCK_LISTED: usize = 1000;

/// How many corrupt summaries are checked again per cycle and target.
pub const RECHECK_PER_CYCLE: usize = 1000;

/// What the rules need beyond the published model.
#[derive(Debug, Default)]
pub struct Findings {
    /// `(target, name)` that reached `failed/` since the book last took
    /// `failed/` in ([`take_in_failed`]), filled in by the monitor.
    pub newly_failed: Vec<(String, String)>,
    /// Per target whose `failed/` was listed this cycle: its names, sorted.
    pub failed_listed: Vec<(String, Vec<String>)>,
    /// Entries listed and summaries checked this cycle: how much heap the
    /// cycle went through (see [`crate::trim_heap`]).
    pub work: usize,
}

/// The collector's memory between cycles.
#[derive(Debug, Default)]
pub struct Collector {
    /// Per target: (done, failed) counts and when.
    prev_counts: HashMap<String, (usize, usize, u64)>,
    /// The queue listings, refreshed incrementally.
    cache: crate::dircache::DirCache,
    /// Terminal entries seen this cycle (their summaries are intact unless in `corrupt`).
    terminal: usize,
    /// `target/name` → why its summary is not intact.
    corrupt: BTreeMap<String, String>,
    last_full_sweep_ms: Option<u64>,
    /// Previous CPU ticks per pid.
    cpu: HashMap<u32, (u64, u64)>,
    /// Rotation ledger: bytes read so far, and the last hour's rotations.
    ledger_offset: u64,
    rotations: VecDeque<(String, u64)>,
    /// Summaries read since the last [`Collector::take_finished`], for the
    /// metrics' outcome counters and duration histograms.
    finished: Vec<ghost_core::summary::Summary>,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    /// List queue directories only when the watcher marks them (or every
    /// `rescan`); the returned handle is what the watcher marks.
    pub fn watch(
        &mut self,
        rescan: Duration,
    ) -> std::sync::Arc<std::sync::Mutex<crate::dircache::Dirty>> {
        self.cache.watch(rescan)
    }

    /// One cycle's model, at `now_ms`.
    pub fn collect(&mut self, config: &Config, layout: &Layout, now_ms: u64) -> (Health, Findings) {
        let mut h = Health {
            monitor_pid: std::process::id(),
            ..Health::default()
        };
        let mut f = Findings::default();
        let mut targets: Vec<String> = config.targets.keys().cloned().collect();
        for t in layout.queue_targets() {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        let full_sweep = self
            .last_full_sweep_ms
            .is_none_or(|t| now_ms >= t + config.monitor.summary_sweep_interval.as_millis() as u64);
        if full_sweep {
            self.corrupt.clear();
        }
        self.terminal = 0;
        for t in &targets {
            let th = self.target(config, layout, t, now_ms, full_sweep, &mut f);
            h.targets.insert(t.clone(), th);
        }
        self.cache.cycle_done();
        if full_sweep {
            self.last_full_sweep_ms = Some(now_ms);
        }
        let mut corrupt_count = BTreeMap::new();
        for id in self.corrupt.keys() {
            let t = id.split_once('/').map_or(id.as_str(), |(t, _)| t);
            *corrupt_count.entry(t.to_string()).or_insert(0) += 1;
        }
        h.summaries = SummaryHealth {
            verified: self.terminal.saturating_sub(self.corrupt.len()),
            // Bounded like the stuck list, however many there are.
            corrupt: self.corrupt.keys().take(STUCK_LISTED).cloned().collect(),
            corrupt_count,
            last_full_sweep: self.last_full_sweep_ms.map(ms_rfc3339),
        };
        self.components(config, layout, now_ms, &mut h);
        self.disks(config, layout, &mut h);
        h.paused = paused(layout, &h);
        if let Ok(Some(w)) = ghost_core::watchdog::read_state(layout) {
            h.given_up = w
                .children
                .iter()
                .filter(|(_, c)| c.state == ChildState::GivenUp)
                .map(|(n, _)| n.clone())
                .collect();
        }
        self.ledger(layout, now_ms);
        for (c, _) in &self.rotations {
            *h.rotations_last_hour.entry(c.clone()).or_insert(0) += 1;
        }
        (h, f)
    }

    fn target(
        &mut self,
        config: &Config,
        layout: &Layout,
        target: &str,
        now_ms: u64,
        full_sweep: bool,
        f: &mut Findings,
    ) -> TargetHealth {
        let q = layout.queue(target);
        let mut th = TargetHealth::default();
        let stale_ms = config.monitor.stale_pending_after.as_millis() as u64;
        let mut counts = HashMap::new();
        for state in QueueState::ALL {
            let dir = q.dir(state);
            // Names are needed of these states; of the others, the arrival
            // times (see crate::dircache).
            let keep_names = matches!(
                state,
                QueueState::Active | QueueState::Stuck | QueueState::Failed
            );
            let refresh = self
                .cache
                .refresh(&dir, now_ms, keep_names, || crate::dircache::entries(&dir));
            let listing = self.cache.get(&dir).expect("refreshed just now");
            if refresh.relisted {
                f.work += listing.len();
            }
            let mut sh = StateHealth {
                count: listing.len(),
                oldest_age_s: None,
                buckets: vec![0; BUCKET_BOUNDS_S.len() + 1],
            };
            let times = listing
                .times_ms()
                .chain(listing.others.iter().filter_map(|n| name_time_ms(n)));
            for t in times {
                let age_ms = now_ms.saturating_sub(t);
                sh.buckets[bucket_of(age_ms / 1000)] += 1;
                sh.oldest_age_s = Some(sh.oldest_age_s.unwrap_or(0).max(age_ms / 1000));
                if state == QueueState::Pending && age_ms > stale_ms {
                    th.stale_pending += 1;
                }
            }
            counts.insert(state, listing.len());
            match state {
                QueueState::Stuck => {
                    // Bounded: the first STUCK_LISTED only, however many there are.
                    th.stuck = listing.names().take(STUCK_LISTED).collect();
                }
                QueueState::Active => {
                    th.orphaned_claims = listing
                        .names()
                        .filter(|n| claim_orphaned(&q.record_path(state, n)))
                        .collect();
                }
                QueueState::Done | QueueState::Failed => {
                    self.terminal += listing.len();
                    let corrupt = &mut self.corrupt;
                    // Each summary reaches `finished` once per process: when
                    // its entry is first listed, not again in a full sweep.
                    let finished = &mut self.finished;
                    // Every name: from the listing where it keeps them, else
                    // listed again (once at start-up, in a full sweep, or
                    // after lost events).
                    let all: Box<dyn Iterator<Item = String>> = if listing.has_names() {
                        Box::new(listing.names())
                    } else {
                        Box::new(crate::dircache::entries(&dir))
                    };
                    if refresh.first {
                        f.work += listing.len();
                        check_summaries(corrupt, Some(finished), layout, target, all);
                    } else if full_sweep || refresh.lost {
                        // After lost events the new entries are not known:
                        // every summary is checked, none counted again.
                        f.work += listing.len();
                        check_summaries(corrupt, None, layout, target, all);
                    } else {
                        let added = refresh.added.iter().cloned();
                        check_summaries(corrupt, Some(finished), layout, target, added);
                    }
                }
                _ => {}
            }
            if state == QueueState::Failed && refresh.relisted {
                let mut names: Vec<String> = listing.names().collect();
                names.sort_unstable();
                f.failed_listed.push((target.to_string(), names));
            }
            th.states.insert(state.name().to_string(), sh);
        }
        self.recheck_corrupt(layout, target);
        let (done, failed) = (counts[&QueueState::Done], counts[&QueueState::Failed]);
        if let Some((d0, f0, t0)) = self.prev_counts.get(target) {
            let mins = (now_ms.saturating_sub(*t0)) as f64 / 60_000.0;
            if mins > 0.0 {
                th.done_per_min = done.saturating_sub(*d0) as f64 / mins;
                th.failed_per_min = failed.saturating_sub(*f0) as f64 / mins;
            }
        }
        self.prev_counts
            .insert(target.to_string(), (done, failed, now_ms));
        th
    }

    /// Summaries found corrupt are checked every cycle until repaired; one
    /// whose entry left `done/` and `failed/` (retried, archived) is dropped.
    fn recheck_corrupt(&mut self, layout: &Layout, target: &str) {
        let q = layout.queue(target);
        let prefix = format!("{target}/");
        let ids: Vec<String> = self
            .corrupt
            .keys()
            .filter(|k| k.starts_with(&prefix))
            // Bounded per cycle; the full sweep rechecks every one.
            .take(RECHECK_PER_CYCLE)
            .cloned()
            .collect();
        for id in ids {
            let name = &id[prefix.len()..];
            let terminal = [QueueState::Done, QueueState::Failed]
                .iter()
                .any(|s| q.entry_path(*s, name).exists());
            if !terminal {
                self.corrupt.remove(&id);
                continue;
            }
            match summary_problem(&layout.summaries(target), name) {
                None => {
                    self.corrupt.remove(&id);
                    // Intact for the first time: count it once.
                    if let Ok(Some(s)) = ghost_core::summary::read(&layout.summaries(target), name)
                    {
                        self.finished.push(s);
                    }
                }
                Some(why) => {
                    self.corrupt.insert(id, why);
                }
            }
        }
    }

    /// The summaries read since the last call (each once per process).
    pub fn take_finished(&mut self) -> Vec<ghost_core::summary::Summary> {
        std::mem::take(&mut self.finished)
    }

    /// Why a summary is not intact, if it is not.
    pub fn corrupt_reason(&self, id: &str) -> Option<&str> {
        self.corrupt.get(id).map(|s| s.as_str())
    }

    fn components(&mut self, config: &Config, layout: &Layout, now_ms: u64, h: &mut Health) {
        let interval = config.heartbeat.interval.as_millis() as u64;
        let stale = config.heartbeat.stale_after.as_millis() as u64;
        let mut live = HashSet::new();
        for c in COMPONENTS {
            let path = layout.heartbeat(c);
            let ch = match ghost_core::heartbeat::read(&path) {
                Err(_) if !path.exists() => ComponentHealth {
                    state: BeatState::Absent,
                    status: None,
                    pid: None,
                    updated_at: None,
                    age_s: None,
                    cpu_percent: None,
                    rss_bytes: None,
                    logs: None,
                },
                Err(_) => ComponentHealth {
                    state: BeatState::Unknown,
                    status: None,
                    pid: None,
                    updated_at: None,
                    age_s: None,
                    cpu_percent: None,
                    rss_bytes: None,
                    logs: None,
                },
                Ok(hb) => {
                    let age_ms = ghost_core::time::parse_rfc3339(&hb.updated_at)
                        .map(|t| now_ms.saturating_sub(ghost_core::time::unix_ms(t)));
                    let alive = pid_alive(hb.pid);
                    let state = if c == "monitor" && hb.pid == std::process::id() {
                        BeatState::Ok
                    } else {
                        judge(age_ms, alive, interval, stale)
                    };
                    let (cpu, rss) = if alive {
                        live.insert(hb.pid);
                        self.usage(hb.pid, now_ms)
                    } else {
                        (None, None)
                    };
                    let logs = hb
                        .details
                        .get("logs")
                        .and_then(|v| serde_json::from_value::<LogHealthView>(v.clone()).ok());
                    ComponentHealth {
                        state,
                        status: Some(hb.status.clone()),
                        pid: Some(hb.pid),
                        updated_at: Some(hb.updated_at.clone()),
                        age_s: age_ms.map(|a| a as f64 / 1000.0),
                        cpu_percent: cpu,
                        rss_bytes: rss,
                        logs,
                    }
                }
            };
            h.components.insert(c.to_string(), ch);
        }
        self.cpu.retain(|pid, _| live.contains(pid));
    }

    /// CPU percent since the previous cycle and RSS of `pid`, from /proc.
    fn usage(&mut self, pid: u32, now_ms: u64) -> (Option<f64>, Option<u64>) {
        let ticks = proc_cpu_ticks(pid);
        let rss = proc_rss(pid);
        let cpu = match (ticks, self.cpu.get(&pid)) {
            (Some(t), Some((t0, at0))) if now_ms > *at0 => {
                // USER_HZ is 100 on every Linux the kernel ABI allows.
                let secs = (t.saturating_sub(*t0)) as f64 / 100.0;
                Some(100.0 * secs / ((now_ms - at0) as f64 / 1000.0))
            }
            _ => None,
        };
        if let Some(t) = ticks {
            self.cpu.insert(pid, (t, now_ms));
        }
        (cpu, rss)
    }

    fn disks(&self, config: &Config, layout: &Layout, h: &mut Health) {
        for (name, path) in [
            ("root", layout.root().to_path_buf()),
            ("log_fallback", log_fallback_dir(config)),
        ] {
            if let Some(d) = disk(name, &path) {
                h.disks.push(d);
            }
        }
    }

    /// Read what is new in `logs/rotations.jsonl`; keep the last hour.
    fn ledger(&mut self, layout: &Layout, now_ms: u64) {
        let path = ghost_core::logging::ledger::path(&layout.logs());
        if let Ok(mut file) = std::fs::File::open(&path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len < self.ledger_offset {
                self.ledger_offset = 0; // replaced: read it again
                self.rotations.clear();
            }
            if len > self.ledger_offset && file.seek(SeekFrom::Start(self.ledger_offset)).is_ok() {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                // Only whole lines: a line being appended is read next cycle.
                let whole = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
                for line in text[..whole].lines() {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let (Some(c), Some(at)) = (v["component"].as_str(), v["at"].as_str()) else {
                        continue;
                    };
                    if v["reason"] == "fallback_copied" {
                        continue; // lines copied back after an outage, not a rotation
                    }
                    if let Some(t) = ghost_core::time::parse_rfc3339(at) {
                        self.rotations
                            .push_back((c.to_string(), ghost_core::time::unix_ms(t)));
                    }
                }
                self.ledger_offset += whole as u64;
            }
        }
        let hour_ago = now_ms.saturating_sub(3_600_000);
        self.rotations.retain(|(_, t)| *t >= hour_ago);
    }
}

/// Check the summaries of `names` (terminal entries new since the last
/// listing, or all of them in a full sweep), streamed.
fn check_summaries(
    corrupt: &mut BTreeMap<String, String>,
    mut finished: Option<&mut Vec<ghost_core::summary::Summary>>,
    layout: &Layout,
    target: &str,
    names: impl Iterator<Item = String>,
) {
    let dir = layout.summaries(target);
    for n in names {
        let id = format!("{target}/{n}");
        match summary_problem(&dir, &n) {
            None => {
                corrupt.remove(&id);
                if let Some(f) = finished.as_deref_mut() {
                    if let Ok(Some(s)) = ghost_core::summary::read(&dir, &n) {
                        f.push(s);
                    }
                }
            }
            Some(why) => {
                corrupt.insert(id, why);
            }
        }
    }
}

/// Take this cycle's `failed/` listings into `seen` (the book's
/// `failed_seen`) and return the entries that failed since it was last
/// written, whether or not a monitor was running then: each is taken in once,
/// in the same book write as the episode it starts, so its `patch_failed`
/// notification goes out exactly once across restarts.
///
/// The first monitor on a root (`seen` is `None`) records what it finds and
/// returns nothing: failures older than any monitor are not news. A target
/// new to the book is news (it was created after the monitor first ran).
pub fn take_in_failed(
    seen: &mut Option<BTreeMap<String, Vec<String>>>,
    listed: Vec<(String, Vec<String>)>,
) -> Vec<(String, String)> {
    let first = seen.is_none();
    let seen = seen.get_or_insert_with(BTreeMap::new);
    let mut out = Vec::new();
    for (target, names) in listed {
        if !first {
            let before = seen.get(&target).map(Vec::as_slice).unwrap_or_default();
            out.extend(
                names
                    .iter()
                    .filter(|n| before.binary_search(n).is_err())
                    .map(|n| (target.clone(), n.clone())),
            );
        }
        seen.insert(target, names);
    }
    out
}

/// ok / late / down from a heartbeat's age and whether its pid lives.
pub fn judge(age_ms: Option<u64>, alive: bool, interval_ms: u64, stale_ms: u64) -> BeatState {
    match age_ms {
        _ if !alive => BeatState::Down,
        None => BeatState::Down,
        Some(a) if a > stale_ms => BeatState::Down,
        Some(a) if a > interval_ms => BeatState::Late,
        Some(_) => BeatState::Ok,
    }
}

fn ms_rfc3339(ms: u64) -> String {
    ghost_core::time::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// A process with this pid exists (a zombie counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the state.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn proc_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The claim beside an active entry names a process on this host that is gone.
fn claim_orphaned(record: &Path) -> bool {
    let Ok(r) = ghost_core::fs::read_json::<EntryRecord>(record) else {
        return false; // being written, or moved on since the listing
    };
    match r.claim {
        Some(c) if c.host == ghost_core::hostname() => !pid_alive(c.pid),
        _ => false,
    }
}

/// Why the summary of terminal entry `name` is not intact: missing, or its
/// JSON differs from the backup's.
pub fn summary_problem(dir: &Path, name: &str) -> Option<String> {
    let files = ghost_core::summary::SummaryFiles::new(dir, name);
    let main = std::fs::read(&files.json);
    let backup = std::fs::read(&files.backup_json);
    match (main, backup) {
        (Err(_), Err(_)) => Some("no summary".into()),
        (Err(_), Ok(_)) => Some("the summary is missing (its backup is there)".into()),
        (Ok(_), Err(_)) => Some("the summary's backup is missing".into()),
        (Ok(a), Ok(b)) => {
            let (ma, mb) = (ghost_core::md5_hex(&a), ghost_core::md5_hex(&b));
            (ma != mb).then(|| format!("MD5 {ma} differs from its backup's {mb}"))
        }
    }
}

/// Where the log writer falls back to when `logs/` cannot be written
/// (docs/formats.md, "When the log cannot be written").
pub fn log_fallback_dir(config: &Config) -> PathBuf {
    match &config.logs.fallback_dir {
        Some(d) => d.clone(),
        None => ghost_core::logging::fallback::default_dir(&config.root),
    }
}

/// Free space of the filesystem holding `path` (or its nearest existing ancestor).
pub fn disk(name: &str, path: &Path) -> Option<DiskHealth> {
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let s = nix::sys::statvfs::statvfs(p).ok()?;
    let frag = s.fragment_size() as u64;
    let total = s.blocks() as u64 * frag;
    let free = s.blocks_available() as u64 * frag;
    Some(DiskHealth {
        name: name.to_string(),
        path: path.to_path_buf(),
        total_bytes: total,
        free_bytes: free,
        free_percent: if total == 0 {
            100.0
        } else {
            100.0 * free as f64 / total as f64
        },
    })
}

fn paused(layout: &Layout, h: &Health) -> Option<String> {
    match ghost_core::pause::read(layout) {
        Ok(Some(ghost_core::pause::Pause::Record(r))) => {
            return Some(format!("intake paused by {}: {}", r.paused_by, r.reason))
        }
        Ok(Some(ghost_core::pause::Pause::Unreadable { .. })) => {
            return Some("intake paused (state/pause.json does not read)".into())
        }
        _ => {}
    }
    match h.components.get("executor") {
        Some(c) if c.status.as_deref() == Some("paused") && c.state == BeatState::Ok => {
            Some("the executor paused claiming (see its heartbeat)".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_and_down_are_different() {
        assert_eq!(judge(Some(100), true, 200, 1000), BeatState::Ok);
        assert_eq!(judge(Some(201), true, 200, 1000), BeatState::Late);
        assert_eq!(judge(Some(1001), true, 200, 1000), BeatState::Down);
        assert_eq!(
            judge(Some(1), false, 200, 1000),
            BeatState::Down,
            "pid gone"
        );
        assert_eq!(judge(None, true, 200, 1000), BeatState::Down);
    }

    #[test]
    fn failures_are_news_once_and_never_on_the_first_run() {
        let l = |t: &str, n: &[&str]| (t.to_string(), n.iter().map(|s| s.to_string()).collect());
        let mut seen = None;
        // The first monitor on the root: what is there is recorded, not told.
        assert!(take_in_failed(&mut seen, vec![l("default", &["a", "b"])]).is_empty());
        assert_eq!(seen.as_ref().unwrap()["default"], ["a", "b"]);
        // Failed since (with or without a monitor running): told once.
        let new = take_in_failed(&mut seen, vec![l("default", &["a", "b", "c"])]);
        assert_eq!(new, [("default".to_string(), "c".to_string())]);
        assert!(take_in_failed(&mut seen, vec![l("default", &["a", "b", "c"])]).is_empty());
        // A target not listed this cycle keeps what was seen.
        assert!(take_in_failed(&mut seen, vec![]).is_empty());
        // Retried away and failed again: news again. A new target: news.
        assert!(take_in_failed(&mut seen, vec![l("default", &["a", "b"])]).is_empty());
        let new = take_in_failed(
            &mut seen,
            vec![l("default", &["a", "b", "c"]), l("other", &["x"])],
        );
        assert_eq!(
            new,
            [
                ("default".to_string(), "c".to_string()),
                ("other".to_string(), "x".to_string())
            ]
        );
    }

    #[test]
    fn pid_alive_sees_us_and_not_a_reaped_child() {
        assert!(pid_alive(std::process::id()));
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert!(!pid_alive(pid));
        assert!(!pid_alive(0));
    }

    #[test]
    fn counts_ages_and_summaries_from_listings() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let config = Config {
            root: root.clone(),
            ..Config::default()
        };
        let l = Layout::new(&root);
        l.create(["default"]).unwrap();
        let q = l.queue("default");
        for _ in 0..3 {
            q.enqueue(b"{}").unwrap();
        }
        let mut c = Collector::new();
        let now = ghost_core::time::unix_ms(SystemTime::now());
        let (h, _) = c.collect(&config, &l, now + 20 * 60_000);
        let p = &h.targets["default"].states["pending"];
        assert_eq!(p.count, 3);
        assert_eq!(h.targets["default"].stale_pending, 3, "20 min > 15 min");
        assert_eq!(p.buckets[bucket_of(20 * 60)], 3);
        assert!(p.oldest_age_s.unwrap() >= 20 * 60);
        assert!(h
            .disks
            .iter()
            .any(|d| d.name == "root" && d.total_bytes > 0));
        assert_eq!(h.components["executor"].state, BeatState::Absent);

        // A done entry without a summary is reported; once written, it is fine.
        let n = q.enqueue(b"{}").unwrap();
        ghost_core::fs::durable_move(
            &q.entry_path(QueueState::Pending, &n),
            &q.entry_path(QueueState::Done, &n),
        )
        .unwrap();
        let (h, f) = c.collect(&config, &l, now);
        assert_eq!(h.summaries.corrupt, [format!("default/{n}")]);
        assert!(f.newly_failed.is_empty());
        let dir = l.summaries("default");
        ghost_core::fs::durable_write(&dir.join(format!("{n}.json")), b"{}", 0o600).unwrap();
        ghost_core::fs::durable_write(&dir.join(".backup").join(format!("{n}.json")), b"{}", 0o600)
            .unwrap();
        let (h, _) = c.collect(&config, &l, now);
        assert!(h.summaries.corrupt.is_empty());
        assert_eq!(h.summaries.verified, 1);
        // Verified summaries are not read again until the full sweep…
        ghost_core::fs::durable_write(&dir.join(format!("{n}.json")), b"{ }", 0o600).unwrap();
        let (h, _) = c.collect(&config, &l, now + 1000);
        assert!(h.summaries.corrupt.is_empty());
        // … which finds the change.
        let (h, _) = c.collect(&config, &l, now + 25 * 3_600_000);
        assert_eq!(h.summaries.corrupt.len(), 1);
    }
}
