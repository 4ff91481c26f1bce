//! The bridge under hostile load, end to end: the real binary on loopback,
//! raw sockets for what a well-behaved client would never send. Every count
//! and duration is bounded; every wait is on a condition.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghost_core::queue::QueueState;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::bridge::{sign, sign_v1, unix_now};
use crate::harness::*;

/// Raise this test process's soft open-file limit to at least `want` (within
/// the hard limit); children spawned afterwards inherit it. Returns the limit.
fn raise_nofile(want: u64) -> u64 {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        let new = want.min(hard);
        setrlimit(Resource::RLIMIT_NOFILE, new, hard).unwrap();
        return new;
    }
    soft
}

fn addr(b: &Bridge) -> String {
    b.url.trim_start_matches("http://").to_string()
}

/// The status code of the answer on `s`, read up to the end of its head.
fn read_status(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// True once the server has closed `s` (EOF, a reset, or an answer followed by EOF).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap()
}

fn healthz_ok(b: &Bridge, timeout: Duration) -> bool {
    client(timeout)
        .get(format!("{}/healthz", b.url))
        .send()
        .is_ok_and(|r| r.status().as_u16() == 200)
}

fn post_patch(b: &Bridge, id: &str, timeout: Duration) -> Option<u16> {
    let body = json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": "x\n"}]});
    client(timeout)
        .post(format!("{}/v1/patches", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

/// The issue's attack: 32 MiB bodies sent slowly behind a fake signature.
/// Each is answered 401 from its headers, before its body is sent; signed
/// bodies without a declared length are read only within the unverified
/// budget and cut off by the body timeout; the bridge stays small.
#[test]
fn slow_32_mib_bodies_with_fake_signatures_are_refused_at_once_in_little_memory() {
    raise_nofile(4096);
    let mut env = TestEnv::new("[bridge]\nbody_timeout = \"3s\"\nrate_limit = 0\n");
    let b = env.spawn_bridge();
    let a = addr(&b);
    let mut held = Vec::new();
    for i in 0..60 {
        let mut s = TcpStream::connect(&a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let sig = if i % 2 == 0 {
            format!(
                "X-Ghost-Timestamp: {}\r\nX-Ghost-Signature: v1={}",
                unix_now(),
                "ab".repeat(32)
            )
        } else {
            format!("X-Hub-Signature-256: sha256={}", "cd".repeat(32))
        };
        let head = format!(
            "POST /v1/patches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{sig}\r\n\r\n",
            32 << 20
        );
        s.write_all(head.as_bytes()).unwrap();
        // The rest of the body is never sent: the answer comes first.
        assert_eq!(read_status(&mut s), Some(401), "request {i}");
        held.push(s);
    }
    // Signed bodies of unknown length: read (and hashed) as they come, so
    // each holds what it sent so far, until the body timeout cuts it off.
    let mut chunked = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(&a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST /v1/patches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nX-Hub-Signature-256: sha256={}\r\n\r\n",
            "ef".repeat(32)
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b' '; 256 * 1024];
        for _ in 0..4 {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .unwrap();
            s.write_all(&chunk).unwrap();
            s.write_all(b"\r\n").unwrap();
        }
        chunked.push(s);
    }
    let rss = rss_kib(b.pid);
    eprintln!("bridge VmRSS with 70 hostile bodies open: {rss} KiB");
    assert!(
        rss < 100 * 1024,
        "the bridge holds {rss} KiB with 70 hostile bodies open"
    );
    // The trickles are cut off with 408 once bridge.body_timeout has passed.
    for (i, s) in chunked.iter_mut().enumerate() {
        assert_eq!(read_status(s), Some(408), "chunked request {i}");
    }
    assert!(healthz_ok(&b, Duration::from_secs(5)));
    assert!(env.list("default", QueueState::Pending).is_empty());
    env.assert_alive_named(b.pid, "bridge");
}

/// 2,000 connections that trickle their headers are closed by the header
/// timeout, while `/healthz` and a good POST keep answering.
#[test]
fn trickling_connections_are_closed_by_the_header_timeout_while_the_bridge_answers() {
    const N: usize = 2000;
    let limit = raise_nofile(8192);
    if limit < (N as u64) * 2 + 256 {
        if std::env::var_os("CI").is_some() {
            panic!("the open-file limit ({limit}) is too low for {N} connections");
        }
        eprintln!(
            "skipped: the open-file limit ({limit}) is too low for {N} connections (CI raises it)"
        );
        return;
    }
    let mut env =
        TestEnv::new("[bridge]\nheader_timeout = \"2s\"\nmax_connections = 4096\nrate_limit = 0\n");
    let b = env.spawn_bridge();
    let a = addr(&b);
    let started = Instant::now();
    let mut socks: Vec<Option<TcpStream>> = (0..N)
        .map(|_| {
            let mut s = TcpStream::connect(&a).unwrap();
            s.write_all(b"POST /v1/patches HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            Some(s)
        })
        .collect();

    // Good traffic alongside, for as long as the trickle lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let good = {
        let (stop, b) = (
            stop.clone(),
            Bridge {
                pid: b.pid,
                url: b.url.clone(),
            },
        );
        std::thread::spawn(move || {
            let (mut answered, mut failed) = (0usize, Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if !healthz_ok(&b, Duration::from_secs(5)) {
                    failed.push(format!("healthz {i}"));
                }
                match post_patch(&b, &format!("good-{i}"), Duration::from_secs(10)) {
                    Some(202) => answered += 1,
                    other => failed.push(format!("post {i}: {other:?}")),
                }
            }
            (answered, failed)
        })
    };

    // Trickle one byte per connection per round until the bridge has closed them all.
    let all_closed = wait_until(Duration::from_secs(30), || {
        let mut open = 0;
        for slot in socks.iter_mut() {
            let Some(s) = slot else { continue };
            if s.write_all(b"a").is_err() || closed_by_server(s) {
                *slot = None;
            } else {
                s.set_nonblocking(false).unwrap();
                open += 1;
            }
        }
        open == 0
    });
    let took = started.elapsed();
    eprintln!("{N} trickling connections closed {took:?} after the first was opened");
    stop.store(true, Ordering::Relaxed);
    let (answered, failed) = good.join().unwrap();
    eprintln!("good POSTs answered 202 during the trickle: {answered}");
    assert!(
        all_closed,
        "{} trickling connections still open after {took:?}",
        socks.iter().filter(|s| s.is_some()).count()
    );
    assert!(failed.is_empty(), "good requests failed: {failed:?}");
    assert!(
        answered >= 1,
        "no good POST was answered during the trickle"
    );
    env.assert_alive_named(b.pid, "bridge");
}

/// Under the watchdog with a 1,024 descriptor limit, a flood of 1,500
/// trickling connections is answered 503 beyond the cap, the heartbeat keeps
/// being written, and the watchdog neither restarts nor gives up the bridge.
#[test]
fn the_bridge_under_the_watchdog_survives_a_connection_flood() {
    raise_nofile(8192);
    let port = free_port();
    let mut env = TestEnv::new(&format!(
        r#"
[heartbeat]
interval = "100ms"
stale_after = "3s"

[bridge]
listen = "127.0.0.1:{port}"
header_timeout = "2s"

[watchdog]
restart_delay = "100ms"
restart_window = "60s"
healthy_after = "60s"
stop_grace = "2s"
restart_jitter = 0

[watchdog.children.executor]
enabled = false

[watchdog.children.monitor]
enabled = false
"#
    ));
    let err = std::fs::File::create(env.dir.path().join("watchdog.stderr")).unwrap();
    let mut cmd = env.cmd(WATCHDOG);
    cmd.env("GHOST_BRIDGE_TOKEN", TOKEN)
        .env("GHOST_HMAC_KEY", HMAC_KEY)
        .stdout(Stdio::null())
        .stderr(err);
    for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        cmd.env_remove(k);
    }
    // SAFETY: setrlimit is a plain system call, async-signal-safe; nothing
    // else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            setrlimit(Resource::RLIMIT_NOFILE, 1024, 1024).map_err(std::io::Error::from)
        });
    }
    let wd = cmd.spawn().expect("spawn watchdog");
    let wd_pid = wd.id();
    env.children.push(wd);
    let b = Bridge {
        pid: 0,
        url: format!("http://127.0.0.1:{port}"),
    };
    let state = |env: &TestEnv| -> Value {
        std::fs::read(env.layout().state().join("watchdog.json"))
            .ok()
            .and_then(|x| serde_json::from_slice(&x).ok())
            .unwrap_or(Value::Null)
    };
    let mut pid = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            env.assert_alive_named(wd_pid, "watchdog");
            let c = &state(&env)["children"]["bridge"];
            pid = c["pid"].as_u64();
            c["state"] == "running" && healthz_ok(&b, Duration::from_secs(2))
        }),
        "the bridge never ran: {}",
        state(&env)
    );
    let pid = pid.unwrap();

    // The flood: keep 1,500 trickling connections open for 3 × stale_after.
    let a = format!("127.0.0.1:{port}");
    let refused = AtomicUsize::new(0);
    let mut socks: Vec<TcpStream> = Vec::new();
    let mut connect_error = None;
    // At least 3 × stale_after, and on until the first refusal (a loaded
    // machine may be slow to get there), for at most 30 s.
    let (until, give_up) = (
        Instant::now() + Duration::from_secs(9),
        Instant::now() + Duration::from_secs(30),
    );
    while Instant::now() < until
        || (refused.load(Ordering::Relaxed) == 0 && Instant::now() < give_up)
    {
        socks.retain_mut(|s| {
            if closed_by_server(s) {
                refused.fetch_add(1, Ordering::Relaxed);
                false
            } else {
                s.set_nonblocking(false).unwrap();
                true
            }
        });
        while socks.len() < 1500 {
            match TcpStream::connect_timeout(&a.parse().unwrap(), Duration::from_secs(2)) {
                Ok(mut s) => {
                    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
                    socks.push(s);
                }
                Err(e) => {
                    connect_error = Some(e);
                    break;
                }
            }
        }
        let hb = ghost_core::heartbeat::read(&env.layout().heartbeat("bridge")).unwrap();
        assert!(
            !hb.is_stale(Duration::from_secs(3)),
            "the heartbeat went stale during the flood: {hb:?}"
        );
    }
    let open = socks.len();
    drop(socks);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the flood never met the connection cap or the header timeout in 30 s \
         ({open} connections open, last connect error: {connect_error:?})"
    );
    // Still the same process, running, no restart spent, answering.
    let c = state(&env)["children"]["bridge"].clone();
    assert_eq!(c["state"], "running", "{c}");
    assert_eq!(c["pid"].as_u64(), Some(pid), "restarted: {c}");
    assert_eq!(c["restarts_in_window"], 0, "{c}");
    assert!(wait_until(Duration::from_secs(10), || healthz_ok(
        &b,
        Duration::from_secs(2)
    )));
    assert_eq!(
        post_patch(&b, "after-flood", Duration::from_secs(10)),
        Some(202)
    );
    let hung: Vec<Value> = env
        .log_lines("watchdog")
        .into_iter()
        .filter(|l| l["event"] == "CHILD_HUNG")
        .collect();
    assert!(hung.is_empty(), "{hung:?}");
    kill(Pid::from_raw(wd_pid as i32), Signal::SIGTERM).unwrap();
}

