//! The watchdog end to end: the real `ghost-watchdog` supervising the real
//! executor (and bridge), or stand-in children, on a temporary root with
//! timings shrunk through the configuration. Process-table checks read /proc.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ghost_core::queue::QueueState;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::harness::*;

/// Fast timings; only the executor runs unless a test says otherwise.
/// (`stale_after` leaves room for a heartbeat's fsync to stall while other
/// tests load the disk: a false hang would be a restart nobody expects.)
const WD: &str = r#"
[heartbeat]
interval = "100ms"
stale_after = "3s"

[watchdog]
restart_delay = "100ms"
restart_window = "30s"
healthy_after = "2s"
stop_grace = "1s"
restart_jitter = 0

[watchdog.children.bridge]
enabled = false

[watchdog.children.monitor]
enabled = false
"#;

const WAIT: Duration = Duration::from_secs(20);

/// A child that ignores SIGTERM (and writes no heartbeat).
const STUBBORN: &str = r#"
[watchdog.children.stubborn]
command = "/bin/sh"
args = ["-c", "trap '' TERM; while :; do sleep 0.05; done"]
root_args = false
heartbeat = false
"#;

fn env_with(extra: &str) -> TestEnv {
    let env = TestEnv::new(WD);
    if !extra.is_empty() {
        let text = std::fs::read_to_string(env.root.join("ghost.toml")).unwrap();
        env.write_config(&merge_toml(&text, extra));
    }
    env
}

/// Start the watchdog; stdout and stderr go to files in the test directory.
fn start(env: &mut TestEnv, vars: &[(&str, &str)]) -> u32 {
    let out = File::create(env.dir.path().join("watchdog.stdout")).unwrap();
    let err = File::create(env.dir.path().join("watchdog.stderr")).unwrap();
    let mut cmd = env.cmd(WATCHDOG);
    for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        cmd.env_remove(k);
    }
    cmd.envs(vars.iter().copied());
    let child = cmd.stdout(out).stderr(err).spawn().expect("spawn watchdog");
    let pid = child.id();
    env.children.push(child);
    pid
}

fn stderr_of(env: &TestEnv) -> String {
    std::fs::read_to_string(env.dir.path().join("watchdog.stderr")).unwrap_or_default()
}

