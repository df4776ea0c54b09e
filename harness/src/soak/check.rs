//! SPEC.md's properties, checked on the quiescent final state and on the clients' history.
//!
//! What each check can and cannot see:
//! - Properties 1 and 6-8 (replica fidelity, convergence, nothing stuck) are checked on the
//!   final state, which the soak reads only once the system is quiescent: there, fidelity at
//!   the replica's version is equality with the primary.
//! - Property 3 (single reservation) on the final state: every order ever created is in the
//!   store, so two active orders would still be there.
//! - Property 2 (version monotonicity) as the clients observed it: a read or write that
//!   started after another finished never shows an older version of the same record.
//! - Property 4 (reserved tickets frozen) as far as the history shows it: no acknowledged edit
//!   answered with a ticket that names an order (the window SPEC.md accepts, between an
//!   order's creation and the tickets service applying it, is not observable from outside).
//! - Property 5 (acknowledged means applied) at the API: every write a client was told
//!   succeeded is in the final state, each edit exactly once (versions count them).
//! - Idempotent publish: a republish with the event's publish id inside the duplicate window
//!   is dropped by the broker, and a relay that crashed after publishing had its batch
//!   dropped when it published it again.
//!
//! The invariant: a check reports a violation only on evidence (a record, an entry), quoting
//! it; where the history cannot decide (a request with no answer), it does not guess.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use ticketing::bus::{DeadLetterReason, PublishAck};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::OrderStatus;

use super::faults::{FaultDetail, FaultLog};
use super::quiesce::{FinalState, Quiescence};
use super::system::Counts;
use super::workload::{Entry, RequestKind};

/// How many examples a violated property quotes.
const EXAMPLES_MAX: usize = 5;

/// A property's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It holds.
    Holds,
    /// It is violated (examples quoted).
    Violated,
}

/// One property, checked.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Its name.
    pub name: &'static str,
    /// Where SPEC.md states it.
    pub spec: &'static str,
    /// Holds or not.
    pub status: Status,
    /// What was checked, counted.
    pub summary: String,
    /// Up to five (`EXAMPLES_MAX`) violations, quoted.
    pub examples: Vec<String>,
    /// How many violations in all.
    pub violations: usize,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.status {
            Status::Holds => "HOLDS   ",
            Status::Violated => "VIOLATED",
        };
        writeln!(
            f,
            "  {mark} {} ({}): {}",
            self.name, self.spec, self.summary
        )?;
        for example in &self.examples {
            writeln!(f, "           - {example}")?;
        }
        if self.violations > self.examples.len() {
            writeln!(
                f,
                "           ... and {} more",
                self.violations - self.examples.len()
            )?;
        }
        Ok(())
    }
}

/// Violations found by one check.
#[derive(Default)]
struct Findings {
    examples: Vec<String>,
    count: usize,
}

impl Findings {
    fn push(&mut self, example: impl FnOnce() -> String) {
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
        self.count += 1;
    }

    fn verdict(self, name: &'static str, spec: &'static str, summary: String) -> Verdict {
        Verdict {
            name,
            spec,
            status: if self.count == 0 {
                Status::Holds
            } else {
                Status::Violated
            },
            summary,
            examples: self.examples,
            violations: self.count,
        }
    }
}

/// Every check, in report order.
pub fn all(
    history: &[Entry],
    state: &FinalState,
    quiescence: &Quiescence,
    counts: &Counts,
    faults: &FaultLog,
) -> Vec<Verdict> {
    vec![
        replicas_equal_primaries(state),
        single_reservation(state),
        reservations_converge(state),
        nothing_stuck(state, quiescence, counts),
        acknowledged_writes_kept(history, state),
        versions_monotonic(history),
        reserved_tickets_frozen(history),
        publish_ids_deduplicate(counts, faults),
        http_answers(history),
    ]
}

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

/// A ticket as the tickets service answered it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TicketSeen {
    id: Id,
    title: String,
    price: Price,
    version: u64,
    #[serde(default)]
    order_id: Option<Id>,
}

