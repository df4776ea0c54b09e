//! The two services of SPEC.md section 1, the relays that publish their outboxes, sessions, and
//! the assembly that serves both behind one address.
//!
//! Every route and every listener is a plain async function over the store and bus traits (a
//! *domain operation*), so the harness can call it directly and step it one store or broker
//! call at a time; the axum handlers in [`http`] only extract, call, and encode. The invariant
//! the domain operations keep: a request or delivery either completes every write it decided
//! on, or stops at a fail point as a crash would, never half-publishing an outboxed event.
//!
//! A delivery goes bus -> [`member`] runtime -> the group's [`listener::Listener`] (the
//! service's listeners); a change to a record it read goes through `update`'s
//! read-decide-save; every member and relay runs under the [`supervisor`], which [`app`] serves
//! behind HTTP.
//!
//! - [`tickets`], [`orders`]: each service's context, its HTTP operations, its listeners and
//!   their [`listener::Listener`] impl (the queue group, its subjects, routing by subject).
//! - [`listener`]: the listener seam every delivery goes through (the member runtime, the
//!   harness).
//! - [`member`]: the member runtime: one queue-group member pulls, decodes, terminates what
//!   does not decode, hands each event to the group's listener, logs the outcome, shuts down
//!   gracefully.
//! - `update`: read, decide, save, and re-read on a version conflict (the one attempts loop).
//! - [`error`]: [`ApiError`], the one error type of the HTTP operations, and [`ListenerError`].
//! - [`auth`]: JWT sessions.
//! - [`http`]: the router, the error shape, body extraction (JSON only: 415 otherwise).
//! - `ops`: what an operator watches: `/metrics`, `/healthz`, `/readyz`, and the layer that
//!   counts requests.
//! - [`outcome`]: what a listener decided about a delivery, and the one place that settles it.
//! - [`relay`]: the outbox relay.
//! - [`supervisor`]: both services' queue-group members and relays, each started, stopped
//!   gracefully or crashed one at a time or all at once, with optional hooks around every
//!   delivery (the soak's).
//! - [`app`]: the assembly: HTTP in front of a supervisor, on any backends (`ticketing serve`,
//!   and the soak, with its hooks).
//! - [`failpoints`]: the names of the crash points.
//! - `fakes` (feature `testkit`): recording stand-ins for the broker, to drive listeners and
//!   relays directly in tests.

use std::time::Duration;

use crate::variant::Variant;

pub mod app;
pub mod auth;
pub mod error;
pub mod failpoints;
#[cfg(feature = "testkit")]
pub mod fakes;
pub mod http;
pub mod listener;
pub mod member;
pub(crate) mod ops;
pub mod orders;
pub mod outcome;
pub mod relay;
pub mod supervisor;
pub mod tickets;
pub(crate) mod update;

pub use error::{ApiError, FieldError, ListenerError};
pub use outcome::Outcome;

use crate::bus::{BusError, Publisher};
use crate::events::Event;

/// A fail point stopped an operation (converted into each caller's error type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Crashed(pub(crate) &'static str);

impl From<Crashed> for ApiError {
    fn from(crashed: Crashed) -> Self {
        ApiError::Crashed(crashed.0)
    }
}

impl From<Crashed> for ListenerError {
    fn from(crashed: Crashed) -> Self {
        ListenerError::Crashed(crashed.0)
    }
}

/// The no-outbox path's publish, after the record is saved: the "after-save-before-publish"
/// crash point, then a publish without a publish id (the course had none).
pub(crate) async fn publish_after_save<P, E>(publisher: &P, event: &Event) -> Result<(), E>
where
    P: Publisher,
    E: From<BusError> + From<Crashed>,
{
    fail::fail_point!(failpoints::AFTER_SAVE_BEFORE_PUBLISH, |_| Err(Crashed(
        failpoints::AFTER_SAVE_BEFORE_PUBLISH
    )
    .into()));
    publisher.publish(event, None).await?;
    Ok(())
}

