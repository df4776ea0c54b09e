//! The orders service's order book on PostgreSQL: the reservation and the cancellation, the
//! active order of a ticket, and its count of reservation changes.
//!
//! The invariant: at most one active (not cancelled) order per ticket, whatever the
//! application checked (the partial unique index `orders_one_active_per_ticket` refuses a
//! second one: [`StoreError::TicketReserved`]); and a ticket's reservation changes are
//! numbered 1, 2, 3, ... in commit order. A reservation or a cancellation is one call of a
//! server-side function (`0005_order_book_calls.sql`), one round trip, in one transaction: it
//! first locks and increments the ticket's row in `ticket_reservations` (an upsert), then
//! writes the order and its outbox entry, so one ticket's changes are serialised and an atomic
//! reservation checks for an active order while holding that lock. A refusal raises, undoing
//! the counted change; its SQLSTATE says which refusal.

use tokio_postgres::error::DbError;
use tokio_postgres::types::ToSql;

use super::PgStore;
use super::errors::{Doing, PgError, WriteError};
use super::outbox::{RESERVATION_PLACEHOLDER, SplitEvent};
use super::sql::{
    ACTIVE_ORDER, CANCEL_ORDER, DUE_ORDERS, ORDER_EXISTS, ORDER_NOT_AT_VERSION, RESERVATION_COUNT,
    RESERVE_TICKET, TICKET_RESERVED,
};
use super::tables::PgRecord;
use super::values::to_u64;
use crate::events::{Event, OrderCancelled, OrderCreated};
use crate::id::Id;
use crate::price::Price;
use crate::records::{Order, OrderStatus, Record, Reservation, Timestamp};
use crate::store::{OrderBook, ReservationCheck, StoreError};

impl OrderBook for PgStore {
    async fn active_order(&self, ticket_id: Id) -> Result<Option<Order>, StoreError> {
        self.find_active_order(ticket_id).await
    }

    async fn reserve(
        &self,
        order: Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), StoreError> {
        let doing = Doing::on("reserve", "ticket", order.ticket_id);
        let order = &order;
        self.until_settled(doing, || self.try_reserve(order, price, check, outbox))
            .await
    }

    async fn cancel(
        &self,
        order: Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), StoreError> {
        let doing = Doing::on("cancel", Order::KIND, order.id);
        let order = &order;
        self.until_settled(doing, || self.try_cancel(order, outbox))
            .await
    }

    async fn due_orders(&self, now: Timestamp, limit: usize) -> Result<Vec<Order>, StoreError> {
        let doing = Doing::all("find the due", "orders");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(doing, DUE_ORDERS, &[&now.unix_millis(), &limit])
            .await?;
        rows.iter()
            .map(|row| Order::from_row(row).map_err(|why| self.corrupt(doing, why)))
            .collect()
    }

    async fn reservation_count(&self, ticket_id: Id) -> Result<Reservation, StoreError> {
        let doing = Doing::on("count reservations of", "ticket", ticket_id);
        let row = self
            .query_opt(doing, RESERVATION_COUNT, &[&ticket_id])
            .await?;
        match row {
            None => Ok(0),
            Some(row) => {
                let changes: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
                to_u64(changes, "reservation count").map_err(|why| self.corrupt(doing, why))
            }
        }
    }
}

impl PgStore {
    /// The active order on the ticket, if any.
    pub(super) async fn find_active_order(
        &self,
        ticket_id: Id,
    ) -> Result<Option<Order>, StoreError> {
        let doing = Doing::on("find the active order on", "ticket", ticket_id);
        let row = self.query_opt(doing, ACTIVE_ORDER, &[&ticket_id]).await?;
        row.map(|row| Order::from_row(&row).map_err(|why| self.corrupt(doing, why)))
            .transpose()
    }

    /// One attempt at [`OrderBook::reserve`]: one call, one round trip.
    async fn try_reserve(
        &self,
        order: &Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), WriteError> {
        let doing = Doing::on("reserve", "ticket", order.ticket_id);
        let values = order.values().map_err(|why| self.corrupt(doing, why))?;
        let placeholder = outbox
            .then(|| Event::OrderCreated(order.created_event(price, RESERVATION_PLACEHOLDER)));
        let event = SplitEvent::around_reservation(placeholder.as_ref())
            .map_err(|why| self.corrupt(doing, why))?;
        let atomic = matches!(check, ReservationCheck::Atomic);
        let mut params: Vec<&(dyn ToSql + Sync)> = values.iter().map(as_param).collect();
        params.push(&atomic);
        params.extend(event.params());
        let client = self.client(doing).await?;
        let statement = client
            .prepare_cached(RESERVE_TICKET)
            .await
            .map_err(|error| self.failed(doing, error))?;
        let row = match client.query_one(&statement, &params).await {
            Ok(row) => row,
            Err(error) => return Err(self.reservation_refused(doing, order, error)),
        };
        let changes: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
        let reservation = to_u64(changes, "reservation").map_err(|why| self.corrupt(doing, why))?;
        Ok((order.clone(), order.created_event(price, reservation)))
    }

