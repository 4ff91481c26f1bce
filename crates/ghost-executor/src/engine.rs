//! One patch, one transaction: claim, check, stage, journal, apply, check,
//! commit or roll back, summarise, move. And the recovery sweep that makes a
//! crash at any point end in "wholly before" or "wholly after".
//!
//! Order of durable effects for an applied patch, and what recovery does after a
//! crash between any two of them:
//!
//! 1. claim record written into `active/`, entry renamed `pending/` → `active/`
//!    (crash before the rename: still pending; after: requeued, attempt counted);
//! 2. journal (`prepared`) written — before this the tree is untouched;
//! 3. tree files written one by one — recovery rolls back from the journal;
//! 4. after-checks (each command's process group noted in `active/`, killed by
//!    recovery before it touches the tree), optional git commit (the branch
//!    head recorded in the journal first: recovery keeps a commit the tree
//!    matches, else takes it back with the files);
//! 5. journal marked `complete` — from here recovery finishes instead of undoing;
//! 6. summary written and verified, entry renamed `active/` → `done/`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use ghost_core::config::TargetConfig;
use ghost_core::fs::tree::Tree;
use ghost_core::patch::parse::{parse_patch, ParseOptions};
use ghost_core::patch::stage::{stage_with, StageErrorKind, StageOptions};
use ghost_core::patch::{validate_limits, Patch, RelPath, TargetSpec};
use ghost_core::queue::{AttemptRecord, Claim, EntryRecord, Queue, QueueState, Reason};
use ghost_core::summary::{
    self, CheckSummary, ErrorSummary, ExecutorInfo, FileSummary, GitSummary, OpSummary,
    RollbackSummary, Summary, SummaryStatus,
};
use ghost_core::time::{now_rfc3339, rfc3339};
use ghost_core::{Config, Layout, Result};

use crate::command::{self, CmdFailure, Limits, ProcGroup, RunAs, Scrubber};

/// A crash window: with the `failpoints` feature and `FAILPOINTS=<name>=return`,
/// the process aborts here, as a `kill -9` or a power cut would stop it;
/// `<name>=return(error)` fails the step with an injected I/O error instead
/// ([`ghost_core::fault_point`]). The end-to-end tests arm each one and check
/// what recovery makes of it.
macro_rules! crash_point {
    ($name:literal) => {
        ghost_core::fault_point($name, None)?
    };
    // Where the caller handles a failure itself (the attempt rolls back).
    ($name:literal, |$e:ident| $on_error:expr) => {
        if let Err($e) = ghost_core::fault_point($name, None) {
            $on_error
        }
    };
}
use crate::decision::{counts_as_attempt, decide, Backoff, Decision, Outcome};
use crate::journal::{self, Journal, Phase};

/// What the heartbeat reports.
#[derive(Debug, Default, Serialize)]
pub struct Counters {
    pub claimed: AtomicU64,
    pub applied: AtomicU64,
    pub failed: AtomicU64,
    pub rolled_back: AtomicU64,
    pub deferred: AtomicU64,
    pub stuck: AtomicU64,
    pub requeued: AtomicU64,
    pub recovered: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Everything the engine needs for one target.
pub struct TargetCtx {
    pub cfg: Arc<Config>,
    pub layout: Layout,
    pub target: String,
    pub target_cfg: TargetConfig,
    pub queue: Queue,
    pub tree_path: PathBuf,
    pub specs: Vec<TargetSpec>,
    pub counters: Arc<Counters>,
    /// The target's `run_as` user, resolved at start-up.
    pub run_as: Option<RunAs>,
}

impl TargetCtx {
    pub fn new(cfg: Arc<Config>, target: &str, counters: Arc<Counters>) -> Self {
        let layout = Layout::new(cfg.root.clone());
        TargetCtx {
            queue: layout.queue(target),
            tree_path: cfg.target_path(target),
            target_cfg: cfg.targets.get(target).cloned().unwrap_or_default(),
            specs: cfg.target_specs(),
            target: target.to_string(),
            layout,
            cfg,
            counters,
            run_as: None,
        }
    }

    fn journal_path(&self, name: &str) -> PathBuf {
        self.queue.sidecar_path(QueueState::Active, name, "journal")
    }

    /// Where the process group of the command running for entry `name` is noted.
    fn procs_path(&self, name: &str) -> PathBuf {
        self.queue.sidecar_path(QueueState::Active, name, "procs")
    }

    /// Note the group of the command now running for `name`, for recovery to
    /// kill should this executor die. Volatile: the group dies with the
    /// machine, so the record need not survive it.
    fn record_group(&self, name: &str, g: &ProcGroup) {
        let bytes = serde_json::to_vec(g).unwrap_or_default();
        let path = self.procs_path(name);
        if let Err(e) = ghost_core::fs::write_volatile(&path, &bytes, ghost_core::fs::FILE_MODE) {
            warn!(event = "PROCS_RECORD_FAILED", target = %self.target, queue_name = name, error = %e, "cannot note a check's process group; it is killed with its command but not by recovery");
        }
    }

