//! Patches: the internal model, parsing of native v1 and legacy shapes, and the
//! in-memory staging of operations against a view of the tree.

mod model;
pub mod parse;
pub mod stage;

pub use model::*;
