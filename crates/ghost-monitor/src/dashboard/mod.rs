//! The dashboard (docs/dashboard.md): the monitor serves a web page an
//! operator keeps open, its JSON API (`/api/v1/...`), and `/metrics`.
//!
//! It owns nothing on disk but the generated token: it reads the files the
//! monitor's cycle writes (`state/health.json`, `state/history/`,
//! `alerts/state.json`) and the queues, and every action it offers is the one
//! implementation in [`ghost_core::actions`], which checks the rules and
//! appends the audit line.
//!
//! Invariants: nothing but `/healthz` answers without the token ([`gate`]);
//! every POST carries the CSRF token and, when the browser says where it came
//! from, comes from this origin; the token never reaches a log or a page.
//! The HTTP side is the bridge's accept loop ([`ghost_http`]): a header-read
//! timeout, a connection cap answered with 503; and a body limit.

pub mod api;
pub mod auth;
pub mod listing;
pub mod metrics;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use ghost_core::{Config, Layout};

use self::auth::Auth;
use self::metrics::Metrics;

/// A request's headers must arrive within this long (and an idle keep-alive
/// connection is closed after it).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// The largest request body (every action's body is a small JSON object).
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler shares.
pub struct Dashboard {
    pub config: Config,
    pub layout: Layout,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    /// The queue browser's listings.
    pub listings: listing::Listings,
}

pub type Shared = Arc<Dashboard>;

const INDEX_HTML: &str = include_str!("assets/index.html");
const SIGNIN_HTML: &str = include_str!("assets/signin.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Every route; [`gate`] in front of all of them.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/signin", get(signin_page).post(signin_post))
        .route("/signout", post(signout))
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/session", get(api::session))
        .route("/api/v1/overview", get(api::overview))
        .route("/api/v1/entries", get(api::entries))
        .route("/api/v1/entries/{target}/{name}", get(api::entry))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/logs", get(api::logs))
        .route("/api/v1/actions/{action}", post(api::entry_action))
        .route("/api/v1/pause", post(api::pause))
        .route("/api/v1/resume", post(api::resume))
        .route("/api/v1/alerts/ack", post(api::ack))
        .route("/api/v1/alerts/silence", post(api::silence))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A JSON error: `{"error": code, "message": text}`.
pub fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({"error": code, "message": message.into()})),
    )
        .into_response()
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(c) = cookie {
        r = r.header(header::SET_COOKIE, c);
    }
    r.body(Body::empty()).expect("a valid response")
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            // A sign-in link's token must not travel on to another site.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

fn signin_html(message: &str) -> String {
    SIGNIN_HTML.replace("{{MESSAGE}}", message)
}

/// How a request proved it holds the token, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Bearer,
    Cookie,
}

fn proof(auth: &Auth, headers: &HeaderMap) -> Option<Proof> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return auth.token_ok(t).then_some(Proof::Bearer);
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| auth::cookie_value(c, auth::COOKIE))
        .any(|v| auth.session_ok(v))
        .then_some(Proof::Cookie)
}

/// True when the browser says the request came from another site: an
/// `Origin` that is not this host, or `Sec-Fetch-Site: cross-site`.
fn cross_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let bare = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if origin == "null" || bare.is_none() || bare != host {
            return true;
        }
    }
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
}

