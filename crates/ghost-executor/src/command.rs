//! Running check commands: argv with no shell (or `/bin/sh -c` where the target
//! allows shell), in the working tree, with a cleared environment plus PATH, HOME,
//! LANG and the target's additions, in a process group of its own so a timeout
//! kills the whole group, and with the last bytes of stdout and stderr kept.
//!
//! Nothing a command starts outlives the executor: the group's id is handed
//! to [`Limits::record_group`] as soon as the command runs (the engine keeps it
//! beside the entry in `active/`), the group is killed when the command ends,
//! times out or is cancelled, and after a crash recovery kills a recorded group
//! ([`ProcGroup::kill`]) before it touches the tree. `PR_SET_PDEATHSIG` on the
//! leader alone would not do: it reaches the direct child, not what the child
//! started.
//!
//! A process can leave the group on purpose (`setsid`, a double fork into a
//! new session). Where the executor may create PID namespaces (root), each
//! command therefore runs as the init (pid 1) of a namespace of its own, under
//! a small parent that only waits for it ([`Containment::PidNamespace`]): when
//! a namespace's init dies the kernel kills everything else in it, whatever
//! session or group it moved to. Both carry `PR_SET_PDEATHSIG`, so a killed
//! executor takes the parent, the parent takes the init, the init takes the
//! namespace; and both are in the recorded group, so the group kills above
//! tear the namespace down too. Elsewhere it falls back to the process group
//! alone ([`Containment::ProcessGroup`]); which one is in force is logged once
//! (`CHECK_CONTAINMENT`).
//!
//! Whether a command may run at all is decided before (see
//! `ghost_core::patch::policy`). Here: a target's `run_as` user runs it (uid,
//! primary gid, no supplementary groups, its own HOME), and every configured
//! secret is replaced by `[redacted]` in the kept output before anything else
//! sees it, so no summary, log or HTTP answer can carry one.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use ghost_core::patch::{Command, CommandKind};
use ghost_core::summary::CheckSummary;

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdFailure {
    /// It could not be started (not found, not executable, …).
    Spawn(String),
    /// It exited non-zero or was killed by a signal of its own.
    Exit,
    /// It ran past its timeout; its group was killed.
    Timeout,
    /// The patch ran past `stuck_after`; its group was killed.
    Deadline,
    /// The executor is stopping; its group was killed.
    Cancelled,
}

/// What a command may run for, who may stop it, as whom it runs and what
/// its output must not show.
pub struct Limits<'a> {
    pub timeout: Duration,
    /// The patch's stuck deadline.
    pub deadline: Instant,
    pub cancelled: &'a dyn Fn() -> bool,
    pub tail_bytes: usize,
    /// The target's `run_as` user, resolved.
    pub run_as: Option<&'a RunAs>,
    pub scrub: &'a Scrubber,
    /// Told each command's process group once it runs, before it is waited for.
    pub record_group: Option<&'a dyn Fn(&ProcGroup)>,
}

/// How the processes of a command are kept from outliving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containment {
    /// Its own PID namespace (and its process group): nothing escapes.
    PidNamespace,
    /// Its process group only: a process that calls `setsid` escapes.
    ProcessGroup,
}

impl Containment {
    pub fn as_str(self) -> &'static str {
        match self {
            Containment::PidNamespace => "pid_namespace",
            Containment::ProcessGroup => "process_group",
        }
    }
}

/// The containment this process can give commands, found once by trying to
/// start a shell in a new PID namespace, and logged.
pub fn containment() -> Containment {
    static FOUND: std::sync::OnceLock<Containment> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let mut probe = Proc::new("/bin/sh");
        probe
            .args(["-c", ":"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec: unshare(2) only. It applies to the
        // children of the probe, which has none: this only asks whether the
        // kernel allows it here.
        unsafe {
            probe.pre_exec(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
                    .map_err(std::io::Error::from)
            });
        }
        let ok = probe
            .status()
            .map(|st| st.success())
            .unwrap_or(false);
        let c = if ok {
            Containment::PidNamespace
        } else {
            Containment::ProcessGroup
        };
        match c {
            Containment::PidNamespace => tracing::info!(event = "CHECK_CONTAINMENT", containment = c.as_str(), "each check runs in a PID namespace of its own: nothing it starts outlives it"),
            Containment::ProcessGroup => tracing::warn!(event = "CHECK_CONTAINMENT", containment = c.as_str(), "PID namespaces are not available (not root): checks run in a process group of their own; a process that leaves it with setsid can outlive the check"),
        }
        c
    })
}

