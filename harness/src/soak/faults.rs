//! The fault schedule and the injector.
//!
//! The schedule is drawn from the seed before the run: `faults_per_kind` faults of each kind
//! chosen, at uniformly random times between 10 % and 85 % of the workload's duration (so the
//! first ones land on a warmed-up system and the last ones leave time for redeliveries before
//! the clients stop). Each fault's own choices (which group, member, crash point, delay, relay,
//! event) come from a second seeded generator, drawn in schedule order.
//!
//! What each fault is, and what it is not:
//! - `crash`: a member is armed to park its next delivery at a seeded point (before the
//!   handler, after the handler's write before it settles, or right after its first
//!   settlement); once a delivery parks there, the member's task is aborted (its handlers with
//!   it) and a replacement joins. The deliveries it held come back after the ack wait. The
//!   member's NATS connection survives (it is shared, as within one process); a process dying
//!   with its connection is `consumer-restart`.
//! - `late-ack`: a member's next delivery is held for the ack wait plus 0.25-1.5 s, either
//!   before its handler runs or between the handler's write and its settlement; the broker
//!   redelivers it meanwhile (the report counts deliveries that began while another delivery
//!   of the same event was still being handled).
//! - `duplicate`: an event published in the last minute is published again with its publish
//!   id (inside the stream's 2-minute duplicate window: the broker must drop it) and once
//!   without one (stored: the listeners must absorb it).
//! - `consumer-restart`: every member of one queue group is stopped (gracefully: it finishes
//!   its handlers and hands back what it never took; or killed) and as many join again on a
//!   new NATS connection, as a restarted service process would.
//! - `relay-restart`: a relay is stopped gracefully (it flushes), killed, or crashed between
//!   publishing and marking: killed, then one round run as `relay::relay_batch` runs it up to
//!   its `relay-after-publish-before-mark` fail point (a seeded batch of up to 16 pending
//!   entries published with their publish ids, none marked), then restarted, so the real relay
//!   publishes that batch again and the broker must drop it. The `fail` point itself is not
//!   used: it needs the `failpoints` feature in the harness's build of `ticketing`, and it is
//!   process-wide, so it would crash whichever relay reached it first, not the chosen one.
//!
//! The invariant: faults run one at a time, each bounded in time (a crash or late ack waits at
//! most [`ARM_WAIT`] for a delivery to take it), and only while the clients run; a fault due
//! after the workload ended is recorded as skipped, never injected into the quiescence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use ticketing::bus::PublishAck;
use ticketing::events::Subject;

use super::hooks::{CrashPoint, LatePoint, Plan};
use super::options::{FaultKind, Progress, SoakOptions};
use super::system::{GROUPS, RELAYS, RelayStop, System};
use super::workload::Issued;

/// How long an armed crash or late ack waits for one of the member's deliveries to take it.
pub const ARM_WAIT: Duration = Duration::from_secs(5);

/// How long a relay crash waits for its batch to be pending before crashing on what there is.
const PENDING_WAIT: Duration = Duration::from_secs(2);

/// The largest batch a crashed relay publishes and leaves unmarked (seeded, from 1).
const CRASH_BATCH_MAX: usize = 16;

/// How far past the ack wait a late delivery is held: between these bounds, seeded.
const LATE_BY_MIN: Duration = Duration::from_millis(250);
const LATE_BY_MAX: Duration = Duration::from_millis(1500);

/// Only events published this recently are republished with their id: well inside the
/// stream's duplicate window (2 minutes), so the broker must drop them.
const REPUBLISH_WITHIN: Duration = Duration::from_secs(60);

/// How often the injector prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// One scheduled fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// When, after the workload starts.
    pub at: Duration,
    /// What.
    pub kind: FaultKind,
}

/// The faults of a run, in time order.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Sorted by time.
    pub entries: Vec<Scheduled>,
}

impl Schedule {
    /// The schedule `options`' seed gives.
    pub fn new(options: &SoakOptions) -> Self {
        let mut rng = StdRng::seed_from_u64(options.fault_seed());
        let span = options.duration.as_millis() as u64;
        let (first, last) = (span / 10, span * 85 / 100);
        let mut entries = Vec::new();
        for kind in &options.faults {
            for _ in 0..options.faults_per_kind {
                let at = Duration::from_millis(rng.random_range(first..=last.max(first)));
                entries.push(Scheduled { at, kind: *kind });
            }
        }
        entries.sort_by_key(|entry| (entry.at, entry.kind));
        Self { entries }
    }
}

