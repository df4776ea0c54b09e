//! The partial-order reduction (`system::ample`, docs/model.md "Partial-order reduction") is
//! sound, checked two ways:
//!
//! - its conditions, on every reachable state of small configurations of every variant: where
//!   an action is ample, it is an enabled system action; every other enabled action commutes
//!   with it (both orders are possible and reach the same state: C1's independence); the
//!   action stays ample after any other action (so C1 holds along every path that postpones
//!   it); and it never repairs a violated property (C2);
//! - its effect: every variant reaches the same verdicts with and without it (exhaustive,
//!   depth-first, symmetry on in both), and breadth-first search finds counterexamples of the
//!   same depth with and without it, at several bounds including two tickets.

mod support;

use model::config::{Config, Variant};
use model::properties::{Prop, must_violate};
use model::run::{Outcome, PartialOrder, RunOptions, Strategy, check};
use model::state::Group;
use model::system::TicketingModel;
use model::{Action, State};
use stateright::Model;

/// Checks C1 and C2 at `state` for `ample`; returns how many other actions it was checked
/// against.
fn check_conditions(model: &TicketingModel, state: &State, ample: Action) -> usize {
    let mut enabled = Vec::new();
    model.actions(state, &mut enabled);
    assert!(
        enabled.contains(&ample),
        "{ample:?} is ample but not enabled"
    );
    assert_eq!(ample.actor(), model::action::Actor::System, "{ample:?}");
    let after_ample = model.step(state, ample).expect("enabled");
    for prop in Prop::ALL {
        if !prop.holds(model, state) {
            assert!(
                !prop.holds(model, &after_ample),
                "{ample:?} repairs {} in {state:?}",
                prop.name()
            );
        }
    }
    let others: Vec<Action> = enabled.into_iter().filter(|a| *a != ample).collect();
    for other in &others {
        let after_other = model.step(state, *other).expect("enabled");
        assert!(
            model.is_ample(&after_other, ample),
            "{ample:?} is no longer ample after {other:?} in {state:?}"
        );
        let other_then_ample = model.step(&after_other, ample);
        let ample_then_other = model.step(&after_ample, *other);
        assert!(
            other_then_ample.is_some() && other_then_ample == ample_then_other,
            "{ample:?} and {other:?} do not commute in {state:?}"
        );
    }
    others.len()
}

#[test]
fn ample_actions_are_independent_persistent_and_never_repair_a_violation() {
    for variant in Variant::ALL {
        // One member per group and every budget at one (`support::small`), and a second
        // member (without cancellations and publisher retries, to fit) so that acks race
        // other members' work.
        for members in [1, 2] {
            let config = if members == 1 {
                support::small(variant)
            } else {
                Config {
                    members,
                    cancels: 0,
                    duplicates: 0,
                    max_deliver: Config::tolerated_deliveries(1, 1, 0),
                    ..support::small(variant)
                }
            };
            let (acks, saves) = check_every_ample_action(config);
            if variant.acks_after_save() {
                assert!(
                    acks > 0,
                    "{variant} with {members} members: the ack's reduction never applies"
                );
            }
            if replica_saves_reduce(variant) {
                assert!(
                    saves > 0,
                    "{variant} with {members} members: the replica save's reduction never applies"
                );
            }
        }
    }
}

/// The designs where a replica's save can be ample: `ticket:updated` applied only at
/// `version - 1`, duplicates acknowledged, and acknowledgement after the save.
fn replica_saves_reduce(variant: Variant) -> bool {
    !matches!(
        variant,
        Variant::NaiveVersion | Variant::CourseListener | Variant::Course | Variant::AckBeforeSave
    )
}

/// Checks C1 and C2 for every candidate (every member's ack, every orders-service member's
/// save) wherever it is ample, on every reachable state of `config`; returns in how many
/// states an ack and a save were ample.
fn check_every_ample_action(config: Config) -> (usize, usize) {
    let model = TicketingModel::new(config);
    let graph = support::explore(&model, 3_000_000);
    let (mut acks, mut saves) = (0, 0);
    for state in &graph.states {
        for member in 0..config.members {
            for group in Group::ALL {
                let ack = Action::Ack { group, member };
                if model.is_ample(state, ack) {
                    check_conditions(&model, state, ack);
                    acks += 1;
                }
            }
            let save = Action::Save {
                group: Group::Orders,
                member,
            };
            if model.is_ample(state, save) {
                check_conditions(&model, state, save);
                saves += 1;
            }
            let tickets_save = Action::Save {
                group: Group::Tickets,
                member,
            };
            assert!(!model.is_ample(state, tickets_save));
        }
        if let Some(ample) = model.ample_action(state) {
            assert!(model.is_ample(state, ample));
        }
    }
    (acks, saves)
}

