//! [`TicketingModel`] as stateright's [`Model`]: the state machine the checker explores.
//! `init_states` is the empty system with the configured budgets; `actions` lists the
//! actions whose guards hold (see the `system` module), or only an ample set where the
//! partial-order reduction is on and finds one; `next_state` is one `match`, one
//! transition function per action kind. The properties, the action and step wording and the
//! explorer's drawing (the last state above the path's sequence chart) are the ones of the
//! `properties`, `words` and `chart` modules.
//!
//! This module sits on top of the others, and nothing in the crate names it: modules below
//! it (`trace`, `run`) use the model through stateright's `Model` trait and
//! [`TicketingModel::step`].
//!
//! The invariant: `next_state` is applied only to actions `actions` listed (stateright's
//! checker guarantees it; [`TicketingModel::step`] checks it for replays), and every step
//! ends with `State::forget_the_irrelevant`, so equal systems are equal states.

use std::ops::ControlFlow;

use stateright::{Model, Path, Property};

use crate::action::Action;
use crate::properties::Prop;
use crate::state::{Budget, State};
use crate::system::TicketingModel;
use crate::words::{describe_action, describe_step};

impl TicketingModel {
    /// The state after `action`, if it is enabled in `state` (whether or not the
    /// partial-order reduction would explore it).
    pub fn step(&self, state: &State, action: Action) -> Option<State> {
        let enabled = self
            .for_each_action(state, &mut |candidate| {
                if candidate == action {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .is_break();
        if !enabled {
            return None;
        }
        self.next_state(state, action)
    }
}

/// Whether the model reports exactly the eight properties, in SPEC.md's order and by their
/// names (used by tests).
pub fn names_match(model: &TicketingModel) -> bool {
    model
        .properties()
        .iter()
        .zip(Prop::ALL)
        .all(|(property, prop)| property.name == prop.name())
}

impl Model for TicketingModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let config = &self.config;
        vec![State {
            budget: Budget {
                tickets: config.tickets,
                updates: config.updates,
                orders: config.orders,
                cancels: config.cancels,
                crashes: config.crashes,
                redeliveries: config.redeliveries,
                duplicates: config.duplicates,
            },
            ..State::default()
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        if self.partial_order
            && let Some(ample) = self.ample_action(state)
        {
            actions.push(ample);
            return;
        }
        let _ = self.for_each_action(state, &mut |action| {
            actions.push(action);
            ControlFlow::Continue(())
        });
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        let next = &mut state;
        match action {
            // Clients.
            Action::CreateTicket => self.create_ticket(next),
            Action::UpdatePrice { ticket } => self.update_price(next, ticket),
            Action::CreateOrder { ticket } => self.create_order(next, ticket),
            Action::CheckReservation { ticket } => self.check_reservation(next, ticket),
            Action::InsertOrder { request } => self.insert_order(next, request),
            Action::CancelOrder { order } => self.cancel_order(next, order),
            // The broker.
            Action::PublishSaved { service, entry } => self.publish_saved(next, service, entry),
            Action::Deliver {
                group,
                member,
                message,
            } => self.deliver(next, group, member, message),
            // Members: `None` if the member is not busy at that step.
            Action::Read { group, member } => self.read(next, group, member)?,
            Action::Save { group, member } => self.save(next, group, member)?,
            Action::Publish { group, member } => self.publish(next, group, member)?,
            Action::Ack { group, member } => self.ack(next, group, member)?,
            // The adversary.
            Action::CrashMember { group, member } => self.crash_member(next, group, member)?,
            Action::CrashBeforePublish { service, entry } => {
                self.crash_before_publish(next, service, entry)
            }
            Action::CrashBeforeInsert { request } => self.crash_before_insert(next, request),
            Action::ExpireAckWait { message } => self.expire_ack_wait(next, message),
            Action::DuplicatePublish { message } => self.duplicate_publish(next, message),
        }
        state.forget_the_irrelevant();
        Some(state)
    }

    fn format_action(&self, action: &Action) -> String {
        describe_action(action)
    }

    fn format_step(&self, last: &State, action: Action) -> Option<String> {
        let next = self.next_state(last, action)?;
        Some(describe_step(last, &action, &next))
    }

    fn as_svg(&self, path: Path<State, Action>) -> Option<String> {
        Some(crate::chart::explorer_view(self, &path))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        if self.conjoined {
            crate::properties::conjunction()
        } else {
            crate::properties::all()
        }
    }
}
