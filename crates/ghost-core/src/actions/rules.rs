//! Each entry move's rule: from which states, to which, and why not.

use crate::queue::{EntryRecord, QueueState};

/// `retry`: a stuck, failed or deferred entry back to `pending/`.
pub(super) fn retry_destination(from: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Stuck | QueueState::Failed | QueueState::Deferred => Ok(QueueState::Pending),
        QueueState::Done => Err(
            "it was applied already (done/ is final); to apply the same \
             change again, submit it under a new patch id"
                .into(),
        ),
        QueueState::Trash => {
            Err("it was deleted; `ghostctl restore ID` brings it back to pending/".into())
        }
        _ => Err("retry moves entries from .stuck/, failed/ or deferred/".into()),
    }
}

/// `hold`: a pending or deferred entry parked in `held/`, where the executor
/// leaves it alone (the due time of a deferred entry is kept).
pub(super) fn hold_destination(from: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Pending | QueueState::Deferred => Ok(QueueState::Held),
        QueueState::Held => Err("it is held already".into()),
        _ => Err("hold moves entries from pending/ or deferred/".into()),
    }
}

/// `release`: a held entry back to `pending/`, due at once.
pub(super) fn release_destination(from: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Held => Ok(QueueState::Pending),
        _ => Err("release moves entries from held/".into()),
    }
}

/// `delete`: anything at rest to `trash/`, recoverable, never unlinked.
pub(super) fn delete_destination(from: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Active => Err(
            "it is being applied right now; wait until it finishes (see `ghostctl ls`), then delete it".into(),
        ),
        QueueState::Trash => Err("it is in trash/ already".into()),
        _ => Ok(QueueState::Trash),
    }
}

/// `restore`: out of `trash/` into `to` (pending or held).
pub(super) fn restore_destination(from: QueueState, to: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Trash => Ok(to),
        _ => Err("restore moves entries from trash/".into()),
    }
}

/// A fresh start (retry, restore): attempts, failure reason, due time and
/// claim cleared; the history (and the operator actions) kept.
pub(super) fn fresh_start(record: &mut EntryRecord) {
    record.attempts = 0;
    record.reason = None;
    record.due_at = None;
    record.claim = None;
}
