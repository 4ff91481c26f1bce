//! `ghostctl show ID`: one entry, with its summary when it has one.
//!
//! The summary is the one the executor wrote for the entry's queue name
//! (`summaries/<target>/<name>.{md,json}`; the backup when the main copy is
//! bad). A summary can be older than the entry's state (a stuck patch retried
//! is pending again but keeps its stuck summary), so the entry's current state
//! is always shown above it.

use std::fmt::Write as _;

use serde::Serialize;

use ghost_core::cli::EXIT_OK;

use ghost_core::summary::{self, Summary, SummaryFiles};
use ghost_core::{Config, Layout};

use crate::entries::{find, EntryInfo};
use crate::util::{clean, relative, relative_str};
use crate::{io, json_text, CtlError};

/// `ghostctl show ID`.
pub fn run(
    config: &Config,
    id: &str,
    json: bool,
    out: &mut dyn std::io::Write,
) -> Result<u8, CtlError> {
    if let Some(a) = crate::commands::archive::archived_only(config, id)? {
        return crate::commands::archive::show(config, &a, json, out);
    }
    let r = show(config, id)?;
    if json {
        writeln!(out, "{}", json_text(&r)).map_err(io)?;
    } else {
        write!(out, "{}", render(&r)).map_err(io)?;
    }
    Ok(EXIT_OK)
}

#[derive(Debug, Clone, Serialize)]
pub struct ShowResult {
    pub entry: EntryInfo,
    pub summary: Option<Summary>,
    /// The summary's Markdown (as written, or rendered again from the JSON
    /// when the Markdown file is missing).
    #[serde(skip)]
    pub markdown: Option<String>,
}

pub fn show(config: &Config, id: &str) -> Result<ShowResult, CtlError> {
    let entry = find(config, id)?;
    let dir = Layout::new(&config.root).summaries(&entry.target);
    let summary = summary::read(&dir, &entry.name)?;
    let markdown = match &summary {
        None => None,
        Some(s) => {
            let files = SummaryFiles::new(&dir, &entry.name);
            let written = [&files.md, &files.backup_md]
                .into_iter()
                .find_map(|p| std::fs::read_to_string(p).ok());
            Some(written.unwrap_or_else(|| {
                let mut json = serde_json::to_vec_pretty(s).unwrap_or_default();
                json.push(b'\n');
                summary::render_markdown(s, &ghost_core::md5_hex(&json))
            }))
        }
    };
    Ok(ShowResult {
        entry,
        summary,
        markdown,
    })
}

/// The human rendering: the entry, then the summary's Markdown or the record.
pub fn render(r: &ShowResult) -> String {
    let e = &r.entry;
    let rec = &e.record;
    let mut o = String::new();
    let _ = writeln!(o, "queue name  {}", e.name);
    let _ = writeln!(o, "patch id    {}", e.display_id());
    let _ = writeln!(o, "target      {}", e.target);
    let _ = writeln!(o, "state       {}", e.state);
    let _ = writeln!(o, "file        {}", e.path.display());
    if let Some(t) = e.arrived {
        let _ = writeln!(
            o,
            "arrived     {} ({})",
            e.arrived_at.as_deref().unwrap_or("-"),
            relative(t)
        );
    }
    let _ = writeln!(o, "attempts    {}", rec.attempts);
    if let Some(d) = &rec.due_at {
        let _ = writeln!(o, "due         {} ({})", clean(d), relative_str(d));
    }
    if let Some(c) = &rec.claim {
        let _ = writeln!(
            o,
            "claimed     by pid {} on {}, attempt {}, since {} ({})",
            c.pid,
            clean(&c.host),
            c.attempt,
            clean(&c.started_at),
            relative_str(&c.started_at)
        );
    }
    if let Some(reason) = &rec.reason {
        let _ = writeln!(
            o,
            "reason      {}: {} (at {})",
            clean(&reason.kind),
            clean(&reason.message),
            clean(&reason.at)
        );
        if let Some(h) = &reason.hint {
            let _ = writeln!(o, "hint        {}", clean(h));
        }
    }
    if let Some(err) = &e.record_error {
        let _ = writeln!(o, "record      UNREADABLE: {}", clean(err));
    }
    for a in &rec.operator {
        let _ = writeln!(
            o,
            "operator    {} by {} at {} (was {}){}",
            clean(&a.action),
            clean(&a.by),
            clean(&a.at),
            a.from,
            a.reason
                .as_deref()
                .map(|r| format!(": {}", clean(r)))
                .unwrap_or_default()
        );
    }
    match &r.markdown {
        Some(md) => {
            if let Some(s) = &r.summary {
                let _ = writeln!(
                    o,
                    "summary     {} ({}/{}.md)\n",
                    s.status.as_str(),
                    e.target,
                    e.name
                );
            }
            o.push_str(md);
            if !md.ends_with('\n') {
                o.push('\n');
            }
        }
        None => {
            let _ = writeln!(
                o,
                "summary     none yet (written when the patch reaches a terminal state)"
            );
            if !rec.history.is_empty() {
                let _ = writeln!(o, "\nattempts:");
                for h in &rec.history {
                    let _ = writeln!(
                        o,
                        "  {}  {}  {} -> {}{}",
                        h.attempt,
                        clean(&h.outcome),
                        clean(&h.started_at),
                        clean(&h.ended_at),
                        match (&h.error_kind, &h.message) {
                            (Some(k), Some(m)) => format!("  {}: {}", clean(k), clean(m)),
                            (Some(k), None) => format!("  {}", clean(k)),
                            (None, Some(m)) => format!("  {}", clean(m)),
                            (None, None) => String::new(),
                        }
                    );
                }
            }
        }
    }
    o
}
