//! The small value types records and events are both made of: versions, reservation
//! numbers, titles, user ids, timestamps and order statuses.
//!
//! The invariant: each type has one text form (the course's, on the wire) and parsing it back
//! gives the same value; none of them allocates when copied.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
