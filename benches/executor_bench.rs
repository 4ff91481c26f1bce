//! The executor's measurements (and the idle cost of every daemon), included
//! by `benches/bench.rs`, which calls [`run`]:
//!
//! - drain of N one-file patches on one target and spread over four, with
//!   the fsyncs per patch the executor counted (`fsyncs` of its
//!   `EXECUTOR_STOPPED` log line, divided by the patches applied);
//! - the same drain with 100,000 entries already in `done/`, and the first
//!   patches of a queue 100,000 deep: the per-patch cost should not move;
//! - pickup latency: from the rename of an entry into `pending/` to its claim
//!   (the entry leaving `pending/`), one at a time on an idle executor;
//! - idle CPU and resident memory of every daemon under `ghost-watchdog`;
//! - pueue running the same changes as queued shell tasks (each writes its
//!   file, fsyncs it and renames it into place), serial and 8 in parallel.
//!
//! `GHOST_BENCH_QUICK=1` shrinks every count for a smoke run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ghost_core::queue::QueueState;
use ghost_core::Layout;

const EXECUTOR: &str = env!("CARGO_BIN_EXE_ghost-executor");
const WATCHDOG: &str = env!("CARGO_BIN_EXE_ghost-watchdog");

/// Sizes of one run.
pub struct Sizes {
    pub drain: usize,
    pub history: usize,
    pub rounds: usize,
    pub pickups: usize,
    pub idle: Duration,
    pub pueue: usize,
    /// How long pueue may run before its rate is taken.
    pub pueue_budget: Duration,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                drain: 500,
                history: 10_000,
                rounds: 1,
                pickups: 50,
                idle: Duration::from_secs(5),
                pueue: 100,
                pueue_budget: Duration::from_secs(10),
            }
        } else {
            Sizes {
                drain: 5000,
                history: 100_000,
                rounds: 3,
                pickups: 300,
                idle: Duration::from_secs(60),
                pueue: 5000,
                pueue_budget: Duration::from_secs(60),
            }
        }
    }
}

fn one_file_patch(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": format!("bench-{i}"), "operations": [
        {"op": "write", "path": format!("d{}/f{i}.txt", i % 50), "content": format!("patch {i}\n")}]}))
    .unwrap()
}

/// A fresh root with `targets` targets (`t0`, `t1`, …).
fn root_with(base: &Path, targets: usize) -> PathBuf {
    let root = base.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut cfg = String::new();
    for t in 0..targets {
        let _ = writeln!(cfg, "[targets.t{t}]\npath = \"trees/t{t}\"\n");
    }
    ghost_core::fs::durable_write(&root.join("ghost.toml"), cfg.as_bytes(), 0o600).unwrap();
    let names: Vec<String> = (0..targets).map(|t| format!("t{t}")).collect();
    Layout::new(&root)
        .create(names.iter().map(String::as_str))
        .unwrap();
    root
}

/// Fill `dir` with `n` small entry files quickly (no fsync: set-up only).
fn fill(dir: &Path, n: usize) {
    for _ in 0..n {
        let p = dir.join(format!("{}.json", ghost_core::queue::new_name()));
        std::fs::File::create(p)
            .unwrap()
            .write_all(b"{\"id\": \"x\", \"operations\": []}\n")
            .unwrap();
    }
}

/// `n` finished entries on target `default` as admission and the executor
/// leave them: each in `done/` with its summary, the summary's backup and its
/// id record. Written plainly (not durably): what is measured is the daemons
/// living beside them.
fn history(layout: &Layout, n: usize) {
    let put = |p: PathBuf, bytes: &[u8]| {
        std::fs::File::create(p)
            .and_then(|mut f| f.write_all(bytes))
            .unwrap()
    };
    let q = layout.queue("default");
    let sums = layout.summaries("default");
    std::fs::create_dir_all(sums.join(".backup")).unwrap();
    std::fs::create_dir_all(layout.ids()).unwrap();
    let body = vec![b'x'; 600];
    for i in 0..n {
        let name = ghost_core::queue::new_name();
        let id = format!("h{i}");
        let doc = serde_json::json!({"id": id, "operations": []});
        put(
            q.entry_path(QueueState::Done, &name),
            &serde_json::to_vec(&doc).unwrap(),
        );
        put(sums.join(format!("{name}.json")), &body);
        put(sums.join(".backup").join(format!("{name}.json")), &body);
        let rec = ghost_core::ids::IdRecord {
            md5: ghost_core::patch::parse::canonical_md5(&doc),
            target: "default".into(),
            name,
            id,
        };
        put(
            ghost_core::ids::record_path(layout, &rec.id),
            &serde_json::to_vec(&rec).unwrap(),
        );
    }
}

