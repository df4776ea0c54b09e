//! The event vocabulary: four subjects and their payloads, JSON on the wire with the course's
//! field names.
//!
//! | subject | data |
//! |---|---|
//! | `ticket:created` | id, version, title, price, userId |
//! | `ticket:updated` | id, version, title, price, userId, orderId? |
//! | `order:created` | id, version, status, userId, expiresAt, ticket {id, price}, reservation |
//! | `order:cancelled` | id, version, ticket {id}, reservation |
//!
//! Decoding never panics: an unknown subject, a missing field or a wrong type is a
//! [`DecodeError`]. Unknown extra fields are ignored, so a newer publisher does not poison an
//! older listener.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::price::Price;
use crate::values::{OrderStatus, Reservation, Timestamp, Title, UserId, Version};

/// One of the four subjects events are published on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// `ticket:created`, published by the tickets service.
    TicketCreated,
    /// `ticket:updated`, published by the tickets service.
    TicketUpdated,
    /// `order:created`, published by the orders service.
    OrderCreated,
    /// `order:cancelled`, published by the orders service.
    OrderCancelled,
}

impl Subject {
    /// Every subject, in a fixed order.
    pub const ALL: [Subject; 4] = [
        Subject::TicketCreated,
        Subject::TicketUpdated,
        Subject::OrderCreated,
        Subject::OrderCancelled,
    ];

    /// The subject's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Subject::TicketCreated => "ticket:created",
            Subject::TicketUpdated => "ticket:updated",
            Subject::OrderCreated => "order:created",
            Subject::OrderCancelled => "order:cancelled",
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Subject {
    type Err = DecodeError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Subject::ALL
            .into_iter()
            .find(|subject| subject.as_str() == name)
            .ok_or_else(|| DecodeError::UnknownSubject(name.to_owned()))
    }
}

/// `ticket:created`: a new ticket, at version 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketCreated {
    /// The ticket's id.
    pub id: Id,
    /// The ticket's version (0).
    pub version: Version,
    /// Its title.
    pub title: Title,
    /// Its price.
    pub price: Price,
    /// Its owner.
    pub user_id: UserId,
}

/// `ticket:updated`: the ticket as of `version` (after an edit, a reservation or a release).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketUpdated {
    /// The ticket's id.
    pub id: Id,
    /// The version this event brings the ticket to.
    pub version: Version,
    /// Title at `version`.
    pub title: Title,
    /// Price at `version`.
    pub price: Price,
    /// The owner.
    pub user_id: UserId,
    /// The order holding the ticket at `version`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Id>,
}

/// The ticket part of `order:created`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderedTicket {
    /// The ticket's id.
    pub id: Id,
    /// The price the order was placed at.
    pub price: Price,
}

/// The ticket part of `order:cancelled`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    /// The ticket's id.
    pub id: Id,
}

/// `order:created`: an order reserved a ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    /// The order's id.
    pub id: Id,
    /// The order's version (0).
    pub version: Version,
    /// The order's status (`created`).
    pub status: OrderStatus,
    /// Who placed it.
    pub user_id: UserId,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The ticket it reserves, at the price ordered.
    pub ticket: OrderedTicket,
    /// This change's number in the ticket's sequence of reservation changes.
    pub reservation: Reservation,
}

/// `order:cancelled`: an order released its ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    /// The order's id.
    pub id: Id,
    /// The order's version after cancelling.
    pub version: Version,
    /// The ticket it released.
    pub ticket: TicketRef,
    /// This change's number in the ticket's sequence of reservation changes.
    pub reservation: Reservation,
}

/// Any event, tagged by its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// See [`TicketCreated`].
    TicketCreated(TicketCreated),
    /// See [`TicketUpdated`].
    TicketUpdated(TicketUpdated),
    /// See [`OrderCreated`].
    OrderCreated(OrderCreated),
    /// See [`OrderCancelled`].
    OrderCancelled(OrderCancelled),
}

/// Why bytes received on a subject are not an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The subject is none of the four.
    #[error("unknown subject {0:?}")]
    UnknownSubject(String),
    /// The payload is not valid JSON for the subject (bad JSON, a missing field, a wrong type).
    #[error("malformed {subject} payload: {source}")]
    Payload {
        /// The subject it arrived on.
        subject: Subject,
        /// What serde found wrong, with line and column.
        #[source]
        source: serde_json::Error,
    },
}

