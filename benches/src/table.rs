//! The performance table: criterion's results, kept per run and summarised as figures,
//! yardsticks and their ratios (`docs/PERFORMANCE.md`).
//!
//! Criterion writes each benchmark's latest result under `target/criterion/<group>/<name>/
//! <value>/new/`. [`snapshot`] copies the figures of every benchmark there into one JSON file
//! per run; [`report`] reads every saved run and prints one markdown row per goal: the median
//! over runs of each figure, of its yardstick and of the ratio computed within each run (the
//! two were measured in the same run), with the spread (lowest and highest run).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One benchmark's result in one run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    /// Elements per second (operations, events, requests, unique states), when the benchmark
    /// declared a throughput; otherwise seconds per iteration.
    pub value: f64,
    /// Whether `value` is a rate (higher is better) or a time (lower is better).
    pub rate: bool,
    /// The lowest and highest sample of the run, in the same unit.
    pub samples: (f64, f64),
}

/// Every benchmark's figure in one run, by `group/name/value`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Run {
    /// When the snapshot was taken (Unix seconds).
    pub taken_at: u64,
    /// Figures by benchmark id.
    pub figures: BTreeMap<String, Figure>,
}

/// Why the table could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file did not hold what criterion (or a snapshot) writes.
    #[error("{path}: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TableError> {
    let text = std::fs::read_to_string(path).map_err(|source| TableError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|error| TableError::Format {
        path: path.to_owned(),
        why: error.to_string(),
    })
}

#[derive(Deserialize)]
struct Benchmark {
    full_id: String,
    throughput: Option<Throughput>,
}

#[derive(Deserialize)]
enum Throughput {
    Elements(u64),
    Bytes(u64),
    BytesDecimal(u64),
    ElementsAndBytes { elements: u64 },
}

impl Throughput {
    fn elements(&self) -> f64 {
        match self {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                *n as f64
            }
            Throughput::ElementsAndBytes { elements, .. } => *elements as f64,
        }
    }
}

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct Samples {
    iters: Vec<f64>,
    times: Vec<f64>,
}

/// Every benchmark result under `criterion_dir` (criterion's `target/criterion`).
pub fn collect(criterion_dir: &Path) -> Result<BTreeMap<String, Figure>, TableError> {
    let mut figures = BTreeMap::new();
    let mut stack = vec![criterion_dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| TableError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|name| name == "new") {
                if path.join("benchmark.json").is_file() {
                    let (id, figure) = figure(&path)?;
                    figures.insert(id, figure);
                }
            } else if path.file_name().is_some_and(|name| name != "report") {
                stack.push(path);
            }
        }
    }
    Ok(figures)
}

fn figure(new: &Path) -> Result<(String, Figure), TableError> {
    let benchmark: Benchmark = read_json(&new.join("benchmark.json"))?;
    let estimates: Estimates = read_json(&new.join("estimates.json"))?;
    let samples: Samples = read_json(&new.join("sample.json"))?;
    // Criterion's times are nanoseconds per sample; the median estimate is per iteration.
    let per_iteration = estimates.median.point_estimate * 1e-9;
    let sample_values = samples
        .iters
        .iter()
        .zip(&samples.times)
        .map(|(iters, nanos)| nanos * 1e-9 / iters);
    let (value, rate, samples) = match &benchmark.throughput {
        Some(throughput) => {
            let elements = throughput.elements();
            let rates: Vec<f64> = sample_values.map(|t| elements / t).collect();
            (elements / per_iteration, true, min_max(&rates))
        }
        None => {
            let times: Vec<f64> = sample_values.collect();
            (per_iteration, false, min_max(&times))
        }
    };
    let id = benchmark.full_id.replace(' ', "");
    Ok((
        id,
        Figure {
            value,
            rate,
            samples,
        },
    ))
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

/// Saves the figures now under `criterion_dir` as run `label` in `runs_dir`.
pub fn snapshot(criterion_dir: &Path, runs_dir: &Path, label: &str) -> Result<PathBuf, TableError> {
    let run = Run {
        taken_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        figures: collect(criterion_dir)?,
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TableError::Io { path, source }
    };
    std::fs::create_dir_all(runs_dir).map_err(io(runs_dir))?;
    let path = runs_dir.join(format!("{label}.json"));
    let text = serde_json::to_string_pretty(&run).map_err(|error| TableError::Format {
        path: path.clone(),
        why: error.to_string(),
    })?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(path)
}

/// Every saved run in `runs_dir`, oldest first.
pub fn load_runs(runs_dir: &Path) -> Result<Vec<Run>, TableError> {
    let entries = std::fs::read_dir(runs_dir).map_err(|source| TableError::Io {
        path: runs_dir.to_owned(),
        source,
    })?;
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            runs.push(read_json::<Run>(&path)?);
        }
    }
    runs.sort_by_key(|run| run.taken_at);
    Ok(runs)
}

