//! The bridge end to end: the real binary, a real HTTP client, the inbox.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ghost_core::queue::QueueState;
use hmac::{Mac, SimpleHmac};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::harness::*;

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn post(b: &Bridge, route: &str, ctype: &str, body: impl Into<Vec<u8>>) -> Response {
    client()
        .post(format!("{}{route}", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", ctype)
        .body(body.into())
        .send()
        .expect("request")
}

fn post_json(b: &Bridge, v: &Value) -> (u16, Value) {
    answer(post(
        b,
        "/v1/patches",
        "application/json",
        serde_json::to_vec(v).unwrap(),
    ))
}

fn answer(r: Response) -> (u16, Value) {
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    (
        code,
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{code}: body is not JSON ({e}): {text}")),
    )
}

fn patch(id: &str, content: &str) -> Value {
    json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": content}]})
}

/// `X-Hub-Signature-256`: the HMAC of the body alone.
pub fn sign(body: &[u8], key: &str) -> String {
    let mut mac = SimpleHmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `X-Ghost-Signature`: the HMAC of `v1:<ts>:<METHOD>:<path>:<body>`.
pub fn sign_v1(key: &str, ts: u64, method: &str, path: &str, body: &[u8]) -> String {
    let mut mac = SimpleHmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("v1:{ts}:{method}:{path}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn every_answer_code_of_the_api() {
    let mut env =
        TestEnv::new("[bridge]\nmax_body_bytes = \"64KiB\"\nmax_patch_bytes = \"32KiB\"\n");
    let b = env.spawn_bridge();
    let q = env.layout().queue("default");

    // 202: durable in pending/ with the exact bytes sent, before the answer.
    let body = serde_json::to_vec(&patch("p1", "one\n")).unwrap();
    let (code, v) = answer(post(&b, "/v1/patches", "application/json", body.clone()));
    assert_eq!(code, 202, "{v}");
    let name = v["queued"][0]["name"].as_str().unwrap().to_string();
    assert_eq!(v["queued"][0]["id"], "p1");
    assert_eq!(v["queued"][0]["target"], "default");
    assert_eq!(
        std::fs::read(q.entry_path(QueueState::Pending, &name)).unwrap(),
        body
    );

    // 200: the same again is the existing entry; 409: same id, other content.
    let (code, v) = answer(post(&b, "/v1/patches", "application/json", body.clone()));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["duplicates"][0]["name"], name.as_str());
    let (code, v) = post_json(&b, &patch("p1", "other\n"));
    assert_eq!(code, 409, "{v}");
    assert_eq!(q.list(QueueState::Pending).unwrap().len(), 1);

    // 400: field-level errors for each class, nothing queued.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let long_id = "x".repeat(10_000);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"operations\": [".to_vec(), "(document)"),
        (deep.into_bytes(), "(document)"),
        (
            serde_json::to_vec(
                &json!({"id": long_id, "operations": [{"op": "delete", "path": "a"}]}),
            )
            .unwrap(),
            "id",
        ),
        (
            serde_json::to_vec(
                &json!({"operations": [{"op": "write", "path": "../etc/passwd", "content": "x"}]}),
            )
            .unwrap(),
            "operations[0].path",
        ),
        (
            serde_json::to_vec(
                &json!({"operations": [{"op": "write", "path": "/abs", "content": "x"}]}),
            )
            .unwrap(),
            "operations[0].path",
        ),
        (
            serde_json::to_vec(
                &json!({"operations": [{"op": "write", "path": "a\u{0}b", "content": "x"}]}),
            )
            .unwrap(),
            "operations[0].path",
        ),
        (
            serde_json::to_vec(
                &json!({"target": "nowhere", "operations": [{"op": "delete", "path": "a"}]}),
            )
            .unwrap(),
            "target",
        ),
        (
            serde_json::to_vec(&json!({"operations": [{"op": "teleport", "path": "a"}]})).unwrap(),
            "operations[0].op",
        ),
    ];
    for (body, field) in cases {
        let (code, v) = answer(post(&b, "/v1/patches", "application/json", body));
        assert_eq!(code, 400, "{field}: {v}");
        assert!(v.to_string().contains(field), "{field} not named: {v}");
    }
    let (_, v) = post_json(
        &b,
        &json!({"target": "nowhere", "operations": [{"op": "delete", "path": "a"}]}),
    );
    assert!(v.to_string().contains("known targets"), "{v}");

    // 401: no credentials, or a wrong token.
    let r = client()
        .post(format!("{}/v1/patches", b.url))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client()
        .post(format!("{}/v1/patches", b.url))
        .header("Authorization", "Bearer wrong")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&patch("nope", "x")).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // 413 over the body limit; 415 for a content type it does not take.
    let (code, v) = answer(post(
        &b,
        "/v1/patches",
        "application/json",
        vec![b' '; 70 * 1024],
    ));
    assert_eq!(code, 413, "{v}");
    let (code, v) = answer(post(&b, "/v1/patches", "application/xml", "<patch/>"));
    assert_eq!(code, 415, "{v}");

    // 503 while paused.
    ghost_core::fs::durable_write(&env.layout().state().join("pause.json"), b"{}", 0o600).unwrap();
    let r = post(
        &b,
        "/v1/patches",
        "application/json",
        serde_json::to_vec(&patch("p2", "x")).unwrap(),
    );
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_some());
    ghost_core::fs::durable_remove(&env.layout().state().join("pause.json")).unwrap();

    // GET: the state of a patch by id; 404 for an unknown one; /healthz needs no auth.
    let r = client()
        .get(format!("{}/v1/patches/p1", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .unwrap();
    let (code, v) = answer(r);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "pending");
    let r = client()
        .get(format!("{}/v1/patches/unknown", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(client()
        .get(format!("{}/healthz", b.url))
        .send()
        .unwrap()
        .status()
        .is_success());

    // The compatibility routes.
    let legacy = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/legacy/patch-router-test-patch.json"),
    )
    .unwrap();
    let (code, v) = answer(post(&b, "/ingest/patch", "application/json", serde_json::to_vec(&json!({"patch": serde_json::from_slice::<Value>(&legacy).unwrap(), "metadata": {"from": "test"}})).unwrap()));
    assert_eq!(code, 202, "{v}");
    let webhook = json!({"id": "hook-1", "role": "ui_patch", "target_file": "t.tsx", "patch": {"content": "export {}\n"}});
    let (code, v) = answer(post(
        &b,
        "/webhook",
        "application/json",
        serde_json::to_vec(&webhook).unwrap(),
    ));
    assert_eq!(code, 202, "{v}");
    assert_eq!(q.list(QueueState::Pending).unwrap().len(), 3);
}

#[test]
fn the_queue_high_water_mark_answers_429_with_retry_after() {
    let mut env = TestEnv::new("[bridge]\nhigh_water_mark = 2\nretry_after = \"7s\"\n");
    let b = env.spawn_bridge();
    for i in 0..2 {
        assert_eq!(post_json(&b, &patch(&format!("h{i}"), "x")).0, 202);
    }
    // The depth estimate refreshes about once a second.
    let r = (0..50)
        .find_map(|i| {
            let r = post(
                &b,
                "/v1/patches",
                "application/json",
                serde_json::to_vec(&patch(&format!("over{i}"), "x")).unwrap(),
            );
            (r.status().as_u16() == 429).then_some(r)
        })
        .expect("never answered 429");
    assert_eq!(r.headers().get("retry-after").unwrap(), "7");
}

#[test]
fn hmac_signatures_are_accepted_and_bad_ones_refused() {
    let mut env = TestEnv::new("");
    let b = env.spawn_bridge();
    let body = serde_json::to_vec(&patch("signed", "s\n")).unwrap();
    let send = |headers: &[(&str, String)], body: &[u8]| {
        let mut r = client()
            .post(format!("{}/v1/patches", b.url))
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.body(body.to_vec()).send().unwrap()
    };
    // The v1 form (timestamp, method, path, body) and GitHub's body-only form.
    let ts = unix_now();
    let r = send(
        &[
            ("X-Ghost-Timestamp", ts.to_string()),
            (
                "X-Ghost-Signature",
                sign_v1(HMAC_KEY, ts, "POST", "/v1/patches", &body),
            ),
        ],
        &body,
    );
    assert_eq!(r.status().as_u16(), 202);
    let r = send(&[("X-Hub-Signature-256", sign(&body, HMAC_KEY))], &body);
    assert_eq!(r.status().as_u16(), 200, "a duplicate");
    for bad in [
        sign_v1("another key", ts, "POST", "/v1/patches", &body),
        sign_v1(HMAC_KEY, ts, "POST", "/v1/patches", b"another body"),
        // The old body-only form is no longer taken on X-Ghost-Signature.
        sign(&body, HMAC_KEY),
        "v1=zz".into(),
        "md5=00".into(),
    ] {
        let r = send(
            &[
                ("X-Ghost-Timestamp", ts.to_string()),
                ("X-Ghost-Signature", bad.clone()),
            ],
            &body,
        );
        assert_eq!(r.status().as_u16(), 401, "{bad}");
    }
    assert_eq!(env.list("default", QueueState::Pending).len(), 1);
}

const TRANSCRIPT: &str = "Here is the first change:\n\n```json\n{\"id\": \"t-good-1\", \"operations\": [{\"op\": \"write\", \"path\": \"one.txt\", \"content\": \"1\\n\"}]}\n```\n\nThis one is broken:\n\n```json\n{\"id\": \"t-bad\", \"operations\": [{\"op\": \"write\", \"path\": \"../escape\", \"content\": \"x\"}]}\n```\n\nAnd the last one, in YAML:\n\n```yaml\nid: t-good-2\noperations:\n  - op: write\n    path: two.txt\n    content: \"2\\n\"\n```\n\n```rust\nfn not_a_patch() {}\n```\n";

#[test]
fn a_transcript_with_one_bad_block_queues_the_good_ones_over_http_and_through_the_inbox() {
    let mut env =
        TestEnv::new("[bridge]\ninbox_settle = \"100ms\"\ninbox_scan_interval = \"50ms\"\n");
    let b = env.spawn_bridge();
    let (code, v) = answer(post(&b, "/v1/patches", "text/markdown", TRANSCRIPT));
    assert_eq!(code, 202, "{v}");
    let ids: Vec<&str> = v["queued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t-good-1", "t-good-2"]);
    assert_eq!(v["rejected"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["rejected"].to_string().contains("operations[0].path"),
        "{v}"
    );
    assert_eq!(v["rejected"][0]["block"], 2);
    // No patch at all: 400.
    let (code, _) = answer(post(
        &b,
        "/v1/patches",
        "text/plain",
        "just words, no blocks",
    ));
    assert_eq!(code, 400);

    // The same transcript through the inbox (other ids so it is not a duplicate).
    let text = TRANSCRIPT
        .replace("t-good", "i-good")
        .replace("t-bad", "i-bad");
    let tmp = env.layout().inbox().join(".chat.md.part");
    ghost_core::fs::durable_write(&tmp, text.as_bytes(), 0o600).unwrap();
    ghost_core::fs::durable_move(&tmp, &env.layout().inbox().join("chat.md")).unwrap();
    let rejected = env.layout().inbox_rejected();
    assert!(wait_until(Duration::from_secs(20), || std::fs::read_dir(
        &rejected
    )
    .unwrap()
    .count()
        == 2));
    let err_file = std::fs::read_dir(&rejected)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".error.json"))
        .unwrap();
    let rec: Value = serde_json::from_slice(&std::fs::read(err_file.path()).unwrap()).unwrap();
    assert_eq!(rec["errors"].as_array().unwrap().len(), 1, "{rec}");
    assert_eq!(rec["errors"][0]["block"], 2, "{rec}");
    assert_eq!(rec["queued"].as_array().unwrap().len(), 2, "{rec}");
    assert_eq!(env.list("default", QueueState::Pending).len(), 4);
}

