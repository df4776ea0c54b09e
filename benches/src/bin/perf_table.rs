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
    /// Criterion's output directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion"))]
    criterion_dir: PathBuf,
    /// Where runs are saved.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/perf-runs"))]
    runs_dir: PathBuf,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Snapshot { label } => snapshot(&cli.criterion_dir, &cli.runs_dir, &label)
            .map(|path| eprintln!("saved {}", path.display())),
        Command::Report { machine, date } => {
            load_runs(&cli.runs_dir).map(|runs| print!("{}", report(&runs, ROWS, &machine, &date)))
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
