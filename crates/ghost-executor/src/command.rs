//! Running check commands: argv with no shell (or `/bin/sh -c` where the target
//! allows shell), in the working tree, with a cleared environment plus PATH, HOME,
//! LANG and the target's additions, in a process group of its own so a timeout
//! kills the whole group, and with the last bytes of stdout and stderr kept.

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

/// What a command may run for and who may stop it.
pub struct Limits<'a> {
    pub timeout: Duration,
    /// The patch's stuck deadline.
    pub deadline: Instant,
    pub cancelled: &'a dyn Fn() -> bool,
    pub tail_bytes: usize,
}

/// Keeps the last `cap` bytes written to it.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    cap: usize,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
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

/// The environment a check command sees.
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
    proc.current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs between fork and exec; it only calls prctl(2),
    // which is async-signal-safe, and touches no memory of the parent.
    unsafe {
        proc.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
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
    let (out, hout) = reader(child.stdout.take().expect("piped"), limits.tail_bytes);
    let (err, herr) = reader(child.stderr.take().expect("piped"), limits.tail_bytes);
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
    summary.stdout_tail =
        String::from_utf8_lossy(&out.lock().map(|t| t.buf.clone()).unwrap_or_default())
            .into_owned();
    summary.stderr_tail =
        String::from_utf8_lossy(&err.lock().map(|t| t.buf.clone()).unwrap_or_default())
            .into_owned();
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
        // The shell starts a grandchild; both must die.
        let sh = Command {
            kind: CommandKind::Shell("sleep 30 & echo $! > grandchild; wait".into()),
            timeout: Some(Duration::from_millis(300)),
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
        };
        let (_, f) = run(&argv(&["sleep", "30"]), "after", d.path(), &env, &l);
        assert_eq!(f, Some(CmdFailure::Cancelled));
    }
}