/// In the command's first process (between fork and exec): make a new PID
/// namespace, fork its init, and from the init the process that goes on to
/// exec the command (as `ids`, uid and gid, when given). The command is not
/// the init itself, so its signals behave as usual (an init ignores the
/// signals its namespace sends it without a handler). The init reaps
/// whatever is orphaned in the namespace and, when the command ends, writes
/// its wait status down a pipe and exits, which kills the rest of the
/// namespace. This first process stays outside as the init's parent and
/// exits as the command did, so the executor sees the command's status; it
/// never returns.
///
/// Only async-signal-safe calls: unshare, pipe, fork, prctl, setgroups,
/// setgid, setuid, close_range/close, sigaction, waitpid, read, write, kill,
/// _exit.
fn enter_pid_namespace(ids: Option<(u32, u32)>) -> std::io::Result<()> {
    use nix::unistd::{fork, ForkResult, Gid, Uid};
    use std::os::fd::IntoRawFd;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)?;
    let (r, w) = nix::unistd::pipe()?;
    let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
    // SAFETY (each fork): this process is a fresh, single-threaded child
    // between fork and exec; the new children make only the calls above.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // The init: dies with its parent, and takes the namespace along.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            match unsafe { fork() }? {
                ForkResult::Child => {
                    // The command (pid 2).
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                    // SAFETY: closing this process's copies of the pipe.
                    unsafe {
                        nix::libc::close(r);
                        nix::libc::close(w);
                    }
                    if let Some((uid, gid)) = ids {
                        nix::unistd::setgroups(&[])?;
                        nix::unistd::setgid(Gid::from_raw(gid))?;
                        nix::unistd::setuid(Uid::from_raw(uid))?;
                    }
                    Ok(())
                }
                ForkResult::Parent { child } => {
                    keep_only_fd(w);
                    let st = loop {
                        // Orphans of the namespace are reparented here: reap them too.
                        match nix::sys::wait::waitpid(Option::<Pid>::None, None) {
                            Ok(ws) if ws.pid() == Some(child) => break encode(ws),
                            Err(nix::errno::Errno::ECHILD) => break [2, 0],
                            _ => continue,
                        }
                    };
                    // SAFETY: write(2) of a local buffer; _exit(2).
                    unsafe {
                        nix::libc::write(w, st.as_ptr().cast(), 2);
                        nix::libc::_exit(0)
                    }
                }
            }
        }
        ForkResult::Parent { child } => {
            keep_only_fd(r);
            while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(child, None) {}
            let mut st = [2u8, 0];
            // SAFETY: read(2) into a local buffer.
            let n = unsafe { nix::libc::read(r, st.as_mut_ptr().cast(), 2) };
            if n != 2 {
                // The init died before the command ended (killed): as if
                // the command had been killed.
                st = [1, Signal::SIGKILL as u8];
            }
            match st {
                [0, code] => unsafe { nix::libc::_exit(i32::from(code)) },
                [1, sig] => {
                    if let Ok(sig) = Signal::try_from(i32::from(sig)) {
                        // SAFETY: sigaction with SIG_DFL, then kill(2) of itself.
                        let _ = unsafe {
                            nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl)
                        };
                        let _ = nix::sys::signal::kill(nix::unistd::getpid(), sig);
                    }
                    // SAFETY: _exit(2).
                    unsafe { nix::libc::_exit(128 + i32::from(sig)) }
                }
                // SAFETY: _exit(2).
                _ => unsafe { nix::libc::_exit(127) },
            }
        }
    }
}

/// A wait status in two bytes: `[0, code]` exited, `[1, signal]` killed.
fn encode(ws: nix::sys::wait::WaitStatus) -> [u8; 2] {
    use nix::sys::wait::WaitStatus;
    match ws {
        WaitStatus::Exited(_, code) => [0, code as u8],
        WaitStatus::Signaled(_, sig, _) => [1, sig as i32 as u8],
        _ => [2, 0],
    }
}

