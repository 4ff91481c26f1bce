//! Idle means idle: every daemon on a fresh root with nothing to do spends
//! (almost) no CPU. A busy loop shows as ~100 % of a core; the bound here is
//! 5 % of the wall time, generous enough for a loaded machine and tight
//! enough to catch any loop that wakes itself.

use std::time::{Duration, Instant};

use crate::harness::*;

/// How long each daemon is watched while idle, and the CPU share it may use.
const WINDOW: Duration = Duration::from_secs(3);
const MAX_SHARE: f64 = 0.05;

/// User plus system CPU time of `pid` so far (fields 14 and 15 of
/// `/proc/<pid>/stat`, in clock ticks).
fn cpu_time(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    let after = &s[s.rfind(')').expect("stat has a comm") + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Watch the processes for [`WINDOW`]; panic naming each one whose CPU time
/// grew beyond [`MAX_SHARE`] of the wall time.
fn assert_idle(procs: &[(&str, u32)]) {
    let start: Vec<Duration> = procs.iter().map(|(_, p)| cpu_time(*p)).collect();
    let t0 = Instant::now();
    let budget = WINDOW.mul_f64(MAX_SHARE);
    // Fails as soon as one process has spent the whole window's budget.
    let within = holds_for(WINDOW, || {
        procs
            .iter()
            .zip(&start)
            .all(|((_, p), s)| cpu_time(*p).saturating_sub(*s) <= budget)
    });
    let wall = t0.elapsed();
    let used: Vec<String> = procs
        .iter()
        .zip(&start)
        .map(|((n, p), s)| {
            let d = cpu_time(*p).saturating_sub(*s);
            format!(
                "{n} (pid {p}): {d:?} CPU in {wall:?} ({:.1} %)",
                100.0 * d.as_secs_f64() / wall.as_secs_f64()
            )
        })
        .collect();
    assert!(
        within,
        "busy while idle (bound {budget:?} per {WINDOW:?}):\n{}",
        used.join("\n")
    );
    eprintln!("{}", used.join("\n"));
}

fn heartbeat_pid(env: &TestEnv, component: &str) -> Option<u32> {
    ghost_core::heartbeat::read(&env.layout().heartbeat(component))
        .ok()
        .filter(|h| h.status == "running")
        .map(|h| h.pid)
}

/// Wait until `component` has written a `running` heartbeat (start-up done);
/// its pid.
fn wait_settled(env: &TestEnv, component: &str) -> u32 {
    let mut pid = None;
    let ok = wait_until(Duration::from_secs(20), || {
        pid = heartbeat_pid(env, component);
        pid.is_some()
    });
    assert!(ok, "{component} never reported running");
    pid.unwrap()
}

#[test]
fn an_idle_executor_uses_no_cpu() {
    let mut env = TestEnv::new("");
    let pid = env.spawn_executor();
    assert_eq!(wait_settled(&env, "executor"), pid);
    env.assert_alive(pid);
    assert_idle(&[("executor", pid)]);
    env.assert_alive(pid);
}

#[test]
fn an_idle_bridge_uses_no_cpu() {
    let mut env = TestEnv::new("");
    let b = env.spawn_bridge();
    assert_eq!(wait_settled(&env, "bridge"), b.pid);
    assert_idle(&[("bridge", b.pid)]);
    env.assert_alive_named(b.pid, "bridge");
}

#[test]
fn the_idle_family_under_the_watchdog_uses_no_cpu() {
    let port = free_port();
    let mut env = TestEnv::new(&format!(
        r#"
[bridge]
listen = "127.0.0.1:{port}"

[watchdog]
restart_delay = "100ms"

[watchdog.children.monitor]
enabled = false

[watchdog.children.bridge.env]
GHOST_BRIDGE_TOKEN = "{TOKEN}"
GHOST_HMAC_KEY = "{HMAC_KEY}"
"#
    ));
    let child = env
        .cmd(WATCHDOG)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn watchdog");
    let wd = child.id();
    env.children.push(child);
    let exec = wait_settled(&env, "executor");
    let bridge = wait_settled(&env, "bridge");
    // Both children of this very watchdog.
    for p in [exec, bridge] {
        assert_eq!(proc_info(p as i32).map(|i| i.ppid), Some(wd as i32));
    }
    assert_idle(&[("watchdog", wd), ("executor", exec), ("bridge", bridge)]);
    env.assert_alive_named(wd, "watchdog");
}
