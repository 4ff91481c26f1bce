//! The executor end to end: mixed workloads, rollback, crashes, signals, locks,
//! retries, stuck patches and bad input.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ghost_core::queue::QueueState;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::harness::*;

type Model = BTreeMap<String, (Vec<u8>, u32)>;

fn content(m: &Model, p: &str) -> String {
    String::from_utf8(m[p].0.clone()).unwrap()
}

/// Patch number `k` of a target's sequence, and its effect on `model` (true =
/// expected to apply; false = expected to fail and change nothing).
fn mixed_patch(k: usize, m: &mut Model) -> (Value, bool) {
    let j = k % 10;
    let f = format!("f{j}.txt");
    let d = format!("d{}/f{j}.txt", j % 3);
    let id = format!("mixed-{k}");
    match k / 10 {
        0 => {
            m.insert(f.clone(), (format!("v0 {j}\n").into_bytes(), 0o644));
            (
                json!({"id": id, "operations": [{"op": "write", "path": f, "content": format!("v0 {j}\n"), "expect_md5": null}]}),
                true,
            )
        }
        1 => {
            m.get_mut(&f).unwrap().0 = format!("v1 {j}\n").into_bytes();
            (
                json!({"id": id, "operations": [{"op": "replace", "path": f, "find": "v0", "replace": "v1"}]}),
                true,
            )
        }
        2 => {
            m.get_mut(&f).unwrap().0 = format!("w1-{j}\n").into_bytes();
            (
                json!({"id": id, "operations": [{"op": "regex", "path": f, "pattern": "v(\\d+) (\\d+)", "replacement": "w$1-$2"}]}),
                true,
            )
        }
        3 => {
            m.get_mut(&f).unwrap().0 = format!("w1-{j}\nline2\n").into_bytes();
            let diff = format!("diff --git a/{f} b/{f}\nindex 0000000..1111111 100644\n--- a/{f}\n+++ b/{f}\n@@ -1 +1,2 @@\n w1-{j}\n+line2\n");
            (
                json!({"id": id, "operations": [{"op": "diff", "diff": diff}]}),
                true,
            )
        }
        4 if j % 2 == 0 => {
            m.get_mut(&f).unwrap().1 = 0o755;
            (
                json!({"id": id, "operations": [{"op": "chmod", "path": f, "mode": "0755"}]}),
                true,
            )
        }
        4 => {
            let old = md5(&m[&f].0);
            m.get_mut(&f).unwrap().0 = format!("x {j}\n").into_bytes();
            (
                json!({"id": id, "operations": [{"op": "write", "path": f, "content": format!("x {j}\n"), "expect_md5": old}]}),
                true,
            )
        }
        5 => {
            let v = m.remove(&f).unwrap();
            m.insert(d.clone(), v);
            (
                json!({"id": id, "operations": [{"op": "rename", "from": f, "to": d}]}),
                true,
            )
        }
        6 => {
            // Odd j: an after-check fails once the tree has changed (rolled back).
            // Even j: a before-check fails before anything changes.
            let checks = if j % 2 == 1 {
                json!({"after": [{"argv": ["false"]}]})
            } else {
                json!({"before": [{"argv": ["test", "-f", "no-such-file"]}]})
            };
            (
                json!({"id": id, "operations": [
                    {"op": "write", "path": d, "content": "garbage\n"},
                    {"op": "write", "path": format!("junk{j}/new.txt"), "content": "junk\n"}],
                  "checks": checks}),
                false,
            )
        }
        7 => (
            json!({"id": id, "operations": [{"op": "write", "path": d, "content": "nope\n", "expect_md5": "00000000000000000000000000000000"}]}),
            false,
        ),
        8 => {
            let g = format!("g{j}.txt");
            m.insert(g.clone(), (format!("g {j}\n").into_bytes(), 0o644));
            let mut ops = vec![
                json!({"op": "write", "path": g, "content": format!("g {j}\n"), "expect_md5": null}),
            ];
            if j % 3 == 0 {
                let old = md5(&m[&d].0);
                m.remove(&d);
                ops.push(json!({"op": "delete", "path": d, "expect_md5": old}));
            }
            (json!({"id": id, "operations": ops}), true)
        }
        _ => {
            let g = format!("g{j}.txt");
            let c = content(m, &g);
            m.get_mut(&g).unwrap().0 = format!("{c}tail\n").into_bytes();
            (
                json!({"id": id, "operations": [{"op": "regex", "path": g, "pattern": "\\z", "replacement": "tail\n", "count": 1}]}),
                true,
            )
        }
    }
}

