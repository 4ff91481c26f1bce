//! What keeps a stranger from taking the bridge down: the per-client rate
//! limit, the bounded read of a request body (size, deadline, and a shared
//! memory budget for bodies whose signature is not verified yet), and the
//! aggregation of refusal log lines.
//!
//! Invariants: no request body is read beyond its limit or past its deadline;
//! the bytes of unverified bodies held at once never exceed
//! `bridge.unverified_body_budget`; a refusal is logged at once the first
//! time a (client, reason) pair is seen, then at most once per
//! `bridge.refusal_log_interval` with the number of refusals it stands for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use governor::{DefaultKeyedRateLimiter, Quota};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use ghost_core::config::BridgeConfig;

use crate::auth::BodyCheck;

/// When a request's headers were read (the shared accept loop sets it for
/// each request): the body deadline counts from here.
pub use ghost_http::Arrived;

/// Per-client rate limiting (GCRA, keyed by the client's address).
pub struct RateLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimit {
    pub fn new(cfg: &BridgeConfig) -> RateLimit {
        let limiter = NonZeroU32::new(cfg.rate_limit).map(|r| {
            let burst = NonZeroU32::new(cfg.rate_burst.max(1)).unwrap_or(NonZeroU32::MIN);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
        });
        RateLimit { limiter }
    }

    /// `Ok` to go on, or how long the client should wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l.check_key(&ip).map_err(|n| {
                n.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
            }),
        }
    }

    /// Forget clients whose state is back to fresh (keeps memory bounded by
    /// the clients of the last second or so).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over `limit` bytes (declared or sent).
    TooLarge { limit: u64 },
    /// Not complete within the body deadline.
    Timeout { after: Duration },
    /// Unverified bodies already hold the whole budget.
    Overloaded,
    /// The connection failed or the framing was wrong.
    Unreadable(String),
}

/// The shared memory budget for bodies not yet authenticated.
pub struct Budget {
    sem: Arc<Semaphore>,
}

impl Budget {
    pub fn new(bytes: u64) -> Budget {
        let n = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Budget {
            sem: Arc::new(Semaphore::new(n)),
        }
    }
}

/// The declared length of a body, if any.
pub fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Read a whole body of at most `limit` bytes by `deadline`. With `check`,
/// every chunk also feeds the signature check and takes its size from
/// `budget` until the caller drops the returned permit.
pub async fn read_body(
    body: Body,
    limit: u64,
    deadline: Instant,
    mut check: Option<(&mut BodyCheck, &Budget)>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    let started = Instant::now();
    let read = async {
        let mut body = body;
        // The chunks as they came (no doubling growth: what is held is what
        // was sent), joined once at the end.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total: u64 = 0;
        let mut held: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Unreadable(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            total += data.len() as u64;
            if total > limit {
                return Err(BodyError::TooLarge { limit });
            }
            if let Some((c, budget)) = check.as_mut() {
                let n = u32::try_from(data.len()).map_err(|_| BodyError::TooLarge { limit })?;
                let p = budget
                    .sem
                    .clone()
                    .try_acquire_many_owned(n)
                    .map_err(|_| BodyError::Overloaded)?;
                match &mut held {
                    Some(h) => h.merge(p),
                    None => held = Some(p),
                }
                c.update(&data);
            }
            chunks.push(data);
        }
        let bytes = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut buf = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
                for c in &chunks {
                    buf.extend_from_slice(c);
                }
                Bytes::from(buf)
            }
        };
        Ok((bytes, held))
    };
    match tokio::time::timeout_at(deadline.into(), read).await {
        Ok(r) => r,
        Err(_) => Err(BodyError::Timeout {
            after: started.elapsed(),
        }),
    }
}

/// One (client, reason) pair's refusals since its last log line.
struct Seen {
    window_start: Instant,
    suppressed: u64,
    detail: String,
}

/// Past this many distinct pairs in one interval, further clients share one
/// line per reason (a spoofed-source flood cannot grow the map).
const MAX_PAIRS: usize = 4096;

/// Aggregated logging of refused requests.
pub struct RefusalLog {
    interval: Duration,
    seen: Mutex<HashMap<(Option<IpAddr>, &'static str), Seen>>,
}

impl RefusalLog {
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Record one refusal; it is logged at once if the pair is new, else
    /// counted into the pair's next line.
    pub fn note(&self, ip: Option<IpAddr>, reason: &'static str, detail: impl FnOnce() -> String) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = if ip.is_some() && seen.len() >= MAX_PAIRS && !seen.contains_key(&(ip, reason)) {
            (None, reason)
        } else {
            (ip, reason)
        };
        match seen.get_mut(&key) {
            Some(s) if now.duration_since(s.window_start) < self.interval => {
                s.suppressed += 1;
                if s.suppressed == 1 {
                    s.detail = detail();
                }
            }
            Some(s) => {
                // The interval is over: this line stands for everything since.
                let count = s.suppressed + 1;
                s.window_start = now;
                s.suppressed = 0;
                let d = detail();
                drop(seen);
                log_line(key.0, reason, count, &d);
            }
            None => {
                seen.insert(
                    key,
                    Seen {
                        window_start: now,
                        suppressed: 0,
                        detail: String::new(),
                    },
                );
                drop(seen);
                log_line(key.0, reason, 1, &detail());
            }
        }
    }

