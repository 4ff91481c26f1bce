//! The benchmark harness: `cargo bench --bench bench` (release build) runs
//! every scenario and writes `docs/benchmarks.md`.
//!
//! Every figure is compared with the raw durable-write rate of the same disk
//! measured in the same invocation, and is a median over rounds: this machine
//! is shared and its absolute speed drifts between runs, so ratios within one
//! run are what to read.
//!
//! One part alone, replacing only its sections of the file:
//! `GHOST_BENCH_ONLY=executor` (drain, pickup, idle family, pueue), `pickup` alone,
//! `GHOST_BENCH_ONLY=monitor`, `dashboard` or `archive`, and `cargo bench --bench bench -- --bench
//! logging`. `GHOST_BENCH_QUICK=1` shrinks every count for a smoke run.

// Benchmarks: scratch fixtures are set up directly, not durably.
#![allow(clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "archive_bench.rs"]
mod archive_bench;
#[path = "dashboard_bench.rs"]
mod dashboard_bench;
#[path = "executor_bench.rs"]
mod executor_bench;
#[path = "logging_bench.rs"]
mod logging_bench;
#[path = "monitor_bench.rs"]
mod monitor_bench;
#[path = "watchdog_bench.rs"]
mod watchdog_bench;

const ROUNDS: usize = 5;
const BRIDGE: &str = env!("CARGO_BIN_EXE_ghost-bridge");
const TOKEN: &str = "bench-token-0123456789abcdef";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// N durable writes of a small file (temp, fsync, rename, fsync dir).
fn raw_durable_writes(dir: &Path, n: usize) -> Duration {
    let t = Instant::now();
    for i in 0..n {
        ghost_core::fs::durable_write(&dir.join(format!("f{i}")), b"{\"x\": 1}\n", 0o600).unwrap();
    }
    t.elapsed()
}