/// A replica as the orders service answered it (alone, or inside an order).
#[derive(Clone, Debug, Deserialize)]
struct ReplicaSeen {
    id: Id,
    version: u64,
}

/// An order as the orders service answered it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderSeen {
    id: Id,
    user_id: String,
    ticket: Option<ReplicaSeen>,
}

fn parse<T: for<'de> Deserialize<'de>>(entry: &Entry) -> Option<T> {
    serde_json::from_value(entry.response.clone()).ok()
}

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
    let mut created: HashMap<Id, TicketSeen> = HashMap::new();
    let mut edits: HashMap<Id, Vec<TicketSeen>> = HashMap::new();
    let mut unknown_edits: HashSet<Id> = HashSet::new();
    let mut orders: HashMap<Id, (usize, Option<Id>)> = HashMap::new();
    let mut cancelled: HashSet<Id> = HashSet::new();
    let mut maybe_cancelled: HashSet<Id> = HashSet::new();
    let mut malformed = 0usize;
    for entry in history {
        match (entry.kind, entry.status) {
            (RequestKind::CreateTicket, Some(201)) => match parse::<TicketSeen>(entry) {
                Some(ticket) => {
                    created.insert(ticket.id, ticket);
                }
                None => malformed += 1,
            },
            (RequestKind::UpdateTicket, Some(200)) => match parse::<TicketSeen>(entry) {
                Some(ticket) => edits.entry(ticket.id).or_default().push(ticket),
                None => malformed += 1,
            },
            (RequestKind::UpdateTicket, _) if entry.unknown() => {
                unknown_edits.extend(entry.ticket);
            }
            (RequestKind::CreateOrder, Some(201)) => match parse::<OrderSeen>(entry) {
                Some(order) => {
                    orders.insert(order.id, (entry.client, entry.ticket));
                    if order.user_id != format!("soak-client-{}", entry.client) {
                        findings.push(|| {
                            format!("order {} answered for user {}", order.id, order.user_id)
                        });
                    }
                    if order.ticket.as_ref().map(|ticket| ticket.id) != entry.ticket {
                        findings
                            .push(|| format!("order {} answered with another ticket", order.id));
                    }
                }
                None => malformed += 1,
            },
            (RequestKind::CancelOrder, Some(204)) => {
                cancelled.extend(entry.order);
            }
            (RequestKind::CancelOrder, _) if entry.unknown() => {
                maybe_cancelled.extend(entry.order);
            }
            _ => {}
        }
    }
    if malformed > 0 {
        findings.push(|| format!("{malformed} successful answers did not parse"));
    }
    let mut exact = 0usize;
    for (id, first) in &created {
        let Some(ticket) = state.tickets.get(id) else {
            findings.push(|| format!("ticket {id} was created (201) and is gone"));
            continue;
        };
        let acknowledged = edits.get(id).map(Vec::as_slice).unwrap_or_default();
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
        if unknown_edits.contains(id) {
            continue;
        }
        exact += 1;
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
    }
    for (id, (client, ticket_id)) in &orders {
        let Some(order) = state.orders.get(id) else {
            findings.push(|| format!("order {id} was created (201) and is gone"));
            continue;
        };
        if Some(order.ticket_id) != *ticket_id
            || order.user_id.as_str() != format!("soak-client-{client}")
        {
            findings.push(|| format!("order {id} is stored on another ticket or user"));
        }
        if cancelled.contains(id) && order.status != OrderStatus::Cancelled {
            findings.push(|| {
                format!(
                    "order {id}: cancel acknowledged (204), status {}",
                    order.status.as_str()
                )
            });
        }
        if !cancelled.contains(id) && !maybe_cancelled.contains(id) && !order.status.is_active() {
            findings.push(|| {
                format!(
                    "order {id}: never cancelled, status {}",
                    order.status.as_str()
                )
            });
        }
    }
    findings.verdict(
        "acknowledged writes kept",
        "property 5, at the API",
        format!(
            "{} tickets created, {} edits acknowledged ({exact} tickets accounted exactly), \
             {} orders created, {} cancels acknowledged",
            created.len(),
            edits.values().map(Vec::len).sum::<usize>(),
            orders.len(),
            cancelled.len()
        ),
    )
}