/// What one fault did.
#[derive(Clone, Debug)]
pub enum FaultDetail {
    /// A member aborted; `point` is where its parked delivery stood, `None` if no delivery
    /// reached the member within [`ARM_WAIT`] (it was aborted idle).
    Crash {
        /// The queue group's index.
        group: usize,
        /// Where the delivery was parked.
        point: Option<CrashPoint>,
    },
    /// A delivery held past the ack wait (`taken` false: no delivery came within
    /// [`ARM_WAIT`], the plan was withdrawn).
    LateAck {
        /// The queue group's index.
        group: usize,
        /// What was held.
        point: LatePoint,
        /// For how long.
        delay: Duration,
        /// Whether a delivery took it.
        taken: bool,
    },
    /// An event published again.
    Duplicate {
        /// Its subject.
        subject: Subject,
        /// The broker's answer to the republish with its publish id (`None`: it had none).
        with_id: Option<Result<PublishAck, String>>,
        /// The broker's answer to the republish without one.
        raw: Result<PublishAck, String>,
    },
    /// A whole queue group restarted on a new connection.
    ConsumerRestart {
        /// The queue group's index.
        group: usize,
        /// Whether its members were asked to stop gracefully.
        graceful: bool,
    },
    /// A relay restarted.
    RelayRestart {
        /// The relay's index.
        relay: usize,
        /// How it was stopped.
        how: RelayStop,
        /// Entries published and left unmarked by the crash (republished by the restart).
        unmarked: usize,
    },
    /// Due after the workload ended: not injected.
    Skipped,
    /// Could not be injected.
    Failed(String),
}

/// One fault as it happened.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    /// What was scheduled.
    pub scheduled: Scheduled,
    /// When it was injected, after the workload started.
    pub injected_at: Duration,
    /// What it did.
    pub detail: FaultDetail,
}

/// Every fault of a run.
#[derive(Clone, Debug, Default)]
pub struct FaultLog {
    /// One record per scheduled fault, in schedule order.
    pub records: Vec<FaultRecord>,
    /// Whether the workload was cut short by Ctrl-C.
    pub interrupted: bool,
}

impl FaultLog {
    /// Faults of `kind` actually injected.
    pub fn injected(&self, kind: FaultKind) -> usize {
        self.records
            .iter()
            .filter(|record| record.scheduled.kind == kind && record.injected())
            .count()
    }

    /// Faults of `kind` scheduled.
    pub fn scheduled(&self, kind: FaultKind) -> usize {
        self.records
            .iter()
            .filter(|record| record.scheduled.kind == kind)
            .count()
    }

    /// Entries the crashed relays published and left unmarked, in total.
    pub fn unmarked(&self) -> usize {
        self.records
            .iter()
            .map(|record| match record.detail {
                FaultDetail::RelayRestart { unmarked, .. } => unmarked,
                _ => 0,
            })
            .sum()
    }

    /// How many records of `kind` have each label (crash point, mode, ...), for the report.
    pub fn breakdown(&self, kind: FaultKind) -> BTreeMap<String, usize> {
        let mut labels = BTreeMap::new();
        for record in self
            .records
            .iter()
            .filter(|record| record.scheduled.kind == kind)
        {
            *labels.entry(record.label()).or_insert(0) += 1;
        }
        labels
    }
}

impl FaultRecord {
    /// Whether the fault was injected (neither skipped nor failed, and a late ack taken).
    pub fn injected(&self) -> bool {
        match &self.detail {
            FaultDetail::Skipped | FaultDetail::Failed(_) => false,
            FaultDetail::LateAck { taken, .. } => *taken,
            _ => true,
        }
    }

