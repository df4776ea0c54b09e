//! The state graph is acyclic: the ranking function strictly decreases on every transition of
//! every reachable state, for every variant. This is what makes checking the liveness
//! properties over quiescent states sound (SPEC.md section 3): every maximal path is finite
//! and ends in a quiescent state.

mod support;

use model::config::{Config, Variant};
use model::rank::Weights;
use model::system::TicketingModel;

fn assert_rank_decreases(config: Config, limit: usize) -> usize {
    let model = TicketingModel::new(config);
    let weights = Weights::new(&config);
    let graph = support::explore(&model, limit);
    for (from, edges) in graph.edges.iter().enumerate() {
        let before = weights.rank(&graph.states[from]);
        for (action, to) in edges {
            let after = weights.rank(&graph.states[*to]);
            assert!(
                after < before,
                "{}: rank does not decrease on {action:?}: {before} -> {after}\nfrom {:#?}",
                config.variant,
                graph.states[from]
            );
        }
    }
    graph.states.len()
}

#[test]
fn rank_decreases_on_every_step_of_every_variant() {
    for variant in Variant::ALL {
        let states = assert_rank_decreases(support::small(variant), 3_000_000);
        assert!(states > 1_000, "{variant}: only {states} states explored");
    }
}

#[test]
fn rank_decreases_with_two_members_racing_on_the_reference() {
    let config = Config {
        members: 2,
        orders: 1,
        cancels: 1,
        // Duplicates are ranked at one member (`rank_decreases_on_every_step_of_every_variant`);
        // with two members racing they take this graph past three million states.
        duplicates: 0,
        ..support::small(Variant::Reference)
    };
    assert_rank_decreases(config, 3_000_000);
}