/// Why an event could not be encoded (only a serializer bug could cause it; the types hold
/// nothing JSON cannot represent).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {subject} event: {source}")]
pub struct EncodeError {
    subject: Subject,
    #[source]
    source: serde_json::Error,
}

impl EncodeError {
    /// An encoding failure of a `subject` event saying `why` (for fakes that stand in for a
    /// serializer that fails).
    #[cfg(feature = "testkit")]
    pub(crate) fn new(subject: Subject, why: &str) -> Self {
        Self {
            subject,
            source: <serde_json::Error as serde::ser::Error>::custom(why),
        }
    }
}

impl Event {
    /// The subject the event is published on.
    pub const fn subject(&self) -> Subject {
        match self {
            Event::TicketCreated(_) => Subject::TicketCreated,
            Event::TicketUpdated(_) => Subject::TicketUpdated,
            Event::OrderCreated(_) => Subject::OrderCreated,
            Event::OrderCancelled(_) => Subject::OrderCancelled,
        }
    }

    /// The id of the record the event is about (a ticket or an order).
    pub const fn record_id(&self) -> Id {
        match self {
            Event::TicketCreated(e) => e.id,
            Event::TicketUpdated(e) => e.id,
            Event::OrderCreated(e) => e.id,
            Event::OrderCancelled(e) => e.id,
        }
    }

    /// The ticket the event is about: its own id for a ticket event, the ticket an order
    /// reserves or releases for an order event. A listener's writes for an event touch this
    /// ticket's records only (the primary's reservation, or the replica), and the versions and
    /// reservation numbers that order a listener's work count per ticket.
    pub const fn ticket_id(&self) -> Id {
        match self {
            Event::TicketCreated(e) => e.id,
            Event::TicketUpdated(e) => e.id,
            Event::OrderCreated(e) => e.ticket.id,
            Event::OrderCancelled(e) => e.ticket.id,
        }
    }

    /// The version the event brings its record to.
    pub const fn version(&self) -> Version {
        match self {
            Event::TicketCreated(e) => e.version,
            Event::TicketUpdated(e) => e.version,
            Event::OrderCreated(e) => e.version,
            Event::OrderCancelled(e) => e.version,
        }
    }

    /// The event's publish id (`Nats-Msg-Id`): subject, record id and version. A primary
    /// publishes each version of a record once, so the id names the event, and a publisher
    /// that retries (a relay restarted after a crash) reuses it and is deduplicated.
    pub fn publish_id(&self) -> String {
        format!("{}:{}:{}", self.subject(), self.record_id(), self.version())
    }

