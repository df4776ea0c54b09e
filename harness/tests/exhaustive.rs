//! `harness exhaustive` at small bounds: every transition of the bounded model, replayed on
//! fresh implementations, followed step for step; each path ends with stutter probes.

use harness::exhaustive::{
    Coverage, Options, TooManyStates, run, state_covering_paths, transition_covering_walks,
};
use model::{Config, TicketingModel, Variant};

/// One ticket, ordered once; `members` per group, `updates` edits, `cancels` cancellations,
/// one crash and `redeliveries` spurious expiries.
fn small(variant: Variant, members: u8, updates: u8, cancels: u8, redeliveries: u8) -> Config {
    Config {
        variant,
        tickets: 1,
        members,
        updates,
        orders: 1,
        cancels,
        crashes: 1,
        redeliveries,
        duplicates: 0,
        max_deliver: Config::tolerated_deliveries(1, redeliveries, 0),
    }
}

fn assert_follows(config: Config) -> harness::exhaustive::Outcome {
    config.validate().unwrap();
    let outcome = run(&Options {
        config,
        max_paths: usize::MAX,
        coverage: Coverage::Transitions,
        threads: 2,
        stutter_probes: true,
        max_states: 100_000,
    })
    .unwrap();
    if let Some(divergence) = &outcome.divergence {
        panic!(
            "{}: {} of {} paths diverged; the shortest:\n{}",
            config.variant,
            outcome.diverging_paths,
            outcome.paths,
            divergence.render()
        );
    }
    assert!(!outcome.truncated);
    assert_eq!(outcome.paths, outcome.available_paths);
    assert!(
        outcome.paths > 20,
        "{}: only {} paths",
        config.variant,
        outcome.paths
    );
    outcome
}

#[test]
fn the_reference_follows_the_model_on_every_transition_with_one_member() {
    let outcome = assert_follows(small(Variant::Reference, 1, 1, 1, 0));
    assert!(
        outcome.probes > 0,
        "no delivery was ever not applicable yet"
    );
}

#[test]
fn the_reference_follows_the_model_on_every_transition_with_two_members() {
    assert_follows(small(Variant::Reference, 2, 1, 0, 0));
}

#[test]
fn every_variant_follows_its_model_on_every_transition() {
    for variant in &Variant::ALL[1..] {
        // The course's racy, outbox-less design has many more interleavings per edit.
        let updates = u8::from(*variant != Variant::Course);
        assert_follows(small(*variant, 2, updates, 0, 0));
    }
}

#[test]
fn walks_take_every_transition_and_paths_reach_every_state() {
    let model = TicketingModel::new(small(Variant::Reference, 1, 1, 1, 1));
    let (walks, states, transitions) = transition_covering_walks(&model, 100_000).unwrap();
    let (paths, same_states) = state_covering_paths(&model, 100_000).unwrap();
    assert_eq!(states, same_states);
    // Replaying the walks in the model itself takes each transition at least once.
    let mut taken = std::collections::HashSet::new();
    let mut reached = std::collections::HashSet::new();
    for walk in &walks {
        let mut state = stateright::Model::init_states(&model).remove(0);
        reached.insert(state.clone());
        for action in walk {
            let next = model
                .step(&state, *action)
                .expect("a walk only takes enabled actions");
            taken.insert((state.clone(), *action));
            reached.insert(next.clone());
            state = next;
        }
    }
    assert_eq!(taken.len(), transitions);
    assert_eq!(reached.len(), states);
    let mut reached_by_paths = std::collections::HashSet::new();
    for path in &paths {
        let mut state = stateright::Model::init_states(&model).remove(0);
        reached_by_paths.insert(state.clone());
        for action in path {
            state = model.step(&state, *action).unwrap();
            reached_by_paths.insert(state.clone());
        }
    }
    assert_eq!(reached_by_paths.len(), states);
    assert!(walks.len() >= paths.len());
}

#[test]
fn an_exploration_larger_than_its_bound_is_refused_not_run() {
    let model = TicketingModel::new(Config::new(Variant::Reference));
    assert_eq!(
        transition_covering_walks(&model, 1_000).err(),
        Some(TooManyStates { limit: 1_000 })
    );
}

/// Runs the `harness exhaustive` binary on the smallest bounds with `args`.
fn exhaustive_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "exhaustive",
            "--updates",
            "0",
            "--orders",
            "1",
            "--cancels",
            "0",
            "--crashes",
            "0",
            "--redeliveries",
            "0",
            "--threads",
            "1",
        ])
        .args(args)
        .output()
        .expect("the harness binary runs")
}

#[test]
fn a_run_cut_short_by_max_paths_fails_unless_partial_is_allowed() {
    let complete = exhaustive_cli(&[]);
    assert!(
        complete.status.success(),
        "the complete run passes: {}",
        String::from_utf8_lossy(&complete.stdout)
    );

    let cut = exhaustive_cli(&["--max-paths", "1"]);
    let said = String::from_utf8_lossy(&cut.stdout);
    assert!(!cut.status.success(), "a cut-short run must fail: {said}");
    assert!(
        said.contains("--allow-partial"),
        "it says how to accept it: {said}"
    );

    let allowed = exhaustive_cli(&["--max-paths", "1", "--allow-partial"]);
    assert!(
        allowed.status.success(),
        "--allow-partial accepts a cut-short run: {}",
        String::from_utf8_lossy(&allowed.stdout)
    );
}