    /// Kill what a dead executor's command for `name` left running, before
    /// recovery touches the tree.
    fn kill_recorded_group(&self, name: &str) {
        let path = self.procs_path(name);
        let Ok(Some(bytes)) = ghost_core::fs::read_opt(&path) else {
            return;
        };
        match serde_json::from_slice::<ProcGroup>(&bytes) {
            Ok(g) => {
                let n = g.kill();
                if n > 0 {
                    warn!(event = "PROCESS_GROUP_KILLED", target = %self.target, queue_name = name, pgid = g.pgid, processes = n, "killed what a dead executor's check left running");
                }
            }
            Err(e) => {
                warn!(event = "PROCS_RECORD_UNREADABLE", target = %self.target, queue_name = name, error = %e, "cannot read the recorded process group")
            }
        }
    }

    /// The environment and limits of git commands run by recovery.
    fn recovery_env(&self, patch_id: &str) -> std::collections::BTreeMap<String, String> {
        command::environment(&self.target_cfg.env, patch_id, &self.target)
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.cfg.executor.backoff_base,
            max: self.cfg.executor.backoff_max,
        }
    }
}

/// One attempt in progress: what the summary will say.
struct Attempt {
    name: String,
    record: EntryRecord,
    attempt: u32,
    started_at: String,
    started: Instant,
    patch: Option<Patch>,
    max_attempts: u32,
    ops: Vec<OpSummary>,
    checks: Vec<CheckSummary>,
    rollback: Option<RollbackSummary>,
    git: Option<GitSummary>,
    error: Option<ErrorSummary>,
    keep_journal: bool,
}

impl Attempt {
    fn id(&self) -> String {
        self.patch
            .as_ref()
            .map(|p| p.id.clone())
            .or_else(|| self.record.patch_id.clone())
            .unwrap_or_else(|| self.name.clone())
    }

    fn fail(&mut self, kind: &str, message: impl Into<String>) {
        self.error = Some(ErrorSummary {
            kind: kind.to_string(),
            message: message.into(),
        });
    }
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Applied => "applied",
        Outcome::Permanent => "failed",
        Outcome::Transient => "transient_failure",
        Outcome::StuckTimeout => "stuck_timeout",
        Outcome::Interrupted => "interrupted",
        Outcome::Crashed => "crashed",
        Outcome::RollbackUnverified => "rollback_unverified",
    }
}

fn hint_for(to: QueueState, spent: bool, kind: &str) -> &'static str {
    match (to, kind) {
        (QueueState::Failed, "edited") => "the entry was changed after it was queued and is not applied as edited: submit the change as a new patch (with a new id), then `ghostctl delete --reason …` this one",
        (QueueState::Failed, _) => "the patch cannot apply as it is: fix the patch or the tree, then `ghostctl retry`, or `ghostctl delete --reason …`",
        (_, "stuck_timeout") => "the patch ran longer than executor.stuck_after; fix what hangs (see its checks), then `ghostctl retry`",
        (_, "rollback_unverified") => "the working tree may differ from its state before the patch: compare it with the journal kept in summaries/<target>/.journals/<name>.json, then `ghostctl retry` or `ghostctl delete`",
        (_, "crashed") => "executors died while applying this patch on every attempt; look at the logs, then `ghostctl retry`",
        _ if spent => "attempts are spent; fix the cause, then `ghostctl retry`, or `ghostctl delete --reason …`",
        _ => "look at the summary and the logs, then `ghostctl retry` or `ghostctl delete --reason …`",
    }
}

/// Map a command failure to an outcome and an error kind.
fn classify(f: &CmdFailure) -> (Outcome, &'static str) {
    match f {
        CmdFailure::Spawn(_) | CmdFailure::Exit => (Outcome::Permanent, "check_failed"),
        CmdFailure::Timeout => (Outcome::Transient, "check_timeout"),
        CmdFailure::Deadline => (Outcome::StuckTimeout, "stuck_timeout"),
        CmdFailure::Cancelled => (Outcome::Interrupted, "interrupted"),
    }
}

