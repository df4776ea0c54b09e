//! Publishing on JetStream: one event, raw bytes, or many events whose acks are awaited
//! together.
//!
//! The invariant: a publish succeeds only once the stream acknowledged it (stored, or a
//! duplicate of a publish id within the duplicate window: `Nats-Msg-Id`), within the request
//! timeout; the subject carries the configured prefix.

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use super::{JetStreamBus, broker};
use crate::bus::{BusError, PublishAck, Publisher, RawPublisher};
use crate::events::Event;

impl JetStreamBus {
    /// Publishes several events and only then waits for their acks, so the server's replies
    /// overlap (one round trip for the lot rather than one each). Results in input order.
    pub async fn publish_many<'a>(
        &self,
        events: impl IntoIterator<Item = (&'a Event, Option<&'a str>)>,
    ) -> Vec<Result<PublishAck, BusError>> {
        let mut pending = Vec::new();
        for (event, publish_id) in events {
            let sent = match event.encode() {
                Ok(payload) => {
                    self.send(event.subject().as_str(), Bytes::from(payload), publish_id)
                        .await
                }
                Err(error) => Err(BusError::from(error)),
            };
            pending.push(sent);
        }
        let mut acks = Vec::with_capacity(pending.len());
        for sent in pending {
            acks.push(match sent {
                Ok(ack) => stored(ack.await),
                Err(error) => Err(error),
            });
        }
        acks
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
