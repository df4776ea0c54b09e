//! `harness`: replay model traces against the implementation, or soak the real backends.
//! See `harness --help`.
//!
//! Exit status: 0 when the implementation followed the model everywhere it was checked (and,
//! for `counterexamples`, every row is as SPEC.md requires), 1 on a divergence or a wrong
//! verdict, 2 on a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use harness::backend::Backend;
use harness::replay::{TraceError, replay_trace_on};
use harness::{counterexamples, exhaustive, fuzz};
use model::trace::Trace;
use model::{Config, Variant};

#[derive(Parser)]
#[command(
    name = "harness",
    about = "Hold the ticketing implementation to its model (SPEC.md section 4)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a JSON trace (`model check --trace-out`) on the implementation of its variant,
    /// comparing states after every step; a counterexample must be violated there too.
    Replay(ReplayArgs),
    /// Replay every transition of a bounded model run (or, with `--coverage`, the shortest
    /// path to every state, or every maximal path) on the implementation, branching at each
    /// state on copies of the world, with stutter probes at every state.
    Exhaustive(ExhaustiveArgs),
    /// Replay proptest-generated action sequences; shrink and print a diverging one.
    Fuzz(FuzzArgs),
    /// For every variant: its counterexample is violated on its implementation, and the same
    /// scenario holds on the reference implementation.
    Counterexamples(CounterexamplesArgs),
    /// A randomized concurrent workload against real NATS JetStream and PostgreSQL, with
    /// faults injected, checked against SPEC.md's properties at the end.
    Soak(harness::soak::SoakArgs),
}

/// The model's bounds; each defaults to the mode's own default.
#[derive(Args, Clone, Debug)]
struct Bounds {
    /// The design replayed (SPEC.md section 2).
    #[arg(long, default_value = "reference", value_parser = parse_variant)]
    variant: Variant,
    /// Tickets clients create.
    #[arg(long)]
    tickets: Option<u8>,
    /// Members in each queue group.
    #[arg(long)]
    members: Option<u8>,
    /// Price updates clients issue.
    #[arg(long)]
    updates: Option<u8>,
    /// Orders clients place.
    #[arg(long)]
    orders: Option<u8>,
    /// Orders clients cancel.
    #[arg(long)]
    cancels: Option<u8>,
    /// Crashes.
    #[arg(long)]
    crashes: Option<u8>,
    /// Spurious ack-wait expiries.
    #[arg(long)]
    redeliveries: Option<u8>,
    /// Duplicate deliveries of published events (a publisher's retry, or a relay's republish
    /// after the dedup window: every design, outbox included).
    #[arg(long)]
    duplicates: Option<u8>,
    /// Deliveries before a message is dead-lettered [default: 1 + crashes + redeliveries].
    #[arg(long)]
    max_deliver: Option<u8>,
}

impl Bounds {
    /// The bounds given, over `defaults`; the usage error if they do not fit the model.
    fn config(&self, defaults: fn(Variant) -> Config) -> Result<Config, String> {
        let base = defaults(self.variant);
        let crashes = self.crashes.unwrap_or(base.crashes);
        let redeliveries = self.redeliveries.unwrap_or(base.redeliveries);
        let duplicates = self.duplicates.unwrap_or(base.duplicates);
        let config = Config {
            variant: self.variant,
            tickets: self.tickets.unwrap_or(base.tickets),
            members: self.members.unwrap_or(base.members),
            updates: self.updates.unwrap_or(base.updates),
            orders: self.orders.unwrap_or(base.orders),
            cancels: self.cancels.unwrap_or(base.cancels),
            crashes,
            redeliveries,
            duplicates,
            max_deliver: self
                .max_deliver
                .unwrap_or_else(|| Config::tolerated_deliveries(crashes, redeliveries, duplicates)),
        };
        config.validate()?;
        Ok(config)
    }
}

fn describe(config: &Config) -> String {
    format!(
        "{}: tickets {}, members {}, updates {}, orders {}, cancels {}, crashes {}, \
         redeliveries {}, duplicates {}, max_deliver {}",
        config.variant,
        config.tickets,
        config.members,
        config.updates,
        config.orders,
        config.cancels,
        config.crashes,
        config.redeliveries,
        config.duplicates,
        config.max_deliver
    )
}

