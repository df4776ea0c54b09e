//! The gated wrappers a task reaches the world through: the store, the publisher and the
//! message handle, each waiting at the task's [`Gate`] before it touches the service's store
//! or the broker core; and the journal of the writes they let through.
//!
//! The invariant: every store write, publish and settlement a task performs passes its gate
//! first and, once performed, is visible in the shared [`Store`] / [`BrokerCore`] at once (the
//! core is synchronous, and a store operation runs to completion where it stands:
//! [`Store::finish`]). Every successful ticket or replica write is journaled with the
//! record as it was before and the delivery it was made for, which is what the harness's
//! ghost variables are built from. Every operation goes through [`Gate::perform`], which
//! records its result; while a copy of the task is re-created on a copy of the world, it hands
//! the recorded results back and performs nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ticketing::bus::broker::{BrokerCore, GroupId, Seq};
use ticketing::bus::{BusError, MessageHandle, PublishAck, Publisher};
use ticketing::events::{Event, OrderCancelled, OrderCreated};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{Order, Record, Reservation, Ticket, TicketReplica, Version};
use ticketing::store::{Listing, OrderBook, ReservationCheck, StoreError, VersionedStore};

use crate::backend::Store;
use crate::gate::{Gate, Op};

/// The broker core, shared by every task's publisher and handle.
pub type SharedCore = Arc<Mutex<BrokerCore>>;

/// Locks the core. Nothing panics while holding it, so a poisoned lock's core is consistent.
pub fn lock_core(core: &SharedCore) -> MutexGuard<'_, BrokerCore> {
    crate::lock::locked(core)
}

/// A write a gated store let through and the store accepted.
#[derive(Clone, Debug)]
pub enum Written {
    /// A ticket inserted (`before` is `None`) or saved.
    Ticket {
        /// As stored before the write.
        before: Option<Ticket>,
        /// As stored after it.
        after: Ticket,
        /// The stream sequence of the delivery it was written for (`None`: an HTTP request).
        by: Option<Seq>,
    },
    /// A replica inserted or saved.
    Replica {
        /// As stored before the write.
        before: Option<TicketReplica>,
        /// As stored after it.
        after: TicketReplica,
        /// The delivery it was written for.
        by: Option<Seq>,
    },
    /// An order reserved, cancelled, inserted or saved.
    Order {
        /// As stored after the write.
        after: Order,
    },
}

/// The writes let through since the harness last drained it, in the order they happened.
#[derive(Clone, Debug, Default)]
pub struct Journal(Arc<Mutex<Vec<Written>>>);

impl Journal {
    fn entries(&self) -> MutexGuard<'_, Vec<Written>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, written: Written) {
        self.entries().push(written);
    }

    /// Takes every write journaled so far.
    pub fn drain(&self) -> Vec<Written> {
        std::mem::take(&mut *self.entries())
    }

    /// An independent journal holding the same writes.
    pub fn copy(&self) -> Self {
        Self(Arc::new(Mutex::new(self.entries().clone())))
    }
}

/// A record the gated store journals.
pub trait Journaled: Record {
    /// The journal entry of a write.
    fn written(before: Option<Self>, after: Self, by: Option<Seq>) -> Written;
}

impl Journaled for Ticket {
    fn written(before: Option<Self>, after: Self, by: Option<Seq>) -> Written {
        Written::Ticket { before, after, by }
    }
}

impl Journaled for TicketReplica {
    fn written(before: Option<Self>, after: Self, by: Option<Seq>) -> Written {
        Written::Replica { before, after, by }
    }
}

impl Journaled for Order {
    fn written(_: Option<Self>, after: Self, _: Option<Seq>) -> Written {
        Written::Order { after }
    }
}

/// One task's view of a service's store: every operation waits at the task's gate, then runs
/// to completion.
#[derive(Clone, Debug)]
pub struct GatedStore {
    inner: Store,
    gate: Gate,
    journal: Journal,
    by: Option<Seq>,
}

