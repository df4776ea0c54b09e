//! Every property can fail, and fails where SPEC.md says: a property no variant ever violates
//! proves nothing about the reference. Each variant is checked exhaustively at small bounds
//! (every property decided), its violated properties are pinned, and every one of the eight
//! must be violated by some variant or, where no design can violate it, by a seeded state
//! that shows its check is not constant.

mod support;

use model::config::{Config, Variant};
use model::properties::{Prop, must_violate};
use model::run::{RunOptions, Strategy, check};
use model::state::{Replica, State, Ticket};
use model::system::TicketingModel;

/// Every property decided: DFS with symmetry, on after the first counterexamples.
fn violated(variant: Variant) -> Vec<Prop> {
    let config = Config {
        duplicates: 0,
        max_deliver: Config::tolerated_deliveries(1, 1, 0),
        ..support::small(variant)
    };
    let options = RunOptions {
        strategy: Strategy::Dfs,
        threads: 1,
        symmetry: true,
        exhaustive: true,
        ..RunOptions::default()
    };
    let outcome = check(config, &options);
    assert!(outcome.verdicts.iter().all(|verdict| verdict.decided));
    outcome.violated()
}

use Prop::*;

/// What each variant violates at `support::small` bounds (without duplicates), every
/// property decided. SPEC.md's table names at least one of each (`must_violate`); the rest
/// follow from the same flaw, for example `ack-before-save` loses an acknowledged event (5)
/// and so never converges (6).
const VIOLATED: [(Variant, &[Prop]); 11] = [
    (Variant::Reference, &[]),
    (
        Variant::NaiveVersion,
        &[VersionMonotonicity, AckedMeansApplied, PricesConverge],
    ),
    (Variant::NoReservePublish, &[PricesConverge]),
    (Variant::EditReserved, &[ReservedTicketsFrozen]),
    (Variant::AckBeforeSave, &[AckedMeansApplied, PricesConverge]),
    (Variant::CourseListener, &[NothingStuck]),
    (Variant::RacyReserve, &[SingleReservation]),
    (Variant::UnorderedOrderEvents, &[ReservationsConverge]),
    (Variant::NoOutbox, &[PricesConverge, NothingStuck]),
    (Variant::ConflictNak, &[NothingStuck]),
    (
        Variant::Course,
        &[
            SingleReservation,
            PricesConverge,
            ReservationsConverge,
            NothingStuck,
        ],
    ),
];

#[test]
fn each_variant_violates_exactly_its_pinned_properties_and_what_spec_requires() {
    for (variant, expected) in VIOLATED {
        let found = violated(variant);
        assert_eq!(found, expected, "{variant}");
        assert!(
            must_violate(variant)
                .groups()
                .iter()
                .all(|group| group.iter().any(|prop| found.contains(prop))),
            "{variant}: {} but found {found:?}",
            must_violate(variant).describe()
        );
    }
}

/// A ticket at version 1 (price 1) whose replica claims version 1 with version 0's price:
/// no design writes such a replica (each write copies an event's version and price), so
/// replica fidelity is shown to be checkable on a seeded state.
fn unfaithful_replica() -> State {
    let mut state = State::default();
    state.tickets.push(Ticket {
        version: 1,
        price: 1,
        order: None,
        reservation: 0,
    });
    state.ghost.price_at[0][1] = 1;
    state.replicas[0] = Some(Replica {
        version: 1,
        price: 0,
    });
    state
}

/// Properties no design violates, each with a state that violates it.
fn seeded() -> Vec<(Prop, State)> {
    vec![(ReplicaFidelity, unfaithful_replica())]
}

#[test]
fn every_property_is_violated_by_some_variant_or_a_seeded_state() {
    let model = TicketingModel::new(Config::default());
    let mut covered: Vec<Prop> = VIOLATED
        .iter()
        .flat_map(|(_, props)| props.iter().copied())
        .collect();
    for (prop, state) in seeded() {
        assert!(
            !prop.holds(&model, &state),
            "{}: the seeded state satisfies it",
            prop.name()
        );
        covered.push(prop);
    }
    for prop in Prop::ALL {
        assert!(
            covered.contains(&prop),
            "{}. {} is never violated: it proves nothing",
            prop.number(),
            prop.name()
        );
    }
}

#[test]
fn version_monotonicity_is_lost_by_the_write_that_lowers_a_version() {
    // naive-version, two tickets' worth of nothing: one ticket updated twice, v2 applied
    // before v1. Property 2 must fail at the save of v1 and not before.
    let model = TicketingModel::new(Config {
        updates: 2,
        orders: 0,
        cancels: 0,
        crashes: 0,
        redeliveries: 0,
        ..Config::new(Variant::NaiveVersion)
    });
    let (depths, _) = support::shortest_violations(&model, false, 12);
    // create, deliver ticket:created (the insert), ack, update, update, deliver v2, save,
    // deliver v1 (read), save: the ninth step lowers the replica from v2 to v1.
    assert_eq!(depths[VersionMonotonicity.number() - 1], Some(9));
    assert_eq!(depths[ReplicaFidelity.number() - 1], None);
}
