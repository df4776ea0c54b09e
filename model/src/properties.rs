//! The eight properties of SPEC.md section 3, and the verdicts SPEC.md predicts per variant.
//!
//! Safety properties (1-5) are `always` properties over every reachable state. Liveness
//! properties (6-8) are checked soundly, as SPEC.md requires, as `always` properties over
//! quiescent states ("if no action is enabled, then ..."): the state graph is acyclic (see
//! [`crate::rank`]), so every maximal path ends in a quiescent state, and "every quiescent
//! state is converged" means exactly "every run ends converged". stateright's `eventually`
//! is not used: it misses violations at DAG joins.
//!
//! A liveness violation is also reported as soon as it is *inevitable*: from a state where a
//! [`doomed`] predicate holds, every run ends in a quiescent state that violates the property
//! (the predicates only name absorbing situations: a dead-lettered message, a version no copy
//! of whose event is left anywhere, a wrong reservation no event or client can change any
//! more). The checker then finds the shortest path to the point of no return instead of
//! exploring every interleaving up to quiescence, and the reported trace is that path
//! completed to a quiescent state (the `trace` module's `complete_to_quiescence`).
//! `tests/doomed.rs` checks each predicate's claim on every reachable state of small
//! configurations.
//!
//! The invariant: a property reads only the state (ghost variables included) and the
//! configuration, so its verdict on a state never depends on how the state was reached, and
//! every property is invariant under the symmetry reduction's permutations.

use stateright::Property;

use crate::config::Variant;
use crate::state::{Event, Ghost, Member, State, Status, Step};
use crate::system::TicketingModel;
use crate::words::describe_event;

/// One of the eight properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prop {
    /// 1. A replica at version v holds exactly the primary's price (and title) at version v.
    ReplicaFidelity,
    /// 2. No record's version ever decreases.
    VersionMonotonicity,
    /// 3. At most one active order per ticket.
    SingleReservation,
    /// 4. While a ticket's order names an order, its price does not change.
    ReservedTicketsFrozen,
    /// 5. An acknowledged event's effect is in the store now (or a later version of it).
    AckedMeansApplied,
    /// 6. Quiescent: every replica equals its primary.
    PricesConverge,
    /// 7. Quiescent: each ticket's order names its active order, or none.
    ReservationsConverge,
    /// 8. Quiescent: every event acknowledged, nothing dead-lettered, no outbox pending.
    NothingStuck,
}

impl Prop {
    /// All eight, in SPEC.md's order.
    pub const ALL: [Prop; 8] = [
        Prop::ReplicaFidelity,
        Prop::VersionMonotonicity,
        Prop::SingleReservation,
        Prop::ReservedTicketsFrozen,
        Prop::AckedMeansApplied,
        Prop::PricesConverge,
        Prop::ReservationsConverge,
        Prop::NothingStuck,
    ];

    /// SPEC.md's number.
    pub const fn number(self) -> usize {
        self as usize + 1
    }

