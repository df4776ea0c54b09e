//! Dead letters on JetStream: where they are recorded, and the task that records messages that
//! ran out of deliveries from the server's
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>` advisories, fetching each
//! payload by stream sequence. Terms are recorded by the delivery that sent them.
//!
//! Each is kept twice: durably in the dead-letter stream (`dead_letter_stream`, what
//! `ticketing dead-letters` lists and replays), and in this process's list
//! ([`crate::bus::Bus::dead_letters`]), capped at [`DEAD_LETTERS_MAX`] with a count of those
//! dropped.
//!
//! A delivery on its last allowed attempt keeps a copy of its subject and payload here until
//! it is settled or recorded ([`DeadLetters::keep_last_attempt`]): interest retention removes
//! a message once its group's ack floor moves past it, which it may do between the advisory
//! and the fetch, and a dead letter without its payload could not be replayed.
//!
//! The invariant: the advisory subscription is registered on the server before the bus is
//! handed out, so no message can run out of deliveries unrecorded while the bus lives.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_nats::jetstream;
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::dead_letter_stream::DeadLetterStream;
use super::{JetStreamConfig, broker};
use crate::bus::broker::DEAD_LETTERS_MAX;
use crate::bus::{BusError, DeadLetter, DeadLetterReason, QueueGroup};
use crate::sync::Mutex;

/// This process's dead letters (oldest first, capped) and the dead-letter stream; clones share
/// them (the bus, its members' deliveries and the advisory task).
///
/// One `Arc` around all of it: every delivery holds a clone, and a clone that copied the
/// stream's handles (two streams' info and a context, with their strings) made each delivery
/// 3,664 bytes.
#[derive(Clone)]
pub(super) struct DeadLetters(Arc<Shared>);

struct Shared {
    list: Mutex<RecentDeadLetters>,
    last_attempts: Mutex<LastAttempts>,
    stream: DeadLetterStream,
}

/// Subject (without the prefix) and payload of each delivery on its last allowed attempt,
/// by queue group and stream sequence.
type LastAttempts = HashMap<(QueueGroup, u64), (String, Vec<u8>)>;

/// The most last-attempt copies kept: a bound on their memory (past it, the advisory's fetch
/// is the only source, as it is for a delivery made to another process).
const LAST_ATTEMPTS_MAX: usize = 10_000;

#[derive(Default)]
struct RecentDeadLetters {
    letters: VecDeque<DeadLetter>,
    dropped: u64,
}

impl DeadLetters {
    pub(super) fn new(stream: DeadLetterStream) -> Self {
        Self(Arc::new(Shared {
            list: Mutex::new(RecentDeadLetters::default()),
            last_attempts: Mutex::new(LastAttempts::new()),
            stream,
        }))
    }

    /// Records a dead letter that had `deliveries` deliveries: in the dead-letter stream, and
    /// in this process's list.
    pub(super) async fn record(&self, dead: DeadLetter, deliveries: u32) {
        dead.reason.count(&dead.queue_group);
        self.0.stream.keep(&dead, deliveries).await;
        let mut list = self.0.list.lock();
        list.letters.push_back(dead);
        while list.letters.len() > DEAD_LETTERS_MAX {
            list.letters.pop_front();
            list.dropped += 1;
        }
    }

    /// Keeps a copy of a delivery on its last allowed attempt, for the advisory that follows
    /// if it is not acknowledged.
    pub(super) fn keep_last_attempt(
        &self,
        queue_group: &QueueGroup,
        stream_seq: u64,
        subject: &str,
        payload: &[u8],
    ) {
        let mut kept = self.0.last_attempts.lock();
        if kept.len() < LAST_ATTEMPTS_MAX {
            kept.insert(
                (Arc::clone(queue_group), stream_seq),
                (subject.to_owned(), payload.to_vec()),
            );
        }
    }

    /// The last attempt was acknowledged or terminated: its copy is not needed.
    pub(super) fn forget_last_attempt(&self, queue_group: &QueueGroup, stream_seq: u64) {
        self.0
            .last_attempts
            .lock()
            .remove(&(Arc::clone(queue_group), stream_seq));
    }

    fn take_last_attempt(&self, queue_group: &str, stream_seq: u64) -> Option<(String, Vec<u8>)> {
        self.0
            .last_attempts
            .lock()
            .remove(&(QueueGroup::from(queue_group), stream_seq))
    }

    /// This process's dead letters, oldest first.
    pub(super) fn all(&self) -> Vec<DeadLetter> {
        self.0.list.lock().letters.iter().cloned().collect()
    }

    /// Dead letters dropped from this process's list because it was full (where a metrics
    /// exporter reads the count; the dead-letter stream keeps its own cap).
    pub(super) fn dropped(&self) -> u64 {
        self.0.list.lock().dropped
    }

    pub(super) fn stream(&self) -> &DeadLetterStream {
        &self.0.stream
    }
}

/// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES` (the fields we use).
#[derive(Debug, Deserialize)]
struct MaxDeliveriesAdvisory {
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Subscribes to the stream's max-deliveries advisories and records them into `dead_letters`
/// until `stop`.
pub(super) async fn record_advisories(
    client: &async_nats::Client,
    stream: &jetstream::stream::Stream,
    config: &JetStreamConfig,
    dead_letters: &DeadLetters,
    stop: &CancellationToken,
) -> Result<(), BusError> {
    let advisories = client
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
            config.stream
        ))
        .await
        .map_err(broker)?;
    // The subscription must be registered before any delivery can run out.
    client.flush().await.map_err(broker)?;
    tokio::spawn(record_max_deliveries(
        advisories,
        stream.clone(),
        config.clone(),
        dead_letters.clone(),
        stop.clone(),
    ));
    Ok(())
}

