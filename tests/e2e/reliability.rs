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
fn an_injected_error_around_the_git_commit_takes_the_commit_back_with_the_files() {
    // An I/O error (not a crash) at each window around the commit: the
    // attempt fails, and whatever it committed and tagged goes with its files.
    // (failpoint, where the patch is after the failed attempt)
    let windows = [
        ("crash-after-git-journal", QueueState::Deferred),
        ("crash-after-git-commit", QueueState::Failed),
        ("crash-before-complete", QueueState::Deferred),
    ];
    for (name, after) in windows {
        let env = git_env();
        env.write_config(&merge_toml(
            &std::fs::read_to_string(env.root.join("ghost.toml")).unwrap(),
            "[executor]\nbackoff_base = \"1h\"\nbackoff_max = \"1h\"\n",
        ));
        let tree = env.tree("default");
        let p = env.enqueue_json(
            "default",
            &json!({"id": "P", "operations": [
                {"op": "write", "path": "a.txt", "content": "a\n"},
                {"op": "replace", "path": "base.txt", "find": "base", "replace": "BASE"}],
              "git": {"commit": "Add a.txt", "tag": "v1"}}),
        );
        let out = env
            .cmd(EXECUTOR)
            .arg("--drain")
            .env("FAILPOINTS", format!("{name}=1*return(error)"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(env.state_of("default", &p), Some(after), "{name}");
        let r = env.reason("default", after, &p);
        assert!(
            r.to_string().contains(&format!("failpoint {name})")),
            "{name}: the reason names the error: {r}"
        );
        assert_eq!(
            git(&tree, &["log", "--format=%s"]),
            "root",
            "{name}: no commit left"
        );
        assert_eq!(git(&tree, &["tag"]), "", "{name}: no tag left");
        assert_eq!(git(&tree, &["status", "--porcelain"]), "", "{name}");
        assert!(!tree.join("a.txt").exists(), "{name}");
        assert_eq!(
            std::fs::read_to_string(tree.join("base.txt")).unwrap(),
            "base\n"
        );
        // The operator's retry applies it, committed and tagged once.
        let o = env.ghostctl(&["retry", &p]);
        assert!(o.status.success(), "{name}: {o:?}");
        env.drain();
        assert_eq!(
            env.state_of("default", &p),
            Some(QueueState::Done),
            "{name}"
        );
        assert_eq!(
            git(&tree, &["log", "--format=%s"])
                .lines()
                .collect::<Vec<_>>(),
            ["Add a.txt", "root"],
            "{name}"
        );
        assert_eq!(git(&tree, &["tag"]), "v1", "{name}");
        assert_eq!(git(&tree, &["status", "--porcelain"]), "", "{name}");
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

/// A check that hangs on its first run after starting `escape` in the
/// background, which writes its pid (as this process sees it: read from
/// `/proc/self/stat`, not `$!`, which a PID namespace renumbers) to the
/// returned file; the retry passes at once.
fn hanging_check(env: &TestEnv, escape: &str) -> (String, std::path::PathBuf) {
    let pidfile = env.dir.path().join("escaped.pid");
    let flag = env.dir.path().join("ran-once");
    let check = format!(
        "if [ -e {flag} ]; then exit 0; fi; : > {flag}; \
         {escape} sh -c 'read p _ < /proc/self/stat; echo $p > {pid}.tmp; mv {pid}.tmp {pid}; exec sleep 300' & sleep 300",
        flag = flag.display(),
        pid = pidfile.display()
    );
    (check, pidfile)
}

/// Run `check` under a live executor until `pidfile` names a running
/// process; then kill -9 the executor and return what the check had running
/// (every descendant of the executor) just before.
fn kill_executor_mid_check(
    env: &mut TestEnv,
    check: String,
    pidfile: &Path,
) -> (String, ProcInfo, Vec<ProcInfo>) {
    let p = env.enqueue_json(
        "default",
        &json!({"id": "P", "operations": [{"op": "write", "path": "a.txt", "content": "a\n"}],
                "checks": {"after": [{"argv": ["sh", "-c", check]}]}}),
    );
    let exec = env.spawn_executor();
    let mut escaped = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            env.assert_alive(exec);
            escaped = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .and_then(proc_info);
            escaped.is_some()
        }),
        "the check never started its background process"
    );
    let procs: Vec<ProcInfo> = descendants(exec as i32)
        .into_iter()
        .filter(|p| p.pid != exec as i32)
        .collect();
    let mut child = env.take_child(exec);
    child.kill().unwrap();
    child.wait().unwrap();
    (p, escaped.unwrap(), procs)
}

#[test]
fn nothing_a_check_started_survives_its_executor_into_recovery() {
    let mut env = TestEnv::new("[targets.default]\nallow_shell = true\n");
    let (check, pidfile) = hanging_check(&env, "");
    let (p, grandchild, _) = kill_executor_mid_check(&mut env, check, &pidfile);
    // PR_SET_PDEATHSIG reaches the shell, not what it started: with a
    // process group alone the grandchild is still there, and recovery kills it.
    // In a PID namespace (root) the kernel ends it with the namespace, which
    // takes a moment after the kill: it survived if it is still there 2 s on.
    let survived = holds_for(Duration::from_secs(2), || still_running(&grandchild));
    env.drain();
    assert!(
        !still_running(&grandchild),
        "recovery rolled the tree back while {grandchild:?} of the dead executor's check still ran"
    );
    if survived {
        assert!(events(&env, "executor").contains(&"PROCESS_GROUP_KILLED".to_string()));
    }
    assert_eq!(env.state_of("default", &p), Some(QueueState::Done));
    assert_eq!(env.summary("default", &p)["attempts"], 2);
}

/// Issue 13: a process that leaves the check's process group and session
/// (`setsid`) escaped the group kill. In its own PID namespace it dies with
/// the check's init when the executor dies; after recovery nothing of the
/// check runs. Needs root (PID namespaces); CI runs as root.
#[test]
fn a_check_process_in_a_new_session_does_not_survive_its_executor() {
    if !nix::unistd::geteuid().is_root() {
        skip(
            "a_check_process_in_a_new_session_does_not_survive_its_executor",
            "needs root for PID namespaces (CI runs it as root)",
        );
        return;
    }
    let mut env = TestEnv::new("[targets.default]\nallow_shell = true\n");
    let (check, pidfile) = hanging_check(&env, "setsid");
    let (p, escaped, procs) = kill_executor_mid_check(&mut env, check, &pidfile);
    assert_eq!(
        escaped.pgid, escaped.pid,
        "the background process leads a process group (and session) of its own"
    );
    env.drain();
    // Right after recovery, with no grace: nothing of the check runs.
    let alive: Vec<&ProcInfo> = procs.iter().filter(|p| still_running(p)).collect();
    assert!(
        alive.is_empty() && !still_running(&escaped),
        "after recovery, processes of the dead executor's check still run: {alive:?} (escaped: {escaped:?})"
    );
    assert!(
        events(&env, "executor").contains(&"CHECK_CONTAINMENT".to_string()),
        "the executor says which containment is in force"
    );
    assert_eq!(env.state_of("default", &p), Some(QueueState::Done));
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
