//! Every operator action, implemented once: `ghostctl` and the dashboard (and
//! its JSON API) call these, so a rule, a record and an audit line cannot
//! differ between them.
//!
//! Entry moves ([`act`]) are each one [`Queue::transition`] carrying the
//! entry's record with an [`OperatorAction`] appended. Who may move what
//! (docs/operations.md, "Intervene"):
//!
//! | action  | from                              | to        |
//! |---------|-----------------------------------|-----------|
//! | retry   | `.stuck/`, `failed/`, `deferred/` | `pending/` (attempts reset, reason and due time cleared) |
//! | hold    | `pending/`, `deferred/`           | `held/`   |
//! | release | `held/`                           | `pending/` |
//! | delete  | any state but `active/`, `trash/` | `trash/` (never unlinked; summaries stay; a reason is required) |
//! | restore | `trash/`                          | `pending/` or `held/` (attempts reset) |
//!
//! The other actions write a file another process acts on: the intake pause
//! ([`pause`], [`resume`]) and the monitor's requests ([`ack`], [`silence`]).
//!
//! Every action that changed something is appended to the audit log,
//! `logs/audit.jsonl` (who, what, when, reason, through which tool), after
//! its one rename or write; the entry's record keeps the operator action too.
//!
//! Sidecars other than the record (an undo journal kept beside a stuck entry,
//! say) travel with the entry: they are copied into the destination before the
//! move, since [`Queue::transition`] drops everything left in the source.
//!
//! The executor may move the entry at the same moment (claim a pending one,
//! promote a deferred one). Only one rename can win; when ours loses, the
//! entry is reported where it is now and the action fails
//! ([`Error::Conflict`]).

mod rules;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::alerting::{self, Request};
use crate::entry::Located;
use crate::error::{Error, Result};
use crate::logging::pause as log_pause;
use crate::pause::{self as intake, Pause, PauseRecord};
use crate::queue::{is_entry_file, EntryRecord, OperatorAction, Queue, QueueState};
use crate::text::clean;
use crate::Layout;

/// An entry move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Retry,
    Hold,
    Release,
    Delete,
    /// Out of trash/ into pending/.
    Restore,
    /// Out of trash/ into held/.
    RestoreHeld,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Retry,
        Action::Hold,
        Action::Release,
        Action::Delete,
        Action::Restore,
        Action::RestoreHeld,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Hold => "hold",
            Action::Release => "release",
            Action::Delete => "delete",
            Action::Restore | Action::RestoreHeld => "restore",
        }
    }

    /// The action a name in a request (the dashboard's API) means.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "retry" => Action::Retry,
            "hold" => Action::Hold,
            "release" => Action::Release,
            "delete" => Action::Delete,
            "restore" => Action::Restore,
            "restore_held" => Action::RestoreHeld,
            _ => return None,
        })
    }

    /// The past tense, for messages.
    pub fn done_verb(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Hold => "held",
            Action::Release => "released",
            Action::Delete => "deleted",
            Action::Restore | Action::RestoreHeld => "restored",
        }
    }

    /// A reason is required (delete: it is kept with the entry in trash/).
    pub fn needs_reason(self) -> bool {
        self == Action::Delete
    }

    /// Where the entry goes from `from`, or why it cannot.
    pub fn destination(self, from: QueueState) -> Result<QueueState, String> {
        match self {
            Action::Retry => rules::retry_destination(from),
            Action::Hold => rules::hold_destination(from),
            Action::Release => rules::release_destination(from),
            Action::Delete => rules::delete_destination(from),
            Action::Restore => rules::restore_destination(from, QueueState::Pending),
            Action::RestoreHeld => rules::restore_destination(from, QueueState::Held),
        }
    }

    /// What the action changes in the entry's record, besides its operator action.
    fn update(self, record: &mut EntryRecord) {
        match self {
            Action::Retry | Action::Restore | Action::RestoreHeld => rules::fresh_start(record),
            Action::Release => record.due_at = None,
            Action::Hold | Action::Delete => {}
        }
    }
}

/// Who acts, and through what (`ghostctl`, `dashboard`): the audit's "who".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub by: String,
    pub via: &'static str,
}

