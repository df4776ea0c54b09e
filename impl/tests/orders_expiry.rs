//! Orders expire (issue 18, item 8): an order still `created` when its `expiresAt` passes is
//! cancelled by the orders service itself, as its buyer's cancel would be (status, version,
//! `order:cancelled` with its reservation number, in the outbox), once; a buyer's cancel
//! racing the expiry is decided by the order's version.
//!
//! Each check is a function over the store, run on the memory store and on PostgreSQL (a
//! fresh database; skipped, or failed under `REQUIRE_SERVICES=1`, when it is unreachable).
//! Time is not waited for: the sweep is given the instant it runs at (`expire_due(.., now)`),
//! and the races are interleaved by a store that runs the rival cancel right after the first
//! read of the order, so every run takes the same path. The running sweep is checked once,
//! end to end, waiting on the condition with a deadline.
#![cfg(not(loom))]

mod store_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use store_support::{id, pg_store, replica, user};
use ticketing::events::Event;
use ticketing::events::{OrderCancelled, OrderCreated};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{Order, OrderStatus, Reservation, TicketReplica, Timestamp, Version};
use ticketing::services::ServiceConfig;
use ticketing::services::fakes::RecordingPublisher;
use ticketing::services::orders::expiry::{expire_due, expire_order};
use ticketing::services::orders::{OrdersService, cancel_order, create_order};
use ticketing::store::{
    Listing, MemStore, OrderBook, Outbox, ReservationCheck, StoreError, VersionedStore,
};

type Service<S> = OrdersService<S, RecordingPublisher>;

fn service<S>(store: S) -> Service<S> {
    OrdersService::new(store, RecordingPublisher::new(), ServiceConfig::default())
}

/// An order placed by user 2 on a fresh replica of ticket `ticket`.
async fn placed<S>(store: &S, ticket: u8) -> Order
where
    S: OrderBook + VersionedStore<TicketReplica> + Clone,
{
    store.insert(replica(ticket, 1_000, 0), None).await.unwrap();
    let view = create_order(&service(store.clone()), &user(2), id(ticket))
        .await
        .unwrap();
    VersionedStore::<Order>::find_by_id(store, view.id)
        .await
        .unwrap()
        .unwrap()
}

/// The `order:cancelled` events of `order` waiting in the outbox.
async fn cancellations<S: Outbox>(store: &S, order: Id) -> Vec<(u64, Reservation)> {
    store
        .pending(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|entry| match entry.event {
            Event::OrderCancelled(cancelled) if cancelled.id == order => {
                Some((cancelled.version, cancelled.reservation))
            }
            _ => None,
        })
        .collect()
}

async fn stored<S: OrderBook>(store: &S, order: Id) -> Order {
    VersionedStore::<Order>::find_by_id(store, order)
        .await
        .unwrap()
        .unwrap()
}

fn just_before(at: Timestamp) -> Timestamp {
    Timestamp::from_unix_millis(at.unix_millis() - 1)
}