#[test]
fn two_hundred_mixed_patches_over_two_targets_end_byte_exact() {
    let env = TestEnv::new("[targets.default]\n[targets.web]\ncommands = \"any\"\n");
    type Expect = (Model, Vec<(String, bool)>);
    let mut models: BTreeMap<&str, Expect> = BTreeMap::new();
    for k in 0..100 {
        for t in ["default", "web"] {
            let (m, names) = models.entry(t).or_default();
            let (patch, ok) = mixed_patch(k, m);
            let mut patch = patch;
            patch["target"] = json!(t);
            names.push((env.enqueue_json(t, &patch), ok));
        }
    }
    let started = Instant::now();
    env.drain();
    let took = started.elapsed();
    eprintln!("drained 200 patches in {took:?}");
    for (t, (model, names)) in &models {
        let tree = snapshot(&env.tree(t));
        for (path, (bytes, mode)) in model {
            let got = tree
                .get(path)
                .unwrap_or_else(|| panic!("{t}: {path} missing; tree: {:?}", tree.keys()));
            assert_eq!((&got.0, got.1), (bytes, *mode), "{t}: {path}");
        }
        assert_eq!(
            tree.keys().collect::<Vec<_>>(),
            model.keys().collect::<Vec<_>>(),
            "{t}: set of files"
        );
        for (name, ok) in names {
            let want = if *ok {
                QueueState::Done
            } else {
                QueueState::Failed
            };
            assert_eq!(env.state_of(t, name), Some(want), "{t}: {name}");
            let s = env.summary(t, name);
            if *ok {
                assert_eq!(s["status"], "applied", "{t}: {name}");
            } else {
                assert!(
                    s["status"] == "failed" || s["status"] == "rolled_back",
                    "{t}: {name}: {s}"
                );
            }
        }
        assert!(env.list(t, QueueState::Pending).is_empty());
        assert!(env.list(t, QueueState::Active).is_empty());
    }
}

fn files_patch(id: &str, n: usize, tag: &str, after: Value) -> Value {
    let ops: Vec<Value> = (0..n)
        .map(|i| json!({"op": "write", "path": format!("multi/file{i:02}.txt"), "content": format!("{tag} {i}\n")}))
        .collect();
    json!({"id": id, "operations": ops, "checks": {"after": after}})
}

#[test]
fn failing_after_check_restores_every_file_md5() {
    let env = TestEnv::new("[targets.default]\nallow_shell = true\n");
    // A tree with existing files of several modes.
    let seed = env.enqueue_json(
        "default",
        &json!({"id": "seed", "operations": [
            {"op": "write", "path": "a.txt", "content": "alpha\n"},
            {"op": "write", "path": "bin/run.sh", "content": "#!/bin/sh\n", "mode": "0755"},
            {"op": "write", "path": "keep/b.txt", "content": "beta\n"},
            {"op": "write", "path": "gone.txt", "content": "to delete\n"}]}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &seed), Some(QueueState::Done));
    let before = snapshot(&env.tree("default"));
    let p = env.enqueue_json(
        "default",
        &json!({"id": "breaks-the-build", "operations": [
            {"op": "replace", "path": "a.txt", "find": "alpha", "replace": "ALPHA"},
            {"op": "chmod", "path": "bin/run.sh", "mode": "0700"},
            {"op": "delete", "path": "gone.txt"},
            {"op": "rename", "from": "keep/b.txt", "to": "moved/deeper/b.txt"},
            {"op": "write", "path": "new/dir/c.txt", "content": "new\n"}],
          "checks": {"after": [{"argv": ["sh", "-c", "echo build broke >&2; exit 7"]}]}}),
    );
    env.drain();
    assert_eq!(
        snapshot(&env.tree("default")),
        before,
        "tree must be exactly as before"
    );
    assert!(
        !env.tree("default").join("new").exists(),
        "created directories are removed"
    );
    assert!(!env.tree("default").join("moved").exists());
    assert_eq!(env.state_of("default", &p), Some(QueueState::Failed));
    let s = env.summary("default", &p);
    assert_eq!(s["status"], "rolled_back");
    assert_eq!(s["error"]["kind"], "check_failed");
    assert_eq!(s["checks"][0]["exit_code"], 7);
    assert_eq!(s["checks"][0]["stderr_tail"], "build broke\n");
    assert_eq!(s["rollback"]["verified"], true);
    let restored = s["rollback"]["files"].as_array().unwrap();
    assert_eq!(restored.len(), 6, "{restored:?}");
    for f in restored {
        assert_eq!(f["expected_md5"], f["actual_md5"], "{f}");
        let path = f["path"].as_str().unwrap();
        match before.get(path) {
            Some((bytes, _)) => assert_eq!(f["expected_md5"], md5(bytes)),
            None => assert!(f["expected_md5"].is_null()),
        }
    }
    let reason = env.reason("default", QueueState::Failed, &p);
    assert_eq!(reason["reason"]["kind"], "check_failed");
    let events: Vec<String> = env
        .log_lines("executor")
        .iter()
        .map(|l| l["event"].as_str().unwrap().to_string())
        .collect();
    for e in [
        "PATCH_CLAIMED",
        "PATCH_ROLLED_BACK",
        "PATCH_FAILED",
        "SUMMARY_CREATED",
        "PATCH_APPLIED",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} not logged: {events:?}");
    }
}

