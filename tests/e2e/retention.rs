//! Retention and the archive (docs/retention.md): old entries move into
//! `archive/` with their summaries and come back byte-exact; a crash at any
//! step (failpoints and kill -9) leaves the originals or a verified archive
//! and a rerun finishes without duplicates; archived ids stay duplicates; the
//! monitor's maintenance cycle does not stall the executor. Ages are made
//! with file mtimes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use ghost_core::archive;
use ghost_core::queue::QueueState;

use crate::harness::*;
use crate::monitor::MONITOR;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn age(p: &Path, by: Duration) {
    if let Ok(f) = std::fs::File::options().write(true).open(p) {
        f.set_modified(SystemTime::now() - by).unwrap();
    }
}

/// Age every file of every `done/` entry of `default` (and its summaries).
fn age_done(env: &TestEnv, by: Duration) {
    let l = env.layout();
    for dir in [
        l.queue("default").dir(QueueState::Done),
        l.summaries("default"),
        l.summary_backups("default"),
    ] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_file() {
                age(&e.path(), by);
            }
        }
    }
}

/// Every file of the queue and the summaries of `default`, by path.
fn files(env: &TestEnv) -> BTreeMap<String, Vec<u8>> {
    let l = env.layout();
    let mut out = BTreeMap::new();
    for base in [
        l.queue("default").root().to_path_buf(),
        l.summaries("default"),
    ] {
        for (k, (bytes, _)) in snapshot(&base) {
            out.insert(format!("{}/{k}", base.display()), bytes);
        }
    }
    out
}

fn write_patch(env: &TestEnv, id: &str, content: &str) -> std::path::PathBuf {
    let p = env.dir.path().join(format!("{id}.json"));
    let v = json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": content}]});
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    p
}