#[test]
fn a_file_written_slowly_into_the_inbox_is_not_taken_early() {
    let mut env =
        TestEnv::new("[bridge]\ninbox_settle = \"400ms\"\ninbox_scan_interval = \"50ms\"\n");
    let _b = env.spawn_bridge();
    let path = env.layout().inbox().join("slow.json");
    let body = serde_json::to_vec(&patch("slow", "written slowly\n")).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    use std::io::Write;
    for chunk in body.chunks(8) {
        f.write_all(chunk).unwrap();
        f.sync_all().unwrap();
        // The writer pauses shorter than the settle time between chunks.
        std::thread::sleep(Duration::from_millis(100));
        assert!(path.exists(), "taken while still being written");
        assert!(env.list("default", QueueState::Pending).is_empty());
    }
    drop(f);
    assert!(wait_until(Duration::from_secs(20), || env
        .list("default", QueueState::Pending)
        .len()
        == 1));
    assert!(wait_until(Duration::from_secs(5), || !path.exists()));
    let processed: Vec<String> = std::fs::read_dir(env.layout().inbox_processed())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(processed.len(), 2, "{processed:?}");
    let name = &env.list("default", QueueState::Pending)[0];
    assert_eq!(
        std::fs::read(
            env.layout()
                .queue("default")
                .entry_path(QueueState::Pending, name)
        )
        .unwrap(),
        body
    );
}

