//! The tickets service's listeners (`order:created`, `order:cancelled`), driven directly with a
//! recording message handle over a memory store: the course's listener tests, and for each
//! variant the behaviour that sets it apart from the reference.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]

use std::sync::Mutex;
use std::time::Duration;

use ticketing::events::{
    Event, OrderCancelled, OrderCreated, OrderedTicket, TicketRef, TicketUpdated,
};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{OrderStatus, Record, Ticket, Timestamp, UserId, Version};
use ticketing::services::fakes::{RecordingHandle, RecordingPublisher, Settlement};
use ticketing::services::tickets::TicketsService;
use ticketing::services::tickets::listeners::{on_order_cancelled, on_order_created};
use ticketing::services::{Outcome, ServiceConfig};
use ticketing::store::{Listing, MemStore, StoreError, VersionedStore};
use ticketing::variant::Variant;

/// A write that gets in just before a save.
type Rival = Box<dyn FnOnce(&MemStore) + Send>;

/// A memory store whose next save first lets a rival writer in.
struct RacingStore {
    inner: MemStore,
    rival: Mutex<Option<Rival>>,
}

impl<R: Record> VersionedStore<R> for RacingStore
where
    MemStore: VersionedStore<R>,
{
    async fn insert(&self, record: R, event: Option<Event>) -> Result<R, StoreError> {
        self.inner.insert(record, event).await
    }
    async fn find_by_id(&self, id: Id) -> Result<Option<R>, StoreError> {
        self.inner.find_by_id(id).await
    }
    async fn save(&self, record: R, event: Option<Event>) -> Result<Version, StoreError> {
        let rival = self.rival.lock().unwrap().take();
        if let Some(rival) = rival {
            rival(&self.inner);
        }
        self.inner.save(record, event).await
    }
    async fn replace_if_current(
        &self,
        record: R,
        read_version: Version,
    ) -> Result<Version, StoreError> {
        self.inner.replace_if_current(record, read_version).await
    }
    async fn list(&self, listing: Listing) -> Result<Vec<R>, StoreError> {
        self.inner.list(listing).await
    }
}

struct Setup {
    store: MemStore,
    publisher: RecordingPublisher,
    tickets: TicketsService<MemStore, RecordingPublisher>,
    ticket_id: Id,
}

/// A tickets service (of `variant`) holding one unreserved ticket at version 0.
fn setup(variant: Variant) -> Setup {
    let store = MemStore::new();
    let ticket_id = Id::new();
    store
        .insert_now(Ticket {
            id: ticket_id,
            title: "concert".into(),
            price: Price::from_cents(2000).unwrap(),
            user_id: UserId::new("owner"),
            version: 0,
            order_id: None,
            reservation: 0,
        })
        .unwrap();
    let publisher = RecordingPublisher::new();
    let tickets = TicketsService::new(
        store.clone(),
        publisher.clone(),
        ServiceConfig::new(variant),
    );
    Setup {
        store,
        publisher,
        tickets,
        ticket_id,
    }
}

fn order_created(ticket_id: Id, order_id: Id, reservation: u64) -> OrderCreated {
    OrderCreated {
        id: order_id,
        version: 0,
        status: OrderStatus::Created,
        user_id: UserId::new("buyer"),
        expires_at: Timestamp::now(),
        ticket: OrderedTicket {
            id: ticket_id,
            price: Price::from_cents(2000).unwrap(),
        },
        reservation,
    }
}

fn order_cancelled(ticket_id: Id, order_id: Id, reservation: u64) -> OrderCancelled {
    OrderCancelled {
        id: order_id,
        version: 1,
        ticket: TicketRef { id: ticket_id },
        reservation,
    }
}

fn ticket(setup: &Setup) -> Ticket {
    setup.store.find_now::<Ticket>(setup.ticket_id).unwrap()
}

