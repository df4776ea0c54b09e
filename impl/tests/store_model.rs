//! Every backend behaves as one obviously correct reference: random sequences of store
//! operations (insert, find, find by event, save at a given read version, list, reserve,
//! cancel, active order, reservation count, outbox pending and mark) over a few ids run
//! against a sequential model written here with ordered maps, and against MemStore and
//! PgStore; every answer and the final contents must be the same.
//!
//! Backends differ in one documented way, which the model takes as a parameter: PostgreSQL's
//! partial unique index refuses a second active order on a ticket even when the caller skipped
//! the check (`ReservationCheck::Unchecked`, a plain insert, a save that reactivates an order),
//! while MemStore lets the race through as the course's MongoDB did. Then the active order is
//! the one that became active first.
//!
//! A failure prints the shortest operation sequence proptest found. Cases: 256 on memory, 64
//! on PostgreSQL (a fresh schema each, in one fresh database); `PROPTEST_CASES` overrides
//! both, `PROPTEST_RNG_SEED` replays a run.
#![cfg(not(loom))]

mod store_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use store_support::{id, price, user};
use ticketing::events::{Event, OrderCancelled, OrderCreated, OrderedTicket, TicketRef};
use ticketing::id::Id;
use ticketing::records::{
    Order, OrderStatus, Record, Reservation, Ticket, TicketReplica, Timestamp, Version,
};
use ticketing::store::{
    Listing, MemStore, OrderBook, Outbox, PgStore, ReservationCheck, StoreError, VersionedStore,
};
use ticketing::testkit;

// The id space: tickets (and their replicas, another table) 1..=2; orders 11..=14, order n on
// ticket 1 + n % 2, so two orders meet on each ticket.
const TICKETS: std::ops::RangeInclusive<u8> = 1..=2;
const ORDERS: std::ops::RangeInclusive<u8> = 11..=14;

fn ticket_of(order: u8) -> u8 {
    1 + order % 2
}

/// Which listing an operation asks for.
#[derive(Clone, Debug)]
enum Pick {
    All,
    Unreserved,
    OwnedBy(u8),
}

impl Pick {
    fn listing(&self) -> Listing {
        match self {
            Pick::All => Listing::All,
            Pick::Unreserved => Listing::Unreserved,
            Pick::OwnedBy(n) => Listing::OwnedBy(user(*n)),
        }
    }
}

/// One store operation. Records are built from the small numbers here, so two operations on
/// the same id meet.
#[derive(Clone, Debug)]
enum Op {
    InsertTicket {
        ticket: Ticket,
        event: bool,
    },
    SaveTicket {
        ticket: Ticket,
        event: bool,
    },
    FindTicket {
        n: u8,
    },
    FindTicketByEvent {
        n: u8,
        version: Version,
    },
    ListTickets(Pick),
    InsertReplica {
        replica: TicketReplica,
        event: bool,
    },
    SaveReplica {
        replica: TicketReplica,
        event: bool,
    },
    FindReplica {
        n: u8,
    },
    FindReplicaByEvent {
        n: u8,
        version: Version,
    },
    ListReplicas(Pick),
    InsertOrder {
        order: Order,
        event: bool,
    },
    SaveOrder {
        order: Order,
        event: bool,
    },
    FindOrder {
        n: u8,
    },
    ListOrders(Pick),
    Reserve {
        order: Order,
        cents: u64,
        check: ReservationCheck,
        outbox: bool,
    },
    Cancel {
        order: Order,
        outbox: bool,
    },
    ActiveOrder {
        ticket: u8,
    },
    ReservationCount {
        ticket: u8,
    },
    Pending {
        limit: usize,
    },
    /// Marks the pending entries at these positions (modulo the number pending).
    MarkPublished {
        positions: Vec<usize>,
    },
    /// As a service does: read the ticket, change its price, save it at the version read.
    RepriceTicket {
        n: u8,
        cents: u64,
        event: bool,
    },
    /// Read the order, give it `status`, save it at the version read.
    ChangeOrderStatus {
        n: u8,
        status: OrderStatus,
        event: bool,
    },
    /// Read the order and cancel it at the version read.
    CancelCurrent {
        n: u8,
        outbox: bool,
    },
    /// Read the ticket (or replica), then find it by the event that would follow.
    FindByNextEvent {
        n: u8,
        replica: bool,
    },
}

fn version() -> impl Strategy<Value = Version> {
    0u64..3
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        Just(Pick::All),
        Just(Pick::Unreserved),
        (1u8..=2).prop_map(Pick::OwnedBy),
    ]
}

