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
/// every transition in a test. `course` goes without publisher retries: with them its graph
/// has millions of states.
pub fn small(variant: Variant) -> Config {
    let duplicates = u8::from(variant != Variant::Course);
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
