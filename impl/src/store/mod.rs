//! Versioned stores: optimistic concurrency (`update-if-current`), the orders service's atomic
//! reservation, and the transactional outbox.
//!
//! The invariant every backend keeps: a [`VersionedStore::save`] succeeds only if the stored
//! version still equals the version the record was read at, stores the record with version + 1,
//! and otherwise fails with [`StoreError::VersionConflict`] and changes nothing;
//! [`VersionedStore::replace_if_current`] (a replica's write) is conditional the same way and
//! stores the version the record carries (the event's). A write that
//! carries an event puts the record change and the event in the outbox in one atomic write, so
//! a crash can never keep one without the other.
//!
//! Each service owns one store; the two services never share one.
//!
//! # Layout
//!
//! - [`mem`]: [`MemStore`], the embedded default: sharded `Mutex<HashMap>` tables, checked
//!   with loom.
//! - `pg`: `PgStore` on PostgreSQL (left out of the loom build), a folder of one job per file:
//!   `connect` (options, the pool confined to one schema), `migrate`, `sql` (every statement's
//!   text), `tables` (record kind to table), `records` (reads and the one write path that puts
//!   a record change and its event in one statement), `order_book` (the reservation and
//!   cancellation transactions), `outbox` (the relay's reads, LISTEN/NOTIFY), `values`,
//!   `errors`.
//!
//! The records build the order book's events themselves ([`Order::created_event`],
//! [`Order::cancelled_event`]), so both backends stamp the same event for the same write.

use std::future::Future;

use crate::events::{Event, OrderCancelled, OrderCreated};
use crate::id::Id;
use crate::price::Price;
use crate::records::{Order, OrderStatus, Record, Reservation, Timestamp, UserId, Version};

pub mod mem;
// PostgreSQL needs the network, which the loom build leaves out (see Cargo.toml).
#[cfg(not(loom))]
pub mod pg;

pub use mem::MemStore;
#[cfg(not(loom))]
pub use pg::{PgStore, PgStoreOptions};

/// Why a store operation did not happen. Every error leaves the store unchanged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record's stored version moved since it was read.
    #[error(
        "version conflict on {kind} {id}: read at version {expected}, stored version is {found}"
    )]
    VersionConflict {
        /// The record kind.
        kind: &'static str,
        /// The record.
        id: Id,
        /// The version the record was read at.
        expected: Version,
        /// The version stored now.
        found: Version,
    },
    /// No record with this id.
    #[error("{kind} {id} not found")]
    NotFound {
        /// The record kind.
        kind: &'static str,
        /// The id looked for.
        id: Id,
    },
    /// A record with this id already exists.
    #[error("{kind} {id} already exists")]
    Duplicate {
        /// The record kind.
        kind: &'static str,
        /// The id inserted twice.
        id: Id,
    },
    /// The ticket already has an active order.
    #[error("ticket {ticket_id} is already reserved by order {order_id}")]
    TicketReserved {
        /// The ticket.
        ticket_id: Id,
        /// Its active order.
        order_id: Id,
    },
    /// The backend failed (connection lost, query error). The operation may or may not have
    /// happened only where the message says so; a failed transaction changes nothing.
    #[error("store backend error: {message}")]
    Backend {
        /// What failed, in words.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// Whether this is a version conflict (the store's own concurrency, never a reason to fail
    /// a delivery: re-read and decide again).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::VersionConflict { .. })
    }
}

/// Which records [`VersionedStore::list`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Every record.
    All,
    /// Tickets with no order holding them (`GET /api/tickets`).
    Unreserved,
    /// Records of one user (a ticket's owner, an order's buyer).
    OwnedBy(UserId),
}

/// A store of records of kind `R` with optimistic concurrency.
pub trait VersionedStore<R: Record>: Send + Sync {
    /// Stores a new record at the version it carries (0 for a primary, the event's version for
    /// a replica), together with `event` in the outbox. Fails with
    /// [`StoreError::Duplicate`] if the id exists.
    fn insert(
        &self,
        record: R,
        event: Option<Event>,
    ) -> impl Future<Output = Result<R, StoreError>> + Send;

    /// The record with this id.
    fn find_by_id(&self, id: Id) -> impl Future<Output = Result<Option<R>, StoreError>> + Send;

    /// The record with this id if it is exactly at `version - 1`: the one an event carrying
    /// `version` applies to.
    fn find_by_event(
        &self,
        id: Id,
        version: Version,
    ) -> impl Future<Output = Result<Option<R>, StoreError>> + Send {
        async move {
            let found = self.find_by_id(id).await?;
            Ok(found.filter(|record| version > 0 && record.version() == version - 1))
        }
    }