fn any_ticket() -> impl Strategy<Value = Ticket> {
    (
        TICKETS,
        0u8..3,
        1u64..4,
        1u8..=2,
        version(),
        prop::option::of(ORDERS),
        0u64..3,
    )
        .prop_map(
            |(n, title, cents, owner, version, order, reservation)| Ticket {
                id: id(n),
                title: format!("title {title}").into(),
                price: price(cents * 250),
                user_id: user(owner),
                version,
                order_id: order.map(id),
                reservation,
            },
        )
}

fn any_replica() -> impl Strategy<Value = TicketReplica> {
    (TICKETS, 0u8..3, 1u64..4, version()).prop_map(|(n, title, cents, version)| TicketReplica {
        id: id(n),
        title: format!("title {title}").into(),
        price: price(cents * 250),
        version,
    })
}

fn status() -> impl Strategy<Value = OrderStatus> {
    prop_oneof![
        3 => Just(OrderStatus::Created),
        3 => Just(OrderStatus::Cancelled),
        1 => Just(OrderStatus::AwaitingPayment),
        1 => Just(OrderStatus::Complete),
    ]
}

/// An order with any status and version (for plain inserts and saves).
fn any_order() -> impl Strategy<Value = Order> {
    (ORDERS, 1u8..=2, status(), 0i64..3, version()).prop_map(
        |(n, buyer, status, expires, version)| Order {
            id: id(n),
            user_id: user(buyer),
            status,
            expires_at: Timestamp::from_unix_millis(1_795_791_600_000 + expires * 60_000),
            ticket_id: id(ticket_of(n)),
            version,
        },
    )
}

/// An order as `reserve` takes it: status created, version 0.
fn new_order() -> impl Strategy<Value = Order> {
    any_order().prop_map(|order| Order {
        status: OrderStatus::Created,
        version: 0,
        ..order
    })
}

fn check() -> impl Strategy<Value = ReservationCheck> {
    prop_oneof![
        1 => Just(ReservationCheck::Atomic),
        1 => Just(ReservationCheck::Unchecked),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any_ticket(), any::<bool>()).prop_map(|(ticket, event)| Op::InsertTicket { ticket, event }),
        4 => (any_ticket(), any::<bool>()).prop_map(|(ticket, event)| Op::SaveTicket { ticket, event }),
        1 => TICKETS.prop_map(|n| Op::FindTicket { n }),
        3 => (TICKETS, version()).prop_map(|(n, version)| Op::FindTicketByEvent { n, version }),
        1 => pick().prop_map(Op::ListTickets),
        2 => (any_replica(), any::<bool>()).prop_map(|(replica, event)| Op::InsertReplica { replica, event }),
        3 => (any_replica(), any::<bool>()).prop_map(|(replica, event)| Op::SaveReplica { replica, event }),
        1 => TICKETS.prop_map(|n| Op::FindReplica { n }),
        2 => (TICKETS, version()).prop_map(|(n, version)| Op::FindReplicaByEvent { n, version }),
        1 => pick().prop_map(Op::ListReplicas),
        2 => (any_order(), any::<bool>()).prop_map(|(order, event)| Op::InsertOrder { order, event }),
        3 => (any_order(), any::<bool>()).prop_map(|(order, event)| Op::SaveOrder { order, event }),
        1 => ORDERS.prop_map(|n| Op::FindOrder { n }),
        1 => pick().prop_map(Op::ListOrders),
        5 => (new_order(), 1u64..4, check(), any::<bool>())
            .prop_map(|(order, cents, check, outbox)| Op::Reserve { order, cents: cents * 250, check, outbox }),
        4 => (any_order(), any::<bool>()).prop_map(|(order, outbox)| Op::Cancel { order, outbox }),
        2 => (1u8..=2).prop_map(|ticket| Op::ActiveOrder { ticket }),
        2 => (1u8..=2).prop_map(|ticket| Op::ReservationCount { ticket }),
        2 => (0usize..6).prop_map(|limit| Op::Pending { limit }),
        2 => prop::collection::vec(0usize..8, 0..3).prop_map(|positions| Op::MarkPublished { positions }),
        4 => (TICKETS, 1u64..4, any::<bool>())
            .prop_map(|(n, cents, event)| Op::RepriceTicket { n, cents: cents * 250, event }),
        3 => (ORDERS, status(), any::<bool>())
            .prop_map(|(n, status, event)| Op::ChangeOrderStatus { n, status, event }),
        3 => (ORDERS, any::<bool>()).prop_map(|(n, outbox)| Op::CancelCurrent { n, outbox }),
        2 => (TICKETS, any::<bool>()).prop_map(|(n, replica)| Op::FindByNextEvent { n, replica }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..50)
}

/// Some event to put in the outbox with a plain write; the stores keep whatever they are
/// given, so its content only has to be recognisable.
fn event_for<R: Record>(record: &R) -> Event {
    Event::OrderCancelled(OrderCancelled {
        id: record.id(),
        version: record.version() + 1,
        ticket: TicketRef { id: record.id() },
        reservation: 0,
    })
}