    /// The property's name, as the checker reports it.
    pub const fn name(self) -> &'static str {
        match self {
            Prop::ReplicaFidelity => "replica fidelity",
            Prop::VersionMonotonicity => "version monotonicity",
            Prop::SingleReservation => "single reservation",
            Prop::ReservedTicketsFrozen => "reserved tickets are frozen",
            Prop::AckedMeansApplied => "acknowledged means applied",
            Prop::PricesConverge => "prices converge",
            Prop::ReservationsConverge => "reservations converge",
            Prop::NothingStuck => "nothing is stuck",
        }
    }

    /// The property with this name.
    pub fn from_name(name: &str) -> Option<Prop> {
        Prop::ALL.into_iter().find(|prop| prop.name() == name)
    }

    /// Whether `state` satisfies the property. For 6-8: the state is not doomed to violate
    /// it, and if it is quiescent it is converged.
    pub fn holds(self, model: &TicketingModel, state: &State) -> bool {
        match self {
            Prop::ReplicaFidelity => replica_fidelity(state),
            Prop::VersionMonotonicity => !state.ghost.version_regressed,
            Prop::SingleReservation => single_reservation(state),
            Prop::ReservedTicketsFrozen => !state.ghost.reserved_price_changed,
            Prop::AckedMeansApplied => acked_means_applied(state),
            Prop::PricesConverge | Prop::ReservationsConverge | Prop::NothingStuck => {
                doomed(self, model, state).is_none()
                    && (self.converged(state) || !model.is_quiescent(state))
            }
        }
    }

    /// For a liveness property: whether `state` is converged in its sense (meaningful in a
    /// quiescent state). Safety properties: whether they hold.
    pub fn converged(self, state: &State) -> bool {
        match self {
            Prop::PricesConverge => prices_converged(state),
            Prop::ReservationsConverge => reservations_converged(state),
            Prop::NothingStuck => nothing_stuck(state),
            Prop::ReplicaFidelity => replica_fidelity(state),
            Prop::VersionMonotonicity => !state.ghost.version_regressed,
            Prop::SingleReservation => single_reservation(state),
            Prop::ReservedTicketsFrozen => !state.ghost.reserved_price_changed,
            Prop::AckedMeansApplied => acked_means_applied(state),
        }
    }

    /// Whether this is one of the liveness properties (6-8).
    pub const fn is_liveness(self) -> bool {
        matches!(
            self,
            Prop::PricesConverge | Prop::ReservationsConverge | Prop::NothingStuck
        )
    }
}

/// The properties as stateright checks them, all `always` (see the module docs).
pub(crate) fn all() -> Vec<Property<TicketingModel>> {
    macro_rules! always {
        ($prop:expr) => {
            Property::always($prop.name(), |model: &TicketingModel, state: &State| {
                $prop.holds(model, state)
            })
        };
    }
    vec![
        always!(Prop::ReplicaFidelity),
        always!(Prop::VersionMonotonicity),
        always!(Prop::SingleReservation),
        always!(Prop::ReservedTicketsFrozen),
        always!(Prop::AckedMeansApplied),
        always!(Prop::PricesConverge),
        always!(Prop::ReservationsConverge),
        always!(Prop::NothingStuck),
    ]
}

/// The name of the eight properties checked as one (see [`conjunction`]).
pub const CONJUNCTION: &str = "every property";

/// The eight properties as one `always` property that holds where all eight hold. For
/// exhaustive depth-first searches only: stateright asks its discoveries map about every
/// property of every state it visits, a tenth of a proof's instructions with eight
/// properties; a search that finds the conjunction violated is run again with the
/// properties apart for a verdict and a counterexample of each (`run::check`).
pub(crate) fn conjunction() -> Vec<Property<TicketingModel>> {
    vec![Property::always(CONJUNCTION, all_hold)]
}

/// Whether all eight properties hold in `state`: `Prop::holds` of each, except that whether
/// the state is quiescent, which each liveness property may ask, is decided at most once.
pub fn all_hold(model: &TicketingModel, state: &State) -> bool {
    const LIVENESS: [Prop; 3] = [
        Prop::PricesConverge,
        Prop::ReservationsConverge,
        Prop::NothingStuck,
    ];
    Prop::ALL
        .into_iter()
        .filter(|prop| !prop.is_liveness())
        .all(|prop| prop.holds(model, state))
        && LIVENESS
            .into_iter()
            .all(|prop| doomed(prop, model, state).is_none())
        && (LIVENESS.into_iter().all(|prop| prop.converged(state)) || !model.is_quiescent(state))
}

/// What SPEC.md requires the checker to find for a variant: in each group, at least one
/// property violated. The reference's requirement is empty: every property must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement(&'static [&'static [Prop]]);

