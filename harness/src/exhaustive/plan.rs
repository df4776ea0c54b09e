//! The replay plan: the bounded model explored once, breadth first, reduced by the checker's
//! symmetry (and, unless turned off, its partial-order reduction), as a spanning tree the
//! workers walk depth first.
//!
//! A node is a class of states under the checker's symmetry; the plan keeps, for each node,
//! the one concrete state its tree path reaches (the worker's implementation is in that state
//! when it stands at the node). Its edges are the actions the model lists in that concrete
//! state, in the model's order (the worker lists them again and must get as many): an edge
//! into a class first discovered through it is a *tree edge*, named by the child's number;
//! every other edge only needs its step taken and compared. Nodes are numbered in the tree's
//! depth-first pre-order, so a subtree is a range of numbers and a worker owns a range.
//!
//! The invariant: every transition of the reduced graph (one per class of states and action)
//! is an edge of exactly one node, and every node but the root is the target of exactly one
//! tree edge; the tree is breadth first, so every node's tree path is a shortest path.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use stateright::{Model, Representative};

use model::{Action, State, TicketingModel};

/// An edge that is not a tree edge.
pub const NOT_TREE: u32 = u32::MAX;

/// The bounded model run has more states than the exploration may hold in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the model run at these bounds has more than {limit} states; lower the bounds \
     (or raise --max-states)"
)]
pub struct TooManyStates {
    /// The limit.
    pub limit: usize,
}

/// The reduced graph as a spanning tree, in pre-order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Node `n`'s edges are `targets[starts[n]..starts[n + 1]]`.
    pub starts: Vec<u32>,
    /// Each edge's tree child, or [`NOT_TREE`].
    pub targets: Vec<u32>,
    /// Node `n`'s subtree is the nodes `n..ends[n]`.
    pub ends: Vec<u32>,
    /// Each node's tree parent and the index of the edge from it (the root has none).
    pub parents: Vec<Option<(u32, u32)>>,
}

impl Plan {
    /// Nodes (classes of states).
    pub fn nodes(&self) -> usize {
        self.ends.len()
    }

    /// Edges (transitions of the reduced graph).
    pub fn transitions(&self) -> usize {
        self.targets.len()
    }

    /// Node `node`'s edges.
    pub fn edges(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.targets[self.starts[n] as usize..self.starts[n + 1] as usize]
    }

    /// The edge indices from the root to `node`, in order.
    pub fn tree_path(&self, mut node: u32) -> Vec<u32> {
        let mut path = Vec::new();
        while let Some((parent, edge)) = self.parents[node as usize] {
            path.push(edge);
            node = parent;
        }
        path.reverse();
        path
    }

    /// Splits the nodes into `parts` ranges of pre-order numbers with about equal work (a
    /// node's edges, plus one for the node itself).
    pub fn split(&self, parts: usize) -> Vec<std::ops::Range<u32>> {
        let parts = parts.max(1);
        let total = (self.transitions() + self.nodes()) as u64;
        let mut ranges = Vec::with_capacity(parts);
        let (mut start, mut done) = (0u32, 0u64);
        for node in 0..self.nodes() as u32 {
            done += self.edges(node).len() as u64 + 1;
            let part = ranges.len() as u64 + 1;
            if ranges.len() + 1 < parts && done * parts as u64 >= total * part {
                ranges.push(start..node + 1);
                start = node + 1;
            }
        }
        ranges.push(start..self.nodes() as u32);
        ranges
    }

    /// The end of node `node`'s subtree.
    pub fn end(&self, node: u32) -> u32 {
        self.ends[node as usize]
    }
}

/// The actions `model` lists in `state` whose step the model defines, with their successors:
/// a node's edges, in order.
pub fn successors(model: &TicketingModel, state: &State) -> Vec<(Action, State)> {
    let mut actions = Vec::new();
    model.actions(state, &mut actions);
    actions
        .into_iter()
        .filter_map(|action| Some((action, model.next_state(state, action)?)))
        .collect()
}

/// The 64-bit fingerprint of `state`'s class (as the checker keeps visited states).
fn fingerprint(state: &State) -> u64 {
    let mut hasher = DefaultHasher::new();
    state.representative().hash(&mut hasher);
    hasher.finish()
}

