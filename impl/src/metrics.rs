//! What the process counts, by name: one function per thing counted (or, on the per-request
//! and per-round paths, one type that keeps its handles: [`HttpRequests`], [`Outbox`]), so
//! every call site records the same metric with the same labels, and `GET /metrics` renders
//! them in Prometheus's text format.
//!
//! The invariant: a metric's name and labels are written once, here. Callers never name a
//! metric themselves; they call the function for what happened. Recording goes through the
//! `metrics` facade, which is a no-op until [`prometheus`] installs the process's one
//! recorder (once per process, whoever asks first: tests run many applications in one process,
//! and they all count into, and render, the same recorder). A kept handle is the recorder's at
//! the time it was registered, so the types are made where the recorder is already installed
//! (the router and the relays start after `serve` installs it).
//!
//! # Names
//!
//! | metric | kind | labels | counted where |
//! |---|---|---|---|
//! | `ticketing_http_requests_total` | counter | `method`, `route`, `status` | the router's layer |
//! | `ticketing_http_request_duration_seconds` | histogram | `method`, `route`, `status` | the router's layer |
//! | `ticketing_deliveries_total` | counter | `queue_group` | the member runtime, per delivery pulled |
//! | `ticketing_redeliveries_total` | counter | `queue_group` | the same, when the delivery count is above 1 |
//! | `ticketing_acks_total` | counter | `queue_group` | every ack a listener sends |
//! | `ticketing_naks_total` | counter | `queue_group` | every nak a listener sends |
//! | `ticketing_terms_total` | counter | `queue_group` | every term (malformed or unlistened events) |
//! | `ticketing_version_conflicts_total` | counter | `origin` (a queue group, `http` or `expiry`) | read-decide-save, per conflict met |
//! | `ticketing_dead_letters_total` | counter | `queue_group`, `reason` (`terminated`, `max_deliveries`) | where a bus records a dead letter |
//! | `ticketing_dead_letters_dropped_total` | counter | none | for a bus that caps its dead letters ([`dead_letter_dropped`]) |
//! | `ticketing_outbox_depth` | gauge | `service` | the relay: entries pending at its last read (at most one batch), 0 once it published all it read |
//! | `ticketing_outbox_relay_lag_seconds` | gauge | `service` | the relay: how long the entry at the head of the outbox has been there, as the relay saw it (0 when drained) |
//! | `ticketing_outbox_published_total` | counter | `service` | the relay, per entry published |
//! | `ticketing_outbox_quarantined_total` | counter | `subject` | an outbox entry set aside because it cannot be published ([`outbox_quarantined`]) |
//! | `ticketing_orders_expired_total` | counter | none | the orders service's expiry, per order it cancelled |
//!
//! Counters are per process: two `serve` processes each count what they did.

use std::collections::HashMap;
use std::time::Duration;

use crate::sync::Mutex;

/// `ticketing_http_requests_total`.
pub const HTTP_REQUESTS: &str = "ticketing_http_requests_total";
/// `ticketing_http_request_duration_seconds`.
pub const HTTP_REQUEST_DURATION: &str = "ticketing_http_request_duration_seconds";
/// `ticketing_deliveries_total`.
pub const DELIVERIES: &str = "ticketing_deliveries_total";
/// `ticketing_redeliveries_total`.
pub const REDELIVERIES: &str = "ticketing_redeliveries_total";
/// `ticketing_acks_total`.
pub const ACKS: &str = "ticketing_acks_total";
/// `ticketing_naks_total`.
pub const NAKS: &str = "ticketing_naks_total";
/// `ticketing_terms_total`.
pub const TERMS: &str = "ticketing_terms_total";
/// `ticketing_version_conflicts_total`.
pub const VERSION_CONFLICTS: &str = "ticketing_version_conflicts_total";
/// `ticketing_dead_letters_total`.
pub const DEAD_LETTERS: &str = "ticketing_dead_letters_total";
/// `ticketing_dead_letters_dropped_total`.
pub const DEAD_LETTERS_DROPPED: &str = "ticketing_dead_letters_dropped_total";
/// `ticketing_outbox_depth`.
pub const OUTBOX_DEPTH: &str = "ticketing_outbox_depth";
/// `ticketing_outbox_relay_lag_seconds`.
pub const OUTBOX_RELAY_LAG: &str = "ticketing_outbox_relay_lag_seconds";
/// `ticketing_outbox_published_total`.
pub const OUTBOX_PUBLISHED: &str = "ticketing_outbox_published_total";
/// `ticketing_outbox_quarantined_total`.
pub const OUTBOX_QUARANTINED: &str = "ticketing_outbox_quarantined_total";
/// `ticketing_orders_expired_total`.
pub const ORDERS_EXPIRED: &str = "ticketing_orders_expired_total";

