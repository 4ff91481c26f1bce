//! Operator actions on one entry: retry, hold, release, delete.
//!
//! Each is one [`Queue::transition`] carrying the entry's record with an
//! [`OperatorAction`] appended, so the record says who did what, when and why.
//! Rules (docs/operations.md, "Intervene"; the README's queue tour says who
//! moves what):
//!
//! | action  | from                              | to        |
//! |---------|-----------------------------------|-----------|
//! | retry   | `.stuck/`, `failed/`, `deferred/` | `pending/` (attempts reset, reason and due time cleared) |
//! | hold    | `pending/`, `deferred/`           | `held/`   |
//! | release | `held/`                           | `pending/` |
//! | delete  | any state but `active/`, `trash/` | `trash/` (never unlinked; summaries stay) |
//!
//! Sidecars other than the record (an undo journal kept beside a stuck entry,
//! say) travel with the entry: they are copied into the destination before the
//! move, since [`Queue::transition`] drops everything left in the source.
//!
//! The executor may move the entry at the same moment (claim a pending one,
//! promote a deferred one). Only one rename can win; when ours loses, the
//! entry is reported where it is now and the action fails (exit 1).

use std::io::Write;

use serde::Serialize;
use tracing::info;

use ghost_core::queue::{is_entry_file, EntryRecord, OperatorAction, Queue, QueueState};
use ghost_core::{Config, Layout};

use crate::commands;
use crate::entries::{find, EntryInfo};
use crate::util::{clean, who};
use crate::{io, json_text, CtlError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    pub fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Hold => "hold",
            Action::Release => "release",
            Action::Delete => "delete",
            Action::Restore | Action::RestoreHeld => "restore",
        }
    }

    /// Where the entry goes from `from`, or why it cannot (each verb's rule
    /// lives in its module).
    fn destination(self, from: QueueState) -> Result<QueueState, String> {
        match self {
            Action::Retry => commands::retry::destination(from),
            Action::Hold => commands::hold::destination(from),
            Action::Release => commands::release::destination(from),
            Action::Delete => commands::delete::destination(from),
            Action::Restore => commands::restore::destination(from, QueueState::Pending),
            Action::RestoreHeld => commands::restore::destination(from, QueueState::Held),
        }
    }

    /// What the action changes in the entry's record, besides its
    /// operator action.
    fn update(self, record: &mut EntryRecord) {
        match self {
            Action::Retry => commands::retry::update(record),
            Action::Hold => commands::hold::update(record),
            Action::Release => commands::release::update(record),
            Action::Delete => commands::delete::update(record),
            Action::Restore | Action::RestoreHeld => commands::restore::update(record),
        }
    }
}