/// Claim and process the pending entry `name`. `None` when it was not claimed:
/// someone else moved it first (an operator's hold, say), or another process
/// (an executor of another root sharing this tree) holds the tree's lock.
pub fn process_one(
    ctx: &TargetCtx,
    name: &str,
    hard_stop: &CancellationToken,
) -> Result<Option<Outcome>> {
    let q = &ctx.queue;
    // One patch at a time per working tree, across processes too.
    let Some(_tree_lock) = ghost_core::fs::DirLock::try_acquire(&ctx.tree_path)? else {
        warn!(event = "TREE_BUSY", target = %ctx.target, tree = %ctx.tree_path.display(), "another process holds the working tree's lock; waiting");
        return Ok(None);
    };
    let mut record = match q.read_record(QueueState::Pending, name) {
        Ok(r) => r,
        Err(e) => {
            warn!(event = "RECORD_UNREADABLE", queue_name = name, error = %e, "starting a fresh record");
            EntryRecord::default()
        }
    };
    record.attempts += 1;
    record.due_at = None;
    let started_at = now_rfc3339();
    record.claim = Some(Claim {
        pid: std::process::id(),
        host: ghost_core::hostname(),
        started_at: started_at.clone(),
        attempt: record.attempts,
        version: ghost_core::VERSION.to_string(),
    });
    if let Err(e) = q.claim(name, &record) {
        // Moved meanwhile (an operator's hold): not ours any more.
        if !q.entry_path(QueueState::Pending, name).exists()
            && !q.entry_path(QueueState::Active, name).exists()
        {
            return Ok(None);
        }
        return Err(e);
    }
    ctx.counters.claimed.fetch_add(1, Ordering::Relaxed);
    crash_point!("crash-after-claim");
    let mut att = Attempt {
        name: name.to_string(),
        attempt: record.attempts,
        record,
        started_at,
        started: Instant::now(),
        patch: None,
        max_attempts: ctx.cfg.executor.max_attempts,
        ops: Vec::new(),
        checks: Vec::new(),
        rollback: None,
        git: None,
        error: None,
        keep_journal: false,
    };
    info!(event = "PATCH_CLAIMED", target = %ctx.target, queue_name = name, attempt = att.attempt, "claimed");
    let outcome = run_attempt(ctx, &mut att, hard_stop);
    finish(ctx, att, outcome).map(Some)
}

