//! `ghostctl submit [--target T] FILE...`: the answer for each file the
//! admission in [`crate::submit`] judged: one line per enqueued (or already
//! queued) file on stdout, every problem of a refused one on stderr; exit 1
//! if any file was refused. While intake is paused (any
//! [`ghost_core::logging::pause::causes`]) it refuses with the cause, exit 2,
//! unless `--force`: the bridge answers `503` then, and a person who paused
//! intake should not find patches queued behind their back.

use std::io::Write;
use std::path::PathBuf;

use ghost_core::cli::{EXIT_FAILURE, EXIT_OK};
use ghost_core::layout::Layout;
use ghost_core::queue::QueueState;
use ghost_core::Config;

use crate::util::clean;
use crate::{io, json_text, CtlError};

pub fn run(
    config: &Config,
    target: Option<&str>,
    files: &[PathBuf],
    force: bool,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    if !force {
        let causes = ghost_core::logging::pause::causes(&Layout::new(&config.root));
        if !causes.is_empty() {
            let why: Vec<String> = causes.iter().map(|c| clean(&c.describe())).collect();
            return Err(CtlError::Usage(format!(
                "intake is paused ({}): nothing enqueued; `ghostctl submit --force …` enqueues \
                 anyway, `ghostctl resume --force` lifts the pause",
                why.join("; ")
            )));
        }
    }
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
                    duplicate_note(i)
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

/// The fifth column: empty for a new entry; for a duplicate, where the
/// existing entry is and, when it will not be applied, what works.
fn duplicate_note(i: &crate::submit::SubmitItem) -> String {
    if !i.duplicate {
        return String::new();
    }
    let name = i.queue_name.as_deref().unwrap_or("-");
    match i.state {
        Some(QueueState::Trash) => format!(
            "\tin trash/ (deleted): nothing written; `ghostctl restore {name}` queues it again"
        ),
        Some(QueueState::Done) => "\talready applied (done/): nothing written; to apply it again, \
             submit it with another id"
            .to_string(),
        _ => "\talready queued: nothing written".to_string(),
    }
}
