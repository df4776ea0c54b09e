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

#[path = "../store_support/mod.rs"]
mod store_support;

mod backends;
mod reference;

use backends::run;
use reference::Model;

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
