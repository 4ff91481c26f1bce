//! The `TestEnv` fixture: a temporary data root, the real binaries, and children
//! killed on drop.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ghost_core::queue::QueueState;
use ghost_core::Layout;

pub const EXECUTOR: &str = env!("CARGO_BIN_EXE_ghost-executor");
pub const GHOSTCTL: &str = env!("CARGO_BIN_EXE_ghostctl");
pub const BRIDGE: &str = env!("CARGO_BIN_EXE_ghost-bridge");

/// The bearer token and HMAC key the tests give the bridge through the environment.
pub const TOKEN: &str = "test-token-4f1c2e";
pub const HMAC_KEY: &str = "test-hmac-key-9a8b";

/// A loopback port for a child to listen on, which nothing else takes before
/// the child binds it.
///
/// Binding `:0` and handing the port on races: the kernel hands that port out
/// again, to another `bind(:0)` or to an outgoing connection, before the
/// child binds it. So the port comes from below the kernel's ephemeral range
/// (`ip_local_port_range`), which it never hands out by itself. Test
/// processes running at the same time keep off each other's ports by an
/// exclusive lock on `$TMPDIR/ghostbridge-test-ports/<port>`, held until this
/// process exits; a port something already listens on is skipped.
pub fn free_port() -> u16 {
    use nix::fcntl::{Flock, FlockArg};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HELD: Mutex<Vec<Flock<std::fs::File>>> = Mutex::new(Vec::new());

    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    // 4,000 ports below the ephemeral range, or above it when it starts low.
    let (first, count) = if range.0 >= 6024 {
        (range.0 - 4000, 4000)
    } else {
        assert!(
            range.1 <= 61535,
            "no room outside the ephemeral port range {range:?}"
        );
        (range.1 + 1, 4000)
    };
    let dir = std::env::temp_dir().join("ghostbridge-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..count {
        let i = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % count;
        let port = (first + i) as u16;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .unwrap();
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // another test process has it
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap().push(lock);
            return port;
        }
    }
    panic!("no free loopback port in {first}..{}", first + count);
}

/// A running bridge: its pid and base URL.
pub struct Bridge {
    pub pid: u32,
    pub url: String,
}

/// Settings that make the tests fast: short scans, tiny backoff, short grace.
/// The default target may run any argv command (tests use `false`, `sleep`, …);
/// shell commands still need `allow_shell`.
pub const FAST: &str = r#"
[targets.default]
commands = "any"

# The tests send many requests from the one loopback address; the per-client
# rate limit has its own test, which sets it.
[bridge]
rate_limit = 0

[heartbeat]
interval = "200ms"

[executor]
scan_interval = "100ms"
backoff_base = "20ms"
backoff_max = "50ms"
shutdown_grace = "300ms"
command_timeout = "20s"
"#;

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub children: Vec<Child>,
}

