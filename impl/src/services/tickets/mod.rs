//! The tickets service: primary of tickets. Its HTTP operations create, edit, show and list
//! tickets; its listeners (queue group `tickets-service`, in [`listeners`]) reserve and release
//! tickets on `order:created` / `order:cancelled`.
//!
//! The invariant: every change to a ticket goes through update-if-current and carries its
//! event (`ticket:created` at version 0, `ticket:updated` at the new version), written to the
//! outbox in the same write (or, on `no-outbox` variants, published right after the save).

use serde_json::Value;

use crate::bus::Publisher;
use crate::events::{Event, TicketCreated, TicketUpdated};
use crate::id::Id;
use crate::price::Price;
use crate::records::{Ticket, Title, UserId};
use crate::services::error::RESERVED_TICKET_EDIT;
use crate::services::update::{Decided, Ended, OnConflict, read_decide_save};
use crate::services::{ApiError, FieldError, ServiceConfig, publish_after_save};
use crate::store::{Listing, VersionedStore};

pub mod listeners;

/// The tickets service's queue group.
pub const QUEUE_GROUP: &str = "tickets-service";

/// The longest title accepted, in characters after trimming.
pub const TITLE_MAX_CHARS: usize = 200;

/// The tickets service: its store, its publisher (for the no-outbox paths), its config.
#[derive(Debug)]
pub struct TicketsService<S, P> {
    /// The tickets service's own store (primary of tickets).
    pub store: S,
    /// Publishes events directly on `no-outbox` variants (the relay publishes otherwise).
    pub publisher: P,
    /// Variant, backoff, bounds.
    pub config: ServiceConfig,
}

impl<S, P> TicketsService<S, P> {
    /// The service over `store`, publishing with `publisher`.
    pub fn new(store: S, publisher: P, config: ServiceConfig) -> Self {
        Self {
            store,
            publisher,
            config,
        }
    }
}

/// A valid `{title, price}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketInput {
    /// The title, trimmed, 1 to [`TITLE_MAX_CHARS`] characters.
    pub title: Title,
    /// The price.
    pub price: Price,
}

impl TicketInput {
    /// Validates a JSON body, reporting every invalid field at once (a body that is not an
    /// object has no fields).
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let field = |name| body.as_object().and_then(|object| object.get(name));
        let title = parse_title(field("title"));
        let price = parse_price(field("price"));
        match (title, price) {
            (Ok(title), Ok(price)) => Ok(Self { title, price }),
            (title, price) => Err(ApiError::Validation(
                [title.err(), price.err()].into_iter().flatten().collect(),
            )),
        }
    }
}

fn parse_title(value: Option<&Value>) -> Result<Title, FieldError> {
    let title = match value {
        None | Some(Value::Null) => return Err(FieldError::new("title", "Title is required")),
        Some(Value::String(title)) => title.trim(),
        Some(_) => return Err(FieldError::new("title", "Title must be a string")),
    };
    if title.is_empty() {
        return Err(FieldError::new("title", "Title is required"));
    }
    if title.chars().count() > TITLE_MAX_CHARS {
        return Err(FieldError::new(
            "title",
            format!("Title must be at most {TITLE_MAX_CHARS} characters"),
        ));
    }
    Ok(title.into())
}

fn parse_price(value: Option<&Value>) -> Result<Price, FieldError> {
    match value {
        Some(Value::Number(number)) => Price::from_json_number(number)
            .map_err(|error| FieldError::new("price", error.to_string())),
        // The course's `isFloat({ gt: 0 })` said this for anything that is not a positive
        // number, a missing price included.
        _ => Err(FieldError::new("price", "Price must be greater than 0")),
    }
}

/// The `ticket:updated` event for `ticket` as it will be once saved (at version + 1).
pub fn updated_event(ticket: &Ticket) -> Event {
    Event::TicketUpdated(TicketUpdated {
        id: ticket.id,
        version: ticket.version + 1,
        title: ticket.title.clone(),
        price: ticket.price,
        user_id: ticket.user_id.clone(),
        order_id: ticket.order_id,
    })
}

/// `POST /api/tickets`: a new ticket owned by `user`, at version 0; publishes
/// `ticket:created`.
pub async fn create_ticket<S, P>(
    service: &TicketsService<S, P>,
    user: &UserId,
    input: TicketInput,
) -> Result<Ticket, ApiError>
where
    S: VersionedStore<Ticket>,
    P: Publisher,
{
    let ticket = Ticket {
        id: Id::new(),
        title: input.title,
        price: input.price,
        user_id: user.clone(),
        version: 0,
        order_id: None,
        reservation: 0,
    };
    let event = Event::TicketCreated(TicketCreated {
        id: ticket.id,
        version: 0,
        title: ticket.title.clone(),
        price: ticket.price,
        user_id: ticket.user_id.clone(),
    });
    let outboxed = service.config.variant.uses_outbox();
    let created = service
        .store
        .insert(ticket, outboxed.then(|| event.clone()))
        .await?;
    if !outboxed {
        publish_after_save::<P, ApiError>(&service.publisher, &event).await?;
    }
    Ok(created)
}