/// A delay that doubles with each delivery of the same event, up to a cap.
///
/// Used for naks that mean "not yet" (a version gap, a backend failure): the event comes back
/// later and later, so a gap that never closes costs little, while one that closes quickly is
/// applied quickly.
///
/// Why the cap is low (2 s, with 30 deliveries for the horizon): versions of one ticket wait
/// on each other in a chain, and a version applies at its first retry after its predecessor
/// applied. Handled by different members, each version can just miss its predecessor and wait
/// one whole interval more; while the delay still doubles, that doubles the wait at each link,
/// and with a 30 s cap five such links after a crashed member's ack wait outlived the 51.1 s
/// horizon (the fault soak saw it about once in 30 runs). Past a low cap each link adds at
/// most the cap ([`Backoff::worst_chain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first delivery.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Backoff {
    /// The default for gaps: 100 ms, doubling, at most 2 s.
    pub const GAP: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    /// The delay before redelivering an event delivered `delivery_count` times (1 for the
    /// first delivery).
    pub fn delay(self, delivery_count: u32) -> Duration {
        let doublings = delivery_count.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |delay| delay.min(self.max))
    }

    /// The redelivery horizon: how long after its first delivery an event that keeps finding
    /// a gap is still redelivered before `max_deliver` dead-letters it (the sum of the delays
    /// after deliveries 1 to `max_deliver - 1`). A gap closed within the horizon never
    /// dead-letters; with the defaults (100 ms doubling to 2 s, 30 deliveries) it is 51.1 s,
    /// not counting processing time and ack-wait expiries.
    pub fn horizon(self, max_deliver: u32) -> Duration {
        (1..max_deliver).map(|count| self.delay(count)).sum()
    }

    /// The worst case of a chain of `links` versions of one ticket, each first delivered as
    /// the chain's root was and each waiting on the one before it: when the last one applies,
    /// counted from that first delivery, if it applies before `max_deliver` dead-letters it.
    /// The root applies at `root`; each later version at its first retry after its
    /// predecessor applied (it just missed it at every retry before).
    pub fn worst_chain(self, root: Duration, links: u32, max_deliver: u32) -> Option<Duration> {
        let mut applied = root;
        for _ in 0..links {
            let mut retry = Duration::ZERO;
            let mut delivery = 1;
            while retry <= applied {
                if delivery >= max_deliver {
                    return None;
                }
                retry += self.delay(delivery);
                delivery += 1;
            }
            applied = retry;
        }
        Some(applied)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::GAP
    }
}

/// What both services are configured with.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Which design elements are on (SPEC.md section 2); consulted only through its questions.
    pub variant: Variant,
    /// How long a new order holds its ticket (15 minutes by default, as in the course).
    pub order_expiry: Duration,
    /// Time between two sweeps of the orders service's expiry (1 s by default): how late
    /// after its `expiresAt` an order may still be cancelled, plus the sweep's own time.
    pub expiry_sweep: Duration,
    /// How a listener that finds a gap (or a failing backend) delays the redelivery.
    pub gap_backoff: Backoff,
    /// How many times one request or delivery re-reads after a version conflict before it
    /// gives up (a bound on a loop, not a tuning knob: conflicts end when writers do).
    pub conflict_attempts: u32,
}

impl ServiceConfig {
    /// The defaults for `variant`.
    pub fn new(variant: Variant) -> Self {
        Self {
            variant,
            order_expiry: Duration::from_secs(15 * 60),
            expiry_sweep: Duration::from_secs(1),
            gap_backoff: Backoff::GAP,
            conflict_attempts: 100,
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self::new(Variant::Reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_backoff_doubles_up_to_its_cap() {
        let backoff = Backoff::GAP;
        assert_eq!(backoff.delay(1), Duration::from_millis(100));
        assert_eq!(backoff.delay(2), Duration::from_millis(200));
        assert_eq!(backoff.delay(5), Duration::from_millis(1_600));
        assert_eq!(backoff.delay(6), Duration::from_secs(2));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(2));
        assert_eq!(backoff.delay(0), Duration::from_millis(100));
    }

    #[test]
    fn the_default_redelivery_horizon_is_documented_correctly() {
        assert_eq!(
            Backoff::GAP.horizon(crate::bus::DEFAULT_MAX_DELIVER),
            Duration::from_millis(51_100)
        );
        assert_eq!(Backoff::GAP.horizon(1), Duration::ZERO);
    }

    /// A chain of one ticket's versions waiting on each other, behind a root delayed by a
    /// crashed member's whole ack wait (the course's 5 s), each version just missing its
    /// predecessor: with the defaults twenty links apply within the horizon; with the old
    /// 30 s cap and 10 deliveries the fifth link was dead-lettered.
    #[test]
    fn a_chain_of_versions_waiting_on_each_other_applies_within_the_horizon() {
        let root = Duration::from_secs(5);
        let max_deliver = crate::bus::DEFAULT_MAX_DELIVER;
        let last = Backoff::GAP.worst_chain(root, 20, max_deliver);
        assert!(
            last.is_some_and(|last| last <= Backoff::GAP.horizon(max_deliver)),
            "{last:?}"
        );
        // Each link past the cap adds at most the cap.
        let ten = Backoff::GAP.worst_chain(root, 10, max_deliver).unwrap();
        let eleven = Backoff::GAP.worst_chain(root, 11, max_deliver).unwrap();
        assert!(eleven - ten <= Backoff::GAP.max);

        let doubling_to_30_s = Backoff {
            max: Duration::from_secs(30),
            ..Backoff::GAP
        };
        assert!(doubling_to_30_s.worst_chain(root, 3, 10).is_some());
        assert_eq!(doubling_to_30_s.worst_chain(root, 5, 10), None);
    }
}