#[test]
fn kill_9_during_after_check_then_restart_applies_exactly_once() {
    let mut env = TestEnv::new("[targets.default]\nallow_shell = true\n");
    let mark = env.dir.path().join("let-it-pass");
    let check = json!([{"argv": ["sh", "-c", format!("[ -e '{}' ] || sleep 30", mark.display())]}]);
    let mut p = files_patch("multi", 20, "after", check);
    p["operations"].as_array_mut().unwrap().push(
        json!({"op": "write", "path": "ledger.txt", "content": "applied\n", "expect_md5": null}),
    );
    let name = env.enqueue_json("default", &p);
    let pid = env.spawn_executor();
    let q = env.layout().queue("default");
    let journal = q.sidecar_path(QueueState::Active, &name, "journal");
    let tree = env.tree("default");
    assert!(
        wait_until(Duration::from_secs(20), || journal.exists() && {
            // All 21 files in place, and no temp file of a write in flight.
            let s = snapshot(&tree);
            s.len() == 21 && s.keys().all(|k| !k.ends_with(".tmp"))
        }),
        "the patch never reached its after-check"
    );
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let mut child = env.take_child(pid);
    child.wait().unwrap();
    // The executor died with the tree wholly after the patch and the check pending.
    assert_eq!(snapshot(&tree).len(), 21);
    std::fs::File::create(&mark).unwrap();
    env.drain();
    assert_eq!(env.state_of("default", &name), Some(QueueState::Done));
    let files = snapshot(&tree);
    assert_eq!(files.len(), 21);
    assert_eq!(files["ledger.txt"].0, b"applied\n");
    for i in 0..20 {
        assert_eq!(
            files[&format!("multi/file{i:02}.txt")].0,
            format!("after {i}\n").into_bytes()
        );
    }
    let s = env.summary("default", &name);
    assert_eq!(s["status"], "applied");
    assert_eq!(s["attempts"], 2, "the crashed attempt counts: {s}");
    assert_eq!(s["history"][0]["outcome"], "crashed");
    assert!(env
        .log_lines("executor")
        .iter()
        .any(|l| l["event"] == "PATCH_RECOVERED"));
}

