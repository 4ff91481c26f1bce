//! The transaction's edges that a crash can reach besides the tree: the git
//! commit, the processes a check starts, and the working tree's lock during
//! recovery. Each test here failed before the fix it guards.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ghost_core::queue::QueueState;
use serde_json::json;

use crate::harness::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Log lines of `component` so far, skipping a line still being written.
fn events(env: &TestEnv, component: &str) -> Vec<String> {
    let p = env.layout().logs().join(format!("{component}.log"));
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["event"].as_str().map(str::to_string))
        .collect()
}

fn run_with_failpoint(env: &TestEnv, failpoints: &str) -> std::process::ExitStatus {
    Command::new(EXECUTOR)
        .arg("--root")
        .arg(&env.root)
        .arg("--drain")
        .arg("-q")
        .env("FAILPOINTS", failpoints)
        .stderr(Stdio::null())
        .status()
        .expect("run executor")
}

/// A git repository with one root commit as the default target's tree.
fn git_env() -> TestEnv {
    let env = TestEnv::new("[targets.default]\ngit_commit = true\nallow_shell = true\n");
    let tree = env.tree("default");
    std::fs::create_dir_all(&tree).unwrap();
    git(&tree, &["init", "-q"]);
    std::fs::write(tree.join("base.txt"), "base\n").unwrap();
    git(&tree, &["add", "base.txt"]);
    git(
        &tree,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "root",
        ],
    );
    env
}

#[test]
fn a_crash_around_the_git_commit_leaves_commit_and_files_together() {
    // (failpoint, damage the tree before recovery, attempts the patch ends with)
    let windows = [
        ("crash-after-git-journal=return", false, 2),
        ("crash-after-git-commit=return", false, 1),
        ("crash-after-git-commit=return", true, 2),
        ("crash-before-complete=return", false, 1),
    ];
    for (fp, damage, attempts) in windows {
        let env = git_env();
        let tree = env.tree("default");
        let p = env.enqueue_json(
            "default",
            &json!({"id": "P", "operations": [
                {"op": "write", "path": "a.txt", "content": "a\n"},
                {"op": "replace", "path": "base.txt", "find": "base", "replace": "BASE"}],
              "git": {"commit": "Add a.txt", "tag": "v1"}}),
        );
        let status = run_with_failpoint(&env, fp);
        assert!(
            !status.success(),
            "{fp}: the failpoint must abort the executor"
        );
        assert_eq!(
            env.list("default", QueueState::Active),
            vec![p.clone()],
            "{fp}"
        );
        if damage {
            // The tree no longer matches the commit: it cannot be kept.
            std::fs::write(tree.join("a.txt"), "someone else\n").unwrap();
        }
        env.drain();
        assert_eq!(env.state_of("default", &p), Some(QueueState::Done), "{fp}");
        let s = env.summary("default", &p);
        assert_eq!(s["status"], "applied", "{fp}: {s}");
        assert_eq!(s["attempts"], attempts, "{fp}: {s}");
        let log = git(&tree, &["log", "--format=%s"]);
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            ["Add a.txt", "root"],
            "{fp}: one commit for the patch"
        );
        let head = git(&tree, &["rev-parse", "HEAD"]);
        assert_eq!(s["git"]["commit"], head.as_str(), "{fp}");
        assert_eq!(git(&tree, &["tag"]), "v1", "{fp}");
        assert_eq!(git(&tree, &["rev-parse", "v1^{commit}"]), head, "{fp}");
        assert_eq!(git(&tree, &["status", "--porcelain"]), "", "{fp}");
        assert_eq!(std::fs::read_to_string(tree.join("a.txt")).unwrap(), "a\n");
        assert_eq!(
            std::fs::read_to_string(tree.join("base.txt")).unwrap(),
            "BASE\n"
        );
    }
}

