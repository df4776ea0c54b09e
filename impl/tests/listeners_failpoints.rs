//! The crash points (SPEC.md section 4: "crash points as fail points"): configured to return,
//! each stops its operation right there, as a crash would, and the state left behind is the
//! one the model expects. Run with `cargo test -p ticketing --features failpoints`.
//!
//! Fail points are process-global: every test here holds a `FailScenario` (which serialises
//! them), and no other test file configures fail points.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]
#![cfg(feature = "failpoints")]

use ticketing::events::{Event, OrderCreated, OrderedTicket, TicketCreated};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{Order, OrderStatus, Ticket, TicketReplica, Timestamp, UserId};
use ticketing::services::fakes::{RecordingHandle, RecordingPublisher, Settlement};
use ticketing::services::orders::{self, OrdersService};
use ticketing::services::relay::{RelayError, relay_batch};
use ticketing::services::tickets::{self, TicketInput, TicketsService};
use ticketing::services::{ApiError, ListenerError, Outcome, ServiceConfig, failpoints};
use ticketing::store::{Listing, MemStore, VersionedStore};
use ticketing::variant::Variant;

fn price(cents: u64) -> Price {
    Price::from_cents(cents).unwrap()
}

fn input() -> TicketInput {
    TicketInput {
        title: "concert".into(),
        price: price(2000),
    }
}

#[tokio::test]
async fn ack_before_save_crashing_after_the_ack_loses_the_event() {
    let scenario = fail::FailScenario::setup();
    fail::cfg(failpoints::AFTER_ACK_BEFORE_SAVE, "return").unwrap();
    let store = MemStore::new();
    let service = OrdersService::new(
        store.clone(),
        RecordingPublisher::new(),
        ServiceConfig::new(Variant::AckBeforeSave),
    );
    let id = Id::new();
    let event = TicketCreated {
        id,
        version: 0,
        title: "concert".into(),
        price: price(1000),
        user_id: UserId::new("u"),
    };
    let message = RecordingHandle::new(1);
    let result = orders::listeners::on_ticket_created(&service, &event, &message).await;
    assert!(
        matches!(result, Err(ListenerError::Crashed(point)) if point == failpoints::AFTER_ACK_BEFORE_SAVE)
    );
    assert_eq!(
        message.settlements(),
        vec![Settlement::Ack],
        "acked, so never redelivered"
    );
    assert!(
        store.find_now::<TicketReplica>(id).is_none(),
        "and never applied"
    );
    // The reference acks after the save: the same crash point is never reached.
    let reference = OrdersService::new(
        store.clone(),
        RecordingPublisher::new(),
        ServiceConfig::default(),
    );
    let message = RecordingHandle::new(1);
    let outcome = orders::listeners::on_ticket_created(&reference, &event, &message)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    scenario.teardown();
}

#[tokio::test]
async fn no_outbox_crashing_after_the_save_loses_the_event() {
    let scenario = fail::FailScenario::setup();
    fail::cfg(failpoints::AFTER_SAVE_BEFORE_PUBLISH, "return").unwrap();
    // HTTP: the ticket is created, its ticket:created never published.
    let store = MemStore::new();
    let publisher = RecordingPublisher::new();
    let service = TicketsService::new(
        store.clone(),
        publisher.clone(),
        ServiceConfig::new(Variant::NoOutbox),
    );
    let owner = UserId::new("owner");
    let result = tickets::create_ticket(&service, &owner, input()).await;
    assert!(matches!(result, Err(ApiError::Crashed(_))));
    let created = VersionedStore::<Ticket>::list(&store, Listing::All)
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    assert!(publisher.events().is_empty());

    // Listener: the ticket is reserved, ticket:updated never published, the delivery not acked;
    // its redelivery finds the change applied and acks it: the event is gone for good.
    let ticket = &created[0];
    let event = OrderCreated {
        id: Id::new(),
        version: 0,
        status: OrderStatus::Created,
        user_id: UserId::new("buyer"),
        expires_at: Timestamp::now(),
        ticket: OrderedTicket {
            id: ticket.id,
            price: ticket.price,
        },
        reservation: 1,
    };
    let message = RecordingHandle::new(1);
    let result = tickets::listeners::on_order_created(&service, &event, &message).await;
    assert!(matches!(result, Err(ListenerError::Crashed(_))));
    assert!(message.settlements().is_empty());
    assert_eq!(
        store.find_now::<Ticket>(ticket.id).unwrap().order_id,
        Some(event.id)
    );
    fail::remove(failpoints::AFTER_SAVE_BEFORE_PUBLISH);
    let redelivery = RecordingHandle::new(2);
    let outcome = tickets::listeners::on_order_created(&service, &event, &redelivery)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::AlreadyApplied);
    assert!(
        publisher.events().is_empty(),
        "ticket:updated was never published"
    );
    scenario.teardown();
}