impl Requirement {
    /// Nothing to find (the reference).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `prop` is one SPEC.md names for the variant.
    pub fn mentions(&self, prop: Prop) -> bool {
        self.0.iter().any(|group| group.contains(&prop))
    }

    /// Whether the violated properties meet the requirement (for the reference: none).
    pub(crate) fn met_by(&self, violated: &[Prop]) -> bool {
        if self.is_empty() {
            return violated.is_empty();
        }
        self.0
            .iter()
            .all(|group| group.iter().any(|prop| violated.contains(prop)))
    }

    /// The first property named (the one a trace is written for by default).
    pub fn first(&self) -> Option<Prop> {
        self.0.first().and_then(|group| group.first()).copied()
    }

    /// The groups.
    pub fn groups(&self) -> &'static [&'static [Prop]] {
        self.0
    }

    /// In words: "must violate 3. single reservation, and 6. prices converge or ...".
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "every property holds".into();
        }
        let groups: Vec<String> = self
            .0
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|p| format!("{}. {}", p.number(), p.name()))
                    .collect::<Vec<_>>()
                    .join(" or ")
            })
            .collect();
        format!("must violate {}", groups.join(", and "))
    }
}

/// What SPEC.md's table says the checker must find for `variant`.
pub fn must_violate(variant: Variant) -> Requirement {
    use Prop::*;
    Requirement(match variant {
        Variant::Reference => &[],
        // "replica price regresses [a version goes down: 2] or ends different from the
        // primary's [6]": the replica stores the event's version, so a late v1 after v2 takes
        // it back to v1 with v1's price (faithful to v1, so not 1) and it ends there.
        Variant::NaiveVersion => &[&[VersionMonotonicity], &[PricesConverge]],
        Variant::NoReservePublish => &[&[PricesConverge]],
        Variant::EditReserved => &[&[ReservedTicketsFrozen]],
        Variant::AckBeforeSave => &[&[PricesConverge]],
        Variant::CourseListener => &[&[NothingStuck]],
        Variant::RacyReserve => &[&[SingleReservation]],
        Variant::UnorderedOrderEvents => &[&[ReservationsConverge]],
        Variant::NoOutbox => &[&[PricesConverge]],
        Variant::ConflictNak => &[&[NothingStuck]],
        Variant::Course => &[
            &[SingleReservation],
            &[PricesConverge],
            &[ReservationsConverge],
            &[NothingStuck],
        ],
    })
}

/// Why a liveness property is already lost in `state`, if it is: from here every run ends in
/// a quiescent state that violates it. `None` for safety properties and undoomed states.
///
/// - 8: a message is dead-lettered. Dead is absorbing.
/// - 6 (designs that apply `ticket:updated` only at `version - 1`): the replica is below some
///   version of its primary, and no copy of the event for that version is left to deliver
///   (no pending or in-flight message, no event waiting to be published, no member holding
///   one, no publisher able to retry one). The replica can pass a version only by applying
///   its event, and the primary publishes each version once, so it never gets there.
/// - 7: a ticket whose `order` disagrees with its active orders has no order event left
///   anywhere. Only order events change a ticket's `order`, and only clients change orders:
///   once clients stop, the disagreement is permanent.
///
/// "From here" means: the system finishing its work with clients and the adversary stopped,
/// which they may do at any point (their budgets are upper bounds). So a retry the adversary
/// could still make does not count as a copy left, nor an order a client could still place.
pub fn doomed(prop: Prop, model: &TicketingModel, state: &State) -> Option<String> {
    match prop {
        Prop::NothingStuck => state
            .messages
            .as_slice()
            .iter()
            .position(|m| m.status == Status::Dead)
            .map(|ix| {
                format!(
                    "message {ix} ({}) is dead-lettered: it can never be acknowledged",
                    describe_event(&state.messages.as_slice()[ix].event())
                )
            }),
        Prop::PricesConverge if model.config.variant.checks_version() => lost_ticket_version(state),
        Prop::ReservationsConverge => frozen_wrong_reservation(state),
        _ => None,
    }
}