impl Actor {
    pub fn new(by: impl Into<String>, via: &'static str) -> Actor {
        Actor { by: by.into(), via }
    }
}

/// A request to move one entry.
#[derive(Debug, Clone)]
pub struct MoveRequest<'a> {
    pub action: Action,
    /// The entry as the caller found it (by [`crate::entry::find`] or a listing).
    pub entry: &'a Located,
    pub reason: Option<&'a str>,
    pub actor: &'a Actor,
}

/// What a move did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveOutcome {
    pub action: Action,
    pub target: String,
    pub queue_name: String,
    pub patch_id: Option<String>,
    pub from: QueueState,
    pub to: QueueState,
    pub by: String,
    /// Things the operator should know (a sidecar carried along, a record replaced).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn display_id(e: &Located) -> String {
    e.patch_id
        .as_deref()
        .map(clean)
        .unwrap_or_else(|| "-".into())
}

fn label(e: &Located) -> String {
    format!("{}/{}/{}", e.target, e.state.dir_name(), e.name)
}

/// A reason with its blanks trimmed; `None` when there is no text.
fn reason_text(reason: Option<&str>) -> Option<&str> {
    reason.map(str::trim).filter(|r| !r.is_empty())
}

/// Move one entry (see the module comment for the rules).
pub fn act(layout: &Layout, req: &MoveRequest<'_>) -> Result<MoveOutcome> {
    let action = req.action;
    let entry = req.entry;
    let reason = reason_text(req.reason);
    if action.needs_reason() && reason.is_none() {
        return Err(Error::Refused(
            "delete needs --reason TEXT: say why, it is kept with the entry in trash/".into(),
        ));
    }
    let to = action.destination(entry.state).map_err(|why| {
        Error::Refused(format!(
            "cannot {} {} (patch {}): it is in {}/; {why}",
            action.name(),
            entry.name,
            display_id(entry),
            entry.state.dir_name()
        ))
    })?;
    let q = layout.queue(&entry.target);
    let by = req.actor.by.clone();
    let mut notes = Vec::new();
    let mut bad_record = false;
    let mut record = match q.read_record(entry.state, &entry.name) {
        Ok(r) => r,
        Err(e) => {
            bad_record = true;
            notes.push(format!(
                "the entry's record could not be read ({e}); it is kept beside the entry as \
                 {}.unreadable-record.json and a fresh record starts",
                entry.name
            ));
            EntryRecord::default()
        }
    };
    if record.patch_id.is_none() {
        record.patch_id = entry.patch_id.clone();
    }
    action.update(&mut record);
    let at = crate::time::now_rfc3339();
    record.operator.push(OperatorAction {
        action: action.name().into(),
        by: by.clone(),
        at: at.clone(),
        reason: reason.map(str::to_string),
        from: entry.state,
    });
    let carried = carry_sidecars(&q, entry, to, bad_record)?;
    if carried.iter().any(|k| k == "journal") && to == QueueState::Pending {
        notes.push(
            "an undo journal was kept beside this entry; it is dropped when the executor claims the \
             entry again (copy it first if you still need it)"
                .into(),
        );
    }
    for k in carried {
        notes.push(format!("kept the {k} sidecar with the entry"));
    }
    move_entry(&q, entry, to, &record)?;
    info!(event = "OPERATOR_ACTION", action = action.name(), target = %entry.target, queue_name = %entry.name,
          patch_id = %display_id(entry), from = entry.state.name(), to = to.name(), by = %by, via = req.actor.via,
          reason = reason.unwrap_or("-"), "{} by the operator", action.name());
    audit(
        layout,
        &mut notes,
        &AuditLine {
            at,
            by: &by,
            via: req.actor.via,
            action: action.name(),
            reason,
            subject: &label(entry),
            detail: serde_json::json!({
                "target": entry.target, "queue_name": entry.name, "patch_id": entry.patch_id,
                "from": entry.state, "to": to,
            }),
        },
    );
    Ok(MoveOutcome {
        action,
        target: entry.target.clone(),
        queue_name: entry.name.clone(),
        patch_id: entry.patch_id.clone(),
        from: entry.state,
        to,
        by,
        notes,
    })
}

