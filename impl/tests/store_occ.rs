//! The course's two optimistic-concurrency tests (`ticket.test.ts`: "implements optimistic
//! concurrency control" and "increments the version number on multiple saves"), run
//! unchanged against every backend: MemStore and PgStore; and the replica's write
//! (`replace_if_current`: conditional on the version read, storing the event's version).
#![cfg(not(loom))]

mod store_support;

use store_support::{order, pg_store, price, replica, ticket};
use ticketing::records::{Order, Ticket, TicketReplica};
use ticketing::store::{MemStore, OrderBook, ReservationCheck, StoreError, VersionedStore};

/// Fetch a ticket twice, change each copy, save both: the first save wins, the second fails
/// with a version conflict naming both versions, and the stored ticket is the first copy.
async fn second_save_of_a_twice_fetched_ticket_fails(store: &impl VersionedStore<Ticket>) {
    let created = store.insert(ticket(1, 500), None).await.unwrap();
    assert_eq!(created.version, 0);
    let first = store.find_by_id(created.id).await.unwrap().unwrap();
    let second = store.find_by_id(created.id).await.unwrap().unwrap();
    let first = Ticket {
        price: price(1000),
        ..first
    };
    let second = Ticket {
        price: price(1500),
        ..second
    };

    let saved_at = store.save(first.clone(), None).await.unwrap();
    assert_eq!(saved_at, 1);
    let saved = Ticket {
        version: saved_at,
        ..first
    };
    match store.save(second, None).await {
        Err(StoreError::VersionConflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (0, 1)),
        other => panic!("the second save of version 0 gave {other:?}"),
    }
    let stored = store.find_by_id(created.id).await.unwrap().unwrap();
    assert_eq!(stored, saved, "the losing save changed the ticket");
}

/// Versions go 0, 1, 2 on successive saves, for tickets and for orders (a cancellation is
/// a save too).
async fn versions_increment_on_successive_saves<S>(store: &S)
where
    S: VersionedStore<Ticket> + OrderBook,
{
    let mut ticket = store.insert(ticket(2, 500), None).await.unwrap();
    assert_eq!(ticket.version, 0);
    for expected in 1..=2 {
        ticket.version = store.save(ticket.clone(), None).await.unwrap();
        assert_eq!(ticket.version, expected);
        let stored = VersionedStore::<Ticket>::find_by_id(store, ticket.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.version, expected);
    }

    let (placed, _) = store
        .reserve(order(3, 2), price(500), ReservationCheck::Atomic, false)
        .await
        .unwrap();
    assert_eq!(placed.version, 0);
    let saved = Order {
        version: VersionedStore::<Order>::save(store, placed.clone(), None)
            .await
            .unwrap(),
        ..placed
    };
    assert_eq!(saved.version, 1);
    let (cancelled, event) = store.cancel(saved, false).await.unwrap();
    assert_eq!((cancelled.version, event.version), (2, 2));
    let stored = VersionedStore::<Order>::find_by_id(store, cancelled.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, cancelled);
}

/// A replica's write stores the version it carries (the event's, here v2 over v0, and then
/// v1 over v2: it can go down, which only a design without the version check asks for), only
/// if the stored version is still the one read; otherwise a conflict that changes nothing,
/// and a missing replica is not found.
async fn a_replica_write_stores_the_events_version_if_current(
    store: &impl VersionedStore<TicketReplica>,
) {
    let inserted = store.insert(replica(4, 500, 0), None).await.unwrap();
    let v2 = TicketReplica {
        price: price(700),
        version: 2,
        ..inserted.clone()
    };
    let written = store.replace_if_current(v2.clone(), 0).await.unwrap();
    assert_eq!(written, 2);
    let stale = TicketReplica {
        price: price(600),
        version: 1,
        ..inserted.clone()
    };
    match store.replace_if_current(stale.clone(), 0).await {
        Err(StoreError::VersionConflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (0, 2)),
        other => panic!("a write read at v0 over v2 gave {other:?}"),
    }
    assert_eq!(store.find_by_id(inserted.id).await.unwrap(), Some(v2));
    let lowered = store.replace_if_current(stale.clone(), 2).await.unwrap();
    assert_eq!(lowered, 1);
    assert_eq!(store.find_by_id(inserted.id).await.unwrap(), Some(stale));
    let missing = replica(5, 500, 1);
    assert!(matches!(
        store.replace_if_current(missing, 0).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn memstore_a_replica_write_stores_the_events_version_if_current() {
    a_replica_write_stores_the_events_version_if_current(&MemStore::new()).await;
}

#[tokio::test]
async fn pgstore_a_replica_write_stores_the_events_version_if_current() {
    let test = "pgstore_a_replica_write_stores_the_events_version_if_current";
    let Some((store, _database)) = pg_store(test, "orders").await else {
        return;
    };
    a_replica_write_stores_the_events_version_if_current(&store).await;
}

#[tokio::test]
async fn memstore_second_save_of_a_twice_fetched_ticket_fails() {
    second_save_of_a_twice_fetched_ticket_fails(&MemStore::new()).await;
}

#[tokio::test]
async fn memstore_versions_increment_on_successive_saves() {
    versions_increment_on_successive_saves(&MemStore::new()).await;
}

#[tokio::test]
async fn pgstore_second_save_of_a_twice_fetched_ticket_fails() {
    let test = "pgstore_second_save_of_a_twice_fetched_ticket_fails";
    let Some((store, _database)) = pg_store(test, "tickets").await else {
        return;
    };
    second_save_of_a_twice_fetched_ticket_fails(&store).await;
}

#[tokio::test]
async fn pgstore_versions_increment_on_successive_saves() {
    let test = "pgstore_versions_increment_on_successive_saves";
    let Some((store, _database)) = pg_store(test, "orders").await else {
        return;
    };
    versions_increment_on_successive_saves(&store).await;
}
