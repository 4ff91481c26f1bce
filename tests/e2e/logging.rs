//! The log writer under a failing disk, with the real executor: a full
//! filesystem and a read-only one under `logs/` send lines to the fallback,
//! raise a critical alert, pause the executor after `logs.pause_after`, and
//! resume it when the log works again (or on `ghostctl resume --force`),
//! with no patch lost.
//!
//! These tests mount a tmpfs, so they need root: CI runs as root; elsewhere
//! they print why they are skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use ghost_core::queue::QueueState;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(30);

/// Short pause and retry so that a test takes seconds.
fn config(fallback: &Path) -> String {
    format!(
        "[logs]\npause_after = \"1s\"\nretry_interval = \"200ms\"\nfallback_dir = {:?}\n",
        fallback.display().to_string()
    )
}

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(test, "needs root to mount a tmpfs (CI runs it as root)");
    false
}

/// A tmpfs mounted for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, opts: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs -o {opts} {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has_event(path: &Path, event: &str) -> bool {
    lines(path).iter().any(|v| v["event"] == event)
}

fn alerts(env: &TestEnv) -> Vec<Value> {
    std::fs::read_dir(env.layout().alerts_inbox())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| ghost_core::fs::read_json(&e.path()).ok())
        .collect()
}

fn alert_with(env: &TestEnv, fingerprint: &str, status: &str) -> bool {
    alerts(env)
        .iter()
        .any(|a| a["fingerprint"] == fingerprint && a["status"] == status)
}

fn heartbeat_status(env: &TestEnv) -> Option<String> {
    ghost_core::heartbeat::read(&env.layout().heartbeat("executor"))
        .ok()
        .map(|h| h.status)
}

fn write_patch(env: &TestEnv, id: &str) -> String {
    env.enqueue_json(
        "default",
        &json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": format!("{id}\n")}]}),
    )
}

fn done(env: &TestEnv, name: &str) -> bool {
    env.state_of("default", name) == Some(QueueState::Done)
}

/// Fill the filesystem of `dir` with one file until a write fails.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    p
}

