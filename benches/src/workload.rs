//! The workloads the benchmarks drive, shared by the project's code and its yardsticks so both
//! do exactly the same work: the same records, the same key sequence, the same events.
//!
//! Nothing here is timed; the benchmarks time what they call.

use std::sync::Arc;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use ticketing::events::{Event, TicketUpdated};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{Ticket, UserId};

/// Records in every store benchmark (the figure).
pub const RECORDS: usize = 10_000;

/// The id of the `n`th benchmark record: `n` big-endian in the id's 12 bytes, which is also
/// how the PostgreSQL benchmark seeds its table (`decode(lpad(to_hex(n), 24, '0'), 'hex')`).
pub fn record_id(n: usize) -> Id {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&(n as u64).to_be_bytes());
    Id::from_bytes(bytes)
}

/// Two prices an update alternates between, so every save writes a change.
pub fn prices() -> [Price; 2] {
    // 10.00 and 12.50 are within bounds, so neither conversion can fail.
    [Price::from_cents(1_000), Price::from_cents(1_250)].map(|price| price.unwrap_or(Price::MAX))
}

/// `count` tickets at version 0. Each has its own title and owner allocation: records that
/// shared one `Arc` would make every clone on every thread bump the same reference count, a
/// contention no real data set has.
pub fn tickets(count: usize) -> Vec<Ticket> {
    let [price, _] = prices();
    (0..count)
        .map(|n| Ticket {
            id: record_id(n),
            title: Arc::from(format!("ticket {n}")),
            price,
            user_id: UserId::new(format!("user-{n}")),
            version: 0,
            order_id: None,
            reservation: 0,
        })
        .collect()
}

/// Which records a store benchmark updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// Uniformly random over [`RECORDS`].
    Uniform,
    /// Always the first record.
    Hot,
}

impl Keys {
    /// The benchmark group's name.
    pub const fn name(self) -> &'static str {
        match self {
            Keys::Uniform => "uniform",
            Keys::Hot => "hot",
        }
    }
}

/// A tiny xorshift generator: a few cycles per key, the same for every store, so the key
/// choice costs all of them alike and the hash maps see the same sequence.
#[derive(Clone, Debug)]
pub struct KeyStream {
    state: u64,
    keys: Keys,
}

impl KeyStream {
    /// The sequence of thread `thread` (distinct, never zero).
    pub fn new(keys: Keys, thread: usize) -> Self {
        Self {
            state: 0x9E37_79B9_7F4A_7C15 ^ (((thread as u64 + 1) << 32) | 0x5151),
            keys,
        }
    }

    /// The index of the next record to update.
    #[inline]
    pub fn next_index(&mut self) -> usize {
        match self.keys {
            Keys::Hot => 0,
            Keys::Uniform => {
                let mut x = self.state;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.state = x;
                // Multiply-shift: uniform over RECORDS without a division.
                (((x >> 32) * RECORDS as u64) >> 32) as usize
            }
        }
    }
}

/// A uniformly spread record index for operation `op` of worker `worker` (splitmix64), for
/// async loops that keep no generator between operations.
pub fn scattered(worker: usize, op: usize) -> usize {
    let mut x = ((worker as u64) << 40 ^ op as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (((x >> 32) * RECORDS as u64) >> 32) as usize
}

/// Runs `ops` operations split over `threads` threads (the first thread takes the remainder),
/// started together behind a barrier, and returns the wall-clock time from the barrier to the
/// last thread's end. With one thread it runs on the caller's thread.
pub fn run_threads<F>(threads: usize, ops: u64, work: F) -> Duration
where
    F: Fn(usize, u64) + Sync,
{
    let threads = threads.max(1);
    if threads == 1 {
        let started = Instant::now();
        work(0, ops);
        return started.elapsed();
    }
    let share = ops / threads as u64;
    let first = ops - share * (threads as u64 - 1);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (barrier, work) = (&barrier, &work);
            let ops = if thread == 0 { first } else { share };
            scope.spawn(move || {
                barrier.wait();
                work(thread, ops);
            });
        }
        barrier.wait();
        let started = Instant::now();
        // The scope joins every thread before it returns.
        started
    })
    .elapsed()
}

/// `count` `ticket:updated` events, each for its own ticket at version 1, with their publish
/// ids (as the outbox relay sends them), in the order they are published.
pub fn ticket_updates(count: usize) -> Vec<(Event, String)> {
    let [_, price] = prices();
    (0..count)
        .map(|_| {
            let event = Event::TicketUpdated(TicketUpdated {
                id: Id::new(),
                version: 1,
                title: Arc::from("a ticket to the benchmark"),
                price,
                user_id: UserId::new("bench-user"),
                order_id: None,
            });
            let publish_id = event.publish_id();
            (event, publish_id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_keys_stay_in_range_and_spread() {
        let mut keys = KeyStream::new(Keys::Uniform, 0);
        let mut seen = vec![false; RECORDS];
        for _ in 0..20 * RECORDS {
            seen[keys.next_index()] = true;
        }
        let covered = seen.iter().filter(|s| **s).count();
        assert!(covered > RECORDS * 99 / 100, "only {covered} keys drawn");
    }

    #[test]
    fn hot_keys_are_one_record() {
        let mut keys = KeyStream::new(Keys::Hot, 3);
        assert!((0..100).all(|_| keys.next_index() == 0));
    }

    #[test]
    fn record_ids_are_the_index_in_big_endian() {
        assert_eq!(record_id(0x0102).to_string(), "000000000000000000000102");
    }

    #[test]
    fn threads_share_the_operations() {
        let done = std::sync::atomic::AtomicU64::new(0);
        run_threads(2, 1001, |_, ops| {
            done.fetch_add(ops, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(done.into_inner(), 1001);
    }
}
