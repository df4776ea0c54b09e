//! Running the checker: strategy, threads, symmetry, progress, and the verdicts.
//!
//! The invariant: a property is reported as holding only when the exploration was exhaustive
//! and did not stop early; a liveness counterexample is reported completed to the quiescent
//! state where it is judged.

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Path, UniformChooser};

use crate::action::Action;
use crate::config::Config;
use crate::progress::{Progress, peak_memory};
use crate::properties::{Prop, must_violate};
use crate::state::State;
use crate::system::TicketingModel;
use crate::trace::complete_to_quiescence;

/// How the state space is explored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Depth-first with symmetry reduction to prove the reference (and any `--exhaustive`
    /// run); breadth-first to find a variant's shortest counterexamples.
    Auto,
    /// Breadth-first: shortest counterexamples (with one thread), most memory. stateright
    /// 0.31 applies no symmetry reduction in BFS.
    Bfs,
    /// Depth-first, with symmetry reduction: fewest states, least memory.
    Dfs,
    /// Random walks to quiescence: a sample, never a proof.
    Simulation,
}

/// Where the partial-order reduction (the `ample` module of `system`, docs/model.md) applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartialOrder {
    /// Nowhere: every enabled action is explored.
    Off,
    /// Where the whole space is explored depth-first (proofs), as symmetry: breadth-first
    /// searches for a variant's shortest counterexamples explore every transition, since an
    /// ample set can postpone a step past the point where a violation becomes certain.
    Dfs,
    /// In every strategy (tests compare breadth-first counterexamples with and without it).
    Always,
}

/// How to run one check.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Exploration strategy.
    pub strategy: Strategy,
    /// Checker threads.
    pub threads: usize,
    /// Reduce by symmetry of members and tickets.
    pub symmetry: bool,
    /// Where the partial-order reduction applies.
    pub partial_order: PartialOrder,
    /// Show progress while checking.
    pub progress: bool,
    /// Stop after this long (simulation only; exhaustive runs always finish).
    pub simulation_time: Duration,
    /// Seed of the simulation's random walks.
    pub seed: u64,
    /// For a variant, keep exploring after the counterexamples SPEC.md requires are found, so
    /// every property gets a verdict (the reference is always explored exhaustively).
    pub exhaustive: bool,
}

impl RunOptions {
    /// The strategy `Auto` stands for with `config`: DFS (with symmetry reduction) where the
    /// whole space is explored, BFS (shortest counterexamples) where a variant's
    /// counterexamples are searched for.
    pub fn resolve(&self, config: Config) -> Strategy {
        match self.strategy {
            Strategy::Auto if self.exhaustive || must_violate(config.variant).is_empty() => {
                Strategy::Dfs
            }
            Strategy::Auto => Strategy::Bfs,
            chosen => chosen,
        }
    }

    /// Whether symmetry reduction is in effect (stateright applies it in DFS only).
    pub fn symmetry_applies(&self, config: Config) -> bool {
        self.symmetry && self.resolve(config) == Strategy::Dfs
    }

    /// Whether the partial-order reduction is in effect.
    pub fn partial_order_applies(&self, config: Config) -> bool {
        match self.partial_order {
            PartialOrder::Off => false,
            PartialOrder::Dfs => self.resolve(config) == Strategy::Dfs,
            PartialOrder::Always => true,
        }
    }

    /// The reductions in effect, in words ("symmetry, partial order", or "none").
    pub fn reductions(&self, config: Config) -> String {
        let on: Vec<&str> = [
            (self.symmetry_applies(config), "symmetry"),
            (self.partial_order_applies(config), "partial order"),
        ]
        .into_iter()
        .filter_map(|(applies, name)| applies.then_some(name))
        .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(", ")
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            strategy: Strategy::Auto,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            symmetry: true,
            partial_order: PartialOrder::Dfs,
            progress: false,
            simulation_time: Duration::from_secs(10),
            seed: 0,
            exhaustive: false,
        }
    }
}

/// What the checker found for one property.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The property.
    pub prop: Prop,
    /// A path to a violating state, if one was found (for a liveness property, completed to
    /// the quiescent state where it is judged).
    pub counterexample: Option<Path<State, Action>>,
    /// The number of steps to the first state where the violation was certain: the checker's
    /// discovery, before completion (with BFS on one thread, the shortest there is).
    pub depth: Option<usize>,
    /// Whether "no counterexample" means the property holds: the exploration was exhaustive
    /// and did not stop early.
    pub decided: bool,
}

impl Verdict {
    /// Whether a counterexample was found.
    pub fn violated(&self) -> bool {
        self.counterexample.is_some()
    }

    /// Whether the property was proven to hold at these bounds.
    pub fn holds(&self) -> bool {
        self.decided && self.counterexample.is_none()
    }
}