/// A bridge on a fresh root, killed on drop.
struct BridgeProc {
    child: Child,
    url: String,
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bridge(base: &Path) -> BridgeProc {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = base.join("root");
    std::fs::create_dir_all(&root).unwrap();
    ghost_core::fs::durable_write(
        &root.join("ghost.toml"),
        b"[bridge]\nhigh_water_mark = 0\n# Many requests from one loopback client: no per-client rate limit.\nrate_limit = 0\n",
        0o600,
    )
    .unwrap();
    let child = Command::new(BRIDGE)
        .arg("--root")
        .arg(&root)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-q")
        .env("GHOST_BRIDGE_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bridge");
    let url = format!("http://127.0.0.1:{port}");
    let c = reqwest::blocking::Client::new();
    let t = Instant::now();
    while !c
        .get(format!("{url}/healthz"))
        .send()
        .map(|r| r.status().is_success())
        .unwrap_or(false)
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "bridge did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    BridgeProc { child, url }
}

fn send(c: &reqwest::blocking::Client, url: &str, body: Vec<u8>) {
    let r = c
        .post(format!("{url}/v1/patches"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .expect("request");
    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text());
}

/// `n` requests from `clients` concurrent clients: (wall time, latencies).
fn closed_loop(b: &BridgeProc, clients: usize, n: usize, tag: &str) -> (Duration, Vec<Duration>) {
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (lat, next, url, tag) = (lat.clone(), next.clone(), b.url.clone(), tag.to_string());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let body = serde_json::to_vec(&serde_json::json!({"id": format!("{tag}-{i}"), "operations": [{"op": "write", "path": "a.txt", "content": format!("{i}\n")}]})).unwrap();
                    let s = Instant::now();
                    send(&c, &url, body);
                    lat.lock().unwrap().push(s.elapsed());
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let wall = t.elapsed();
    let mut l = lat.lock().unwrap().clone();
    l.sort();
    (wall, l)
}

/// Requests at a fixed `rate` per second for `n` requests; latency counts from
/// each request's scheduled time, so queueing behind slow ones shows.
fn open_loop(b: &BridgeProc, rate: f64, n: usize) -> Vec<Duration> {
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let start = Instant::now() + Duration::from_millis(50);
    let workers = 16;
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (lat, url) = (lat.clone(), b.url.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::new();
                for i in (w..n).step_by(workers) {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let body = serde_json::to_vec(&serde_json::json!({"id": format!("rate-{i}"), "operations": [{"op": "write", "path": "a.txt", "content": format!("{i}\n")}]})).unwrap();
                    send(&c, &url, body);
                    lat.lock().unwrap().push(due.elapsed());
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let mut l = lat.lock().unwrap().clone();
    l.sort();
    l
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Replace the section that starts with `head` in docs/benchmarks.md (up to
/// the next `## ` heading) with `section`, or append it; print it too.
fn replace_section(head: &str, section: &str) {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    let md = match old.find(head) {
        Some(i) => {
            let rest = &old[i + head.len()..];
            let end = rest
                .find("\n## ")
                .map_or(old.len(), |j| i + head.len() + j + 1);
            format!("{}{section}{}", &old[..i], &old[end..])
        }
        None => format!("{}\n{section}", old.trim_end()),
    };
    ghost_core::fs::durable_write(&out, md.as_bytes(), 0o644).unwrap();
    print!("{section}");
}

/// Replace everything from the heading that starts with `from` up to the
/// heading `until` in docs/benchmarks.md with `section`.
fn replace_range(from: &str, until: &str, section: &str) {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    let md = match (old.find(from), old.find(until)) {
        (Some(i), Some(j)) if i < j => format!("{}{section}\n{}", &old[..i], &old[j..]),
        _ => format!("{}\n\n{section}", old.trim_end()),
    };
    ghost_core::fs::durable_write(&out, md.as_bytes(), 0o644).unwrap();
    print!("{section}");
}

fn main() {
    // `cargo test --benches` runs this without --bench: keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmarks: run with `cargo bench --bench bench`");
        return;
    }
    // `cargo bench --bench bench -- --bench logging`: only the logging
    // section, replaced in the existing docs/benchmarks.md.
    if std::env::args().any(|a| a == "logging") {
        let mut section = String::new();
        logging_bench::run(&mut section);
        replace_section(
            "## Logging: writer thread against tracing-appender",
            &section,
        );
        return;
    }
    let quick = std::env::var_os("GHOST_BENCH_QUICK").is_some_and(|v| v != "0");
    let base = tempfile::tempdir().unwrap();
    if std::env::var("GHOST_BENCH_ONLY").as_deref() == Ok("monitor") {
        // The monitor's section alone, replaced in docs/benchmarks.md.
        let mut section = String::new();
        monitor_bench::run(&mut section, base.path());
        replace_section("## Monitor", &section);
        return;
    }
    if std::env::var("GHOST_BENCH_ONLY").as_deref() == Ok("executor") {
        // The executor's sections alone (drain, pickup, idle family, pueue);
        // the disk's raw rate is measured in each of its rounds.
        let mut section = String::new();
        let sizes = executor_bench::Sizes::new(quick);
        executor_bench::run(&mut section, base.path(), &sizes);
        let _ = writeln!(
            section,
            "Load average at the end: {}.\n",
            sh("cut -d' ' -f1-3 /proc/loadavg")
        );
        replace_range("## Executor:", "## Watchdog", &section);
        return;
    }
    if std::env::var("GHOST_BENCH_ONLY").as_deref() == Ok("pickup") {
        // The pickup-latency section alone, replaced in docs/benchmarks.md.
        let mut section = String::new();
        executor_bench::pickup_section(
            &mut section,
            base.path(),
            &executor_bench::Sizes::new(quick),
        );
        replace_section("## Pickup latency", &section);
        return;
    }
    if std::env::var("GHOST_BENCH_ONLY").as_deref() == Ok("archive") {
        // The archive's section alone, replaced in docs/benchmarks.md.
        let mut section = String::new();
        archive_bench::run(&mut section, base.path(), quick);
        replace_section("## Archive", &section);
        return;
    }
    if std::env::var("GHOST_BENCH_ONLY").as_deref() == Ok("dashboard") {
        // The dashboard's section alone (on the monitor's large root, built
        // here), replaced in docs/benchmarks.md.
        let mut section = String::new();
        dashboard_bench::run(&mut section, base.path(), quick);
        replace_section("## Dashboard", &section);
        return;
    }
    let fs_type = sh(&format!("stat -f -c %T {}", base.path().display()));
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(md, "Written by `cargo bench --bench bench` (release build). Every rate is a median over {ROUNDS} rounds in one invocation, next to the raw durable-write rate of the same disk measured in the same invocation; ratios within one run are what to compare, since this machine is shared and its absolute speed drifts.\n");
    let _ = writeln!(
        md,
        "Machine: {} cores, {}, temp directory on `{fs_type}`.\n",
        sh("nproc"),
        sh("uname -sr")
    );
    // Other work on the machine skews absolute figures: say how busy it was.
    let _ = writeln!(
        md,
        "Load average when the run started: {} (1, 5, 15 min).\n",
        sh("cut -d' ' -f1-3 /proc/loadavg")
    );
    if quick {
        let _ = writeln!(md, "**Quick mode** (`GHOST_BENCH_QUICK=1`): one round, smaller counts (500-patch drains, 10,000 entries of history, 5 s of idling), pueue not installed when absent. A smoke run: the full run is `cargo bench --bench bench` without it.\n");
    }

    // Raw durable writes, interleaved with every other measurement's rounds.
    let mut raw = Vec::new();
    let raw_round = |raw: &mut Vec<Duration>| {
        let d = tempfile::tempdir_in(base.path()).unwrap();
        raw.push(raw_durable_writes(d.path(), 1000));
    };

    // Bridge ingest: closed loop at 1, 8, 32 clients; open loop at 200/s.
    let levels = [1usize, 8, 32];
    let rounds = if quick { 1 } else { ROUNDS };
    let mut ingest: Vec<(usize, Vec<Duration>, Vec<Duration>)> = levels
        .iter()
        .map(|c| (*c, Vec::new(), Vec::new()))
        .collect();
    let mut paced = Vec::new();
    for round in 0..rounds {
        raw_round(&mut raw);
        for (clients, walls, lats) in &mut ingest {
            let d = tempfile::tempdir_in(base.path()).unwrap();
            let b = start_bridge(d.path());
            let n = 600;
            let (wall, l) = closed_loop(&b, *clients, n, &format!("c{clients}"));
            walls.push(wall);
            lats.extend(l);
        }
        let d = tempfile::tempdir_in(base.path()).unwrap();
        let b = start_bridge(d.path());
        paced.extend(open_loop(&b, 200.0, 600));
        eprintln!("ingest round {}/{ROUNDS}", round + 1);
    }

    let raw_m = median(raw.clone());
    let raw_rate = per_sec(1000, raw_m);
    let _ = writeln!(md, "## Raw disk\n");
    let _ = writeln!(md, "| measurement | median | rate |\n|---|---|---|");
    let _ = writeln!(md, "| raw durable write of a small file (temp + fsync + rename + fsync dir), 1,000 files | {:.0} ms | **{:.0} writes/s** |\n", ms(raw_m), raw_rate);

    let _ = writeln!(md, "## Bridge: durable ingest over HTTP\n");
    let _ = writeln!(md, "Each request POSTs one small patch to `/v1/patches` with a bearer token; the answer (202) comes only after the patch is durable in `pending/`. The directory fsync is group-committed across concurrent requests. The load generator runs on the same 2 cores as the bridge.\n");
    let _ = writeln!(md, "| clients | requests/s (median of rounds) | vs raw durable writes | p50 latency | p99 latency |\n|---|---|---|---|---|");
    for (clients, walls, lats) in &mut ingest {
        lats.sort();
        let rate = per_sec(600, median(walls.clone()));
        let _ = writeln!(
            md,
            "| {clients} | {rate:.0} | {:.2} | {:.1} ms | {:.1} ms |",
            rate / raw_rate,
            ms(percentile(lats, 0.5)),
            ms(percentile(lats, 0.99))
        );
    }
    paced.sort();
    let _ = writeln!(md, "\nAt a fixed 200 requests/s (open loop, {} requests, latency counted from each request's scheduled time): p50 {:.1} ms, p99 **{:.1} ms**, max {:.1} ms.\n", paced.len(), ms(percentile(&paced, 0.5)), ms(percentile(&paced, 0.99)), ms(*paced.last().unwrap()));

    let sizes = executor_bench::Sizes::new(quick);
    executor_bench::run(&mut md, base.path(), &sizes);
    let _ = writeln!(
        md,
        "Raw rounds (ms): {:?}\n",
        raw.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    eprintln!("watchdog scenarios");
    md.push('\n');
    watchdog_bench::run(&mut md);
    eprintln!("logging scenarios");
    md.push('\n');
    logging_bench::run(&mut md);
    eprintln!("monitor scenarios");
    md.push('\n');
    monitor_bench::run(&mut md, base.path());
    eprintln!("archive scenario");
    md.push('\n');
    archive_bench::run(&mut md, base.path(), quick);
    eprintln!("dashboard scenarios");
    md.push('\n');
    dashboard_bench::run(&mut md, base.path(), quick);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
    ghost_core::fs::durable_write(&out, md.as_bytes(), 0o644).unwrap();
    print!("{md}");
}
