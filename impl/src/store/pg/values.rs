//! Values between Rust and the tables: statement parameters ([`Value`]), ids as their 12
//! bytes, and the checked conversions of the integer columns.
//!
//! The invariant: nothing is stored or read with a silent change of value. A number that does
//! not fit its column (or a column value that does not fit its Rust type: a negative version,
//! an id of another length, a price out of range) is an error naming it, never truncated.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::BytesMut;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::errors::error_chain;
use crate::id::Id;
use crate::price::Price;

/// A statement parameter: the few column types the tables use.
#[derive(Debug)]
pub(super) enum Value {
    Id(Id),
    OptionalId(Option<Id>),
    Text(Arc<str>),
    Static(&'static str),
    Owned(String),
    Bigint(i64),
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Id(id) => id.to_sql(ty, out),
            Value::OptionalId(id) => id.to_sql(ty, out),
            Value::Text(text) => (&**text).to_sql(ty, out),
            Value::Static(text) => text.to_sql(ty, out),
            Value::Owned(text) => text.to_sql(ty, out),
            Value::Bigint(number) => number.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <Id as ToSql>::accepts(ty) || <&str as ToSql>::accepts(ty) || <i64 as ToSql>::accepts(ty)
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // `accepts` cannot see which variant it is asked about: check the pair here, so a
        // statement and its parameters that disagree fail instead of sending wrong bytes.
        match self {
            Value::Id(id) => id.to_sql_checked(ty, out),
            Value::OptionalId(id) => id.to_sql_checked(ty, out),
            Value::Text(text) => (&**text).to_sql_checked(ty, out),
            Value::Static(text) => text.to_sql_checked(ty, out),
            Value::Owned(text) => text.to_sql_checked(ty, out),
            Value::Bigint(number) => number.to_sql_checked(ty, out),
        }
    }
}

/// An id is stored as its 12 bytes.
impl ToSql for Id {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.as_bytes().as_slice().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::BYTEA
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Id {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let bytes = <&[u8]>::from_sql(ty, raw)?;
        let bytes: [u8; 12] = bytes
            .try_into()
            .map_err(|_| format!("an id is 12 bytes, found {}", bytes.len()))?;
        Ok(Id::from_bytes(bytes))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::BYTEA
    }
}

/// The parameters of a statement, as tokio-postgres takes them.
pub(super) fn as_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| value as &(dyn ToSql + Sync))
        .collect()
}

/// Column `index` of `row`, or why it does not decode.
pub(super) fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, String> {
    row.try_get(index)
        .map_err(|error| format!("column {index}: {}", error_chain(&error)))
}

/// A stored price in cents, checked as a price.
pub(super) fn price(cents: i64) -> Result<Price, String> {
    let cents = to_u64(cents, "price")?;
    Price::from_cents(cents).map_err(|error| format!("price of {cents} cents: {error}"))
}

/// `value` as a `bigint`.
pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{what} {value} does not fit a bigint"))
}

/// A `bigint` that is never negative, as what it counts.
pub(super) fn to_u64(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("{what} {value} is negative"))
}
