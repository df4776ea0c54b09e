//! The API's answers as the checks read them: the fields of tickets, replicas and orders a
//! check compares, parsed from the history's recorded responses.
//!
//! The invariant: an answer that does not parse is never taken as evidence of anything.

use serde::Deserialize;

use ticketing::id::Id;
use ticketing::price::Price;

use crate::soak::workload::Entry;

/// A ticket as the tickets service answered it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TicketSeen {
    pub(super) id: Id,
    pub(super) title: String,
    pub(super) price: Price,
    pub(super) version: u64,
    #[serde(default)]
    pub(super) order_id: Option<Id>,
}

/// A replica as the orders service answered it (alone, or inside an order).
#[derive(Clone, Debug, Deserialize)]
pub(super) struct ReplicaSeen {
    pub(super) id: Id,
    pub(super) version: u64,
}

/// An order as the orders service answered it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderSeen {
    pub(super) id: Id,
    pub(super) user_id: String,
    pub(super) ticket: Option<ReplicaSeen>,
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(entry: &Entry) -> Option<T> {
    serde_json::from_value(entry.response.clone()).ok()
}
