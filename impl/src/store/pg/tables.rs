//! How each record kind maps to its table: its statements, its statement parameters, how a
//! row decodes into it, and which query each [`Listing`] runs.
//!
//! Storage: ids are `bytea` (the id's 12 bytes), prices `bigint` cents, versions and
//! reservation numbers `bigint`, `expires_at` `bigint` Unix milliseconds (exact, and no time
//! zone to get wrong).
//!
//! The invariant: a record written and read back is the record written, field for field;
//! [`PgRecord::values`] are in the table's column order, which every statement of
//! [`PgRecord::SQL`] expects.

use std::sync::Arc;

use tokio_postgres::Row;

use super::sql::{
    LIST_ORDERS_BY_USER, LIST_TICKETS_BY_USER, LIST_UNRESERVED_TICKETS, ORDERS, TICKET_REPLICAS,
    TICKETS, TableSql,
};
use super::values::{Value, column, price, to_i64, to_u64};
use crate::id::Id;
use crate::records::{Order, Record, Ticket, TicketReplica, Timestamp, UserId};
use crate::store::Listing;

/// How a listing is queried.
pub(super) enum ListQuery {
    /// No parameter.
    Plain(&'static str),
    /// `$1` is the user id.
    ByUser(&'static str),
}

/// A record kind with a table: its statements and how it maps to a row.
pub(super) trait PgRecord: Record {
    /// The table's statements.
    const SQL: &'static TableSql;

    /// The statement parameters: the columns in order, `id` first. In an insert the
    /// `version` parameter is the version to store, in a save the version the record was read
    /// at.
    fn values(&self) -> Result<Vec<Value>, String>;

    /// The record a row of the table holds, or why the row is not one.
    fn from_row(row: &Row) -> Result<Self, String>;

    /// The query for `listing`, or `None` when it selects nothing.
    fn listing(listing: &Listing) -> Option<ListQuery>;

    /// The ticket whose one-active-order index a write of this record can trip (an order's;
    /// nothing else's).
    fn reserved_ticket(&self) -> Option<Id> {
        None
    }
}

impl PgRecord for Ticket {
    const SQL: &'static TableSql = &TICKETS;

    fn values(&self) -> Result<Vec<Value>, String> {
        Ok(vec![
            Value::Id(self.id),
            Value::Text(Arc::clone(&self.title)),
            Value::Bigint(to_i64(self.price.cents(), "price")?),
            Value::Text(Arc::clone(&self.user_id.0)),
            Value::Bigint(to_i64(self.version, "version")?),
            Value::OptionalId(self.order_id),
            Value::Bigint(to_i64(self.reservation, "reservation")?),
        ])
    }

    fn from_row(row: &Row) -> Result<Self, String> {
        Ok(Ticket {
            id: column(row, 0)?,
            title: column::<&str>(row, 1)?.into(),
            price: price(column(row, 2)?)?,
            user_id: UserId::new(column::<&str>(row, 3)?),
            version: to_u64(column(row, 4)?, "version")?,
            order_id: column(row, 5)?,
            reservation: to_u64(column(row, 6)?, "reservation")?,
        })
    }

    fn listing(listing: &Listing) -> Option<ListQuery> {
        Some(match listing {
            Listing::All => ListQuery::Plain(Self::SQL.list),
            Listing::Unreserved => ListQuery::Plain(LIST_UNRESERVED_TICKETS),
            Listing::OwnedBy(_) => ListQuery::ByUser(LIST_TICKETS_BY_USER),
        })
    }
}

impl PgRecord for TicketReplica {
    const SQL: &'static TableSql = &TICKET_REPLICAS;

    fn values(&self) -> Result<Vec<Value>, String> {
        Ok(vec![
            Value::Id(self.id),
            Value::Text(Arc::clone(&self.title)),
            Value::Bigint(to_i64(self.price.cents(), "price")?),
            Value::Bigint(to_i64(self.version, "version")?),
        ])
    }

    fn from_row(row: &Row) -> Result<Self, String> {
        Ok(TicketReplica {
            id: column(row, 0)?,
            title: column::<&str>(row, 1)?.into(),
            price: price(column(row, 2)?)?,
            version: to_u64(column(row, 3)?, "version")?,
        })
    }

    fn listing(listing: &Listing) -> Option<ListQuery> {
        // A replica has no owner and no reservation: as MemStore, every replica is
        // "unreserved" and none is anybody's.
        match listing {
            Listing::All | Listing::Unreserved => Some(ListQuery::Plain(Self::SQL.list)),
            Listing::OwnedBy(_) => None,
        }
    }
}

impl PgRecord for Order {
    const SQL: &'static TableSql = &ORDERS;

    fn values(&self) -> Result<Vec<Value>, String> {
        Ok(vec![
            Value::Id(self.id),
            Value::Text(Arc::clone(&self.user_id.0)),
            Value::Static(self.status.as_str()),
            Value::Bigint(self.expires_at.unix_millis()),
            Value::Id(self.ticket_id),
            Value::Bigint(to_i64(self.version, "version")?),
        ])
    }

    fn from_row(row: &Row) -> Result<Self, String> {
        Ok(Order {
            id: column(row, 0)?,
            user_id: UserId::new(column::<&str>(row, 1)?),
            status: column::<&str>(row, 2)?.parse()?,
            expires_at: Timestamp::from_unix_millis(column(row, 3)?),
            ticket_id: column(row, 4)?,
            version: to_u64(column(row, 5)?, "version")?,
        })
    }

    fn listing(listing: &Listing) -> Option<ListQuery> {
        Some(match listing {
            Listing::All | Listing::Unreserved => ListQuery::Plain(Self::SQL.list),
            Listing::OwnedBy(_) => ListQuery::ByUser(LIST_ORDERS_BY_USER),
        })
    }

    fn reserved_ticket(&self) -> Option<Id> {
        Some(self.ticket_id)
    }
}
