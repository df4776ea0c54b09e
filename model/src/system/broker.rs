//! The broker's transitions (an HTTP handler publishing what it saved, a delivery) and the
//! stream operations every transition shares: writing an event (to the outbox or the
//! handler's pending publishes), appending a message, returning a delivery.
//!
//! The invariant: a message is delivered only while pending, each delivery is counted, and a
//! returned delivery goes back to pending only if it is still the message's current one, or
//! to dead after `max_deliver` deliveries; with publish ids the stream holds each event once.

use super::TicketingModel;
use super::listener::{Holding, set_member};
use crate::state::{Event, Group, Message, MessageIx, Service, State, Status, Step};

impl TicketingModel {
    /// `Action::PublishSaved`: without an outbox, an HTTP handler publishes the event it
    /// saved (no publish id: a retry would store it again).
    pub(crate) fn publish_saved(&self, state: &mut State, service: Service, entry: u8) {
        let event = state.outboxes[service as usize].remove(usize::from(entry));
        append(state, event, false);
    }

    /// `Action::Deliver`: the broker delivers a pending `message` to an idle `member` of
    /// `group`, which performs its first store operation at once (it reads and decides, or
    /// inserts the replica). A listener that acknowledges first (`ack-before-save`)
    /// acknowledges instead, and reads in a step of its own.
    pub(crate) fn deliver(&self, state: &mut State, group: Group, member: u8, message: MessageIx) {
        let record = &mut state.messages.as_mut_slice()[usize::from(message)];
        record.deliveries += 1;
        record.status = Status::InFlight;
        let (event, delivery) = (record.event(), record.deliveries);
        if self.variant().acks_after_save() {
            let decision = self.decide(state, event);
            let holding = Holding {
                message,
                delivery,
                acked: false,
            };
            self.follow(state, group, member, holding, decision);
        } else {
            // Acknowledge first, as the variant's listener does on receipt.
            record.status = Status::Acked;
            let holding = Holding {
                message,
                delivery,
                acked: true,
            };
            set_member(state, group, member, holding, Some(Step::Read));
        }
    }

    /// Writes `event` with the record change that produced it (by `service`'s HTTP handler or
    /// listener). With the outbox, the relay publishes it (with its publish id) in the same
    /// step; without, it waits in the HTTP handler's pending publishes, where a crash can
    /// lose it.
    pub(super) fn write_event(&self, state: &mut State, service: Service, event: Event) {
        if self.variant().uses_outbox() {
            append(state, event, true);
        } else {
            state.outboxes[service as usize].push(event);
        }
    }

    /// The delivery `delivery` of `message` failed or its member crashed: unless a later
    /// delivery superseded it (or it was acknowledged), the message returns to pending, or is
    /// dead-lettered after `max_deliver` deliveries.
    pub(super) fn return_delivery(&self, state: &mut State, message: MessageIx, delivery: u8) {
        let max_deliver = self.config.max_deliver;
        let message = &mut state.messages.as_mut_slice()[usize::from(message)];
        if message.status == Status::InFlight && message.deliveries == delivery {
            message.status = if message.deliveries >= max_deliver {
                Status::Dead
            } else {
                Status::Pending
            };
        }
    }
}

/// Appends `event` to the stream as a pending message. With a publish id (`dedup`), an
/// event already in the stream is dropped.
pub(super) fn append(state: &mut State, event: Event, dedup: bool) {
    if dedup
        && state
            .messages
            .as_slice()
            .iter()
            .any(|message| message.event() == event)
    {
        return;
    }
    state.messages.push(Message::new(event, Status::Pending, 0));
}
