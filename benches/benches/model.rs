//! Model-checking throughput: unique states/s of an exhaustive check.
//!
//! - `model/reference`: `model::run::check` on `Config::new(Variant::Reference)` (the default
//!   bounds), depth-first with symmetry reduction, on 1 and 2 threads. Timed around the call,
//!   as a user sees it.
//! - `model/reference-joined`: a diagnostic, not a goal: the same exploration built directly
//!   on stateright's checker and timed by joining its threads, as the yardstick is timed. The
//!   gap to `model/reference` is what `run::check`'s own wrapping costs (its progress loop
//!   polls the checker every 100 ms).
//! - `model/2pc-7`: the yardstick, stateright's two-phase-commit example with 7 resource
//!   managers, depth-first on the same thread counts, without symmetry as the anchors measured
//!   it (`check`), and `model/2pc-7-symmetry` with it (`check-sym`). Timed by joining the
//!   checker's threads.
//!
//! One iteration is one whole check; its throughput is its unique states, so criterion's
//! elements/s is unique states/s (divide by threads for the per-thread goal).

mod common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stateright::{Checker, Model};

use benches::two_phase;
use model::TicketingModel;
use model::config::{Config, Variant};
use model::run::{PartialOrder, RunOptions, Strategy};

/// The yardstick's resource managers (the figure).
const RESOURCE_MANAGERS: usize = 7;

fn options(threads: usize) -> RunOptions {
    RunOptions {
        strategy: Strategy::Dfs,
        threads,
        symmetry: true,
        // The rate per state, on the same space as the joined checker's: the partial-order
        // reduction changes which states there are, not what each costs.
        partial_order: PartialOrder::Off,
        progress: false,
        ..RunOptions::default()
    }
}

/// One check of the reference; panics if its verdicts are not SPEC.md's.
fn check_reference(threads: usize) -> (usize, Duration) {
    let (outcome, elapsed) =
        common::timed_check(Config::new(Variant::Reference), &options(threads));
    assert!(outcome.matches_spec(), "the reference no longer checks");
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!(
            "reference, {threads} thread(s): {} unique states, {} generated, {:?}",
            outcome.unique_states, outcome.generated_states, outcome.elapsed
        );
    }
    (outcome.unique_states, elapsed)
}

/// The reference's exploration on stateright's checker directly, timed by joining threads.
fn check_reference_joined(threads: usize) -> (usize, Duration) {
    // The properties as `run::check` checks a proof: as one conjunction.
    let model =
        TicketingModel::new(Config::new(Variant::Reference)).with_conjoined_properties(true);
    let started = Instant::now();
    let checker = model
        .checker()
        .threads(threads)
        .symmetry()
        .spawn_dfs()
        .join();
    (checker.unique_state_count(), started.elapsed())
}

fn model_checking(c: &mut Criterion) {
    let mut group = c.benchmark_group("model");
    common::configure(
        &mut group,
        10,
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    for threads in [1, 2] {
        let (states, _) = check_reference(threads);
        group.throughput(Throughput::Elements(states as u64));
        group.bench_with_input(BenchmarkId::new("reference", threads), &threads, |b, &n| {
            b.iter_custom(|checks| {
                common::total_of(checks, || {
                    let (unique, elapsed) = check_reference(n);
                    assert_eq!(unique, states, "the state count moved between runs");
                    elapsed
                })
            });
        });
        group.bench_with_input(
            BenchmarkId::new("reference-joined", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|checks| {
                    common::total_of(checks, || {
                        let (unique, elapsed) = check_reference_joined(n);
                        assert_eq!(unique, states, "another exploration than check's");
                        elapsed
                    })
                });
            },
        );
        for (name, symmetry) in [("2pc-7", false), ("2pc-7-symmetry", true)] {
            let run = two_phase::check_dfs(RESOURCE_MANAGERS, threads, symmetry);
            eprintln!(
                "{name}, {threads} thread(s): {} unique states, {} generated",
                run.unique_states, run.generated_states
            );
            let states = run.unique_states;
            group.throughput(Throughput::Elements(states as u64));
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &n| {
                b.iter_custom(|checks| {
                    common::total_of(checks, || {
                        two_phase::check_dfs(RESOURCE_MANAGERS, n, symmetry).elapsed
                    })
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, model_checking);
criterion_main!(benches);
