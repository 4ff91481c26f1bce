//! ghost-monitor: watches everything that can go wrong and gets each problem
//! to a person once, through whatever channel still works (docs/monitor.md).
//!
//! One cycle ([`Monitor::cycle`]), every `monitor.interval` and soon after a
//! file event (an entry created or moved, an alert or a request dropped in):
//!
//! 1. collect the health model ([`collect`]) and write `state/health.json`;
//! 2. evaluate the rules ([`rules`]) and read `alerts/inbox/` and
//!    `alerts/requests/`;
//! 3. feed all of it to the correlation state machine ([`correlate`]), which
//!    decides which notifications are due;
//! 4. put those in the outbox, then write the alert book (`alerts/state.json`),
//!    then move the inbox and request files it took in to their `.done/`;
//! 5. deliver what is due from the outbox ([`deliver`]);
//! 6. every `retention.interval`, the maintenance cycle ([`maintain`]):
//!    archive what the retention made due, sweep orphans and stale temp files.
//!
//! The order in 4 is what makes a restart safe: the book never says "sent"
//! for a notification that is not in the outbox, and an outbox item the book
//! does not know is set aside at start-up (see [`deliver`]). An inbox file is
//! moved only after the book that took it in is durable, so a crash re-reads
//! it, and reading it twice changes nothing.
//!
//! The cycle runs on a thread of its own (HTTP delivery blocks); the async
//! [`run`] only bridges the shutdown token and the file watcher to it, and
//! serves the dashboard ([`dashboard`], `[monitor] listen`), which reads the
//! files the cycle writes and the metrics it updates.

pub mod collect;
pub mod correlate;
pub mod dashboard;
pub mod deliver;
pub mod dircache;
pub mod maintain;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use ghost_core::alert::{AlertSource, AlertStatus};
use ghost_core::alerting::{self, Book, EpisodeStatus, Origin, Request, Silence};
use ghost_core::health::{Health, Sample, SampleTarget};
use ghost_core::heartbeat::HeartbeatWriter;
use ghost_core::{Config, Layout};

use crate::correlate::{Event, Params, Signal};
use crate::deliver::{Channel, Sender};

/// The one error type of ghost-monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Core(#[from] ghost_core::Error),
    #[error("another ghost-monitor runs on this root: {0}")]
    Locked(ghost_core::Error),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("cannot start the file watcher: {0}")]
    Watch(String),
    #[error("the monitor thread failed: {0}")]
    Thread(String),
}

pub type Result<T, E = MonitorError> = std::result::Result<T, E>;

fn now_ms() -> u64 {
    ghost_core::time::unix_ms(SystemTime::now())
}

/// What woke the monitor's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Files,
    Stop,
}

/// The monitor's state between cycles.
pub struct Monitor {
    config: Config,
    layout: Layout,
    collector: collect::Collector,
    book: Book,
    params: Params,
    channels: BTreeMap<String, Channel>,
    sender: Sender,
    heartbeat: HeartbeatWriter,
    last_sample_min: u64,
    next_delivery_ms: Option<u64>,
    cycles: u64,
    /// The book as last written.
    last_book: Option<String>,
    /// The retention and sweep schedule ([`maintain`]).
    maintenance: maintain::Maintenance,
    /// What `/metrics` exports; shared with the dashboard.
    metrics: std::sync::Arc<dashboard::metrics::Metrics>,
    /// Per target, `failed/` as last listed (sorted names).
    failed_listed: BTreeMap<String, Vec<String>>,
    /// The book was read back after a failed cycle: compare every listing.
    retake_failed: bool,
}

/// What one cycle did (for the benchmark and the logs).
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    pub duration: Duration,
    pub firing: usize,
    pub notifications: usize,
    pub inbox_taken: usize,
}