#[test]
fn kill_9_at_random_moments_never_half_applies_and_applies_each_patch_once() {
    // Every patch writes 15 files and appends its number to a ledger; the
    // executor is killed at arbitrary points, mid-apply included, and restarted.
    let mut env = TestEnv::new("[executor]\nmax_attempts = 50\n");
    let mut names = Vec::new();
    names.push(env.enqueue_json("default", &json!({"id": "ledger", "operations": [{"op": "write", "path": "ledger.txt", "content": "", "expect_md5": null}]})));
    // Patches go in batches of 12; on a loaded machine the executor may
    // drain a batch between two looks at active/, so another batch follows
    // until 3 kills have landed (at most 5 batches).
    let mut n = 0;
    let mut enqueue_batch = |env: &mut TestEnv, names: &mut Vec<String>| {
        for k in n..n + 12 {
            let mut p = files_patch(&format!("p{k}"), 15, &format!("patch {k}"), json!([]));
            p["operations"].as_array_mut().unwrap().push(json!({"op": "regex", "path": "ledger.txt", "pattern": "\\z", "replacement": format!("patch {k}\n"), "count": 1}));
            names.push(env.enqueue_json("default", &p));
        }
        n += 12;
    };
    let mut batches = 1;
    enqueue_batch(&mut env, &mut names);
    let q = env.layout().queue("default");
    let mut kills = 0;
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for _round in 0..60 {
        if q.list(QueueState::Pending).unwrap().is_empty()
            && q.list(QueueState::Active).unwrap().is_empty()
        {
            if kills >= 3 || batches == 5 {
                break;
            }
            batches += 1;
            enqueue_batch(&mut env, &mut names);
        }
        let pid = env.spawn_executor();
        // Wait until something is being applied, then let it run a pseudo-random while.
        let busy = wait_until(Duration::from_secs(10), || {
            !q.list(QueueState::Active).unwrap().is_empty()
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let spin = Instant::now() + Duration::from_micros(seed % 30_000);
        while Instant::now() < spin {
            std::hint::spin_loop();
        }
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        env.take_child(pid).wait().unwrap();
        if busy {
            kills += 1;
        }
    }
    env.drain();
    assert!(
        kills >= 3,
        "only {kills} kills landed while a patch was active"
    );
    for name in &names {
        assert_eq!(
            env.state_of("default", name),
            Some(QueueState::Done),
            "{name}"
        );
    }
    let tree = snapshot(&env.tree("default"));
    let want: String = (0..n).map(|k| format!("patch {k}\n")).collect();
    assert_eq!(
        String::from_utf8(tree["ledger.txt"].0.clone()).unwrap(),
        want,
        "each patch exactly once, in order"
    );
    for i in 0..15 {
        assert_eq!(
            tree[&format!("multi/file{i:02}.txt")].0,
            format!("patch {} {i}\n", n - 1).into_bytes()
        );
    }
    // No temp files or strays in the tree.
    assert_eq!(tree.len(), 16, "{:?}", tree.keys());
    eprintln!("{kills} kills while a patch was active, {batches} batches");
}

#[test]
fn sigterm_rolls_back_the_running_patch_requeues_it_and_exits_0() {
    let mut env = TestEnv::new("");
    let p = files_patch("slow", 5, "x", json!([{"argv": ["sleep", "30"]}]));
    let name = env.enqueue_json("default", &p);
    let pid = env.spawn_executor();
    let journal = env
        .layout()
        .queue("default")
        .sidecar_path(QueueState::Active, &name, "journal");
    assert!(wait_until(Duration::from_secs(20), || journal.exists()));
    let t = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let mut child = env.take_child(pid);
    let status =
        wait_exit(&mut child, Duration::from_secs(15)).expect("executor exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "grace is 300 ms; took {:?}",
        t.elapsed()
    );
    assert_eq!(env.state_of("default", &name), Some(QueueState::Pending));
    assert!(
        snapshot(&env.tree("default")).is_empty(),
        "rolled back to the empty tree"
    );
    let rec = env.reason("default", QueueState::Pending, &name);
    assert_eq!(
        rec["attempts"], 0,
        "an interruption does not use an attempt: {rec}"
    );
    assert_eq!(rec["history"][0]["outcome"], "interrupted");
    assert!(env.list("default", QueueState::Active).is_empty());
    // A quick patch in flight is finished rather than undone.
    let quick = env.enqueue_json("default", &files_patch("quick", 3, "q", json!([])));
    let _ = std::fs::remove_file(
        env.layout()
            .queue("default")
            .entry_path(QueueState::Pending, &name),
    );
    let pid = env.spawn_executor();
    assert!(wait_until(Duration::from_secs(20), || env
        .state_of("default", &quick)
        == Some(QueueState::Done)));
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let mut child = env.take_child(pid);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn second_executor_on_the_same_root_refuses_naming_the_pid() {
    let mut env = TestEnv::new("");
    let pid = env.spawn_executor();
    let hb = env.layout().heartbeat("executor");
    assert!(wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&hb)
            .map(|s| s.contains("running"))
            .unwrap_or(false)
    }));
    let out = env.cmd(EXECUTOR).arg("--drain").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {pid}")), "{err}");
}

