//! Symmetry reduction (members of a group, tickets, positions of messages in the stream) is
//! sound: exhaustive checks with and without it reach the same verdicts, with fewer states
//! with it. The state counts are pinned so a change to the model or to the representative is
//! noticed.

mod support;

use model::config::{Config, Variant};
use model::run::{Outcome, PartialOrder, RunOptions, Strategy, check};

fn exhaustive(config: Config, symmetry: bool) -> Outcome {
    let options = RunOptions {
        strategy: Strategy::Dfs,
        threads: 1,
        symmetry,
        // Symmetry alone: tests/reduction.rs covers the partial-order reduction.
        partial_order: PartialOrder::Off,
        exhaustive: true,
        ..RunOptions::default()
    };
    check(config, &options)
}

#[test]
fn the_reference_with_two_members_and_two_tickets_reduces_and_still_holds() {
    let config = Config {
        tickets: 2,
        members: 2,
        updates: 1,
        orders: 1,
        cancels: 1,
        crashes: 1,
        redeliveries: 0,
        max_deliver: Config::tolerated_deliveries(1, 0, 0),
        ..Config::new(Variant::Reference)
    };
    let reduced = exhaustive(config, true);
    let full = exhaustive(config, false);
    assert!(reduced.matches_spec() && full.matches_spec());
    assert_eq!(reduced.violated(), full.violated());
    assert_eq!(
        (reduced.unique_states, full.unique_states),
        (19_255, 1_316_907)
    );
}

#[test]
fn every_variant_reaches_the_same_verdicts_with_and_without_symmetry() {
    for variant in Variant::ALL {
        let config = Config {
            duplicates: 0,
            max_deliver: Config::tolerated_deliveries(1, 1, 0),
            ..support::small(variant)
        };
        let reduced = exhaustive(config, true);
        let full = exhaustive(config, false);
        assert_eq!(reduced.violated(), full.violated(), "{variant}");
        assert!(
            reduced.unique_states <= full.unique_states,
            "{variant}: {} reduced states, {} without reduction",
            reduced.unique_states,
            full.unique_states
        );
    }
}