/// Any record, for comparing answers.
#[derive(Clone, Debug, PartialEq)]
enum Rec {
    Ticket(Ticket),
    Replica(TicketReplica),
    Order(Order),
}

/// A store error, reduced to what every backend must agree on.
#[derive(Clone, Debug, PartialEq)]
enum Failure {
    Conflict {
        kind: &'static str,
        id: Id,
        expected: Version,
        found: Version,
    },
    NotFound {
        kind: &'static str,
        id: Id,
    },
    Duplicate {
        kind: &'static str,
        id: Id,
    },
    TicketReserved {
        ticket_id: Id,
        order_id: Id,
    },
    /// Never expected: the model has no backend to fail.
    Backend(String),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::VersionConflict {
                kind,
                id,
                expected,
                found,
            } => Failure::Conflict {
                kind,
                id,
                expected,
                found,
            },
            StoreError::NotFound { kind, id } => Failure::NotFound { kind, id },
            StoreError::Duplicate { kind, id } => Failure::Duplicate { kind, id },
            StoreError::TicketReserved {
                ticket_id,
                order_id,
            } => Failure::TicketReserved {
                ticket_id,
                order_id,
            },
            backend @ StoreError::Backend { .. } => Failure::Backend(backend.to_string()),
        }
    }
}

/// The answer to one operation.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Written(Result<Rec, Failure>),
    Reserved(Result<(Order, OrderCreated), Failure>),
    Cancelled(Result<(Order, OrderCancelled), Failure>),
    Found(Option<Rec>),
    /// Sorted by id.
    Listed(Vec<Rec>),
    Count(Reservation),
    /// The events pending, oldest first, and whether their seqs increase.
    Pending(Vec<Event>, bool),
    Done,
    /// Everything the store holds, after the last operation.
    Contents {
        records: Vec<Rec>,
        counts: Vec<Reservation>,
        outbox: Vec<Event>,
    },
}

fn sorted(mut records: Vec<Rec>) -> Vec<Rec> {
    records.sort_by_key(|record| match record {
        Rec::Ticket(ticket) => (0, ticket.id),
        Rec::Replica(replica) => (1, replica.id),
        Rec::Order(order) => (2, order.id),
    });
    records
}

/// The reference: plain maps, one operation at a time.
struct Model {
    /// Whether a second active order on a ticket is refused whoever asked for it
    /// (PostgreSQL's index) or only by an atomic reservation (MemStore).
    refuses_second_active: bool,
    tickets: BTreeMap<Id, Ticket>,
    replicas: BTreeMap<Id, TicketReplica>,
    orders: BTreeMap<Id, Order>,
    /// When each active order became active (a logical clock), to tell which is "the"
    /// active order when a race let two through.
    activated: BTreeMap<Id, u64>,
    /// Writes that would make a second active order on a ticket (refused or let through).
    second_active_writes: usize,
    clock: u64,
    counts: BTreeMap<Id, Reservation>,
    outbox: Vec<Event>,
}

impl Model {
    fn new(refuses_second_active: bool) -> Self {
        Self {
            refuses_second_active,
            tickets: BTreeMap::new(),
            replicas: BTreeMap::new(),
            orders: BTreeMap::new(),
            activated: BTreeMap::new(),
            second_active_writes: 0,
            clock: 0,
            counts: BTreeMap::new(),
            outbox: Vec::new(),
        }
    }

    fn active_order(&self, ticket_id: Id) -> Option<Order> {
        self.orders
            .values()
            .filter(|order| order.ticket_id == ticket_id && order.status.is_active())
            .min_by_key(|order| self.activated.get(&order.id))
            .cloned()
    }

    /// Another order than `order` holding its ticket, if writing `order` would make a second.
    fn second_active(&self, order: &Order) -> Option<Id> {
        let holder = self.active_order(order.ticket_id)?;
        (order.status.is_active() && holder.id != order.id).then_some(holder.id)
    }

    /// Stores `order` and keeps the activation times in step.
    fn put_order(&mut self, order: Order) {
        let was_active = self
            .orders
            .get(&order.id)
            .is_some_and(|stored| stored.status.is_active());
        if !order.status.is_active() {
            self.activated.remove(&order.id);
        } else if !was_active {
            self.clock += 1;
            self.activated.insert(order.id, self.clock);
        }
        self.orders.insert(order.id, order);
    }

    fn insert<R: Record>(
        table: &mut BTreeMap<Id, R>,
        outbox: &mut Vec<Event>,
        record: R,
        event: bool,
    ) -> Result<R, Failure> {
        if table.contains_key(&record.id()) {
            return Err(Failure::Duplicate {
                kind: R::KIND,
                id: record.id(),
            });
        }
        if event {
            outbox.push(event_for(&record));
        }
        table.insert(record.id(), record.clone());
        Ok(record)
    }