/// One observation of a record's version, with when it was made.
#[derive(Clone, Copy, Debug)]
struct Seen {
    started: Duration,
    finished: Duration,
    version: u64,
}

/// Property 2 as the clients saw it: per ticket, separately for the primary and the replica,
/// an observation that started after another finished shows a version at least as high.
pub fn versions_monotonic(history: &[Entry]) -> Verdict {
    let mut primary: HashMap<Id, Vec<Seen>> = HashMap::new();
    let mut replica: HashMap<Id, Vec<Seen>> = HashMap::new();
    for entry in history {
        let seen = |version| Seen {
            started: entry.started,
            finished: entry.finished,
            version,
        };
        match (entry.kind, entry.status) {
            (
                RequestKind::CreateTicket | RequestKind::UpdateTicket | RequestKind::ShowTicket,
                Some(200 | 201),
            ) => {
                if let Some(ticket) = parse::<TicketSeen>(entry) {
                    primary
                        .entry(ticket.id)
                        .or_default()
                        .push(seen(ticket.version));
                }
            }
            (RequestKind::ShowReplica, Some(200)) => {
                if let Some(seen_replica) = parse::<ReplicaSeen>(entry) {
                    replica
                        .entry(seen_replica.id)
                        .or_default()
                        .push(seen(seen_replica.version));
                }
            }
            (RequestKind::CreateOrder, Some(201)) => {
                if let Some(ticket) = parse::<OrderSeen>(entry).and_then(|order| order.ticket) {
                    replica
                        .entry(ticket.id)
                        .or_default()
                        .push(seen(ticket.version));
                }
            }
            _ => {}
        }
    }
    let mut findings = Findings::default();
    let mut observations = 0;
    for (store, records) in [("ticket", &primary), ("replica", &replica)] {
        for (id, seen) in records {
            observations += seen.len();
            if let Some((earlier, later)) = regression(seen) {
                findings.push(|| {
                    format!(
                        "{store} {id}: v{} seen by a request finished at {:.3} s, v{} by one \
                         started at {:.3} s",
                        earlier.version,
                        earlier.finished.as_secs_f64(),
                        later.version,
                        later.started.as_secs_f64()
                    )
                });
            }
        }
    }
    findings.verdict(
        "version monotonicity, as observed",
        "property 2",
        format!("{observations} observations of ticket and replica versions, in real-time order"),
    )
}

/// The first pair where an observation started after another finished and shows an older
/// version.
fn regression(seen: &[Seen]) -> Option<(Seen, Seen)> {
    let mut by_finish = seen.to_vec();
    by_finish.sort_by_key(|s| s.finished);
    let mut by_start = seen.to_vec();
    by_start.sort_by_key(|s| s.started);
    let mut highest: Option<Seen> = None;
    let mut next = 0;
    for later in by_start {
        while next < by_finish.len() && by_finish[next].finished < later.started {
            if highest.is_none_or(|h| by_finish[next].version > h.version) {
                highest = Some(by_finish[next]);
            }
            next += 1;
        }
        if let Some(earlier) = highest
            && later.version < earlier.version
        {
            return Some((earlier, later));
        }
    }
    None
}

/// Property 4 as the history shows it: no acknowledged edit answered with a reserved ticket.
pub fn reserved_tickets_frozen(history: &[Entry]) -> Verdict {
    let mut findings = Findings::default();
    let mut acknowledged = 0;
    let mut refused = 0;
    for entry in history
        .iter()
        .filter(|e| e.kind == RequestKind::UpdateTicket)
    {
        match entry.status {
            Some(200) => {
                acknowledged += 1;
                if let Some(ticket) = parse::<TicketSeen>(entry)
                    && let Some(order) = ticket.order_id
                {
                    findings.push(|| {
                        format!(
                            "ticket {} edited to v{} while order {order} holds it",
                            ticket.id, ticket.version
                        )
                    });
                }
            }
            Some(400) if error_message(entry) == Some("Cannot edit a reserved ticket") => {
                refused += 1;
            }
            _ => {}
        }
    }
    findings.verdict(
        "reserved tickets frozen, as observed",
        "property 4",
        format!(
            "{acknowledged} edits acknowledged, checked for an orderId; {refused} refused as \
             reserved"
        ),
    )
}

