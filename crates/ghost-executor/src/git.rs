//! Optional git commit and tag of an applied patch, in the tree's repository,
//! through the same command runner as checks (no shell, own process group, the
//! target's `run_as` user, scrubbed output).
//!
//! git runs no code of the repository's or the machine's choosing: hooks are
//! off (`core.hooksPath=/dev/null`, and `--no-verify`), so is the file-system
//! monitor (`core.fsmonitor=false`), and no system or global configuration is
//! read (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`). Patches cannot
//! write under `.git` (see `ghost_core::patch::policy`), so the repository's
//! own configuration is the operator's. The identity is the repository's if it
//! has one, else `ghostbridge <ghostbridge@localhost>`, so commits work on a
//! machine with no git configuration at all.
//!
//! The commit is part of the patch's transaction. Before it, [`head`] records
//! where the branch points (and the tag asked for, which must not exist yet)
//! in the journal. After a crash, [`recover`] finds either no commit (the index
//! is put back and the files roll back), or the patch's commit on top of the
//! recorded head: kept (and the tag made if missing) when the tree matches it,
//! otherwise the branch is reset and the tag removed before the files roll
//! back. Never a commit without its files, nor files without their commit.

use std::collections::BTreeMap;

use ghost_core::fs::tree::Tree;
use ghost_core::patch::stage::Staged;
use ghost_core::patch::{Command, CommandKind, Patch};
use ghost_core::summary::{CheckSummary, GitSummary};
use serde::{Deserialize, Serialize};

use crate::command::{self, Limits};

struct Git<'a> {
    tree: &'a Tree,
    env: &'a BTreeMap<String, String>,
    limits: &'a Limits<'a>,
    identity: Vec<String>,
    log: Vec<CheckSummary>,
}

/// Options before every git subcommand.
const HARDENING: [&str; 4] = [
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
];

/// The environment of every git command: the checks' plus no system or global
/// configuration.
fn git_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = env.clone();
    env.insert("GIT_CONFIG_NOSYSTEM".into(), "1".into());
    env.insert("GIT_CONFIG_GLOBAL".into(), "/dev/null".into());
    env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
    env
}

impl Git<'_> {
    fn run(&mut self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["git".to_string()];
        argv.extend(HARDENING.iter().map(|s| s.to_string()));
        argv.extend(self.identity.iter().cloned());
        argv.extend(args.iter().map(|s| s.to_string()));
        let cmd = Command {
            kind: CommandKind::Argv(argv),
            timeout: None,
        };
        let (s, f) = command::run(
            &cmd,
            "git",
            self.tree.root(),
            &git_env(self.env),
            self.limits,
        );
        let out = s.stdout_tail.trim().to_string();
        let err = s.stderr_tail.trim().to_string();
        self.log.push(s);
        match f {
            None => Ok(out),
            Some(f) => Err(format!("`git {}` failed ({f:?}): {err}", args.join(" "))),
        }
    }
}

/// Where the branch was before the patch's commit (kept in the journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitBefore {
    /// The ref HEAD points at (`refs/heads/main`), or `HEAD` when detached.
    pub head_ref: String,
    /// Its commit; `None` on a branch with no commit yet.
    pub head: Option<String>,
    /// The tag the patch asks for; it did not exist when this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The paths the commit covers.
    pub paths: Vec<String>,
}

/// What recovery made of an interrupted commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRecovery {
    /// The commit (and tag) are there and the tree matches: the patch is applied.
    Forward(GitSummary),
    /// No commit is left (none was made, or it was taken back): roll the files back.
    Undone,
}

type GitResult<T> = Result<(T, Vec<CheckSummary>), (Vec<CheckSummary>, String)>;

impl<'a> Git<'a> {
    fn new(tree: &'a Tree, env: &'a BTreeMap<String, String>, limits: &'a Limits<'a>) -> Git<'a> {
        Git {
            tree,
            env,
            limits,
            identity: Vec::new(),
            log: Vec::new(),
        }
    }

    fn finish<T>(self, r: Result<T, String>) -> GitResult<T> {
        match r {
            Ok(v) => Ok((v, self.log)),
            Err(e) => Err((self.log, e)),
        }
    }

    /// The commit `rev` names, if any.
    fn commit_of(&mut self, rev: &str) -> Option<String> {
        self.run(&["rev-parse", "-q", "--verify", &format!("{rev}^{{commit}}")])
            .ok()
            .filter(|s| !s.is_empty())
    }
}