/// Due at its `expiresAt`, not a millisecond before; cancelled once, with version 1 and the
/// ticket's second reservation change, through the outbox; a second sweep changes nothing.
async fn an_order_past_its_expiry_is_cancelled_once<S>(store: S)
where
    S: OrderBook + VersionedStore<TicketReplica> + Outbox + Clone,
{
    let order = placed(&store, 1).await;
    let other = placed(&store, 2).await;
    let orders = service(store.clone());
    assert_eq!(
        expire_due(&orders, just_before(order.expires_at), 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(stored(&store, order.id).await.status, OrderStatus::Created);
    // The same instant for both: the later order is due too, unless placed after it.
    let due = order.expires_at.max(other.expires_at);
    assert_eq!(expire_due(&orders, due, 10).await.unwrap(), 2);
    let expired = stored(&store, order.id).await;
    assert_eq!(expired.status, OrderStatus::Cancelled);
    assert_eq!(expired.version, 1);
    assert_eq!(cancellations(&store, order.id).await, [(1, 2)]);
    assert_eq!(expire_due(&orders, due, 10).await.unwrap(), 0, "once");
    assert_eq!(cancellations(&store, order.id).await, [(1, 2)]);
    assert!(
        store.active_order(order.ticket_id).await.unwrap().is_none(),
        "the ticket is free again"
    );
}

/// A sweep in rounds smaller than what is due still expires everything due.
async fn a_sweep_goes_on_while_rounds_come_back_full<S>(store: S)
where
    S: OrderBook + VersionedStore<TicketReplica> + Outbox + Clone,
{
    let mut latest = Timestamp::from_unix_millis(0);
    for ticket in 10..15 {
        latest = latest.max(placed(&store, ticket).await.expires_at);
    }
    assert_eq!(
        expire_due(&service(store.clone()), latest, 2)
            .await
            .unwrap(),
        5
    );
    assert!(store.due_orders(latest, 10).await.unwrap().is_empty());
}

/// Orders that are not `created` are never expired: only a cancel got them there, and the
/// expiry must not cancel twice.
async fn only_created_orders_expire<S>(store: S)
where
    S: OrderBook + VersionedStore<TicketReplica> + Outbox + Clone,
{
    let order = placed(&store, 20).await;
    cancel_order(&service(store.clone()), &user(2), order.id)
        .await
        .unwrap();
    assert!(
        !expire_order(&service(store.clone()), order.id, order.expires_at)
            .await
            .unwrap()
    );
    assert_eq!(stored(&store, order.id).await.version, 1);
    assert_eq!(cancellations(&store, order.id).await, [(1, 2)]);
}

/// The buyer cancels between the expiry's read and its write: the expiry's write meets a
/// version conflict, reads again, finds the order cancelled, and writes nothing.
async fn a_buyer_cancel_after_the_expiry_read_wins<S>(store: S)
where
    S: OrderBook + VersionedStore<TicketReplica> + Outbox + Clone + 'static,
{
    let order = placed(&store, 30).await;
    let id = order.id;
    let rival =
        RivalAfterFirstRead::new(store.clone(), move |inner: S| -> BoxFuture<'static, ()> {
            Box::pin(async move {
                cancel_order(&service(inner), &user(2), id).await.unwrap();
            })
        });
    let expired = expire_order(&service(rival), id, order.expires_at)
        .await
        .unwrap();
    assert!(!expired, "the buyer's cancel came first");
    let stored = stored(&store, id).await;
    assert_eq!((stored.status, stored.version), (OrderStatus::Cancelled, 1));
    assert_eq!(
        cancellations(&store, id).await,
        [(1, 2)],
        "one cancel, one event"
    );
}

/// The expiry cancels between the buyer's read and write: the buyer's cancel reads again and
/// answers with the order as cancelled (the `DELETE` is idempotent), writing nothing.
async fn an_expiry_after_the_buyer_read_wins<S>(store: S)
where
    S: OrderBook + VersionedStore<TicketReplica> + Outbox + Clone + 'static,
{
    let order = placed(&store, 40).await;
    let (id, due) = (order.id, order.expires_at);
    let rival =
        RivalAfterFirstRead::new(store.clone(), move |inner: S| -> BoxFuture<'static, ()> {
            Box::pin(async move {
                assert!(expire_order(&service(inner), id, due).await.unwrap());
            })
        });
    let answer = cancel_order(&service(rival), &user(2), id).await.unwrap();
    assert_eq!((answer.status, answer.version), (OrderStatus::Cancelled, 1));
    assert_eq!(
        cancellations(&store, id).await,
        [(1, 2)],
        "one cancel, one event"
    );
}

/// A store that, on the first read of an order, reads it and then lets a rival run (on the
/// store itself) before answering with what it read: the interleaving "read, rival writes,
/// write" every time.
#[derive(Clone)]
struct RivalAfterFirstRead<S> {
    inner: S,
    rival: Arc<Mutex<Option<Rival<S>>>>,
}

/// What runs between the first read and its answer, on the store itself.
type Rival<S> = Box<dyn FnOnce(S) -> BoxFuture<'static, ()> + Send>;

impl<S: Clone> RivalAfterFirstRead<S> {
    fn new(inner: S, rival: impl FnOnce(S) -> BoxFuture<'static, ()> + Send + 'static) -> Self {
        Self {
            inner,
            rival: Arc::new(Mutex::new(Some(Box::new(rival)))),
        }
    }
}

impl<S: OrderBook + Clone> VersionedStore<Order> for RivalAfterFirstRead<S> {
    async fn insert(&self, record: Order, event: Option<Event>) -> Result<Order, StoreError> {
        self.inner.insert(record, event).await
    }

