//! `harness counterexamples`: SPEC.md section 4's last rule, for every variant. A
//! counterexample found for a variant, replayed against the implementation built with the
//! same variant, must show the same violation; the same scenario against the reference must
//! not.
//!
//! For each variant and each property SPEC.md requires it to violate, the checker (breadth
//! first, one thread, no symmetry: the shortest counterexample) finds a trace at the default
//! bounds. It is replayed on the variant's implementation, which must follow it step for step
//! and end with the property violated. Then the same scenario runs on the reference: every
//! action of the trace the reference model enables is taken, in order, on the reference
//! model and the reference implementation (the racy `CheckReservation` + `InsertOrder` pair
//! becomes one `CreateOrder` when the request inserts, a crash between them drops it, and
//! actions the reference has no counterpart for, such as a no-outbox handler's publish, are
//! skipped); then the system finishes its work (system actions only, the first enabled each
//! time) and the property must hold on the reference implementation's final state. Taking
//! the trace's system actions too, where the reference enables them, keeps the reference run's
//! interleaving as close to the counterexample's as the reference allows, so its crashes and
//! expiries land on busy members rather than being skipped.
//!
//! Every replay runs on a fresh implementation on the run's [`Backend`] (in memory, or a fresh
//! pair of PostgreSQL schemas), and the verdicts do not depend on it. On PostgreSQL a world of
//! a variant without the atomic reservation (`racy-reserve`, `course`) has no backstop index
//! against a second active order (the backend removes it for that world: the variant is the
//! design without the atomic reservation), so property 3 is violated there as in memory.
//!
//! The invariant: a row passes only if both replays followed their model step for step.

use model::properties::{Prop, must_violate};
use model::run::{RunOptions, Strategy, check};
use model::trace::Trace;
use model::{Action, Config, State, TicketingModel, Variant};

use crate::backend::Backend;
use crate::replay::{Replay, TraceError, replay_trace_on};

/// What one replay showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Showing {
    /// As required.
    AsRequired,
    /// Not as required, and why (a divergence report, or the property's verdict).
    Not(String),
}

impl Showing {
    /// Whether it is as required (on its backend).
    pub fn ok(&self) -> bool {
        matches!(self, Showing::AsRequired)
    }
}

/// One row of the table: one variant, one property it must violate.
#[derive(Clone, Debug)]
pub struct Row {
    /// The variant.
    pub variant: Variant,
    /// The property.
    pub prop: Prop,
    /// The counterexample's length in steps (0 if none was found).
    pub length: usize,
    /// The counterexample on the variant's implementation: violated?
    pub on_variant: Showing,
    /// The same scenario on the reference implementation: holds?
    pub on_reference: Showing,
    /// Steps of the reference run.
    pub reference_length: usize,
}

impl Row {
    /// Whether the row is as SPEC.md requires.
    pub fn ok(&self) -> bool {
        self.on_variant.ok() && self.on_reference.ok()
    }
}

/// The checker's options: the shortest counterexample, deterministically.
fn shortest() -> RunOptions {
    RunOptions {
        strategy: Strategy::Bfs,
        threads: 1,
        symmetry: false,
        progress: false,
        exhaustive: false,
        ..RunOptions::default()
    }
}

/// The rows of `variant` at `config`'s bounds (one per property group SPEC.md names for it;
/// none for the reference), replayed on `backend`.
pub fn rows(config: Config, backend: &Backend) -> Vec<Row> {
    let variant = config.variant;
    let model = TicketingModel::new(config);
    let required = must_violate(variant);
    if required.is_empty() {
        return Vec::new();
    }
    let outcome = check(config, &shortest());
    required
        .groups()
        .iter()
        .map(|group| {
            let found = outcome
                .verdicts
                .iter()
                .filter(|verdict| group.contains(&verdict.prop))
                .find_map(|verdict| {
                    verdict.counterexample.as_ref().map(|path| {
                        (
                            verdict.prop,
                            Trace::from_path(&model, Some(verdict.prop), path),
                        )
                    })
                });
            match found {
                Some((prop, trace)) => row(config, prop, &trace, backend),
                None => Row {
                    variant,
                    prop: group.first().copied().unwrap_or(Prop::NothingStuck),
                    length: 0,
                    on_variant: Showing::Not("the checker found no counterexample".into()),
                    on_reference: Showing::Not("nothing to replay".into()),
                    reference_length: 0,
                },
            }
        })
        .collect()
}

/// The row of one counterexample trace, replayed on `backend`.
pub fn row(config: Config, prop: Prop, trace: &Trace, backend: &Backend) -> Row {
    let on_variant = match replay_trace_on(trace, false, backend) {
        Ok(replayed) => match replayed.violation {
            Some((_, true)) => Showing::AsRequired,
            _ => Showing::Not(format!(
                "the implementation followed the trace but ends with {} holding",
                prop.name()
            )),
        },
        Err(TraceError::Divergence(divergence)) => Showing::Not(divergence.render()),
        Err(other) => Showing::Not(other.to_string()),
    };
    let (on_reference, reference_length) = match on_reference(config, prop, trace, backend) {
        Ok(length) => (Showing::AsRequired, length),
        Err(why) => (Showing::Not(why), 0),
    };
    Row {
        variant: config.variant,
        prop,
        length: trace.steps.len(),
        on_variant,
        on_reference,
        reference_length,
    }
}

/// The trace's scenario on the reference (see the module docs), on `backend`. Returns the
/// steps taken.
pub fn on_reference(
    config: Config,
    prop: Prop,
    trace: &Trace,
    backend: &Backend,
) -> Result<usize, String> {
    let reference = Config {
        variant: Variant::Reference,
        ..config
    };
    let model = TicketingModel::new(reference);
    let mut replay = Replay::on(reference, backend).map_err(|d| d.render())?;
    // Racy requests checked but not inserted yet, by ticket, as the trace's model numbers them.
    let mut checked = Vec::new();
    for step in &trace.steps {
        let action = match step.action {
            Action::CheckReservation { ticket } => {
                checked.push(ticket);
                None
            }
            Action::InsertOrder { request } => {
                let index = usize::from(request);
                (index < checked.len()).then(|| Action::CreateOrder {
                    ticket: checked.remove(index),
                })
            }
            Action::CrashBeforeInsert { request } => {
                let index = usize::from(request);
                if index < checked.len() {
                    checked.remove(index);
                }
                None
            }
            other => Some(other),
        };
        if let Some(action) = action
            && model.step(replay.state(), action).is_some()
        {
            replay.step(action).map_err(|d| d.render())?;
        }
    }
    while let Some(action) = model.first_system_action(replay.state()) {
        replay.step(action).map_err(|d| d.render())?;
    }
    let observed: &State = replay.observed();
    if !model.is_quiescent(observed) {
        return Err("the reference run did not end quiescent".into());
    }
    if !prop.holds(&model, observed) {
        return Err(format!(
            "{} is violated on the reference implementation: {}",
            prop.name(),
            model::properties::explain(prop, &model, observed)
        ));
    }
    Ok(replay.actions().len())
}

/// Every variant's rows, in SPEC.md's order, at the default bounds, on `backend`.
pub fn all(backend: &Backend) -> Vec<Row> {
    Variant::ALL
        .into_iter()
        .flat_map(|variant| rows(Config::new(variant), backend))
        .collect()
}
