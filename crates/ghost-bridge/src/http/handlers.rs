//! The route handlers.

use super::*;

pub(super) async fn healthz(State(st): State<AppState>) -> Response {
    Json(json!({
        "status": "ok",
        "paused": st.ingestor.paused(),
        "version": ghost_core::VERSION,
    }))
    .into_response()
}

pub(super) fn source(route: &str, peer: SocketAddr) -> Source {
    Source {
        channel: "http".into(),
        detail: format!("{route} from {peer}"),
    }
}

pub(super) fn paused_error(ing: &Ingestor) -> ApiError {
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
pub(super) enum BodyKind {
    Json,
    Transcript,
    Missing,
    Other(String),
}

pub(super) fn body_kind(headers: &HeaderMap) -> BodyKind {
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
        "text/markdown" | "text/x-markdown" | "text/plain" | "text/x-apply-patch"
        | "text/x-diff" | "text/x-patch" => BodyKind::Transcript,
        "" => BodyKind::Missing,
        _ => BodyKind::Other(clip(s, 100)),
    }
}

pub(super) fn unsupported(kind: &BodyKind, accepted: &str) -> ApiError {
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
pub(super) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let value = serde_json::from_slice(text).map_err(|e| {
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
    })?;
    // A key named twice (one patch or an array of them): refused like the
    // parser refuses it, before the value, which kept only one, goes on.
    if let Ok(text) = std::str::from_utf8(text) {
        if let Err(e) = ghost_core::patch::parse::refuse_duplicate_keys(text) {
            let e = &e.errors[0];
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_patch",
                &e.field,
                e.reason.clone(),
            ));
        }
    }
    Ok(value)
}

/// Ingest one JSON object as the request's only patch.
pub(super) async fn ingest_single(
    ing: &Arc<Ingestor>,
    value: Value,
    original: Option<Vec<u8>>,
    target: Option<&str>,
    source: &Source,
) -> Response {
    let mut report = Report::new(true, "item");
    let id = id_hint(&value);
    let outcome = ing.ingest(value, original, target, source).await;
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
pub(super) async fn read_body(
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
pub(super) async fn parse_json_off(bytes: Bytes) -> Result<(Bytes, Value), ApiError> {
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

pub(super) async fn post_patches(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let ing = &st.ingestor;
    if ing.paused() {
        return paused_error(ing).into_response();
    }
    let src = source("POST /v1/patches", peer);
    // `?target=NAME`: the target of content that names none (as `--target`
    // does for `ghostctl submit`); a patch naming another one is refused.
    let target = match target_param(&req) {
        Ok(t) => t,
        Err(e) => return refuse(&st, peer, &src, e),
    };
    let target = target.as_deref();
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
                        let outcome = ing.ingest(v, None, target, &s).await;
                        report.record(at, id, outcome, ing);
                    }
                    report.into_response(ing)
                }
                // Over `bridge.max_patch_bytes` (but within the body limit),
                // the ingestor refuses it by field: a 400 (docs/http.md).
                v => ingest_single(ing, v, Some(bytes.to_vec()), target, &src).await,
            }
        }
        _ => transcript(&st, peer, bytes, target, &src).await,
    }
}

/// The `target` query parameter, resolved (an alias gives its target).
fn target_param(req: &Request) -> Result<Option<String>, ApiError> {
    if req.uri().query().is_none() {
        return Ok(None);
    }
    let axum::extract::Query(params) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri()).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "(query)",
                format!("the query string cannot be read: {e}"),
            )
        })?;
    let mut target = None;
    for (k, v) in params {
        match k.as_str() {
            "target" if target.is_none() => target = Some(v),
            "target" => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "target",
                    "`target` is given more than once",
                ))
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "(query)",
                    format!(
                        "unknown query parameter {:?}; the only one is `target`",
                        clip(other, 40)
                    ),
                ))
            }
        }
    }
    Ok(target)
}

