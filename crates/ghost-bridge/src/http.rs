//! The bridge's HTTP interface (axum): the routes, their authentication, and
//! the mapping from ingest outcomes to status codes and JSON bodies.
//!
//! Routes:
//! - `POST /v1/patches`: `application/json` (one patch, or an array of them)
//!   or `text/markdown`/`text/plain` (a chat transcript; every fenced block
//!   that holds a patch is taken).
//! - `POST /webhook` (the legacy webhook shape) and `POST /ingest/patch`
//!   (`{patch, metadata}`): compatibility routes for the old senders.
//! - `GET /v1/patches/{id}`: an entry's state, record and summary, by patch id
//!   or queue name.
//! - `GET /healthz`: liveness, without authentication.
//!
//! Invariants: authentication is judged before any body byte is read (a
//! bearer token or a refusal from the headers alone; a signature is verified
//! while the body streams in, within `bridge.max_patch_bytes` and the shared
//! budget for unverified bodies); every body is read within its size limit
//! and `bridge.body_timeout`; a client over `bridge.rate_limit` gets `429`
//! before anything else is done; JSON parsing and transcript extraction run
//! on the blocking pool, so `/healthz` answers while big requests are judged;
//! `202` is answered only after the patch is durable in `pending/` (the
//! [`Ingestor`] guarantees that); refusals are logged through the
//! aggregating [`RefusalLog`](crate::guard::RefusalLog); every error body is
//! JSON of the shape `{"error": kind, "message": text, "errors": [{"field", "reason"}]}`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use ghost_core::patch::FieldError;
use ghost_core::text::clip;

use crate::auth::{self, AuthFailure, Judgement};
use crate::guard::{self, Arrived, BodyError, Guard};
use crate::ingest::{conflict_reason, document_id, field_error, Ingestor, Outcome, Queued, Source};
use crate::secrets::Secrets;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub ingestor: Arc<Ingestor>,
    pub secrets: Arc<Secrets>,
    pub guard: Arc<Guard>,
}

impl AppState {
    /// The state for `ingestor`, with fresh guards from its configuration.
    pub fn new(ingestor: Arc<Ingestor>, secrets: Arc<Secrets>) -> AppState {
        let guard = Arc::new(Guard::new(&ingestor.config().bridge));
        AppState {
            ingestor,
            secrets,
            guard,
        }
    }
}

/// The content types `POST /v1/patches` accepts, for the 415 answer.
const ACCEPTED_TYPES: &str =
    "application/json (one patch or an array), text/markdown or text/plain (a transcript)";

/// Build the router. Requests need a `ConnectInfo<SocketAddr>` extension
/// (the server inserts it): the rate limit and the logs use the peer.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/v1/patches", post(post_patches))
        .route("/v1/patches/{id}", get(get_patch))
        .route("/webhook", post(post_webhook))
        .route("/ingest/patch", post(post_ingest_patch))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(authed)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outermost: a client over its rate is answered before anything is read.
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .with_state(state)
}

// ---------------------------------------------------------------------------
// Error bodies
// ---------------------------------------------------------------------------

