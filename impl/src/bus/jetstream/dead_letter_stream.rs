//! Durable dead letters on JetStream: a stream of their own, `<stream>_DEAD` over the one
//! subject `<prefix>dead-letter`, that survives restarts of `serve` and of the server.
//!
//! Each dead letter is one message: the event's payload as published, and headers naming the
//! original subject (without the prefix), its stream sequence, the deliveries it had, why it
//! died, the queue group that gave up and when (RFC 3339, UTC). Its `Nats-Msg-Id` is
//! `dead-<group>-<seq>`, so two processes recording the same advisory keep one copy. Once
//! kept, the original message is deleted from the event stream: no group will ever take it
//! (each subject has exactly one consuming group), and under interest retention a message
//! that ran out of deliveries would otherwise stay on the server for ever.
//!
//! Limits retention (dead letters are kept until replayed or aged out), file storage, at most
//! [`DEAD_LETTERS_MAX`] messages, oldest discarded first (the server counts them: the stream
//! state's first sequence moves past them).
//!
//! The invariant: a dead letter leaves the dead-letter stream only after its replay was stored
//! on the event stream.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
use bytes::Bytes;

use super::{JetStreamBus, JetStreamConfig, StreamStorage, broker};
use crate::bus::broker::DEAD_LETTERS_MAX;
use crate::bus::{BusError, DeadLetter, DeadLetterReason, PublishAck, QueueGroup};

/// The header naming the subject the event was published on (without the prefix).
pub const SUBJECT_HEADER: &str = "Ticketing-Subject";
/// The header naming the event's stream sequence.
pub const SEQUENCE_HEADER: &str = "Ticketing-Stream-Seq";
/// The header counting the deliveries it had.
pub const DELIVERIES_HEADER: &str = "Ticketing-Deliveries";
/// The header saying why it died (`max deliveries` or `terminated: <why>`).
pub const REASON_HEADER: &str = "Ticketing-Reason";
/// The header naming the queue group that gave up.
pub const GROUP_HEADER: &str = "Ticketing-Queue-Group";
/// The header saying when it died (RFC 3339, UTC).
pub const DEAD_AT_HEADER: &str = "Ticketing-Dead-At";

/// A dead letter as the dead-letter stream keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// The event, where it was, and why it died.
    pub letter: DeadLetter,
    /// Deliveries it had.
    pub deliveries: u32,
    /// When it died (RFC 3339, UTC).
    pub dead_at: String,
}

/// The dead-letter stream's name for `config`'s event stream.
pub fn dead_letter_stream_name(config: &JetStreamConfig) -> String {
    format!("{}_DEAD", config.stream)
}

fn dead_letter_subject(config: &JetStreamConfig) -> String {
    format!("{}dead-letter", config.subject_prefix)
}

/// The dead-letter stream, and the event stream its letters come from. Clones share them.
#[derive(Clone)]
pub(super) struct DeadLetterStream {
    context: jetstream::Context,
    events: jetstream::stream::Stream,
    dead: jetstream::stream::Stream,
    subject: String,
}

impl DeadLetterStream {
    /// Creates the dead-letter stream if it is missing.
    pub(super) async fn open(
        context: &jetstream::Context,
        events: &jetstream::stream::Stream,
        config: &JetStreamConfig,
    ) -> Result<Self, BusError> {
        let name = dead_letter_stream_name(config);
        let wanted = jetstream::stream::Config {
            name: name.clone(),
            description: Some("ticketing dead letters: events a queue group gave up on".to_owned()),
            subjects: vec![dead_letter_subject(config)],
            retention: RetentionPolicy::Limits,
            storage: match config.storage {
                StreamStorage::File => StorageType::File,
                StreamStorage::Memory => StorageType::Memory,
            },
            discard: DiscardPolicy::Old,
            max_messages: i64::try_from(DEAD_LETTERS_MAX).unwrap_or(i64::MAX),
            max_bytes: -1,
            max_age: Duration::ZERO,
            num_replicas: 1,
            duplicate_window: config.duplicate_window,
            ..Default::default()
        };
        let dead = context
            .get_or_create_stream(wanted)
            .await
            .map_err(|error| broker(format!("dead-letter stream {name}: {error}")))?;
        Ok(Self {
            context: context.clone(),
            events: events.clone(),
            dead,
            subject: dead_letter_subject(config),
        })
    }
}

/// `max deliveries` or `terminated: <why>`.
fn reason_text(reason: &DeadLetterReason) -> String {
    match reason {
        DeadLetterReason::MaxDeliveries(_) => "max deliveries".to_owned(),
        DeadLetterReason::Terminated(why) => format!("terminated: {why}"),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.as_str())
}