impl TestEnv {
    /// A fresh root with `ghost.toml` = [`FAST`] with `extra` merged over it.
    pub fn new(extra: &str) -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let env = TestEnv {
            dir,
            root,
            children: Vec::new(),
        };
        env.write_config(&merge_toml(FAST, extra));
        // A data root as a daemon leaves it on its first start, so that
        // ghostctl, which refuses anything else, can be used before one runs.
        // (A test of a bad configuration gets the bare layout.)
        let targets: Vec<String> = ghost_core::Config::load(&env.root, None)
            .map(|c| c.targets.keys().cloned().collect())
            .unwrap_or_default();
        env.layout()
            .create(targets.iter().map(String::as_str))
            .unwrap();
        env
    }

    pub fn write_config(&self, text: &str) {
        ghost_core::fs::durable_write(&self.root.join("ghost.toml"), text.as_bytes(), 0o600)
            .unwrap();
    }

    pub fn layout(&self) -> Layout {
        Layout::new(&self.root)
    }

    pub fn config(&self) -> ghost_core::Config {
        ghost_core::Config::load(&self.root, None).expect("test config loads")
    }

    /// The working tree of `target` (created by the executor on start).
    pub fn tree(&self, target: &str) -> PathBuf {
        self.config().target_path(target)
    }

    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.arg("--root")
            .arg(&self.root)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    /// Run `ghost-executor --drain` to completion.
    pub fn drain(&self) -> Output {
        let out = self
            .cmd(EXECUTOR)
            .arg("--drain")
            .output()
            .expect("run executor");
        assert!(
            out.status.success(),
            "drain failed: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Start the executor daemon; its stderr goes to `executor-<pid>.stderr`
    /// in the test's directory (a pipe nobody reads would stop it once full).
    pub fn spawn_executor(&mut self) -> u32 {
        let starting = self.dir.path().join("executor-starting.stderr");
        let child = self
            .cmd(EXECUTOR)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&starting).unwrap())
            .spawn()
            .expect("spawn executor");
        let pid = child.id();
        // The child writes through its descriptor, whatever the file's name;
        // a test's scratch file needs no durable move.
        #[allow(clippy::disallowed_methods)]
        std::fs::rename(
            &starting,
            self.dir.path().join(format!("executor-{pid}.stderr")),
        )
        .unwrap();
        self.children.push(child);
        pid
    }

    /// Panic with the stderr files if executor `pid` has already exited.
    pub fn assert_alive(&mut self, pid: u32) {
        self.assert_alive_named(pid, "executor");
    }

    /// Start the bridge on a free loopback port with the test token and HMAC
    /// key, and wait until `/healthz` answers.
    pub fn spawn_bridge(&mut self) -> Bridge {
        self.spawn_bridge_with(&[("GHOST_BRIDGE_TOKEN", TOKEN), ("GHOST_HMAC_KEY", HMAC_KEY)])
    }

    pub fn spawn_bridge_with(&mut self, env: &[(&str, &str)]) -> Bridge {
        let port = free_port();
        let mut cmd = self.cmd(BRIDGE);
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
        cmd.env_remove("GHOST_BRIDGE_TOKEN")
            .env_remove("GHOST_HMAC_KEY");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join(format!("bridge-{port}.stderr")))
                    .unwrap(),
            )
            .spawn()
            .expect("spawn bridge");
        let pid = child.id();
        self.children.push(child);
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::blocking::Client::new();
        let up = wait_until(Duration::from_secs(20), || {
            self.assert_alive_named(pid, "bridge");
            client
                .get(format!("{url}/healthz"))
                .send()
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
        assert!(up, "the bridge never answered /healthz");
        Bridge { pid, url }
    }

    /// Panic with its stderr file if child `pid` has exited.
    pub fn assert_alive_named(&mut self, pid: u32, what: &str) {
        let dir = self.dir.path().to_path_buf();
        let c = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("known child");
        if let Ok(Some(st)) = c.try_wait() {
            let logs: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".stderr"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect();
            panic!(
                "{what} {pid} exited early with {st:?}:\n{}",
                logs.join("\n")
            );
        }
    }

    /// Take the child with `pid` out of the drop list.
    pub fn take_child(&mut self, pid: u32) -> Child {
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .expect("known child");
        self.children.remove(i)
    }

    pub fn ghostctl(&self, args: &[&str]) -> Output {
        self.cmd(GHOSTCTL)
            .args(args)
            .output()
            .expect("run ghostctl")
    }

    /// Put `bytes` straight into `pending/` (bypassing validation).
    pub fn enqueue_raw(&self, target: &str, bytes: &[u8]) -> String {
        let q = self.layout().queue(target);
        q.create().unwrap();
        q.enqueue(bytes).unwrap()
    }

    /// Write a patch file `name` into the test directory (not the root); its path.
    pub fn write_patch(&self, name: &str, body: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        ghost_core::fs::durable_write(&p, body, 0o600).unwrap();
        p
    }

    pub fn enqueue_json(&self, target: &str, v: &serde_json::Value) -> String {
        self.enqueue_raw(target, serde_json::to_string(v).unwrap().as_bytes())
    }

    pub fn list(&self, target: &str, state: QueueState) -> Vec<String> {
        self.layout().queue(target).list(state).unwrap()
    }

    pub fn state_of(&self, target: &str, name: &str) -> Option<QueueState> {
        self.layout().queue(target).find(name)
    }

    pub fn summary(&self, target: &str, name: &str) -> serde_json::Value {
        let p = self.layout().summaries(target).join(format!("{name}.json"));
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    }

    pub fn reason(&self, target: &str, state: QueueState, name: &str) -> serde_json::Value {
        let p = self.layout().queue(target).record_path(state, name);
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    }

    pub fn log_lines(&self, component: &str) -> Vec<serde_json::Value> {
        let p = self.layout().logs().join(format!("{component}.log"));
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `over` merged into `base`, table by table.
pub fn merge_toml(base: &str, over: &str) -> String {
    fn merge(a: &mut toml::Table, b: toml::Table) {
        for (k, v) in b {
            match (a.get_mut(&k), v) {
                (Some(toml::Value::Table(x)), toml::Value::Table(y)) => merge(x, y),
                (_, v) => {
                    a.insert(k, v);
                }
            }
        }
    }
    let mut a: toml::Table = base.parse().expect("base TOML");
    merge(&mut a, over.parse().expect("test TOML"));
    toml::to_string(&a).unwrap()
}

/// Poll `cond` until it holds or `timeout` passes; true when it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait for a child to exit, at most `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// Every regular file below `dir` (relative path → (bytes, mode)), skipping `.git`.
pub fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name() == ".git" {
                continue;
            }
            // A file the executor is replacing right now may vanish under us.
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                let bytes = if m.is_file() {
                    match std::fs::read(&p) {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                } else {
                    Vec::new()
                };
                out.insert(rel, (bytes, m.permissions().mode() & 0o7777));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn md5(bytes: &[u8]) -> String {
    ghost_core::md5_hex(bytes)
}

// ---- Watchdog and process-table helpers ----

pub const WATCHDOG: &str = env!("CARGO_BIN_EXE_ghost-watchdog");

/// What the process-table checks need from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// `R`, `S`, `T`, `Z`, …
    pub state: char,
    /// Start time in clock ticks since boot: tells a reused pid apart.
    pub start: u64,
    pub comm: String,
}

/// One process, if it exists.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
    Some(ProcInfo {
        pid,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
        comm,
    })
}

/// Every process on the machine (that this user may see).
pub fn all_procs() -> Vec<ProcInfo> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(proc_info)
                .collect()
        })
        .unwrap_or_default()
}