/// The transaction itself; returns how it ended, with `att` filled in.
fn run_attempt(ctx: &TargetCtx, att: &mut Attempt, hard_stop: &CancellationToken) -> Outcome {
    let q = &ctx.queue;
    let entry = q.entry_path(QueueState::Active, &att.name);
    let bytes = match ghost_core::fs::read(&entry) {
        Ok(b) => b,
        Err(e) => {
            att.fail("io", e.to_string());
            return Outcome::Transient;
        }
    };
    let max = ctx.cfg.bridge.max_patch_bytes;
    if bytes.len() as u64 > max {
        att.fail(
            "invalid",
            format!(
                "(document): the patch is {} bytes; the limit is {max} (bridge.max_patch_bytes)",
                bytes.len()
            ),
        );
        return Outcome::Permanent;
    }
    // Admission recorded the content's MD5: an entry edited by hand since is
    // not what was accepted (and its id may now name other content).
    if let Some(expected) = att.record.content_md5.as_deref() {
        if ghost_core::entry::stored_md5(&bytes).as_deref() != Some(expected) {
            att.fail(
                "edited",
                "the entry's content changed after it was queued (its MD5 no longer matches the one \
                 recorded at admission); it is not applied as edited: submit the change as a new patch",
            );
            return Outcome::Permanent;
        }
    }
    let opts = ParseOptions {
        targets: &ctx.specs,
        target_override: Some(&ctx.target),
    };
    let patch = match parse_patch(&bytes, &opts) {
        Ok(p) => p,
        Err(e) => {
            att.fail("invalid", e.to_string());
            return Outcome::Permanent;
        }
    };
    att.max_attempts = patch.max_attempts.unwrap_or(ctx.cfg.executor.max_attempts);
    att.record.patch_id = Some(patch.id.clone());
    if let Err(e) = validate_limits(&patch, &ctx.cfg.limits) {
        att.patch = Some(patch);
        att.fail("limit", e.to_string());
        return Outcome::Permanent;
    }
    let deadline = att.started + ctx.cfg.executor.stuck_after;
    let env = command::environment(&ctx.target_cfg.env, &patch.id, &ctx.target);
    att.patch = Some(patch);
    let patch = att.patch.as_ref().expect("just set").clone();

    let tree = match Tree::open(&ctx.tree_path) {
        Ok(t) => t,
        Err(e) => {
            att.fail("io", e.to_string());
            return Outcome::Transient;
        }
    };
    let cancelled = || hard_stop.is_cancelled();
    let att_name = att.name.clone();
    // Read per patch: the bridge may have generated its secrets since.
    let scrub = Scrubber::gather(&ctx.cfg, &ctx.layout);
    let record = |g: &ProcGroup| ctx.record_group(&att_name, g);
    let limits = Limits {
        timeout: ctx.cfg.executor.command_timeout,
        deadline,
        cancelled: &cancelled,
        tail_bytes: ctx.cfg.executor.output_tail_bytes as usize,
        run_as: ctx.run_as.as_ref(),
        scrub: &scrub,
        record_group: Some(&record),
    };

    // Checks before: the tree is untouched, nothing to undo.
    if let Some(outcome) = run_checks(att, "before", &patch.checks.before, &tree, &env, &limits) {
        return outcome;
    }

    // Staging is CPU work inside the patch's deadline, bounded by [limits].
    let opts = StageOptions {
        default_file_mode: ctx.cfg.default_file_mode(),
        allow_special_modes: ctx.target_cfg.allow_special_modes,
        target: ctx.target.clone(),
        limits: ctx.cfg.limits.clone(),
        deadline: Some(deadline),
    };
    let staged = match stage_with(&patch.operations, &tree, &opts) {
        Ok(s) => s,
        Err(e) => {
            let (outcome, kind) = match e.kind {
                StageErrorKind::Io => (Outcome::Transient, "io"),
                StageErrorKind::Precondition => (Outcome::Permanent, "precondition"),
                StageErrorKind::DiffDoesNotApply => (Outcome::Permanent, "diff_does_not_apply"),
                StageErrorKind::Conflict => (Outcome::Permanent, "conflict"),
                StageErrorKind::Limit => (Outcome::Permanent, "limit"),
                StageErrorKind::Refused => (Outcome::Permanent, "refused"),
                StageErrorKind::Deadline => (Outcome::StuckTimeout, "stuck_timeout"),
            };
            att.fail(kind, e.to_string());
            return outcome;
        }
    };
    att.ops = op_summaries(&staged.results);

    let mut journal = Journal::from_staged(&att.name, &patch.id, &ctx.target, &staged);
    let jpath = ctx.journal_path(&att.name);
    if let Err(e) = journal.write(&jpath) {
        att.fail("io", format!("cannot write the undo journal: {e}"));
        return Outcome::Transient;
    }
    crash_point!("crash-after-journal", |e| {
        att.fail("io", format!("after writing the undo journal: {e}"));
        return undo(ctx, att, &tree, &journal, Outcome::Transient);
    });

    // From here on the tree changes; every failure path rolls back.
    let applied = (|| -> Result<()> {
        for d in &staged.new_dirs {
            tree.create_dir(d)?;
        }
        for (path, fin) in &staged.changes {
            crash_point!("crash-mid-apply");
            fail::fail_point!("io-error-mid-apply", |_| Err(ghost_core::Error::Invalid(
                "injected I/O error (failpoint io-error-mid-apply)".into()
            )));
            match fin {
                Some(data) => tree.write_file(path, &data.bytes, data.mode)?,
                None => tree.remove_file(path)?,
            }
        }
        // Read everything back: what is on disk must be what was staged.
        if !journal::is_applied(&tree, &journal)? {
            return Err(ghost_core::Error::Invalid(
                "the tree read back differs from what was written".into(),
            ));
        }
        Ok(())
    })();
    if let Err(e) = applied {
        att.fail("io", format!("applying failed: {e}"));
        return undo(ctx, att, &tree, &journal, Outcome::Transient);
    }
    crash_point!("crash-after-apply", |e| {
        att.fail("io", format!("after applying: {e}"));
        return undo(ctx, att, &tree, &journal, Outcome::Transient);
    });

    if let Some(outcome) = run_checks(att, "after", &patch.checks.after, &tree, &env, &limits) {
        return undo(ctx, att, &tree, &journal, outcome);
    }

    if ctx.target_cfg.git_commit || patch.git.is_some() {
        // Where the branch is goes into the journal before anything is
        // committed: recovery keeps or takes back the commit with the files.
        match crate::git::head(&tree, &patch, &staged, &env, &limits) {
            Ok((before, checks)) => {
                att.checks.extend(checks);
                journal.git = Some(before);
                if let Err(e) = journal.write(&jpath) {
                    att.fail(
                        "io",
                        format!("cannot record the git head in the journal: {e}"),
                    );
                    return undo(ctx, att, &tree, &journal, Outcome::Transient);
                }
            }
            Err((checks, msg)) => {
                att.checks.extend(checks);
                att.fail("git_failed", msg);
                return undo(ctx, att, &tree, &journal, Outcome::Permanent);
            }
        }
        crash_point!("crash-after-git-journal", |e| {
            att.fail("io", format!("after recording the git head: {e}"));
            return undo(ctx, att, &tree, &journal, Outcome::Transient);
        });
        match crate::git::commit(&tree, &patch, &staged, &env, &limits) {
            Ok((g, checks)) => {
                att.checks.extend(checks);
                att.git = Some(g);
            }
            Err((checks, msg)) => {
                att.checks.extend(checks);
                att.fail("git_failed", msg);
                // A commit made before the failure goes with the files.
                if !take_back_git(att, &tree, &journal, &env, &limits) {
                    return Outcome::RollbackUnverified;
                }
                return undo(ctx, att, &tree, &journal, Outcome::Permanent);
            }
        }
    }

    let complete = ghost_core::fault_point("crash-before-complete", None).and_then(|()| {
        journal.phase = Phase::Complete;
        journal.write(&jpath)
    });
    if let Err(e) = complete {
        journal.phase = Phase::Prepared;
        att.fail("io", format!("cannot mark the journal complete: {e}"));
        // Never a commit without its files: the commit and tag go first.
        if !take_back_git(att, &tree, &journal, &env, &limits) {
            return Outcome::RollbackUnverified;
        }
        return undo(ctx, att, &tree, &journal, Outcome::Transient);
    }
    // Past `complete` the patch is applied whatever fails next (recovery
    // would finish it): an error here is reported and changes nothing.
    if let Err(e) = ghost_core::fault_point("crash-after-complete", None) {
        warn!(event = "EXECUTOR_ERROR", target = %ctx.target, queue_name = %att.name, error = %e, "after the journal was marked complete; the patch stays applied");
    }
    Outcome::Applied
}

