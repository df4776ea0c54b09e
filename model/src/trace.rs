//! Counterexamples, for people and for the harness.
//!
//! For people: each step is one numbered line saying what happened, followed by the state
//! change that matters, as [`crate::words`] puts it. For the harness: a JSON [`Trace`] of
//! actions with the model state expected after each (SPEC.md section 4). A liveness
//! counterexample is completed to the quiescent state where the property is judged.
//!
//! The invariant: a trace is a path of the model: every action was enabled in the state
//! before it, and every recorded state is the one the model reaches
//! ([`Trace::check_against`] checks it).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use stateright::{Model, Path};

use crate::action::Action;
use crate::config::{Config, Variant};
use crate::properties::Prop;
use crate::state::State;
use crate::system::TicketingModel;
use crate::words::describe_step;

/// A path through the model, with the state expected after every action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The design checked.
    pub variant: Variant,
    /// The bounds it was checked at.
    pub config: Config,
    /// The property this trace violates, if it is a counterexample.
    pub violates: Option<String>,
    /// The initial state.
    pub initial: State,
    /// The steps.
    pub steps: Vec<TraceStep>,
}

/// One step of a [`Trace`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// What happened.
    pub action: Action,
    /// In words.
    pub description: String,
    /// The state after it.
    pub state: State,
}

impl Trace {
    /// The trace of `path` (as stateright reports a discovery).
    pub fn from_path(
        model: &TicketingModel,
        violates: Option<Prop>,
        path: &Path<State, Action>,
    ) -> Self {
        let pairs = path.clone().into_vec();
        let initial = pairs
            .first()
            .map(|(state, _)| state.clone())
            .unwrap_or_default();
        let mut steps = Vec::new();
        for window in pairs.windows(2) {
            let (last, action) = &window[0];
            let (next, _) = &window[1];
            if let Some(action) = action {
                steps.push(TraceStep {
                    action: *action,
                    description: describe_step(last, action, next),
                    state: next.clone(),
                });
            }
        }
        Self {
            variant: model.config.variant,
            config: model.config,
            violates: violates.map(|prop| prop.name().to_owned()),
            initial,
            steps,
        }
    }

    /// The trace of `actions` taken from the initial state, or the index of the first action
    /// that is not enabled.
    pub fn from_actions(model: &TicketingModel, actions: &[Action]) -> Result<Self, usize> {
        let initial = model.init_states().remove(0);
        let mut state = initial.clone();
        let mut steps = Vec::new();
        for (index, action) in actions.iter().enumerate() {
            let next = model.step(&state, *action).ok_or(index)?;
            steps.push(TraceStep {
                action: *action,
                description: describe_step(&state, action, &next),
                state: next.clone(),
            });
            state = next;
        }
        Ok(Self {
            variant: model.config.variant,
            config: model.config,
            violates: None,
            initial,
            steps,
        })
    }

    /// Checks the model itself reproduces the trace: each action enabled, each state as
    /// recorded. Returns the first step that differs.
    pub fn check_against(&self, model: &TicketingModel) -> Result<(), String> {
        let mut state = model.init_states().remove(0);
        if state != self.initial {
            return Err("the initial state differs from the model's".into());
        }
        for (number, step) in self.steps.iter().enumerate() {
            let next = model
                .step(&state, step.action)
                .ok_or_else(|| format!("step {}: {:?} is not enabled", number + 1, step.action))?;
            if next != step.state {
                return Err(format!(
                    "step {}: the model reaches a different state",
                    number + 1
                ));
            }
            state = next;
        }
        Ok(())
    }

    /// The numbered, human-readable form.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (number, step) in self.steps.iter().enumerate() {
            let _ = writeln!(text, "{:>4}. {}", number + 1, step.description);
        }
        text
    }
}

/// A counterexample cut at its first violating state (for a liveness property, the first
/// where the violation is certain). stateright's BFS records, for each property, the last
/// violating state it visits before it stops, and a violation that stays (a lowered version,
/// an edited reserved ticket, a doomed run) is met again in the states after the first: the
/// cut keeps the path to the step that broke the property.
pub(crate) fn cut_at_first_violation(
    model: &TicketingModel,
    prop: Prop,
    path: Path<State, Action>,
) -> Path<State, Action> {
    let pairs = path.into_vec();
    let first = pairs
        .iter()
        .position(|(state, _)| !prop.holds(model, state))
        .unwrap_or(pairs.len() - 1);
    let initial = pairs[0].0.clone();
    let actions: Vec<Action> = pairs[..first]
        .iter()
        .filter_map(|(_, action)| *action)
        .collect();
    Path::from_actions(model, initial, &actions)
        .expect("a prefix of a path of the model is a path of the model")
}

/// A liveness counterexample completed to a quiescent state: the checker reports a liveness
/// violation as soon as it is inevitable (see [`crate::properties::doomed`]); this lets the
/// system finish its work (clients and the adversary stop: system actions only, the first
/// enabled each time) until it has nothing left to do, so the trace ends where the property
/// is judged. Safety counterexamples are returned as they are.
///
/// # Panics
/// If the completed run ends converged: the doomed predicate that reported the violation
/// was wrong, a bug in the model that must not go unnoticed.
pub(crate) fn complete_to_quiescence(
    model: &TicketingModel,
    prop: Prop,
    path: Path<State, Action>,
) -> Path<State, Action> {
    if !prop.is_liveness() || model.is_quiescent(path.last_state()) {
        return path;
    }
    let pairs = path.into_vec();
    let initial = pairs[0].0.clone();
    let mut actions: Vec<Action> = pairs.iter().filter_map(|(_, action)| *action).collect();
    let mut state = pairs[pairs.len() - 1].0.clone();
    while let Some(action) = model.first_system_action(&state) {
        let Some(next) = model.next_state(&state, action) else {
            break;
        };
        actions.push(action);
        state = next;
    }
    assert!(
        !prop.converged(&state),
        "model bug: a run doomed to violate {} ended converged",
        prop.name()
    );
    Path::from_actions(model, initial, &actions)
        .expect("a path built from enabled actions is a path of the model")
}
