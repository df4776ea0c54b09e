//! The orders service's listeners (`ticket:created`, `ticket:updated`), driven directly with a
//! recording message handle over a memory store: the course's listener tests, and for each
//! variant the behaviour that sets it apart from the reference.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]

use std::sync::Mutex;
use std::time::Duration;

use ticketing::events::{Event, TicketCreated, TicketUpdated};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{Record, TicketReplica, UserId, Version};
use ticketing::services::fakes::{RecordingHandle, RecordingPublisher, Settlement};
use ticketing::services::orders::OrdersService;
use ticketing::services::orders::listeners::{on_ticket_created, on_ticket_updated};
use ticketing::services::{Outcome, ServiceConfig};
use ticketing::store::{Listing, MemStore, StoreError, VersionedStore};
use ticketing::variant::Variant;

/// A write that gets in just before a save.
type Rival = Box<dyn FnOnce(&MemStore) + Send>;

/// A memory store whose next save first lets a rival writer in (a hook run just before it),
/// so a version conflict happens exactly there.
struct RacingStore {
    inner: MemStore,
    rival: Mutex<Option<Rival>>,
}

impl RacingStore {
    fn new(inner: MemStore) -> Self {
        Self {
            inner,
            rival: Mutex::new(None),
        }
    }

    fn before_next_save(&self, rival: impl FnOnce(&MemStore) + Send + 'static) {
        *self.rival.lock().unwrap() = Some(Box::new(rival));
    }
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
        let rival = self.rival.lock().unwrap().take();
        if let Some(rival) = rival {
            rival(&self.inner);
        }
        self.inner.replace_if_current(record, read_version).await
    }
    async fn list(&self, listing: Listing) -> Result<Vec<R>, StoreError> {
        self.inner.list(listing).await
    }
}

fn service<S>(store: S, variant: Variant) -> OrdersService<S, RecordingPublisher> {
    OrdersService::new(
        store,
        RecordingPublisher::new(),
        ServiceConfig::new(variant),
    )
}

fn price(cents: u64) -> Price {
    Price::from_cents(cents).unwrap()
}

fn created(id: Id) -> TicketCreated {
    TicketCreated {
        id,
        version: 0,
        title: "concert".into(),
        price: price(1000),
        user_id: UserId::new("owner"),
    }
}

fn updated(id: Id, version: u64, cents: u64) -> TicketUpdated {
    TicketUpdated {
        id,
        version,
        title: "new concert".into(),
        price: price(cents),
        user_id: UserId::new("owner"),
        order_id: None,
    }
}

fn replica(store: &MemStore, id: Id) -> Option<TicketReplica> {
    store.find_now::<TicketReplica>(id)
}

/// A store holding the replica of ticket `id` at `version`.
fn store_with_replica(id: Id, version: u64) -> MemStore {
    let store = MemStore::new();
    store
        .insert_now(TicketReplica {
            id,
            title: "concert".into(),
            price: price(1000),
            version,
        })
        .unwrap();
    store
}

#[tokio::test]
async fn creates_the_replica_and_acks() {
    let store = MemStore::new();
    let orders = service(store.clone(), Variant::Reference);
    let id = Id::new();
    let message = RecordingHandle::new(1);
    let outcome = on_ticket_created(&orders, &created(id), &message)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(message.settlements(), vec![Settlement::Ack]);
    let replica = replica(&store, id).unwrap();
    assert_eq!(
        (&*replica.title, replica.price, replica.version),
        ("concert", price(1000), 0)
    );
}

#[tokio::test]
async fn updates_with_the_next_version_and_acks() {
    let id = Id::new();
    let store = store_with_replica(id, 0);
    let orders = service(store.clone(), Variant::Reference);
    let message = RecordingHandle::new(1);
    let outcome = on_ticket_updated(&orders, &updated(id, 1, 1500), &message)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(message.settlements(), vec![Settlement::Ack]);
    let replica = replica(&store, id).unwrap();
    assert_eq!(
        (&*replica.title, replica.price, replica.version),
        ("new concert", price(1500), 1)
    );
}

