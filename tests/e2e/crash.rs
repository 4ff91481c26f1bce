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
pub(crate) fn setup(env: &TestEnv) -> (String, String) {
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

pub(crate) fn check_after(env: &TestEnv, p: &str, q: &str) {
    check_after_in(env, p, q, true)
}

/// [`check_after`]; with `ordered` false, P may have been applied after Q
/// (a transient failure defers P, and Q, due at once, goes first).
pub(crate) fn check_after_in(env: &TestEnv, p: &str, q: &str, ordered: bool) {
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
    let ledger = tree["ledger.txt"].0.as_slice();
    if ordered || ledger != b"Q\nP\n" {
        assert_eq!(ledger, b"P\nQ\n", "each patch exactly once, in order");
    }
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

/// The log lines of `component` that mention the injected fault `name`.
fn injected(env: &TestEnv, component: &str, name: &str) -> Vec<serde_json::Value> {
    let needle = format!("failpoint {name})");
    env.log_lines(component)
        .into_iter()
        .filter(|l| l.to_string().contains(&needle))
        .collect()
}

/// An alert with `fingerprint` and `status` in `alerts/inbox/`.
fn alert(env: &TestEnv, fingerprint: &str, status: &str) -> bool {
    std::fs::read_dir(env.layout().alerts_inbox())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| ghost_core::fs::read_json::<serde_json::Value>(&e.path()).ok())
        .any(|a| a["fingerprint"] == fingerprint && a["status"] == status)
}

#[test]
fn an_injected_error_in_any_executor_window_is_reported_and_the_flow_goes_on() {
    // Each crash window of the transaction, and each step of a durable write
    // aimed at the executor's own files, fails once with an injected I/O
    // error while the daemon runs. (failpoint name, FAILPOINTS action)
    let windows = [
        ("crash-after-claim", "1*return(error)"),
        ("crash-after-journal", "1*return(error)"),
        ("crash-mid-apply", "1*return(error)"),
        ("crash-after-apply", "1*return(error)"),
        ("crash-before-complete", "1*return(error)"),
        ("crash-after-complete", "1*return(error)"),
        ("crash-after-summary", "1*return(error)"),
        ("crash-between-summary-files", "return(error-once:.backup)"),
        ("crash-before-move", "return(error-once:/done/)"),
        ("fs-after-temp-write", "return(error-once:/summaries/)"),
        ("fs-after-temp-fsync", "return(error-once:.journal)"),
        ("fs-after-rename", "return(error-once:/done/)"),
        ("fs-before-dir-fsync", "return(error-once:/active)"),
    ];
    for (name, action) in windows {
        let mut env = TestEnv::new("");
        let (p, q) = setup(&env);
        let child = env
            .cmd(EXECUTOR)
            .env("FAILPOINTS", format!("{name}={action}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(env.dir.path().join("executor.stderr")).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id();
        env.children.push(child);
        let done = wait_until(Duration::from_secs(60), || {
            env.assert_alive(pid);
            [&p, &q]
                .iter()
                .all(|n| env.state_of("default", n) == Some(QueueState::Done))
        });
        assert!(done, "{name}: P and Q never both applied");
        // Said clearly: the log names the failpoint's error (the log writer
        // may still be catching up).
        let mut lines = Vec::new();
        assert!(
            wait_until(Duration::from_secs(20), || {
                lines = injected(&env, "executor", name);
                !lines.is_empty()
            }),
            "{name}: the injected error was not logged"
        );
        // An error the worker could not handle in place blocked it: alerted,
        // and the all-clear raised once it worked again.
        if lines.iter().any(|l| l["event"] == "EXECUTOR_BLOCKED") {
            assert!(
                wait_until(Duration::from_secs(20), || alert(
                    &env,
                    "executor_blocked:default",
                    "resolved"
                )),
                "{name}: no resolved executor_blocked alert"
            );
            assert!(alert(&env, "executor_blocked:default", "firing"), "{name}");
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let mut c = env.take_child(pid);
        assert_eq!(
            wait_exit(&mut c, Duration::from_secs(20)).and_then(|s| s.code()),
            Some(0),
            "{name}"
        );
        // Nothing lost, nothing half-applied, each patch once (P after Q
        // when its failed try deferred it).
        let deferred = env.summary("default", &p)["history"][0]["outcome"] == "transient_failure";
        check_after_in(&env, &p, &q, !deferred);
        assert_eq!(env.summary("default", &p)["status"], "applied", "{name}");
        let v = env.ghostctl(&["verify"]);
        assert!(v.status.success(), "{name}: {v:?}");
    }
}

#[test]
fn an_injected_error_in_a_drain_ends_it_with_the_reason_and_the_next_drain_finishes() {
    // Errors the attempt cannot absorb as a failed try of its own (the claim,
    // the summary, the move to done/) are the worker's: a drain stops there.
    for name in [
        "crash-after-claim",
        "crash-between-summary-files",
        "crash-after-summary",
    ] {
        let env = TestEnv::new("");
        let (p, q) = setup(&env);
        let out = env
            .cmd(EXECUTOR)
            .arg("--drain")
            .env("FAILPOINTS", format!("{name}=1*return(error)"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!("failpoint {name})")),
            "{name}: the reason is named: {err}"
        );
        // The entry stays in one state; the next drain resolves and finishes it.
        env.drain();
        check_after(&env, &p, &q);
    }
}

#[test]
fn an_injected_error_between_the_bridges_write_and_its_answer_is_a_retry_not_a_loss() {
    // Each step of the queue write of a POST (and the window before the
    // answer) fails once: the client gets an error, its retry is answered,
    // and the patch is queued once.
    let cases = [
        ("bridge-crash-before-answer", "1*return(error)"),
        ("fs-after-temp-write", "return(error-once:/pending/)"),
        ("fs-after-temp-fsync", "return(error-once:/pending/)"),
        ("fs-after-rename", "return(error-once:/pending/)"),
        ("fs-before-dir-fsync", "return(error-once:/pending)"),
    ];
    for (name, action) in cases {
        let mut env = TestEnv::new("");
        let fp = format!("{name}={action}");
        let b = env.spawn_bridge_with(&[
            ("GHOST_BRIDGE_TOKEN", TOKEN),
            ("GHOST_HMAC_KEY", HMAC_KEY),
            ("FAILPOINTS", &fp),
        ]);
        let body = serde_json::to_vec(
            &json!({"id": "once", "operations": [{"op": "write", "path": "once.txt", "content": "1\n"}]}),
        )
        .unwrap();
        let send = || {
            let r = reqwest::blocking::Client::new()
                .post(format!("{}/v1/patches", b.url))
                .header("Authorization", format!("Bearer {TOKEN}"))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().unwrap_or_default())
        };
        let (status, text) = send();
        assert_eq!(status, 503, "{name}: {text}");
        assert!(
            text.contains(&format!("failpoint {name})")),
            "{name}: {text}"
        );
        assert!(text.contains("write_failed"), "{name}: {text}");
        env.assert_alive_named(b.pid, "bridge");
        let (status, text) = send();
        assert!(
            matches!(status, 200 | 202),
            "{name}: the retry: {status} {text}"
        );
        let all: usize = QueueState::ALL
            .iter()
            .map(|s| env.list("default", *s).len())
            .sum();
        assert_eq!(all, 1, "{name}: queued once");
        assert!(
            wait_until(Duration::from_secs(20), || !injected(&env, "bridge", name)
                .is_empty()),
            "{name}: the bridge's log names the error"
        );
        env.drain();
        assert_eq!(env.list("default", QueueState::Done).len(), 1, "{name}");
        assert_eq!(
            std::fs::read_to_string(env.tree("default").join("once.txt")).unwrap(),
            "1\n"
        );
    }
}
