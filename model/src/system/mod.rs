//! The transitions: what clients, services, the broker and the adversary can do, one function
//! per action kind, and which actions are enabled in a state.
//!
//! - `enabled`: the guards. `for_each_action` lists the enabled actions in four sections
//!   (clients, publishers, broker, members), always in the same order.
//! - `clients`, `broker`, `members`, `adversary`: what each action does to the state,
//!   one function per action kind, each named after its action (`Action::Deliver` is
//!   `deliver`). To change what an action does, change its function.
//! - `ample`: the partial-order reduction: where one system action may be explored alone.
//! - `listener`: what a member does with a delivery, shared by the broker's delivery and
//!   the members' steps: decide after reading the store, write (update-if-current), follow
//!   the decision.
//!
//! One step is one store or broker operation of the implementation, with these merges, each
//! sound because the merged operation's effect cannot be told apart from the same operation a
//! moment later:
//! - a delivery and the listener's first store operation (its read, or the replica's insert)
//!   are one step: the delivery changes nothing but the message's status, which no other
//!   step of that message can observe while it is in flight;
//! - a failed save and the re-read that follows are one step: the failed save changes
//!   nothing, and versions only move forward, so it would fail a moment later too;
//! - a failed delivery (a nak, or the course listener's error) returns the message at once:
//!   ack-wait expiry of a delivery nobody works on any more is always enabled;
//! - with the outbox, the relay publishes an event in the step that wrote it: the broker may
//!   hold back any delivery arbitrarily long, so a publish held back by the relay cannot be
//!   told apart from a delivery held back by the broker. A relay that crashes after
//!   publishing and before marking the entry republishes it under the same publish id, which
//!   the broker drops within its dedup window: that crash changes nothing, so it is not a step
//!   (the implementation's relay tests and the soak run exercise it). A republish after the
//!   window is a new message: the adversary's `DuplicatePublish`, from the duplicates
//!   budget.
//!
//! A delivery whose only effect would be "not yet" (the reference design's wait on a version
//! gap) is a stutter step and is left out: the message stays pending until it is applicable.
//! HTTP operations are single steps: the implementation re-reads and retries on a conflict,
//! which makes each one atomic at its successful save.
//!
//! The invariant: a transition is applied only when `for_each_action` lists its action, and
//! it changes nothing but what its action names (clients and the adversary also spend one
//! unit of their budget). The system reaches quiescence when no system action is enabled.

mod adversary;
mod ample;
mod broker;
mod clients;
mod enabled;
mod listener;
mod members;

use std::ops::ControlFlow;

use crate::action::{Action, Actor};
use crate::config::{Config, Variant};
use crate::state::{MAX_MEMBERS, State};

/// The model: the configuration checked. Implements stateright's `Model` (its
/// `next_state` dispatches each action to its transition here).
#[derive(Clone, Debug)]
pub struct TicketingModel {
    /// The bounds and variant.
    pub config: Config,
    /// Whether stateright's `actions` lists only an ample set where there is one (the
    /// partial-order reduction of the `ample` module). Off unless the checker asks for it:
    /// the harness, the explorer and the tests that walk the graph see every transition.
    pub partial_order: bool,
    /// Whether stateright checks the eight properties as one conjunction
    /// ([`crate::properties::CONJUNCTION`]): a proof of a design that must satisfy all eight
    /// then asks the checker's discoveries map once per state instead of eight times. Off
    /// unless the checker asks for it: every other use needs a verdict per property.
    pub conjoined: bool,
}

impl TicketingModel {
    /// A model of `config` (which should be valid: see [`Config::validate`]), every
    /// transition explored.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            partial_order: false,
            conjoined: false,
        }
    }

    /// The same model, with the partial-order reduction on or off.
    pub fn with_partial_order(self, partial_order: bool) -> Self {
        Self {
            partial_order,
            ..self
        }
    }

    /// The same model, with the properties checked as one conjunction or apart.
    pub fn with_conjoined_properties(self, conjoined: bool) -> Self {
        Self { conjoined, ..self }
    }

    pub(crate) fn variant(&self) -> Variant {
        self.config.variant
    }

    /// The members of each queue group the configuration runs.
    pub(crate) fn members(&self) -> usize {
        usize::from(self.config.members).min(MAX_MEMBERS)
    }

    /// Whether the system has nothing left to do: no system action is enabled. If clients and
    /// the adversary stop here (they may: their budgets are upper bounds), the run ends here,
    /// so this is where the liveness properties are judged.
    pub fn is_quiescent(&self, state: &State) -> bool {
        self.first_system_action(state).is_none()
    }

    /// The first enabled system action, if any: how the system goes on with its work once
    /// clients and the adversary stop.
    pub fn first_system_action(&self, state: &State) -> Option<Action> {
        let mut first = None;
        let _ = self.for_each_action(state, &mut |action| {
            if action.actor() == Actor::System {
                first = Some(action);
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        first
    }
}