    /// The JSON payload.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let encoded = match self {
            Event::TicketCreated(e) => serde_json::to_vec(e),
            Event::TicketUpdated(e) => serde_json::to_vec(e),
            Event::OrderCreated(e) => serde_json::to_vec(e),
            Event::OrderCancelled(e) => serde_json::to_vec(e),
        };
        encoded.map_err(|source| EncodeError {
            subject: self.subject(),
            source,
        })
    }

    /// The event that `payload` on `subject` denotes.
    pub fn decode(subject: &str, payload: &[u8]) -> Result<Self, DecodeError> {
        let subject: Subject = subject.parse()?;
        let malformed = |source| DecodeError::Payload { subject, source };
        Ok(match subject {
            Subject::TicketCreated => {
                Event::TicketCreated(serde_json::from_slice(payload).map_err(malformed)?)
            }
            Subject::TicketUpdated => {
                Event::TicketUpdated(serde_json::from_slice(payload).map_err(malformed)?)
            }
            Subject::OrderCreated => {
                Event::OrderCreated(serde_json::from_slice(payload).map_err(malformed)?)
            }
            Subject::OrderCancelled => {
                Event::OrderCancelled(serde_json::from_slice(payload).map_err(malformed)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ticket_id() -> Id {
        "5f8d0d55b54764421b7156c9".parse().unwrap()
    }

    fn order_created() -> Event {
        Event::OrderCreated(OrderCreated {
            id: "5f8d0d55b54764421b7156ca".parse().unwrap(),
            version: 0,
            status: OrderStatus::Created,
            user_id: UserId::new("user-1"),
            expires_at: Timestamp::from_unix_millis(1_795_791_600_000),
            ticket: OrderedTicket {
                id: ticket_id(),
                price: Price::from_cents(1050).unwrap(),
            },
            reservation: 3,
        })
    }

    #[test]
    fn payloads_use_the_course_field_names() {
        let updated = Event::TicketUpdated(TicketUpdated {
            id: ticket_id(),
            version: 2,
            title: "concert".into(),
            price: Price::from_cents(2000).unwrap(),
            user_id: UserId::new("user-1"),
            order_id: None,
        });
        let json: serde_json::Value = serde_json::from_slice(&updated.encode().unwrap()).unwrap();
        assert_eq!(
            json,
            json!({"id": "5f8d0d55b54764421b7156c9", "version": 2, "title": "concert",
                   "price": 20, "userId": "user-1"})
        );
        let json: serde_json::Value =
            serde_json::from_slice(&order_created().encode().unwrap()).unwrap();
        assert_eq!(
            json,
            json!({"id": "5f8d0d55b54764421b7156ca", "version": 0, "status": "created",
                   "userId": "user-1", "expiresAt": "2026-11-27T15:00:00.000Z",
                   "ticket": {"id": "5f8d0d55b54764421b7156c9", "price": 10.5},
                   "reservation": 3})
        );
    }

    #[test]
    fn every_event_round_trips() {
        let events = [
            Event::TicketCreated(TicketCreated {
                id: ticket_id(),
                version: 0,
                title: "concert".into(),
                price: Price::from_cents(1).unwrap(),
                user_id: UserId::new("u"),
            }),
            Event::TicketUpdated(TicketUpdated {
                id: ticket_id(),
                version: 7,
                title: "concert".into(),
                price: Price::from_cents(1999).unwrap(),
                user_id: UserId::new("u"),
                order_id: Some(ticket_id()),
            }),
            order_created(),
            Event::OrderCancelled(OrderCancelled {
                id: ticket_id(),
                version: 1,
                ticket: TicketRef { id: ticket_id() },
                reservation: 2,
            }),
        ];
        for event in events {
            let payload = event.encode().unwrap();
            let decoded = Event::decode(event.subject().as_str(), &payload).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        let missing_field =
            br#"{"id": "5f8d0d55b54764421b7156c9", "title": "t", "price": 1, "userId": "u"}"#;
        let wrong_type = br#"{"id": "5f8d0d55b54764421b7156c9", "version": "1", "title": "t", "price": 1, "userId": "u"}"#;
        let bad_price = br#"{"id": "5f8d0d55b54764421b7156c9", "version": 1, "title": "t", "price": -1, "userId": "u"}"#;
        let bad_id = br#"{"id": "nope", "version": 1, "title": "t", "price": 1, "userId": "u"}"#;
        for payload in [
            &missing_field[..],
            wrong_type,
            bad_price,
            bad_id,
            b"not json",
            b"",
            b"[]",
        ] {
            match Event::decode("ticket:updated", payload) {
                Err(DecodeError::Payload { subject, .. }) => {
                    assert_eq!(subject, Subject::TicketUpdated)
                }
                other => panic!(
                    "{:?} decoded to {other:?}",
                    String::from_utf8_lossy(payload)
                ),
            }
        }
        assert!(matches!(
            Event::decode("ticket:deleted", b"{}"),
            Err(DecodeError::UnknownSubject(name)) if name == "ticket:deleted"
        ));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let payload = br#"{"id": "5f8d0d55b54764421b7156c9", "version": 1,
            "ticket": {"id": "5f8d0d55b54764421b7156c9"}, "reservation": 2, "extra": true}"#;
        assert!(Event::decode("order:cancelled", payload).is_ok());
    }

    #[test]
    fn publish_ids_name_subject_record_and_version() {
        assert_eq!(
            order_created().publish_id(),
            "order:created:5f8d0d55b54764421b7156ca:0"
        );
    }
}
