//! ghost-monitor end to end: the real binary on a temp root, a real HTTP
//! server in the test standing in for Slack, and the real Alertmanager
//! (Debian's `prometheus-alertmanager`) where the test needs one.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ghost_core::queue::QueueState;
use serde_json::{json, Value};

use crate::harness::*;

pub const MONITOR: &str = env!("CARGO_BIN_EXE_ghost-monitor");

/// What the receiver answers next: a status, and a `Retry-After` in seconds.
type Answer = (u16, Option<u64>);

/// A webhook receiver: answers each request with the next planned status
/// (200 when none is planned) and keeps the bodies it answered 2xx to.
#[derive(Clone, Default)]
pub struct Hook {
    pub received: Arc<Mutex<Vec<Value>>>,
    pub attempts: Arc<Mutex<usize>>,
    plan: Arc<Mutex<VecDeque<Answer>>>,
}

impl Hook {
    /// Serve on `port` (0: any free one); returns the port.
    pub fn serve(&self, port: u16) -> u16 {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind the webhook port");
        let port = l.local_addr().unwrap().port();
        let me = self.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, len) = loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break (None, 0);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        break (Some(i + 4), len);
                    }
                };
                let Some(start) = head_end else { continue };
                while buf.len() < start + len {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                *me.attempts.lock().unwrap() += 1;
                let (code, retry) = me.plan.lock().unwrap().pop_front().unwrap_or((200, None));
                if (200..300).contains(&code) {
                    let v = serde_json::from_slice(&buf[start..start + len]).unwrap_or(Value::Null);
                    me.received.lock().unwrap().push(v);
                }
                let extra = retry
                    .map(|r| format!("Retry-After: {r}\r\n"))
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n{extra}\r\nok"
                );
            }
        });
        port
    }

    pub fn plan(&self, steps: &[Answer]) {
        self.plan.lock().unwrap().extend(steps.iter().copied());
    }

    pub fn messages(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// Fast monitor timings, no disk alert (a test machine's disk may be full
/// enough to trip it), Slack at `port`.
fn config(slack_port: u16, extra: &str) -> String {
    let base = format!(
        r#"
[monitor]
interval = "300ms"
debounce = "50ms"
group_wait = "400ms"
dedup_window = "1s"
repeat_interval = "1h"
disk_free_min_percent = 0.0

[alerts]
slack_webhook_url = "http://127.0.0.1:{slack_port}/services/T000/B000/secretpart"
timeout = "2s"
retry_base = "100ms"
retry_max = "500ms"
"#
    );
    merge_toml(&base, extra)
}

fn spawn_monitor(env: &mut TestEnv) -> u32 {
    let child = env
        .cmd(MONITOR)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(env.dir.path().join("monitor.stderr"))
                .unwrap(),
        )
        .spawn()
        .expect("spawn monitor");
    let pid = child.id();
    env.children.push(child);
    let hb = env.layout().heartbeat("monitor");
    let up = wait_until(Duration::from_secs(20), || {
        env.assert_alive_named(pid, "monitor");
        ghost_core::heartbeat::read(&hb).is_ok_and(|h| h.pid == pid)
    });
    assert!(up, "the monitor never wrote its heartbeat");
    pid
}

