//! Which actions are enabled in a state: the guards of every transition, in four sections
//! (clients, publishers, broker, members). An adversary action is listed next to what it
//! strikes (a crash next to the step it interrupts).
//!
//! The invariant: the order is fixed (sections in this order, each over tickets, orders,
//! messages and members by index), so the checker's breadth-first counterexamples and the
//! traces built from "the first enabled system action" are the same on every run.

use std::ops::ControlFlow;

use super::TicketingModel;
use super::listener::{Decision, busy};
use crate::action::Action;
use crate::state::{
    Group, Member, MessageIx, OrderIx, OrderStatus, Service, State, Status, Step, TicketIx,
};

impl TicketingModel {
    /// Calls `visit` with each enabled action, in a fixed order, until it breaks (returns
    /// `Break` if it did).
    pub(crate) fn for_each_action(
        &self,
        state: &State,
        visit: &mut impl FnMut(Action) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        self.client_actions(state, visit)?;
        self.publisher_actions(state, visit)?;
        self.broker_actions(state, visit)?;
        self.member_actions(state, visit)
    }

    /// Clients' HTTP requests, while their budgets last, and the racy reservation's second
    /// half (or its crash) for each request between its check and its insert.
    fn client_actions(
        &self,
        state: &State,
        visit: &mut impl FnMut(Action) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let variant = self.variant();
        let budget = state.budget;
        if budget.tickets > 0 {
            visit(Action::CreateTicket)?;
        }
        for (ticket, primary) in state.tickets.as_slice().iter().enumerate() {
            let ticket = ticket as TicketIx;
            let editable = primary.order.is_none() || !variant.rejects_reserved_edits();
            if budget.updates > 0 && editable {
                visit(Action::UpdatePrice { ticket })?;
            }
            if can_order(state, ticket) {
                visit(if variant.reserves_atomically() {
                    Action::CreateOrder { ticket }
                } else {
                    Action::CheckReservation { ticket }
                })?;
            }
        }
        for request in 0..state.reservation_requests.len() as u8 {
            visit(Action::InsertOrder { request })?;
            if budget.crashes > 0 {
                visit(Action::CrashBeforeInsert { request })?;
            }
        }
        if budget.cancels > 0 {
            for (order, record) in state.orders.as_slice().iter().enumerate() {
                if record.status == OrderStatus::Created {
                    visit(Action::CancelOrder {
                        order: order as OrderIx,
                    })?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Without an outbox, HTTP handlers publish what they saved (or crash first). With one,
    /// nothing: the relay publishes in the step that wrote the event.
    fn publisher_actions(
        &self,
        state: &State,
        visit: &mut impl FnMut(Action) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if self.variant().uses_outbox() {
            return ControlFlow::Continue(());
        }
        for service in Service::ALL {
            for entry in 0..state.outbox(service).len() as u8 {
                visit(Action::PublishSaved { service, entry })?;
                if state.budget.crashes > 0 {
                    visit(Action::CrashBeforePublish { service, entry })?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Per message: delivering it to each idle member of its group while it is pending (and
    /// applicable, where waiting would be a stutter), expiring its ack wait while in flight,
    /// and a duplicate of it (a publisher's retry, a republish after the dedup window).
    fn broker_actions(
        &self,
        state: &State,
        visit: &mut impl FnMut(Action) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let variant = self.variant();
        let budget = state.budget;
        for (index, message) in state.messages.as_slice().iter().enumerate() {
            let message_ix = index as MessageIx;
            match message.status {
                Status::Pending => {
                    let applicable = !variant.acks_after_save()
                        || self.decide(state, message.event()) != Decision::Wait;
                    if applicable {
                        self.deliveries(state, message.event().group(), message_ix, visit)?;
                    }
                }
                Status::InFlight => {
                    if budget.redeliveries > 0 {
                        visit(Action::ExpireAckWait {
                            message: message_ix,
                        })?;
                    }
                }
                Status::Acked | Status::Dead => {}
            }
            // A publisher retrying without publish ids, or (with the outbox) a relay
            // republishing after the broker's dedup window or the broker redelivering a
            // settled message: a duplicate delivery from the budget, for every design
            // (SPEC.md section 3).
            if budget.duplicates > 0 {
                visit(Action::DuplicatePublish {
                    message: message_ix,
                })?;
            }
        }
        ControlFlow::Continue(())
    }

    /// Delivering `message` to each idle member of `group`.
    fn deliveries(
        &self,
        state: &State,
        group: Group,
        message: MessageIx,
        visit: &mut impl FnMut(Action) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for member in 0..self.members() {
            if state.members[group as usize][member] == Member::Idle {
                visit(Action::Deliver {
                    group,
                    member: member as u8,
                    message,
                })?;
            }
        }
        ControlFlow::Continue(())
    }

    /// Each busy member's next step, and its crash.
    fn member_actions(
        &self,
        state: &State,
        visit: &mut impl FnMut(Action) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for group in Group::ALL {
            for member in 0..self.members() as u8 {
                let Some((_, step)) = busy(state, group, member) else {
                    continue;
                };
                visit(member_step(group, member, step))?;
                if state.budget.crashes > 0 {
                    visit(Action::CrashMember { group, member })?;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// The action that performs a busy member's next `step`.
fn member_step(group: Group, member: u8, step: Step) -> Action {
    match step {
        Step::Read => Action::Read { group, member },
        Step::Save { .. } => Action::Save { group, member },
        Step::Publish { .. } => Action::Publish { group, member },
        Step::Ack => Action::Ack { group, member },
    }
}

/// Whether a client may order `ticket`: budget left, the orders service has its replica, and
/// no active order holds it (the orders service's own check).
fn can_order(state: &State, ticket: TicketIx) -> bool {
    state.budget.orders > 0
        && state.replicas[usize::from(ticket)].is_some()
        && state.active_orders(ticket).next().is_none()
}
