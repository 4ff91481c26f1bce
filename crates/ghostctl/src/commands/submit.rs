//! `ghostctl submit [--target T] FILE...`: the answer for each file the
//! admission in [`crate::submit`] judged: one line per enqueued (or already
//! queued) file on stdout, every problem of a refused one on stderr; exit 1
//! if any file was refused.

use std::io::Write;
use std::path::PathBuf;

use ghost_core::cli::{EXIT_FAILURE, EXIT_OK};
use ghost_core::Config;

use crate::util::clean;
use crate::{io, json_text, CtlError};

pub fn run(
    config: &Config,
    target: Option<&str>,
    files: &[PathBuf],
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    let items = crate::submit::submit(config, target, files, &mut std::io::stdin().lock())?;
    let any_failed = items.iter().any(|i| !i.ok);
    if json {
        writeln!(out, "{}", json_text(&items)).map_err(io)?;
    } else {
        for i in &items {
            if i.ok {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}{}",
                    clean(&i.file),
                    i.queue_name.as_deref().unwrap_or("-"),
                    clean(i.patch_id.as_deref().unwrap_or("-")),
                    i.target.as_deref().unwrap_or("-"),
                    if i.duplicate {
                        "\talready queued: nothing written"
                    } else {
                        ""
                    }
                )
                .map_err(io)?;
            } else {
                for e in &i.errors {
                    let _ = writeln!(err, "{}: {}: {}", clean(&i.file), e.field, e.reason);
                }
            }
        }
    }
    Ok(if any_failed { EXIT_FAILURE } else { EXIT_OK })
}
