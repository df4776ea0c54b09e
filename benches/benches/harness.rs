//! Conformance throughput: how fast `harness exhaustive` replays the model on the
//! implementation, next to how fast `check` explores the same bound.
//!
//! - `harness/exhaustive-replay`: the replay half of `harness exhaustive` on the reference at
//!   a fixed bound (one ticket updated once, ordered and cancelled once, two members per
//!   group, no crash, no spurious expiry): every transition of the reduced graph replayed by
//!   worker threads that branch on copies of the world, with stutter probes at every state, on
//!   1 and 2 workers. Timed by the run's own replay
//!   clock (the model's exploration is outside it), counted in transitions.
//! - `harness/check`: `model::run::check` of the same bound with the same reductions
//!   (depth-first, symmetry, partial order), counted in unique states.
//!
//! The two are different units on purpose: the table sets a replayed transition (a copy of
//! the world, one implementation step and its comparison) beside a model state (its successors computed and
//! hashed) to show what conformance costs next to proof.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

use harness::exhaustive::{self, Coverage, Options};
use model::config::{Config, Variant};
use model::run::{RunOptions, Strategy, check};

/// The fixed bound: one edit and one order, cancelled, without crashes or spurious expiries,
/// so one run replays a few thousand transitions in well under a second.
fn bound() -> Config {
    Config {
        updates: 1,
        orders: 1,
        crashes: 0,
        redeliveries: 0,
        max_deliver: Config::tolerated_deliveries(0, 0, 0),
        ..exhaustive::default_config(Variant::Reference)
    }
}

fn replay_options(threads: usize) -> Options {
    Options {
        config: bound(),
        implementation: Variant::Reference,
        max_paths: usize::MAX,
        coverage: Coverage::Transitions,
        threads,
        stutter_probes: true,
        partial_order: true,
        max_states: exhaustive::MAX_STATES,
    }
}

/// One exhaustive replay; panics unless every path followed the model.
fn replay(threads: usize) -> exhaustive::Outcome {
    let outcome = match exhaustive::run(&replay_options(threads)) {
        Ok(outcome) => outcome,
        Err(error) => panic!("the bench's replay did not run: {error}"),
    };
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(
        outcome.diverging_paths, 0,
        "the implementation diverged from the model: {:?}",
        outcome.divergence
    );
    outcome
}

fn check_options(threads: usize) -> RunOptions {
    RunOptions {
        strategy: Strategy::Dfs,
        threads,
        progress: false,
        ..RunOptions::default()
    }
}

fn conformance(c: &mut Criterion) {
    let mut group = c.benchmark_group("harness");
    common::configure(
        &mut group,
        10,
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    for threads in [1, 2] {
        let first = replay(threads);
        eprintln!(
            "exhaustive replay, {threads} worker(s): {} states, {} transitions, {} probes",
            first.unique_states, first.steps, first.probes
        );
        group.throughput(Throughput::Elements(first.steps as u64));
        group.bench_with_input(
            BenchmarkId::new("exhaustive-replay", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|runs| {
                    common::total_of(runs, || {
                        let outcome = replay(n);
                        assert_eq!(outcome.steps, first.steps, "the plan moved between runs");
                        outcome.replaying
                    })
                });
            },
        );

        let checked = check(bound(), &check_options(threads));
        assert!(checked.matches_spec(), "the reference no longer checks");
        group.throughput(Throughput::Elements(checked.unique_states as u64));
        group.bench_with_input(BenchmarkId::new("check", threads), &threads, |b, &n| {
            b.iter_custom(|runs| {
                common::total_of(runs, || {
                    let (outcome, elapsed) = common::timed_check(bound(), &check_options(n));
                    assert_eq!(outcome.unique_states, checked.unique_states);
                    elapsed
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, conformance);
criterion::criterion_main!(benches);