/// An error answer: status, kind, message, field errors, optional Retry-After.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError {
            status,
            kind,
            message: reason.clone(),
            errors: vec![field_error(field, reason)],
            retry_after: None,
        }
    }

    fn retry_after(mut self, secs: u64) -> Self {
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

fn respond(status: StatusCode, body: Value, retry_after: Option<u64>) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// Seconds a client is told to wait (`bridge.retry_after`, at least 1).
fn retry_after_secs(ing: &Ingestor) -> u64 {
    ing.config()
        .bridge
        .retry_after
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64
}

/// The answer to a body that could not be read; `key` names the size limit.
fn body_error(e: BodyError, key: &str, ing: &Ingestor) -> ApiError {
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

fn humantime_secs(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// When a request's body must be complete.
fn body_deadline(req: &Request, ing: &Ingestor) -> Instant {
    let arrived = req
        .extensions()
        .get::<Arrived>()
        .map_or_else(Instant::now, |a| a.0);
    arrived + ing.config().bridge.body_timeout
}

/// The peer of a request (the server inserts it; in-process callers may not).
fn peer_of(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Count and log (aggregated) a request refused before any patch reached the ingestor.
fn refuse(st: &AppState, peer: SocketAddr, source: &Source, e: ApiError) -> Response {
    let ing = &st.ingestor;
    ing.counters.received.fetch_add(1, Ordering::Relaxed);
    ing.counters.rejected.fetch_add(1, Ordering::Relaxed);
    st.guard.refusals.note(Some(peer.ip()), e.kind, || {
        format!("{}: {}", source.detail, clip(&e.message, 300))
    });
    e.into_response()
}

async fn not_found(req: Request) -> Response {
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

async fn method_not_allowed(req: Request) -> Response {
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

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

/// A client over `bridge.rate_limit` gets `429` with `Retry-After`;
/// `/healthz` is exempt (the watchdog and load balancers poll it).
async fn rate_limit(State(st): State<AppState>, req: Request, next: Next) -> Response {
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

async fn require_auth(
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
fn signed_too_large(field: &str, limit: u64) -> AuthFailure {
    AuthFailure {
        field: field.to_string(),
        reason: format!(
            "a signed request carries at most {limit} bytes (bridge.max_patch_bytes) and this body is larger, so its signature cannot be verified; send it with `Authorization: Bearer <token>`"
        ),
        kind: "signed_too_large",
    }
}

/// `401`, logged through the aggregating refusal log (reasons never contain a credential).
fn auth_refused(st: &AppState, peer: SocketAddr, route: &str, f: AuthFailure) -> Response {
    st.guard.refusals.note(Some(peer.ip()), f.kind, || {
        format!("{route}: {}: {}", f.field(), f.reason())
    });
    auth_error(f)
}

fn auth_error(f: AuthFailure) -> Response {
    let mut r =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", &f.field, f.reason).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ghost-bridge\""),
    );
    r
}

// ---------------------------------------------------------------------------
// Outcomes → answers
// ---------------------------------------------------------------------------

/// Where an item sits in its request.
#[derive(Debug, Clone, Copy, Default)]
struct At {
    /// 1-based position among the request's items.
    item: usize,
    /// For a transcript: the fenced block's number and its opening line.
    block: Option<usize>,
    line: Option<usize>,
}

/// The answer to a request of one or more items.
#[derive(Debug, Default)]
struct Report {
    /// One patch alone (its field errors are the answer's field errors unprefixed).
    single: bool,
    /// `item` (array) or `block` (transcript), for prefixing field errors.
    label: &'static str,
    queued: Vec<Queued>,
    duplicates: Vec<Queued>,
    rejected: Vec<Value>,
    errors: Vec<FieldError>,
    conflict: Option<(String, Queued)>,
    busy: Option<(String, usize)>,
    failed: Option<String>,
    invalid: usize,
    extraction_failed: usize,
}

/// The id a document names (for echoing in a refusal), clipped.
fn id_hint(v: &Value) -> Option<String> {
    ["id", "blockId"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(|s| clip(s, 256))
}

impl Report {
    fn new(single: bool, label: &'static str) -> Report {
        Report {
            single,
            label,
            ..Report::default()
        }
    }

    fn push_errors(&mut self, at: At, errs: &[FieldError]) {
        for e in errs {
            let field = if self.single {
                e.field.clone()
            } else {
                let n = at.block.unwrap_or(at.item);
                format!("{} {n}: {}", self.label, e.field)
            };
            self.errors.push(field_error(&field, e.reason.clone()));
        }
    }

    fn reject(
        &mut self,
        at: At,
        id: Option<String>,
        kind: &'static str,
        errs: Vec<FieldError>,
        extra: Option<(&str, Value)>,
    ) {
        self.push_errors(at, &errs);
        let mut m = Map::new();
        m.insert("item".into(), json!(at.item));
        if let Some(b) = at.block {
            m.insert("block".into(), json!(b));
        }
        if let Some(l) = at.line {
            m.insert("line".into(), json!(l));
        }
        if let Some(id) = id {
            m.insert("id".into(), json!(id));
        }
        m.insert("error".into(), json!(kind));
        m.insert("errors".into(), json!(errs));
        if let Some((k, v)) = extra {
            m.insert(k.into(), v);
        }
        self.rejected.push(Value::Object(m));
    }

    fn record(&mut self, at: At, id: Option<String>, outcome: Outcome, ing: &Ingestor) {
        match outcome {
            Outcome::Queued(q) => self.queued.push(q),
            Outcome::Duplicate(q) => self.duplicates.push(q),
            Outcome::Conflict { id: cid, existing } => {
                let reason = conflict_reason(&cid, &existing);
                let extra = json!(existing);
                self.conflict.get_or_insert((clip(&cid, 256), existing));
                self.reject(
                    at,
                    Some(clip(&cid, 256)),
                    "conflict",
                    vec![field_error("id", reason)],
                    Some(("existing", extra)),
                );
            }
            Outcome::Rejected(e) => {
                self.invalid += 1;
                self.reject(at, id, "invalid_patch", e.errors, None);
            }
            Outcome::Full { target, depth } => {
                let hwm = ing.config().bridge.high_water_mark;
                let reason = format!(
                    "target {target} has {depth} pending patches, at or above bridge.high_water_mark ({hwm}); retry after {} s",
                    retry_after_secs(ing)
                );
                self.busy.get_or_insert((target, depth));
                self.reject(at, id, "busy", vec![field_error("target", reason)], None);
            }
            Outcome::Failed(msg) => {
                let reason = format!("the patch could not be written durably: {msg}; retry later");
                self.failed.get_or_insert(msg);
                self.reject(
                    at,
                    id,
                    "write_failed",
                    vec![field_error("(storage)", reason)],
                    None,
                );
            }
        }
    }

    fn extraction_failed(&mut self, at: At, reason: String) {
        self.extraction_failed += 1;
        self.reject(
            at,
            None,
            "extraction_failed",
            vec![field_error("(block)", reason)],
            None,
        );
    }

    fn into_response(self, ing: &Ingestor) -> Response {
        let retry = retry_after_secs(ing);
        let mut body = json!({
            "queued": self.queued,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        });
        let items = self.queued.len() + self.duplicates.len() + self.rejected.len();
        let (status, kind, message, retry_after): (StatusCode, Option<&str>, String, Option<u64>) =
            if !self.queued.is_empty() {
                let mut m = format!("queued {} patch(es) durably", self.queued.len());
                if !self.duplicates.is_empty() {
                    m.push_str(&format!("; {} already queued", self.duplicates.len()));
                }
                if !self.rejected.is_empty() {
                    m.push_str(&format!("; {} refused (see rejected)", self.rejected.len()));
                }
                (StatusCode::ACCEPTED, None, m, None)
            } else if !self.duplicates.is_empty() && self.rejected.is_empty() {
                (
                    StatusCode::OK,
                    None,
                    "already queued with the same content; nothing written".into(),
                    None,
                )
            } else if let Some((id, existing)) = &self.conflict {
                body["existing"] = json!(existing);
                (
                    StatusCode::CONFLICT,
                    Some("conflict"),
                    conflict_reason(id, existing),
                    None,
                )
            } else if let Some((target, depth)) = &self.busy {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    Some("busy"),
                    format!(
                        "target {target} has {depth} pending patches (bridge.high_water_mark {}); retry after {retry} s",
                        ing.config().bridge.high_water_mark
                    ),
                    Some(retry),
                )
            } else if let Some(msg) = &self.failed {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("write_failed"),
                    format!(
                        "the patch could not be written durably ({msg}); retry after {retry} s"
                    ),
                    Some(retry),
                )
            } else {
                let kind = if self.invalid == 0 && self.extraction_failed > 0 {
                    "extraction_failed"
                } else {
                    "invalid_patch"
                };
                let m = if self.single {
                    let all: Vec<String> = self
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.reason))
                        .collect();
                    clip(&format!("invalid patch: {}", all.join("; ")), 2000)
                } else {
                    format!("all {items} item(s) were refused; nothing was queued")
                };
                (StatusCode::BAD_REQUEST, Some(kind), m, None)
            };
        body["message"] = json!(message);
        if let Some(k) = kind {
            body["error"] = json!(k);
            body["errors"] = json!(self.errors);
        } else if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        respond(status, body, retry_after)
    }
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

async fn healthz(State(st): State<AppState>) -> Response {
    Json(json!({
        "status": "ok",
        "paused": st.ingestor.paused(),
        "version": ghost_core::VERSION,
    }))
    .into_response()
}

fn source(route: &str, peer: SocketAddr) -> Source {
    Source {
        channel: "http".into(),
        detail: format!("{route} from {peer}"),
    }
}

fn paused_error(ing: &Ingestor) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "paused",
        "(bridge)",
        // Relative to the root: the server's own paths are not the client's business.
        format!(
            "the flow is paused ({} exists); nothing is accepted until it is resumed",
            ing.pause_file()
                .strip_prefix(ing.layout().root())
                .unwrap_or(&ing.pause_file())
                .display()
        ),
    )
    .retry_after(retry_after_secs(ing))
}

/// What a request body is, by its Content-Type.
#[derive(Debug, PartialEq, Eq)]
enum BodyKind {
    Json,
    Transcript,
    Missing,
    Other(String),
}

fn body_kind(headers: &HeaderMap) -> BodyKind {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return BodyKind::Missing;
    };
    let Ok(s) = v.to_str() else {
        return BodyKind::Other("(unreadable)".into());
    };
    let mime = s
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => BodyKind::Json,
        m if m.starts_with("application/") && m.ends_with("+json") => BodyKind::Json,
        "text/markdown" | "text/x-markdown" | "text/plain" => BodyKind::Transcript,
        "" => BodyKind::Missing,
        _ => BodyKind::Other(clip(s, 100)),
    }
}

