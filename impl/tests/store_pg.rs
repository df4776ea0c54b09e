//! PgStore's own guarantees, beyond the behaviour every backend shares (`store_model.rs`,
//! `store_occ.rs`): a clear error when the server is unreachable, the schema created on start
//! and idempotently, two stores sharing a database without colliding, atomic reservations under
//! real concurrency, no lost update, and the relay woken by LISTEN/NOTIFY.
//!
//! Each test makes its own database (`testkit::fresh_postgres`) and skips, or fails under
//! `REQUIRE_SERVICES=1`, when PostgreSQL is unreachable.
#![cfg(not(loom))]

mod store_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use store_support::{id, order, pg_store, price, ticket};
use ticketing::events::Event;
use ticketing::records::Ticket;
use ticketing::store::{
    OrderBook, Outbox, PgStore, PgStoreOptions, ReservationCheck, StoreError, VersionedStore,
};
use ticketing::testkit;
use tokio::sync::Barrier;

/// Bounds every wait in these tests: far above what a healthy run takes, so hitting it means
/// a hang, reported as such.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {PATIENCE:?}"))
}

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn unreachable_database_is_a_clear_backend_error() {
    let port = closed_port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/test");
    let connecting = PgStore::connect(&url, "tickets");
    match within("connecting to a closed port", connecting).await {
        Err(StoreError::Backend { message, source }) => {
            eprintln!("connecting to a closed port: {message}");
            assert!(
                message.contains(&format!("postgres://app:***@127.0.0.1:{port}/test")),
                "the message does not name the server: {message}"
            );
            assert!(
                message.contains("cannot open a connection: error connecting to server"),
                "the message does not say what failed: {message}"
            );
            assert!(
                !message.contains("hunter2"),
                "the message leaks the password"
            );
            assert!(source.is_some(), "the cause is dropped");
        }
        other => panic!("connecting to a closed port gave {other:?}"),
    }
}

#[tokio::test]
async fn bad_urls_and_schema_names_are_refused_before_connecting() {
    let port = closed_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    for schema in ["Tickets", "drop;table", "pg_x", ""] {
        match PgStore::connect(&url, schema).await {
            Err(StoreError::Backend { message, .. }) => {
                assert!(message.contains("invalid schema name"), "{message}")
            }
            other => panic!("schema {schema:?} gave {other:?}"),
        }
    }
    match PgStore::connect("postgres://[::1", "tickets").await {
        Err(StoreError::Backend { message, .. }) => {
            assert!(message.contains("parse the URL"), "{message}")
        }
        other => panic!("a malformed URL gave {other:?}"),
    }
}

#[tokio::test]
async fn schema_is_created_on_start_once_even_by_concurrent_starts() {
    let test = "schema_is_created_on_start_once_even_by_concurrent_starts";
    let Some(database) = testkit::fresh_postgres(test).await else {
        return;
    };
    // Four processes' worth of stores starting at once on a schema that does not exist yet.
    let starts = (0..4).map(|_| PgStore::connect(database.url(), "tickets"));
    let stores = within("four concurrent starts", futures::future::join_all(starts)).await;
    let stores: Vec<PgStore> = stores
        .into_iter()
        .map(|started| started.expect("a concurrent start failed"))
        .collect();
    for store in &stores {
        assert_eq!(
            store.applied_migrations().await.unwrap(),
            vec![1, 2, 3, 4, 5]
        );
    }

    let created = stores[0].insert(ticket(1, 700), None).await.unwrap();
    drop(stores);
    let restarted = PgStore::connect(database.url(), "tickets").await.unwrap();
    assert_eq!(
        restarted.applied_migrations().await.unwrap(),
        vec![1, 2, 3, 4, 5]
    );
    let found = VersionedStore::<Ticket>::find_by_id(&restarted, created.id)
        .await
        .unwrap();
    assert_eq!(found, Some(created), "a restart lost or changed the ticket");
}