/// Whether a copy of an event matching `wanted` can still be delivered or applied.
fn event_alive(state: &State, wanted: impl Fn(&Event) -> bool) -> bool {
    let messages = state.messages.as_slice();
    messages
        .iter()
        .any(|m| wanted(&m.event()) && matches!(m.status, Status::Pending | Status::InFlight))
        || state
            .outboxes
            .iter()
            .any(|outbox| outbox.as_slice().iter().any(&wanted))
        || state.members.iter().flatten().any(|member| match member {
            Member::Busy { message, step, .. } => {
                wanted(&messages[usize::from(*message)].event())
                    || matches!(step, Step::Publish { event } if wanted(event))
            }
            Member::Idle => false,
        })
}

fn lost_ticket_version(state: &State) -> Option<String> {
    for (t, primary) in state.tickets.as_slice().iter().enumerate() {
        let ticket = t as u8;
        let Some(replica) = state.replicas[t] else {
            let alive = event_alive(
                state,
                |e| matches!(e, Event::TicketCreated { ticket: et, .. } if *et == ticket),
            );
            if !alive {
                return Some(format!(
                    "ticket {t} has no replica and no copy of its ticket:created is left"
                ));
            }
            continue;
        };
        for version in replica.version + 1..=primary.version {
            let alive = event_alive(state, |e| {
                matches!(e, Event::TicketUpdated { ticket: et, version: ev, .. }
                    if *et == ticket && *ev == version)
            });
            if !alive {
                return Some(format!(
                    "ticket {t}'s replica is at v{} and no copy of the ticket:updated for v{version} \
                     is left: it can never reach the primary's v{}",
                    replica.version, primary.version
                ));
            }
        }
    }
    None
}