fn stop(env: &mut TestEnv, pid: u32) {
    let mut c = env.take_child(pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let st = wait_exit(&mut c, Duration::from_secs(10)).expect("monitor stops on SIGTERM");
    assert!(st.success(), "exit status {st:?}");
}

/// An entry parked in `.stuck/`, with the alert the executor raises for it.
fn stuck_entry(env: &TestEnv, target: &str) -> String {
    let name = env.enqueue_json(target, &json!({"id": "p", "operations": []}));
    let q = env.layout().queue(target);
    let rec = ghost_core::queue::EntryRecord {
        reason: Some(ghost_core::queue::Reason {
            kind: "transient".into(),
            message: "3 attempts failed".into(),
            at: ghost_core::time::now_rfc3339(),
            hint: None,
        }),
        ..Default::default()
    };
    ghost_core::alert::write(
        &env.layout(),
        &ghost_core::alert::Alert::patch_stuck(target, &name, "p", "attempts spent"),
    )
    .unwrap();
    q.transition(&name, QueueState::Pending, QueueState::Stuck, &rec)
        .unwrap();
    name
}

fn alerts_jsonl(env: &TestEnv) -> Vec<Value> {
    std::fs::read_to_string(env.layout().alerts_log())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text_of(m: &Value) -> String {
    m["text"].as_str().unwrap_or_default().to_string()
}

#[test]
fn stuck_patch_one_message_restart_sends_nothing_twice_resolved_once() {
    let hook = Hook::default();
    let port = hook.serve(0);
    let mut env = TestEnv::new(&config(port, ""));
    let pid = spawn_monitor(&mut env);
    let name = stuck_entry(&env, "default");
    assert!(
        wait_until(Duration::from_secs(20), || hook.count() == 1),
        "one Slack message"
    );
    let m = &hook.messages()[0];
    let t = text_of(m);
    assert!(t.starts_with("[FIRING] CRITICAL patch_stuck"), "{t}");
    let book = ghost_core::alerting::read_book(&env.layout()).unwrap();
    let ep = &book.episodes[&format!("patch_stuck:default:{name}")];
    assert!(
        t.contains(&ep.uuid),
        "Slack text carries the episode UUID: {t}"
    );
    let lines = alerts_jsonl(&env);
    assert!(lines.iter().any(|l| l["type"] == "notification"
        && l["notification"]["alerts"][0]["uuid"] == ep.uuid.as_str()));
    assert!(wait_until(Duration::from_secs(10), || alerts_jsonl(&env)
        .iter()
        .any(|l| l["type"] == "delivery"
            && l["channel"] == "slack"
            && l["result"] == "delivered")));
    // The inbox alert was taken in, kept in .done/, and was the same episode.
    assert!(ghost_core::alert::inbox(&env.layout()).unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(env.layout().alerts_inbox_done())
            .unwrap()
            .count(),
        1
    );
    // The Slack URL is a secret: in no log or file the monitor writes.
    for f in [env.layout().log_file("monitor"), env.layout().alerts_log()] {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(
            !text.contains("secretpart"),
            "{} leaks the Slack URL",
            f.display()
        );
    }

    // A restart mid-episode sends nothing again.
    stop(&mut env, pid);
    let pid = spawn_monitor(&mut env);
    assert!(holds_for(Duration::from_secs(2), || hook.count() == 1));

    // Cleared: one resolved message, same UUID, then nothing.
    let out = env.ghostctl(&["retry", &name, "--reason", "fixed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(Duration::from_secs(20), || hook.count() == 2));
    let r = text_of(&hook.messages()[1]);
    assert!(r.starts_with("[RESOLVED]") && r.contains(&ep.uuid), "{r}");
    stop(&mut env, pid);
    let _pid = spawn_monitor(&mut env);
    assert!(holds_for(Duration::from_secs(2), || hook.count() == 2));
    let out = env.ghostctl(&["alerts", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["firing"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["resolved"][0]["uuid"], ep.uuid.as_str());
}

#[test]
fn slack_refusing_failing_and_rate_limiting_then_recovering_gets_exactly_one_delivery() {
    let port = free_port();
    let mut env = TestEnv::new(&config(port, ""));
    let _pid = spawn_monitor(&mut env);
    stuck_entry(&env, "default");
    // Nothing listens: connection refused, written down locally meanwhile.
    let local = env.layout().local_alerts();
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(&local)
            .is_ok_and(
                |t| t.contains("patch_stuck") && t.contains("slack failed")
            )),
        "LOCAL_ALERTS written while Slack is unreachable"
    );
    // Written right after the LOCAL_ALERTS line.
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(env.layout().critical_alert())
            .is_ok_and(|t| t.contains("patch_stuck"))
    }));
    let hook = Hook::default();
    hook.plan(&[(500, None), (429, Some(1))]);
    hook.serve(port);
    assert!(wait_until(Duration::from_secs(30), || hook.count() == 1));
    assert!(holds_for(Duration::from_secs(2), || hook.count() == 1));
    assert!(*hook.attempts.lock().unwrap() >= 3, "500, 429, then 200");
    let results: Vec<String> = alerts_jsonl(&env)
        .iter()
        .filter(|l| l["type"] == "delivery")
        .map(|l| l["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        results.iter().filter(|r| *r == "delivered").count(),
        1,
        "{results:?}"
    );
    assert!(
        results.iter().filter(|r| *r == "failed").count() >= 3,
        "{results:?}"
    );
    assert!(
        std::fs::read_to_string(&local).unwrap().lines().count() == 1,
        "one local line per notification, not per attempt"
    );
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_dir(
            env.layout().alerts_outbox()
        )
        .unwrap()
        .flatten()
        .all(|e| e.file_name().to_string_lossy().starts_with('.'))),
        "outbox empty once delivered"
    );
}

