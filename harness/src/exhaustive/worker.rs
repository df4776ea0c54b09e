//! The branching replay: a worker walks its part of the plan's spanning tree depth first with
//! one implementation, and at each node makes every outgoing transition and every stutter
//! probe on a copy of the world ([`Replay::copy`]: the stores and the broker core copied,
//! parked tasks re-created from their recorded operations). The copy takes its one step,
//! compares with the model's successor and, for a tree edge, walks on into the subtree; the
//! last job at a node runs on the world itself (nothing needs that state after it). So no
//! step is ever replayed twice, and no walk restarts from the initial state.
//!
//! Workers are threads, one per part of the plan ([`super::Plan::split`]); each has its own
//! worlds (nothing in a world is shared between threads) and reports what diverged as
//! [`DivergedAt`]s with its counts.
//!
//! The invariant: a worker counts a transition (or probe, or state) only after the
//! implementation took it and the observed state equalled the model's; a node's transitions
//! and probes are made, and counted, by the one worker that owns it, so counts add up.

use std::cell::RefCell;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use model::{Action, Config, TicketingModel, Variant};

use super::plan::{NOT_TREE, Plan, successors};
use crate::replay::Replay;

/// What a worker is asked to do.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The model's bounds.
    pub config: Config,
    /// The implementation held to it.
    pub implementation: Variant,
    /// Whether the plan lists the partial-order reduction's ample sets.
    pub partial_order: bool,
    /// Whether every state's stutter probes are made.
    pub probes: bool,
    /// Whether only tree edges are taken (the shortest path to every state).
    pub tree_only: bool,
    /// The nodes this worker owns (pre-order numbers).
    pub owned: Range<u32>,
}

/// One step a worker makes at a node, on a copy of the world or (the last) in place.
#[derive(Clone, Copy, Debug)]
enum Job {
    Probe(Action),
    Step {
        edge: usize,
        action: Action,
        child: u32,
    },
}

/// What one worker did.
#[derive(Clone, Debug, Default)]
pub struct Walked {
    /// Transitions replayed.
    pub transitions: u64,
    /// Probes made.
    pub probes: u64,
    /// States reached.
    pub states: u64,
    /// Copies of the world made.
    pub copies: u64,
    /// Where a transition or probe diverged.
    pub diverged: Vec<DivergedAt>,
    /// What went wrong besides: a copy that could not be made, a step that panicked, a plan
    /// that does not fit the model.
    pub problems: Vec<String>,
}

struct Worker<'a> {
    plan: &'a Plan,
    model: TicketingModel,
    spec: &'a Spec,
    walked: RefCell<Walked>,
}

/// Walks the part of `plan` that `spec` names (see the module docs).
pub fn walk(plan: &Plan, spec: &Spec) -> Walked {
    let worker = Worker {
        plan,
        model: TicketingModel::new(spec.config).with_partial_order(spec.partial_order),
        spec,
        walked: RefCell::default(),
    };
    match Replay::against(spec.config, spec.implementation) {
        Ok(replay) => worker.visit(0, &mut replay.quiet()),
        Err(_) => worker.problem("the initial states differ".into()),
    }
    worker.walked.take()
}