/// A signature binds its timestamp, method, path and body: inside the window
/// it is accepted, outside it (a replay) refused with the reason, and it
/// cannot be moved to another route or method; GET needs the bearer token.
#[test]
fn signatures_expire_and_bind_the_method_and_path() {
    let mut env = TestEnv::new("[bridge]\nsignature_window = \"60s\"\n");
    let b = env.spawn_bridge();
    let body = serde_json::to_vec(
        &json!({"id": "sig-1", "operations": [{"op": "write", "path": "s.txt", "content": "s\n"}]}),
    )
    .unwrap();
    let c = client(Duration::from_secs(30));
    let send = |method: reqwest::Method, path: &str, ts: u64, sig: String| {
        let r = c
            .request(method, format!("{}{path}", b.url))
            .header("Content-Type", "application/json")
            .header("X-Ghost-Timestamp", ts.to_string())
            .header("X-Ghost-Signature", sig)
            .body(body.clone())
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (
            code,
            serde_json::from_str::<Value>(&r.text().unwrap()).unwrap(),
        )
    };
    let now = unix_now();
    // Replayed 61 s later (or from the future): refused, saying why.
    for ts in [now - 61, now + 61] {
        let (code, v) = send(
            reqwest::Method::POST,
            "/v1/patches",
            ts,
            sign_v1(HMAC_KEY, ts, "POST", "/v1/patches", &body),
        );
        assert_eq!(code, 401, "{v}");
        assert_eq!(v["errors"][0]["field"], "X-Ghost-Timestamp", "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("bridge.signature_window"),
            "{v}"
        );
    }
    assert!(env.list("default", QueueState::Pending).is_empty());
    // Signed for another route or method: refused.
    for (m, p) in [
        ("POST", "/webhook"),
        ("PUT", "/v1/patches"),
        ("POST", "/v1/patches?x=1"),
    ] {
        let (code, v) = send(
            reqwest::Method::POST,
            "/v1/patches",
            now,
            sign_v1(HMAC_KEY, now, m, p, &body),
        );
        assert_eq!(code, 401, "{m} {p}: {v}");
    }
    // Inside the window: accepted.
    let good = sign_v1(HMAC_KEY, now, "POST", "/v1/patches", &body);
    let (code, v) = send(reqwest::Method::POST, "/v1/patches", now, good);
    assert_eq!(code, 202, "{v}");
    // GET: a signature (even a valid one) is no credential; the token is.
    let get = |h: (&str, String)| {
        c.get(format!("{}/v1/patches/sig-1", b.url))
            .header("X-Ghost-Timestamp", now.to_string())
            .header(h.0, h.1)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get(("X-Hub-Signature-256", sign(b"", HMAC_KEY))), 401);
    assert_eq!(
        get((
            "X-Ghost-Signature",
            sign_v1(HMAC_KEY, now, "GET", "/v1/patches/sig-1", b"")
        )),
        401
    );
    assert_eq!(get(("Authorization", format!("Bearer {TOKEN}"))), 200);
}

