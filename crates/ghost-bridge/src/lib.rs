//! ghost-bridge: where patches enter. An HTTP server, an inbox directory and
//! chat transcripts all feed one [`ingest::Ingestor`], which validates each
//! patch, deduplicates it by id, and answers only once the patch is durable in
//! `queue/<target>/pending/`.
//!
//! [`run`] holds the root's `bridge` lock for its whole life (one bridge per
//! root), serves HTTP until `shutdown` (through [`server::serve`], under the
//! limits of [`guard`]), then stops accepting, lets in-flight requests finish
//! (within a deadline), stops the inbox watcher and writes a final `stopped`
//! heartbeat.

pub mod auth;
pub mod guard;
pub mod http;
pub mod inbox;
pub mod ingest;
pub mod secrets;
pub mod server;
pub mod transcript;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use ghost_core::fs::LockFile;
use ghost_core::heartbeat::HeartbeatWriter;
use ghost_core::{Config, Layout};

use crate::ingest::Ingestor;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Another bridge holds the root: a usage problem (exit 2).
    #[error("another ghost-bridge is running on this root{}; lock {}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    Locked { path: PathBuf, pid: Option<u32> },
    /// The listen address cannot be bound (in use, not permitted, …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// A secret is misconfigured (e.g. an empty `bridge.token`): exit 2.
    #[error("bad secret configuration: {0}")]
    Secrets(String),
    #[error(transparent)]
    Core(#[from] ghost_core::Error),
    #[error("{0}")]
    Other(String),
}

/// How long in-flight requests may still run once shutdown begins: within
/// the watchdog's grace before its SIGKILL (`watchdog.stop_grace` minus 2 s,
/// at least 1 s).
fn drain_deadline(cfg: &Config) -> Duration {
    cfg.watchdog
        .stop_grace
        .saturating_sub(Duration::from_secs(2))
        .max(Duration::from_secs(1))
}

fn heartbeat_details(ing: &Ingestor, listen: &str, paused: bool) -> serde_json::Value {
    json!({
        "listen": listen,
        "counters": ing.counters.snapshot(),
        "pending": ing.refresh_depths(),
        "paused": paused,
    })
}

/// Where a secret is, for the start-up line (never the value).
fn where_from(src: &secrets::SecretSource) -> String {
    match src {
        secrets::SecretSource::File { path, generated } => format!(
            "in {}{}",
            path.display(),
            if *generated { ", generated now" } else { "" }
        ),
        secrets::SecretSource::Environment(v) => format!("from the environment ({v})"),
        secrets::SecretSource::Configuration(k) => format!("from the configuration ({k})"),
    }
}