fn unsupported(kind: &BodyKind, accepted: &str) -> ApiError {
    let what = match kind {
        BodyKind::Other(t) => format!("Content-Type {t:?} is not accepted"),
        _ => "the Content-Type header is missing".into(),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Content-Type",
        format!("{what}; send {accepted}"),
    )
}

/// Parse a JSON body; the error names `(document)` with serde's line and column.
fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice(text).map_err(|e| {
        let hint = if e.to_string().contains("recursion limit") {
            " (the document nests arrays/objects more than 128 levels deep)"
        } else {
            ""
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "(document)",
            format!("not valid JSON: {e}{hint}"),
        )
    })
}

/// Ingest one JSON object as the request's only patch.
async fn ingest_single(
    ing: &Arc<Ingestor>,
    value: Value,
    original: Option<Vec<u8>>,
    source: &Source,
) -> Response {
    let mut report = Report::new(true, "item");
    let id = id_hint(&value);
    let outcome = ing.ingest(value, original, None, source).await;
    report.record(
        At {
            item: 1,
            ..At::default()
        },
        id,
        outcome,
        ing,
    );
    report.into_response(ing)
}

/// Read an authenticated request's body, within `bridge.max_body_bytes` and
/// `bridge.body_timeout`.
async fn read_body(
    st: &AppState,
    peer: SocketAddr,
    req: Request,
    source: &Source,
) -> Result<Bytes, Response> {
    let ing = &st.ingestor;
    let deadline = body_deadline(&req, ing);
    let limit = ing.config().bridge.max_body_bytes;
    if guard::content_length(req.headers()).is_some_and(|n| n > limit) {
        let e = body_error(BodyError::TooLarge { limit }, "bridge.max_body_bytes", ing);
        return Err(refuse(st, peer, source, e));
    }
    match guard::read_body(req.into_body(), limit, deadline, None).await {
        Ok((b, _)) => Ok(b),
        Err(e) => Err(refuse(
            st,
            peer,
            source,
            body_error(e, "bridge.max_body_bytes", ing),
        )),
    }
}