/// What an action did.
#[derive(Debug, Clone, Serialize)]
pub struct ActionDone {
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

/// Apply `action` to the entry `id` names. `reason` is required for delete.
pub fn act(
    config: &Config,
    action: Action,
    id: &str,
    reason: Option<&str>,
) -> Result<ActionDone, CtlError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if action == Action::Delete && reason.is_none() {
        return Err(CtlError::Usage(
            "delete needs --reason TEXT: say why, it is kept with the entry in trash/".into(),
        ));
    }
    let entry = find(config, id)?;
    let to = action.destination(entry.state).map_err(|why| {
        CtlError::Usage(format!(
            "cannot {} {} (patch {}): it is in {}/; {why}",
            action.name(),
            entry.name,
            entry.display_id(),
            entry.state.dir_name()
        ))
    })?;
    let q = Layout::new(&config.root).queue(&entry.target);
    let by = who();
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
    record.operator.push(OperatorAction {
        action: action.name().into(),
        by: by.clone(),
        at: ghost_core::time::now_rfc3339(),
        reason: reason.map(str::to_string),
        from: entry.state,
    });
    let carried = carry_sidecars(&q, &entry, to, bad_record)?;
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
    move_entry(&q, &entry, to, &record)?;
    info!(event = "OPERATOR_ACTION", action = action.name(), target = %entry.target, queue_name = %entry.name,
          patch_id = %entry.display_id(), from = entry.state.name(), to = to.name(), by = %by,
          reason = reason.unwrap_or("-"), "{} by the operator", action.name());
    Ok(ActionDone {
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

/// `ghostctl retry|hold|release|delete`: act, then print what was done (and
/// notes on stderr).
pub fn run(
    config: &Config,
    action: Action,
    id: &str,
    reason: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    let done = act(config, action, id, reason)?;
    if json {
        writeln!(out, "{}", json_text(&done)).map_err(io)?;
        return Ok(ghost_core::cli::EXIT_OK);
    }
    let verb = match action {
        Action::Retry => "retried",
        Action::Hold => "held",
        Action::Release => "released",
        Action::Delete => "deleted",
        Action::Restore | Action::RestoreHeld => "restored",
    };
    writeln!(
        out,
        "{verb} {} (patch {}, target {}): {}/ -> {}/",
        done.queue_name,
        clean(done.patch_id.as_deref().unwrap_or("-")),
        done.target,
        done.from.dir_name(),
        done.to.dir_name()
    )
    .map_err(io)?;
    for n in &done.notes {
        let _ = writeln!(err, "note: {n}");
    }
    Ok(ghost_core::cli::EXIT_OK)
}

/// Copy every sidecar of the entry but its record into `to`; with
/// `keep_bad_record`, keep the unreadable record too, under another kind.
/// Returns the kinds copied.
fn carry_sidecars(
    q: &Queue,
    entry: &EntryInfo,
    to: QueueState,
    keep_bad_record: bool,
) -> Result<Vec<String>, CtlError> {
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
        let Some(bytes) = ghost_core::fs::read_opt(&e.path())? else {
            continue;
        };
        ghost_core::fs::durable_write(
            &q.sidecar_path(to, &entry.name, dest_kind),
            &bytes,
            ghost_core::fs::FILE_MODE,
        )?;
        kinds.push(dest_kind.to_string());
    }
    kinds.sort();
    Ok(kinds)
}

/// The one move, with the race against the executor reported as such.
fn move_entry(
    q: &Queue,
    entry: &EntryInfo,
    to: QueueState,
    record: &EntryRecord,
) -> Result<(), CtlError> {
    let from = entry.state;
    match q.transition(&entry.name, from, to, record) {
        Ok(()) => Ok(()),
        Err(e) => {
            if q.entry_path(from, &entry.name).exists() {
                return Err(CtlError::Other(anyhow::anyhow!(
                    "cannot move {} to {}/: {e}",
                    entry.label(),
                    to.dir_name()
                )));
            }
            let now = q.find(&entry.name);
            // Only ghostctl moves entries into held/ and trash/, so what we wrote
            // there ahead of the move is ours to clear. In pending/ the executor
            // may have written the same record path for its own move: leave it.
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
            Err(CtlError::Failed(format!(
                "{} moved meanwhile (someone else acted on it first); {where_now}. The entry was not moved by this command. \
                 Look again with `ghostctl show {}`",
                entry.label(),
                clean(&entry.name)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::entry_info;

    /// The executor claims the entry between our look-up and our move: the
    /// hold fails with exit 1, says where the entry is, and leaves nothing in held/.
    #[test]
    fn losing_the_race_to_the_executor_is_reported_and_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.create(["default"]).unwrap();
        let q = layout.queue("default");
        let name = q.enqueue(b"{}").unwrap();
        let seen = entry_info(&q, QueueState::Pending, &name);
        // The executor's claim.
        q.transition(
            &name,
            QueueState::Pending,
            QueueState::Active,
            &EntryRecord::default(),
        )
        .unwrap();
        let err = move_entry(&q, &seen, QueueState::Held, &EntryRecord::default()).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let msg = err.to_string();
        assert!(
            msg.contains("moved meanwhile") && msg.contains("active/"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read_dir(q.dir(QueueState::Held)).unwrap().count(),
            0
        );
        assert_eq!(q.find(&name), Some(QueueState::Active));
    }

    #[test]
    fn destinations_follow_the_rules() {
        use QueueState::*;
        for (a, from, to) in [
            (Action::Retry, Stuck, Some(Pending)),
            (Action::Retry, Failed, Some(Pending)),
            (Action::Retry, Deferred, Some(Pending)),
            (Action::Retry, Pending, None),
            (Action::Retry, Done, None),
            (Action::Hold, Pending, Some(Held)),
            (Action::Hold, Deferred, Some(Held)),
            (Action::Hold, Active, None),
            (Action::Release, Held, Some(Pending)),
            (Action::Release, Pending, None),
            (Action::Delete, Done, Some(Trash)),
            (Action::Delete, Held, Some(Trash)),
            (Action::Delete, Active, None),
            (Action::Delete, Trash, None),
            (Action::Restore, Trash, Some(Pending)),
            (Action::RestoreHeld, Trash, Some(Held)),
            (Action::Restore, Done, None),
            (Action::Restore, Pending, None),
        ] {
            assert_eq!(a.destination(from).ok(), to, "{a:?} from {from:?}");
        }
    }
}
