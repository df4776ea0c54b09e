//! `model`: check the ticketing system's design, or explore it in stateright's web explorer.
//!
//! `cargo run -p model -- check` proves the reference design at the default bounds;
//! `check --variant V` finds the counterexample SPEC.md predicts for a variant;
//! `check --all-variants` prints the table for all of them; `explore` serves the explorer.
//! `check --chart FILE.svg` draws the counterexample as a message sequence chart;
//! `check --all-variants --threads 1 --chart docs/images/charts` regenerates the docs' charts.
//! Exit status: 0 when every verdict is what SPEC.md says it must be, 1 otherwise, 2 on a
//! usage error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use stateright::Model;

use model::TicketingModel;
use model::chart;
use model::config::{Config, Variant};
use model::progress::megabytes;
use model::properties::{Prop, explain, must_violate};
use model::run::{Outcome, PartialOrder, RunOptions, Strategy, check};
use model::trace::Trace;

#[derive(Parser)]
#[command(
    name = "model",
    about = "Model-check the ticketing system's design (SPEC.md sections 2 and 3)",
    long_about = "Model-check the ticketing system's design with stateright.\n\n\
        `check` explores every interleaving of the two services, the broker, crashes and \
        redeliveries within the given bounds and reports, per property, whether it holds or \
        a counterexample. `explore` serves stateright's web explorer."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check one variant (default: the reference design) or all of them.
    Check(CheckArgs),
    /// Serve stateright's web explorer for a variant.
    Explore(ExploreArgs),
}

#[derive(Args, Clone)]
struct Bounds {
    /// The design checked (SPEC.md section 2).
    #[arg(long, default_value = "reference", value_parser = parse_variant)]
    variant: Variant,
    /// Tickets clients create.
    #[arg(long, default_value_t = Config::default().tickets)]
    tickets: u8,
    /// Members in each queue group.
    #[arg(long, default_value_t = Config::default().members)]
    members: u8,
    /// Price updates clients issue.
    #[arg(long, default_value_t = Config::default().updates)]
    updates: u8,
    /// Orders clients place.
    #[arg(long, default_value_t = Config::default().orders)]
    orders: u8,
    /// Orders clients cancel.
    #[arg(long, default_value_t = Config::default().cancels)]
    cancels: u8,
    /// Crashes (member mid-handler, relay mid-publish, HTTP handler between its steps).
    #[arg(long, default_value_t = Config::default().crashes)]
    crashes: u8,
    /// Spurious ack-wait expiries (acks later than ack_wait).
    #[arg(long, default_value_t = Config::default().redeliveries)]
    redeliveries: u8,
    /// Publisher retries of published events.
    #[arg(long, default_value_t = Config::default().duplicates)]
    duplicates: u8,
    /// Deliveries before a message is dead-lettered [default: 1 + crashes + redeliveries].
    #[arg(long)]
    max_deliver: Option<u8>,
}

impl Bounds {
    fn config(&self, variant: Variant) -> Config {
        Config {
            variant,
            tickets: self.tickets,
            members: self.members,
            updates: self.updates,
            orders: self.orders,
            cancels: self.cancels,
            crashes: self.crashes,
            redeliveries: self.redeliveries,
            duplicates: self.duplicates,
            max_deliver: self.max_deliver.unwrap_or_else(|| {
                Config::tolerated_deliveries(self.crashes, self.redeliveries, self.duplicates)
            }),
        }
    }
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    bounds: Bounds,
    /// Check every variant and print a table.
    #[arg(long)]
    all_variants: bool,
    /// Exploration strategy. `auto`: DFS with symmetry reduction to prove the reference (or
    /// with --exhaustive), BFS to find a variant's shortest counterexamples.
    #[arg(long, value_enum, default_value = "auto")]
    strategy: Strategy,
    /// Checker threads [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Turn off symmetry reduction (members and tickets).
    #[arg(long)]
    no_symmetry: bool,
    /// Turn off the partial-order reduction (ample sets) only.
    #[arg(long)]
    no_partial_order: bool,
    /// Turn off every reduction (symmetry and partial order): explore every transition.
    #[arg(long)]
    no_reduction: bool,
    /// Write the counterexample as a JSON trace (with --all-variants: a directory, one
    /// `<variant>.json` each). The property traced is the first SPEC.md requires the variant
    /// to violate, unless --trace-property names another.
    #[arg(long)]
    trace_out: Option<PathBuf>,
    /// The property whose counterexample --trace-out and --chart write (its name, e.g.
    /// "prices converge").
    #[arg(long, visible_alias = "property")]
    trace_property: Option<String>,
    /// Draw the counterexample as a message sequence chart, in SVG (with --all-variants: a
    /// directory, one `<variant>.svg` each). The property drawn is the one --trace-out writes;
    /// nothing is drawn for a variant without one (the reference). With --threads 1 the
    /// charts are the same on every run.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// For a variant, go on exploring after SPEC.md's counterexamples are found, so every
    /// property gets a verdict (slower; the reference is always explored to the end).
    #[arg(long)]
    exhaustive: bool,
    /// Simulation only: how long to walk, in seconds.
    #[arg(long, default_value_t = 10)]
    simulation_seconds: u64,
    /// Simulation only: the random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct ExploreArgs {
    #[command(flatten)]
    bounds: Bounds,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the "serving" line names it).
    #[arg(long, default_value_t = 3001)]
    port: u16,
}

