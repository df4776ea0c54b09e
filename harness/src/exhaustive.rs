//! `harness exhaustive`: every transition of a bounded model run, taken on the implementation.
//!
//! The model is explored breadth-first without symmetry reduction (the implementation's
//! members and tickets are not interchangeable names: each has its own id), and each path is
//! replayed on a fresh implementation. By default the paths take every *transition* of the
//! bounded run (see [`transition_covering_walks`]): reaching every state is not enough, since
//! a bug can live on one transition into a state that another, shorter path also reaches
//! (a stale save that overwrites a newer replica lands, in the model, in the state a
//! successful save followed by an acknowledged duplicate reaches in fewer steps).
//! `--coverage states` replays the shortest path to every state instead (the breadth-first
//! tree's paths to its leaves: each state is compared after the step that reaches it), and
//! `--coverage all-paths` every maximal path (to a state with nothing enabled), up to
//! `--max-paths`.
//!
//! The invariant: a run reports success only if every path it replayed followed the model
//! step for step; on divergence it reports the shortest diverging path it found (a path
//! cut at its first diverging step is itself a path of the model).

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stateright::Model;

use model::{Action, Config, State, TicketingModel, Variant};

use crate::replay::replay_actions;
use crate::report::Divergence;

/// The bounds `harness exhaustive` uses by default: one ticket updated once, ordered and
/// cancelled once, two members per group, one crash and one spurious ack-wait expiry. For
/// the reference: 324,905 states and 1,388,980 transitions, taken by 428,658 walks in about
/// a minute and a half to three minutes on two cores.
pub const fn default_config(variant: Variant) -> Config {
    Config {
        variant,
        tickets: 1,
        members: 2,
        updates: 1,
        orders: 1,
        cancels: 1,
        crashes: 1,
        redeliveries: 1,
        duplicates: 0,
        max_deliver: Config::tolerated_deliveries(1, 1, 0),
    }
}

/// Which paths are replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Coverage {
    /// Walks that take every transition of the model run (and so reach every state).
    Transitions,
    /// The shortest path to every state (the breadth-first tree's paths to its leaves).
    States,
    /// Every maximal path, up to `--max-paths`.
    AllPaths,
}

/// How to run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The bounds explored.
    pub config: Config,
    /// Most paths replayed.
    pub max_paths: usize,
    /// Which paths.
    pub coverage: Coverage,
    /// Replay threads.
    pub threads: usize,
    /// End every path with stutter probes ([`crate::replay::Replay::probe_stutters`]).
    pub stutter_probes: bool,
    /// Most states the exploration holds (a bound on its memory).
    pub max_states: usize,
}

/// The default bound on the states an exploration holds: about two gigabytes of memory.
pub const MAX_STATES: usize = 2_000_000;

/// What a run did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Unique states of the model run (with all paths: steps on the paths replayed, plus one).
    pub unique_states: usize,
    /// Transitions of the model run (with transition coverage).
    pub transitions: Option<usize>,
    /// Paths replayed.
    pub paths: usize,
    /// Paths the exploration produced (before `max_paths` cut them).
    pub available_paths: usize,
    /// Whether `max_paths` cut the run short.
    pub truncated: bool,
    /// Steps replayed over all paths.
    pub steps: usize,
    /// Stutter probes made at the paths' ends.
    pub probes: usize,
    /// Time spent exploring the model.
    pub exploring: Duration,
    /// Time spent replaying.
    pub replaying: Duration,
    /// How many paths diverged.
    pub diverging_paths: usize,
    /// The shortest divergence found.
    pub divergence: Option<Divergence>,
}

impl Outcome {
    /// Paths replayed per second of replaying.
    pub fn paths_per_second(&self) -> f64 {
        self.paths as f64 / self.replaying.as_secs_f64().max(1e-9)
    }
}

/// The model run explored breadth first: each state's parent in the breadth-first tree and
/// every transition, by discovery index (state 0 is the initial state).
struct Graph {
    /// Each state's parent and the action from it (`None` for the initial state).
    parents: Vec<Option<(u32, Action)>>,
    /// The transitions of state `s` are `edges[starts[s]..starts[s + 1]]`.
    starts: Vec<usize>,
    /// Each transition's action and target state.
    edges: Vec<(Action, u32)>,
}

