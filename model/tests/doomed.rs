//! The early verdicts are sound: wherever a `doomed` predicate says a liveness property is
//! lost, every way the system can finish its work from there (clients and the adversary
//! stopped) ends in a quiescent state that violates the property. Checked on every reachable
//! state of every variant at small bounds, by computing for each state whether all its
//! system-only continuations end in violation (states in order of rank, which every step
//! decreases, so successors come first).

mod support;

use model::action::Actor;
use model::config::Variant;
use model::properties::{Prop, doomed};
use model::rank::Weights;
use model::system::TicketingModel;

#[test]
fn doomed_states_only_ever_end_in_violation() {
    let liveness = [
        Prop::PricesConverge,
        Prop::ReservationsConverge,
        Prop::NothingStuck,
    ];
    let mut doomed_seen = [0usize; 3];
    for variant in Variant::ALL {
        let config = support::small(variant);
        let model = TicketingModel::new(config);
        let graph = support::explore(&model, 3_000_000);
        let weights = Weights::new(&config);
        let mut order: Vec<usize> = (0..graph.states.len()).collect();
        order.sort_by_key(|at| weights.rank(&graph.states[*at]));
        for (index, prop) in liveness.into_iter().enumerate() {
            // all_end_bad[s]: every system-only continuation from s ends violating `prop`.
            let mut all_end_bad = vec![false; graph.states.len()];
            for &at in &order {
                let mut system_steps = graph.edges[at]
                    .iter()
                    .filter(|(action, _)| action.actor() == Actor::System)
                    .peekable();
                all_end_bad[at] = if system_steps.peek().is_none() {
                    !prop.converged(&graph.states[at])
                } else {
                    system_steps.all(|(_, to)| all_end_bad[*to])
                };
            }
            for (at, state) in graph.states.iter().enumerate() {
                if let Some(reason) = doomed(prop, &model, state) {
                    doomed_seen[index] += 1;
                    assert!(
                        all_end_bad[at],
                        "{variant}: {} said doomed ({reason}) but a run ends converged from {state:#?}",
                        prop.name()
                    );
                }
            }
        }
    }
    for (prop, seen) in liveness.iter().zip(doomed_seen) {
        assert!(
            seen > 0,
            "{}: never doomed anywhere, the test proves nothing",
            prop.name()
        );
    }
}
