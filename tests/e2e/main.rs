//! End-to-end tests: the real binaries on a temporary root. One test binary, one
//! [`TestEnv`] fixture; every wait is on a condition, never a bare sleep, and
//! timings are shrunk through the configuration.

// Tests: fixtures are set up and damaged directly, not durably.
#![allow(clippy::disallowed_methods)]

mod admission;
mod agent_formats;
mod batch;
mod bridge;
mod bridge_attack;
mod crash;
mod dashboard;
mod executor;
mod faults;
mod ghostctl;
mod harness;
mod idle;
mod logging;
mod monitor;
mod powercut;
mod reliability;
mod retention;
mod security;
mod torture;
mod watchdog;
