//! What a soak run reports: where it ran, what the clients did, which faults were injected,
//! what the broker and the listeners saw, the final state, and each property's verdict.
//!
//! The invariant: the report is built from the run's own records only (the history, the
//! fault log, the counters, the final state); it never re-reads the servers, which are gone
//! by the time it is printed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ticketing::events::Subject;
use ticketing::records::OrderStatus;

use super::check::{Status, Verdict};
use super::faults::FaultLog;
use super::options::{FaultKind, SoakOptions};
use super::quiesce::{FinalState, Quiescence};
use super::system::{Counts, GROUPS};
use super::workload::{Entry, RequestKind};

/// The status columns of the request table.
const COLUMNS: [&str; 7] = ["2xx", "400", "401", "404", "4xx", "5xx", "none"];

fn column(status: Option<u16>) -> usize {
    match status {
        Some(200..=299) => 0,
        Some(400) => 1,
        Some(401) => 2,
        Some(404) => 3,
        Some(402..=499) => 4,
        Some(_) => 5,
        None => 6,
    }
}

/// The requests, counted by kind and status.
#[derive(Clone, Debug, Default)]
pub struct HistorySummary {
    /// Per kind, per status column.
    pub by_kind: BTreeMap<RequestKind, [usize; 7]>,
    /// Every request.
    pub total: usize,
}

impl HistorySummary {
    /// Counts `history`.
    pub fn of(history: &[Entry]) -> Self {
        let mut summary = Self::default();
        for entry in history {
            summary.by_kind.entry(entry.kind).or_insert([0; 7])[column(entry.status)] += 1;
            summary.total += 1;
        }
        summary
    }

    /// Requests of `kind` answered 2xx.
    pub fn succeeded(&self, kind: RequestKind) -> usize {
        self.by_kind.get(&kind).map_or(0, |columns| columns[0])
    }
}

/// The final state, counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct StateSummary {
    /// Tickets.
    pub tickets: usize,
    /// Tickets naming an order.
    pub reserved: usize,
    /// Replicas.
    pub replicas: usize,
    /// Orders.
    pub orders: usize,
    /// Orders not cancelled.
    pub active: usize,
    /// Cancelled orders.
    pub cancelled: usize,
}

impl StateSummary {
    /// Counts `state`.
    pub fn of(state: &FinalState) -> Self {
        Self {
            tickets: state.tickets.len(),
            reserved: state
                .tickets
                .values()
                .filter(|ticket| ticket.order_id.is_some())
                .count(),
            replicas: state.replicas.len(),
            orders: state.orders.len(),
            active: state
                .orders
                .values()
                .filter(|order| order.status.is_active())
                .count(),
            cancelled: state
                .orders
                .values()
                .filter(|order| order.status == OrderStatus::Cancelled)
                .count(),
        }
    }
}

/// Everything a run reports.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// The run's parameters.
    pub options: SoakOptions,
    /// How long the clients ran.
    pub workload_time: Duration,
    /// The requests, counted.
    pub history: HistorySummary,
    /// The faults.
    pub faults: FaultLog,
    /// The broker's and the listeners' counts.
    pub counts: Counts,
    /// How waiting for quiescence went.
    pub quiescence: Quiescence,
    /// The final state, counted.
    pub state: StateSummary,
    /// Each property's verdict.
    pub verdicts: Vec<Verdict>,
    /// The process's resident memory, sampled from the clients' start to quiescence.
    pub memory: Vec<super::memory::Sample>,
    /// The whole run, setup and teardown included.
    pub total_time: Duration,
}

impl SoakReport {
    /// Whether every property holds.
    pub fn all_hold(&self) -> bool {
        self.verdicts
            .iter()
            .all(|verdict| verdict.status == Status::Holds)
    }

    /// The verdict named `name`, if any.
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|verdict| verdict.name == name)
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_setup(f)?;
        self.write_workload(f)?;
        self.write_faults(f)?;
        self.write_events(f)?;
        self.write_final_state(f)?;
        self.write_memory(f)?;
        self.write_verdicts(f)
    }
}

/// The report's sections, in the order it prints them.
impl SoakReport {
    /// The resident memory over the run (first, highest, last, and every sample).
    fn write_memory(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(first), Some(last)) = (self.memory.first(), self.memory.last()) else {
            return Ok(());
        };
        let highest = self
            .memory
            .iter()
            .map(|s| s.resident_bytes)
            .max()
            .unwrap_or(0);
        let mib = super::memory::mib;
        writeln!(
            f,
            "resident memory: {:.1} MiB at the start, {:.1} MiB at the highest, {:.1} MiB at \
             the end; every {} s: {}",
            mib(first.resident_bytes),
            mib(highest),
            mib(last.resident_bytes),
            super::memory::SAMPLE_EVERY.as_secs(),
            self.memory
                .iter()
                .map(|s| format!("{:.0}", mib(s.resident_bytes)))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }

    /// Where it ran, and the system's parameters.
    fn write_setup(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.options;
        let backends = &self.counts.backends;
        writeln!(
            f,
            "backends: NATS {}, stream {}; PostgreSQL {} (schemas tickets, orders); both \
             removed after the run",
            backends.nats, backends.stream, backends.database
        )?;
        writeln!(
            f,
            "system: variant {}, {} members per queue group, ack wait {} ms, max deliver {}, {} \
             clients, seed {}",
            options.variant,
            options.members,
            options.ack_wait.as_millis(),
            options.max_deliver,
            options.clients,
            options.seed
        )?;
        Ok(())
    }

