//! ghost-core: what every ghostbridge process shares. It owns the disk (`fs`),
//! the data-root layout, configuration, the patch model, the queue, heartbeats,
//! summaries and logging.

pub mod hash;
pub mod patch;

pub use hash::md5_hex;
