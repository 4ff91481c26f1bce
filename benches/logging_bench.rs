//! Logging: our writer (`ghost_core::logging`) against `tracing-appender`'s
//! non-blocking rolling writer, in the same run, with the same subscriber
//! set-up, the same events, the same threads and the same channel size.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghost_core::logging::{writer, JsonLayer, SystemClock, WriterConfig};
use tracing_subscriber::layer::SubscriberExt;

const THREADS: usize = 4;
const PER_THREAD: usize = 50_000;
const CAPACITY: usize = 16 * 1024;
const ROUNDS: usize = 3;

struct Run {
    /// From the first event to everything written (the writer stopped).
    wall: Duration,
    /// Lines that reached the file.
    written: usize,
    /// Time each event took on the caller's thread.
    caller: Vec<Duration>,
}

/// `THREADS` threads log `PER_THREAD` events each through `dispatch`.
fn emit(dispatch: &tracing::Dispatch) -> Vec<Duration> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let d = dispatch.clone();
                s.spawn(move || {
                    let mut times = Vec::with_capacity(PER_THREAD);
                    tracing::dispatcher::with_default(&d, || {
                        for i in 0..PER_THREAD {
                            let start = Instant::now();
                            tracing::info!(
                                event = "PATCH_APPLIED",
                                target = "default",
                                patch_id = "p-0123456789",
                                attempt = 1u64,
                                t = t as u64,
                                i = i as u64,
                                "applied {i}"
                            );
                            times.push(start.elapsed());
                        }
                    });
                    times
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn count_lines(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("PATCH_APPLIED"))
                .count()
        })
        .sum()
}

fn ours(dir: &Path) -> Run {
    let logs = ghost_core::config::LogsConfig {
        max_bytes: 1 << 40, // no rotation: tracing-appender's rolls daily
        fallback_dir: Some(dir.join("fallback")),
        ..Default::default()
    };
    let mut cfg = WriterConfig::new("bench", dir, &logs);
    cfg.capacity = CAPACITY;
    let start = Instant::now();
    let handle = writer::start(cfg, Arc::new(SystemClock)).unwrap();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(JsonLayer::new("bench", handle.sink())),
    );
    let caller = emit(&dispatch);
    drop(dispatch);
    handle.shutdown(Duration::from_secs(60));
    let wall = start.elapsed();
    Run {
        wall,
        written: count_lines(&dir.join("logs")),
        caller,
    }
}

fn appender(dir: &Path) -> Run {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let start = Instant::now();
    let rolling = tracing_appender::rolling::daily(&logs, "bench.log");
    let (nb, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(CAPACITY)
        .lossy(true)
        .finish(rolling);
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(nb),
        ),
    );
    let caller = emit(&dispatch);
    drop(dispatch);
    // Its guard waits for the worker (at most a second); wait for the rest.
    drop(guard);
    let mut written = count_lines(&logs);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let n = count_lines(&logs);
        if n == written {
            break;
        }
        written = n;
    }
    Run {
        wall: start.elapsed(),
        written,
        caller,
    }
}

struct Summary {
    lines_per_sec: f64,
    written: usize,
    p50: Duration,
    p99: Duration,
}

fn summarise(runs: Vec<Run>) -> Summary {
    let mut rates: Vec<f64> = runs
        .iter()
        .map(|r| r.written as f64 / r.wall.as_secs_f64())
        .collect();
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut written: Vec<usize> = runs.iter().map(|r| r.written).collect();
    written.sort();
    let mut caller: Vec<Duration> = runs.into_iter().flat_map(|r| r.caller).collect();
    caller.sort();
    Summary {
        lines_per_sec: rates[rates.len() / 2],
        written: written[written.len() / 2],
        p50: super::percentile(&caller, 0.5),
        p99: super::percentile(&caller, 0.99),
    }
}

pub fn run(md: &mut String) {
    let base = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate, so drift in the machine's speed hits both alike.
        let d = tempfile::tempdir_in(base.path()).unwrap();
        a.push(ours(d.path()));
        let d = tempfile::tempdir_in(base.path()).unwrap();
        b.push(appender(d.path()));
        eprintln!("logging round {}/{ROUNDS}", round + 1);
    }
    let (a, b) = (summarise(a), summarise(b));
    let total = THREADS * PER_THREAD;
    let _ = writeln!(md, "## Logging: writer thread against tracing-appender\n");
    let _ = writeln!(md, "{THREADS} threads log {PER_THREAD} events each (one `info!` with six fields) through a `tracing` subscriber whose only layer writes JSON lines to a file on the temp directory; both writers get a channel of {CAPACITY} lines and drop when it is full. Ours is `ghost_core::logging` (formats on the caller's thread, writes batches of whole lines with one `write(2)` on a dedicated thread, counts drops); the other is `tracing-appender`'s non-blocking writer over its daily rolling file appender with `tracing-subscriber`'s JSON formatter. Lines/s counts lines that reached the file, from the first event until the writer has stopped; caller time is what one `info!` costs the thread that logs it. Median of {ROUNDS} rounds, alternating.\n");
    let _ = writeln!(md, "| writer | lines written of {total} (median) | lines/s | caller p50 | caller p99 |\n|---|---|---|---|---|");
    for (name, s) in [
        ("ghost_core::logging", &a),
        ("tracing-appender non-blocking rolling", &b),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {} | **{:.0}** | {:.2} µs | **{:.2} µs** |",
            s.written,
            s.lines_per_sec,
            s.p50.as_secs_f64() * 1e6,
            s.p99.as_secs_f64() * 1e6
        );
    }
    let _ = writeln!(
        md,
        "\nRatio (ours / tracing-appender): lines/s {:.2}, caller p99 {:.2} (below 1 is faster).\n",
        a.lines_per_sec / b.lines_per_sec,
        a.p99.as_secs_f64() / b.p99.as_secs_f64()
    );
}