/// Explores `model` breadth first by classes of states, holding at most `max_states`.
pub fn explore(model: &TicketingModel, max_states: usize) -> Result<Plan, TooManyStates> {
    let initial = model.init_states().remove(0);
    // By discovery (breadth-first) number: each node's edges, and its parent.
    let mut starts = vec![0u32];
    let mut targets = Vec::new();
    let mut parents: Vec<Option<(u32, u32)>> = vec![None];
    let mut seen: HashMap<u64, u32> = HashMap::from([(fingerprint(&initial), 0)]);
    let mut frontier = VecDeque::from([(initial, 0u32)]);
    while let Some((state, index)) = frontier.pop_front() {
        for (edge, (_, next)) in successors(model, &state).into_iter().enumerate() {
            let key = fingerprint(&next);
            if seen.contains_key(&key) {
                targets.push(NOT_TREE);
                continue;
            }
            if parents.len() >= max_states {
                return Err(TooManyStates { limit: max_states });
            }
            let child = parents.len() as u32;
            seen.insert(key, child);
            parents.push(Some((index, edge as u32)));
            targets.push(child);
            frontier.push_back((next, child));
        }
        starts.push(targets.len() as u32);
    }
    Ok(in_pre_order(&starts, &targets, &parents))
}

/// Renumbers a breadth-first tree (nodes by discovery) in depth-first pre-order.
fn in_pre_order(starts: &[u32], targets: &[u32], parents: &[Option<(u32, u32)>]) -> Plan {
    let nodes = parents.len();
    let edges = |n: usize| &targets[starts[n] as usize..starts[n + 1] as usize];
    let mut order = Vec::with_capacity(nodes);
    let mut stack = vec![0u32];
    while let Some(node) = stack.pop() {
        order.push(node);
        // Pushed in reverse so the first tree child is visited first.
        stack.extend(
            edges(node as usize)
                .iter()
                .rev()
                .filter(|t| **t != NOT_TREE),
        );
    }
    let mut number = vec![0u32; nodes];
    for (pre, node) in order.iter().enumerate() {
        number[*node as usize] = pre as u32;
    }
    let mut plan = Plan {
        starts: Vec::with_capacity(nodes + 1),
        targets: Vec::with_capacity(targets.len()),
        ends: vec![0; nodes],
        parents: vec![None; nodes],
    };
    for node in &order {
        plan.starts.push(plan.targets.len() as u32);
        plan.targets
            .extend(edges(*node as usize).iter().map(|t| match *t {
                NOT_TREE => NOT_TREE,
                child => number[child as usize],
            }));
        plan.parents[number[*node as usize] as usize] =
            parents[*node as usize].map(|(parent, edge)| (number[parent as usize], edge));
    }
    plan.starts.push(plan.targets.len() as u32);
    // A subtree ends where the next node that is not in it starts: children come after
    // their parent, so sizes add up from the last node back.
    let mut size = vec![1u32; nodes];
    for pre in (1..nodes).rev() {
        if let Some((parent, _)) = plan.parents[pre] {
            size[parent as usize] += size[pre];
        }
    }
    for (pre, (end, size)) in plan.ends.iter_mut().zip(size).enumerate() {
        *end = pre as u32 + size;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Config, Variant};

    fn small() -> TicketingModel {
        TicketingModel::new(Config {
            updates: 1,
            orders: 1,
            cancels: 0,
            redeliveries: 0,
            max_deliver: Config::tolerated_deliveries(1, 0, 0),
            ..Config::new(Variant::Reference)
        })
    }

    #[test]
    fn every_node_but_the_root_is_the_target_of_one_tree_edge_and_subtrees_are_ranges() {
        let plan = explore(&small(), 100_000).unwrap();
        let mut targeted = vec![0; plan.nodes()];
        for target in plan.targets.iter().filter(|t| **t != NOT_TREE) {
            targeted[*target as usize] += 1;
        }
        assert_eq!(targeted[0], 0);
        assert!(targeted[1..].iter().all(|count| *count == 1));
        for node in 0..plan.nodes() as u32 {
            for child in plan.edges(node).iter().filter(|t| **t != NOT_TREE) {
                assert!(node < *child && plan.ends[*child as usize] <= plan.ends[node as usize]);
            }
        }
    }

    #[test]
    fn split_ranges_cover_every_node_once() {
        let plan = explore(&small(), 100_000).unwrap();
        let ranges = plan.split(3);
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[2].end as usize, plan.nodes());
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
    }
}