    async fn find_by_id(&self, id: Id) -> Result<Option<Order>, StoreError> {
        let read = VersionedStore::<Order>::find_by_id(&self.inner, id).await;
        let rival = self.rival.lock().unwrap().take();
        if let Some(rival) = rival {
            rival(self.inner.clone()).await;
        }
        read
    }

    async fn save(&self, record: Order, event: Option<Event>) -> Result<Version, StoreError> {
        self.inner.save(record, event).await
    }

    async fn replace_if_current(
        &self,
        record: Order,
        read_version: Version,
    ) -> Result<Version, StoreError> {
        self.inner.replace_if_current(record, read_version).await
    }

    async fn list(&self, listing: Listing) -> Result<Vec<Order>, StoreError> {
        VersionedStore::<Order>::list(&self.inner, listing).await
    }
}

impl<S: OrderBook + Clone> OrderBook for RivalAfterFirstRead<S> {
    async fn active_order(&self, ticket_id: Id) -> Result<Option<Order>, StoreError> {
        self.inner.active_order(ticket_id).await
    }

    async fn reserve(
        &self,
        order: Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), StoreError> {
        self.inner.reserve(order, price, check, outbox).await
    }

    async fn cancel(
        &self,
        order: Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), StoreError> {
        self.inner.cancel(order, outbox).await
    }

    async fn reservation_count(&self, ticket_id: Id) -> Result<Reservation, StoreError> {
        self.inner.reservation_count(ticket_id).await
    }
}

macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(ticketing::store::MemStore::new()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    let test = concat!("orders_expiry::", stringify!($check));
                    let Some((store, _database)) = super::pg_store(test, "orders").await else {
                        return;
                    };
                    super::$check(store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    an_order_past_its_expiry_is_cancelled_once,
    a_sweep_goes_on_while_rounds_come_back_full,
    only_created_orders_expire,
    a_buyer_cancel_after_the_expiry_read_wins,
    an_expiry_after_the_buyer_read_wins,
);

/// The running assembly expires orders by itself: a short expiry and sweep, the order
/// cancelled (and its ticket released in the tickets service) without anyone asking.
#[tokio::test]
async fn a_running_service_expires_abandoned_orders_by_itself() {
    use ticketing::bus::EmbeddedBus;
    use ticketing::services::app::{AppOptions, start};
    use ticketing::services::auth::SessionKey;
    use ticketing::services::tickets::TicketsService;
    use ticketing::services::tickets::{TicketInput, create_ticket, show_ticket};

    let key = SessionKey::new(&[7; 32]);
    let mut options = AppOptions::new(key.clone(), ticketing::variant::Variant::Reference);
    options.listen = "127.0.0.1:0".parse().unwrap();
    options.config.order_expiry = Duration::from_millis(300);
    options.config.expiry_sweep = Duration::from_millis(20);
    let (tickets_store, orders_store, bus) = (MemStore::new(), MemStore::new(), EmbeddedBus::new());
    let app = start(
        options.clone(),
        tickets_store.clone(),
        orders_store.clone(),
        bus.clone(),
    )
    .await
    .unwrap();
    let tickets = TicketsService::new(tickets_store.clone(), bus.clone(), options.config.clone());
    let input =
        TicketInput::from_json(&serde_json::json!({"title": "concert", "price": 10})).unwrap();
    let ticket = create_ticket(&tickets, &user(1), input).await.unwrap();
    let orders = OrdersService::new(orders_store.clone(), bus.clone(), options.config.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        match create_order(&orders, &user(2), ticket.id).await {
            Ok(view) => break view,
            // The replica arrives through the bus.
            Err(_) => {
                assert!(tokio::time::Instant::now() < deadline, "no replica");
                tokio::task::yield_now().await;
            }
        }
    };
    loop {
        let order = stored(&orders_store, view.id).await;
        let shown = show_ticket(&tickets, ticket.id).await.unwrap();
        if order.status == OrderStatus::Cancelled && shown.order_id.is_none() && shown.version == 2
        {
            assert_eq!(order.version, 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order was not expired and its ticket released: {order:?}, {shown:?}"
        );
        tokio::task::yield_now().await;
    }
    app.shutdown().await;
}