fn state(env: &TestEnv) -> Value {
    std::fs::read(env.layout().state().join("watchdog.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn child(env: &TestEnv, name: &str) -> Value {
    state(env)["children"][name].clone()
}

/// Wait until child `name` runs with a heartbeat of its own pid (other than
/// `not`); its pid.
fn wait_running(env: &mut TestEnv, wd: u32, name: &str, not: Option<u32>) -> u32 {
    let mut pid = None;
    let ok = wait_until(WAIT, || {
        env.assert_alive_named(wd, "watchdog");
        let c = child(env, name);
        let p = c["pid"].as_u64().map(|p| p as u32);
        let hb = ghost_core::heartbeat::read(&env.layout().heartbeat(name)).ok();
        if c["state"] == "running" && p.is_some() && p != not && hb.map(|h| h.pid) == p {
            pid = p;
            true
        } else {
            false
        }
    });
    assert!(ok, "{name} never ran: {}\n{}", state(env), stderr_of(env));
    pid.unwrap()
}

/// Log lines of the watchdog with `event` (and `child`, when given).
fn events(env: &TestEnv, event: &str, child: Option<&str>) -> Vec<Value> {
    env.log_lines("watchdog")
        .into_iter()
        .filter(|l| l["event"] == event && child.is_none_or(|c| l["child"] == c))
        .collect()
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap();
}

/// SIGTERM the watchdog; it must exit 0 within `within`.
fn stop(env: &mut TestEnv, wd: u32, within: Duration) {
    signal(wd, Signal::SIGTERM);
    let mut c = env.take_child(wd);
    let st = wait_exit(&mut c, within).expect("the watchdog exits after SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", stderr_of(env));
}

fn alerts(env: &TestEnv) -> Vec<Value> {
    std::fs::read_dir(env.layout().alerts_inbox())
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn critical_lines(env: &TestEnv, kind: &str) -> usize {
    std::fs::read_to_string(env.layout().alerts().join("CRITICAL_ALERT"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!(" {kind} ghost-watchdog:")))
        .count()
}

/// Every process left of `family` (by identity; the first is the watchdog)
/// or in one of its children's process groups (the watchdog's own group is
/// the test's).
fn leftovers(family: &[ProcInfo]) -> Vec<ProcInfo> {
    let mut groups: BTreeSet<i32> = family.iter().map(|p| p.pgid).collect();
    if let Some(root) = family.first() {
        groups.remove(&root.pgid);
    }
    let mut left: Vec<ProcInfo> = family
        .iter()
        .filter(|p| still_running(p))
        .cloned()
        .collect();
    let known: BTreeSet<i32> = left.iter().map(|p| p.pid).collect();
    left.extend(
        all_procs()
            .into_iter()
            .filter(|p| groups.contains(&p.pgid) && p.state != 'Z' && !known.contains(&p.pid)),
    );
    left
}

#[test]
fn a_child_that_exits_at_once_is_restarted_twice_then_given_up_with_one_alert() {
    let mut env = env_with("[watchdog.children.executor]\ncommand = \"/bin/false\"\n");
    let wd = start(&mut env, &[]);
    assert!(
        wait_until(WAIT, || child(&env, "executor")["state"] == "given_up"),
        "{}\n{}",
        state(&env),
        stderr_of(&env)
    );
    let started = || events(&env, "CHILD_STARTED", Some("executor")).len();
    // The first start and exactly two restarts, then nothing more.
    assert_eq!(started(), 3);
    assert!(holds_for(Duration::from_millis(800), || started() == 3
        && child(&env, "executor")["state"] == "given_up"));
    let c = child(&env, "executor");
    assert_eq!(c["restarts_in_window"], 2, "{c}");
    assert_eq!(c["last_exit"]["code"], 1, "{c}");
    assert_eq!(c["last_exit"]["cause"], "exited", "{c}");
    assert!(c["pid"].is_null());
    let a = alerts(&env);
    assert_eq!(a.len(), 1, "exactly one alert: {a:?}");
    assert_eq!(a[0]["fingerprint"], "watchdog_gave_up:executor");
    assert_eq!(a[0]["severity"], "critical");
    assert_eq!(a[0]["source"], "watchdog");
    assert_eq!(critical_lines(&env, "CRITICAL"), 1);
    assert_eq!(events(&env, "CHILD_GIVEN_UP", Some("executor")).len(), 1);
    let out = env.ghostctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("GIVEN_UP"), "{text}");
    assert!(text.contains("2/2 in 30s"), "{text}");

    // The operator resets it: a fresh budget, three more starts, a second episode.
    let out = env.ghostctl(&["restart", "executor"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(WAIT, || started() == 6
        && child(&env, "executor")["state"] == "given_up"));
    let c = child(&env, "executor");
    assert!(
        c["last_request"]["by"].as_str().unwrap().contains("uid"),
        "{c}"
    );
    assert_eq!(events(&env, "OPERATOR_RESET", Some("executor")).len(), 1);
    assert_eq!(alerts(&env).len(), 2);
    assert_eq!(critical_lines(&env, "CRITICAL"), 2);
    assert!(
        !env.layout()
            .state()
            .join("watchdog/requests/executor.json")
            .exists(),
        "the request is consumed"
    );
    stop(&mut env, wd, Duration::from_secs(10));
    assert_eq!(state(&env)["status"], "stopped");
}

#[test]
fn kill_9_of_a_child_gets_it_restarted_after_the_delay() {
    let mut env = env_with("[watchdog]\nrestart_delay = \"500ms\"\n");
    let wd = start(&mut env, &[]);
    let first = wait_running(&mut env, wd, "executor", None);
    let t = Instant::now();
    signal(first, Signal::SIGKILL);
    let second = wait_running(&mut env, wd, "executor", Some(first));
    let took = t.elapsed();
    eprintln!("kill -9 to the replacement's first heartbeat: {took:?}");
    assert!(
        took >= Duration::from_millis(500),
        "restarted before the delay: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_ne!(first, second);
    let c = child(&env, "executor");
    assert_eq!(c["last_exit"]["signal"], 9, "{c}");
    assert_eq!(c["last_exit"]["signal_name"], "SIGKILL", "{c}");
    assert_eq!(c["restarts_in_window"], 1, "{c}");
    let sched = events(&env, "CHILD_RESTART_SCHEDULED", Some("executor"));
    assert_eq!(sched.len(), 1);
    assert_eq!(sched[0]["delay_ms"], 500);
    assert!(alerts(&env).is_empty());
    stop(&mut env, wd, Duration::from_secs(10));
}

#[test]
fn sigstop_of_a_child_is_detected_as_a_hang_stopped_and_restarted() {
    let mut env = env_with("");
    let wd = start(&mut env, &[]);
    let first = wait_running(&mut env, wd, "executor", None);
    let before = proc_info(first as i32).unwrap();
    signal(first, Signal::SIGSTOP);
    let second = wait_running(&mut env, wd, "executor", Some(first));
    assert!(!still_running(&before), "the hung process is gone");
    let hung = events(&env, "CHILD_HUNG", Some("executor"));
    assert_eq!(hung.len(), 1, "{hung:?}");
    assert_eq!(hung[0]["pid"], first);
    let c = child(&env, "executor");
    assert_eq!(c["last_exit"]["cause"], "hang", "{c}");
    assert_eq!(
        c["restarts_in_window"], 1,
        "a hang counts against the budget: {c}"
    );
    assert_eq!(c["pid"], second);
    stop(&mut env, wd, Duration::from_secs(10));
}

#[test]
fn sigterm_during_an_after_check_exits_0_leaves_no_process_and_requeues_the_patch() {
    let mut env = env_with("");
    let wd = start(&mut env, &[]);
    wait_running(&mut env, wd, "executor", None);
    let ops: Vec<Value> = (0..3)
        .map(|i| json!({"op": "write", "path": format!("f{i}.txt"), "content": format!("{i}\n")}))
        .collect();
    let name = env.enqueue_json(
        "default",
        &json!({"id": "slow-check", "operations": ops, "checks": {"after": [{"argv": ["sleep", "30"]}]}}),
    );
    // The after-check runs: a `sleep` below the watchdog.
    let mut family = Vec::new();
    assert!(
        wait_until(WAIT, || {
            family = descendants(wd as i32);
            family.iter().any(|p| p.comm == "sleep")
        }),
        "the after-check never started: {family:?}"
    );
    assert_eq!(env.state_of("default", &name), Some(QueueState::Active));
    assert!(family.len() >= 3, "watchdog, executor, check: {family:?}");
    stop(&mut env, wd, Duration::from_secs(15));
    let left = leftovers(&family);
    assert!(left.is_empty(), "left behind: {left:?}");
    // Rolled back and requeued (or, had it been quick, finished): never half.
    match env.state_of("default", &name) {
        Some(QueueState::Pending) => assert!(
            snapshot(&env.tree("default")).is_empty(),
            "rolled back to the empty tree"
        ),
        Some(QueueState::Done) => assert_eq!(snapshot(&env.tree("default")).len(), 3),
        other => panic!("patch in {other:?}"),
    }
    assert!(env.list("default", QueueState::Active).is_empty());
    let c = child(&env, "executor");
    assert_eq!(c["state"], "stopped", "{c}");
    assert_eq!(
        c["last_exit"]["code"], 0,
        "the executor stopped cleanly: {c}"
    );
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_with_its_group_after_the_grace() {
    let mut env = env_with(STUBBORN);
    let wd = start(&mut env, &[]);
    wait_running(&mut env, wd, "executor", None);
    assert!(wait_until(WAIT, || child(&env, "stubborn")["state"] == "running"));
    let family = descendants(wd as i32);
    let t = Instant::now();
    stop(&mut env, wd, Duration::from_secs(10));
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "it waited the grace for the stubborn one"
    );
    assert_eq!(events(&env, "CHILD_KILLED", Some("stubborn")).len(), 1);
    assert!(events(&env, "CHILD_KILLED", Some("executor")).is_empty());
    let left = leftovers(&family);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(child(&env, "stubborn")["last_exit"]["signal"], 9);
}

#[test]
fn a_second_watchdog_on_the_same_root_refuses_naming_the_pid() {
    let mut env = env_with("");
    let wd = start(&mut env, &[]);
    wait_running(&mut env, wd, "executor", None);
    let out = env.cmd(WATCHDOG).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another ghost-watchdog is running"), "{err}");
    assert!(err.contains(&format!("pid {wd}")), "{err}");
    assert!(out.stdout.is_empty(), "no banner from the refused one");
    // The start-up banner of the first one says where everything is.
    let banner = std::fs::read_to_string(env.dir.path().join("watchdog.stdout")).unwrap();
    let root = env.root.canonicalize().unwrap();
    for needle in [
        format!("ghost-watchdog {} (pid {wd})", ghost_core::VERSION),
        format!("data       {}", root.display()),
        "bridge     http://127.0.0.1:7878".to_string(),
        // The bridge is disabled here: no token file is promised.
        "token     none (bridge does not start here)".to_string(),
        "dashboard  http://127.0.0.1:7879".to_string(),
        format!("ghostctl --root {} status", root.display()),
        "ready: executor (pid".to_string(),
    ] {
        assert!(banner.contains(&needle), "missing {needle:?} in:\n{banner}");
    }
    stop(&mut env, wd, Duration::from_secs(10));
}

#[test]
fn children_die_with_a_killed_watchdog() {
    let mut env = env_with(
        "[watchdog.children.sidecar]\ncommand = \"sleep\"\nargs = [\"1000\"]\nroot_args = false\nheartbeat = false\n",
    );
    let wd = start(&mut env, &[]);
    wait_running(&mut env, wd, "executor", None);
    assert!(wait_until(WAIT, || child(&env, "sidecar")["state"] == "running"));
    let family = descendants(wd as i32);
    assert!(family.len() >= 3, "{family:?}");
    signal(wd, Signal::SIGKILL);
    let mut c = env.take_child(wd);
    wait_exit(&mut c, WAIT).unwrap();
    // PR_SET_PDEATHSIG: each child gets SIGTERM when the watchdog dies.
    assert!(
        wait_until(Duration::from_secs(10), || leftovers(&family).is_empty()),
        "left behind: {:?}",
        leftovers(&family)
    );
}

#[test]
fn sighup_restarts_only_the_children_whose_settings_changed() {
    let sidecar =
        "[watchdog.children.sidecar]\ncommand = \"sleep\"\nargs = [\"1000\"]\nroot_args = false\nheartbeat = false\n";
    let mut env = env_with(sidecar);
    let wd = start(&mut env, &[]);
    let exec1 = wait_running(&mut env, wd, "executor", None);
    assert!(wait_until(WAIT, || child(&env, "sidecar")["state"] == "running"));
    let side1 = child(&env, "sidecar")["pid"].as_u64().unwrap();
    let config = std::fs::read_to_string(env.root.join("ghost.toml")).unwrap();

    // The executor's section changes: the executor alone is restarted.
    env.write_config(&merge_toml(
        &config,
        "[executor]\nscan_interval = \"150ms\"\n",
    ));
    signal(wd, Signal::SIGHUP);
    let exec2 = wait_running(&mut env, wd, "executor", Some(exec1));
    assert_ne!(exec1, exec2);
    assert_eq!(child(&env, "sidecar")["pid"], side1);
    assert_eq!(
        child(&env, "executor")["restarts_in_window"],
        0,
        "not counted"
    );
    assert_eq!(events(&env, "CHILD_RECONFIGURED", None).len(), 1);
    // A stop asked for that ended cleanly: its log line carries no stderr
    // tail (the start-up lines there would only be noise).
    assert!(wait_until(WAIT, || !events(
        &env,
        "CHILD_STOPPED",
        Some("executor")
    )
    .is_empty()));
    for e in events(&env, "CHILD_STOPPED", Some("executor")) {
        assert_eq!(e["kind"], "Clean", "{e}");
        assert!(e.get("stderr_tail").is_none(), "{e}");
    }

    // An invalid configuration changes nothing.
    env.write_config("[executor]\nno_such_key = 1\n");
    signal(wd, Signal::SIGHUP);
    assert!(wait_until(WAIT, || !events(
        &env,
        "CONFIG_RELOAD_FAILED",
        None
    )
    .is_empty()));
    assert!(holds_for(Duration::from_millis(300), || child(
        &env, "executor"
    )["pid"]
        == exec2
        && child(&env, "sidecar")["pid"] == side1));

    // The sidecar is disabled: it stops; the executor stays.
    env.write_config(&merge_toml(
        &config,
        "[executor]\nscan_interval = \"150ms\"\n[watchdog.children.sidecar]\nenabled = false\n",
    ));
    signal(wd, Signal::SIGHUP);
    assert!(wait_until(WAIT, || child(&env, "sidecar")["state"] == "disabled"));
    assert!(proc_info(side1 as i32).is_none_or(|p| p.state == 'Z'));
    assert_eq!(child(&env, "executor")["pid"], exec2);
    stop(&mut env, wd, Duration::from_secs(10));
}

#[test]
fn systemd_notify_ready_watchdog_pings_and_stopping() {
    let mut env = env_with("[watchdog.children.ghost]\ncommand = \"/nonexistent/ghost-thing\"\n");
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let wd = start(
        &mut env,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut got: Vec<String> = Vec::new();
    let recv = |got: &mut Vec<String>| {
        let mut buf = [0u8; 1024];
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    let mut exec_hb_at_ready = None;
    assert!(
        wait_until(WAIT, || {
            recv(&mut got);
            if got.iter().any(|m| m == "READY=1") {
                exec_hb_at_ready =
                    ghost_core::heartbeat::read(&env.layout().heartbeat("executor")).ok();
                true
            } else {
                false
            }
        }),
        "no READY=1: {got:?}\n{}",
        stderr_of(&env)
    );
    // READY=1 came once the executor had its heartbeat; the missing child
    // does not hold it back.
    let exec = wait_running(&mut env, wd, "executor", None);
    assert_eq!(exec_hb_at_ready.map(|h| h.pid), Some(exec));
    assert_eq!(child(&env, "ghost")["state"], "missing");
    assert!(child(&env, "ghost")["message"]
        .as_str()
        .unwrap()
        .contains("not found"));
    assert!(
        wait_until(WAIT, || {
            recv(&mut got);
            got.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3
        }),
        "{got:?}"
    );
    assert!(got.iter().any(|m| m.starts_with("STATUS=")), "{got:?}");
    // Children do not see the variables.
    let environ = std::fs::read(format!("/proc/{exec}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("NOTIFY_SOCKET="), "{environ}");
    assert!(!environ.contains("WATCHDOG_USEC="), "{environ}");
    signal(wd, Signal::SIGTERM);
    assert!(
        wait_until(WAIT, || {
            recv(&mut got);
            got.iter().any(|m| m == "STOPPING=1")
        }),
        "{got:?}"
    );
    let mut c = env.take_child(wd);
    assert_eq!(wait_exit(&mut c, WAIT).and_then(|s| s.code()), Some(0));
}

#[test]
fn children_survive_sixteen_seconds_of_watchdog_idleness() {
    // PR_SET_PDEATHSIG fires when the thread that forked a child exits; a
    // runtime's idle blocking threads exit after 10 s. The children must not.
    let mut env = env_with(
        "[heartbeat]\ninterval = \"500ms\"\nstale_after = \"5s\"\n[watchdog.children.sidecar]\ncommand = \"sleep\"\nargs = [\"1000\"]\nroot_args = false\nheartbeat = false\n",
    );
    let wd = start(&mut env, &[]);
    let exec = wait_running(&mut env, wd, "executor", None);
    assert!(wait_until(WAIT, || child(&env, "sidecar")["state"] == "running"));
    let side = child(&env, "sidecar")["pid"].clone();
    let procs: Vec<ProcInfo> = descendants(wd as i32);
    assert!(holds_for(Duration::from_secs(16), || procs
        .iter()
        .all(still_running)));
    assert_eq!(child(&env, "executor")["pid"], exec);
    assert_eq!(child(&env, "sidecar")["pid"], side);
    assert!(events(&env, "CHILD_EXITED", None).is_empty());
    stop(&mut env, wd, Duration::from_secs(10));
}

fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// In CI a missing tool is a failure; elsewhere the test says why and passes.
pub(crate) fn need(name: &str, why: &str) -> Option<PathBuf> {
    match tool(name) {
        Some(p) => Some(p),
        None => {
            skip(
                name,
                &format!("{name} is not installed ({why}); CI installs it"),
            );
            None
        }
    }
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

#[test]
fn the_family_comes_up_and_goes_down_with_supervisord() {
    let Some(supervisord) = need("supervisord", "Debian package `supervisor`") else {
        return;
    };
    let supervisorctl = tool("supervisorctl").expect("supervisorctl comes with supervisord");
    let (bridge_port, dash_port) = (free_port(), free_port());
    let mut env = TestEnv::new(&merge_toml(
        WD,
        &format!(
            "[watchdog.children.bridge]\nenabled = true\n[watchdog.children.monitor]\nenabled = true\n\
             [bridge]\nlisten = \"127.0.0.1:{bridge_port}\"\n[monitor]\nlisten = \"127.0.0.1:{dash_port}\"\n"
        ),
    ));
    let dir = env.dir.path().to_path_buf();
    let program = std::fs::read_to_string(deploy("supervisord-ghostbridge.conf"))
        .unwrap()
        .replace("/usr/local/bin/ghost-watchdog", WATCHDOG)
        .replace("/var/lib/ghostbridge", env.root.to_str().unwrap())
        .replace("/var/log/ghostbridge", dir.to_str().unwrap())
        .lines()
        .filter(|l| !l.starts_with("user="))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(program.contains("[program:ghost-watchdog]"));
    let conf = dir.join("supervisord.conf");
    let sock = dir.join("supervisor.sock");
    let text = format!(
        "[unix_http_server]\nfile={sock}\n\n[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\n\
         [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl=unix://{sock}\n\n{program}\n",
        sock = sock.display(),
        d = dir.display()
    );
    ghost_core::fs::durable_write(&conf, text.as_bytes(), 0o600).unwrap();
    let sd = Command::new(&supervisord)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("supervisord.stdout")).unwrap())
        .stderr(File::create(dir.join("supervisord.stderr")).unwrap())
        .spawn()
        .unwrap();
    let sd_pid = sd.id();
    env.children.push(sd);
    let diag = |env: &TestEnv| {
        format!(
            "{}\n--- supervisord.log\n{}\n--- watchdog.log\n{}",
            state(env),
            std::fs::read_to_string(dir.join("supervisord.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("watchdog.log")).unwrap_or_default()
        )
    };
    // The whole family: every enabled child whose program is installed runs.
    assert!(
        wait_until(Duration::from_secs(30), || state(&env)["ready"] == true),
        "the family never came up: {}",
        diag(&env)
    );
    let wd = state(&env)["pid"].as_u64().unwrap() as i32;
    assert_eq!(
        proc_info(wd).unwrap().ppid,
        sd_pid as i32,
        "supervisord runs the watchdog"
    );
    for name in ["bridge", "executor"] {
        let c = child(&env, name);
        assert_eq!(c["state"], "running", "{name}: {}", diag(&env));
        let hb = ghost_core::heartbeat::read(&env.layout().heartbeat(name)).unwrap();
        assert_eq!(Some(hb.pid as u64), c["pid"].as_u64(), "{name}");
    }
    let monitor = child(&env, "monitor");
    assert!(
        monitor["state"] == "running" || monitor["state"] == "missing",
        "{monitor}"
    );
    let family: Vec<ProcInfo> = descendants(wd);
    assert!(family.len() >= 3, "{family:?}");

    let ctl = |args: &[&str]| {
        Command::new(&supervisorctl)
            .arg("-c")
            .arg(&conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = ctl(&["stop", "ghost-watchdog"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped"),
        "{out:?}\n{}",
        diag(&env)
    );
    assert!(
        wait_until(Duration::from_secs(10), || leftovers(&family).is_empty()),
        "left behind: {:?}",
        leftovers(&family)
    );
    assert_eq!(state(&env)["status"], "stopped");
    let out = ctl(&["status", "ghost-watchdog"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("STOPPED"),
        "{out:?}"
    );
    let _ = ctl(&["shutdown"]);
    let mut sd = env.take_child(sd_pid);
    assert!(wait_exit(&mut sd, Duration::from_secs(20)).is_some());
    // No colour codes in supervisord's logs (the watchdog's output) nor
    // anywhere under the root.
    assert!(
        std::fs::read(dir.join("watchdog.log")).is_ok_and(|b| !b.is_empty()),
        "the watchdog's output is logged"
    );
    let esc = files_with_escapes(&dir);
    assert!(esc.is_empty(), "ESC bytes in {esc:?}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = need("systemd-analyze", "Debian package `systemd`") else {
        return;
    };
    // `verify` wants ExecStart to exist: point it at the built binary.
    let d = tempfile::tempdir().unwrap();
    let unit = d.path().join("ghostbridge.service");
    let text = std::fs::read_to_string(deploy("ghostbridge.service"))
        .unwrap()
        .replace("/usr/local/bin/ghost-watchdog", WATCHDOG);
    assert!(text.contains("Type=notify") && text.contains("NoNewPrivileges=yes"));
    assert!(
        text.contains("ProtectSystem=strict")
            && text.contains("ReadWritePaths=/var/lib/ghostbridge")
            && text.contains("SystemCallFilter=@system-service")
    );
    assert!(text.contains(&format!(
        "ExecStartPre={WATCHDOG} --root /var/lib/ghostbridge --check"
    )));
    ghost_core::fs::durable_write(&unit, text.as_bytes(), 0o644).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let about_us: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ghostbridge.service"))
        .collect();
    assert!(about_us.is_empty(), "systemd-analyze complains:\n{err}");
}

/// `Key=value` of a unit file (the first one).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn the_documented_systemctl_status_matches_the_unit() {
    let unit = std::fs::read_to_string(deploy("ghostbridge.service")).unwrap();
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy.md"))
            .unwrap();
    let doc_url = unit_value(&unit, "Documentation");
    assert!(
        doc_url.starts_with("file:/") && doc_url.ends_with("/deploy.md"),
        "Documentation= is the installed docs/deploy.md: {doc_url}"
    );
    for want in [
        format!(
            "● ghostbridge.service - {}",
            unit_value(&unit, "Description")
        ),
        format!("Docs: {doc_url}"),
        format!(
            "ExecStartPre={} (code=exited, status=0/SUCCESS)",
            unit_value(&unit, "ExecStartPre")
        ),
        format!("─4242 {}", unit_value(&unit, "ExecStart")),
    ] {
        assert!(docs.contains(&want), "docs/deploy.md lacks {want:?}");
    }
    // The install step that makes Documentation= true.
    let path = doc_url.trim_start_matches("file:");
    assert!(
        docs.contains(&format!("install -D -m 0644 docs/deploy.md {path}")),
        "docs/deploy.md does not install {path}"
    );
}

#[test]
fn check_passes_on_a_good_root_and_names_every_problem_of_a_bad_one() {
    let env = env_with("");
    let run = |root: &Path, config: Option<&Path>| {
        let mut c = Command::new(WATCHDOG);
        c.arg("--root").arg(root).arg("--check");
        if let Some(f) = config {
            c.arg("--config").arg(f);
        }
        c.env_remove("GHOST_ROOT").output().unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let out = run(&env.root, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ok = text(&out.stdout);
    assert!(
        ok.contains("ready to start") && ok.contains("owned by and writable"),
        "{ok}"
    );
    assert!(
        ok.contains("executor: ") && ok.contains("bridge: disabled"),
        "{ok}"
    );

    // A root that does not exist: named, with how to create it; nothing made.
    let missing = env.dir.path().join("no-such-root");
    let out = run(&missing, Some(&env.root.join("ghost.toml")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("FAILED") && err.contains("no-such-root") && err.contains("install -d"),
        "{err}"
    );
    assert!(!missing.exists(), "--check creates nothing");

    // A file instead of a directory, and a child whose binary is missing: both named.
    let file = env.dir.path().join("a-file");
    ghost_core::fs::durable_write(&file, b"x", 0o600).unwrap();
    let conf = env.dir.path().join("bad-child.toml");
    let base = std::fs::read_to_string(env.root.join("ghost.toml")).unwrap();
    ghost_core::fs::durable_write(
        &conf,
        merge_toml(
            &base,
            "[watchdog.children.executor]\ncommand = \"/nonexistent/ghost-executor\"\n",
        )
        .as_bytes(),
        0o600,
    )
    .unwrap();
    let out = run(&file, Some(&conf));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(
        err.contains("/nonexistent/ghost-executor") && err.contains("enabled = false"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");

    // An invalid configuration: exit 2 with the problem.
    let bad = env.dir.path().join("bad.toml");
    ghost_core::fs::durable_write(
        &bad,
        b"[heartbeat]\ninterval = \"4s\"\nstale_after = \"2s\"\n",
        0o600,
    )
    .unwrap();
    let out = run(&env.root, Some(&bad));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stale_after"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_launchd_and_pm2_files_parse() {
    let plist = deploy("com.ghostbridge.watchdog.plist");
    if let Some(py) = need(
        "python3",
        "Debian package `python3`: the launchd plist is parsed with plistlib",
    ) {
        let out = Command::new(py)
            .arg("-c")
            .arg("import plistlib,sys; p = plistlib.load(open(sys.argv[1], 'rb')); print(p['Label'], p['ProgramArguments'][2], p['KeepAlive']['SuccessfulExit'], 'WorkingDirectory' in p)")
            .arg(&plist)
            .output()
            .unwrap();
        assert_success(&out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "com.ghostbridge.watchdog /usr/local/bin/ghost-watchdog --root /Users/ghost/ghostbridge --check && exec /usr/local/bin/ghost-watchdog --root /Users/ghost/ghostbridge --no-banner False False"
        );
    }
    let eco = deploy("ecosystem.config.js");
    if let Some(node) = need(
        "node",
        "Debian package `nodejs`: the PM2 file is loaded with require",
    ) {
        let out = Command::new(node)
            .arg("-e")
            .arg("const a = require(process.argv[1]).apps[0]; console.log(a.name, a.script, a.args[1], a.treekill, a.kill_timeout, a.cwd)")
            .arg(&eco)
            .output()
            .unwrap();
        assert_success(&out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ghostbridge /bin/sh /usr/local/bin/ghost-watchdog --root /var/lib/ghostbridge --check && exec /usr/local/bin/ghost-watchdog --root /var/lib/ghostbridge --no-banner false 60000 undefined"
        );
    }
}

/// Every file under `dir` holding an ESC byte (a terminal colour code).
fn files_with_escapes(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            found.extend(files_with_escapes(&p));
        } else if ft.is_file() && std::fs::read(&p).is_ok_and(|b| b.contains(&0x1b)) {
            found.push(p);
        }
    }
    found
}

#[test]
fn a_bridge_that_cannot_bind_is_given_up_with_its_cause_in_the_output_status_and_alert() {
    // Another process holds the port, as a second root on the default port would.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut env = env_with(&format!(
        "[watchdog.children.bridge]\nenabled = true\n[bridge]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let wd = start(&mut env, &[]);
    assert!(
        wait_until(WAIT, || child(&env, "bridge")["state"] == "given_up"),
        "{}\n{}",
        state(&env),
        stderr_of(&env)
    );
    const CAUSE: &str = "Address already in use";
    // The watchdog's own output says why it is not ready.
    let stdout = || std::fs::read_to_string(env.dir.path().join("watchdog.stdout")).unwrap();
    assert!(
        wait_until(WAIT, || stdout().contains("not ready: bridge given up")),
        "{}",
        stdout()
    );
    let line = stdout()
        .lines()
        .find(|l| l.starts_with("not ready: bridge given up"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("crashed (code") && line.contains(CAUSE),
        "{line}"
    );
    // The exit event, the state file, `ghostctl status` (table and JSON).
    let exits = events(&env, "CHILD_EXITED", Some("bridge"));
    assert!(
        exits
            .iter()
            .all(|e| e["stderr_tail"].as_str().unwrap_or("").contains(CAUSE)),
        "{exits:?}"
    );
    let c = child(&env, "bridge");
    assert!(
        c["last_exit"]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains(CAUSE),
        "{c}"
    );
    let out = env.ghostctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let gave_up = text
        .lines()
        .find(|l| l.contains("the watchdog gave up on bridge"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(gave_up.contains(CAUSE), "{gave_up}");
    let out = env.ghostctl(&["--json", "status"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tail = v["watchdog"]["children"]["bridge"]["last_exit"]["stderr_tail"]
        .as_str()
        .unwrap_or_default();
    assert!(tail.contains(CAUSE), "{v}");
    // The alert and CRITICAL_ALERT.
    let a = alerts(&env);
    assert_eq!(a.len(), 1, "{a:?}");
    let msg = a[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("crashed again") && msg.contains(CAUSE),
        "{msg}"
    );
    assert!(a[0]["stderr_tail"].as_str().unwrap().contains(CAUSE));
    let crit =
        std::fs::read_to_string(env.layout().alerts().join("CRITICAL_ALERT")).unwrap_or_default();
    assert!(crit.contains(CAUSE), "{crit}");

    stop(&mut env, wd, Duration::from_secs(10));
    // No colour code anywhere under the root: logs, stderr logs, alerts, state.
    let esc = files_with_escapes(&env.root);
    assert!(esc.is_empty(), "ESC bytes in {esc:?}");
    drop(taken);
}

#[test]
fn sigterms_to_the_executor_read_as_clean_exits_and_a_hard_stop_exits_non_zero() {
    let mut env = env_with(&format!("[watchdog]\nstop_grace = \"30s\"\n{STUBBORN}"));
    let wd = start(&mut env, &[]);
    // Three SIGTERMs from outside: three clean exits, then the watchdog gives up.
    let mut last = None;
    for _ in 0..3 {
        let pid = wait_running(&mut env, wd, "executor", last);
        signal(pid, Signal::SIGTERM);
        assert!(
            wait_until(WAIT, || child(&env, "executor")["pid"].as_u64()
                != Some(pid as u64)),
            "{}",
            state(&env)
        );
        last = Some(pid);
    }
    assert!(
        wait_until(WAIT, || child(&env, "executor")["state"] == "given_up"),
        "{}",
        state(&env)
    );
    let c = child(&env, "executor");
    assert_eq!(c["last_exit"]["code"], 0, "{c}");
    let a = alerts(&env);
    assert_eq!(a.len(), 1, "{a:?}");
    let msg = a[0]["message"].as_str().unwrap();
    assert!(msg.contains("exited cleanly again"), "{msg}");
    assert!(msg.contains("clean exit (code 0)"), "{msg}");
    assert!(
        !msg.contains("crashed") && !msg.contains("failed again"),
        "{msg}"
    );
    let out = env.ghostctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("clean exit (code 0)"), "{text}");

    // A hard stop: the stubborn child outlives the first SIGTERM (its grace
    // is 30 s); the second one SIGKILLs it, and the watchdog says it failed.
    assert!(wait_until(WAIT, || child(&env, "stubborn")["state"] == "running"));
    signal(wd, Signal::SIGTERM);
    assert!(
        wait_until(WAIT, || child(&env, "stubborn")["state"] == "stopping"),
        "{}",
        state(&env)
    );
    signal(wd, Signal::SIGTERM);
    let mut w = env.take_child(wd);
    let st =
        wait_exit(&mut w, Duration::from_secs(10)).expect("the watchdog exits after a hard stop");
    assert_ne!(st.code(), Some(0), "a hard stop is not a clean stop");
    assert!(stderr_of(&env).contains("hard stop"), "{}", stderr_of(&env));
}

#[test]
fn a_missing_child_is_one_warning_naming_it_and_status_does_not_call_the_family_up() {
    let mut env = env_with(
        "[watchdog.children.monitor]\nenabled = true\ncommand = \"/nonexistent/ghost-monitor\"\n",
    );
    let wd = start(&mut env, &[]);
    wait_running(&mut env, wd, "executor", None);
    assert!(wait_until(WAIT, || state(&env)["ready"] == true
        && child(&env, "monitor")["state"] == "missing"));
    // A reload tries it again, without a second warning.
    signal(wd, Signal::SIGHUP);
    assert!(wait_until(WAIT, || !events(&env, "CONFIG_RELOADED", None).is_empty()));
    assert!(wait_until(WAIT, || child(&env, "monitor")["state"] == "missing"));
    let missing = events(&env, "CHILD_MISSING", Some("monitor"));
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0]["level"], "WARN", "{}", missing[0]);
    let msg = missing[0]["msg"].as_str().unwrap();
    assert!(
        msg.contains("/nonexistent/ghost-monitor")
            && msg.contains("enabled = false")
            && msg.contains("[watchdog.children.monitor]"),
        "{msg}"
    );
    let out = env.ghostctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("every child up"), "{text}");
    assert!(text.contains("(ready, but missing: monitor)"), "{text}");
    // The banner promises no file of a child that does not start here (the
    // bridge is disabled in these tests).
    let banner = std::fs::read_to_string(env.dir.path().join("watchdog.stdout")).unwrap();
    assert!(
        !banner.contains("hmac_key (created on first start)"),
        "{banner}"
    );
    assert!(
        banner.contains("/nonexistent/ghost-monitor not found"),
        "{banner}"
    );
    stop(&mut env, wd, Duration::from_secs(10));
}
