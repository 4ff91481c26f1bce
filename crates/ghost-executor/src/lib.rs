//! ghost-executor: claims patches from `queue/<target>/pending/` and applies each
//! as an all-or-nothing transaction (see [`engine`]). One worker per target
//! keeps each target's queue FIFO and one patch at a time; targets run in
//! parallel. Each worker keeps its target's due entries in memory ([`due`]);
//! a `notify` watcher reports arrivals and wakes the workers, and a periodic
//! rescan covers events the watcher drops. Idle, nothing runs but the timers.

pub mod batch;
pub mod command;
pub mod decision;
pub mod due;
pub mod engine;
pub mod git;
pub mod journal;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use ghost_core::fs::LockFile;
use ghost_core::heartbeat::HeartbeatWriter;
use ghost_core::logging::pause::{self as log_pause, LogPause};
use ghost_core::queue::QueueState;
use ghost_core::{Config, Layout};

use engine::{Counters, TargetCtx};

/// Arm the failpoints named in `FAILPOINTS` (only in builds with the
/// `failpoints` feature, which the test builds enable; a no-op otherwise).
pub fn init_failpoints() {
    ghost_core::init_failpoints();
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Process everything pending (and deferred entries already due), then return.
    pub drain: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Another executor holds the root: a usage problem (exit 2).
    #[error("another ghost-executor is running on this root{}; lock {}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    Locked {
        path: std::path::PathBuf,
        pid: Option<u32>,
    },
    #[error(transparent)]
    Core(#[from] ghost_core::Error),
    #[error("{0}")]
    Other(String),
}

/// Drop an alert for the monitor into `alerts/inbox/` (see docs/formats.md).
pub fn raise_alert(layout: &Layout, target: &str, name: &str, patch_id: &str, message: &str) {
    let alert = ghost_core::alert::Alert::patch_stuck(target, name, patch_id, message);
    if let Err(e) = ghost_core::alert::write(layout, &alert) {
        error!(event = "ALERT_WRITE_FAILED", error = %e, "could not raise an alert");
    }
}

/// Entries per open state and target. `pending/` and `deferred/` are counted
/// from the workers' due lists (they may hold 100,000 entries); the other
/// states are small and listed.
fn queue_stats(ctxs: &[Arc<TargetCtx>], inboxes: &[Arc<due::Inbox>]) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let mut targets = serde_json::Map::new();
    for (c, i) in ctxs.iter().zip(inboxes) {
        let mut m = BTreeMap::new();
        for s in QueueState::OPEN {
            let n = match s {
                QueueState::Pending => i.pending_len.load(Relaxed),
                QueueState::Deferred => i.deferred_len.load(Relaxed),
                _ => c.queue.list(s).map(|v| v.len()).unwrap_or(0),
            };
            m.insert(s.name(), n);
        }
        targets.insert(c.target.clone(), json!(m));
    }
    serde_json::Value::Object(targets)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

/// Apply the due entries `due` (oldest first): as a batch when two or more
/// qualify, else the first on its own. False when the tree was busy.
fn step(
    ctx: &TargetCtx,
    list: &mut due::DueList,
    due: &[String],
    hard_stop: &CancellationToken,
) -> Result<bool, ghost_core::Error> {
    let mut forget = |names: &[String]| {
        for n in names {
            list.forget(n);
        }
    };
    if batch::worth_trying(ctx, due.len()) {
        match batch::process(ctx, due)? {
            batch::Batched::Done(n) if n > 0 => {
                // Claimed: not due here any more (an entry put back into
                // pending/ is reported by the watcher).
                forget(&due[..n]);
                return Ok(true);
            }
            batch::Batched::Busy => return Ok(false),
            batch::Batched::Done(_) | batch::Batched::Single => {}
        }
    }
    let name = &due[0];
    let r = engine::process_one(ctx, name, hard_stop);
    let left = !ctx.queue.entry_path(QueueState::Pending, name).exists();
    if matches!(r, Ok(Some(_))) || left {
        // Claimed, or moved meanwhile: not due here any more.
        forget(std::slice::from_ref(name));
    }
    // An error stays an error even when the entry has left pending/ (a claim
    // whose record could not be written): recovery resolves it in active/.
    r.map(|o| o.is_some() || left)
}

