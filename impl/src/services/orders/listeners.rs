//! The orders service's listeners (queue group `orders-service`): `ticket:created` builds the
//! replica with the event's id and version; `ticket:updated` brings it to the event's version.
//!
//! The reference applies `ticket:updated` only to the replica at exactly `version - 1`
//! (update-if-current then stores `version`, the event's), acknowledges an event whose version
//! is already applied, and waits on a gap (nak with a delay growing with the delivery count).
//! The course's listener (`course-listener`, `course`) looks the replica up by event
//! (`findByEvent`) and treats "not found" as an error; `naive-version` applies whatever
//! arrives (a late v1 after v2 takes the replica back to v1) and waits for a missing replica.
//!
//! These are plain async functions: one store or broker call per await, no task spawned, no
//! timer, so the harness can step them. [`OrdersService`]'s [`Listener`] impl routes each
//! delivered event to them by subject.

use crate::bus::MessageHandle;
use crate::events::{Event, Subject, TicketCreated, TicketUpdated};
use crate::records::TicketReplica;
use crate::services::listener::{Listener, terminate_unlistened};
use crate::services::orders::{OrdersService, QUEUE_GROUP};
use crate::services::outcome::{Settle, Skip};
use crate::services::update::{Decided, OnConflict, read_decide_save};
use crate::services::{ListenerError, Outcome};
use crate::store::{StoreError, VersionedStore};

/// `ticket:created`: insert the replica at the event's version.
pub async fn on_ticket_created<S, P, H>(
    service: &OrdersService<S, P>,
    event: &TicketCreated,
    message: &H,
) -> Result<Outcome, ListenerError>
where
    S: VersionedStore<TicketReplica>,
    H: MessageHandle,
{
    let config = &service.config;
    let settle = Settle::begin(message, config).await?;
    let replica = TicketReplica {
        id: event.id,
        title: event.title.clone(),
        price: event.price,
        version: event.version,
    };
    match service.store.insert(replica, None).await {
        Ok(_) => settle.applied().await,
        // The replica exists: this creation was applied before (the primary creates a ticket
        // once, at one id).
        Err(StoreError::Duplicate { .. }) if config.variant.acks_duplicates() => {
            settle.already_applied().await
        }
        Err(StoreError::Duplicate { .. }) => settle.fail("duplicate ticket").await,
        Err(error) => settle.backend_failed(error).await,
    }
}

/// One read, then the decision, per the variant: save this replica (read at its stored
/// version) with the event's title and price, or settle without a write.
async fn read_and_decide<S, P>(
    service: &OrdersService<S, P>,
    event: &TicketUpdated,
) -> Result<Decided<TicketReplica, Skip>, StoreError>
where
    S: VersionedStore<TicketReplica>,
{
    let variant = service.config.variant;
    let store = &service.store;
    if !variant.checks_version() {
        // naive-version removes the version check and nothing else: whatever arrives is
        // applied to the replica found; a missing replica waits, as in the reference.
        return Ok(match store.find_by_id(event.id).await? {
            Some(replica) => Decided::Write(replica),
            None => Decided::Done(Skip::Wait),
        });
    }
    if !variant.acks_duplicates() {
        // The course's listener: `findByEvent`, and "Ticket not found" is an error.
        return Ok(match store.find_by_event(event.id, event.version).await? {
            Some(replica) => Decided::Write(replica),
            None => Decided::Done(Skip::Fail("Ticket not found")),
        });
    }
    Ok(match store.find_by_id(event.id).await? {
        Some(replica) if replica.version >= event.version => Decided::Done(Skip::AlreadyApplied),
        Some(replica) if replica.version + 1 == event.version => Decided::Write(replica),
        // Missing, or an older version: events before this one are still on their way.
        _ => Decided::Done(Skip::Wait),
    })
}

/// `ticket:updated`: bring the replica to the event's title, price and version.
pub async fn on_ticket_updated<S, P, H>(
    service: &OrdersService<S, P>,
    event: &TicketUpdated,
    message: &H,
) -> Result<Outcome, ListenerError>
where
    S: VersionedStore<TicketReplica>,
    H: MessageHandle,
{
    let config = &service.config;
    let settle = Settle::begin(message, config).await?;
    // Conditional on the version read, and storing the event's version: the replica does
    // not count its own saves (SPEC.md section 2).
    let save = |replica: TicketReplica| async move {
        let updated = TicketReplica {
            title: event.title.clone(),
            price: event.price,
            version: event.version,
            ..replica
        };
        service
            .store
            .replace_if_current(updated, replica.version)
            .await
    };
    let ended = read_decide_save(
        config.conflict_attempts,
        OnConflict::for_listeners(config.variant),
        || read_and_decide(service, event),
        save,
    )
    .await;
    settle.ended(ended).await
}

/// The `orders-service` queue group: routes each event to the listener of its subject.
impl<S, P> Listener for OrdersService<S, P>
where
    S: VersionedStore<TicketReplica> + 'static,
    P: Send + Sync + 'static,
{
    const QUEUE_GROUP: &'static str = QUEUE_GROUP;
    const SUBJECTS: &'static [Subject] = &[Subject::TicketCreated, Subject::TicketUpdated];

    async fn handle<M: MessageHandle>(
        &self,
        event: &Event,
        message: &M,
    ) -> Result<Outcome, ListenerError> {
        match event {
            Event::TicketCreated(created) => on_ticket_created(self, created, message).await,
            Event::TicketUpdated(updated) => on_ticket_updated(self, updated, message).await,
            other => {
                terminate_unlistened(
                    other,
                    message,
                    "not a subject of queue group orders-service",
                )
                .await
            }
        }
    }
}