impl Monitor {
    /// Open the monitor's files on `config.root`: create the directories, read
    /// the alert book, set aside outbox items it does not account for.
    pub fn open(config: Config) -> Result<Monitor> {
        let layout = Layout::new(&config.root);
        layout.create(config.targets.keys().map(String::as_str))?;
        for d in [
            layout.alerts_inbox_done(),
            layout.alerts_requests().join(".done"),
            layout.alerts_outbox(),
            layout.history(),
        ] {
            ghost_core::fs::ensure_dir(&d)?;
        }
        let book = alerting::read_book(&layout)?;
        let aside = deliver::set_aside_orphans(&layout, &book.committed);
        if aside > 0 {
            warn!(
                event = "ALERT_OUTBOX_ORPHAN",
                count = aside,
                "set aside outbox items from an interrupted cycle"
            );
        }
        let channels = deliver::channels(&config.alerts);
        let ttl = (config.monitor.repeat_interval * 2).max(Duration::from_secs(3600));
        let sender = Sender::new(&config.alerts, ttl)?;
        let heartbeat = HeartbeatWriter::new(&layout, "monitor", config.heartbeat.interval);
        info!(
            event = "MONITOR_STARTED",
            channels = %channels.keys().cloned().collect::<Vec<_>>().join(","),
            firing = book.episodes.values().filter(|e| e.status == EpisodeStatus::Firing).count(),
            "monitor started"
        );
        Ok(Monitor {
            params: Params::from_config(&config.monitor),
            maintenance: maintain::Maintenance::new(&config, now_ms()),
            collector: collect::Collector::new(),
            config,
            layout,
            book,
            channels,
            sender,
            heartbeat,
            last_sample_min: 0,
            next_delivery_ms: Some(0),
            cycles: 0,
            last_book: None,
            metrics: Default::default(),
            failed_listed: BTreeMap::new(),
            retake_failed: false,
        })
    }

    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Export into `metrics` (the dashboard's) from now on.
    pub fn set_metrics(&mut self, metrics: std::sync::Arc<dashboard::metrics::Metrics>) {
        self.metrics = metrics;
    }

    /// One full cycle (see the module comment).
    pub fn cycle(&mut self) -> Result<CycleReport> {
        let started = std::time::Instant::now();
        let now = now_ms();
        let (mut health, mut findings) = self.collector.collect(&self.config, &self.layout, now);
        // Taken in with the episodes they start, in the book write below.
        // After a failed cycle (the book read back) every last listing is
        // compared again: what that cycle took in was never written.
        for (t, names) in &findings.failed_listed {
            self.failed_listed.insert(t.clone(), names.clone());
        }
        let listed = if std::mem::take(&mut self.retake_failed) {
            self.failed_listed
                .iter()
                .map(|(t, n)| (t.clone(), n.clone()))
                .collect()
        } else {
            std::mem::take(&mut findings.failed_listed)
        };
        findings.newly_failed = collect::take_in_failed(&mut self.book.failed_seen, listed);
        let signals = rules::evaluate(&self.config, &health, &findings);

        let mut events: Vec<Event> = Vec::new();
        let held: BTreeSet<String> = signals
            .iter()
            .filter(|s| s.origin == Origin::Rule)
            .map(|s| s.fingerprint.clone())
            .collect();
        for e in self.book.episodes.values() {
            if e.status == EpisodeStatus::Firing
                && (e.origin == Origin::Rule || e.seen_by_rule)
                && !held.contains(&e.fingerprint)
            {
                events.push(Event::Clear {
                    fingerprint: e.fingerprint.clone(),
                    by: Origin::Rule,
                });
            }
        }
        events.extend(signals.into_iter().map(Event::Fire));
        let (inbox_events, inbox_files) = read_inbox(&self.layout);
        let inbox_taken = inbox_files.len();
        events.extend(inbox_events);
        let (req_events, req_files) = read_requests(&self.layout, now);
        events.extend(req_events);
        events.push(Event::Tick);

        let mut notes = Vec::new();
        let mut ids = || uuid::Uuid::now_v7().to_string();
        for ev in events {
            notes.extend(correlate::next(
                &mut self.book,
                ev,
                now,
                &self.params,
                &mut ids,
            ));
        }
        for n in &notes {
            deliver::enqueue(&self.layout, n, &self.channels)?;
        }
        // The book is the commit point of the notifications above; unchanged,
        // it is not written again (an idle cycle costs no fsync for it).
        let text = serde_json::to_string(&self.book).expect("the book serialises");
        if self.last_book.as_deref() != Some(text.as_str()) {
            alerting::write_book(&self.layout, &self.book)?;
            self.last_book = Some(text);
        }
        for (from, dir) in inbox_files.into_iter().chain(req_files) {
            take(&from, &dir);
        }
        for n in &notes {
            deliver::announce(&self.layout, n, &self.channels);
            self.next_delivery_ms = Some(0);
        }

        let firing: Vec<String> = self
            .book
            .episodes
            .values()
            .filter(|e| e.status == EpisodeStatus::Firing)
            .map(|e| e.fingerprint.clone())
            .collect();
        health.firing = firing.clone();
        health.cycle_ms = started.elapsed().as_millis() as u64;
        health.generated_at = ghost_core::time::now_rfc3339();
        ghost_core::health::write(&self.layout, &health)?;
        for s in self.collector.take_finished() {
            self.metrics.observe(&s);
        }
        let watchdog = ghost_core::watchdog::read_state(&self.layout)
            .ok()
            .flatten();
        self.metrics.update(&health, watchdog.as_ref());
        self.sample(&health, now);
        self.cycles += 1;
        if findings.work >= TRIM_AFTER_WORK {
            trim_heap();
        }
        Ok(CycleReport {
            duration: started.elapsed(),
            firing: firing.len(),
            notifications: notes.len(),
            inbox_taken,
        })
    }

    /// After a failed cycle: the book on disk is the truth again, and outbox
    /// items the failed cycle wrote without recording them are set aside
    /// (their episodes are still owed a message and get it next cycle).
    pub fn recover(&mut self) {
        match alerting::read_book(&self.layout) {
            Ok(b) => {
                self.book = b;
                self.last_book = None;
                self.retake_failed = true;
                deliver::set_aside_orphans(&self.layout, &self.book.committed);
            }
            Err(e) => {
                error!(event = "MONITOR_ERROR", error = %e, "cannot read the alert book back; keeping the one in memory")
            }
        }
    }

    /// Deliver what is due from the outbox.
    pub fn deliver(&mut self) {
        let now = now_ms();
        if self.next_delivery_ms.is_some_and(|t| t <= now) {
            self.next_delivery_ms = deliver::deliver_due(
                &self.layout,
                &self.channels,
                &self.sender,
                &self.config.alerts,
                &now_ms,
            );
        }
    }

    /// Run the maintenance cycle when it is due (see [`maintain`]).
    pub fn maintain(&mut self) {
        if self.maintenance.tick(&self.config, now_ms()).is_some() {
            self.beat("running");
        }
    }

    /// Write the heartbeat (deduplicated by content within the interval).
    pub fn beat(&mut self, status: &str) {
        let firing = self
            .book
            .episodes
            .values()
            .filter(|e| e.status == EpisodeStatus::Firing)
            .count();
        let details = json!({"firing": firing, "cycles": self.cycles, "channels": self.channels.keys().collect::<Vec<_>>(), "maintenance": self.maintenance.last()});
        if let Err(e) = self.heartbeat.beat(status, details) {
            warn!(event = "HEARTBEAT_FAILED", error = %e, "cannot write the heartbeat");
        }
    }

    /// One history sample a minute, one file per hour; older files dropped.
    fn sample(&mut self, h: &Health, now: u64) {
        let minute = now / 60_000;
        if minute == self.last_sample_min {
            return;
        }
        self.last_sample_min = minute;
        let s = Sample {
            at_ms: now,
            targets: h
                .targets
                .iter()
                .map(|(t, th)| {
                    let c = |s: &str| th.states.get(s).map(|x| x.count).unwrap_or(0);
                    (
                        t.clone(),
                        SampleTarget {
                            pending: c("pending"),
                            active: c("active"),
                            stuck: c("stuck"),
                            failed: c("failed"),
                            done_per_min: th.done_per_min,
                            failed_per_min: th.failed_per_min,
                        },
                    )
                })
                .collect(),
            firing: h.firing.len(),
        };
        let file = ghost_core::health::history_file(&self.layout, now);
        let line = serde_json::to_string(&s).expect("a sample serialises");
        if let Err(e) = ghost_core::fs::append_line(&file, &line) {
            warn!(event = "HISTORY_FAILED", error = %e, "cannot append to the history");
        }
        let keep = self.config.monitor.history_keep.as_millis() as u64;
        let oldest = ghost_core::health::history_file(&self.layout, now.saturating_sub(keep));
        for p in std::fs::read_dir(self.layout.history())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
        {
            if p.extension().is_some_and(|x| x == "jsonl") && p < oldest {
                // The history is a chart's data, not a record: dropping the
                // oldest hour is the bound the dashboard relies on.
                let _ = ghost_core::fs::durable_remove(&p);
            }
        }
    }

    /// When the next cycle or delivery is due (Unix ms).
    pub fn next_due_ms(&self, last_cycle_ms: u64) -> u64 {
        let now = now_ms();
        let mut due = last_cycle_ms + self.config.monitor.interval.as_millis() as u64;
        due = due.min(self.maintenance.next_ms().max(now));
        due = due.min(now + self.config.heartbeat.interval.as_millis() as u64);
        if let Some(d) = self.next_delivery_ms {
            due = due.min(d.max(now));
        }
        let p = &self.params;
        let mut consider = |t: u64| {
            if t > now {
                due = due.min(t);
            }
        };
        for e in self.book.episodes.values() {
            if let Some(s) = e.pending_since_ms {
                consider(s + p.group_wait_ms);
            }
            if let Some(t) = e.last_notified_ms {
                consider(t + p.dedup_window_ms);
                consider(t + p.repeat_interval_ms);
            }
        }
        for s in &self.book.silences {
            consider(s.until_ms);
        }
        due
    }
}

/// A cycle that listed or checked at least this many entries gives the
/// freed heap back afterwards ([`trim_heap`]).
const TRIM_AFTER_WORK: usize = 10_000;

/// Give the heap that a large cycle freed back to the system.
///
/// The first cycle on a large root (and a full rescan or summary sweep)
/// allocates tens of MiB for a moment — 100,000 names listed, as many
/// summaries read — and keeps a few MiB of it; glibc returns freed memory
/// only from the top of the heap by itself, so the rest would stay in the
/// idle monitor's RSS for good. `malloc_trim(0)` releases every free page.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks;
    // it takes no pointer from us and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Move a file taken in to `dir` (never deleted: `.done/` is the record).
fn take(from: &Path, dir: &Path) {
    let Some(name) = from.file_name() else { return };
    if let Err(e) = ghost_core::fs::ensure_dir(dir)
        .and_then(|_| ghost_core::fs::durable_move(from, &dir.join(name)))
    {
        error!(event = "ALERT_INBOX_FAILED", path = %from.display(), error = %e, "cannot move a file taken in; it will be read again (harmless)");
    }
}

/// The inbox's alerts as events, and the files to move once the book is written.
fn read_inbox(layout: &Layout) -> (Vec<Event>, Vec<(PathBuf, PathBuf)>) {
    let mut ev = Vec::new();
    let mut files = Vec::new();
    let done = layout.alerts_inbox_done();
    for p in ghost_core::alert::inbox(layout).unwrap_or_default() {
        match ghost_core::alert::read(&p) {
            Ok(a) => {
                info!(event = "ALERT_RECEIVED", fingerprint = %a.fingerprint, status = ?a.status, source = ?a.source, "inbox alert taken in");
                match a.status {
                    AlertStatus::Firing => {
                        let component = a.child.clone().unwrap_or_else(|| match a.source {
                            AlertSource::Executor => "executor".into(),
                            AlertSource::Bridge => "bridge".into(),
                            AlertSource::Watchdog => "watchdog".into(),
                            AlertSource::Monitor => "monitor".into(),
                            AlertSource::Ghostctl => "ghostctl".into(),
                            AlertSource::Unknown => "unknown".into(),
                        });
                        let subject = a
                            .queue_name
                            .clone()
                            .or(a.child.clone())
                            .or(a.patch_id.clone())
                            .unwrap_or_default();
                        let mut message = a.message.clone();
                        if let Some(t) = &a.stderr_tail {
                            let tail: String = t
                                .chars()
                                .rev()
                                .take(500)
                                .collect::<Vec<_>>()
                                .into_iter()
                                .rev()
                                .collect();
                            message.push_str(&format!("\nLast output:\n{tail}"));
                        }
                        ev.push(Event::Fire(Signal {
                            fingerprint: a.fingerprint,
                            component,
                            subject,
                            severity: a.severity,
                            title: a.title,
                            message,
                            origin: Origin::Inbox,
                        }));
                    }
                    AlertStatus::Resolved => ev.push(Event::Clear {
                        fingerprint: a.fingerprint,
                        by: Origin::Inbox,
                    }),
                }
                files.push((p, done.clone()));
            }
            Err(e) => {
                // Half-written files never show (durable writes); this one is bad.
                error!(event = "ALERT_INBOX_UNREADABLE", path = %p.display(), error = %e, "an inbox file is not an alert; set aside in alerts/inbox/.rejected/");
                files.push((p, layout.alerts_inbox().join(".rejected")));
            }
        }
    }
    (ev, files)
}

/// `alerts/requests/` as events.
fn read_requests(layout: &Layout, now: u64) -> (Vec<Event>, Vec<(PathBuf, PathBuf)>) {
    let dir = layout.alerts_requests();
    let done = dir.join(".done");
    let paths = deliver::json_files(&dir);
    let mut ev = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        match ghost_core::fs::read_json::<Request>(&p) {
            Ok(Request::Silence {
                matcher,
                duration,
                reason,
                by,
                ..
            }) => match humantime::parse_duration(&duration) {
                Ok(d) => {
                    let id = p
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("")
                        .to_string();
                    info!(event = "ALERT_SILENCED", silence = %id, matcher = %matcher, by = %by, duration = %duration, reason = %reason, "silence added");
                    ev.push(Event::Silence(Silence {
                        id,
                        matcher,
                        until_ms: now + d.as_millis() as u64,
                        reason,
                        by,
                        created_ms: now,
                    }));
                }
                Err(e) => {
                    error!(event = "ALERT_REQUEST_BAD", path = %p.display(), error = %e, "a silence with a bad duration; ignored")
                }
            },
            Ok(Request::Unsilence { matcher, by, .. }) => {
                info!(event = "ALERT_UNSILENCED", matcher = %matcher, by = %by, "silence removed");
                ev.push(Event::Unsilence { matcher });
            }
            Ok(Request::Ack { matcher, by, .. }) => {
                info!(event = "ALERT_ACKED", matcher = %matcher, by = %by, "acknowledged");
                ev.push(Event::Ack { matcher, by });
            }
            Err(e) => {
                error!(event = "ALERT_REQUEST_BAD", path = %p.display(), error = %e, "an unreadable request; ignored")
            }
        }
        files.push((p, done.clone()));
    }
    (ev, files)
}

