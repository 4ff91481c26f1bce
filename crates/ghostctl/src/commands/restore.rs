//! `ghostctl restore ID [--held] [--reason TEXT]`: an entry back from
//! `trash/` to `pending/` (or `held/` with `--held`), which is what makes
//! trash recoverable (the move itself is [`crate::actions::act`]; the
//! operator action in the record and `logs/ghostctl.log` is the audit).

use ghost_core::queue::{EntryRecord, QueueState};

/// Where `restore` moves an entry in state `from` (`to` is pending or held).
pub fn destination(from: QueueState, to: QueueState) -> Result<QueueState, String> {
    match from {
        QueueState::Trash => Ok(to),
        _ => Err("restore moves entries from trash/".into()),
    }
}

/// A fresh start: attempts, failure reason, due time and claim cleared; the
/// history (and the delete's operator action) kept.
pub fn update(record: &mut EntryRecord) {
    record.attempts = 0;
    record.reason = None;
    record.due_at = None;
    record.claim = None;
}