#[test]
fn a_full_logs_filesystem_falls_back_alerts_pauses_and_resumes_without_losing_a_patch() {
    if !root_or_skip("a_full_logs_filesystem_…") {
        return;
    }
    let mut env = TestEnv::new("");
    let fallback = env.dir.path().join("fallback");
    env.write_config(&merge_toml(FAST, &config(&fallback)));
    let logs = env.layout().logs();
    let _fs = Tmpfs::mount(&logs, "size=256k,mode=0700");
    let primary = logs.join("executor.log");
    env.spawn_executor();
    assert!(wait_until(WAIT, || has_event(&primary, "EXECUTOR_STARTED")));
    let a = write_patch(&env, "a");
    assert!(
        wait_until(WAIT, || done(&env, &a)),
        "applies while the log works"
    );

    let filler = fill(&logs);
    // The log's last page may still take a few lines: apply patches until
    // the writer finds the disk full.
    let fb = fallback.join("executor.log");
    let mut applied = vec![(a.clone(), "a".to_string())];
    for i in 0..50 {
        let id = format!("b{i}");
        let b = write_patch(&env, &id);
        assert!(
            wait_until(WAIT, || done(&env, &b)),
            "the patch in flight is not held up"
        );
        applied.push((b, id));
        if has_event(&fb, "LOG_PRIMARY_FAILED") {
            break;
        }
    }
    assert!(
        wait_until(WAIT, || has_event(&fb, "PATCH_APPLIED")),
        "lines went to the fallback"
    );
    assert!(alert_with(&env, "log_write_failed:executor", "firing"));
    let crit = std::fs::read_to_string(env.layout().alerts().join("CRITICAL_ALERT")).unwrap();
    assert!(
        crit.contains("CRITICAL ghost-executor: ghost-executor cannot write its log"),
        "{crit}"
    );

    // After pause_after the executor claims nothing new, and says so.
    assert!(wait_until(WAIT, || heartbeat_status(&env).as_deref() == Some("paused")));
    let pause = env.layout().state().join("log-pause.json");
    assert!(pause.exists());
    let hb = ghost_core::heartbeat::read(&env.layout().heartbeat("executor")).unwrap();
    assert_eq!(hb.details["logs"]["primary_ok"], false);
    assert_eq!(
        hb.details["logs"]["fallback_path"],
        fb.display().to_string()
    );
    let status = env.ghostctl(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("intake paused") && text.contains("cannot write its log"),
        "{text}"
    );
    assert!(text.contains("LOG FAILING"), "{text}");
    let c = write_patch(&env, "c");
    assert!(
        holds_for(Duration::from_millis(800), || env.state_of("default", &c)
            == Some(QueueState::Pending)),
        "a paused executor claims nothing"
    );

    // Space comes back: the log recovers, the pause ends, the waiting patch is applied.
    std::fs::remove_file(&filler).unwrap();
    assert!(wait_until(WAIT, || done(&env, &c)));
    assert!(wait_until(WAIT, || !pause.exists()));
    assert!(wait_until(WAIT, || has_event(&primary, "EXECUTOR_RESUMED")));
    assert!(has_event(&primary, "LOG_PRIMARY_RECOVERED"));
    assert!(wait_until(WAIT, || alert_with(
        &env,
        "log_write_failed:executor",
        "resolved"
    )));
    assert!(wait_until(WAIT, || heartbeat_status(&env).as_deref()
        == Some("running")));
    applied.push((c, "c".into()));
    for (name, id) in &applied {
        assert!(done(&env, name), "{id}");
        assert_eq!(
            std::fs::read_to_string(env.tree("default").join(format!("{id}.txt"))).unwrap(),
            format!("{id}\n")
        );
    }

    // The lines logged during the outage were copied back into the primary,
    // in order, before the recovery line; the fallback file is kept, renamed
    // as copied, and the ledger says so.
    let in_primary = lines(&primary);
    let applied_ids: Vec<&str> = in_primary
        .iter()
        .filter(|v| v["event"] == "PATCH_APPLIED")
        .map(|v| v["patch_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = applied.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(applied_ids, want, "every patch's line, once, in order");
    let pos = |event: &str| in_primary.iter().position(|v| v["event"] == event).unwrap();
    assert!(pos("LOG_PRIMARY_FAILED") < pos("LOG_PRIMARY_RECOVERED"));
    let recovered = &in_primary[pos("LOG_PRIMARY_RECOVERED")];
    assert!(
        recovered["lines_copied"].as_u64().unwrap() >= 2,
        "{recovered}"
    );
    assert!(!fb.exists(), "the fallback file is renamed as copied");
    let copied = ghost_core::logging::rotate::list_copied(&fallback, "executor");
    assert_eq!(copied.len(), 1);
    assert_eq!(recovered["kept"][0], copied[0].path.display().to_string());
    let kept = ghost_core::logging::rotate::read_log(&copied[0].path).unwrap();
    assert!(String::from_utf8_lossy(&kept).contains("\"event\":\"PATCH_APPLIED\""));
    let ledger = ghost_core::logging::ledger::read_tail(&logs, 1 << 20);
    assert!(ledger.iter().any(
        |r| r.reason == ghost_core::logging::ledger::Reason::FallbackCopied
            && r.component == "executor"
    ));
}

#[test]
fn a_read_only_logs_directory_pauses_the_executor_until_resume_force_or_recovery() {
    if !root_or_skip("a_read_only_logs_directory_…") {
        return;
    }
    let mut env = TestEnv::new("");
    let fallback = env.dir.path().join("fallback");
    env.write_config(&merge_toml(FAST, &config(&fallback)));
    let logs = env.layout().logs();
    let fs = Tmpfs::mount(&logs, "ro,size=256k,mode=0700");
    env.spawn_executor();
    let fb = fallback.join("executor.log");
    assert!(wait_until(WAIT, || has_event(&fb, "EXECUTOR_STARTED")));
    assert!(
        lines(&fb)[0]["error"]
            .as_str()
            .unwrap()
            .contains("Read-only"),
        "{:?}",
        lines(&fb)[0]
    );
    assert!(alert_with(&env, "log_write_failed:executor", "firing"));
    assert!(wait_until(WAIT, || heartbeat_status(&env).as_deref() == Some("paused")));
    let a = write_patch(&env, "a");
    assert!(holds_for(Duration::from_millis(800), || env
        .state_of("default", &a)
        == Some(QueueState::Pending)));

    // Without --force, resume refuses and names the cause.
    let out = env.ghostctl(&["resume"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write its log"));
    // The operator overrides: recorded, and the executor claims again.
    let out = env.ghostctl(&["resume", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env
        .layout()
        .state()
        .join("log-pause-override.json")
        .exists());
    assert!(wait_until(WAIT, || done(&env, &a)));
    assert!(
        wait_until(WAIT, || has_event(
            &fallback.join("ghostctl.log"),
            "OPERATOR_ACTION"
        )),
        "the override is in the audit log (on the fallback, as logs/ is read-only)"
    );
    assert!(wait_until(WAIT, || heartbeat_status(&env).as_deref()
        == Some("running")));

    // The filesystem becomes writable: the primary log is used again.
    fs.remount("rw");
    let primary = logs.join("executor.log");
    assert!(wait_until(WAIT, || has_event(
        &primary,
        "LOG_PRIMARY_RECOVERED"
    )));
    assert!(wait_until(WAIT, || alert_with(
        &env,
        "log_write_failed:executor",
        "resolved"
    )));
    let b = write_patch(&env, "b");
    assert!(wait_until(WAIT, || done(&env, &b)));
    assert!(wait_until(WAIT, || has_event(&primary, "PATCH_APPLIED")));
}