    /// The checks of update-if-current: the record exists, at the version it was read at.
    fn check_current<R: Record>(table: &BTreeMap<Id, R>, record: &R) -> Result<(), Failure> {
        let stored = table.get(&record.id()).ok_or(Failure::NotFound {
            kind: R::KIND,
            id: record.id(),
        })?;
        if stored.version() != record.version() {
            return Err(Failure::Conflict {
                kind: R::KIND,
                id: record.id(),
                expected: record.version(),
                found: stored.version(),
            });
        }
        Ok(())
    }

    fn save<R: Record>(
        table: &mut BTreeMap<Id, R>,
        outbox: &mut Vec<Event>,
        mut record: R,
        event: bool,
    ) -> Result<R, Failure> {
        Self::check_current(table, &record)?;
        if event {
            outbox.push(event_for(&record));
        }
        record.set_version(record.version() + 1);
        table.insert(record.id(), record.clone());
        Ok(record)
    }

    fn find_by_event<R: Record>(table: &BTreeMap<Id, R>, n: u8, version: Version) -> Option<R> {
        table
            .get(&id(n))
            .filter(|record| version > 0 && record.version() == version - 1)
            .cloned()
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match op.clone() {
            Op::InsertTicket { ticket, event } => Outcome::Written(
                Self::insert(&mut self.tickets, &mut self.outbox, ticket, event).map(Rec::Ticket),
            ),
            Op::SaveTicket { ticket, event } => Outcome::Written(
                Self::save(&mut self.tickets, &mut self.outbox, ticket, event).map(Rec::Ticket),
            ),
            Op::FindTicket { n } => {
                Outcome::Found(self.tickets.get(&id(n)).cloned().map(Rec::Ticket))
            }
            Op::FindTicketByEvent { n, version } => {
                Outcome::Found(Self::find_by_event(&self.tickets, n, version).map(Rec::Ticket))
            }
            Op::ListTickets(pick) => Outcome::Listed(sorted(
                self.tickets
                    .values()
                    .filter(|ticket| match &pick {
                        Pick::All => true,
                        Pick::Unreserved => ticket.order_id.is_none(),
                        Pick::OwnedBy(n) => ticket.user_id == user(*n),
                    })
                    .cloned()
                    .map(Rec::Ticket)
                    .collect(),
            )),
            Op::InsertReplica { replica, event } => Outcome::Written(
                Self::insert(&mut self.replicas, &mut self.outbox, replica, event)
                    .map(Rec::Replica),
            ),
            Op::SaveReplica { replica, event } => Outcome::Written(
                Self::save(&mut self.replicas, &mut self.outbox, replica, event).map(Rec::Replica),
            ),
            Op::FindReplica { n } => {
                Outcome::Found(self.replicas.get(&id(n)).cloned().map(Rec::Replica))
            }
            Op::FindReplicaByEvent { n, version } => {
                Outcome::Found(Self::find_by_event(&self.replicas, n, version).map(Rec::Replica))
            }
            // A replica has no owner: listed by everything but an owner.
            Op::ListReplicas(pick) => Outcome::Listed(match pick {
                Pick::OwnedBy(_) => Vec::new(),
                Pick::All | Pick::Unreserved => {
                    sorted(self.replicas.values().cloned().map(Rec::Replica).collect())
                }
            }),
            Op::InsertOrder { order, event } => Outcome::Written(self.insert_order(order, event)),
            Op::SaveOrder { order, event } => Outcome::Written(self.save_order(order, event)),
            Op::FindOrder { n } => Outcome::Found(self.orders.get(&id(n)).cloned().map(Rec::Order)),
            Op::ListOrders(pick) => Outcome::Listed(sorted(
                self.orders
                    .values()
                    .filter(|order| match &pick {
                        Pick::All | Pick::Unreserved => true,
                        Pick::OwnedBy(n) => order.user_id == user(*n),
                    })
                    .cloned()
                    .map(Rec::Order)
                    .collect(),
            )),
            Op::Reserve {
                order,
                cents,
                check,
                outbox,
            } => Outcome::Reserved(self.reserve(order, cents, check, outbox)),
            Op::Cancel { order, outbox } => Outcome::Cancelled(self.cancel(order, outbox)),
            Op::ActiveOrder { ticket } => {
                Outcome::Found(self.active_order(id(ticket)).map(Rec::Order))
            }
            Op::ReservationCount { ticket } => {
                Outcome::Count(self.counts.get(&id(ticket)).copied().unwrap_or(0))
            }
            Op::Pending { limit } => {
                Outcome::Pending(self.outbox.iter().take(limit).cloned().collect(), true)
            }
            Op::RepriceTicket { n, cents, event } => match self.tickets.get(&id(n)) {
                None => Outcome::Found(None),
                Some(read) => {
                    let changed = Ticket {
                        price: price(cents),
                        ..read.clone()
                    };
                    Outcome::Written(
                        Self::save(&mut self.tickets, &mut self.outbox, changed, event)
                            .map(Rec::Ticket),
                    )
                }
            },
            Op::ChangeOrderStatus { n, status, event } => match self.orders.get(&id(n)) {
                None => Outcome::Found(None),
                Some(read) => {
                    let changed = Order {
                        status,
                        ..read.clone()
                    };
                    Outcome::Written(self.save_order(changed, event))
                }
            },
            Op::CancelCurrent { n, outbox } => match self.orders.get(&id(n)) {
                None => Outcome::Found(None),
                Some(read) => Outcome::Cancelled(self.cancel(read.clone(), outbox)),
            },
            Op::FindByNextEvent { n, replica: false } => {
                Outcome::Found(self.tickets.get(&id(n)).cloned().map(Rec::Ticket))
            }
            Op::FindByNextEvent { n, replica: true } => {
                Outcome::Found(self.replicas.get(&id(n)).cloned().map(Rec::Replica))
            }
            Op::MarkPublished { positions } => {
                let marked = marked_positions(&positions, self.outbox.len());
                let mut position = 0;
                self.outbox.retain(|_| {
                    position += 1;
                    !marked.contains(&(position - 1))
                });
                Outcome::Done
            }
        }
    }