/// Run the bridge until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), BridgeError> {
    let cfg = Arc::new(config);
    let layout = Layout::new(cfg.root.clone());
    layout.create(cfg.targets.keys().map(String::as_str))?;
    let _lock = match LockFile::try_acquire(&layout.lock("bridge")) {
        Ok(l) => l,
        Err(ghost_core::Error::Locked { path, pid }) => {
            return Err(BridgeError::Locked { path, pid })
        }
        Err(e) => return Err(e.into()),
    };
    // Temp files of a bridge killed mid-write (never in pending/: the rename
    // is the commit point); old enough that no live writer owns them.
    for t in cfg.targets.keys() {
        let tmp = layout.queue(t).tmp_dir();
        for p in ghost_core::fs::sweep_temp_files(&tmp, cfg.executor.tmp_max_age) {
            info!(event = "STALE_FILE_REMOVED", path = %p.display(), "removed a stale temp file");
        }
    }
    let secrets = match secrets::load(&cfg, &layout) {
        Ok(s) => s,
        Err(ghost_core::Error::Invalid(m)) => return Err(BridgeError::Secrets(m)),
        Err(e) => return Err(e.into()),
    };
    let ingestor = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || Ingestor::new(cfg))
            .await
            .map_err(|e| BridgeError::Other(format!("start-up scan failed: {e}")))??
    };
    let ingestor = Arc::new(ingestor);

    let listener = tokio::net::TcpListener::bind(&cfg.bridge.listen)
        .await
        .map_err(|source| BridgeError::Bind {
            addr: cfg.bridge.listen.clone(),
            source,
        })?;
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| cfg.bridge.listen.clone());
    // Where the secrets are, never what they are.
    info!(event = "BRIDGE_STARTED", listen = %listen, root = %cfg.root.display(), config = %cfg.source,
        token_source = %secrets.token_source, hmac_key_source = %secrets.hmac_source, "bridge started");
    eprintln!(
        "ghost-bridge listening on http://{listen} (token {}; HMAC key {})",
        where_from(&secrets.token_source),
        where_from(&secrets.hmac_source)
    );

    let mut hb = HeartbeatWriter::new(&layout, "bridge", cfg.heartbeat.interval);
    let _ = hb.beat("starting", json!({"listen": listen}));

    let inbox = tokio::spawn(inbox::run(ingestor.clone(), shutdown.clone()));

    let done = CancellationToken::new();
    let beat = {
        let (ing, done, listen) = (ingestor.clone(), done.clone(), listen.clone());
        let tick = cfg.heartbeat.interval.min(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                let (i2, l2) = (ing.clone(), listen.clone());
                let r = tokio::task::spawn_blocking(move || {
                    let paused = i2.paused();
                    (paused, heartbeat_details(&i2, &l2, paused))
                })
                .await;
                if let Ok((paused, details)) = r {
                    let status = if paused { "paused" } else { "running" };
                    if let Err(e) = hb.beat(status, details) {
                        warn!(event = "HEARTBEAT_FAILED", error = %e, "cannot write heartbeat");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = done.cancelled() => break,
                }
            }
            hb
        })
    };

    let state = http::AppState::new(ingestor.clone(), Arc::new(secrets));
    let guard = state.guard.clone();
    let app = http::router(state);
    // Aggregated refusal lines are flushed, and idle rate-limit state
    // forgotten, once per interval.
    let housekeeping = {
        let (guard, done) = (guard.clone(), done.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(guard.refusals.interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        guard.refusals.flush();
                        guard.rate.forget_idle();
                    }
                    _ = done.cancelled() => break,
                }
            }
            guard.refusals.flush();
        })
    };
    // The server stops on `shutdown`, or when the inbox task ends early (a
    // fatal inbox error: the bridge exits 1 so that a person hears of it).
    let stop = CancellationToken::new();
    let server = server::serve(listener, app, &cfg.bridge, guard, stop.clone());
    let mut inbox = inbox;
    let mut inbox_result: Option<Result<ghost_core::Result<()>, tokio::task::JoinError>> = None;
    // Whether the inbox ended on its own, before anyone asked it to. (On a
    // stop both branches below are ready at once; `select!` may pick either.)
    let mut inbox_early = false;
    let deadline = drain_deadline(&cfg);
    let serve = async {
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => return r,
            _ = shutdown.cancelled() => {}
            r = &mut inbox => {
                inbox_early = !shutdown.is_cancelled();
                inbox_result = Some(r);
            }
        }
        info!(
            event = "BRIDGE_STOPPING",
            "no new connections; finishing in-flight requests"
        );
        stop.cancel();
        tokio::select! {
            r = &mut server => r,
            _ = tokio::time::sleep(deadline) => {
                warn!(event = "BRIDGE_DRAIN_TIMEOUT", deadline_ms = deadline.as_millis() as u64, "in-flight requests did not finish in time; closing them (nothing unacknowledged is lost: a write either committed or not)");
                Ok(())
            }
        }
    };
    let served = serve.await;
    stop.cancel();

    shutdown.cancel();
    let inbox_outcome = match inbox_result {
        Some(r) => r,
        None => inbox.await,
    };
    done.cancel();
    let _ = housekeeping.await;
    let final_details = {
        let (i2, l2) = (ingestor.clone(), listen.clone());
        tokio::task::spawn_blocking(move || heartbeat_details(&i2, &l2, i2.paused()))
            .await
            .unwrap_or_default()
    };
    if let Ok(mut hb) = beat.await {
        let _ = hb.beat("stopped", final_details);
    }
    info!(event = "BRIDGE_STOPPED", counters = %ingestor.counters.snapshot(), "bridge stopped");

    if let Err(e) = served {
        error!(event = "BRIDGE_FAILED", error = %e, "the HTTP server failed");
        return Err(BridgeError::Other(format!("the HTTP server failed: {e}")));
    }
    match inbox_outcome {
        Ok(Err(e)) => {
            error!(event = "INBOX_FAILED", error = %e, "the inbox watcher failed");
            Err(BridgeError::Other(format!("the inbox watcher failed: {e}")))
        }
        Err(e) => {
            error!(event = "INBOX_FAILED", error = %e, "the inbox task panicked");
            Err(BridgeError::Other(format!("the inbox task failed: {e}")))
        }
        Ok(Ok(())) if inbox_early => {
            error!(
                event = "INBOX_FAILED",
                "the inbox watcher stopped on its own"
            );
            Err(BridgeError::Other(
                "the inbox watcher stopped on its own".into(),
            ))
        }
        Ok(Ok(())) => Ok(()),
    }
}
