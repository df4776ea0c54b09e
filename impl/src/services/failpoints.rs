//! The crash points, by name, in one place.
//!
//! Each is a `fail` fail point (compiled in with the `failpoints` feature, a no-op otherwise).
//! Configured to return, it makes the operation stop right there as a crash would: no further
//! store write, publish, ack or nak. The harness names them in traces.

/// No-outbox paths (HTTP handlers and listeners): the record is saved, its event not yet
/// published.
pub const AFTER_SAVE_BEFORE_PUBLISH: &str = "after-save-before-publish";

/// Ack-before-save listeners: the delivery is acknowledged, the write not yet made.
pub const AFTER_ACK_BEFORE_SAVE: &str = "after-ack-before-save";

/// Racy reservation: the ticket was found unreserved, the order not yet inserted.
pub const BETWEEN_RESERVATION_CHECK_AND_INSERT: &str = "between-reservation-check-and-insert";

/// The relay: a batch is published, not yet marked published in the outbox.
pub const RELAY_AFTER_PUBLISH_BEFORE_MARK: &str = "relay-after-publish-before-mark";

/// Every crash point.
pub const ALL: [&str; 4] = [
    AFTER_SAVE_BEFORE_PUBLISH,
    AFTER_ACK_BEFORE_SAVE,
    BETWEEN_RESERVATION_CHECK_AND_INSERT,
    RELAY_AFTER_PUBLISH_BEFORE_MARK,
];
