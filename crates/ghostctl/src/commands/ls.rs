//! `ghostctl ls`: queue entries, a page at a time (docs/operations.md,
//! "Inspect").
//!
//! Newest first by default (`--sort name`: by target, state and queue name),
//! [`DEFAULT_PAGE_SIZE`] to a page (`--limit N`, `--page N`), or everything
//! with `--all`. Only the names are listed and sorted; the files of the shown
//! entries alone are read ([`crate::entries::list_page`]). When there is more
//! than the page shows, the last line (on stderr with `--json`) says how many
//! more and how to see them.

use std::io::Write;

use clap::{Args, ValueEnum};

use ghost_core::cli::EXIT_OK;
use ghost_core::queue::QueueState;
use ghost_core::Config;

use crate::entries::{self, EntryInfo, ListFilter, Page, PageRequest, SortOrder};
use crate::util::{cell, relative, relative_str, table};
use crate::{io, json_text, CtlError, StateArg};

/// Entries on one page unless `--limit` says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// `--sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Sort {
    /// Newest first, over every target and state
    #[default]
    Newest,
    /// By target, then state, then queue name (the order they are applied in)
    Name,
}

/// The paging flags of `ls`.
#[derive(Debug, Clone, Args)]
pub struct Paging {
    /// List every entry, with no pages
    #[arg(long, conflicts_with_all = ["page", "limit"])]
    pub all: bool,
    /// Which page to show, from 1
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub page: u64,
    /// Entries on a page
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PAGE_SIZE as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Order of the listing
    #[arg(long, value_enum, default_value_t = Sort::Newest)]
    pub sort: Sort,
}

impl Paging {
    fn request(&self) -> PageRequest {
        let sort = match self.sort {
            Sort::Newest => SortOrder::Newest,
            Sort::Name => SortOrder::Name,
        };
        if self.all {
            return PageRequest {
                sort,
                offset: 0,
                limit: None,
            };
        }
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let page = usize::try_from(self.page - 1).unwrap_or(usize::MAX);
        PageRequest {
            sort,
            offset: page.saturating_mul(limit),
            limit: Some(limit),
        }
    }
}

/// The states `--state` asked for; `None`: the default ones.
fn states(state: &[StateArg]) -> Option<Vec<QueueState>> {
    if state.is_empty() {
        None
    } else if state.contains(&StateArg::All) {
        Some(QueueState::ALL.to_vec())
    } else {
        Some(
            state
                .iter()
                .filter_map(|s| match s {
                    StateArg::One(q) => Some(*q),
                    StateArg::All => None,
                })
                .collect(),
        )
    }
}

/// What is beyond the page, for the last line; `None` when the page shows
/// everything.
pub fn footer(page: &Page, req: &PageRequest, sort: Sort) -> Option<String> {
    let shown = page.entries.len();
    if page.offset == 0 && shown == page.total {
        return None;
    }
    let limit = req.limit.unwrap_or(page.total).max(1);
    let order = match sort {
        Sort::Newest => "newest first",
        Sort::Name => "by name",
    };
    if shown == 0 {
        let pages = page.total.div_ceil(limit);
        return Some(format!(
            "no entries on page {}: {} entries, {limit} to a page, make {pages} page(s)",
            req.offset / limit + 1,
            page.total
        ));
    }
    let first = page.offset + 1;
    let last = page.offset + shown;
    let more = page.total - last;
    let mut s = format!("showing {first}-{last} of {} entries ({order})", page.total);
    if more > 0 {
        s.push_str(&format!(
            "; {more} more: `--page {}`, or `--all` for every entry",
            page.offset / limit + 2
        ));
    }
    Some(s)
}

/// `ghostctl ls`.
pub fn run(
    config: &Config,
    state: &[StateArg],
    target: Option<&str>,
    paging: &Paging,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CtlError> {
    let filter = ListFilter {
        target: target.map(str::to_string),
        states: states(state),
    };
    let req = paging.request();
    let page = entries::list_page(config, &filter, req)?;
    let foot = footer(&page, &req, paging.sort);
    if json {
        writeln!(out, "{}", json_text(&page.entries)).map_err(io)?;
        if let Some(f) = foot {
            let _ = writeln!(err, "{f}");
        }
        return Ok(EXIT_OK);
    }
    if page.total == 0 {
        let which = if filter.states.is_none() {
            "in any state but done and trash; `--state all` lists those too"
        } else {
            "in the states asked for"
        };
        writeln!(out, "no entries {which}").map_err(io)?;
        return Ok(EXIT_OK);
    }
    if !page.entries.is_empty() {
        write!(out, "{}", render_ls(&page.entries)).map_err(io)?;
    }
    if let Some(f) = foot {
        writeln!(out, "{f}").map_err(io)?;
    }
    Ok(EXIT_OK)
}

/// The `ls` table.
pub fn render_ls(list: &[EntryInfo]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let age = e.arrived.map(relative).unwrap_or_else(|| "-".into());
            vec![
                e.target.clone(),
                e.state.to_string(),
                e.name.clone(),
                cell(&e.display_id(), 48),
                e.attempts.to_string(),
                age,
                cell(&note(e), 72),
            ]
        })
        .collect();
    table(
        &[
            "TARGET",
            "STATE",
            "QUEUE NAME",
            "PATCH ID",
            "ATTEMPTS",
            "ARRIVED",
            "NOTE",
        ],
        &rows,
    )
}

/// The one thing worth knowing about an entry in its state.
fn note(e: &EntryInfo) -> String {
    let r = &e.record;
    if let Some(err) = &e.record_error {
        return format!("record unreadable: {err}");
    }
    match e.state {
        QueueState::Active => r
            .claim
            .as_ref()
            .map(|c| {
                format!(
                    "pid {} on {} since {}",
                    c.pid,
                    c.host,
                    relative_str(&c.started_at)
                )
            })
            .unwrap_or_default(),
        QueueState::Deferred => r
            .due_at
            .as_deref()
            .map(|d| format!("due {}", relative_str(d)))
            .unwrap_or_else(|| "due now".into()),
        QueueState::Failed | QueueState::Stuck => r
            .reason
            .as_ref()
            .map(|x| format!("{}: {}", x.kind, x.message))
            .unwrap_or_default(),
        QueueState::Held | QueueState::Trash | QueueState::Pending | QueueState::Done => r
            .operator
            .last()
            .map(|a| {
                format!(
                    "{} by {} {}{}",
                    a.action,
                    a.by,
                    relative_str(&a.at),
                    a.reason
                        .as_deref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default(),
    }
}