fn frozen_wrong_reservation(state: &State) -> Option<String> {
    if !state.reservation_requests.is_empty() {
        // A request between its check and its insert will still create an order.
        return None;
    }
    (0..state.tickets.len() as u8).find_map(|ticket| {
        // A converged ticket is not doomed: no need to look for its order events (this runs
        // for every state of a proof).
        if ticket_reservation_converged(state, ticket) {
            return None;
        }
        let alive = event_alive(state, |e| {
            matches!(e, Event::OrderCreated { ticket: et, .. } | Event::OrderCancelled { ticket: et, .. }
                if *et == ticket)
        });
        (!alive).then(|| {
            format!(
                "ticket {ticket} names {} while its active orders are [{}], and no order event \
                 is left to change that",
                state.tickets.as_slice()[usize::from(ticket)]
                    .order
                    .map_or("no order".into(), |o| format!("order {o}")),
                state
                    .active_orders(ticket)
                    .map(|o| format!("order {o}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    })
}

fn replica_fidelity(state: &State) -> bool {
    state
        .tickets
        .as_slice()
        .iter()
        .enumerate()
        .all(|(ticket, primary)| match state.replicas[ticket] {
            None => true,
            Some(replica) => {
                replica.version <= primary.version
                    && replica.price == state.price_at(ticket as u8, replica.version)
            }
        })
}

fn single_reservation(state: &State) -> bool {
    (0..state.tickets.len() as u8).all(|ticket| state.active_orders(ticket).count() <= 1)
}

/// Property 5, in SPEC.md's words: in every state, every acknowledged event's effect is in
/// the store now (or superseded by a later version of the same record).
fn acked_means_applied(state: &State) -> bool {
    acked_but_not_in_store(state).is_none()
}

/// The first acknowledged message whose effect the store does not hold now.
fn acked_but_not_in_store(state: &State) -> Option<usize> {
    acknowledged(state)
        .find(|(_, event)| !(effect_written(&state.ghost, *event) && store_holds(state, *event)))
        .map(|(ix, _)| ix)
}

/// The acknowledged messages, with their events.
fn acknowledged(state: &State) -> impl Iterator<Item = (usize, Event)> + '_ {
    state
        .messages
        .as_slice()
        .iter()
        .enumerate()
        .filter(|(_, message)| message.status == Status::Acked)
        .map(|(ix, message)| (ix, message.event()))
}

/// Whether some delivery wrote `event`'s effect: the ghost's bit for the version a ticket
/// event brings its ticket to, or for the reservation change an order event carries.
fn effect_written(ghost: &Ghost, event: Event) -> bool {
    match event {
        Event::TicketCreated { ticket, .. } => {
            ghost.ticket_events_applied[usize::from(ticket)] & 1 != 0
        }
        Event::TicketUpdated {
            ticket, version, ..
        } => ghost.ticket_events_applied[usize::from(ticket)] & (1 << version) != 0,
        Event::OrderCreated {
            ticket,
            reservation,
            ..
        }
        | Event::OrderCancelled {
            ticket,
            reservation,
            ..
        } => ghost.order_events_applied[usize::from(ticket)] & (1 << reservation) != 0,
    }
}

/// Whether the store holds `event`'s effect now, or a later version of the same record:
/// - a ticket event: the replica is at the event's version with its price, or past it (a
///   write that took the replica back below it undid the effect);
/// - an order event, where the design numbers them: the ticket has applied its reservation
///   change or a later one. Without the numbers (`unordered-order-events`, `course`) the
///   ticket keeps no trace of which change it applied; every write of a ticket moves it to a
///   later version (property 2 checks that), so a written effect is there or superseded.
fn store_holds(state: &State, event: Event) -> bool {
    match event {
        Event::TicketCreated { ticket, .. } => state.replicas[usize::from(ticket)].is_some(),
        Event::TicketUpdated {
            ticket,
            version,
            price,
            ..
        } => state.replicas[usize::from(ticket)].is_some_and(|replica| {
            replica.version > version || (replica.version == version && replica.price == price)
        }),
        Event::OrderCreated {
            ticket,
            reservation,
            ..
        }
        | Event::OrderCancelled {
            ticket,
            reservation,
            ..
        } => state
            .tickets
            .get(usize::from(ticket))
            .is_some_and(|primary| {
                // A design without the numbers never stores one: its count stays 0.
                primary.reservation >= reservation || primary.reservation == 0
            }),
    }
}

/// Every primary has a replica with its version and price.
fn prices_converged(state: &State) -> bool {
    state
        .tickets
        .as_slice()
        .iter()
        .enumerate()
        .all(|(ticket, primary)| {
            state.replicas[ticket].is_some_and(|replica| {
                replica.version == primary.version && replica.price == primary.price
            })
        })
}

/// Each ticket's order names its active order, or none if it has none.
fn reservations_converged(state: &State) -> bool {
    (0..state.tickets.len() as u8).all(|ticket| ticket_reservation_converged(state, ticket))
}

fn ticket_reservation_converged(state: &State, ticket: u8) -> bool {
    let primary = state.tickets.as_slice()[usize::from(ticket)];
    let mut active = state.active_orders(ticket);
    match (active.next(), active.next()) {
        (None, _) => primary.order.is_none(),
        (Some(order), None) => primary.order == Some(order),
        (Some(_), Some(_)) => false,
    }
}

/// Every message acknowledged, none dead, nothing waiting to be published.
fn nothing_stuck(state: &State) -> bool {
    state
        .messages
        .as_slice()
        .iter()
        .all(|message| message.status == Status::Acked)
        && state.outboxes.iter().all(|outbox| outbox.is_empty())
}

/// A one-line summary of why `prop` fails in `state` (for counterexample reports).
pub fn explain(prop: Prop, model: &TicketingModel, state: &State) -> String {
    if let Some(reason) = doomed(prop, model, state) {
        return reason;
    }
    match prop {
        Prop::ReplicaFidelity => explain_replica_fidelity(state),
        Prop::VersionMonotonicity => "a record's version decreased".into(),
        Prop::SingleReservation => explain_single_reservation(state),
        Prop::ReservedTicketsFrozen => {
            "a ticket's price changed while its orderId named an order".into()
        }
        Prop::AckedMeansApplied => acked_but_not_in_store(state)
            .map(|ix| {
                format!(
                    "message {ix} ({}) was acknowledged but its effect is not in the store \
                     (never written, or undone by a later write)",
                    describe_event(&state.messages.as_slice()[ix].event())
                )
            })
            .unwrap_or_default(),
        Prop::PricesConverge => explain_prices_converge(state),
        Prop::ReservationsConverge => explain_reservations_converge(state),
        Prop::NothingStuck => explain_nothing_stuck(state),
    }
}

/// The first replica whose price is not its primary's at the replica's version.
fn explain_replica_fidelity(state: &State) -> String {
    (0..state.tickets.len())
        .find_map(|t| {
            let replica = state.replicas[t]?;
            let primary = state.price_at(t as u8, replica.version);
            (replica.price != primary).then(|| {
                format!(
                    "replica of ticket {t} is at version {} with price {}, but the primary had price {primary} at version {}",
                    replica.version, replica.price, replica.version
                )
            })
        })
        .unwrap_or_else(|| "a replica is ahead of its primary".into())
}

/// The first ticket with more than one active order.
fn explain_single_reservation(state: &State) -> String {
    (0..state.tickets.len() as u8)
        .find(|t| state.active_orders(*t).count() > 1)
        .map(|t| {
            let orders: Vec<String> = state
                .active_orders(t)
                .map(|o| format!("order {o}"))
                .collect();
            format!(
                "ticket {t} has {} active orders: {}",
                orders.len(),
                orders.join(", ")
            )
        })
        .unwrap_or_default()
}

/// The first ticket whose replica is missing or differs from its primary.
fn explain_prices_converge(state: &State) -> String {
    (0..state.tickets.len())
        .find_map(|t| {
            let primary = state.tickets.as_slice()[t];
            match state.replicas[t] {
                None => Some(format!("nothing left to do, but ticket {t} has no replica")),
                Some(r) if r.version != primary.version || r.price != primary.price => Some(format!(
                    "nothing left to do, but ticket {t}'s replica is at version {} price {} while the primary is at version {} price {}",
                    r.version, r.price, primary.version, primary.price
                )),
                Some(_) => None,
            }
        })
        .unwrap_or_default()
}

/// The first ticket whose `order` does not name its active order.
fn explain_reservations_converge(state: &State) -> String {
    (0..state.tickets.len())
        .find_map(|t| {
            let primary = state.tickets.as_slice()[t];
            let active: Vec<String> = state
                .active_orders(t as u8)
                .map(|o| format!("order {o}"))
                .collect();
            let converged = match active.len() {
                0 => primary.order.is_none(),
                1 => primary.order.map(|o| format!("order {o}")) == active.first().cloned(),
                _ => false,
            };
            (!converged).then(|| {
                format!(
                    "nothing left to do, but ticket {t} names {} while its active orders are [{}]",
                    primary
                        .order
                        .map_or("no order".into(), |o| format!("order {o}")),
                    active.join(", ")
                )
            })
        })
        .unwrap_or_default()
}

/// Every message not acknowledged, and where it stands.
fn explain_nothing_stuck(state: &State) -> String {
    let stuck: Vec<String> = state
        .messages
        .as_slice()
        .iter()
        .enumerate()
        .filter(|(_, m)| m.status != Status::Acked)
        .map(|(ix, m)| format!("message {ix} ({}) is {:?}", m.event().subject(), m.status))
        .collect();
    format!("nothing left to do, but {}", stuck.join("; "))
}
