//! The event bus: publishers, queue groups, manual acknowledgement and redelivery.
//!
//! The contract (SPEC.md section 1, "Broker semantics"), which every backend keeps:
//! - one durable subscription per queue group; each event reaches one member of the group,
//!   and every queue group listening on a subject gets every event published on it;
//! - a member acknowledges explicitly; an event not acknowledged within `ack_wait` is
//!   redelivered, possibly to another member; a nak redelivers (after an optional delay), a
//!   term never does;
//! - each delivery carries its count; an event delivered `max_deliver` times and still not
//!   acknowledged is dead-lettered, as is a payload that cannot be decoded (terminated at once);
//! - a publish with a publish id that the broker saw within its duplicate window is dropped.
//!
//! Backends: the embedded in-memory broker (the default) and NATS JetStream.
//!
//! # Layout
//!
//! - [`broker`]: the embedded broker's clockless state machine, [`broker::BrokerCore`] (the
//!   stream and its duplicate window, one durable consumer per queue group, members, dead
//!   letters); the conformance harness steps it directly. One file per part: `stream`,
//!   `groups`, `delivery`; its unit tests in `broker/tests.rs`.
//! - [`embedded`]: [`EmbeddedBus`], the tokio driver around one broker core (pull-based
//!   members, ack-wait and nak-delay timers).
//! - [`jetstream`]: [`JetStreamBus`], the same contract on NATS JetStream (one stream over the
//!   four subjects, one durable pull consumer per queue group). One file per part: `config`,
//!   `setup` (connecting; the stream's and consumers' configuration), `publish`, `members`
//!   (the subscription and its puller), `delivery` (ack, nak, term), `dead_letters`.
//!
//! The member runtime that pulls from a [`Subscription`] and hands events to a service's
//! listener is the services' (`services::member`).

pub mod broker;
#[cfg(not(loom))]
pub mod embedded;
#[cfg(not(loom))]
pub mod jetstream;

#[cfg(not(loom))]
pub use embedded::{EmbeddedBus, EmbeddedConfig};
#[cfg(not(loom))]
pub use jetstream::{JetStreamBus, JetStreamConfig};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{Event, Subject};

/// The name of a queue group; also the durable name of its subscription.
pub type QueueGroup = Arc<str>;

/// What a publish came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishAck {
    /// Stored at this stream sequence number.
    Stored {
        /// Position in the stream (1 for the first event).
        seq: u64,
    },
    /// Dropped: its publish id was already stored within the duplicate window.
    Duplicate,
}

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached (at start, or after reconnecting gave up).
    #[error("broker unreachable at {url}: {message}")]
    Unreachable {
        /// Where we tried.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The bus (or this subscription) was shut down.
    #[error("bus closed")]
    Closed,
    /// The event could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::events::EncodeError),
    /// Any other broker error, with its message.
    #[error("broker error: {0}")]
    Broker(String),
    /// The listener options cannot be honoured (for example `max_deliver` of 0).
    #[error("invalid listener options: {0}")]
    InvalidOptions(String),
}

/// Deliveries of one event before it is dead-lettered, by default: with the gap backoff
/// (100 ms doubling to 2 s, [`crate::services::Backoff::GAP`]) a redelivery horizon of 51.1 s.
pub const DEFAULT_MAX_DELIVER: u32 = 30;

/// How a queue group's durable subscription behaves.
#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// The queue group (durable name).
    pub queue_group: QueueGroup,
    /// The subjects the group listens on (empty: every subject).
    pub subjects: Vec<Subject>,
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries of one event before it is dead-lettered.
    pub max_deliver: u32,
    /// Deliveries a member may hold unacknowledged at once (backpressure).
    pub max_in_flight: usize,
}

impl ListenerOptions {
    /// The group's options with this project's defaults: 5 s ack wait (the course's),
    /// [`DEFAULT_MAX_DELIVER`] deliveries, 64 in flight per member.
    pub fn new(queue_group: impl Into<QueueGroup>, subjects: &[Subject]) -> Self {
        Self {
            queue_group: queue_group.into(),
            subjects: subjects.to_vec(),
            ack_wait: Duration::from_secs(5),
            max_deliver: DEFAULT_MAX_DELIVER,
            max_in_flight: 64,
        }
    }

    /// Refuses what no backend can honour: no queue group name, no delivery allowed, no
    /// capacity, or a zero ack wait.
    pub fn validate(&self) -> Result<(), BusError> {
        let invalid = |why: &str| {
            Err(BusError::InvalidOptions(format!(
                "queue group {:?}: {why}",
                self.queue_group
            )))
        };
        if self.queue_group.is_empty() {
            return invalid("the queue group name is empty");
        }
        if self.max_deliver == 0 {
            return invalid("max_deliver must be at least 1");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight must be at least 1");
        }
        if self.ack_wait.is_zero() {
            return invalid("ack_wait must be more than zero");
        }
        Ok(())
    }
}