impl Graph {
    fn states(&self) -> usize {
        self.parents.len()
    }

    fn transitions(&self, state: usize) -> std::ops::Range<usize> {
        self.starts[state]..self.starts[state + 1]
    }

    /// The breadth-first tree's path to `state`: a shortest path.
    fn tree_path(&self, mut at: usize) -> Vec<Action> {
        let mut path = Vec::new();
        while let Some((parent, action)) = self.parents[at] {
            path.push(action);
            at = parent as usize;
        }
        path.reverse();
        path
    }
}

/// The bounded model run has more states than the exploration may hold in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the model run at these bounds has more than {limit} states; lower the bounds \
     (or raise --max-states, at about a kilobyte of memory per state)"
)]
pub struct TooManyStates {
    /// The limit.
    pub limit: usize,
}

/// Explores the model breadth first, without symmetry reduction, holding at most
/// `max_states` states.
fn explore(model: &TicketingModel, max_states: usize) -> Result<Graph, TooManyStates> {
    let initial = model.init_states().remove(0);
    let mut graph = Graph {
        parents: vec![None],
        starts: Vec::new(),
        edges: Vec::new(),
    };
    let mut seen: HashMap<State, u32> = HashMap::new();
    seen.insert(initial.clone(), 0);
    let mut frontier = VecDeque::from([(initial, 0u32)]);
    let mut actions = Vec::new();
    while let Some((state, index)) = frontier.pop_front() {
        // Breadth-first order is discovery order: state `index` is expanded `index`-th.
        graph.starts.push(graph.edges.len());
        actions.clear();
        model.actions(&state, &mut actions);
        for action in &actions {
            let Some(next) = model.next_state(&state, *action) else {
                continue;
            };
            let target = match seen.get(&next) {
                Some(target) => *target,
                None => {
                    if graph.states() >= max_states {
                        return Err(TooManyStates { limit: max_states });
                    }
                    let target = graph.states() as u32;
                    graph.parents.push(Some((index, *action)));
                    seen.insert(next.clone(), target);
                    frontier.push_back((next, target));
                    target
                }
            };
            graph.edges.push((*action, target));
        }
    }
    graph.starts.push(graph.edges.len());
    Ok(graph)
}

/// The shortest path to every unique state, as the paths to the breadth-first tree's
/// leaves, shortest first; and the number of unique states.
pub fn state_covering_paths(
    model: &TicketingModel,
    max_states: usize,
) -> Result<(Vec<Vec<Action>>, usize), TooManyStates> {
    let graph = explore(model, max_states)?;
    let mut has_child = vec![false; graph.states()];
    for (parent, _) in graph.parents.iter().flatten() {
        has_child[*parent as usize] = true;
    }
    let paths = (0..graph.states())
        .filter(|state| !has_child[*state])
        .map(|leaf| graph.tree_path(leaf))
        .collect();
    Ok((paths, graph.states()))
}

/// Walks from the initial state that together take every transition of the bounded model
/// (so they reach every state too); and the number of unique states and of transitions.
///
/// A walk starts with the breadth-first tree's path to a state that still has a transition
/// not taken, takes it, and goes on greedily along transitions not taken yet until it reaches
/// a state with none left. States are visited in breadth-first order, so walks start as early
/// as they can.
pub fn transition_covering_walks(
    model: &TicketingModel,
    max_states: usize,
) -> Result<(Vec<Vec<Action>>, usize, usize), TooManyStates> {
    let graph = explore(model, max_states)?;
    let edges = &graph.edges;
    let mut taken = vec![false; edges.len()];
    let mut walks = Vec::new();
    for state in 0..graph.states() {
        for edge in graph.transitions(state) {
            if taken[edge] {
                continue;
            }
            let mut walk = graph.tree_path(state);
            // The tree's transitions along the prefix are taken by this walk too.
            let mut at = 0usize;
            for action in &walk {
                if let Some(e) = graph.transitions(at).find(|e| edges[*e].0 == *action) {
                    taken[e] = true;
                    at = edges[e].1 as usize;
                }
            }
            let mut next = Some(edge);
            while let Some(e) = next {
                taken[e] = true;
                walk.push(edges[e].0);
                next = graph.transitions(edges[e].1 as usize).find(|e| !taken[*e]);
            }
            walks.push(walk);
        }
    }
    Ok((walks, graph.states(), edges.len()))
}

