//! ghost-watchdog: the one process a person (or a process manager) starts. It
//! starts the others — bridge, executor, monitor — and keeps them honest:
//!
//! - each child runs in its own process group and dies with the watchdog
//!   ([`spawn`]);
//! - a child counts as started at its first heartbeat, and as hung when its
//!   heartbeat goes stale: SIGTERM to its group, SIGKILL after the grace, and a
//!   restart that counts against its budget;
//! - restarts wait 1 s doubling (with jitter) up to 60 s, at most 2 per
//!   5 minutes per child; past that the watchdog gives up on the child, raises
//!   exactly one critical alert ([`alert`]), and waits for `ghostctl restart
//!   CHILD` (a request file, [`ghost_core::watchdog`]) or the optional cool-off — all decided
//!   by the pure state machine in [`policy`];
//! - SIGTERM/SIGINT stop every child (SIGTERM to the group, SIGKILL after the
//!   grace) and exit 0 with nothing of the family left; SIGHUP reloads the
//!   configuration and restarts only the children whose settings changed;
//! - `state/watchdog.json` and its own heartbeat say where everything is;
//!   under systemd it speaks the notify protocol ([`notify`]).
//!
//! One watchdog per root: `state/locks/watchdog.lock` is held for its life.

pub mod alert;
mod banner;
pub mod check;
pub mod notify;
pub mod policy;
pub mod spawn;
pub mod spec;
mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use supervisor::run;

/// How [`run`] is set up beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--config` as given: passed on to the children, re-read on reload.
    /// `None`: `<root>/ghost.toml` if it exists, else the embedded defaults.
    pub config_file: Option<PathBuf>,
    /// Where the built-in children's binaries are (default: the directory of
    /// the running executable).
    pub exe_dir: Option<PathBuf>,
    /// Notified on SIGHUP: reload the configuration.
    pub reload: Arc<Notify>,
    /// Cancelled on a second SIGTERM/SIGINT: SIGKILL every child at once.
    pub hard_stop: CancellationToken,
    /// Print where the data, the bridge, the dashboard and the tokens are.
    pub banner: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// Another watchdog holds the root: a usage problem (exit 2).
    #[error("another ghost-watchdog is running on this root{}; lock {}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error(transparent)]
    Core(#[from] ghost_core::Error),
    #[error("{0}")]
    Other(String),
}
