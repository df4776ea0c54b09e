//! Two orders of one ticket, every transition replayed: the case reservation numbers and the
//! reservation check exist for, which `tests/exhaustive.rs` (one order) never reaches. An order
//! placed while another holds the ticket must be refused by the check each design makes
//! (atomic in the reference, `isReserved` first on `racy-reserve`), and a cancelled order must
//! free the ticket for the next.

use harness::exhaustive::{Coverage, Options, run};
use model::{Config, Variant};

fn two_orders(variant: Variant) -> Config {
    Config {
        variant,
        tickets: 1,
        members: 1,
        updates: 0,
        orders: 2,
        cancels: 1,
        crashes: 0,
        redeliveries: 0,
        duplicates: 0,
        max_deliver: Config::tolerated_deliveries(0, 0, 0),
    }
}

fn assert_follows(variant: Variant) {
    let config = two_orders(variant);
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
            "{variant}: {} of {} paths diverged; the shortest:\n{}",
            outcome.diverging_paths,
            outcome.paths,
            divergence.render()
        );
    }
    assert!(!outcome.truncated);
    assert!(
        outcome.paths > 20,
        "{variant}: only {} paths",
        outcome.paths
    );
}

#[test]
fn the_reference_follows_the_model_with_two_orders_of_one_ticket() {
    assert_follows(Variant::Reference);
}

#[test]
fn racy_reserve_follows_its_model_with_two_orders_of_one_ticket() {
    assert_follows(Variant::RacyReserve);
}