/// The result of one check.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What was checked.
    pub config: Config,
    /// How.
    pub options: RunOptions,
    /// One verdict per property, in SPEC.md's order.
    pub verdicts: Vec<Verdict>,
    /// Distinct states visited (after symmetry reduction).
    pub unique_states: usize,
    /// States generated, duplicates included.
    pub generated_states: usize,
    /// Longest path explored.
    pub max_depth: usize,
    /// Wall-clock time of the check.
    pub elapsed: Duration,
    /// The process's peak resident memory at the end of the check, in bytes (`VmHWM`; `None`
    /// where `/proc/self/status` does not say).
    pub peak_memory: Option<u64>,
}

impl Outcome {
    /// The properties found violated.
    pub fn violated(&self) -> Vec<Prop> {
        self.verdicts
            .iter()
            .filter(|verdict| verdict.violated())
            .map(|verdict| verdict.prop)
            .collect()
    }

    /// Whether the verdicts are what SPEC.md says they must be: none violated for the
    /// reference (and the exploration exhaustive), and at least the named ones otherwise.
    pub fn matches_spec(&self) -> bool {
        let required = must_violate(self.config.variant);
        let exhaustive_if_needed =
            !required.is_empty() || self.options.strategy != Strategy::Simulation;
        required.met_by(&self.violated()) && exhaustive_if_needed
    }

    /// Unique states per second.
    pub fn rate(&self) -> f64 {
        self.unique_states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Checks `config` with `options`.
pub fn check(config: Config, options: &RunOptions) -> Outcome {
    let model =
        TicketingModel::new(config).with_partial_order(options.partial_order_applies(config));
    let required = must_violate(config.variant);
    // A variant stops once SPEC.md's counterexamples are found, unless asked to go on; the
    // reference has none to find, so it is always explored to the end.
    let finish_when = match required.groups() {
        _ if options.exhaustive => HasDiscoveries::AllFailures,
        [] => HasDiscoveries::AllFailures,
        [group] => HasDiscoveries::AnyOf(group.iter().map(|prop| prop.name()).collect()),
        groups => HasDiscoveries::AllOf(
            groups
                .iter()
                .flat_map(|g| g.iter().map(|p| p.name()))
                .collect(),
        ),
    };
    let mut builder = model
        .checker()
        .threads(options.threads.max(1))
        .finish_when(finish_when);
    if options.symmetry {
        builder = builder.symmetry();
    }
    let options = &RunOptions {
        strategy: options.resolve(config),
        ..*options
    };
    let started = Instant::now();
    let outcome = match options.strategy {
        Strategy::Auto | Strategy::Bfs => finish(builder.spawn_bfs(), options, started),
        Strategy::Dfs => finish(builder.spawn_dfs(), options, started),
        Strategy::Simulation => finish(
            builder
                .timeout(options.simulation_time)
                .spawn_simulation(options.seed, UniformChooser),
            options,
            started,
        ),
    };
    Outcome { config, ..outcome }
}

fn finish<C: Checker<TicketingModel>>(
    mut checker: C,
    options: &RunOptions,
    started: Instant,
) -> Outcome {
    // The checker's threads are joined on a thread of their own, which says when they are
    // done: the run ends the moment they do (not at the next progress tick), and progress is
    // shown every 100 ms meanwhile.
    let handles = checker.handles();
    let (done, finished) = std::sync::mpsc::channel();
    let joiner = std::thread::spawn(move || {
        let outcome = handles.into_iter().try_for_each(|handle| handle.join());
        let _ = done.send(());
        outcome
    });
    let progress = Progress::new(options.progress);
    while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_millis(100)) {
        progress.update(
            checker.unique_state_count(),
            checker.max_depth(),
            started.elapsed(),
        );
    }
    let elapsed = started.elapsed();
    match joiner.join() {
        Ok(Ok(())) => {}
        Ok(Err(panic)) | Err(panic) => std::panic::resume_unwind(panic),
    }
    progress.finish();
    let mut discoveries = checker.discoveries();
    // Completing a counterexample takes the first enabled system action, which an ample set
    // may not list: the completion is a path of the model with every transition.
    let model = &TicketingModel::new(checker.model().config);
    let stopped_early = !options.exhaustive && !must_violate(model.config.variant).is_empty();
    let exhaustive = options.strategy != Strategy::Simulation && !stopped_early;
    let verdicts = Prop::ALL
        .into_iter()
        .map(|prop| {
            let discovery = discoveries.remove(prop.name());
            Verdict {
                prop,
                depth: discovery
                    .as_ref()
                    .map(|path| path.clone().into_actions().len()),
                counterexample: discovery.map(|path| complete_to_quiescence(model, prop, path)),
                decided: exhaustive,
            }
        })
        .collect();
    Outcome {
        config: checker.model().config,
        options: *options,
        verdicts,
        unique_states: checker.unique_state_count(),
        generated_states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        peak_memory: peak_memory(),
    }
}