#[tokio::test]
async fn does_not_ack_a_skipped_version() {
    // The reference waits: a nak whose delay grows with the delivery count.
    for (delivery_count, delay) in [
        (1, Duration::from_millis(100)),
        (4, Duration::from_millis(800)),
    ] {
        let id = Id::new();
        let store = store_with_replica(id, 0);
        let orders = service(store.clone(), Variant::Reference);
        let message = RecordingHandle::new(delivery_count);
        let outcome = on_ticket_updated(&orders, &updated(id, 2, 1500), &message)
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Waiting { delay });
        assert_eq!(message.settlements(), vec![Settlement::Nak(delay)]);
        assert_eq!(
            replica(&store, id).unwrap().version,
            0,
            "the replica is untouched"
        );
    }
    // The course's listener: "Ticket not found", no ack, redelivered at once.
    let id = Id::new();
    let store = store_with_replica(id, 0);
    let orders = service(store.clone(), Variant::Course);
    let message = RecordingHandle::new(1);
    let outcome = on_ticket_updated(&orders, &updated(id, 2, 1500), &message)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed {
            reason: "Ticket not found"
        }
    );
    assert_eq!(message.settlements(), vec![Settlement::Nak(Duration::ZERO)]);
    assert_eq!(replica(&store, id).unwrap().version, 0);
}

#[tokio::test]
async fn an_update_for_a_replica_not_yet_created_waits() {
    let orders = service(MemStore::new(), Variant::Reference);
    let message = RecordingHandle::new(1);
    let outcome = on_ticket_updated(&orders, &updated(Id::new(), 1, 1500), &message)
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Waiting { .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_duplicate_update_is_acked_by_the_reference_and_never_by_the_course_listener() {
    for (variant, expected, settlement) in [
        (Variant::Reference, Outcome::AlreadyApplied, Settlement::Ack),
        (
            Variant::CourseListener,
            Outcome::Failed {
                reason: "Ticket not found",
            },
            Settlement::Nak(Duration::ZERO),
        ),
    ] {
        let id = Id::new();
        let store = store_with_replica(id, 0);
        let orders = service(store.clone(), variant);
        let event = updated(id, 1, 1500);
        let first = RecordingHandle::new(1);
        assert_eq!(
            on_ticket_updated(&orders, &event, &first).await.unwrap(),
            Outcome::Applied
        );
        let duplicate = RecordingHandle::new(2);
        let outcome = on_ticket_updated(&orders, &event, &duplicate)
            .await
            .unwrap();
        assert_eq!(outcome, expected, "{variant}");
        assert_eq!(duplicate.settlements(), vec![settlement], "{variant}");
        assert_eq!(replica(&store, id).unwrap().version, 1, "{variant}");
    }
}

#[tokio::test]
async fn a_duplicate_creation_is_acked_by_the_reference_and_never_by_the_course_listener() {
    for (variant, acked) in [(Variant::Reference, true), (Variant::CourseListener, false)] {
        let id = Id::new();
        let store = store_with_replica(id, 0);
        let orders = service(store.clone(), variant);
        let message = RecordingHandle::new(2);
        on_ticket_created(&orders, &created(id), &message)
            .await
            .unwrap();
        assert_eq!(message.acked(), acked, "{variant}");
        if !acked {
            assert_eq!(message.settlements(), vec![Settlement::Nak(Duration::ZERO)]);
        }
    }
}

#[tokio::test]
async fn naive_version_applies_out_of_order_and_stores_each_events_version() {
    let id = Id::new();
    let store = store_with_replica(id, 0);
    let orders = service(store.clone(), Variant::NaiveVersion);
    let message = RecordingHandle::new(1);
    // Version 2 arrives before version 1: applied anyway, at the event's version.
    let outcome = on_ticket_updated(&orders, &updated(id, 2, 2000), &message)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    let applied = replica(&store, id).unwrap();
    assert_eq!((applied.price, applied.version), (price(2000), 2));
    let stale = on_ticket_updated(&orders, &updated(id, 1, 1500), &RecordingHandle::new(1))
        .await
        .unwrap();
    assert_eq!(stale, Outcome::Applied);
    let replica = replica(&store, id).unwrap();
    // Back to version 1 and its price: the version regression this variant exists to show.
    assert_eq!((replica.price, replica.version), (price(1500), 1));
}

#[tokio::test]
async fn naive_version_waits_for_a_missing_replica_as_the_reference_does() {
    for variant in [Variant::Reference, Variant::NaiveVersion] {
        let orders = service(MemStore::new(), variant);
        let message = RecordingHandle::new(1);
        let outcome = on_ticket_updated(&orders, &updated(Id::new(), 1, 1500), &message)
            .await
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Waiting { .. }),
            "{variant}: {outcome:?}"
        );
        assert!(!message.acked(), "{variant}");
    }
}

