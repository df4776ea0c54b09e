//! Exhaustive exploration for tests that need every transition, not only every state.
// Each test crate uses part of this module.
#![allow(dead_code)]

pub mod xml;

use std::collections::{HashMap, VecDeque};

use model::State;
use model::action::Action;
use model::config::{Config, Variant};
use model::system::TicketingModel;
use stateright::Model;

/// Small bounds that still exercise every kind of step of `variant` (one member per group, one
/// order and one cancellation, every adversary budget at one), small enough to enumerate
/// every transition in a test. `course` and `course-listener` go without duplicates: they
/// never acknowledge one, so it is redelivered until dead-lettered, and their graphs grow to
/// millions of states (14,529,787 for `course-listener`: `check --variant course-listener
/// --exhaustive --members 1 --updates 1 --orders 1 --cancels 1 --crashes 1 --redeliveries 1
/// --duplicates 1 --no-symmetry --strategy dfs`). The others, outbox designs included, get
/// one duplicate delivery (SPEC.md section 3).
pub fn small(variant: Variant) -> Config {
    let duplicates = u8::from(!matches!(
        variant,
        Variant::Course | Variant::CourseListener
    ));
    Config {
        members: 1,
        updates: 1,
        orders: 1,
        cancels: 1,
        crashes: 1,
        redeliveries: 1,
        duplicates,
        max_deliver: Config::tolerated_deliveries(1, 1, duplicates),
        ..Config::new(variant)
    }
}

/// Every reachable state, numbered in BFS order, with its outgoing transitions.
pub struct Graph {
    pub states: Vec<State>,
    pub edges: Vec<Vec<(Action, usize)>>,
}

/// Explores `model` without symmetry reduction; panics past `limit` states (a test whose
/// configuration grew too large should be noticed, not left to run for an hour).
pub fn explore(model: &TicketingModel, limit: usize) -> Graph {
    let mut index: HashMap<State, usize> = HashMap::new();
    let mut states = Vec::new();
    let mut edges = Vec::new();
    let mut queue = VecDeque::new();
    for init in model.init_states() {
        index.insert(init.clone(), states.len());
        queue.push_back(states.len());
        states.push(init);
        edges.push(Vec::new());
    }
    let mut actions = Vec::new();
    while let Some(at) = queue.pop_front() {
        actions.clear();
        model.actions(&states[at], &mut actions);
        for action in actions.drain(..) {
            let Some(next) = model.next_state(&states[at], action) else {
                continue;
            };
            let to = match index.get(&next) {
                Some(known) => *known,
                None => {
                    let fresh = states.len();
                    assert!(
                        fresh < limit,
                        "more than {limit} states: shrink the configuration"
                    );
                    index.insert(next.clone(), fresh);
                    states.push(next);
                    edges.push(Vec::new());
                    queue.push_back(fresh);
                    fresh
                }
            };
            edges[at].push((action, to));
        }
    }
    Graph { states, edges }
}

/// The depth (steps from the initial state) of the first state violating each property, in
/// SPEC.md's order, found by a breadth-first search to `max_depth` steps, over the states
/// themselves or (with `symmetry`) over their representatives; and how many distinct states
/// it visited. A sound symmetry reduction gives the same depths: a state and its
/// representative satisfy the same properties and have corresponding successors, so the
/// reduced graph reaches a violation's class at the same depth as the full graph reaches the
/// violation.
///
/// States are kept as 64-bit fingerprints of their packed encoding (as stateright's
/// checkers keep them), so millions fit in a test's memory.
pub fn shortest_violations(
    model: &TicketingModel,
    symmetry: bool,
    max_depth: usize,
) -> ([Option<usize>; 8], usize) {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, RandomState};

    use model::properties::Prop;
    use stateright::Representative;

    let canonical = |state: State| {
        if symmetry {
            state.representative()
        } else {
            state
        }
    };
    let hasher = RandomState::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut depths = [None; 8];
    let mut frontier: Vec<State> = Vec::new();
    for init in model.init_states() {
        let init = canonical(init);
        if seen.insert(hasher.hash_one(&init)) {
            frontier.push(init);
        }
    }
    let mut actions = Vec::new();
    for depth in 0..=max_depth {
        for state in &frontier {
            for prop in Prop::ALL {
                let found = &mut depths[prop.number() - 1];
                if found.is_none() && !prop.holds(model, state) {
                    *found = Some(depth);
                }
            }
        }
        if depth == max_depth || depths.iter().all(Option::is_some) {
            break;
        }
        let mut next = Vec::new();
        for state in &frontier {
            actions.clear();
            model.actions(state, &mut actions);
            for action in actions.drain(..) {
                let Some(successor) = model.next_state(state, action) else {
                    continue;
                };
                let successor = canonical(successor);
                if seen.insert(hasher.hash_one(&successor)) {
                    next.push(successor);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    (depths, seen.len())
}