#[test]
fn a_duplicate_submission_is_queued_once_across_http_inbox_and_restarts() {
    let mut env =
        TestEnv::new("[bridge]\ninbox_settle = \"100ms\"\ninbox_scan_interval = \"50ms\"\n");
    let b = env.spawn_bridge();
    let p = patch("dup", "d\n");
    assert_eq!(post_json(&b, &p).0, 202);
    assert_eq!(post_json(&b, &p).0, 200);
    let f = env.layout().inbox().join("dup.json");
    ghost_core::fs::durable_write(&f, &serde_json::to_vec(&p).unwrap(), 0o600).unwrap();
    assert!(wait_until(Duration::from_secs(20), || !f.exists()));
    // After a restart the bridge still knows the id.
    kill(Pid::from_raw(b.pid as i32), Signal::SIGTERM).unwrap();
    let mut child = env.take_child(b.pid);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15)).and_then(|s| s.code()),
        Some(0)
    );
    let b = env.spawn_bridge();
    assert_eq!(post_json(&b, &p).0, 200);
    assert_eq!(env.list("default", QueueState::Pending).len(), 1);
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_patch_and_leaves_no_partial_file() {
    let mut env = TestEnv::new("[bridge]\nhigh_water_mark = 0\n");
    let b = env.spawn_bridge();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let total = 400;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = b.url.clone();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (acked, next, url) = (acked.clone(), next.clone(), url.clone());
            std::thread::spawn(move || {
                let c = Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let r = c
                        .post(format!("{url}/v1/patches"))
                        .header("Authorization", format!("Bearer {TOKEN}"))
                        .header("Content-Type", "application/json")
                        .body(
                            serde_json::to_vec(&patch(&format!("load-{i}"), &format!("{i}\n")))
                                .unwrap(),
                        )
                        .send();
                    match r {
                        Ok(r) if r.status().as_u16() == 202 => {
                            let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
                            acked.lock().unwrap().push((
                                format!("load-{i}"),
                                v["queued"][0]["name"].as_str().unwrap().to_string(),
                            ));
                        }
                        // The bridge died under us: that request was never acknowledged.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(30), || acked
        .lock()
        .unwrap()
        .len()
        >= 100));
    kill(Pid::from_raw(b.pid as i32), Signal::SIGKILL).unwrap();
    env.take_child(b.pid).wait().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let q = env.layout().queue("default");
    let pending = q.list(QueueState::Pending).unwrap();
    // Every acknowledged patch is there, under the name it was given.
    for (id, name) in &acked {
        assert!(
            pending.contains(name),
            "acknowledged {id} ({name}) is missing"
        );
    }
    // Nothing in pending/ is partial.
    for name in &pending {
        let v: Value = serde_json::from_slice(
            &std::fs::read(q.entry_path(QueueState::Pending, name)).unwrap(),
        )
        .expect("a whole JSON document");
        assert!(v["id"].as_str().unwrap().starts_with("load-"));
    }
    // After a restart, sending everything again queues each patch exactly once.
    let b = env.spawn_bridge();
    for i in 0..total {
        let (code, v) = post_json(&b, &patch(&format!("load-{i}"), &format!("{i}\n")));
        assert!(matches!(code, 200 | 202), "{i}: {code} {v}");
    }
    let mut ids: Vec<String> = q
        .list(QueueState::Pending)
        .unwrap()
        .iter()
        .map(|n| {
            serde_json::from_slice::<Value>(
                &std::fs::read(q.entry_path(QueueState::Pending, n)).unwrap(),
            )
            .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), total, "each patch exactly once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total);
    eprintln!("{} acknowledged before the kill", acked.len());
}

#[test]
fn a_generated_token_is_private_and_never_logged() {
    let mut env = TestEnv::new("");
    let b = env.spawn_bridge_with(&[]);
    let token_file = env.layout().secrets().join("bridge_token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(token.len() >= 32);
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = client()
        .post(format!("{}/v1/patches", b.url))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&patch("gen", "g")).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    kill(Pid::from_raw(b.pid as i32), Signal::SIGTERM).unwrap();
    let mut child = env.take_child(b.pid);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15)).and_then(|s| s.code()),
        Some(0)
    );
    let log = std::fs::read_to_string(env.layout().logs().join("bridge.log")).unwrap();
    let mut stderr = String::new();
    for e in std::fs::read_dir(env.dir.path()).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".stderr") {
            stderr.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    assert!(
        !log.contains(&token) && !stderr.contains(&token),
        "the token leaked into a log"
    );
    assert!(
        stderr.contains(&token_file.display().to_string()),
        "start-up must say where the token is:\n{stderr}"
    );
}

#[test]
fn a_second_bridge_on_the_same_root_refuses_naming_the_pid() {
    let mut env = TestEnv::new("");
    let b = env.spawn_bridge();
    let out = env
        .cmd(BRIDGE)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("GHOST_BRIDGE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("pid {}", b.pid)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn from_http_to_an_applied_patch() {
    let mut env = TestEnv::new("");
    let b = env.spawn_bridge();
    assert_eq!(
        post_json(&b, &patch("flow", "through the whole flow\n")).0,
        202
    );
    env.drain();
    assert_eq!(
        std::fs::read_to_string(env.tree("default").join("flow.txt")).unwrap(),
        "through the whole flow\n"
    );
    let r = client()
        .get(format!("{}/v1/patches/flow", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .unwrap();
    let (code, v) = answer(r);
    assert_eq!(code, 200);
    assert_eq!(v["state"], "done");
    assert_eq!(v["summary"]["status"], "applied");
}
