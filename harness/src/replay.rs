//! Replaying model actions on a fresh implementation, comparing states after every step.
//!
//! A [`Replay`] runs the model and a [`World`] side by side: each action is taken by the
//! model (or its expected state is given, as a trace records it) and by the implementation,
//! then the implementation's state is mapped onto the model's ([`crate::abstraction`]) and
//! compared. The invariant: after every successful step the observed state equals the
//! expected one, ghost variables included; the first step where it does not is returned as a
//! [`Divergence`], and the replay stops there.

use stateright::Model;

use model::properties::Prop;
use model::state::{MAX_MEMBERS, Member, Status};
use model::trace::Trace;
use model::words::describe_step;
use model::{Action, Config, State, TicketingModel};

use crate::abstraction::observe;
use crate::backend::Backend;
use crate::report::{Departure, Divergence, differences};
use crate::world::World;

/// A model and an implementation, stepped together.
#[derive(Debug)]
pub struct Replay {
    model: TicketingModel,
    world: World,
    state: State,
    observed: State,
    actions: Vec<Action>,
    descriptions: Vec<String>,
    probes: usize,
}

impl Replay {
    /// A fresh model and implementation of `config`, checked to agree on the initial state.
    pub fn new(config: Config) -> Result<Self, Divergence> {
        Self::on(config, &Backend::Memory)
    }

    /// [`Replay::new`] with the implementation's stores on `backend`.
    pub fn on(config: Config, backend: &Backend) -> Result<Self, Divergence> {
        let model = TicketingModel::new(config);
        let state = model.init_states().remove(0);
        let mut replay = Self {
            world: World::on(&config, backend).map_err(|refusal| Divergence {
                variant: config.variant,
                actions: Vec::new(),
                descriptions: Vec::new(),
                probes: 0,
                departure: Departure::Refused { reason: refusal.0 },
            })?,
            model,
            observed: state.clone(),
            state,
            actions: Vec::new(),
            descriptions: Vec::new(),
            probes: 0,
        };
        replay.compare(replay.state.clone())?;
        Ok(replay)
    }

    /// The model replayed.
    pub fn model(&self) -> &TicketingModel {
        &self.model
    }

    /// The model's state after the steps so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The implementation's state after the steps so far, in the model's terms.
    pub fn observed(&self) -> &State {
        &self.observed
    }

    /// The actions taken so far.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// The actions the model enables now, in its order.
    pub fn enabled(&self) -> Vec<Action> {
        let mut actions = Vec::new();
        self.model.actions(&self.state, &mut actions);
        actions
    }

    /// Takes `action` in the model and the implementation and compares.
    pub fn step(&mut self, action: Action) -> Result<(), Divergence> {
        match self.model.step(&self.state, action) {
            Some(expected) => self.step_to(action, expected),
            None => {
                self.actions.push(action);
                self.descriptions
                    .push(model::words::describe_action(&action));
                Err(self.divergence(Departure::NotInModel))
            }
        }
    }

    /// Takes `action` in the implementation, expecting the model's state `expected` after it
    /// (as a trace records it), and compares.
    pub fn step_to(&mut self, action: Action, expected: State) -> Result<(), Divergence> {
        self.descriptions
            .push(describe_step(&self.state, &action, &expected));
        self.actions.push(action);
        if let Err(refusal) = self.world.perform(action, &expected) {
            return Err(self.divergence(Departure::Refused { reason: refusal.0 }));
        }
        self.compare(expected)
    }

    /// Stutter probes: the model leaves out a delivery whose only effect would be "not yet"
    /// (SPEC.md section 3); the implementation's counterpart is a delivery that naks with a
    /// delay. For every pending message the model does not let an idle member take, deliver
    /// it anyway and check that the listener changes nothing but the message's delivery
    /// count (dead-lettering it if that was its last allowed delivery). Each probe spends a
    /// delivery the model never counts, so probes end a replay: call this last. Returns the
    /// number of probes.
    pub fn probe_stutters(&mut self) -> Result<usize, Divergence> {
        let mut probed = 0;
        let max_deliver = self.model.config.max_deliver;
        let members = usize::from(self.model.config.members).min(MAX_MEMBERS);
        let enabled = self.enabled();
        let messages = self.state.messages;
        for (index, message) in messages.as_slice().iter().enumerate() {
            if message.status != Status::Pending {
                continue;
            }
            let group = message.event.group();
            let Some(member) =
                (0..members).find(|m| self.state.group_members(group)[*m] == Member::Idle)
            else {
                continue;
            };
            let action = Action::Deliver {
                group,
                member: member as u8,
                message: index as u8,
            };
            if enabled.contains(&action) {
                continue;
            }
            let mut expected = self.state.clone();
            let probed_message = &mut expected.messages.as_mut_slice()[index];
            probed_message.deliveries += 1;
            if probed_message.deliveries >= max_deliver {
                probed_message.status = Status::Dead;
            }
            expected.forget_the_irrelevant();
            self.descriptions.push(format!(
                "stutter probe: {} (not applicable yet: the model leaves this delivery out)",
                model::words::describe_action(&action)
            ));
            self.actions.push(action);
            self.probes += 1;
            if let Err(refusal) = self.world.perform(action, &expected) {
                return Err(self.divergence(Departure::Refused { reason: refusal.0 }));
            }
            self.compare(expected)?;
            probed += 1;
        }
        Ok(probed)
    }

