//! Partial-order reduction: in a state where some system action is independent of everything
//! that can happen before it and can never repair a violated property, the checker explores
//! that action alone (an *ample set* of one) instead of every enabled action.
//!
//! The action chosen is a member's acknowledgement that nothing else can race any more: the
//! adversary's crash budget is spent (so the member cannot crash before acknowledging), and
//! the message is either no longer live (acknowledged or dead-lettered: the ack only idles the
//! member) or in flight with this member's delivery and no late ack left (so no expiry,
//! crash or redelivery can move it before the ack does). The other is an orders-service
//! member's save of a replica once the adversary is spent and nothing else can read or write
//! that replica before it (`replica_save_is_ample`). docs/model.md ("Partial-order
//! reduction") proves the reduced graph reaches a violation of every property the full graph
//! reaches; `tests/reduction.rs` checks the conditions the proof uses (independence,
//! persistence, no repair) on every reachable state of small configurations of every
//! variant, and that verdicts are the same with and without it.
//!
//! The invariant: [`TicketingModel::ample_action`] returns only an enabled system action for
//! which [`TicketingModel::is_ample`] holds, and `is_ample` holds only where the proof's
//! conditions C1 (independence) and C2 (no repair) hold; properties and quiescence are always
//! judged on the full set of enabled actions, never on the ample set.

use super::TicketingModel;
use super::listener::busy;
use crate::action::Action;
use crate::state::{Event, Group, State, Status, Step};

impl TicketingModel {
    /// The action the reduced graph explores alone in `state`, if there is one: the first
    /// member (by group, then index) whose acknowledgement is ample.
    pub fn ample_action(&self, state: &State) -> Option<Action> {
        if state.budget.crashes > 0 {
            // Every member step races its member's crash.
            return None;
        }
        let members = 0..self.members() as u8;
        let acks = Group::ALL.into_iter().flat_map(|group| {
            members
                .clone()
                .map(move |member| Action::Ack { group, member })
        });
        let saves = members.clone().map(|member| Action::Save {
            group: Group::Orders,
            member,
        });
        acks.chain(saves)
            .find(|action| self.is_ample(state, *action))
    }

    /// Whether `action` may be explored alone in `state`. Only a member's ack qualifies, and
    /// only where (see the module docs and docs/model.md):
    /// - it is enabled: the member is busy, at its ack, and did not acknowledge on receipt;
    /// - no crash is left, so nothing can disable it (a crash is the only other step of a busy
    ///   member, and budgets never grow);
    /// - its message is acknowledged or dead (absorbing: the ack then changes only the
    ///   member), or in flight with this member's delivery and no late ack left (so no other
    ///   step can return, redeliver or dead-letter the message first; other holders of the
    ///   message hold stale deliveries, whose failures change nothing and whose acks commute
    ///   with this one).
    pub fn is_ample(&self, state: &State, action: Action) -> bool {
        let (group, member) = match action {
            Action::Ack { group, member } => (group, member),
            Action::Save {
                group: Group::Orders,
                member,
            } => return self.replica_save_is_ample(state, member),
            _ => return false,
        };
        if state.budget.crashes > 0 || usize::from(member) >= self.members() {
            return false;
        }
        let Some((holding, Step::Ack)) = busy(state, group, member) else {
            return false;
        };
        if holding.acked {
            return false;
        }
        let message = state.messages.as_slice()[usize::from(holding.message)];
        match message.status {
            Status::Acked | Status::Dead => true,
            Status::InFlight => {
                holding.delivery != 0
                    && message.deliveries == holding.delivery
                    && state.budget.redeliveries == 0
            }
            Status::Pending => false,
        }
    }

    /// Whether the orders-service member `member`'s save of a replica may be explored alone
    /// (docs/model.md, "Partial-order reduction", the replica save). Only where:
    /// - the adversary is spent (no crash, late ack or duplicate left), so nothing can disable
    ///   the save, return or redeliver its message, or make another copy of its event;
    /// - the design applies `ticket:updated` only at `version - 1` and acknowledges what it
    ///   already applied, so every other delivery of the ticket's events decides the same
    ///   before and after the save (or waits, a stutter, until it);
    /// - the member holds the current delivery of an in-flight `ticket:updated` for `v`, has
    ///   not acknowledged it, no other member holds that message, and no other copy of the
    ///   event is anywhere (stream, outboxes, members' publishes);
    /// - no other orders-service member is about to read or save the same replica;
    /// - the replica is at `read_version` (the save succeeds) and faithful to the primary
    ///   there, so the save repairs no property.
    fn replica_save_is_ample(&self, state: &State, member: u8) -> bool {
        let variant = self.variant();
        let budget = state.budget;
        if budget.crashes > 0
            || budget.redeliveries > 0
            || budget.duplicates > 0
            || !variant.checks_version()
            || !variant.acks_duplicates()
            || usize::from(member) >= self.members()
        {
            return false;
        }
        let Some((holding, Step::Save { read_version })) = busy(state, Group::Orders, member)
        else {
            return false;
        };
        let messages = state.messages.as_slice();
        let message = messages[usize::from(holding.message)];
        let Event::TicketUpdated { ticket, .. } = message.event() else {
            return false;
        };
        let current = message.status == Status::InFlight
            && holding.delivery != 0
            && message.deliveries == holding.delivery;
        let Some(replica) = state.replicas[usize::from(ticket)] else {
            return false;
        };
        if holding.acked
            || !current
            || replica.version != read_version
            || replica.price != state.price_at(ticket, replica.version)
        {
            return false;
        }
        let same_event = |event: &Event| *event == message.event();
        let other_copy =
            messages.iter().enumerate().any(|(ix, other)| {
                ix != usize::from(holding.message) && same_event(&other.event())
            }) || state
                .outboxes
                .iter()
                .any(|outbox| outbox.as_slice().iter().any(same_event));
        if other_copy {
            return false;
        }
        // No other member holds the message, publishes a copy of the event, or reads or
        // saves the same replica.
        Group::ALL.into_iter().all(|group| {
            (0..self.members() as u8).all(|other| {
                if group == Group::Orders && other == member {
                    return true;
                }
                match busy(state, group, other) {
                    None => true,
                    Some((held, step)) => {
                        let about_ticket = messages[usize::from(held.message)].event().ticket()
                            == ticket
                            && held.message != holding.message;
                        held.message != holding.message
                            && !matches!(step, Step::Publish { event } if same_event(&event))
                            && !(group == Group::Orders
                                && about_ticket
                                && matches!(step, Step::Read | Step::Save { .. }))
                    }
                }
            })
        })
    }
}
