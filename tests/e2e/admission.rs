//! One admission path end to end: whatever way a patch comes in (`ghostctl
//! submit`, HTTP, the inbox, a restart or an intake pause in between), the
//! same id and content are queued once, decided on disk; the high-water mark is
//! exact under concurrent processes; a hand-edited entry is refused; ids are
//! read by one rule everywhere (BOM, id-less patches).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use ghost_core::queue::QueueState;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::harness::*;

const INBOX_FAST: &str = "[bridge]\ninbox_settle = \"100ms\"\ninbox_scan_interval = \"50ms\"\n";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POST raw bytes to `/v1/patches`: (status, body).
fn post_bytes(b: &Bridge, body: &[u8]) -> (u16, Value) {
    let r = client()
        .post(format!("{}/v1/patches", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .expect("request");
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{code}: {e}: {text}")),
    )
}

fn patch(id: &str, content: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": content}]}),
    )
    .unwrap()
}

/// A patch file in the test's own directory (outside the data root).
fn file(env: &TestEnv, name: &str, bytes: &[u8]) -> PathBuf {
    let p = env.dir.path().join(name);
    ghost_core::fs::durable_write(&p, bytes, 0o600).unwrap();
    p
}

fn submit(env: &TestEnv, files: &[&Path]) -> Output {
    let mut c = env.cmd(GHOSTCTL);
    c.arg("--json").arg("submit").args(files);
    c.output().expect("run ghostctl submit")
}

/// The items `ghostctl --json submit` printed.
fn items(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    match v {
        Value::Array(a) => a,
        Value::Object(ref o) if o.contains_key("items") => {
            o["items"].as_array().cloned().unwrap_or_default()
        }
        other => vec![other],
    }
}

/// Drop `bytes` into the inbox as `name` and wait until the bridge took it.
fn into_inbox(env: &TestEnv, name: &str, bytes: &[u8]) {
    let f = env.layout().inbox().join(name);
    ghost_core::fs::durable_write(&f, bytes, 0o600).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || !f.exists()),
        "the inbox never took {name}"
    );
}

/// Every entry of every state of `target`.
fn all_entries(env: &TestEnv, target: &str) -> Vec<(QueueState, String)> {
    QueueState::ALL
        .into_iter()
        .flat_map(|s| env.list(target, s).into_iter().map(move |n| (s, n)))
        .collect()
}

fn stop_bridge(env: &mut TestEnv, b: &Bridge) {
    kill(Pid::from_raw(b.pid as i32), Signal::SIGTERM).unwrap();
    let mut child = env.take_child(b.pid);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
}

fn ctl_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.ghostctl(args);
    assert!(
        out.status.success(),
        "ghostctl {args:?}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_readme_sequence_submit_then_curl_answers_200_with_the_existing_entry() {
    // As the README runs it: the embedded defaults.
    let mut env = TestEnv::new("");
    std::fs::remove_file(env.root.join("ghost.toml")).unwrap();
    let b = env.spawn_bridge();
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.json");
    let out = submit(&env, &[&hello]);
    assert!(out.status.success(), "{out:?}");
    let first = items(&out).remove(0);
    assert_eq!(first["patch_id"], "example-hello");
    // The README's curl: `--data-binary @examples/hello.json`.
    let (code, body) = post_bytes(&b, &std::fs::read(&hello).unwrap());
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["duplicates"][0]["name"], first["queue_name"]);
    assert_eq!(body["queued"], json!([]));
    assert_eq!(all_entries(&env, "default").len(), 1);
    env.drain();
    assert_eq!(
        env.state_of("default", first["queue_name"].as_str().unwrap()),
        Some(QueueState::Done)
    );
}

#[test]
fn one_patch_by_submit_http_and_the_inbox_across_a_pause_is_queued_once() {
    let mut env = TestEnv::new(INBOX_FAST);
    let b = env.spawn_bridge();
    let bytes = patch("ways", "w\n");
    let f = file(&env, "ways.json", &bytes);
    let out = submit(&env, &[&f]);
    assert!(out.status.success(), "{out:?}");
    let name = items(&out)[0]["queue_name"].as_str().unwrap().to_string();
    // The bridge started before the submit, and still knows of it.
    let (code, body) = post_bytes(&b, &bytes);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["duplicates"][0]["name"], name.as_str());
    into_inbox(&env, "ways.json", &bytes);
    // During an intake pause the inbox file waits; after resume it is a duplicate.
    ctl_ok(&env, &["pause", "--reason", "testing"]);
    let held_back = env.layout().inbox().join("again.json");
    ghost_core::fs::durable_write(&held_back, &bytes, 0o600).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        client()
            .get(format!("{}/healthz", b.url))
            .send()
            .map(|r| r.text().unwrap_or_default().contains("\"paused\":true"))
            .unwrap_or(false)
    }));
    assert!(held_back.exists());
    ctl_ok(&env, &["resume", "--force"]);
    assert!(wait_until(Duration::from_secs(30), || !held_back.exists()));
    // And once more through submit, after all that.
    assert_eq!(items(&submit(&env, &[&f]))[0]["duplicate"], true);
    assert_eq!(
        all_entries(&env, "default"),
        vec![(QueueState::Pending, name)]
    );
}