    fn compare(&mut self, expected: State) -> Result<(), Divergence> {
        let observation = observe(&self.world, &expected);
        let found = differences(&expected, &observation.state);
        if !found.is_empty() || !observation.problems.is_empty() {
            return Err(self.divergence(Departure::States {
                differences: found,
                problems: observation.problems,
            }));
        }
        self.state = expected;
        self.observed = observation.state;
        Ok(())
    }

    fn divergence(&self, departure: Departure) -> Divergence {
        Divergence {
            variant: self.model.config.variant,
            actions: self.actions.clone(),
            descriptions: self.descriptions.clone(),
            probes: self.probes,
            departure,
        }
    }
}

/// Why a trace could not be replayed to its end.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The trace does not fit the model's state (bounds too large).
    #[error("the trace's bounds do not fit the model: {0}")]
    Bounds(String),
    /// The model itself does not reproduce the trace (it was written by another model).
    #[error("the model does not reproduce the trace: {0}")]
    Model(String),
    /// The implementation departed from the trace.
    #[error("the implementation diverges from the trace at step {}", .0.step())]
    Divergence(Box<Divergence>),
}

/// A trace replayed to its end.
#[derive(Debug)]
pub struct Replayed {
    /// The model of the trace's configuration.
    pub model: TicketingModel,
    /// The implementation's final state, in the model's terms.
    pub observed: State,
    /// The property the trace is a counterexample to, if any, and whether it is violated
    /// on the implementation's final state.
    pub violation: Option<(Prop, bool)>,
}

/// Replays `trace` on a fresh implementation of its variant, step by step, then (with
/// `probes`) makes the stutter probes ([`Replay::probe_stutters`]), and evaluates the
/// property the trace is a counterexample to on the implementation's final state (before the
/// probes).
pub fn replay_trace(trace: &Trace, probes: bool) -> Result<Replayed, TraceError> {
    replay_trace_on(trace, probes, &Backend::Memory)
}

/// [`replay_trace`] with the implementation's stores on `backend`.
pub fn replay_trace_on(
    trace: &Trace,
    probes: bool,
    backend: &Backend,
) -> Result<Replayed, TraceError> {
    trace.config.validate().map_err(TraceError::Bounds)?;
    let model = TicketingModel::new(trace.config);
    trace.check_against(&model).map_err(TraceError::Model)?;
    let prop = match &trace.violates {
        Some(name) => Some(
            Prop::from_name(name)
                .ok_or_else(|| TraceError::Model(format!("unknown property {name:?}")))?,
        ),
        None => None,
    };
    let mut replay =
        Replay::on(trace.config, backend).map_err(|d| TraceError::Divergence(Box::new(d)))?;
    for step in &trace.steps {
        replay
            .step_to(step.action, step.state.clone())
            .map_err(|d| TraceError::Divergence(Box::new(d)))?;
    }
    let observed = replay.observed().clone();
    let violation = prop.map(|prop| (prop, !prop.holds(&model, &observed)));
    if probes {
        replay
            .probe_stutters()
            .map_err(|d| TraceError::Divergence(Box::new(d)))?;
    }
    Ok(Replayed {
        model,
        observed,
        violation,
    })
}

/// Replays `actions` from the initial state of `config` (each must be enabled in the model).
pub fn replay_actions(config: Config, actions: &[Action]) -> Result<Replay, Divergence> {
    replay_actions_on(config, actions, &Backend::Memory)
}

/// [`replay_actions`] with the implementation's stores on `backend`.
pub fn replay_actions_on(
    config: Config,
    actions: &[Action],
    backend: &Backend,
) -> Result<Replay, Divergence> {
    let mut replay = Replay::on(config, backend)?;
    for action in actions {
        replay.step(*action)?;
    }
    Ok(replay)
}