/// Publishes typed events.
pub trait Publisher: Send + Sync {
    /// Publishes `event` on its subject. With a `publish_id`, the broker drops the event if it
    /// stored one with the same id within its duplicate window.
    fn publish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> impl Future<Output = Result<PublishAck, BusError>> + Send;

    /// Whether the broker is reachable now (for readiness: a connection that is up). A
    /// publisher with no connection to lose (the embedded broker, a test's recorder) always is.
    fn reachable(&self) -> bool {
        true
    }

    /// Publishes `events` in their order, each with its publish id, and answers for each in
    /// that order up to and including the first failure other than an event that does not
    /// encode (the answers may stop there: what follows it is not known to be stored). A backend may overlap the sends with the
    /// broker's acks (JetStream keeps a sliding window); by default it publishes one at a
    /// time, so a stepped broker (the harness's) sees the same steps as before.
    fn publish_in_order(
        &self,
        events: &[(&Event, Option<&str>)],
    ) -> impl Future<Output = Vec<Result<PublishAck, BusError>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(events.len());
            for (event, publish_id) in events {
                let answer = self.publish(event, *publish_id).await;
                // An event that does not encode stored nothing and never will: answer it and
                // go on. Any other failure may mean the broker is gone: stop there.
                let failed =
                    matches!(answer, Err(ref error) if !matches!(error, BusError::Encode(_)));
                answers.push(answer);
                if failed {
                    break;
                }
            }
            answers
        }
    }
}

/// Publishes bytes as they are, on any subject: how tests and tools put a malformed payload
/// (a poison message) on the bus. Services publish typed events through [`Publisher`].
pub trait RawPublisher: Send + Sync {
    /// Publishes `payload` on `subject` (one of the four subject names, or any other), with
    /// the same duplicate-window rule as [`Publisher::publish`].
    fn publish_raw(
        &self,
        subject: &str,
        payload: bytes::Bytes,
        publish_id: Option<&str>,
    ) -> impl Future<Output = Result<PublishAck, BusError>> + Send;
}

/// The handle a listener acknowledges a delivery with.
pub trait MessageHandle: Send + Sync {
    /// How many times this event has been delivered to the group, this delivery included.
    fn delivery_count(&self) -> u32;

    /// Done: never deliver this event to the group again.
    fn ack(&self) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Not now: deliver again after `delay` (zero: at once).
    fn nak(&self, delay: Duration) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Never: stop delivering it (a poison message); the bus dead-letters it with `reason`.
    fn term(&self, reason: &str) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// One delivery of one event to one member.
pub trait Delivery: MessageHandle + 'static {
    /// The subject it was published on.
    fn subject(&self) -> &str;
    /// The raw payload (decoded by the listener runtime, which terminates what fails).
    fn payload(&self) -> &[u8];
    /// The event's position in the stream.
    fn stream_seq(&self) -> u64;
}

/// A member's view of its queue group's durable subscription.
pub trait Subscription: Send + 'static {
    /// The deliveries this subscription yields.
    type Delivery: Delivery;

    /// The next delivery for this member; `None` once the subscription is closed.
    fn next(&mut self) -> impl Future<Output = Option<Result<Self::Delivery, BusError>>> + Send;
}

/// Why an event was dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Terminated by a listener (for example a payload that does not decode).
    Terminated(String),
    /// Delivered `max_deliver` times without an acknowledgement.
    MaxDeliveries(u32),
}

impl DeadLetterReason {
    /// Counts a dead letter of `queue_group` for this reason
    /// ([`crate::metrics::dead_lettered`]).
    pub(crate) fn count(&self, queue_group: &str) {
        let reason = match self {
            DeadLetterReason::Terminated(_) => crate::metrics::DEAD_LETTER_TERMINATED,
            DeadLetterReason::MaxDeliveries(_) => crate::metrics::DEAD_LETTER_MAX_DELIVERIES,
        };
        crate::metrics::dead_lettered(queue_group, reason);
    }
}

/// An event the bus gave up on, kept for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The queue group that gave up.
    pub queue_group: QueueGroup,
    /// The subject it was published on.
    pub subject: String,
    /// Its position in the stream.
    pub stream_seq: u64,
    /// Its payload, as published.
    pub payload: Vec<u8>,
    /// Why.
    pub reason: DeadLetterReason,
}

/// A bus backend: publishes, and opens queue-group subscriptions.
pub trait Bus: Publisher + Clone + 'static {
    /// A member's subscription.
    type Subscription: Subscription;

    /// Creates the group's durable subscription if it does not exist, without joining it.
    /// Under interest retention (JetStream's, as this project sets it up) an event is kept
    /// only for the groups that exist when it is published: a group must be declared before
    /// the events it needs are published (the supervisor joins every group before it starts
    /// the relays).
    fn declare(
        &self,
        options: &ListenerOptions,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Joins `options.queue_group` as one more member, creating the group's durable
    /// subscription (delivering everything the stream holds) if it does not exist.
    fn subscribe(
        &self,
        options: &ListenerOptions,
    ) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send;

    /// Everything dead-lettered so far, oldest first.
    fn dead_letters(&self) -> Vec<DeadLetter>;
}