impl GatedStore {
    /// `inner` (shared with every other task of the service) behind `gate`; writes are
    /// journaled as made for the delivery of stream sequence `by`, if any.
    pub fn new(inner: Store, gate: Gate, journal: Journal, by: Option<Seq>) -> Self {
        Self {
            inner,
            gate,
            journal,
            by,
        }
    }

    fn journal_write<R: Journaled>(&self, before: Option<R>, after: &R) {
        self.journal
            .push(R::written(before, after.clone(), self.by));
    }
}

impl<R: Journaled> VersionedStore<R> for GatedStore
where
    Store: VersionedStore<R>,
{
    async fn insert(&self, record: R, event: Option<Event>) -> Result<R, StoreError> {
        let op = Op::Insert {
            kind: R::KIND,
            id: record.id(),
            version: record.version(),
        };
        self.gate
            .perform(op, async || {
                let inserted = (self.inner)
                    .finish(VersionedStore::<R>::insert(&self.inner, record, event))
                    .await;
                if let Ok(after) = &inserted {
                    self.journal_write(None, after);
                }
                inserted
            })
            .await
    }

    async fn find_by_id(&self, id: Id) -> Result<Option<R>, StoreError> {
        let op = Op::Read {
            what: R::KIND,
            id: Some(id),
        };
        self.gate
            .perform(op, async || {
                (self.inner)
                    .finish(VersionedStore::<R>::find_by_id(&self.inner, id))
                    .await
            })
            .await
    }

    async fn save(&self, record: R, event: Option<Event>) -> Result<Version, StoreError> {
        let id = record.id();
        let op = Op::Save {
            kind: R::KIND,
            id,
            read_version: record.version(),
        };
        self.gate
            .perform(op, async || {
                let before = self.inner.find_now::<R>(id)?;
                let mut after = record.clone();
                let saved = (self.inner)
                    .finish(VersionedStore::<R>::save(&self.inner, record, event))
                    .await;
                if let Ok(version) = saved {
                    after.set_version(version);
                    self.journal_write(before, &after);
                }
                saved
            })
            .await
    }

    async fn replace_if_current(
        &self,
        record: R,
        read_version: Version,
    ) -> Result<Version, StoreError> {
        let id = record.id();
        // The model's save step: the same gate operation as a save read at `read_version`.
        let op = Op::Save {
            kind: R::KIND,
            id,
            read_version,
        };
        self.gate
            .perform(op, async || {
                let before = self.inner.find_now::<R>(id)?;
                let after = record.clone();
                let replaced = (self.inner)
                    .finish(VersionedStore::<R>::replace_if_current(
                        &self.inner,
                        record,
                        read_version,
                    ))
                    .await;
                if replaced.is_ok() {
                    self.journal_write(before, &after);
                }
                replaced
            })
            .await
    }

    async fn list(&self, listing: Listing) -> Result<Vec<R>, StoreError> {
        let op = Op::Read {
            what: "list",
            id: None,
        };
        self.gate
            .perform(op, async || {
                (self.inner)
                    .finish(VersionedStore::<R>::list(&self.inner, listing))
                    .await
            })
            .await
    }
}

impl OrderBook for GatedStore {
    async fn active_order(&self, ticket_id: Id) -> Result<Option<Order>, StoreError> {
        let op = Op::Read {
            what: "active order of ticket",
            id: Some(ticket_id),
        };
        self.gate
            .perform(op, async || {
                self.inner.finish(self.inner.active_order(ticket_id)).await
            })
            .await
    }

    async fn reserve(
        &self,
        order: Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), StoreError> {
        let op = Op::Reserve {
            ticket: order.ticket_id,
        };
        self.gate
            .perform(op, async || {
                let reserved = (self.inner)
                    .finish(self.inner.reserve(order, price, check, outbox))
                    .await;
                if let Ok((after, _)) = &reserved {
                    self.journal_write(None, after);
                }
                reserved
            })
            .await
    }

