//! `ghostctl alerts`: not available until the monitor exists (exit 2).

use crate::CtlError;

pub fn run() -> Result<u8, CtlError> {
    super::not_yet("alerts", "the monitor")
}