/// One row of the table: a figure of the project's code against its yardstick.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// What is measured.
    pub figure: &'static str,
    /// The project's benchmark id.
    pub ours: &'static str,
    /// The yardstick's benchmark id.
    pub yardstick: &'static str,
    /// What the yardstick is.
    pub yardstick_name: &'static str,
    /// The ratio to reach (ours / yardstick for rates, yardstick / ours for times), if any.
    pub goal: Option<f64>,
    /// The unit of the figures.
    pub unit: &'static str,
    /// Divide rates by this (threads) for a per-thread figure.
    pub per: f64,
    /// The command that measures it.
    pub command: &'static str,
}

const STORE: &str = "`cargo bench -p benches --bench store -- store_`";
const MODEL: &str = "`cargo bench -p benches --bench model`";
const BUS: &str = "`cargo bench -p benches --bench bus`";
const SERVICES: &str = "`cargo bench -p benches --bench services`";
const HARNESS: &str = "`cargo bench -p benches --bench harness`";

/// The rows of `docs/PERFORMANCE.md`, by group: the goals, then what explains them.
pub const ROWS: &[Row] = &[
    Row {
        figure: "model check, reference defaults, DFS + symmetry, 1 thread",
        ours: "model/reference/1",
        yardstick: "model/2pc-7/1",
        yardstick_name: "stateright 2pc, 7 RMs, DFS, 1 thread",
        goal: Some(1.0),
        unit: "unique states/s per thread",
        per: 1.0,
        command: MODEL,
    },
    Row {
        figure: "model check, reference defaults, DFS + symmetry, 2 threads",
        ours: "model/reference/2",
        yardstick: "model/2pc-7/2",
        yardstick_name: "stateright 2pc, 7 RMs, DFS, 2 threads",
        goal: Some(1.0),
        unit: "unique states/s per thread",
        per: 2.0,
        command: MODEL,
    },
    Row {
        figure: "model check, reference defaults, DFS + symmetry, 1 thread",
        ours: "model/reference/1",
        yardstick: "model/2pc-7-symmetry/1",
        yardstick_name: "stateright 2pc, 7 RMs, DFS + symmetry, 1 thread",
        goal: None,
        unit: "unique states/s per thread",
        per: 1.0,
        command: MODEL,
    },
    Row {
        figure: "model check, reference defaults, DFS + symmetry, 2 threads",
        ours: "model/reference/2",
        yardstick: "model/2pc-7-symmetry/2",
        yardstick_name: "stateright 2pc, 7 RMs, DFS + symmetry, 2 threads",
        goal: None,
        unit: "unique states/s per thread",
        per: 2.0,
        command: MODEL,
    },
    Row {
        figure: "diagnostic: `run::check` against the same exploration on the checker joined directly, 1 thread",
        ours: "model/reference/1",
        yardstick: "model/reference-joined/1",
        yardstick_name: "stateright checker on the reference, joined",
        goal: None,
        unit: "unique states/s",
        per: 1.0,
        command: MODEL,
    },
    Row {
        figure: "diagnostic: `run::check` against the same exploration on the checker joined directly, 2 threads",
        ours: "model/reference/2",
        yardstick: "model/reference-joined/2",
        yardstick_name: "stateright checker on the reference, joined",
        goal: None,
        unit: "unique states/s",
        per: 1.0,
        command: MODEL,
    },
    Row {
        figure: "MemStore update-if-current, uniform keys, 1 thread",
        ours: "store_uniform/MemStore/1",
        yardstick: "store_uniform/dashmap/1",
        yardstick_name: "dashmap 6 entry CAS",
        goal: Some(1.0),
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "MemStore update-if-current, uniform keys, 2 threads",
        ours: "store_uniform/MemStore/2",
        yardstick: "store_uniform/dashmap/2",
        yardstick_name: "dashmap 6 entry CAS",
        goal: Some(1.0),
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "MemStore update-if-current, uniform keys, 1 thread",
        ours: "store_uniform/MemStore/1",
        yardstick: "store_uniform/RwLock-HashMap/1",
        yardstick_name: "std RwLock<HashMap>",
        goal: None,
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "MemStore update-if-current, uniform keys, 2 threads",
        ours: "store_uniform/MemStore/2",
        yardstick: "store_uniform/RwLock-HashMap/2",
        yardstick_name: "std RwLock<HashMap>",
        goal: None,
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "MemStore update-if-current, one hot key, 1 thread",
        ours: "store_hot/MemStore/1",
        yardstick: "store_hot/Mutex-HashMap/1",
        yardstick_name: "one std Mutex<HashMap>",
        goal: Some(1.0),
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "MemStore update-if-current, one hot key, 2 threads",
        ours: "store_hot/MemStore/2",
        yardstick: "store_hot/Mutex-HashMap/2",
        yardstick_name: "one std Mutex<HashMap>",
        goal: Some(1.0),
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "MemStore update-if-current, one hot key, 2 threads",
        ours: "store_hot/MemStore/2",
        yardstick: "store_hot/dashmap/2",
        yardstick_name: "dashmap 6 entry CAS",
        goal: None,
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "diagnostic: MemStore against a Mutex<HashMap> that also returns the saved record, one hot key, 1 thread",
        ours: "store_hot/MemStore/1",
        yardstick: "store_hot/Mutex-HashMap-returning/1",
        yardstick_name: "one std Mutex<HashMap>, save returns a copy",
        goal: None,
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "diagnostic: MemStore against a Mutex<HashMap> that also returns the saved record, one hot key, 2 threads",
        ours: "store_hot/MemStore/2",
        yardstick: "store_hot/Mutex-HashMap-returning/2",
        yardstick_name: "one std Mutex<HashMap>, save returns a copy",
        goal: None,
        unit: "ops/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "PgStore read + save, 1 connection",
        ours: "store_pg/PgStore/1",
        yardstick: "store_pg/tokio-postgres/1",
        yardstick_name: "raw tokio-postgres, prepared",
        goal: Some(0.9),
        unit: "transactions/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "PgStore read + save, 2 connections",
        ours: "store_pg/PgStore/2",
        yardstick: "store_pg/tokio-postgres/2",
        yardstick_name: "raw tokio-postgres, prepared",
        goal: Some(0.9),
        unit: "transactions/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "PgStore read + save, 8 connections",
        ours: "store_pg/PgStore/8",
        yardstick: "store_pg/tokio-postgres/8",
        yardstick_name: "raw tokio-postgres, prepared",
        goal: Some(0.9),
        unit: "transactions/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "diagnostic: PgStore's own statements sent raw, 1 connection",
        ours: "store_pg/tokio-postgres-same-sql/1",
        yardstick: "store_pg/tokio-postgres/1",
        yardstick_name: "raw tokio-postgres, prepared",
        goal: None,
        unit: "transactions/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "diagnostic: PgStore's own statements sent raw, 2 connections",
        ours: "store_pg/tokio-postgres-same-sql/2",
        yardstick: "store_pg/tokio-postgres/2",
        yardstick_name: "raw tokio-postgres, prepared",
        goal: None,
        unit: "transactions/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "diagnostic: PgStore's own statements sent raw, 8 connections",
        ours: "store_pg/tokio-postgres-same-sql/8",
        yardstick: "store_pg/tokio-postgres/8",
        yardstick_name: "raw tokio-postgres, prepared",
        goal: None,
        unit: "transactions/s",
        per: 1.0,
        command: STORE,
    },
    Row {
        figure: "EmbeddedBus publish -> handle -> ack, 1 member",
        ours: "bus_embedded/EmbeddedBus/1",
        yardstick: "bus_embedded/mpsc/1",
        yardstick_name: "tokio mpsc(1024) hand-off",
        goal: Some(0.5),
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "EmbeddedBus publish -> handle -> ack, 2 members",
        ours: "bus_embedded/EmbeddedBus/2",
        yardstick: "bus_embedded/mpsc/2",
        yardstick_name: "tokio mpsc(1024) hand-off",
        goal: Some(0.5),
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "diagnostic: EmbeddedBus without publish ids (no duplicate window), 1 member",
        ours: "bus_embedded/EmbeddedBus-no-publish-id/1",
        yardstick: "bus_embedded/mpsc/1",
        yardstick_name: "tokio mpsc(1024) hand-off",
        goal: None,
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "diagnostic: EmbeddedBus without publish ids (no duplicate window), 2 members",
        ours: "bus_embedded/EmbeddedBus-no-publish-id/2",
        yardstick: "bus_embedded/mpsc/2",
        yardstick_name: "tokio mpsc(1024) hand-off",
        goal: None,
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "diagnostic: EmbeddedBus subscriptions without the listener runtime, 1 member",
        ours: "bus_embedded/EmbeddedBus-subscription/1",
        yardstick: "bus_embedded/mpsc/1",
        yardstick_name: "tokio mpsc(1024) hand-off",
        goal: None,
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "diagnostic: EmbeddedBus subscriptions without the listener runtime, 2 members",
        ours: "bus_embedded/EmbeddedBus-subscription/2",
        yardstick: "bus_embedded/mpsc/2",
        yardstick_name: "tokio mpsc(1024) hand-off",
        goal: None,
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "JetStreamBus publish -> handle -> ack, 1 member",
        ours: "bus_jetstream/JetStreamBus/1",
        yardstick: "bus_jetstream/async-nats/1",
        yardstick_name: "raw async-nats, 256 acks in flight, pull + ack",
        goal: Some(0.8),
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "JetStreamBus publish -> handle -> ack, 2 members",
        ours: "bus_jetstream/JetStreamBus/2",
        yardstick: "bus_jetstream/async-nats/2",
        yardstick_name: "raw async-nats, 256 acks in flight, pull + ack",
        goal: Some(0.8),
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "diagnostic: JetStreamBus, members with max_in_flight 256, 1 member",
        ours: "bus_jetstream/JetStreamBus-in-flight-256/1",
        yardstick: "bus_jetstream/async-nats/1",
        yardstick_name: "raw async-nats, 256 acks in flight, pull + ack",
        goal: None,
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "diagnostic: JetStreamBus, members with max_in_flight 256, 2 members",
        ours: "bus_jetstream/JetStreamBus-in-flight-256/2",
        yardstick: "bus_jetstream/async-nats/2",
        yardstick_name: "raw async-nats, 256 acks in flight, pull + ack",
        goal: None,
        unit: "events/s",
        per: 1.0,
        command: BUS,
    },
    Row {
        figure: "HTTP create-then-update, embedded profile",
        ours: "services_http/app/create-update",
        yardstick: "services_http/bare-axum/create-update",
        yardstick_name: "bare axum + Mutex<HashMap>, same client",
        goal: Some(0.8),
        unit: "requests/s",
        per: 1.0,
        command: SERVICES,
    },
    Row {
        figure: "course load (200 x create, update, update) until every replica converged",
        ours: "services_converge/app/200x3",
        yardstick: "services_converge/bare-axum/200x3",
        yardstick_name: "same load on bare axum (no replication)",
        goal: None,
        unit: "",
        per: 1.0,
        command: SERVICES,
    },
    Row {
        figure: "harness exhaustive replay, reference at a fixed bound, 1 thread",
        ours: "harness/exhaustive-replay/1",
        yardstick: "harness/check/1",
        yardstick_name: "`check` of the same bound, DFS, unique states/s",
        goal: Some(0.1),
        unit: "transitions/s",
        per: 1.0,
        command: HARNESS,
    },
    Row {
        figure: "harness exhaustive replay, reference at a fixed bound, 2 threads",
        ours: "harness/exhaustive-replay/2",
        yardstick: "harness/check/2",
        yardstick_name: "`check` of the same bound, DFS, unique states/s",
        goal: Some(0.1),
        unit: "transitions/s",
        per: 1.0,
        command: HARNESS,
    },
];

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// A figure in a short human form: `1.23M`, `456k`, `7.8k`, `0.62 s`.
pub fn human(value: f64, rate: bool) -> String {
    if !rate {
        return format!("{value:.2} s");
    }
    let (scaled, suffix) = if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    if scaled >= 100.0 {
        format!("{scaled:.0}{suffix}")
    } else if scaled >= 10.0 {
        format!("{scaled:.1}{suffix}")
    } else {
        format!("{scaled:.2}{suffix}")
    }
}

