//! The model checker's yardstick: two-phase commit with N resource managers, as stateright
//! 0.31's `examples/2pc.rs` writes it (Gray and Lamport, "Consensus on Transaction Commit").
//!
//! It is reproduced here rather than imported because examples are not part of stateright's
//! library. The model is unchanged: `Vec` and `BTreeSet` state, `Clone` per successor, the
//! same actions, properties and symmetry rewrite, so its rate is the rate the anchors quote
//! (`shared/PERF-ANCHORS.md`: 414k unique states/s on one thread at N = 8). Tests pin the
//! example's own state counts, so a change that alters the graph is noticed.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::{Duration, Instant};

use stateright::{Checker, Model, Property, Representative, Rewrite, RewritePlan};

/// A resource manager, numbered `0..N`.
type Rm = usize;

/// Two-phase commit over the resource managers `rms`.
#[derive(Clone, Debug)]
pub struct TwoPhaseSys {
    /// The resource managers.
    pub rms: Range<Rm>,
}

/// One state of the protocol.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct TwoPhaseState {
    rm_state: Vec<RmState>,
    tm_state: TmState,
    tm_prepared: Vec<bool>,
    msgs: BTreeSet<Message>,
}

#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
enum Message {
    Prepared { rm: Rm },
    Commit,
    Abort,
}

#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
enum RmState {
    Working,
    Prepared,
    Committed,
    Aborted,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq)]
enum TmState {
    Init,
    Committed,
    Aborted,
}

/// A step of the protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The transaction manager receives a resource manager's "prepared".
    TmRcvPrepared(Rm),
    /// The transaction manager commits (every resource manager prepared).
    TmCommit,
    /// The transaction manager aborts.
    TmAbort,
    /// A resource manager prepares.
    RmPrepare(Rm),
    /// A resource manager aborts on its own.
    RmChooseToAbort(Rm),
    /// A resource manager receives "commit".
    RmRcvCommitMsg(Rm),
    /// A resource manager receives "abort".
    RmRcvAbortMsg(Rm),
}

impl Model for TwoPhaseSys {
    type State = TwoPhaseState;
    type Action = Action;

    fn init_states(&self) -> Vec<Self::State> {
        vec![TwoPhaseState {
            rm_state: self.rms.clone().map(|_| RmState::Working).collect(),
            tm_state: TmState::Init,
            tm_prepared: self.rms.clone().map(|_| false).collect(),
            msgs: BTreeSet::new(),
        }]
    }

    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>) {
        if state.tm_state == TmState::Init && state.tm_prepared.iter().all(|p| *p) {
            actions.push(Action::TmCommit);
        }
        if state.tm_state == TmState::Init {
            actions.push(Action::TmAbort);
        }
        for rm in self.rms.clone() {
            if state.tm_state == TmState::Init && state.msgs.contains(&Message::Prepared { rm }) {
                actions.push(Action::TmRcvPrepared(rm));
            }
            if state.rm_state.get(rm) == Some(&RmState::Working) {
                actions.push(Action::RmPrepare(rm));
            }
            if state.rm_state.get(rm) == Some(&RmState::Working) {
                actions.push(Action::RmChooseToAbort(rm));
            }
            if state.msgs.contains(&Message::Commit) {
                actions.push(Action::RmRcvCommitMsg(rm));
            }
            if state.msgs.contains(&Message::Abort) {
                actions.push(Action::RmRcvAbortMsg(rm));
            }
        }
    }

    fn next_state(&self, last_state: &Self::State, action: Self::Action) -> Option<Self::State> {
        let mut state = last_state.clone();
        match action {
            Action::TmRcvPrepared(rm) => state.tm_prepared[rm] = true,
            Action::TmCommit => {
                state.tm_state = TmState::Committed;
                state.msgs.insert(Message::Commit);
            }
            Action::TmAbort => {
                state.tm_state = TmState::Aborted;
                state.msgs.insert(Message::Abort);
            }
            Action::RmPrepare(rm) => {
                state.rm_state[rm] = RmState::Prepared;
                state.msgs.insert(Message::Prepared { rm });
            }
            Action::RmChooseToAbort(rm) => state.rm_state[rm] = RmState::Aborted,
            Action::RmRcvCommitMsg(rm) => state.rm_state[rm] = RmState::Committed,
            Action::RmRcvAbortMsg(rm) => state.rm_state[rm] = RmState::Aborted,
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::<Self>::sometimes("abort agreement", |_, state| {
                state.rm_state.iter().all(|s| s == &RmState::Aborted)
            }),
            Property::<Self>::sometimes("commit agreement", |_, state| {
                state.rm_state.iter().all(|s| s == &RmState::Committed)
            }),
            Property::<Self>::always("consistent", |_, state| {
                !state.rm_state.iter().any(|s1| {
                    state
                        .rm_state
                        .iter()
                        .any(|s2| s1 == &RmState::Aborted && s2 == &RmState::Committed)
                })
            }),
        ]
    }
}

impl Representative for TwoPhaseState {
    fn representative(&self) -> Self {
        let plan = RewritePlan::from_values_to_sort(&self.rm_state);
        Self {
            rm_state: plan.reindex(&self.rm_state),
            tm_state: self.tm_state.clone(),
            tm_prepared: plan.reindex(&self.tm_prepared),
            msgs: self
                .msgs
                .iter()
                .map(|m| match m {
                    Message::Prepared { rm } => Message::Prepared {
                        rm: plan.rewrite(rm),
                    },
                    Message::Commit => Message::Commit,
                    Message::Abort => Message::Abort,
                })
                .collect(),
        }
    }
}

impl<T> Rewrite<T> for RmState {
    fn rewrite<S>(&self, _: &RewritePlan<T, S>) -> Self {
        self.clone()
    }
}

/// What one exhaustive check of the 2pc model came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwoPhaseRun {
    /// Distinct states visited.
    pub unique_states: usize,
    /// States generated, duplicates included.
    pub generated_states: usize,
    /// Wall-clock time from spawning the checker to joining its threads.
    pub elapsed: Duration,
}

/// Checks 2pc with `rms` resource managers depth-first on `threads` threads, with or without
/// symmetry reduction, and times it by joining the checker's threads (no polling).
pub fn check_dfs(rms: usize, threads: usize, symmetry: bool) -> TwoPhaseRun {
    let model = TwoPhaseSys { rms: 0..rms };
    let started = Instant::now();
    let mut builder = model.checker().threads(threads.max(1));
    if symmetry {
        builder = builder.symmetry();
    }
    let checker = builder.spawn_dfs().join();
    let elapsed = started.elapsed();
    TwoPhaseRun {
        unique_states: checker.unique_state_count(),
        generated_states: checker.state_count(),
        elapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_counts_match_stateright_s_example() {
        // The counts `examples/2pc.rs` pins (5 RMs: 8,832; 665 with symmetry), and the
        // anchors' N = 8 count (1,745,408), which the per-thread goal is measured against.
        assert_eq!(check_dfs(5, 1, false).unique_states, 8_832);
        assert_eq!(check_dfs(5, 1, true).unique_states, 665);
        assert_eq!(check_dfs(5, 2, false).unique_states, 8_832);
    }
}
