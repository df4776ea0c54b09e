//! The errors of the domain operations: [`ApiError`] for HTTP operations (mapped to statuses
//! and the course's error shape in one place, the `http` module), [`ListenerError`] for
//! listeners.
//!
//! Client mistakes carry the course's messages; backend failures carry their cause for the
//! log, and reach the client only as a generic message.

use std::borrow::Cow;

use crate::bus::BusError;
use crate::store::StoreError;

/// "Cannot edit a reserved ticket" (the course's message).
pub const RESERVED_TICKET_EDIT: &str = "Cannot edit a reserved ticket";
/// "Ticket is already reserved" (the course's message).
pub const TICKET_ALREADY_RESERVED: &str = "Ticket is already reserved";

/// One invalid field (or a message about the request as a whole when `field` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// What is wrong, in the course's words where it had some.
    pub message: Cow<'static, str>,
    /// The field's name, where the message is about one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            field: Some(field),
        }
    }
}

/// Why an HTTP operation did not happen. Every variant but the backend ones leaves both stores
/// unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not signed in, or not the owner (401 "Not authorized").
    #[error("Not authorized")]
    NotAuthorized,
    /// No such record, or an id that is not one (404 "Not Found").
    #[error("Not Found")]
    NotFound,
    /// Invalid fields, every one reported (400).
    #[error("invalid request: {0:?}")]
    Validation(Vec<FieldError>),
    /// A request that is well formed but not allowed now, with the course's message (400).
    #[error("{0}")]
    BadRequest(&'static str),
    /// The body is larger than the limit (413).
    #[error("Request body too large")]
    PayloadTooLarge,
    /// The body is not sent as `application/json` (415).
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// The store failed (500/503, generic message; the cause is logged).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed (503, generic message; the cause is logged).
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Concurrent writers kept winning for longer than the attempt bound (503).
    #[error("gave up after {attempts} version conflicts")]
    TooManyConflicts {
        /// Attempts made.
        attempts: u32,
    },
    /// A fail point stopped the operation as a crash would (500).
    #[error("crashed at fail point {0}")]
    Crashed(&'static str),
}

/// Why a listener stopped without deciding the delivery's fate (the delivery is redelivered
/// after a nak or after `ack_wait`).
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The store failed; the delivery was nak'ed with a delay where possible.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed (an ack, a nak or a direct publish).
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Concurrent writers kept winning for longer than the attempt bound.
    #[error("gave up after {attempts} version conflicts")]
    TooManyConflicts {
        /// Attempts made.
        attempts: u32,
    },
    /// A fail point stopped the listener as a crash would: nothing further was done.
    #[error("crashed at fail point {0}")]
    Crashed(&'static str),
}
