//! `MemStore`: the embedded, in-memory versioned store, the default backend.
//!
//! Each table is split into shards, each a `Mutex<HashMap>`; an operation locks only the shard
//! of the record it touches, so there is no global lock on the hot path, and nothing
//! asynchronous happens while a shard is held (the async methods are ready futures). The
//! invariants, checked exhaustively with loom (`tests/loom.rs`):
//! - a save compares the stored version and writes version + 1 under the shard lock, so of
//!   two writers that read the same version exactly one wins and no update is lost;
//! - a reader copies a record under the same lock, so it sees a record whole, old or new;
//! - every order write first locks its ticket's reservation entry, so "insert unless the
//!   ticket has an active order" is atomic and the active-order index matches the orders.
//!
//! Lock order, always: reservation shard, then order shard, then the outbox.

use std::collections::{HashMap, VecDeque};

use crate::events::{Event, OrderCancelled, OrderCreated};
use crate::id::{Id, IdMap};
use crate::price::Price;
use crate::records::{Order, OrderStatus, Record, Reservation, Ticket, TicketReplica, Version};
use crate::store::{
    Listing, OrderBook, Outbox, OutboxEntry, Quarantined, ReservationCheck, StoreError,
    VersionedStore, note_quarantined,
};
use crate::sync::{Arc, Mutex};

/// Shards per table: enough that two threads rarely meet on one, few enough to scan quickly.
/// Under loom a table has two, which still lets two ids land apart or together. A power of
/// two, as every shard count is (a shard is picked by masking).
const SHARDS: usize = if cfg!(loom) { 2 } else { 64 };

type Shard<V> = Mutex<IdMap<V>>;

/// One table: records by id, sharded by id.
struct Table<V> {
    shards: Box<[Shard<V>]>,
}

impl<V> Table<V> {
    /// An empty table of `shards` shards (a power of two).
    fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
        }
    }

    fn shard(&self, id: &Id) -> &Shard<V> {
        // Bits well away from the ones the map itself uses (low bits and the top seven).
        &self.shards[(id.mix() >> 40) as usize & (self.shards.len() - 1)]
    }

    /// An independent copy of the table's rows.
    #[cfg(all(feature = "testkit", not(loom)))]
    fn copy(&self) -> Self
    where
        V: Clone,
    {
        Self {
            shards: self
                .shards
                .iter()
                .map(|shard| Mutex::new(shard.lock().clone()))
                .collect(),
        }
    }

    fn collect(&self, mut keep: impl FnMut(&V) -> bool) -> Vec<V>
    where
        V: Clone,
    {
        let mut found = Vec::new();
        for shard in self.shards.iter() {
            found.extend(shard.lock().values().filter(|v| keep(v)).cloned());
        }
        found
    }
}

impl<R: Record> Table<R> {
    fn find(&self, id: Id) -> Option<R> {
        self.shard(&id).lock().get(&id).cloned()
    }

    /// Inserts under the shard lock; `commit` runs under the same lock once the insert is
    /// certain (it writes the outbox).
    fn insert(&self, record: R, commit: impl FnOnce()) -> Result<R, StoreError> {
        let id = record.id();
        let mut shard = self.shard(&id).lock();
        if shard.contains_key(&id) {
            return Err(StoreError::Duplicate { kind: R::KIND, id });
        }
        commit();
        shard.insert(id, record.clone());
        Ok(record)
    }

    /// Update-if-current under the shard lock; `commit` runs under the same lock once the
    /// write is certain. Returns the version stored.
    ///
    /// The record moves into the table: no copy is made, and the record it replaces is
    /// dropped after the lock is released. A record's clone and drop touch its shared
    /// strings' reference counts, and on a hot record those are what two threads would
    /// otherwise contend for while holding the shard.
    fn save(&self, mut record: R, commit: impl FnOnce()) -> Result<Version, StoreError> {
        let read_at = record.version();
        record.set_version(read_at + 1);
        self.replace(record, read_at, commit)
    }

    /// Stores `record` as it is (its version included) if the stored version is `read_at`,
    /// under the shard lock; `commit` runs under the same lock once the write is certain.
    /// Returns the version stored.
    fn replace(
        &self,
        record: R,
        read_at: Version,
        commit: impl FnOnce(),
    ) -> Result<Version, StoreError> {
        let id = record.id();
        let stored_at = record.version();
        let replaced = {
            let mut shard = self.shard(&id).lock();
            let stored = shard
                .get_mut(&id)
                .ok_or(StoreError::NotFound { kind: R::KIND, id })?;
            if stored.version() != read_at {
                return Err(StoreError::VersionConflict {
                    kind: R::KIND,
                    id,
                    expected: read_at,
                    found: stored.version(),
                });
            }
            commit();
            std::mem::replace(stored, record)
        };
        drop(replaced);
        Ok(stored_at)
    }
}

