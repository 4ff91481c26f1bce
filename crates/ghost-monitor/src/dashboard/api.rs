//! The JSON API (`/api/v1/...`, docs/dashboard.md). Reads go to the files
//! the monitor's cycle writes and to the queue directories; every action is
//! [`ghost_core::actions`], the implementation `ghostctl` uses too.
//!
//! Listings come from the queue browser's in-memory listings
//! ([`super::listing`]: directory names only, an entry's arrival time is in
//! its queue name, listed again only when the directory changed), then the
//! records of the one page shown, so a page costs the same with 100 entries
//! or 100,000.

// Helpers return the error response itself: a cold path, once per request.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use ghost_core::actions::{self, Action, Actor, MoveRequest};
use ghost_core::alerting::{self, EpisodeStatus};
use ghost_core::entry::{Located, Resolved};
use ghost_core::health::{self, name_time_ms};
use ghost_core::queue::QueueState;
use ghost_core::Error;

use super::{json_error, Proof, Shared};

/// The most entries one page or one bulk action holds.
pub const MAX_PAGE: usize = 500;
/// How many log lines an entry's detail shows, and how far back each log is read.
const LOG_LINES: usize = 200;
const LOG_TAIL_BYTES: u64 = 4 << 20;
/// The patch text shown in an entry's detail is cut at this size.
const PATCH_SHOWN_BYTES: usize = 256 << 10;

fn now_ms() -> u64 {
    ghost_core::time::unix_ms(std::time::SystemTime::now())
}

/// An action's failure as HTTP: refused 409 with the rule's words, a lost
/// race 409 too, anything else 500.
fn failed(e: Error) -> Response {
    match e {
        Error::Refused(m) => json_error(StatusCode::UNPROCESSABLE_ENTITY, "refused", m),
        Error::Conflict(m) => json_error(StatusCode::CONFLICT, "conflict", m),
        e => json_error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

fn actor(peer: SocketAddr) -> Actor {
    Actor::new(format!("dashboard user at {}", peer.ip()), "dashboard")
}

fn bad(field: &str, why: impl Into<String>) -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{field}: {}", why.into()),
    )
}

/// `GET /api/v1/session`: the CSRF token for POSTs, and how this request signed in.
pub async fn session(State(d): State<Shared>, Extension(how): Extension<Proof>) -> Response {
    Json(json!({
        "csrf": d.auth.csrf(),
        "signed_in_by": match how { Proof::Bearer => "bearer", Proof::Cookie => "cookie" },
        "version": ghost_core::VERSION,
    }))
    .into_response()
}

/// The pause in force, if any: the record and every cause.
fn pause_view(d: &Shared) -> Value {
    let record = ghost_core::pause::read(&d.layout)
        .ok()
        .flatten()
        .map(|p| actions::shown(&p));
    let causes: Vec<String> = ghost_core::logging::pause::causes(&d.layout)
        .iter()
        .map(|c| c.describe())
        .collect();
    json!({"paused": record.is_some() || !causes.is_empty(), "record": record, "causes": causes})
}

/// `GET /api/v1/overview`: the health model, the history for the charts
/// (last hour, and the last day at most 288 points), firing alerts, the pause.
pub async fn overview(State(d): State<Shared>) -> Response {
    let d2 = d.clone();
    let r = tokio::task::spawn_blocking(move || {
        let d = d2;
        let health = health::read(&d.layout).ok().flatten();
        let now = now_ms();
        let history = health::read_history(&d.layout);
        let hour: Vec<_> = history
            .iter()
            .filter(|s| s.at_ms + 3_600_000 >= now)
            .cloned()
            .collect();
        let day_all: Vec<_> = history
            .iter()
            .filter(|s| s.at_ms + 86_400_000 >= now)
            .collect();
        let step = day_all.len().div_ceil(288).max(1);
        let day: Vec<_> = day_all.iter().step_by(step).cloned().collect();
        let book = alerting::read_book(&d.layout).unwrap_or_default();
        let firing: Vec<_> = book
            .episodes
            .values()
            .filter(|e| e.status == EpisodeStatus::Firing)
            .collect();
        json!({
            "health": health,
            "history": {"hour": hour, "day": day},
            "firing": firing,
            "pause": pause_view(&d),
            "watchdog": ghost_core::watchdog::read_state(&d.layout).ok().flatten(),
            "now_ms": now,
        })
    })
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

/// The query of `GET /api/v1/entries`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    /// Comma-separated states (`stuck,failed`; `all`); default every state but done and trash.
    pub state: Option<String>,
    pub target: Option<String>,
    /// A queue name or patch id, or an unambiguous prefix or suffix of
    /// either (`ghost_core::entry::resolve`): 404 when none matches, 409
    /// with the candidates when several do.
    pub id: Option<String>,
    /// Only entries at least / at most this old (`10m`, `2h`).
    pub min_age: Option<String>,
    pub max_age: Option<String>,
    /// 1-based.
    pub page: Option<usize>,
    pub limit: Option<usize>,
}