/// `root` and every process descending from it, now.
pub fn descendants(root: i32) -> Vec<ProcInfo> {
    let all = all_procs();
    let mut out: Vec<ProcInfo> = all.iter().filter(|p| p.pid == root).cloned().collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        out.extend(
            all.iter()
                .filter(|p| p.ppid == parent && p.pid != root)
                .cloned(),
        );
        i += 1;
    }
    out
}

/// True while that very process (same start time) exists and is not a zombie.
pub fn still_running(p: &ProcInfo) -> bool {
    proc_info(p.pid).is_some_and(|now| now.start == p.start && now.state != 'Z')
}

/// Poll `cond` for `period`; false as soon as it fails once. For "nothing more
/// happens" checks, where there is no event to wait for.
pub fn holds_for(period: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        if !cond() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Run the executor once over what is due (`--drain -q`) with `failpoints`
/// armed (the `FAILPOINTS` syntax of the `fail` crate).
pub fn run_with_failpoint(env: &TestEnv, failpoints: &str) -> std::process::ExitStatus {
    Command::new(EXECUTOR)
        .arg("--root")
        .arg(&env.root)
        .arg("--drain")
        .arg("-q")
        .env("FAILPOINTS", failpoints)
        .status()
        .expect("run executor")
}

/// Assert that a finished command succeeded, showing its stderr if not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `git ARGS` in `dir`, with no system or global configuration of this
/// machine; its trimmed stdout. Fails the test if git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Where every skip notice of a run is collected (`.ci/run` empties it at the
/// start and prints it at the end).
pub fn skipped_file() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped.txt")
}

/// The one way a test skips: in CI (`CI` set) that is a failure, since CI
/// runs as root and installs what the tests need; elsewhere the test says
/// `SKIPPED: <test>: <why>` on stderr, appends the line to
/// [`skipped_file`], and returns (the caller then returns too).
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: {why}; CI must run it (it runs as root, and .ci/run installs what is missing)"
        );
    }
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    let _ = std::fs::create_dir_all(Path::new(env!("CARGO_TARGET_TMPDIR")));
    // One write of a short line in append mode: lines of tests running in
    // parallel do not interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skipped_file())
    {
        let _ = std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes());
    }
}

/// Run a system command (mount, losetup, …) that must succeed; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a system command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A small deterministic generator (xorshift), seeded for replay.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