fn submit_and_drain(env: &TestEnv, ids: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for id in ids {
        let p = write_patch(env, id, &format!("{id}\n"));
        let o = env.ghostctl(&["--json", "submit", p.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        names.push(v[0]["queue_name"].as_str().unwrap().to_string());
    }
    let o = env.drain();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for n in &names {
        assert_eq!(env.state_of("default", n), Some(QueueState::Done));
    }
    names
}

fn ctl_ok(env: &TestEnv, args: &[&str]) -> String {
    let o = env.ghostctl(args);
    assert!(
        o.status.success(),
        "ghostctl {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn index_lines(env: &TestEnv) -> usize {
    archive::list(&env.layout(), None).unwrap().len()
}

fn raw_index_lines(env: &TestEnv) -> usize {
    let l = env.layout();
    archive::groups(&l)
        .iter()
        .map(|g| {
            std::fs::read_dir(l.archive_group(g))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".index.jsonl"))
                .map(|e| {
                    let m = e
                        .file_name()
                        .to_string_lossy()
                        .trim_end_matches(".index.jsonl")
                        .to_string();
                    archive::read_index(&l, g, &m).unwrap().len()
                })
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn old_entries_are_archived_with_summaries_shown_as_archived_and_extracted_byte_exact() {
    let env = TestEnv::new("");
    let names = submit_and_drain(&env, &["keep-a", "keep-b"]);
    age_done(&env, 31 * DAY);
    let before = files(&env);
    assert!(
        before
            .keys()
            .any(|k| k.contains(&format!("{}.md", names[0]))),
        "summaries exist"
    );

    let dry = ctl_ok(&env, &["archive", "--dry-run"]);
    assert!(dry.contains("would archive 2 item(s)"), "{dry}");
    assert_eq!(files(&env), before, "a dry run changes nothing");

    let out = ctl_ok(&env, &["archive"]);
    assert!(out.contains("archived 2 item(s)"), "{out}");
    let after = files(&env);
    for n in &names {
        assert_eq!(env.state_of("default", n), None);
        assert!(
            after.keys().all(|k| !k.contains(n.as_str())),
            "{n} left behind"
        );
    }
    // Found again by patch id, and said to be archived.
    let show = ctl_ok(&env, &["show", "keep-a"]);
    assert!(show.contains("archived (was done"), "{show}");
    assert!(
        show.contains("applied"),
        "the archived summary is shown: {show}"
    );
    let v: Value = serde_json::from_str(&ctl_ok(&env, &["--json", "show", &names[1]])).unwrap();
    assert_eq!(v["archived"], true);
    assert_eq!(v["summary"]["status"], "applied");
    let ls = ctl_ok(&env, &["archive", "ls"]);
    assert!(
        ls.contains(&names[0]) && ls.contains("2 archived item(s)"),
        "{ls}"
    );

    for id in ["keep-a", &names[1]] {
        let out = ctl_ok(&env, &["archive", "extract", id]);
        assert!(out.contains("file(s) written"), "{out}");
    }
    assert_eq!(files(&env), before, "extract is byte-exact");
    assert_eq!(env.state_of("default", &names[0]), Some(QueueState::Done));
    // Extracted entries are fresh again: the next run leaves them.
    let out = ctl_ok(&env, &["archive"]);
    assert!(out.contains("archived 0 item(s)"), "{out}");
    assert_eq!(index_lines(&env), 2);
}

/// After a crash: every item is either whole in the queue or in the archive
/// with a record whose every file matches its index MD5.
fn originals_or_verified(env: &TestEnv, names: &[String], before: &BTreeMap<String, Vec<u8>>) {
    let l = env.layout();
    let now = files(env);
    for n in names {
        let orig: Vec<&String> = before.keys().filter(|k| k.contains(n.as_str())).collect();
        let whole = orig.iter().all(|k| now.get(*k) == before.get(*k));
        let archived = archive::find(&l, n)
            .unwrap()
            .is_some_and(|f| archive::record(&l, &f).is_ok());
        assert!(
            whole || archived,
            "{n}: neither the originals nor a verified archive"
        );
        // What is left of the originals is never changed.
        for k in orig {
            if let Some(b) = now.get(k) {
                assert_eq!(Some(b), before.get(k), "{k} changed");
            }
        }
    }
}

fn archive_with(env: &TestEnv, failpoints: &str) -> std::process::ExitStatus {
    env.cmd(GHOSTCTL)
        .arg("archive")
        .env("FAILPOINTS", failpoints)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ghostctl archive")
}

#[test]
fn a_crash_at_every_step_leaves_originals_or_a_verified_archive_and_a_rerun_finishes_once() {
    // Each step crashes (`return`) or fails with an injected I/O error
    // (`return(error)`, which the run reports and stops at).
    let steps = [
        "archive-before-segment",
        "archive-after-segment",
        "archive-after-verify",
        "archive-after-index",
        "archive-mid-remove",
    ];
    for (fp, action) in steps
        .iter()
        .flat_map(|s| [(*s, "return"), (*s, "return(error)")])
    {
        let env = TestEnv::new("");
        let names = submit_and_drain(&env, &["c1", "c2", "c3"]);
        age_done(&env, 40 * DAY);
        let before = files(&env);
        let st = archive_with(&env, &format!("{fp}={action}"));
        assert!(
            !st.success(),
            "{fp}={action}: the failpoint should have stopped the run"
        );
        originals_or_verified(&env, &names, &before);
        // The rerun completes: nothing left, one index line per item.
        ctl_ok(&env, &["archive"]);
        for n in &names {
            assert_eq!(env.state_of("default", n), None, "{fp}: {n}");
        }
        assert_eq!(
            raw_index_lines(&env),
            3,
            "{fp}: no duplicate in the archive"
        );
        let segs: usize = std::fs::read_dir(env.layout().archive_group("default"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| std::fs::read_dir(e.path()).unwrap().count())
            .sum();
        assert_eq!(segs, 1, "{fp}: unindexed segments are discarded");
        for n in &names {
            ctl_ok(&env, &["archive", "extract", n]);
        }
        assert_eq!(files(&env), before, "{fp}: extract is byte-exact");
    }
}

#[test]
fn kill_9_mid_run_leaves_originals_or_a_verified_archive() {
    let env = TestEnv::new("[retention]\nmax_per_cycle = 100000\n");
    // Many entries placed straight into done/, so the run takes a while.
    let q = env.layout().queue("default");
    let mut names = Vec::new();
    for i in 0..600 {
        let n = q
            .enqueue(format!(r#"{{"id": "k{i}", "operations": [{{"op": "write", "path": "k.txt", "content": "{i}"}}]}}"#).as_bytes())
            .unwrap();
        q.transition(
            &n,
            QueueState::Pending,
            QueueState::Done,
            &Default::default(),
        )
        .unwrap();
        names.push(n);
    }
    age_done(&env, 40 * DAY);
    let before = files(&env);
    let mut child = env
        .cmd(GHOSTCTL)
        .arg("archive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as it has written anything into archive/ (or at once
    // if it was quicker than the watch).
    let archive_dir = env.layout().archive();
    wait_until(Duration::from_secs(30), || {
        archive_dir.exists() || child.try_wait().unwrap().is_some()
    });
    let _ = child.kill();
    let _ = child.wait();
    originals_or_verified(&env, &names, &before);
    ctl_ok(&env, &["archive"]);
    assert!(env.list("default", QueueState::Done).is_empty());
    assert_eq!(raw_index_lines(&env), 600, "each entry once");
}

#[test]
fn forever_archives_nothing() {
    let env = TestEnv::new("[retention]\ndone = \"forever\"\nsummaries = \"forever\"\n");
    let names = submit_and_drain(&env, &["f1"]);
    age_done(&env, 3650 * DAY);
    let before = files(&env);
    let out = ctl_ok(&env, &["archive"]);
    assert!(out.contains("archived 0 item(s)"), "{out}");
    assert_eq!(files(&env), before);
    assert_eq!(env.state_of("default", &names[0]), Some(QueueState::Done));
}

#[test]
fn a_resubmitted_archived_id_is_refused_as_a_duplicate() {
    let mut env = TestEnv::new("");
    let names = submit_and_drain(&env, &["dup"]);
    age_done(&env, 31 * DAY);
    ctl_ok(&env, &["archive"]);
    assert_eq!(env.state_of("default", &names[0]), None);
    let p = write_patch(&env, "dup", "dup\n");
    let out = ctl_ok(&env, &["submit", p.to_str().unwrap()]);
    assert!(out.contains("already queued: nothing written"), "{out}");
    assert!(
        out.contains(&names[0]),
        "answered with the archived entry: {out}"
    );
    assert!(env.list("default", QueueState::Pending).is_empty());
    // The bridge says the same, and its GET finds it in the archive.
    let b = env.spawn_bridge();
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("{}/v1/patches", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(std::fs::read(&p).unwrap())
        .send()
        .unwrap();
    let code = r.status().as_u16();
    let v: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap_or_default();
    assert!(code == 200 || code == 409, "{code} {v}");
    assert!(v.to_string().contains("duplicate"), "{v}");
    assert!(env.list("default", QueueState::Pending).is_empty());
    let r = client
        .get(format!("{}/v1/patches/dup", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .unwrap();
    let v: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    assert_eq!(v["state"], "archived", "{v}");
    assert_eq!(v["archived"]["was"], "done", "{v}");
    assert_eq!(v["summary"]["status"], "applied", "{v}");
}

#[test]
fn maintenance_under_load_archives_while_the_executor_drains() {
    let mut env = TestEnv::new(
        "[retention]\ninterval = \"200ms\"\nmax_per_cycle = 300\n[monitor]\ninterval = \"1s\"\n",
    );
    // 1,500 old entries for the monitor to archive …
    let q = env.layout().queue("default");
    for i in 0..1500 {
        let n = q
            .enqueue(format!(r#"{{"id": "old{i}", "operations": []}}"#).as_bytes())
            .unwrap();
        q.transition(
            &n,
            QueueState::Pending,
            QueueState::Done,
            &Default::default(),
        )
        .unwrap();
    }
    age_done(&env, 40 * DAY);
    let mon = env
        .cmd(MONITOR)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mon_pid = mon.id();
    env.children.push(mon);
    // … while the executor applies new patches.
    let exec = env.spawn_executor();
    let mut fresh = Vec::new();
    for i in 0..40 {
        fresh.push(env.enqueue_json(
            "default",
            &json!({"id": format!("new{i}"), "operations": [{"op": "write", "path": format!("n{i}.txt"), "content": "x"}]}),
        ));
    }
    let drained = wait_until(Duration::from_secs(120), || {
        env.assert_alive(exec);
        fresh
            .iter()
            .all(|n| env.state_of("default", n) == Some(QueueState::Done))
    });
    assert!(drained, "the executor drained while maintenance ran");
    let archived = wait_until(Duration::from_secs(180), || {
        env.assert_alive_named(mon_pid, "monitor");
        env.list("default", QueueState::Done).len() == fresh.len()
    });
    assert!(archived, "every old entry archived in bounded cycles");
    assert_eq!(index_lines(&env), 1500);
    for n in &fresh {
        assert_eq!(
            env.state_of("default", n),
            Some(QueueState::Done),
            "fresh entries stay"
        );
    }
    // The heartbeat and the log say what maintenance did.
    let hb = ghost_core::heartbeat::read(&env.layout().heartbeat("monitor")).unwrap();
    assert!(
        hb.details["maintenance"]["at"].is_string(),
        "{}",
        hb.details
    );
    let logged = wait_until(Duration::from_secs(20), || {
        env.log_lines("monitor")
            .iter()
            .any(|l| l.to_string().contains("MAINTENANCE") && l.to_string().contains("archived"))
    });
    assert!(logged, "a MAINTENANCE line in logs/monitor.log");
}

/// Copies of what the executor left for the applied patch `tmpl` in the
/// queue (the entry and its record; with `summaries`, its summaries and
/// their backups too), `n` times under new names and ids, aged `by`: old
/// history made in seconds.
fn clone_history(
    env: &TestEnv,
    tmpl: &str,
    n: usize,
    by: Duration,
    summaries: bool,
) -> Vec<String> {
    fn walk(d: &Path, needle: &str, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, needle, out);
            } else if e.file_name().to_string_lossy().contains(needle) {
                out.push(p);
            }
        }
    }
    let l = env.layout();
    let mut paths = Vec::new();
    walk(l.queue("default").root(), tmpl, &mut paths);
    if summaries {
        walk(&l.summaries("default"), tmpl, &mut paths);
    }
    assert!(paths.len() >= 2, "entry and record: {paths:?}");
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&env.root).unwrap().to_string_lossy();
            (rel.into_owned(), std::fs::read_to_string(p).unwrap())
        })
        .collect();
    let q = l.queue("default");
    let id = q
        .find(tmpl)
        .and_then(|s| std::fs::read(q.entry_path(s, tmpl)).ok())
        .and_then(|b| ghost_core::entry::stored_id(&b))
        .unwrap();
    let old = SystemTime::now() - by;
    (0..n)
        .map(|i| {
            let name = ghost_core::queue::new_name();
            for (rel, text) in &files {
                let p = env.root.join(rel.replace(tmpl, &name));
                let body = text.replace(tmpl, &name).replace(&id, &format!("h{i}"));
                let mut f = std::fs::File::create(&p).unwrap();
                std::io::Write::write_all(&mut f, body.as_bytes()).unwrap();
                f.set_modified(old).unwrap();
            }
            name
        })
        .collect()
}

/// One arrival at a time: each entry renamed into `pending/` on an idle
/// executor; returns, per arrival, the time from just before the rename to
/// the executor's `PATCH_CLAIMED` log line, and whether archiving was still
/// under way when it was claimed (`busy`, asked right after the claim).
fn pickups(
    env: &mut TestEnv,
    exec: u32,
    tag: &str,
    n: usize,
    busy: &dyn Fn() -> bool,
) -> Vec<(Duration, bool)> {
    let q = env.layout().queue("default");
    let mut out = Vec::new();
    for i in 0..n {
        let name = ghost_core::queue::new_name();
        let staged = q.tmp_dir().join(format!("{name}.json"));
        let body = json!({"id": format!("{tag}{i}"), "operations": [{"op": "write", "path": format!("{tag}.txt"), "content": format!("{i}\n")}]});
        ghost_core::fs::durable_write(&staged, &serde_json::to_vec(&body).unwrap(), 0o600).unwrap();
        let at = SystemTime::now();
        ghost_core::fs::durable_move(&staged, &q.entry_path(QueueState::Pending, &name)).unwrap();
        let claimed = wait_until(Duration::from_secs(60), || {
            env.assert_alive(exec);
            q.find(&name) != Some(QueueState::Pending)
        });
        assert!(claimed, "{name} never claimed");
        let during = busy();
        assert!(
            wait_until(Duration::from_secs(60), || q.find(&name)
                == Some(QueueState::Done)),
            "{name} never applied"
        );
        let ts = wait_for_claim(env, &name);
        out.push((ts.duration_since(at).unwrap_or_default(), during));
    }
    out
}

/// The time of the executor's `PATCH_CLAIMED` line for `name`.
fn wait_for_claim(env: &TestEnv, name: &str) -> SystemTime {
    let mut ts = None;
    let found = wait_until(Duration::from_secs(20), || {
        // Read as it is written: a line still being written is skipped.
        let log =
            std::fs::read_to_string(env.layout().logs().join("executor.log")).unwrap_or_default();
        let lines: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        ts = lines.iter().rev().find_map(|l| {
            (l["event"] == "PATCH_CLAIMED" && l["queue_name"] == name)
                .then(|| ghost_core::time::parse_rfc3339(l["ts"].as_str()?))
                .flatten()
        });
        ts.is_some()
    });
    assert!(found, "no PATCH_CLAIMED line for {name}");
    ts.unwrap()
}

fn p99(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * 0.99).round() as usize]
}

/// Issue 15: maintenance archiving 10,000 entries does not stall the
/// executor. Its pickup latency (entry renamed into `pending/` → claimed)
/// while maintenance cycles archive, back to back, stays under a bound far
/// above what it is without archiving (measured first, in the same test),
/// generous for a loaded 2-core machine and a debug build. The cycles are
/// `ghostctl archive` runs (the monitor's cycle, by hand, bounded by
/// `max_per_cycle`): the monitor's own health cycles would only stretch the
/// time between them.
#[test]
fn pickup_latency_stays_bounded_while_maintenance_archives_10000_entries() {
    const N: usize = 10_000;
    const BOUND: Duration = Duration::from_secs(1);
    let mut env = TestEnv::new("[retention]\nmax_per_cycle = 1000\n");
    let tmpl = submit_and_drain(&env, &["template"]).remove(0);
    // Entries and records only: a removed file costs most of a millisecond
    // on a busy disk, and 10,000 entries with their summaries would be
    // 60,000 of them.
    let old = clone_history(&env, &tmpl, N, 40 * DAY, false);
    let q = env.layout().queue("default");
    let exec = env
        .cmd(EXECUTOR)
        .arg("-q")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exec_pid = exec.id();
    env.children.push(exec);
    let hb = env.layout().heartbeat("executor");
    assert!(wait_until(Duration::from_secs(30), || hb.exists()));

    // Without archiving.
    let base: Vec<Duration> = pickups(&mut env, exec_pid, "base", 20, &|| false)
        .into_iter()
        .map(|(d, _)| d)
        .collect();

    // While maintenance archives, cycle after cycle, until nothing is due.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let archiver = {
        let (mut cmd, done) = (env.cmd(GHOSTCTL), done.clone());
        cmd.args(["--json", "archive"]).stderr(Stdio::null());
        std::thread::spawn(move || {
            let mut cycles = 0;
            loop {
                let out = cmd.output().expect("run ghostctl archive");
                assert!(out.status.success(), "ghostctl archive failed");
                cycles += 1;
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if v["more_due"] != true || cycles > 50 {
                    break;
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            cycles
        })
    };
    let archiving = {
        let done = done.clone();
        move || !done.load(std::sync::atomic::Ordering::SeqCst)
    };
    let mut during = Vec::new();
    let mut round = 0;
    while archiving() {
        for (d, busy) in pickups(&mut env, exec_pid, &format!("arch{round}-"), 5, &archiving) {
            if busy {
                during.push(d);
            }
        }
        round += 1;
    }
    let cycles = archiver.join().unwrap();
    assert!(
        old.iter().all(|n| q.find(n).is_none()),
        "every old entry archived"
    );
    assert_eq!(
        index_lines(&env),
        N,
        "each old entry once, in {cycles} cycles"
    );
    assert!(
        during.len() >= 10,
        "only {} arrivals were claimed while archiving ran",
        during.len()
    );
    let (b, d) = (p99(&base), p99(&during));
    eprintln!(
        "pickup p99 without archiving {b:?} ({} arrivals), while archiving {d:?} ({} arrivals, {cycles} cycles)",
        base.len(),
        during.len()
    );
    assert!(
        d < BOUND,
        "pickup latency p99 {d:?} while archiving (without: {b:?}): maintenance stalls the executor"
    );
}