#[test]
fn concurrent_http_and_submit_of_the_same_100_ids_queue_each_once() {
    // Three senders from one address, faster than the per-client rate limit allows.
    let mut env = TestEnv::new("[bridge]\nrate_limit = 0\n");
    let b = env.spawn_bridge();
    let files: Vec<PathBuf> = (0..100)
        .map(|i| {
            let id = format!("c{i:03}");
            file(&env, &format!("{id}.json"), &patch(&id, "c\n"))
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..3 {
            let (b, files) = (&b, &files);
            s.spawn(move || {
                // Each sender in its own order.
                for i in 0..100 {
                    let f = &files[(i * 7 + t * 31) % 100];
                    let (code, body) = post_bytes(b, &std::fs::read(f).unwrap());
                    assert!(code == 202 || code == 200, "{code}: {body}");
                }
            });
        }
        for t in 0..3 {
            let (env, files) = (&env, &files);
            s.spawn(move || {
                let mut order: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
                order.rotate_left(t * 33);
                let out = submit(env, &order);
                assert!(out.status.success(), "{out:?}");
            });
        }
    });
    let pending = env.list("default", QueueState::Pending);
    assert_eq!(pending.len(), 100);
    let q = env.layout().queue("default");
    let mut ids: Vec<String> = pending
        .iter()
        .map(|n| {
            let bytes = std::fs::read(q.entry_path(QueueState::Pending, n)).unwrap();
            ghost_core::entry::stored_id(&bytes).unwrap()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
}

#[test]
fn n_concurrent_submissions_against_a_mark_of_m_leave_exactly_m_pending() {
    let mut env = TestEnv::new("[bridge]\nhigh_water_mark = 6\n");
    let b = env.spawn_bridge();
    let files: Vec<PathBuf> = (0..24)
        .map(|i| {
            let id = format!("m{i:02}");
            file(&env, &format!("{id}.json"), &patch(&id, "m\n"))
        })
        .collect();
    std::thread::scope(|s| {
        // Half over HTTP, half through separate ghostctl processes, all at once.
        for f in &files[..12] {
            let b = &b;
            s.spawn(move || {
                let (code, body) = post_bytes(b, &std::fs::read(f).unwrap());
                assert!(code == 202 || code == 429, "{code}: {body}");
            });
        }
        for f in &files[12..] {
            let env = &env;
            s.spawn(move || {
                let out = submit(env, &[f]);
                let item = items(&out).remove(0);
                let full = item["errors"][0]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("high_water_mark"));
                assert!(item["ok"] == true || full, "{item}");
            });
        }
    });
    assert_eq!(env.list("default", QueueState::Pending).len(), 6);
}

#[test]
fn a_hand_edited_pending_entry_is_refused_with_its_reason() {
    let mut env = TestEnv::new("");
    let b = env.spawn_bridge();
    let bytes = patch("edited", "as sent\n");
    assert_eq!(post_bytes(&b, &bytes).0, 202);
    let name = env.list("default", QueueState::Pending).remove(0);
    let entry = env
        .layout()
        .queue("default")
        .entry_path(QueueState::Pending, &name);
    ghost_core::fs::durable_write(&entry, &patch("edited", "as edited\n"), 0o600).unwrap();
    env.drain();
    assert_eq!(env.state_of("default", &name), Some(QueueState::Failed));
    let rec = env.reason("default", QueueState::Failed, &name);
    assert_eq!(rec["reason"]["kind"], "edited", "{rec}");
    let msg = rec["reason"]["message"].as_str().unwrap();
    assert!(msg.contains("submit the change as a new patch"), "{msg}");
    assert!(!env.tree("default").join("edited.txt").exists());
    // The original, resent, is the entry that was refused: not applied again.
    let (code, body) = post_bytes(&b, &bytes);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["duplicates"][0]["name"], name.as_str());
    assert!(env.list("default", QueueState::Pending).is_empty());
}

fn with_bom(bytes: &[u8]) -> Vec<u8> {
    let mut b = b"\xEF\xBB\xBF".to_vec();
    b.extend_from_slice(bytes);
    b
}