fn parse_variant(name: &str) -> Result<Variant, String> {
    name.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => run_check(&args),
        Command::Explore(args) => run_explore(&args),
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let options = RunOptions {
        strategy: args.strategy,
        threads: args
            .threads
            .unwrap_or_else(|| RunOptions::default().threads),
        symmetry: !(args.no_symmetry || args.no_reduction),
        partial_order: if args.no_partial_order || args.no_reduction {
            PartialOrder::Off
        } else {
            PartialOrder::Dfs
        },
        progress: true,
        simulation_time: Duration::from_secs(args.simulation_seconds),
        seed: args.seed,
        exhaustive: args.exhaustive,
    };
    let trace_property = match &args.trace_property {
        None => None,
        Some(name) => match Prop::from_name(name) {
            Some(prop) => Some(prop),
            None => {
                eprintln!(
                    "error: unknown property {name:?}; expected one of: {}",
                    Prop::ALL.map(Prop::name).join(", ")
                );
                return ExitCode::from(2);
            }
        },
    };
    let variants: Vec<Variant> = if args.all_variants {
        Variant::ALL.to_vec()
    } else {
        vec![args.bounds.variant]
    };
    for variant in &variants {
        if let Err(problem) = args.bounds.config(*variant).validate() {
            eprintln!("error: {problem}");
            return ExitCode::from(2);
        }
    }
    if args.all_variants {
        for dir in [&args.trace_out, &args.chart].into_iter().flatten() {
            if let Err(error) = std::fs::create_dir_all(dir) {
                eprintln!("error: cannot create {}: {error}", dir.display());
                return ExitCode::from(2);
            }
        }
    }

    let mut all_match = true;
    let mut outcomes = Vec::new();
    for variant in variants {
        let config = args.bounds.config(variant);
        if !args.all_variants {
            println!("{}", describe_run(&config, &options));
        }
        let outcome = check(config, &options);
        all_match &= outcome.matches_spec();
        if !args.all_variants {
            print_outcome(&outcome);
        }
        if let Err(error) = write_outputs(args, &outcome, trace_property) {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
        outcomes.push(outcome);
    }
    if args.all_variants {
        print_table(&outcomes, &options);
    }
    println!("{}", summary(&outcomes, &options));
    if all_match {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes what --trace-out and --chart ask for: the named file, or with --all-variants one
/// file per variant in the named directory.
fn write_outputs(
    args: &CheckArgs,
    outcome: &Outcome,
    property: Option<Prop>,
) -> Result<(), String> {
    let file = |path: &PathBuf, extension: &str| {
        if args.all_variants {
            path.join(format!("{}.{extension}", outcome.config.variant.name()))
        } else {
            path.clone()
        }
    };
    if let Some(path) = &args.trace_out {
        write_trace(outcome, property, &file(path, "json"))?;
    }
    if let Some(path) = &args.chart {
        write_chart(outcome, property, &file(path, "svg"))?;
    }
    Ok(())
}

fn describe_run(config: &Config, options: &RunOptions) -> String {
    format!(
        "Checking {}: tickets {}, members {}, updates {}, orders {}, cancels {}, crashes {}, \
         redeliveries {}, duplicates {}, max_deliver {} ({}, {} thread{}, reductions: {})",
        config.variant,
        config.tickets,
        config.members,
        config.updates,
        config.orders,
        config.cancels,
        config.crashes,
        config.redeliveries,
        config.duplicates,
        config.max_deliver,
        strategy_name(options.resolve(*config)),
        options.threads,
        if options.threads == 1 { "" } else { "s" },
        options.reductions(*config)
    )
}

/// The run in one line: states, seconds, peak memory, reductions, verdict.
fn summary(outcomes: &[Outcome], options: &RunOptions) -> String {
    let states: usize = outcomes.iter().map(|o| o.unique_states).sum();
    let seconds: f64 = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
    let memory = outcomes
        .iter()
        .filter_map(|o| o.peak_memory)
        .max()
        .map_or_else(|| "unknown".into(), megabytes);
    let mut reductions: Vec<String> = outcomes
        .iter()
        .map(|o| options.reductions(o.config))
        .collect();
    reductions.dedup();
    let matching = outcomes.iter().filter(|o| o.matches_spec()).count();
    format!(
        "summary: {states} unique states in {seconds:.2} s, peak memory {memory}, reductions: {}; \
         {matching} of {} verdicts as SPEC.md predicts",
        reductions.join(" / "),
        outcomes.len()
    )
}

fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Auto => "auto",
        Strategy::Bfs => "bfs",
        Strategy::Dfs => "dfs",
        Strategy::Simulation => "simulation",
    }
}

fn print_outcome(outcome: &Outcome) {
    let model = TicketingModel::new(outcome.config);
    let required = must_violate(outcome.config.variant);
    let simulation = outcome.options.strategy == Strategy::Simulation;
    for verdict in &outcome.verdicts {
        let prop = verdict.prop;
        let label = format!("{}. {}", prop.number(), prop.name());
        match &verdict.counterexample {
            None if verdict.holds() => println!("  {label:<32} holds"),
            None if simulation => {
                println!("  {label:<32} no counterexample found (simulation: not a proof)")
            }
            None => println!(
                "  {label:<32} not decided (stopped at SPEC.md's counterexamples; --exhaustive decides it)"
            ),
            Some(path) => {
                let trace = Trace::from_path(&model, Some(prop), path);
                let must = if required.mentions(prop) {
                    " (as SPEC.md predicts)"
                } else {
                    ""
                };
                println!(
                    "  {label:<32} VIOLATED{must}: counterexample in {} steps",
                    trace.steps.len()
                );
                print!("{}", indent(&trace.render(), "    "));
                println!("    => {}", explain(prop, &model, path.last_state()));
            }
        }
    }
    println!(
        "explored {} unique states ({} generated, max depth {}) in {:.2} s: {:.0} unique states/s",
        outcome.unique_states,
        outcome.generated_states,
        outcome.max_depth,
        outcome.elapsed.as_secs_f64(),
        outcome.rate()
    );
    let expectation = required.describe();
    if outcome.matches_spec() {
        println!(
            "verdict: as SPEC.md predicts ({} {expectation})",
            outcome.config.variant
        );
    } else {
        println!(
            "verdict: NOT as SPEC.md predicts ({} {expectation})",
            outcome.config.variant
        );
    }
}

fn print_table(outcomes: &[Outcome], options: &RunOptions) {
    println!(
        "All variants at the same bounds (strategy {}, {} threads). Columns 1-8 are SPEC.md's \
         properties: `.` holds, `x` violated, `X` violated as SPEC.md requires, `-` not decided \
         (a variant stops at its required counterexamples; --exhaustive decides every property).",
        strategy_name(options.strategy),
        options.threads,
    );
    println!(
        "{:<24} {:<17} {:>14} {:>9}  verdict",
        "variant", "1 2 3 4 5 6 7 8", "unique states", "time"
    );
    for outcome in outcomes {
        let required = must_violate(outcome.config.variant);
        let marks: Vec<&str> = outcome
            .verdicts
            .iter()
            .map(
                |verdict| match (verdict.violated(), required.mentions(verdict.prop)) {
                    (false, _) if verdict.holds() => ".",
                    (false, _) => "-",
                    (true, true) => "X",
                    (true, false) => "x",
                },
            )
            .collect();
        println!(
            "{:<24} {:<17} {:>14} {:>8.2}s  {}",
            outcome.config.variant.name(),
            marks.join(" "),
            outcome.unique_states,
            outcome.elapsed.as_secs_f64(),
            if outcome.matches_spec() {
                "as SPEC.md predicts"
            } else {
                "NOT AS SPEC.md PREDICTS"
            }
        );
    }
}

/// The property --trace-out and --chart write: the one asked for, else the first SPEC.md
/// requires the variant to violate, else the first violated.
fn wanted_property(outcome: &Outcome, property: Option<Prop>) -> Option<Prop> {
    property
        .or_else(|| must_violate(outcome.config.variant).first())
        .or_else(|| outcome.violated().first().copied())
}

/// The counterexample of `prop`, as `check` prints it, if one was found.
fn counterexample_trace(outcome: &Outcome, prop: Prop) -> Option<Trace> {
    let model = TicketingModel::new(outcome.config);
    outcome
        .verdicts
        .iter()
        .find(|v| v.prop == prop)
        .and_then(|v| v.counterexample.as_ref())
        .map(|path| Trace::from_path(&model, Some(prop), path))
}

fn write_trace(
    outcome: &Outcome,
    property: Option<Prop>,
    file: &std::path::Path,
) -> Result<(), String> {
    let model = TicketingModel::new(outcome.config);
    let wanted = wanted_property(outcome, property);
    let trace = match wanted.and_then(|prop| counterexample_trace(outcome, prop)) {
        Some(trace) => trace,
        None => {
            // Nothing violated (the reference): write the trace of no steps, so the harness
            // has a file to read and nothing to replay.
            Trace {
                variant: outcome.config.variant,
                config: outcome.config,
                violates: None,
                initial: model.init_states().remove(0),
                steps: Vec::new(),
            }
        }
    };
    let json = serde_json::to_string_pretty(&trace).map_err(|e| e.to_string())?;
    std::fs::write(file, json).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// Writes the chart of the counterexample --chart draws; says on stderr why when there is none
/// (the file is then left alone).
fn write_chart(
    outcome: &Outcome,
    property: Option<Prop>,
    file: &std::path::Path,
) -> Result<(), String> {
    let variant = outcome.config.variant;
    let Some(prop) = wanted_property(outcome, property) else {
        eprintln!("{variant}: no property violated, no chart drawn");
        return Ok(());
    };
    let Some(trace) = counterexample_trace(outcome, prop) else {
        eprintln!(
            "{variant}: no counterexample of {:?} was found (--exhaustive decides every property), no chart drawn",
            prop.name()
        );
        return Ok(());
    };
    let svg = chart::counterexample(&TicketingModel::new(outcome.config), &trace, prop);
    std::fs::write(file, svg).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}\n"))
        .collect()
}

fn run_explore(args: &ExploreArgs) -> ExitCode {
    let config = args.bounds.config(args.bounds.variant);
    if let Err(problem) = config.validate() {
        eprintln!("error: {problem}");
        return ExitCode::from(2);
    }
    // stateright's server cannot report the port it bound, so the port is settled here: a bad
    // address is a clear error, and port 0 becomes the free port the kernel hands out, which
    // the "serving" line names (the tests read it there rather than guessing a free port).
    let requested = format!("{}:{}", args.host, args.port);
    let address = match std::net::TcpListener::bind(&requested).and_then(|l| l.local_addr()) {
        Ok(bound) => bound.to_string(),
        Err(error) => {
            eprintln!("error: cannot listen on {requested}: {error}");
            return ExitCode::from(2);
        }
    };
    println!(
        "serving the explorer for {} on http://{address}/ (Ctrl-C to stop)",
        config.variant
    );
    // The explorer runs stateright's on-demand checker, which explores as the page asks (and
    // the whole space on "run to completion"); it applies no symmetry reduction.
    TicketingModel::new(config)
        .checker()
        .serve(address.as_str());
    ExitCode::SUCCESS
}