/// [`parse_json`] on the blocking pool: a 32 MiB document takes a while.
async fn parse_json_off(bytes: Bytes) -> Result<(Bytes, Value), ApiError> {
    tokio::task::spawn_blocking(move || parse_json(&bytes).map(|v| (bytes, v)))
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "(document)",
                format!("the document could not be parsed: {e}"),
            ))
        })
}

async fn post_patches(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let ing = &st.ingestor;
    if ing.paused() {
        return paused_error(ing).into_response();
    }
    let src = source("POST /v1/patches", peer);
    let kind = body_kind(req.headers());
    if matches!(kind, BodyKind::Other(_) | BodyKind::Missing) {
        return refuse(&st, peer, &src, unsupported(&kind, ACCEPTED_TYPES));
    }
    let bytes = match read_body(&st, peer, req, &src).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match kind {
        BodyKind::Json => {
            let (bytes, value) = match parse_json_off(bytes).await {
                Ok(v) => v,
                Err(e) => return refuse(&st, peer, &src, e),
            };
            match value {
                Value::Array(items) => {
                    if items.is_empty() {
                        return refuse(
                            &st,
                            peer,
                            &src,
                            ApiError::new(
                                StatusCode::BAD_REQUEST,
                                "no_patch",
                                "(document)",
                                "the array holds no patch",
                            ),
                        );
                    }
                    let mut report = Report::new(false, "item");
                    for (i, v) in items.into_iter().enumerate() {
                        let at = At {
                            item: i + 1,
                            ..At::default()
                        };
                        let id = id_hint(&v);
                        let s = Source {
                            channel: src.channel.clone(),
                            detail: format!("{}, item {}", src.detail, i + 1),
                        };
                        let outcome = ing.ingest(v, None, None, &s).await;
                        report.record(at, id, outcome, ing);
                    }
                    report.into_response(ing)
                }
                // Over `bridge.max_patch_bytes` (but within the body limit),
                // the ingestor refuses it by field: a 400 (docs/http.md).
                v => ingest_single(ing, v, Some(bytes.to_vec()), &src).await,
            }
        }
        _ => transcript(&st, peer, bytes, &src).await,
    }
}

