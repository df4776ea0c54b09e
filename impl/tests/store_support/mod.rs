//! Records and stores for the store tests (`store_*.rs`): small fixed ids, so a failure names
//! the same records every run, and a fresh PostgreSQL database per test.

#![allow(dead_code)] // Each test file uses a different part.

use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{Order, OrderStatus, Ticket, TicketReplica, Timestamp, UserId};
use ticketing::store::PgStore;
use ticketing::testkit::{self, FreshDatabase};

/// The id made of twelve bytes `n`.
pub fn id(n: u8) -> Id {
    Id::from_bytes([n; 12])
}

pub fn price(cents: u64) -> Price {
    Price::from_cents(cents).expect("test prices are within bounds")
}

pub fn user(n: u8) -> UserId {
    UserId::new(format!("user-{n}"))
}

/// A new, unreserved ticket at version 0.
pub fn ticket(n: u8, cents: u64) -> Ticket {
    Ticket {
        id: id(n),
        title: format!("concert {n}").into(),
        price: price(cents),
        user_id: user(1),
        version: 0,
        order_id: None,
        reservation: 0,
    }
}

pub fn replica(n: u8, cents: u64, version: u64) -> TicketReplica {
    TicketReplica {
        id: id(n),
        title: format!("concert {n}").into(),
        price: price(cents),
        version,
    }
}

/// A new order (status created, version 0) on ticket `ticket`.
pub fn order(n: u8, ticket: u8) -> Order {
    Order {
        id: id(n),
        user_id: user(2),
        status: OrderStatus::Created,
        expires_at: Timestamp::from_unix_millis(1_795_791_600_000),
        ticket_id: id(ticket),
        version: 0,
    }
}

/// A PostgreSQL store in schema `schema` of a fresh database, or `None` (after
/// `testkit::unavailable`) when the server cannot be reached. The store comes first so it
/// is dropped before its database.
pub async fn pg_store(test: &str, schema: &str) -> Option<(PgStore, FreshDatabase)> {
    let database = testkit::fresh_postgres(test).await?;
    let store = PgStore::connect(database.url(), schema)
        .await
        .unwrap_or_else(|error| panic!("{test}: connecting to a fresh database: {error}"));
    Some((store, database))
}