/// The `origin` of a version conflict met by an HTTP request.
pub const ORIGIN_HTTP: &str = "http";
/// The `origin` of a version conflict met by the orders service's expiry.
pub const ORIGIN_EXPIRY: &str = "expiry";

/// The HTTP requests' metrics, their handles kept by label set: a request looks its counter
/// and histogram up by route, method and status here, instead of building three label strings
/// and asking the recorder's registry for each (a seventh of a request's handling in the profile,
/// docs/PERFORMANCE.md). The label sets are bounded by the routes, methods and statuses. One
/// per router, made after the recorder is installed (a handle is the recorder's at the time it
/// is registered).
#[derive(Default)]
pub struct HttpRequests {
    by_route: Mutex<HashMap<String, Vec<HttpHandles>>>,
}

/// One label set's handles.
struct HttpHandles {
    method: String,
    status: u16,
    count: metrics::Counter,
    duration: metrics::Histogram,
}

impl HttpRequests {
    /// An HTTP request answered: `route` is the matched route's pattern (`/api/tickets/{id}`),
    /// never the raw path, so ids do not become labels.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut by_route = self.by_route.lock();
        let known = by_route.get(route).and_then(|handles| {
            handles
                .iter()
                .find(|handles| handles.status == status && handles.method == method)
        });
        if let Some(handles) = known {
            handles.count.increment(1);
            handles.duration.record(elapsed.as_secs_f64());
            return;
        }
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let handles = HttpHandles {
            method: method.to_owned(),
            status,
            count: metrics::counter!(HTTP_REQUESTS, &labels),
            duration: metrics::histogram!(HTTP_REQUEST_DURATION, &labels),
        };
        handles.count.increment(1);
        handles.duration.record(elapsed.as_secs_f64());
        by_route.entry(route.to_owned()).or_default().push(handles);
    }
}

/// A member of `queue_group` pulled a delivery, delivered `delivery_count` times so far.
pub fn delivery(queue_group: &str, delivery_count: u32) {
    let group = queue_group.to_owned();
    metrics::counter!(DELIVERIES, "queue_group" => group.clone()).increment(1);
    if delivery_count > 1 {
        metrics::counter!(REDELIVERIES, "queue_group" => group).increment(1);
    }
}

/// How a delivery was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Acknowledged.
    Ack,
    /// Nak'ed (to come back).
    Nak,
    /// Terminated (never to come back).
    Term,
}

/// A member of `queue_group` settled a delivery.
pub fn settled(queue_group: &str, how: Settled) {
    let name = match how {
        Settled::Ack => ACKS,
        Settled::Nak => NAKS,
        Settled::Term => TERMS,
    };
    metrics::counter!(name, "queue_group" => queue_group.to_owned()).increment(1);
}

/// A read-decide-save met a version conflict; `origin` is the queue group whose delivery it
/// was, or [`ORIGIN_HTTP`], [`ORIGIN_EXPIRY`].
pub fn version_conflict(origin: &str) {
    metrics::counter!(VERSION_CONFLICTS, "origin" => origin.to_owned()).increment(1);
}

/// The `reason` of a dead letter a listener terminated.
pub const DEAD_LETTER_TERMINATED: &str = "terminated";
/// The `reason` of a dead letter that ran out of deliveries.
pub const DEAD_LETTER_MAX_DELIVERIES: &str = "max_deliveries";

