//! Two orders of one ticket, every transition replayed: the case reservation numbers and the
//! reservation check exist for, which `tests/exhaustive.rs` (one order) never reaches. An order
//! placed while another holds the ticket must be refused by the check each design makes
//! (atomic in the reference, `isReserved` first on `racy-reserve`), and a cancelled order must
//! free the ticket for the next.
//!
//! The model never offers an order for a reserved ticket (a refused request changes nothing,
//! so it is not a transition), so the replays above never meet the refusal itself: the last
//! tests place one and expect it refused with the state unchanged.

use harness::exhaustive::{Coverage, Options, run};
use harness::replay::Replay;
use harness::report::Departure;
use model::{Action, Config, Variant};

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
        implementation: variant,
        max_paths: usize::MAX,
        coverage: Coverage::Transitions,
        threads: 2,
        stutter_probes: true,
        partial_order: true,
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

/// How eagerly the walk to a reserved ticket takes an action: finish a checked reservation,
/// then order, then move messages along, then create the ticket; anything else never.
fn eagerness(action: &Action) -> Option<u8> {
    match action {
        Action::InsertOrder { .. } => Some(3),
        Action::CreateOrder { .. } | Action::CheckReservation { .. } => Some(2),
        Action::Deliver { .. }
        | Action::Read { .. }
        | Action::Save { .. }
        | Action::Publish { .. }
        | Action::Ack { .. }
        | Action::PublishSaved { .. } => Some(1),
        Action::CreateTicket => Some(0),
        _ => None,
    }
}

/// Walks `variant`'s model and implementation together until ticket 0 is reserved, then
/// orders it again and expects the order refused as already reserved.
fn a_second_order_is_refused(variant: Variant) {
    let mut replay = Replay::new(two_orders(variant)).unwrap();
    let mut reserved = false;
    for _ in 0..40 {
        let Some(action) = replay
            .enabled()
            .into_iter()
            .filter(|action| eagerness(action).is_some())
            .max_by_key(eagerness)
        else {
            break;
        };
        replay
            .step(action)
            .unwrap_or_else(|d| panic!("{}", d.render()));
        if matches!(
            action,
            Action::InsertOrder { .. } | Action::CreateOrder { .. }
        ) {
            reserved = true;
            break;
        }
    }
    assert!(reserved, "{variant}: the walk never reserved ticket 0");
    let order = if variant == Variant::RacyReserve {
        Action::CheckReservation { ticket: 0 }
    } else {
        Action::CreateOrder { ticket: 0 }
    };
    let unchanged = replay.state().clone();
    match replay.step_to(order, unchanged) {
        Err(divergence) => match &divergence.departure {
            Departure::Refused { reason } if reason.contains("Ticket is already reserved") => {}
            _ => panic!("{variant}: {}", divergence.render()),
        },
        Ok(()) => panic!("{variant}: an order for a reserved ticket was not refused"),
    }
}

#[test]
fn the_reference_refuses_an_order_for_a_reserved_ticket() {
    a_second_order_is_refused(Variant::Reference);
}

#[test]
fn racy_reserve_refuses_an_order_for_a_ticket_reserved_before_its_check() {
    a_second_order_is_refused(Variant::RacyReserve);
}