/// Records messages that ran out of deliveries, from the server's advisories, until stopped.
async fn record_max_deliveries(
    mut advisories: async_nats::Subscriber,
    stream: jetstream::stream::Stream,
    config: JetStreamConfig,
    dead_letters: DeadLetters,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = advisories.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let advisory: MaxDeliveriesAdvisory = match serde_json::from_slice(&message.payload) {
            Ok(advisory) => advisory,
            Err(error) => {
                tracing::warn!("unreadable max-deliveries advisory: {error}");
                continue;
            }
        };
        let (subject, payload) =
            match dead_letters.take_last_attempt(&advisory.consumer, advisory.stream_seq) {
                Some(kept) => kept,
                None => fetch(&stream, &config, advisory.stream_seq).await,
            };
        tracing::warn!(
            queue_group = %advisory.consumer,
            stream_seq = advisory.stream_seq,
            deliveries = advisory.deliveries,
            "dead-lettered after max deliveries"
        );
        let deliveries = u32::try_from(advisory.deliveries).unwrap_or(u32::MAX);
        let dead = DeadLetter {
            queue_group: QueueGroup::from(advisory.consumer),
            subject,
            stream_seq: advisory.stream_seq,
            payload,
            reason: DeadLetterReason::MaxDeliveries(deliveries),
        };
        dead_letters.record(dead, deliveries).await;
    }
}

/// A dead letter's subject (without the prefix) and payload, read from the stream: empty if
/// it is gone (a delivery made to another process, whose copy this one does not have).
async fn fetch(
    stream: &jetstream::stream::Stream,
    config: &JetStreamConfig,
    stream_seq: u64,
) -> (String, Vec<u8>) {
    match tokio::time::timeout(config.request_timeout, stream.get_raw_message(stream_seq)).await {
        Ok(Ok(stored)) => (
            strip_prefix(&config.subject_prefix, &stored.subject).to_owned(),
            stored.payload.to_vec(),
        ),
        Ok(Err(error)) => {
            tracing::warn!(stream_seq, "cannot fetch a dead letter: {error}");
            (String::new(), Vec::new())
        }
        Err(_) => {
            tracing::warn!(stream_seq, "fetching a dead letter timed out");
            (String::new(), Vec::new())
        }
    }
}

fn strip_prefix<'a>(prefix: &str, subject: &'a str) -> &'a str {
    subject.strip_prefix(prefix).unwrap_or(subject)
}
