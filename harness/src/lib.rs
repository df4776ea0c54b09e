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
//! - [`backend`]: where a world keeps its services' records (memory, or a fresh PostgreSQL
//!   database per run), behind one `Store` that runs each operation to completion.
//! - [`gated`]: the gated store, publisher and message handle tasks reach the world through,
//!   and the journal of the writes they let through.
//! - [`lock`]: locking shared bookkeeping, poisoned or not.
//! - [`terms`]: the model's terms for the implementation's values and records (prices, titles,
//!   records by index, events), and [`terms::Refusal`].
//! - `answers`: a client request's answer held to the record it stored (the model's state
//!   has no place for answers).
//! - [`world`]: the implementation in process (the two services' stores, one broker core, the
//!   services' domain operations and their `Listener`s) and how each model action is taken on
//!   it; its ghost variables from the journal of gated writes.
//! - [`abstraction`]: the abstraction function, from the implementation's state to a model
//!   state.
//! - [`report`]: divergence reports (the differing fields side by side, and the path).
//! - [`replay`]: model and implementation stepped together; replaying a JSON trace.
//! - [`exhaustive`]: `harness exhaustive`: every transition of a bounded model run (reduced
//!   as the checker reduces it), replayed by worker threads that branch at every state on copies of the world, with
//!   stutter probes at every state.
//! - [`fuzz`]: `harness fuzz`: proptest-generated action sequences, shrunk on divergence.
//! - [`counterexamples`]: `harness counterexamples`: every variant's counterexample violates
//!   its property on the implementation, and the same scenario holds on the reference.
//! - [`soak`]: `harness soak`: a randomized concurrent workload against real NATS JetStream and
//!   PostgreSQL with faults injected, checked at the end; the system is `ticketing serve`'s
//!   own assembly (HTTP in front of the services' supervisor) with the soak's hooks on it.
//!
//! The modules form a DAG in the order listed: each uses only modules listed before it (and
//! `soak` none of them; its own modules keep the same rule, see its layout).

pub mod abstraction;
mod answers;
pub mod backend;
pub mod counterexamples;
pub mod exhaustive;
pub mod fuzz;
pub mod gate;
pub mod gated;
pub mod lock;
pub mod replay;
pub mod report;
pub mod soak;
pub mod terms;
pub mod world;