#[tokio::test]
async fn the_outbox_survives_the_same_crash() {
    let scenario = fail::FailScenario::setup();
    fail::cfg(failpoints::AFTER_SAVE_BEFORE_PUBLISH, "return").unwrap();
    let store = MemStore::new();
    let publisher = RecordingPublisher::new();
    let service = TicketsService::new(store.clone(), publisher.clone(), ServiceConfig::default());
    // The reference has no publish after the save: the crash point is not on its path.
    let ticket = tickets::create_ticket(&service, &UserId::new("owner"), input())
        .await
        .unwrap();
    assert_eq!(store.outbox_snapshot().len(), 1);
    assert_eq!(relay_batch(&store, &publisher, 10).await.unwrap(), 1);
    assert!(matches!(&publisher.events()[..], [Event::TicketCreated(c)] if c.id == ticket.id));
    scenario.teardown();
}

#[tokio::test]
async fn a_relay_crashing_before_marking_republishes_under_the_same_publish_ids() {
    let scenario = fail::FailScenario::setup();
    let store = MemStore::new();
    let publisher = RecordingPublisher::new();
    let service = TicketsService::new(store.clone(), publisher.clone(), ServiceConfig::default());
    let owner = UserId::new("owner");
    for _ in 0..3 {
        tickets::create_ticket(&service, &owner, input())
            .await
            .unwrap();
    }
    fail::cfg(failpoints::RELAY_AFTER_PUBLISH_BEFORE_MARK, "return").unwrap();
    assert!(matches!(
        relay_batch(&store, &publisher, 10).await,
        Err(RelayError::Crashed(_))
    ));
    assert_eq!(publisher.events().len(), 3, "published");
    assert_eq!(store.outbox_snapshot().len(), 3, "but not marked");
    fail::remove(failpoints::RELAY_AFTER_PUBLISH_BEFORE_MARK);
    // The restarted relay publishes them again; the broker drops them by publish id.
    assert_eq!(relay_batch(&store, &publisher, 10).await.unwrap(), 3);
    assert_eq!(publisher.events().len(), 3, "no duplicates stored");
    assert!(store.outbox_snapshot().is_empty());
    scenario.teardown();
}

#[tokio::test]
async fn racy_reserve_crashing_between_check_and_insert_inserts_nothing() {
    let scenario = fail::FailScenario::setup();
    fail::cfg(failpoints::BETWEEN_RESERVATION_CHECK_AND_INSERT, "return").unwrap();
    let store = MemStore::new();
    let ticket_id = Id::new();
    store
        .insert_now(TicketReplica {
            id: ticket_id,
            title: "concert".into(),
            price: price(1000),
            version: 0,
        })
        .unwrap();
    let racy = OrdersService::new(
        store.clone(),
        RecordingPublisher::new(),
        ServiceConfig::new(Variant::RacyReserve),
    );
    let result = orders::create_order(&racy, &UserId::new("buyer"), ticket_id).await;
    assert!(matches!(result, Err(ApiError::Crashed(_))));
    let orders = VersionedStore::<Order>::list(&store, Listing::All)
        .await
        .unwrap();
    assert!(orders.is_empty());
    // The atomic reservation has no such point.
    let reference = OrdersService::new(
        store.clone(),
        RecordingPublisher::new(),
        ServiceConfig::default(),
    );
    assert!(
        orders::create_order(&reference, &UserId::new("buyer"), ticket_id)
            .await
            .is_ok()
    );
    scenario.teardown();
}
