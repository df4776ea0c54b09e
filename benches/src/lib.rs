//! Benchmarks of the ticketing system against raw yardsticks (see `docs/PERFORMANCE.md`).
//!
//! # Layout
//!
//! - [`workload`]: the records, keys and events every benchmark and its yardstick share.
//! - [`two_phase`]: the model checker's yardstick, stateright's two-phase-commit example.
//! - [`table`]: criterion's results kept per run, and the table of figures, yardsticks and
//!   ratios (the `perf-table` binary).

pub mod table;
pub mod two_phase;
pub mod workload;
