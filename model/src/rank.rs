//! A ranking function that strictly decreases on every step, so the state graph is acyclic
//! and every maximal path ends in a quiescent state (SPEC.md section 3: the liveness
//! properties are checked over quiescent states, which is sound only on an acyclic graph).
//!
//! The rank is a weighted sum of the work left: budgets, events waiting in outboxes, pending
//! reservation requests, deliveries left per message, and steps left per busy member. The
//! weights are chosen so that each step's decrease outweighs the work it creates: a delivery
//! spends one of the message's `max_deliver` attempts, worth more than all the member's work
//! on it; an order event's member work includes the `ticket:updated` it may write; a budget
//! unit is worth more than the event or message it creates.
//!
//! The invariant: for every transition from `s` to `t`, `rank(t) < rank(s)`; `tests/rank.rs`
//! checks it on every transition of every reachable state, for every variant.

use crate::config::Config;
use crate::state::{Event, Group, MAX_VERSIONS, Member, Message, State, Status, Step};

/// The weights, derived from the configuration's `max_deliver`.
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    max_deliver: u64,
    /// One delivery of a ticket event (orders group).
    delivery_ticket_event: u64,
    /// One delivery of an order event (tickets group).
    delivery_order_event: u64,
}

const VERSIONS: u64 = MAX_VERSIONS as u64;

impl Weights {
    /// The weights for `config`.
    pub fn new(config: &Config) -> Self {
        let max_deliver = u64::from(config.max_deliver);
        // Orders-group members write replicas, never events: Read > Save > Ack.
        let orders_member_max = 4 + VERSIONS;
        let delivery_ticket_event = orders_member_max + 1;
        let mut weights = Self {
            max_deliver,
            delivery_ticket_event,
            delivery_order_event: 0,
        };
        // Tickets-group members may write a ticket:updated: their work includes its future.
        let tickets_member_max = 4 + weights.outbox_entry(Group::Orders) + VERSIONS;
        weights.delivery_order_event = tickets_member_max + 1;
        weights
    }

    /// A fresh message (no delivery yet) of an event for `group`.
    fn fresh_message(&self, group: Group) -> u64 {
        self.max_deliver * self.delivery(group)
    }

    fn delivery(&self, group: Group) -> u64 {
        match group {
            Group::Orders => self.delivery_ticket_event,
            Group::Tickets => self.delivery_order_event,
        }
    }

    /// An event waiting to be published, for `group`'s subjects.
    fn outbox_entry(&self, group: Group) -> u64 {
        self.fresh_message(group) + 1
    }

    fn largest_message(&self) -> u64 {
        self.fresh_message(Group::Orders)
            .max(self.fresh_message(Group::Tickets))
    }

    fn message(&self, message: &Message) -> u64 {
        match message.status {
            Status::Pending | Status::InFlight => {
                self.max_deliver
                    .saturating_sub(u64::from(message.deliveries))
                    * self.delivery(message.event().group())
            }
            Status::Acked | Status::Dead => 0,
        }
    }

    fn member(&self, group: Group, member: &Member) -> u64 {
        let Member::Busy { step, .. } = member else {
            return 0;
        };
        let writes = match group {
            Group::Orders => 0,
            Group::Tickets => self.outbox_entry(Group::Orders),
        };
        match step {
            Step::Ack => 1,
            Step::Publish { .. } => 2 + self.fresh_message(Group::Orders),
            Step::Save { read_version } => {
                3 + writes + VERSIONS.saturating_sub(u64::from(*read_version))
            }
            Step::Read => 4 + writes + VERSIONS,
        }
    }

    /// The rank of `state`.
    pub fn rank(&self, state: &State) -> u64 {
        let budget = state.budget;
        let ticket_event = self.outbox_entry(Group::Orders);
        let order_event = self.outbox_entry(Group::Tickets);
        let request = order_event + 1;
        let mut rank = u64::from(budget.tickets) * (ticket_event + 1)
            + u64::from(budget.updates) * (ticket_event + 1)
            + u64::from(budget.orders) * (request + 1)
            + u64::from(budget.cancels) * (order_event + 1)
            + u64::from(budget.crashes) * (self.largest_message() + 1)
            + u64::from(budget.redeliveries)
            + u64::from(budget.duplicates) * (self.largest_message() + 1);
        rank += state.reservation_requests.len() as u64 * request;
        for outbox in &state.outboxes {
            for event in outbox.as_slice() {
                rank += self.outbox_entry(Event::group(*event));
            }
        }
        for message in state.messages.as_slice() {
            rank += self.message(message);
        }
        for group in Group::ALL {
            for member in state.group_members(group) {
                rank += self.member(group, member);
            }
        }
        rank
    }
}
