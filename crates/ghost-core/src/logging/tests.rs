//! Tests of the writer through the `tracing` layer, as the binaries use it.

// Tests: fixtures are set up and damaged directly, not durably.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::*;
use crate::config::LogsConfig;
use crate::layout::Layout;

const WAIT: Duration = Duration::from_secs(20);

fn logs_config(f: impl FnOnce(&mut LogsConfig)) -> LogsConfig {
    let mut c = LogsConfig {
        compress: false,
        retry_interval: Duration::from_millis(50),
        ..LogsConfig::default()
    };
    f(&mut c);
    c
}

fn start_with(
    root: &Path,
    logs: LogsConfig,
    clock: Arc<dyn Clock>,
    capacity: usize,
) -> WriterHandle {
    let mut cfg = WriterConfig::new("unit", root, &logs);
    cfg.capacity = capacity;
    writer::start(cfg, clock).unwrap()
}

fn start(root: &Path, logs: LogsConfig) -> WriterHandle {
    start_with(root, logs, Arc::new(SystemClock), 1 << 16)
}

/// Log `n` events through the layer on this thread.
fn log_n(w: &WriterHandle, from: usize, n: usize) {
    let sub = tracing_subscriber::registry().with(JsonLayer::new("unit", w.sink()));
    tracing::subscriber::with_default(sub, || {
        for i in from..from + n {
            tracing::info!(event = "TEST", i = i as u64, "line {i}");
        }
    });
}

fn lines_of(path: &Path) -> Vec<Value> {
    let bytes = rotate::read_log(path).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: last line cut",
        path.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

/// Every line of the component, oldest file first.
fn all_lines(root: &Path) -> Vec<Value> {
    let logs = Layout::new(root).logs();
    let mut out = Vec::new();
    for r in rotate::list(&logs, "unit") {
        out.extend(lines_of(&r.path));
    }
    out.extend(lines_of(&logs.join("unit.log")));
    out
}

fn test_indices(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .filter(|v| v["event"] == "TEST")
        .map(|v| v["i"].as_u64().unwrap())
        .collect()
}

fn alerts(root: &Path) -> Vec<Value> {
    std::fs::read_dir(Layout::new(root).alerts_inbox())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| crate::fs::read_json(&e.path()).unwrap())
        .collect()
}

fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

#[test]
fn writes_json_lines_with_the_contract_fields() {
    let d = tempfile::tempdir().unwrap();
    let w = start(d.path(), logs_config(|_| {}));
    let sub = tracing_subscriber::registry().with(JsonLayer::new("executor", w.sink()));
    tracing::subscriber::with_default(sub, || {
        tracing::info!(
            event = "PATCH_APPLIED",
            patch_id = "p-1",
            attempt = 2u64,
            ok = true,
            note = "a \"quoted\"\nline\u{1}",
            "applied {}",
            "x"
        );
        tracing::warn!("no event field");
    });
    assert!(w.sink().flush(WAIT));
    let lines = lines_of(&d.path().join("logs/unit.log"));
    let v = &lines[0];
    assert_eq!(v["event"], "PATCH_APPLIED");
    assert_eq!(v["component"], "executor");
    assert_eq!(v["msg"], "applied x");
    assert_eq!(v["patch_id"], "p-1");
    assert_eq!(v["attempt"], 2);
    assert_eq!(v["ok"], true);
    assert_eq!(v["note"], "a \"quoted\"\nline\u{1}");
    assert_eq!(v["level"], "INFO");
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["pid"], std::process::id());
    assert_eq!(lines[1]["event"], "LOG");
    assert_eq!(lines[1]["level"], "WARN");
    assert!(w.health().report().primary_ok);
}

#[test]
fn rotates_by_size_with_a_ledger_record_per_rotation() {
    let d = tempfile::tempdir().unwrap();
    let w = start(d.path(), logs_config(|c| c.max_bytes = 2000));
    log_n(&w, 0, 100);
    assert!(w.sink().flush(WAIT));
    let logs = d.path().join("logs");
    let rotated = rotate::list(&logs, "unit");
    assert!(rotated.len() >= 3, "{rotated:?}");
    for r in &rotated {
        let len = std::fs::metadata(&r.path).unwrap().len();
        assert!(len <= 2000, "{} has {len} bytes", r.path.display());
        assert!(!r.compressed);
    }
    // Every line exactly once, in order, across the files.
    assert_eq!(
        test_indices(&all_lines(d.path())),
        (0..100).collect::<Vec<_>>()
    );
    let recs = ledger::read_tail(&logs, 1 << 20);
    assert_eq!(recs.len(), rotated.len());
    assert!(recs
        .iter()
        .all(|r| r.reason == ledger::Reason::Size && r.component == "unit"));
    let names: Vec<String> = rotated
        .iter()
        .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        recs.iter().map(|r| r.rotated.clone()).collect::<Vec<_>>(),
        names
    );
    assert_eq!(w.health().report().rotations, rotated.len() as u64);
}

