//! Crash torture: `kill -9` of every process — bridge, executor, monitor and
//! the watchdog itself — at random moments of a mixed workload, under the
//! real watchdog (which brings the killed children back; a killed watchdog is
//! started again by the test, as a process manager would).
//!
//! The workload: HTTP posts (a client that retries the same patch until it is
//! acknowledged), files renamed into the inbox, `ghostctl submit`, and an
//! operator who retries, holds, releases and deletes failed, deferred, held
//! and stuck entries. Every patch writes two files of its own, `p/<id>/a` and
//! `p/<id>/b`, each holding its id; some run a check that takes a while (a
//! wider window for a kill mid-apply), some fail their check (rolled back,
//! `failed/`), some time out (`deferred/`, then `.stuck/`).
//!
//! After every kill (cheap): no patch id has two queue entries; every entry
//! whose state and record did not change while the tree was read is whole —
//! a `done` patch has both its files, any other (but `active`) has none. After
//! the run: every acknowledged patch (a `202` or `200` duplicate, a
//! successful `submit`, an inbox file moved to `.processed/`) is in exactly
//! one state, and every patch sent at all in at most one; the same file rule
//! for every entry and no file or directory of a patch that is not done;
//! every summary parses and matches its backup by MD5 (or `ghostctl verify`
//! repairs it); no panic in any log. Kills are counted per process, and the
//! executor's kills that landed mid-apply are counted from its log (the
//! `journal` phase of each `PATCH_RECOVERED`), not assumed.
//!
//! `#[ignore]`d: `.ci/run` runs it in its own step (`cargo test --test e2e
//! -- --ignored torture`). `GHOST_TORTURE_KILLS` sets the number of kills
//! (200 by default), `GHOST_TORTURE_SEED` replays a run's choices.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use ghost_core::queue::QueueState;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(120);

/// Fast restarts and a restart budget the torture cannot spend; checks as
/// the workload needs them; logs that do not rotate during a run (so the
/// executor's log holds every `PATCH_RECOVERED`).
fn config(port: u16, dashboard: u16) -> String {
    format!(
        r#"
[heartbeat]
interval = "100ms"
stale_after = "10s"

[watchdog]
max_restarts = 1000000
restart_window = "1s"
restart_delay = "50ms"
restart_delay_max = "200ms"
restart_jitter = 0
healthy_after = "1s"
stop_grace = "3s"
start_timeout = "30s"

[bridge]
listen = "127.0.0.1:{port}"
inbox_settle = "100ms"
inbox_scan_interval = "300ms"

[monitor]
listen = "127.0.0.1:{dashboard}"

[executor]
max_attempts = 1000
backoff_base = "300ms"
backoff_max = "1s"
shutdown_grace = "300ms"

[logs]
max_bytes = "1GiB"
"#
    )
}

/// Patch `id`: its two files, and by its number a check: none, a slow one,
/// one that fails, or one that times out (transient, two attempts).
fn patch(id: &str, k: u64) -> Value {
    let mut p = json!({"id": id, "operations": [
        {"op": "write", "path": format!("p/{id}/a"), "content": id},
        {"op": "write", "path": format!("p/{id}/b"), "content": id}]});
    match k % 12 {
        1 | 4 | 7 => p["checks"] = json!({"after": [{"argv": ["sleep", "0.2"]}]}),
        5 => p["checks"] = json!({"after": [{"argv": ["false"]}]}),
        10 => {
            p["checks"] = json!({"after": [{"argv": ["sleep", "5"], "timeout_secs": 1}]});
            p["retry"] = json!({"max_attempts": 2});
        }
        _ => {}
    }
    p
}

/// What the workload threads share with the test.
#[derive(Default)]
struct Ledger {
    /// Every patch id sent by any way, acknowledged or not.
    sent: Mutex<BTreeSet<String>>,
    /// Acknowledged ids, with the way in.
    acked: Mutex<BTreeMap<String, &'static str>>,
    /// Operator actions that took effect, by verb.
    actions: Mutex<BTreeMap<String, usize>>,
    /// Output of a `ghostctl` that panicked, if any.
    panics: Mutex<Vec<String>>,
}

