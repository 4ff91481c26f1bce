//! ghost-core: what every ghostbridge process shares. It owns the disk (`fs`),
//! every operator action ([`actions`], for ghostctl and the dashboard alike),
//! the data-root layout, configuration, the patch model, and every file more
//! than one process reads or writes, one module per kind: the queue and its
//! records ([`queue`]), an entry's id and the one lookup ([`entry`]), the id
//! index ([`ids`]), summaries, heartbeats, the watchdog's state and
//! requests ([`watchdog`]), the intake pause ([`pause`]), alerts ([`alert`]),
//! the monitor's alert book and health model ([`alerting`], [`health`]) and
//! the secret locations ([`secrets`]), and the archive the retention
//! moves finished things into ([`archive`], [`maintenance`]). Processes coordinate only through
//! these files and atomic renames.

pub mod actions;
pub mod admit;
pub mod alert;
pub mod alerting;
pub mod archive;
pub mod cli;
pub mod config;
pub mod entry;
pub mod error;
pub mod fs;
pub mod hash;
pub mod health;
pub mod heartbeat;
pub mod ids;
pub mod layout;
pub mod logging;
pub mod maintenance;
pub mod patch;
pub mod pause;
pub mod queue;
pub mod secrets;
pub mod summary;
pub mod text;
pub mod time;
pub mod watchdog;

pub use config::Config;
pub use error::{Error, Result};
pub use hash::md5_hex;
pub use layout::Layout;

/// Arm the failpoints named in `FAILPOINTS` (`name=return;…`), once per
/// process, in builds with the `failpoints` feature (test builds); a no-op
/// otherwise. Every crate's failpoints share one registry.
pub fn init_failpoints() {
    #[cfg(feature = "failpoints")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| std::mem::forget(fail::FailScenario::setup()));
    }
}

/// A fault point: a crash window that can also fail. In builds with the
/// `failpoints` feature (test builds), `FAILPOINTS=<name>=return` aborts the
/// process here, as a `kill -9` or a power cut would stop it, and
/// `<name>=return(error)` makes the step fail instead with an injected I/O
/// error naming the failpoint, as a disk error would. `return(crash:TEXT)`
/// and `return(error:TEXT)` fire only where the path involved contains TEXT
/// (so that one write among many can be aimed at); `error-once:TEXT` fires
/// the first time only (a count such as `1*return(...)` would be spent by
/// the first write, aimed or not). Without the feature this is `Ok(())`.
pub fn fault_point(name: &str, path: Option<&std::path::Path>) -> Result<()> {
    #[cfg(feature = "failpoints")]
    if let Some(arg) = fail::eval(name, |arg| arg.unwrap_or_default()) {
        let (what, only) = match arg.split_once(':') {
            Some((w, f)) => (w, Some(f)),
            None => (arg.as_str(), None),
        };
        let aimed = only.is_none_or(|f| path.is_some_and(|p| p.to_string_lossy().contains(f)));
        if aimed {
            let error = match what {
                "error" => true,
                "error-once" => {
                    static FIRED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
                    let mut fired = FIRED.lock().unwrap_or_else(|e| e.into_inner());
                    if fired.iter().any(|n| n == name) {
                        return Ok(());
                    }
                    fired.push(name.to_string());
                    true
                }
                _ => false,
            };
            if error {
                return Err(Error::io(
                    "injected fault at",
                    path.unwrap_or(std::path::Path::new(name)),
                    std::io::Error::other(format!("injected I/O error (failpoint {name})")),
                ));
            }
            std::process::abort();
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = (name, path);
    Ok(())
}

/// The version every binary and summary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// This machine's host name, for claim records and summaries.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