    /// Log the counts of pairs whose interval is over and forget quiet ones;
    /// called about once per interval. Returns the lines written.
    pub fn flush(&self) -> usize {
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|k, s| {
                if now.duration_since(s.window_start) < self.interval {
                    return true;
                }
                if s.suppressed == 0 {
                    return false;
                }
                out.push((k.0, k.1, s.suppressed, std::mem::take(&mut s.detail)));
                s.suppressed = 0;
                s.window_start = now;
                true
            });
        }
        for (ip, reason, count, detail) in &out {
            log_line(*ip, reason, *count, detail);
        }
        out.len()
    }

    /// The interval, for the flushing task.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

fn log_line(ip: Option<IpAddr>, reason: &str, count: u64, detail: &str) {
    let peer = ip.map_or_else(|| "(many clients)".to_string(), |i| i.to_string());
    if count == 1 {
        warn!(event = "REQUEST_REFUSED", peer = %peer, reason, count, detail = %detail, "request refused");
    } else {
        warn!(event = "REQUEST_REFUSED", peer = %peer, reason, count, detail = %detail, "requests refused (repeats aggregated)");
    }
}

/// Everything the guards share, one per bridge.
pub struct Guard {
    pub rate: RateLimit,
    pub budget: Budget,
    pub refusals: RefusalLog,
}

impl Guard {
    pub fn new(cfg: &BridgeConfig) -> Guard {
        Guard {
            rate: RateLimit::new(cfg),
            budget: Budget::new(cfg.unverified_body_budget),
            refusals: RefusalLog::new(cfg.refusal_log_interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_aggregated_per_client_and_reason() {
        let log = RefusalLog::new(Duration::from_millis(200));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut details = 0;
        for _ in 0..1000 {
            log.note(Some(a), "bad_token", || {
                details += 1;
                "x".into()
            });
        }
        // The first line at once, the next detail kept for the count line.
        assert_eq!(details, 2);
        log.note(Some(b), "bad_token", String::new);
        log.note(Some(a), "rate_limited", String::new);
        {
            let seen = log.seen.lock().unwrap();
            assert_eq!(seen.len(), 3);
            assert_eq!(seen[&(Some(a), "bad_token")].suppressed, 999);
        }
        // Nothing due yet.
        assert_eq!(log.flush(), 0);
        std::thread::sleep(Duration::from_millis(250));
        // One line for the 999 (the others had nothing to add, and go).
        assert_eq!(log.flush(), 1);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(log.flush(), 0);
        assert!(log.seen.lock().unwrap().is_empty());
    }

    #[test]
    fn many_clients_share_one_entry_per_reason() {
        let log = RefusalLog::new(Duration::from_secs(60));
        for i in 0..(MAX_PAIRS as u32 + 500) {
            log.note(
                Some(IpAddr::from(i.to_be_bytes())),
                "bad_token",
                String::new,
            );
        }
        let seen = log.seen.lock().unwrap();
        assert_eq!(seen.len(), MAX_PAIRS + 1);
        assert_eq!(seen[&(None, "bad_token")].suppressed, 499);
    }

    /// A body that never completes.
    struct Stalled;

    impl hyper::body::Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    fn hub_check(body: &[u8]) -> BodyCheck {
        use crate::secrets::{Secret, SecretSource, Secrets};
        let secrets = Secrets {
            token: Secret::new("t"),
            token_source: SecretSource::Configuration("bridge.token"),
            hmac_key: Secret::new("k"),
            hmac_source: SecretSource::Configuration("bridge.hmac_key"),
        };
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            crate::auth::HUB_SIGNATURE,
            crate::auth::sign_hub(b"k", body).parse().unwrap(),
        );
        match crate::auth::judge(&axum::http::Method::POST, "/", &h, &secrets, 0, 1) {
            Ok(crate::auth::Judgement::Verify(c)) => c,
            _ => panic!("expected a signature to verify"),
        }
    }

    #[tokio::test]
    async fn bodies_are_read_within_their_limit_deadline_and_budget() {
        let far = Instant::now() + Duration::from_secs(30);
        let (b, _) = read_body(Body::from("hello"), 5, far, None).await.unwrap();
        assert_eq!(&b[..], b"hello");
        assert!(matches!(
            read_body(Body::from("hello!"), 5, far, None).await,
            Err(BodyError::TooLarge { limit: 5 })
        ));
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(matches!(
            read_body(Body::new(Stalled), 5, soon, None).await,
            Err(BodyError::Timeout { .. })
        ));
        // A verified body holds budget until the permit is dropped.
        let budget = Budget::new(8);
        let mut c = hub_check(b"12345");
        let (b, permit) = read_body(Body::from("12345"), 100, far, Some((&mut c, &budget)))
            .await
            .unwrap();
        assert_eq!(&b[..], b"12345");
        assert!(c.finish().is_ok());
        let mut c2 = hub_check(b"6789");
        assert!(matches!(
            read_body(Body::from("6789"), 100, far, Some((&mut c2, &budget))).await,
            Err(BodyError::Overloaded)
        ));
        drop(permit);
        let mut c3 = hub_check(b"6789");
        read_body(Body::from("6789"), 100, far, Some((&mut c3, &budget)))
            .await
            .unwrap();
        assert!(c3.finish().is_ok());
    }

    #[test]
    fn rate_limit_allows_the_burst_then_refuses_with_a_wait() {
        let cfg = BridgeConfig {
            rate_limit: 1,
            rate_burst: 3,
            ..BridgeConfig::default()
        };
        let r = RateLimit::new(&cfg);
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(r.check(ip).is_ok());
        }
        let wait = r.check(ip).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another client is not affected.
        assert!(r.check([127, 0, 0, 2].into()).is_ok());
        let off = RateLimit::new(&BridgeConfig {
            rate_limit: 0,
            ..BridgeConfig::default()
        });
        for _ in 0..1000 {
            assert!(off.check(ip).is_ok());
        }
    }
}