async fn transcript(st: &AppState, peer: SocketAddr, bytes: Bytes, src: &Source) -> Response {
    let ing = &st.ingestor;
    // Decoding and extraction run on the blocking pool (a transcript may be
    // tens of MiB of YAML and JSON blocks).
    let extracted = tokio::task::spawn_blocking(move || {
        std::str::from_utf8(&bytes)
            .map(crate::transcript::extract)
            .map_err(|e| e.valid_up_to())
    })
    .await;
    let blocks = match extracted {
        Ok(Ok(b)) => b,
        Err(e) => {
            return refuse(
                st,
                peer,
                src,
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "(document)",
                    format!("the transcript could not be read: {e}"),
                ),
            )
        }
        Ok(Err(valid_up_to)) => {
            return refuse(
                st,
                peer,
                src,
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_text",
                    "(document)",
                    format!(
                        "the transcript is not UTF-8 text (invalid byte at offset {valid_up_to})"
                    ),
                ),
            )
        }
    };
    if blocks.is_empty() {
        ing.counters
            .extraction_failures
            .fetch_add(1, Ordering::Relaxed);
        warn!(event = "EXTRACTION_FAILED", channel = %src.channel, source = %src.detail, "no fenced block holding a patch in the transcript");
        return refuse(
            st,
            peer,
            src,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "no_patch",
                "(document)",
                "the transcript holds no patch: put each patch in a fenced ```json block",
            ),
        );
    }
    let mut report = Report::new(false, "block");
    // One line per transcript for its unreadable blocks, not one per block.
    let mut failed_blocks: Vec<(usize, usize, String)> = Vec::new();
    for (i, b) in blocks.into_iter().enumerate() {
        let at = At {
            item: i + 1,
            block: Some(b.block),
            line: Some(b.line),
        };
        match b.result {
            Ok(v) => {
                let id = id_hint(&v);
                let s = Source {
                    channel: src.channel.clone(),
                    detail: format!("{}, block {} (line {})", src.detail, b.block, b.line),
                };
                let outcome = ing.ingest(v, None, None, &s).await;
                report.record(at, id, outcome, ing);
            }
            Err(reason) => {
                ing.counters
                    .extraction_failures
                    .fetch_add(1, Ordering::Relaxed);
                if failed_blocks.is_empty() {
                    failed_blocks.push((b.block, b.line, clip(&reason, 300)));
                } else {
                    failed_blocks.push((b.block, b.line, String::new()));
                }
                report.extraction_failed(at, reason);
            }
        }
    }
    if let Some((block, line, reason)) = failed_blocks.first() {
        warn!(event = "EXTRACTION_FAILED", channel = %src.channel, source = %src.detail, blocks = failed_blocks.len(), first_block = block, first_line = line, first_reason = %reason, "fenced blocks could not be read as patches (every one is listed in the answer)");
    }
    report.into_response(ing)
}