pub(super) async fn transcript(
    st: &AppState,
    peer: SocketAddr,
    bytes: Bytes,
    target: Option<&str>,
    src: &Source,
) -> Response {
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
                "the text holds no patch: put each patch in a fenced ```json block, or send an apply_patch \
                 envelope, SEARCH/REPLACE blocks or a unified diff",
            ),
        );
    }
    let mut report = Report::new(false, "block");
    // One line per transcript for its unreadable blocks, not one per block.
    let mut failed_blocks: Vec<(usize, usize, String)> = Vec::new();
    for (i, b) in blocks.into_iter().enumerate() {
        let at = At {
            item: i + 1,
            block: b.block,
            line: Some(b.line),
        };
        match b.result {
            Ok(v) => {
                let v = if b.agent {
                    ghost_core::patch::agent::detect::for_target(v, target)
                } else {
                    v
                };
                let id = id_hint(&v);
                let s = Source {
                    channel: src.channel.clone(),
                    detail: match b.block {
                        Some(n) => format!("{}, block {n} (line {})", src.detail, b.line),
                        None => format!("{}, line {}", src.detail, b.line),
                    },
                };
                let outcome = ing.ingest(v, None, target, &s).await;
                report.record(at, id, outcome, ing);
            }
            Err(reason) => {
                ing.counters
                    .extraction_failures
                    .fetch_add(1, Ordering::Relaxed);
                if failed_blocks.is_empty() {
                    failed_blocks.push((b.block.unwrap_or(0), b.line, clip(&reason, 300)));
                } else {
                    failed_blocks.push((b.block.unwrap_or(0), b.line, String::new()));
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
pub(super) fn compat_type_ok(headers: &HeaderMap) -> Result<(), ApiError> {
    match body_kind(headers) {
        BodyKind::Json | BodyKind::Missing => Ok(()),
        k => Err(unsupported(&k, "application/json")),
    }
}

/// What both compatibility routes do first: the pause, the content type, the
/// body within its limit, and JSON. `Err` is the answer already made.
pub(super) async fn compat_json(
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

/// What a compatibility route takes out of its JSON document: the patch and,
/// when it is the document itself, its bytes as sent.
type Taken = (Value, Option<Vec<u8>>);

/// A compatibility route: [`compat_json`], then `take` the patch out of the
/// document (or refuse it: counted and logged like every refusal), then
/// ingest it as one item.
async fn compat_route(
    st: &AppState,
    route: &str,
    peer: SocketAddr,
    req: Request,
    take: impl FnOnce(Bytes, Value, &Source) -> Result<Taken, ApiError>,
) -> Response {
    let (bytes, value, src) = match compat_json(st, route, peer, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match take(bytes, value, &src) {
        Ok((patch, original)) => ingest_single(&st.ingestor, patch, original, None, &src).await,
        Err(e) => refuse(st, peer, &src, e),
    }
}

/// A compatibility route's document of the wrong shape: 400.
fn bad_document(kind: &'static str, field: &str, reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, kind, field, reason)
}

pub(super) async fn post_webhook(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    compat_route(&st, "POST /webhook", peer, req, |bytes, value, _| {
        if !value.is_object() {
            return Err(bad_document(
                "invalid_patch",
                "(document)",
                "the webhook takes one JSON object {id, role, target_file, patch}",
            ));
        }
        Ok((value, Some(bytes.to_vec())))
    })
    .await
}

pub(super) async fn post_ingest_patch(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    compat_route(&st, "POST /ingest/patch", peer, req, |_, value, src| {
        let Value::Object(mut obj) = value else {
            return Err(bad_document(
                "invalid_request",
                "(document)",
                "expected a JSON object {\"patch\": {...}, \"metadata\": {...}}",
            ));
        };
        let patch = match obj.remove("patch") {
            Some(p @ Value::Object(_)) => p,
            other => {
                let reason = match other {
                    None | Some(Value::Null) => "missing `patch` (the patch object)",
                    Some(_) => "`patch` must be a JSON object (the patch)",
                };
                return Err(bad_document("invalid_request", "patch", reason));
            }
        };
        if let Some(meta) = obj.get("metadata") {
            // Logged for the person reading the log, never stored with the patch.
            info!(event = "INGEST_METADATA", source = %src.detail, patch_id = %clip(&document_id(&patch), 256), metadata = %clip(&meta.to_string(), 2000), "legacy metadata");
        }
        Ok((patch, None))
    })
    .await
}

pub(super) async fn get_patch(
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
        let found = match ing.resolve(&k) {
            Resolved::None => return archived_patch(ing.layout(), &k).map(Ok),
            Resolved::One(l) => l,
            Resolved::Many(v) => return Some(Err(v)),
        };
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
        Some(Ok(json!({
            "id": q.id,
            "name": q.name,
            "target": q.target,
            "state": state.name(),
            "summary": summary,
            "record": record,
        })))
    })
    .await
    .ok()
    .flatten();
    match found {
        Some(Ok(v)) => Json(v).into_response(),
        Some(Err(many)) => {
            let candidates: Vec<Value> = many
                .iter()
                .map(|l| json!({"id": l.patch_id, "name": l.name, "target": l.target, "state": l.state.name()}))
                .collect();
            let msg = format!(
                "{:?} matches {} entries; give more of the queue name or patch id",
                clip(&key, 200),
                many.len()
            );
            let body = json!({
                "error": "ambiguous",
                "message": msg,
                "errors": [field_error("id", msg.clone())],
                "candidates": candidates,
            });
            respond(StatusCode::CONFLICT, body, None)
        }
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "id",
            format!("no patch with id or queue name {:?}", clip(&key, 200)),
        )
        .into_response(),
    }
}

/// `GET /v1/patches/{id}` of a patch the retention moved into the archive:
/// `state` is `archived`, with the state it was in and its summary from the
/// archived copy.
fn archived_patch(layout: &ghost_core::Layout, key: &str) -> Option<Value> {
    let found = match ghost_core::archive::find(layout, key) {
        Ok(f) => f?,
        Err(e) => {
            warn!(error = %e, "cannot look the archive up");
            return None;
        }
    };
    let summary = ghost_core::archive::record(layout, &found)
        .ok()
        .and_then(|r| {
            r.files.into_iter().find(|f| {
                f.path.starts_with("summaries/")
                    && !f.path.contains("/.")
                    && f.path.ends_with(".json")
            })
        })
        .and_then(|f| f.bytes())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    let l = &found.line;
    Some(json!({
        "id": l.patch_id.clone().unwrap_or_default(),
        "name": l.name,
        "target": found.group,
        "state": "archived",
        "archived": {"was": l.state.map(|s| s.name()), "at": l.archived_at, "month": found.month, "segment": l.segment},
        "summary": summary,
        "record": Value::Null,
    }))
}