/// The `ticket:updated` events in the outbox.
fn outboxed_updates(store: &MemStore) -> Vec<TicketUpdated> {
    store
        .outbox_snapshot()
        .into_iter()
        .filter_map(|entry| match entry.event {
            Event::TicketUpdated(updated) => Some(updated),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn reserves_the_ticket_and_publishes_ticket_updated_carrying_the_order_id() {
    let setup = setup(Variant::Reference);
    let order_id = Id::new();
    let message = RecordingHandle::new(1);
    let outcome = on_order_created(
        &setup.tickets,
        &order_created(setup.ticket_id, order_id, 1),
        &message,
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(message.settlements(), vec![Settlement::Ack]);
    let reserved = ticket(&setup);
    assert_eq!(
        (reserved.order_id, reserved.version, reserved.reservation),
        (Some(order_id), 1, 1)
    );
    // Reference: the event goes through the outbox, nothing is published directly.
    let updates = outboxed_updates(&setup.store);
    assert_eq!(updates.len(), 1);
    assert_eq!(
        (updates[0].order_id, updates[0].version),
        (Some(order_id), 1)
    );
    assert!(setup.publisher.events().is_empty());
}

#[tokio::test]
async fn releases_the_ticket_on_cancel() {
    let setup = setup(Variant::Reference);
    let order_id = Id::new();
    let handle = RecordingHandle::new(1);
    on_order_created(
        &setup.tickets,
        &order_created(setup.ticket_id, order_id, 1),
        &handle,
    )
    .await
    .unwrap();
    let message = RecordingHandle::new(1);
    let outcome = on_order_cancelled(
        &setup.tickets,
        &order_cancelled(setup.ticket_id, order_id, 2),
        &message,
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(message.settlements(), vec![Settlement::Ack]);
    let released = ticket(&setup);
    assert_eq!(
        (released.order_id, released.version, released.reservation),
        (None, 2, 2)
    );
    let updates = outboxed_updates(&setup.store);
    assert_eq!(updates.len(), 2);
    assert_eq!((updates[1].order_id, updates[1].version), (None, 2));
}

#[tokio::test]
async fn no_outbox_publishes_right_after_the_save_without_a_publish_id() {
    let setup = setup(Variant::NoOutbox);
    let order_id = Id::new();
    let message = RecordingHandle::new(1);
    on_order_created(
        &setup.tickets,
        &order_created(setup.ticket_id, order_id, 1),
        &message,
    )
    .await
    .unwrap();
    assert!(setup.store.outbox_snapshot().is_empty());
    let published = setup.publisher.events_with_ids();
    assert_eq!(published.len(), 1);
    assert!(matches!(
        &published[0],
        (Event::TicketUpdated(updated), None) if updated.order_id == Some(order_id) && updated.version == 1
    ));
    assert!(message.acked());
}

#[tokio::test]
async fn no_reserve_publish_reserves_without_any_event() {
    let setup = setup(Variant::NoReservePublish);
    let order_id = Id::new();
    let message = RecordingHandle::new(1);
    on_order_created(
        &setup.tickets,
        &order_created(setup.ticket_id, order_id, 1),
        &message,
    )
    .await
    .unwrap();
    assert_eq!(ticket(&setup).order_id, Some(order_id));
    assert_eq!(ticket(&setup).version, 1);
    assert!(setup.store.outbox_snapshot().is_empty());
    assert!(setup.publisher.events().is_empty());
}

#[tokio::test]
async fn a_cancel_before_its_creation_waits_in_the_reference_and_is_applied_by_the_course() {
    // The reference: reservation 2 before 1 is a gap; it waits and changes nothing.
    let setup = setup(Variant::Reference);
    let order_id = Id::new();
    let message = RecordingHandle::new(1);
    let outcome = on_order_cancelled(
        &setup.tickets,
        &order_cancelled(setup.ticket_id, order_id, 2),
        &message,
    )
    .await
    .unwrap();
    let delay = Duration::from_millis(100);
    assert_eq!(outcome, Outcome::Waiting { delay });
    assert_eq!(message.settlements(), vec![Settlement::Nak(delay)]);
    assert_eq!(ticket(&setup).version, 0);

    // The course's listeners apply both in arrival order: the ticket stays reserved by a
    // cancelled order.
    let setup = self::setup(Variant::UnorderedOrderEvents);
    for outcome in [
        on_order_cancelled(
            &setup.tickets,
            &order_cancelled(setup.ticket_id, order_id, 2),
            &RecordingHandle::new(1),
        )
        .await
        .unwrap(),
        on_order_created(
            &setup.tickets,
            &order_created(setup.ticket_id, order_id, 1),
            &RecordingHandle::new(1),
        )
        .await
        .unwrap(),
    ] {
        assert_eq!(outcome, Outcome::Applied);
    }
    assert_eq!(ticket(&setup).order_id, Some(order_id));
}

#[tokio::test]
async fn a_duplicate_reservation_is_acked_by_the_reference_and_never_by_the_course_listener() {
    for (variant, expected, settlement) in [
        (Variant::Reference, Outcome::AlreadyApplied, Settlement::Ack),
        (
            Variant::CourseListener,
            Outcome::Failed {
                reason: "reservation change not found",
            },
            Settlement::Nak(Duration::ZERO),
        ),
    ] {
        let setup = setup(variant);
        let event = order_created(setup.ticket_id, Id::new(), 1);
        on_order_created(&setup.tickets, &event, &RecordingHandle::new(1))
            .await
            .unwrap();
        let duplicate = RecordingHandle::new(2);
        let outcome = on_order_created(&setup.tickets, &event, &duplicate)
            .await
            .unwrap();
        assert_eq!(outcome, expected, "{variant}");
        assert_eq!(duplicate.settlements(), vec![settlement], "{variant}");
        assert_eq!(ticket(&setup).version, 1, "{variant}: applied once");
    }
}

#[tokio::test]
async fn an_unknown_ticket_waits_in_the_reference_and_fails_in_the_course() {
    for (variant, waits) in [(Variant::Reference, true), (Variant::Course, false)] {
        let setup = setup(variant);
        let message = RecordingHandle::new(1);
        let outcome = on_order_created(
            &setup.tickets,
            &order_created(Id::new(), Id::new(), 1),
            &message,
        )
        .await
        .unwrap();
        if waits {
            assert!(matches!(outcome, Outcome::Waiting { .. }), "{outcome:?}");
        } else {
            assert_eq!(
                outcome,
                Outcome::Failed {
                    reason: "Ticket not found"
                }
            );
            assert_eq!(message.settlements(), vec![Settlement::Nak(Duration::ZERO)]);
        }
    }
}

#[tokio::test]
async fn an_edit_landing_between_read_and_save_is_reread_not_failed() {
    for (variant, expected) in [
        (Variant::Reference, Outcome::Applied),
        (
            Variant::ConflictNak,
            Outcome::Failed {
                reason: "version conflict",
            },
        ),
    ] {
        let setup = setup(variant);
        let store = setup.store.clone();
        let ticket_id = setup.ticket_id;
        let racing = RacingStore {
            inner: store.clone(),
            rival: Mutex::new(Some(Box::new(move |store: &MemStore| {
                // The owner's edit lands first (version 0 -> 1).
                let mut ticket = store.find_now::<Ticket>(ticket_id).unwrap();
                ticket.price = Price::from_cents(3000).unwrap();
                store.save_now(ticket).unwrap();
            }))),
        };
        let tickets =
            TicketsService::new(racing, setup.publisher.clone(), ServiceConfig::new(variant));
        let order_id = Id::new();
        let message = RecordingHandle::new(1);
        let outcome = on_order_created(&tickets, &order_created(ticket_id, order_id, 1), &message)
            .await
            .unwrap();
        assert_eq!(outcome, expected, "{variant}");
        let stored = store.find_now::<Ticket>(ticket_id).unwrap();
        if expected == Outcome::Applied {
            assert_eq!(message.settlements(), vec![Settlement::Ack]);
            assert_eq!((stored.order_id, stored.version), (Some(order_id), 2));
            assert_eq!(stored.price.cents(), 3000, "the edit is kept");
        } else {
            assert_eq!(message.settlements(), vec![Settlement::Nak(Duration::ZERO)]);
            assert_eq!((stored.order_id, stored.version), (None, 1));
        }
    }
}

#[tokio::test]
async fn an_http_edit_racing_a_reservation_rereads_and_is_rejected() {
    // SPEC.md section 1: an HTTP edit whose save conflicts re-reads and decides again, so a
    // reservation that landed meanwhile gives "Cannot edit a reserved ticket".
    let setup = setup(Variant::Reference);
    let ticket_id = setup.ticket_id;
    let order_id = Id::new();
    let racing = RacingStore {
        inner: setup.store.clone(),
        rival: Mutex::new(Some(Box::new(move |store: &MemStore| {
            let mut ticket = store.find_now::<Ticket>(ticket_id).unwrap();
            ticket.order_id = Some(order_id);
            store.save_now(ticket).unwrap();
        }))),
    };
    let tickets = TicketsService::new(racing, setup.publisher.clone(), ServiceConfig::default());
    let input = ticketing::services::tickets::TicketInput {
        title: "new".into(),
        price: Price::from_cents(1).unwrap(),
    };
    let result = ticketing::services::tickets::update_ticket(
        &tickets,
        &UserId::new("owner"),
        ticket_id,
        input,
    )
    .await;
    assert!(
        matches!(
            result,
            Err(ticketing::services::ApiError::BadRequest(
                "Cannot edit a reserved ticket"
            ))
        ),
        "{result:?}"
    );
    let stored = setup.store.find_now::<Ticket>(ticket_id).unwrap();
    assert_eq!(
        (stored.price.cents(), stored.order_id),
        (2000, Some(order_id))
    );
}
