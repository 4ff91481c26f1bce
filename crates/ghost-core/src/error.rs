//! The one error type of ghost-core. I/O errors always carry the path and what was
//! being done, so a message read in a log names the file without more context.

use std::io;
use std::path::PathBuf;

use crate::config::ConfigErrors;
use crate::patch::PatchError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{} is locked by another process{}", path.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("invalid patch: {0}")]
    Patch(#[from] PatchError),
    #[error("{what} {}: {reason}", path.display())]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// An operator action the rules do not allow, or a request missing what
    /// it needs (a reason): nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// An operator action lost the race to another mover (the executor, another
    /// operator): nothing was changed by it.
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

/// Attach a path and an operation name to an `io::Result`.
pub trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