/// `PUT /api/tickets/:id`: the course's checks in its order (not found, reserved, not the
/// owner), then update-if-current; publishes `ticket:updated`. A conflicting save re-reads and
/// decides again, so a reservation that landed meanwhile is reported as such.
pub async fn update_ticket<S, P>(
    service: &TicketsService<S, P>,
    user: &UserId,
    id: Id,
    input: TicketInput,
) -> Result<Ticket, ApiError>
where
    S: VersionedStore<Ticket>,
    P: Publisher,
{
    let variant = service.config.variant;
    let outboxed = variant.uses_outbox();
    let input = &input;
    let read_and_decide = || async move {
        let Some(ticket) = service.store.find_by_id(id).await? else {
            return Ok(Decided::Done(ApiError::NotFound));
        };
        if variant.rejects_reserved_edits() && ticket.order_id.is_some() {
            return Ok(Decided::Done(ApiError::BadRequest(RESERVED_TICKET_EDIT)));
        }
        if ticket.user_id != *user {
            return Ok(Decided::Done(ApiError::NotAuthorized));
        }
        Ok(Decided::Write(Ticket {
            title: input.title.clone(),
            price: input.price,
            ..ticket
        }))
    };
    let save = |edited: Ticket| async move {
        let event = updated_event(&edited);
        let version = service
            .store
            .save(edited.clone(), outboxed.then(|| event.clone()))
            .await?;
        Ok((Ticket { version, ..edited }, event))
    };
    let attempts = service.config.conflict_attempts;
    match read_decide_save(attempts, OnConflict::Reread, read_and_decide, save).await {
        Ended::Written((saved, event)) => {
            if !outboxed {
                publish_after_save::<P, ApiError>(&service.publisher, &event).await?;
            }
            Ok(saved)
        }
        Ended::Decided(error) => Err(error),
        Ended::Failed(error) => Err(error.into()),
        Ended::Conflicted { attempts, .. } => {
            tracing::error!(%id, attempts, "ticket edit gave up after version conflicts");
            Err(ApiError::TooManyConflicts { attempts })
        }
    }
}

/// `GET /api/tickets/:id`.
pub async fn show_ticket<S, P>(service: &TicketsService<S, P>, id: Id) -> Result<Ticket, ApiError>
where
    S: VersionedStore<Ticket>,
{
    service
        .store
        .find_by_id(id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /api/tickets`: the unreserved tickets, oldest first (ids sort by creation time).
pub async fn list_tickets<S, P>(service: &TicketsService<S, P>) -> Result<Vec<Ticket>, ApiError>
where
    S: VersionedStore<Ticket>,
{
    let mut tickets = service.store.list(Listing::Unreserved).await?;
    tickets.sort_by_key(|ticket| ticket.id);
    Ok(tickets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(body: Value) -> Vec<FieldError> {
        match TicketInput::from_json(&body) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("{body} gave {other:?}"),
        }
    }

    #[test]
    fn valid_input_is_trimmed_and_exact() {
        let input = TicketInput::from_json(&json!({"title": "  concert ", "price": 10.5})).unwrap();
        assert_eq!(&*input.title, "concert");
        assert_eq!(input.price.cents(), 1050);
    }

    #[test]
    fn every_invalid_field_is_reported_with_the_course_messages() {
        let both = errors(json!({}));
        assert_eq!(
            both,
            vec![
                FieldError::new("title", "Title is required"),
                FieldError::new("price", "Price must be greater than 0"),
            ]
        );
        assert_eq!(errors(json!([1, 2])), both);
        assert_eq!(errors(json!({"title": null, "price": null})), both);
        assert_eq!(
            errors(json!({"title": "   ", "price": 10})),
            vec![FieldError::new("title", "Title is required")]
        );
        assert_eq!(
            errors(json!({"title": "t", "price": -10})),
            vec![FieldError::new("price", "Price must be greater than 0")]
        );
        assert_eq!(
            errors(json!({"title": "t", "price": "10"})),
            vec![FieldError::new("price", "Price must be greater than 0")]
        );
        assert_eq!(
            errors(json!({"title": "t", "price": 10.001})),
            vec![FieldError::new(
                "price",
                "Price must have at most two decimals"
            )]
        );
        assert_eq!(
            errors(json!({"title": "t", "price": 1e9})),
            vec![FieldError::new("price", "Price must be at most 1000000")]
        );
        assert_eq!(
            errors(json!({"title": 5, "price": 1})),
            vec![FieldError::new("title", "Title must be a string")]
        );
        assert_eq!(
            errors(json!({"title": "x".repeat(201), "price": 1})),
            vec![FieldError::new(
                "title",
                "Title must be at most 200 characters"
            )]
        );
        assert!(TicketInput::from_json(&json!({"title": "é".repeat(200), "price": 1})).is_ok());
    }
}