#[test]
fn a_patch_past_stuck_after_is_killed_rolled_back_parked_and_alerted() {
    let mut env = TestEnv::new("[executor]\nstuck_after = \"700ms\"\n");
    let name = env.enqueue_json(
        "default",
        &files_patch("hangs", 3, "h", json!([{"argv": ["sleep", "30"]}])),
    );
    env.spawn_executor();
    assert!(wait_until(Duration::from_secs(20), || env
        .state_of("default", &name)
        == Some(QueueState::Stuck)));
    assert!(snapshot(&env.tree("default")).is_empty());
    let r = env.reason("default", QueueState::Stuck, &name);
    assert_eq!(r["reason"]["kind"], "stuck_timeout");
    assert!(r["reason"]["hint"]
        .as_str()
        .unwrap()
        .contains("ghostctl retry"));
    let s = env.summary("default", &name);
    assert_eq!(s["status"], "stuck");
    assert_eq!(s["checks"][0]["timed_out"], true);
    let alerts: Vec<_> = std::fs::read_dir(env.layout().alerts_inbox())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(alerts.len(), 1);
    let a: Value = serde_json::from_slice(&std::fs::read(alerts[0].path()).unwrap()).unwrap();
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["queue_name"], name.as_str());
}

#[test]
fn transient_failures_are_deferred_with_backoff_then_parked_when_attempts_are_spent() {
    let mut env = TestEnv::new("[executor]\ncommand_timeout = \"150ms\"\nmax_attempts = 3\n");
    let name = env.enqueue_json(
        "default",
        &files_patch("flaky", 2, "f", json!([{"argv": ["sleep", "5"]}])),
    );
    env.spawn_executor();
    assert!(wait_until(Duration::from_secs(30), || env
        .state_of("default", &name)
        == Some(QueueState::Stuck)));
    let r = env.reason("default", QueueState::Stuck, &name);
    assert_eq!(r["attempts"], 3);
    let outcomes: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["transient_failure"; 3]);
    assert!(r["reason"]["message"]
        .as_str()
        .unwrap()
        .starts_with("3 attempts failed"));
    let deferred = env
        .log_lines("executor")
        .iter()
        .filter(|l| l["event"] == "PATCH_DEFERRED")
        .count();
    assert_eq!(deferred, 2);
    assert!(snapshot(&env.tree("default")).is_empty());
}

