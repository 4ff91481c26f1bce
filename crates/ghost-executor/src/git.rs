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

use std::collections::BTreeMap;

use ghost_core::fs::tree::Tree;
use ghost_core::patch::stage::Staged;
use ghost_core::patch::{Command, CommandKind, Patch};
use ghost_core::summary::{CheckSummary, GitSummary};

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