/// One line of `logs/audit.jsonl`.
#[derive(Debug, Serialize)]
struct AuditLine<'a> {
    at: String,
    by: &'a str,
    via: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    subject: &'a str,
    detail: serde_json::Value,
}

/// `logs/audit.jsonl`: one line per operator action that changed something.
pub fn audit_path(layout: &Layout) -> PathBuf {
    layout.logs().join("audit.jsonl")
}

/// Append to the audit log after the action took effect. The action is not
/// undone when the append fails (the entry's record keeps the operator action
/// and the process log has the line): the caller is told in a note.
fn audit(layout: &Layout, notes: &mut Vec<String>, line: &AuditLine<'_>) {
    let text = serde_json::to_string(line).expect("an audit line serialises");
    let p = audit_path(layout);
    if let Err(e) = crate::fs::append_line(&p, &text) {
        warn!(event = "AUDIT_FAILED", error = %e, "cannot append to the audit log");
        notes.push(format!(
            "the action took effect but could not be appended to {} ({e})",
            p.display()
        ));
    }
}

/// Copy every sidecar of the entry but its record into `to`; with
/// `keep_bad_record`, keep the unreadable record too, under another kind.
/// Returns the kinds copied.
fn carry_sidecars(
    q: &Queue,
    entry: &Located,
    to: QueueState,
    keep_bad_record: bool,
) -> Result<Vec<String>> {
    let from = entry.state;
    let dir = q.dir(from);
    let prefix = format!("{}.", entry.name);
    let mut kinds = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(kinds);
    };
    for e in rd.flatten() {
        let Some(f) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if is_entry_file(&f) || !f.starts_with(&prefix) || !f.ends_with(".json") {
            continue;
        }
        let kind = &f[prefix.len()..f.len() - ".json".len()];
        let dest_kind = if kind == from.record_kind() {
            if !keep_bad_record {
                continue;
            }
            "unreadable-record"
        } else if kind == to.record_kind() {
            // Would be replaced by the new record: keep it under another name.
            "previous-record"
        } else {
            kind
        };
        let Some(bytes) = crate::fs::read_opt(&e.path())? else {
            continue;
        };
        crate::fs::durable_write(
            &q.sidecar_path(to, &entry.name, dest_kind),
            &bytes,
            crate::fs::FILE_MODE,
        )?;
        kinds.push(dest_kind.to_string());
    }
    kinds.sort();
    Ok(kinds)
}

/// The one move, with the race against the executor reported as such.
fn move_entry(q: &Queue, entry: &Located, to: QueueState, record: &EntryRecord) -> Result<()> {
    let from = entry.state;
    match q.transition(&entry.name, from, to, record) {
        Ok(()) => Ok(()),
        Err(e) => {
            if q.entry_path(from, &entry.name).exists() {
                return Err(Error::Invalid(format!(
                    "cannot move {} to {}/: {e}",
                    label(entry),
                    to.dir_name()
                )));
            }
            let now = q.find(&entry.name);
            // Only operators move entries into held/ and trash/, so what we
            // wrote there ahead of the move is ours to clear. In pending/ the
            // executor may have written the same record path for its own
            // move: leave it.
            if matches!(to, QueueState::Held | QueueState::Trash) && now != Some(to) {
                q.remove_sidecars(to, &entry.name);
            }
            let where_now = match now {
                Some(QueueState::Active) => {
                    "it is in active/ now: the executor claimed it".to_string()
                }
                Some(s) => format!("it is in {}/ now", s.dir_name()),
                None => "it is in no state of this target now".to_string(),
            };
            Err(Error::Conflict(format!(
                "{} moved meanwhile (someone else acted on it first); {where_now}. The entry was not moved by this command. \
                 Look again with `ghostctl show {}`",
                label(entry),
                clean(&entry.name)
            )))
        }
    }
}

/// The outcome of [`pause`] or [`resume`].
#[derive(Debug, Clone, Serialize)]
pub struct PauseOutcome {
    pub paused: bool,
    pub changed: bool,
    /// The pause record (the one in force, or the one just lifted). A pause
    /// file that does not read as a record shows as its text.
    pub record: Option<serde_json::Value>,
    /// Where the lifted pause was kept (`resume`).
    pub kept_as: Option<String>,
}