#[test]
fn ample_actions_meet_the_conditions_with_two_tickets() {
    for variant in Variant::ALL {
        // Two tickets whose work interleaves: one member per group, one update and one order
        // between them, one crash and one late ack.
        let config = Config {
            tickets: 2,
            members: 1,
            updates: 1,
            orders: 1,
            cancels: 0,
            duplicates: 0,
            ..support::small(variant)
        };
        let (acks, saves) = check_every_ample_action(config);
        if variant.acks_after_save() {
            assert!(acks > 0, "{variant}: the ack's reduction never applies");
        }
        if replica_saves_reduce(variant) {
            assert!(
                saves > 0,
                "{variant}: the replica save's reduction never applies"
            );
        }
    }
}

fn run(config: Config, strategy: Strategy, partial_order: PartialOrder) -> Outcome {
    let options = RunOptions {
        strategy,
        threads: 1,
        symmetry: true,
        partial_order,
        exhaustive: strategy == Strategy::Dfs,
        ..RunOptions::default()
    };
    check(config, &options)
}

/// Bounds the comparisons run at: the small ones, the defaults, and two tickets (with fewer
/// client operations, so every variant's exhaustive space fits a test).
fn bounds(variant: Variant) -> Vec<(&'static str, Config)> {
    let two_tickets = Config {
        tickets: 2,
        updates: 1,
        orders: 1,
        cancels: 0,
        duplicates: 0,
        ..Config::new(variant)
    };
    vec![
        ("small", support::small(variant)),
        (
            "small, two members",
            Config {
                members: 2,
                duplicates: 0,
                ..support::small(variant)
            },
        ),
        ("two tickets", two_tickets),
    ]
}

#[test]
fn every_variant_reaches_the_same_verdicts_with_and_without_the_reduction() {
    for variant in Variant::ALL {
        for (name, config) in bounds(variant) {
            let reduced = run(config, Strategy::Dfs, PartialOrder::Always);
            let full = run(config, Strategy::Dfs, PartialOrder::Off);
            assert_eq!(
                reduced.violated(),
                full.violated(),
                "{variant} at {name} bounds"
            );
            assert!(
                reduced.unique_states <= full.unique_states,
                "{variant} at {name} bounds: {} states reduced, {} without",
                reduced.unique_states,
                full.unique_states
            );
        }
    }
}

/// For each group of properties SPEC.md requires the variant to violate, the depth of the
/// shortest counterexample found (breadth-first on one thread: the shortest there is). The
/// search stops once each group has one, so within a group only the shortest is compared.
fn depths(outcome: &Outcome) -> Vec<Option<usize>> {
    must_violate(outcome.config.variant)
        .groups()
        .iter()
        .map(|group| {
            outcome
                .verdicts
                .iter()
                .filter(|v| group.contains(&v.prop))
                .filter_map(|v| v.depth)
                .min()
        })
        .collect()
}

#[test]
fn breadth_first_counterexamples_are_as_short_with_the_reduction() {
    let mut differ = Vec::new();
    for variant in &Variant::ALL[1..] {
        // Bounds where SPEC.md's counterexamples exist, so the search stops at them.
        let default = Config::new(*variant);
        let two_tickets = Config {
            tickets: 2,
            ..default
        };
        for (name, config) in [("default", default), ("two tickets", two_tickets)] {
            let reduced = run(config, Strategy::Bfs, PartialOrder::Always);
            let full = run(config, Strategy::Bfs, PartialOrder::Off);
            assert!(reduced.matches_spec(), "{variant} at {name} bounds");
            assert!(full.matches_spec(), "{variant} at {name} bounds");
            if depths(&reduced) != depths(&full) {
                differ.push(format!(
                    "{variant} at {name} bounds: {:?} with the reduction, {:?} without",
                    depths(&reduced),
                    depths(&full)
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// `model check` at small bounds with the given extra arguments: its exit status and summary
/// line.
fn check_command(extra: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_model"))
        .args([
            "check",
            "--threads",
            "1",
            "--members",
            "1",
            "--updates",
            "1",
        ])
        .args(extra)
        .output()
        .expect("model check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"))
        .to_string();
    (output.status.success(), summary)
}

/// The unique states a summary line reports.
fn summary_states(summary: &str) -> usize {
    summary["summary: ".len()..]
        .split(' ')
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no state count in {summary:?}"))
}

#[test]
fn no_reduction_turns_every_reduction_off_and_proves_the_same() {
    let (reduced_ok, reduced) = check_command(&[]);
    let (full_ok, full) = check_command(&["--no-reduction"]);
    let (symmetry_ok, symmetry) = check_command(&["--no-partial-order"]);
    assert!(
        reduced_ok && full_ok && symmetry_ok,
        "{reduced}\n{full}\n{symmetry}"
    );
    assert!(
        reduced.contains("reductions: symmetry, partial order;"),
        "{reduced}"
    );
    assert!(full.contains("reductions: none;"), "{full}");
    assert!(symmetry.contains("reductions: symmetry;"), "{symmetry}");
    assert!(full.contains("peak memory") && full.ends_with("1 of 1 verdicts as SPEC.md predicts"));
    let (reduced, symmetry, full) = (
        summary_states(&reduced),
        summary_states(&symmetry),
        summary_states(&full),
    );
    assert!(
        reduced < symmetry && symmetry < full,
        "{reduced} {symmetry} {full}"
    );
}