#[test]
fn rotates_by_age_on_the_injected_clock() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045));
    let w = start_with(
        d.path(),
        logs_config(|c| c.max_age = Duration::from_secs(3600)),
        Arc::new(clock.clone()),
        1024,
    );
    log_n(&w, 0, 3);
    assert!(w.sink().flush(WAIT));
    clock.advance(Duration::from_secs(3599));
    log_n(&w, 3, 1);
    assert!(w.sink().flush(WAIT));
    let logs = d.path().join("logs");
    assert!(rotate::list(&logs, "unit").is_empty(), "not old enough yet");
    clock.advance(Duration::from_secs(1));
    // An idle writer rotates too: no new line is needed.
    assert!(wait_until(|| rotate::list(&logs, "unit").len() == 1));
    log_n(&w, 4, 1);
    assert!(w.sink().flush(WAIT));
    let r = rotate::list(&logs, "unit");
    assert_eq!(r[0].stamp, "20260102T040405.000Z");
    assert_eq!(test_indices(&lines_of(&r[0].path)), [0, 1, 2, 3]);
    assert_eq!(test_indices(&lines_of(&logs.join("unit.log"))), [4]);
    let recs = ledger::read_tail(&logs, 1 << 20);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason, ledger::Reason::Age);
    assert_eq!(recs[0].at, "2026-01-02T04:04:05.000Z");
}

#[test]
fn purge_keeps_exactly_keep_compressed_files() {
    let d = tempfile::tempdir().unwrap();
    let w = start(
        d.path(),
        logs_config(|c| {
            c.max_bytes = 400;
            c.keep = 10;
            c.compress = true;
        }),
    );
    log_n(&w, 0, 120);
    assert!(w.sink().flush(WAIT));
    let logs = d.path().join("logs");
    let r = rotate::list(&logs, "unit");
    assert_eq!(r.len(), 10, "{r:?}");
    assert!(r.iter().all(|r| r.compressed));
    let recs = ledger::read_tail(&logs, 1 << 20);
    assert!(
        recs.len() > 10,
        "more rotations than kept files: {}",
        recs.len()
    );
    assert!(recs.iter().all(|r| r.rotated.ends_with(".log.gz")));
    // The kept files are the newest, and what they hold is the end of the run.
    assert_eq!(
        recs[recs.len() - 10..]
            .iter()
            .map(|r| r.rotated.clone())
            .collect::<Vec<_>>(),
        r.iter()
            .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    );
    let idx = test_indices(&all_lines(d.path()));
    assert_eq!(*idx.last().unwrap(), 119);
    assert!(
        idx.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap within what is kept"
    );
}

#[test]
fn rapid_rotation_raises_one_alert() {
    let d = tempfile::tempdir().unwrap();
    let w = start(
        d.path(),
        logs_config(|c| {
            c.max_bytes = 300;
            c.rapid_rotations_per_hour = 3;
        }),
    );
    log_n(&w, 0, 6);
    assert!(w.sink().flush(WAIT));
    let rot = ledger::read_tail(&d.path().join("logs"), 1 << 20).len();
    let a = alerts(d.path());
    if rot <= 3 {
        panic!("the test needs more than 3 rotations, got {rot}");
    }
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["fingerprint"], "log_rapid_rotation:unit");
    assert_eq!(a[0]["severity"], "warning");
    assert_eq!(a[0]["rotations_in_hour"], 4);
    log_n(&w, 6, 6);
    assert!(w.sink().flush(WAIT));
    assert_eq!(alerts(d.path()).len(), 1, "one alert per episode");
}

