//! How the store says what failed, and how a write that met a concurrent writer is settled.
//!
//! Every failure of the server is a [`StoreError::Backend`] naming the server (password
//! hidden), the schema and the operation ([`Doing`]), with the whole chain of causes. A write
//! attempt that did not complete says why ([`WriteError`]); [`PgStore::until_settled`] turns
//! that into the caller's answer.
//!
//! The invariant: a write runs again only after a race (another writer committed or rolled
//! back meanwhile), at most [`WRITE_ATTEMPTS`] times; every other failure is answered at once;
//! and a failed attempt changed nothing (its statement or transaction rolled back).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;

use tokio_postgres::error::SqlState;

use super::PgStore;
use super::sql::ONE_ACTIVE_ORDER_PER_TICKET;
use crate::id::Id;
use crate::store::StoreError;

/// How many times a write runs again after racing a concurrent writer (a version that moved
/// while the update waited for the row lock, an active order cancelled between a refused
/// insert and the look-up of who holds the ticket). Each retry needs another writer to have
/// committed meanwhile, so a handful is plenty.
pub(super) const WRITE_ATTEMPTS: usize = 8;

/// The server's own error type.
pub(super) type PgError = tokio_postgres::Error;

/// What the store was doing when something failed: "save ticket 5f8d...".
#[derive(Clone, Copy)]
pub(super) struct Doing {
    operation: &'static str,
    kind: &'static str,
    id: Option<Id>,
}

impl Doing {
    /// `operation` on the `kind` record `id`.
    pub(super) const fn on(operation: &'static str, kind: &'static str, id: Id) -> Self {
        Self {
            operation,
            kind,
            id: Some(id),
        }
    }

    /// `operation` on every `kind` (a listing, the outbox, the schema).
    pub(super) const fn all(operation: &'static str, kind: &'static str) -> Self {
        Self {
            operation,
            kind,
            id: None,
        }
    }
}

impl fmt::Display for Doing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.operation, self.kind)?;
        match self.id {
            Some(id) => write!(f, " {id}"),
            None => Ok(()),
        }
    }
}

/// Why one attempt at a write did not complete.
pub(super) enum WriteError {
    /// A final answer for the caller.
    Store(StoreError),
    /// The one-active-order index refused the write: look up who holds the ticket.
    SecondActiveOrder {
        /// The ticket.
        ticket_id: Id,
    },
    /// The update matched no row, yet the version it was read at is the one stored (a
    /// writer holding the row lock rolled back): run the attempt again.
    Raced,
}

impl From<StoreError> for WriteError {
    fn from(error: StoreError) -> Self {
        WriteError::Store(error)
    }
}

impl PgStore {
    /// The server failed while the store was `doing` something.
    pub(super) fn failed(
        &self,
        doing: Doing,
        error: impl StdError + Send + Sync + 'static,
    ) -> StoreError {
        backend_error(&self.inner.target, &doing.to_string(), error)
    }

    /// A value that does not fit its column, or a row that does not decode into a record
    /// (the table holds something no store wrote).
    pub(super) fn corrupt(&self, doing: Doing, why: String) -> StoreError {
        StoreError::Backend {
            message: format!("PostgreSQL at {}: {doing}: {why}", self.inner.target),
            source: None,
        }
    }

    /// Maps a failed write: a violation of the one-active-order index by a write on
    /// `reserved_ticket`'s orders is for the caller to resolve, anything else is the
    /// backend's.
    pub(super) fn write_failed(
        &self,
        doing: Doing,
        reserved_ticket: Option<Id>,
        error: PgError,
    ) -> WriteError {
        let second_active = error.as_db_error().is_some_and(|db| {
            db.code() == &SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some(ONE_ACTIVE_ORDER_PER_TICKET)
        });
        match reserved_ticket {
            Some(ticket_id) if second_active => WriteError::SecondActiveOrder { ticket_id },
            _ => WriteError::Store(self.failed(doing, error)),
        }
    }

    /// Runs `attempt` until it gives an answer: again after a race, and after the
    /// one-active-order index refused it, [`StoreError::TicketReserved`] naming the order that
    /// holds the ticket (or again, if that order was cancelled meanwhile).
    pub(super) async fn until_settled<T, F, Fut>(
        &self,
        doing: Doing,
        mut attempt: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, WriteError>>,
    {
        for _ in 0..WRITE_ATTEMPTS {
            match attempt().await {
                Ok(done) => return Ok(done),
                Err(WriteError::Store(error)) => return Err(error),
                Err(WriteError::Raced) => {}
                Err(WriteError::SecondActiveOrder { ticket_id }) => {
                    if let Some(order) = self.find_active_order(ticket_id).await? {
                        return Err(StoreError::TicketReserved {
                            ticket_id,
                            order_id: order.id,
                        });
                    }
                }
            }
        }
        Err(StoreError::Backend {
            message: format!(
                "PostgreSQL at {}: {doing}: still racing concurrent writers after {WRITE_ATTEMPTS} attempts",
                self.inner.target
            ),
            source: None,
        })
    }
}

/// A backend error naming the server and what the store was doing, with the whole chain of
/// causes (tokio-postgres's own message is only "db error" or "error connecting to server").
pub(super) fn backend_error(
    target: &str,
    doing: &str,
    error: impl StdError + Send + Sync + 'static,
) -> StoreError {
    StoreError::Backend {
        message: format!(
            "PostgreSQL at {target}: cannot {doing}: {}",
            error_chain(&error)
        ),
        source: Some(Box::new(error)),
    }
}

/// An error and its causes, "outer: inner: innermost", each said once.
pub(crate) fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}