/// A pause as JSON: the record, or the text of a file that does not read as one.
pub fn shown(p: &Pause) -> serde_json::Value {
    match p {
        Pause::Record(r) => serde_json::to_value(r).unwrap_or_default(),
        Pause::Unreadable { text, .. } => serde_json::Value::String(text.clone()),
    }
}

/// Pause intake, saying why. Pausing what is paused changes nothing and
/// says who paused it.
pub fn pause(layout: &Layout, reason: &str, actor: &Actor) -> Result<PauseOutcome> {
    let Some(reason) = reason_text(Some(reason)) else {
        return Err(Error::Refused(
            "`ghostctl pause` needs --reason TEXT: the person who resumes should know why".into(),
        ));
    };
    if let Some(existing) = intake::read(layout)? {
        return Ok(PauseOutcome {
            paused: true,
            changed: false,
            record: Some(shown(&existing)),
            kept_as: None,
        });
    }
    let rec = PauseRecord {
        paused_by: actor.by.clone(),
        paused_at: crate::time::now_rfc3339(),
        reason: reason.to_string(),
        resumed_by: None,
        resumed_at: None,
    };
    intake::write(layout, &rec)?;
    info!(event = "OPERATOR_ACTION", action = "pause", by = %rec.paused_by, via = actor.via, reason = %rec.reason, "intake paused");
    let mut notes = Vec::new();
    audit(
        layout,
        &mut notes,
        &AuditLine {
            at: rec.paused_at.clone(),
            by: &actor.by,
            via: actor.via,
            action: "pause",
            reason: Some(reason),
            subject: "intake",
            detail: serde_json::Value::Null,
        },
    );
    Ok(PauseOutcome {
        paused: true,
        changed: true,
        record: Some(shown(&Pause::Record(rec))),
        kept_as: None,
    })
}

/// Lift a pause (`force` is required: someone or something set it).
///
/// An executor's log pause (its log cannot be written) is overridden too: the
/// override is recorded in `state/log-pause-override.json` for that outage
/// and in the audit log; the executor claims patches again.
pub fn resume(layout: &Layout, force: bool, actor: &Actor) -> Result<PauseOutcome> {
    let log_paused = log_pause::log_paused(layout);
    let existing = intake::read(layout)?;
    if existing.is_none() && !log_paused {
        return Ok(PauseOutcome {
            paused: false,
            changed: false,
            record: None,
            kept_as: None,
        });
    }
    if !force {
        let mut causes: Vec<String> = existing.iter().map(|e| shown(e).to_string()).collect();
        causes.extend(
            log_pause::causes(layout)
                .into_iter()
                .filter(|c| matches!(c, log_pause::PauseCause::LogFailure(_)))
                .map(|c| c.describe()),
        );
        return Err(Error::Refused(format!(
            "intake is paused ({}); `ghostctl resume --force` overrides the pause",
            causes.join("; ")
        )));
    }
    let by = &actor.by;
    let mut notes = Vec::new();
    if log_paused {
        if let Some(o) = log_pause::write_override(layout, by)? {
            info!(event = "OPERATOR_ACTION", action = "resume_log_pause", by = %o.overridden_by, via = actor.via, failing_since = %o.failing_since, "the executor's log pause overridden");
            audit(
                layout,
                &mut notes,
                &AuditLine {
                    at: crate::time::now_rfc3339(),
                    by,
                    via: actor.via,
                    action: "resume_log_pause",
                    reason: None,
                    subject: "executor log pause",
                    detail: serde_json::to_value(&o).unwrap_or_default(),
                },
            );
            if existing.is_none() {
                return Ok(PauseOutcome {
                    paused: false,
                    changed: true,
                    record: serde_json::to_value(&o).ok(),
                    kept_as: Some(log_pause::override_path(layout).display().to_string()),
                });
            }
        }
    }
    let Some((kept, kept_as)) = intake::lift(layout, by)? else {
        // Lifted by someone else between our look and our move.
        return Ok(PauseOutcome {
            paused: false,
            changed: false,
            record: None,
            kept_as: None,
        });
    };
    info!(event = "OPERATOR_ACTION", action = "resume", by = %by, via = actor.via, kept_as = %kept_as.display(), "pause overridden");
    audit(
        layout,
        &mut notes,
        &AuditLine {
            at: crate::time::now_rfc3339(),
            by,
            via: actor.via,
            action: "resume",
            reason: None,
            subject: "intake",
            detail: serde_json::json!({"kept_as": kept_as, "paused_reason": kept.reason}),
        },
    );
    Ok(PauseOutcome {
        paused: false,
        changed: true,
        record: Some(shown(&Pause::Record(kept))),
        kept_as: Some(kept_as.display().to_string()),
    })
}

