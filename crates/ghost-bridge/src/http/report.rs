//! Outcomes to answers: status codes and JSON bodies for what the ingestor decided.

use super::*;

/// Where an item sits in its request.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct At {
    /// 1-based position among the request's items.
    pub(super) item: usize,
    /// For a transcript: the fenced block's number and its opening line.
    pub(super) block: Option<usize>,
    pub(super) line: Option<usize>,
}

/// The answer to a request of one or more items.
#[derive(Debug, Default)]
pub(super) struct Report {
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
pub(super) fn id_hint(v: &Value) -> Option<String> {
    ["id", "blockId"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(|s| clip(s, 256))
}

impl Report {
    pub(super) fn new(single: bool, label: &'static str) -> Report {
        Report {
            single,
            label,
            ..Report::default()
        }
    }

    pub(super) fn push_errors(&mut self, at: At, errs: &[FieldError]) {
        for e in errs {
            let field = if self.single {
                e.field.clone()
            } else {
                match (at.block, at.line) {
                    // An agent's patch outside any fenced block: its line.
                    (None, Some(l)) if self.label == "block" => format!("line {l}: {}", e.field),
                    _ => {
                        let n = at.block.unwrap_or(at.item);
                        format!("{} {n}: {}", self.label, e.field)
                    }
                }
            };
            self.errors.push(field_error(&field, e.reason.clone()));
        }
    }

    pub(super) fn reject(
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

    pub(super) fn record(&mut self, at: At, id: Option<String>, outcome: Outcome, ing: &Ingestor) {
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

    pub(super) fn extraction_failed(&mut self, at: At, reason: String) {
        self.extraction_failed += 1;
        self.reject(
            at,
            None,
            "extraction_failed",
            vec![field_error("(block)", reason)],
            None,
        );
    }

    pub(super) fn into_response(self, ing: &Ingestor) -> Response {
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
