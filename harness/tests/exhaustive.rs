//! `harness exhaustive` at small bounds: every transition of the bounded model (reduced by the
//! checker's symmetry and partial-order reduction) replayed by the branching workers, followed
//! step for step, with stutter probes at every state; a seeded bug is caught, and a gap bug
//! only the probes can see is caught by them.

use std::collections::{HashSet, VecDeque};

use harness::exhaustive::{Coverage, Options, Outcome, TooManyStates, plan, run};
use model::state::{Member, Status};
use model::{Action, Config, State, TicketingModel, Variant};
use stateright::{Model, Representative};

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

fn options(config: Config) -> Options {
    Options {
        config,
        implementation: config.variant,
        max_paths: usize::MAX,
        coverage: Coverage::Transitions,
        threads: 2,
        stutter_probes: true,
        partial_order: true,
        max_states: 1_000_000,
    }
}

fn replayed(options: &Options) -> Outcome {
    options.config.validate().unwrap();
    let outcome = run(options).unwrap();
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    outcome
}

fn assert_follows(options: &Options) -> Outcome {
    let outcome = replayed(options);
    if let Some(divergence) = &outcome.divergence {
        panic!(
            "{}: {} steps diverged; the shortest:\n{}",
            options.config.variant,
            outcome.diverging_paths,
            divergence.render()
        );
    }
    assert!(!outcome.truncated);
    // Every transition and every state of the reduced graph, replayed.
    assert_eq!(Some(outcome.steps), outcome.transitions);
    assert_eq!(outcome.paths, outcome.unique_states);
    assert!(
        outcome.steps > 20,
        "{}: only {} transitions",
        options.config.variant,
        outcome.steps
    );
    outcome
}

#[test]
fn the_reference_follows_the_model_on_every_transition_with_one_member() {
    let outcome = assert_follows(&options(small(Variant::Reference, 1, 1, 1, 0)));
    assert!(
        outcome.probes > 0,
        "no delivery was ever not applicable yet"
    );
}

#[test]
fn the_reference_follows_the_model_on_every_transition_with_two_members() {
    assert_follows(&options(small(Variant::Reference, 2, 1, 0, 1)));
}

#[test]
fn without_the_partial_order_reduction_every_interleaving_is_replayed() {
    let config = small(Variant::Reference, 2, 1, 0, 0);
    let reduced = assert_follows(&options(config));
    let full = assert_follows(&Options {
        partial_order: false,
        ..options(config)
    });
    assert!(
        full.steps > reduced.steps,
        "{} vs {}",
        full.steps,
        reduced.steps
    );
}

#[test]
fn every_variant_follows_its_model_on_every_transition() {
    for variant in &Variant::ALL[1..] {
        // The course's racy, outbox-less design has many more interleavings per edit.
        let updates = u8::from(*variant != Variant::Course);
        assert_follows(&options(small(*variant, 2, updates, 0, 0)));
    }
}

#[test]
fn the_shortest_path_to_every_state_takes_only_the_tree_edges() {
    let outcome = replayed(&Options {
        coverage: Coverage::States,
        ..options(small(Variant::Reference, 2, 1, 0, 0))
    });
    assert!(outcome.divergence.is_none());
    assert_eq!(outcome.paths, outcome.unique_states);
    assert_eq!(outcome.steps, outcome.unique_states - 1);
}

#[test]
fn the_branching_replay_catches_a_seeded_bug() {
    // naive-version's listener applies a stale ticket:updated (a redelivery after v2) over
    // the newer replica: the reference model acknowledges it as a duplicate.
    let config = small(Variant::Reference, 2, 1, 0, 1);
    let outcome = replayed(&Options {
        implementation: Variant::NaiveVersion,
        stutter_probes: false,
        ..options(config)
    });
    let divergence = outcome.divergence.expect("the seeded bug is caught");
    assert!(outcome.diverging_paths > 0);
    assert!(
        divergence.render().contains("replica 0"),
        "{}",
        divergence.render()
    );
}

