//! Group commit: several due patches of one target applied with shared fsync
//! barriers, each still its own all-or-nothing transaction with its own
//! summary.
//!
//! A batch is the longest run of due entries, oldest first and at most
//! `executor.batch_max`, whose patches parse and have no checks and no git
//! commit (those run on their own, through [`crate::engine::process_one`]).
//! Each is staged in memory over what the earlier ones make of the tree. The
//! first that cannot be staged ends the batch, and runs on its own next (where
//! it fails alone); so no patch of a batch depends on a failed one.
//!
//! Durable steps, and what recovery makes of a crash between any two:
//!
//! 1. the batch journal `active/.batch.json` (phase `prepared`): every
//!    member's record (attempt counted, claim) and undo journal — before
//!    this nothing changed;
//! 2. the entries renamed `pending/` → `active/`, one fsync per directory;
//! 3. the tree: every file written to a temp file, all fsynced together,
//!    renamed member by member, each directory fsynced once, then read back;
//! 4. the batch journal marked `complete` — before this, recovery rolls every
//!    member back (last first, so each restores what the one before it left)
//!    and requeues the claimed ones as crashed; from here it finishes them;
//! 5. the members' summaries, written together;
//! 6. the done records and the moves `active/` → `done/`, together;
//! 7. the batch journal removed.
//!
//! Recovery hands each member in `active/` to the one-patch recovery with a
//! claim record and, for a complete batch, a `complete` journal: one tested
//! path finishes or requeues it, so every member ends wholly applied exactly
//! once or wholly not applied. A member already in `done/` is left alone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use ghost_core::fs::tree::{Tree, TreeGroup};
use ghost_core::fs::WriteGroup;
use ghost_core::patch::parse::{parse_patch, ParseOptions};
use ghost_core::patch::stage::{stage_with, Entry, FileData, StageOptions, Staged, TreeView};
use ghost_core::patch::{Patch, RelPath};
use ghost_core::queue::{AttemptRecord, Claim, EntryRecord, QueueState};
use ghost_core::summary::{self, ExecutorInfo, Summary, SummaryStatus};
use ghost_core::time::now_rfc3339;
use ghost_core::Result;

use crate::engine::TargetCtx;
use crate::journal::{self, Journal, Phase};

/// A crash window (see the engine's).
macro_rules! crash_point {
    ($name:literal) => {
        ghost_core::fault_point($name, None)?
    };
}

/// One member of a batch, as the batch journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// The record with this attempt counted and the claim.
    pub record: EntryRecord,
    pub journal: Journal,
}

/// `active/.batch.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchJournal {
    pub version: u32,
    pub target: String,
    pub phase: Phase,
    pub created_at: String,
    pub pid: u32,
    /// In queue order: each member's journal is relative to the tree the
    /// members before it leave.
    pub members: Vec<Member>,
}

fn journal_path(ctx: &TargetCtx) -> PathBuf {
    ctx.queue.dir(QueueState::Active).join(".batch.json")
}

/// What [`process`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Batched {
    /// The first `n` names were applied (and are in `done/`), or resolved.
    Done(usize),
    /// Not worth a batch (fewer than two members qualify): take the first
    /// name on its own.
    Single,
    /// Another process holds the working tree.
    Busy,
}

/// The tree as the members staged so far leave it.
struct Overlay<'a> {
    tree: &'a Tree,
    files: BTreeMap<RelPath, Option<FileData>>,
    dirs: std::collections::BTreeSet<RelPath>,
}

impl TreeView for Overlay<'_> {
    fn entry(&self, path: &RelPath) -> std::io::Result<Entry> {
        if let Some(f) = self.files.get(path) {
            return Ok(match f {
                Some(d) => Entry::File(d.clone()),
                None => Entry::Absent,
            });
        }
        if self.dirs.contains(path) {
            return Ok(Entry::Dir);
        }
        self.tree.entry(path)
    }
}

struct Candidate {
    name: String,
    record: EntryRecord,
    patch: Patch,
    staged: Staged,
}

/// Read and parse pending entry `name`; `None` when it cannot join a batch.
fn load(ctx: &TargetCtx, name: &str) -> Option<(EntryRecord, Patch)> {
    let q = &ctx.queue;
    let bytes = ghost_core::fs::read(&q.entry_path(QueueState::Pending, name)).ok()?;
    if bytes.len() as u64 > ctx.cfg.bridge.max_patch_bytes {
        return None;
    }
    let record = q.read_record(QueueState::Pending, name).ok()?;
    // Edited since admission: runs on its own, where it fails with its reason.
    if let Some(expected) = record.content_md5.as_deref() {
        if ghost_core::entry::stored_md5(&bytes).as_deref() != Some(expected) {
            return None;
        }
    }
    let patch = parse_patch(
        &bytes,
        &ParseOptions {
            targets: &ctx.specs,
            target_override: Some(&ctx.target),
        },
    )
    .ok()?;
    // Over a limit: runs on its own, where it fails with its reason.
    if ghost_core::patch::validate_limits(&patch, &ctx.cfg.limits).is_err() {
        return None;
    }
    let alone = !patch.checks.before.is_empty()
        || !patch.checks.after.is_empty()
        || patch.git.is_some()
        || ctx.target_cfg.git_commit;
    if alone {
        return None;
    }
    Some((record, patch))
}

