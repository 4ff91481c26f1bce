//! `ghostctl retry ID [--reason TEXT]`: a stuck, failed or deferred entry back
//! to `pending/` with a fresh attempt budget (the move itself is
//! [`crate::actions::act`]).

use ghost_core::queue::{EntryRecord, QueueState};

/// Where `retry` moves an entry in state `from`, or why it cannot.
pub fn destination(from: QueueState) -> Result<QueueState, String> {
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

/// Attempts reset, failure reason, due time and claim cleared; history kept.
pub fn update(record: &mut EntryRecord) {
    record.attempts = 0;
    record.reason = None;
    record.due_at = None;
    record.claim = None;
}