/// Two edits and no redelivery: the reference model never delivers a stale or early
/// `ticket:updated`, so naive-version's listener (which applies any version) differs from the
/// reference only on a delivery across a version gap, which the model leaves out.
fn gap_only() -> Options {
    let config = Config {
        members: 2,
        updates: 2,
        orders: 0,
        cancels: 0,
        crashes: 0,
        redeliveries: 0,
        max_deliver: Config::tolerated_deliveries(0, 0, 0),
        ..Config::new(Variant::Reference)
    };
    Options {
        implementation: Variant::NaiveVersion,
        ..options(config)
    }
}

#[test]
fn stutter_probes_catch_a_gap_bug_no_transition_shows() {
    let without = replayed(&Options {
        stutter_probes: false,
        ..gap_only()
    });
    assert!(without.divergence.is_none(), "only probes can see this bug");
    let with = replayed(&gap_only());
    let divergence = with.divergence.expect("a probe catches the gap bug");
    assert!(
        divergence.render().contains("stutter probe"),
        "{}",
        divergence.render()
    );
}

/// The probes of `state`, counted from the model alone: every pending message the model does
/// not let an idle member of its group take, once per idle member.
fn probes_at(model: &TicketingModel, state: &State) -> usize {
    let members = usize::from(model.config.members);
    let mut probes = 0;
    for (index, message) in state.messages.as_slice().iter().enumerate() {
        if message.status != Status::Pending {
            continue;
        }
        let group = message.event().group();
        for member in 0..members {
            let deliver = Action::Deliver {
                group,
                member: member as u8,
                message: index as u8,
            };
            if state.group_members(group)[member] == Member::Idle
                && model.step(state, deliver).is_none()
            {
                probes += 1;
            }
        }
    }
    probes
}

#[test]
fn stutter_probes_are_made_at_every_state_to_every_idle_member() {
    let options = options(small(Variant::Reference, 2, 2, 0, 0));
    let outcome = assert_follows(&options);
    // The states the replay stands in: the tree's concrete states, found again here.
    let listing = TicketingModel::new(options.config).with_partial_order(true);
    let model = TicketingModel::new(options.config);
    let plan = plan::explore(&listing, 1_000_000).unwrap();
    let mut expected = 0;
    let mut stack = vec![(0u32, listing.init_states().remove(0))];
    while let Some((node, state)) = stack.pop() {
        expected += probes_at(&model, &state);
        for ((_, next), child) in plan::successors(&listing, &state)
            .into_iter()
            .zip(plan.edges(node))
        {
            if *child != plan::NOT_TREE {
                stack.push((*child, next));
            }
        }
    }
    assert!(expected > 0);
    assert_eq!(outcome.probes, expected);
}

#[test]
fn the_plan_holds_every_class_of_states_and_every_transition() {
    let model = TicketingModel::new(small(Variant::Reference, 1, 1, 1, 1)).with_partial_order(true);
    let plan = plan::explore(&model, 1_000_000).unwrap();
    // Classes and transitions counted independently, by whole representatives.
    let initial = model.init_states().remove(0);
    let mut classes = HashSet::from([initial.representative()]);
    let mut frontier = VecDeque::from([initial]);
    let mut transitions = 0;
    while let Some(state) = frontier.pop_front() {
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        for action in actions {
            let Some(next) = model.next_state(&state, action) else {
                continue;
            };
            transitions += 1;
            if classes.insert(next.representative()) {
                frontier.push_back(next);
            }
        }
    }
    assert_eq!(plan.nodes(), classes.len());
    assert_eq!(plan.transitions(), transitions);
}

#[test]
fn an_exploration_larger_than_its_bound_is_refused_not_run() {
    let model = TicketingModel::new(Config::new(Variant::Reference));
    assert_eq!(
        plan::explore(&model, 1_000).err(),
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
            "--no-check-rate",
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
