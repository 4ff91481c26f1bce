//! The command-line flags every binary shares (docs/operations.md; the
//! configuration they load is in docs/formats.md, "Configuration") and the
//! exit codes they map to.

use std::path::PathBuf;

use clap::Args;

use crate::config::{Config, ConfigErrors};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The work failed.
pub const EXIT_FAILURE: u8 = 1;
/// Bad usage or bad configuration.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Data root
    #[arg(
        long,
        env = "GHOST_ROOT",
        default_value = "./ghost-data",
        global = true
    )]
    pub root: PathBuf,
    /// Configuration file [default: <root>/ghost.toml, else embedded defaults]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// More output (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output (repeat for less)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

impl CommonArgs {
    pub fn verbosity(&self) -> i8 {
        self.verbose.min(4) as i8 - self.quiet.min(4) as i8
    }

    /// Load the configuration these flags point at.
    pub fn load_config(&self) -> Result<Config, ConfigErrors> {
        Config::load(&self.root, self.config.as_deref())
    }
}