/// A failed attempt that recorded a git head: put the branch back where the
/// journal says it was (the patch's commit and tag removed, the index reset
/// for its paths) before its files roll back. False, with the attempt marked
/// `rollback_unverified` and its journal kept, when git cannot be put back.
fn take_back_git(
    att: &mut Attempt,
    tree: &Tree,
    journal: &Journal,
    env: &std::collections::BTreeMap<String, String>,
    limits: &Limits<'_>,
) -> bool {
    let Some(before) = &journal.git else {
        return true;
    };
    match crate::git::recover(tree, before, false, env, limits) {
        Ok((_, log)) => {
            att.checks.extend(log);
            att.git = None;
            true
        }
        Err((log, msg)) => {
            att.checks.extend(log);
            let prev = att
                .error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default();
            att.fail(
                "rollback_unverified",
                format!("{prev}; then git could not be put back: {msg}"),
            );
            att.keep_journal = true;
            false
        }
    }
}

/// Run a phase's checks in order; the outcome of the first that fails, with
/// the failure recorded in `att`.
fn run_checks(
    att: &mut Attempt,
    phase: &str,
    checks: &[ghost_core::patch::Command],
    tree: &Tree,
    env: &std::collections::BTreeMap<String, String>,
    limits: &Limits<'_>,
) -> Option<Outcome> {
    for c in checks {
        let (summary, failure) = command::run(c, phase, tree.root(), env, limits);
        att.checks.push(summary);
        if let Some(f) = failure {
            let (outcome, kind) = classify(&f);
            let why = describe(att.checks.last());
            att.fail(
                kind,
                format!("check {phase} `{}` failed: {why}", c.display()),
            );
            return Some(outcome);
        }
    }
    None
}

fn describe(c: Option<&CheckSummary>) -> String {
    let Some(c) = c else { return String::new() };
    let how = if c.timed_out {
        "timed out".to_string()
    } else if let Some(code) = c.exit_code {
        format!("exit code {code}")
    } else if let Some(sig) = c.signal {
        format!("killed by signal {sig}")
    } else {
        "could not be started".to_string()
    };
    let tail = c.stderr_tail.lines().last().unwrap_or_default();
    if tail.is_empty() {
        how
    } else {
        format!("{how} ({tail})")
    }
}

/// Roll the tree back from the journal; an unverified rollback overrides `outcome`.
fn undo(
    ctx: &TargetCtx,
    att: &mut Attempt,
    tree: &Tree,
    journal: &Journal,
    outcome: Outcome,
) -> Outcome {
    match journal::rollback(tree, journal) {
        Ok(r) => {
            let verified = r.verified;
            att.rollback = Some(r);
            if verified {
                info!(event = "PATCH_ROLLED_BACK", target = %ctx.target, queue_name = %att.name, patch_id = %att.id(), "rolled back, every file verified by MD5");
                ctx.counters.rolled_back.fetch_add(1, Ordering::Relaxed);
                outcome
            } else {
                error!(event = "ROLLBACK_UNVERIFIED", target = %ctx.target, queue_name = %att.name, patch_id = %att.id(), "rolled back but some files do not match their pre-patch MD5");
                att.keep_journal = true;
                Outcome::RollbackUnverified
            }
        }
        Err(e) => {
            error!(event = "ROLLBACK_FAILED", target = %ctx.target, queue_name = %att.name, patch_id = %att.id(), error = %e, "rollback failed");
            let prev = att
                .error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default();
            att.fail(
                "rollback_unverified",
                format!("{prev}; then the rollback failed: {e}"),
            );
            att.keep_journal = true;
            Outcome::RollbackUnverified
        }
    }
}

