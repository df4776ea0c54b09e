//! The forking replay: a worker process walks the plan's spanning tree depth first with one
//! implementation, and forks a child per outgoing transition and per stutter probe. The child
//! takes its one step on its copy of the world (a fork is the snapshot), compares with the
//! model's successor, and, for a tree edge, goes on walking the subtree; the parent waits,
//! then forks the next. So no step is ever replayed twice, and no walk restarts from the
//! initial state.
//!
//! `run` starts the workers with `harness exhaustive-worker` (a fresh process: the one that
//! explored the model holds the whole graph, and a fork copies its page tables), writes each
//! its part of the plan on stdin and reads report lines from its stdout. A worker has one
//! thread, keeps the plan and its counters in shared mappings (forks copy neither), and its
//! children write their reports straight to the shared stdout pipe in one `write` each:
//! - `T node edge`: the transition's step diverged;
//! - `P node group member message`: the stutter probe diverged;
//! - `X node what`: a child crashed or could not be forked, or the plan does not fit;
//! - `done transitions probes states forks`: the worker's last line.
//!
//! The invariant: a worker counts a transition (or probe, or state) only after the
//! implementation took it and the observed state equalled the model's; a node's transitions
//! and probes are made, and counted, by the one worker that owns it, so counts add up.

use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use model::state::Group;
use model::{Action, Config, TicketingModel, Variant};

use super::plan::{NOT_TREE, PlanView, successors};
use super::process::{self, Ended, Forked, Shared};
use crate::replay::Replay;

/// What a worker is asked to do (its stdin's first line, before the plan's words).
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// The plan's nodes.
    pub nodes: usize,
    /// The plan's edges.
    pub transitions: usize,
    /// The nodes this worker owns (pre-order numbers).
    pub owned: Range<u32>,
}

const TRANSITIONS: usize = 0;
const PROBES: usize = 1;
const STATES: usize = 2;
const FORKS: usize = 3;
const COUNTERS: usize = 4;

/// One step a worker makes at a node, in a child of its own or (the last) in place.
#[derive(Clone, Copy, Debug)]
enum Job {
    Probe(Action),
    Step {
        edge: usize,
        action: Action,
        child: u32,
    },
}

struct Worker<'a> {
    plan: PlanView<'a>,
    model: TicketingModel,
    spec: &'a Spec,
    counters: &'a [AtomicU64],
}

/// `harness exhaustive-worker`: reads a [`Spec`] and the plan from stdin, walks its part,
/// and writes report lines to stdout (see the module docs).
pub fn serve() -> io::Result<()> {
    let mut input = BufReader::new(io::stdin().lock());
    let mut header = String::new();
    input.read_line(&mut header)?;
    let spec: Spec = serde_json::from_str(&header).map_err(io::Error::other)?;
    let words = 2 * spec.nodes + 1 + spec.transitions;
    let mut plan = Shared::new(words.div_ceil(2))?;
    input.read_exact(&mut plan.bytes_mut()[..4 * words])?;
    drop(input);
    let view = PlanView::new(&plan.u32s()[..words], spec.nodes, spec.transitions)
        .ok_or_else(|| io::Error::other("the plan's words do not match its header"))?;
    let counters = Shared::new(COUNTERS)?;
    let worker = Worker {
        plan: view,
        model: TicketingModel::new(spec.config).with_partial_order(spec.partial_order),
        spec: &spec,
        counters: counters.counters(),
    };
    match Replay::against(spec.config, spec.implementation) {
        Ok(replay) => worker.visit(0, &mut replay.quiet()),
        Err(_) => worker.report("X 0 the initial states differ"),
    }
    let count = |counter: usize| worker.counters[counter].load(Ordering::SeqCst);
    worker.report(&format!(
        "done {} {} {} {}",
        count(TRANSITIONS),
        count(PROBES),
        count(STATES),
        count(FORKS)
    ));
    Ok(())
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

    fn count(&self, counter: usize) {
        self.counters[counter].fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, line: &str) {
        // Nothing to do if main is gone: it reads until every process has closed the pipe.
        let _ = process::write_line(1, &format!("{line}\n"));
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

    /// Makes every job at `node`: each in a child of its own, the last in place (nothing
    /// needs this state after it).
    fn visit(&self, node: u32, replay: &mut Replay) {
        if self.owns(node) {
            self.count(STATES);
        }
        let jobs = match self.jobs(node, replay) {
            Ok(jobs) => jobs,
            Err(problem) => return self.report(&format!("X {node} {problem}")),
        };
        let last = jobs.len().saturating_sub(1);
        for (index, job) in jobs.into_iter().enumerate() {
            if index == last {
                return self.run(node, job, replay);
            }
            self.fork(node, job, replay);
        }
    }

    fn fork(&self, node: u32, job: Job, replay: &mut Replay) {
        self.count(FORKS);
        match process::fork() {
            Ok(Forked::Child) => {
                let ran = catch_unwind(AssertUnwindSafe(|| self.run(node, job, replay)));
                process::exit_now(if ran.is_ok() { 0 } else { 101 })
            }
            Ok(Forked::Parent(pid)) => match process::wait(pid) {
                Ok(Ended::Exited(0)) => {}
                Ok(ended) => self.report(&format!("X {node} {job:?} ended: {ended:?}")),
                Err(error) => self.report(&format!("X {node} {job:?} not waited for: {error}")),
            },
            Err(error) => self.report(&format!("X {node} {job:?} not forked: {error}")),
        }
    }

    fn run(&self, node: u32, job: Job, replay: &mut Replay) {
        match job {
            Job::Probe(action) => match replay.probe(action) {
                Ok(()) => self.count(PROBES),
                Err(_) => {
                    if let Action::Deliver {
                        group,
                        member,
                        message,
                    } = action
                    {
                        self.report(&format!("P {node} {} {member} {message}", group as u8));
                    }
                }
            },
            Job::Step {
                edge,
                action,
                child,
            } => {
                let owns = self.owns(node);
                match replay.step(action) {
                    Err(_) if owns => self.report(&format!("T {node} {edge}")),
                    // Not this worker's transition: its owner reports it.
                    Err(_) => {}
                    Ok(()) => {
                        if owns {
                            self.count(TRANSITIONS);
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

/// A line a worker wrote, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
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
    /// The worker is done; its counts.
    Done {
        /// Transitions replayed.
        transitions: u64,
        /// Probes made.
        probes: u64,
        /// States reached.
        states: u64,
        /// Processes forked.
        forks: u64,
    },
}

impl Line {
    /// Parses a worker's line; `Err` holds a problem the worker reported, or the line.
    pub fn parse(line: &str) -> Result<Line, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> Result<u64, String> {
            words
                .get(i)
                .and_then(|word| word.parse().ok())
                .ok_or_else(|| format!("a worker wrote {line:?}"))
        };
        match words.first() {
            Some(&"T") => Ok(Line::Transition {
                node: number(1)? as u32,
                edge: number(2)? as usize,
            }),
            Some(&"P") => Ok(Line::Probe {
                node: number(1)? as u32,
                probe: Action::Deliver {
                    group: Group::ALL[(number(2)? as usize).min(1)],
                    member: number(3)? as u8,
                    message: number(4)? as u8,
                },
            }),
            Some(&"done") => Ok(Line::Done {
                transitions: number(1)?,
                probes: number(2)?,
                states: number(3)?,
                forks: number(4)?,
            }),
            Some(&"X") => Err(format!("worker: {}", &line[2..])),
            _ => Err(format!("a worker wrote {line:?}")),
        }
    }
}