fn error_message(entry: &Entry) -> Option<&str> {
    entry
        .response
        .get("errors")?
        .get(0)?
        .get("message")?
        .as_str()
}

/// Idempotent publish: republishes with a publish id were dropped; no publish id was stored
/// twice; every entry a crashed relay left unmarked was published again and dropped.
pub fn publish_ids_deduplicate(counts: &Counts, faults: &FaultLog) -> Verdict {
    let mut findings = Findings::default();
    let mut dropped = 0;
    let mut raw = 0;
    for record in &faults.records {
        if let FaultDetail::Duplicate {
            subject,
            with_id,
            raw: raw_result,
        } = &record.detail
        {
            match with_id {
                Some(Ok(PublishAck::Duplicate)) => dropped += 1,
                Some(Ok(PublishAck::Stored { seq })) => findings.push(|| {
                    format!(
                        "{subject} republished with its publish id was stored again (seq {seq})"
                    )
                }),
                Some(Err(why)) => findings.push(|| format!("republishing {subject} failed: {why}")),
                None => {}
            }
            if matches!(raw_result, Ok(PublishAck::Stored { .. })) {
                raw += 1;
            }
        }
    }
    for id in &counts.stored_twice {
        findings.push(|| format!("publish id {id} stored twice"));
    }
    let unmarked = faults.unmarked() as u64;
    if counts.publish_duplicates < unmarked {
        findings.push(|| {
            format!(
                "crashed relays left {unmarked} entries published and unmarked; only {} \
                 republishes were dropped as duplicates",
                counts.publish_duplicates
            )
        });
    }
    findings.verdict(
        "publish ids deduplicate",
        "idempotent publish, section 1",
        format!(
            "{dropped} republishes with their id dropped; {unmarked} entries republished by \
             restarted relays, {} relay publishes dropped; {raw} raw duplicates left to the \
             listeners",
            counts.publish_duplicates
        ),
    )
}