impl Ledger {
    fn sent(&self, id: &str) {
        self.sent.lock().unwrap().insert(id.to_string());
    }
    fn acked(&self, id: &str, how: &'static str) {
        self.acked.lock().unwrap().insert(id.to_string(), how);
    }
    fn note_output(&self, what: &str, out: &std::process::Output) {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("panicked") {
            self.panics.lock().unwrap().push(format!("{what}: {text}"));
        }
    }
}

/// The queue as the test sees it at one moment: entry name → (state, its
/// record's bytes). Names listed twice (moved while listing) keep the last.
fn states(env: &TestEnv) -> BTreeMap<String, (QueueState, Vec<u8>)> {
    let q = env.layout().queue("default");
    let mut out = BTreeMap::new();
    for s in QueueState::ALL {
        for name in q.list(s).unwrap_or_default() {
            let rec = std::fs::read(q.record_path(s, &name)).unwrap_or_default();
            out.insert(name, (s, rec));
        }
    }
    out
}

/// The patch id of entry `name` (entries never change; cached).
fn id_of(env: &TestEnv, cache: &mut BTreeMap<String, String>, name: &str) -> Option<String> {
    if let Some(id) = cache.get(name) {
        return Some(id.clone());
    }
    let q = env.layout().queue("default");
    let s = q.find(name)?;
    let bytes = std::fs::read(q.entry_path(s, name)).ok()?;
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("entry {name} in {s:?} does not parse: {e}"));
    let id = v["id"].as_str()?.to_string();
    cache.insert(name.to_string(), id.clone());
    Some(id)
}

/// What the tree holds of each patch: id → (file name → content), plus
/// the ids whose directory exists at all.
type TreeFiles = BTreeMap<String, BTreeMap<String, String>>;

fn tree_files(tree: &Path) -> TreeFiles {
    let mut out = TreeFiles::new();
    let Ok(rd) = std::fs::read_dir(tree.join("p")) else {
        return out;
    };
    for d in rd.flatten() {
        let id = d.file_name().to_string_lossy().into_owned();
        let files = out.entry(id).or_default();
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let content = std::fs::read_to_string(f.path()).unwrap_or_default();
            files.insert(f.file_name().to_string_lossy().into_owned(), content);
        }
    }
    out
}

/// A done patch's files are both there, each naming it; anything else left
/// nothing (not even its directory).
fn assert_whole(when: &str, id: &str, state: QueueState, files: Option<&BTreeMap<String, String>>) {
    if state == QueueState::Done {
        let want: BTreeMap<String, String> = [("a", id), ("b", id)]
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .into();
        assert_eq!(
            files,
            Some(&want),
            "{when}: done patch {id} is not whole in the tree"
        );
    } else {
        assert!(
            files.is_none(),
            "{when}: patch {id} is in {state:?} but left {files:?} in the tree"
        );
    }
}

/// The cheap check after a kill: the queue, the tree, the queue again. An
/// entry whose state and record are the same both times did not move while
/// the tree was read, so its files must match its state.
fn check_between(env: &TestEnv, cache: &mut BTreeMap<String, String>, when: &str) {
    let before = states(env);
    let tree = tree_files(&env.tree("default"));
    let after = states(env);
    let mut names_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, (state, rec)) in &before {
        let Some(id) = id_of(env, cache, name) else {
            continue;
        };
        names_of.entry(id.clone()).or_default().insert(name.clone());
        if *state == QueueState::Active || after.get(name) != Some(&(*state, rec.clone())) {
            continue;
        }
        assert_whole(when, &id, *state, tree.get(&id));
    }
    for (id, names) in names_of {
        assert_eq!(
            names.len(),
            1,
            "{when}: patch {id} is queued twice: {names:?}"
        );
    }
}

