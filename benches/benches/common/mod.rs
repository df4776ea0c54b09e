//! What every benchmark target shares: criterion's settings and the runtime.
//!
//! Throughput benchmarks use `iter_custom` with flat sampling: criterion picks how many
//! operations a sample runs, the benchmark runs them (split over threads, connections or
//! members) and returns the wall-clock time, so criterion's "elements/s" is operations/s.
//! Setup and teardown (fresh stores, streams, databases, consumers) stay outside that time.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, SamplingMode, measurement::WallTime};
use model::config::Config;
use model::run::{Outcome, RunOptions, check};

/// Flat sampling, `samples` samples, about `measure` of measuring after `warm_up`.
pub fn configure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    samples: usize,
    warm_up: Duration,
    measure: Duration,
) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(samples.max(10))
        .warm_up_time(warm_up)
        .measurement_time(measure);
}

/// A multi-threaded tokio runtime with one worker per core (two on the reference machine),
/// as `ticketing serve` runs.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot build the tokio runtime: {error}"),
    }
}

/// `runs` whole runs back to back, each returning its own time; their total, for `iter_custom`
/// where one iteration is a whole check or replay.
pub fn total_of(runs: u64, mut run: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| run()).sum()
}

/// One `model::run::check`, timed around the call, as a user sees it.
pub fn timed_check(config: Config, options: &RunOptions) -> (Outcome, Duration) {
    let started = Instant::now();
    let outcome = check(config, options);
    (outcome, started.elapsed())
}
