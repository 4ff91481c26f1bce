//! Archive scenario (docs/retention.md): the retention archiving N expired
//! `done/` entries, each with the files the executor leaves (its record, the
//! summaries in JSON and Markdown with their backups), through back-to-back
//! maintenance cycles of `max_per_cycle` items, while a real `ghost-executor`
//! on the same root applies one-file patches on another target.
//!
//! Measured: the archiving's total time and rate, the archive's and the
//! index's size per entry, and the executor's drain rate and pickup latency
//! (an entry renamed into `pending/` until it leaves it) while archiving runs,
//! next to the same measurements before it starts, in the same run.
//!
//! `GHOST_BENCH_ONLY=archive` runs this section alone; `GHOST_BENCH_QUICK=1`
//! shrinks the counts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghost_core::queue::QueueState;
use ghost_core::{Config, Layout};

const EXECUTOR: &str = env!("CARGO_BIN_EXE_ghost-executor");

/// Sizes of one run.
struct Sizes {
    entries: usize,
    /// Patches per drain round.
    batch: usize,
    /// Pickups per round.
    pickups: usize,
    /// Rounds measured before archiving starts.
    baseline_rounds: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                entries: 10_000,
                batch: 100,
                pickups: 20,
                baseline_rounds: 2,
            }
        } else {
            Sizes {
                entries: 100_000,
                batch: 300,
                pickups: 40,
                baseline_rounds: 3,
            }
        }
    }
}

fn one_file_patch(id: &str, i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "operations": [
        {"op": "write", "path": format!("d{}/f{i}.txt", i % 50), "content": format!("patch {i}\n")}]}))
    .unwrap()
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every file under `dir` (recursively) whose name contains `needle`.
fn files_named(dir: &Path, needle: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_named(&p, needle, out);
        } else if e.file_name().to_string_lossy().contains(needle) {
            out.push(p);
        }
    }
}