    fn insert_order(&mut self, order: Order, event: bool) -> Result<Rec, Failure> {
        if self.orders.contains_key(&order.id) {
            return Err(Failure::Duplicate {
                kind: Order::KIND,
                id: order.id,
            });
        }
        self.refuse_second_active(&order)?;
        if event {
            self.outbox.push(event_for(&order));
        }
        self.put_order(order.clone());
        Ok(Rec::Order(order))
    }

    fn save_order(&mut self, mut order: Order, event: bool) -> Result<Rec, Failure> {
        Self::check_current(&self.orders, &order)?;
        self.refuse_second_active(&order)?;
        if event {
            self.outbox.push(event_for(&order));
        }
        order.version += 1;
        self.put_order(order.clone());
        Ok(Rec::Order(order))
    }

    fn refuse_second_active(&mut self, order: &Order) -> Result<(), Failure> {
        let second_active = self.second_active(order);
        self.second_active_writes += usize::from(second_active.is_some());
        match second_active {
            Some(holder) if self.refuses_second_active => Err(Failure::TicketReserved {
                ticket_id: order.ticket_id,
                order_id: holder,
            }),
            _ => Ok(()),
        }
    }

    fn reserve(
        &mut self,
        order: Order,
        cents: u64,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), Failure> {
        if check == ReservationCheck::Atomic
            && let Some(holder) = self.active_order(order.ticket_id)
        {
            return Err(Failure::TicketReserved {
                ticket_id: order.ticket_id,
                order_id: holder.id,
            });
        }
        if self.orders.contains_key(&order.id) {
            return Err(Failure::Duplicate {
                kind: Order::KIND,
                id: order.id,
            });
        }
        self.refuse_second_active(&order)?;
        let count = self.counts.entry(order.ticket_id).or_insert(0);
        *count += 1;
        let event = OrderCreated {
            id: order.id,
            version: order.version,
            status: order.status,
            user_id: order.user_id.clone(),
            expires_at: order.expires_at,
            ticket: OrderedTicket {
                id: order.ticket_id,
                price: price(cents),
            },
            reservation: *count,
        };
        if outbox {
            self.outbox.push(Event::OrderCreated(event.clone()));
        }
        self.put_order(order.clone());
        Ok((order, event))
    }

    fn cancel(&mut self, order: Order, outbox: bool) -> Result<(Order, OrderCancelled), Failure> {
        Self::check_current(&self.orders, &order)?;
        let count = self.counts.entry(order.ticket_id).or_insert(0);
        *count += 1;
        let cancelled = Order {
            status: OrderStatus::Cancelled,
            version: order.version + 1,
            ..order
        };
        let event = OrderCancelled {
            id: cancelled.id,
            version: cancelled.version,
            ticket: TicketRef {
                id: cancelled.ticket_id,
            },
            reservation: *count,
        };
        if outbox {
            self.outbox.push(Event::OrderCancelled(event.clone()));
        }
        self.put_order(cancelled.clone());
        Ok((cancelled, event))
    }