/// A child of the watchdog that runs with a heartbeat of its own: its pid.
fn running_pid(env: &TestEnv, name: &str) -> Option<u32> {
    let state: Value = std::fs::read(env.layout().state().join("watchdog.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())?;
    let c = &state["children"][name];
    let pid = c["pid"].as_u64()? as u32;
    let hb = ghost_core::heartbeat::read(&env.layout().heartbeat(name)).ok()?;
    (c["state"] == "running" && hb.pid == pid && proc_info(pid as i32).is_some()).then_some(pid)
}

/// The watchdog, killed on drop (its children follow it) so that a failed
/// run leaves no process behind.
struct Watchdog(Child);

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_watchdog(env: &TestEnv) -> Watchdog {
    let log = |n: &str| {
        File::options()
            .create(true)
            .append(true)
            .open(env.dir.path().join(n))
            .unwrap()
    };
    let mut cmd = env.cmd(WATCHDOG);
    for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        cmd.env_remove(k);
    }
    cmd.arg("--no-banner")
        .env("GHOST_BRIDGE_TOKEN", TOKEN)
        .env("GHOST_HMAC_KEY", HMAC_KEY)
        .stdout(log("watchdog.stdout"))
        .stderr(log("watchdog.stderr"))
        .spawn()
        .map(Watchdog)
        .expect("spawn the watchdog")
}

/// The HTTP client: POST until the patch is acknowledged (`202`, or `200`
/// when an earlier try went in but its answer was lost to a kill).
fn http_client(url: String, ledger: Arc<Ledger>, stop: Arc<AtomicBool>, hold: impl Fn() + Send) {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        hold();
        let id = format!("h{k}");
        let body = serde_json::to_vec(&patch(&id, k)).unwrap();
        k += 1;
        ledger.sent(&id);
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = c
                .post(format!("{url}/v1/patches"))
                .header("Authorization", format!("Bearer {TOKEN}"))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send();
            match answer.map(|r| r.status().as_u16()) {
                Ok(202 | 200) => {
                    ledger.acked(&id, "http");
                    break;
                }
                // Refused connections while the bridge restarts, `503`
                // while it cannot write, `429` under its admission limits.
                Ok(429 | 503) | Err(_) => {}
                Ok(other) => panic!("{id}: the bridge answered {other}"),
            }
            assert!(Instant::now() < deadline, "{id} never acknowledged");
            // Wait for a bridge that answers before trying again.
            wait_until(Duration::from_secs(5), || {
                c.get(format!("{url}/healthz"))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
            });
        }
    }
}

/// The inbox: each file staged beside the root and renamed in (the reliable
/// way, taken at once); acknowledged once it is in `inbox/.processed/` with
/// its result.
fn inbox_writer(
    env_root: PathBuf,
    stage: PathBuf,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    hold: impl Fn() + Send,
) {
    let layout = ghost_core::Layout::new(&env_root);
    std::fs::create_dir_all(&stage).unwrap();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        hold();
        let id = format!("i{k}");
        let file = format!("{id}.json");
        let body = serde_json::to_vec(&patch(&id, k)).unwrap();
        k += 1;
        ledger.sent(&id);
        ghost_core::fs::durable_write_via(&stage, &layout.inbox().join(&file), &body, 0o600)
            .unwrap();
        let suffix = format!("-{file}.result.json");
        let processed = wait_until(WAIT, || {
            std::fs::read_dir(layout.inbox_processed())
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        });
        assert!(processed, "inbox file {file} was never processed");
        ledger.acked(&id, "inbox");
    }
}

