//! A data root that runs out of space (blocks, then inodes): a drain ends
//! non-zero naming the reason instead of waiting forever, a daemon alerts and
//! resumes by itself once space returns, and no patch is lost either way.
//!
//! These tests mount a tmpfs as the data root, so they need root: CI runs as
//! root (and fails them if it is not); elsewhere they print why they skip.

use std::fs::File;
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

// ---- EIO, a read-only filesystem and permission denied, area by area ----

/// Where a fault is put: the directory that gets its own filesystem (EIO,
/// read-only) or the immutable flag (permission denied).
#[derive(Clone, Copy, Debug)]
enum Area {
    /// `queue/` (every state of every target: renames stay on one filesystem).
    Queue,
    /// `summaries/`.
    Summaries,
    /// `logs/`.
    Logs,
}

impl Area {
    fn dir(self) -> &'static str {
        match self {
            Area::Queue => "queue",
            Area::Summaries => "summaries",
            Area::Logs => "logs",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// `FS_IOC_SHUTDOWN` (after a sync): every later operation fails with EIO.
    Eio,
    /// `mount -o remount,ro`: EROFS.
    ReadOnly,
    /// `chattr +i` on the directory: EPERM, even for root.
    Immutable,
}

impl Fault {
    /// What the error says.
    fn cause(self) -> &'static str {
        match self {
            Fault::Eio => "Input/output error",
            Fault::ReadOnly => "Read-only file system",
            Fault::Immutable => "Operation not permitted",
        }
    }
}

// FS_IOC_SHUTDOWN = _IOR('X', 125, __u32); flags 0: sync everything, then shut down.
nix::ioctl_read!(fs_ioc_shutdown, b'X', 125, u32);
const GOING_FLAGS_DEFAULT: u32 = 0;

/// An ext4 image on a loop device mounted over one directory of the root.
struct LoopFs {
    image: PathBuf,
    mnt: PathBuf,
    devs: Vec<String>,
}

impl LoopFs {
    fn mount(image: PathBuf, mnt: &Path) -> LoopFs {
        File::create(&image).unwrap().set_len(32 << 20).unwrap();
        let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&image));
        run(Command::new("mkfs.ext4").args(["-q", "-F", &dev]));
        // The directory under the mount is empty and stays immutable: while
        // the disk is swapped (`replace`) nothing can land there, out of sight.
        let _ = std::fs::remove_dir_all(mnt);
        std::fs::create_dir_all(mnt).unwrap();
        chattr("+i", mnt);
        run(Command::new("mount").arg(&dev).arg(mnt));
        LoopFs {
            image,
            mnt: mnt.to_path_buf(),
            devs: vec![dev],
        }
    }

    fn shutdown(&self) {
        let f = File::open(&self.mnt).unwrap();
        let mut flags = GOING_FLAGS_DEFAULT;
        // SAFETY: FS_IOC_SHUTDOWN reads one u32 from a valid pointer.
        unsafe { fs_ioc_shutdown(std::os::fd::AsRawFd::as_raw_fd(&f), &mut flags) }
            .expect("FS_IOC_SHUTDOWN");
    }

    /// The disk is back: the shut-down mount is detached (a process may
    /// still hold it) and the image mounted again through a new loop device
    /// (the old superblock stays shut down while anything holds it).
    fn replace(&mut self) {
        run(Command::new("umount").arg("-l").arg(&self.mnt));
        let dev = run(Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&self.image));
        run(Command::new("mount").arg(&dev).arg(&self.mnt));
        self.devs.push(dev);
    }

    fn remount(&self, how: &str) {
        let opts = format!("remount,{how}");
        let ok = wait_until(WAIT, || {
            Command::new("mount")
                .args(["-o", &opts])
                .arg(&self.mnt)
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ok, "mount -o {opts} {}", self.mnt.display());
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        for d in &self.devs {
            let _ = Command::new("losetup").args(["-d", d]).status();
        }
        let _ = Command::new("chattr").arg("-i").arg(&self.mnt).status();
    }
}

fn chattr(flag: &str, p: &Path) {
    run(Command::new("chattr").arg(flag).arg(p));
}

/// Paths that may carry the immutable flag: cleared on drop, so that a
/// failed test leaves a temporary directory that can be removed.
struct Unflag(Vec<PathBuf>);