/// Apply the due entries `names` (oldest first) as one batch, or say why not.
pub fn process(ctx: &TargetCtx, names: &[String]) -> Result<Batched> {
    if names.len() < 2 {
        return Ok(Batched::Single);
    }
    let Some(_tree_lock) = ghost_core::fs::DirLock::try_acquire(&ctx.tree_path)? else {
        return Ok(Batched::Busy);
    };
    let tree = Tree::open(&ctx.tree_path)?;
    let mut ov = Overlay {
        tree: &tree,
        files: BTreeMap::new(),
        dirs: Default::default(),
    };
    // The same staging rules as a patch on its own ([limits], modes), with
    // the deadline of the batch's first claim.
    let opts = StageOptions {
        default_file_mode: ctx.cfg.default_file_mode(),
        allow_special_modes: ctx.target_cfg.allow_special_modes,
        target: ctx.target.clone(),
        limits: ctx.cfg.limits.clone(),
        deadline: Some(Instant::now() + ctx.cfg.executor.stuck_after),
    };
    let mut cands: Vec<Candidate> = Vec::new();
    for name in names {
        let Some((record, patch)) = load(ctx, name) else {
            break;
        };
        let Ok(staged) = stage_with(&patch.operations, &ov, &opts) else {
            // Runs on its own next, and fails alone there.
            break;
        };
        for (p, f) in &staged.changes {
            ov.files.insert(p.clone(), f.clone());
        }
        ov.dirs.extend(staged.new_dirs.iter().cloned());
        cands.push(Candidate {
            name: name.clone(),
            record,
            patch,
            staged,
        });
    }
    if cands.len() < 2 {
        return Ok(Batched::Single);
    }
    let started = Instant::now();
    let started_at = now_rfc3339();
    let q = &ctx.queue;

    // 1. The batch journal.
    let members: Vec<Member> = cands
        .iter_mut()
        .map(|c| {
            c.record.attempts += 1;
            c.record.due_at = None;
            c.record.patch_id = Some(c.patch.id.clone());
            c.record.claim = Some(Claim {
                pid: std::process::id(),
                host: ghost_core::hostname(),
                started_at: started_at.clone(),
                attempt: c.record.attempts,
                version: ghost_core::VERSION.to_string(),
            });
            Member {
                name: c.name.clone(),
                record: c.record.clone(),
                journal: Journal::from_staged(&c.name, &c.patch.id, &ctx.target, &c.staged),
            }
        })
        .collect();
    let mut bj = BatchJournal {
        version: 1,
        target: ctx.target.clone(),
        phase: Phase::Prepared,
        created_at: started_at.clone(),
        pid: std::process::id(),
        members,
    };
    let jpath = journal_path(ctx);
    ghost_core::fs::write_json(&jpath, &bj)?;
    crash_point!("crash-after-batch-journal");

    // 2. The claims.
    let mut claims = WriteGroup::new();
    let mut claimed = 0;
    for c in &cands {
        match claims.rename_noreplace(
            &q.entry_path(QueueState::Pending, &c.name),
            &q.entry_path(QueueState::Active, &c.name),
        ) {
            Ok(()) => claimed += 1,
            Err(e) => {
                // Moved meanwhile (an operator's hold): the batch ends before it.
                warn!(target = %ctx.target, queue_name = %c.name, error = %e, "could not claim; the batch ends before this entry");
                break;
            }
        }
    }
    let synced = claims.finish();
    if claimed < cands.len() {
        // Members past the gap may not run before the entry that left: drop them.
        cands.truncate(claimed);
        bj.members.truncate(claimed);
        synced.and_then(|()| ghost_core::fs::write_json(&jpath, &bj))?;
    } else {
        synced?;
    }
    for c in &cands {
        q.remove_sidecars(QueueState::Pending, &c.name);
        ctx.counters.claimed.fetch_add(1, Ordering::Relaxed);
        info!(event = "PATCH_CLAIMED", target = %ctx.target, queue_name = %c.name, attempt = c.record.attempts, batch = cands.len(), "claimed");
    }
    if cands.is_empty() {
        ghost_core::fs::durable_remove(&jpath)?;
        return Ok(Batched::Done(0));
    }
    let n = cands.len();

    // 3. The tree.
    if let Err(e) = apply(&tree, &cands) {
        error!(event = "BATCH_APPLY_FAILED", target = %ctx.target, error = %e, "applying a batch failed; rolling every member back");
        // Recovery's path: roll back last first, then each member is
        // requeued (its attempt counted) by the one-patch recovery.
        crate::engine::recover_held(ctx)?;
        return Ok(Batched::Done(n));
    }
    crash_point!("crash-after-batch-apply");

    // 4. Complete.
    bj.phase = Phase::Complete;
    ghost_core::fs::write_json(&jpath, &bj)?;
    crash_point!("crash-after-batch-complete");

    // 5. Summaries.
    let ended_at = now_rfc3339();
    let dir = ctx.layout.summaries(&ctx.target);
    let mut sums = WriteGroup::new();
    let mut written = Vec::with_capacity(n);
    for c in &mut cands {
        c.record.history.push(AttemptRecord {
            attempt: c.record.attempts,
            started_at: started_at.clone(),
            ended_at: ended_at.clone(),
            outcome: "applied".into(),
            error_kind: None,
            message: None,
        });
        c.record.claim = None;
        let s = summary_of(ctx, c, &started_at, &ended_at, started);
        let first = sums.len();
        written.push((first, summary::stage(&mut sums, &dir, &s)?));
    }
    sums.sync()?;
    for (i, (first, _)) in written.iter().enumerate() {
        if i == 1 {
            crash_point!("crash-between-batch-summaries");
        }
        sums.publish(*first..first + 4)?;
    }
    sums.finish()?;
    for (c, (_, w)) in cands.iter().zip(&written) {
        summary::verify_written(&dir, &c.name, w)?;
        info!(event = "SUMMARY_CREATED", target = %ctx.target, queue_name = %c.name, patch_id = %c.patch.id, status = "applied", json_md5 = %w.json_md5, md_md5 = %w.md_md5, "summary written and verified");
    }

    // 6. Done records and moves.
    let mut moves = WriteGroup::new();
    for c in &cands {
        let mut bytes = serde_json::to_vec_pretty(&c.record).expect("a record serialises");
        bytes.push(b'\n');
        moves.stage(
            &q.record_path(QueueState::Done, &c.name),
            &bytes,
            ghost_core::fs::FILE_MODE,
        )?;
    }
    moves.sync()?;
    crash_point!("crash-before-batch-moves");
    for (i, c) in cands.iter().enumerate() {
        moves.publish(i..i + 1)?;
        moves.rename_noreplace(
            &q.entry_path(QueueState::Active, &c.name),
            &q.entry_path(QueueState::Done, &c.name),
        )?;
    }
    moves.finish()?;
    crash_point!("crash-after-batch-moves");
    for c in &cands {
        q.remove_sidecars(QueueState::Active, &c.name);
        ctx.counters.applied.fetch_add(1, Ordering::Relaxed);
        info!(event = "PATCH_APPLIED", target = %ctx.target, queue_name = %c.name, patch_id = %c.patch.id, attempt = c.record.attempts, batch = n, "applied");
    }

    // 7. Done with the journal. Without an fsync: should it come back after a
    // crash, recovery finds no member in active/ and removes it again.
    #[allow(clippy::disallowed_methods)] // no fsync by design, see above
    let _ = std::fs::remove_file(&jpath);
    Ok(Batched::Done(n))
}