    /// The clients' requests, by kind and status.
    fn write_workload(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.workload_time.as_secs_f64();
        writeln!(
            f,
            "workload: {seconds:.1} s{}, {} requests ({:.0}/s)",
            if self.faults.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            self.history.total,
            self.history.total as f64 / seconds.max(0.001)
        )?;
        write!(f, "  {:<14}{:>7}", "request", "total")?;
        for name in COLUMNS {
            write!(f, "{name:>7}")?;
        }
        writeln!(f)?;
        for kind in RequestKind::ALL {
            let columns = self.history.by_kind.get(&kind).copied().unwrap_or([0; 7]);
            write!(
                f,
                "  {:<14}{:>7}",
                kind.name(),
                columns.iter().sum::<usize>()
            )?;
            for count in columns {
                write!(f, "{count:>7}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }

    /// The faults, injected of scheduled, with what each came to.
    fn write_faults(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.options;
        if options.faults.is_empty() {
            writeln!(f, "faults: none")?;
        } else {
            writeln!(f, "faults (injected/scheduled):")?;
        }
        for kind in FaultKind::ALL {
            let scheduled = self.faults.scheduled(kind);
            if scheduled == 0 && !options.faults.contains(&kind) {
                continue;
            }
            let breakdown = self
                .faults
                .breakdown(kind)
                .into_iter()
                .map(|(label, count)| format!("{label} x{count}"))
                .collect::<Vec<_>>()
                .join("; ");
            writeln!(
                f,
                "  {:<17}{:>3}/{:<3} {breakdown}",
                kind.name(),
                self.faults.injected(kind),
                scheduled
            )?;
        }
        Ok(())
    }

    /// What the broker stored, and what the members did with it.
    fn write_events(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = &self.counts;
        let published: u64 = counts.published.iter().sum();
        let by_subject = Subject::ALL
            .iter()
            .zip(counts.published)
            .map(|(subject, count)| format!("{subject} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            f,
            "events: {published} stored, as acknowledged to the system's publishers \
             ({by_subject}); {} publishes dropped as duplicates of their publish id; {} failed \
             (retried)",
            counts.publish_duplicates, counts.publish_failures
        )?;
        if let Some(last) = counts
            .consumers
            .iter()
            .flatten()
            .map(|state| state.ack_floor_stream_seq)
            .max()
        {
            writeln!(
                f,
                "  the stream's last sequence at the end: {last} (the raw duplicates, and any \
                 publish a killed relay sent without seeing its ack, are in the stream too)"
            )?;
        }
        writeln!(
            f,
            "deliveries: {} handled ({} {}, {} {}); {} redeliveries (delivery count > 1); {} \
             began while another delivery of the same event was still being handled",
            counts.handled.iter().sum::<u64>(),
            GROUPS[0],
            counts.handled[0],
            GROUPS[1],
            counts.handled[1],
            counts.redeliveries,
            counts.overlapping
        )?;
        for (index, group) in GROUPS.iter().enumerate() {
            let outcomes = counts
                .outcomes
                .iter()
                .filter(|((g, _), _)| *g == index)
                .map(|((_, name), count)| format!("{name} {count}"))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(f, "  {group} outcomes: {outcomes}")?;
        }
        writeln!(f, "dead letters: {}", counts.dead_letters.len())?;
        for (group, consumer) in GROUPS.iter().zip(&counts.consumers) {
            match consumer {
                Some(state) => writeln!(
                    f,
                    "consumer {group} at the end: {} pending, {} unacknowledged, ack floor at \
                     stream seq {}",
                    state.num_pending, state.num_ack_pending, state.ack_floor_stream_seq
                )?,
                None => writeln!(f, "consumer {group} at the end: unreadable")?,
            }
        }
        Ok(())
    }

    /// The final state, and how quiescence went.
    fn write_final_state(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = &self.state;
        writeln!(
            f,
            "final state: {} tickets ({} reserved), {} replicas, {} orders ({} active, {} \
             cancelled)",
            state.tickets,
            state.reserved,
            state.replicas,
            state.orders,
            state.active,
            state.cancelled
        )?;
        if self.quiescence.reached {
            writeln!(
                f,
                "quiescence: reached {:.1} s after the clients stopped",
                self.quiescence.waited.as_secs_f64()
            )?;
        } else {
            writeln!(
                f,
                "quiescence: NOT reached within {} s; last seen: {}",
                self.quiescence.timeout.as_secs(),
                self.quiescence.last
            )?;
        }
        Ok(())
    }

    /// Each property's verdict, the run's, and how to rerun it.
    fn write_verdicts(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "properties:")?;
        for verdict in &self.verdicts {
            write!(f, "{verdict}")?;
        }
        let violated = self
            .verdicts
            .iter()
            .filter(|verdict| verdict.status == Status::Violated)
            .count();
        if violated == 0 {
            writeln!(
                f,
                "verdict: all {} properties hold (run took {:.1} s in all)",
                self.verdicts.len(),
                self.total_time.as_secs_f64()
            )?;
        } else {
            writeln!(
                f,
                "verdict: {violated} of {} properties VIOLATED (run took {:.1} s in all)",
                self.verdicts.len(),
                self.total_time.as_secs_f64()
            )?;
        }
        write!(
            f,
            "rerun (same choices and fault schedule; the interleaving is the machine's): {}",
            self.options.rerun_command()
        )
    }
}
