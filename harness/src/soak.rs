//! `harness soak`: a randomized concurrent workload against the real backends (NATS JetStream
//! and PostgreSQL), with faults injected at seeded random times, checked against SPEC.md's
//! properties (section 3) on the final state and on the recorded history.
//!
//! The invariant this module keeps: a run leaves nothing behind on the shared servers (its
//! stream and its database are its own, made fresh and removed at the end), and it says
//! "all properties hold" only after the system has been seen quiescent (outboxes empty,
//! consumers with nothing pending or unacknowledged, no handler running, stores no longer
//! changing), never after a fixed sleep.
//!
//! # What runs
//!
//! The real services (tickets and orders, the reference variant unless `--variant` says
//! otherwise) on `JetStreamBus` and `PgStore`, assembled as `ticketing serve` assembles them
//! (`ticketing::services::app::serve`: the HTTP router, here on `127.0.0.1:0`, in front of
//! the `Supervisor` of `--members` members per queue group and one outbox relay per service);
//! `--clients` clients drive it over HTTP with reqwest. The soak adds only hooks: around every
//! delivery ([`hooks`]: counting, and the fault injector's crash and late plans), around every
//! publish ([`publish_log`]), and the fault operations as steps of the supervisor ([`system`]:
//! stop, crash and start members and relays one at a time).
//!
//! # Determinism
//!
//! The seed fixes each client's choices (which request, which of its tickets or orders, which
//! price) and the fault schedule (when, which kind, which member, which crash point). It does
//! not fix the interleaving: the backends and the two cores decide that, and the targets a
//! client picks from the shared pool of tickets depend on what was created by then. A rerun
//! with the same seed is the same experiment, not the same execution.
//!
//! # Layout
//!
//! In dependency order: each module uses only modules listed before it.
//!
//! - [`options`]: the run's parameters, fault kinds, the loopback-only rule, where progress
//!   goes, and why a run could not start.
//! - [`memory`]: the process's resident memory, sampled over the run.
//! - [`hooks`]: the hooks on every member's deliveries: counting, crash and late plans.
//! - [`publish_log`]: the counting publisher the services publish through.
//! - [`system`]: the system under soak (`app::serve` with those hooks), the fault operations
//!   on its supervisor, fresh backends per run, the run's counts.
//! - [`workload`]: the clients and the history they record.
//! - [`faults`]: the seeded schedule and how each fault is injected.
//! - [`quiesce`]: waiting until nothing moves, and reading the final state.
//! - [`check`]: the properties, each with a verdict.
//! - [`report`]: what a run prints.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use ticketing::variant::Variant;

pub mod check;
pub mod faults;
pub mod hooks;
pub mod memory;
pub mod options;
pub mod publish_log;
pub mod quiesce;
pub mod report;
pub mod system;
pub mod workload;

pub use options::{FaultKind, Progress, SoakError, SoakOptions};
pub use report::SoakReport;

/// Options of `harness soak`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Servers must be on the loopback interface (127.0.0.0/8, ::1, localhost, or a Unix socket): \
the soak creates and deletes a JetStream stream and a PostgreSQL database on them. \
--allow-remote lifts that restriction.

Exit status: 0 when every property holds, 1 when one is violated, 2 when the run could not \
start (a server unreachable, a refused URL).

The seed fixes each client's choices and the fault schedule, not the interleaving: a rerun with \
the same seed repeats the experiment, not the execution.")]
pub struct SoakArgs {
    /// NATS server with JetStream (loopback only unless --allow-remote).
    #[arg(long, env = "NATS_URL", default_value = ticketing::bus::jetstream::DEFAULT_NATS_URL)]
    pub bus: String,
    /// PostgreSQL server; a fresh database is made on it for the run and dropped after it
    /// (loopback only unless --allow-remote).
    #[arg(long, env = "DATABASE_URL", default_value = ticketing::testkit::DEFAULT_DATABASE_URL)]
    pub store: String,
    /// How long the clients run, in seconds (then the system quiesces and is checked).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Faults to inject, comma-separated, or `none`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "crash,late-ack,duplicate,consumer-restart,relay-restart"
    )]
    pub faults: Vec<FaultChoice>,
    /// How many faults of each kind, at seeded random times (default: one per 10 s of
    /// --duration, at least one).
    #[arg(long)]
    pub faults_per_kind: Option<u32>,
    /// The seed (default: a random one, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Members in each queue group.
    #[arg(long, default_value_t = 4)]
    pub members: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// The design variant the services run (SPEC.md section 2): reference, naive-version, ...
    #[arg(long, default_value = "reference")]
    pub variant: Variant,
    /// The queue groups' ack wait, in milliseconds (short, so late acks and crashes are
    /// redelivered within the run).
    #[arg(long, default_value_t = 2000)]
    pub ack_wait_ms: u64,
    /// Deliveries of one event before it is dead-lettered (the services' default).
    #[arg(long, default_value_t = 10)]
    pub max_deliver: u32,
    /// Requests in total, across clients, after which the clients stop even if time is left.
    #[arg(long, default_value_t = 200_000)]
    pub max_requests: u64,
    /// How long, in seconds, the system may take to quiesce once the clients stop.
    #[arg(long, default_value_t = 90)]
    pub quiesce_timeout: u64,
    /// Accept servers that are not on the loopback interface.
    #[arg(long)]
    pub allow_remote: bool,
}