#[test]
fn every_class_of_bad_input_fails_with_its_reason_and_the_flow_goes_on() {
    let env = TestEnv::new("[bridge]\nmax_patch_bytes = 4096\n");
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(env.tree("default")).unwrap();
    std::os::unix::fs::symlink(&outside, env.tree("default").join("escape")).unwrap();
    let w = |path: &str| json!({"operations": [{"op": "write", "path": path, "content": "x"}]});
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed JSON", b"{\"operations\": [".to_vec(), "(document)"),
        ("wrong type", br#"{"operations": [{"op": "write", "path": 5, "content": "x"}]}"#.to_vec(), "operations[0].path"),
        ("unknown op", br#"{"operations": [{"op": "frobnicate", "path": "a"}]}"#.to_vec(), "operations[0].op"),
        ("empty operations", br#"{"operations": []}"#.to_vec(), "operations"),
        ("oversized", serde_json::to_vec(&json!({"operations": [{"op": "write", "path": "a", "content": "x".repeat(5000)}]})).unwrap(), "limit is 4096"),
        ("absolute path", serde_json::to_vec(&w("/etc/passwd")).unwrap(), "operations[0].path"),
        ("dot-dot", serde_json::to_vec(&w("a/../../etc/passwd")).unwrap(), "operations[0].path"),
        ("NUL byte", serde_json::to_vec(&w("a\u{0}b")).unwrap(), "operations[0].path"),
        ("through a symlink", serde_json::to_vec(&w("escape/pwned.txt")).unwrap(), "escape"),
        ("invalid UTF-8", b"{\"operations\": [{\"op\": \"write\", \"path\": \"a\", \"content\": \"\xff\xfe\"}]}".to_vec(), "content_base64"),
        ("precondition", serde_json::to_vec(&json!({"operations": [{"op": "replace", "path": "missing.txt", "find": "a", "replace": "b"}]})).unwrap(), "missing.txt"),
        ("diff does not apply", serde_json::to_vec(&json!({"operations": [{"op": "write", "path": "d.txt", "content": "one\n"}, {"op": "diff", "diff": "--- a/d.txt\n+++ b/d.txt\n@@ -1 +1 @@\n-two\n+three\n"}]})).unwrap(), "d.txt"),
        ("shell not allowed", serde_json::to_vec(&json!({"operations": [{"op": "write", "path": "a", "content": "x"}], "checks": {"after": [{"shell": "true"}]}})).unwrap(), "allow_shell"),
        ("unknown target", serde_json::to_vec(&json!({"target": "nowhere", "operations": [{"op": "write", "path": "a", "content": "x"}]})).unwrap(), "target"),
    ];
    let mut names = Vec::new();
    for (label, bytes, _) in &cases {
        names.push(env.enqueue_raw("default", bytes));
        // A good patch after each bad one: the flow must go on.
        names.push(env.enqueue_json("default", &json!({"id": format!("good after {label}"), "operations": [{"op": "write", "path": format!("ok/{}.txt", names.len()), "content": "ok\n"}]})));
    }
    env.drain();
    for (i, (label, _, needle)) in cases.iter().enumerate() {
        let bad = &names[2 * i];
        assert_eq!(
            env.state_of("default", bad),
            Some(QueueState::Failed),
            "{label}"
        );
        let r = env.reason("default", QueueState::Failed, bad);
        let msg = r["reason"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{label}: reason {msg:?} does not name {needle:?}"
        );
        let s = env.summary("default", bad);
        assert_eq!(s["status"], "failed", "{label}");
        assert_eq!(
            env.state_of("default", &names[2 * i + 1]),
            Some(QueueState::Done),
            "good patch after {label}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing escaped the tree"
    );
}

#[test]
fn applied_patches_are_committed_and_tagged_and_a_failed_one_leaves_no_commit() {
    let env = TestEnv::new("[targets.default]\ngit_commit = true\n");
    let tree = env.tree("default");
    std::fs::create_dir_all(&tree).unwrap();
    git(&tree, &["init", "-q"]);
    git(
        &tree,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "root",
        ],
    );
    let a = env.enqueue_json(
        "default",
        &json!({"id": "feature-1", "description": "add a", "operations": [{"op": "write", "path": "a.txt", "content": "a\n"}],
                "git": {"commit": "Add a.txt", "tag": "v1"}}),
    );
    let b = env.enqueue_json(
        "default",
        &json!({"id": "broken", "operations": [{"op": "write", "path": "b.txt", "content": "b\n"}], "checks": {"after": [{"argv": ["false"]}]}}),
    );
    let c = env.enqueue_json(
        "default",
        &json!({"id": "dup-tag", "operations": [{"op": "write", "path": "c.txt", "content": "c\n"}], "git": {"tag": "v1"}}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &a), Some(QueueState::Done));
    assert_eq!(env.state_of("default", &b), Some(QueueState::Failed));
    assert_eq!(env.state_of("default", &c), Some(QueueState::Failed));
    let log = git(&tree, &["log", "--format=%s"]);
    assert_eq!(log.lines().collect::<Vec<_>>(), ["Add a.txt", "root"]);
    assert_eq!(git(&tree, &["tag"]), "v1");
    let s = env.summary("default", &a);
    assert_eq!(
        s["git"]["commit"],
        git(&tree, &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(env.summary("default", &c)["error"]["kind"], "git_failed");
    // Nothing of the failed patches is left in the tree or the index.
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
}

#[test]
fn two_roots_sharing_one_tree_take_turns_and_lose_no_update() {
    let shared = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[targets.default]\npath = \"{}\"\n",
        shared.path().display()
    );
    let mut a = TestEnv::new(&cfg);
    let mut b = TestEnv::new(&cfg);
    let seed = a.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "ledger.txt", "content": ""}]}),
    );
    a.drain();
    assert_eq!(a.state_of("default", &seed), Some(QueueState::Done));
    let n = 25;
    for k in 0..n {
        for (env, who) in [(&a, "a"), (&b, "b")] {
            env.enqueue_json(
                "default",
                &json!({"id": format!("{who}{k}"), "operations": [{"op": "regex", "path": "ledger.txt", "pattern": "\\z", "replacement": format!("{who}{k}\n"), "count": 1}]}),
            );
        }
    }
    a.spawn_executor();
    b.spawn_executor();
    let all_done = |e: &TestEnv| e.list("default", QueueState::Done).len();
    assert!(
        wait_until(Duration::from_secs(60), || all_done(&a) == n + 1
            && all_done(&b) == n),
        "a: {} done, b: {} done",
        all_done(&a),
        all_done(&b)
    );
    let ledger = std::fs::read_to_string(shared.path().join("ledger.txt")).unwrap();
    let mut lines: Vec<&str> = ledger.lines().collect();
    assert_eq!(lines.len(), 2 * n, "no update lost:\n{ledger}");
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 2 * n, "no update doubled");
}
