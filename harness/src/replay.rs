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
use model::{Action, Config, State, TicketingModel, Variant};

use crate::abstraction::observe;
use crate::backend::Backend;
use crate::report::{Departure, Divergence, differences};
use crate::world::{Refusal, World};

/// A model and an implementation, stepped together.
#[derive(Debug)]
pub struct Replay {
    model: TicketingModel,
    world: World,
    state: State,
    observed: State,
    actions: Vec<Action>,
    descriptions: Vec<String>,
    /// Whether steps are described in words (for a report); see [`Replay::quiet`].
    describing: bool,
    probes: usize,
}

impl Replay {
    /// A fresh model and implementation of `config`, checked to agree on the initial state.
    pub fn new(config: Config) -> Result<Self, Divergence> {
        Self::build(config, config.variant, &Backend::Memory)
    }

    /// [`Replay::new`] with the implementation's stores on `backend`.
    pub fn on(config: Config, backend: &Backend) -> Result<Self, Divergence> {
        Self::build(config, config.variant, backend)
    }

    /// The model of `config` held against the implementation of another variant (each
    /// variant is a seeded bug of the reference: this is how the harness's own tests show a
    /// mode catches one), checked to agree on the initial state.
    pub fn against(config: Config, implementation: Variant) -> Result<Self, Divergence> {
        Self::build(config, implementation, &Backend::Memory)
    }

    /// The model of `config` and the implementation of `implementation` on `backend`,
    /// checked to agree on the initial state.
    fn build(
        config: Config,
        implementation: Variant,
        backend: &Backend,
    ) -> Result<Self, Divergence> {
        let model = TicketingModel::new(config);
        let state = model.init_states().remove(0);
        let built = Config {
            variant: implementation,
            ..config
        };
        let mut replay = Self {
            world: World::on(&built, backend).map_err(|refusal| Divergence {
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
            describing: true,
            probes: 0,
        };
        replay.compare(replay.state.clone())?;
        Ok(replay)
    }

    /// Stops describing steps in words: a divergence then reports the path without its
    /// descriptions. For replays that only need a verdict (the branching replay's workers,
    /// whose divergences are replayed again, described, from the initial state).
    pub fn quiet(mut self) -> Self {
        self.describing = false;
        self
    }

    /// An independent copy of this replay, at the same step, on a copy of the world
    /// ([`World::copy`]): what the exhaustive replay branches from.
    pub fn copy(&self) -> Result<Self, Refusal> {
        Ok(Self {
            model: self.model.clone(),
            world: self.world.copy()?,
            state: self.state.clone(),
            observed: self.observed.clone(),
            actions: self.actions.clone(),
            descriptions: self.descriptions.clone(),
            describing: self.describing,
            probes: self.probes,
        })
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
                if self.describing {
                    self.descriptions
                        .push(model::words::describe_action(&action));
                }
                Err(self.divergence(Departure::NotInModel))
            }
        }
    }

    /// Takes `action` in the implementation, expecting the model's state `expected` after it
    /// (as a trace records it), and compares.
    pub fn step_to(&mut self, action: Action, expected: State) -> Result<(), Divergence> {
        if self.describing {
            self.descriptions
                .push(describe_step(&self.state, &action, &expected));
        }
        self.actions.push(action);
        if let Err(refusal) = self.world.perform(action, &expected) {
            return Err(self.divergence(Departure::Refused { reason: refusal.0 }));
        }
        self.compare(expected)
    }

    /// The stutter probes of the current state: the model leaves out a delivery whose only
    /// effect would be "not yet" (SPEC.md section 3); the implementation's counterpart is a
    /// delivery that naks with a delay. Every pending message the model does not let an idle
    /// member take, offered to every idle member of its group, is a probe ([`Replay::probe`]).
    pub fn stutter_probes(&self) -> Vec<Action> {
        let members = usize::from(self.model.config.members).min(MAX_MEMBERS);
        let mut probes = Vec::new();
        for (index, message) in self.state.messages.as_slice().iter().enumerate() {
            if message.status != Status::Pending {
                continue;
            }
            let group = message.event().group();
            for member in 0..members {
                if self.state.group_members(group)[member] != Member::Idle {
                    continue;
                }
                let action = Action::Deliver {
                    group,
                    member: member as u8,
                    message: index as u8,
                };
                if self.model.step(&self.state, action).is_none() {
                    probes.push(action);
                }
            }
        }
        probes
    }

    /// Makes one stutter probe (one of [`Replay::stutter_probes`]): delivers the message
    /// anyway and checks that the listener changes nothing but its delivery count
    /// (dead-lettering it if that was its last allowed delivery). A probe spends a delivery
    /// the model never counts, so a replay ends with its probes (the branching replay makes
    /// each in a process of its own).
    pub fn probe(&mut self, action: Action) -> Result<(), Divergence> {
        let Action::Deliver { message, .. } = action else {
            return Err(self.divergence(Departure::NotInModel));
        };
        let mut expected = self.state.clone();
        let Some(probed) = expected
            .messages
            .as_mut_slice()
            .get_mut(usize::from(message))
        else {
            return Err(self.divergence(Departure::NotInModel));
        };
        probed.deliveries += 1;
        if probed.deliveries >= self.model.config.max_deliver {
            probed.status = Status::Dead;
        }
        expected.forget_the_irrelevant();
        if self.describing {
            self.descriptions.push(format!(
                "stutter probe: {} (not applicable yet: the model leaves this delivery out)",
                model::words::describe_action(&action)
            ));
        }
        self.actions.push(action);
        self.probes += 1;
        if let Err(refusal) = self.world.perform(action, &expected) {
            return Err(self.divergence(Departure::Refused { reason: refusal.0 }));
        }
        self.compare(expected)
    }

    /// The stutter probes at the end of a replay: every probe of the current state
    /// ([`Replay::stutter_probes`]), each message offered to the first idle member of its
    /// group only, made one after another. Returns the number of probes.
    pub fn probe_stutters(&mut self) -> Result<usize, Divergence> {
        let mut probed = 0;
        let mut offered = Vec::new();
        for action in self.stutter_probes() {
            let Action::Deliver { message, .. } = action else {
                continue;
            };
            if offered.contains(&message) {
                continue;
            }
            offered.push(message);
            self.probe(action)?;
            probed += 1;
        }
        Ok(probed)
    }

    fn compare(&mut self, expected: State) -> Result<(), Divergence> {
        let observation = observe(&self.world, &expected);
        // Equal states need no field-by-field rendering (the exhaustive replay's hot path).
        let found = if observation.state == expected {
            Vec::new()
        } else {
            differences(&expected, &observation.state)
        };
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

/// Replays `actions` of the model of `config` on the implementation of `implementation`
/// (see [`Replay::against`]).
pub fn replay_actions_against(
    config: Config,
    implementation: Variant,
    actions: &[Action],
) -> Result<Replay, Divergence> {
    let mut replay = Replay::against(config, implementation)?;
    for action in actions {
        replay.step(*action)?;
    }
    Ok(replay)
}
