//! # ticketing
//!
//! The reference implementation of the event-driven ticketing system described in the
//! project's `SPEC.md`: two services (tickets and orders) that keep each other in sync through
//! versioned events over a broker with queue groups, manual acks and redelivery, and that use
//! optimistic concurrency (update-if-current) against out-of-order events.
//!
//! # Layout
//!
//! - [`id`], [`price`], [`values`]: the small value types records and events are made of
//!   (object ids, exact prices in cents, versions, reservation numbers, titles, user ids,
//!   timestamps, order statuses).
//! - [`events`]: the event vocabulary: the four subjects, their JSON payloads, and decoding that
//!   turns any malformed payload into a typed error.
//! - [`records`]: the stored records: the tickets service's [`records::Ticket`], the orders
//!   service's [`records::TicketReplica`] and [`records::Order`].
//! - [`variant`]: which design elements of SPEC.md section 2 are switched on.
//! - [`store`]: the versioned store traits (update-if-current, the order book's atomic
//!   reservation, the transactional outbox) and their backends.
//! - [`bus`]: the event bus traits (publish, queue-group subscriptions, ack/nak/term,
//!   dead letters) and their backends.
//! - [`metrics`]: what the process counts (HTTP requests, deliveries and their settling,
//!   version conflicts, dead letters, outbox depth and lag, expired orders), one function per
//!   thing counted, and the Prometheus recorder behind `GET /metrics`.
//! - [`services`]: the tickets and orders services (HTTP operations, listeners behind one
//!   `Listener` seam, outbox relays, sessions), the member runtime that hands deliveries to
//!   the listeners, the supervisor of members and relays, and the assembly behind `ticketing
//!   serve` (which the soak runs too).
//! - `sync` (internal): `std` or `loom` synchronisation primitives, the one loom switch, so
//!   the memory store can be checked exhaustively under `--cfg loom`.
//! - `testkit` (feature `testkit`, for tests, benchmarks and the harness): how tests reach
//!   real servers, and skip or fail when they cannot.
//!
//! The public face is what a user of the library builds on: the value types, events and
//! records, the store and bus traits with their backends (the embedded broker's state machine
//! included, which the conformance harness steps), and the services' domain operations,
//! listeners, supervisor and assembly. Everything else is `pub(crate)`.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bus;
pub mod events;
pub mod id;
pub mod metrics;
pub mod price;
pub mod records;
// Uses axum and the network clients, which the loom build leaves out (see Cargo.toml).
#[cfg(not(loom))]
pub mod services;
pub mod store;
pub(crate) mod sync;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod values;
pub mod variant;
