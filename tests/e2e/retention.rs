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