#[test]
fn four_threads_of_100k_lines_never_tear_or_interleave() {
    let d = tempfile::tempdir().unwrap();
    let w = start_with(
        d.path(),
        logs_config(|c| {
            c.max_bytes = 4 << 20;
            c.keep = 1000;
        }),
        Arc::new(SystemClock),
        1 << 16,
    );
    let sub = tracing::Dispatch::new(
        tracing_subscriber::registry().with(JsonLayer::new("unit", w.sink())),
    );
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let sub = sub.clone();
            s.spawn(move || {
                tracing::dispatcher::with_default(&sub, || {
                    for i in 0..100_000u64 {
                        tracing::info!(
                            event = "TEST",
                            t,
                            i,
                            pad = "some text to make the line longer",
                            "line {i} of thread {t}"
                        );
                    }
                });
            });
        }
    });
    assert!(w.sink().flush(WAIT));
    let lines = all_lines(d.path());
    let mut seen = HashSet::new();
    let mut per_thread = [0u64; 4];
    let mut reported_drops = 0;
    for v in &lines {
        if v["event"] == "TEST" {
            let (t, i) = (v["t"].as_u64().unwrap(), v["i"].as_u64().unwrap());
            assert_eq!(v["msg"], format!("line {i} of thread {t}"));
            assert!(seen.insert((t, i)), "line {t}/{i} twice");
            per_thread[t as usize] += 1;
        } else if v["event"] == "LOG_LINES_DROPPED" {
            reported_drops += v["dropped"].as_u64().unwrap();
        }
    }
    let dropped = w.health().dropped_lines();
    // Nothing lost without being counted, and every count reported in the log.
    assert_eq!(seen.len() as u64 + dropped, 400_000, "{per_thread:?}");
    assert_eq!(reported_drops, dropped);
    assert!(
        rotate::list(&d.path().join("logs"), "unit").len() > 1,
        "rotated meanwhile"
    );
}

#[test]
fn an_overloaded_writer_counts_and_reports_dropped_lines() {
    let d = tempfile::tempdir().unwrap();
    let w = start_with(d.path(), logs_config(|_| {}), Arc::new(SystemClock), 1);
    log_n(&w, 0, 20_000);
    assert!(w.sink().flush(WAIT));
    log_n(&w, 20_000, 1);
    assert!(w.sink().flush(WAIT));
    let lines = all_lines(d.path());
    let written = test_indices(&lines).len() as u64;
    let dropped = w.health().dropped_lines();
    assert!(dropped > 0, "a channel of one line must overflow");
    assert_eq!(written + dropped, 20_001);
    let reported: u64 = lines
        .iter()
        .filter(|v| v["event"] == "LOG_LINES_DROPPED")
        .map(|v| v["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(reported, dropped);
    assert_eq!(w.health().report().dropped_lines, dropped);
}

#[test]
fn a_removed_log_directory_switches_to_the_fallback_and_back() {
    let d = tempfile::tempdir().unwrap();
    let fb = d.path().join("elsewhere");
    let w = start(
        d.path(),
        logs_config(|c| {
            c.fallback_dir = Some(fb.clone());
            c.retry_interval = Duration::from_secs(3600);
        }),
    );
    log_n(&w, 0, 1);
    assert!(w.sink().flush(WAIT));
    std::fs::remove_dir_all(d.path().join("logs")).unwrap();
    log_n(&w, 1, 2);
    assert!(w.sink().flush(WAIT));
    let h = w.health().report();
    assert!(!h.primary_ok);
    assert!(h.failing_since.is_some());
    assert_eq!(
        h.fallback_path.as_deref(),
        Some(fb.join("unit.log").to_str().unwrap())
    );
    assert!(h.last_error.unwrap().contains("removed"));
    let fallback = lines_of(&fb.join("unit.log"));
    assert_eq!(fallback[0]["event"], "LOG_PRIMARY_FAILED");
    assert_eq!(test_indices(&fallback), [1, 2]);
    let a = alerts(d.path());
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["fingerprint"], "log_write_failed:unit");
    assert_eq!(
        (a[0]["severity"].as_str(), a[0]["status"].as_str()),
        (Some("critical"), Some("firing"))
    );
    let crit = std::fs::read_to_string(d.path().join("alerts/CRITICAL_ALERT")).unwrap();
    assert!(
        crit.contains("CRITICAL ghost-unit: ghost-unit cannot write its log"),
        "{crit}"
    );
    assert_eq!(h.dropped_lines, 0);
    drop(w);

    // A writer that retries soon finds the directory can be made again, and
    // first copies back what the earlier one left in the fallback.
    let w = start(
        d.path(),
        logs_config(|c| {
            c.fallback_dir = Some(fb.clone());
        }),
    );
    assert!(w.sink().flush(WAIT));
    assert!(
        w.health().primary_ok(),
        "the directory is recreated at the start"
    );
    let primary = lines_of(&d.path().join("logs/unit.log"));
    let events: Vec<&str> = primary
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["LOG_PRIMARY_FAILED", "TEST", "TEST", "LOG_FALLBACK_COPIED"]
    );
    assert_eq!(test_indices(&primary), [1, 2]);
    assert_eq!(primary[3]["lines_copied"], 3);
    assert!(!fb.join("unit.log").exists(), "renamed as copied");
    let copied = rotate::list_copied(&fb, "unit");
    assert_eq!(copied.len(), 1);
    assert_eq!(test_indices(&lines_of(&copied[0].path)), [1, 2], "kept");
    assert_eq!(primary[3]["kept"][0], copied[0].path.display().to_string());
    let recs = ledger::read_tail(&d.path().join("logs"), 1 << 20);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason, ledger::Reason::FallbackCopied);
    assert_eq!(recs[0].dir.as_deref(), Some(fb.to_str().unwrap()));
    assert_eq!(
        recs[0].rotated,
        copied[0].path.file_name().unwrap().to_str().unwrap()
    );

    // Failing again, then recovering within the retry interval: the outage's
    // lines come back into the primary before the recovery line.
    std::fs::remove_file(d.path().join("logs/unit.log")).unwrap();
    std::fs::remove_dir_all(d.path().join("logs")).unwrap();
    log_n(&w, 3, 1);
    assert!(w.sink().flush(WAIT));
    assert!(
        wait_until(|| w.health().primary_ok()),
        "recovers within the retry interval"
    );
    log_n(&w, 4, 1);
    assert!(w.sink().flush(WAIT));
    let primary = lines_of(&d.path().join("logs/unit.log"));
    let events: Vec<&str> = primary
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "LOG_PRIMARY_FAILED",
            "TEST",
            "LOG_PRIMARY_RECOVERED",
            "TEST"
        ]
    );
    assert_eq!(test_indices(&primary), [3, 4]);
    assert_eq!(
        primary[2]["lines_in_fallback"], 2,
        "the failure line and line 3"
    );
    assert_eq!(primary[2]["lines_copied"], 2);
    assert!(!fb.join("unit.log").exists());
    let copied = rotate::list_copied(&fb, "unit");
    assert_eq!(copied.len(), 2);
    assert_eq!(test_indices(&lines_of(&copied[1].path)), [3]);
    let resolved: Vec<Value> = alerts(d.path())
        .into_iter()
        .filter(|a| a["status"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["fingerprint"], "log_write_failed:unit");
    let crit = std::fs::read_to_string(d.path().join("alerts/CRITICAL_ALERT")).unwrap();
    assert!(
        crit.contains("RESOLVED ghost-unit: ghost-unit writes its log again"),
        "{crit}"
    );
}