/// A root with targets `old` (whose entries expire after a second) and `live`
/// (kept forever), and `n` expired entries in `old/done/` made from what the
/// real executor left for one applied patch (its name and id substituted).
fn fixture(root: &Path, n: usize) -> Config {
    std::fs::create_dir_all(root).unwrap();
    let toml = "[targets.old]\npath = \"trees/old\"\n\n[targets.live]\npath = \"trees/live\"\n\n\
                [retention]\ndone = \"1s\"\nmax_per_cycle = 1000\n\n[retention.targets.live]\ndone = \"forever\"\n";
    ghost_core::fs::durable_write(&root.join("ghost.toml"), toml.as_bytes(), 0o600).unwrap();
    let layout = Layout::new(root);
    layout.create(["old", "live"]).unwrap();
    let q = layout.queue("old");
    let tmpl = q.enqueue(&one_file_patch("template-patch", 0)).unwrap();
    let out = Command::new(EXECUTOR)
        .args(["--drain", "-q", "--root"])
        .arg(root)
        .output()
        .expect("run executor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(q.entry_path(QueueState::Done, &tmpl).exists());
    let mut files = Vec::new();
    for top in ["queue", "summaries"] {
        files_named(&root.join(top), &tmpl, &mut files);
    }
    let files: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect();
    for i in 0..n {
        let name = ghost_core::queue::new_name();
        let id = format!("old-{i}");
        for (rel, text) in &files {
            let p = root.join(rel.replace(&tmpl, &name));
            let body = text.replace(&tmpl, &name).replace("template-patch", &id);
            std::fs::write(p, body).unwrap();
        }
    }
    // Past the one-second retention.
    std::thread::sleep(Duration::from_millis(1100));
    Config::load(root, None).expect("bench config")
}

/// Queue `n` patches on `live` at once (staged, then renamed into
/// `pending/` in a burst) and time them until all are in `done/`.
fn drain_round(layout: &Layout, tag: &str, n: usize) -> Duration {
    let q = layout.queue("live");
    let mut staged = Vec::with_capacity(n);
    for i in 0..n {
        let name = ghost_core::queue::new_name();
        let p = q.tmp_dir().join(format!("{name}.json"));
        std::fs::write(&p, one_file_patch(&format!("{tag}-{i}"), i)).unwrap();
        staged.push((p, name));
    }
    let t = Instant::now();
    for (p, name) in &staged {
        std::fs::rename(p, q.entry_path(QueueState::Pending, name)).unwrap();
    }
    // The first entry not yet seen in `done/`: each is looked at until it is.
    let mut k = 0;
    wait_for("drain", Duration::from_secs(600), || {
        while k < staged.len() && q.entry_path(QueueState::Done, &staged[k].1).exists() {
            k += 1;
        }
        k == staged.len()
    });
    t.elapsed()
}

/// `n` arrivals one at a time on an idle executor: from the durable rename
/// into `pending/` until the entry leaves it (the claim).
fn pickups(layout: &Layout, tag: &str, n: usize, out: &mut Vec<Duration>) {
    let q = layout.queue("live");
    for i in 0..n {
        let name = ghost_core::queue::new_name();
        let staged = q.tmp_dir().join(format!("{name}.json"));
        ghost_core::fs::durable_write(&staged, &one_file_patch(&format!("{tag}-{i}"), i), 0o600)
            .unwrap();
        let dest = q.entry_path(QueueState::Pending, &name);
        let t = Instant::now();
        ghost_core::fs::durable_move(&staged, &dest).unwrap();
        // Poll, not spin: on 2 cores a spinning observer would take the
        // archiver's or the executor's CPU.
        while dest.exists() {
            std::thread::sleep(Duration::from_micros(100));
        }
        out.push(t.elapsed());
        let done = q.entry_path(QueueState::Done, &name);
        wait_for("pickup patch applied", Duration::from_secs(60), || {
            done.exists()
        });
    }
}

fn dir_bytes(dir: &Path, suffix: &str) -> (u64, usize) {
    let mut out = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            let (b, n) = dir_bytes(&p, suffix);
            out = (out.0 + b, out.1 + n);
        } else if e.file_name().to_string_lossy().ends_with(suffix) {
            out = (
                out.0 + e.metadata().map(|m| m.len()).unwrap_or(0),
                out.1 + 1,
            );
        }
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn rate(n: usize, ds: &[Duration]) -> f64 {
    let total: Duration = ds.iter().sum();
    (n * ds.len()) as f64 / total.as_secs_f64()
}

pub fn run(md: &mut String, base: &Path, quick: bool) {
    let s = Sizes::new(quick);
    let root = base.join("archive-root");
    let t = Instant::now();
    let config = fixture(&root, s.entries);
    eprintln!("archive fixture ({} entries): {:?}", s.entries, t.elapsed());
    let layout = Layout::new(&root);
    let per_entry_files = {
        let mut v = Vec::new();
        files_named(&root.join("queue/old/done"), "", &mut v);
        files_named(&root.join("summaries/old"), "", &mut v);
        v.len() as f64 / (s.entries + 1) as f64
    };
    let (orig_bytes, _) = {
        let (a, n) = dir_bytes(&root.join("queue/old/done"), "");
        let (b, m) = dir_bytes(&root.join("summaries/old"), "");
        (a + b, n + m)
    };

    let _exec = crate::executor_bench::Proc::executor(&root);
    let hb = layout.heartbeat("executor");
    wait_for("executor start", Duration::from_secs(30), || hb.exists());

    // Without archiving.
    let mut base_drains = Vec::new();
    let mut base_picks = Vec::new();
    for r in 0..s.baseline_rounds {
        base_drains.push(drain_round(&layout, &format!("base{r}"), s.batch));
        pickups(&layout, &format!("basep{r}"), s.pickups, &mut base_picks);
    }
    base_picks.sort();

    // With archiving: back-to-back maintenance cycles in a thread.
    let finished = Arc::new(AtomicBool::new(false));
    let archiver = {
        let (config, finished) = (config.clone(), finished.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let (mut archived, mut cycles) = (0, 0);
            loop {
                let r = ghost_core::maintenance::run(&config);
                assert!(r.error.is_none(), "maintenance: {:?}", r.error);
                archived += r.archived;
                cycles += 1;
                if !r.more_due {
                    break;
                }
            }
            let wall = t.elapsed();
            finished.store(true, Ordering::SeqCst);
            (wall, archived, cycles)
        })
    };
    let mut arch_drains = Vec::new();
    let mut arch_picks = Vec::new();
    let mut r = 0;
    // Rounds that start while archiving runs; the last may end after it.
    while !finished.load(Ordering::SeqCst) {
        arch_drains.push(drain_round(&layout, &format!("arch{r}"), s.batch));
        if finished.load(Ordering::SeqCst) {
            break;
        }
        let mut p = Vec::new();
        pickups(&layout, &format!("archp{r}"), s.pickups, &mut p);
        // Only the arrivals made while archiving still ran.
        if !finished.load(Ordering::SeqCst) {
            arch_picks.extend(p);
        }
        r += 1;
    }
    let (wall, archived, cycles) = archiver.join().unwrap();
    arch_picks.sort();
    assert_eq!(archived, s.entries + 1, "every expired entry archived");
    let (seg_bytes, segs) = dir_bytes(&layout.archive_group("old"), ".jsonl.gz");
    let (idx_bytes, _) = dir_bytes(&layout.archive_group("old"), ".index.jsonl");
    let n = archived as f64;

    let _ = writeln!(md, "## Archive\n");
    let _ = writeln!(md, "{} expired entries in one target's `done/`, each with the files the executor leaves for an applied one-file patch ({per_entry_files:.0} files, {:.0} bytes of content per entry: the entry, its record, the summaries in JSON and Markdown with their backups), archived by back-to-back maintenance cycles of `max_per_cycle = 1000` (`ghost_core::maintenance::run`, in-process) while a real `ghost-executor` on the same root applies one-file patches on another target. Drain: {} patches renamed into `pending/` at once, timed until all are in `done/`. Pickup: one arrival at a time (durable rename into `pending/` until the entry leaves it). The \"while archiving\" rounds are those that started while archiving ran; pickups count only arrivals made before it ended.\n", archived, orig_bytes as f64 / n, s.batch);
    let _ = writeln!(md, "| measurement | result |\n|---|---|");
    let _ = writeln!(md, "| archiving {archived} entries ({cycles} cycles, {segs} segments) | **{:.1} s**, {:.0} entries/s |", wall.as_secs_f64(), n / wall.as_secs_f64());
    let _ = writeln!(
        md,
        "| archive size per entry (gzip segments) | **{:.0} bytes** |",
        seg_bytes as f64 / n
    );
    let _ = writeln!(
        md,
        "| index size per entry | **{:.0} bytes** |",
        idx_bytes as f64 / n
    );
    let _ = writeln!(
        md,
        "| executor drain, no archiving ({} rounds) | {:.0} patches/s |",
        base_drains.len(),
        rate(s.batch, &base_drains)
    );
    let _ = writeln!(md, "| executor drain while archiving ({} rounds) | **{:.0} patches/s** ({:.2} of the rate without) |", arch_drains.len(), rate(s.batch, &arch_drains), rate(s.batch, &arch_drains) / rate(s.batch, &base_drains));
    let _ = writeln!(
        md,
        "| pickup latency, no archiving ({} arrivals): p50 / p99 | {:.1} ms / {:.1} ms |",
        base_picks.len(),
        pct(&base_picks, 0.5),
        pct(&base_picks, 0.99)
    );
    let _ = writeln!(
        md,
        "| pickup latency while archiving ({} arrivals): p50 / p99 | **{:.1} ms / {:.1} ms** |\n",
        arch_picks.len(),
        pct(&arch_picks, 0.5),
        pct(&arch_picks, 0.99)
    );
    let _ = writeln!(
        md,
        "Drain rounds (ms), without: {:?}; while archiving: {:?}.\n",
        base_drains
            .iter()
            .map(|d| d.as_millis())
            .collect::<Vec<_>>(),
        arch_drains
            .iter()
            .map(|d| d.as_millis())
            .collect::<Vec<_>>()
    );
}
