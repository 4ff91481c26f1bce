//! Error bodies: every refusal is JSON of one shape.

use super::*;

/// An error answer: status, kind, message, field errors, optional Retry-After.
pub(super) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        kind: &'static str,
        field: &str,
        reason: impl Into<String>,
    ) -> Self {
        let reason = reason.into();
        ApiError {
            status,
            kind,
            message: reason.clone(),
            errors: vec![field_error(field, reason)],
            retry_after: None,
        }
    }

    pub(super) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.kind, "message": self.message, "errors": self.errors});
        respond(self.status, body, self.retry_after)
    }
}

pub(super) fn respond(status: StatusCode, body: Value, retry_after: Option<u64>) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// Seconds a client is told to wait (`bridge.retry_after`, at least 1).
pub(super) fn retry_after_secs(ing: &Ingestor) -> u64 {
    ing.config()
        .bridge
        .retry_after
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64
}

/// The answer to a body that could not be read; `key` names the size limit.
pub(super) fn body_error(e: BodyError, key: &str, ing: &Ingestor) -> ApiError {
    match e {
        BodyError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "(body)",
            format!("the request body is larger than {limit} bytes ({key})"),
        ),
        BodyError::Timeout { after } => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "(body)",
            format!(
                "the request body was not complete after {} ms (bridge.body_timeout is {})",
                after.as_millis(),
                humantime_secs(ing.config().bridge.body_timeout)
            ),
        ),
        BodyError::Overloaded => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "(body)",
            "too many signed bodies are being verified at once (bridge.unverified_body_budget); retry shortly or use the bearer token",
        )
        .retry_after(1),
        BodyError::Unreadable(m) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "(body)",
            format!("the request body could not be read: {m}"),
        ),
    }
}

pub(super) fn humantime_secs(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// When a request's body must be complete.
pub(super) fn body_deadline(req: &Request, ing: &Ingestor) -> Instant {
    let arrived = req
        .extensions()
        .get::<Arrived>()
        .map_or_else(Instant::now, |a| a.0);
    arrived + ing.config().bridge.body_timeout
}

/// The peer of a request (the server inserts it; in-process callers may not).
pub(super) fn peer_of(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Count and log (aggregated) a request refused before any patch reached the ingestor.
pub(super) fn refuse(st: &AppState, peer: SocketAddr, source: &Source, e: ApiError) -> Response {
    let ing = &st.ingestor;
    ing.counters.received.fetch_add(1, Ordering::Relaxed);
    ing.counters.rejected.fetch_add(1, Ordering::Relaxed);
    st.guard.refusals.note(Some(peer.ip()), e.kind, || {
        format!("{}: {}", source.detail, clip(&e.message, 300))
    });
    e.into_response()
}

pub(super) async fn not_found(req: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "(path)",
        format!(
            "no route {} {}; routes: POST /v1/patches, GET /v1/patches/{{id}}, POST /webhook, POST /ingest/patch, GET /healthz",
            req.method(),
            clip(req.uri().path(), 200)
        ),
    )
    .into_response()
}

pub(super) async fn method_not_allowed(req: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "(method)",
        format!(
            "{} is not allowed on {}",
            req.method(),
            clip(req.uri().path(), 200)
        ),
    )
    .into_response()
}