/// In a waiting process of the namespace (between fork and exec, never
/// exec'ing): close every descriptor but stdio and `keep`, and let the stop
/// signals act as they would on the command. std reports a failed exec
/// through a pipe it reads to its end, which must come when the command
/// execs, not when the waiters exit; and the executor's own signal handlers
/// are still installed here, since nothing was exec'd.
fn keep_only_fd(keep: i32) {
    // SAFETY: close_range(2)/close(2) on this process's own descriptors,
    // sigaction(2) with SIG_DFL.
    unsafe {
        let ranges = [(3u32, keep as u32 - 1), (keep as u32 + 1, u32::MAX)];
        for (lo, hi) in ranges {
            if lo <= hi && nix::libc::syscall(nix::libc::SYS_close_range, lo, hi, 0u32) != 0 {
                for fd in lo..hi.min(4096) {
                    nix::libc::close(fd as i32);
                }
            }
        }
        for sig in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl);
        }
    }
}

/// A command's process group, as recovery needs it to kill what a dead
/// executor left running: the group id (the leader's pid), and the leader's
/// start time and the boot, so that a recycled pid is never taken for ours.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcGroup {
    pub boot_id: String,
    pub pgid: i32,
    /// Clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub leader_start: u64,
    /// The command runs as the init of its own PID namespace (so killing
    /// the group kills everything it started). Absent in older records.
    #[serde(default)]
    pub pid_namespace: bool,
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp, …
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn start_ticks(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Live (not zombie) members of process group `pgid`.
fn live_members(pgid: i32) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat_fields)
        .filter(|f| f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z")
        .count()
}

impl ProcGroup {
    /// The group led by `pid` (a leader started with `process_group(0)`).
    pub fn of(pid: i32) -> Option<ProcGroup> {
        Some(ProcGroup {
            boot_id: boot_id()?,
            pgid: pid,
            leader_start: start_ticks(pid)?,
            pid_namespace: false,
        })
    }

    /// Kill the group if it is still the one recorded, and wait (up to a few
    /// seconds) until none of it runs. Returns how many live members it had.
    ///
    /// Ours when: same boot, and the leader is either gone (Linux does not
    /// hand out a pid while a group of that id exists, so a group with that id
    /// and no leader is the recorded one) or still the recorded process (same
    /// start time).
    pub fn kill(&self) -> usize {
        if boot_id().as_deref() != Some(self.boot_id.as_str()) {
            return 0;
        }
        if start_ticks(self.pgid).is_some_and(|t| t != self.leader_start) {
            return 0;
        }
        let found = live_members(self.pgid);
        let pg = Pid::from_raw(self.pgid);
        let until = Instant::now() + Duration::from_secs(5);
        while live_members(self.pgid) > 0 && Instant::now() < until {
            if killpg(pg, Signal::SIGKILL) == Err(nix::errno::Errno::ESRCH) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        found
    }
}

/// A target's `run_as` user, resolved at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: std::path::PathBuf,
}

impl RunAs {
    /// Looks `user` up; the executor must be root to switch to it.
    pub fn resolve(user: &str) -> Result<RunAs, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err(format!(
                "run_as = {user:?} needs the executor to run as root (it runs as uid {})",
                nix::unistd::geteuid()
            ));
        }
        match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => Ok(RunAs {
                user: user.to_string(),
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir,
            }),
            Ok(None) => Err(format!("run_as: there is no user {user:?} on this system")),
            Err(e) => Err(format!("run_as: cannot look up user {user:?}: {e}")),
        }
    }
}

/// Replaces secret values in command output with `[redacted]`.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

/// Values shorter than this are not treated as secrets: scrubbing them would
/// mangle ordinary output, and a secret that short protects nothing.
const MIN_SECRET_LEN: usize = 8;
const REDACTED: &str = "[redacted]";

impl Scrubber {
    pub fn new(values: impl IntoIterator<Item = String>) -> Scrubber {
        let mut secrets: Vec<String> = values
            .into_iter()
            .flat_map(|v| {
                let t = v.trim().to_string();
                [v, t]
            })
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Scrubber { secrets }
    }

