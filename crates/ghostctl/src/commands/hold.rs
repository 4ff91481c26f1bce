//! `ghostctl hold ID [--reason TEXT]`: a pending or deferred entry parked in
//! `held/`, where the executor leaves it alone (the move itself is
//! [`crate::actions::act`]).

use ghost_core::queue::{EntryRecord, QueueState};

/// Where `hold` moves an entry in state `from`, or why it cannot.
pub fn destination(from: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Pending | QueueState::Deferred => Ok(QueueState::Held),
        QueueState::Held => Err("it is held already".into()),
        _ => Err("hold moves entries from pending/ or deferred/".into()),
    }
}

/// Nothing but the operator action (the due time of a deferred entry is kept).
pub fn update(_record: &mut EntryRecord) {}
