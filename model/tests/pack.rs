//! A state hashes as its packed words, and stateright takes a state's 64-bit fingerprint for
//! the state itself: the packing must be injective, or distinct states would be merged.
//! Checked on every reachable state of two variants at small bounds.

mod support;

use std::collections::HashMap;

use model::config::{Config, Variant};
use model::system::TicketingModel;

#[test]
fn distinct_states_pack_to_distinct_bytes() {
    // No-outbox fills the outboxes, racy-reserve the reservation requests.
    for variant in [Variant::Reference, Variant::NoOutbox, Variant::RacyReserve] {
        let config = Config {
            duplicates: 0,
            ..support::small(variant)
        };
        let model = TicketingModel::new(config);
        let graph = support::explore(&model, 3_000_000);
        let mut seen: HashMap<Vec<u64>, usize> = HashMap::new();
        for (index, state) in graph.states.iter().enumerate() {
            let mut packed = Vec::new();
            state.pack(&mut |word| packed.push(word));
            if let Some(other) = seen.insert(packed, index) {
                panic!(
                    "{variant}: two states pack alike:\n{:#?}\n{state:#?}",
                    graph.states[other]
                );
            }
        }
        assert_eq!(seen.len(), graph.states.len());
    }
}
