//! `ghostctl release ID [--reason TEXT]`: a held entry back to `pending/`
//! (the move itself is [`crate::actions::act`]).

use ghost_core::queue::{EntryRecord, QueueState};

/// Where `release` moves an entry in state `from`, or why it cannot.
pub fn destination(from: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Held => Ok(QueueState::Pending),
        _ => Err("release moves entries from held/".into()),
    }
}

/// Due at once: a due time kept from `deferred/` no longer applies.
pub fn update(record: &mut EntryRecord) {
    record.due_at = None;
}
