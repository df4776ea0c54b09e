//! Publishing on JetStream: one event, raw bytes, or many events with a sliding window of
//! acks in flight.
//!
//! The invariant: a publish succeeds only once the stream acknowledged it (stored, or a
//! duplicate of a publish id within the duplicate window: `Nats-Msg-Id`), within the request
//! timeout; the subject carries the configured prefix. Many events are sent in order on one
//! connection (so the stream stores them in that order) with at most [`PUBLISH_WINDOW`] acks
//! awaited at a time.

use std::collections::VecDeque;
use std::future::Future;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use super::{JetStreamBus, broker};
use crate::bus::{BusError, PublishAck, Publisher, RawPublisher};
use crate::events::Event;

/// Publish acks [`JetStreamBus::publish_many`] keeps in flight: the next event is sent
/// while the acks of up to this many earlier ones are still on their way, so the server's
/// replies overlap the sends instead of costing a round trip per batch.
pub const PUBLISH_WINDOW: usize = 256;

impl JetStreamBus {
    /// Publishes several events in order with a sliding window of [`PUBLISH_WINDOW`] acks in
    /// flight (once the window is full, the oldest ack is awaited before the next send).
    /// Results in input order, one per event.
    pub async fn publish_many<'a>(
        &self,
        events: impl IntoIterator<Item = (&'a Event, Option<&'a str>)>,
    ) -> Vec<Result<PublishAck, BusError>> {
        let events = events.into_iter();
        let mut answers = Vec::with_capacity(events.size_hint().0);
        // Sends in order; a send that failed waits here in its place, so answers stay in order.
        let mut in_flight = VecDeque::with_capacity(PUBLISH_WINDOW);
        for (event, publish_id) in events {
            if in_flight.len() == PUBLISH_WINDOW
                && let Some(oldest) = in_flight.pop_front()
            {
                answers.push(answer(oldest).await);
            }
            let sent = match event.encode() {
                Ok(payload) => {
                    self.send(event.subject().as_str(), Bytes::from(payload), publish_id)
                        .await
                }
                Err(error) => Err(BusError::from(error)),
            };
            in_flight.push_back(sent);
        }
        for sent in in_flight {
            answers.push(answer(sent).await);
        }
        answers
    }

    async fn send(
        &self,
        subject: &str,
        payload: Bytes,
        publish_id: Option<&str>,
    ) -> Result<jetstream::context::PublishAckFuture, BusError> {
        let mut publish = PublishMessage::build().payload(payload);
        if let Some(id) = publish_id {
            publish = publish.message_id(id);
        }
        let subject = format!("{}{subject}", self.inner.config.subject_prefix);
        self.inner
            .context
            .send_publish(subject, publish)
            .await
            .map_err(broker)
    }

    pub(super) async fn publish_bytes(
        &self,
        subject: &str,
        payload: Bytes,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        let ack = self.send(subject, payload, publish_id).await?;
        stored(ack.await)
    }
}

/// The answer to one send of [`JetStreamBus::publish_many`]: its ack awaited, or why it was
/// not sent.
async fn answer(
    sent: Result<jetstream::context::PublishAckFuture, BusError>,
) -> Result<PublishAck, BusError> {
    stored(sent?.await)
}

/// What the stream's ack says about a publish.
fn stored(
    ack: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) -> Result<PublishAck, BusError> {
    let ack = ack.map_err(broker)?;
    Ok(if ack.duplicate {
        PublishAck::Duplicate
    } else {
        PublishAck::Stored { seq: ack.sequence }
    })
}

impl Publisher for JetStreamBus {
    async fn publish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        let payload = Bytes::from(event.encode()?);
        self.publish_bytes(event.subject().as_str(), payload, publish_id)
            .await
    }

    fn reachable(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    fn publish_in_order(
        &self,
        events: &[(&Event, Option<&str>)],
    ) -> impl Future<Output = Vec<Result<PublishAck, BusError>>> + Send {
        self.publish_many(events.iter().copied())
    }
}

impl RawPublisher for JetStreamBus {
    async fn publish_raw(
        &self,
        subject: &str,
        payload: Bytes,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        self.publish_bytes(subject, payload, publish_id).await
    }
}
