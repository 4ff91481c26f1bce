//! Patches: the internal model, parsing of native v1 and legacy shapes, what a
//! target allows ([`policy`]), bounds on the work ([`limits`]), and the
//! in-memory staging of operations against a view of the tree.

pub mod agent;
pub mod limits;
mod model;
mod ops;
pub mod parse;
pub mod policy;
pub mod stage;

pub use limits::validate_limits;
pub use model::*;
pub use ops::OpKind;
