//! SPEC.md section 4's last rule, for every variant: the checker's counterexample, replayed
//! on the implementation built with the same variant, follows the trace step for step and
//! ends with the property violated; the same scenario on the reference implementation ends
//! with it holding.

use harness::backend::Backend;
use harness::counterexamples::{Showing, rows};
use model::properties::must_violate;
use model::{Config, Variant};

fn check(variant: Variant) {
    let rows = rows(Config::new(variant), &Backend::Memory);
    assert_eq!(
        rows.len(),
        must_violate(variant).groups().len(),
        "{variant}: one row per property SPEC.md requires it to violate"
    );
    for row in rows {
        assert!(row.length > 0, "{variant}: an empty counterexample");
        if let Showing::Not(why) = &row.on_variant {
            panic!(
                "{variant} / {}: not violated on the variant:\n{why}",
                row.prop.name()
            );
        }
        if let Showing::Not(why) = &row.on_reference {
            panic!(
                "{variant} / {}: not held on the reference:\n{why}",
                row.prop.name()
            );
        }
        assert!(
            row.reference_length > 0,
            "{variant}: the reference did nothing"
        );
    }
}

macro_rules! variant_tests {
    ($($name:ident => $variant:expr,)*) => {
        $(
            #[test]
            fn $name() {
                check($variant);
            }
        )*
    };
}

variant_tests! {
    naive_version => Variant::NaiveVersion,
    no_reserve_publish => Variant::NoReservePublish,
    edit_reserved => Variant::EditReserved,
    ack_before_save => Variant::AckBeforeSave,
    course_listener => Variant::CourseListener,
    racy_reserve => Variant::RacyReserve,
    unordered_order_events => Variant::UnorderedOrderEvents,
    no_outbox => Variant::NoOutbox,
    conflict_nak => Variant::ConflictNak,
    course => Variant::Course,
}

#[test]
fn the_reference_has_no_counterexample_to_replay() {
    assert!(rows(Config::new(Variant::Reference), &Backend::Memory).is_empty());
}
