//! Finding queue entries: every target (configured, or with a queue directory
//! on disk), every state, and an operator's ID resolved to exactly one entry.
//!
//! An ID is resolved by the root's one rule, [`ghost_core::entry::resolve`]
//! (the bridge uses it too): a queue name or patch id exactly, else an
//! unambiguous prefix or suffix of either. An ambiguous ID gets every
//! candidate with its state, to list.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

use ghost_core::entry::Located;
use ghost_core::patch::parse::resolve_target;
use ghost_core::queue::{EntryRecord, Queue, QueueState};
use ghost_core::{Config, Layout};

use crate::util::clean;
use crate::CtlError;

/// The states `ls` shows by default: everything but `done` and `trash`.
pub const DEFAULT_LS_STATES: [QueueState; 6] = QueueState::OPEN;

/// Every target: the configured ones plus any with a queue directory on disk.
pub fn all_targets(config: &Config) -> Vec<String> {
    let layout = Layout::new(&config.root);
    let mut set: BTreeSet<String> = config.targets.keys().cloned().collect();
    set.extend(layout.queue_targets());
    set.into_iter().collect()
}

/// Resolve a target name given on the command line: a configured name or
/// alias, or a queue directory that exists on disk.
pub fn target_name(config: &Config, name: &str) -> Result<String, CtlError> {
    let specs = config.target_specs();
    if let Some(t) = resolve_target(&specs, name) {
        return Ok(t.name.clone());
    }
    let all = all_targets(config);
    if all.iter().any(|t| t == name) {
        return Ok(name.to_string());
    }
    Err(CtlError::Usage(format!(
        "unknown target {:?}; known targets: {}",
        clean(name),
        all.join(", ")
    )))
}

/// One queue entry as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryInfo {
    pub target: String,
    pub state: QueueState,
    /// The queue name (file name without `.json`).
    pub name: String,
    /// From the record, else the entry's own JSON; `None` if neither has one.
    pub patch_id: Option<String>,
    pub attempts: u32,
    /// When the entry was written into the queue (the file's modification time;
    /// moves between states keep it).
    pub arrived_at: Option<String>,
    pub path: PathBuf,
    pub record: EntryRecord,
    /// Why the record beside the entry could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
    #[serde(skip)]
    pub arrived: Option<SystemTime>,
}

impl EntryInfo {
    pub fn display_id(&self) -> String {
        self.patch_id
            .as_deref()
            .map(clean)
            .unwrap_or_else(|| "-".into())
    }

    /// `target/state/name`, the way messages name an entry.
    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.target, self.state.dir_name(), self.name)
    }
}

/// The patch id of a stored entry, by the one rule ([`ghost_core::entry::stored_id`]).
pub fn id_from_file(path: &std::path::Path) -> Option<String> {
    ghost_core::entry::stored_id(&std::fs::read(path).ok()?)
}

/// Everything known about entry `name` in `state`. Tolerates an entry that
/// moves away meanwhile (the fields read after that are simply empty).
pub fn entry_info(q: &Queue, state: QueueState, name: &str) -> EntryInfo {
    info_of(q, ghost_core::entry::locate(q, state, name))
}

/// [`entry_info`] for an entry the one lookup found (its id read already).
fn info_of(q: &Queue, found: Located) -> EntryInfo {
    let Located {
        state,
        name,
        path,
        patch_id,
        ..
    } = found;
    let (record, record_error) = match q.read_record(state, &name) {
        Ok(r) => (r, None),
        Err(e) => (EntryRecord::default(), Some(e.to_string())),
    };
    let arrived = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    EntryInfo {
        target: q.target().to_string(),
        state,
        name,
        patch_id,
        attempts: record.attempts,
        arrived_at: arrived.map(ghost_core::time::rfc3339),
        path,
        record,
        record_error,
        arrived,
    }
}

/// What `ls` lists.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// `None`: every target.
    pub target: Option<String>,
    /// `None`: [`DEFAULT_LS_STATES`].
    pub states: Option<Vec<QueueState>>,
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Newest first, over every target and state: by queue name, descending
    /// (queue names are time-ordered UUID v7s, so this needs no file's content).
    #[default]
    Newest,
    /// By target, then state, then queue name (within a state, the order the
    /// executor takes them).
    Name,
}

