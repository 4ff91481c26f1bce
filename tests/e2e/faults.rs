//! A data root that runs out of space (blocks, then inodes): a drain ends
//! non-zero naming the reason instead of waiting forever, a daemon alerts and
//! resumes by itself once space returns, and no patch is lost either way.
//!
//! These tests mount a tmpfs as the data root, so they need root: CI runs as
//! root (and fails them if it is not); elsewhere they print why they skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use ghost_core::queue::QueueState;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(60);

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(test, "needs root to mount a tmpfs (CI runs it as root)");
    false
}

/// A tmpfs mounted over a test root for the life of the value, holding the
/// root's configuration and layout again.
struct TmpfsRoot(PathBuf);

impl TmpfsRoot {
    fn mount(env: &TestEnv, opts: &str, extra: &str) -> TmpfsRoot {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&env.root)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs -o {opts}");
        env.write_config(&merge_toml(FAST, extra));
        env.layout().create(["default"]).unwrap();
        std::fs::create_dir_all(env.tree("default")).unwrap();
        TmpfsRoot(env.root.clone())
    }
}

impl Drop for TmpfsRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Use up the filesystem of `dir`: its blocks (one big file) or its inodes
/// (empty files). Returns what to remove to give the space back.
fn fill(dir: &Path, inodes: bool) -> Vec<PathBuf> {
    let fill = dir.join("filler");
    std::fs::create_dir_all(&fill).unwrap();
    if inodes {
        let mut i = 0;
        while std::fs::File::create(fill.join(i.to_string())).is_ok() {
            i += 1;
        }
        assert!(i > 0, "no inode was free to begin with");
    } else {
        let mut f = std::fs::File::create(fill.join("blocks")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    vec![fill]
}

fn unfill(what: &[PathBuf]) {
    for p in what {
        std::fs::remove_dir_all(p).unwrap();
    }
}

fn extra(fallback: &Path) -> String {
    format!(
        "[logs]\nretry_interval = \"200ms\"\nfallback_dir = {:?}\n",
        fallback.display().to_string()
    )
}

fn patch(env: &TestEnv, id: &str) -> String {
    env.enqueue_json(
        "default",
        &json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": format!("{id}\n")}]}),
    )
}

/// `name` is in exactly one state of the queue.
fn copies(env: &TestEnv, name: &str) -> usize {
    let q = env.layout().queue("default");
    QueueState::ALL
        .iter()
        .filter(|s| q.entry_path(**s, name).exists())
        .count()
}

fn a_drain_on_a_full_root_ends_with_the_reason(inodes: bool) {
    let env = TestEnv::new("");
    let fallback = env.dir.path().join("fallback");
    let _fs = TmpfsRoot::mount(&env, "size=2m,nr_inodes=400,mode=0700", &extra(&fallback));
    // A root in use: its lock, log and heartbeat files exist, so that the
    // full disk is met by the work, not by the start-up.
    env.drain();
    let p = patch(&env, "p");
    let space = fill(&env.root, inodes);
    let mut exec = env
        .cmd(EXECUTOR)
        .arg("--drain")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut exec, WAIT);
    let Some(status) = status else {
        let _ = exec.kill();
        panic!("the drain did not end on a full disk");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut exec.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("No space left on device"),
        "the reason is named: {stderr}"
    );
    assert_eq!(copies(&env, &p), 1, "nothing lost: {stderr}");
    assert!(!env.tree("default").join("p.txt").exists());
    // Space is back: the next drain applies it, once.
    unfill(&space);
    env.drain();
    assert_eq!(env.state_of("default", &p), Some(QueueState::Done));
    assert_eq!(
        std::fs::read_to_string(env.tree("default").join("p.txt")).unwrap(),
        "p\n"
    );
}

#[test]
fn a_drain_on_a_root_out_of_blocks_ends_non_zero_with_the_reason() {
    if root_or_skip("a_drain_on_a_root_out_of_blocks_…") {
        a_drain_on_a_full_root_ends_with_the_reason(false);
    }
}

#[test]
fn a_drain_on_a_root_out_of_inodes_ends_non_zero_with_the_reason() {
    if root_or_skip("a_drain_on_a_root_out_of_inodes_…") {
        a_drain_on_a_full_root_ends_with_the_reason(true);
    }
}

#[test]
fn a_daemon_on_a_full_root_alerts_and_resumes_by_itself_once_space_returns() {
    if !root_or_skip("a_daemon_on_a_full_root_…") {
        return;
    }
    let mut env = TestEnv::new("");
    let fallback = env.dir.path().join("fallback");
    let _fs = TmpfsRoot::mount(&env, "size=2m,nr_inodes=400,mode=0700", &extra(&fallback));
    env.drain();
    let p = patch(&env, "p");
    let space = fill(&env.root, false);
    let stderr_path = env.dir.path().join("executor.stderr");
    let child = env
        .cmd(EXECUTOR)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    env.children.push(child);
    // Told: the log's fallback (another filesystem) and stderr say so.
    let said = |what: &str| {
        let fb = std::fs::read_dir(&fallback)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(what)));
        fb || std::fs::read_to_string(&stderr_path).is_ok_and(|t| t.contains(what))
    };
    assert!(
        wait_until(WAIT, || {
            env.assert_alive(pid);
            said("EXECUTOR_BLOCKED")
        }),
        "no word of the full disk"
    );
    assert!(said("No space left on device"));
    assert_eq!(copies(&env, &p), 1);
    // Space is back: it resumes by itself, and says so in an alert.
    unfill(&space);
    assert!(
        wait_until(WAIT, || {
            env.assert_alive(pid);
            env.state_of("default", &p) == Some(QueueState::Done)
        }),
        "the daemon did not resume"
    );
    let resolved = wait_until(WAIT, || {
        std::fs::read_dir(env.layout().alerts_inbox())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| ghost_core::fs::read_json::<serde_json::Value>(&e.path()).ok())
            .any(|a| a["fingerprint"] == "executor_blocked:default" && a["status"] == "resolved")
    });
    assert!(resolved, "no resolved alert for the blocked executor");
    let critical = std::fs::read_to_string(env.layout().critical_alert()).unwrap_or_default();
    assert!(critical.contains("RESOLVED"), "{critical}");
    assert_eq!(
        std::fs::read_to_string(env.tree("default").join("p.txt")).unwrap(),
        "p\n"
    );
}
