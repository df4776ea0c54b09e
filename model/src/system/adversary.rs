//! The adversary's transitions: crashes (a member mid-handler, an HTTP handler between its
//! save and its publish or between its check and its insert), an ack wait expiring while the
//! member still works (a late ack), and an event delivered again as a new message (a
//! publisher's retry, a relay's republish after the dedup window).
//!
//! The invariant: every adversary transition spends one unit of its budget, and only loses
//! or repeats work: it never writes a record.

use super::TicketingModel;
use super::broker::append;
use super::listener::busy;
use crate::state::{Group, Member, MessageIx, Service, State};

impl TicketingModel {
    /// `Action::CrashMember`: a busy member crashes and restarts idle; its delivery, unless
    /// acknowledged, returns to pending (or is dead-lettered).
    pub(crate) fn crash_member(&self, state: &mut State, group: Group, member: u8) -> Option<()> {
        let (holding, _) = busy(state, group, member)?;
        state.budget.crashes -= 1;
        if !holding.acked {
            self.return_delivery(state, holding.message, holding.delivery);
        }
        state.members[group as usize][usize::from(member)] = Member::Idle;
        Some(())
    }

    /// `Action::CrashBeforePublish`: without an outbox, an HTTP handler crashes after its
    /// save, before its publish: the event is lost.
    pub(crate) fn crash_before_publish(&self, state: &mut State, service: Service, entry: u8) {
        state.budget.crashes -= 1;
        state.outboxes[service as usize].remove(usize::from(entry));
    }

    /// `Action::CrashBeforeInsert`: in `racy-reserve`, an HTTP handler crashes between its
    /// reservation check and its insert: the order is never placed.
    pub(crate) fn crash_before_insert(&self, state: &mut State, request: u8) {
        state.budget.crashes -= 1;
        state.reservation_requests.remove(usize::from(request));
    }

    /// `Action::ExpireAckWait`: the ack wait of an in-flight `message` expires while its
    /// member still works on it: the message returns to pending (or is dead-lettered), and
    /// the member's later ack is a late one.
    pub(crate) fn expire_ack_wait(&self, state: &mut State, message: MessageIx) {
        state.budget.redeliveries -= 1;
        let deliveries = state.messages.as_slice()[usize::from(message)].deliveries;
        self.return_delivery(state, message, deliveries);
    }

    /// `Action::DuplicatePublish`: the event is delivered again as a new message: a publisher
    /// retrying without publish ids, or, with the outbox, a relay republishing after the
    /// broker's dedup window (or a broker redelivering a settled message).
    pub(crate) fn duplicate_publish(&self, state: &mut State, message: MessageIx) {
        state.budget.duplicates -= 1;
        let event = state.messages.as_slice()[usize::from(message)].event();
        append(state, event, false);
    }
}