/// Reads a dead letter back from its message; `None` if its headers are not ours.
fn parse(message: &jetstream::message::StreamMessage) -> Option<StoredDeadLetter> {
    let headers = &message.headers;
    let deliveries: u32 = header(headers, DELIVERIES_HEADER)?.parse().ok()?;
    let reason = match header(headers, REASON_HEADER)? {
        "max deliveries" => DeadLetterReason::MaxDeliveries(deliveries),
        other => DeadLetterReason::Terminated(
            other
                .strip_prefix("terminated: ")
                .unwrap_or(other)
                .to_owned(),
        ),
    };
    Some(StoredDeadLetter {
        letter: DeadLetter {
            queue_group: QueueGroup::from(header(headers, GROUP_HEADER).unwrap_or_default()),
            subject: header(headers, SUBJECT_HEADER)?.to_owned(),
            stream_seq: header(headers, SEQUENCE_HEADER)?.parse().ok()?,
            payload: message.payload.to_vec(),
            reason,
        },
        deliveries,
        dead_at: header(headers, DEAD_AT_HEADER)
            .unwrap_or_default()
            .to_owned(),
    })
}

impl DeadLetterStream {
    /// Keeps `letter` in the dead-letter stream, then deletes the original from the event
    /// stream. Logged, not returned, on failure: the caller (a delivery's term, the advisory
    /// task) has nothing better to do, and the in-process list still has it.
    pub(super) async fn keep(&self, letter: &DeadLetter, deliveries: u32) {
        if let Err(error) = self.try_keep(letter, deliveries).await {
            tracing::error!(
                stream_seq = letter.stream_seq,
                subject = %letter.subject,
                %error,
                "cannot keep a dead letter in the dead-letter stream"
            );
        }
    }

    async fn try_keep(&self, letter: &DeadLetter, deliveries: u32) -> Result<(), BusError> {
        let dead_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(SUBJECT_HEADER, letter.subject.as_str());
        headers.insert(SEQUENCE_HEADER, letter.stream_seq.to_string());
        headers.insert(DELIVERIES_HEADER, deliveries.to_string());
        headers.insert(REASON_HEADER, reason_text(&letter.reason));
        headers.insert(GROUP_HEADER, &*letter.queue_group);
        headers.insert(DEAD_AT_HEADER, dead_at);
        headers.insert(
            "Nats-Msg-Id",
            format!("dead-{}-{}", letter.queue_group, letter.stream_seq),
        );
        let ack = self
            .context
            .publish_with_headers(
                self.subject.clone(),
                headers,
                Bytes::from(letter.payload.clone()),
            )
            .await
            .map_err(broker)?;
        ack.await.map_err(broker)?;
        // Gone already (a term on an interest stream, or another process) is fine.
        let _ = self.events.delete_message(letter.stream_seq).await;
        Ok(())
    }

    /// Every dead letter the stream holds, oldest first, with its sequence in the
    /// dead-letter stream.
    async fn stored(&self) -> Result<Vec<(u64, StoredDeadLetter)>, BusError> {
        let mut dead = self.dead.clone();
        let state = dead.info().await.map_err(broker)?.state.clone();
        let mut letters = Vec::new();
        if state.messages == 0 {
            return Ok(letters);
        }
        for seq in state.first_sequence..=state.last_sequence {
            // A sequence replayed (deleted) has no message; any other error is the server's.
            match dead.get_raw_message(seq).await {
                Ok(message) => {
                    if let Some(letter) = parse(&message) {
                        letters.push((seq, letter));
                    }
                }
                Err(error)
                    if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
                Err(error) => return Err(broker(error)),
            }
        }
        Ok(letters)
    }
}

impl JetStreamBus {
    /// Every dead letter kept in the dead-letter stream (across restarts), oldest first.
    pub async fn durable_dead_letters(&self) -> Result<Vec<StoredDeadLetter>, BusError> {
        let stored = self.inner.dead_letters.stream().stored().await?;
        Ok(stored.into_iter().map(|(_, letter)| letter).collect())
    }

    /// Republishes the dead letter of event-stream sequence `stream_seq` on its subject (a new
    /// message, publish id `replay-<seq>`), then removes it from the dead-letter stream.
    /// `Ok(None)` if no dead letter has that sequence.
    pub async fn replay_dead_letter(
        &self,
        stream_seq: u64,
    ) -> Result<Option<PublishAck>, BusError> {
        let dead_letters = self.inner.dead_letters.stream();
        let found = dead_letters
            .stored()
            .await?
            .into_iter()
            .find(|(_, stored)| stored.letter.stream_seq == stream_seq);
        let Some((dead_seq, stored)) = found else {
            return Ok(None);
        };
        let ack = self
            .publish_bytes(
                &stored.letter.subject,
                Bytes::from(stored.letter.payload),
                Some(&format!("replay-{stream_seq}")),
            )
            .await?;
        dead_letters
            .dead
            .delete_message(dead_seq)
            .await
            .map_err(broker)?;
        Ok(Some(ack))
    }
}
