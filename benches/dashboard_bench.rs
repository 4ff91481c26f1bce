//! Dashboard scenarios: the real `ghost-monitor` binary serving its
//! dashboard on the monitor benchmark's large root (100,000 entries in
//! `pending/`, 100,000 in `done/`) plus stuck and failed entries with their
//! records and 25 hours of history. Answer times of what the page asks for (the overview, one page of
//! the queue browser, the stuck list) and of `/metrics`, each over repeated
//! requests on one keep-alive connection as a browser holds it; then the
//! monitor's CPU and memory while a client does exactly what an open page
//! does: one request for its view every 3 s (the page's `POLL_MS`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ghost_core::health::{Sample, SampleTarget};
use ghost_core::queue::{EntryRecord, QueueState, Reason};
use ghost_core::Layout;

use crate::monitor_bench::{fixture, put, rss_kib, CpuMeter, N};

const MONITOR: &str = env!("CARGO_BIN_EXE_ghost-monitor");
const TOKEN: &str = "bench-dashboard-token-0123456789";
/// The page's polling interval (`POLL_MS` in the dashboard's app.js).
const POLL: Duration = Duration::from_secs(3);
const STUCK: usize = 50;
const FAILED: usize = 1_000;
/// The history kept by default (`monitor.history_keep`, 25 h), a sample a minute.
const HISTORY_MINUTES: u64 = 25 * 60;

/// The large root of the monitor benchmark (built here when the monitor's
/// section did not run first), plus stuck and failed entries with records.
fn root(base: &Path) -> std::path::PathBuf {
    let root = base.join("monitor-large");
    if !root.join("queue").exists() {
        fixture(&root);
    }
    let l = Layout::new(&root);
    let q = l.queue("default");
    let sums = l.summaries("default");
    if q.list(QueueState::Stuck).unwrap().is_empty() {
        let body = vec![b'x'; 600];
        for (state, n) in [(QueueState::Stuck, STUCK), (QueueState::Failed, FAILED)] {
            for i in 0..n {
                let name = ghost_core::queue::new_name();
                put(
                    &q.entry_path(state, &name),
                    format!("{{\"id\":\"bench-{state}-{i}\",\"operations\":[]}}").as_bytes(),
                );
                let rec = EntryRecord {
                    attempts: 3,
                    reason: Some(Reason {
                        kind: "transient".into(),
                        message: "3 attempts failed".into(),
                        at: ghost_core::time::now_rfc3339(),
                        hint: None,
                    }),
                    ..Default::default()
                };
                put(
                    &q.record_path(state, &name),
                    &serde_json::to_vec(&rec).unwrap(),
                );
                if state == QueueState::Failed {
                    put(&sums.join(format!("{name}.json")), &body);
                    put(&sums.join(".backup").join(format!("{name}.json")), &body);
                }
            }
        }
    }
    // A day's history, as a monitor that has run that long keeps (one
    // sample a minute): the overview's charts read all of it.
    let history = l.history();
    std::fs::create_dir_all(&history).unwrap();
    if std::fs::read_dir(&history).unwrap().next().is_none() {
        let now = ghost_core::time::unix_ms(std::time::SystemTime::now());
        let mut files: std::collections::BTreeMap<std::path::PathBuf, String> = Default::default();
        for m in 0..HISTORY_MINUTES {
            let at_ms = now - (HISTORY_MINUTES - m) * 60_000;
            let s = Sample {
                at_ms,
                targets: [(
                    "default".to_string(),
                    SampleTarget {
                        pending: N,
                        stuck: STUCK,
                        failed: FAILED,
                        done_per_min: (m % 7) as f64,
                        ..Default::default()
                    },
                )]
                .into(),
                firing: STUCK,
            };
            let f = files
                .entry(ghost_core::health::history_file(&l, at_ms))
                .or_default();
            f.push_str(&serde_json::to_string(&s).unwrap());
            f.push('\n');
        }
        for (p, text) in files {
            put(&p, text.as_bytes());
        }
    }
    root
}

struct MonitorProc(Child);

impl Drop for MonitorProc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn get(c: &reqwest::blocking::Client, url: &str) -> Duration {
    let t = Instant::now();
    let r = c.get(url).bearer_auth(TOKEN).send().expect("request");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    let body = r.bytes().expect("body");
    assert!(!body.is_empty());
    t.elapsed()
}

/// `n` sequential requests: (median, p99, max).
fn timed(c: &reqwest::blocking::Client, url: &str, n: usize) -> (Duration, Duration, Duration) {
    get(c, url); // warm: the connection, the page cache
    let mut v: Vec<Duration> = (0..n).map(|_| get(c, url)).collect();
    v.sort();
    (
        crate::percentile(&v, 0.5),
        crate::percentile(&v, 0.99),
        v[v.len() - 1],
    )
}