#[tokio::test]
async fn the_reference_stores_the_events_version_not_its_own_count() {
    let id = Id::new();
    let store = store_with_replica(id, 0);
    let orders = service(store.clone(), Variant::Reference);
    let message = RecordingHandle::new(1);
    let outcome = on_ticket_updated(&orders, &updated(id, 1, 1500), &message)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(replica(&store, id).unwrap().version, 1);
}

#[tokio::test]
async fn a_conflict_is_reread_by_the_reference_and_fails_the_delivery_in_conflict_nak() {
    for (variant, expected, settlement) in [
        (Variant::Reference, Outcome::AlreadyApplied, Settlement::Ack),
        (
            Variant::ConflictNak,
            Outcome::Failed {
                reason: "version conflict",
            },
            Settlement::Nak(Duration::ZERO),
        ),
    ] {
        let id = Id::new();
        let inner = store_with_replica(id, 0);
        let racing = RacingStore::new(inner.clone());
        // A second delivery of the same event (to another member) saves first.
        racing.before_next_save(move |store| {
            let mut replica = store.find_now::<TicketReplica>(id).unwrap();
            replica.price = price(1500);
            store.save_now(replica).unwrap();
        });
        let orders = service(racing, variant);
        let message = RecordingHandle::new(1);
        let outcome = on_ticket_updated(&orders, &updated(id, 1, 1500), &message)
            .await
            .unwrap();
        assert_eq!(outcome, expected, "{variant}");
        assert_eq!(message.settlements(), vec![settlement], "{variant}");
        assert_eq!(replica(&inner, id).unwrap().version, 1, "{variant}");
    }
}

#[tokio::test]
async fn ack_before_save_acks_first_and_then_loses_an_event_it_cannot_apply() {
    let id = Id::new();
    let store = store_with_replica(id, 0);
    let orders = service(store.clone(), Variant::AckBeforeSave);
    let message = RecordingHandle::new(1);
    let outcome = on_ticket_updated(&orders, &updated(id, 2, 1500), &message)
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Dropped { .. }), "{outcome:?}");
    assert_eq!(message.settlements(), vec![Settlement::Ack]);
    // The applicable case still applies, with the ack before the write.
    let message = RecordingHandle::new(1);
    let outcome = on_ticket_updated(&orders, &updated(id, 1, 1500), &message)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(message.settlements(), vec![Settlement::Ack]);
    assert_eq!(replica(&store, id).unwrap().version, 1);
}

/// A store whose every call fails, as a PostgreSQL server that went away.
struct DownStore;

fn down() -> StoreError {
    StoreError::Backend {
        message: "server down".into(),
        source: None,
    }
}

impl VersionedStore<TicketReplica> for DownStore {
    async fn insert(
        &self,
        _: TicketReplica,
        _: Option<Event>,
    ) -> Result<TicketReplica, StoreError> {
        Err(down())
    }
    async fn find_by_id(&self, _: Id) -> Result<Option<TicketReplica>, StoreError> {
        Err(down())
    }
    async fn save(&self, _: TicketReplica, _: Option<Event>) -> Result<Version, StoreError> {
        Err(down())
    }
    async fn replace_if_current(
        &self,
        _: TicketReplica,
        _: Version,
    ) -> Result<Version, StoreError> {
        Err(down())
    }
    async fn list(&self, _: Listing) -> Result<Vec<TicketReplica>, StoreError> {
        Err(down())
    }
}

#[tokio::test]
async fn a_store_failure_naks_with_the_growing_delay_and_reports_the_error() {
    let orders = service(DownStore, Variant::Reference);
    let message = RecordingHandle::new(3);
    let result = on_ticket_updated(&orders, &updated(Id::new(), 1, 1500), &message).await;
    assert!(
        matches!(result, Err(ticketing::services::ListenerError::Store(_))),
        "{result:?}"
    );
    assert_eq!(
        message.settlements(),
        vec![Settlement::Nak(Duration::from_millis(400))]
    );
    let message = RecordingHandle::new(1);
    let result = on_ticket_created(&orders, &created(Id::new()), &message).await;
    assert!(result.is_err());
    assert_eq!(
        message.settlements(),
        vec![Settlement::Nak(Duration::from_millis(100))]
    );
}
