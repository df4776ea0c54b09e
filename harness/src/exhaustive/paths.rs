//! `--coverage all-paths`: every maximal path of the model (no reduction: histories, not
//! states), each replayed on a fresh implementation and ended with stutter probes, on
//! `--threads` threads. A path per replay is the point here (two paths into one state may
//! leave the implementation in different inner states the abstraction does not show), so
//! this mode keeps the restart-per-path replay; it is for small bounds, where the paths are
//! few enough to enumerate.
//!
//! The invariant: a path counts as replayed only if every step (and its final probes)
//! matched; the shortest divergence found is kept.

use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use stateright::Model;

use model::{Action, Config, State, TicketingModel, Variant};

use crate::replay::replay_actions_against;
use crate::report::Divergence;

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

/// What replaying a set of paths found.
pub struct Replayed {
    /// Steps replayed.
    pub steps: usize,
    /// Stutter probes made at the paths' ends.
    pub probes: usize,
    /// Paths that diverged.
    pub diverging_paths: usize,
    /// The shortest divergence.
    pub shortest: Option<Divergence>,
}

/// Replays `paths` of `config`'s model on `threads` threads, each path on a fresh
/// implementation of `implementation` (ended with probes if `probes`), keeping the shortest
/// divergence.
pub fn replay_all(
    (config, implementation): (Config, Variant),
    threads: usize,
    probes: bool,
    paths: &[Vec<Action>],
) -> Replayed {
    let next = AtomicUsize::new(0);
    let steps = AtomicUsize::new(0);
    let probed = AtomicUsize::new(0);
    let diverging = AtomicUsize::new(0);
    let shortest: Mutex<Option<Divergence>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                while let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let replayed = replay_actions_against(config, implementation, path).and_then(
                        |mut replay| {
                            if probes {
                                probed.fetch_add(replay.probe_stutters()?, Ordering::Relaxed);
                            }
                            Ok(replay)
                        },
                    );
                    match replayed {
                        Ok(replay) => {
                            steps.fetch_add(replay.actions().len(), Ordering::Relaxed);
                        }
                        Err(divergence) => {
                            steps.fetch_add(divergence.step(), Ordering::Relaxed);
                            diverging.fetch_add(1, Ordering::Relaxed);
                            let mut shortest = crate::lock::locked(&shortest);
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
        probes: probed.into_inner(),
        diverging_paths: diverging.into_inner(),
        shortest: shortest
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    }
}