/// The monitor's CPU (%) and RSS (KiB) over `window` while a client polls
/// `url` every [`POLL`] (none: idle).
fn while_open(
    pid: u32,
    c: &reqwest::blocking::Client,
    url: Option<&str>,
    window: Duration,
) -> (f64, u64) {
    let mut meter = CpuMeter::new(pid);
    let w = Instant::now();
    let mut next = w;
    while w.elapsed() < window {
        if let Some(u) = url {
            get(c, u);
        }
        next += POLL;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d.min(window.saturating_sub(w.elapsed())));
        }
        meter.sample();
    }
    meter.sample();
    let cpu = meter.total as f64 / w.elapsed().as_nanos() as f64 * 100.0;
    (cpu, rss_kib(pid))
}

pub fn run(md: &mut String, base: &Path, quick: bool) {
    let t = Instant::now();
    let root = root(base);
    eprintln!("dashboard fixture: {:?}", t.elapsed());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        root.join("ghost.toml"),
        format!("[monitor]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let health = Layout::new(&root).health();
    if health.exists() {
        ghost_core::fs::durable_remove(&health).unwrap();
    }
    let t = Instant::now();
    let m = MonitorProc(
        Command::new(MONITOR)
            .args(["-q", "--root"])
            .arg(&root)
            .env("GHOST_DASHBOARD_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = m.0.id();
    let url = format!("http://127.0.0.1:{port}");
    while !health.exists() {
        std::thread::sleep(Duration::from_millis(20));
        assert!(t.elapsed() < Duration::from_secs(300), "no health model");
    }
    let c = reqwest::blocking::Client::new();
    while c
        .get(format!("{url}/healthz"))
        .send()
        .map_or(true, |r| !r.status().is_success())
    {
        std::thread::sleep(Duration::from_millis(20));
        assert!(t.elapsed() < Duration::from_secs(300), "no dashboard");
    }
    std::thread::sleep(Duration::from_secs(2)); // let the first cycle's work settle

    let n = if quick { 30 } else { 200 };
    let overview = format!("{url}/api/v1/overview");
    let browser = format!("{url}/api/v1/entries?state=all&page=1&limit=50");
    let deep = format!("{url}/api/v1/entries?state=all&page=2000&limit=50");
    let filtered = format!("{url}/api/v1/entries?state=all&min_age=1s&max_age=1d&page=3&limit=50");
    let stuck = format!("{url}/api/v1/entries?state=stuck,failed&page=1&limit=50");
    let metrics = format!("{url}/metrics");
    let rows = [
        ("overview (`GET /api/v1/overview`)", &overview, 300.0),
        (
            "queue browser, first page (`entries?state=all&page=1&limit=50`)",
            &browser,
            300.0,
        ),
        ("queue browser, page 2,000 of the same", &deep, 300.0),
        (
            "queue browser, age filter (`min_age=1s&max_age=1d&page=3`)",
            &filtered,
            300.0,
        ),
        (
            "stuck & failed page (`entries?state=stuck,failed`)",
            &stuck,
            300.0,
        ),
        ("`GET /metrics`", &metrics, 100.0),
    ];
    let answers: Vec<_> = rows.iter().map(|(_, u, _)| timed(&c, u, n)).collect();

    let window = if quick {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(60)
    };
    let (cpu_idle, rss_idle) = while_open(pid, &c, None, window);
    let (cpu_ov, rss_ov) = while_open(pid, &c, Some(&overview), window);
    let (cpu_qb, rss_qb) = while_open(pid, &c, Some(&browser), window);
    drop(m);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let _ = writeln!(md, "## Dashboard\n");
    let _ = writeln!(md, "The real `ghost-monitor` with its dashboard, on the monitor section's root ({N} entries in `pending/`, {N} in `done/` with summaries) plus {STUCK} stuck and {FAILED} failed entries with their records. Each answer is timed from request to last byte, over {n} sequential requests on one keep-alive connection (a browser's), with the Bearer token; the monitor cycles meanwhile as usual (every 30 s, and on file events). Then the monitor's CPU (its threads' `schedstat`) over {} s: idle, and with a client doing what an open page does (one request for its view every 3 s).\n", window.as_secs());
    let _ = writeln!(md, "| measurement | result | target |\n|---|---|---|");
    for ((what, _, target), (p50, p99, max)) in rows.iter().zip(&answers) {
        let _ = writeln!(
            md,
            "| {what}: median / p99 (max) | **{:.1} ms** / {:.1} ms ({:.1} ms) | < {target:.0} ms |",
            ms(*p50),
            ms(*p99),
            ms(*max)
        );
    }
    let mib = |k: u64| k as f64 / 1024.0;
    let _ = writeln!(
        md,
        "| monitor idle, no page open: CPU / RSS | {cpu_idle:.3} % / {:.1} MiB | |",
        mib(rss_idle)
    );
    let _ = writeln!(md, "| overview page open (polls every 3 s): CPU / RSS | **{cpu_ov:.3} %** / {:.1} MiB | < 1 % |", mib(rss_ov));
    let _ = writeln!(md, "| queue browser open on its first page (polls every 3 s): CPU / RSS | **{cpu_qb:.3} %** / {:.1} MiB | < 1 % |\n", mib(rss_qb));
}
