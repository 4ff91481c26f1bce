//! Group commit: due patches of one target applied as a batch, each its own
//! transaction. Crash windows inside a batch (through failpoints), a failing
//! patch amid others, an I/O error mid-batch, and FIFO order across batches.

use std::process::Command;

use ghost_core::queue::QueueState;
use serde_json::json;

use crate::harness::*;

/// Seed a ledger, then queue `n` patches that each append their number to it
/// and write a file of their own. Returns their names, in queue order.
fn setup(env: &TestEnv, n: usize) -> Vec<String> {
    env.enqueue_json(
        "default",
        &json!({"id": "seed", "operations": [{"op": "write", "path": "ledger.txt", "content": ""}]}),
    );
    env.drain();
    (0..n)
        .map(|k| env.enqueue_json("default", &append(&format!("p{k}"), &k.to_string())))
        .collect()
}

fn append(id: &str, line: &str) -> serde_json::Value {
    json!({"id": id, "operations": [
        {"op": "regex", "path": "ledger.txt", "pattern": "\\z", "replacement": format!("{line}\n"), "count": 1},
        {"op": "write", "path": format!("own/{id}.txt"), "content": format!("{id}\n")}]})
}

fn ledger(env: &TestEnv) -> String {
    String::from_utf8(std::fs::read(env.tree("default").join("ledger.txt")).unwrap()).unwrap()
}

/// Each name in exactly one state, that state `done`; nothing left in `active/`.
fn all_done_once(env: &TestEnv, names: &[String], why: &str) {
    let q = env.layout().queue("default");
    for name in names {
        let states: Vec<QueueState> = QueueState::ALL
            .into_iter()
            .filter(|s| q.entry_path(*s, name).exists())
            .collect();
        assert_eq!(states, [QueueState::Done], "{why}: {name}");
        assert_eq!(env.summary("default", name)["status"], "applied", "{why}");
    }
    assert!(env.list("default", QueueState::Active).is_empty(), "{why}");
    assert!(
        !q.dir(QueueState::Active).join(".batch.json").exists(),
        "{why}"
    );
}