/// FIFOs renamed into the inbox, over regular files and on their own, are
/// moved to `.rejected/` without ever blocking: a regular file dropped
/// afterwards is still ingested, and SIGTERM ends the bridge promptly.
#[test]
fn a_fifo_swapped_into_the_inbox_stalls_neither_the_inbox_nor_sigterm() {
    let mut env =
        TestEnv::new("[bridge]\ninbox_settle = \"50ms\"\ninbox_scan_interval = \"20ms\"\n");
    let b = env.spawn_bridge();
    let inbox = env.layout().inbox();
    let stage = env.dir.path().join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    // Swap a FIFO for a regular file, again and again, while the inbox scans.
    let fifo_at = |name: &str| {
        let p = stage.join(name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        p
    };
    for i in 0..40 {
        let name = format!("swap-{i}.json");
        let regular = stage.join(format!("r-{i}"));
        let patch = json!({"id": format!("swap-{i}"), "operations": [{"op": "write", "path": "w.txt", "content": "w\n"}]});
        ghost_core::fs::durable_write(&regular, &serde_json::to_vec(&patch).unwrap(), 0o600)
            .unwrap();
        #[allow(clippy::disallowed_methods)] // A test staging an attack: no durability needed.
        {
            std::fs::rename(&regular, inbox.join(&name)).unwrap();
            if i % 2 == 0 {
                std::fs::rename(fifo_at(&format!("f-{i}")), inbox.join(&name)).unwrap();
            } else {
                std::fs::rename(
                    fifo_at(&format!("f-{i}")),
                    inbox.join(format!("fifo-{i}.json")),
                )
                .unwrap();
            }
        }
    }
    // A regular file dropped after all that is still ingested.
    let last = json!({"id": "after-fifos", "operations": [{"op": "write", "path": "a.txt", "content": "a\n"}]});
    let staged = stage.join("last");
    ghost_core::fs::durable_write(&staged, &serde_json::to_vec(&last).unwrap(), 0o600).unwrap();
    #[allow(clippy::disallowed_methods)]
    std::fs::rename(&staged, inbox.join("after.json")).unwrap();
    let by_id = |id: &str| {
        env.list("default", QueueState::Pending).iter().any(|n| {
            let p = env
                .layout()
                .queue("default")
                .entry_path(QueueState::Pending, n);
            std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v["id"] == id)
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || by_id("after-fifos")),
        "the inbox stalled"
    );
    // Every FIFO ends in .rejected/ with its reason; none is left behind
    // (beside the hidden directories and the target's own, `default/`).
    assert!(wait_until(Duration::from_secs(30), || {
        std::fs::read_dir(&inbox).unwrap().flatten().all(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with('.') || n == "default"
        })
    }));
    let rejected = env.layout().inbox_rejected();
    let reasons: Vec<Value> = std::fs::read_dir(&rejected)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".error.json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect();
    assert!(reasons.len() >= 40, "{} rejected", reasons.len());
    assert!(
        reasons
            .iter()
            .all(|r| r["errors"][0]["error"] == "not_a_regular_file"),
        "{reasons:?}"
    );
    // SIGTERM ends it promptly.
    kill(Pid::from_raw(b.pid as i32), Signal::SIGTERM).unwrap();
    let mut child = env.take_child(b.pid);
    let st = wait_exit(&mut child, Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "{st:?}");
}