/// Where the implementation's services keep their records.
#[derive(Args, Clone, Debug)]
struct StoreArg {
    /// `memory` (each service's MemStore), or a PostgreSQL server URL
    /// (`postgres://user@host:port/db`): the run makes a fresh database on that server, each
    /// world a fresh schema per service in it, and drops the database at the end.
    #[arg(long = "store", value_name = "memory|URL", default_value = "memory")]
    store: String,
}

impl StoreArg {
    /// The backend, a fresh database made for a run on PostgreSQL (labelled `run`).
    fn backend(&self, run: &str) -> Result<Backend, String> {
        let store = self.store.as_str();
        if store == "memory" {
            return Ok(Backend::Memory);
        }
        if !(store.starts_with("postgres://") || store.starts_with("postgresql://")) {
            return Err(format!(
                "--store takes `memory` or a postgres:// URL, not {:?}",
                ticketing::store::pg::redact_password(store)
            ));
        }
        Backend::postgres(store, run).map_err(|why| format!("--store: {why}"))
    }
}

#[derive(Args)]
struct ReplayArgs {
    /// The trace, as `model check --trace-out` writes it.
    file: PathBuf,
    #[command(flatten)]
    store: StoreArg,
    /// After the last step, make the stutter probes (deliveries the model leaves out because
    /// they would only say "not yet", made anyway to check they change nothing else).
    #[arg(long)]
    stutter_probes: bool,
}

#[derive(Args)]
struct ExhaustiveArgs {
    #[command(flatten)]
    bounds: Bounds,
    /// Most paths replayed (`all-paths`), or most states whose transitions are replayed.
    #[arg(long, default_value_t = usize::MAX)]
    max_paths: usize,
    /// Which paths: every transition of the model run, the shortest path to every state, or
    /// every maximal path from the initial state (up to --max-paths).
    #[arg(long, value_enum, default_value = "transitions")]
    coverage: exhaustive::Coverage,
    /// Replay worker threads [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Most states the exploration holds in memory.
    #[arg(long, default_value_t = exhaustive::MAX_STATES)]
    max_states: usize,
    /// On divergence, write the shortest diverging path as a JSON trace here.
    #[arg(long)]
    trace_out: Option<PathBuf>,
    /// Do not make stutter probes (deliveries the model leaves out because they would only
    /// say "not yet", made anyway to check they change nothing else).
    #[arg(long)]
    no_stutter_probes: bool,
    /// Replay every interleaving, not only the partial-order reduction's ample sets (the
    /// checker's proofs use the reduction).
    #[arg(long)]
    no_partial_order: bool,
    /// Hold this variant's implementation to the model of --variant (each variant is a
    /// seeded bug of the reference).
    #[arg(long, value_parser = parse_variant)]
    implementation: Option<Variant>,
    /// Do not run the model checker at the same bounds for its states per second.
    #[arg(long)]
    no_check_rate: bool,
    /// Exit 0 even when --max-paths cut the run short (by default a partial run fails: it
    /// replays less than the model holds).
    #[arg(long)]
    allow_partial: bool,
}

#[derive(Args)]
struct FuzzArgs {
    #[command(flatten)]
    bounds: Bounds,
    /// Cases to run.
    #[arg(long, default_value_t = 2000)]
    cases: u32,
    /// The seed [default: from the clock; printed, so a run can be repeated].
    #[arg(long)]
    seed: Option<u64>,
    /// Most steps per case.
    #[arg(long, default_value_t = 80)]
    max_steps: usize,
    /// On divergence, write the minimal diverging sequence as a JSON trace here.
    #[arg(long)]
    trace_out: Option<PathBuf>,
    /// Do not end each case with stutter probes.
    #[arg(long)]
    no_stutter_probes: bool,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Args)]
struct CounterexamplesArgs {
    /// Only these variants [default: all].
    #[arg(long, value_parser = parse_variant)]
    variant: Vec<Variant>,
    #[command(flatten)]
    store: StoreArg,
}

