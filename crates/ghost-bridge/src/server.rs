//! The bridge's limits on the shared accept loop ([`ghost_http::serve`]):
//! the header-read timeout is `bridge.header_timeout`, and the connection cap
//! is `bridge.max_connections` clamped below the open-file limit.
//!
//! Invariants: the cap is below the open-file limit by a reserve, so the
//! queue writes, the inbox, the logs and the heartbeat always find a file
//! descriptor; every connection over the cap and every failed accept is
//! counted in the bridge's refusal log.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use ghost_core::config::BridgeConfig;
use ghost_http::{Limits, Observer};

use crate::guard::Guard;

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

/// The body of the answer to a connection over the cap.
const OVERLOADED: &str = "{\"error\":\"overloaded\",\"message\":\"the bridge is serving bridge.max_connections connections; retry shortly\",\"errors\":[{\"field\":\"(connection)\",\"reason\":\"too many connections\"}]}";

/// Refusals and failed accepts go to the bridge's aggregated refusal log.
struct Refusals {
    guard: Arc<Guard>,
    cap: usize,
}

impl Observer for Refusals {
    fn refused(&self, peer: SocketAddr) {
        let cap = self.cap;
        self.guard
            .refusals
            .note(Some(peer.ip()), "too_many_connections", || {
                format!("{cap} connections open (bridge.max_connections): answered 503")
            });
    }

    fn accept_failed(&self, error: &io::Error) {
        // Out of descriptors (or a connection reset before accept): the
        // loop waits a moment; the reserve keeps the rest going.
        self.guard
            .refusals
            .note(None, "accept_failed", || error.to_string());
    }
}

/// Serve `app` on `listener` until `stop` through the shared accept loop
/// ([`ghost_http::serve`]), with the bridge's limits, then wait for the open
/// connections to finish their requests (the caller bounds the wait).
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
    let limits = Limits {
        header_timeout: cfg.header_timeout,
        max_connections: cap,
        overloaded_body: OVERLOADED.to_string(),
    };
    ghost_http::serve(
        listener,
        app,
        &limits,
        Arc::new(Refusals { guard, cap }),
        stop,
    )
    .await
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