/// Run the monitor until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let layout = Layout::new(&config.root);
    let lock =
        ghost_core::fs::LockFile::try_acquire(&layout.lock("monitor")).map_err(|e| match e {
            e @ ghost_core::Error::Locked { .. } => MonitorError::Locked(e),
            e => MonitorError::Core(e),
        })?;
    let metrics = std::sync::Arc::new(dashboard::metrics::Metrics::new());
    let web_stop = CancellationToken::new();
    let web = start_dashboard(&config, &layout, metrics.clone(), web_stop.clone()).await;
    let (tx, rx) = mpsc::channel::<Wake>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let wake = tx.clone();
    let thread = std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || {
            let r = engine(config, metrics, wake, rx);
            let _ = done_tx.send(r);
        })
        .map_err(|e| MonitorError::Thread(e.to_string()))?;
    let r = tokio::select! {
        _ = shutdown.cancelled() => {
            let _ = tx.send(Wake::Stop);
            (&mut done_rx).await
        }
        r = &mut done_rx => r,
    };
    // It has sent its result: the join is immediate.
    let _ = thread.join();
    web_stop.cancel();
    if let Some(w) = web {
        // Open requests get a moment to finish; a stuck client cannot hold the exit.
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    drop(lock);
    r.unwrap_or_else(|_| Err(MonitorError::Thread("ended without a result".into())))
}