/// Decide where the entry goes, write its summary when it ends, and move it.
fn finish(ctx: &TargetCtx, mut att: Attempt, outcome: Outcome) -> Result<Outcome> {
    let q = &ctx.queue;
    let decision = decide(outcome, att.attempt, att.max_attempts, ctx.backoff());
    let ended_at = now_rfc3339();
    att.record.history.push(AttemptRecord {
        attempt: att.attempt,
        started_at: att.started_at.clone(),
        ended_at: ended_at.clone(),
        outcome: outcome_label(outcome).to_string(),
        error_kind: att.error.as_ref().map(|e| e.kind.clone()),
        message: att.error.as_ref().map(|e| e.message.clone()),
    });
    if !counts_as_attempt(outcome) {
        att.record.attempts = att.record.attempts.saturating_sub(1);
    }
    att.record.claim = None;
    let id = att.id();
    let to = match decision {
        Decision::MoveTo(s) => s,
        Decision::Defer(_) => QueueState::Deferred,
    };
    if let Decision::Defer(d) = decision {
        att.record.due_at = Some(rfc3339(SystemTime::now() + d));
    }
    if matches!(to, QueueState::Failed | QueueState::Stuck) {
        let kind = att
            .error
            .as_ref()
            .map(|e| e.kind.clone())
            .unwrap_or_else(|| "unknown".into());
        let mut message = att
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        let spent = to == QueueState::Stuck && outcome == Outcome::Transient;
        if spent {
            message = format!("{} attempts failed; the last: {message}", att.attempt);
        }
        att.record.reason = Some(Reason {
            hint: Some(hint_for(to, spent, &kind).to_string()),
            kind,
            message,
            at: ended_at.clone(),
        });
    }
    let status = match to {
        QueueState::Done => Some(SummaryStatus::Applied),
        QueueState::Failed if att.rollback.is_some() => Some(SummaryStatus::RolledBack),
        QueueState::Failed => Some(SummaryStatus::Failed),
        QueueState::Stuck => Some(SummaryStatus::Stuck),
        _ => None,
    };
    if let Some(status) = status {
        let s = Summary {
            id: id.clone(),
            name: att.name.clone(),
            target: ctx.target.clone(),
            status,
            attempts: att.record.attempts,
            description: att.patch.as_ref().and_then(|p| p.description.clone()),
            source_format: att
                .patch
                .as_ref()
                .map(|p| format!("{:?}", p.source_format).to_lowercase()),
            started_at: att.started_at.clone(),
            finished_at: ended_at,
            duration_ms: att.started.elapsed().as_millis() as u64,
            operations: std::mem::take(&mut att.ops),
            checks: std::mem::take(&mut att.checks),
            error: att.error.clone(),
            rollback: att.rollback.clone(),
            git: att.git.clone(),
            executor: ExecutorInfo {
                pid: std::process::id(),
                host: ghost_core::hostname(),
                version: ghost_core::VERSION.to_string(),
            },
            history: att.record.history.clone(),
        };
        let w = summary::write(&ctx.layout.summaries(&ctx.target), &s)?;
        crash_point!("crash-after-summary");
        info!(event = "SUMMARY_CREATED", target = %ctx.target, queue_name = %att.name, patch_id = %id, status = status.as_str(), json_md5 = %w.json_md5, md_md5 = %w.md_md5, "summary written and verified");
    }
    if att.keep_journal {
        // The journal is the only record of the tree before the patch. It goes
        // beside the summaries, where no queue move or retry can drop it.
        let j = ctx.journal_path(&att.name);
        if let Ok(Some(bytes)) = ghost_core::fs::read_opt(&j) {
            let dir = ctx.layout.kept_journals(&ctx.target);
            ghost_core::fs::ensure_dir(&dir)?;
            ghost_core::fs::durable_write(
                &dir.join(format!("{}.json", att.name)),
                &bytes,
                ghost_core::fs::FILE_MODE,
            )?;
        }
    }
    if to == QueueState::Stuck {
        // Before the move: a crash in between repeats the alert (same
        // fingerprint, deduplicated), it can never lose it.
        let err = att
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.kind, e.message))
            .unwrap_or_default();
        crate::raise_alert(&ctx.layout, &ctx.target, &att.name, &id, &err);
    }
    q.transition(&att.name, QueueState::Active, to, &att.record)?;
    let err = att
        .error
        .as_ref()
        .map(|e| format!("{}: {}", e.kind, e.message))
        .unwrap_or_default();
    match (to, decision) {
        (QueueState::Done, _) => {
            ctx.counters.applied.fetch_add(1, Ordering::Relaxed);
            info!(event = "PATCH_APPLIED", target = %ctx.target, queue_name = %att.name, patch_id = %id, attempt = att.attempt, "applied");
        }
        (QueueState::Failed, _) => {
            ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
            warn!(event = "PATCH_FAILED", target = %ctx.target, queue_name = %att.name, patch_id = %id, attempt = att.attempt, error = %err, "failed");
        }
        (QueueState::Stuck, _) => {
            ctx.counters.stuck.fetch_add(1, Ordering::Relaxed);
            error!(event = "PATCH_STUCK", target = %ctx.target, queue_name = %att.name, patch_id = %id, attempt = att.attempt, error = %err, "parked in .stuck/: needs a person");
        }
        (QueueState::Deferred, Decision::Defer(d)) => {
            ctx.counters.deferred.fetch_add(1, Ordering::Relaxed);
            warn!(event = "PATCH_DEFERRED", target = %ctx.target, queue_name = %att.name, patch_id = %id, attempt = att.attempt, retry_in_ms = d.as_millis() as u64, error = %err, "deferred");
        }
        _ => {
            ctx.counters.requeued.fetch_add(1, Ordering::Relaxed);
            info!(event = "PATCH_REQUEUED", target = %ctx.target, queue_name = %att.name, patch_id = %id, outcome = outcome_label(outcome), "back to pending");
        }
    }
    Ok(outcome)
}

