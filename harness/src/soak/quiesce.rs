//! Quiescence, and the final state.
//!
//! The system is quiescent when, at two polls in a row ([`POLL_EVERY`] apart): both outboxes
//! are empty, both consumers report nothing pending and nothing unacknowledged (a nak'ed
//! event waiting out its delay counts as unacknowledged), no handler is running (a late or
//! parked one included), and the stores read the same (every ticket, replica and order at the
//! same version). Liveness (SPEC.md properties 6-8) is checked on that state only; a run that
//! does not get there within the timeout says what was still moving.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use ticketing::bus::jetstream::ConsumerState;
use ticketing::id::Id;
use ticketing::records::{Order, Reservation, Ticket, TicketReplica};
use ticketing::store::{Listing, OrderBook, Outbox, PgStore, VersionedStore};

use super::system::{GROUPS, RELAYS, System};

/// How often quiescence is polled.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// The most outbox entries counted per poll (enough to say "not empty").
const OUTBOX_COUNT_MAX: usize = 1000;

/// What the last poll saw.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Entries pending in each outbox (counted up to `OUTBOX_COUNT_MAX`), or why it was unreadable.
    pub outboxes: [Result<usize, String>; 2],
    /// Each group's consumer, or why it was unreadable.
    pub consumers: [Result<ConsumerState, String>; 2],
    /// Handlers running.
    pub handlers: usize,
    /// Whether the stores changed since the previous poll.
    pub changing: bool,
}

impl Observation {
    fn quiet_except_stores(&self) -> bool {
        self.outboxes.iter().all(|outbox| matches!(outbox, Ok(0)))
            && self.handlers == 0
            && self.consumers.iter().all(|consumer| {
                consumer
                    .as_ref()
                    .is_ok_and(|state| state.num_pending == 0 && state.num_ack_pending == 0)
            })
    }
}

impl fmt::Display for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, outbox) in RELAYS.iter().zip(&self.outboxes) {
            match outbox {
                Ok(count) if *count >= OUTBOX_COUNT_MAX => {
                    write!(f, "{name} outbox {count}+ pending; ")?
                }
                Ok(count) => write!(f, "{name} outbox {count} pending; ")?,
                Err(why) => write!(f, "{name} outbox unreadable ({why}); ")?,
            }
        }
        for (name, consumer) in GROUPS.iter().zip(&self.consumers) {
            match consumer {
                Ok(state) => write!(
                    f,
                    "{name} consumer {} pending, {} unacknowledged; ",
                    state.num_pending, state.num_ack_pending
                )?,
                Err(why) => write!(f, "{name} consumer unreadable ({why}); ")?,
            }
        }
        write!(
            f,
            "{} handlers running; stores {}",
            self.handlers,
            if self.changing { "changing" } else { "steady" }
        )
    }
}

/// How waiting for quiescence went.
#[derive(Clone, Debug)]
pub struct Quiescence {
    /// Whether the system was seen quiescent.
    pub reached: bool,
    /// How long it took (or the timeout).
    pub waited: Duration,
    /// The timeout.
    pub timeout: Duration,
    /// The last poll.
    pub last: Observation,
}

