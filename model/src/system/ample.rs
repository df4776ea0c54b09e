//! Partial-order reduction: in a state where some system action is independent of everything
//! that can happen before it and can never repair a violated property, the checker explores
//! that action alone (an *ample set* of one) instead of every enabled action.
//!
//! The action chosen is a member's acknowledgement that nothing else can race any more: the
//! adversary's crash budget is spent (so the member cannot crash before acknowledging), and
//! the message is either no longer live (acknowledged or dead-lettered: the ack only idles the
//! member) or in flight with this member's delivery and no late ack left (so no expiry,
//! crash or redelivery can move it before the ack does). docs/model.md ("Partial-order
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
use crate::state::{Group, State, Status, Step};

impl TicketingModel {
    /// The action the reduced graph explores alone in `state`, if there is one: the first
    /// member (by group, then index) whose acknowledgement is ample.
    pub fn ample_action(&self, state: &State) -> Option<Action> {
        if state.budget.crashes > 0 {
            // Every member step races its member's crash.
            return None;
        }
        Group::ALL.into_iter().find_map(|group| {
            (0..self.members() as u8)
                .map(|member| Action::Ack { group, member })
                .find(|action| self.is_ample(state, *action))
        })
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
        let Action::Ack { group, member } = action else {
            return false;
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
}