    fn contents(&self) -> Outcome {
        let mut records: Vec<Rec> = self.tickets.values().cloned().map(Rec::Ticket).collect();
        records.extend(self.replicas.values().cloned().map(Rec::Replica));
        records.extend(self.orders.values().cloned().map(Rec::Order));
        Outcome::Contents {
            records: sorted(records),
            counts: TICKETS
                .map(|n| self.counts.get(&id(n)).copied().unwrap_or(0))
                .collect(),
            outbox: self.outbox.clone(),
        }
    }
}

/// The positions `positions` picks among `pending` entries.
fn marked_positions(positions: &[usize], pending: usize) -> Vec<usize> {
    if pending == 0 {
        return Vec::new();
    }
    positions
        .iter()
        .map(|position| position % pending)
        .collect()
}

/// Runs `ops` against a real store, answering as the model does.
async fn run<S>(store: &S, ops: &[Op]) -> Vec<Outcome>
where
    S: VersionedStore<Ticket> + VersionedStore<TicketReplica> + OrderBook + Outbox,
{
    let mut outcomes = Vec::with_capacity(ops.len() + 1);
    for op in ops {
        outcomes.push(run_one(store, op.clone()).await);
    }
    let mut records: Vec<Rec> = VersionedStore::<Ticket>::list(store, Listing::All)
        .await
        .unwrap()
        .into_iter()
        .map(Rec::Ticket)
        .collect();
    records.extend(
        VersionedStore::<TicketReplica>::list(store, Listing::All)
            .await
            .unwrap()
            .into_iter()
            .map(Rec::Replica),
    );
    records.extend(
        VersionedStore::<Order>::list(store, Listing::All)
            .await
            .unwrap()
            .into_iter()
            .map(Rec::Order),
    );
    let mut counts = Vec::new();
    for n in TICKETS {
        counts.push(store.reservation_count(id(n)).await.unwrap());
    }
    let outbox = store.pending(usize::MAX).await.unwrap();
    outcomes.push(Outcome::Contents {
        records: sorted(records),
        counts,
        outbox: outbox.into_iter().map(|entry| entry.event).collect(),
    });
    outcomes
}

