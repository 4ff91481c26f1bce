//! Authentication glue: the middleware that judges a request with `crate::auth`.

use super::*;

/// A client over `bridge.rate_limit` gets `429` with `Retry-After`;
/// `/healthz` is exempt (the watchdog and load balancers poll it).
pub(super) async fn rate_limit(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(peer) = peer_of(&req) else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    match st.guard.rate.check(peer.ip()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let b = &st.ingestor.config().bridge;
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            st.guard.refusals.note(Some(peer.ip()), "rate_limited", || {
                format!("{} {}", req.method(), clip(req.uri().path(), 200))
            });
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "(client)",
                format!(
                    "more than {} requests per second from {} (bridge.rate_limit, burst bridge.rate_burst {}); retry after {secs} s",
                    b.rate_limit,
                    peer.ip(),
                    b.rate_burst
                ),
            )
            .retry_after(secs)
            .into_response()
        }
    }
}

pub(super) async fn require_auth(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let bridge = &st.ingestor.config().bridge;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let judged = auth::judge(
        req.method(),
        &path_and_query,
        req.headers(),
        &st.secrets,
        ghost_core::time::unix_ms(std::time::SystemTime::now()) / 1000,
        bridge.signature_window.as_secs(),
    );
    let route = clip(req.uri().path(), 200);
    let mut check = match judged {
        Ok(Judgement::Accepted(_)) => return next.run(req).await,
        Ok(Judgement::Verify(c)) => c,
        Err(f) => return auth_refused(&st, peer, &route, f),
    };
    // A signature: the body is read (at most bridge.max_patch_bytes, within
    // the shared budget for unverified bodies) and hashed as it arrives.
    // A body over that cannot be verified: the request is unauthenticated
    // (401), answered from its declared length before a byte is read.
    let limit = bridge.max_patch_bytes;
    let sig_field = check.field();
    if guard::content_length(req.headers()).is_some_and(|n| n > limit) {
        return auth_refused(&st, peer, &route, signed_too_large(sig_field, limit));
    }
    let src = source(&format!("{} {route}", req.method()), peer);
    let deadline = body_deadline(&req, &st.ingestor);
    let (parts, body) = req.into_parts();
    let read = guard::read_body(body, limit, deadline, Some((&mut check, &st.guard.budget))).await;
    let (bytes, permit) = match read {
        Ok(x) => x,
        Err(BodyError::TooLarge { .. }) => {
            return auth_refused(&st, peer, &route, signed_too_large(sig_field, limit))
        }
        Err(e) => {
            let e = body_error(e, "bridge.max_patch_bytes", &st.ingestor);
            return refuse(&st, peer, &src, e);
        }
    };
    match check.finish() {
        Ok(_) => {
            drop(permit);
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(f) => auth_refused(&st, peer, &route, f),
    }
}

/// A signed body over `limit` cannot be verified: the request is not authenticated.
pub(super) fn signed_too_large(field: &str, limit: u64) -> AuthFailure {
    AuthFailure {
        field: field.to_string(),
        reason: format!(
            "a signed request carries at most {limit} bytes (bridge.max_patch_bytes) and this body is larger, so its signature cannot be verified; send it with `Authorization: Bearer <token>`"
        ),
        kind: "signed_too_large",
    }
}

/// `401`, logged through the aggregating refusal log (reasons never contain a credential).
pub(super) fn auth_refused(
    st: &AppState,
    peer: SocketAddr,
    route: &str,
    f: AuthFailure,
) -> Response {
    st.guard.refusals.note(Some(peer.ip()), f.kind, || {
        format!("{route}: {}: {}", f.field(), f.reason())
    });
    auth_error(f)
}

pub(super) fn auth_error(f: AuthFailure) -> Response {
    let mut r =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", &f.field, f.reason).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ghost-bridge\""),
    );
    r
}
