//! Draws how the model checker's cost grows with the work: unique states and seconds of an
//! exhaustive check of the reference (DFS, symmetry on, the default thread count) as one bound
//! varies from 1 to 3 while the others keep `Config::new(Variant::Reference)`'s defaults.
//!
//! `cargo run --release -p benches --example model_growth` writes `docs/images/model-growth.svg`
//! and prints the figures as a markdown table. Each configuration runs in a child process of
//! its own, killed after `--limit-seconds` (120): a configuration that takes longer is drawn as
//! skipped, with the time it was given.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use plotters::prelude::*;

use model::config::{Config, Variant};
use model::run::{RunOptions, Strategy, check};

/// The bounds varied, one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Tickets,
    Members,
    Updates,
}

impl Bound {
    const ALL: [Bound; 3] = [Bound::Tickets, Bound::Members, Bound::Updates];

    fn name(self) -> &'static str {
        match self {
            Bound::Tickets => "tickets",
            Bound::Members => "members",
            Bound::Updates => "updates",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|bound| bound.name() == name)
    }

    fn config(self, value: u8) -> Config {
        let mut config = Config::new(Variant::Reference);
        match self {
            Bound::Tickets => config.tickets = value,
            Bound::Members => config.members = value,
            Bound::Updates => config.updates = value,
        }
        config
    }

    fn colour(self) -> RGBColor {
        match self {
            Bound::Tickets => RGBColor(0x1f, 0x77, 0xb4),
            Bound::Members => RGBColor(0xd6, 0x27, 0x28),
            Bound::Updates => RGBColor(0x2c, 0xa0, 0x2c),
        }
    }
}

/// What one configuration came to.
#[derive(Clone, Debug)]
enum Point {
    Checked { unique_states: usize, seconds: f64 },
    Skipped { why: String },
}

fn options() -> RunOptions {
    RunOptions {
        strategy: Strategy::Dfs,
        symmetry: true,
        progress: false,
        ..RunOptions::default()
    }
}

