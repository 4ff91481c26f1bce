//! ghost-bridge (being written).
fn main() {}