impl Worker<'_> {
    fn owns(&self, node: u32) -> bool {
        self.spec.owned.contains(&node)
    }

    /// Whether the subtree of tree child `child` holds a node this worker owns.
    fn enters(&self, child: u32) -> bool {
        child != NOT_TREE
            && child < self.spec.owned.end
            && self.plan.end(child) > self.spec.owned.start
    }

    fn count(&self, counter: impl FnOnce(&mut Walked) -> &mut u64) {
        *counter(&mut self.walked.borrow_mut()) += 1;
    }

    fn diverged(&self, at: DivergedAt) {
        self.walked.borrow_mut().diverged.push(at);
    }

    fn problem(&self, problem: String) {
        self.walked.borrow_mut().problems.push(problem);
    }

    /// What this worker does at `node`, whose state `replay` is in.
    fn jobs(&self, node: u32, replay: &Replay) -> Result<Vec<Job>, String> {
        let owns = self.owns(node);
        let mut jobs = Vec::new();
        if owns && self.spec.probes {
            jobs.extend(replay.stutter_probes().into_iter().map(Job::Probe));
        }
        let listed = successors(&self.model, replay.state());
        let edges = self.plan.edges(node);
        if listed.len() != edges.len() {
            return Err(format!(
                "the model lists {} actions where the plan has {} edges",
                listed.len(),
                edges.len()
            ));
        }
        for (edge, ((action, _), child)) in listed.into_iter().zip(edges).enumerate() {
            let tree = *child != NOT_TREE;
            if (owns && (tree || !self.spec.tree_only)) || self.enters(*child) {
                jobs.push(Job::Step {
                    edge,
                    action,
                    child: *child,
                });
            }
        }
        Ok(jobs)
    }

    /// Makes every job at `node`: each on a copy of the world, the last in place (nothing
    /// needs this state after it).
    fn visit(&self, node: u32, replay: &mut Replay) {
        if self.owns(node) {
            self.count(|walked| &mut walked.states);
        }
        let jobs = match self.jobs(node, replay) {
            Ok(jobs) => jobs,
            Err(problem) => return self.problem(format!("at node {node}: {problem}")),
        };
        let last = jobs.len().saturating_sub(1);
        for (index, job) in jobs.into_iter().enumerate() {
            if index == last {
                return self.guarded(node, job, replay);
            }
            self.branch(node, job, replay);
        }
    }

    /// Runs `job`, reporting a panic (an implementation bug the step ran into) as a problem.
    fn guarded(&self, node: u32, job: Job, replay: &mut Replay) {
        if catch_unwind(AssertUnwindSafe(|| self.run(node, job, replay))).is_err() {
            self.problem(format!("at node {node}: {job:?} panicked"));
        }
    }

    /// Makes `job` on a copy of the world at `node`, leaving `replay` as it stands.
    fn branch(&self, node: u32, job: Job, replay: &Replay) {
        self.count(|walked| &mut walked.copies);
        match replay.copy() {
            Ok(mut copy) => self.guarded(node, job, &mut copy),
            Err(refusal) => self.problem(format!("at node {node}: {job:?}: {}", refusal.0)),
        }
    }

    fn run(&self, node: u32, job: Job, replay: &mut Replay) {
        match job {
            Job::Probe(action) => match replay.probe(action) {
                Ok(()) => self.count(|walked| &mut walked.probes),
                Err(_) => self.diverged(DivergedAt::Probe {
                    node,
                    probe: action,
                }),
            },
            Job::Step {
                edge,
                action,
                child,
            } => {
                let owns = self.owns(node);
                match replay.step(action) {
                    Err(_) if owns => self.diverged(DivergedAt::Transition { node, edge }),
                    // Not this worker's transition: its owner reports it.
                    Err(_) => {}
                    Ok(()) => {
                        if owns {
                            self.count(|walked| &mut walked.transitions);
                        }
                        if self.enters(child) {
                            self.visit(child, replay);
                        }
                    }
                }
            }
        }
    }
}

/// A divergence a worker found: where, not the path (the path is the tree's path to the
/// node, then the step or probe; it is replayed again, described, from the initial state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DivergedAt {
    /// The step of edge `edge` of `node` diverged.
    Transition {
        /// The node.
        node: u32,
        /// The edge's index.
        edge: usize,
    },
    /// The stutter probe `probe` (a delivery) at `node` diverged.
    Probe {
        /// The node.
        node: u32,
        /// The delivery.
        probe: Action,
    },
}

impl DivergedAt {
    /// The node the transition or probe was made at.
    pub fn node(&self) -> u32 {
        match self {
            DivergedAt::Transition { node, .. } | DivergedAt::Probe { node, .. } => *node,
        }
    }
}