/// The compatibility routes take JSON; a missing Content-Type is tolerated
/// because some of the old senders did not set one.
fn compat_type_ok(headers: &HeaderMap) -> Result<(), ApiError> {
    match body_kind(headers) {
        BodyKind::Json | BodyKind::Missing => Ok(()),
        k => Err(unsupported(&k, "application/json")),
    }
}

/// What both compatibility routes do first: the pause, the content type, the
/// body within its limit, and JSON. `Err` is the answer already made.
async fn compat_json(
    st: &AppState,
    route: &str,
    peer: SocketAddr,
    req: Request,
) -> Result<(Bytes, Value, Source), Response> {
    let ing = &st.ingestor;
    if ing.paused() {
        return Err(paused_error(ing).into_response());
    }
    let src = source(route, peer);
    if let Err(e) = compat_type_ok(req.headers()) {
        return Err(refuse(st, peer, &src, e));
    }
    let bytes = read_body(st, peer, req, &src).await?;
    match parse_json_off(bytes).await {
        Ok((bytes, v)) => Ok((bytes, v, src)),
        Err(e) => Err(refuse(st, peer, &src, e)),
    }
}

async fn post_webhook(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (bytes, value, src) = match compat_json(&st, "POST /webhook", peer, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ing = &st.ingestor;
    if !value.is_object() {
        return refuse(
            &st,
            peer,
            &src,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_patch",
                "(document)",
                "the webhook takes one JSON object {id, role, target_file, patch}",
            ),
        );
    }
    ingest_single(ing, value, Some(bytes.to_vec()), &src).await
}

async fn post_ingest_patch(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (_, value, src) = match compat_json(&st, "POST /ingest/patch", peer, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ing = &st.ingestor;
    let Value::Object(mut obj) = value else {
        return refuse(
            &st,
            peer,
            &src,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "(document)",
                "expected a JSON object {\"patch\": {...}, \"metadata\": {...}}",
            ),
        );
    };
    let patch = match obj.remove("patch") {
        Some(p @ Value::Object(_)) => p,
        other => {
            let reason = match other {
                None | Some(Value::Null) => "missing `patch` (the patch object)".to_string(),
                Some(_) => "`patch` must be a JSON object (the patch)".to_string(),
            };
            return refuse(
                &st,
                peer,
                &src,
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "patch", reason),
            );
        }
    };
    if let Some(meta) = obj.get("metadata") {
        // Logged for the person reading the log, never stored with the patch.
        info!(event = "INGEST_METADATA", source = %src.detail, patch_id = %clip(&document_id(&patch), 256), metadata = %clip(&meta.to_string(), 2000), "legacy metadata");
    }
    ingest_single(ing, patch, None, &src).await
}

async fn get_patch(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let key = match path {
        Ok(Path(k)) => k,
        Err(rej) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "id",
                rej.body_text(),
            )
            .into_response()
        }
    };
    let ing = st.ingestor.clone();
    let k = key.clone();
    let found = tokio::task::spawn_blocking(move || {
        let found = ing.locate(&k)?;
        let (state, q) = (
            found.state,
            Queued {
                id: found.patch_id.unwrap_or_default(),
                name: found.name,
                target: found.target,
            },
        );
        let queue = ing.layout().queue(&q.target);
        let summary = match ghost_core::summary::read(&ing.layout().summaries(&q.target), &q.name) {
            Ok(Some(s)) => json!(s),
            Ok(None) => Value::Null,
            Err(e) => {
                warn!(queue_name = %q.name, error = %e, "cannot read the summary");
                Value::Null
            }
        };
        let record = match queue.read_record(state, &q.name) {
            Ok(r) => json!(r),
            Err(e) => {
                warn!(queue_name = %q.name, error = %e, "cannot read the entry record");
                Value::Null
            }
        };
        Some(json!({
            "id": q.id,
            "name": q.name,
            "target": q.target,
            "state": state.name(),
            "summary": summary,
            "record": record,
        }))
    })
    .await
    .ok()
    .flatten();
    match found {
        Some(v) => Json(v).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "id",
            format!("no patch with id or queue name {:?}", clip(&key, 200)),
        )
        .into_response(),
    }
}
