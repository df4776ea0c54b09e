//! Properties 1, 3, 6, 7 and 8, checked on the quiescent final state (stores, broker).
//!
//! The invariant: the final state is read only once the system is quiescent, so equality
//! with the primary is what fidelity at the replica's version means there.

use std::collections::{HashMap, HashSet};

use ticketing::bus::DeadLetterReason;
use ticketing::id::Id;
use ticketing::records::OrderStatus;

use super::{Findings, Verdict};
use crate::soak::quiesce::{FinalState, Quiescence};
use crate::soak::system::Counts;

/// Properties 1 and 6: every ticket has a replica at its version with its title and price,
/// and every replica has a ticket.
pub fn replicas_equal_primaries(state: &FinalState) -> Verdict {
    let mut findings = Findings::default();
    for error in &state.errors {
        findings.push(|| format!("store unreadable: {error}"));
    }
    for ticket in state.tickets.values() {
        match state.replicas.get(&ticket.id) {
            None => findings
                .push(|| format!("ticket {} (v{}) has no replica", ticket.id, ticket.version)),
            Some(replica)
                if replica.version != ticket.version
                    || replica.title != ticket.title
                    || replica.price != ticket.price =>
            {
                findings.push(|| {
                    format!(
                        "ticket {}: primary v{} {:?} at {}, replica v{} {:?} at {}",
                        ticket.id,
                        ticket.version,
                        ticket.title,
                        ticket.price,
                        replica.version,
                        replica.title,
                        replica.price
                    )
                });
            }
            Some(_) => {}
        }
    }
    for replica in state.replicas.values() {
        if !state.tickets.contains_key(&replica.id) {
            findings.push(|| {
                format!(
                    "replica {} (v{}) has no ticket",
                    replica.id, replica.version
                )
            });
        }
    }
    findings.verdict(
        "replica fidelity and convergence",
        "properties 1, 6",
        format!(
            "{} tickets, {} replicas, compared on version, title and price",
            state.tickets.len(),
            state.replicas.len()
        ),
    )
}

/// Active orders per ticket.
fn active_orders(state: &FinalState) -> HashMap<Id, Vec<Id>> {
    let mut active: HashMap<Id, Vec<Id>> = HashMap::new();
    for order in state.orders.values() {
        if order.status.is_active() {
            active.entry(order.ticket_id).or_default().push(order.id);
        }
    }
    active
}

/// Property 3: at most one active order per ticket.
pub fn single_reservation(state: &FinalState) -> Verdict {
    let mut findings = Findings::default();
    let active = active_orders(state);
    for (ticket, orders) in &active {
        if orders.len() > 1 {
            findings.push(|| {
                format!(
                    "ticket {ticket} has {} active orders: {orders:?}",
                    orders.len()
                )
            });
        }
    }
    let ordered: HashSet<Id> = state.orders.values().map(|order| order.ticket_id).collect();
    findings.verdict(
        "single reservation",
        "property 3",
        format!(
            "{} orders on {} tickets, {} active",
            state.orders.len(),
            ordered.len(),
            active.values().map(Vec::len).sum::<usize>()
        ),
    )
}

/// Property 7: each ticket's `orderId` names its active order, or none; and both services
/// counted the same reservation changes, one per order created and one per order cancelled.
pub fn reservations_converge(state: &FinalState) -> Verdict {
    let mut findings = Findings::default();
    let active = active_orders(state);
    let mut changes: HashMap<Id, u64> = HashMap::new();
    for order in state.orders.values() {
        let per_order = if order.status == OrderStatus::Cancelled {
            2
        } else {
            1
        };
        *changes.entry(order.ticket_id).or_insert(0) += per_order;
    }
    let mut reserved = 0;
    for ticket in state.tickets.values() {
        let expected = active
            .get(&ticket.id)
            .and_then(|orders| orders.first().copied());
        reserved += usize::from(ticket.order_id.is_some());
        if ticket.order_id != expected {
            findings.push(|| {
                format!(
                    "ticket {} names order {}; its active order is {}",
                    ticket.id,
                    show(ticket.order_id),
                    show(expected)
                )
            });
        }
        let counted = state.reservations.get(&ticket.id).copied().unwrap_or(0);
        let made = changes.get(&ticket.id).copied().unwrap_or(0);
        if ticket.reservation != counted || counted != made {
            findings.push(|| {
                format!(
                    "ticket {}: the tickets service applied {} reservation changes, the orders \
                     service counted {counted}, its orders make {made}",
                    ticket.id, ticket.reservation
                )
            });
        }
    }
    findings.verdict(
        "reservations converge",
        "property 7",
        format!(
            "{} tickets: orderId against the active order, and both services' counts of \
             reservation changes against the orders ({reserved} reserved)",
            state.tickets.len()
        ),
    )
}

fn show(order: Option<Id>) -> String {
    order.map_or_else(|| "none".to_owned(), |id| id.to_string())
}

/// Property 8: the system quiesced (every event acknowledged, nothing pending) and nothing
/// was dead-lettered.
pub fn nothing_stuck(state: &FinalState, quiescence: &Quiescence, counts: &Counts) -> Verdict {
    let mut findings = Findings::default();
    if !quiescence.reached {
        findings.push(|| {
            format!(
                "not quiescent within {:?}: {}",
                quiescence.timeout, quiescence.last
            )
        });
    }
    for letter in &counts.dead_letters {
        findings.push(|| {
            let reason = match &letter.reason {
                DeadLetterReason::Terminated(why) => format!("terminated: {why}"),
                DeadLetterReason::MaxDeliveries(count) => format!("{count} deliveries"),
            };
            format!(
                "dead letter: {} stream seq {} {} ({reason}): {}",
                letter.queue_group,
                letter.stream_seq,
                letter.subject,
                String::from_utf8_lossy(&letter.payload)
            )
        });
    }
    for error in &state.errors {
        findings.push(|| format!("store unreadable: {error}"));
    }
    let summary = if quiescence.reached {
        format!(
            "quiescent {:.1} s after the clients stopped; {} dead letters",
            quiescence.waited.as_secs_f64(),
            counts.dead_letters.len()
        )
    } else {
        format!(
            "not quiescent within {} s; {} dead letters",
            quiescence.timeout.as_secs(),
            counts.dead_letters.len()
        )
    };
    findings.verdict("nothing stuck", "property 8", summary)
}
