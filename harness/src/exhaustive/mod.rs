//! `harness exhaustive`: every transition of the bounded model, taken on the implementation.
//!
//! The model is explored once, breadth first, with the checker's own reductions (symmetry,
//! and the partial-order reduction unless `--no-partial-order`), into a spanning tree of its
//! graph ([`plan`]). Worker threads then walk that tree depth first with one
//! implementation each and branch per outgoing transition ([`worker`]): each branch takes
//! the step on a copy of the world and compares with the model's successor, and on a tree
//! edge walks on. So every transition is replayed once, from a state the replay reached once,
//! and nothing restarts from the initial state. At every state each stutter probe (a pending
//! message the model does not let an idle member take, offered to each idle member) is one
//! more branch. Reaching every state is not enough: a bug can live on one transition into a
//! state a shorter path also reaches (a stale save that overwrites a newer replica lands, in
//! the model, where a successful save followed by an acknowledged duplicate does).
//! `--coverage states` takes only the tree's edges (the shortest path to every state);
//! `--coverage all-paths` replays every maximal path from the initial state ([`paths`]).
//!
//! The invariant: a run reports success only if every transition (and probe) it replayed
//! followed the model and no worker reported a problem; on divergence it reports the
//! shortest diverging path found, replayed again from the initial state.

use std::time::{Duration, Instant};

use stateright::Model;

use model::{Action, Config, TicketingModel, Variant};

use crate::replay::replay_actions_against;
use crate::report::Divergence;

pub mod paths;
pub mod plan;
pub mod worker;

pub use plan::{Plan, TooManyStates};
use worker::{DivergedAt, Spec, Walked};

/// The bounds `harness exhaustive` uses by default: the model checker's (two edits, an order,
/// its cancellation and a second order of one ticket, two members per group, one crash and
/// one spurious ack-wait expiry).
pub const fn default_config(variant: Variant) -> Config {
    Config::new(variant)
}

/// Which paths are replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Coverage {
    /// Every transition of the reduced model graph (and so every state).
    Transitions,
    /// The shortest path to every state (the breadth-first tree's edges).
    States,
    /// Every maximal path, up to `--max-paths`, each from the initial state.
    AllPaths,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The bounds explored.
    pub config: Config,
    /// The implementation held to the model: `config.variant`'s, or another variant's (a
    /// seeded bug, for the harness's own tests).
    pub implementation: Variant,
    /// Most paths replayed (`all-paths`), or most states whose transitions are replayed.
    pub max_paths: usize,
    /// Which paths.
    pub coverage: Coverage,
    /// Worker threads.
    pub threads: usize,
    /// Make the stutter probes.
    pub stutter_probes: bool,
    /// Apply the partial-order reduction as the checker's proofs do.
    pub partial_order: bool,
    /// Most states the exploration holds (a bound on its memory).
    pub max_states: usize,
}

/// The default bound on the states an exploration holds (a few dozen bytes each).
pub const MAX_STATES: usize = 20_000_000;

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Unique states of the model run (classes, with symmetry; with all paths: steps on the
    /// paths replayed, plus one).
    pub unique_states: usize,
    /// Transitions of the reduced model run (not with all paths).
    pub transitions: Option<usize>,
    /// States replayed (their class reached and compared) or, with all paths, paths replayed.
    pub paths: usize,
    /// States (or paths) there are to replay, before `max_paths` cut them.
    pub available_paths: usize,
    /// Whether `max_paths` cut the run short.
    pub truncated: bool,
    /// Steps replayed: transitions, or the steps of every path.
    pub steps: usize,
    /// Stutter probes made.
    pub probes: usize,
    /// Copies of the world made (one per transition or probe but the last at each state).
    pub copies: usize,
    /// Time spent exploring the model.
    pub exploring: Duration,
    /// Time spent replaying.
    pub replaying: Duration,
    /// How many transitions, probes (or paths) diverged.
    pub diverging_paths: usize,
    /// The shortest divergence found.
    pub divergence: Option<Divergence>,
    /// What went wrong besides divergences (a step panicked, a world could not be copied);
    /// any makes the run fail.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Steps (transitions) replayed per second of replaying.
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.replaying.as_secs_f64().max(1e-9)
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The model is bigger than `max_states`.
    #[error(transparent)]
    TooManyStates(#[from] TooManyStates),
}

/// Explores `options.config` and replays it on the implementation.
pub fn run(options: &Options) -> Result<Outcome, RunError> {
    let config = options.config;
    if options.coverage == Coverage::AllPaths {
        return Ok(run_all_paths(options));
    }
    let listing = TicketingModel::new(config).with_partial_order(options.partial_order);
    let started = Instant::now();
    let plan = plan::explore(&listing, options.max_states)?;
    let exploring = started.elapsed();
    let replayed_nodes = plan.nodes().min(options.max_paths);
    let started = Instant::now();
    let walked = run_workers(options, &plan, replayed_nodes as u32);
    let mut outcome = Outcome {
        unique_states: plan.nodes(),
        transitions: Some(plan.transitions()),
        available_paths: plan.nodes(),
        truncated: replayed_nodes < plan.nodes(),
        steps: walked.transitions as usize,
        probes: walked.probes as usize,
        paths: walked.states as usize,
        copies: walked.copies as usize,
        exploring,
        replaying: started.elapsed(),
        diverging_paths: walked.diverged.len(),
        problems: walked.problems,
        ..Outcome::default()
    };
    let diverged = walked.diverged;
    if let Some(shortest) = diverged
        .iter()
        .min_by_key(|at| plan.tree_path(at.node()).len())
    {
        match rederive(options, &listing, &plan, *shortest) {
            Ok(divergence) => outcome.divergence = Some(divergence),
            Err(problem) => outcome.problems.push(problem),
        }
    }
    Ok(outcome)
}

/// Walks the plan (nodes below `replayed`) with one worker thread per part: what they did,
/// added up.
fn run_workers(options: &Options, plan: &Plan, replayed: u32) -> Walked {
    let specs: Vec<Spec> = plan
        .split(options.threads)
        .into_iter()
        .map(|part| Spec {
            config: options.config,
            implementation: options.implementation,
            partial_order: options.partial_order,
            probes: options.stutter_probes,
            tree_only: options.coverage == Coverage::States,
            owned: part.start.min(replayed)..part.end.min(replayed),
        })
        .collect();
    let walks: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| scope.spawn(move || worker::walk(plan, spec)))
            .collect();
        handles.into_iter().map(|handle| handle.join()).collect()
    });
    let mut total = Walked::default();
    for walk in walks {
        let Ok(walk) = walk else {
            total
                .problems
                .push("a worker panicked outside a step".to_owned());
            continue;
        };
        total.transitions += walk.transitions;
        total.probes += walk.probes;
        total.states += walk.states;
        total.copies += walk.copies;
        total.diverged.extend(walk.diverged);
        let problems = walk.problems.into_iter();
        total
            .problems
            .extend(problems.map(|problem| format!("worker: {problem}")));
    }
    total
}

