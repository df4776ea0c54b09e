//! The soak process's resident memory over the run: sampled every few seconds from
//! `/proc/self/statm`, printed as progress and kept for the report, so a run shows whether
//! memory grows with the work or stays flat.
//!
//! The invariant: sampling never fails the run; where `/proc` is missing there are no samples.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::options::Progress;

/// How often the resident memory is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// One sample: seconds since the clients started, resident bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Seconds since the clients started.
    pub seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
}

/// Resident memory of this process: the second field of `/proc/self/statm` (pages) times the
/// page size (4 KiB on the Linux machines the soak runs on); `None` without `/proc`.
pub fn resident_bytes() -> Option<u64> {
    const PAGE_BYTES: u64 = 4096;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * PAGE_BYTES)
}

/// Samples until `stop`, then returns the samples (one at the start and one at the end
/// included).
pub fn spawn_sampler(
    started: Instant,
    progress: Progress,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(async move {
        let take = |samples: &Arc<Mutex<Vec<Sample>>>| {
            let Some(resident_bytes) = resident_bytes() else {
                return;
            };
            let sample = Sample {
                seconds: started.elapsed().as_secs_f64(),
                resident_bytes,
            };
            if progress == Progress::Stderr {
                eprintln!(
                    "[{:5.1} s] resident memory {:.1} MiB",
                    sample.seconds,
                    mib(sample.resident_bytes)
                );
            }
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sample);
        };
        loop {
            take(&samples);
            tokio::select! {
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
                () = stop.cancelled() => break,
            }
        }
        take(&samples);
        samples.lock().unwrap_or_else(|p| p.into_inner()).clone()
    })
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
