//! The orders service: primary of orders and holder of the ticket replicas. Its HTTP
//! operations create, show, list and cancel orders and show a replica; its listeners (queue
//! group `orders-service`, in [`listeners`]) keep the replicas in step with the tickets
//! service.
//!
//! The invariant: an order is created only against a known replica, and in the reference at
//! most one active order holds a ticket (the order book's atomic reservation); each order
//! change counts a reservation change on its ticket and carries its event, in the same write.

use serde::Serialize;
use serde_json::Value;

use crate::bus::Publisher;
use crate::events::Event;
use crate::id::Id;
use crate::price::Price;
use crate::records::{Order, OrderStatus, TicketReplica, Timestamp, UserId, Version};
use crate::services::error::TICKET_ALREADY_RESERVED;
use crate::services::update::{Decided, Ended, OnConflict, read_decide_save};
use crate::services::{ApiError, FieldError, ServiceConfig, publish_after_save};
use crate::store::{Listing, OrderBook, ReservationCheck, StoreError, VersionedStore};

pub mod expiry;
pub mod listeners;

/// The orders service's queue group.
pub const QUEUE_GROUP: &str = "orders-service";

/// The orders service: its store (orders, reservations and replicas), its publisher (for the
/// no-outbox paths), its config.
#[derive(Debug)]
pub struct OrdersService<S, P> {
    /// The orders service's own store.
    pub store: S,
    /// Publishes events directly on `no-outbox` variants (the relay publishes otherwise).
    pub publisher: P,
    /// Variant, order expiry, backoff, bounds.
    pub config: ServiceConfig,
}

impl<S, P> OrdersService<S, P> {
    /// The service over `store`, publishing with `publisher`.
    pub fn new(store: S, publisher: P, config: ServiceConfig) -> Self {
        Self {
            store,
            publisher,
            config,
        }
    }
}

/// The ticket as shown inside an order: the replica's `{id, title, price, version}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaView {
    /// The ticket's id.
    pub id: Id,
    /// Title at `version`.
    pub title: crate::records::Title,
    /// Price at `version`.
    pub price: Price,
    /// The last version applied.
    pub version: Version,
}

impl From<TicketReplica> for ReplicaView {
    fn from(replica: TicketReplica) -> Self {
        Self {
            id: replica.id,
            title: replica.title,
            price: replica.price,
            version: replica.version,
        }
    }
}

/// An order with its ticket populated from the replica, as the course's `populate('ticket')`
/// showed it: `{id, userId, status, expiresAt, ticket, version}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// The order's id.
    pub id: Id,
    /// Who placed it.
    pub user_id: UserId,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// When it stops holding its ticket.
    pub expires_at: Timestamp,
    /// Its ticket, as the replica has it (`null` only if the replica is gone, which no
    /// operation does).
    pub ticket: Option<ReplicaView>,
    /// The order's version.
    pub version: Version,
}

impl OrderView {
    /// `order` shown with `replica`.
    pub fn new(order: Order, replica: Option<TicketReplica>) -> Self {
        Self {
            id: order.id,
            user_id: order.user_id,
            status: order.status,
            expires_at: order.expires_at,
            ticket: replica.map(ReplicaView::from),
            version: order.version,
        }
    }
}

/// Validates a `{ticketId}` body: a 24-hex-digit id, or "TicketId must be provided".
pub fn parse_order_input(body: &Value) -> Result<Id, ApiError> {
    body.as_object()
        .and_then(|object| object.get("ticketId"))
        .and_then(Value::as_str)
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(
                "ticketId",
                "TicketId must be provided",
            )])
        })
}