/// The HTTP side needs no fault: every request is answered, and never with a server error.
pub fn http_answers(history: &[Entry]) -> Verdict {
    let mut findings = Findings::default();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for entry in history {
        let status = entry
            .status
            .map_or_else(|| "no answer".to_owned(), |status| status.to_string());
        *by_status.entry(status).or_insert(0) += 1;
        if entry.unknown() {
            findings.push(|| {
                format!(
                    "{} at {:.3} s: {} {}",
                    entry.kind.name(),
                    entry.started.as_secs_f64(),
                    entry
                        .status
                        .map_or_else(|| "no answer".to_owned(), |status| status.to_string()),
                    entry.response
                )
            });
        }
    }
    findings.verdict(
        "every request answered, no server error",
        "section 1, HTTP API",
        format!("{} requests", history.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use ticketing::records::{Order, Ticket, TicketReplica, Timestamp, UserId};

    fn seen(started: u64, finished: u64, version: u64) -> Seen {
        Seen {
            started: Duration::from_millis(started),
            finished: Duration::from_millis(finished),
            version,
        }
    }

    #[test]
    fn a_version_seen_after_a_newer_one_finished_is_a_regression() {
        assert!(regression(&[seen(0, 10, 3), seen(20, 30, 2)]).is_some());
        // Overlapping requests may see either order.
        assert!(regression(&[seen(0, 25, 3), seen(20, 30, 2)]).is_none());
        assert!(regression(&[seen(0, 10, 1), seen(20, 30, 2), seen(40, 50, 2)]).is_none());
    }

    fn price(cents: u64) -> Price {
        Price::from_cents(cents).unwrap()
    }

    fn ticket(id: Id, version: u64, cents: u64, order_id: Option<Id>, reservation: u64) -> Ticket {
        Ticket {
            id,
            title: "t".into(),
            price: price(cents),
            user_id: UserId::new("soak-client-0"),
            version,
            order_id,
            reservation,
        }
    }

    fn replica(id: Id, version: u64, cents: u64) -> TicketReplica {
        TicketReplica {
            id,
            title: "t".into(),
            price: price(cents),
            version,
        }
    }

    fn order(id: Id, ticket_id: Id, status: OrderStatus) -> Order {
        Order {
            id,
            user_id: UserId::new("soak-client-1"),
            status,
            expires_at: Timestamp::from_unix_millis(0),
            ticket_id,
            version: 0,
        }
    }

    fn entry(
        kind: RequestKind,
        ticket: Option<Id>,
        status: u16,
        response: serde_json::Value,
    ) -> Entry {
        Entry {
            client: 0,
            kind,
            ticket,
            order: None,
            body: None,
            started: Duration::ZERO,
            finished: Duration::from_millis(1),
            status: Some(status),
            response,
        }
    }

    #[test]
    fn a_replica_behind_its_ticket_is_reported() {
        let id = Id::new();
        let mut state = FinalState::default();
        state.tickets.insert(id, ticket(id, 2, 500, None, 0));
        state.replicas.insert(id, replica(id, 2, 500));
        assert_eq!(replicas_equal_primaries(&state).status, Status::Holds);
        state.replicas.insert(id, replica(id, 1, 400));
        let verdict = replicas_equal_primaries(&state);
        assert_eq!(verdict.status, Status::Violated);
        assert!(verdict.examples[0].contains("replica v1"), "{verdict}");
    }

    #[test]
    fn two_active_orders_and_a_stale_order_id_are_reported() {
        let (t, a, b) = (Id::new(), Id::new(), Id::new());
        let mut state = FinalState::default();
        state.tickets.insert(t, ticket(t, 3, 500, Some(a), 3));
        state.orders.insert(a, order(a, t, OrderStatus::Cancelled));
        state.orders.insert(b, order(b, t, OrderStatus::Created));
        state.reservations.insert(t, 3);
        assert_eq!(single_reservation(&state).status, Status::Holds);
        let verdict = reservations_converge(&state);
        assert_eq!(verdict.status, Status::Violated, "{verdict}");
        state.tickets.insert(t, ticket(t, 3, 500, Some(b), 3));
        assert_eq!(reservations_converge(&state).status, Status::Holds);
        state.orders.insert(a, order(a, t, OrderStatus::Created));
        assert_eq!(single_reservation(&state).status, Status::Violated);
    }

    #[test]
    fn an_acknowledged_edit_missing_from_the_store_is_reported() {
        let id = Id::new();
        let created = json!({"id": id.to_string(), "title": "t", "price": 5, "version": 0});
        let edited = json!({"id": id.to_string(), "title": "t", "price": 6, "version": 1});
        let history = vec![
            entry(RequestKind::CreateTicket, None, 201, created),
            entry(RequestKind::UpdateTicket, Some(id), 200, edited),
        ];
        let mut state = FinalState::default();
        state.tickets.insert(id, ticket(id, 1, 600, None, 0));
        assert_eq!(
            acknowledged_writes_kept(&history, &state).status,
            Status::Holds
        );
        // The edit lost: the store still has the creation.
        state.tickets.insert(id, ticket(id, 0, 500, None, 0));
        let verdict = acknowledged_writes_kept(&history, &state);
        assert_eq!(verdict.status, Status::Violated, "{verdict}");
        // Version right, price of another write.
        state.tickets.insert(id, ticket(id, 1, 700, None, 0));
        assert_eq!(
            acknowledged_writes_kept(&history, &state).status,
            Status::Violated
        );
    }

    #[test]
    fn an_edit_answered_with_an_order_id_is_reported() {
        let id = Id::new();
        let order = Id::new();
        let reserved = json!({
            "id": id.to_string(), "title": "t", "price": 6, "version": 2,
            "orderId": order.to_string()
        });
        let history = vec![entry(RequestKind::UpdateTicket, Some(id), 200, reserved)];
        assert_eq!(reserved_tickets_frozen(&history).status, Status::Violated);
    }
}