    /// Every secret this system knows: the secret environment variables
    /// (`GHOST_…TOKEN`, `GHOST_…KEY`, `GHOST_…WEBHOOK_URL`, …), the secrets of
    /// the configuration, and the files in `state/secrets/`.
    pub fn gather(cfg: &ghost_core::Config, layout: &ghost_core::Layout) -> Scrubber {
        let mut values = Vec::new();
        for (k, v) in std::env::vars() {
            let secretish = ["TOKEN", "KEY", "SECRET", "PASSWORD", "WEBHOOK"]
                .iter()
                .any(|w| k.contains(w));
            if k.starts_with("GHOST_") && secretish {
                values.push(v);
            }
        }
        for s in [
            &cfg.bridge.token,
            &cfg.bridge.hmac_key,
            &cfg.alerts.slack_webhook_url,
        ]
        .into_iter()
        .flatten()
        {
            values.push(s.expose().to_string());
        }
        if let Ok(dir) = std::fs::read_dir(layout.secrets()) {
            for e in dir.flatten() {
                let small_file = e
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.len() <= 64 << 10);
                if small_file {
                    if let Ok(v) = std::fs::read_to_string(e.path()) {
                        values.push(v);
                    }
                }
            }
        }
        Scrubber::new(values)
    }

    /// The longest secret, in bytes (0 without secrets).
    pub fn max_len(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    /// `text` with every secret replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }

    /// The last `cap` bytes of `raw` (itself the end of a longer output when
    /// `truncated`), scrubbed. `raw` should hold [`Scrubber::max_len`] bytes
    /// more than `cap`, so that a secret reaching into the kept part is seen
    /// whole; a secret's tail left at the cut is redacted too.
    pub fn tail(&self, raw: &[u8], mut truncated: bool, cap: usize) -> String {
        let mut s = self.scrub(&String::from_utf8_lossy(raw));
        if s.len() > cap {
            let mut cut = s.len() - cap;
            while !s.is_char_boundary(cut) {
                cut += 1;
            }
            s.drain(..cut);
            truncated = true;
        }
        if truncated {
            'outer: for secret in &self.secrets {
                for k in (4.min(secret.len())..secret.len()).rev() {
                    let end = &secret[secret.len() - k..];
                    if secret.is_char_boundary(secret.len() - k) && s.starts_with(end) {
                        s.replace_range(..k, REDACTED);
                        break 'outer;
                    }
                }
            }
        }
        s
    }
}

/// Keeps the last `cap` bytes written to it.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
            self.truncated = true;
        }
    }
}

fn reader(
    mut r: impl Read + Send + 'static,
    cap: usize,
) -> (Arc<Mutex<Tail>>, std::thread::JoinHandle<()>) {
    let tail = Arc::new(Mutex::new(Tail {
        buf: Vec::new(),
        cap,
        truncated: false,
    }));
    let t = tail.clone();
    let h = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut t) = t.lock() {
                t.push(&chunk[..n]);
            }
        }
    });
    (tail, h)
}