fn parse_states(s: Option<&str>) -> Result<Vec<QueueState>, Response> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(QueueState::OPEN.to_vec());
    };
    if s.trim() == "all" {
        return Ok(QueueState::ALL.to_vec());
    }
    s.split(',')
        .map(|p| {
            let p = p.trim().trim_start_matches('.');
            QueueState::parse(p).ok_or_else(|| {
                bad(
                    "state",
                    format!("{p:?} is not a queue state (pending, active, deferred, held, done, failed, stuck, trash, all)"),
                )
            })
        })
        .collect()
}

fn parse_age(field: &str, s: Option<&str>) -> Result<Option<u64>, Response> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(t) => humantime::parse_duration(t)
            .map(|d| Some(d.as_millis() as u64))
            .map_err(|e| {
                bad(
                    field,
                    format!("{t:?} is not a duration ({e}); write e.g. 10m, 2h"),
                )
            }),
    }
}

/// Every target: configured, or with a queue directory.
fn targets(d: &Shared) -> Vec<String> {
    let mut t: Vec<String> = d.config.targets.keys().cloned().collect();
    for q in d.layout.queue_targets() {
        if !t.contains(&q) {
            t.push(q);
        }
    }
    t.sort();
    t
}

/// One listed entry, with what the stuck/failed page shows.
fn entry_row(d: &Shared, target: &str, state: QueueState, name: &str, now: u64) -> Value {
    let q = d.layout.queue(target);
    let loc = ghost_core::entry::locate(&q, state, name);
    let rec = q.read_record(state, name);
    let (record, record_error) = match rec {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let arrived = name_time_ms(name);
    let summary = ghost_core::summary::SummaryFiles::new(&d.layout.summaries(target), name);
    json!({
        "target": target,
        "state": state,
        "name": name,
        "patch_id": loc.patch_id,
        "arrived_ms": arrived,
        "age_s": arrived.map(|a| now.saturating_sub(a) / 1000),
        "attempts": record.as_ref().map(|r| r.attempts),
        "reason": record.as_ref().and_then(|r| r.reason.clone()),
        "last_error": record.as_ref().and_then(|r| r.history.last().and_then(|h| h.message.clone())),
        "due_at": record.as_ref().and_then(|r| r.due_at.clone()),
        "last_operator_action": record.as_ref().and_then(|r| r.operator.last().cloned()),
        "record_error": record_error,
        "has_summary": summary.json.exists() || summary.backup_json.exists(),
    })
}

/// `GET /api/v1/entries`: one page of entries, newest first, with filters.
pub async fn entries(State(d): State<Shared>, Query(q): Query<EntriesQuery>) -> Response {
    let states = match parse_states(q.state.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (min_age, max_age) = match (
        parse_age("min_age", q.min_age.as_deref()),
        parse_age("max_age", q.max_age.as_deref()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let all_targets = targets(&d);
    let only: Vec<String> = match q.target.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => all_targets,
        Some(t) if all_targets.iter().any(|x| x == t) => vec![t.to_string()],
        Some(t) => {
            return bad(
                "target",
                format!("unknown target {t:?}; known: {}", all_targets.join(", ")),
            )
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let page = q.page.unwrap_or(1).max(1);
    let id = q.id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let r = tokio::task::spawn_blocking(move || {
        let now = now_ms();
        // An id means one entry, by the rule every verb uses
        // (`ghost_core::entry::resolve`); the other filters still apply to it.
        let only_entry = match id.as_deref() {
            None => None,
            Some(k) => match ghost_core::entry::resolve(&d.layout, k) {
                Ok(Resolved::One(l)) => Some(l),
                Ok(Resolved::None) => return Err(unknown_id(k)),
                Ok(Resolved::Many(v)) => return Err(ambiguous_id(k, &v)),
                Err(e) => return Err(failed(e)),
            },
        };
        let skip = (page - 1) * limit;
        let (total, rows) = match only_entry {
            Some(l) => {
                let at = name_time_ms(&l.name).unwrap_or(0);
                let age = now.saturating_sub(at);
                let shown = only.contains(&l.target)
                    && states.contains(&l.state)
                    && min_age.is_none_or(|m| age >= m)
                    && max_age.is_none_or(|m| age <= m);
                let rows = if shown && skip == 0 {
                    vec![entry_row(&d, &l.target, l.state, &l.name, now)]
                } else {
                    Vec::new()
                };
                (usize::from(shown), rows)
            }
            None => {
                let lists: Vec<_> = only
                    .iter()
                    .flat_map(|t| {
                        let q = d.layout.queue(t);
                        let d = &d;
                        states
                            .iter()
                            .map(move |s| (t.clone(), *s, d.listings.get(&q.dir(*s))))
                    })
                    .collect();
                // Arrival times within the ages asked for (an entry from the
                // future has age 0).
                let from = max_age.map_or(0, |m| now.saturating_sub(m));
                let to = match min_age {
                    Some(m) if m > 0 => now.saturating_sub(m),
                    _ => u64::MAX,
                };
                let (total, picked) = super::listing::page(&lists, from, to, skip, limit);
                let rows = picked
                    .iter()
                    .map(|r| entry_row(&d, &r.target, r.state, &r.name, now))
                    .collect();
                (total, rows)
            }
        };
        let rows: Vec<Value> = rows;
        Ok(json!({
            "total": total,
            "page": page,
            "limit": limit,
            "pages": total.div_ceil(limit).max(1),
            "entries": rows,
        }))
    })
    .await;
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(r)) => r,
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

/// An id no entry has (exactly, or as a prefix or suffix): 404.
fn unknown_id(key: &str) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no entry has the queue name or patch id {key:?}, or one that starts or ends with it (a prefix or suffix needs {}+ characters)",
            ghost_core::entry::MIN_PARTIAL
        ),
    )
}

/// How many candidates an ambiguous id's message names (all are in `candidates`).
const NAMED_CANDIDATES: usize = 10;

/// An id several entries match: 409 with every candidate, for the person
/// to choose among.
fn ambiguous_id(key: &str, many: &[Located]) -> Response {
    let names: Vec<String> = many
        .iter()
        .take(NAMED_CANDIDATES)
        .map(|l| format!("{}/{}/{}", l.target, l.state, l.name))
        .collect();
    let more = many.len().saturating_sub(NAMED_CANDIDATES);
    let message = format!(
        "{key:?} matches {} entries ({}{}); give more of the queue name or patch id",
        many.len(),
        names.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    let candidates: Vec<Value> = many
        .iter()
        .map(|l| json!({"target": l.target, "state": l.state, "name": l.name, "patch_id": l.patch_id}))
        .collect();
    (
        StatusCode::CONFLICT,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": "ambiguous", "message": message, "candidates": candidates})),
    )
        .into_response()
}

/// The last lines of each component's log that name `keys` (queue name, patch id).
fn log_lines(d: &Shared, keys: &[String]) -> Vec<Value> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out: Vec<(String, Value)> = Vec::new();
    let Ok(rd) = std::fs::read_dir(d.layout.logs()) else {
        return Vec::new();
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "log") {
            continue;
        }
        let Ok(mut f) = std::fs::File::open(&p) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(LOG_TAIL_BYTES);
        if f.seek(SeekFrom::Start(start)).is_err() {
            continue;
        }
        let mut buf = Vec::new();
        if f.take(LOG_TAIL_BYTES).read_to_end(&mut buf).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let component = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        for line in text.lines() {
            if !keys
                .iter()
                .any(|k| !k.is_empty() && line.contains(k.as_str()))
            {
                continue;
            }
            let v: Value = serde_json::from_str(line).unwrap_or_else(|_| json!({"text": line}));
            let ts = v
                .get("timestamp")
                .or_else(|| v.get("ts"))
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_string();
            out.push((ts, json!({"component": component, "line": v})));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = out.len().saturating_sub(LOG_LINES);
    out.into_iter().skip(skip).map(|(_, v)| v).collect()
}

/// `GET /api/v1/entries/{target}/{name}`: the patch, its record, its
/// summary (Markdown and JSON) and its log lines.
pub async fn entry(
    State(d): State<Shared>,
    Path((target, name)): Path<(String, String)>,
) -> Response {
    if !ghost_core::text::is_name(&target) || !ghost_core::entry::is_queue_name(&name) {
        return bad("entry", "not a target and queue name");
    }
    let r = tokio::task::spawn_blocking(move || {
        let q = d.layout.queue(&target);
        let Some(state) = q.find(&name) else {
            return Err(json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no entry {name} in target {target}"),
            ));
        };
        let row = entry_row(&d, &target, state, &name, now_ms());
        let bytes = ghost_core::fs::read_opt(&q.entry_path(state, &name))
            .ok()
            .flatten()
            .unwrap_or_default();
        let cut = bytes.len() > PATCH_SHOWN_BYTES;
        let patch =
            String::from_utf8_lossy(&bytes[..bytes.len().min(PATCH_SHOWN_BYTES)]).into_owned();
        let record = q.read_record(state, &name).ok();
        let dir = d.layout.summaries(&target);
        let files = ghost_core::summary::SummaryFiles::new(&dir, &name);
        let md = std::fs::read_to_string(&files.md)
            .or_else(|_| std::fs::read_to_string(&files.backup_md))
            .ok();
        let summary = ghost_core::summary::read(&dir, &name).ok().flatten();
        let mut keys = vec![name.clone()];
        if let Some(id) = row["patch_id"].as_str() {
            keys.push(id.to_string());
        }
        Ok(json!({
            "entry": row,
            "patch": patch,
            "patch_bytes": bytes.len(),
            "patch_cut": cut,
            "record": record,
            "summary_markdown": md,
            "summary": summary,
            "logs": log_lines(&d, &keys),
        }))
    })
    .await;
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(r)) => r,
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

/// `GET /api/v1/alerts`: firing and resolved episodes, and the silences.
pub async fn alerts(State(d): State<Shared>) -> Response {
    match alerting::read_book(&d.layout) {
        Ok(b) => {
            let now = now_ms();
            let firing: Vec<_> = b
                .episodes
                .values()
                .filter(|e| e.status == EpisodeStatus::Firing)
                .collect();
            let mut resolved: Vec<_> = b
                .episodes
                .values()
                .filter(|e| e.status == EpisodeStatus::Resolved)
                .chain(b.resolved.iter().rev())
                .collect();
            resolved.truncate(100);
            let silences: Vec<_> = b.silences.iter().filter(|s| s.until_ms > now).collect();
            Json(json!({"firing": firing, "resolved": resolved, "silences": silences, "now_ms": now}))
                .into_response()
        }
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

/// `GET /api/v1/logs`: each component's log health, rotations in the last
/// hour, and the pause with its causes.
pub async fn logs(State(d): State<Shared>) -> Response {
    let h = health::read(&d.layout).ok().flatten().unwrap_or_default();
    let components: serde_json::Map<String, Value> = h
        .components
        .iter()
        .map(|(c, ch)| {
            (
                c.clone(),
                json!({
                    "heartbeat": ch.state,
                    "logs": ch.logs,
                    "rotations_last_hour": h.rotations_last_hour.get(c).copied().unwrap_or(0),
                }),
            )
        })
        .collect();
    Json(json!({
        "components": components,
        "rotations_last_hour": h.rotations_last_hour,
        "pause": pause_view(&d),
        "generated_at": h.generated_at,
    }))
    .into_response()
}

/// One entry named by an action request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryKey {
    pub target: String,
    pub name: String,
}

/// The body of `POST /api/v1/actions/{action}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The entries, each named exactly (the ones the page showed and the
    /// person confirmed); never a filter.
    pub entries: Vec<EntryKey>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/actions/{action}`: retry, hold, release, delete, restore,
/// restore_held on each named entry; one result per entry.
pub async fn entry_action(
    State(d): State<Shared>,
    Path(action): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let Some(action) = Action::parse(&action) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no action {action:?} (retry, hold, release, delete, restore, restore_held)"),
        );
    };
    let body: ActionBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return bad(
                "body",
                format!("{e} (expected {{\"entries\": [{{\"target\", \"name\"}}], \"reason\"}})"),
            )
        }
    };
    if body.entries.is_empty() {
        return bad("entries", "name at least one entry");
    }
    if body.entries.len() > MAX_PAGE {
        return bad("entries", format!("at most {MAX_PAGE} entries at once"));
    }
    if action.needs_reason() && body.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            "delete needs a reason: say why, it is kept with the entry in trash/",
        );
    }
    let who = actor(peer);
    let r = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        let mut ok = 0usize;
        for k in &body.entries {
            let res = (|| {
                if !ghost_core::text::is_name(&k.target) || !ghost_core::entry::is_queue_name(&k.name) {
                    return Err(Error::Refused("not a target and queue name".into()));
                }
                let q = d.layout.queue(&k.target);
                let state = q.find(&k.name).ok_or_else(|| {
                    Error::Refused(format!("no entry {} in target {}", k.name, k.target))
                })?;
                let loc = ghost_core::entry::locate(&q, state, &k.name);
                actions::act(
                    &d.layout,
                    &MoveRequest {
                        action,
                        entry: &loc,
                        reason: body.reason.as_deref(),
                        actor: &who,
                    },
                )
            })();
            match res {
                Ok(done) => {
                    ok += 1;
                    results.push(json!({"target": k.target, "name": k.name, "ok": true, "outcome": done}));
                }
                Err(e) => {
                    let kind = match &e {
                        Error::Refused(_) => "refused",
                        Error::Conflict(_) => "conflict",
                        _ => "failed",
                    };
                    results.push(json!({"target": k.target, "name": k.name, "ok": false, "error": kind, "message": e.to_string()}));
                }
            }
        }
        (ok, results)
    })
    .await;
    match r {
        Ok((ok, results)) => {
            let status = if ok == results.len() {
                StatusCode::OK
            } else if ok == 0 && results.len() == 1 {
                match results[0]["error"].as_str() {
                    Some("conflict") => StatusCode::CONFLICT,
                    Some("refused") => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                }
            } else {
                StatusCode::MULTI_STATUS
            };
            (
                status,
                Json(json!({"action": action.name(), "done": ok, "results": results})),
            )
                .into_response()
        }
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad("body", format!("{e} (expected {shape})")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    reason: String,
}

/// `POST /api/v1/pause` `{"reason"}`.
pub async fn pause(
    State(d): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let b: PauseBody = match parse_body(&body, "{\"reason\": TEXT}") {
        Ok(b) => b,
        Err(r) => return r,
    };
    match actions::pause(&d.layout, &b.reason, &actor(peer)) {
        Ok(o) => Json(o).into_response(),
        Err(e) => failed(e),
    }
}

/// `POST /api/v1/resume` (`{}`): lift the pause, whoever set it (the page
/// has the person confirm first).
pub async fn resume(
    State(d): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    match actions::resume(&d.layout, true, &actor(peer)) {
        Ok(o) => Json(o).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    matcher: String,
}

/// `POST /api/v1/alerts/ack` `{"matcher"}`.
pub async fn ack(
    State(d): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let b: AckBody = match parse_body(&body, "{\"matcher\": FINGERPRINT|PATTERN|UUID}") {
        Ok(b) => b,
        Err(r) => return r,
    };
    match actions::ack(&d.layout, &b.matcher, &actor(peer)) {
        Ok(o) => Json(o).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    matcher: String,
    #[serde(rename = "for")]
    duration: String,
    reason: String,
}

/// `POST /api/v1/alerts/silence` `{"matcher", "for", "reason"}`.
pub async fn silence(
    State(d): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let b: SilenceBody = match parse_body(&body, "{\"matcher\", \"for\": \"2h\", \"reason\"}") {
        Ok(b) => b,
        Err(r) => return r,
    };
    match actions::silence(&d.layout, &b.matcher, &b.duration, &b.reason, &actor(peer)) {
        Ok((o, _)) => Json(o).into_response(),
        Err(e) => failed(e),
    }
}