#[test]
fn a_crash_after_the_commit_of_a_patch_whose_retry_fails_leaves_no_commit() {
    let env = git_env();
    let tree = env.tree("default");
    // The check passes once (the first attempt), then fails for good.
    let flag = env.dir.path().join("check-ran");
    let check = format!("if [ -e {0} ]; then exit 1; fi; : > {0}", flag.display());
    let p = env.enqueue_json(
        "default",
        &json!({"id": "P", "operations": [{"op": "write", "path": "a.txt", "content": "a\n"}],
                "checks": {"after": [{"argv": ["sh", "-c", check]}]},
                "git": {"commit": "Add a.txt", "tag": "v1"}}),
    );
    // Committed, then the tree is changed under the dead executor: the
    // commit cannot be kept, so it is taken back with the files.
    let status = run_with_failpoint(&env, "crash-after-git-commit=return");
    assert!(!status.success());
    std::fs::write(tree.join("a.txt"), "edited\n").unwrap();
    env.drain();
    assert_eq!(env.state_of("default", &p), Some(QueueState::Failed));
    assert_eq!(git(&tree, &["log", "--format=%s"]), "root");
    assert_eq!(git(&tree, &["tag"]), "");
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    assert!(!tree.join("a.txt").exists());
}

#[test]
fn nothing_a_check_started_survives_its_executor_into_recovery() {
    let mut env = TestEnv::new("[targets.default]\nallow_shell = true\n");
    let pidfile = env.dir.path().join("grandchild.pid");
    let flag = env.dir.path().join("ran-once");
    // The first run leaves a grandchild (and the shell's own child) behind
    // and hangs; the retry passes at once.
    let check = format!(
        "if [ -e {flag} ]; then exit 0; fi; : > {flag}; sleep 300 & echo $! > {pid}; sleep 300",
        flag = flag.display(),
        pid = pidfile.display()
    );
    let p = env.enqueue_json(
        "default",
        &json!({"id": "P", "operations": [{"op": "write", "path": "a.txt", "content": "a\n"}],
                "checks": {"after": [{"argv": ["sh", "-c", check]}]}}),
    );
    let exec = env.spawn_executor();
    let mut grandchild = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            env.assert_alive(exec);
            grandchild = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .and_then(proc_info);
            grandchild.is_some()
        }),
        "the check never started its grandchild"
    );
    let grandchild = grandchild.unwrap();
    let mut child = env.take_child(exec);
    child.kill().unwrap();
    child.wait().unwrap();
    // PR_SET_PDEATHSIG reaches the shell, not what it started.
    assert!(
        still_running(&grandchild),
        "the grandchild is expected to outlive a kill -9 of the executor"
    );
    env.drain();
    assert!(
        !still_running(&grandchild),
        "recovery rolled the tree back while {grandchild:?} of the dead executor's check still ran"
    );
    assert!(events(&env, "executor").contains(&"PROCESS_GROUP_KILLED".to_string()));
    assert_eq!(env.state_of("default", &p), Some(QueueState::Done));
    assert_eq!(env.summary("default", &p)["attempts"], 2);
}

#[test]
fn recovery_waits_for_the_tree_lock_another_process_holds() {
    let env = TestEnv::new("");
    let tree = env.tree("default");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), "old\n").unwrap();
    let p = env.enqueue_json(
        "default",
        &json!({"id": "P", "operations": [
            {"op": "write", "path": "a.txt", "content": "new\n"},
            {"op": "write", "path": "b.txt", "content": "b\n"},
            {"op": "write", "path": "c.txt", "content": "c\n"}]}),
    );
    // Half-applied: the first file written, then the executor died.
    let status = run_with_failpoint(&env, "crash-mid-apply=1*off->return");
    assert!(!status.success());
    let half = snapshot(&tree);
    assert_eq!(
        half["a.txt"].0, b"new\n",
        "the crash left the tree half-applied"
    );
    // Another process (an executor of another root sharing the tree) holds it.
    let held = ghost_core::fs::DirLock::try_acquire(&tree)
        .unwrap()
        .expect("the tree's lock is free");
    let mut exec = env
        .cmd(EXECUTOR)
        .arg("--drain")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || events(&env, "executor")
            .contains(&"TREE_BUSY".to_string())),
        "the executor never found the tree busy"
    );
    // Not touched while someone else holds it.
    assert_eq!(env.list("default", QueueState::Active), vec![p.clone()]);
    assert_eq!(snapshot(&tree), half);
    assert!(
        exec.try_wait().unwrap().is_none(),
        "a drain waits for the tree"
    );
    drop(held);
    let st = wait_exit(&mut exec, Duration::from_secs(30));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{st:?}");
    assert_eq!(env.state_of("default", &p), Some(QueueState::Done));
    let t = snapshot(&tree);
    assert_eq!(t["a.txt"].0, b"new\n");
    assert_eq!(t["c.txt"].0, b"c\n");
}

