//! What a client's request answered, held to what it stored.
//!
//! The model's state has no place for an HTTP answer, so the abstraction function never sees
//! one; a service that stores the right record and answers a different one (a stale version,
//! a field of the record as read) would follow the model step for step. This module owns the
//! check that closes that gap.
//!
//! The invariant it checks: with the outbox, a request runs from its write to its answer in one
//! step, with every other task parked at its gate, so the record it answers is exactly the
//! record its store holds when the answer is given. Without the outbox the request waits at its
//! publish between the two, other tasks may write the record meanwhile, and nothing is checked.

use std::fmt::Debug;

use ticketing::records::{Order, Ticket};
use ticketing::services::ApiError;
use ticketing::services::orders::OrderView;
use ticketing::store::StoreError;

use crate::backend::Store;

/// A record a request answers with, and how to read the stored one it must equal.
pub(crate) trait Answer: Debug {
    /// Whether the record `store` holds is the one this answer shows, and if not, how not.
    fn shows(&self, store: &Store) -> Result<(), String>;
}

fn compare<T: PartialEq + Debug>(
    answered: &T,
    stored: Result<Option<T>, StoreError>,
) -> Result<(), String> {
    match stored {
        Ok(Some(stored)) if stored == *answered => Ok(()),
        Ok(Some(stored)) => Err(format!("answered {answered:?}, stored {stored:?}")),
        Ok(None) => Err(format!("answered {answered:?}, stored nothing")),
        Err(error) => Err(format!(
            "answered {answered:?}; reading the store failed: {error}"
        )),
    }
}

impl Answer for Ticket {
    fn shows(&self, store: &Store) -> Result<(), String> {
        compare(self, store.find_now::<Ticket>(self.id))
    }
}

impl Answer for Order {
    fn shows(&self, store: &Store) -> Result<(), String> {
        compare(self, store.find_now::<Order>(self.id))
    }
}

impl Answer for OrderView {
    fn shows(&self, store: &Store) -> Result<(), String> {
        // The view's own fields are the order's; its ticket is the replica as read.
        let stored = store.find_now::<Order>(self.id).map(|found| {
            found.map(|order| {
                (
                    order.id,
                    order.user_id,
                    order.status,
                    order.expires_at,
                    order.version,
                )
            })
        });
        let shown = (
            self.id,
            self.user_id.clone(),
            self.status,
            self.expires_at,
            self.version,
        );
        compare(&shown, stored)
    }
}

/// `answered` as the request's result, failing it if `outbox` and the answer is not the
/// record `store` holds (see the module's invariant).
pub(crate) fn checked<A: Answer>(
    answered: Result<A, ApiError>,
    store: &Store,
    outbox: bool,
) -> Result<(), ApiError> {
    let answer = answered?;
    if !outbox {
        return Ok(());
    }
    answer.shows(store).map_err(|difference| {
        ApiError::Store(StoreError::Backend {
            message: format!(
                "harness check: the request's answer is not the record it stored: {difference}"
            ),
            source: None,
        })
    })
}
