//! `perf-table`: keeps each benchmark run's figures and prints `docs/PERFORMANCE.md`'s table.
//!
//! After `cargo bench -p benches`, `cargo run -p benches --bin perf-table -- snapshot --label
//! run1` saves the run; `... -- report` prints the table over every saved run (medians over
//! runs, ratios taken within each run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use benches::table::{ROWS, load_runs, report, snapshot};

#[derive(Parser)]
#[command(
    name = "perf-table",
    about = "Save benchmark runs and print the performance table"
)]
struct Cli {
    /// Criterion's output directory [default: `criterion` in cargo's target directory,
    /// `$CARGO_TARGET_DIR` when set, as `cargo bench` wrote it].
    #[arg(long)]
    criterion_dir: Option<PathBuf>,
    /// Where runs are saved [default: `perf-runs` in cargo's target directory].
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Save the figures criterion holds now as one run.
    Snapshot {
        /// The run's name (its file name).
        #[arg(long)]
        label: String,
    },
    /// Print the table over every saved run.
    Report {
        /// The machine, as the table states it.
        #[arg(long, default_value = "2 cores")]
        machine: String,
        /// The date, as the table states it.
        #[arg(long)]
        date: String,
    },
}

/// Cargo's target directory as `cargo bench` used it: `$CARGO_TARGET_DIR` when set (a
/// relative one is taken from the working directory, as cargo takes it), else the
/// workspace's `target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")),
            PathBuf::from,
        )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let criterion_dir = cli
        .criterion_dir
        .unwrap_or_else(|| target_dir().join("criterion"));
    let runs_dir = cli
        .runs_dir
        .unwrap_or_else(|| target_dir().join("perf-runs"));
    let outcome = match cli.command {
        Command::Snapshot { label } => snapshot(&criterion_dir, &runs_dir, &label)
            .map(|path| eprintln!("saved {}", path.display())),
        Command::Report { machine, date } => {
            load_runs(&runs_dir).map(|runs| print!("{}", report(&runs, ROWS, &machine, &date)))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("perf-table: {error}");
            ExitCode::FAILURE
        }
    }
}
