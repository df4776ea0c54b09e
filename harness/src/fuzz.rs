//! `harness fuzz`: proptest-generated action sequences, replayed on the model and the
//! implementation together.
//!
//! A case is a list of choices; at each step the next choice picks one of the actions the
//! model enables (clients, adversary and system alike), modulo their number, and the run
//! ends early when nothing is enabled. A divergence fails the case, and proptest shrinks the
//! choices to a minimal diverging sequence; every shrunk sequence is still a path of the
//! model, because choices pick among enabled actions. The seed fixes every case: the same
//! seed and options replay the same cases.
//!
//! The invariant: a run reports success only if every case followed the model step for step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::any;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, RngSeed, TestCaseError, TestError, TestRunner,
};

use model::trace::Trace;
use model::{Action, Config, TicketingModel};

use crate::backend::Backend;
use crate::replay::{Replay, replay_actions_on};
use crate::report::Divergence;

/// How to fuzz.
#[derive(Clone, Debug)]
pub struct Options {
    /// The bounds (and variant) of the model driving the cases.
    pub config: Config,
    /// Cases to run.
    pub cases: u32,
    /// The seed of proptest's generator.
    pub seed: u64,
    /// Most steps per case.
    pub max_steps: usize,
    /// End every case with stutter probes ([`Replay::probe_stutters`]).
    pub stutter_probes: bool,
    /// Where every case's implementation keeps its records (a fresh world, so fresh stores,
    /// per case).
    pub backend: Backend,
}

/// A case that diverged, shrunk.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The minimal choices proptest found (cut after the diverging step).
    pub choices: Vec<u16>,
    /// The steps of the path those choices take.
    pub choices_path: usize,
    /// The divergence of the path shrunk further ([`shrink_path`]).
    pub divergence: Divergence,
    /// The path to the divergence as a model trace (for `harness replay`).
    pub trace: Option<Trace>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Cases run (shrinking included).
    pub cases: usize,
    /// Steps replayed.
    pub steps: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// The minimal failing case, if one failed.
    pub failure: Option<Failure>,
    /// Why proptest gave up without a failing case, if it did.
    pub aborted: Option<String>,
}

/// Replays the actions `choices` pick, on the model and a fresh implementation on `backend`,
/// then (with `probes`) the stutter probes. Returns the steps taken.
pub fn run_choices(
    config: Config,
    choices: &[u16],
    probes: bool,
    backend: &Backend,
) -> Result<usize, Divergence> {
    let mut replay = Replay::on(config, backend)?;
    for choice in choices {
        let enabled = replay.enabled();
        if enabled.is_empty() {
            break;
        }
        let action = enabled[usize::from(*choice) % enabled.len()];
        replay.step(action)?;
    }
    if probes {
        replay.probe_stutters()?;
    }
    Ok(replay.actions().len())
}

/// Runs `options.cases` cases from `options.seed`.
pub fn run(options: &Options) -> Outcome {
    let started = Instant::now();
    let runner_config = RunnerConfig {
        cases: options.cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(options.seed),
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new(runner_config);
    let cases = AtomicUsize::new(0);
    let steps = AtomicUsize::new(0);
    let (config, probes, backend) = (options.config, options.stutter_probes, &options.backend);
    let strategy = vec(any::<u16>(), 1..=options.max_steps.max(1));
    let result = runner.run(&strategy, |choices| {
        cases.fetch_add(1, Ordering::Relaxed);
        match run_choices(config, &choices, probes, backend) {
            Ok(taken) => {
                steps.fetch_add(taken, Ordering::Relaxed);
                Ok(())
            }
            Err(divergence) => {
                steps.fetch_add(divergence.step(), Ordering::Relaxed);
                Err(TestCaseError::fail(format!(
                    "diverges at step {}",
                    divergence.step()
                )))
            }
        }
    });
    let (failure, aborted) = match result {
        Ok(()) => (None, None),
        Err(TestError::Fail(_, choices)) => (failure(config, choices, probes, backend), None),
        Err(TestError::Abort(reason)) => (None, Some(reason.to_string())),
    };
    Outcome {
        cases: cases.into_inner(),
        steps: steps.into_inner(),
        elapsed: started.elapsed(),
        failure,
        aborted,
    }
}

fn failure(
    config: Config,
    mut choices: Vec<u16>,
    probes: bool,
    backend: &Backend,
) -> Option<Failure> {
    let divergence = run_choices(config, &choices, probes, backend).err()?;
    // Choices after the diverging step were never used.
    let choices_path = divergence.model_path().len();
    choices.truncate(choices_path);
    let divergence = shrink_path(config, divergence, backend);
    let model = TicketingModel::new(config);
    let trace = Trace::from_actions(&model, divergence.model_path()).ok();
    Some(Failure {
        choices,
        choices_path,
        divergence,
        trace,
    })
}

/// The divergence of `path` (steps of the model) followed, with `probes`, by the stutter
/// probes; `None` if it is not a path of the model or does not diverge.
fn diverges(
    config: Config,
    path: &[Action],
    probes: bool,
    backend: &Backend,
) -> Option<Divergence> {
    let model = TicketingModel::new(config);
    Trace::from_actions(&model, path).ok()?;
    let mut replay = match replay_actions_on(config, path, backend) {
        Ok(replay) => replay,
        Err(divergence) => return Some(divergence),
    };
    if probes {
        replay.probe_stutters().err()
    } else {
        None
    }
}

/// Shrinks a diverging path of the model further than proptest's shrinking of choices can
/// (removing a choice changes every action after it; removing an action keeps them): each
/// step whose removal leaves a path the model enables that still diverges (by a step, or by
/// a stutter probe at its end, as the original did) is removed, until none is.
pub fn shrink_path(config: Config, divergence: Divergence, backend: &Backend) -> Divergence {
    let probes = divergence.probes > 0;
    let mut best = divergence;
    let mut index = 0;
    while index < best.model_path().len() {
        let mut candidate = best.model_path().to_vec();
        candidate.remove(index);
        match diverges(config, &candidate, probes, backend) {
            Some(found) => best = found,
            None => index += 1,
        }
    }
    best
}
