//! `ghostctl hold ID [--reason TEXT]`: a pending or deferred entry parked in
//! `held/`, where the executor leaves it alone (rules in [`crate::actions`]).

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
    actions::run(config, Action::Hold, id, reason, json, out, err)
}