/// Start-up recovery for one target: clear orphans and stale temp files, and
/// resolve every entry left in `active/` by a dead executor. The entries are
/// resolved under the working tree's lock, as applies are: `None` when another
/// process (an executor of another root sharing the tree) holds it; nothing
/// in `active/` was touched then, and nothing may be claimed until a later
/// call succeeds.
pub fn recover(ctx: &TargetCtx) -> Result<Option<usize>> {
    let q = &ctx.queue;
    let max_age = ctx.cfg.executor.tmp_max_age;
    // The open states only: the history (done/, trash/, the summaries) is
    // the monitor's maintenance to sweep, so a start costs the same with
    // 100,000 finished entries as with none.
    let mut stale = q.sweep_in(&QueueState::OPEN, Duration::from_secs(60), max_age)?;
    stale.extend(ghost_core::fs::sweep_temp_files(
        &ctx.layout.kept_journals(&ctx.target),
        max_age,
    ));
    for p in stale {
        info!(event = "STALE_FILE_REMOVED", target = %ctx.target, path = %p.display(), "removed a stale temp or orphan file");
    }
    if q.list(QueueState::Active)?.is_empty() && !crate::batch::pending(ctx) {
        return Ok(Some(0));
    }
    let Some(_tree_lock) = ghost_core::fs::DirLock::try_acquire(&ctx.tree_path)? else {
        warn!(event = "TREE_BUSY", target = %ctx.target, tree = %ctx.tree_path.display(), "another process holds the working tree's lock; recovery waits for it");
        return Ok(None);
    };
    recover_held(ctx).map(Some)
}