/// Step 3: write every member's files, the final content of each path once,
/// published member by member; then read everything back.
fn apply(tree: &Tree, cands: &[Candidate]) -> Result<()> {
    for c in cands {
        for d in &c.staged.new_dirs {
            tree.create_dir(d)?;
        }
    }
    // The member that writes each path last publishes it.
    let mut last: BTreeMap<&RelPath, usize> = BTreeMap::new();
    for (i, c) in cands.iter().enumerate() {
        for p in c.staged.changes.keys() {
            last.insert(p, i);
        }
    }
    let mut group = TreeGroup::new(tree);
    let mut ranges = Vec::with_capacity(cands.len());
    for (i, c) in cands.iter().enumerate() {
        let first = group.len();
        for (p, fin) in &c.staged.changes {
            if last[p] == i {
                group.stage(p, fin.as_ref().map(|d| (d.bytes.as_slice(), d.mode)))?;
            }
        }
        ranges.push(first..group.len());
    }
    group.sync()?;
    for (i, r) in ranges.into_iter().enumerate() {
        if i == 1 {
            crash_point!("crash-between-batch-tree-writes");
        }
        fail::fail_point!("io-error-mid-batch", i == 1, |_| Err(
            ghost_core::Error::Invalid("injected I/O error (failpoint io-error-mid-batch)".into())
        ));
        group.publish(r)?;
    }
    group.finish()?;
    for (p, i) in last {
        let fin = &cands[i].staged.changes[p];
        let now = tree
            .entry(p)
            .map_err(|e| ghost_core::Error::io("read back", tree.root().join(p.as_str()), e))?;
        let ok = match (fin, now) {
            (Some(d), Entry::File(f)) => d.bytes == f.bytes && d.mode == f.mode,
            (None, Entry::Absent) => true,
            _ => false,
        };
        if !ok {
            return Err(ghost_core::Error::Invalid(format!(
                "the tree read back differs from what was written at {p}"
            )));
        }
    }
    Ok(())
}

