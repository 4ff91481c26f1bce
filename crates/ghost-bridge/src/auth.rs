//! Request authentication, judged on the headers first and on the body only
//! when a signature needs it.
//!
//! Credentials, strongest first:
//! - `Authorization: Bearer <token>`: any route, any method.
//! - `X-Ghost-Timestamp: <unix seconds>` with `X-Ghost-Signature: v1=<hex>`,
//!   the HMAC-SHA256 of `v1:<timestamp>:<METHOD>:<path and query>:<body>`,
//!   `POST` only. A timestamp further than `bridge.signature_window` from now
//!   is refused, so a captured request cannot be replayed later, nor sent to
//!   another route or with another method.
//! - GitHub's `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the
//!   body alone, `POST` only: for webhook senders that cannot do better. It
//!   can be replayed (the bridge's deduplication by patch id makes a replay
//!   harmless for a patch that is still known).
//!
//! `GET` needs the bearer token: a signature of an empty body would otherwise
//! read every entry forever.
//!
//! Every comparison is constant time: the token through the SHA-256 digests
//! of both sides (so neither content nor length leaks), signatures through
//! `Mac::verify_slice`. Every failure is `401`; its reason never contains a
//! credential. When several credentials are sent, one valid one is enough.

use axum::http::{HeaderMap, Method as HttpMethod};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secrets::Secrets;

type HmacSha256 = Hmac<Sha256>;

pub const TIMESTAMP_HEADER: &str = "x-ghost-timestamp";
pub const GHOST_SIGNATURE: &str = "x-ghost-signature";
pub const HUB_SIGNATURE: &str = "x-hub-signature-256";

/// How a request proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Bearer,
    /// A signature, with the header that carried it.
    Signature(&'static str),
}

/// Why a request was refused (always `401`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// The header the failure is about (`Authorization` when none was usable).
    pub field: String,
    pub reason: String,
    /// A short fixed word for logs and aggregation (`missing`, `bad_token`,
    /// `bad_signature`, `stale`, …).
    pub kind: &'static str,
}

impl AuthFailure {
    fn new(field: &str, kind: &'static str, reason: impl Into<String>) -> Self {
        AuthFailure {
            field: field.to_string(),
            reason: reason.into(),
            kind,
        }
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The token of an `Authorization: Bearer <token>` header: `None` when there is
/// no such header, `Some(Err)` when it is there with another scheme or unreadable.
fn bearer(headers: &HeaderMap) -> Option<Result<&str, String>> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?;
    let Ok(s) = v.to_str() else {
        return Some(Err("the Authorization header is not readable text".into()));
    };
    let s = s.trim();
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // The scheme is not echoed: a client that forgot `Bearer ` sent its token there.
        return Some(Err(
            "the Authorization header is not `Bearer <token>`; send `Authorization: Bearer <token>`"
                .into(),
        ));
    }
    Some(Ok(rest.trim()))
}

/// Constant-time token comparison (through SHA-256 digests, so that the
/// lengths need not match and are not revealed).
pub fn token_matches(expected: &[u8], given: &[u8]) -> bool {
    let a = Sha256::digest(expected);
    let b = Sha256::digest(given);
    bool::from(a.ct_eq(&b))
}

/// True when the request carries the right bearer token.
pub fn bearer_ok(headers: &HeaderMap, secrets: &Secrets) -> bool {
    matches!(bearer(headers), Some(Ok(t)) if !t.is_empty() && token_matches(secrets.token.as_bytes(), t.as_bytes()))
}

/// The message a `v1` signature covers, up to the body (which follows it).
pub fn v1_prefix(timestamp: &str, method: &str, path_and_query: &str) -> String {
    format!("v1:{timestamp}:{method}:{path_and_query}:")
}

