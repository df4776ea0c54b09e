//! The tickets service's listeners (queue group `tickets-service`): `order:created` reserves
//! a ticket (sets `order_id`), `order:cancelled` releases it (clears `order_id`), each with
//! version + 1 and, when reservations are published, a `ticket:updated`.
//!
//! The reference applies a ticket's order events in the orders service's order: only the event
//! whose `reservation` is exactly the ticket's `reservation + 1`; a number already applied is
//! acknowledged, a gap waits (nak with a delay growing with the delivery count). The course's
//! listeners (`unordered-order-events`, `course`) set or clear `order_id` whatever arrives.
//!
//! These are plain async functions: one store or broker call per await, no task spawned, no
//! timer, so the harness can step them. [`TicketsService`]'s [`Listener`] impl routes each
//! delivered event to them by subject.

use crate::bus::{MessageHandle, Publisher};
use crate::events::{Event, OrderCancelled, OrderCreated, Subject};
use crate::id::Id;
use crate::records::{Reservation, Ticket};
use crate::services::listener::{Listener, terminate_unlistened};
use crate::services::outcome::{Settle, Skip};
use crate::services::tickets::{QUEUE_GROUP, TicketsService, updated_event};
use crate::services::update::{Decided, Ended, OnConflict, read_decide_save};
use crate::services::{ListenerError, Outcome, publish_after_save};
use crate::store::VersionedStore;

/// `order:created`: the ticket is reserved by the order.
pub async fn on_order_created<S, P, H>(
    service: &TicketsService<S, P>,
    event: &OrderCreated,
    message: &H,
) -> Result<Outcome, ListenerError>
where
    S: VersionedStore<Ticket>,
    P: Publisher,
    H: MessageHandle,
{
    apply_reservation_change(
        service,
        event.ticket.id,
        event.reservation,
        Some(event.id),
        message,
    )
    .await
}

/// `order:cancelled`: the ticket is released.
pub async fn on_order_cancelled<S, P, H>(
    service: &TicketsService<S, P>,
    event: &OrderCancelled,
    message: &H,
) -> Result<Outcome, ListenerError>
where
    S: VersionedStore<Ticket>,
    P: Publisher,
    H: MessageHandle,
{
    apply_reservation_change(service, event.ticket.id, event.reservation, None, message).await
}

/// What to do with a reservation change, given the ticket as read: change this ticket, or
/// settle without a write.
fn decide(
    orders_order_events: bool,
    acks_duplicates: bool,
    ticket: Option<Ticket>,
    reservation: Reservation,
) -> Decided<Ticket, Skip> {
    let Some(ticket) = ticket else {
        // Unreachable in a running system (an order needs a replica, a replica its primary);
        // decided as the model decides it.
        return Decided::Done(if orders_order_events && acks_duplicates {
            Skip::Wait
        } else {
            Skip::Fail("Ticket not found")
        });
    };
    if !orders_order_events {
        return Decided::Write(ticket);
    }
    if ticket.reservation + 1 == reservation {
        Decided::Write(ticket)
    } else if !acks_duplicates {
        // The course's listener: anything but the next change is "not found", an error.
        Decided::Done(Skip::Fail("reservation change not found"))
    } else if ticket.reservation >= reservation {
        Decided::Done(Skip::AlreadyApplied)
    } else {
        Decided::Done(Skip::Wait)
    }
}

async fn apply_reservation_change<S, P, H>(
    service: &TicketsService<S, P>,
    ticket_id: Id,
    reservation: Reservation,
    order_id: Option<Id>,
    message: &H,
) -> Result<Outcome, ListenerError>
where
    S: VersionedStore<Ticket>,
    P: Publisher,
    H: MessageHandle,
{
    let config = &service.config;
    let variant = config.variant;
    let settle = Settle::begin(message, config).await?;
    let read_and_decide = || async move {
        let found = service.store.find_by_id(ticket_id).await?;
        let decided = decide(
            variant.orders_order_events(),
            variant.acks_duplicates(),
            found,
            reservation,
        );
        Ok(match decided {
            Decided::Write(ticket) => Decided::Write(Ticket {
                order_id,
                reservation: if variant.orders_order_events() {
                    reservation
                } else {
                    ticket.reservation
                },
                ..ticket
            }),
            Decided::Done(skip) => Decided::Done(skip),
        })
    };
    // Saves the changed ticket (with its `ticket:updated` in the outbox when reservations
    // are published through it); returns the event still to publish on `no-outbox`.
    let save = |changed: Ticket| async move {
        let event = variant
            .publishes_reservations()
            .then(|| updated_event(&changed));
        let outboxed = event.clone().filter(|_| variant.uses_outbox());
        service.store.save(changed, outboxed).await?;
        Ok(event.filter(|_| !variant.uses_outbox()))
    };
    let ended = read_decide_save(
        config.conflict_attempts,
        OnConflict::for_listeners(variant),
        read_and_decide,
        save,
    )
    .await;
    if let Ended::Written(Some(event)) = &ended {
        publish_after_save::<P, ListenerError>(&service.publisher, event).await?;
    }
    settle.ended(ended).await
}

/// The `tickets-service` queue group: routes each event to the listener of its subject.
impl<S, P> Listener for TicketsService<S, P>
where
    S: VersionedStore<Ticket> + 'static,
    P: Publisher + 'static,
{
    const QUEUE_GROUP: &'static str = QUEUE_GROUP;
    const SUBJECTS: &'static [Subject] = &[Subject::OrderCreated, Subject::OrderCancelled];

    async fn handle<M: MessageHandle>(
        &self,
        event: &Event,
        message: &M,
    ) -> Result<Outcome, ListenerError> {
        match event {
            Event::OrderCreated(created) => on_order_created(self, created, message).await,
            Event::OrderCancelled(cancelled) => on_order_cancelled(self, cancelled, message).await,
            other => {
                terminate_unlistened(
                    other,
                    message,
                    "not a subject of queue group tickets-service",
                )
                .await
            }
        }
    }
}
