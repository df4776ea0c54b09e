//! The records the two services store (the small types they are made of live in
//! [`crate::values`], shared with the events, and are re-exported here).
//!
//! Every record carries a `version`. The primary of a record (the service that owns it)
//! increments the version on every change and publishes an event carrying the new version;
//! nobody else increments it. The orders service's [`TicketReplica`] takes its version from the
//! events it applies. Titles and user ids are shared, immutable strings (`Arc<str>`), so copying
//! a record never allocates.

use crate::events::{OrderCancelled, OrderCreated, OrderedTicket, TicketRef};
use crate::id::Id;
use crate::price::Price;
pub use crate::values::{OrderStatus, Reservation, Timestamp, Title, UserId, Version};

/// A ticket as its primary, the tickets service, stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The ticket's id, shared with its replica.
    pub id: Id,
    /// Title, as given by its owner.
    pub title: Title,
    /// Current price.
    pub price: Price,
    /// The owner: the only user who may edit it.
    pub user_id: UserId,
    /// Incremented on every change: edit, reservation, release.
    pub version: Version,
    /// The order currently holding the ticket, if any. A reserved ticket cannot be edited.
    pub order_id: Option<Id>,
    /// The last reservation change applied (see [`Reservation`]).
    pub reservation: Reservation,
}

/// The orders service's copy of a ticket, kept in sync by `ticket:created`/`ticket:updated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketReplica {
    /// The primary's id.
    pub id: Id,
    /// The primary's title at `version`.
    pub title: Title,
    /// The primary's price at `version`.
    pub price: Price,
    /// The version of the last event applied (the replica does not count its own saves).
    pub version: Version,
}

/// An order, as its primary, the orders service, stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// The order's id.
    pub id: Id,
    /// Who placed it: the only user who may see or cancel it.
    pub user_id: UserId,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// When an unpaid order stops holding its ticket.
    pub expires_at: Timestamp,
    /// The ticket it reserves.
    pub ticket_id: Id,
    /// Incremented on every change.
    pub version: Version,
}

impl Order {
    /// `order:created` for this order as the reservation inserts it, placed at `price`, with
    /// `reservation` its number in the ticket's reservation changes.
    pub fn created_event(&self, price: Price, reservation: Reservation) -> OrderCreated {
        OrderCreated {
            id: self.id,
            version: self.version,
            status: self.status,
            user_id: self.user_id.clone(),
            expires_at: self.expires_at,
            ticket: OrderedTicket {
                id: self.ticket_id,
                price,
            },
            reservation,
        }
    }

    /// `order:cancelled` for cancelling this order as read: the cancel stores it at version + 1,
    /// the version the event carries (it is built before the write, which stores it in the
    /// outbox), with `reservation` its number in the ticket's reservation changes.
    pub fn cancelled_event(&self, reservation: Reservation) -> OrderCancelled {
        OrderCancelled {
            id: self.id,
            version: self.version + 1,
            ticket: TicketRef { id: self.ticket_id },
            reservation,
        }
    }
}

/// What every versioned record offers the store.
pub trait Record: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The record's kind, for messages and table names.
    const KIND: &'static str;
    /// The record's id.
    fn id(&self) -> Id;
    /// The record's version.
    fn version(&self) -> Version;
    /// Sets the version (the store does this on save; nobody else should).
    fn set_version(&mut self, version: Version);
}

macro_rules! versioned_record {
    ($record:ty, $kind:literal) => {
        impl Record for $record {
            const KIND: &'static str = $kind;
            fn id(&self) -> Id {
                self.id
            }
            fn version(&self) -> Version {
                self.version
            }
            fn set_version(&mut self, version: Version) {
                self.version = version;
            }
        }
    };
}

versioned_record!(Ticket, "ticket");
versioned_record!(TicketReplica, "ticket replica");
versioned_record!(Order, "order");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_like_javascript_iso_strings() {
        let t = Timestamp::from_unix_millis(1_795_791_600_123);
        assert_eq!(t.to_string(), "2026-11-27T15:00:00.123Z");
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-27T15:00:00.123Z\""
        );
    }

    fn order(version: Version) -> Order {
        Order {
            id: Id::from_bytes([1; 12]),
            user_id: UserId::new("buyer"),
            status: OrderStatus::Created,
            expires_at: Timestamp::from_unix_millis(1_795_791_600_123),
            ticket_id: Id::from_bytes([2; 12]),
            version,
        }
    }

    #[test]
    fn an_order_created_event_carries_the_order_as_inserted() {
        let price = Price::from_cents(2_500).unwrap();
        let event = order(0).created_event(price, 3);
        assert_eq!(
            event,
            OrderCreated {
                id: Id::from_bytes([1; 12]),
                version: 0,
                status: OrderStatus::Created,
                user_id: UserId::new("buyer"),
                expires_at: Timestamp::from_unix_millis(1_795_791_600_123),
                ticket: OrderedTicket {
                    id: Id::from_bytes([2; 12]),
                    price,
                },
                reservation: 3,
            }
        );
    }

    #[test]
    fn an_order_cancelled_event_carries_the_version_the_cancel_stores() {
        assert_eq!(
            order(4).cancelled_event(7),
            OrderCancelled {
                id: Id::from_bytes([1; 12]),
                version: 5,
                ticket: TicketRef {
                    id: Id::from_bytes([2; 12]),
                },
                reservation: 7,
            }
        );
    }

    #[test]
    fn order_statuses_use_the_course_strings() {
        for status in [
            OrderStatus::Created,
            OrderStatus::Cancelled,
            OrderStatus::AwaitingPayment,
            OrderStatus::Complete,
        ] {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
        }
        assert!(OrderStatus::Created.is_active());
        assert!(!OrderStatus::Cancelled.is_active());
    }
}
