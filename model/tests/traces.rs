//! Counterexamples as traces (SPEC.md section 4): each variant's counterexample, as JSON,
//! round-trips, is reproduced step for step by the model itself, and ends in a state that
//! violates its property (for the liveness properties, a quiescent one).

use model::config::{Config, Variant};
use model::properties::{Prop, must_violate};
use model::run::{RunOptions, check};
use model::system::TicketingModel;
use model::trace::Trace;

#[test]
fn every_variant_counterexample_replays_on_the_model_and_ends_in_violation() {
    for variant in &Variant::ALL[1..] {
        let config = Config::new(*variant);
        let model = TicketingModel::new(config);
        let outcome = check(config, &RunOptions::default());
        for group in must_violate(*variant).groups() {
            let verdict = outcome
                .verdicts
                .iter()
                .find(|v| group.contains(&v.prop) && v.violated())
                .unwrap_or_else(|| panic!("{variant}: no counterexample for {group:?}"));
            let path = verdict.counterexample.as_ref().unwrap();
            let trace = Trace::from_path(&model, Some(verdict.prop), path);
            let json = serde_json::to_string(&trace).unwrap();
            let back: Trace = serde_json::from_str(&json).unwrap();
            assert_eq!(back, trace, "{variant}: JSON round trip");
            back.check_against(&model)
                .unwrap_or_else(|e| panic!("{variant}: {e}"));
            let last = &back.steps.last().unwrap().state;
            assert!(
                !verdict.prop.holds(&model, last),
                "{variant}: ends satisfied"
            );
            if verdict.prop.is_liveness() {
                assert!(
                    model.is_quiescent(last),
                    "{variant}: liveness trace ends busy"
                );
                assert!(!verdict.prop.converged(last));
            }
        }
    }
}

#[test]
fn a_trace_with_an_action_that_is_not_enabled_is_rejected() {
    let model = TicketingModel::new(Config::default());
    let actions = [model::Action::UpdatePrice { ticket: 0 }];
    assert_eq!(Trace::from_actions(&model, &actions).err(), Some(0));
    let mut trace = Trace::from_actions(&model, &[model::Action::CreateTicket]).unwrap();
    trace.steps[0].state.budget.updates = 0;
    assert!(trace.check_against(&model).is_err());
}

#[test]
fn property_names_are_the_checkers() {
    let model = TicketingModel::new(Config::default());
    assert!(model::machine::names_match(&model));
    for prop in Prop::ALL {
        assert_eq!(Prop::from_name(prop.name()), Some(prop));
    }
}