#[tokio::test]
async fn two_stores_on_one_database_do_not_collide() {
    let test = "two_stores_on_one_database_do_not_collide";
    let Some((tickets, database)) = pg_store(test, "tickets").await else {
        return;
    };
    let orders = PgStore::connect(database.url(), "orders").await.unwrap();
    let in_tickets = tickets.insert(ticket(1, 100), None).await.unwrap();
    // The same id in the other schema is another record, not a duplicate.
    let in_orders = orders.insert(ticket(1, 200), None).await.unwrap();
    tickets.save(in_tickets.clone(), None).await.unwrap();

    let seen_by_orders = VersionedStore::<Ticket>::find_by_id(&orders, id(1))
        .await
        .unwrap();
    assert_eq!(seen_by_orders, Some(in_orders));
    let event = Event::TicketCreated(ticketing::events::TicketCreated {
        id: id(2),
        version: 0,
        title: "t".into(),
        price: price(100),
        user_id: store_support::user(1),
    });
    tickets.insert(ticket(2, 100), Some(event)).await.unwrap();
    assert_eq!(tickets.pending(10).await.unwrap().len(), 1);
    assert!(
        orders.pending(10).await.unwrap().is_empty(),
        "outboxes are shared"
    );
}

/// Many tasks reserve one ticket at once, each with its own order: exactly one wins, every
/// other is told which order holds the ticket, and one reservation change is counted. With
/// `backstop` false the one-active-order index is removed first, so the check alone decides.
async fn concurrent_reservations_have_one_winner(
    test: &str,
    check: ReservationCheck,
    backstop: bool,
) {
    let Some((store, _database)) = pg_store(test, "orders").await else {
        return;
    };
    store.set_reservation_backstop(backstop).await.unwrap();
    const RESERVERS: u8 = 12;
    let start = Arc::new(Barrier::new(usize::from(RESERVERS)));
    let reservers: Vec<_> = (0..RESERVERS)
        .map(|n| {
            let (store, start) = (store.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                store
                    .reserve(order(10 + n, 1), price(100), check, true)
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refused = Vec::new();
    for reserver in reservers {
        match within("a reservation", reserver).await.unwrap() {
            Ok((placed, event)) => winners.push((placed, event)),
            Err(StoreError::TicketReserved {
                ticket_id,
                order_id,
            }) => {
                assert_eq!(ticket_id, id(1));
                refused.push(order_id);
            }
            Err(other) => panic!("a reservation failed: {other}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{check:?}: {} reservations won",
        winners.len()
    );
    let (winner, event) = &winners[0];
    assert_eq!(event.reservation, 1);
    assert!(
        refused.iter().all(|holder| *holder == winner.id),
        "a refusal named another order than the winner"
    );
    assert_eq!(store.reservation_count(id(1)).await.unwrap(), 1);
    assert_eq!(
        store.active_order(id(1)).await.unwrap().as_ref(),
        Some(winner)
    );
    let outbox = store.pending(100).await.unwrap();
    assert_eq!(outbox.len(), 1, "refused reservations left events behind");
    assert_eq!(outbox[0].event, Event::OrderCreated(event.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_atomic_reservations_have_one_winner() {
    let test = "concurrent_atomic_reservations_have_one_winner";
    concurrent_reservations_have_one_winner(test, ReservationCheck::Atomic, true).await;
}

/// The atomic check holds on its own: without the index, concurrent reservations still have
/// one winner (each checks for an active order only once it holds the ticket's counter lock,
/// and sees what the reservations before it committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_atomic_reservations_without_the_backstop_have_one_winner() {
    let test = "concurrent_atomic_reservations_without_the_backstop_have_one_winner";
    concurrent_reservations_have_one_winner(test, ReservationCheck::Atomic, false).await;
}

/// `racy-reserve` skips the check, but the schema's partial unique index still refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unchecked_reservations_are_stopped_by_the_index() {
    let test = "concurrent_unchecked_reservations_are_stopped_by_the_index";
    concurrent_reservations_have_one_winner(test, ReservationCheck::Unchecked, true).await;
}

/// The lost-update test: workers increment one ticket's price with update-if-current and
/// retry on conflict. No increment is lost, and the successful saves' versions are 1..=N
/// with no gap and no repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_lose_no_update() {
    let test = "concurrent_increments_lose_no_update";
    let Some((store, _database)) = pg_store(test, "tickets").await else {
        return;
    };
    const WORKERS: u64 = 4;
    const INCREMENTS: u64 = 20;
    const START_CENTS: u64 = 100;
    store.insert(ticket(1, START_CENTS), None).await.unwrap();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut versions = Vec::new();
                let mut conflicts = 0u64;
                while (versions.len() as u64) < INCREMENTS {
                    let read = VersionedStore::<Ticket>::find_by_id(&store, id(1))
                        .await
                        .unwrap()
                        .unwrap();
                    let next = Ticket {
                        price: price(read.price.cents() + 1),
                        ..read
                    };
                    match store.save(next, None).await {
                        Ok(saved_at) => versions.push(saved_at),
                        Err(error) if error.is_conflict() => conflicts += 1,
                        Err(error) => panic!("an increment failed: {error}"),
                    }
                    // Every conflict means another worker's save succeeded: bounded.
                    assert!(conflicts <= WORKERS * INCREMENTS, "livelock");
                }
                versions
            })
        })
        .collect();
    let mut all_versions = BTreeSet::new();
    for worker in workers {
        let versions = within("a worker's increments", worker).await.unwrap();
        assert!(
            versions.windows(2).all(|pair| pair[0] < pair[1]),
            "a worker's versions went backwards: {versions:?}"
        );
        for version in versions {
            assert!(
                all_versions.insert(version),
                "version {version} saved twice"
            );
        }
    }
    let total = WORKERS * INCREMENTS;
    assert_eq!(all_versions, (1..=total).collect::<BTreeSet<_>>());
    let last = VersionedStore::<Ticket>::find_by_id(&store, id(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.price.cents(), START_CENTS + total);
    assert_eq!(last.version, total);
}

/// The relay's wake-up comes from NOTIFY, not from polling: the poll interval is an hour.
#[tokio::test]
async fn outbox_writes_wake_the_relay() {
    let test = "outbox_writes_wake_the_relay";
    let Some(database) = testkit::fresh_postgres(test).await else {
        return;
    };
    let options = PgStoreOptions {
        outbox_poll: Duration::from_secs(3600),
        ..PgStoreOptions::default()
    };
    let store = PgStore::connect_with(database.url(), "tickets", options)
        .await
        .unwrap();
    // The first wait starts the listener and returns once it listens.
    within("the listener starting", store.outbox_written()).await;

    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.outbox_written().await }
    });
    let event = Event::TicketCreated(ticketing::events::TicketCreated {
        id: id(1),
        version: 0,
        title: "t".into(),
        price: price(100),
        user_id: store_support::user(1),
    });
    store.insert(ticket(1, 100), Some(event)).await.unwrap();
    within("the wake-up after an outbox write", waiting)
        .await
        .unwrap();
    assert_eq!(store.pending(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn find_by_event_finds_the_version_an_event_applies_to() {
    let test = "find_by_event_finds_the_version_an_event_applies_to";
    let Some((store, _database)) = pg_store(test, "tickets").await else {
        return;
    };
    let created = store.insert(ticket(1, 100), None).await.unwrap();
    let saved = Ticket {
        version: store.save(created.clone(), None).await.unwrap(),
        ..created
    };
    let at = |version| VersionedStore::<Ticket>::find_by_event(&store, id(1), version);
    assert_eq!(at(2).await.unwrap(), Some(saved));
    assert_eq!(at(1).await.unwrap(), None);
    assert_eq!(at(3).await.unwrap(), None);
    assert_eq!(at(0).await.unwrap(), None);
}

/// An outbox row that does not decode (written by hand here, as a bad migration or a bug
/// could) is quarantined with its error, payload and subject, and the entries after it are
/// relayed: it never stalls the relay, and the quarantine survives in its table. Over 80
/// lines because it is one story (write a bad row by hand, relay, inspect three tables) whose
/// steps only make sense in order.
#[tokio::test]
async fn an_outbox_row_that_does_not_decode_is_quarantined_and_the_relay_goes_on() {
    let test = "an_outbox_row_that_does_not_decode_is_quarantined_and_the_relay_goes_on";
    let Some((store, database)) = pg_store(test, "tickets").await else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "INSERT INTO tickets.outbox (subject, payload) \
             VALUES ('ticket:created', '{\"not\": \"a ticket\"}')",
        )
        .await
        .unwrap();
    let event = Event::TicketCreated(ticketing::events::TicketCreated {
        id: id(2),
        version: 0,
        title: "t".into(),
        price: price(100),
        user_id: store_support::user(1),
    });
    store
        .insert(ticket(2, 100), Some(event.clone()))
        .await
        .unwrap();
    let publisher = ticketing::services::fakes::RecordingPublisher::new();
    let relayed = within(
        "a relay round",
        ticketing::services::relay::relay_batch(&store, &publisher, 10),
    )
    .await
    .unwrap();
    assert_eq!(relayed, 1);
    assert_eq!(publisher.events(), vec![event]);
    assert!(store.pending(10).await.unwrap().is_empty());
    let quarantined = store.quarantined().await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].seq, 1);
    assert_eq!(quarantined[0].subject, "ticket:created");
    assert_eq!(quarantined[0].payload, r#"{"not": "a ticket"}"#);
    assert!(
        quarantined[0].error.starts_with("does not decode"),
        "{:?}",
        quarantined[0]
    );
    let reopened = PgStore::connect(database.url(), "tickets").await.unwrap();
    assert_eq!(reopened.quarantined().await.unwrap(), quarantined);
}

