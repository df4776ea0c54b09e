//! Where a [`super::JetStreamBus`] connects and what it creates on the server: the stream's
//! name, storage and duplicate window, the subject namespace, and the bounds on every wait.
//!
//! The invariant: every server-side setting is stated here and passed explicitly; nothing is
//! left to NATS's defaults.

use std::time::Duration;

use crate::events::Subject;

/// The server used when `NATS_URL` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Where the stream lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStorage {
    /// On disk (survives a server restart).
    File,
    /// In memory.
    Memory,
}

/// How a [`super::JetStreamBus`] connects and what it creates. Every server-side setting is passed
/// explicitly; nothing is left to NATS's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// The server, `nats://host:port`.
    pub url: String,
    /// The stream's name (`TICKETING`).
    pub stream: String,
    /// Prepended to each subject name (empty: the subjects are exactly `ticket:created`, ...).
    /// Use `name.` to share a server between deployments or tests.
    pub subject_prefix: String,
    /// The stream's storage.
    pub storage: StreamStorage,
    /// How long the stream remembers publish ids (NATS's own default would be 2 minutes too;
    /// here it is stated).
    pub duplicate_window: Duration,
    /// Unacknowledged deliveries a queue group's consumer allows in total.
    pub max_ack_pending: i64,
    /// Bound on connecting at start (TCP, handshake, and the JetStream check).
    pub connect_timeout: Duration,
    /// Bound on every JetStream API request and publish ack.
    pub request_timeout: Duration,
    /// How long one pull request waits on the server for messages. A member that leaves
    /// waits for its last request to end (at most this long, plus a second) before handing
    /// back what it did not take, so nothing is handed back into a request no one reads.
    pub pull_expires: Duration,
    /// Most messages asked for in one pull request.
    pub max_batch: usize,
}

impl Default for JetStreamConfig {
    /// `nats://127.0.0.1:4222`, stream `TICKETING` over the bare subject names, file storage,
    /// 2-minute duplicate window, 1024 unacknowledged per group, 2 s connect timeout, 5 s
    /// request timeout, 2 s pull expiry, batches of up to 256.
    fn default() -> Self {
        Self {
            url: DEFAULT_NATS_URL.to_owned(),
            stream: "TICKETING".to_owned(),
            subject_prefix: String::new(),
            storage: StreamStorage::File,
            duplicate_window: Duration::from_secs(120),
            max_ack_pending: 1024,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            pull_expires: Duration::from_secs(2),
            max_batch: 256,
        }
    }
}

impl JetStreamConfig {
    /// The defaults, with the server from `NATS_URL` if set.
    pub fn from_env() -> Self {
        Self {
            url: std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned()),
            ..Self::default()
        }
    }

    /// [`Self::from_env`] in a namespace of its own: stream `name`, subjects `name.ticket:created`
    /// and so on. `name` must be a valid stream name (letters, digits, `-`, `_`).
    pub fn namespaced(name: &str) -> Self {
        Self {
            stream: name.to_owned(),
            subject_prefix: format!("{name}."),
            ..Self::from_env()
        }
    }

    /// The NATS subject `subject` is published on.
    pub fn subject(&self, subject: Subject) -> String {
        format!("{}{}", self.subject_prefix, subject.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mapping_uses_the_bare_subject_names() {
        let config = JetStreamConfig::default();
        assert_eq!(config.stream, "TICKETING");
        assert_eq!(config.subject(Subject::TicketCreated), "ticket:created");
        let namespaced = JetStreamConfig::namespaced("T1");
        assert_eq!(namespaced.stream, "T1");
        assert_eq!(
            namespaced.subject(Subject::OrderCancelled),
            "T1.order:cancelled"
        );
    }
}
