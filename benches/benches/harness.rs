//! Conformance throughput: how fast `harness exhaustive` replays the model on the
//! implementation, next to how fast `check` explores the same bound.
//!
//! - `harness/exhaustive-replay`: the replay half of `harness exhaustive` on the reference at
//!   a fixed bound (one ticket updated once, ordered and cancelled once, two members per
//!   group, no crash, no spurious expiry): every transition-covering walk replayed on a fresh
//!   implementation with stutter probes at its end, on 1 and 2 threads. Timed by the run's own
//!   replay clock (the model's exploration, a few milliseconds, is outside it), counted in
//!   paths.
//! - `harness/check`: `model::run::check` of the same bound, breadth-first without symmetry
//!   (the exploration the harness replays), counted in unique states.
//!
//! The two are different units on purpose: the table sets a replayed path (about sixteen
//! implementation steps, each a fresh service call and its comparison) beside a model state
//! (one successor computed and hashed) to show what conformance costs next to proof.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use harness::exhaustive::{self, Coverage, Options};
use model::config::{Config, Variant};
use model::run::{RunOptions, Strategy, check};

/// The fixed bound: the harness's defaults without crashes or spurious expiries, so one run
/// replays a few thousand walks in about a second.
fn bound() -> Config {
    let mut config = exhaustive::default_config(Variant::Reference);
    config.crashes = 0;
    config.redeliveries = 0;
    config.max_deliver = Config::tolerated_deliveries(0, 0, 0);
    config
}

fn replay_options(threads: usize) -> Options {
    Options {
        config: bound(),
        max_paths: usize::MAX,
        coverage: Coverage::Transitions,
        threads,
        stutter_probes: true,
        max_states: exhaustive::MAX_STATES,
    }
}

/// One exhaustive replay; panics unless every path followed the model.
fn replay(threads: usize) -> exhaustive::Outcome {
    let outcome = match exhaustive::run(&replay_options(threads)) {
        Ok(outcome) => outcome,
        Err(too_many) => panic!("the bench's bound outgrew the exploration: {too_many}"),
    };
    assert_eq!(
        outcome.diverging_paths, 0,
        "the implementation diverged from the model: {:?}",
        outcome.divergence
    );
    outcome
}

fn check_options(threads: usize) -> RunOptions {
    RunOptions {
        strategy: Strategy::Bfs,
        threads,
        symmetry: false,
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
            "exhaustive replay, {threads} thread(s): {} states, {} walks, {} steps",
            first.unique_states, first.paths, first.steps
        );
        group.throughput(Throughput::Elements(first.paths as u64));
        group.bench_with_input(
            BenchmarkId::new("exhaustive-replay", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|runs| {
                    common::total_of(runs, || {
                        let outcome = replay(n);
                        assert_eq!(outcome.paths, first.paths, "the walks moved between runs");
                        outcome.replaying
                    })
                });
            },
        );

        let checked = check(bound(), &check_options(threads));
        assert!(checked.matches_spec(), "the reference no longer checks");
        assert_eq!(
            checked.unique_states, first.unique_states,
            "check explored another space than the harness replays"
        );
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
criterion_main!(benches);