/// `clear` (the harness's fresh worlds reuse a schema) leaves the store empty: no record, no
/// outbox entry, no reservation count; and the store works as new afterwards.
#[tokio::test]
async fn a_cleared_store_is_empty_and_works_as_new() {
    let test = "a_cleared_store_is_empty_and_works_as_new";
    let Some((store, _database)) = pg_store(test, "orders").await else {
        return;
    };
    let created = Event::TicketCreated(ticketing::events::TicketCreated {
        id: id(1),
        version: 0,
        title: "concert 1".into(),
        price: price(100),
        user_id: ticketing::records::UserId::new("owner"),
    });
    store.insert(ticket(1, 100), Some(created)).await.unwrap();
    store
        .reserve(order(2, 1), price(100), ReservationCheck::Atomic, true)
        .await
        .unwrap();
    assert_eq!(store.pending(10).await.unwrap().len(), 2);
    store.clear().await.unwrap();
    let found = VersionedStore::<Ticket>::find_by_id(&store, id(1)).await;
    assert_eq!(found.unwrap(), None);
    let reserved = VersionedStore::<ticketing::records::Order>::find_by_id(&store, id(2)).await;
    assert_eq!(reserved.unwrap(), None);
    assert_eq!(store.reservation_count(id(1)).await.unwrap(), 0);
    assert!(store.pending(10).await.unwrap().is_empty());
    let (_, event) = store
        .reserve(order(3, 1), price(100), ReservationCheck::Atomic, false)
        .await
        .unwrap();
    assert_eq!(
        event.reservation, 1,
        "the reservation numbering starts again"
    );
}