/// A worker that cannot do its work (a full disk, an I/O error, a read-only
/// root): alerted once when it starts, resolved when work succeeds again.
struct Blocked {
    since: String,
    error: String,
    /// Whether the firing alert got out (it may not while the disk is full;
    /// it is retried at each failure, and the resolution carries the story).
    alerted: bool,
}

fn blocked_alert(target: &str, b: &Blocked, resolved: bool) -> ghost_core::alert::Alert {
    use ghost_core::alert::{Alert, AlertSource, AlertStatus, Severity};
    let (title, message) = if resolved {
        (
            format!("the executor works on target {target} again"),
            format!("it could not work from {} on: {}", b.since, b.error),
        )
    } else {
        (
            format!("the executor cannot work on target {target}"),
            format!(
                "since {}: {}; it retries by itself and resumes once the cause is gone",
                b.since, b.error
            ),
        )
    };
    Alert {
        target: Some(target.to_string()),
        component: Some("executor".into()),
        error: Some(b.error.clone()),
        status: if resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        ..Alert::new(
            format!("executor_blocked:{target}"),
            Severity::Critical,
            AlertSource::Executor,
            title,
            message,
        )
    }
}

/// Note a failure of the worker's work: in a drain, the end of it (the error
/// is returned); in a daemon, a log line and, once, an alert.
fn note_failure(
    ctx: &TargetCtx,
    blocked: &mut Option<Blocked>,
    what: &str,
    e: &ghost_core::Error,
    drain: bool,
) -> Result<(), ExecError> {
    let error = format!("{what}: {e}");
    if drain {
        return Err(ExecError::Other(format!(
            "target {}: {error}; the drain stops here (the entries stay where they are, nothing is lost)",
            ctx.target
        )));
    }
    let b = blocked.get_or_insert_with(|| Blocked {
        since: ghost_core::time::now_rfc3339(),
        error: error.clone(),
        alerted: false,
    });
    b.error = error;
    if !b.alerted {
        error!(event = "EXECUTOR_BLOCKED", target = %ctx.target, error = %b.error, "cannot work on this target; retrying until the cause is gone");
        b.alerted = ghost_core::logging::fallback::raise(
            &ctx.layout,
            "executor",
            &blocked_alert(&ctx.target, b, false),
        );
    }
    Ok(())
}

/// Work succeeded: if the worker was blocked, say that it is not any more.
fn note_success(ctx: &TargetCtx, blocked: &mut Option<Blocked>) {
    if let Some(b) = blocked.take() {
        info!(event = "EXECUTOR_UNBLOCKED", target = %ctx.target, since = %b.since, error = %b.error, "working on this target again");
        ghost_core::logging::fallback::raise(
            &ctx.layout,
            "executor",
            &blocked_alert(&ctx.target, &b, true),
        );
    }
}

/// Wakes a worker thread: the watcher's callback (an arrival), the shutdown,
/// and the worker's own timed waits. A notification given while the worker
/// is busy is kept, like a permit, and ends its next wait at once.
#[derive(Debug, Default)]
pub struct Wake {
    notified: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.notified.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Sleep until notified or `timeout` has passed; consumes the notification.
    pub fn wait(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut n = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        while !*n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            n = self
                .cv
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *n = false;
    }
}

