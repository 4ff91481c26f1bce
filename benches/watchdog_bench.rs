//! The watchdog's measurements, included by `benches/bench.rs`
//! (`#[path = "watchdog_bench.rs"] mod watchdog_bench;`), which calls [`run`].
//!
//! - idle CPU of `ghost-watchdog` over 10 s (utime + stime from
//!   `/proc/<pid>/stat`), supervising the real bridge and executor, at the
//!   default heartbeat interval (the watchdog polls every second) and at
//!   100 ms (it polls every 100 ms);
//! - its resident memory (`VmRSS` from `/proc/<pid>/status`);
//! - from `kill -9` of the executor to the replacement's first heartbeat,
//!   over several crashes, each with a fresh budget (so each waits the
//!   first-restart delay, 1 s, jitter off).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WATCHDOG: &str = env!("CARGO_BIN_EXE_ghost-watchdog");
const IDLE: Duration = Duration::from_secs(10);
const CRASHES: usize = 7;

struct Running {
    child: Child,
    root: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path, extra: &str) -> Running {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let text = format!(
        "[bridge]\nlisten = \"127.0.0.1:{}\"\n[monitor]\nlisten = \"127.0.0.1:{}\"\n\
         [watchdog.children.monitor]\nenabled = false\n{extra}",
        free_port(),
        free_port()
    );
    ghost_core::fs::durable_write(&root.join("ghost.toml"), text.as_bytes(), 0o600).unwrap();
    let child = Command::new(WATCHDOG)
        .arg("--root")
        .arg(&root)
        .arg("-q")
        .arg("--no-banner")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ghost-watchdog");
    let r = Running { child, root };
    let ok = wait(Duration::from_secs(60), || state(&r.root)["ready"] == true);
    assert!(
        ok,
        "the watchdog's children never came up: {}",
        state(&r.root)
    );
    r
}