#[test]
fn the_fallback_rotates_like_the_primary_and_comes_back_in_order() {
    let d = tempfile::tempdir().unwrap();
    let fb = d.path().join("elsewhere");
    let cfg = |c: &mut LogsConfig| {
        c.fallback_dir = Some(fb.clone());
        c.retry_interval = Duration::from_secs(3600);
        c.max_bytes = 700;
        c.keep = 3;
        c.compress = true;
    };
    let w = start(d.path(), logs_config(cfg));
    assert!(w.sink().flush(WAIT));
    std::fs::remove_dir_all(d.path().join("logs")).unwrap();
    log_n(&w, 0, 40);
    assert!(w.sink().flush(WAIT));
    assert!(!w.health().primary_ok());
    // Rotated by size, compressed, purged to `keep`, with a ledger of its own.
    let rotated = rotate::list(&fb, "unit");
    assert_eq!(rotated.len(), 3, "{rotated:?}");
    assert!(rotated.iter().all(|r| r.compressed));
    for r in &rotated {
        let n = rotate::read_log(&r.path).unwrap().len();
        assert!(n <= 700, "{} has {n} bytes", r.path.display());
    }
    assert!(ledger::read_tail(&fb, 1 << 20).len() > 3);
    let in_fallback: Vec<u64> = rotated
        .iter()
        .flat_map(|r| test_indices(&lines_of(&r.path)))
        .chain(test_indices(&lines_of(&fb.join("unit.log"))))
        .collect();
    assert_eq!(*in_fallback.last().unwrap(), 39);
    drop(w);

    // The next start copies it all back, oldest first, rotating the primary as it goes.
    let w = start(d.path(), logs_config(cfg));
    log_n(&w, 40, 1);
    assert!(w.sink().flush(WAIT));
    assert!(w.health().primary_ok());
    let mut want = in_fallback.clone();
    want.push(40);
    // The primary rotated on the way (and kept its newest `keep` files): what
    // it holds is the end of the fallback's lines, in order, then line 40.
    assert_eq!(rotate::list(&d.path().join("logs"), "unit").len(), 3);
    let got = test_indices(&all_lines(d.path()));
    assert!(got.len() > 3 && want.ends_with(&got), "{got:?} of {want:?}");
    assert!(rotate::list(&fb, "unit").is_empty());
    assert!(!fb.join("unit.log").exists());
    let copied = rotate::list_copied(&fb, "unit");
    assert_eq!(copied.len(), 3, "the copies are kept under the count");
    assert!(copied.iter().all(|r| r.compressed));
    let copied_recs = ledger::read_tail(&d.path().join("logs"), 1 << 20)
        .into_iter()
        .filter(|r| r.reason == ledger::Reason::FallbackCopied)
        .count();
    assert_eq!(copied_recs, 4, "three rotated files and the current one");
}