/// One target's worker: claims its due entries oldest first, one at a time.
/// The due list lives in memory ([`due`]); the directories are listed only at
/// start, every `executor.scan_interval`, and when the watcher overflowed.
///
/// It runs on a thread of its own and the watcher's callback wakes it
/// directly ([`Wake`]), so an arrival is claimed one thread hand-off after
/// its event, with no runtime hop in between.
fn worker(
    ctx: Arc<TargetCtx>,
    inbox: Arc<due::Inbox>,
    wake: Arc<Wake>,
    opts: RunOptions,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    log_paused: Arc<AtomicBool>,
) -> Result<(), ExecError> {
    use std::time::Instant;
    let scan = ctx.cfg.executor.scan_interval;
    let short = scan.min(Duration::from_millis(250));
    let mut blocked: Option<Blocked> = None;
    // This worker's own: only its thread reads or changes it.
    let mut list = due::DueList::new(ctx.queue.clone(), inbox.clone());
    let mut next_rescan = Instant::now();
    // Entries in active/ that this (sequential) worker is not processing are
    // orphans of an error or a crash; looked for at each rescan and after an error.
    let mut look_for_orphans = true;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // Our log cannot be written: claim nothing new until it can (the
        // heartbeat task decides; see ghost_core::logging::pause).
        if log_paused.load(Ordering::Relaxed) {
            if opts.drain {
                return Err(ExecError::Other(format!(
                    "target {}: the log cannot be written (see state/log-pause.json and the log fallback); the drain stops here (the entries stay where they are, nothing is lost)",
                    ctx.target
                )));
            }
            wake.wait(short);
            continue;
        }
        let rescan = Instant::now() >= next_rescan;
        if rescan || look_for_orphans {
            let orphans = ctx.queue.list(QueueState::Active).map(|v| !v.is_empty());
            if orphans.unwrap_or(false) {
                let r = engine::recover(&ctx);
                if !matches!(r, Ok(Some(_))) {
                    if let Err(e) = r {
                        error!(event = "RECOVERY_FAILED", target = %ctx.target, error = %e, "could not resolve entries in active/");
                        note_failure(
                            &ctx,
                            &mut blocked,
                            "could not resolve entries in active/",
                            &e,
                            opts.drain,
                        )?;
                    }
                    // Nothing is claimed before the orphans are resolved: an
                    // apply over a half-applied tree would mix two patches.
                    wake.wait(scan);
                    continue;
                }
            }
            look_for_orphans = false;
        }
        let refreshed = if rescan { list.rescan() } else { list.apply() };
        if rescan {
            next_rescan = Instant::now() + scan;
        }
        if let Err(e) = refreshed {
            warn!(target = %ctx.target, error = %e, "could not list the queue; retrying at the next scan");
        }
        let (due_now, next_due) = {
            let (ready, next) = list.due_deferred(SystemTime::now());
            for name in ready {
                list.promote(&name);
            }
            (list.first(ctx.cfg.executor.batch_max as usize), next)
        };
        if !due_now.is_empty() {
            let pause = match step(&ctx, &mut list, &due_now, &hard_stop) {
                Ok(true) => {
                    note_success(&ctx, &mut blocked);
                    false
                }
                // Not claimed: the tree is busy. Look again soon.
                Ok(false) => true,
                Err(e) => {
                    error!(event = "EXECUTOR_ERROR", target = %ctx.target, error = %e, "processing failed; the entry is resolved by recovery");
                    note_failure(&ctx, &mut blocked, "processing failed", &e, opts.drain)?;
                    look_for_orphans = true;
                    true
                }
            };
            if pause {
                wake.wait(short);
            }
            continue;
        }
        note_success(&ctx, &mut blocked);
        if opts.drain {
            break;
        }
        let until_rescan = next_rescan.saturating_duration_since(Instant::now());
        wake.wait(next_due.map_or(until_rescan, |d| d.min(until_rescan)));
    }
    Ok(())
}

/// Pause or resume claiming by the health of our log (called every heartbeat tick).
fn decide_log_pause(
    layout: &Layout,
    pause_after: Duration,
    paused: &mut Option<LogPause>,
    flag: &AtomicBool,
) {
    let Some(health) = ghost_core::logging::health() else {
        return;
    };
    let report = health.report();
    let over = report
        .failing_since
        .as_deref()
        .is_some_and(|f| log_pause::overridden(layout, f));
    let want = log_pause::should_pause(health.failing_for(SystemTime::now()), pause_after, over);
    match (want, paused.is_some()) {
        (true, false) => {
            let p = LogPause {
                component: "executor".into(),
                pid: std::process::id(),
                paused_at: ghost_core::time::now_rfc3339(),
                failing_since: report.failing_since.clone().unwrap_or_default(),
                error: report.last_error.clone(),
                fallback_path: report.fallback_path.clone(),
            };
            flag.store(true, Ordering::Relaxed);
            if let Err(e) = log_pause::write(layout, &p) {
                error!(event = "LOG_PAUSE_WRITE_FAILED", error = %e, "cannot record the log pause");
            }
            warn!(event = "EXECUTOR_PAUSED", failing_since = %p.failing_since, pause_after = ?pause_after, "the log cannot be written: claiming no new patches until it can");
            *paused = Some(p);
        }
        (false, true) => {
            flag.store(false, Ordering::Relaxed);
            if let Err(e) = log_pause::clear(layout) {
                error!(event = "LOG_PAUSE_WRITE_FAILED", error = %e, "cannot remove state/log-pause.json");
            }
            let why = if over {
                "overridden by the operator"
            } else {
                "the log works again"
            };
            info!(
                event = "EXECUTOR_RESUMED",
                reason = why,
                "claiming patches again"
            );
            *paused = None;
        }
        _ => {}
    }
}