/// The child: checks one configuration and prints `unique_states seconds`.
fn child(bound: Bound, value: u8) -> ExitCode {
    let config = bound.config(value);
    if let Err(why) = config.validate() {
        println!("invalid {why}");
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let outcome = check(config, &options());
    let seconds = started.elapsed().as_secs_f64();
    if !outcome.matches_spec() {
        eprintln!(
            "the reference does not check at {config:?}: {:?}",
            outcome.violated()
        );
        return ExitCode::FAILURE;
    }
    println!("{} {seconds}", outcome.unique_states);
    ExitCode::SUCCESS
}

/// Runs one configuration in a child process, killed after `limit`.
fn measure(bound: Bound, value: u8, limit: Duration) -> Point {
    let skipped = |why: String| Point::Skipped { why };
    let Ok(exe) = std::env::current_exe() else {
        return skipped("cannot find this program to run the child".into());
    };
    let spawned = Command::new(exe)
        .args(["--child", bound.name(), &value.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return skipped(format!("cannot start the child: {error}")),
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return skipped(format!("more than {} s", limit.as_secs()));
            }
            Err(error) => return skipped(format!("lost the child: {error}")),
        }
    }
    let output = match child.wait_with_output() {
        Ok(output) => output,
        Err(error) => return skipped(format!("no output: {error}")),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut words = text.split_whitespace();
    match (words.next(), words.next()) {
        (Some("invalid"), _) => skipped(text.trim().trim_start_matches("invalid ").to_owned()),
        (Some(states), Some(seconds)) => match (states.parse(), seconds.parse()) {
            (Ok(unique_states), Ok(seconds)) => Point::Checked {
                unique_states,
                seconds,
            },
            _ => skipped(format!("unreadable child output {text:?}")),
        },
        _ => skipped(format!("the child failed ({})", output.status)),
    }
}

type Series = Vec<(Bound, Vec<(u8, Point)>)>;

/// Which figure of a checked point a panel draws.
type Pick = fn(usize, f64) -> f64;

/// Draws both panels. Long because plotters' chart builders are long-winded; one function
/// keeps each panel's axes, series and legend next to each other.
fn draw(series: &Series, path: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let checked = |pick: Pick| -> Vec<f64> {
        series
            .iter()
            .flat_map(|(_, points)| points.iter())
            .filter_map(|(_, point)| match point {
                Point::Checked {
                    unique_states,
                    seconds,
                } => Some(pick(*unique_states, *seconds)),
                Point::Skipped { .. } => None,
            })
            .collect()
    };
    let panels: [(&str, Pick); 2] = [
        ("unique states", |states, _| states as f64),
        ("seconds (wall clock)", |_, seconds| seconds),
    ];
    for (area, (label, pick)) in [&left, &right].into_iter().zip(panels) {
        let values = checked(pick);
        let low = values
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(1e-3)
            / 2.0;
        let high = values.iter().copied().fold(0.0, f64::max) * 2.0;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("reference check: {label}"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.8f64..3.2f64, (low..high).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("bound (the others at their defaults)")
            .y_desc(label)
            .x_labels(3)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| {
                if *y >= 1e6 {
                    format!("{:.1}M", y / 1e6)
                } else if *y >= 1e3 {
                    format!("{:.0}k", y / 1e3)
                } else {
                    format!("{y:.2}")
                }
            })
            .draw()?;
        for (bound, points) in series {
            let colour = bound.colour();
            let drawn: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|(value, point)| match point {
                    Point::Checked {
                        unique_states,
                        seconds,
                    } => Some((f64::from(*value), pick(*unique_states, *seconds))),
                    Point::Skipped { .. } => None,
                })
                .collect();
            let skipped: Vec<String> = points
                .iter()
                .filter_map(|(value, point)| match point {
                    Point::Skipped { why } => Some(format!("{value}: skipped, {why}")),
                    Point::Checked { .. } => None,
                })
                .collect();
            let legend = if skipped.is_empty() {
                bound.name().to_owned()
            } else {
                format!("{} ({})", bound.name(), skipped.join("; "))
            };
            chart
                .draw_series(LineSeries::new(drawn.clone(), colour.stroke_width(2)))?
                .label(legend)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
            chart.draw_series(drawn.iter().map(|p| Circle::new(*p, 4, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, bound, value] = args.as_slice()
        && flag == "--child"
    {
        return match (Bound::parse(bound), value.parse()) {
            (Some(bound), Ok(value)) => child(bound, value),
            _ => ExitCode::from(2),
        };
    }
    let limit = args
        .iter()
        .position(|arg| arg == "--limit-seconds")
        .and_then(|at| args.get(at + 1))
        .and_then(|seconds| seconds.parse().ok())
        .map_or(Duration::from_secs(120), Duration::from_secs);
    let out = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/images/model-growth.svg"
    ));
    let defaults = Config::new(Variant::Reference);
    println!(
        "Reference, DFS + symmetry, {} thread(s); defaults: tickets {}, members {}, updates {}, orders {}, cancels {}, crashes {}, redeliveries {}.",
        options().threads,
        defaults.tickets,
        defaults.members,
        defaults.updates,
        defaults.orders,
        defaults.cancels,
        defaults.crashes,
        defaults.redeliveries
    );
    println!("\n| bound varied | value | unique states | seconds |\n|---|---|---|---|");
    let mut series: Series = Vec::new();
    for bound in Bound::ALL {
        let mut points = Vec::new();
        for value in 1..=3u8 {
            let point = measure(bound, value, limit);
            match &point {
                Point::Checked {
                    unique_states,
                    seconds,
                } => println!(
                    "| {} | {value} | {unique_states} | {seconds:.2} |",
                    bound.name()
                ),
                Point::Skipped { why } => {
                    println!("| {} | {value} | skipped: {why} | - |", bound.name())
                }
            }
            points.push((value, point));
        }
        series.push((bound, points));
    }
    match draw(&series, &out) {
        Ok(()) => {
            println!("\nwrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot draw {}: {error}", out.display());
            ExitCode::FAILURE
        }
    }
}
