//! `JetStreamBus`: the bus contract on NATS JetStream (async-nats).
//!
//! # The mapping
//!
//! - **Stream**: one stream, [`JetStreamConfig::stream`] (default `TICKETING`), over exactly the
//!   four subjects, each [`JetStreamConfig::subject_prefix`] + the subject name (default prefix
//!   empty: `ticket:created`, `ticket:updated`, `order:created`, `order:cancelled`). Interest
//!   retention (each subject has exactly one consuming group: a message leaves the server once
//!   the groups listening to it settled it; an event is kept only for the groups that exist
//!   when it is published, see [`super::Bus::declare`]), file storage, no age/size/count
//!   limit, discard old, one replica, duplicate window [`JetStreamConfig::duplicate_window`]
//!   (2 minutes). Created if missing; an existing stream must have exactly these subjects and
//!   interest retention (NATS cannot change a stream's retention: the error says what to do).
//! - **Consumers**: one durable pull consumer per queue group, durable name = the queue group
//!   name, shared by all its members: `AckPolicy::Explicit`, `DeliverPolicy::All`,
//!   `ReplayPolicy::Instant`, `ack_wait` and `max_deliver` from [`super::ListenerOptions`],
//!   `max_ack_pending` [`JetStreamConfig::max_ack_pending`] (for the whole group; each member
//!   bounds itself by `max_in_flight`), `max_waiting` 512, no inactivity threshold, no backoff
//!   list (a nak names its own delay). Created by the first member if missing; an existing one
//!   is used as it is (a durable consumer keeps its settings; a mismatch is logged).
//! - **Filters**: a group listening on one subject gets `filter_subject`. A group on several
//!   subjects gets `filter_subjects` when the server is 2.10 or later; on older servers (2.9
//!   has no multi-subject filter) its consumer has no filter, and the subscription acknowledges
//!   and skips messages on subjects the group does not listen to, never handing them to the
//!   listener. The subscription applies the group's subject set in every case.
//! - **Publishing**: `Nats-Msg-Id` = the publish id when one is given; the stream's reply says
//!   whether it was a duplicate. [`JetStreamBus::publish_many`] (the relay's path, through
//!   [`crate::bus::Publisher::publish_in_order`]) keeps a sliding window of
//!   [`PUBLISH_WINDOW`] acks in flight.
//! - **Members** pull in batches: a member asks for as many messages as it has free capacity
//!   (`max_in_flight` minus the deliveries it holds unsettled, at most
//!   [`JetStreamConfig::max_batch`]), each pull request expiring after
//!   [`JetStreamConfig::pull_expires`] (2 s): after a server restart a member pulls again
//!   within `pull_expires` + 1 s. Once half its capacity is free while a request still
//!   drains, the member sends the next request ahead (one at most), and its one pull task
//!   reads it only after the current one ended, so deliveries keep the server's order. A
//!   member that leaves reads its last requests to their end before naking what it never
//!   took, so nothing is handed back into a request no one reads.
//!   Unsettled deliveries of a member that crashes come back after `ack_wait`.
//! - **Dead letters**: a term (`AckKind::Term`) is recorded by the member that sent it, with its
//!   reason; a message that ran out of deliveries is recorded from the server's advisory
//!   `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`, its payload fetched by
//!   stream sequence. Each is kept in the dead-letter stream `<stream>_DEAD` with its payload
//!   and headers (original subject, stream sequence, deliveries, reason, group, time), then
//!   deleted from the event stream; `ticketing dead-letters` lists and replays them. The
//!   process keeps its last ones too ([`super::Bus::dead_letters`]).
//!
//! The invariant: no await on the server is unbounded. Connecting, API requests and publish
//! acks have timeouts; pull requests expire; a member's `next` waits on its own channel, which
//! the pull task feeds or closes.
//!
//! # Layout
//!
//! - `config`: [`JetStreamConfig`], where the bus connects and what it creates.
//! - `setup`: connecting, and the mapping onto the server: the stream's and a queue group's
//!   consumer's configuration.
//! - `publish`: publishing, one event or many with a sliding window of acks in flight.
//! - `members`: a member of a queue group: its subscription and the task that pulls for it.
//! - `delivery`: one delivery and its ack, nak and term.
//! - `dead_letters`: where dead letters are recorded, and the advisories of messages out of
//!   deliveries.
//! - `dead_letter_stream`: the durable dead letters: keeping, listing, replaying.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::BusError;