async fn run_one<S>(store: &S, op: Op) -> Outcome
where
    S: VersionedStore<Ticket> + VersionedStore<TicketReplica> + OrderBook + Outbox,
{
    fn written<R>(result: Result<R, StoreError>, wrap: fn(R) -> Rec) -> Outcome {
        Outcome::Written(result.map(wrap).map_err(Failure::from))
    }
    /// A save answers the version it stored: the record written is `record` at that version.
    fn saved<R: Record>(
        mut record: R,
        result: Result<Version, StoreError>,
        wrap: fn(R) -> Rec,
    ) -> Outcome {
        written(
            result.map(|version| {
                record.set_version(version);
                record
            }),
            wrap,
        )
    }
    fn found<R>(result: Result<Option<R>, StoreError>, wrap: fn(R) -> Rec) -> Outcome {
        match result {
            Ok(found) => Outcome::Found(found.map(wrap)),
            Err(error) => Outcome::Written(Err(error.into())),
        }
    }
    fn listed<R>(result: Result<Vec<R>, StoreError>, wrap: fn(R) -> Rec) -> Outcome {
        match result {
            Ok(records) => Outcome::Listed(sorted(records.into_iter().map(wrap).collect())),
            Err(error) => Outcome::Written(Err(error.into())),
        }
    }
    match op {
        Op::InsertTicket { ticket, event } => {
            let event = event.then(|| event_for(&ticket));
            written(store.insert(ticket, event).await, Rec::Ticket)
        }
        Op::SaveTicket { ticket, event } => {
            let event = event.then(|| event_for(&ticket));
            saved(ticket.clone(), store.save(ticket, event).await, Rec::Ticket)
        }
        Op::FindTicket { n } => found(
            VersionedStore::<Ticket>::find_by_id(store, id(n)).await,
            Rec::Ticket,
        ),
        Op::FindTicketByEvent { n, version } => found(
            VersionedStore::<Ticket>::find_by_event(store, id(n), version).await,
            Rec::Ticket,
        ),
        Op::ListTickets(pick) => listed(
            VersionedStore::<Ticket>::list(store, pick.listing()).await,
            Rec::Ticket,
        ),
        Op::InsertReplica { replica, event } => {
            let event = event.then(|| event_for(&replica));
            written(store.insert(replica, event).await, Rec::Replica)
        }
        Op::SaveReplica { replica, event } => {
            let event = event.then(|| event_for(&replica));
            saved(
                replica.clone(),
                store.save(replica, event).await,
                Rec::Replica,
            )
        }
        Op::FindReplica { n } => found(
            VersionedStore::<TicketReplica>::find_by_id(store, id(n)).await,
            Rec::Replica,
        ),
        Op::FindReplicaByEvent { n, version } => found(
            VersionedStore::<TicketReplica>::find_by_event(store, id(n), version).await,
            Rec::Replica,
        ),
        Op::ListReplicas(pick) => listed(
            VersionedStore::<TicketReplica>::list(store, pick.listing()).await,
            Rec::Replica,
        ),
        Op::InsertOrder { order, event } => {
            let event = event.then(|| event_for(&order));
            written(store.insert(order, event).await, Rec::Order)
        }
        Op::SaveOrder { order, event } => {
            let event = event.then(|| event_for(&order));
            saved(order.clone(), store.save(order, event).await, Rec::Order)
        }
        Op::FindOrder { n } => found(
            VersionedStore::<Order>::find_by_id(store, id(n)).await,
            Rec::Order,
        ),
        Op::ListOrders(pick) => listed(
            VersionedStore::<Order>::list(store, pick.listing()).await,
            Rec::Order,
        ),
        Op::Reserve {
            order,
            cents,
            check,
            outbox,
        } => Outcome::Reserved(
            store
                .reserve(order, price(cents), check, outbox)
                .await
                .map_err(Failure::from),
        ),
        Op::Cancel { order, outbox } => {
            Outcome::Cancelled(store.cancel(order, outbox).await.map_err(Failure::from))
        }
        Op::ActiveOrder { ticket } => found(store.active_order(id(ticket)).await, Rec::Order),
        Op::ReservationCount { ticket } => match store.reservation_count(id(ticket)).await {
            Ok(count) => Outcome::Count(count),
            Err(error) => Outcome::Written(Err(error.into())),
        },
        Op::Pending { limit } => match store.pending(limit).await {
            Ok(entries) => Outcome::Pending(
                entries.iter().map(|entry| entry.event.clone()).collect(),
                entries.windows(2).all(|pair| pair[0].seq < pair[1].seq),
            ),
            Err(error) => Outcome::Written(Err(error.into())),
        },
        Op::RepriceTicket { n, cents, event } => {
            match VersionedStore::<Ticket>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => {
                    let changed = Ticket {
                        price: price(cents),
                        ..read
                    };
                    let event = event.then(|| event_for(&changed));
                    saved(
                        changed.clone(),
                        store.save(changed, event).await,
                        Rec::Ticket,
                    )
                }
                other => found(other, Rec::Ticket),
            }
        }
        Op::ChangeOrderStatus { n, status, event } => {
            match VersionedStore::<Order>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => {
                    let changed = Order { status, ..read };
                    let event = event.then(|| event_for(&changed));
                    saved(
                        changed.clone(),
                        store.save(changed, event).await,
                        Rec::Order,
                    )
                }
                other => found(other, Rec::Order),
            }
        }
        Op::CancelCurrent { n, outbox } => {
            match VersionedStore::<Order>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => {
                    Outcome::Cancelled(store.cancel(read, outbox).await.map_err(Failure::from))
                }
                other => found(other, Rec::Order),
            }
        }
        Op::FindByNextEvent { n, replica: false } => {
            match VersionedStore::<Ticket>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => found(
                    VersionedStore::<Ticket>::find_by_event(store, id(n), read.version + 1).await,
                    Rec::Ticket,
                ),
                other => found(other, Rec::Ticket),
            }
        }
        Op::FindByNextEvent { n, replica: true } => {
            match VersionedStore::<TicketReplica>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => found(
                    VersionedStore::<TicketReplica>::find_by_event(store, id(n), read.version + 1)
                        .await,
                    Rec::Replica,
                ),
                other => found(other, Rec::Replica),
            }
        }
        Op::MarkPublished { positions } => {
            let pending = match store.pending(usize::MAX).await {
                Ok(pending) => pending,
                Err(error) => return Outcome::Written(Err(error.into())),
            };
            let seqs: Vec<u64> = marked_positions(&positions, pending.len())
                .into_iter()
                .map(|position| pending[position].seq)
                .collect();
            match store.mark_published(&seqs).await {
                Ok(()) => Outcome::Done,
                Err(error) => Outcome::Written(Err(error.into())),
            }
        }
    }
}

/// The model's answers to `ops`, then its contents; and how many writes would have made a
/// second active order on a ticket.
fn expected(ops: &[Op], refuses_second_active: bool) -> (Vec<Outcome>, usize) {
    let mut model = Model::new(refuses_second_active);
    let mut outcomes: Vec<Outcome> = ops.iter().map(|op| model.apply(op)).collect();
    outcomes.push(model.contents());
    (outcomes, model.second_active_writes)
}