/// `ghostctl submit`, again until it succeeds (a refusal under the
/// admission limits, or a patch already queued by the try before).
fn submitter(env: &TestEnv, ledger: &Ledger, stop: &AtomicBool, hold: impl Fn()) {
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        hold();
        let id = format!("s{k}");
        let file = env.write_patch(
            &format!("{id}.json"),
            &serde_json::to_vec(&patch(&id, k)).unwrap(),
        );
        k += 1;
        ledger.sent(&id);
        let deadline = Instant::now() + WAIT;
        loop {
            let out = env.ghostctl(&["submit", file.to_str().unwrap()]);
            ledger.note_output("submit", &out);
            if out.status.success() {
                ledger.acked(&id, "submit");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: submit never succeeded: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The operator: now and then one of the entries that need a person gets a
/// verb. Races with the executor are expected (the entry moved on): the
/// verb then refuses, which is fine; only effects are counted.
fn operator(env: &TestEnv, ledger: &Ledger, stop: &AtomicBool, mut rng: Rng) {
    let q = env.layout().queue("default");
    while !stop.load(Ordering::Relaxed) {
        let mut candidates = Vec::new();
        wait_until(Duration::from_secs(1), || {
            candidates = [
                QueueState::Failed,
                QueueState::Deferred,
                QueueState::Held,
                QueueState::Stuck,
            ]
            .into_iter()
            .flat_map(|s| {
                q.list(s)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |n| (s, n))
            })
            .collect();
            !candidates.is_empty() || stop.load(Ordering::Relaxed)
        });
        if candidates.is_empty() {
            continue;
        }
        let (state, name) = candidates.swap_remove(rng.below(candidates.len() as u64) as usize);
        let verb = match (state, rng.below(2)) {
            (QueueState::Failed | QueueState::Stuck, 0) => "retry",
            (QueueState::Deferred, 0) => "hold",
            (QueueState::Deferred, _) => "retry",
            (QueueState::Held, 0) => "release",
            _ => "delete",
        };
        let mut args = vec![verb, name.as_str()];
        if verb == "delete" {
            args.extend(["--reason", "torture"]);
        }
        let out = env.ghostctl(&args);
        ledger.note_output(verb, &out);
        if out.status.success() {
            *ledger
                .actions
                .lock()
                .unwrap()
                .entry(verb.to_string())
                .or_default() += 1;
        }
    }
}

/// Lines of `logs/<component>.log` with `event`.
fn log_events(env: &TestEnv, component: &str, event: &str) -> Vec<Value> {
    let p = env.layout().logs().join(format!("{component}.log"));
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

fn backups_match(env: &TestEnv, name: &str) -> bool {
    let f = ghost_core::summary::SummaryFiles::new(&env.layout().summaries("default"), name);
    let sum = |p: &Path| std::fs::read(p).map(|b| md5(&b)).ok();
    sum(&f.json) == sum(&f.backup_json) && sum(&f.md) == sum(&f.backup_md)
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
#[ignore = "minutes of kills: run by .ci/run's torture step"]
fn torture_kill_9_of_every_process_loses_duplicates_and_half_applies_nothing() {
    let kills = env_number("GHOST_TORTURE_KILLS").unwrap_or(200) as usize;
    let seed = env_number("GHOST_TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("torture: {kills} kills, GHOST_TORTURE_SEED={seed}");
    let mut rng = Rng(seed);
    let port = free_port();
    let env = Arc::new(TestEnv::new(&config(port, free_port())));
    std::fs::create_dir_all(env.tree("default")).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut watchdog = start_watchdog(&env);
    let started = Instant::now();

    // The producers wait while the queue is long, so that the executor keeps
    // up and the run ends with a short drain.
    let backlog = {
        let env = env.clone();
        move || {
            let q = env.layout().queue("default");
            wait_until(WAIT, || {
                q.list(QueueState::Pending).map_or(0, |l| l.len()) < 8
            });
        }
    };
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    {
        let (l, s, h) = (ledger.clone(), stop.clone(), backlog.clone());
        let u = url.clone();
        workers.push(std::thread::spawn(move || http_client(u, l, s, h)));
    }
    {
        let (l, s, h) = (ledger.clone(), stop.clone(), backlog.clone());
        let (root, stage) = (env.root.clone(), env.dir.path().join("inbox-stage"));
        workers.push(std::thread::spawn(move || {
            inbox_writer(root, stage, l, s, h)
        }));
    }
    {
        let (l, s, h, e) = (ledger.clone(), stop.clone(), backlog.clone(), env.clone());
        workers.push(std::thread::spawn(move || submitter(&e, &l, &s, h)));
    }
    {
        let (l, s, e, r) = (
            ledger.clone(),
            stop.clone(),
            env.clone(),
            Rng(seed ^ 0x5bd1e995),
        );
        workers.push(std::thread::spawn(move || operator(&e, &l, &s, r)));
    }

    let children = ["bridge", "executor", "monitor"];
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let journal_at_kill = AtomicUsize::new(0);
    let mut cache = BTreeMap::new();
    let q = env.layout().queue("default");
    // `k`: kills so far (a pick whose process was restarting is not one).
    let mut k = 0;
    while k < kills {
        // Every child up (with a heartbeat of its own) before the next kill.
        let up = wait_until(WAIT, || {
            if let Ok(Some(st)) = watchdog.0.try_wait() {
                panic!(
                    "the watchdog exited with {st:?}:\n{}",
                    std::fs::read_to_string(env.dir.path().join("watchdog.stderr"))
                        .unwrap_or_default()
                );
            }
            children.iter().all(|c| running_pid(&env, c).is_some())
        });
        assert!(
            up,
            "kill {k}: not every child came back: {}",
            std::fs::read_to_string(env.layout().state().join("watchdog.json")).unwrap_or_default()
        );
        let who = match rng.below(20) {
            0..=7 => "executor",
            8..=12 => "bridge",
            13..=15 => "monitor",
            _ => "watchdog",
        };
        // Half the executor's kills aim at a patch in flight; every kill
        // lands after a random while.
        if who == "executor" && rng.below(2) == 0 {
            wait_until(Duration::from_secs(3), || {
                q.list(QueueState::Active).is_ok_and(|l| !l.is_empty())
            });
        }
        let spin = Instant::now() + Duration::from_micros(rng.below(300_000));
        while Instant::now() < spin {
            std::hint::spin_loop();
        }
        *count.entry(who).or_default() += 1;
        if who == "watchdog" {
            // SIGKILL (its children get SIGTERM from the kernel), then a
            // new one, as a process manager would.
            let _ = watchdog.0.kill();
            let _ = watchdog.0.wait();
            watchdog = start_watchdog(&env);
        } else if let Some(pid) = running_pid(&env, who) {
            let before = proc_info(pid as i32);
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
            let gone = wait_until(WAIT, || !before.as_ref().is_some_and(still_running));
            assert!(gone, "kill {k}: {who} {pid} survived SIGKILL");
            if who == "executor" {
                // What the dead executor left: read before the next one's
                // recovery, when the restart leaves time for it.
                let prepared = q
                    .list(QueueState::Active)
                    .unwrap_or_default()
                    .iter()
                    .any(|n| {
                        std::fs::read(q.sidecar_path(QueueState::Active, n, "journal"))
                            .is_ok_and(|b| String::from_utf8_lossy(&b).contains("\"prepared\""))
                    });
                if prepared {
                    journal_at_kill.fetch_add(1, Ordering::Relaxed);
                }
            }
        } else {
            // It stopped between the check and the kill (a restart of its
            // own): not a kill.
            *count.get_mut(who).unwrap() -= 1;
            continue;
        }
        k += 1;
        check_between(&env, &mut cache, &format!("after kill {k} ({who})"));
        if k % 100 == 0 {
            eprintln!(
                "after {k} kills ({:.0?}): {count:?}, acknowledged: {}",
                started.elapsed(),
                ledger.acked.lock().unwrap().len()
            );
        }
    }

    // The end: the producers finish the patch they hold, the operator lets
    // go of what it held, the queue settles.
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a workload thread failed");
    }
    for name in q.list(QueueState::Held).unwrap() {
        assert_success(&env.ghostctl(&["release", &name]));
    }
    let settled = wait_until(WAIT, || {
        [
            QueueState::Pending,
            QueueState::Active,
            QueueState::Deferred,
        ]
        .iter()
        .all(|s| q.list(*s).is_ok_and(|l| l.is_empty()))
    });
    assert!(
        settled,
        "the queue did not settle: {:?}",
        states(&env).values().map(|v| v.0).collect::<Vec<_>>()
    );
    kill(Pid::from_raw(watchdog.0.id() as i32), Signal::SIGTERM).unwrap();
    let st = wait_exit(&mut watchdog.0, WAIT).expect("the watchdog stops on SIGTERM");
    assert_eq!(st.code(), Some(0), "the watchdog's exit");
    env.drain();

    // Every acknowledged patch in exactly one state, every patch sent in at
    // most one; whole or absent in the tree by its state.
    let by_name = states(&env);
    let mut by_id: BTreeMap<String, Vec<(QueueState, String)>> = BTreeMap::new();
    for (name, (state, _)) in &by_name {
        let id = id_of(&env, &mut cache, name).expect("every entry has an id");
        by_id.entry(id).or_default().push((*state, name.clone()));
    }
    let acked = ledger.acked.lock().unwrap().clone();
    let sent = ledger.sent.lock().unwrap().clone();
    for id in acked.keys() {
        let n = by_id.get(id).map_or(0, Vec::len);
        assert_eq!(
            n, 1,
            "acknowledged {id} ({}) is in {n} queue states",
            acked[id]
        );
    }
    for (id, at) in &by_id {
        assert!(sent.contains(id), "an entry {id} nobody sent");
        assert_eq!(at.len(), 1, "{id} is queued more than once: {at:?}");
    }
    let tree = tree_files(&env.tree("default"));
    for (id, at) in &by_id {
        assert_whole("at the end", id, at[0].0, tree.get(id));
    }
    for id in tree.keys() {
        assert!(
            by_id.contains_key(id),
            "files of {id}, which is in no queue state: {:?}",
            tree[id]
        );
    }
    // Summaries parse and match their backups, or `ghostctl verify` repairs them.
    let mut repaired = 0;
    for (state, name) in by_id.values().map(|v| &v[0]) {
        let p = ghost_core::summary::SummaryFiles::new(&env.layout().summaries("default"), name);
        if !p.json.exists() {
            assert_ne!(*state, QueueState::Done, "done {name} has no summary");
            continue;
        }
        let s: Value = serde_json::from_slice(&std::fs::read(&p.json).unwrap())
            .unwrap_or_else(|e| panic!("summary of {name} does not parse: {e}"));
        if *state == QueueState::Done {
            assert_eq!(s["status"], "applied", "{name}");
        }
        if !backups_match(&env, name) {
            assert_success(&env.ghostctl(&["verify"]));
            assert!(backups_match(&env, name), "{name}'s summary not repaired");
            repaired += 1;
        }
    }
    assert_success(&env.ghostctl(&["verify"]));
    // No panic anywhere: the logs, the children's stderr, the watchdog's, ghostctl's.
    let mut panics = ledger.panics.lock().unwrap().clone();
    let logs = std::fs::read_dir(env.layout().logs()).unwrap();
    for f in logs
        .flatten()
        .map(|e| e.path())
        .chain(["watchdog.stdout", "watchdog.stderr"].map(|n| env.dir.path().join(n)))
    {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("panicked")) {
            panics.push(format!("{}: {l}", f.display()));
        }
    }
    assert!(panics.is_empty(), "panics: {panics:#?}");

    // The figures.
    let recovered = log_events(&env, "executor", "PATCH_RECOVERED");
    let by_phase = |p: &str| recovered.iter().filter(|v| v["journal"] == p).count();
    let mid_apply = by_phase("prepared");
    let states_count: BTreeMap<&str, usize> = by_id.values().fold(BTreeMap::new(), |mut m, v| {
        *m.entry(v[0].0.name()).or_default() += 1;
        m
    });
    let ways: BTreeMap<&str, usize> = acked.values().fold(BTreeMap::new(), |mut m, w| {
        *m.entry(*w).or_default() += 1;
        m
    });
    eprintln!(
        "torture: {kills} kills in {:.0?}: {count:?}; executor kills recovered mid-apply (journal prepared): {mid_apply}, after apply (journal complete): {}, after the claim (no journal): {}; a prepared journal seen at the kill: {}; acknowledged: {} {ways:?}, sent: {}; end states: {states_count:?}; operator actions: {:?}; summaries repaired by verify: {repaired}; lost: 0, duplicated: 0, half-applied: 0, panics: 0",
        started.elapsed(),
        by_phase("complete"),
        by_phase("none"),
        journal_at_kill.load(Ordering::Relaxed),
        acked.len(),
        sent.len(),
        ledger.actions.lock().unwrap(),
    );
    if kills >= 100 {
        assert!(
            mid_apply > 0,
            "no kill of {kills} landed mid-apply: the torture misses the window it is for"
        );
    }
}