mod config;
mod dead_letter_stream;
mod dead_letters;
mod delivery;
mod members;
mod publish;
mod setup;

pub use config::{DEFAULT_NATS_URL, JetStreamConfig, StreamStorage};
pub use dead_letter_stream::{
    DEAD_AT_HEADER, DELIVERIES_HEADER, GROUP_HEADER, REASON_HEADER, SEQUENCE_HEADER,
    SUBJECT_HEADER, StoredDeadLetter, dead_letter_stream_name,
};
pub use delivery::JetStreamDelivery;
pub use members::JetStreamSubscription;
pub use publish::PUBLISH_WINDOW;

use dead_letters::DeadLetters;

/// A queue group's consumer, as the server reports it (for tests and operators).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerState {
    /// Messages not yet delivered to the group.
    pub num_pending: u64,
    /// Delivered and not yet acknowledged (nor terminated, nor out of deliveries).
    pub num_ack_pending: usize,
    /// Messages delivered more than once.
    pub num_redelivered: usize,
    /// The stream sequence below which every message is acknowledged (or skipped).
    pub ack_floor_stream_seq: u64,
}

/// The event bus on NATS JetStream; clones share one connection.
#[derive(Clone)]
pub struct JetStreamBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamBus")
            .field("url", &self.inner.config.url)
            .field("stream", &self.inner.config.stream)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: JetStreamConfig,
    client: async_nats::Client,
    context: jetstream::Context,
    stream: jetstream::stream::Stream,
    /// Whether the server has `filter_subjects` (2.10 and later).
    multi_filter: bool,
    dead_letters: DeadLetters,
    /// Bumped on every (re)connect.
    epoch: watch::Receiver<u64>,
    /// Stops the advisory task when the last clone goes.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl JetStreamBus {
    /// The configuration this bus was connected with.
    pub fn config(&self) -> &JetStreamConfig {
        &self.inner.config
    }

    /// The server's version, as it announced itself.
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }

    /// Whether queue groups on several subjects get a server-side filter (`filter_subjects`,
    /// servers 2.10 and later) rather than the subscription's ack-and-skip.
    pub fn uses_multi_subject_filters(&self) -> bool {
        self.inner.multi_filter
    }

    /// Waits (at most the request timeout) until everything this process sent so far, acks
    /// included, has reached the server. Acks are one-way messages; a process about to exit
    /// flushes so that the acks it sent are not lost with its connection.
    pub async fn flush(&self) -> Result<(), BusError> {
        flush(&self.inner.client, self.inner.config.request_timeout).await
    }

    /// The queue group's consumer, as the server reports it now.
    pub async fn consumer_state(&self, queue_group: &str) -> Result<ConsumerState, BusError> {
        let info = self
            .inner
            .stream
            .consumer_info(queue_group)
            .await
            .map_err(broker)?;
        Ok(ConsumerState {
            num_pending: info.num_pending,
            num_ack_pending: info.num_ack_pending,
            num_redelivered: info.num_redelivered,
            ack_floor_stream_seq: info.ack_floor.stream_sequence,
        })
    }

    /// Deletes the stream, its messages and its consumers, and its dead-letter stream (tests
    /// clean up with it).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        let context = &self.inner.context;
        let _ = context
            .delete_stream(dead_letter_stream_name(&self.inner.config))
            .await;
        context
            .delete_stream(&self.inner.config.stream)
            .await
            .map(|_| ())
            .map_err(broker)
    }

    /// Dead letters dropped from this process's list because it was full (where a metrics
    /// exporter reads the count; the dead-letter stream keeps them up to its own cap).
    pub fn dead_letters_dropped(&self) -> u64 {
        self.inner.dead_letters.dropped()
    }

    /// Messages the event stream holds now (under interest retention, those some queue group
    /// has not settled yet).
    pub async fn stream_messages(&self) -> Result<u64, BusError> {
        let mut stream = self.inner.stream.clone();
        Ok(stream.info().await.map_err(broker)?.state.messages)
    }
}

/// Any broker error, as a [`BusError::Broker`] with its message.
fn broker(error: impl std::fmt::Display) -> BusError {
    BusError::Broker(error.to_string())
}

/// Waits at most `timeout` until everything `client` sent so far has reached the server.
async fn flush(client: &async_nats::Client, timeout: Duration) -> Result<(), BusError> {
    tokio::time::timeout(timeout, client.flush())
        .await
        .map_err(|_| broker(format!("flush: no answer within {timeout:?}")))?
        .map_err(broker)
}