/// Record where the branch is before the patch's commit. Refuses a tag that
/// already exists (before anything is committed).
pub fn head(
    tree: &Tree,
    patch: &Patch,
    staged: &Staged,
    env: &BTreeMap<String, String>,
    limits: &Limits<'_>,
) -> GitResult<GitBefore> {
    let mut g = Git::new(tree, env, limits);
    let r = (|| {
        g.run(&["rev-parse", "--is-inside-work-tree"])
            .map_err(|e| format!("the working tree is not a git repository: {e}"))?;
        let head_ref = g
            .run(&["symbolic-ref", "-q", "HEAD"])
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "HEAD".to_string());
        let head = g.commit_of("HEAD");
        let tag = patch.git.as_ref().and_then(|x| x.tag.clone());
        if let Some(t) = &tag {
            if g.commit_of(&format!("refs/tags/{t}")).is_some() {
                return Err(format!("tag {t:?} already exists"));
            }
        }
        Ok(GitBefore {
            head_ref,
            head,
            tag,
            paths: paths(staged),
        })
    })();
    g.finish(r)
}

/// After a crash between [`head`] and the journal's `complete`: keep the
/// patch's commit when the tree (`applied`: every file in its after state)
/// matches it, else take the commit and the tag back and restore the index,
/// so that the files can roll back. An error when the branch moved in a way
/// the patch cannot explain (someone else committed): git is left alone.
pub fn recover(
    tree: &Tree,
    before: &GitBefore,
    applied: bool,
    env: &BTreeMap<String, String>,
    limits: &Limits<'_>,
) -> GitResult<GitRecovery> {
    let mut g = Git::new(tree, env, limits);
    let r = (|| {
        let was = before.head.as_deref().unwrap_or("(no commit)");
        let cur = g.commit_of(&before.head_ref);
        let tag_at = |g: &mut Git<'_>| {
            before
                .tag
                .as_ref()
                .and_then(|t| g.commit_of(&format!("refs/tags/{t}")))
        };
        if cur != before.head {
            let Some(cur) = cur else {
                return Err(format!(
                    "{} was at {was} before the patch and is gone now; git is left alone",
                    before.head_ref
                ));
            };
            let parent = g.commit_of(&format!("{cur}^1"));
            if parent != before.head {
                return Err(format!(
                    "{} moved from {was} to {cur}, which is not one commit on top of it; git is left alone",
                    before.head_ref
                ));
            }
            let matches = applied && {
                let mut diff = vec!["diff", "--quiet", cur.as_str(), "--"];
                diff.extend(before.paths.iter().map(String::as_str));
                g.run(&diff).is_ok()
            };
            let tag_ok = match (&before.tag, tag_at(&mut g)) {
                (None, _) => true,
                (Some(_), Some(at)) => at == cur,
                (Some(t), None) => matches && g.run(&["tag", t, &cur]).is_ok(),
            };
            if matches && tag_ok {
                return Ok(GitRecovery::Forward(GitSummary {
                    commit: Some(cur),
                    tag: before.tag.clone(),
                }));
            }
            let msg = "ghostbridge: take back the commit of an interrupted patch";
            let mut reset = vec!["update-ref", "-m", msg];
            if before.head_ref == "HEAD" {
                reset.push("--no-deref");
            }
            match &before.head {
                Some(h) => reset.extend([before.head_ref.as_str(), h, &cur]),
                None => reset.extend(["-d", before.head_ref.as_str(), &cur]),
            }
            g.run(&reset)?;
            if let Some(t) = &before.tag {
                if tag_at(&mut g).as_deref() == Some(cur.as_str()) {
                    g.run(&["tag", "-d", t])?;
                }
            }
        } else if before.paths.is_empty() {
            // Nothing to commit: the tag alone was the patch's git effect.
            if before.tag.is_none() || (cur.is_some() && tag_at(&mut g) == cur) {
                return Ok(GitRecovery::Forward(GitSummary {
                    commit: None,
                    tag: before.tag.clone(),
                }));
            }
        }
        // The index may hold what `git add` staged: back to the branch's state.
        if !before.paths.is_empty() {
            let mut args = if before.head.is_some() {
                vec!["reset", "-q", "--"]
            } else {
                vec!["rm", "--cached", "-q", "-r", "--ignore-unmatch", "--"]
            };
            args.extend(before.paths.iter().map(String::as_str));
            g.run(&args)?;
        }
        Ok(GitRecovery::Undone)
    })();
    g.finish(r)
}