/// The door: see the module comment.
async fn gate(State(d): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let is_post = req.method() == Method::POST;
    if path == "/healthz" {
        return next.run(req).await;
    }
    if is_post && cross_origin(req.headers()) {
        return json_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "this request came from another site; actions are taken from the dashboard's own pages only",
        );
    }
    if path == "/signin" {
        return next.run(req).await;
    }
    // The sign-in link: `/?token=…` sets the cookie and redirects to a clean URL.
    if path == "/" && req.method() == Method::GET {
        if let Some(q) = req.uri().query() {
            if let Some((_, t)) = auth::form_pairs(q).into_iter().find(|(k, _)| k == "token") {
                if d.auth.token_ok(&t) {
                    return redirect("/", Some(d.auth.set_cookie()));
                }
                return html(
                    StatusCode::UNAUTHORIZED,
                    signin_html("That sign-in link's token is not this dashboard's token."),
                );
            }
        }
    }
    let Some(how) = proof(&d.auth, req.headers()) else {
        let api = path.starts_with("/api/") || path == "/metrics" || is_post;
        if api {
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in, or send Authorization: Bearer TOKEN (the token is in state/secrets/dashboard_token or $GHOST_DASHBOARD_TOKEN)",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"ghostbridge dashboard\""),
            );
            return r;
        }
        return redirect("/signin", None);
    };
    if is_post {
        let ok = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| d.auth.csrf_ok(v));
        if !ok {
            return json_error(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token (GET /api/v1/session gives it)",
            );
        }
    }
    let mut req = req;
    req.extensions_mut().insert(how);
    next.run(req).await
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok", "version": ghost_core::VERSION})).into_response()
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such page or API route",
    )
}

async fn signin_page() -> Response {
    html(StatusCode::OK, signin_html(""))
}

/// The sign-in form's POST (`token=…`): the cookie and a redirect, or the
/// form again with 401.
async fn signin_post(State(d): State<Shared>, body: String) -> Response {
    let token = auth::form_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
        .unwrap_or_default();
    if d.auth.token_ok(&token) {
        return redirect("/", Some(d.auth.set_cookie()));
    }
    html(
        StatusCode::UNAUTHORIZED,
        signin_html("That is not this dashboard's token."),
    )
}

async fn signout() -> Response {
    redirect("/signin", Some(auth::clear_cookie()))
}

async fn index(State(d): State<Shared>) -> Response {
    html(
        StatusCode::OK,
        INDEX_HTML.replace("{{CSRF}}", d.auth.csrf()),
    )
}

async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        APP_CSS,
    )
        .into_response()
}

/// `/metrics`: OpenMetrics for a scraper that asks for it (Prometheus
/// does), else the Prometheus text format 0.0.4 (`curl`, `promtool`).
async fn metrics_text(State(d): State<Shared>, headers: HeaderMap) -> Response {
    let open = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (kind, text) = if open {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            d.metrics.encode(),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            d.metrics.encode_classic(),
        )
    };
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

/// Refusals and failed accepts of the dashboard's connections, logged.
struct Log;

impl ghost_http::Observer for Log {
    fn refused(&self, peer: SocketAddr) {
        warn!(event = "DASHBOARD_OVERLOADED", peer = %peer.ip(), max = MAX_CONNECTIONS, "too many dashboard connections: answered 503");
    }

    fn accept_failed(&self, error: &io::Error) {
        warn!(event = "DASHBOARD_ACCEPT_FAILED", error = %error, "cannot accept a dashboard connection");
    }
}

/// Serve the dashboard on `listener` until `stop` through the shared accept
/// loop ([`ghost_http::serve`]), then drain the open connections (the
/// caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    stop: CancellationToken,
) -> io::Result<()> {
    let limits = ghost_http::Limits {
        header_timeout: HEADER_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
        overloaded_body: "{\"error\":\"overloaded\",\"message\":\"the dashboard is serving its maximum of connections; retry shortly\"}".into(),
    };
    // The queue browser's listings are dropped once no page asks for them.
    let (kept, stopped) = (state.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.cancelled() => break,
                _ = tokio::time::sleep(listing::KEEP_UNUSED) => {}
            }
            if kept.listings.forget_unused(listing::KEEP_UNUSED) > 0 {
                crate::trim_heap();
            }
        }
    });
    ghost_http::serve(listener, router(state), &limits, Arc::new(Log), stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_origin_is_cross_origin_and_this_one_is_not() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:7879".parse().unwrap());
        assert!(!cross_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:7879".parse().unwrap());
        assert!(!cross_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(cross_origin(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(cross_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(cross_origin(&h));
    }
}