/// The reservation backstop switch (the harness's worlds of `racy-reserve` and `course`):
/// without the index an unchecked second reservation of a ticket goes through, as the variant
/// requires; with it restored (the same schema reused for another variant, emptied first) the
/// second is refused again.
#[tokio::test]
async fn the_reservation_backstop_can_be_removed_and_restored() {
    let test = "the_reservation_backstop_can_be_removed_and_restored";
    let Some((store, _database)) = pg_store(test, "orders").await else {
        return;
    };
    let unchecked = ReservationCheck::Unchecked;
    store.set_reservation_backstop(false).await.unwrap();
    store.set_reservation_backstop(false).await.unwrap();
    for n in [2, 3] {
        store
            .reserve(order(n, 1), price(100), unchecked, false)
            .await
            .expect("without the backstop, nothing refuses an unchecked reservation");
    }
    store.clear().await.unwrap();
    store.set_reservation_backstop(true).await.unwrap();
    store.set_reservation_backstop(true).await.unwrap();
    store
        .reserve(order(4, 1), price(100), unchecked, false)
        .await
        .unwrap();
    let second = store
        .reserve(order(5, 1), price(100), unchecked, false)
        .await;
    assert!(
        matches!(second, Err(StoreError::TicketReserved { ticket_id, .. }) if ticket_id == id(1)),
        "the restored backstop let a second active order in: {second:?}"
    );
}
