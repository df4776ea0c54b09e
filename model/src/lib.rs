//! # The ticketing system, as a stateright model
//!
//! This crate is the specification. It models the system of `SPEC.md`: a tickets service and
//! an orders service, each a queue group of members sharing one versioned store; clients
//! issuing the HTTP operations from a bounded budget; a broker with per-group pending,
//! in-flight, acknowledged and dead-lettered messages; crashes and spurious ack-wait expiries
//! drawn from budgets. The model checker explores every interleaving and checks the eight
//! properties of `SPEC.md` section 3 on every reachable state.
//!
//! It deliberately does not depend on the `ticketing` crate: a specification must not inherit
//! the implementation's bugs. The `harness` crate depends on both and maps one onto the other.
//!
//! # Reading the model
//!
//! Each module depends only on those listed before it (no cycles), so the list reads in
//! order:
//!
//! - [`state`]: the state: stores, outboxes, broker, members, budgets, and the ghost
//!   variables only properties read. Small fixed arrays of `u8`, so a state is cheap to copy
//!   and hash.
//! - [`config`]: the bounds (tickets, members, budgets) and the [`Variant`] checked.
//! - [`action`]: what can happen in one step ([`Action`]), and who takes it (client,
//!   adversary, system).
//! - [`words`]: events, actions, steps and members in words, for traces, the explorer and
//!   the harness's reports.
//! - [`system`]: [`TicketingModel`] and its transitions, one function per action kind,
//!   grouped by who acts (`clients`, `broker`, `members`, `adversary`), the listener logic
//!   they share, the guards (`enabled`) that list the enabled actions, and the partial-order
//!   reduction (`ample`): where one action may be explored alone. One step is one
//!   store or broker operation of the implementation (a listener's read and its save are
//!   separate steps), except where merging is sound and documented. Quiescence (no system
//!   action enabled) is where liveness is judged.
//! - [`symmetry`]: the representative of a state under permutations of interchangeable
//!   members and tickets.
//! - [`rank`]: a ranking function that strictly decreases on every step: the state graph is
//!   acyclic, so every maximal path ends in a quiescent state.
//! - [`properties`]: the eight properties, and which ones each variant must violate.
//! - [`trace`]: counterexamples as readable numbered traces and as JSON for the harness.
//! - `svg`: a drawing of a state for stateright's explorer, and what drawings share
//!   (escaping).
//! - [`chart`]: traces as message sequence charts (lanes for the clients, every member and
//!   the broker; arrows for publish, deliver, ack, nak), for `check --chart` and the
//!   explorer.
//! - [`machine`]: [`TicketingModel`] as stateright's `Model`: `actions` lists what is
//!   enabled, `next_state` is one `match` over the action, calling its transition.
//! - [`progress`]: what a running check shows (states, states/s, depth, memory) and the
//!   process's peak memory.
//! - [`run`]: running the checker (strategies, threads, reductions, progress, verdicts).

pub mod action;
pub mod chart;
pub mod config;
pub mod machine;
pub mod progress;
pub mod properties;
pub mod rank;
pub mod run;
pub mod state;
mod svg;
pub mod symmetry;
pub mod system;
pub mod trace;
pub mod words;

pub use action::Action;
pub use config::{Config, Variant};
pub use state::State;
pub use system::TicketingModel;
