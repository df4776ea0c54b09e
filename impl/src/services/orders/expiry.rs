//! Orders expire: an order still `created` when its `expiresAt` passes is cancelled by the
//! orders service itself, exactly as its buyer's cancel would (status `cancelled`, version + 1,
//! `order:cancelled` with its reservation number through the outbox), so its ticket is free
//! again.
//!
//! The invariant: an order is cancelled once, whoever notices first. The expiry goes through
//! the buyer's cancel path (`cancel_if`, one read-decide-save): it decides on the order as it
//! reads it (still `created`, and due), and the order book's update-if-current write lets only
//! one of racing cancels through (another process's expiry, the buyer's `DELETE`); the loser
//! reads again, finds the order cancelled, and writes nothing. The sweep reads the due orders
//! and expires each; several processes may sweep the same store at once.

use tokio_util::sync::CancellationToken;

use super::{Cancel, OrdersService, cancel_if};
use crate::bus::{Publisher, QueueGroup};
use crate::id::Id;
use crate::records::{Order, OrderStatus, Timestamp};
use crate::services::ApiError;
use crate::services::update::{Decided, counted_as};
use crate::store::OrderBook;

/// Orders read per sweep round (a sweep goes on while rounds come back full).
pub const SWEEP_BATCH: usize = 256;

/// Cancels order `id` if, as read, it is still `created` and due at `now`. Whether this call
/// cancelled it (false: it was not due, not `created`, gone, or cancelled by someone else
/// first).
pub async fn expire_order<S, P>(
    service: &OrdersService<S, P>,
    id: Id,
    now: Timestamp,
) -> Result<bool, ApiError>
where
    S: OrderBook,
    P: Publisher,
{
    let decide = |found: Option<Order>| match found {
        Some(order) if order.status == OrderStatus::Created && order.expires_at <= now => {
            Decided::Write(order)
        }
        _ => Decided::Done(()),
    };
    let cancelled = counted_as(
        QueueGroup::from(crate::metrics::ORIGIN_EXPIRY),
        cancel_if(service, id, decide),
    )
    .await?;
    match cancelled {
        Cancel::Cancelled(order) => {
            crate::metrics::order_expired();
            tracing::info!(order = %order.id, ticket = %order.ticket_id, "order expired");
            Ok(true)
        }
        Cancel::Kept(()) => Ok(false),
    }
}

/// One sweep: expires every order due at `now`, `batch` at a time. How many this call
/// cancelled.
pub async fn expire_due<S, P>(
    service: &OrdersService<S, P>,
    now: Timestamp,
    batch: usize,
) -> Result<usize, ApiError>
where
    S: OrderBook,
    P: Publisher,
{
    let batch = batch.max(1);
    let mut expired = 0;
    loop {
        let due = service.store.due_orders(now, batch).await?;
        let full = due.len() == batch;
        let mut expired_now = 0;
        for order in due {
            if expire_order(service, order.id, now).await? {
                expired_now += 1;
            }
        }
        expired += expired_now;
        // A full round may hide more. Each further round cancels at least one order (else
        // it stops), so the sweep ends: orders another process cancels leave the list too.
        if !full || expired_now == 0 {
            return Ok(expired);
        }
    }
}

/// Sweeps every [`crate::services::ServiceConfig::expiry_sweep`] until `shutdown`; a failed
/// sweep (a backend down) is logged and tried again at the next one.
pub async fn run_expiry<S, P>(service: &OrdersService<S, P>, shutdown: CancellationToken)
where
    S: OrderBook,
    P: Publisher,
{
    loop {
        if let Err(error) = expire_due(service, Timestamp::now(), SWEEP_BATCH).await {
            tracing::warn!(%error, "order expiry sweep failed; trying again at the next one");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(service.config.expiry_sweep) => {}
        }
    }
}