#[test]
fn the_bom_patch_is_one_entry_applied_once_whichever_way_it_comes() {
    let mut env = TestEnv::new(INBOX_FAST);
    let bom = with_bom(&patch("bom", "once\n"));
    let b = env.spawn_bridge();
    assert_eq!(post_bytes(&b, &bom).0, 202);
    assert_eq!(post_bytes(&b, &bom).0, 200);
    stop_bridge(&mut env, &b);
    let b = env.spawn_bridge();
    assert_eq!(post_bytes(&b, &bom).0, 200);
    into_inbox(&env, "bom.json", &bom);
    let f = file(&env, "bom.json", &bom);
    assert_eq!(items(&submit(&env, &[&f]))[0]["duplicate"], true);
    assert_eq!(all_entries(&env, "default").len(), 1);
    env.drain();
    assert_eq!(env.list("default", QueueState::Done).len(), 1);
    assert_eq!(
        std::fs::read_to_string(env.tree("default").join("bom.txt")).unwrap(),
        "once\n"
    );
    // Applied: still the one entry, whoever asks.
    assert_eq!(post_bytes(&b, &bom).0, 200);
    assert_eq!(items(&submit(&env, &[&f]))[0]["duplicate"], true);
    assert_eq!(all_entries(&env, "default").len(), 1);
}

#[test]
fn id_less_and_bom_patches_are_found_by_ghostctl_by_their_ids() {
    let mut env = TestEnv::new("");
    let b = env.spawn_bridge();
    let bom = with_bom(&patch("bom-found", "b\n"));
    // Fails its precondition, so that it can be retried.
    let anon = br#"{"operations": [{"op": "write", "path": "x.txt", "content": "x", "expect_md5": "00000000000000000000000000000000"}]}"#;
    let anon_id = ghost_core::entry::stored_id(anon).unwrap();
    assert_eq!(post_bytes(&b, &bom).0, 202);
    let (code, body) = post_bytes(&b, anon);
    assert_eq!(code, 202);
    assert_eq!(body["queued"][0]["id"], anon_id.as_str());
    // And one written straight into pending/ by an older version: no record.
    let raw = env.enqueue_raw("default", &with_bom(&patch("raw-bom", "r\n")));
    let ls = ctl_ok(&env, &["ls"]);
    for id in ["bom-found", anon_id.as_str(), "raw-bom"] {
        assert!(ls.contains(id), "ls lacks {id}:\n{ls}");
    }
    let raw_show = ctl_ok(&env, &["show", "raw-bom"]);
    assert!(raw_show.contains(&raw), "{raw_show}");
    ctl_ok(&env, &["delete", "raw-bom", "--reason", "not wanted"]);
    for id in ["bom-found", anon_id.as_str()] {
        assert!(ctl_ok(&env, &["show", id]).contains(id));
        ctl_ok(&env, &["hold", id]);
        ctl_ok(&env, &["release", id]);
    }
    env.drain();
    let failed = env.list("default", QueueState::Failed);
    assert_eq!(failed.len(), 1);
    ctl_ok(&env, &["retry", &anon_id]);
    assert_eq!(
        env.state_of("default", &failed[0]),
        Some(QueueState::Pending)
    );
    ctl_ok(&env, &["delete", &anon_id, "--reason", "done with it"]);
    ctl_ok(&env, &["delete", "bom-found", "--reason", "done with it"]);
    assert_eq!(env.list("default", QueueState::Trash).len(), 3);
    // GET finds them by the same ids.
    for id in ["bom-found", anon_id.as_str(), "raw-bom"] {
        let r = client()
            .get(format!("{}/v1/patches/{id}", b.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{id}");
    }
}

#[test]
fn a_root_from_the_older_layout_still_knows_its_ids() {
    let mut env = TestEnv::new("");
    // Written by the older layout: entries and no id index.
    let bom = with_bom(&patch("old-bom", "o\n"));
    let anon = br#"{"operations": [{"op": "delete", "path": "gone.txt"}]}"#;
    let a = env.enqueue_raw("default", &bom);
    let n = env.enqueue_raw("default", anon);
    let q = env.layout().queue("default");
    ghost_core::fs::durable_move(
        &q.entry_path(QueueState::Pending, &n),
        &q.entry_path(QueueState::Done, &n),
    )
    .unwrap();
    assert!(!env.layout().ids().exists());
    let b = env.spawn_bridge();
    assert!(env.layout().ids().is_dir());
    let (code, body) = post_bytes(&b, &bom);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["duplicates"][0]["name"], a.as_str());
    let f = file(&env, "anon.json", anon);
    let item = items(&submit(&env, &[&f])).remove(0);
    assert_eq!(item["duplicate"], true, "{item}");
    assert_eq!(item["queue_name"], n.as_str());
    assert_eq!(all_entries(&env, "default").len(), 2);
}
