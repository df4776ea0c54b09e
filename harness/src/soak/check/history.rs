//! Properties 2 and 4, and the HTTP answers, from the clients' history alone.
//!
//! The invariant: an ordering between two observations is claimed only when one request
//! finished before the other started.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ticketing::id::Id;

use super::answers::{OrderSeen, ReplicaSeen, TicketSeen, parse};
use super::{Findings, Verdict};
use crate::soak::workload::{Entry, RequestKind};

/// One observation of a record's version, with when it was made.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seen {
    pub(super) started: Duration,
    pub(super) finished: Duration,
    pub(super) version: u64,
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
pub(super) fn regression(seen: &[Seen]) -> Option<(Seen, Seen)> {
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