/// The environment a check command sees: nothing of the executor's own but
/// PATH, HOME and LANG (so no secret variable), then the target's additions.
pub fn environment(
    extra: &BTreeMap<String, String>,
    patch_id: &str,
    target: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for k in ["PATH", "HOME", "LANG"] {
        if let Ok(v) = std::env::var(k) {
            env.insert(k.to_string(), v);
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    env.insert("GHOST_PATCH_ID".into(), patch_id.to_string());
    env.insert("GHOST_TARGET".into(), target.to_string());
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Run one command to completion (or until a limit) and describe what happened.
pub fn run(
    cmd: &Command,
    phase: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits<'_>,
) -> (CheckSummary, Option<CmdFailure>) {
    let started = Instant::now();
    let mut summary = CheckSummary {
        phase: phase.to_string(),
        command: cmd.display(),
        exit_code: None,
        signal: None,
        timed_out: false,
        duration_ms: 0,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
    };
    let mut proc = match &cmd.kind {
        CommandKind::Argv(argv) => {
            let mut p = Proc::new(&argv[0]);
            p.args(&argv[1..]);
            p
        }
        CommandKind::Shell(s) => {
            let mut p = Proc::new("/bin/sh");
            p.arg("-c").arg(s);
            p
        }
    };
    proc.current_dir(cwd).env_clear().envs(env);
    let ns = containment() == Containment::PidNamespace;
    if let Some(u) = limits.run_as {
        // std drops the supplementary groups (setgroups(0)) when it sets the
        // uid as root, then calls setgid and setuid before exec. In a
        // namespace the init switches itself (the namespace needs root).
        if !ns {
            proc.uid(u.uid).gid(u.gid);
        }
        proc.env("HOME", &u.home).env("USER", &u.user);
    }
    proc.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let ids = limits.run_as.map(|u| (u.uid, u.gid));
    // SAFETY: the closure runs between fork and exec; it only calls prctl(2)
    // and, with a namespace, what `enter_pid_namespace` lists, all
    // async-signal-safe, and touches no memory of the parent.
    unsafe {
        proc.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            if ns {
                enter_pid_namespace(ids)?;
            }
            Ok(())
        });
    }
    let mut child = match proc.spawn() {
        Ok(c) => c,
        Err(e) => {
            summary.stderr_tail = format!("cannot start {}: {e}", cmd.display());
            return (summary, Some(CmdFailure::Spawn(e.to_string())));
        }
    };
    let pgid = Pid::from_raw(child.id() as i32);
    if let Some(record) = limits.record_group {
        if let Some(mut g) = ProcGroup::of(pgid.as_raw()) {
            g.pid_namespace = ns;
            record(&g);
        }
    }
    // Room for a whole secret before the kept tail (see `Scrubber::tail`).
    let keep = limits.tail_bytes + limits.scrub.max_len();
    let (out, hout) = reader(child.stdout.take().expect("piped"), keep);
    let (err, herr) = reader(child.stderr.take().expect("piped"), keep);
    let timeout = cmd.timeout.unwrap_or(limits.timeout);
    let timeout_at = started + timeout;
    let mut killed_for = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(_) => break None,
        }
        let now = Instant::now();
        let why = if now >= limits.deadline {
            Some(CmdFailure::Deadline)
        } else if now >= timeout_at {
            Some(CmdFailure::Timeout)
        } else if (limits.cancelled)() {
            Some(CmdFailure::Cancelled)
        } else {
            None
        };
        if let Some(why) = why {
            let _ = killpg(pgid, Signal::SIGKILL);
            killed_for = Some(why);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Anything the command left running in its group goes with it.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = hout.join();
    let _ = herr.join();
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let scrubbed = |t: &Arc<Mutex<Tail>>| {
        t.lock()
            .map(|t| limits.scrub.tail(&t.buf, t.truncated, limits.tail_bytes))
            .unwrap_or_default()
    };
    summary.stdout_tail = scrubbed(&out);
    summary.stderr_tail = scrubbed(&err);
    if let Some(st) = status {
        use std::os::unix::process::ExitStatusExt;
        summary.exit_code = st.code();
        summary.signal = st.signal();
    }
    if let Some(why) = killed_for {
        summary.timed_out = matches!(why, CmdFailure::Timeout | CmdFailure::Deadline);
        return (summary, Some(why));
    }
    if summary.exit_code == Some(0) {
        (summary, None)
    } else {
        (summary, Some(CmdFailure::Exit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_SECRETS: Scrubber = Scrubber {
        secrets: Vec::new(),
    };

    fn argv(a: &[&str]) -> Command {
        Command {
            kind: CommandKind::Argv(a.iter().map(|s| s.to_string()).collect()),
            timeout: None,
        }
    }

    fn limits(timeout: Duration) -> Limits<'static> {
        Limits {
            timeout,
            deadline: Instant::now() + Duration::from_secs(60),
            cancelled: &|| false,
            tail_bytes: 16,
            run_as: None,
            scrub: &NO_SECRETS,
            record_group: None,
        }
    }

    #[test]
    fn success_failure_and_tails() {
        let d = tempfile::tempdir().unwrap();
        let env = environment(&BTreeMap::new(), "p", "t");
        let (s, f) = run(
            &argv(&["true"]),
            "before",
            d.path(),
            &env,
            &limits(Duration::from_secs(10)),
        );
        assert_eq!((s.exit_code, f), (Some(0), None));
        let sh = Command {
            kind: CommandKind::Shell(
                "printf 'aaaaaaaaaaaaaaaaaaaaXYZ'; echo oops >&2; exit 3".into(),
            ),
            timeout: None,
        };
        let (s, f) = run(
            &sh,
            "after",
            d.path(),
            &env,
            &limits(Duration::from_secs(10)),
        );
        assert_eq!((s.exit_code, f), (Some(3), Some(CmdFailure::Exit)));
        assert_eq!(s.stdout_tail.len(), 16);
        assert!(s.stdout_tail.ends_with("XYZ"));
        assert_eq!(s.stderr_tail, "oops\n");
    }

    #[test]
    fn environment_is_cleared() {
        let d = tempfile::tempdir().unwrap();
        std::env::set_var("GHOST_TEST_SECRET_SHOULD_NOT_LEAK", "x");
        let mut extra = BTreeMap::new();
        extra.insert("EXTRA".to_string(), "1".to_string());
        let env = environment(&extra, "p", "t");
        let mut l = limits(Duration::from_secs(10));
        l.tail_bytes = 4096;
        let (s, _) = run(&argv(&["env"]), "before", d.path(), &env, &l);
        assert!(
            !s.stdout_tail.contains("GHOST_TEST_SECRET"),
            "{}",
            s.stdout_tail
        );
        assert!(s.stdout_tail.contains("EXTRA=1"));
        assert!(s.stdout_tail.contains("GHOST_PATCH_ID=p"));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let d = tempfile::tempdir().unwrap();
        let env = environment(&BTreeMap::new(), "p", "t");
        // The shell starts a grandchild; both must die. It writes its own pid
        // as this process sees it (`$!` counts in the check's PID namespace).
        let sh = Command {
            kind: CommandKind::Shell(
                "sh -c 'read p _ < /proc/self/stat; echo $p > grandchild; exec sleep 30' & wait"
                    .into(),
            ),
            timeout: Some(Duration::from_millis(1000)),
        };
        let t = Instant::now();
        let (s, f) = run(
            &sh,
            "after",
            d.path(),
            &env,
            &limits(Duration::from_secs(10)),
        );
        assert_eq!(f, Some(CmdFailure::Timeout));
        assert!(s.timed_out);
        assert!(t.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(d.path().join("grandchild"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Gone, or a zombie waiting for a reaper: either way not running.
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(), "grandchild {pid} survived");
    }

    #[test]
    fn a_recorded_group_is_killed_only_while_it_is_still_ours() {
        let mut leader = Proc::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = leader.id() as i32;
        let g = ProcGroup::of(pid).expect("a running leader");
        // Another boot, or the same pid started at another time: not ours.
        let other_boot = ProcGroup {
            boot_id: "another-boot".into(),
            ..g.clone()
        };
        let recycled = ProcGroup {
            leader_start: g.leader_start + 1,
            ..g.clone()
        };
        assert_eq!(other_boot.kill(), 0);
        assert_eq!(recycled.kill(), 0);
        assert!(live_members(pid) >= 1, "left alone");
        // Ours: the leader and the sleep it started.
        assert!(g.kill() >= 1);
        let _ = leader.wait();
        assert_eq!(live_members(pid), 0);
    }

    /// The pid (as this process sees it) a check's process wrote to `file`.
    fn pid_in(file: &Path) -> Option<i32> {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    fn running(pid: i32) -> bool {
        stat_fields(pid).is_some_and(|f| f[0] != "Z")
    }

    #[test]
    fn a_process_that_leaves_the_group_dies_with_the_check_in_a_pid_namespace() {
        if !nix::unistd::geteuid().is_root() {
            // Without root there are no PID namespaces: the process group is
            // the containment, and it says so.
            assert_eq!(containment(), Containment::ProcessGroup);
            return;
        }
        assert_eq!(containment(), Containment::PidNamespace);
        let d = tempfile::tempdir().unwrap();
        let env = environment(&BTreeMap::new(), "p", "t");
        // A new session, then its pid as /proc (the host's) numbers it; the
        // check itself ends at once.
        let sh = Command {
            kind: CommandKind::Shell(
                "setsid sh -c 'read p _ < /proc/self/stat; echo $p > escaped.tmp; mv escaped.tmp escaped; exec sleep 300' & \
                 while [ ! -e escaped ]; do sleep 0.01; done; echo started"
                    .into(),
            ),
            timeout: None,
        };
        let (s, f) = run(
            &sh,
            "after",
            d.path(),
            &env,
            &limits(Duration::from_secs(20)),
        );
        assert_eq!((s.exit_code, f), (Some(0), None), "{s:?}");
        assert_eq!(s.stdout_tail, "started\n");
        let pid = pid_in(&d.path().join("escaped")).expect("the escaped process's pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !running(pid),
            "{pid} left the check's session and survived it"
        );
        // A failing command's status still comes through the namespace.
        let (s, f) = run(
            &argv(&["sh", "-c", "exit 7"]),
            "after",
            d.path(),
            &env,
            &limits(Duration::from_secs(20)),
        );
        assert_eq!((s.exit_code, f), (Some(7), Some(CmdFailure::Exit)));
        let (s, _) = run(
            &argv(&["sh", "-c", "kill -9 $$"]),
            "after",
            d.path(),
            &env,
            &limits(Duration::from_secs(20)),
        );
        assert_eq!(s.signal, Some(9), "{s:?}");
    }

    #[test]
    fn missing_program_is_a_spawn_failure() {
        let d = tempfile::tempdir().unwrap();
        let env = environment(&BTreeMap::new(), "p", "t");
        let (_, f) = run(
            &argv(&["/nonexistent/prog"]),
            "before",
            d.path(),
            &env,
            &limits(Duration::from_secs(1)),
        );
        assert!(matches!(f, Some(CmdFailure::Spawn(_))));
    }

    #[test]
    fn cancellation_stops_it() {
        let d = tempfile::tempdir().unwrap();
        let env = environment(&BTreeMap::new(), "p", "t");
        let l = Limits {
            timeout: Duration::from_secs(30),
            deadline: Instant::now() + Duration::from_secs(60),
            cancelled: &|| true,
            tail_bytes: 16,
            run_as: None,
            scrub: &NO_SECRETS,
            record_group: None,
        };
        let (_, f) = run(&argv(&["sleep", "30"]), "after", d.path(), &env, &l);
        assert_eq!(f, Some(CmdFailure::Cancelled));
    }

    #[test]
    fn secrets_are_scrubbed_whole_and_at_the_cut() {
        let sc = Scrubber::new(["s3cret-value-1234".to_string(), "short".into()]);
        assert_eq!(sc.scrub("a s3cret-value-1234 b"), "a [redacted] b");
        // Too short to be treated as a secret.
        assert_eq!(sc.scrub("short"), "short");
        // The cut falls inside the secret: its tail is not shown either.
        let out = sc.tail(b"xxs3cret-value-1234yy", true, 10);
        assert!(!out.contains("1234"), "{out}");
        assert!(out.ends_with("yy"), "{out}");
        // A secret reaching into the kept part is replaced whole.
        let out = sc.tail(b"...s3cret-value-1234", true, 12);
        assert!(out.contains("[redacted]") && !out.contains("1234"), "{out}");
    }

    #[test]
    fn output_of_a_check_is_scrubbed() {
        let d = tempfile::tempdir().unwrap();
        let env = environment(&BTreeMap::new(), "p", "t");
        let sc = Scrubber::new(["tok-0123456789abcdef".to_string()]);
        let mut l = limits(Duration::from_secs(10));
        l.scrub = &sc;
        l.tail_bytes = 4096;
        let (s, _) = run(
            &argv(&[
                "sh",
                "-c",
                "echo token=tok-0123456789abcdef; echo tok-0123456789abcdef >&2; exit 1",
            ]),
            "after",
            d.path(),
            &env,
            &l,
        );
        assert_eq!(s.stdout_tail, "token=[redacted]\n");
        assert_eq!(s.stderr_tail, "[redacted]\n");
    }
}