/// The markdown table of `rows` over `runs`, on `machine`, dated `date`.
pub fn report(runs: &[Run], rows: &[Row], machine: &str, date: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Figure | Ours (median, runs' range) | Yardstick | Yardstick figure | Ratio (median, range) | Goal | Command | Machine | Date |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut ratios = Vec::new();
        let mut rate = true;
        for run in runs {
            if let (Some(a), Some(b)) = (run.figures.get(row.ours), run.figures.get(row.yardstick))
            {
                rate = a.rate;
                ours.push(a.value / if a.rate { row.per } else { 1.0 });
                theirs.push(b.value / if b.rate { row.per } else { 1.0 });
                ratios.push(if a.rate {
                    a.value / b.value
                } else {
                    b.value / a.value
                });
            }
        }
        if ratios.is_empty() {
            let _ = writeln!(
                out,
                "| {} | not measured | {} | - | - | {} | {} | {machine} | {date} |",
                row.figure,
                row.yardstick_name,
                row.goal.map_or("-".into(), |g| format!(">= {g:.1}x")),
                row.command
            );
            continue;
        }
        let range = |values: &[f64], f: &dyn Fn(f64) -> String| {
            let (lo, hi) = min_max(values);
            format!("{}-{}", f(lo), f(hi))
        };
        let show = |v: f64| human(v, rate);
        let ratio_text = |v: f64| format!("{v:.2}x");
        let ratio_median = median(&mut ratios.clone());
        let goal = match row.goal {
            Some(goal) if ratio_median >= goal => format!(">= {goal:.1}x: met"),
            Some(goal) => format!(">= {goal:.1}x: **missed**"),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} {} ({}) | {} | {} ({}) | {} ({}) | {} | {} | {machine} | {date} |",
            row.figure,
            show(median(&mut ours.clone())),
            row.unit,
            range(&ours, &show),
            row.yardstick_name,
            show(median(&mut theirs.clone())),
            range(&theirs, &show),
            ratio_text(ratio_median),
            range(&ratios, &ratio_text),
            goal,
            row.command,
        );
    }
    let _ = writeln!(out, "\n{} run(s).", runs.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, f64)]) -> Run {
        Run {
            taken_at: 0,
            figures: pairs
                .iter()
                .map(|(id, value)| {
                    (
                        (*id).to_owned(),
                        Figure {
                            value: *value,
                            rate: true,
                            samples: (*value, *value),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn ratios_are_taken_within_a_run_then_the_median_over_runs() {
        let row = Row {
            figure: "f",
            ours: "a",
            yardstick: "b",
            yardstick_name: "y",
            goal: Some(1.0),
            unit: "ops/s",
            per: 1.0,
            command: "c",
        };
        let runs = [
            run(&[("a", 100.0), ("b", 50.0)]),
            run(&[("a", 10.0), ("b", 100.0)]),
            run(&[("a", 90.0), ("b", 100.0)]),
        ];
        let table = report(&runs, &[row], "2 cores", "today");
        // Per-run ratios 2.0, 0.1 and 0.9: the median is 0.9, below the goal.
        assert!(
            table.contains("| 0.90x (0.10x-2.00x) | >= 1.0x: **missed** |"),
            "{table}"
        );
    }

    #[test]
    fn human_figures_are_short() {
        assert_eq!(human(1_234_567.0, true), "1.23M");
        assert_eq!(human(456_000.0, true), "456k");
        assert_eq!(human(7_812.0, true), "7.81k");
        assert_eq!(human(0.618, false), "0.62 s");
    }
}