fn same_answers(ops: &[Op], expected: &[Outcome], actual: &[Outcome]) -> Result<(), TestCaseError> {
    for (step, (expected, actual)) in expected.iter().zip(actual).enumerate() {
        let what = ops
            .get(step)
            .map_or_else(|| "the final contents".to_owned(), |op| format!("{op:?}"));
        prop_assert_eq!(expected, actual, "step {} ({}): model vs store", step, what);
    }
    prop_assert_eq!(expected.len(), actual.len());
    Ok(())
}

/// What kinds of answers the generated cases produced: a suite whose cases never conflict or
/// never refuse a reservation would pass vacuously, so each kind must occur.
#[derive(Default)]
struct Coverage(std::sync::Mutex<BTreeMap<&'static str, usize>>);

impl Coverage {
    const REQUIRED: [&'static str; 12] = [
        "written",
        "version conflict",
        "not found",
        "duplicate",
        "ticket reserved",
        "reserved",
        "cancelled",
        "found by event",
        "a second active order on a ticket",
        "found the active order",
        "pending entries",
        "marked published",
    ];

    fn tally(&self, ops: &[Op], outcomes: &[Outcome], second_active: usize) {
        let mut seen = self.0.lock().unwrap();
        for (op, outcome) in ops.iter().zip(outcomes) {
            let label = match (op, outcome) {
                (_, Outcome::Written(Err(Failure::Conflict { .. })))
                | (_, Outcome::Cancelled(Err(Failure::Conflict { .. }))) => "version conflict",
                (_, Outcome::Written(Err(Failure::NotFound { .. })))
                | (_, Outcome::Cancelled(Err(Failure::NotFound { .. }))) => "not found",
                (_, Outcome::Written(Err(Failure::Duplicate { .. })))
                | (_, Outcome::Reserved(Err(Failure::Duplicate { .. }))) => "duplicate",
                (_, Outcome::Written(Err(Failure::TicketReserved { .. })))
                | (_, Outcome::Reserved(Err(Failure::TicketReserved { .. }))) => "ticket reserved",
                (_, Outcome::Written(Ok(_))) => "written",
                (_, Outcome::Reserved(Ok(_))) => "reserved",
                (_, Outcome::Cancelled(Ok(_))) => "cancelled",
                (
                    Op::FindTicketByEvent { .. }
                    | Op::FindReplicaByEvent { .. }
                    | Op::FindByNextEvent { .. },
                    Outcome::Found(Some(_)),
                ) => "found by event",
                (Op::ActiveOrder { .. }, Outcome::Found(Some(_))) => "found the active order",
                (_, Outcome::Pending(events, _)) if !events.is_empty() => "pending entries",
                (Op::MarkPublished { positions }, Outcome::Done) if !positions.is_empty() => {
                    "marked published"
                }
                _ => "other",
            };
            *seen.entry(label).or_default() += 1;
        }
        *seen.entry("a second active order on a ticket").or_default() += second_active;
    }

    /// Panics unless every required kind of answer occurred.
    fn check(&self, backend: &str) {
        let seen = self.0.lock().unwrap();
        eprintln!("{backend}: answers by kind: {seen:?}");
        for label in Self::REQUIRED {
            assert!(
                seen.get(label).is_some_and(|count| *count > 0),
                "{backend}: no generated case produced \"{label}\"; the suite is too weak"
            );
        }
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        // The minimal failing sequence is printed; no regression file is written.
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

#[test]
fn memstore_matches_the_reference_model() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let coverage = Coverage::default();
    let outcome = runner(cases(256)).run(&ops(), |ops| {
        let actual = runtime.block_on(run(&MemStore::new(), &ops));
        let (expected, second_active) = expected(&ops, false);
        coverage.tally(&ops, &expected, second_active);
        same_answers(&ops, &expected, &actual)
    });
    if let Err(failure) = outcome {
        panic!("MemStore differs from the model: {failure}");
    }
    coverage.check("MemStore");
}

#[test]
fn pgstore_matches_the_reference_model() {
    let test = "pgstore_matches_the_reference_model";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(database) = runtime.block_on(testkit::fresh_postgres(test)) else {
        return;
    };
    // Each case in a schema of its own, made by the store's migrations.
    let schemas = AtomicUsize::new(0);
    let coverage = Coverage::default();
    let outcome = runner(cases(64)).run(&ops(), |ops| {
        let schema = format!("case_{}", schemas.fetch_add(1, Ordering::Relaxed));
        let actual = runtime.block_on(async {
            let store = PgStore::connect(database.url(), &schema)
                .await
                .unwrap_or_else(|error| panic!("{test}: {error}"));
            run(&store, &ops).await
        });
        let (expected, second_active) = expected(&ops, true);
        coverage.tally(&ops, &expected, second_active);
        same_answers(&ops, &expected, &actual)
    });
    if let Err(failure) = outcome {
        panic!("PgStore differs from the model: {failure}");
    }
    coverage.check("PgStore");
}