/// A bus recorded a dead letter of `queue_group` ([`DEAD_LETTER_TERMINATED`] or
/// [`DEAD_LETTER_MAX_DELIVERIES`]).
pub fn dead_lettered(queue_group: &str, reason: &'static str) {
    metrics::counter!(
        DEAD_LETTERS,
        "queue_group" => queue_group.to_owned(),
        "reason" => reason
    )
    .increment(1);
}

/// A bus that keeps dead letters up to a cap dropped the oldest one.
pub fn dead_letter_dropped() {
    metrics::counter!(DEAD_LETTERS_DROPPED).increment(1);
}

/// One relay's metrics, registered once when the relay starts (a relay round records three,
/// and with one entry per round a registry lookup each was a share of every write's cost).
pub struct Outbox {
    depth: metrics::Gauge,
    lag: metrics::Gauge,
    published: metrics::Counter,
}

impl Outbox {
    /// The metrics of `service`'s relay.
    pub fn new(service: &'static str) -> Self {
        Self {
            depth: metrics::gauge!(OUTBOX_DEPTH, "service" => service),
            lag: metrics::gauge!(OUTBOX_RELAY_LAG, "service" => service),
            published: metrics::counter!(OUTBOX_PUBLISHED, "service" => service),
        }
    }

    /// The relay read its outbox: `pending` entries (at most one batch), the oldest of which
    /// it first saw pending `oldest_waiting` ago.
    pub fn read(&self, pending: usize, oldest_waiting: Duration) {
        self.depth.set(pending as f64);
        self.lag.set(oldest_waiting.as_secs_f64());
    }

    /// The relay published `count` entries.
    pub fn published(&self, count: usize) {
        self.published.increment(count as u64);
    }
}

/// An outbox entry on `subject` that cannot be published was set aside (by the relay, or by
/// the store reading a row it cannot decode, which does not know the service: hence the
/// subject, which names it).
pub fn outbox_quarantined(subject: &str) {
    metrics::counter!(OUTBOX_QUARANTINED, "subject" => subject.to_owned()).increment(1);
}

/// The orders service's expiry cancelled an order.
pub fn order_expired() {
    metrics::counter!(ORDERS_EXPIRED).increment(1);
}

/// The process's Prometheus recorder: installed as the global recorder by the first caller,
/// and shared after that.
#[cfg(not(loom))]
pub mod prometheus {
    use std::sync::OnceLock;
    use std::time::Duration;

    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    use super::HTTP_REQUEST_DURATION;

    /// Latency buckets in seconds: 1 ms to 10 s, as a request to this service ranges from a
    /// memory read to a PostgreSQL write waiting on a lock.
    const LATENCY_BUCKETS_SECONDS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    ];

    static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

    /// The handle of the process's recorder, installing it on the first call; `None` if
    /// another recorder was installed first (by an embedding program), whose metrics are then
    /// its own to export.
    pub fn handle() -> Option<&'static PrometheusHandle> {
        RECORDER.get_or_init(install).as_ref()
    }

    fn install() -> Option<PrometheusHandle> {
        let built = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(HTTP_REQUEST_DURATION.to_owned()),
                LATENCY_BUCKETS_SECONDS,
            )
            .and_then(PrometheusBuilder::install_recorder);
        match built {
            Ok(handle) => {
                keep_up(handle.clone());
                Some(handle)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot install the Prometheus recorder; /metrics is empty");
                None
            }
        }
    }

    /// How often histogram samples are folded into their buckets (the exporter's default).
    const UPKEEP_EVERY: Duration = Duration::from_secs(5);

    /// Runs the recorder's upkeep for the life of the process. A recorder installed with
    /// `install_recorder` buffers every histogram sample until upkeep drains it into the
    /// buckets; without a scrape, nothing else does, and a service nobody scrapes would grow by
    /// one sample per request forever. A thread of its own, so it runs whatever runtime (or
    /// none) the process has.
    fn keep_up(handle: PrometheusHandle) {
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    handle.run_upkeep();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the metrics upkeep thread; histograms drain only when /metrics is read");
        }
    }

    /// Everything counted so far, in Prometheus's text format.
    pub fn render() -> String {
        match handle() {
            Some(handle) => {
                handle.run_upkeep();
                handle.render()
            }
            None => "# no Prometheus recorder: another metrics recorder was installed first\n"
                .to_owned(),
        }
    }
}
