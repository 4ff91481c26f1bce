//! Request authentication: `Authorization: Bearer <token>`, or an HMAC-SHA256
//! of the raw body in `X-Ghost-Signature: sha256=<hex>` (GitHub's
//! `X-Hub-Signature-256` is accepted too).
//!
//! Every comparison is constant time: the token is compared through the
//! SHA-256 digests of both sides (equal lengths whatever was sent, so neither
//! content nor length leaks), and signatures through `Mac::verify_slice`.
//!
//! A request with no credentials at all is `401`; one whose credentials are
//! all wrong or malformed is `403`. When several are sent, one valid
//! credential is enough.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secrets::Secrets;

/// The signature headers, in the order they are tried.
pub const SIGNATURE_HEADERS: [&str; 2] = ["x-ghost-signature", "x-hub-signature-256"];

/// How a request proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Bearer,
    /// HMAC of the body, with the header that carried it.
    Signature(&'static str),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No usable credentials: `401`.
    Missing(String),
    /// Credentials that do not match, or a malformed signature: `403`.
    Refused { field: String, reason: String },
}

impl AuthFailure {
    /// The header (or `Authorization`) the failure is about.
    pub fn field(&self) -> &str {
        match self {
            AuthFailure::Missing(_) => "Authorization",
            AuthFailure::Refused { field, .. } => field,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            AuthFailure::Missing(r) => r,
            AuthFailure::Refused { reason, .. } => reason,
        }
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

/// True when the request carries the right bearer token: checked before the
/// body is read, so a bearer request never waits on the signature path.
pub fn bearer_ok(headers: &HeaderMap, secrets: &Secrets) -> bool {
    matches!(bearer(headers), Some(Ok(t)) if !t.is_empty() && token_matches(secrets.token.as_bytes(), t.as_bytes()))
}

/// True when the request carries a credential to judge (a non-empty bearer
/// token or a signature header); without one the answer is `401`.
pub fn has_credentials(headers: &HeaderMap) -> bool {
    matches!(bearer(headers), Some(Ok(t)) if !t.is_empty())
        || SIGNATURE_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// True when a signature header is present (the body must then be read
/// before the request can be judged).
pub fn has_signature(headers: &HeaderMap) -> bool {
    SIGNATURE_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// Check one signature header value (`sha256=<64 hex digits>`) against the body.
pub fn signature_matches(key: &[u8], body: &[u8], value: &str) -> Result<(), String> {
    let v = value.trim();
    let Some(hex_sig) = v
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256="))
        .map(|_| &v[7..])
    else {
        return Err("expected `sha256=<64 hex digits>` (HMAC-SHA256 of the raw body)".into());
    };
    let sig = match hex::decode(hex_sig.trim()) {
        Ok(s) if s.len() == 32 => s,
        _ => return Err(
            "malformed: expected `sha256=` followed by 64 hex digits (HMAC-SHA256 of the raw body)"
                .into(),
        ),
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| "the HMAC key cannot be used".to_string())?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| {
        "the signature does not match the body (HMAC-SHA256 with the bridge's key)".into()
    })
}

/// The HMAC-SHA256 signature header value for `body` (`sha256=<hex>`).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Judge a request from its headers and raw body.
pub fn authenticate(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &Secrets,
) -> Result<Method, AuthFailure> {
    let mut first_refusal: Option<AuthFailure> = None;
    let mut missing_reason: Option<String> = None;
    match bearer(headers) {
        Some(Ok("")) => {
            missing_reason = Some("the bearer token is empty".into());
        }
        Some(Ok(t)) => {
            if token_matches(secrets.token.as_bytes(), t.as_bytes()) {
                return Ok(Method::Bearer);
            }
            first_refusal = Some(AuthFailure::Refused {
                field: "Authorization".into(),
                reason: "wrong bearer token".into(),
            });
        }
        Some(Err(reason)) => missing_reason = Some(reason),
        None => {}
    }
    for name in SIGNATURE_HEADERS {
        let Some(v) = headers.get(name) else { continue };
        let header = canonical(name);
        let result = match v.to_str() {
            Ok(s) => signature_matches(secrets.hmac_key.as_bytes(), body, s),
            Err(_) => Err("the header is not readable text".into()),
        };
        match result {
            Ok(()) => return Ok(Method::Signature(header)),
            Err(reason) => {
                first_refusal.get_or_insert(AuthFailure::Refused {
                    field: header.into(),
                    reason,
                });
            }
        }
    }
    Err(first_refusal.unwrap_or_else(|| {
        AuthFailure::Missing(missing_reason.unwrap_or_else(|| {
            "no credentials: send `Authorization: Bearer <token>` or `X-Ghost-Signature: sha256=<HMAC-SHA256 of the body>`".into()
        }))
    }))
}

fn canonical(name: &'static str) -> &'static str {
    match name {
        "x-ghost-signature" => "X-Ghost-Signature",
        "x-hub-signature-256" => "X-Hub-Signature-256",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{Secret, SecretSource};
    use axum::http::HeaderValue;

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

    #[test]
    fn no_credentials_is_missing() {
        let e = authenticate(&HeaderMap::new(), b"", &secrets()).unwrap_err();
        assert!(matches!(e, AuthFailure::Missing(_)), "{e:?}");
        assert!(!has_credentials(&HeaderMap::new()));
        // Another scheme is no usable credential either.
        let h = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        match authenticate(&h, b"", &secrets()).unwrap_err() {
            AuthFailure::Missing(r) => assert!(r.contains("not `Bearer"), "{r}"),
            e => panic!("{e:?}"),
        }
        // A token sent without its scheme is never echoed.
        let h = headers(&[("authorization", "the-token")]);
        let e = authenticate(&h, b"", &secrets()).unwrap_err();
        assert!(!e.reason().contains("the-token"), "{e:?}");
        let h = headers(&[("authorization", "Bearer ")]);
        assert!(matches!(
            authenticate(&h, b"", &secrets()),
            Err(AuthFailure::Missing(_))
        ));
    }

    #[test]
    fn bearer_right_and_wrong() {
        let h = headers(&[("authorization", "Bearer the-token")]);
        assert_eq!(authenticate(&h, b"x", &secrets()), Ok(Method::Bearer));
        assert!(bearer_ok(&h, &secrets()));
        let h = headers(&[("authorization", "bearer   the-token  ")]);
        assert_eq!(authenticate(&h, b"x", &secrets()), Ok(Method::Bearer));
        for wrong in ["the-toke", "the-token2", "THE-TOKEN", "x"] {
            let h = headers(&[("authorization", &format!("Bearer {wrong}"))]);
            let e = authenticate(&h, b"x", &secrets()).unwrap_err();
            assert!(matches!(e, AuthFailure::Refused { .. }), "{wrong}: {e:?}");
            assert_eq!(e.field(), "Authorization");
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
    fn signature_via_both_headers() {
        let body = br#"{"id":"x"}"#;
        let sig = sign(b"the-key", body);
        for h in SIGNATURE_HEADERS {
            let hm = headers(&[(h, &sig)]);
            assert_eq!(
                authenticate(&hm, body, &secrets()),
                Ok(Method::Signature(canonical(h)))
            );
            // Upper-case hex and prefix are accepted too.
            let hm = headers(&[(h, &sig.to_uppercase())]);
            assert!(authenticate(&hm, body, &secrets()).is_ok());
        }
    }

    #[test]
    fn bad_and_malformed_signatures_are_refused() {
        let body = b"payload";
        let other = sign(b"the-key", b"other payload");
        let wrong_key = sign(b"not-the-key", body);
        for (value, needle) in [
            (other.as_str(), "does not match"),
            (wrong_key.as_str(), "does not match"),
            ("sha256=zz", "malformed"),
            ("sha256=abcd", "malformed"),
            ("sha1=0123456789abcdef0123456789abcdef01234567", "expected"),
            ("", "expected"),
        ] {
            let h = headers(&[("x-ghost-signature", value)]);
            match authenticate(&h, body, &secrets()).unwrap_err() {
                AuthFailure::Refused { field, reason } => {
                    assert_eq!(field, "X-Ghost-Signature");
                    assert!(reason.contains(needle), "{value}: {reason}");
                }
                e => panic!("{value}: {e:?}"),
            }
        }
    }

    #[test]
    fn one_valid_credential_is_enough() {
        let body = b"b";
        let h = headers(&[
            ("authorization", "Bearer wrong"),
            ("x-hub-signature-256", &sign(b"the-key", body)),
        ]);
        assert_eq!(
            authenticate(&h, body, &secrets()),
            Ok(Method::Signature("X-Hub-Signature-256"))
        );
        // Both wrong: the first refusal is reported.
        let h = headers(&[
            ("authorization", "Bearer wrong"),
            ("x-ghost-signature", "sha256=00"),
        ]);
        assert_eq!(
            authenticate(&h, body, &secrets()).unwrap_err().field(),
            "Authorization"
        );
    }
}