fn summary_of(
    ctx: &TargetCtx,
    c: &Candidate,
    started_at: &str,
    ended_at: &str,
    started: Instant,
) -> Summary {
    Summary {
        id: c.patch.id.clone(),
        name: c.name.clone(),
        target: ctx.target.clone(),
        status: SummaryStatus::Applied,
        attempts: c.record.attempts,
        description: c.patch.description.clone(),
        source_format: Some(format!("{:?}", c.patch.source_format).to_lowercase()),
        started_at: started_at.to_string(),
        finished_at: ended_at.to_string(),
        duration_ms: started.elapsed().as_millis() as u64,
        operations: crate::engine::op_summaries(&c.staged.results),
        checks: Vec::new(),
        error: None,
        rollback: None,
        git: None,
        executor: ExecutorInfo {
            pid: std::process::id(),
            host: ghost_core::hostname(),
            version: ghost_core::VERSION.to_string(),
        },
        history: c.record.history.clone(),
    }
}

/// Resolve a batch a crash (or a failed apply) left behind, before the
/// one-patch recovery looks at `active/`: see the module documentation.
/// Whether a batch journal is left to recover.
pub fn pending(ctx: &TargetCtx) -> bool {
    journal_path(ctx).exists()
}

pub fn recover(ctx: &TargetCtx) -> Result<()> {
    let jpath = journal_path(ctx);
    let Some(bytes) = ghost_core::fs::read_opt(&jpath)? else {
        return Ok(());
    };
    let q = &ctx.queue;
    let bj: BatchJournal = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            // Written durably before anything else of the batch: a torn one
            // means the batch never started. Keep it where a person can look.
            warn!(event = "BATCH_JOURNAL_UNREADABLE", target = %ctx.target, error = %e, "unreadable batch journal; moving it aside");
            let aside = ctx
                .layout
                .kept_journals(&ctx.target)
                .join(format!("batch-{}.json", ghost_core::queue::new_name()));
            ghost_core::fs::ensure_dir(aside.parent().expect("has a parent"))?;
            ghost_core::fs::durable_write(&aside, &bytes, ghost_core::fs::FILE_MODE)?;
            return ghost_core::fs::durable_remove(&jpath);
        }
    };
    let claimed: Vec<&Member> = bj
        .members
        .iter()
        .filter(|m| q.entry_path(QueueState::Active, &m.name).exists())
        .collect();
    let mut unverified = std::collections::BTreeSet::new();
    if bj.phase == Phase::Prepared {
        let tree = Tree::open(&ctx.tree_path)?;
        for m in bj.members.iter().rev() {
            let r = journal::rollback(&tree, &m.journal)?;
            if !r.verified {
                unverified.insert(m.name.clone());
            }
        }
        info!(event = "BATCH_ROLLED_BACK", target = %ctx.target, members = bj.members.len(), claimed = claimed.len(), unverified = unverified.len(), "an unfinished batch was rolled back");
    }
    for m in claimed {
        q.write_record(QueueState::Active, &m.name, &m.record)?;
        let jp = q.sidecar_path(QueueState::Active, &m.name, "journal");
        if bj.phase == Phase::Complete {
            let mut j = m.journal.clone();
            j.phase = Phase::Complete;
            j.write(&jp)?;
        } else if unverified.contains(&m.name) {
            // Rolled back, but not to its MD5s: the one-patch recovery tries
            // again and parks it with the journal if it still does not match.
            m.journal.write(&jp)?;
        } else {
            // Rolled back and verified: as if the tree had never changed.
            ghost_core::fs::durable_remove(&jp)?;
        }
    }
    ghost_core::fs::durable_remove(&jpath)?;
    Ok(())
}

/// True when `due` names at least two entries and batches are enabled.
pub fn worth_trying(ctx: &TargetCtx, due: usize) -> bool {
    ctx.cfg.executor.batch_max > 1 && due > 1
}
