//! Every publish of the system under soak, counted: the services' publisher is a
//! [`CountingPublisher`] (the supervisor runs the relays, and the no-outbox paths publish,
//! through it), which records what the broker stored, dropped as a duplicate of its publish
//! id, or failed, and keeps the latest stored events for the duplicate fault to republish.
//!
//! The invariant: every publish through it is counted exactly once, by its result; publish ids
//! the broker stored twice (it should have dropped the second) are kept for the checks.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use std::sync::Mutex;
use ticketing::bus::{BusError, JetStreamBus, PublishAck, Publisher};
use ticketing::events::{Event, Subject};

use crate::lock::locked;

/// How many recent publishes the log keeps for the duplicate fault to choose from.
const RECENT_PUBLISHES_MAX: usize = 4096;

/// One event the broker stored.
#[derive(Clone, Debug)]
pub struct Published {
    /// The event.
    pub event: Event,
    /// The publish id it was stored with, if any.
    pub publish_id: Option<String>,
    /// When.
    pub at: Instant,
}

/// What every publish of the system came to.
#[derive(Debug, Default)]
pub struct PublishLog {
    /// Stored, by subject (in [`Subject::ALL`]'s order).
    stored: [AtomicU64; 4],
    /// Dropped by the broker as duplicates of their publish id.
    duplicates: AtomicU64,
    /// Failed (the relay retries; a direct publish reports it).
    failures: AtomicU64,
    /// The latest stored events, oldest first.
    recent: Mutex<VecDeque<Published>>,
    /// Every publish id stored.
    ids: Mutex<HashSet<String>>,
    /// Publish ids the broker stored a second time (it should have dropped them).
    stored_twice: Mutex<Vec<String>>,
}

impl PublishLog {
    fn record(
        &self,
        event: &Event,
        publish_id: Option<&str>,
        result: &Result<PublishAck, BusError>,
    ) {
        match result {
            Ok(PublishAck::Stored { .. }) => {
                self.stored[subject_index(event.subject())].fetch_add(1, Ordering::Relaxed);
                if let Some(id) = publish_id
                    && !locked(&self.ids).insert(id.to_owned())
                {
                    locked(&self.stored_twice).push(id.to_owned());
                }
                let mut recent = locked(&self.recent);
                if recent.len() == RECENT_PUBLISHES_MAX {
                    recent.pop_front();
                }
                recent.push_back(Published {
                    event: event.clone(),
                    publish_id: publish_id.map(str::to_owned),
                    at: Instant::now(),
                });
            }
            Ok(PublishAck::Duplicate) => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events stored since `since`, oldest first.
    pub fn recent_since(&self, since: Instant) -> Vec<Published> {
        locked(&self.recent)
            .iter()
            .filter(|published| published.at >= since)
            .cloned()
            .collect()
    }

    /// Events stored so far, every subject.
    pub fn stored_total(&self) -> u64 {
        self.stored
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// Events stored so far, by subject (in [`Subject::ALL`]'s order).
    pub fn stored_by_subject(&self) -> [u64; 4] {
        std::array::from_fn(|index| self.stored[index].load(Ordering::Relaxed))
    }

    /// Publishes dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Publishes that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Publish ids the broker stored a second time.
    pub fn stored_twice(&self) -> Vec<String> {
        locked(&self.stored_twice).clone()
    }
}

fn subject_index(subject: Subject) -> usize {
    Subject::ALL
        .iter()
        .position(|candidate| *candidate == subject)
        .unwrap_or(0)
}

/// The system's publisher: the bus, with every outcome counted in a [`PublishLog`].
#[derive(Clone, Debug)]
pub struct CountingPublisher {
    bus: JetStreamBus,
    log: Arc<PublishLog>,
}

impl CountingPublisher {
    /// Publishes on `bus`, counting into a new log.
    pub fn new(bus: JetStreamBus) -> Self {
        Self {
            bus,
            log: Arc::default(),
        }
    }

    /// What it published.
    pub fn log(&self) -> &PublishLog {
        &self.log
    }
}

impl Publisher for CountingPublisher {
    async fn publish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        let result = self.bus.publish(event, publish_id).await;
        self.log.record(event, publish_id, &result);
        result
    }
}
