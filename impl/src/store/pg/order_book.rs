//! The orders service's order book on PostgreSQL: the reservation and the cancellation
//! transactions, the active order of a ticket, and its count of reservation changes.
//!
//! The invariant: at most one active (not cancelled) order per ticket, whatever the
//! application checked (the partial unique index `orders_one_active_per_ticket` refuses a
//! second one: [`StoreError::TicketReserved`]); and a ticket's reservation changes are
//! numbered 1, 2, 3, ... in commit order. A reservation or a cancellation first locks and
//! increments the ticket's row in `ticket_reservations` (an upsert), then writes the order (and
//! its event, through the one write path), in one transaction: one ticket's changes are
//! serialised, and an atomic reservation checks for an active order while holding that lock.

use deadpool_postgres::Transaction;

use super::PgStore;
use super::errors::{Doing, PgError, WriteError};
use super::records::Write;
use super::sql::{
    ACTIVE_ORDER, ACTIVE_ORDER_ID, COUNT_RESERVATION_CHANGE, DUE_ORDERS,
    INSERT_ORDER_UNLESS_RESERVED, ORDERS, RESERVATION_COUNT,
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

    /// One attempt at [`OrderBook::reserve`], in one transaction.
    async fn try_reserve(
        &self,
        order: &Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), WriteError> {
        let doing = Doing::on("reserve", "ticket", order.ticket_id);
        let failed = |error| self.write_failed(doing, order.reserved_ticket(), error);
        let values = order.values().map_err(|why| self.corrupt(doing, why))?;
        let mut client = self.client(doing).await?;
        let transaction = client.transaction().await.map_err(failed)?;
        let reservation = count_reservation_change(&transaction, order.ticket_id)
            .await
            .map_err(failed)?;
        let event = order.created_event(price, reservation);
        let outboxed = outbox.then(|| Event::OrderCreated(event.clone()));
        let insert = match check {
            ReservationCheck::Atomic => INSERT_ORDER_UNLESS_RESERVED,
            ReservationCheck::Unchecked => ORDERS.insert,
        };
        let row = self
            .run_write(
                &transaction,
                doing,
                insert,
                values,
                outboxed.as_ref(),
                order.reserved_ticket(),
            )
            .await?;
        if !self.inserted(doing, row.as_ref())? {
            // Rolled back when `transaction` drops. The ticket's counter row is still locked
            // here, so an atomic reservation's answer cannot be overtaken.
            let holder = transaction
                .query_opt(ACTIVE_ORDER_ID, &[&order.ticket_id])
                .await
                .map_err(failed)?;
            return Err(match (check, holder) {
                (ReservationCheck::Atomic, Some(row)) => StoreError::TicketReserved {
                    ticket_id: order.ticket_id,
                    order_id: row
                        .try_get::<_, Id>(0)
                        .map_err(|error| self.failed(doing, error))?,
                },
                _ => StoreError::Duplicate {
                    kind: Order::KIND,
                    id: order.id,
                },
            }
            .into());
        }
        transaction.commit().await.map_err(failed)?;
        Ok((order.clone(), event))
    }

    /// One attempt at [`OrderBook::cancel`], in one transaction.
    async fn try_cancel(
        &self,
        order: &Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), WriteError> {
        let doing = Doing::on("cancel", Order::KIND, order.id);
        let failed = |error| self.write_failed(doing, order.reserved_ticket(), error);
        let cancelled = Order {
            status: OrderStatus::Cancelled,
            ..order.clone()
        };
        let mut client = self.client(doing).await?;
        let transaction = client.transaction().await.map_err(failed)?;
        let reservation = count_reservation_change(&transaction, order.ticket_id)
            .await
            .map_err(failed)?;
        let event = order.cancelled_event(reservation);
        let outboxed = outbox.then(|| Event::OrderCancelled(event.clone()));
        // On any error the transaction drops, rolling back the counted change.
        let version = self
            .write(
                &transaction,
                doing,
                Write::Save,
                &cancelled,
                outboxed.as_ref(),
            )
            .await?;
        transaction.commit().await.map_err(failed)?;
        Ok((
            Order {
                version,
                ..cancelled
            },
            event,
        ))
    }
}

/// Locks the ticket's reservation counter row (creating it at 1) and counts one change.
async fn count_reservation_change(
    transaction: &Transaction<'_>,
    ticket_id: Id,
) -> Result<Reservation, PgError> {
    let statement = transaction.prepare_cached(COUNT_RESERVATION_CHANGE).await?;
    let changes: i64 = transaction
        .query_one(&statement, &[&ticket_id])
        .await?
        .try_get(0)?;
    // The column's CHECK keeps it positive.
    Ok(changes.unsigned_abs())
}