/// A ticket's reservation state as the orders service keeps it.
#[derive(Clone, Debug, Default)]
struct TicketReservations {
    /// The orders holding the ticket, in the order they became active. At most one, except
    /// where [`ReservationCheck::Unchecked`] let a race through (`racy-reserve`): then the
    /// others are still active and still found once the first is cancelled, as the course's
    /// `isReserved` query would find them. Empty, it does not allocate.
    active_orders: Vec<Id>,
    /// Reservation changes so far.
    count: Reservation,
}

impl TicketReservations {
    /// The order holding the ticket: the first of its active orders.
    fn active_order(&self) -> Option<Id> {
        self.active_orders.first().copied()
    }

    /// Keeps the index in step with order `order_id` as just written, active or not.
    fn track(&mut self, order_id: Id, active: bool) {
        if active {
            if !self.active_orders.contains(&order_id) {
                self.active_orders.push(order_id);
            }
        } else {
            self.active_orders.retain(|held| *held != order_id);
        }
    }
}

#[derive(Clone, Default)]
struct OutboxQueue {
    next_seq: u64,
    entries: VecDeque<OutboxEntry>,
    quarantined: Vec<Quarantined>,
}

struct Tables {
    tickets: Table<Ticket>,
    replicas: Table<TicketReplica>,
    orders: Table<Order>,
    reservations: Table<TicketReservations>,
    outbox: Mutex<OutboxQueue>,
    #[cfg(not(loom))]
    outbox_signal: tokio::sync::Notify,
}

/// The in-memory store. Cloning it shares the same tables (members of a queue group share
/// their service's store, as the course's replicas shared one database).
#[derive(Clone)]
pub struct MemStore {
    tables: Arc<Tables>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").finish_non_exhaustive()
    }
}

impl MemStore {
    /// An independent copy of every table, the outbox included, as they stand now (the
    /// harness snapshots a world this way; a clone of a `MemStore` shares its tables).
    #[cfg(all(feature = "testkit", not(loom)))]
    pub fn copy(&self) -> Self {
        let tables = &self.tables;
        Self {
            tables: Arc::new(Tables {
                tickets: tables.tickets.copy(),
                replicas: tables.replicas.copy(),
                orders: tables.orders.copy(),
                reservations: tables.reservations.copy(),
                outbox: Mutex::new(tables.outbox.lock().clone()),
                outbox_signal: tokio::sync::Notify::new(),
            }),
        }
    }

    /// An empty store.
    pub fn new() -> Self {
        Self::with_shards(SHARDS)
    }

    /// An empty store of one shard per table: for a single-threaded harness that copies
    /// whole stores, where each shard is a lock and a map to copy and none is ever contended.
    #[cfg(all(feature = "testkit", not(loom)))]
    pub fn unsharded() -> Self {
        Self::with_shards(1)
    }