/// Run the executor until `shutdown` (or, with `drain`, until nothing is due).
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    opts: RunOptions,
) -> Result<(), ExecError> {
    let cfg = Arc::new(config);
    let layout = Layout::new(cfg.root.clone());
    let targets: Vec<String> = cfg.targets.keys().cloned().collect();
    layout.create(targets.iter().map(String::as_str))?;
    // A killed predecessor's check child may hold the lock until it execs.
    let _lock = match LockFile::try_acquire_after(&layout.lock("executor"), Duration::from_secs(2))
    {
        Ok(l) => l,
        Err(ghost_core::Error::Locked { path, pid }) => {
            return Err(ExecError::Locked { path, pid })
        }
        Err(e) => return Err(e.into()),
    };
    // `run_as` users are resolved once, and every problem is reported at once.
    let mut run_as = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, t) in &cfg.targets {
        if let Some(user) = &t.run_as {
            match command::RunAs::resolve(user) {
                Ok(u) => {
                    run_as.insert(name.clone(), u);
                }
                Err(e) => problems.push(format!("targets.{name}.{e}")),
            }
        }
    }
    if !problems.is_empty() {
        return Err(ExecError::Other(format!(
            "bad configuration in {}:\n  - {}",
            cfg.source,
            problems.join("\n  - ")
        )));
    }
    let counters = Arc::new(Counters::default());
    let ctxs: Vec<Arc<TargetCtx>> = targets
        .iter()
        .map(|t| {
            let mut c = TargetCtx::new(cfg.clone(), t, counters.clone());
            c.run_as = run_as.get(t).cloned();
            Arc::new(c)
        })
        .collect();
    for c in &ctxs {
        #[allow(clippy::disallowed_methods)]
        // the user's working tree: their umask, not the data root's 0700
        std::fs::create_dir_all(&c.tree_path)
            .map_err(|e| ghost_core::Error::io("create working tree", &c.tree_path, e))?;
    }
    info!(event = "EXECUTOR_STARTED", root = %cfg.root.display(), config = %cfg.source, targets = ?targets, drain = opts.drain, "executor started");

    for dir in [layout.heartbeats(), layout.alerts_inbox()] {
        for p in ghost_core::fs::sweep_temp_files(&dir, cfg.executor.tmp_max_age) {
            info!(event = "STALE_FILE_REMOVED", path = %p.display(), "removed a stale temp file");
        }
    }
    let mut hb = HeartbeatWriter::new(&layout, "executor", cfg.heartbeat.interval);
    let _ = hb.beat("starting", json!({}));
    for c in &ctxs {
        let c2 = c.clone();
        // A busy tree, or (for a daemon) a failure such as a full disk, is
        // left to the target's worker, which claims nothing until its
        // orphans are resolved, alerts, and retries by itself.
        match blocking(move || engine::recover(&c2)).await {
            Ok(Some(n)) if n > 0 => {
                info!(event = "RECOVERY_DONE", target = %c.target, entries = n, "resolved entries left in active/");
            }
            Ok(_) => {}
            Err(e) if opts.drain => return Err(e.into()),
            Err(e) => {
                error!(event = "RECOVERY_FAILED", target = %c.target, error = %e, "could not resolve entries in active/; the worker retries");
            }
        }
    }

    // Wake a target's worker when an entry may have arrived in (or left) its
    // pending/ or deferred/; never on the workers' own reads (see due::wakes).
    let wakes: Vec<Arc<Wake>> = ctxs.iter().map(|_| Arc::default()).collect();
    let inboxes: Vec<Arc<due::Inbox>> = ctxs.iter().map(|_| Arc::default()).collect();
    let watched: Vec<(ghost_core::queue::Queue, Arc<due::Inbox>, Arc<Wake>)> = ctxs
        .iter()
        .zip(&inboxes)
        .zip(&wakes)
        .map(|((c, i), w)| (c.queue.clone(), i.clone(), w.clone()))
        .collect();
    let watched_cb = watched.clone();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if due::wakes(&ev.kind) => {
                let rescan = matches!(ev.kind, notify::EventKind::Any | notify::EventKind::Other)
                    || ev.need_rescan();
                for (q, i, w) in &watched_cb {
                    let mut hit = false;
                    for p in &ev.paths {
                        hit |= i.touch(q, p);
                    }
                    if rescan {
                        i.request_rescan();
                        hit = true;
                    }
                    if hit {
                        w.notify();
                    }
                }
            }
            Ok(_) => {}
            // An overflowed or failed watch: rescan everything.
            Err(_) => watched_cb.iter().for_each(|(_, i, w)| {
                i.request_rescan();
                w.notify();
            }),
        })
        .map_err(|e| ExecError::Other(format!("cannot start the file watcher: {e}")))?;
    for (q, _, _) in &watched {
        for d in due::watched_dirs(q) {
            if let Err(e) = watcher.watch(&d, RecursiveMode::NonRecursive) {
                warn!(dir = %d.display(), error = %e, "cannot watch; relying on the periodic rescan");
            }
        }
    }

    // A log pause left by a crashed executor means nothing now.
    if let Err(e) = log_pause::clear(&layout) {
        warn!(error = %e, "cannot remove a stale state/log-pause.json");
    }
    let log_paused = Arc::new(AtomicBool::new(false));
    let hard_stop = CancellationToken::new();
    {
        let (s, h, grace) = (
            shutdown.clone(),
            hard_stop.clone(),
            cfg.executor.shutdown_grace,
        );
        tokio::spawn(async move {
            s.cancelled().await;
            tokio::time::sleep(grace).await;
            h.cancel();
        });
    }
    {
        // A worker waiting for work hears of the shutdown at once.
        let (s, wakes) = (shutdown.clone(), wakes.clone());
        tokio::spawn(async move {
            s.cancelled().await;
            wakes.iter().for_each(|w| w.notify());
        });
    }
    let workers: Vec<_> = ctxs
        .iter()
        .zip(&wakes)
        .zip(&inboxes)
        .map(|((c, w), i)| {
            let (c, i, w) = (c.clone(), i.clone(), w.clone());
            let (s, h, l) = (shutdown.clone(), hard_stop.clone(), log_paused.clone());
            tokio::task::spawn_blocking(move || worker(c, i, w, opts, s, h, l))
        })
        .collect();

    let done = CancellationToken::new();
    let beat = {
        let (ctxs, inboxes, counters, done, tick) = (
            ctxs.clone(),
            inboxes.clone(),
            counters.clone(),
            done.clone(),
            cfg.heartbeat.interval.min(Duration::from_secs(1)),
        );
        let (layout, log_paused, pause_after) =
            (layout.clone(), log_paused.clone(), cfg.logs.pause_after);
        tokio::spawn(async move {
            let mut paused: Option<LogPause> = None;
            loop {
                decide_log_pause(&layout, pause_after, &mut paused, &log_paused);
                let (c2, i2, k2) = (ctxs.clone(), inboxes.clone(), counters.clone());
                let mut details = blocking(
                    move || json!({"queues": queue_stats(&c2, &i2), "counters": k2.snapshot()}),
                )
                .await;
                details["log_pause"] = json!(paused);
                let status = if paused.is_some() {
                    "paused"
                } else {
                    "running"
                };
                if let Err(e) = hb.beat(status, details) {
                    warn!(event = "HEARTBEAT_FAILED", error = %e, "cannot write heartbeat");
                }
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = done.cancelled() => break,
                }
            }
            hb
        })
    };
    // A drain ends at its first failure, with the reason; a daemon's
    // workers return only at shutdown.
    let mut failure = None;
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(event = "DRAIN_FAILED", error = %e, "the drain cannot finish");
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(ExecError::Other(format!("a worker panicked: {e}")));
            }
        }
    }
    done.cancel();
    drop(watcher);
    if let Ok(mut hb) = beat.await {
        let details =
            json!({"queues": queue_stats(&ctxs, &inboxes), "counters": counters.snapshot()});
        let _ = hb.beat("stopped", details);
    }
    // A stopped executor pauses nothing.
    let _ = log_pause::clear(&layout);
    info!(event = "EXECUTOR_STOPPED", counters = %counters.snapshot(), fsyncs = ghost_core::fs::fsync_count(), "executor stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