/// Validation compiles every regex of a patch; two patches full of large
/// regexes are judged on the blocking pool while `/healthz` keeps answering.
#[test]
fn regex_heavy_patches_do_not_block_healthz() {
    let mut env = TestEnv::new("[bridge]\nrate_limit = 0\n");
    let b = env.spawn_bridge();
    let heavy = |n: usize| {
        let ops: Vec<Value> = (0..4)
            .map(|i| json!({"op": "regex", "path": "a.txt", "pattern": format!("\\w{{100}}{i}"), "replacement": "x"}))
            .collect();
        json!({"id": format!("heavy-{n}"), "operations": ops})
    };
    let in_flight = Arc::new(AtomicUsize::new(2));
    let posts: Vec<_> = (0..2)
        .map(|n| {
            let (url, p, f) = (b.url.clone(), heavy(n), in_flight.clone());
            std::thread::spawn(move || {
                let code = client(Duration::from_secs(300))
                    .post(format!("{url}/v1/patches"))
                    .header("Authorization", format!("Bearer {TOKEN}"))
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&p).unwrap())
                    .send()
                    .map(|r| r.status().as_u16());
                f.fetch_sub(1, Ordering::SeqCst);
                code
            })
        })
        .collect();
    let mut answered_meanwhile = 0;
    while in_flight.load(Ordering::SeqCst) > 0 {
        let ok = healthz_ok(&b, Duration::from_secs(1));
        if in_flight.load(Ordering::SeqCst) > 0 {
            assert!(
                ok,
                "/healthz did not answer within 1 s while patches were validated"
            );
            answered_meanwhile += 1;
        }
    }
    for p in posts {
        let code = p.join().unwrap().unwrap();
        // Accepted, or refused with a named limit: either way judged.
        assert!(matches!(code, 202 | 400), "{code}");
    }
    assert!(
        answered_meanwhile >= 1,
        "validation was over before a probe"
    );
}

