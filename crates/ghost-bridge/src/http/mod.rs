//! The bridge's HTTP interface (axum): the routes, their authentication, and
//! the mapping from ingest outcomes to status codes and JSON bodies.
//!
//! Routes:
//! - `POST /v1/patches`: `application/json` (one patch, or an array of them)
//!   or `text/markdown`/`text/plain` (a chat transcript; every fenced block
//!   that holds a patch is taken, and every agent's patch: `apply_patch`
//!   envelopes, SEARCH/REPLACE blocks, unified diffs), or
//!   `text/x-apply-patch`/`text/x-diff`/`text/x-patch` (read the same way).
//!   `?target=NAME` gives the target of content that names none.
//! - `POST /webhook` (the legacy webhook shape) and `POST /ingest/patch`
//!   (`{patch, metadata}`): compatibility routes for the old senders.
//! - `GET /v1/patches/{id}`: an entry's state, record and summary, by patch id
//!   or queue name; an archived one through the archive's index (`archived`).
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

use ghost_core::entry::Resolved;
use ghost_core::patch::FieldError;
use ghost_core::text::clip;

use crate::auth::{self, AuthFailure, Judgement};
use crate::guard::{self, Arrived, BodyError, Guard};
use crate::ingest::{conflict_reason, document_id, field_error, Ingestor, Outcome, Queued, Source};
use crate::secrets::Secrets;

mod auth_glue;
mod errors;
mod handlers;
mod report;

use auth_glue::*;
use errors::*;
use handlers::*;
use report::*;

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
    "application/json (one patch or an array), text/markdown or text/plain \
     (a transcript), text/x-apply-patch, text/x-diff or text/x-patch (an agent's patch)";

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