/// PATCH_APPLIED log lines: (queue name, batch size or 0 when alone).
fn applied(env: &TestEnv) -> Vec<(String, u64)> {
    env.log_lines("executor")
        .into_iter()
        .filter(|l| l["event"] == "PATCH_APPLIED")
        .map(|l| {
            (
                l["queue_name"].as_str().unwrap().to_string(),
                l["batch"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn a_crash_in_any_window_of_a_batch_applies_each_patch_wholly_exactly_once() {
    // (failpoint, attempts each member ends with: 2 when the crash came
    // after the claims and before the batch completed, so it was rolled back
    // and requeued as crashed)
    let windows = [
        ("crash-after-batch-journal", 1),
        ("crash-between-batch-tree-writes", 2),
        ("crash-after-batch-apply", 2),
        ("crash-after-batch-complete", 1),
        ("crash-between-batch-summaries", 1),
        ("crash-before-batch-moves", 1),
        ("crash-after-batch-moves", 1),
    ];
    for (fp, attempts) in windows {
        let env = TestEnv::new("");
        let names = setup(&env, 5);
        let status = run_with_failpoint(&env, &format!("{fp}=return"));
        assert!(
            !status.success(),
            "{fp}: the failpoint must abort the executor"
        );
        let q = env.layout().queue("default");
        assert!(
            q.dir(QueueState::Active).join(".batch.json").exists(),
            "{fp}"
        );
        env.drain();
        all_done_once(&env, &names, fp);
        // Each patch wholly (its line and its file), exactly once, in order.
        assert_eq!(ledger(&env), "0\n1\n2\n3\n4\n", "{fp}");
        let tree = env.tree("default");
        for (k, name) in names.iter().enumerate() {
            assert_eq!(
                std::fs::read(tree.join(format!("own/p{k}.txt"))).unwrap(),
                format!("p{k}\n").as_bytes()
            );
            let s = env.summary("default", name);
            assert_eq!(s["attempts"], attempts, "{fp}: {s}");
            if attempts == 2 {
                assert_eq!(s["history"][0]["outcome"], "crashed", "{fp}");
            }
        }
        let files: Vec<String> = snapshot(&tree).into_keys().collect();
        let mut want: Vec<String> = (0..5).map(|k| format!("own/p{k}.txt")).collect();
        want.insert(0, "ledger.txt".into());
        assert_eq!(files, want, "{fp}: no temp file or stray left in the tree");
    }
}

#[test]
fn a_failing_patch_amid_a_batch_fails_alone_and_its_neighbours_apply() {
    let env = TestEnv::new("");
    env.enqueue_json(
        "default",
        &json!({"id": "seed", "operations": [{"op": "write", "path": "ledger.txt", "content": ""}]}),
    );
    env.drain();
    let a1 = env.enqueue_json("default", &append("a1", "a1"));
    let a2 = env.enqueue_json("default", &append("a2", "a2"));
    // Its precondition does not hold: it must fail, and change nothing.
    let bad = env.enqueue_json(
        "default",
        &json!({"id": "bad", "operations": [
            {"op": "regex", "path": "ledger.txt", "pattern": "\\z", "replacement": "bad\n", "count": 1},
            {"op": "replace", "path": "ledger.txt", "find": "no such text", "replace": "x"}]}),
    );
    let c1 = env.enqueue_json("default", &append("c1", "c1"));
    let c2 = env.enqueue_json("default", &append("c2", "c2"));
    env.drain();
    all_done_once(
        &env,
        &[a1.clone(), a2.clone(), c1.clone(), c2.clone()],
        "neighbours",
    );
    assert_eq!(env.state_of("default", &bad), Some(QueueState::Failed));
    assert_eq!(env.summary("default", &bad)["status"], "failed");
    assert_eq!(ledger(&env), "a1\na2\nc1\nc2\n");
    // The neighbours went in batches; the failing one on its own.
    let got = applied(&env);
    let batched: Vec<&str> = got
        .iter()
        .filter(|(_, b)| *b >= 2)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(batched, [&a1, &a2, &c1, &c2].map(String::as_str));
}

#[test]
fn an_io_error_mid_batch_rolls_every_member_back_and_they_apply_later() {
    let env = TestEnv::new("");
    let names = setup(&env, 4);
    let out = Command::new(EXECUTOR)
        .arg("--root")
        .arg(&env.root)
        .arg("--drain")
        .env("FAILPOINTS", "io-error-mid-batch=1*return->off")
        .output()
        .unwrap();
    assert_success(&out);
    all_done_once(&env, &names, "after the I/O error");
    assert_eq!(ledger(&env), "0\n1\n2\n3\n");
    let rolled = env
        .log_lines("executor")
        .iter()
        .filter(|l| l["event"] == "BATCH_ROLLED_BACK")
        .count();
    assert_eq!(rolled, 1);
    for name in &names {
        let s = env.summary("default", name);
        assert_eq!(s["attempts"], 2, "{s}");
    }
}

#[test]
fn batches_keep_fifo_order_across_batches() {
    let env = TestEnv::new("[executor]\nbatch_max = 3\n");
    let names = setup(&env, 10);
    env.drain();
    all_done_once(&env, &names, "fifo");
    let want: String = (0..10).map(|k| format!("{k}\n")).collect();
    assert_eq!(ledger(&env), want);
    let got = applied(&env);
    // The seed, then the ten in queue order: three batches of three, then one alone.
    let order: Vec<&str> = got[1..].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, names.iter().map(String::as_str).collect::<Vec<_>>());
    let sizes: Vec<u64> = got[1..].iter().map(|(_, b)| *b).collect();
    assert_eq!(sizes, [3, 3, 3, 3, 3, 3, 3, 3, 3, 0]);
}

#[test]
fn batch_max_1_applies_one_by_one() {
    let env = TestEnv::new("[executor]\nbatch_max = 1\n");
    let names = setup(&env, 3);
    env.drain();
    all_done_once(&env, &names, "one by one");
    assert!(applied(&env).iter().all(|(_, b)| *b == 0));
}