/// What an alert request ([`ack`], [`silence`]) did.
#[derive(Debug, Clone, Serialize)]
pub struct RequestOutcome {
    /// The request file the monitor takes in at its next cycle.
    pub request: PathBuf,
    /// Firing alerts it matched when written (ack).
    pub matching: usize,
    pub body: Request,
}

/// Acknowledge the firing alerts `matcher` (a fingerprint, a pattern with
/// `*`, or an episode UUID) names: no more reminders. Refused when nothing
/// firing matches.
pub fn ack(layout: &Layout, matcher: &str, actor: &Actor) -> Result<RequestOutcome> {
    let book = alerting::read_book(layout)?;
    let hits = book
        .episodes
        .values()
        .filter(|e| {
            e.status == alerting::EpisodeStatus::Firing
                && (e.uuid == matcher || alerting::glob_match(matcher, &e.fingerprint))
        })
        .count();
    if hits == 0 {
        return Err(Error::Refused(format!(
            "no firing alert matches {:?} (see `ghostctl alerts`)",
            clean(matcher)
        )));
    }
    let at = crate::time::now_rfc3339();
    let req = Request::Ack {
        matcher: matcher.to_string(),
        by: actor.by.clone(),
        at: at.clone(),
    };
    let path = alerting::write_request(layout, &req)?;
    info!(event = "OPERATOR_ACTION", action = "ack", matcher, by = %actor.by, via = actor.via, "acknowledged");
    let mut notes = Vec::new();
    audit(
        layout,
        &mut notes,
        &AuditLine {
            at,
            by: &actor.by,
            via: actor.via,
            action: "ack",
            reason: None,
            subject: matcher,
            detail: serde_json::json!({"matching": hits}),
        },
    );
    Ok(RequestOutcome {
        request: path,
        matching: hits,
        body: req,
    })
}

/// Parse a silence's duration (`30m`, `2h`, `1d`); more than zero.
pub fn silence_duration(text: &str) -> Result<Duration> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        Error::Refused(format!(
            "--for {:?} is not a duration ({e}); write e.g. 30m, 2h, 1d",
            clean(text)
        ))
    })?;
    if d.is_zero() {
        return Err(Error::Refused("--for must be longer than zero".into()));
    }
    Ok(d)
}

/// Silence alerts matching `matcher` for `duration`, saying why.
pub fn silence(
    layout: &Layout,
    matcher: &str,
    duration: &str,
    reason: &str,
    actor: &Actor,
) -> Result<(RequestOutcome, Duration)> {
    if matcher.trim().is_empty() {
        return Err(Error::Refused("the fingerprint or pattern is empty".into()));
    }
    let d = silence_duration(duration)?;
    let Some(reason) = reason_text(Some(reason)) else {
        return Err(Error::Refused("--reason must say why".into()));
    };
    let at = crate::time::now_rfc3339();
    let req = Request::Silence {
        matcher: matcher.to_string(),
        duration: humantime::format_duration(d).to_string(),
        reason: reason.to_string(),
        by: actor.by.clone(),
        at: at.clone(),
    };
    let path = alerting::write_request(layout, &req)?;
    info!(event = "OPERATOR_ACTION", action = "silence", matcher, by = %actor.by, via = actor.via, duration, reason, "silence requested");
    let mut notes = Vec::new();
    audit(
        layout,
        &mut notes,
        &AuditLine {
            at,
            by: &actor.by,
            via: actor.via,
            action: "silence",
            reason: Some(reason),
            subject: matcher,
            detail: serde_json::json!({"for": humantime::format_duration(d).to_string()}),
        },
    );
    Ok((
        RequestOutcome {
            request: path,
            matching: 0,
            body: req,
        },
        d,
    ))
}

#[cfg(test)]
mod tests;
