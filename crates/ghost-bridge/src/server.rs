//! The bridge's accept loop: every connection is served by hyper's HTTP/1
//! connection with a header-read timeout, under a cap on concurrent
//! connections, and drained gracefully on stop.
//!
//! Invariants: at most `cap` connections are served at once, and `cap` is
//! below the open-file limit by a reserve, so the queue writes, the inbox,
//! the logs and the heartbeat always find a file descriptor; a connection
//! over the cap is answered `503` at once and closed, never left waiting in
//! the backlog; a connection that has not sent a request's headers within
//! `bridge.header_timeout` (also an idle keep-alive one) is closed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::info;

use ghost_core::config::BridgeConfig;

use crate::guard::{Arrived, Guard};

/// File descriptors kept for everything but connections: at least this many…
const FD_RESERVE_MIN: u64 = 64;
/// … or this fraction (1/n) of the limit, whichever is more.
const FD_RESERVE_FRACTION: u64 = 8;

/// The connection cap: `configured`, clamped below the soft open-file limit
/// minus the reserve. Returns the cap and the limit it was clamped to (if it was).
pub fn connection_cap(configured: u32, nofile: Option<u64>) -> (usize, Option<u64>) {
    let configured = u64::from(configured.max(1));
    let Some(limit) = nofile else {
        return (configured as usize, None);
    };
    let reserve = FD_RESERVE_MIN.max(limit / FD_RESERVE_FRACTION);
    let room = limit.saturating_sub(reserve).max(1);
    if configured > room {
        (room as usize, Some(limit))
    } else {
        (configured as usize, None)
    }
}

/// The soft `RLIMIT_NOFILE` of this process.
pub fn open_file_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// The answer to a connection over the cap, written without waiting.
const OVERLOADED: &str = "{\"error\":\"overloaded\",\"message\":\"the bridge is serving bridge.max_connections connections; retry shortly\",\"errors\":[{\"field\":\"(connection)\",\"reason\":\"too many connections\"}]}";

fn refuse_connection(stream: TcpStream) {
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{OVERLOADED}",
        OVERLOADED.len()
    );
    // One non-blocking write into a fresh socket's buffer: it fits, and a
    // peer that does not read cannot hold the descriptor.
    let _ = stream.try_write(resp.as_bytes());
}

/// Serve `app` on `listener` until `stop`, then stop accepting and wait for
/// the open connections to finish their requests (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: &BridgeConfig,
    guard: Arc<Guard>,
    stop: CancellationToken,
) -> io::Result<()> {
    let (cap, clamped) = connection_cap(cfg.max_connections, open_file_limit());
    if let Some(limit) = clamped {
        info!(event = "CONNECTION_CAP_CLAMPED", configured = cfg.max_connections, cap, open_file_limit = limit,
            "bridge.max_connections lowered to stay below the open-file limit (raise LimitNOFILE / ulimit -n to allow more)");
    }
    let slots = Arc::new(Semaphore::new(cap));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors (or a connection reset before accept):
                // wait a moment rather than spin; the reserve keeps the rest going.
                guard.refusals.note(None, "accept_failed", || e.to_string());
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.cancelled() => break,
                }
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            guard
                .refusals
                .note(Some(peer.ip()), "too_many_connections", || {
                    format!("{cap} connections open (bridge.max_connections): answered 503")
                });
            refuse_connection(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req.extensions_mut().insert(Arrived(Instant::now()));
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (reset, header timeout, bad framing).
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        assert_eq!(connection_cap(512, None), (512, None));
        assert_eq!(connection_cap(512, Some(1 << 20)), (512, None));
        // 1024 descriptors: 128 kept back.
        assert_eq!(connection_cap(2000, Some(1024)), (896, Some(1024)));
        assert_eq!(connection_cap(512, Some(1024)), (512, None));
        // Tiny limits keep at least 64 back, and serve at least one.
        assert_eq!(connection_cap(512, Some(100)), (36, Some(100)));
        assert_eq!(connection_cap(512, Some(10)), (1, Some(10)));
        assert_eq!(connection_cap(0, None), (1, None));
    }
}
