//! # harness
//!
//! Holds the implementation (`ticketing`) to the model (`model`): replays the model's traces
//! against the implementation, step by step, and compares states after every step; and soaks
//! the real backends (NATS JetStream, PostgreSQL) under faults, checking SPEC.md's properties
//! on what happened.
//!
//! # Layout
//!
//! - [`gate`]: deterministic stepping: every task waits at its own gate before each store or
//!   broker operation; the harness polls it by hand and lets one operation through at a time.
//! - [`gated`]: the gated store, publisher and message handle tasks reach the world through,
//!   and the journal of the writes they let through.
//! - [`world`]: the implementation in process (two memory stores, one broker core, the
//!   services' domain operations and listeners) and how each model action is taken on it.
//! - [`abstraction`]: the abstraction function, from the implementation's state to a model
//!   state.
//! - [`report`]: divergence reports (the differing fields side by side, and the path).
//! - [`replay`]: model and implementation stepped together; replaying a JSON trace.
//! - [`exhaustive`]: `harness exhaustive`: walks taking every transition of a bounded model
//!   run, each replayed on a fresh implementation and ended with stutter probes.
//! - [`fuzz`]: `harness fuzz`: proptest-generated action sequences, shrunk on divergence.
//! - [`counterexamples`]: `harness counterexamples`: every variant's counterexample violates
//!   its property on the implementation, and the same scenario holds on the reference.
//! - [`soak`]: `harness soak`: a randomized concurrent workload against real NATS JetStream and
//!   PostgreSQL with faults injected, checked at the end.

pub mod abstraction;
pub mod counterexamples;
pub mod exhaustive;
pub mod fuzz;
pub mod gate;
pub mod gated;
pub mod replay;
pub mod report;
pub mod soak;
pub mod terms;
pub mod world;