    /// What a failed reservation call means: the function's refusals, a second active order
    /// refused by the index (for the caller to name its holder), or the backend's error.
    fn reservation_refused(&self, doing: Doing, order: &Order, error: PgError) -> WriteError {
        match raised(&error) {
            Some((TICKET_RESERVED, holder)) => match holder.parse::<Id>() {
                Ok(order_id) => StoreError::TicketReserved {
                    ticket_id: order.ticket_id,
                    order_id,
                }
                .into(),
                Err(why) => self.corrupt(doing, why.to_string()).into(),
            },
            Some((ORDER_EXISTS, _)) => StoreError::Duplicate {
                kind: Order::KIND,
                id: order.id,
            }
            .into(),
            _ => self.write_failed(doing, order.reserved_ticket(), error),
        }
    }

    /// One attempt at [`OrderBook::cancel`]: one call, one round trip.
    async fn try_cancel(
        &self,
        order: &Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), WriteError> {
        let doing = Doing::on("cancel", Order::KIND, order.id);
        let cancelled = Order {
            status: OrderStatus::Cancelled,
            ..order.clone()
        };
        let values = cancelled.values().map_err(|why| self.corrupt(doing, why))?;
        let placeholder =
            outbox.then(|| Event::OrderCancelled(order.cancelled_event(RESERVATION_PLACEHOLDER)));
        let event = SplitEvent::around_reservation(placeholder.as_ref())
            .map_err(|why| self.corrupt(doing, why))?;
        let mut params: Vec<&(dyn ToSql + Sync)> = values.iter().map(as_param).collect();
        params.extend(event.params());
        let client = self.client(doing).await?;
        let statement = client
            .prepare_cached(CANCEL_ORDER)
            .await
            .map_err(|error| self.failed(doing, error))?;
        let row = match client.query_one(&statement, &params).await {
            Ok(row) => row,
            Err(error) => return Err(self.cancel_refused(doing, order, error)),
        };
        let number = |index: usize, what: &str| -> Result<u64, StoreError> {
            let value: i64 = row
                .try_get(index)
                .map_err(|error| self.failed(doing, error))?;
            to_u64(value, what).map_err(|why| self.corrupt(doing, why))
        };
        let reservation = number(0, "reservation")?;
        let version = number(1, "version")?;
        Ok((
            Order {
                version,
                ..cancelled
            },
            order.cancelled_event(reservation),
        ))
    }

    /// What a failed cancellation call means: an update-if-current that matched no row
    /// (the version stored now tells a missing order from a conflict, and the version read,
    /// still stored, a writer that rolled back: run again), or the backend's error.
    fn cancel_refused(&self, doing: Doing, order: &Order, error: PgError) -> WriteError {
        let Some((ORDER_NOT_AT_VERSION, stored)) = raised(&error) else {
            return self.write_failed(doing, order.reserved_ticket(), error);
        };
        if stored.is_empty() {
            return StoreError::NotFound {
                kind: Order::KIND,
                id: order.id,
            }
            .into();
        }
        match stored.parse::<u64>() {
            Ok(found) if found == order.version => WriteError::Raced,
            Ok(found) => StoreError::VersionConflict {
                kind: Order::KIND,
                id: order.id,
                expected: order.version,
                found,
            }
            .into(),
            Err(why) => self
                .corrupt(doing, format!("stored version {stored:?}: {why}"))
                .into(),
        }
    }
}

fn as_param(value: &super::values::Value) -> &(dyn ToSql + Sync) {
    value
}

/// The SQLSTATE and DETAIL of an error an order-book function raised, if it is one.
fn raised(error: &PgError) -> Option<(&str, &str)> {
    let db: &DbError = error.as_db_error()?;
    let code = db.code().code();
    [TICKET_RESERVED, ORDER_EXISTS, ORDER_NOT_AT_VERSION]
        .contains(&code)
        .then(|| (code, db.detail().unwrap_or("")))
}
