//! `ghostctl delete ID --reason TEXT`: an entry moved to `trash/`,
//! recoverable, never unlinked; its summaries stay (the move itself is
//! [`crate::actions::act`], which insists on the reason).

use ghost_core::queue::{EntryRecord, QueueState};

/// Where `delete` moves an entry in state `from`, or why it cannot.
pub fn destination(from: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Active => Err(
            "it is being applied right now; wait until it finishes (see `ghostctl ls`), then delete it".into(),
        ),
        QueueState::Trash => Err("it is in trash/ already".into()),
        _ => Ok(QueueState::Trash),
    }
}

/// Nothing but the operator action.
pub fn update(_record: &mut EntryRecord) {}