fn state(root: &Path) -> serde_json::Value {
    std::fs::read(root.join("state/watchdog.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn wait(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s[s.rfind(')').unwrap() + 1..].split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// CPU time of every thread of `pid` in nanoseconds (`/proc/<pid>/task/*/schedstat`):
/// the same time as utime + stime, without the 10 ms tick granularity.
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

struct Idle {
    /// From utime + stime (10 ms ticks).
    pct_ticks: f64,
    /// From schedstat (nanoseconds).
    pct_ns: f64,
    rss_kib: u64,
    threads: usize,
}

/// Idle CPU and RSS of a watchdog started with `extra` configuration.
fn idle(extra: &str) -> Idle {
    let d = tempfile::tempdir().unwrap();
    let r = start(d.path(), extra);
    let pid = r.child.id();
    // Let start-up settle, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let (t0, c0, n0) = (Instant::now(), cpu_ticks(pid), cpu_ns(pid));
    std::thread::sleep(IDLE);
    let (t1, c1, n1) = (Instant::now(), cpu_ticks(pid), cpu_ns(pid));
    let wall = (t1 - t0).as_secs_f64();
    Idle {
        pct_ticks: (c1 - c0) as f64 / ticks_per_sec() / wall * 100.0,
        pct_ns: (n1 - n0) as f64 / 1e9 / wall * 100.0,
        rss_kib: rss_kib(pid),
        threads: std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|rd| rd.count())
            .unwrap_or(0),
    }
}

fn heartbeat_pid(root: &Path) -> Option<u64> {
    let b = std::fs::read(root.join("state/heartbeats/executor.json")).ok()?;
    serde_json::from_slice::<serde_json::Value>(&b).ok()?["pid"].as_u64()
}

/// `kill -9` of the executor → a heartbeat file with the replacement's pid.
fn crash_latencies() -> Vec<Duration> {
    let d = tempfile::tempdir().unwrap();
    let r = start(
        d.path(),
        "[heartbeat]\ninterval = \"100ms\"\nstale_after = \"5s\"\n\
         [watchdog]\nrestart_delay = \"1s\"\nrestart_jitter = 0\nhealthy_after = \"1s\"\nmax_restarts = 100\n",
    );
    let mut out = Vec::new();
    for _ in 0..CRASHES {
        // Healthy long enough for the budget (and the delay) to reset.
        let ok = wait(Duration::from_secs(30), || {
            let c = &state(&r.root)["children"]["executor"];
            c["state"] == "running" && c["restarts_in_window"] == 0
        });
        assert!(ok, "{}", state(&r.root));
        let old = state(&r.root)["children"]["executor"]["pid"]
            .as_u64()
            .unwrap();
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let mut done = None;
        while t.elapsed() < Duration::from_secs(30) {
            if heartbeat_pid(&r.root).is_some_and(|p| p != old) {
                done = Some(t.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        out.push(done.expect("no replacement heartbeat within 30 s"));
    }
    out
}

/// Append the `## Watchdog` section to `md`.
pub fn run(md: &mut String) {
    eprintln!("watchdog: idle CPU and RSS (2 × {} s)…", IDLE.as_secs() + 2);
    let slow = idle("");
    let fast = idle("[heartbeat]\ninterval = \"100ms\"\n");
    eprintln!("watchdog: crash to replacement heartbeat ({CRASHES} crashes)…");
    let mut lat = crash_latencies();
    lat.sort();
    let delay = Duration::from_secs(1);
    let med = lat[lat.len() / 2];
    let over = |d: Duration| d.saturating_sub(delay).as_secs_f64() * 1e3;
    let _ = writeln!(md, "## Watchdog\n");
    let _ = writeln!(
        md,
        "`ghost-watchdog` supervising the real bridge and executor (monitor disabled), measured from outside through `/proc`: CPU over {} s of idleness from the threads' `schedstat` (nanoseconds) and, coarser, utime + stime of `stat` (10 ms ticks: one tick is 0.1 % here), memory as `VmRSS`. Crash latency: `kill -9` of the executor until `state/heartbeats/executor.json` names the replacement, polled every millisecond, {CRASHES} crashes, each after the budget reset (so each waits the first-restart delay of 1 s; jitter off).\n",
        IDLE.as_secs()
    );
    let _ = writeln!(md, "| measurement | result | target |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| idle CPU, default `heartbeat.interval` (polls every 1 s) | **{:.3} %** (utime + stime: {:.2} %) | < 0.2 % |",
        slow.pct_ns, slow.pct_ticks
    );
    let _ = writeln!(
        md,
        "| idle CPU, `heartbeat.interval = \"100ms\"` (polls every 100 ms, writes its heartbeat and state every 100 ms) | {:.3} % (utime + stime: {:.2} %) | |",
        fast.pct_ns, fast.pct_ticks
    );
    let _ = writeln!(
        md,
        "| resident memory (VmRSS) | **{:.1} MiB** ({:.1} MiB at 100 ms); {} thread(s) | < 10 MiB |",
        slow.rss_kib as f64 / 1024.0,
        fast.rss_kib as f64 / 1024.0,
        slow.threads
    );
    let _ = writeln!(
        md,
        "| crash → replacement's first heartbeat, median | **{:.0} ms** = delay + {:.0} ms | delay + < 100 ms |",
        med.as_secs_f64() * 1e3,
        over(med)
    );
    let _ = writeln!(
        md,
        "| crash → replacement's first heartbeat, worst of {CRASHES} | {:.0} ms = delay + {:.0} ms | |\n",
        lat.last().unwrap().as_secs_f64() * 1e3,
        over(*lat.last().unwrap())
    );
    let _ = writeln!(
        md,
        "Over the delay: reaping the crashed process (SIGCHLD), the spawn, and the executor's start-up up to its first heartbeat (layout check, lock, temp-file sweep, heartbeat write with fsync). Rounds (ms over the delay): {:?}\n",
        lat.iter().map(|d| over(*d).round() as u64).collect::<Vec<_>>()
    );
}