    /// A short label for the report.
    pub fn label(&self) -> String {
        match &self.detail {
            FaultDetail::Crash { group, point } => format!(
                "{} {}",
                GROUPS[*group],
                point.map_or("idle (no delivery within 5 s)", CrashPoint::name)
            ),
            FaultDetail::LateAck {
                group,
                point,
                taken,
                ..
            } => {
                if *taken {
                    format!("{} {}", GROUPS[*group], point.name())
                } else {
                    format!("{} not taken (no delivery within 5 s)", GROUPS[*group])
                }
            }
            FaultDetail::Duplicate { with_id, raw, .. } => {
                let with_id = match with_id {
                    Some(Ok(PublishAck::Duplicate)) => "with id dropped",
                    Some(Ok(PublishAck::Stored { .. })) => "with id STORED",
                    Some(Err(_)) => "with id failed",
                    None => "no id",
                };
                let raw = match raw {
                    Ok(PublishAck::Stored { .. }) => "raw stored",
                    Ok(PublishAck::Duplicate) => "raw dropped",
                    Err(_) => "raw failed",
                };
                format!("{with_id}, {raw}")
            }
            FaultDetail::ConsumerRestart { group, graceful } => format!(
                "{} {}",
                GROUPS[*group],
                if *graceful { "graceful" } else { "killed" }
            ),
            FaultDetail::RelayRestart { relay, how, .. } => {
                format!("{} {}", RELAYS[*relay], how.name())
            }
            FaultDetail::Skipped => "skipped (workload over)".to_owned(),
            FaultDetail::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// Injects `schedule` into `system` while the workload runs, until the workload's duration
/// is over, the request budget is spent (`budget_spent`), or Ctrl-C (when `progress` is the
/// command line's). Returns what each fault did.
pub async fn inject(
    system: &mut System,
    schedule: &Schedule,
    options: &SoakOptions,
    started: Instant,
    issued: &Arc<Issued>,
    progress: Progress,
    budget_spent: &CancellationToken,
) -> FaultLog {
    let mut rng = StdRng::seed_from_u64(options.fault_seed().wrapping_add(1));
    let interrupt = CancellationToken::new();
    if progress == Progress::Stderr {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping the clients, then checking what ran");
                interrupt.cancel();
            }
        });
    }
    let end = started + options.duration;
    let mut ticker = Ticker {
        started,
        next: started + PROGRESS_EVERY,
        progress,
        issued: Arc::clone(issued),
        scheduled: schedule.entries.len(),
    };
    let mut log = FaultLog::default();
    let mut over = false;
    for entry in &schedule.entries {
        if !over {
            let due = (started + entry.at).min(end);
            over = !ticker
                .wait_until(due, budget_spent, &interrupt, system, log.records.len())
                .await
                || Instant::now() >= end;
        }
        let detail = if over {
            FaultDetail::Skipped
        } else {
            inject_one(system, entry.kind, options, &mut rng).await
        };
        log.records.push(FaultRecord {
            scheduled: *entry,
            injected_at: started.elapsed(),
            detail,
        });
    }
    if !over {
        ticker
            .wait_until(end, budget_spent, &interrupt, system, log.records.len())
            .await;
    }
    log.interrupted = interrupt.is_cancelled();
    log
}

/// Prints a progress line every [`PROGRESS_EVERY`] while waiting.
struct Ticker {
    started: Instant,
    next: Instant,
    progress: Progress,
    issued: Arc<Issued>,
    scheduled: usize,
}

impl Ticker {
    /// Waits until `deadline`; false if the workload ended first (budget spent, Ctrl-C).
    async fn wait_until(
        &mut self,
        deadline: Instant,
        budget_spent: &CancellationToken,
        interrupt: &CancellationToken,
        system: &System,
        faults_done: usize,
    ) -> bool {
        loop {
            let wake = deadline.min(self.next);
            tokio::select! {
                () = budget_spent.cancelled() => return false,
                () = interrupt.cancelled() => return false,
                () = tokio::time::sleep_until(wake) => {}
            }
            if Instant::now() >= self.next {
                self.print(system, faults_done);
                self.next += PROGRESS_EVERY;
            }
            if Instant::now() >= deadline {
                return true;
            }
        }
    }

