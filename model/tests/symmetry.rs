//! Symmetry reduction (members of a group, tickets, positions of messages in the stream) is
//! sound: checks with and without it reach the same verdicts, with fewer states with it, and
//! where tickets and members can actually be permuted (two of each), the shortest
//! counterexample of every property has the same depth with and without it, for every
//! variant. The state counts are pinned so a change to the model or to the representative is
//! noticed.

mod support;

use model::config::{Config, Variant};
use model::run::{Outcome, PartialOrder, RunOptions, Strategy, check};
use model::system::TicketingModel;

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

/// Two tickets and two members per group, so tickets and members are permuted, not only
/// message positions; one update, two orders, one cancellation and one crash. Breadth-first
/// to depth 12: every variant's first violation of at least one property lies within it (the
/// deepest, `no-reserve-publish`'s 8 and `racy-reserve`'s 7, at 12). The largest search
/// (`unordered-order-events` without symmetry) visits 934,380 states; the whole test takes
/// about 20 s in release on one core
/// (`cargo test -p model --release --test symmetry -- --nocapture` prints each variant's
/// depths, state counts and time).
const TWO_BY_TWO_DEPTH: usize = 12;

fn two_by_two(variant: Variant) -> Config {
    Config {
        tickets: 2,
        members: 2,
        updates: 1,
        orders: 2,
        cancels: 1,
        crashes: 1,
        redeliveries: 0,
        duplicates: 0,
        max_deliver: Config::tolerated_deliveries(1, 0, 0),
        ..Config::new(variant)
    }
}

#[test]
fn at_two_tickets_and_two_members_every_variant_has_the_same_shortest_counterexamples() {
    let mut refuted = 0;
    for variant in Variant::ALL {
        let model = TicketingModel::new(two_by_two(variant));
        let (reduced, reduced_states) =
            support::shortest_violations(&model, true, TWO_BY_TWO_DEPTH);
        let started = std::time::Instant::now();
        let (full, full_states) = support::shortest_violations(&model, false, TWO_BY_TWO_DEPTH);
        eprintln!(
            "{variant}: first violations at {reduced:?}, {reduced_states} states reduced, \
             {full_states} full ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(
            reduced, full,
            "{variant}: first violation depth per property, with and without symmetry"
        );
        assert!(
            reduced_states < full_states,
            "{variant}: {reduced_states} reduced states, {full_states} without reduction"
        );
        refuted += usize::from(reduced.iter().any(Option::is_some));
    }
    // The comparison means something only where violations exist: every variant but the
    // reference is refuted at these bounds.
    assert_eq!(refuted, Variant::ALL.len() - 1);
}
