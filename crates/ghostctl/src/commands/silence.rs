//! `ghostctl silence FINGERPRINT --for DURATION`: not available until the
//! monitor exists (exit 2).

use crate::CtlError;

pub fn run() -> Result<u8, CtlError> {
    super::not_yet("silence", "the monitor")
}