/// Every maximal path (ending where nothing is enabled), depth first, at most `limit`; and
/// whether the limit cut the enumeration short.
pub fn maximal_paths(model: &TicketingModel, limit: usize) -> (Vec<Vec<Action>>, bool) {
    fn walk(
        model: &TicketingModel,
        state: &State,
        path: &mut Vec<Action>,
        paths: &mut Vec<Vec<Action>>,
        limit: usize,
    ) -> ControlFlow<()> {
        let mut actions = Vec::new();
        model.actions(state, &mut actions);
        if actions.is_empty() {
            if paths.len() == limit {
                return ControlFlow::Break(());
            }
            paths.push(path.clone());
            return ControlFlow::Continue(());
        }
        for action in actions {
            if let Some(next) = model.next_state(state, action) {
                path.push(action);
                let flow = walk(model, &next, path, paths, limit);
                path.pop();
                flow?;
            }
        }
        ControlFlow::Continue(())
    }
    let initial = model.init_states().remove(0);
    let mut paths = Vec::new();
    let flow = walk(model, &initial, &mut Vec::new(), &mut paths, limit);
    (paths, flow.is_break())
}

/// Explores `options.config` and replays its paths on fresh implementations.
pub fn run(options: &Options) -> Result<Outcome, TooManyStates> {
    let model = TicketingModel::new(options.config);
    let started = Instant::now();
    let (mut paths, unique_states, transitions, mut truncated) = match options.coverage {
        Coverage::AllPaths => {
            let (paths, truncated) = maximal_paths(&model, options.max_paths);
            let states = paths.iter().map(Vec::len).sum::<usize>() + 1;
            (paths, states, None, truncated)
        }
        Coverage::States => {
            let (paths, unique) = state_covering_paths(&model, options.max_states)?;
            (paths, unique, None, false)
        }
        Coverage::Transitions => {
            let (walks, unique, transitions) =
                transition_covering_walks(&model, options.max_states)?;
            (walks, unique, Some(transitions), false)
        }
    };
    let available_paths = paths.len();
    if paths.len() > options.max_paths {
        paths.truncate(options.max_paths);
        truncated = true;
    }
    let exploring = started.elapsed();
    let started = Instant::now();
    let replayed = replay_all(options, &paths);
    Ok(Outcome {
        unique_states,
        transitions,
        paths: paths.len(),
        available_paths,
        truncated,
        steps: replayed.steps,
        probes: replayed.probes,
        exploring,
        replaying: started.elapsed(),
        diverging_paths: replayed.diverging_paths,
        divergence: replayed.shortest,
    })
}

/// What replaying a set of paths found.
struct Replayed {
    steps: usize,
    probes: usize,
    diverging_paths: usize,
    shortest: Option<Divergence>,
}

/// Replays `paths` on `options.threads` threads, each path on a fresh implementation, keeping
/// the shortest divergence.
fn replay_all(options: &Options, paths: &[Vec<Action>]) -> Replayed {
    let next = AtomicUsize::new(0);
    let steps = AtomicUsize::new(0);
    let probes = AtomicUsize::new(0);
    let diverging = AtomicUsize::new(0);
    let shortest: Mutex<Option<Divergence>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1) {
            scope.spawn(|| {
                while let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let replayed = replay_actions(options.config, path).and_then(|mut replay| {
                        if options.stutter_probes {
                            probes.fetch_add(replay.probe_stutters()?, Ordering::Relaxed);
                        }
                        Ok(replay)
                    });
                    match replayed {
                        Ok(replay) => {
                            steps.fetch_add(replay.actions().len(), Ordering::Relaxed);
                        }
                        Err(divergence) => {
                            steps.fetch_add(divergence.step(), Ordering::Relaxed);
                            diverging.fetch_add(1, Ordering::Relaxed);
                            let mut shortest = shortest
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner());
                            if shortest
                                .as_ref()
                                .is_none_or(|found| divergence.step() < found.step())
                            {
                                *shortest = Some(divergence);
                            }
                        }
                    }
                }
            });
        }
    });
    Replayed {
        steps: steps.into_inner(),
        probes: probes.into_inner(),
        diverging_paths: diverging.into_inner(),
        shortest: shortest
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    }
}