/// Polls until the system is quiescent (see the module docs) or `timeout` passes.
pub async fn wait(system: &System, timeout: Duration) -> Quiescence {
    let started = Instant::now();
    let mut previous: Option<u64> = None;
    loop {
        let (mut observation, fingerprint) = observe(system).await;
        observation.changing = previous != Some(fingerprint);
        let quiet = observation.quiet_except_stores();
        if quiet && !observation.changing {
            return Quiescence {
                reached: true,
                waited: started.elapsed(),
                timeout,
                last: observation,
            };
        }
        if started.elapsed() >= timeout {
            return Quiescence {
                reached: false,
                waited: started.elapsed(),
                timeout,
                last: observation,
            };
        }
        // Only a quiet poll's stores count as the baseline: a change seen between two quiet
        // polls means something still moves.
        previous = quiet.then_some(fingerprint);
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn observe(system: &System) -> (Observation, u64) {
    let outbox = |store: &PgStore| {
        let store = store.clone();
        async move {
            store
                .pending(OUTBOX_COUNT_MAX)
                .await
                .map(|pending| pending.len())
                .map_err(|error| error.to_string())
        }
    };
    let (tickets_outbox, orders_outbox, consumers, fingerprint) = tokio::join!(
        outbox(system.tickets_store()),
        outbox(system.orders_store()),
        system.consumer_states(),
        fingerprint(system),
    );
    let observation = Observation {
        outboxes: [tickets_outbox, orders_outbox],
        consumers: consumers.map(|state| state.map_err(|error| error.to_string())),
        handlers: system.stats().in_flight(),
        changing: true,
    };
    (observation, fingerprint)
}

/// A hash of every record's id and version (0 if a store is unreadable: then it never
/// matches a readable poll's, by chance aside).
async fn fingerprint(system: &System) -> u64 {
    let (tickets, replicas, orders) = tokio::join!(
        VersionedStore::<Ticket>::list(system.tickets_store(), Listing::All),
        VersionedStore::<TicketReplica>::list(system.orders_store(), Listing::All),
        VersionedStore::<Order>::list(system.orders_store(), Listing::All),
    );
    let (Ok(mut tickets), Ok(mut replicas), Ok(mut orders)) = (tickets, replicas, orders) else {
        return 0;
    };
    tickets.sort_by_key(|ticket| ticket.id);
    replicas.sort_by_key(|replica| replica.id);
    orders.sort_by_key(|order| order.id);
    let mut hasher = DefaultHasher::new();
    for ticket in &tickets {
        (ticket.id, ticket.version, ticket.reservation).hash(&mut hasher);
    }
    for replica in &replicas {
        (replica.id, replica.version).hash(&mut hasher);
    }
    for order in &orders {
        (order.id, order.version).hash(&mut hasher);
    }
    hasher.finish()
}

/// Everything in the stores at the end.
#[derive(Clone, Debug, Default)]
pub struct FinalState {
    /// The tickets service's tickets.
    pub tickets: HashMap<Id, Ticket>,
    /// The orders service's replicas.
    pub replicas: HashMap<Id, TicketReplica>,
    /// The orders service's orders.
    pub orders: HashMap<Id, Order>,
    /// The orders service's count of reservation changes, per ticket.
    pub reservations: HashMap<Id, Reservation>,
    /// What could not be read.
    pub errors: Vec<String>,
}

/// How many reservation counts are read at once.
const READ_CONCURRENCY: usize = 8;

/// Reads the final state from the stores.
pub async fn read_state(system: &System) -> FinalState {
    let mut state = FinalState::default();
    match VersionedStore::<Ticket>::list(system.tickets_store(), Listing::All).await {
        Ok(tickets) => state.tickets = tickets.into_iter().map(|t| (t.id, t)).collect(),
        Err(error) => state.errors.push(format!("tickets: {error}")),
    }
    match VersionedStore::<TicketReplica>::list(system.orders_store(), Listing::All).await {
        Ok(replicas) => state.replicas = replicas.into_iter().map(|r| (r.id, r)).collect(),
        Err(error) => state.errors.push(format!("replicas: {error}")),
    }
    match VersionedStore::<Order>::list(system.orders_store(), Listing::All).await {
        Ok(orders) => state.orders = orders.into_iter().map(|o| (o.id, o)).collect(),
        Err(error) => state.errors.push(format!("orders: {error}")),
    }
    let store = system.orders_store();
    let counts: Vec<(Id, Result<Reservation, String>)> =
        futures::stream::iter(state.tickets.keys().copied())
            .map(|id| async move {
                let count = store
                    .reservation_count(id)
                    .await
                    .map_err(|error| error.to_string());
                (id, count)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
    for (id, count) in counts {
        match count {
            Ok(count) => {
                state.reservations.insert(id, count);
            }
            Err(why) => state
                .errors
                .push(format!("reservation count of {id}: {why}")),
        }
    }
    state
}