impl Drop for Unflag {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

fn loop_tools_or_skip(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    let missing: Vec<&str> = ["losetup", "mkfs.ext4", "chattr"]
        .into_iter()
        .filter(|c| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs {missing:?}; .ci/run installs e2fsprogs and mount");
    }
    eprintln!("SKIPPED: {test} needs {missing:?} (e2fsprogs, util-linux)");
    false
}

/// Everything the executor said so far: its log, the log's fallback, its stderr.
fn said(env: &TestEnv, fallback: &Path, stderr: &Path) -> String {
    let mut all =
        std::fs::read_to_string(env.layout().logs().join("executor.log")).unwrap_or_default();
    for e in std::fs::read_dir(fallback).into_iter().flatten().flatten() {
        all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    all.push_str(&std::fs::read_to_string(stderr).unwrap_or_default());
    all
}

/// Any alert raised: a file in `alerts/inbox/` or a line in `CRITICAL_ALERT`.
fn alerted(env: &TestEnv, status: &str) -> bool {
    let inbox = std::fs::read_dir(env.layout().alerts_inbox())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| ghost_core::fs::read_json::<serde_json::Value>(&e.path()).ok())
        .any(|a| a["status"] == status);
    let word = if status == "resolved" {
        "RESOLVED"
    } else {
        "CRITICAL"
    };
    inbox || std::fs::read_to_string(env.layout().critical_alert()).is_ok_and(|t| t.contains(word))
}

/// One fault under one area while the executor daemon runs: it says what
/// failed (the path and the cause), raises an alert, loses nothing, and
/// applies the patch by itself once the fault is gone. Under the queue, the
/// patch is queued before the fault and the daemon starts into it (nothing
/// can be queued while the queue is broken); elsewhere the daemon runs first
/// and the patch arrives during the fault.
fn fault_under(area: Area, fault: Fault) {
    let what = format!("{fault:?} under {area:?}");
    let mut env = TestEnv::new("");
    let fallback = env.dir.path().join("fallback");
    env.write_config(&merge_toml(FAST, &extra(&fallback)));
    let mnt = env.root.join(area.dir());
    let mut disk =
        (fault != Fault::Immutable).then(|| LoopFs::mount(env.dir.path().join("area.img"), &mnt));
    env.layout().create(["default"]).unwrap();
    std::fs::create_dir_all(env.tree("default")).unwrap();
    // A root in use: its log, heartbeat and summaries exist.
    env.drain();
    // The immutable flag on a directory stops its entries from changing;
    // the log is appended to in place, so it gets the flag too.
    let immutable = match area {
        Area::Queue => vec![env.layout().queue("default").dir(QueueState::Active)],
        Area::Summaries => vec![env.layout().summaries("default")],
        Area::Logs => vec![
            env.layout().logs(),
            env.layout().logs().join("executor.log"),
        ],
    };
    let _unflag = Unflag(immutable.clone());
    let inject = |disk: &Option<LoopFs>| match fault {
        Fault::Eio => disk.as_ref().unwrap().shutdown(),
        Fault::ReadOnly => disk.as_ref().unwrap().remount("ro"),
        Fault::Immutable => immutable.iter().for_each(|p| chattr("+i", p)),
    };
    let queue_first = matches!(area, Area::Queue);
    let mut p = None;
    if queue_first {
        p = Some(patch(&env, "p"));
        inject(&disk);
    }
    let stderr = env.dir.path().join("executor.stderr");
    let child = env
        .cmd(EXECUTOR)
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    env.children.push(child);
    if !queue_first {
        let hb = env.layout().heartbeat("executor");
        assert!(wait_until(WAIT, || ghost_core::heartbeat::read(&hb)
            .is_ok_and(|h| h.pid == pid)));
        inject(&disk);
        p = Some(patch(&env, "p"));
    }
    let p = p.unwrap();
    let told = wait_until(WAIT, || {
        env.assert_alive(pid);
        let s = said(&env, &fallback, &stderr);
        s.contains(fault.cause()) && s.contains(&format!("/{}", area.dir()))
    });
    assert!(
        told,
        "{what}: no error naming the path and the cause:\n{}",
        said(&env, &fallback, &stderr)
    );
    assert!(
        wait_until(WAIT, || alerted(&env, "firing")),
        "{what}: no alert:\n{}",
        said(&env, &fallback, &stderr)
    );
    if !matches!(area, Area::Logs) {
        assert_ne!(
            env.state_of("default", &p),
            Some(QueueState::Done),
            "{what}"
        );
    }
    // The fault goes away; the daemon carries on by itself.
    match fault {
        Fault::Eio => disk.as_mut().unwrap().replace(),
        Fault::ReadOnly => disk.as_ref().unwrap().remount("rw"),
        Fault::Immutable => immutable.iter().for_each(|p| chattr("-i", p)),
    }
    let done = wait_until(WAIT, || {
        env.assert_alive(pid);
        env.state_of("default", &p) == Some(QueueState::Done)
    });
    assert!(
        done,
        "{what}: {p} is {:?} after the fault went away:\n{}",
        env.state_of("default", &p),
        said(&env, &fallback, &stderr)
    );
    assert_eq!(copies(&env, &p), 1, "{what}: {p} once");
    // A patch queued afterwards goes through too.
    let r = patch(&env, "r");
    assert!(
        wait_until(WAIT, || {
            env.assert_alive(pid);
            env.state_of("default", &r) == Some(QueueState::Done)
        }),
        "{what}: the flow did not recover:\n{}",
        said(&env, &fallback, &stderr)
    );
    for id in ["p", "r"] {
        let f = env.tree("default").join(format!("{id}.txt"));
        assert_eq!(
            std::fs::read_to_string(&f).ok().as_deref(),
            Some(format!("{id}\n").as_str()),
            "{what}: {}",
            f.display()
        );
    }
    let v = env.ghostctl(&["verify"]);
    assert!(v.status.success(), "{what}: ghostctl verify: {v:?}");
    let mut c = env.take_child(pid);
    let _ = c.kill();
    let _ = c.wait();
    drop(disk);
}

#[test]
fn eio_a_read_only_fs_and_permission_denied_under_the_queue_are_told_and_recovered() {
    if loop_tools_or_skip("eio_a_read_only_fs_and_permission_denied_under_the_queue_…") {
        for f in [Fault::Immutable, Fault::ReadOnly, Fault::Eio] {
            fault_under(Area::Queue, f);
        }
    }
}

#[test]
fn eio_a_read_only_fs_and_permission_denied_under_the_summaries_are_told_and_recovered() {
    if loop_tools_or_skip("eio_a_read_only_fs_and_permission_denied_under_the_summaries_…") {
        for f in [Fault::Immutable, Fault::ReadOnly, Fault::Eio] {
            fault_under(Area::Summaries, f);
        }
    }
}

#[test]
fn eio_and_permission_denied_under_the_logs_are_told_and_recovered() {
    if loop_tools_or_skip("eio_and_permission_denied_under_the_logs_…") {
        for f in [Fault::Immutable, Fault::Eio] {
            fault_under(Area::Logs, f);
        }
    }
}

/// A fault under `alerts/` while the executor has something to alert about
/// (its queue's `active/` is immutable, so it cannot claim): the alert that
/// cannot be written is said on stderr with the path and the cause, lands by
/// itself once `alerts/` works again (the queue still broken), and the
/// all-clear follows once the queue works.
fn fault_under_the_alerts(fault: Fault) {
    let what = format!("{fault:?} under the alerts");
    let mut env = TestEnv::new("");
    let fallback = env.dir.path().join("fallback");
    env.write_config(&merge_toml(FAST, &extra(&fallback)));
    let alerts = env.layout().alerts();
    let mut disk = (fault != Fault::Immutable)
        .then(|| LoopFs::mount(env.dir.path().join("alerts.img"), &alerts));
    env.layout().create(["default"]).unwrap();
    std::fs::create_dir_all(env.tree("default")).unwrap();
    env.drain();
    let active = env.layout().queue("default").dir(QueueState::Active);
    let p = patch(&env, "p");
    let immutable = [alerts.clone(), env.layout().alerts_inbox()];
    let _unflag = Unflag(vec![
        alerts.clone(),
        env.layout().alerts_inbox(),
        active.clone(),
    ]);
    match fault {
        Fault::Eio => disk.as_ref().unwrap().shutdown(),
        Fault::ReadOnly => disk.as_ref().unwrap().remount("ro"),
        Fault::Immutable => immutable.iter().for_each(|p| chattr("+i", p)),
    }
    chattr("+i", &active);
    let stderr = env.dir.path().join("executor.stderr");
    let child = env
        .cmd(EXECUTOR)
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    env.children.push(child);
    let told = wait_until(WAIT, || {
        env.assert_alive(pid);
        let s = std::fs::read_to_string(&stderr).unwrap_or_default();
        s.contains("cannot raise an alert") && s.contains(fault.cause()) && s.contains("/alerts")
    });
    assert!(
        told,
        "{what}: not said:\n{}",
        said(&env, &fallback, &stderr)
    );
    match fault {
        Fault::Eio => disk.as_mut().unwrap().replace(),
        Fault::ReadOnly => disk.as_ref().unwrap().remount("rw"),
        Fault::Immutable => immutable.iter().for_each(|p| chattr("-i", p)),
    }
    assert!(
        wait_until(WAIT, || {
            env.assert_alive(pid);
            alerted(&env, "firing")
        }),
        "{what}: the alert never landed once alerts/ worked:\n{}",
        said(&env, &fallback, &stderr)
    );
    chattr("-i", &active);
    assert!(
        wait_until(WAIT, || {
            env.assert_alive(pid);
            env.state_of("default", &p) == Some(QueueState::Done) && alerted(&env, "resolved")
        }),
        "{what}: {p} is {:?}:\n{}",
        env.state_of("default", &p),
        said(&env, &fallback, &stderr)
    );
    assert_eq!(copies(&env, &p), 1, "{what}");
    let mut c = env.take_child(pid);
    let _ = c.kill();
    let _ = c.wait();
    drop(disk);
}

#[test]
fn eio_a_read_only_fs_and_permission_denied_under_the_alerts_are_told_and_recovered() {
    if loop_tools_or_skip("eio_a_read_only_fs_and_permission_denied_under_the_alerts_…") {
        for f in [Fault::Immutable, Fault::ReadOnly, Fault::Eio] {
            fault_under_the_alerts(f);
        }
    }
}
