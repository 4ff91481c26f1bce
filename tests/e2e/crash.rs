//! Crash windows, one by one: the executor is aborted (as by `kill -9` or a
//! power cut) at each step of a patch's transaction through failpoints, then
//! restarted. Whatever the window, the tree ends wholly after the patch, each
//! patch applied exactly once, and the queue holds every entry once.

use std::time::Duration;

use ghost_core::queue::QueueState;
use serde_json::json;

use crate::harness::*;

/// Seed a tree, queue patch P (edits, creates, deletes, appends to a ledger) and
/// patch Q (appends to the ledger). Returns (P's name, Q's name).
fn setup(env: &TestEnv) -> (String, String) {
    let seed = env.enqueue_json(
        "default",
        &json!({"id": "seed", "operations": [
            {"op": "write", "path": "ledger.txt", "content": ""},
            {"op": "write", "path": "src/lib.rs", "content": "fn old() {}\n"},
            {"op": "write", "path": "obsolete.txt", "content": "bye\n"}]}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &seed), Some(QueueState::Done));
    let p = env.enqueue_json(
        "default",
        &json!({"id": "P", "operations": [
            {"op": "replace", "path": "src/lib.rs", "find": "old", "replace": "new"},
            {"op": "write", "path": "src/a.rs", "content": "// a\n"},
            {"op": "write", "path": "src/deep/b.rs", "content": "// b\n"},
            {"op": "write", "path": "src/deep/c.rs", "content": "// c\n"},
            {"op": "delete", "path": "obsolete.txt"},
            {"op": "regex", "path": "ledger.txt", "pattern": "\\z", "replacement": "P\n", "count": 1}],
          "checks": {"after": [{"argv": ["test", "-f", "src/a.rs"]}]}}),
    );
    let q = env.enqueue_json(
        "default",
        &json!({"id": "Q", "operations": [{"op": "regex", "path": "ledger.txt", "pattern": "\\z", "replacement": "Q\n", "count": 1}]}),
    );
    (p, q)
}

fn check_after(env: &TestEnv, p: &str, q: &str) {
    let tree = snapshot(&env.tree("default"));
    let files: Vec<&str> = tree.keys().map(String::as_str).collect();
    assert_eq!(
        files,
        [
            "ledger.txt",
            "src/a.rs",
            "src/deep/b.rs",
            "src/deep/c.rs",
            "src/lib.rs"
        ]
    );
    assert_eq!(
        tree["ledger.txt"].0, b"P\nQ\n",
        "each patch exactly once, in order"
    );
    assert_eq!(tree["src/lib.rs"].0, b"fn new() {}\n");
    for name in [p, q] {
        assert_eq!(env.state_of("default", name), Some(QueueState::Done));
        let q = env.layout().queue("default");
        let copies = QueueState::ALL
            .iter()
            .filter(|s| q.entry_path(**s, name).exists())
            .count();
        assert_eq!(copies, 1, "{name} is in exactly one state");
    }
    assert!(env.list("default", QueueState::Active).is_empty());
    assert_eq!(
        std::fs::read_dir(env.layout().queue("default").tmp_dir())
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_crash_in_any_window_ends_wholly_applied_exactly_once() {
    // (failpoint, attempts P ends with)
    let windows = [
        ("crash-after-claim=return", 2),
        ("crash-after-journal=return", 2),
        ("crash-mid-apply=return", 2),
        ("crash-mid-apply=3*off->return", 2),
        ("crash-mid-apply=5*off->return", 2),
        ("crash-after-apply=return", 2),
        ("crash-before-complete=return", 2),
        ("crash-after-complete=return", 1),
        ("crash-after-summary=return", 1),
    ];
    for (fp, attempts) in windows {
        let env = TestEnv::new("");
        let (p, q) = setup(&env);
        let status = run_with_failpoint(&env, fp);
        assert!(
            !status.success(),
            "{fp}: the failpoint must abort the executor (is the failpoints feature on?)"
        );
        assert_eq!(
            env.list("default", QueueState::Active),
            vec![p.clone()],
            "{fp}: P was in flight"
        );
        env.drain();
        check_after(&env, &p, &q);
        let s = env.summary("default", &p);
        assert_eq!(s["status"], "applied", "{fp}");
        assert_eq!(s["attempts"], attempts, "{fp}: {s}");
        if attempts == 2 {
            assert_eq!(s["history"][0]["outcome"], "crashed", "{fp}");
        }
        let recovered = env
            .log_lines("executor")
            .iter()
            .filter(|l| l["event"] == "PATCH_RECOVERED")
            .count();
        assert_eq!(recovered, 1, "{fp}");
    }
}

#[test]
fn an_io_error_mid_apply_rolls_back_then_retries_then_parks() {
    let env = TestEnv::new("[executor]\nmax_attempts = 2\n");
    let (p, q) = setup(&env);
    let before = snapshot(&env.tree("default"));
    let mut child = env
        .cmd(EXECUTOR)
        .env("FAILPOINTS", "io-error-mid-apply=2*off->return")
        .stderr(std::fs::File::create(env.dir.path().join("executor.stderr")).unwrap())
        .spawn()
        .unwrap();
    let stuck = wait_until(Duration::from_secs(20), || {
        env.state_of("default", &p) == Some(QueueState::Stuck)
    });
    // Stop it the way an operator would: whatever is in flight goes back to pending.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(stuck, "P never reached .stuck/");
    let s = env.summary("default", &p);
    assert_eq!(s["status"], "stuck");
    assert_eq!(s["rollback"]["verified"], true);
    assert_eq!(s["attempts"], 2);
    let outcomes: Vec<&str> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["transient_failure", "transient_failure"]);
    // While writes fail nothing sticks: every attempt was rolled back.
    assert_eq!(snapshot(&env.tree("default")), before);
    assert_ne!(env.state_of("default", &q), Some(QueueState::Done));
    // Once the disk is healthy again, an operator's retry applies both, once.
    for name in [&p, &q] {
        if matches!(
            env.state_of("default", name),
            Some(QueueState::Stuck | QueueState::Deferred | QueueState::Failed)
        ) {
            let out = env.ghostctl(&["retry", name]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    env.drain();
    if env.state_of("default", &q) != Some(QueueState::Done) {
        let st = env.state_of("default", &q).unwrap();
        let log: Vec<String> = env
            .log_lines("executor")
            .iter()
            .map(|l| l.to_string())
            .collect();
        let stderr =
            std::fs::read_to_string(env.dir.path().join("executor.stderr")).unwrap_or_default();
        panic!(
            "Q ended in {st:?}: {}\n{}\nSTDERR:\n{stderr}",
            env.reason("default", st, &q),
            log.join("\n")
        );
    }
    check_after(&env, &p, &q);
}
