//! Optional git commit and tag of an applied patch, in the tree's repository,
//! through the same command runner as checks (no shell, own process group).
//! Hooks are skipped (`--no-verify`): what runs on a patch is what its checks say.

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

impl Git<'_> {
    fn run(&mut self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["git".to_string()];
        argv.extend(self.identity.iter().cloned());
        argv.extend(args.iter().map(|s| s.to_string()));
        let cmd = Command {
            kind: CommandKind::Argv(argv),
            timeout: None,
        };
        let (s, f) = command::run(&cmd, "git", self.tree.root(), self.env, self.limits);
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
