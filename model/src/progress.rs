//! What a running check shows: unique states, states per second, the deepest path so far and
//! the process's resident memory, on a spinner on a terminal or as a line every ten seconds
//! elsewhere (so CI logs show a long run is alive); and the process's peak memory for the
//! summary line.
//!
//! The invariant: progress goes to stderr only, so stdout (verdicts, traces, the table) reads
//! the same with or without it.

use std::io::IsTerminal;
use std::time::Duration;

/// A check's progress display.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    last_line: std::cell::Cell<Duration>,
}

impl Progress {
    /// A display, shown only if `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            enabled,
            last_line: std::cell::Cell::new(Duration::ZERO),
        }
    }

    /// Shows `unique` states and the deepest path, `depth`, after `elapsed`.
    pub(crate) fn update(&self, unique: usize, depth: usize, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let rate = unique as f64 / elapsed.as_secs_f64().max(1e-9);
        let memory = resident_memory().map_or_else(String::new, |bytes| {
            format!(", {} resident", megabytes(bytes))
        });
        let message = format!(
            "{unique} unique states, {:.0}k states/s, depth {depth}{memory}",
            rate / 1000.0
        );
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        } else if elapsed >= self.last_line.get() + Duration::from_secs(10) {
            self.last_line.set(elapsed);
            eprintln!("  ... {message} after {:.0} s", elapsed.as_secs_f64());
        }
    }

    /// Clears the spinner.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `bytes` in megabytes, for people.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// The process's resident memory now (`VmRSS`), in bytes.
pub fn resident_memory() -> Option<u64> {
    status_field("VmRSS:")
}

/// The process's peak resident memory so far (`VmHWM`), in bytes.
pub fn peak_memory() -> Option<u64> {
    status_field("VmHWM:")
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(name))?;
    let kilobytes: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kilobytes * 1024)
}
