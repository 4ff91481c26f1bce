//! `ghostctl release ID [--reason TEXT]`: a held entry back to `pending/`
//! (rules in [`crate::actions`]).

use std::io::Write;

use ghost_core::Config;

use crate::actions::{self, Action};
use crate::CtlError;

pub fn run(
    config: &Config,
    id: &str,
    reason: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    actions::run(config, Action::Release, id, reason, json, out, err)
}