#[test]
fn hundred_stuck_patches_are_one_message() {
    let hook = Hook::default();
    let port = hook.serve(0);
    let mut env = TestEnv::new(&config(port, ""));
    // Parked (and their alerts raised) at once, as an executor would after an
    // outage: the monitor finds the whole burst in its first cycle.
    for _ in 0..100 {
        stuck_entry(&env, "default");
    }
    let _pid = spawn_monitor(&mut env);
    assert!(wait_until(Duration::from_secs(30), || hook.count() >= 1));
    assert!(
        holds_for(Duration::from_secs(2), || hook.count() == 1),
        "{:?}",
        hook.messages().iter().map(text_of).collect::<Vec<_>>()
    );
    let t = text_of(&hook.messages()[0]);
    assert!(t.contains("(+99 more)"), "{t}");
    let book = ghost_core::alerting::read_book(&env.layout()).unwrap();
    assert_eq!(book.episodes.len(), 100);
}

#[test]
fn a_silence_suppresses_and_expires() {
    let hook = Hook::default();
    let port = hook.serve(0);
    let mut env = TestEnv::new(&config(port, ""));
    let _pid = spawn_monitor(&mut env);
    let out = env.ghostctl(&[
        "silence",
        "patch_stuck:*",
        "--for",
        "3s",
        "--reason",
        "maintenance",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(Duration::from_secs(10), || {
        !ghost_core::alerting::read_book(&env.layout())
            .unwrap()
            .silences
            .is_empty()
    }));
    stuck_entry(&env, "default");
    assert!(holds_for(Duration::from_millis(1500), || hook.count() == 0));
    let out = env.ghostctl(&["alerts"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("maintenance") && text.contains("not yet notified"),
        "{text}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || hook.count() == 1),
        "sent once the silence ended"
    );
    assert!(holds_for(Duration::from_secs(1), || hook.count() == 1));
}

#[test]
fn a_stale_heartbeat_goes_late_then_down() {
    let hook = Hook::default();
    let port = hook.serve(0);
    let mut env = TestEnv::new(&config(port, "[heartbeat]\nstale_after = \"2s\"\n"));
    let _pid = spawn_monitor(&mut env);
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let hb = json!({"component": "bridge", "pid": sleeper.id(), "status": "running",
        "started_at": ghost_core::time::now_rfc3339(), "updated_at": ghost_core::time::now_rfc3339(),
        "version": "t", "details": {}});
    ghost_core::fs::write_json(&env.layout().heartbeat("bridge"), &hb).unwrap();
    let state = |env: &TestEnv| {
        ghost_core::health::read(&env.layout())
            .ok()
            .flatten()
            .and_then(|h| h.components.get("bridge").map(|c| c.state))
    };
    use ghost_core::health::BeatState;
    assert!(wait_until(Duration::from_secs(10), || state(&env)
        == Some(BeatState::Late)));
    assert!(wait_until(Duration::from_secs(10), || state(&env)
        == Some(BeatState::Down)));
    // Late then down is one episode, escalated: two messages with one UUID.
    assert!(wait_until(Duration::from_secs(10), || hook.count() == 2));
    let m = hook.messages();
    assert!(
        text_of(&m[0]).starts_with("[FIRING] WARNING heartbeat"),
        "{}",
        text_of(&m[0])
    );
    assert!(
        text_of(&m[1]).starts_with("[ESCALATED] CRITICAL heartbeat"),
        "{}",
        text_of(&m[1])
    );
    let uuid = |v: &Value| {
        v["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .split("episode `")
            .nth(1)
            .unwrap()[..36]
            .to_string()
    };
    assert_eq!(uuid(&m[0]), uuid(&m[1]));
    // A fresh heartbeat from a process that is gone is down too.
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let mut hb = hb;
    hb["updated_at"] = json!(ghost_core::time::now_rfc3339());
    ghost_core::fs::write_json(&env.layout().heartbeat("bridge"), &hb).unwrap();
    assert!(holds_for(Duration::from_secs(1), || state(&env)
        == Some(BeatState::Down)));
    let out = env.ghostctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("DOWN") && text.contains("heartbeat:bridge"),
        "{text}"
    );
}

#[test]
fn a_corrupted_summary_is_detected() {
    let hook = Hook::default();
    let port = hook.serve(0);
    let mut env = TestEnv::new(&config(port, ""));
    let name = env.enqueue_json(
        "default",
        &json!({"id": "sum-1", "operations": [{"op": "write", "path": "a.txt", "content": "hi\n", "expect_md5": null}]}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &name), Some(QueueState::Done));
    let _pid = spawn_monitor(&mut env);
    assert!(
        holds_for(Duration::from_secs(1), || hook.count() == 0),
        "intact: nothing to say"
    );
    let p = env
        .layout()
        .summaries("default")
        .join(format!("{name}.json"));
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[10] ^= 0x20;
    ghost_core::fs::durable_write(&p, &bytes, 0o600).unwrap();
    // A verified summary is checked again in the full sweep: make it due by
    // restarting the monitor (a new monitor sweeps everything first).
    let pid = env.children.last().unwrap().id();
    stop(&mut env, pid);
    let _pid = spawn_monitor(&mut env);
    assert!(wait_until(Duration::from_secs(20), || hook.count() == 1));
    let t = text_of(&hook.messages()[0]);
    assert!(t.contains("summary_corrupt") && t.contains(&name), "{t}");
    let h = ghost_core::health::read(&env.layout()).unwrap().unwrap();
    assert_eq!(h.summaries.corrupt, [format!("default/{name}")]);
}

/// A patch whose after-check fails, applied by the real executor: it ends
/// in `failed/` with its summary.
fn failed_entry(env: &TestEnv, id: &str) -> String {
    let name = env.enqueue_json(
        "default",
        &json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": "x\n"}], "checks": {"after": [{"argv": ["false"]}]}}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &name), Some(QueueState::Failed));
    name
}

/// The `patch_failed` notifications in `alerts/alerts.jsonl`, as the queue
/// names they are about.
fn failed_notified(env: &TestEnv) -> Vec<String> {
    alerts_jsonl(env)
        .iter()
        .filter(|l| l["type"] == "notification" && l["notification"]["rule"] == "patch_failed")
        .flat_map(|l| {
            l["notification"]["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|a| a["subject"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_patch_failed_while_the_monitor_was_down_is_told_once_after_it_starts() {
    let hook = Hook::default();
    let port = hook.serve(0);
    let mut env = TestEnv::new(&config(port, ""));
    // Failed before any monitor ran on this root: recorded, not news.
    let old = failed_entry(&env, "old");
    let pid = spawn_monitor(&mut env);
    assert!(wait_until(Duration::from_secs(20), || {
        ghost_core::alerting::read_book(&env.layout())
            .is_ok_and(|b| b.failed_seen.is_some_and(|s| s["default"] == [old.clone()]))
    }));
    assert!(
        holds_for(Duration::from_secs(1), || hook.count() == 0),
        "{:?}",
        hook.messages()
    );
    stop(&mut env, pid);

    // Fails while no monitor runs: the next one tells it, once.
    let name = failed_entry(&env, "new");
    let pid = spawn_monitor(&mut env);
    assert!(
        wait_until(Duration::from_secs(20), || hook.count() == 1),
        "one message"
    );
    let t = text_of(&hook.messages()[0]);
    assert!(t.contains("patch_failed") && t.contains(&name), "{t}");
    assert!(!t.contains(&old), "{t}");
    assert_eq!(failed_notified(&env), std::slice::from_ref(&name));
    assert!(holds_for(Duration::from_secs(1), || hook.count() == 1));

    // A restart tells nothing again.
    stop(&mut env, pid);
    let _pid = spawn_monitor(&mut env);
    assert!(holds_for(Duration::from_secs(2), || hook.count() == 1));
    assert_eq!(failed_notified(&env), [name]);
}

// ---- Alertmanager ----

/// The real Alertmanager on a loopback port, or None (with the reason
/// printed) outside CI when it is not installed.
struct Am {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Am {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alertmanager() -> Option<Am> {
    let bin = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(bin) = bin else {
        skip(
            "the Alertmanager round trip",
            "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)",
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("am.yml");
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(b"route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
        .unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alertmanager");
    let url = format!("http://127.0.0.1:{port}");
    let am = Am {
        child,
        url: url.clone(),
        _dir: dir,
    };
    let c = reqwest::blocking::Client::new();
    assert!(
        wait_until(Duration::from_secs(30), || c
            .get(format!("{url}/-/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success())),
        "alertmanager never became ready"
    );
    Some(am)
}

fn am_alerts(url: &str) -> Vec<Value> {
    reqwest::blocking::get(format!("{url}/api/v2/alerts"))
        .ok()
        .and_then(|r| r.text().ok())
        .and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
        .unwrap_or_default()
}

#[test]
fn alertmanager_round_trip_firing_then_resolved() {
    let Some(am) = alertmanager() else { return };
    let hook = Hook::default();
    let port = hook.serve(0);
    let mut env = TestEnv::new(&config(
        port,
        &format!("[alerts]\nalertmanager_url = \"{}\"\n", am.url),
    ));
    let _pid = spawn_monitor(&mut env);
    let name = stuck_entry(&env, "default");
    let fp = format!("patch_stuck:default:{name}");
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            found = am_alerts(&am.url)
                .into_iter()
                .find(|a| a["labels"]["fingerprint"] == fp.as_str());
            found.is_some()
        }),
        "the alert reached Alertmanager"
    );
    let a = found.unwrap();
    let book = ghost_core::alerting::read_book(&env.layout()).unwrap();
    assert_eq!(a["annotations"]["uuid"], book.episodes[&fp].uuid.as_str());
    assert_eq!(a["labels"]["alertname"], "patch_stuck");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["status"]["state"], "active");
    let out = env.ghostctl(&["retry", &name, "--reason", "fixed"]);
    assert!(out.status.success());
    assert!(
        wait_until(Duration::from_secs(30), || !am_alerts(&am.url)
            .iter()
            .any(|a| a["labels"]["fingerprint"] == fp.as_str())),
        "resolved: Alertmanager no longer lists it as active"
    );
    assert!(wait_until(Duration::from_secs(10), || hook.count() == 2));
}

#[test]
fn the_watchdog_giving_up_reaches_slack_and_alertmanager() {
    let am = alertmanager();
    let hook = Hook::default();
    let port = hook.serve(0);
    let am_line = am
        .as_ref()
        .map(|a| format!("alertmanager_url = \"{}\"\n", a.url))
        .unwrap_or_default();
    let env = TestEnv::new(&config(
        port,
        &format!(
            r#"
[alerts]
{am_line}
[watchdog]
max_restarts = 1
restart_delay = "50ms"
restart_delay_max = "100ms"
start_timeout = "10s"
stop_grace = "2s"

[watchdog.children.bridge]
enabled = false

[watchdog.children.executor]
enabled = false

[watchdog.children.flaky]
command = "/bin/false"
heartbeat = false
root_args = false
"#
        ),
    ));
    let mut wd = env
        .cmd(WATCHDOG)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the watchdog");
    let ok = wait_until(Duration::from_secs(30), || {
        hook.messages()
            .iter()
            .any(|m| text_of(m).contains("watchdog_gave_up"))
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wd.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let st = wait_exit(&mut wd, Duration::from_secs(20));
    assert!(
        ok,
        "Slack got the watchdog's give-up: {:?}",
        hook.messages()
    );
    assert!(st.is_some(), "the watchdog stops");
    let gave_up: Vec<Value> = hook
        .messages()
        .into_iter()
        .filter(|m| text_of(m).contains("watchdog_gave_up"))
        .collect();
    assert_eq!(gave_up.len(), 1, "{gave_up:?}");
    // The monitor the watchdog started wrote the heartbeat.
    let hb = ghost_core::heartbeat::read(&env.layout().heartbeat("monitor")).unwrap();
    assert_ne!(hb.pid, 0);
    if let Some(am) = &am {
        // Sent before the watchdog stopped: delivered by then (or soon).
        let lines = alerts_jsonl(&env);
        assert!(
            lines
                .iter()
                .any(|l| l["channel"] == "alertmanager" && l["result"] == "delivered"),
            "{lines:?}"
        );
        let listed = am_alerts(&am.url);
        assert!(
            listed
                .iter()
                .any(|a| a["labels"]["fingerprint"] == "watchdog_gave_up:flaky"),
            "{listed:?}"
        );
    }
}