    fn with_shards(shards: usize) -> Self {
        Self {
            tables: Arc::new(Tables {
                tickets: Table::new(shards),
                replicas: Table::new(shards),
                orders: Table::new(shards),
                reservations: Table::new(shards),
                outbox: Mutex::new(OutboxQueue::default()),
                #[cfg(not(loom))]
                outbox_signal: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Appends `event` to the outbox. Called under the lock of the record it goes with.
    fn push_outbox(&self, event: Option<Event>) {
        let Some(event) = event else { return };
        {
            let mut outbox = self.tables.outbox.lock();
            let seq = outbox.next_seq;
            outbox.next_seq += 1;
            outbox.entries.push_back(OutboxEntry { seq, event });
        }
        #[cfg(not(loom))]
        self.tables.outbox_signal.notify_one();
    }

    /// Synchronous core of `insert`, shared by the trait impls.
    fn insert_in<R: Record>(
        &self,
        table: &Table<R>,
        record: R,
        event: Option<Event>,
    ) -> Result<R, StoreError> {
        table.insert(record, || self.push_outbox(event))
    }

    fn save_in<R: Record>(
        &self,
        table: &Table<R>,
        record: R,
        event: Option<Event>,
    ) -> Result<Version, StoreError> {
        table.save(record, || self.push_outbox(event))
    }

    /// Synchronous `reserve` (see [`OrderBook::reserve`]).
    pub fn reserve_now(
        &self,
        order: Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), StoreError> {
        let tables = &self.tables;
        let mut reservations = tables.reservations.shard(&order.ticket_id).lock();
        let entry = reservations.entry(order.ticket_id).or_default();
        if let (ReservationCheck::Atomic, Some(order_id)) = (check, entry.active_order()) {
            return Err(StoreError::TicketReserved {
                ticket_id: order.ticket_id,
                order_id,
            });
        }
        let reservation = entry.count + 1;
        let event = order.created_event(price, reservation);
        let outboxed = outbox.then(|| Event::OrderCreated(event.clone()));
        let order = tables.orders.insert(order, || self.push_outbox(outboxed))?;
        entry.count = reservation;
        entry.track(order.id, order.status.is_active());
        Ok((order, event))
    }

    /// Synchronous `cancel` (see [`OrderBook::cancel`]).
    pub fn cancel_now(
        &self,
        order: Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), StoreError> {
        let tables = &self.tables;
        let mut reservations = tables.reservations.shard(&order.ticket_id).lock();
        let entry = reservations.entry(order.ticket_id).or_default();
        let reservation = entry.count + 1;
        let event = order.cancelled_event(reservation);
        let outboxed = outbox.then(|| Event::OrderCancelled(event.clone()));
        let cancelled = Order {
            status: OrderStatus::Cancelled,
            ..order
        };
        let version = tables
            .orders
            .save(cancelled.clone(), || self.push_outbox(outboxed))?;
        entry.count = reservation;
        entry.track(cancelled.id, false);
        Ok((
            Order {
                version,
                ..cancelled
            },
            event,
        ))
    }

    /// A generic order write (insert or save) that keeps the active-order index in step.
    fn write_order<T>(
        &self,
        order: Order,
        event: Option<Event>,
        write: impl FnOnce(&Table<Order>, Order, Option<Event>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tables = &self.tables;
        let (order_id, active) = (order.id, order.status.is_active());
        let mut reservations = tables.reservations.shard(&order.ticket_id).lock();
        let entry = reservations.entry(order.ticket_id).or_default();
        let written = write(&tables.orders, order, event)?;
        entry.track(order_id, active);
        Ok(written)
    }

    /// Entries waiting in the outbox, oldest first (for inspection and the relay).
    pub fn outbox_snapshot(&self) -> Vec<OutboxEntry> {
        self.tables.outbox.lock().entries.iter().cloned().collect()
    }
}

macro_rules! plain_versioned_store {
    ($record:ty, $table:ident, $listing:expr) => {
        impl VersionedStore<$record> for MemStore {
            async fn insert(
                &self,
                record: $record,
                event: Option<Event>,
            ) -> Result<$record, StoreError> {
                self.insert_in(&self.tables.$table, record, event)
            }

            async fn find_by_id(&self, id: Id) -> Result<Option<$record>, StoreError> {
                Ok(self.tables.$table.find(id))
            }

            async fn save(
                &self,
                record: $record,
                event: Option<Event>,
            ) -> Result<Version, StoreError> {
                self.save_in(&self.tables.$table, record, event)
            }

            async fn replace_if_current(
                &self,
                record: $record,
                read_version: Version,
            ) -> Result<Version, StoreError> {
                self.tables.$table.replace(record, read_version, || {})
            }

            async fn list(&self, listing: Listing) -> Result<Vec<$record>, StoreError> {
                let keep: fn(&Listing, &$record) -> bool = $listing;
                Ok(self.tables.$table.collect(|record| keep(&listing, record)))
            }
        }
    };
}

plain_versioned_store!(Ticket, tickets, |listing, ticket| match listing {
    Listing::All => true,
    Listing::Unreserved => ticket.order_id.is_none(),
    Listing::OwnedBy(user) => ticket.user_id == *user,
});
plain_versioned_store!(TicketReplica, replicas, |listing, _| matches!(
    listing,
    Listing::All | Listing::Unreserved
));

impl VersionedStore<Order> for MemStore {
    async fn insert(&self, order: Order, event: Option<Event>) -> Result<Order, StoreError> {
        self.write_order(order, event, |table, order, event| {
            self.insert_in(table, order, event)
        })
    }

    async fn find_by_id(&self, id: Id) -> Result<Option<Order>, StoreError> {
        Ok(self.tables.orders.find(id))
    }

    async fn save(&self, order: Order, event: Option<Event>) -> Result<Version, StoreError> {
        self.write_order(order, event, |table, order, event| {
            self.save_in(table, order, event)
        })
    }

    async fn replace_if_current(
        &self,
        order: Order,
        read_version: Version,
    ) -> Result<Version, StoreError> {
        self.write_order(order, None, |table, order, _| {
            table.replace(order, read_version, || {})
        })
    }

    async fn list(&self, listing: Listing) -> Result<Vec<Order>, StoreError> {
        Ok(self.tables.orders.collect(|order| match &listing {
            Listing::All | Listing::Unreserved => true,
            Listing::OwnedBy(user) => order.user_id == *user,
        }))
    }
}

impl OrderBook for MemStore {
    async fn active_order(&self, ticket_id: Id) -> Result<Option<Order>, StoreError> {
        Ok(self.active_order_now(ticket_id))
    }

    async fn reserve(
        &self,
        order: Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), StoreError> {
        self.reserve_now(order, price, check, outbox)
    }

    async fn cancel(
        &self,
        order: Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), StoreError> {
        self.cancel_now(order, outbox)
    }

    async fn reservation_count(&self, ticket_id: Id) -> Result<Reservation, StoreError> {
        Ok(self.reservation_count_now(ticket_id))
    }
}

impl Outbox for MemStore {
    async fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let outbox = self.tables.outbox.lock();
        Ok(outbox.entries.iter().take(limit).cloned().collect())
    }

    async fn mark_published(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut outbox = self.tables.outbox.lock();
        outbox.entries.retain(|entry| !seqs.contains(&entry.seq));
        Ok(())
    }

    async fn quarantine(&self, seq: u64, error: &str) -> Result<(), StoreError> {
        let mut outbox = self.tables.outbox.lock();
        let Some(at) = outbox.entries.iter().position(|entry| entry.seq == seq) else {
            return Ok(());
        };
        let Some(entry) = outbox.entries.remove(at) else {
            return Ok(());
        };
        let subject = entry.event.subject().as_str();
        note_quarantined(seq, subject, error);
        let payload = match entry.event.encode() {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => format!("{:?}", entry.event),
        };
        outbox.quarantined.push(Quarantined {
            seq,
            subject: subject.to_owned(),
            payload,
            error: error.to_owned(),
        });
        Ok(())
    }

    async fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        Ok(self.tables.outbox.lock().quarantined.clone())
    }

    async fn outbox_written(&self) {
        #[cfg(not(loom))]
        self.tables.outbox_signal.notified().await;
    }
}

/// Synchronous access for code that is not async (loom tests, benchmarks, the harness).
impl MemStore {
    /// See [`VersionedStore::find_by_id`].
    pub fn find_now<R: MemRecord>(&self, id: Id) -> Option<R> {
        R::table(self).find(id)
    }

    /// See [`VersionedStore::save`] (without an outbox event): the version stored.
    pub fn save_now<R: MemRecord>(&self, record: R) -> Result<Version, StoreError> {
        R::table(self).save(record, || ())
    }

    /// See [`VersionedStore::insert`] (without an outbox event).
    pub fn insert_now<R: MemRecord>(&self, record: R) -> Result<R, StoreError> {
        R::table(self).insert(record, || ())
    }

    /// The stored version of a record, if it exists.
    pub fn version_of<R: MemRecord>(&self, id: Id) -> Option<Version> {
        self.find_now::<R>(id).map(|record| record.version())
    }

    /// See [`VersionedStore::find_by_id`] for orders.
    pub fn find_order_now(&self, id: Id) -> Option<Order> {
        self.tables.orders.find(id)
    }

    /// See [`OrderBook::active_order`].
    pub fn active_order_now(&self, ticket_id: Id) -> Option<Order> {
        // The order is read under the reservation lock that every order write holds, so a
        // cancel cannot land between reading the index and reading the order.
        let reservations = self.tables.reservations.shard(&ticket_id).lock();
        let active = reservations
            .get(&ticket_id)
            .and_then(TicketReservations::active_order);
        active.and_then(|order_id| self.tables.orders.find(order_id))
    }

    /// See [`OrderBook::reservation_count`].
    pub fn reservation_count_now(&self, ticket_id: Id) -> Reservation {
        self.tables
            .reservations
            .shard(&ticket_id)
            .lock()
            .get(&ticket_id)
            .map_or(0, |entry| entry.count)
    }
}

/// Records with a plain table in [`MemStore`] (orders go through the reservation index, so
/// they are written through [`OrderBook`] or [`VersionedStore`]).
pub trait MemRecord: Record + sealed::HasTable {}

impl MemRecord for Ticket {}
impl MemRecord for TicketReplica {}

mod sealed {
    use super::{MemStore, Table, Ticket, TicketReplica};

    /// Sealed: only this module names it, so the private `Table` never leaks.
    #[allow(private_interfaces)]
    pub trait HasTable: Sized {
        fn table(store: &MemStore) -> &Table<Self>;
    }

    #[allow(private_interfaces)]
    impl HasTable for Ticket {
        fn table(store: &MemStore) -> &Table<Self> {
            &store.tables.tickets
        }
    }

    #[allow(private_interfaces)]
    impl HasTable for TicketReplica {
        fn table(store: &MemStore) -> &Table<Self> {
            &store.tables.replicas
        }
    }
}