/// Flush what the set-up wrote or removed (100,000 small files, a deleted
/// fixture), so that its writeback does not land in the next timed window:
/// an fsync commits the filesystem's journal with every dirty inode in it.
fn settle() {
    let ok = Command::new("sync").status().is_ok_and(|s| s.success());
    assert!(ok, "sync failed");
}

/// The `fsyncs` of the last `EXECUTOR_STOPPED` line of the executor's log.
fn fsyncs(root: &Path) -> u64 {
    let log = std::fs::read_to_string(root.join("logs/executor.log")).unwrap_or_default();
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "EXECUTOR_STOPPED")
        .and_then(|v| v["fsyncs"].as_u64())
        .unwrap_or(0)
}

pub struct DrainResult {
    pub wall: Duration,
    pub fsyncs_per_patch: f64,
}

/// Queue `n` one-file patches spread round-robin over `targets` targets (with
/// `history` entries already in the first target's `done/`), then time
/// `ghost-executor --drain`.
fn drain(base: &Path, n: usize, targets: usize, history: usize) -> DrainResult {
    let root = root_with(base, targets);
    let layout = Layout::new(&root);
    fill(&layout.queue("t0").dir(QueueState::Done), history);
    for i in 0..n {
        layout
            .queue(&format!("t{}", i % targets))
            .enqueue(&one_file_patch(i))
            .unwrap();
    }
    settle();
    let t = Instant::now();
    let out = Command::new(EXECUTOR)
        .args(["--drain", "-q", "--root"])
        .arg(&root)
        .output()
        .expect("run executor");
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: usize = (0..targets)
        .map(|t| {
            layout
                .queue(&format!("t{t}"))
                .list(QueueState::Done)
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(done, n + history, "every patch applied");
    DrainResult {
        wall,
        fsyncs_per_patch: fsyncs(&root) as f64 / n as f64,
    }
}

/// A daemon of the benchmark, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc(pub Child);

impl Proc {
    /// `ghost-executor -q` on `root`, its output discarded.
    pub fn executor(root: &Path) -> Proc {
        Proc(
            Command::new(EXECUTOR)
                .args(["-q", "--root"])
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running executor on a queue `depth` deep: (its start-up until the first
/// batch is in `done/`, the time for the next `count` patches). The second is
/// the per-patch cost on a long queue; the first includes listing it once.
fn deep_queue(base: &Path, depth: usize, count: usize) -> (Duration, Duration) {
    let root = root_with(base, 1);
    let q = Layout::new(&root).queue("t0");
    let pending = q.dir(QueueState::Pending);
    // Patches that apply: one-file writes, created without fsync (set-up).
    for i in 0..depth {
        let p = pending.join(format!("{}.json", ghost_core::queue::new_name()));
        std::fs::File::create(p)
            .unwrap()
            .write_all(&one_file_patch(i))
            .unwrap();
    }
    settle();
    let t = Instant::now();
    let _exec = Proc::executor(&root);
    let done = q.dir(QueueState::Done);
    // Each entry in done/ has its record beside it.
    let in_done = || std::fs::read_dir(&done).map_or(0, |d| d.count() / 2);
    let mut first = None;
    loop {
        let n = in_done();
        match first {
            None if n > 0 => first = Some((t.elapsed(), n)),
            Some((at, n0)) if n >= n0 + count => {
                // Per patch over the patches done since, scaled to `count`.
                let per = (t.elapsed() - at).as_secs_f64() / (n - n0) as f64;
                return (at, Duration::from_secs_f64(per * count as f64));
            }
            _ => {}
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "the deep queue stalled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Pickup latency, one entry at a time on an idle executor: from the rename
/// into `pending/` (the event) until the claim has renamed it out.
fn pickups(base: &Path, n: usize) -> Vec<Duration> {
    let root = root_with(base, 1);
    let q = Layout::new(&root).queue("t0");
    let _exec = Proc::executor(&root);
    let hb = Layout::new(&root).heartbeat("executor");
    let t = Instant::now();
    while !hb.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "executor did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    settle();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = ghost_core::queue::new_name();
        let staged = q.tmp_dir().join(format!("{name}.json"));
        ghost_core::fs::durable_write(&staged, &one_file_patch(i), 0o600).unwrap();
        let dest = q.entry_path(QueueState::Pending, &name);
        // The event is the rename into pending/: time from it to the claim's
        // rename out of it. The directories are fsynced once it is seen, so
        // the harness's own fsyncs are not counted against the executor.
        // Timed from before the rename: the watcher may wake the executor,
        // and the claim finish, before the rename call has returned here.
        let t = Instant::now();
        #[allow(clippy::disallowed_methods)] // made durable just below
        std::fs::rename(&staged, &dest).unwrap();
        // Poll every 20 µs, not spin: on 2 cores a spinning observer takes
        // the core the executor's threads would wake on.
        while dest.exists() {
            std::thread::sleep(Duration::from_micros(20));
        }
        out.push(t.elapsed());
        ghost_core::fs::fsync_dir(&q.dir(QueueState::Pending)).unwrap();
        ghost_core::fs::fsync_dir(&q.tmp_dir()).unwrap();
        // Let it finish before the next one: each arrival finds it idle.
        let done = q.entry_path(QueueState::Done, &name);
        let t2 = Instant::now();
        while !done.exists() {
            assert!(
                t2.elapsed() < Duration::from_secs(20),
                "patch never applied"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    out.sort();
    out
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Idle CPU share and RSS of the watchdog, executor, bridge and monitor on a root with
/// `history` entries in `done/`, over `idle`.
/// The family idle on a root with `history` entries in `done/`: per daemon
/// its CPU share over `idle` and RSS, and how long start-up work took.
fn idle_family(base: &Path, idle: Duration, history: usize) -> (Vec<(String, f64, u64)>, Duration) {
    let root = base.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "[bridge]\nlisten = \"127.0.0.1:{port}\"\n\n[watchdog.children.bridge.env]\nGHOST_BRIDGE_TOKEN = \"bench-token-0123456789abcdef\"\n"
    );
    ghost_core::fs::durable_write(&root.join("ghost.toml"), cfg.as_bytes(), 0o600).unwrap();
    let layout = Layout::new(&root);
    layout.create(["default"]).unwrap();
    self::history(&layout, history);
    let wd = Proc(
        Command::new(WATCHDOG)
            .args(["-q", "--root"])
            .arg(&root)
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid_of = |c: &str| {
        ghost_core::heartbeat::read(&layout.heartbeat(c))
            .ok()
            .filter(|h| h.status == "running")
            .map(|h| h.pid)
    };
    let t = Instant::now();
    while ["executor", "bridge", "monitor"]
        .iter()
        .any(|c| pid_of(c).is_none())
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "family did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let procs = [
        ("ghost-watchdog".to_string(), wd.0.id()),
        ("ghost-executor".to_string(), pid_of("executor").unwrap()),
        ("ghost-bridge".to_string(), pid_of("bridge").unwrap()),
        ("ghost-monitor".to_string(), pid_of("monitor").unwrap()),
    ];
    // Let start-up work (recovery sweeps, the bridge's id index, the
    // monitor's first cycle) finish: until no daemon used more than 1 ms of
    // CPU in a second, at most two minutes.
    let mut meters: Vec<crate::monitor_bench::CpuMeter> = procs
        .iter()
        .map(|(_, p)| crate::monitor_bench::CpuMeter::new(*p))
        .collect();
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let grew: Vec<u64> = meters.iter_mut().map(|m| m.sample()).collect();
        let busy = grew.iter().any(|g| *g > 1_000_000);
        if !busy || t.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    let settled = t.elapsed();
    for m in &mut meters {
        m.total = 0;
    }
    // Sampled every second, so that a thread that exits keeps its time.
    let t = Instant::now();
    while t.elapsed() < idle {
        std::thread::sleep(Duration::from_secs(1).min(idle.saturating_sub(t.elapsed())));
        for m in &mut meters {
            m.sample();
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let out = procs
        .iter()
        .zip(&meters)
        .map(|((n, p), m)| {
            let secs = m.total as f64 / 1e9;
            (n.clone(), 100.0 * secs / wall, rss_kib(*p))
        })
        .collect();
    (out, settled)
}

/// pueue, if installed (or installable): `n` shell tasks that each write
/// their file durably, all queued while pueue is paused; then run one at a
/// time for at most `budget`, then 8 at a time for at most `budget` more.
/// pueue's daemon notices a finished task on a polling loop and saves its
/// whole state after each one, so 5,000 queued tasks would take most of an
/// hour. Returns (tasks finished, time) of each window; an error when pueue is
/// unavailable, with the reason.
fn pueue(
    base: &Path,
    n: usize,
    install: bool,
    budget: Duration,
) -> Result<[(usize, Duration); 2], String> {
    let bin = |name: &str| -> Option<PathBuf> {
        let home = std::env::var_os("HOME").map(PathBuf::from)?;
        let cargo = home.join(".cargo/bin").join(name);
        if cargo.exists() {
            return Some(cargo);
        }
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    if bin("pueued").is_none() && !install {
        return Err("pueue is not installed (the quick mode does not install it)".into());
    }
    if bin("pueued").is_none() {
        eprintln!("pueue is not installed: running `cargo install --locked pueue`");
        let ok = Command::new("cargo")
            .args(["install", "--locked", "pueue"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("pueue is not installed and `cargo install --locked pueue` failed".into());
        }
    }
    let (Some(client), Some(daemon)) = (bin("pueue"), bin("pueued")) else {
        return Err("pueue is not installed".into());
    };
    let dir = base.join("pueue");
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let cfg = dir.join("pueue.yml");
    let text = format!(
        "shared:\n  pueue_directory: {d}\n  runtime_directory: {d}/run\n  use_unix_socket: true\n  unix_socket_path: {d}/run/pueue.socket\n",
        d = dir.display()
    );
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let _daemon = Proc(
        Command::new(&daemon)
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start pueued: {e}"))?,
    );
    let ctl = |args: &[&str]| -> Result<(), String> {
        let o = Command::new(&client)
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pueue {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    };
    let t = Instant::now();
    while ctl(&["status"]).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            return Err("pueued did not answer".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ctl(&["parallel", "1"])?;
    ctl(&["pause"])?;
    for i in 0..n {
        let out = dir.join("out").join(format!("f{i}.txt"));
        let cmd = format!(
            "printf 'patch {i}\\n' > {o}.tmp && sync {o}.tmp && mv {o}.tmp {o} && sync {d}",
            o = out.display(),
            d = dir.join("out").display()
        );
        ctl(&["add", "--", &cmd])?;
    }
    let finished = || {
        std::fs::read_dir(dir.join("out"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    };
    // One window: until every file is in place or `budget` has passed.
    let window = || {
        let (start, t) = (finished(), Instant::now());
        let (mut done, mut wall) = (start, Duration::ZERO);
        while done < n && wall < budget {
            std::thread::sleep(Duration::from_millis(200));
            done = finished();
            wall = t.elapsed();
        }
        (done - start, wall)
    };
    ctl(&["start"])?;
    let serial = window();
    ctl(&["parallel", "8"])?;
    let parallel = window();
    if finished() < n {
        ctl(&["reset", "--force"])?;
    }
    Ok([serial, parallel])
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms_list(v: &[Duration]) -> Vec<u128> {
    v.iter().map(|d| d.as_millis()).collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// A horizontal bar chart of `bars` (label, patches/s), hand-written SVG.
fn chart(bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let (w, row, left) = (760.0, 34.0, 300.0);
    let h = 40.0 + row * bars.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<text x=\"10\" y=\"20\" font-weight=\"bold\">Durable changes per second (higher is better)</text>\n"
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 32.0 + row * i as f64;
        let bw = (w - left - 90.0) * v / max;
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.0}\">{label}</text><rect x=\"{left}\" y=\"{y:.0}\" width=\"{bw:.1}\" height=\"22\" fill=\"#4a7fb5\"/><text x=\"{:.1}\" y=\"{:.0}\">{v:.0}/s</text>",
            y + 16.0,
            left + bw + 6.0,
            y + 16.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The pickup-latency section (also run alone: `GHOST_BENCH_ONLY=pickup`).
pub fn pickup_section(md: &mut String, base: &Path, sizes: &Sizes) {
    let d = tempfile::tempdir_in(base).unwrap();
    let pick = pickups(d.path(), sizes.pickups);
    eprintln!("pickups done");
    let _ = writeln!(md, "## Pickup latency\n");
    let _ = writeln!(md, "{} entries, one at a time, each renamed into `pending/` of an idle executor; latency from just before the rename (the event) until the claim has renamed the entry out of `pending/`, polled every 20 µs (the claim's record and fsyncs follow the rename; the harness fsyncs its directories after it has seen the claim): p50 **{:.2} ms**, p99 **{:.2} ms**, max {:.2} ms.\n", pick.len(), pct(&pick, 0.5).as_secs_f64() * 1e3, pct(&pick, 0.99).as_secs_f64() * 1e3, pick.last().unwrap().as_secs_f64() * 1e3);
}

/// Run every scenario and append its section to `md`.
pub fn run(md: &mut String, base: &Path, sizes: &Sizes) {
    let n = sizes.drain;
    let mut one = Vec::new();
    let mut four = Vec::new();
    let mut small = Vec::new();
    let mut deep_done = Vec::new();
    let mut raw = Vec::new();
    // Every round measures everything once, the disk's raw rate first, so
    // that each ratio compares figures taken minutes apart, not a whole run.
    for r in 0..sizes.rounds {
        settle();
        let d = tempfile::tempdir_in(base).unwrap();
        raw.push(crate::raw_durable_writes(d.path(), 1000));
        drop(d);
        let d = tempfile::tempdir_in(base).unwrap();
        one.push(drain(d.path(), n, 1, 0));
        let d = tempfile::tempdir_in(base).unwrap();
        four.push(drain(d.path(), n, 4, 0));
        let d = tempfile::tempdir_in(base).unwrap();
        small.push(drain(d.path(), 1000, 1, 0));
        let d = tempfile::tempdir_in(base).unwrap();
        deep_done.push(drain(d.path(), 1000, 1, sizes.history));
        eprintln!("executor drain round {}/{}", r + 1, sizes.rounds);
    }
    let (mut shallow_q, mut deep_q) = (Vec::new(), Vec::new());
    for _ in 0..sizes.rounds {
        let d = tempfile::tempdir_in(base).unwrap();
        shallow_q.push(deep_queue(d.path(), 2000, 1000));
        drop(d);
        let d = tempfile::tempdir_in(base).unwrap();
        deep_q.push(deep_queue(d.path(), sizes.history, 1000));
    }
    eprintln!("deep queue done");
    let d = tempfile::tempdir_in(base).unwrap();
    let (idle, _) = idle_family(d.path(), sizes.idle, 0);
    let d = tempfile::tempdir_in(base).unwrap();
    let hist_idle = sizes.idle / 3;
    let (idle_hist, settled) = idle_family(d.path(), hist_idle, sizes.history);
    eprintln!("idle done");
    let d = tempfile::tempdir_in(base).unwrap();
    let install = sizes.rounds > 1;
    let pueue = pueue(d.path(), sizes.pueue, install, sizes.pueue_budget);
    eprintln!("pueue done");

    let wall = |v: &[DrainResult]| median(v.iter().map(|d| d.wall).collect());
    let fs = |v: &[DrainResult]| median_f(v.iter().map(|d| d.fsyncs_per_patch).collect());
    // Per round: a figure over another taken in the same round.
    let ratio = |a: &[Duration], b: &[Duration]| {
        median_f(
            a.iter()
                .zip(b)
                .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
                .collect(),
        )
    };
    let walls = |v: &[DrainResult]| v.iter().map(|d| d.wall).collect::<Vec<_>>();
    let raw_rate = rate(1000, median(raw.clone()));
    // Patches/s over raw writes/s, round by round: raw time per write over drain time per patch.
    let vs_raw = |v: &[DrainResult]| {
        let per_patch: Vec<Duration> = walls(v).iter().map(|w| *w / n as u32).collect();
        let per_raw: Vec<Duration> = raw.iter().map(|w| *w / 1000).collect();
        ratio(&per_raw, &per_patch)
    };
    let (w1, w4) = (wall(&one), wall(&four));
    let (r1, r4) = (rate(n, w1), rate(n, w4));
    let _ = writeln!(md, "## Executor: drain, group commit, flat cost\n");
    let _ = writeln!(md, "One-file patches without checks, `ghost-executor --drain` (start-up and recovery sweep included), batches of up to `executor.batch_max` = 64. fsyncs are counted by the executor itself (`ghost_core::fs::fsync_count`, logged at exit) and divided by the patches applied. {} rounds; each measures the disk's raw durable-write rate (1,000 writes of a small file: temp, fsync, rename, fsync of the directory) and then every drain once, with the set-up's writes flushed (`sync`) before each timed window. Medians; the ratios are medians of the per-round ratios.\n", sizes.rounds);
    let _ = writeln!(md, "| measurement | median | patches/s | per patch | fsyncs/patch | vs raw durable writes (same round) |\n|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| raw durable writes | {:.0} ms per 1,000 | {raw_rate:.0} writes/s | | 2 | 1 |",
        median(raw.clone()).as_secs_f64() * 1e3
    );
    let _ = writeln!(
        md,
        "| {n} patches, one target | {:.0} ms | **{r1:.0}** | {:.2} ms | {:.2} | {:.2} |",
        w1.as_secs_f64() * 1e3,
        1e3 / r1,
        fs(&one),
        vs_raw(&one)
    );
    let _ = writeln!(
        md,
        "| {n} patches over four targets | {:.0} ms | **{r4:.0}** | {:.2} ms | {:.2} | {:.2} |",
        w4.as_secs_f64() * 1e3,
        1e3 / r4,
        fs(&four),
        vs_raw(&four)
    );
    let (ws, wd) = (wall(&small), wall(&deep_done));
    let _ = writeln!(
        md,
        "| 1,000 patches, empty history | {:.0} ms | {:.0} | {:.2} ms | {:.2} | |",
        ws.as_secs_f64() * 1e3,
        rate(1000, ws),
        ws.as_secs_f64(),
        fs(&small)
    );
    let _ = writeln!(
        md,
        "| 1,000 patches, {} entries in `done/` | {:.0} ms | {:.0} | {:.2} ms | {:.2} | |",
        sizes.history,
        wd.as_secs_f64() * 1e3,
        rate(1000, wd),
        wd.as_secs_f64(),
        fs(&deep_done)
    );
    let steady = |v: &[(Duration, Duration)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let startup = |v: &[(Duration, Duration)]| median(v.iter().map(|x| x.0).collect());
    let (qs, qd) = (median(steady(&shallow_q)), median(steady(&deep_q)));
    let _ = writeln!(md, "| 1,000 patches of a queue 2,000 deep (running executor, after its first batch) | {:.0} ms | {:.0} | {:.2} ms | | |", qs.as_secs_f64() * 1e3, rate(1000, qs), qs.as_secs_f64());
    let _ = writeln!(
        md,
        "| 1,000 patches of a queue {} deep (running executor, after its first batch) | {:.0} ms | {:.0} | {:.2} ms | | |\n",
        sizes.history,
        qd.as_secs_f64() * 1e3,
        rate(1000, qd),
        qd.as_secs_f64()
    );
    let _ = writeln!(md, "Per-patch cost with {} in history vs none: **{:+.0} %**; with {} queued vs 2,000: **{:+.0} %** (the target is within 20 %). Start-up until the first batch was in `done/`: {:.0} ms with 2,000 queued, {:.0} ms with {} (listing the queue once).\n", sizes.history, 100.0 * (ratio(&walls(&deep_done), &walls(&small)) - 1.0), sizes.history, 100.0 * (ratio(&steady(&deep_q), &steady(&shallow_q)) - 1.0), startup(&shallow_q).as_secs_f64() * 1e3, startup(&deep_q).as_secs_f64() * 1e3, sizes.history);
    let _ = writeln!(md, "Rounds (ms): raw {:?}; one target {:?}; four targets {:?}; 1,000 empty history {:?}; 1,000 with history {:?}; queue 2,000 deep {:?}; queue {} deep {:?}.\n", ms_list(&raw), ms_list(&walls(&one)), ms_list(&walls(&four)), ms_list(&walls(&small)), ms_list(&walls(&deep_done)), ms_list(&steady(&shallow_q)), sizes.history, ms_list(&steady(&deep_q)));

    pickup_section(md, base, sizes);

    let _ = writeln!(md, "## Idle cost of every daemon\n");
    let _ = writeln!(md, "The whole family under `ghost-watchdog` (default configuration, nothing queued), CPU time from the threads' `/proc/<pid>/task/*/schedstat` (nanoseconds) over {:?}, resident memory from `/proc/<pid>/status`; then the same over {:?} on a root with {} entries in `done/`, each with its summary, backup and id record as the system leaves them. Each measurement starts once start-up work is over: no daemon used 1 ms of CPU in a second (with the large history that took {:.0} s: the recovery sweeps, the monitor's first cycle with its full summary sweep).\n", sizes.idle, hist_idle, sizes.history, settled.as_secs_f64());
    let _ = writeln!(md, "| daemon | CPU idle | RSS | CPU idle, {} in history | RSS, {} in history |\n|---|---|---|---|---|", sizes.history, sizes.history);
    for ((name, cpu, rss), (_, cpu2, rss2)) in idle.iter().zip(&idle_hist) {
        let _ = writeln!(
            md,
            "| {name} | {cpu:.3} % | {:.1} MiB | {cpu2:.3} % | {:.1} MiB |",
            *rss as f64 / 1024.0,
            *rss2 as f64 / 1024.0
        );
    }
    md.push('\n');

    let _ = writeln!(md, "## Side by side with pueue\n");
    let mut bars = vec![
        ("ghostbridge, one target".to_string(), r1),
        ("ghostbridge, four targets".to_string(), r4),
    ];
    match &pueue {
        Ok([(ns, s), (np, p)]) => {
            let (rs, rp) = (rate(*ns, *s), rate(*np, *p));
            let _ = writeln!(md, "The same {} changes as pueue tasks: each task is `sh -c` writing its file, `sync` of the file, `mv` into place and `sync` of the directory, so pueue too applies every change durably. All tasks are queued while pueue is paused; then pueue runs them one at a time for {} s, then 8 at a time for {} s more (or until every file is in place), and each rate counts the changes finished in its window with the rest of the queue still waiting (pueue's daemon notices a finished task on a polling loop and saves its whole state after each, so a deep queue finishes about two tasks a second).\n", sizes.pueue, sizes.pueue_budget.as_secs(), sizes.pueue_budget.as_secs());
            let _ = writeln!(md, "| runner | finished in the window | wall | changes/s | ghostbridge (one target) is faster by |\n|---|---|---|---|---|");
            let _ = writeln!(
                md,
                "| pueue, serial | {ns} | {:.1} s | {rs:.1} | **{:.0}×** |",
                s.as_secs_f64(),
                r1 / rs
            );
            let _ = writeln!(
                md,
                "| pueue, 8 in parallel | {np} | {:.1} s | {rp:.1} | **{:.0}×** |\n",
                p.as_secs_f64(),
                r1 / rp
            );
            bars.push(("pueue, serial".into(), rs));
            bars.push(("pueue, 8 in parallel".into(), rp));
        }
        Err(e) => {
            let _ = writeln!(md, "Not measured in this run: {e}. The harness looks for `pueue` and `pueued` in `~/.cargo/bin` and `PATH`; install them with `cargo install --locked pueue`.\n");
        }
    }
    let svg = chart(&bars);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.svg");
    ghost_core::fs::durable_write(&out, svg.as_bytes(), 0o644).unwrap();
    let _ = writeln!(md, "![drain rates](benchmarks.svg)\n");
}
