//! ghost-executor: claims patches from `queue/<target>/pending/` and applies each
//! as an all-or-nothing transaction (see [`engine`]). One worker per target
//! keeps each target's queue FIFO and one patch at a time; targets run in
//! parallel. A `notify` watcher wakes the workers, and a periodic rescan covers
//! events the watcher drops.

pub mod command;
pub mod decision;
pub mod engine;
pub mod git;
pub mod journal;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use ghost_core::fs::LockFile;
use ghost_core::heartbeat::HeartbeatWriter;
use ghost_core::queue::QueueState;
use ghost_core::{Config, Layout};

use engine::{Counters, TargetCtx};

/// Arm the failpoints named in `FAILPOINTS` (only in builds with the
/// `failpoints` feature, which the test builds enable; a no-op otherwise).
pub fn init_failpoints() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
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

fn queue_stats(ctxs: &[Arc<TargetCtx>]) -> serde_json::Value {
    let mut targets = serde_json::Map::new();
    for c in ctxs {
        let mut m = BTreeMap::new();
        for s in QueueState::OPEN {
            m.insert(s.name(), c.queue.list(s).map(|v| v.len()).unwrap_or(0));
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

async fn worker(
    ctx: Arc<TargetCtx>,
    wake: Arc<Notify>,
    opts: RunOptions,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) {
    let scan = ctx.cfg.executor.scan_interval;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // Anything in active/ that this (sequential) worker is not processing is
        // an orphan of an error or a crash: resolve it the way start-up does.
        let c = ctx.clone();
        let orphans =
            blocking(move || c.queue.list(QueueState::Active).map(|v| !v.is_empty())).await;
        if orphans.unwrap_or(false) {
            let c = ctx.clone();
            if let Err(e) = blocking(move || engine::recover(&c)).await {
                error!(event = "RECOVERY_FAILED", target = %ctx.target, error = %e, "could not resolve entries in active/");
                tokio::select! {
                    _ = tokio::time::sleep(scan) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
        }
        let c = ctx.clone();
        let next_due = blocking(move || engine::promote_due(&c))
            .await
            .unwrap_or_else(|e| {
                warn!(target = %ctx.target, error = %e, "could not scan deferred/");
                None
            });
        let c = ctx.clone();
        let first = blocking(move || c.queue.list(QueueState::Pending)).await;
        match first {
            Ok(names) if !names.is_empty() => {
                let (c, h, name) = (ctx.clone(), hard_stop.clone(), names[0].clone());
                let pause = match blocking(move || engine::process_one(&c, &name, &h)).await {
                    Ok(Some(_)) => false,
                    // Not claimed: moved meanwhile, or the tree is busy. Look again soon.
                    Ok(None) => true,
                    Err(e) => {
                        error!(event = "EXECUTOR_ERROR", target = %ctx.target, error = %e, "processing failed; the entry is resolved by recovery");
                        true
                    }
                };
                if pause {
                    tokio::select! {
                        _ = tokio::time::sleep(scan.min(Duration::from_millis(250))) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => warn!(target = %ctx.target, error = %e, "could not list pending/"),
        }
        if opts.drain {
            break;
        }
        let wait = next_due.map_or(scan, |d| d.min(scan));
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => {}
        }
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
    let _lock = match LockFile::try_acquire(&layout.lock("executor")) {
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
        let n = blocking(move || engine::recover(&c2)).await?;
        if n > 0 {
            info!(event = "RECOVERY_DONE", target = %c.target, entries = n, "resolved entries left in active/");
        }
    }

    // Wake a target's worker when something lands in its pending/.
    let wakes: Vec<Arc<Notify>> = ctxs.iter().map(|_| Arc::new(Notify::new())).collect();
    let dirs: Vec<(std::path::PathBuf, Arc<Notify>)> = ctxs
        .iter()
        .zip(&wakes)
        .map(|(c, w)| (c.queue.dir(QueueState::Pending), w.clone()))
        .collect();
    let dirs_cb = dirs.clone();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                for (d, w) in &dirs_cb {
                    if ev.paths.iter().any(|p| p.starts_with(d)) {
                        w.notify_one();
                    }
                }
            }
            // An overflowed or failed watch: wake everyone, the rescan finds the work.
            Err(_) => dirs_cb.iter().for_each(|(_, w)| w.notify_one()),
        })
        .map_err(|e| ExecError::Other(format!("cannot start the file watcher: {e}")))?;
    for (d, _) in &dirs {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            warn!(dir = %d.display(), error = %e, "cannot watch; relying on the periodic rescan");
        }
    }

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
    let workers: Vec<_> = ctxs
        .iter()
        .zip(&wakes)
        .map(|(c, w)| {
            tokio::spawn(worker(
                c.clone(),
                w.clone(),
                opts,
                shutdown.clone(),
                hard_stop.clone(),
            ))
        })
        .collect();

    let done = CancellationToken::new();
    let beat = {
        let (ctxs, counters, done, tick) = (
            ctxs.clone(),
            counters.clone(),
            done.clone(),
            cfg.heartbeat.interval.min(Duration::from_secs(1)),
        );
        tokio::spawn(async move {
            loop {
                let (c2, k2) = (ctxs.clone(), counters.clone());
                let details = blocking(
                    move || json!({"queues": queue_stats(&c2), "counters": k2.snapshot()}),
                )
                .await;
                if let Err(e) = hb.beat("running", details) {
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
    for w in workers {
        let _ = w.await;
    }
    done.cancel();
    drop(watcher);
    if let Ok(mut hb) = beat.await {
        let details = json!({"queues": queue_stats(&ctxs), "counters": counters.snapshot()});
        let _ = hb.beat("stopped", details);
    }
    info!(event = "EXECUTOR_STOPPED", counters = %counters.snapshot(), "executor stopped");
    Ok(())
}
