//! The records the two services store, and the small types they are made of.
//!
//! Every record carries a `version`. The primary of a record (the service that owns it)
//! increments the version on every change and publishes an event carrying the new version;
//! nobody else increments it. The orders service's [`TicketReplica`] takes its version from the
//! events it applies. Titles and user ids are shared, immutable strings (`Arc<str>`), so copying
//! a record never allocates.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::events::{OrderCancelled, OrderCreated, OrderedTicket, TicketRef};
use crate::id::Id;
use crate::price::Price;

/// A record's version: 0 when created, +1 on every change by its primary.
pub type Version = u64;

/// The number of reservation changes (order created, order cancelled) made on one ticket, as
/// counted by the orders service: 1 for the first order's creation, 2 for its cancellation, ...
/// It orders a ticket's order events the way versions order a record's changes.
pub type Reservation = u64;

/// A ticket's title: 1 to 200 characters after trimming (checked where titles enter the
/// system, at the HTTP boundary).
pub type Title = Arc<str>;

/// The id of a signed-in user, as carried in the session's `id` claim.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Arc<str>);

impl UserId {
    /// The user with this id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", &*self.0)
    }
}

/// A point in time with millisecond precision, written as JavaScript's `toISOString()` does
/// (`2026-11-27T15:00:00.000Z`), as the course's `expiresAt` was.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_millis: i64,
}

impl Timestamp {
    /// Now, to the millisecond.
    pub fn now() -> Self {
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self {
            unix_millis: (nanos / 1_000_000) as i64,
        }
    }

    /// The instant `unix_millis` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(unix_millis: i64) -> Self {
        Self { unix_millis }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.unix_millis
    }

    /// This instant plus `duration` (saturating).
    pub fn plus(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self {
            unix_millis: self.unix_millis.saturating_add(millis),
        }
    }

    fn to_datetime(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp_nanos(self.unix_millis as i128 * 1_000_000).ok()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let text = self
            .to_datetime()
            .and_then(|datetime| datetime.format(&format).ok())
            .ok_or(fmt::Error)?;
        f.write_str(&text)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl std::str::FromStr for Timestamp {
    type Err = time::error::Parse;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let datetime =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)?;
        Ok(Self {
            unix_millis: (datetime.unix_timestamp_nanos() / 1_000_000) as i64,
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An order's status, with the course's strings on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Reserved, awaiting payment; the only status that holds the ticket.
    #[serde(rename = "created")]
    Created,
    /// Cancelled by the user (or expired): the ticket is free again.
    #[serde(rename = "cancelled")]
    Cancelled,
    /// The payment flow started (not used by these two services, kept for the course's shape).
    #[serde(rename = "awaiting:payment")]
    AwaitingPayment,
    /// Paid.
    #[serde(rename = "complete")]
    Complete,
}

impl OrderStatus {
    /// Whether an order in this status holds its ticket ("active" in SPEC.md: not cancelled).
    pub const fn is_active(self) -> bool {
        !matches!(self, OrderStatus::Cancelled)
    }

    /// The course's string for this status.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::AwaitingPayment => "awaiting:payment",
            OrderStatus::Complete => "complete",
        }
    }
}

impl std::str::FromStr for OrderStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "created" => Ok(OrderStatus::Created),
            "cancelled" => Ok(OrderStatus::Cancelled),
            "awaiting:payment" => Ok(OrderStatus::AwaitingPayment),
            "complete" => Ok(OrderStatus::Complete),
            other => Err(format!("unknown order status {other:?}")),
        }
    }
}

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
pub trait Record: Clone + fmt::Debug + Send + Sync + 'static {
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