fn paths(staged: &Staged) -> Vec<String> {
    staged.changes.keys().map(|p| p.to_string()).collect()
}

/// Commit (and tag) what the patch changed. On error, what ran and why it failed.
pub fn commit(
    tree: &Tree,
    patch: &Patch,
    staged: &Staged,
    env: &BTreeMap<String, String>,
    limits: &Limits<'_>,
) -> Result<(GitSummary, Vec<CheckSummary>), (Vec<CheckSummary>, String)> {
    let mut g = Git {
        tree,
        env,
        limits,
        identity: Vec::new(),
        log: Vec::new(),
    };
    let result = (|| {
        g.run(&["rev-parse", "--is-inside-work-tree"])
            .map_err(|e| format!("the working tree is not a git repository: {e}"))?;
        if g.run(&["config", "user.email"]).is_err() {
            g.identity = vec![
                "-c".into(),
                "user.name=ghostbridge".into(),
                "-c".into(),
                "user.email=ghostbridge@localhost".into(),
            ];
        }
        let tag = patch.git.as_ref().and_then(|x| x.tag.clone());
        if let Some(t) = &tag {
            if g.run(&["rev-parse", "-q", "--verify", &format!("refs/tags/{t}")])
                .is_ok()
            {
                return Err(format!("tag {t:?} already exists"));
            }
        }
        let files = paths(staged);
        let mut commit = None;
        if !files.is_empty() {
            let message = patch
                .git
                .as_ref()
                .and_then(|x| x.commit.clone())
                .unwrap_or_else(|| match &patch.description {
                    Some(d) => format!("{}\n\n{d}", patch.id),
                    None => patch.id.clone(),
                });
            let mut add = vec!["add", "-A", "--"];
            add.extend(files.iter().map(String::as_str));
            g.run(&add)?;
            let mut c = vec!["commit", "-q", "--no-verify", "-m", &message, "--"];
            c.extend(files.iter().map(String::as_str));
            g.run(&c)?;
            commit = Some(g.run(&["rev-parse", "HEAD"])?);
            // A crash window of the transaction: committed, not yet complete.
            // Its error variant: the caller takes the commit back with the files.
            ghost_core::fault_point("crash-after-git-commit", None).map_err(|e| e.to_string())?;
        }
        if let Some(t) = &tag {
            if let Err(e) = g.run(&["tag", t]) {
                if commit.is_some() {
                    // Take the commit back out so that the rollback leaves no trace.
                    let _ = g.run(&["reset", "-q", "--soft", "HEAD~1"]);
                }
                return Err(e);
            }
        }
        Ok(GitSummary { commit, tag })
    })();
    match result {
        Ok(s) => Ok((s, g.log)),
        Err(e) => Err((g.log, e)),
    }
}

/// After a failed commit and a rollback: remove the patch's paths from the index.
pub fn unstage(tree: &Tree, staged: &Staged, env: &BTreeMap<String, String>, limits: &Limits<'_>) {
    let mut g = Git {
        tree,
        env,
        limits,
        identity: Vec::new(),
        log: Vec::new(),
    };
    let files = paths(staged);
    if files.is_empty() {
        return;
    }
    let mut args = vec!["reset", "-q", "--"];
    args.extend(files.iter().map(String::as_str));
    let _ = g.run(&args);
}
