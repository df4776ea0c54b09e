//! Property 5 at the API: every write a client was told succeeded is in the final state.
//!
//! The invariant: only answered requests count as evidence; a request with no answer may or
//! may not have landed, and the check does not guess which.

use std::collections::{HashMap, HashSet};

use ticketing::id::Id;
use ticketing::records::OrderStatus;

use super::answers::{OrderSeen, TicketSeen, parse};
use super::{Findings, Verdict};
use crate::soak::quiesce::FinalState;
use crate::soak::workload::{Entry, RequestKind};

/// Property 5 at the API: every acknowledged write is in the final state.
///
/// - Every ticket created (201) exists.
/// - Acknowledged edits (200) of one ticket returned distinct versions (no lost update), the
///   ticket's version is at least the highest of them, and, when no edit of it went
///   unanswered, exactly its acknowledged edits plus its reservation changes (each counted
///   once), with the title and price of its highest-versioned acknowledged write.
/// - Every order created (201) exists, on its ticket, for its user; an order whose cancel was
///   acknowledged (204) is cancelled; one with no cancel sent that may have landed is active.
pub fn acknowledged_writes_kept(history: &[Entry], state: &FinalState) -> Verdict {
    let mut findings = Findings::default();
    let acknowledged = Acknowledged::read(history, &mut findings);
    let exact = acknowledged
        .created
        .iter()
        .filter(|(id, first)| acknowledged.ticket_kept(**id, first, state, &mut findings))
        .count();
    for (id, placed) in &acknowledged.orders {
        acknowledged.order_kept(*id, *placed, state, &mut findings);
    }
    findings.verdict(
        "acknowledged writes kept",
        "property 5, at the API",
        format!(
            "{} tickets created, {} edits acknowledged ({exact} tickets accounted exactly), \
             {} orders created, {} cancels acknowledged",
            acknowledged.created.len(),
            acknowledged.edits.values().map(Vec::len).sum::<usize>(),
            acknowledged.orders.len(),
            acknowledged.cancelled.len()
        ),
    )
}

/// Who placed an order (the client's index) and on which ticket, as its request said.
type Placed = (usize, Option<Id>);

/// What the clients were told succeeded, and what may have landed unanswered.
#[derive(Default)]
struct Acknowledged {
    /// Tickets created (201), as answered.
    created: HashMap<Id, TicketSeen>,
    /// Edits acknowledged (200), per ticket, as answered.
    edits: HashMap<Id, Vec<TicketSeen>>,
    /// Tickets with an edit that got no answer (it may have landed).
    unknown_edits: HashSet<Id>,
    /// Orders created (201).
    orders: HashMap<Id, Placed>,
    /// Orders whose cancel was acknowledged (204).
    cancelled: HashSet<Id>,
    /// Orders with a cancel that got no answer.
    maybe_cancelled: HashSet<Id>,
}

impl Acknowledged {
    /// Reads the history's successful answers (and the unanswered writes); an answer that
    /// does not parse, or an order answered for another user or ticket, is a finding.
    fn read(history: &[Entry], findings: &mut Findings) -> Self {
        let mut acknowledged = Self::default();
        let mut malformed = 0usize;
        for entry in history {
            let parsed = match (entry.kind, entry.status) {
                (RequestKind::CreateTicket, Some(201)) => parse::<TicketSeen>(entry)
                    .map(|ticket| acknowledged.created.insert(ticket.id, ticket))
                    .is_some(),
                (RequestKind::UpdateTicket, Some(200)) => parse::<TicketSeen>(entry)
                    .map(|ticket| {
                        acknowledged
                            .edits
                            .entry(ticket.id)
                            .or_default()
                            .push(ticket)
                    })
                    .is_some(),
                (RequestKind::UpdateTicket, _) if entry.unknown() => {
                    acknowledged.unknown_edits.extend(entry.ticket);
                    true
                }
                (RequestKind::CreateOrder, Some(201)) => parse::<OrderSeen>(entry)
                    .map(|order| acknowledged.order_created(entry, order, findings))
                    .is_some(),
                (RequestKind::CancelOrder, Some(204)) => {
                    acknowledged.cancelled.extend(entry.order);
                    true
                }
                (RequestKind::CancelOrder, _) if entry.unknown() => {
                    acknowledged.maybe_cancelled.extend(entry.order);
                    true
                }
                _ => true,
            };
            malformed += usize::from(!parsed);
        }
        if malformed > 0 {
            findings.push(|| format!("{malformed} successful answers did not parse"));
        }
        acknowledged
    }