    /// Update-if-current: `record.version` is the version it was read at. Stores the record
    /// with version + 1 (and `event` in the outbox, in the same write) and returns the version
    /// stored, or fails with [`StoreError::VersionConflict`] / [`StoreError::NotFound`] and
    /// changes nothing.
    ///
    /// It answers the new version, not the record: every caller already holds the record it
    /// wrote, and a second copy of it is what a hot record's save would pay for (a copy of a
    /// record's shared strings is reference-count traffic other threads contend for).
    fn save(
        &self,
        record: R,
        event: Option<Event>,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// Update-if-current for a replica: stores `record` as it is, its version included (a
    /// replica stores the event's version, it does not count its own saves), if the stored
    /// version is still `read_version`. Returns the version stored, or fails with
    /// [`StoreError::VersionConflict`] / [`StoreError::NotFound`] and changes nothing.
    /// Primaries use [`VersionedStore::save`].
    fn replace_if_current(
        &self,
        record: R,
        read_version: Version,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// The records `listing` selects, in no particular order.
    fn list(&self, listing: Listing) -> impl Future<Output = Result<Vec<R>, StoreError>> + Send;
}

/// How [`OrderBook::reserve`] guards against a second active order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationCheck {
    /// Check and insert in one atomic write (the reference design).
    Atomic,
    /// Insert without checking: the caller checked [`OrderBook::active_order`] earlier, as the
    /// course did (`racy-reserve`). A backend whose schema forbids two active orders on one
    /// ticket (PostgreSQL's partial unique index) still refuses the second.
    Unchecked,
}

/// The orders service's reservations: orders, and the per-ticket count of reservation
/// changes that orders the tickets service's view of them.
pub trait OrderBook: VersionedStore<Order> {
    /// The active order on the ticket, if any (the course's `isReserved`).
    fn active_order(
        &self,
        ticket_id: Id,
    ) -> impl Future<Output = Result<Option<Order>, StoreError>> + Send;

    /// In one atomic write: unless `check` is atomic and the ticket has an active order
    /// ([`StoreError::TicketReserved`]), insert `order` (status `created`, version 0), count a
    /// reservation change on its ticket, and, when `outbox`, put `order:created` in the outbox.
    /// Returns the order and its event, stamped with the reservation number.
    fn reserve(
        &self,
        order: Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> impl Future<Output = Result<(Order, OrderCreated), StoreError>> + Send;

    /// In one atomic write: update-if-current `order` (read at `order.version`) to `cancelled`
    /// with version + 1, count a reservation change on its ticket, and, when `outbox`, put
    /// `order:cancelled` in the outbox. Returns the order and its event.
    fn cancel(
        &self,
        order: Order,
        outbox: bool,
    ) -> impl Future<Output = Result<(Order, OrderCancelled), StoreError>> + Send;

    /// How many reservation changes the ticket has had (0 if none).
    fn reservation_count(
        &self,
        ticket_id: Id,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send;

    /// Up to `limit` orders still `created` whose `expiresAt` is at or before `now`, soonest
    /// due first: what the orders service's expiry cancels. The default reads every order (a
    /// backend with an index answers it directly).
    fn due_orders(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Order>, StoreError>> + Send {
        async move {
            let mut due: Vec<Order> = VersionedStore::<Order>::list(self, Listing::All)
                .await?
                .into_iter()
                .filter(|order| order.status == OrderStatus::Created && order.expires_at <= now)
                .collect();
            due.sort_by_key(|order| (order.expires_at, order.id));
            due.truncate(limit);
            Ok(due)
        }
    }
}

/// An event written to the outbox with its record change, waiting to be published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox: entries are relayed in this order.
    pub seq: u64,
    /// The event; its [`Event::publish_id`] is the publish id, so a relay that publishes an
    /// entry twice (a crash before marking it) is deduplicated by the broker.
    pub event: Event,
}

/// An outbox entry that could not be published (it does not decode, or cannot be encoded),
/// set aside with its error so the relay goes on with the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// Its position in the outbox.
    pub seq: u64,
    /// The subject it was written for.
    pub subject: String,
    /// Its payload as stored (the event's encoding, or what stood in its place).
    pub payload: String,
    /// Why it could not be published.
    pub error: String,
}

/// Every quarantined outbox entry passes here once, when it is set aside: the one place to
/// count them (a metrics counter hooks in here) and to say so in the log.
pub fn note_quarantined(seq: u64, subject: &str, error: &str) {
    crate::metrics::outbox_quarantined(subject);
    tracing::error!(
        outbox_seq = seq,
        subject,
        error,
        "outbox entry quarantined: it cannot be published; the relay goes on with the next"
    );
}

/// The transactional outbox, read by the relay.
pub trait Outbox: Send + Sync {
    /// Up to `limit` unpublished entries, oldest first.
    fn pending(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send;

    /// Removes published entries.
    fn mark_published(&self, seqs: &[u64]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves entry `seq` out of the outbox into quarantine, with `error` (calling
    /// [`note_quarantined`]); nothing if there is no such entry. A backend whose
    /// [`Outbox::pending`] meets an entry that does not decode quarantines it there and skips it.
    fn quarantine(
        &self,
        seq: u64,
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The quarantined entries, oldest first.
    fn quarantined(&self) -> impl Future<Output = Result<Vec<Quarantined>, StoreError>> + Send;

    /// Resolves when an entry may have been written since the last call (or after a backend's
    /// polling interval). The relay waits on it instead of spinning.
    fn outbox_written(&self) -> impl Future<Output = ()> + Send;
}
