//! The members' transitions: a busy member's next step (read, save, publish, ack). Each
//! returns `None`, changing nothing, when the member is not busy at that step: the action is
//! not enabled.
//!
//! The invariant: a member moves only forward through its delivery (read, save, publish,
//! ack) and is idle again after its last step; an ack from any delivery acknowledges the
//! message, and a dead-lettered message stays dead.

use super::TicketingModel;
use super::broker::append;
use super::listener::{Decision, after_write, busy, set_member};
use crate::state::{Group, Member, Service, State, Status, Step};

impl TicketingModel {
    /// `Action::Read`: a member that acknowledged first (`ack-before-save`) reads the store
    /// and decides.
    pub(crate) fn read(&self, state: &mut State, group: Group, member: u8) -> Option<()> {
        let (holding, _) = busy(state, group, member)?;
        let event = state.messages.as_slice()[usize::from(holding.message)].event();
        let decision = self.decide(state, event);
        self.follow(state, group, member, holding, decision);
        Some(())
    }

    /// `Action::Save`: a member saves the record it read (update-if-current). With the
    /// outbox, the event the save produced is written with it; without, the member publishes
    /// it next. On a version conflict it re-reads and decides again, or fails the delivery
    /// (`conflict-nak`).
    pub(crate) fn save(&self, state: &mut State, group: Group, member: u8) -> Option<()> {
        let (holding, step) = busy(state, group, member)?;
        let Step::Save { read_version } = step else {
            return None;
        };
        let event = state.messages.as_slice()[usize::from(holding.message)].event();
        match self.update_if_current(state, event, read_version) {
            Ok(published) => {
                let uses_outbox = self.variant().uses_outbox();
                let publish = published.filter(|_| !uses_outbox);
                if let (Some(event), true) = (published, uses_outbox) {
                    self.write_event(state, Service::Tickets, event);
                }
                let next = after_write(holding.acked, publish);
                set_member(state, group, member, holding, next);
            }
            Err(()) => {
                let decision = if self.variant().rereads_on_conflict() {
                    self.decide(state, event)
                } else {
                    Decision::Fail
                };
                self.follow(state, group, member, holding, decision);
            }
        }
        Some(())
    }

    /// `Action::Publish`: without an outbox, a member publishes the event its save produced
    /// (no publish id), then acks.
    pub(crate) fn publish(&self, state: &mut State, group: Group, member: u8) -> Option<()> {
        let (holding, step) = busy(state, group, member)?;
        let Step::Publish { event } = step else {
            return None;
        };
        append(state, event, false);
        set_member(
            state,
            group,
            member,
            holding,
            after_write(holding.acked, None),
        );
        Some(())
    }

    /// `Action::Ack`: a member acknowledges its delivery and is idle again.
    pub(crate) fn ack(&self, state: &mut State, group: Group, member: u8) -> Option<()> {
        let (holding, _) = busy(state, group, member)?;
        let record = &mut state.messages.as_mut_slice()[usize::from(holding.message)];
        // An ack from any delivery acknowledges the message, as JetStream's does by stream
        // sequence; a dead-lettered message stays dead.
        if matches!(record.status, Status::Pending | Status::InFlight) {
            record.status = Status::Acked;
        }
        state.members[group as usize][usize::from(member)] = Member::Idle;
        Some(())
    }
}
