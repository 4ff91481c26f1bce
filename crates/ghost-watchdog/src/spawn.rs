//! Starting a child: its own process group (so that a signal to the group
//! reaches everything it started in it), `PR_SET_PDEATHSIG` so that it dies
//! with the watchdog, stdin from `/dev/null`, stdout and stderr appended to
//! `logs/<child>.stderr.log`, working directory the data root, and the
//! watchdog's environment less the service manager's notification variables,
//! plus `NO_COLOR=1` (the output goes to a file that alerts, `ghostctl
//! status` and process managers' logs quote: no colour codes in it, from the
//! child or anything it runs), plus the child's `env`.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
//! the process. Children are therefore spawned only from the watchdog's
//! supervising task, never from a blocking-pool thread (those exit when
//! idle). The binary runs that task on a current-thread runtime, i.e. on the
//! main thread, which lives as long as the process.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::spec::ChildSpec;

/// Why a spawn failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{} does not exist or is not executable", program.display())]
    Missing { program: PathBuf },
    #[error("cannot start {}: {source}", program.display())]
    Failed {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Keep the stderr log bounded: past `max_bytes`, the file becomes
/// `<child>.stderr.log.1` (replacing the previous one) before the next start.
fn rotate(path: &Path, max_bytes: u64) {
    let big = std::fs::metadata(path)
        .map(|m| m.len() > max_bytes)
        .unwrap_or(false);
    if big {
        let old = path.with_extension("log.1");
        let _ = ghost_core::fs::durable_remove(&old);
        let _ = ghost_core::fs::durable_move(path, &old);
    }
}

/// Start `spec`'s program. Must be called from a long-lived thread (see the
/// module documentation).
pub fn spawn(
    spec: &ChildSpec,
    cwd: &Path,
    log_path: &Path,
    max_log_bytes: u64,
) -> Result<tokio::process::Child, SpawnError> {
    if !spec.program_present() {
        return Err(SpawnError::Missing {
            program: spec.program.clone(),
        });
    }
    rotate(log_path, max_log_bytes);
    #[allow(clippy::disallowed_methods)]
    // the child's stdout/stderr file: the child writes it, not us
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(ghost_core::fs::FILE_MODE)
        .open(log_path)
        .map_err(|source| SpawnError::Log {
            path: log_path.to_path_buf(),
            source,
        })?;
    let log2 = log.try_clone().map_err(|source| SpawnError::Log {
        path: log_path.to_path_buf(),
        source,
    })?;
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .process_group(0)
        .kill_on_drop(false);
    for k in crate::notify::ENV_VARS {
        cmd.env_remove(k);
    }
    cmd.env("NO_COLOR", "1");
    cmd.envs(&spec.env);
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec. It calls
    // only prctl(2) and getppid(2), both async-signal-safe; it allocates
    // nothing and touches no lock or memory shared with the parent's threads.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)?;
            // The watchdog may have died before prctl took effect: then the
            // signal will never come, so do not start at all.
            if nix::unistd::getppid() != parent {
                // ESRCH ("no such process": the parent), built from the errno
                // alone: nothing is allocated between fork and exec.
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SpawnError::Missing {
                program: spec.program.clone(),
            }
        } else {
            SpawnError::Failed {
                program: spec.program.clone(),
                source,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ffi::OsString;

    fn spec(program: &str, args: &[&str]) -> ChildSpec {
        ChildSpec {
            name: "t".into(),
            enabled: true,
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env: BTreeMap::from([("GHOST_TEST_ENV".to_string(), "yes".to_string())]),
            heartbeat: false,
            fingerprint: String::new(),
        }
    }

    #[tokio::test]
    async fn child_gets_its_own_group_cwd_env_and_log() {
        let d = tempfile::tempdir().unwrap();
        let s = spec(
            "/bin/sh",
            &["-c", "echo pgid=$(cut -d' ' -f5 /proc/$$/stat) cwd=$(pwd) env=$GHOST_TEST_ENV notify=${NOTIFY_SOCKET:-none} nocolor=$NO_COLOR; echo err >&2"],
        );
        let log = d.path().join("t.stderr.log");
        let mut c = spawn(&s, d.path(), &log, 1 << 20).unwrap();
        let pid = c.id().unwrap();
        let st = c.wait().await.unwrap();
        assert!(st.success());
        let out = std::fs::read_to_string(&log).unwrap();
        assert!(out.contains(&format!("pgid={pid}")), "{out}");
        assert!(
            out.contains(&format!(
                "cwd={}",
                d.path().canonicalize().unwrap().display()
            )),
            "{out}"
        );
        assert!(out.contains("env=yes"), "{out}");
        assert!(out.contains("notify=none"), "{out}");
        assert!(out.contains("nocolor=1"), "{out}");
        assert!(out.contains("err"), "{out}");
    }

    #[tokio::test]
    async fn missing_program_is_reported_as_missing() {
        let d = tempfile::tempdir().unwrap();
        match spawn(
            &spec("/nonexistent/ghost-monitor", &[]),
            d.path(),
            &d.path().join("t.stderr.log"),
            1,
        ) {
            Err(SpawnError::Missing { program }) => {
                assert_eq!(program, PathBuf::from("/nonexistent/ghost-monitor"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_large_log_is_rotated_before_the_start() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("t.stderr.log");
        ghost_core::fs::durable_write(&log, &[b'x'; 100], 0o600).unwrap();
        let mut c = spawn(&spec("/bin/sh", &["-c", "echo new"]), d.path(), &log, 50).unwrap();
        c.wait().await.unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "new\n");
        assert_eq!(
            std::fs::read(log.with_extension("log.1")).unwrap().len(),
            100
        );
    }
}