/// `POST /api/orders`: reserves the ticket for `user` with a new order (status `created`,
/// expiring after the configured expiry); publishes `order:created`.
pub async fn create_order<S, P>(
    service: &OrdersService<S, P>,
    user: &UserId,
    ticket_id: Id,
) -> Result<OrderView, ApiError>
where
    S: OrderBook + VersionedStore<TicketReplica>,
    P: Publisher,
{
    let variant = service.config.variant;
    let replica = VersionedStore::<TicketReplica>::find_by_id(&service.store, ticket_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let order = Order {
        id: Id::new(),
        user_id: user.clone(),
        status: OrderStatus::Created,
        expires_at: Timestamp::now().plus(service.config.order_expiry),
        ticket_id,
        version: 0,
    };
    let check = if variant.reserves_atomically() {
        ReservationCheck::Atomic
    } else {
        if service.store.active_order(ticket_id).await?.is_some() {
            return Err(ApiError::BadRequest(TICKET_ALREADY_RESERVED));
        }
        fail::fail_point!(
            crate::services::failpoints::BETWEEN_RESERVATION_CHECK_AND_INSERT,
            |_| Err(ApiError::Crashed(
                crate::services::failpoints::BETWEEN_RESERVATION_CHECK_AND_INSERT
            ))
        );
        ReservationCheck::Unchecked
    };
    let outboxed = variant.uses_outbox();
    let (order, event) = match service
        .store
        .reserve(order, replica.price, check, outboxed)
        .await
    {
        Ok(reserved) => reserved,
        Err(StoreError::TicketReserved { .. }) => {
            return Err(ApiError::BadRequest(TICKET_ALREADY_RESERVED));
        }
        Err(error) => return Err(error.into()),
    };
    if !outboxed {
        publish_after_save::<P, ApiError>(&service.publisher, &Event::OrderCreated(event)).await?;
    }
    Ok(OrderView::new(order, Some(replica)))
}

/// The order `id` if `user` placed it: 404 if there is none, 401 if it is someone else's.
async fn own_order<S, P>(
    service: &OrdersService<S, P>,
    user: &UserId,
    id: Id,
) -> Result<Order, ApiError>
where
    S: OrderBook,
{
    let found = VersionedStore::<Order>::find_by_id(&service.store, id).await?;
    owned_by(found, user)
}

/// The order found, if `user` placed it: 404 if there is none, 401 if it is someone else's.
fn owned_by(found: Option<Order>, user: &UserId) -> Result<Order, ApiError> {
    let order = found.ok_or(ApiError::NotFound)?;
    if order.user_id != *user {
        return Err(ApiError::NotAuthorized);
    }
    Ok(order)
}

async fn populate<S, P>(service: &OrdersService<S, P>, order: Order) -> Result<OrderView, ApiError>
where
    S: VersionedStore<TicketReplica>,
{
    let replica =
        VersionedStore::<TicketReplica>::find_by_id(&service.store, order.ticket_id).await?;
    Ok(OrderView::new(order, replica))
}

/// `GET /api/orders/:id`: the user's own order.
pub async fn show_order<S, P>(
    service: &OrdersService<S, P>,
    user: &UserId,
    id: Id,
) -> Result<OrderView, ApiError>
where
    S: OrderBook + VersionedStore<TicketReplica>,
{
    let order = own_order(service, user, id).await?;
    populate(service, order).await
}

/// `GET /api/orders`: the user's orders, oldest first.
pub async fn list_orders<S, P>(
    service: &OrdersService<S, P>,
    user: &UserId,
) -> Result<Vec<OrderView>, ApiError>
where
    S: OrderBook + VersionedStore<TicketReplica>,
{
    let mut orders =
        VersionedStore::<Order>::list(&service.store, Listing::OwnedBy(user.clone())).await?;
    orders.sort_by_key(|order| order.id);
    let mut views = Vec::with_capacity(orders.len());
    for order in orders {
        views.push(populate(service, order).await?);
    }
    Ok(views)
}

/// `DELETE /api/orders/:id`: cancels the user's order (idempotent: an order already cancelled
/// stays as it is, and nothing is published); publishes `order:cancelled`.
pub async fn cancel_order<S, P>(
    service: &OrdersService<S, P>,
    user: &UserId,
    id: Id,
) -> Result<Order, ApiError>
where
    S: OrderBook,
    P: Publisher,
{
    let decide = |found: Option<Order>| match owned_by(found, user) {
        Ok(order) if order.status == OrderStatus::Cancelled => Decided::Done(Ok(order)),
        Ok(order) => Decided::Write(order),
        Err(error) => Decided::Done(Err(error)),
    };
    match cancel_if(service, id, decide).await? {
        Cancel::Cancelled(order) => Ok(order),
        Cancel::Kept(kept) => kept,
    }
}

/// What [`cancel_if`] came to.
pub(crate) enum Cancel<T> {
    /// The order was cancelled now (its event written, or published on `no-outbox`).
    Cancelled(Order),
    /// The decision kept the order as it was, with this answer.
    Kept(T),
}

/// The one cancel path, the buyer's and the expiry's: reads order `id`, lets `decide` choose
/// (cancel the order as read, or keep it with an answer), and cancels through the order book
/// (`order:cancelled` with its reservation number, through the outbox). A version conflict
/// (another cancel, or any write, got there first) reads and decides again, so of two racing
/// cancels exactly one writes.
pub(crate) async fn cancel_if<S, P, T>(
    service: &OrdersService<S, P>,
    id: Id,
    decide: impl Fn(Option<Order>) -> Decided<Order, T> + Sync,
) -> Result<Cancel<T>, ApiError>
where
    S: OrderBook,
    P: Publisher,
    T: Send,
{
    let outboxed = service.config.variant.uses_outbox();
    let decide = &decide;
    let read_and_decide = || async move {
        let found = VersionedStore::<Order>::find_by_id(&service.store, id).await?;
        Ok(decide(found))
    };
    let cancel = |order: Order| service.store.cancel(order, outboxed);
    let attempts = service.config.conflict_attempts;
    match read_decide_save(attempts, OnConflict::Reread, read_and_decide, cancel).await {
        Ended::Written((cancelled, event)) => {
            if !outboxed {
                publish_after_save::<P, ApiError>(
                    &service.publisher,
                    &Event::OrderCancelled(event),
                )
                .await?;
            }
            Ok(Cancel::Cancelled(cancelled))
        }
        Ended::Decided(kept) => Ok(Cancel::Kept(kept)),
        Ended::Failed(error) => Err(error.into()),
        Ended::Conflicted { attempts, .. } => {
            tracing::error!(%id, attempts, "order cancel gave up after version conflicts");
            Err(ApiError::TooManyConflicts { attempts })
        }
    }
}

/// `GET /api/replica/tickets/:id`: the orders service's replica of a ticket (read-only, for
/// checking convergence).
pub async fn show_replica<S, P>(
    service: &OrdersService<S, P>,
    id: Id,
) -> Result<ReplicaView, ApiError>
where
    S: VersionedStore<TicketReplica>,
{
    service
        .store
        .find_by_id(id)
        .await?
        .map(ReplicaView::from)
        .ok_or(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ticket_ids_must_be_24_hex_digits() {
        let id = Id::new();
        assert_eq!(
            parse_order_input(&json!({"ticketId": id.to_string()})).unwrap(),
            id
        );
        for body in [
            json!({}),
            json!({"ticketId": ""}),
            json!({"ticketId": "abc"}),
            json!({"ticketId": 12}),
            json!("ticketId"),
        ] {
            match parse_order_input(&body) {
                Err(ApiError::Validation(errors)) => assert_eq!(
                    errors,
                    vec![FieldError::new("ticketId", "TicketId must be provided")]
                ),
                other => panic!("{body} gave {other:?}"),
            }
        }
    }
}