#[test]
fn a_crash_in_the_claim_during_rollback_recovery_or_summary_ends_wholly_applied_once() {
    use crate::crash::{check_after, setup};
    // (the failpoints of each crashed run before a clean drain, attempts P ends with)
    let cases: [(&[&str], u32); 6] = [
        // The claim's rename into active/ happens, its record is never written:
        // the attempt never started and is not counted.
        (&["crash-after-claim-rename=return"], 1),
        // The patch is applied and its record written in done/, the rename
        // into done/ never happens.
        (&["crash-before-move=return"], 1),
        // An I/O error mid-apply, then a crash while rolling it back.
        (
            &["io-error-mid-apply=2*off->return;crash-mid-rollback=return"],
            2,
        ),
        // A crash mid-apply, then one in recovery before it touches the tree,
        (
            &[
                "crash-mid-apply=1*off->return",
                "crash-during-recovery=return",
            ],
            2,
        ),
        // and one in the middle of recovery's rollback.
        (
            &["crash-mid-apply=3*off->return", "crash-mid-rollback=return"],
            2,
        ),
        // Between the summary's files (the journal is complete).
        (&["crash-between-summary-files=return"], 1),
    ];
    for (runs, attempts) in cases {
        let env = TestEnv::new("");
        let (p, q) = setup(&env);
        for fp in runs {
            let status = run_with_failpoint(&env, fp);
            assert!(
                !status.success(),
                "{fp}: the failpoint must abort the executor"
            );
        }
        env.drain();
        check_after(&env, &p, &q);
        let s = env.summary("default", &p);
        assert_eq!(s["status"], "applied", "{runs:?}");
        assert_eq!(s["attempts"], attempts, "{runs:?}: {s}");
        if attempts == 2 {
            assert_eq!(s["history"][0]["outcome"], "crashed", "{runs:?}");
        }
        let v = env.ghostctl(&["verify"]);
        assert!(v.status.success(), "{runs:?}: {v:?}");
    }
}

#[test]
fn a_bridge_crash_between_the_durable_write_and_the_answer_loses_and_duplicates_nothing() {
    let mut env = TestEnv::new("");
    let b = env.spawn_bridge_with(&[
        ("GHOST_BRIDGE_TOKEN", TOKEN),
        ("GHOST_HMAC_KEY", HMAC_KEY),
        ("FAILPOINTS", "bridge-crash-before-answer=return"),
    ]);
    let body = serde_json::to_vec(
        &json!({"id": "once", "operations": [{"op": "write", "path": "once.txt", "content": "1\n"}]}),
    )
    .unwrap();
    let send = |url: &str| {
        reqwest::blocking::Client::new()
            .post(format!("{url}/v1/patches"))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .map(|r| r.status().as_u16())
    };
    assert!(send(&b.url).is_err(), "the bridge died before it answered");
    let mut dead = env.take_child(b.pid);
    assert!(wait_exit(&mut dead, Duration::from_secs(20)).is_some());
    // Durable although unanswered; the client's retry is a duplicate.
    assert_eq!(env.list("default", QueueState::Pending).len(), 1);
    let b = env.spawn_bridge();
    assert_eq!(
        send(&b.url).unwrap(),
        200,
        "already queued: nothing written"
    );
    assert_eq!(env.list("default", QueueState::Pending).len(), 1);
    env.drain();
    assert_eq!(env.list("default", QueueState::Done).len(), 1);
    assert_eq!(
        std::fs::read_to_string(env.tree("default").join("once.txt")).unwrap(),
        "1\n"
    );
}
