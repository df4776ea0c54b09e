//! Running the checker: strategy, threads, symmetry, progress, and the verdicts.
//!
//! The invariant: a property is reported as holding only when the exploration was exhaustive
//! and did not stop early; a liveness counterexample is reported completed to the quiescent
//! state where it is judged.

use std::collections::BTreeMap;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stateright::{Checker, CheckerVisitor, HasDiscoveries, Model, Path, UniformChooser};

use crate::action::Action;
use crate::config::Config;
use crate::progress::{Progress, peak_memory};
use crate::properties::{CONJUNCTION, Prop, must_violate};
use crate::state::State;
use crate::system::TicketingModel;
use crate::trace::{complete_to_quiescence, cut_at_first_violation};

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
///
/// A variant's breadth-first search runs once per group of properties SPEC.md requires,
/// each stopping at its group's first counterexample: stateright's BFS records, for each
/// property, the *last* violating state it visits before it stops, so one search that goes on
/// looking for a second property would report a longer counterexample of the first than the
/// shortest (a violation that stays violated, such as a lowered version, is found again in
/// every state after it).
pub fn check(config: Config, options: &RunOptions) -> Outcome {
    let required = must_violate(config.variant);
    let groups = required.groups();
    if options.resolve(config) == Strategy::Bfs && !options.exhaustive && groups.len() > 1 {
        let started = Instant::now();
        let runs: Vec<Outcome> = groups
            .iter()
            .map(|group| search(config, options, HasDiscoveries::AnyOf(names(group))))
            .collect();
        return merged(config, groups, runs, started.elapsed());
    }
    // A variant stops once SPEC.md's counterexamples are found, unless asked to go on; the
    // reference has none to find, so it is always explored to the end.
    let finish_when = match groups {
        _ if options.exhaustive => HasDiscoveries::AllFailures,
        [] => HasDiscoveries::AllFailures,
        [group] => HasDiscoveries::AnyOf(names(group)),
        groups => HasDiscoveries::AllOf(groups.iter().flat_map(|group| names(group)).collect()),
    };
    search(config, options, finish_when)
}

fn names(group: &[Prop]) -> std::collections::BTreeSet<&'static str> {
    group.iter().map(|prop| prop.name()).collect()
}

/// One search of `config`, stopping when `finish_when` says. An exhaustive depth-first
/// search (a proof, or `--exhaustive`) first checks the properties as one conjunction, which
/// costs the checker an eighth of its bookkeeping per state; if the conjunction is violated
/// (it stops at the first violation), the search runs again with them apart, so the
/// verdicts and counterexamples are the same as without it.
fn search(config: Config, options: &RunOptions, finish_when: HasDiscoveries) -> Outcome {
    let proof = options.resolve(config) == Strategy::Dfs
        && matches!(finish_when, HasDiscoveries::AllFailures);
    if proof {
        let (outcome, violated) = search_with(config, options, finish_when.clone(), true);
        if !violated {
            return outcome;
        }
    }
    search_with(config, options, finish_when, false).0
}

/// One search, with the properties conjoined or apart; says whether the conjunction was
/// found violated (never, when apart).
fn search_with(
    config: Config,
    options: &RunOptions,
    finish_when: HasDiscoveries,
    conjoined: bool,
) -> (Outcome, bool) {
    let model = TicketingModel::new(config)
        .with_partial_order(options.partial_order_applies(config))
        .with_conjoined_properties(conjoined);
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
    let (outcome, violated) = match options.strategy {
        Strategy::Auto | Strategy::Bfs => {
            let first = FirstViolations::default();
            let checker = builder.visitor(first.clone()).spawn_bfs();
            finish(checker, options, started, Some(first))
        }
        Strategy::Dfs => finish(builder.spawn_dfs(), options, started, None),
        Strategy::Simulation => finish(
            builder
                .timeout(options.simulation_time)
                .spawn_simulation(options.seed, UniformChooser),
            options,
            started,
            None,
        ),
    };
    (Outcome { config, ..outcome }, violated)
}

/// The searches of a variant's required groups as one outcome: each property's
/// counterexample from the search that looked for it (else from the first that met it), the
/// states of all of them.
fn merged(config: Config, groups: &[&[Prop]], runs: Vec<Outcome>, elapsed: Duration) -> Outcome {
    let verdicts = Prop::ALL
        .into_iter()
        .map(|prop| {
            let sought = groups.iter().position(|group| group.contains(&prop));
            let found = sought
                .and_then(|run| {
                    runs[run].verdicts[prop.number() - 1]
                        .violated()
                        .then_some(run)
                })
                .or_else(|| {
                    runs.iter()
                        .position(|run| run.verdicts[prop.number() - 1].violated())
                });
            match found {
                Some(run) => runs[run].verdicts[prop.number() - 1].clone(),
                None => runs[0].verdicts[prop.number() - 1].clone(),
            }
        })
        .collect();
    Outcome {
        config,
        options: runs[0].options,
        verdicts,
        unique_states: runs.iter().map(|run| run.unique_states).sum(),
        generated_states: runs.iter().map(|run| run.generated_states).sum(),
        max_depth: runs.iter().map(|run| run.max_depth).max().unwrap_or(0),
        elapsed,
        peak_memory: peak_memory(),
    }
}

/// The first path a breadth-first search visits to a state violating each property: the
/// shortest counterexample (with one thread; with more, one of the shortest give or take
/// the threads' races). stateright itself keeps the *last* violating state it visits before
/// it stops, which can be a step or two deeper.
#[derive(Clone, Default)]
struct FirstViolations(Arc<Mutex<BTreeMap<usize, Path<State, Action>>>>);

impl FirstViolations {
    fn take(&self, prop: Prop) -> Option<Path<State, Action>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&prop.number())
    }
}

impl CheckerVisitor<TicketingModel> for FirstViolations {
    fn visit(&self, model: &TicketingModel, path: Path<State, Action>) {
        let state = path.last_state();
        let mut violated = Prop::ALL
            .into_iter()
            .filter(|prop| !prop.holds(model, state))
            .peekable();
        if violated.peek().is_none() {
            return;
        }
        let mut first = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for prop in violated {
            first.entry(prop.number()).or_insert_with(|| path.clone());
        }
    }
}

fn finish<C: Checker<TicketingModel>>(
    mut checker: C,
    options: &RunOptions,
    started: Instant,
    first: Option<FirstViolations>,
) -> (Outcome, bool) {
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
    let conjunction_violated = discoveries.remove(CONJUNCTION).is_some();
    // Completing a counterexample takes the first enabled system action, which an ample set
    // may not list: the completion is a path of the model with every transition.
    let model = &TicketingModel::new(checker.model().config);
    let stopped_early = !options.exhaustive && !must_violate(model.config.variant).is_empty();
    let exhaustive = options.strategy != Strategy::Simulation && !stopped_early;
    let verdicts = Prop::ALL
        .into_iter()
        .map(|prop| {
            let discovery = discoveries.remove(prop.name()).map(|path| {
                let shortest = first.as_ref().and_then(|first| first.take(prop));
                cut_at_first_violation(model, prop, shortest.unwrap_or(path))
            });
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
    let outcome = Outcome {
        config: checker.model().config,
        options: *options,
        verdicts,
        unique_states: checker.unique_state_count(),
        generated_states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        peak_memory: peak_memory(),
    };
    (outcome, conjunction_violated)
}