fn parse_variant(name: &str) -> Result<Variant, String> {
    name.parse()
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Replay(args) => run_replay(&args),
        Command::Exhaustive(args) => run_exhaustive(&args),
        Command::Fuzz(args) => run_fuzz(&args),
        Command::Counterexamples(args) => run_counterexamples(&args),
        Command::Soak(args) => harness::soak::run(args),
    }
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn write_trace(trace: &Trace, file: &Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(trace).map_err(|e| e.to_string())?;
    std::fs::write(file, json).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

fn run_replay(args: &ReplayArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(error) => return usage_error(format!("cannot read {}: {error}", args.file.display())),
    };
    let trace: Trace = match serde_json::from_str(&text) {
        Ok(trace) => trace,
        Err(error) => {
            return usage_error(format!("{} is not a trace: {error}", args.file.display()));
        }
    };
    let backend = match args.store.backend("harness_replay") {
        Ok(backend) => backend,
        Err(error) => return usage_error(error),
    };
    println!(
        "Replaying {} ({} steps) on the implementation {}, {}",
        args.file.display(),
        trace.steps.len(),
        backend.describe(),
        describe(&trace.config)
    );
    match replay_trace_on(&trace, args.stutter_probes, &backend) {
        Ok(replayed) => {
            println!(
                "the implementation followed all {} steps; every state matched the model's",
                trace.steps.len()
            );
            match replayed.violation {
                None => {
                    println!("the trace names no property");
                    ExitCode::SUCCESS
                }
                Some((prop, true)) => {
                    println!(
                        "{}. {} is violated on the implementation too: {}",
                        prop.number(),
                        prop.name(),
                        model::properties::explain(prop, &replayed.model, &replayed.observed)
                    );
                    ExitCode::SUCCESS
                }
                Some((prop, false)) => {
                    println!(
                        "{}. {} HOLDS on the implementation's final state, but the trace is \
                         a counterexample to it",
                        prop.number(),
                        prop.name()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Err(TraceError::Divergence(divergence)) => {
            print!("{}", divergence.render());
            ExitCode::FAILURE
        }
        Err(error) => {
            println!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn run_exhaustive(args: &ExhaustiveArgs) -> ExitCode {
    let config = match args.bounds.config(exhaustive::default_config) {
        Ok(config) => config,
        Err(error) => return usage_error(error),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let implementation = args.implementation.unwrap_or(config.variant);
    println!(
        "Exhaustive replay of {} ({}, {threads} worker{}{}{})",
        describe(&config),
        match args.coverage {
            exhaustive::Coverage::Transitions => "every transition",
            exhaustive::Coverage::States => "the shortest path to every state",
            exhaustive::Coverage::AllPaths => "every maximal path",
        },
        if threads == 1 { "" } else { "s" },
        if args.no_partial_order {
            ", no partial-order reduction"
        } else {
            ""
        },
        if implementation == config.variant {
            String::new()
        } else {
            format!(", on the implementation of {implementation}")
        },
    );
    let options = exhaustive::Options {
        config,
        implementation,
        max_paths: args.max_paths,
        coverage: args.coverage,
        threads,
        stutter_probes: !args.no_stutter_probes,
        partial_order: !args.no_partial_order,
        max_states: args.max_states,
    };
    let outcome = match exhaustive::run(&options) {
        Ok(outcome) => outcome,
        Err(exhaustive::RunError::TooManyStates(too_many)) => return usage_error(too_many),
    };
    print_exploration(&outcome, args.coverage);
    print_replay(&outcome);
    if !args.no_check_rate && args.coverage != exhaustive::Coverage::AllPaths {
        print_check_rate(&outcome, &options);
    }
    verdict(args, config, &outcome)
}

/// The exit status, and the last lines saying why.
fn verdict(args: &ExhaustiveArgs, config: Config, outcome: &exhaustive::Outcome) -> ExitCode {
    for problem in &outcome.problems {
        println!("problem: {problem}");
    }
    match &outcome.divergence {
        Some(divergence) => {
            println!(
                "{} of the replayed steps diverged; the shortest path to one:",
                outcome.diverging_paths
            );
            print!("{}", divergence.render());
            if let Some(file) = &args.trace_out {
                write_divergence(config, divergence, file);
            }
            ExitCode::FAILURE
        }
        None if !outcome.problems.is_empty() => {
            println!("the replay did not complete: see the problems above");
            ExitCode::FAILURE
        }
        // A cut-short run proves less than its header claims: it fails unless the user asked
        // for a partial run.
        None if outcome.truncated && !args.allow_partial => {
            println!(
                "no divergence on the paths replayed, but --max-paths cut the run short: the \
                 coverage is incomplete (raise --max-paths, or pass --allow-partial to accept it)"
            );
            ExitCode::FAILURE
        }
        None => {
            println!("no divergence: the implementation followed the model on every step");
            ExitCode::SUCCESS
        }
    }
}

/// What the model exploration found: its size and the paths that cover it.
fn print_exploration(outcome: &exhaustive::Outcome, coverage: exhaustive::Coverage) {
    match coverage {
        exhaustive::Coverage::Transitions | exhaustive::Coverage::States => println!(
            "model: {} unique states, {} transitions (symmetry-reduced, as the checker \
             counts them), explored in {:.2} s",
            outcome.unique_states,
            outcome.transitions.unwrap_or(0),
            outcome.exploring.as_secs_f64(),
        ),
        exhaustive::Coverage::AllPaths => println!(
            "model: {}{} maximal paths enumerated in {:.2} s",
            if outcome.truncated { "at least " } else { "" },
            outcome.available_paths,
            outcome.exploring.as_secs_f64(),
        ),
    }
}

/// How much of it was replayed on the implementation, and how fast.
fn print_replay(outcome: &exhaustive::Outcome) {
    let cut = if outcome.truncated {
        " (cut at --max-paths: the coverage is incomplete)"
    } else {
        ""
    };
    let seconds = outcome.replaying.as_secs_f64().max(1e-9);
    if outcome.transitions.is_none() {
        println!(
            "replayed {} paths ({} steps, {} of them stutter probes) in {seconds:.2} s: {:.0} \
             steps/s{cut}",
            outcome.paths,
            outcome.steps + outcome.probes,
            outcome.probes,
            outcome.steps_per_second(),
        );
        return;
    }
    println!(
        "replayed {} transitions and {} stutter probes, reaching {} states, in {seconds:.2} s: \
         {:.0} transitions/s, {} copies of the world ({:.0}/s){cut}",
        outcome.steps,
        outcome.probes,
        outcome.paths,
        outcome.steps_per_second(),
        outcome.copies,
        outcome.copies as f64 / seconds,
    );
}

/// The checker's states per second at the same bounds, beside the replay's transitions per
/// second.
fn print_check_rate(outcome: &exhaustive::Outcome, options: &exhaustive::Options) {
    let (states, elapsed) =
        exhaustive::checker_rate(options.config, options.threads, options.partial_order);
    let rate = states as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "check at the same bounds and reductions ({} threads): {states} states in {:.2} s, \
         {rate:.0} states/s; replayed transitions/s over check's states/s: {:.3}x",
        options.threads,
        elapsed.as_secs_f64(),
        outcome.steps_per_second() / rate.max(1e-9),
    );
}

/// Writes the shortest diverging path as a JSON trace `check`'s replay can read.
fn write_divergence(config: Config, divergence: &harness::report::Divergence, file: &Path) {
    let model = model::TicketingModel::new(config);
    match Trace::from_actions(&model, divergence.model_path()) {
        Ok(trace) => match write_trace(&trace, file) {
            Ok(()) => println!("trace written to {}", file.display()),
            Err(error) => eprintln!("error: {error}"),
        },
        Err(step) => eprintln!("error: step {} is not a model step", step + 1),
    }
}

fn run_fuzz(args: &FuzzArgs) -> ExitCode {
    let config = match args.bounds.config(Config::new) {
        Ok(config) => config,
        Err(error) => return usage_error(error),
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
    });
    let backend = match args.store.backend("harness_fuzz") {
        Ok(backend) => backend,
        Err(error) => return usage_error(error),
    };
    println!(
        "Fuzzing {} ({} cases of up to {} steps, seed {seed}) {}",
        describe(&config),
        args.cases,
        args.max_steps,
        backend.describe()
    );
    let outcome = fuzz::run(&fuzz::Options {
        config,
        cases: args.cases,
        seed,
        max_steps: args.max_steps,
        stutter_probes: !args.no_stutter_probes,
        backend,
    });
    println!(
        "ran {} cases ({} steps) in {:.2} s: {:.0} cases/s",
        outcome.cases,
        outcome.steps,
        outcome.elapsed.as_secs_f64(),
        outcome.cases as f64 / outcome.elapsed.as_secs_f64().max(1e-9)
    );
    if let Some(reason) = &outcome.aborted {
        println!("proptest aborted: {reason}");
        return ExitCode::FAILURE;
    }
    match &outcome.failure {
        None => {
            println!("no divergence (seed {seed}; rerun with --seed {seed})");
            ExitCode::SUCCESS
        }
        Some(failure) => {
            let probes = match failure.divergence.probes {
                0 => String::new(),
                n => format!(" and {n} stutter probe{}", if n == 1 { "" } else { "s" }),
            };
            println!(
                "a case diverged (seed {seed}); proptest shrank it to the choices {:?} ({} \
                 steps), and removing steps that do not matter leaves {} steps{probes}:",
                failure.choices,
                failure.choices_path,
                failure.divergence.model_path().len(),
            );
            print!("{}", failure.divergence.render());
            if let (Some(file), Some(trace)) = (&args.trace_out, &failure.trace) {
                match write_trace(trace, file) {
                    Ok(()) => println!("trace written to {}", file.display()),
                    Err(error) => eprintln!("error: {error}"),
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn run_counterexamples(args: &CounterexamplesArgs) -> ExitCode {
    let variants: Vec<Variant> = if args.variant.is_empty() {
        Variant::ALL.to_vec()
    } else {
        args.variant.clone()
    };
    let backend = match args.store.backend("harness_counterexamples") {
        Ok(backend) => backend,
        Err(error) => return usage_error(error),
    };
    println!(
        "Each variant's shortest counterexample (default bounds, BFS, one thread), replayed on \
         the implementation of that variant, then the same scenario on the reference; the \
         implementation {}.",
        backend.describe()
    );
    println!(
        "{:<24} {:<30} {:>6}  {:<24} {:<23} {:>9}",
        "variant", "property", "steps", "on the variant", "on the reference", "ref steps"
    );
    let mut all_ok = true;
    let mut details = Vec::new();
    for variant in variants {
        for row in counterexamples::rows(Config::new(variant), &backend) {
            all_ok &= row.ok();
            print_row(&row, &mut details);
        }
    }
    for detail in details {
        println!("\n{detail}");
    }
    if all_ok {
        println!("every counterexample is violated on its variant and holds on the reference");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One row of the counterexamples table; what needs explaining goes to `details`.
fn print_row(row: &counterexamples::Row, details: &mut Vec<String>) {
    use counterexamples::Showing;
    let on_variant = match &row.on_variant {
        Showing::AsRequired => "violated on the variant",
        Showing::Not(_) => "NOT VIOLATED (see below)",
    };
    let on_reference = if row.on_reference.ok() {
        "holds on the reference"
    } else {
        "NOT HELD (see below)"
    };
    println!(
        "{:<24} {:<30} {:>6}  {:<24} {:<23} {:>9}",
        row.variant.name(),
        format!("{}. {}", row.prop.number(), row.prop.name()),
        row.length,
        on_variant,
        on_reference,
        row.reference_length
    );
    let what = format!("{} / {}", row.variant, row.prop.name());
    for showing in [&row.on_variant, &row.on_reference] {
        match showing {
            Showing::Not(why) => details.push(format!("{what}:\n{why}")),
            Showing::AsRequired => {}
        }
    }
}