    fn print(&self, system: &System, faults_done: usize) {
        if self.progress != Progress::Stderr {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let issued = self.issued.0.load(Ordering::Relaxed);
        let published: u64 = system.publish_log().stored_total();
        eprintln!(
            "[{elapsed:5.1} s] requests {issued} ({:.0}/s), faults {faults_done}/{}, events \
             published {published}, handlers running {}",
            issued as f64 / elapsed.max(0.001),
            self.scheduled,
            system.stats().in_flight(),
        );
    }
}

async fn inject_one(
    system: &mut System,
    kind: FaultKind,
    options: &SoakOptions,
    rng: &mut StdRng,
) -> FaultDetail {
    match kind {
        FaultKind::Crash => crash(system, rng).await,
        FaultKind::LateAck => late_ack(system, options, rng).await,
        FaultKind::Duplicate => duplicate(system, rng).await,
        FaultKind::ConsumerRestart => {
            let group = rng.random_range(0..GROUPS.len());
            let graceful = rng.random_bool(0.5);
            match system.restart_group(group, graceful).await {
                Ok(_) => FaultDetail::ConsumerRestart { group, graceful },
                Err(error) => FaultDetail::Failed(format!("restart {}: {error}", GROUPS[group])),
            }
        }
        FaultKind::RelayRestart => {
            let relay = rng.random_range(0..RELAYS.len());
            let how = [
                RelayStop::Graceful,
                RelayStop::Killed,
                RelayStop::CrashAfterPublish,
            ][rng.random_range(0..3)];
            let batch = rng.random_range(1..=CRASH_BATCH_MAX);
            match system.restart_relay(relay, how, batch, PENDING_WAIT).await {
                Ok(unmarked) => FaultDetail::RelayRestart {
                    relay,
                    how,
                    unmarked,
                },
                Err(why) => FaultDetail::Failed(format!("restart relay {}: {why}", RELAYS[relay])),
            }
        }
    }
}

/// Picks a member, arms it to park its next delivery at a seeded crash point, waits for a
/// delivery to park there (at most [`ARM_WAIT`]), then aborts the member and replaces it.
async fn crash(system: &mut System, rng: &mut StdRng) -> FaultDetail {
    let group = rng.random_range(0..GROUPS.len());
    let member = rng.random_range(0..system.members(group).max(1));
    let point = CrashPoint::ALL[rng.random_range(0..CrashPoint::ALL.len())];
    let Some(hooks) = system.hooks(group, member) else {
        return FaultDetail::Failed(format!("{} has no member {member}", GROUPS[group]));
    };
    let (parked_tx, parked_rx) = oneshot::channel();
    hooks.arm(Plan::Crash {
        point,
        parked: parked_tx,
    });
    let parked = matches!(tokio::time::timeout(ARM_WAIT, parked_rx).await, Ok(Ok(())));
    // A delivery may take the plan right after the wait: it parks, and the abort crashes it.
    let parked = parked || !hooks.disarm();
    match system.crash_member(group, member).await {
        Ok(()) => FaultDetail::Crash {
            group,
            point: parked.then_some(point),
        },
        Err(error) => FaultDetail::Failed(format!("replace a {} member: {error}", GROUPS[group])),
    }
}

/// Picks a member and arms it to hold its next delivery past the ack wait.
async fn late_ack(system: &mut System, options: &SoakOptions, rng: &mut StdRng) -> FaultDetail {
    let group = rng.random_range(0..GROUPS.len());
    let member = rng.random_range(0..system.members(group).max(1));
    let point = if rng.random_bool(0.5) {
        LatePoint::BeforeHandler
    } else {
        LatePoint::BeforeSettle
    };
    let late_by = rng.random_range(LATE_BY_MIN.as_millis()..=LATE_BY_MAX.as_millis());
    let delay = options.ack_wait + Duration::from_millis(late_by as u64);
    let Some(hooks) = system.hooks(group, member) else {
        return FaultDetail::Failed(format!("{} has no member {member}", GROUPS[group]));
    };
    let (taken_tx, taken_rx) = oneshot::channel();
    hooks.arm(Plan::Late {
        point,
        delay,
        taken: taken_tx,
    });
    let taken = matches!(tokio::time::timeout(ARM_WAIT, taken_rx).await, Ok(Ok(())));
    let taken = taken || !hooks.disarm();
    FaultDetail::LateAck {
        group,
        point,
        delay,
        taken,
    }
}

/// Publishes a recently published event again: with its publish id (the broker must drop
/// it), then without (the listeners must absorb it).
async fn duplicate(system: &mut System, rng: &mut StdRng) -> FaultDetail {
    let since = Instant::now()
        .checked_sub(REPUBLISH_WITHIN)
        .unwrap_or_else(Instant::now);
    let recent = system.publish_log().recent_since(since);
    if recent.is_empty() {
        return FaultDetail::Failed("nothing published yet".to_owned());
    }
    let chosen = &recent[rng.random_range(0..recent.len())];
    let with_id = match &chosen.publish_id {
        Some(id) => Some(
            system
                .republish(&chosen.event, Some(id))
                .await
                .map_err(|error| error.to_string()),
        ),
        None => None,
    };
    let raw = system
        .republish(&chosen.event, None)
        .await
        .map_err(|error| error.to_string());
    FaultDetail::Duplicate {
        subject: chosen.event.subject(),
        with_id,
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_seeds_and_stays_inside_the_workload() {
        let mut options = SoakOptions::new(7);
        options.duration = Duration::from_secs(60);
        options.faults_per_kind = 3;
        let schedule = Schedule::new(&options);
        assert_eq!(schedule.entries.len(), 3 * FaultKind::ALL.len());
        assert_eq!(schedule.entries, Schedule::new(&options).entries);
        assert!(
            schedule
                .entries
                .windows(2)
                .all(|pair| pair[0].at <= pair[1].at)
        );
        assert!(schedule.entries.iter().all(|entry| {
            entry.at >= Duration::from_secs(6) && entry.at <= Duration::from_secs(51)
        }));
        for kind in FaultKind::ALL {
            assert_eq!(
                schedule
                    .entries
                    .iter()
                    .filter(|entry| entry.kind == kind)
                    .count(),
                3
            );
        }
        options.seed = 8;
        assert_ne!(schedule.entries, Schedule::new(&options).entries);
    }

    #[test]
    fn no_faults_no_schedule() {
        let mut options = SoakOptions::new(7);
        options.faults.clear();
        assert!(Schedule::new(&options).entries.is_empty());
    }
}
