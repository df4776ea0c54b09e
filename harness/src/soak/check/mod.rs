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
//!
//! One file per kind of evidence: [`final_state`] (properties 1, 3, 6, 7 and 8 on the
//! quiescent final state), [`acknowledged`] (property 5: the clients' acknowledged writes
//! against the final state), [`history`] (properties 2 and 4, and the HTTP answers, from the
//! clients' history alone), [`broker`] (idempotent publish, from the publish log and faults).

use std::fmt;

use super::faults::FaultLog;
use super::quiesce::{FinalState, Quiescence};
use super::system::Counts;
use super::workload::Entry;

mod acknowledged;
mod answers;
mod broker;
mod final_state;
mod history;
#[cfg(test)]
mod tests;

pub use acknowledged::acknowledged_writes_kept;
pub use broker::publish_ids_deduplicate;
pub use final_state::{
    nothing_stuck, replicas_equal_primaries, reservations_converge, single_reservation,
};
pub use history::{http_answers, reserved_tickets_frozen, versions_monotonic};

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