/// Resolve the entries in `active/`; the caller holds the tree's lock.
pub(crate) fn recover_held(ctx: &TargetCtx) -> Result<usize> {
    let q = &ctx.queue;
    // An unfinished batch first: it leaves its members as single ones.
    crate::batch::recover(ctx)?;
    let names = q.list(QueueState::Active)?;
    for name in &names {
        recover_one(ctx, name)?;
        ctx.counters.recovered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(names.len())
}

fn recover_one(ctx: &TargetCtx, name: &str) -> Result<()> {
    let q = &ctx.queue;
    let record = q.read_claimed_record(name).unwrap_or_default();
    let claim = record.claim.clone();
    let bytes = ghost_core::fs::read(&q.entry_path(QueueState::Active, name))?;
    let patch = parse_patch(
        &bytes,
        &ParseOptions {
            targets: &ctx.specs,
            target_override: Some(&ctx.target),
        },
    )
    .ok();
    let mut att = Attempt {
        name: name.to_string(),
        attempt: record.attempts.max(1),
        started_at: claim
            .as_ref()
            .map(|c| c.started_at.clone())
            .unwrap_or_else(now_rfc3339),
        record,
        started: Instant::now(),
        max_attempts: patch
            .as_ref()
            .and_then(|p| p.max_attempts)
            .unwrap_or(ctx.cfg.executor.max_attempts),
        patch,
        ops: Vec::new(),
        checks: Vec::new(),
        rollback: None,
        git: None,
        error: None,
        keep_journal: false,
    };
    let who = claim
        .map(|c| {
            format!(
                "pid {} on {} (attempt {}, started {})",
                c.pid, c.host, c.attempt, c.started_at
            )
        })
        .unwrap_or_else(|| "an executor that left no claim record".into());
    // Nothing the dead executor's check started may write into the tree
    // while (or after) it is rolled back.
    ctx.kill_recorded_group(name);
    let journal = match Journal::read(&ctx.journal_path(name)) {
        Ok(j) => j,
        Err(e) => {
            att.fail(
                "rollback_unverified",
                format!("found in active/ after {who} stopped, but its journal is unreadable: {e}"),
            );
            att.keep_journal = true;
            warn!(event = "PATCH_RECOVERED", target = %ctx.target, queue_name = name, "journal unreadable: parking");
            finish(ctx, att, Outcome::RollbackUnverified)?;
            return Ok(());
        }
    };
    let tree = Tree::open(&ctx.tree_path)?;
    if matches!(&journal, Some(j) if j.phase == Phase::Prepared) {
        crash_point!("crash-during-recovery");
    }
    let outcome = match &journal {
        Some(j) if j.phase == Phase::Complete => {
            att.ops = recovered_ops(j, "applied before a crash; finished at recovery");
            Outcome::Applied
        }
        Some(j) => match recover_git(ctx, &mut att, &tree, j)? {
            Some(g) => {
                att.git = Some(g);
                att.ops = recovered_ops(
                    j,
                    "applied and committed before a crash; finished at recovery",
                );
                Outcome::Applied
            }
            None if att.error.is_some() => {
                // git could not be put back: the files stay as they are.
                att.keep_journal = true;
                Outcome::RollbackUnverified
            }
            None => {
                att.fail(
                    "crashed",
                    format!(
                        "interrupted while applying, by the end of {who}; rolled back from the journal"
                    ),
                );
                undo(ctx, &mut att, &tree, j, Outcome::Crashed)
            }
        },
        None => {
            att.fail(
                "crashed",
                format!("interrupted before the tree changed, by the end of {who}"),
            );
            Outcome::Crashed
        }
    };
    // `journal` says where the dead executor was: `none` (claimed, the tree
    // untouched), `prepared` (mid-apply: rolled back or kept with its
    // commit), `complete` (applied, finished here).
    let phase = match &journal {
        None => "none",
        Some(j) if j.phase == Phase::Complete => "complete",
        Some(_) => "prepared",
    };
    info!(event = "PATCH_RECOVERED", target = %ctx.target, queue_name = name, outcome = outcome_label(outcome), journal = phase, "resolved an entry a dead executor left in active/");
    finish(ctx, att, outcome)?;
    Ok(())
}

fn recovered_ops(j: &Journal, detail: &str) -> Vec<OpSummary> {
    j.files
        .iter()
        .enumerate()
        .map(|(i, f)| OpSummary {
            index: i,
            op: "recovered".into(),
            files: vec![FileSummary {
                path: f.path.to_string(),
                md5_before: f.before.as_ref().map(|b| b.md5.clone()),
                md5_after: f.after.as_ref().map(|a| a.md5.clone()),
            }],
            detail: detail.into(),
        })
        .collect()
}

/// For a prepared journal that recorded a git head: keep the commit (`Some`,
/// the patch is applied) or take it back (`None`, the files roll back). When
/// git cannot be put back, `None` with the error in `att`.
fn recover_git(
    ctx: &TargetCtx,
    att: &mut Attempt,
    tree: &Tree,
    j: &Journal,
) -> Result<Option<GitSummary>> {
    let Some(before) = &j.git else {
        return Ok(None);
    };
    let applied = journal::is_applied(tree, j)?;
    let env = ctx.recovery_env(&j.patch_id);
    let scrub = Scrubber::gather(&ctx.cfg, &ctx.layout);
    let record = |g: &ProcGroup| ctx.record_group(&j.name, g);
    let limits = Limits {
        timeout: ctx.cfg.executor.command_timeout,
        deadline: Instant::now() + ctx.cfg.executor.stuck_after,
        cancelled: &|| false,
        tail_bytes: ctx.cfg.executor.output_tail_bytes as usize,
        run_as: ctx.run_as.as_ref(),
        scrub: &scrub,
        record_group: Some(&record),
    };
    match crate::git::recover(tree, before, applied, &env, &limits) {
        Ok((crate::git::GitRecovery::Forward(g), log)) => {
            att.checks.extend(log);
            info!(event = "GIT_RECOVERED", target = %ctx.target, queue_name = %j.name, commit = ?g.commit, tag = ?g.tag, "the commit a crash interrupted matches the tree: kept");
            Ok(Some(g))
        }
        Ok((crate::git::GitRecovery::Undone, log)) => {
            att.checks.extend(log);
            Ok(None)
        }
        Err((log, msg)) => {
            att.checks.extend(log);
            error!(event = "GIT_RECOVERY_FAILED", target = %ctx.target, queue_name = %j.name, error = %msg, "cannot put git back after a crash");
            att.fail(
                "rollback_unverified",
                format!("interrupted during the git commit; {msg}"),
            );
            Ok(None)
        }
    }
}

/// Paths a patch changed, for git.
pub fn changed_paths(staged: &ghost_core::patch::stage::Staged) -> Vec<RelPath> {
    staged.changes.keys().cloned().collect()
}

/// The summary's view of staged operations (one patch, or one batch member).
pub(crate) fn op_summaries(results: &[ghost_core::patch::stage::OpResult]) -> Vec<OpSummary> {
    results
        .iter()
        .map(|r| OpSummary {
            index: r.index,
            op: r.op.to_string(),
            files: r
                .files
                .iter()
                .map(|f| FileSummary {
                    path: f.path.clone(),
                    md5_before: f.md5_before.clone(),
                    md5_after: f.md5_after.clone(),
                })
                .collect(),
            detail: r.detail.clone(),
        })
        .collect()
}