    async fn cancel(
        &self,
        order: Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), StoreError> {
        let op = Op::Cancel {
            order: order.id,
            read_version: order.version,
        };
        self.gate
            .perform(op, async || {
                let cancelled = (self.inner).finish(self.inner.cancel(order, outbox)).await;
                if let Ok((after, _)) = &cancelled {
                    self.journal_write(None, after);
                }
                cancelled
            })
            .await
    }

    async fn reservation_count(&self, ticket_id: Id) -> Result<Reservation, StoreError> {
        let op = Op::Read {
            what: "reservation count of ticket",
            id: Some(ticket_id),
        };
        self.gate
            .perform(op, async || {
                (self.inner)
                    .finish(self.inner.reservation_count(ticket_id))
                    .await
            })
            .await
    }
}

/// Publishes `event` to the core as the broker would store it.
pub fn publish_to_core(
    core: &SharedCore,
    event: &Event,
    publish_id: Option<&str>,
) -> Result<PublishAck, BusError> {
    let payload = Bytes::from(event.encode()?);
    Ok(lock_core(core).publish(event.subject().as_str(), payload, publish_id))
}

/// One task's publisher (the no-outbox paths): each publish waits at the task's gate.
#[derive(Clone, Debug)]
pub struct GatedPublisher {
    core: SharedCore,
    gate: Gate,
}

impl GatedPublisher {
    /// Publishes to `core` behind `gate`.
    pub fn new(core: SharedCore, gate: Gate) -> Self {
        Self { core, gate }
    }
}

impl Publisher for GatedPublisher {
    async fn publish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        let op = Op::Publish {
            event: event.clone(),
        };
        self.gate
            .perform(op, async || publish_to_core(&self.core, event, publish_id))
            .await
    }
}

/// The relay's publisher: not gated, because the harness runs a relay round to completion
/// inside the step that wrote its entries (the model publishes in the writing step).
#[derive(Clone, Debug)]
pub struct CorePublisher {
    core: SharedCore,
}

impl CorePublisher {
    /// Publishes straight to `core`.
    pub fn new(core: SharedCore) -> Self {
        Self { core }
    }
}

impl Publisher for CorePublisher {
    async fn publish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        publish_to_core(&self.core, event, publish_id)
    }
}

/// One delivery's handle: its settlements wait at the listener task's gate, then settle that
/// delivery (group, stream sequence, delivery count) in the core.
#[derive(Debug)]
pub struct GatedHandle {
    core: SharedCore,
    gate: Gate,
    group: GroupId,
    seq: Seq,
    delivery_count: u32,
    acked: Arc<AtomicBool>,
}

impl GatedHandle {
    /// The handle of delivery `delivery_count` of `seq` to `group`; `acked` is set once it
    /// acknowledges.
    pub fn new(
        core: SharedCore,
        gate: Gate,
        (group, seq, delivery_count): (GroupId, Seq, u32),
        acked: Arc<AtomicBool>,
    ) -> Self {
        Self {
            core,
            gate,
            group,
            seq,
            delivery_count,
            acked,
        }
    }
}

impl MessageHandle for GatedHandle {
    fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    async fn ack(&self) -> Result<(), BusError> {
        let op = Op::Ack;
        self.gate
            .perform(op, async || {
                lock_core(&self.core).ack(self.group, self.seq);
                self.acked.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let op = Op::Nak { delay };
        self.gate
            .perform(op, async || {
                let mut core = lock_core(&self.core);
                // A delayed nak waits for its release; the harness releases at the end of the step
                // (the model keeps a message that is not applicable yet pending, undeliverable).
                if delay.is_zero() {
                    core.nak(self.group, self.seq, self.delivery_count);
                } else {
                    core.nak_delayed(self.group, self.seq, self.delivery_count);
                }
                Ok(())
            })
            .await
    }

    async fn term(&self, reason: &str) -> Result<(), BusError> {
        let op = Op::Term;
        self.gate
            .perform(op, async || {
                lock_core(&self.core).term(self.group, self.seq, self.delivery_count, reason);
                Ok(())
            })
            .await
    }
}
