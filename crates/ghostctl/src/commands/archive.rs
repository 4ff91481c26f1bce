//! `ghostctl archive [--dry-run]`, `archive ls`, `archive extract ID`: the
//! retention by hand, and the way back out of `archive/` (docs/retention.md).
//!
//! The work is [`ghost_core::archive`]'s; this module only prints. A run holds
//! the root's archive lock, so it never races the monitor's maintenance cycle
//! (exit 1 with a message while that runs).

use std::io::Write;
use std::time::Duration;

use ghost_core::archive;
use ghost_core::cli::EXIT_OK;
use ghost_core::{Config, Layout};

use crate::util::{clean, short_duration, table};
use crate::{io, json_text, ArchiveVerb, CtlError};

pub fn run(
    config: &Config,
    dry_run: bool,
    verb: Option<&ArchiveVerb>,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    match verb {
        None => run_retention(config, dry_run, json, out),
        Some(ArchiveVerb::Ls { target }) => ls(config, target.as_deref(), json, out),
        Some(ArchiveVerb::Extract { id }) => extract(config, id, json, out),
    }
}

fn run_retention(
    config: &Config,
    dry_run: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    archive::init_failpoints();
    let r = match archive::run(config, dry_run) {
        Ok(r) => r,
        Err(e @ ghost_core::Error::Locked { .. }) => {
            return Err(CtlError::Failed(format!(
                "another archiving run holds the lock (the monitor's maintenance cycle?): {e}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if !dry_run {
        let swept = ghost_core::maintenance::sweep(config, &Layout::new(&config.root));
        tracing::info!(
            event = "OPERATOR_ACTION",
            action = "archive",
            archived = r.archived,
            completed = r.completed,
            files_removed = r.files_removed,
            swept = swept.len(),
            "archive run by hand"
        );
    }
    if json {
        writeln!(out, "{}", json_text(&r)).map_err(io)?;
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = r
        .items
        .iter()
        .map(|c| {
            vec![
                c.group.clone(),
                c.month.clone(),
                c.name.clone(),
                c.state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("{:?}", c.kind).to_ascii_lowercase()),
                short_duration(Duration::from_secs(c.age_s)),
            ]
        })
        .collect();
    if !rows.is_empty() {
        write!(
            out,
            "{}",
            table(&["GROUP", "MONTH", "NAME", "FROM", "AGE"], &rows)
        )
        .map_err(io)?;
    }
    if dry_run {
        writeln!(
            out,
            "would archive {} item(s){}",
            r.items.len(),
            more(r.more_due)
        )
        .map_err(io)?;
    } else {
        writeln!(
            out,
            "archived {} item(s) in {} segment(s) ({} bytes), finished {} interrupted; {} original file(s) removed{}",
            r.archived, r.segments_written, r.segment_bytes, r.completed, r.files_removed, more(r.more_due)
        )
        .map_err(io)?;
    }
    Ok(EXIT_OK)
}

fn more(due: bool) -> &'static str {
    if due {
        " (more is due: retention.max_per_cycle reached; run again)"
    } else {
        ""
    }
}

fn ls(
    config: &Config,
    target: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    let items = archive::list(&Layout::new(&config.root), target)?;
    if json {
        writeln!(out, "{}", json_text(&items)).map_err(io)?;
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|f| {
            vec![
                f.group.clone(),
                f.month.clone(),
                f.line.name.clone(),
                f.line
                    .state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("{:?}", f.line.kind).to_ascii_lowercase()),
                f.line
                    .patch_id
                    .as_deref()
                    .map(clean)
                    .unwrap_or_else(|| "-".into()),
                f.line.archived_at.clone(),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(
            &["GROUP", "MONTH", "NAME", "FROM", "PATCH ID", "ARCHIVED AT"],
            &rows
        )
    )
    .map_err(io)?;
    writeln!(out, "{} archived item(s)", items.len()).map_err(io)?;
    Ok(EXIT_OK)
}

fn extract(config: &Config, id: &str, json: bool, out: &mut dyn Write) -> Result<u8, CtlError> {
    let layout = Layout::new(&config.root);
    let Some(found) = archive::find(&layout, id)? else {
        return Err(CtlError::Usage(format!(
            "the archive holds nothing with the queue name or patch id {:?}; see `ghostctl archive ls`",
            clean(id)
        )));
    };
    let written = archive::extract(&layout, &found).map_err(|e| CtlError::Failed(e.to_string()))?;
    tracing::info!(event = "OPERATOR_ACTION", action = "archive_extract", name = %found.line.name, files = written.len(), "extracted from the archive");
    if json {
        writeln!(
            out,
            "{}",
            json_text(&serde_json::json!({"item": found, "written": written}))
        )
        .map_err(io)?;
    } else {
        writeln!(
            out,
            "extracted {} ({}) to {}: {} file(s) written",
            found.line.name,
            found.line.state.map(|s| s.to_string()).unwrap_or_default(),
            found.group,
            written.len()
        )
        .map_err(io)?;
    }
    Ok(EXIT_OK)
}

/// The archived item `id` means, when no queue entry matches it.
pub fn archived_only(config: &Config, id: &str) -> Result<Option<archive::Found>, CtlError> {
    if !matches!(
        crate::entries::find_all(config, id)?,
        crate::entries::Found::None
    ) {
        return Ok(None);
    }
    Ok(archive::find(&Layout::new(&config.root), id)?)
}

/// `ghostctl show ID` of an archived item: where it was, where it is, and
/// its summary (Markdown) from the archived copy.
pub fn show(
    config: &Config,
    found: &archive::Found,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    let layout = Layout::new(&config.root);
    let rec = archive::record(&layout, found)?;
    let file = |suffix: &str| {
        rec.files
            .iter()
            .find(|f| {
                f.path.starts_with("summaries/")
                    && !f.path.contains("/.")
                    && f.path.ends_with(suffix)
            })
            .and_then(|f| f.bytes())
    };
    let summary: Option<serde_json::Value> =
        file(".json").and_then(|b| serde_json::from_slice(&b).ok());
    let segment = layout.archive_group(&found.group).join(&found.line.segment);
    if json {
        writeln!(
            out,
            "{}",
            json_text(&serde_json::json!({
                "archived": true,
                "target": found.group,
                "month": found.month,
                "segment": segment,
                "item": found.line,
                "summary": summary,
            }))
        )
        .map_err(io)?;
        return Ok(EXIT_OK);
    }
    let l = &found.line;
    let was = l
        .state
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("{:?}", l.kind).to_ascii_lowercase());
    writeln!(out, "queue name  {}", l.name).map_err(io)?;
    writeln!(
        out,
        "patch id    {}",
        l.patch_id
            .as_deref()
            .map(clean)
            .unwrap_or_else(|| "-".into())
    )
    .map_err(io)?;
    writeln!(out, "target      {}", found.group).map_err(io)?;
    writeln!(
        out,
        "state       archived (was {was}; archived {})",
        l.archived_at
    )
    .map_err(io)?;
    writeln!(out, "archive     {}", segment.display()).map_err(io)?;
    writeln!(out, "restore     ghostctl archive extract {}", l.name).map_err(io)?;
    if let Some(md) = file(".md") {
        writeln!(out).map_err(io)?;
        write!(out, "{}", String::from_utf8_lossy(&md)).map_err(io)?;
    }
    Ok(EXIT_OK)
}
