//! One delivery from JetStream, and how a member settles it: ack, nak (with the delay it
//! names), term.
//!
//! The invariant: a delivery holds one permit of its member's capacity until it is settled or
//! dropped; a term is recorded as a dead letter, with its reason, by the member that sent it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use tokio::sync::OwnedSemaphorePermit;

use super::broker;
use super::dead_letters::DeadLetters;
use crate::bus::{BusError, DeadLetter, DeadLetterReason, Delivery, MessageHandle, QueueGroup};
use crate::sync::Mutex;

/// One delivery from JetStream.
pub struct JetStreamDelivery {
    pub(super) message: jetstream::Message,
    pub(super) stream_seq: u64,
    pub(super) delivery_count: u32,
    pub(super) prefix_len: usize,
    /// The member's capacity this delivery holds, given back when it is settled or dropped.
    pub(super) permit: Mutex<Option<OwnedSemaphorePermit>>,
    pub(super) queue_group: QueueGroup,
    pub(super) dead_letters: DeadLetters,
    /// On its group's last allowed attempt: a copy is kept in `dead_letters` until settled.
    pub(super) last_attempt: bool,
}

impl std::fmt::Debug for JetStreamDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamDelivery")
            .field("subject", &self.message.subject)
            .field("stream_seq", &self.stream_seq)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

impl JetStreamDelivery {
    async fn settle(&self, kind: AckKind) -> Result<(), BusError> {
        self.message.ack_with(kind).await.map_err(broker)?;
        self.permit.lock().take();
        Ok(())
    }
}

impl MessageHandle for JetStreamDelivery {
    fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    async fn ack(&self) -> Result<(), BusError> {
        self.settle(AckKind::Ack).await?;
        if self.last_attempt {
            self.dead_letters
                .forget_last_attempt(&self.queue_group, self.stream_seq);
        }
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.settle(AckKind::Nak(delay)).await
    }

    async fn term(&self, reason: &str) -> Result<(), BusError> {
        self.settle(AckKind::Term).await?;
        if self.last_attempt {
            self.dead_letters
                .forget_last_attempt(&self.queue_group, self.stream_seq);
        }
        let dead = DeadLetter {
            queue_group: Arc::clone(&self.queue_group),
            subject: self.subject().to_owned(),
            stream_seq: self.stream_seq,
            payload: self.message.payload.to_vec(),
            reason: DeadLetterReason::Terminated(reason.to_owned()),
        };
        self.dead_letters.record(dead, self.delivery_count).await;
        Ok(())
    }
}

impl Delivery for JetStreamDelivery {
    fn subject(&self) -> &str {
        let subject = self.message.subject.as_str();
        subject.get(self.prefix_len..).unwrap_or(subject)
    }

    fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    fn stream_seq(&self) -> u64 {
        self.stream_seq
    }
}

#[cfg(test)]
mod tests {
    use super::JetStreamDelivery;

    /// A delivery moves through the member's channel, its ticket's lane and its handler's
    /// task. When each carried its own copy of the dead-letter stream's handles, a delivery
    /// was 3,664 bytes and its handler's task 16,712, and copying them took `memmove` from
    /// 7.9% to 16.8% of the bus benchmark's samples; most of what is left is async-nats's
    /// message.
    #[test]
    fn a_delivery_is_small_enough_to_move_at_every_hand_off() {
        let size = std::mem::size_of::<JetStreamDelivery>();
        assert!(size <= 640, "a JetStream delivery is {size} bytes");
    }
}