    /// An order created (201): answered for its client and on its ticket.
    fn order_created(&mut self, entry: &Entry, order: OrderSeen, findings: &mut Findings) {
        if order.user_id != format!("soak-client-{}", entry.client) {
            findings.push(|| format!("order {} answered for user {}", order.id, order.user_id));
        }
        if order.ticket.as_ref().map(|ticket| ticket.id) != entry.ticket {
            findings.push(|| format!("order {} answered with another ticket", order.id));
        }
        self.orders.insert(order.id, (entry.client, entry.ticket));
    }

    /// Ticket `id`, created as `first`, keeps every acknowledged edit; whether it could be
    /// accounted exactly (no edit of it went unanswered).
    fn ticket_kept(
        &self,
        id: Id,
        first: &TicketSeen,
        state: &FinalState,
        findings: &mut Findings,
    ) -> bool {
        let Some(ticket) = state.tickets.get(&id) else {
            findings.push(|| format!("ticket {id} was created (201) and is gone"));
            return false;
        };
        let acknowledged = self.edits.get(&id).map(Vec::as_slice).unwrap_or_default();
        let mut versions: Vec<u64> = acknowledged.iter().map(|edit| edit.version).collect();
        versions.sort_unstable();
        if let Some(pair) = versions.windows(2).find(|pair| pair[0] == pair[1]) {
            findings.push(|| {
                format!(
                    "ticket {id}: two acknowledged edits both answered version {}",
                    pair[0]
                )
            });
        }
        let latest = acknowledged
            .iter()
            .max_by_key(|edit| edit.version)
            .unwrap_or(first);
        if ticket.version < latest.version {
            findings.push(|| {
                format!(
                    "ticket {id}: an edit acknowledged version {}, the store has v{}",
                    latest.version, ticket.version
                )
            });
        }
        if self.unknown_edits.contains(&id) {
            return false;
        }
        let expected_version = acknowledged.len() as u64 + ticket.reservation;
        if ticket.version != expected_version {
            findings.push(|| {
                format!(
                    "ticket {id}: v{} after {} acknowledged edits and {} reservation changes",
                    ticket.version,
                    acknowledged.len(),
                    ticket.reservation
                )
            });
        }
        if *ticket.title != *latest.title || ticket.price != latest.price {
            findings.push(|| {
                format!(
                    "ticket {id}: {:?} at {}, but the last acknowledged write (v{}) set {:?} \
                     at {}",
                    ticket.title, ticket.price, latest.version, latest.title, latest.price
                )
            });
        }
        true
    }

    /// Order `id`, placed as `placed`, is stored on its ticket for its user, cancelled if its
    /// cancel was acknowledged, and active if no cancel was sent that may have landed.
    fn order_kept(&self, id: Id, placed: Placed, state: &FinalState, findings: &mut Findings) {
        let (client, ticket_id) = placed;
        let Some(order) = state.orders.get(&id) else {
            findings.push(|| format!("order {id} was created (201) and is gone"));
            return;
        };
        if Some(order.ticket_id) != ticket_id
            || order.user_id.as_str() != format!("soak-client-{client}")
        {
            findings.push(|| format!("order {id} is stored on another ticket or user"));
        }
        if self.cancelled.contains(&id) && order.status != OrderStatus::Cancelled {
            findings.push(|| {
                format!(
                    "order {id}: cancel acknowledged (204), status {}",
                    order.status.as_str()
                )
            });
        }
        let maybe = self.cancelled.contains(&id) || self.maybe_cancelled.contains(&id);
        if !maybe && !order.status.is_active() {
            findings.push(|| {
                format!(
                    "order {id}: never cancelled, status {}",
                    order.status.as_str()
                )
            });
        }
    }
}
