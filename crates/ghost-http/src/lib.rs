//! The one HTTP/1 accept loop of ghostbridge, used by the bridge
//! (`ghost-bridge`) and the monitor's dashboard (`ghost-monitor`): every
//! connection is served by hyper's HTTP/1 connection with a header-read
//! timeout, under a cap on concurrent connections, and drained gracefully on
//! stop.
//!
//! Invariants: at most [`Limits::max_connections`] connections are served at
//! once; a connection over the cap is answered `503` at once (the caller's
//! JSON body, `Retry-After: 1`) and closed, never left waiting in the
//! backlog; a connection that has not sent a request's headers within
//! [`Limits::header_timeout`] (also an idle keep-alive one) is closed. Every
//! request carries the peer ([`ConnectInfo`]) and when its headers were read
//! ([`Arrived`]).

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

/// When a request's headers were read (inserted into every request): a body
/// deadline counts from here.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// The bounds of one server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request's headers must arrive within this long (and an idle
    /// keep-alive connection is closed after it).
    pub header_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// The JSON body of that 503, naming the server and its setting.
    pub overloaded_body: String,
}

/// What the loop reports to its owner (the bridge counts and logs refusals;
/// the dashboard logs).
pub trait Observer: Send + Sync {
    /// A connection from `peer` was over the cap and answered 503.
    fn refused(&self, peer: SocketAddr);
    /// `accept` failed (out of descriptors, a connection reset before it);
    /// the loop waits a moment and goes on.
    fn accept_failed(&self, error: &io::Error);
}

/// How long the loop waits after a failed `accept` rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The 503 for a connection over the cap, as bytes on the wire.
fn overloaded(body: &str) -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn refuse_connection(stream: TcpStream, answer: &[u8]) {
    // One non-blocking write into a fresh socket's buffer: it fits, and a
    // peer that does not read cannot hold the descriptor.
    let _ = stream.try_write(answer);
}

/// Serve `app` on `listener` until `stop`, then stop accepting and wait for
/// the open connections to finish their requests (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    observer: Arc<dyn Observer>,
    stop: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let answer = overloaded(&limits.overloaded_body).into_bytes();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
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
                observer.accept_failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    _ = stop.cancelled() => break,
                }
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            observer.refused(peer);
            refuse_connection(stream, &answer);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req.extensions_mut().insert(Arrived(Instant::now()));
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Observer for Count {
        fn refused(&self, _peer: SocketAddr) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn accept_failed(&self, _error: &io::Error) {}
    }

    async fn request(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Requests until one is answered with `status` (the loop sees a
    /// connection open or close a moment after the client): the last answer.
    async fn answered(addr: SocketAddr, status: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            last = request(addr).await;
            if last.starts_with(status) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        last
    }

    /// The cap answers 503 with the caller's body while a connection holds
    /// the one slot; the slot frees when it closes; stop drains and returns.
    #[tokio::test]
    async fn over_the_cap_is_answered_503_and_stop_drains() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(p): ConnectInfo<SocketAddr>| async move {
                format!("hello {}", p.ip())
            }),
        );
        let limits = Limits {
            header_timeout: Duration::from_secs(5),
            max_connections: 1,
            overloaded_body: "{\"error\":\"overloaded\"}".into(),
        };
        let seen = Arc::new(Count::default());
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            async move { serve(listener, app, &limits, seen, stop).await }
        });
        assert!(request(addr).await.ends_with("hello 127.0.0.1"));
        // Hold the slot with a connection that sends nothing yet.
        let held = TcpStream::connect(addr).await.unwrap();
        let refused = answered(addr, "HTTP/1.1 503").await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("retry-after: 1"), "{refused}");
        assert!(refused.ends_with("{\"error\":\"overloaded\"}"), "{refused}");
        assert!(seen.0.load(Ordering::SeqCst) >= 1);
        drop(held);
        let ok = answered(addr, "HTTP/1.1 200").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the loop stops")
            .unwrap()
            .unwrap();
    }
}