/// Start the dashboard on `monitor.listen` (empty: no dashboard). A
/// dashboard that cannot start is logged as an error and the monitor goes
/// on: its alerts matter more than its web page.
async fn start_dashboard(
    config: &Config,
    layout: &Layout,
    metrics: std::sync::Arc<dashboard::metrics::Metrics>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let listen = config.monitor.listen.trim();
    if listen.is_empty() {
        info!(
            event = "DASHBOARD_DISABLED",
            "monitor.listen is empty: no dashboard"
        );
        return None;
    }
    let auth = match dashboard::auth::Auth::load(layout) {
        Ok(a) => a,
        Err(e) => {
            error!(event = "DASHBOARD_FAILED", error = %e, "cannot load the dashboard token; no dashboard");
            return None;
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(event = "DASHBOARD_FAILED", listen, error = %e, "cannot listen for the dashboard; the monitor goes on without it");
            return None;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| listen.to_string());
    // Where the token is, never what it is.
    info!(event = "DASHBOARD_LISTENING", url = %format!("http://{addr}/"), token = %auth.source, "dashboard listening");
    let state = std::sync::Arc::new(dashboard::Dashboard {
        config: config.clone(),
        layout: layout.clone(),
        auth,
        metrics,
        listings: Default::default(),
    });
    Some(tokio::spawn(async move {
        if let Err(e) = dashboard::serve(listener, state, stop).await {
            error!(event = "DASHBOARD_FAILED", error = %e, "the dashboard stopped");
        }
    }))
}

/// The monitor's thread: cycles until told to stop.
fn engine(
    config: Config,
    metrics: std::sync::Arc<dashboard::metrics::Metrics>,
    wake: mpsc::Sender<Wake>,
    rx: mpsc::Receiver<Wake>,
) -> Result<()> {
    let debounce = config.monitor.debounce;
    let layout = Layout::new(&config.root);
    let rescan = config.monitor.full_rescan_interval;
    let mut m = Monitor::open(config)?;
    let dirty = m.collector.watch(rescan);
    m.set_metrics(metrics);
    // Wake on entries created or moved, alerts and requests dropped in; not
    // on writes to open files, so a busy log does not wake the monitor.
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let interesting = match &res {
            Ok(ev) => {
                ev.need_rescan()
                    || matches!(
                        ev.kind,
                        notify::EventKind::Create(_)
                            | notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                            | notify::EventKind::Remove(_)
                    )
            }
            Err(_) => true,
        };
        if interesting {
            dircache::mark(&dirty, &res);
            let _ = wake.send(Wake::Files);
        }
    })
    .map_err(|e| MonitorError::Watch(e.to_string()))?;
    let mut dirs = vec![layout.alerts_inbox(), layout.alerts_requests()];
    for t in layout.queue_targets() {
        let q = layout.queue(&t);
        for s in ghost_core::queue::QueueState::ALL {
            dirs.push(q.dir(s));
        }
    }
    for d in &dirs {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            warn!(dir = %d.display(), error = %e, "cannot watch; relying on the interval");
        }
    }
    m.beat("running");
    loop {
        let started = now_ms();
        match m.cycle() {
            Ok(r) => {
                if r.notifications > 0 || r.inbox_taken > 0 {
                    info!(
                        event = "MONITOR_CYCLE",
                        ms = r.duration.as_millis() as u64,
                        firing = r.firing,
                        notifications = r.notifications,
                        inbox = r.inbox_taken,
                        "cycle"
                    );
                }
            }
            Err(e) => {
                error!(event = "MONITOR_ERROR", error = %e, "cycle failed; trying again next cycle");
                m.recover();
            }
        }
        m.deliver();
        m.maintain();
        m.beat("running");
        // Sleep until something is due, a file event (debounced) or Stop.
        loop {
            let due = m.next_due_ms(started);
            let now = now_ms();
            if due <= now {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(due - now)) {
                Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    m.beat("stopped");
                    info!(event = "MONITOR_STOPPED", "monitor stopped");
                    return Ok(());
                }
                Ok(Wake::Files) => {
                    // Let a burst settle, then one cycle for all of it.
                    std::thread::sleep(debounce);
                    let mut stop = false;
                    while let Ok(w) = rx.try_recv() {
                        stop |= w == Wake::Stop;
                    }
                    if stop {
                        m.beat("stopped");
                        info!(event = "MONITOR_STOPPED", "monitor stopped");
                        return Ok(());
                    }
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if due <= now_ms() {
                break;
            }
            m.beat("running");
        }
    }
}