/// One `--faults` item: a fault kind, or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultChoice {
    /// A member aborted while it holds a delivery, and replaced.
    Crash,
    /// A delivery settled later than the ack wait, so it is redelivered meanwhile.
    LateAck,
    /// An event published again, with its publish id and without one.
    Duplicate,
    /// A whole queue group's members stopped or killed, and restarted on a new connection.
    ConsumerRestart,
    /// A relay stopped, killed, or crashed between publishing and marking, and restarted.
    RelayRestart,
    /// No faults.
    None,
}

impl SoakArgs {
    /// The run these arguments describe (a random seed if none was given).
    pub fn options(&self) -> SoakOptions {
        let faults: Vec<FaultKind> = self
            .faults
            .iter()
            .filter_map(|choice| match choice {
                FaultChoice::Crash => Some(FaultKind::Crash),
                FaultChoice::LateAck => Some(FaultKind::LateAck),
                FaultChoice::Duplicate => Some(FaultKind::Duplicate),
                FaultChoice::ConsumerRestart => Some(FaultKind::ConsumerRestart),
                FaultChoice::RelayRestart => Some(FaultKind::RelayRestart),
                FaultChoice::None => None,
            })
            .collect();
        let mut options = SoakOptions::new(self.seed.unwrap_or_else(rand::random));
        options.bus_url = self.bus.clone();
        options.store_url = self.store.clone();
        options.duration = Duration::from_secs(self.duration);
        options.faults = faults;
        options.faults_per_kind = self
            .faults_per_kind
            .unwrap_or_else(|| options::default_faults_per_kind(options.duration));
        options.members = self.members;
        options.clients = self.clients;
        options.variant = self.variant;
        options.ack_wait = Duration::from_millis(self.ack_wait_ms);
        options.max_deliver = self.max_deliver;
        options.max_requests = self.max_requests;
        options.quiesce_timeout = Duration::from_secs(self.quiesce_timeout);
        options.allow_remote = self.allow_remote;
        options
    }
}

/// Runs `harness soak`: builds a runtime, soaks, prints the report. 0 iff every property
/// holds; 1 if one is violated; 2 if the run could not start.
pub fn run(args: SoakArgs) -> ExitCode {
    init_logging();
    let options = args.options();
    if let Err(error) = options.validate() {
        eprintln!("harness soak: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("harness soak: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    println!(
        "harness soak: seed {} (rerun: {})",
        options.seed,
        options.rerun_command()
    );
    match runtime.block_on(soak(options, Progress::Stderr)) {
        Ok(report) => {
            println!("{report}");
            if report.all_hold() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("harness soak: {error}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr at `RUST_LOG` (default: errors only, since the faults make the services
/// warn by design and the report counts what matters).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// One soak run: assembles the system on fresh namespaces of the servers, drives it with the
/// clients while the faults are injected, waits for quiescence, checks the properties, tears
/// everything down, and reports. Progress lines go where `progress` says.
pub async fn soak(options: SoakOptions, progress: Progress) -> Result<SoakReport, SoakError> {
    options.validate()?;
    let run_started = tokio::time::Instant::now();
    let mut system = system::System::start(&options).await?;
    let issued = Arc::new(workload::Issued::default());
    let stop_clients = CancellationToken::new();
    let budget_spent = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let stop_sampling = CancellationToken::new();
    let sampler = memory::spawn_sampler(started, progress, stop_sampling.clone());
    let clients = workload::spawn_clients(
        &options,
        system.base_url(),
        system.sessions().clone(),
        Arc::clone(&issued),
        stop_clients.clone(),
        budget_spent.clone(),
        started,
    );
    let schedule = faults::Schedule::new(&options);
    let fault_log = faults::inject(
        &mut system,
        &schedule,
        &options,
        started,
        &issued,
        progress,
        &budget_spent,
    )
    .await;
    stop_clients.cancel();
    let history = workload::join_clients(clients).await;
    let workload_time = started.elapsed();
    if progress == Progress::Stderr {
        eprintln!(
            "[{:5.1} s] clients stopped after {} requests; waiting for quiescence (at most {} s)",
            workload_time.as_secs_f64(),
            history.len(),
            options.quiesce_timeout.as_secs()
        );
    }
    let quiescence = quiesce::wait(&system, options.quiesce_timeout).await;
    let state = quiesce::read_state(&system).await;
    let counts = system.counts().await;
    stop_sampling.cancel();
    let memory = sampler.await.unwrap_or_default();
    system.shutdown().await;
    let verdicts = check::all(&history, &state, &quiescence, &counts, &fault_log);
    Ok(SoakReport {
        options,
        workload_time,
        history: report::HistorySummary::of(&history),
        faults: fault_log,
        counts,
        quiescence,
        state: report::StateSummary::of(&state),
        verdicts,
        memory,
        total_time: run_started.elapsed(),
    })
}