/// 1,000 bad-token requests produce a bounded number of log lines that
/// together count all of them.
#[test]
fn refusals_are_logged_aggregated() {
    let mut env = TestEnv::new("[bridge]\nrate_limit = 0\nrefusal_log_interval = \"500ms\"\n");
    let b = env.spawn_bridge();
    let c = client(Duration::from_secs(30));
    for i in 0..1000 {
        let code = c
            .post(format!("{}/v1/patches", b.url))
            .header("Authorization", "Bearer wrong")
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(code, 401, "request {i}");
    }
    let refused = |env: &TestEnv| -> Vec<Value> {
        env.log_lines("bridge")
            .into_iter()
            .filter(|l| l["event"] == "REQUEST_REFUSED" && l["reason"] == "bad_token")
            .collect()
    };
    let counted = |lines: &[Value]| {
        lines
            .iter()
            .map(|l| l["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        wait_until(Duration::from_secs(20), || counted(&refused(&env)) == 1000),
        "{:?}",
        refused(&env)
    );
    let lines = refused(&env);
    assert!(lines.len() <= 60, "{} lines for 1000 refusals", lines.len());
    assert!(
        !lines.iter().any(|l| l.to_string().contains(TOKEN)),
        "a credential in the log"
    );
}

/// A client over `bridge.rate_limit` gets 429 with Retry-After; another
/// route's `/healthz` stays free.
#[test]
fn a_client_over_its_rate_gets_429() {
    let mut env = TestEnv::new("[bridge]\nrate_limit = 1\nrate_burst = 5\n");
    let b = env.spawn_bridge();
    let c = client(Duration::from_secs(30));
    let mut limited = None;
    for i in 0..50 {
        let r = c
            .get(format!("{}/v1/patches/nothing-{i}", b.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .unwrap();
        if r.status().as_u16() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status().as_u16(), 404);
    }
    let r = limited.expect("never rate limited");
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["error"], "rate_limited", "{v}");
    assert!(v["message"].as_str().unwrap().contains("bridge.rate_limit"));
    for _ in 0..20 {
        assert!(healthz_ok(&b, Duration::from_secs(5)));
    }
}