/// The divergence a worker reported, replayed again from the initial state (a worker
/// reports only where; the path is the tree's path to the node, then the step or probe).
fn rederive(
    options: &Options,
    listing: &TicketingModel,
    plan: &Plan,
    at: DivergedAt,
) -> Result<Divergence, String> {
    let mut state = listing.init_states().remove(0);
    let mut path: Vec<Action> = Vec::new();
    let edges = plan
        .tree_path(at.node())
        .into_iter()
        .map(|edge| edge as usize)
        .chain(match at {
            DivergedAt::Transition { edge, .. } => Some(edge),
            _ => None,
        });
    for edge in edges {
        let (action, next) = plan::successors(listing, &state)
            .into_iter()
            .nth(edge)
            .ok_or_else(|| format!("the plan's edge {edge} is not a model step"))?;
        path.push(action);
        state = next;
    }
    let not_again = || {
        format!(
            "a worker saw a divergence the replay from the initial state does not: {at:?} \
             (the implementation is not deterministic?)"
        )
    };
    let replay = replay_actions_against(options.config, options.implementation, &path);
    match (replay, at) {
        (Err(divergence), _) => Ok(divergence),
        (Ok(mut replay), DivergedAt::Probe { probe, .. }) => match replay.probe(probe) {
            Err(divergence) => Ok(divergence),
            Ok(()) => Err(not_again()),
        },
        (Ok(_), _) => Err(not_again()),
    }
}

/// `--coverage all-paths`: every maximal path, each replayed from the initial state.
fn run_all_paths(options: &Options) -> Outcome {
    let model = TicketingModel::new(options.config);
    let started = Instant::now();
    let (mut paths, mut truncated) = paths::maximal_paths(&model, options.max_paths);
    let available_paths = paths.len();
    if paths.len() > options.max_paths {
        paths.truncate(options.max_paths);
        truncated = true;
    }
    let exploring = started.elapsed();
    let started = Instant::now();
    let replayed = paths::replay_all(
        (options.config, options.implementation),
        options.threads,
        options.stutter_probes,
        &paths,
    );
    Outcome {
        unique_states: paths.iter().map(Vec::len).sum::<usize>() + 1,
        transitions: None,
        paths: paths.len(),
        available_paths,
        truncated,
        steps: replayed.steps,
        probes: replayed.probes,
        copies: 0,
        exploring,
        replaying: started.elapsed(),
        diverging_paths: replayed.diverging_paths,
        divergence: replayed.shortest,
        problems: Vec::new(),
    }
}

/// The model checker at the same bounds and reductions, for its states per second beside
/// the replay's transitions per second: its unique states and time.
pub fn checker_rate(config: Config, threads: usize, partial_order: bool) -> (usize, Duration) {
    let outcome = model::run::check(
        config,
        &model::run::RunOptions {
            strategy: model::run::Strategy::Dfs,
            threads,
            exhaustive: true,
            partial_order: if partial_order {
                model::run::PartialOrder::Dfs
            } else {
                model::run::PartialOrder::Off
            },
            ..model::run::RunOptions::default()
        },
    );
    (outcome.unique_states, outcome.elapsed)
}