/// The `X-Ghost-Signature` value for a request (`v1=<hex>`).
pub fn sign_v1(
    key: &[u8],
    timestamp: u64,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(v1_prefix(&timestamp.to_string(), method, path_and_query).as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `X-Hub-Signature-256` value for a body (`sha256=<hex>`).
pub fn sign_hub(key: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `<prefix><64 hex digits>` → the 32 bytes, or why not.
fn decode_sig(value: &str, prefix: &str, what: &str) -> Result<Vec<u8>, String> {
    let v = value.trim();
    let Some(hex_sig) = v
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &v[prefix.len()..])
    else {
        return Err(format!("expected `{prefix}<64 hex digits>` ({what})"));
    };
    match hex::decode(hex_sig.trim()) {
        Ok(s) if s.len() == 32 => Ok(s),
        _ => Err(format!(
            "malformed: expected `{prefix}` followed by 64 hex digits ({what})"
        )),
    }
}

const V1_WHAT: &str = "HMAC-SHA256 of `v1:<X-Ghost-Timestamp>:<METHOD>:<path>:<body>`";
const HUB_WHAT: &str = "HMAC-SHA256 of the raw body";

/// One signature being verified while the body streams in.
struct Pending {
    header: &'static str,
    kind: &'static str,
    mac: HmacSha256,
    expected: Vec<u8>,
}

/// The signatures left to verify against the body: feed it with
/// [`BodyCheck::update`] as it arrives, then [`BodyCheck::finish`].
pub struct BodyCheck {
    pending: Vec<Pending>,
    /// The refusal to report if no signature matches (the first one found).
    refusal: Option<AuthFailure>,
}

impl BodyCheck {
    /// The header of the first signature being verified (for refusals).
    pub fn field(&self) -> &'static str {
        self.pending
            .first()
            .map_or("X-Ghost-Signature", |p| canonical(p.header))
    }

    pub fn update(&mut self, chunk: &[u8]) {
        for p in &mut self.pending {
            p.mac.update(chunk);
        }
    }

    pub fn finish(self) -> Result<Method, AuthFailure> {
        let mut refusal = self.refusal;
        for p in self.pending {
            if p.mac.verify_slice(&p.expected).is_ok() {
                return Ok(Method::Signature(canonical(p.header)));
            }
            refusal.get_or_insert_with(|| {
                AuthFailure::new(
                    canonical(p.header),
                    "bad_signature",
                    format!(
                        "the signature does not match the request ({})",
                        if p.kind == "v1" { V1_WHAT } else { HUB_WHAT }
                    ),
                )
            });
        }
        Err(refusal.unwrap_or_else(missing))
    }
}

/// What the headers alone say.
pub enum Judgement {
    /// Authenticated (the bearer token): read the body as usual.
    Accepted(Method),
    /// A signature to verify over the body.
    Verify(BodyCheck),
}

fn missing() -> AuthFailure {
    AuthFailure::new(
        "Authorization",
        "missing",
        "no credentials: send `Authorization: Bearer <token>`, or on POST `X-Ghost-Timestamp` with `X-Ghost-Signature: v1=<hex>` (docs/http.md)",
    )
}

/// Judge a request on its headers: accepted, refused at once, or a
/// signature to check over the body. `now` is the current Unix time in
/// seconds; `window` how far the signed timestamp may be from it.
pub fn judge(
    method: &HttpMethod,
    path_and_query: &str,
    headers: &HeaderMap,
    secrets: &Secrets,
    now: u64,
    window: u64,
) -> Result<Judgement, AuthFailure> {
    let mut refusal: Option<AuthFailure> = None;
    let mut missing_reason: Option<String> = None;
    match bearer(headers) {
        Some(Ok("")) => missing_reason = Some("the bearer token is empty".into()),
        Some(Ok(t)) => {
            if token_matches(secrets.token.as_bytes(), t.as_bytes()) {
                return Ok(Judgement::Accepted(Method::Bearer));
            }
            refusal = Some(AuthFailure::new(
                "Authorization",
                "bad_token",
                "wrong bearer token",
            ));
        }
        Some(Err(reason)) => missing_reason = Some(reason),
        None => {}
    }
    let key = secrets.hmac_key.as_bytes();
    let mut pending = Vec::new();
    let mut note = |f: AuthFailure| {
        refusal.get_or_insert(f);
    };
    let post = method == HttpMethod::POST;
    for name in [GHOST_SIGNATURE, HUB_SIGNATURE] {
        let Some(v) = headers.get(name) else { continue };
        let header = canonical(name);
        if !post {
            note(AuthFailure::new(
                header,
                "signature_not_allowed",
                format!("{method} needs `Authorization: Bearer <token>`; signatures are accepted on POST only"),
            ));
            continue;
        }
        let Ok(value) = v.to_str() else {
            note(AuthFailure::new(
                header,
                "bad_signature",
                "the header is not readable text",
            ));
            continue;
        };
        let (kind, expected, mac) = if name == GHOST_SIGNATURE {
            if value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("sha256=")
            {
                note(AuthFailure::new(
                    header,
                    "old_signature",
                    "`X-Ghost-Signature: sha256=` (body only) is no longer accepted: sign `v1:<timestamp>:<METHOD>:<path>:<body>` and send `X-Ghost-Timestamp` with `X-Ghost-Signature: v1=<hex>` (docs/http.md)",
                ));
                continue;
            }
            let sig = match decode_sig(value, "v1=", V1_WHAT) {
                Ok(s) => s,
                Err(r) => {
                    note(AuthFailure::new(header, "bad_signature", r));
                    continue;
                }
            };
            let ts = match timestamp(headers, now, window) {
                Ok(ts) => ts,
                Err(f) => {
                    note(f);
                    continue;
                }
            };
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(v1_prefix(&ts, method.as_str(), path_and_query).as_bytes());
            ("v1", sig, mac)
        } else {
            match decode_sig(value, "sha256=", HUB_WHAT) {
                Ok(s) => (
                    "hub",
                    s,
                    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length"),
                ),
                Err(r) => {
                    note(AuthFailure::new(header, "bad_signature", r));
                    continue;
                }
            }
        };
        pending.push(Pending {
            header: name,
            kind,
            mac,
            expected,
        });
    }
    if !pending.is_empty() {
        return Ok(Judgement::Verify(BodyCheck { pending, refusal }));
    }
    Err(refusal.unwrap_or_else(|| match missing_reason {
        Some(r) => AuthFailure::new("Authorization", "missing", r),
        None => missing(),
    }))
}

/// The `X-Ghost-Timestamp` as sent, if it is within `window` seconds of `now`.
fn timestamp(headers: &HeaderMap, now: u64, window: u64) -> Result<String, AuthFailure> {
    let field = "X-Ghost-Timestamp";
    let Some(v) = headers.get(TIMESTAMP_HEADER) else {
        return Err(AuthFailure::new(
            field,
            "no_timestamp",
            "a v1 signature needs `X-Ghost-Timestamp: <unix seconds>`, the time it was made",
        ));
    };
    let s = v.to_str().unwrap_or("").trim();
    let Ok(ts) = s.parse::<u64>() else {
        return Err(AuthFailure::new(
            field,
            "bad_timestamp",
            "expected the Unix time in whole seconds, e.g. 1767225600",
        ));
    };
    let off = now.abs_diff(ts);
    if off > window {
        let when = if ts < now { "old" } else { "in the future" };
        return Err(AuthFailure::new(
            field,
            "stale",
            format!(
                "the signed timestamp is {off} s {when}; at most {window} s are allowed (bridge.signature_window): sign the request again (a replayed request is refused)"
            ),
        ));
    }
    Ok(s.to_string())
}

/// Judge a request whose whole body is at hand (tests and small callers).
pub fn authenticate(
    method: &HttpMethod,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &Secrets,
    now: u64,
    window: u64,
) -> Result<Method, AuthFailure> {
    match judge(method, path_and_query, headers, secrets, now, window)? {
        Judgement::Accepted(m) => Ok(m),
        Judgement::Verify(mut c) => {
            c.update(body);
            c.finish()
        }
    }
}

pub fn canonical(name: &'static str) -> &'static str {
    match name {
        GHOST_SIGNATURE => "X-Ghost-Signature",
        HUB_SIGNATURE => "X-Hub-Signature-256",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{Secret, SecretSource};
    use axum::http::HeaderValue;

    const NOW: u64 = 1_800_000_000;
    const W: u64 = 300;

    fn secrets() -> Secrets {
        Secrets {
            token: Secret::new("the-token"),
            token_source: SecretSource::Configuration("bridge.token"),
            hmac_key: Secret::new("the-key"),
            hmac_source: SecretSource::Configuration("bridge.hmac_key"),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn post(h: &HeaderMap, path: &str, body: &[u8]) -> Result<Method, AuthFailure> {
        authenticate(&HttpMethod::POST, path, h, body, &secrets(), NOW, W)
    }

    fn v1(ts: u64, method: &str, path: &str, body: &[u8]) -> HeaderMap {
        let sig = sign_v1(b"the-key", ts, method, path, body);
        headers(&[(TIMESTAMP_HEADER, &ts.to_string()), (GHOST_SIGNATURE, &sig)])
    }

    #[test]
    fn no_credentials_is_missing() {
        let e = post(&HeaderMap::new(), "/v1/patches", b"").unwrap_err();
        assert_eq!(e.kind, "missing");
        let h = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert!(post(&h, "/", b"")
            .unwrap_err()
            .reason
            .contains("not `Bearer"));
        // A token sent without its scheme is never echoed.
        let h = headers(&[("authorization", "the-token")]);
        assert!(!post(&h, "/", b"").unwrap_err().reason.contains("the-token"));
        let h = headers(&[("authorization", "Bearer ")]);
        assert_eq!(post(&h, "/", b"").unwrap_err().kind, "missing");
    }

    #[test]
    fn bearer_right_and_wrong() {
        let h = headers(&[("authorization", "Bearer the-token")]);
        assert_eq!(post(&h, "/", b"x"), Ok(Method::Bearer));
        assert!(bearer_ok(&h, &secrets()));
        let h = headers(&[("authorization", "bearer   the-token  ")]);
        assert_eq!(post(&h, "/", b"x"), Ok(Method::Bearer));
        for wrong in ["the-toke", "the-token2", "THE-TOKEN", "x"] {
            let h = headers(&[("authorization", &format!("Bearer {wrong}"))]);
            let e = post(&h, "/", b"x").unwrap_err();
            assert_eq!(
                (e.field(), e.kind),
                ("Authorization", "bad_token"),
                "{wrong}"
            );
            assert!(!bearer_ok(&h, &secrets()));
        }
    }

    #[test]
    fn token_comparison_handles_any_lengths() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abc", b"abcd"));
        assert!(!token_matches(b"abc", b""));
        assert!(!token_matches(b"", b"a"));
    }

    #[test]
    fn v1_signature_within_the_window() {
        let body = br#"{"id":"x"}"#;
        for ts in [NOW, NOW - W, NOW + W] {
            let h = v1(ts, "POST", "/v1/patches", body);
            assert_eq!(
                post(&h, "/v1/patches", body),
                Ok(Method::Signature("X-Ghost-Signature"))
            );
        }
        // Upper-case hex is accepted too.
        let mut h = v1(NOW, "POST", "/v1/patches", body);
        let up = h[GHOST_SIGNATURE].to_str().unwrap().to_uppercase();
        h.insert(GHOST_SIGNATURE, HeaderValue::from_str(&up).unwrap());
        assert!(post(&h, "/v1/patches", body).is_ok());
    }

    #[test]
    fn v1_signature_replayed_late_or_elsewhere_is_refused() {
        let body = b"payload";
        for ts in [NOW - W - 1, NOW + W + 1, 0] {
            let e = post(&v1(ts, "POST", "/v1/patches", body), "/v1/patches", body).unwrap_err();
            assert_eq!((e.field(), e.kind), ("X-Ghost-Timestamp", "stale"), "{ts}");
            assert!(e.reason.contains("bridge.signature_window"), "{e:?}");
        }
        // Another path, query, method or body: the signature does not match.
        let h = v1(NOW, "POST", "/v1/patches", body);
        for (path, b) in [
            ("/webhook", &body[..]),
            ("/v1/patches?x=1", &body[..]),
            ("/v1/patches", b"payload2"),
        ] {
            let e = post(&h, path, b).unwrap_err();
            assert_eq!(e.kind, "bad_signature", "{path}");
        }
        let h = v1(NOW, "PUT", "/v1/patches", body);
        assert_eq!(
            post(&h, "/v1/patches", body).unwrap_err().kind,
            "bad_signature"
        );
        // The timestamp is part of the message.
        let mut h = v1(NOW, "POST", "/v1/patches", body);
        h.insert(TIMESTAMP_HEADER, HeaderValue::from(NOW + 1));
        assert_eq!(
            post(&h, "/v1/patches", body).unwrap_err().kind,
            "bad_signature"
        );
        // Without a timestamp, or an unreadable one.
        let mut h = v1(NOW, "POST", "/v1/patches", body);
        h.remove(TIMESTAMP_HEADER);
        assert_eq!(
            post(&h, "/v1/patches", body).unwrap_err().kind,
            "no_timestamp"
        );
        h.insert(TIMESTAMP_HEADER, HeaderValue::from_static("yesterday"));
        assert_eq!(
            post(&h, "/v1/patches", body).unwrap_err().kind,
            "bad_timestamp"
        );
    }

    /// The documented shell recipe (`openssl dgst -sha256 -hmac`, docs/http.md)
    /// gives this value; the format must not drift from it.
    #[test]
    fn v1_matches_the_documented_recipe() {
        assert_eq!(
            sign_v1(b"k", 1_800_000_000, "POST", "/v1/patches", br#"{"a":1}"#),
            "v1=4110453ba922e6351a506e60bf01b3aa04601015107fcf768a883a62d35353ed"
        );
    }

    #[test]
    fn get_needs_the_bearer_token() {
        let h = v1(NOW, "GET", "/v1/patches/x", b"");
        let e = authenticate(
            &HttpMethod::GET,
            "/v1/patches/x",
            &h,
            b"",
            &secrets(),
            NOW,
            W,
        )
        .unwrap_err();
        assert_eq!(e.kind, "signature_not_allowed");
        let h = headers(&[(HUB_SIGNATURE, &sign_hub(b"the-key", b""))]);
        let e = authenticate(
            &HttpMethod::GET,
            "/v1/patches/x",
            &h,
            b"",
            &secrets(),
            NOW,
            W,
        )
        .unwrap_err();
        assert_eq!(
            (e.field(), e.kind),
            ("X-Hub-Signature-256", "signature_not_allowed")
        );
    }

    #[test]
    fn hub_signature_is_body_only_on_post() {
        let body = b"b";
        let h = headers(&[(HUB_SIGNATURE, &sign_hub(b"the-key", body))]);
        assert_eq!(
            post(&h, "/anything", body),
            Ok(Method::Signature("X-Hub-Signature-256"))
        );
        assert_eq!(post(&h, "/", b"c").unwrap_err().kind, "bad_signature");
    }

    #[test]
    fn old_and_malformed_signatures_are_refused_from_the_headers() {
        let old = sign_hub(b"the-key", b"p");
        for (name, value, kind) in [
            (GHOST_SIGNATURE, old.as_str(), "old_signature"),
            (GHOST_SIGNATURE, "v1=zz", "bad_signature"),
            (GHOST_SIGNATURE, "v1=abcd", "bad_signature"),
            (GHOST_SIGNATURE, "", "bad_signature"),
            (
                HUB_SIGNATURE,
                "sha1=0123456789abcdef0123456789abcdef01234567",
                "bad_signature",
            ),
        ] {
            let h = headers(&[(name, value), (TIMESTAMP_HEADER, &NOW.to_string())]);
            // Refused before any body byte is needed.
            match judge(&HttpMethod::POST, "/", &h, &secrets(), NOW, W) {
                Err(e) => assert_eq!(e.kind, kind, "{value}"),
                Ok(_) => panic!("{value}: accepted from the headers"),
            }
        }
    }

    #[test]
    fn one_valid_credential_is_enough() {
        let body = b"b";
        let mut h = headers(&[
            ("authorization", "Bearer wrong"),
            (HUB_SIGNATURE, &sign_hub(b"the-key", body)),
        ]);
        assert_eq!(
            post(&h, "/", body),
            Ok(Method::Signature("X-Hub-Signature-256"))
        );
        // Both wrong: the first refusal is reported.
        h.insert(HUB_SIGNATURE, HeaderValue::from_static("sha256=00"));
        assert_eq!(post(&h, "/", body).unwrap_err().field(), "Authorization");
    }
}