/// Which part of a listing to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRequest {
    pub sort: SortOrder,
    /// Entries to skip.
    pub offset: usize,
    /// At most this many; `None`: every one.
    pub limit: Option<usize>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub entries: Vec<EntryInfo>,
    /// Entries matching the filter, over all pages.
    pub total: usize,
    pub offset: usize,
}

/// One page of the entries matching `filter`. Only names are listed and
/// sorted; the records and files are read for the entries on the page alone,
/// so a page costs the same with 100 entries or 100,000.
pub fn list_page(config: &Config, filter: &ListFilter, req: PageRequest) -> Result<Page, CtlError> {
    let layout = Layout::new(&config.root);
    let targets = match &filter.target {
        Some(t) => vec![target_name(config, t)?],
        None => all_targets(config),
    };
    let states: Vec<QueueState> = filter
        .states
        .clone()
        .unwrap_or_else(|| DEFAULT_LS_STATES.to_vec());
    // (target index, state index, name): the `Name` order as built.
    let mut keys: Vec<(usize, usize, String)> = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        let q = layout.queue(t);
        for (si, s) in QueueState::ALL.into_iter().enumerate() {
            if states.contains(&s) {
                keys.extend(q.list(s)?.into_iter().map(|n| (ti, si, n)));
            }
        }
    }
    if req.sort == SortOrder::Newest {
        keys.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    }
    let total = keys.len();
    let end = match req.limit {
        Some(l) => req.offset.saturating_add(l).min(total),
        None => total,
    };
    let start = req.offset.min(end);
    let entries = keys[start..end]
        .iter()
        .map(|(ti, si, name)| entry_info(&layout.queue(&targets[*ti]), QueueState::ALL[*si], name))
        .collect();
    Ok(Page {
        entries,
        total,
        offset: start,
    })
}

/// Every entry matching `filter`, by target, then state, then arrival.
pub fn list(config: &Config, filter: &ListFilter) -> Result<Vec<EntryInfo>, CtlError> {
    let req = PageRequest {
        sort: SortOrder::Name,
        ..PageRequest::default()
    };
    Ok(list_page(config, filter, req)?.entries)
}

/// Resolve an operator's ID (queue name, patch id, or an unambiguous prefix
/// or suffix of either) to one entry. Unknown or ambiguous IDs are usage
/// errors; an ambiguous one lists its candidates with their states.
pub fn find(config: &Config, id: &str) -> Result<EntryInfo, CtlError> {
    match find_all(config, id)? {
        Found::One(e) => Ok(*e),
        Found::None => Err(CtlError::Usage(format!(
            "no queue entry has the queue name or patch id {:?}, or one that starts or ends \
             with it (searched every state of targets {}; a prefix or suffix needs {}+ \
             characters); see `ghostctl ls --state all`",
            clean(id),
            all_targets(config).join(", "),
            ghost_core::entry::MIN_PARTIAL,
        ))),
        Found::Many(v) => {
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|e| {
                    vec![
                        format!("  {}", e.name),
                        e.target.clone(),
                        e.state.to_string(),
                        e.display_id(),
                    ]
                })
                .collect();
            let msg = format!(
                "{:?} matches {} entries; give more of the queue name or patch id, or the \
                 full queue name of the one you mean:\n{}",
                clean(id),
                v.len(),
                crate::util::table(&["  QUEUE NAME", "TARGET", "STATE", "PATCH ID"], &rows)
                    .trim_end()
            );
            Err(CtlError::Usage(msg))
        }
    }
}

/// The result of looking an ID up.
#[derive(Debug)]
pub enum Found {
    None,
    One(Box<EntryInfo>),
    Many(Vec<EntryInfo>),
}

/// Every entry an ID could mean, by [`ghost_core::entry::resolve`], with
/// what the operator sees of each.
pub fn find_all(config: &Config, id: &str) -> Result<Found, CtlError> {
    use ghost_core::entry::Resolved;
    let layout = Layout::new(&config.root);
    let info = |l: Located| info_of(&layout.queue(&l.target), l);
    Ok(match ghost_core::entry::resolve(&layout, id)? {
        Resolved::None => Found::None,
        Resolved::One(l) => Found::One(Box::new(info(l))),
        Resolved::Many(v) => Found::Many(v.into_iter().map(info).collect()),
    })
}
