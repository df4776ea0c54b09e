//! `PgStore`: the versioned stores on PostgreSQL, for services whose records must outlive the
//! process. The contract is the traits' (the same as [`super::MemStore`]'s); how it is kept:
//!
//! - A save is one statement, `UPDATE ... SET ..., version = version + 1 WHERE id = $1 AND
//!   version = $2 RETURNING version`. Only when it matches no row does the store read the
//!   stored version to say why: none is [`super::StoreError::NotFound`], another version is
//!   [`super::StoreError::VersionConflict`] (and the read version itself, a lock holder that rolled
//!   back, means the save runs again).
//! - A record change and its outbox event are written by one statement (a data-modifying
//!   `WITH`), so they commit together or not at all; the order book's reservation and
//!   cancellation are one call each of a server-side function that writes both.
//! - The orders schema allows one active (not cancelled) order per ticket: a partial unique
//!   index, whose violation is [`super::StoreError::TicketReserved`]. A reservation or a cancellation
//!   first locks and increments the ticket's row in `ticket_reservations`, in the same
//!   transaction as the order write (the same function call), so one ticket's reservation
//!   changes are serialised and numbered 1, 2, 3, ... in commit order.
//!
//! Each store lives in its own PostgreSQL schema, selected by `search_path` on every pooled
//! connection, so the two services can share one database without colliding. On start the
//! store applies the migrations of `impl/migrations/` (embedded in the binary). Statements are
//! prepared once per pooled connection and cached. Every failure of the server is a
//! [`super::StoreError::Backend`] naming the server (password hidden), the schema and the operation.
//!
//! The invariant: a save stores version + 1 only at the version the record was read at, and
//! otherwise changes nothing; a record change and its event are one write.
//!
//! # Layout
//!
//! - `connect`: [`PgStoreOptions`], the connection pool confined to the schema, running one
//!   statement on a pooled connection.
//! - `migrate`: the embedded migrations, applied once per schema.
//! - `sql`: the text of every statement, as named constants.
//! - `tables`: how each record kind maps to its table (statements, parameters, rows).
//! - `records`: find, list, and the one write path every insert and save goes through.
//! - `order_book`: the reservation and cancellation calls, the reservation count.
//! - `outbox`: the relay's reads and deletes, events as outbox rows, and the LISTEN/NOTIFY
//!   wake-up.
//! - `values`: statement parameters, ids as bytes, checked integer conversions.
//! - `errors`: what failed, named, and how a write that raced is settled.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::Notify;

mod connect;
mod errors;
mod migrate;
mod order_book;
mod outbox;
mod records;
mod sql;
mod tables;
mod values;

pub use connect::{PgStoreOptions, redact_password};
#[cfg(feature = "testkit")]
pub(crate) use errors::error_chain;

/// The PostgreSQL store. Cloning it shares the pool (members of a queue group share their
/// service's store).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The connection settings, for the listener's own connection.
    config: tokio_postgres::Config,
    /// The server (password hidden) and schema, for messages.
    target: String,
    schema: String,
    outbox_poll: Duration,
    /// Woken by the listener on every outbox notification; a wake-up with nobody waiting is
    /// kept as a permit, so a write between two `outbox_written` calls is not missed.
    outbox_signal: Arc<Notify>,
    /// The listener task, started by the first `outbox_written`, stopped with the store.
    listener: OnceLock<outbox::AbortOnDrop>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}
