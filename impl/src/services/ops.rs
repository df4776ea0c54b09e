//! What an operator watches the process by: `GET /metrics` (Prometheus text), `GET /healthz`
//! (the process answers), `GET /readyz` (both stores and the bus answer), and the layer that
//! counts every HTTP request by route and status with its latency.
//!
//! The invariants: readiness asks each backend with a bounded wait ([`READY_PROBE_TIMEOUT`]),
//! so a probe never hangs on a server that is down; a request is counted under its route's
//! pattern (`/api/orders/{id}`), never its raw path, so the number of label values is bounded
//! by the routes; these routes need no session and change nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::id::Id;
use crate::metrics::HttpRequests;
use crate::records::{Ticket, TicketReplica};
use crate::store::VersionedStore;

/// How long `/readyz` waits for each backend before calling it unreachable.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `route` label of a request no route matched.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Counts the request under its method, route pattern and status, with its latency
/// ([`crate::metrics::HttpRequests`], one per router).
pub(crate) async fn count_request(
    State(counted): State<Arc<HttpRequests>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    counted.record(
        method.as_str(),
        route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics`: everything the process counted, in Prometheus's text format.
pub(crate) async fn metrics() -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::prometheus::render(),
    )
        .into_response()
}

/// `GET /healthz`: 200 while the process serves HTTP at all.
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The body of `/healthz`.
#[derive(Serialize)]
pub(crate) struct Health {
    status: &'static str,
}

/// The body of `/readyz`: each backend's answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// The tickets service's store answered a read.
    tickets_store: bool,
    /// The orders service's store answered a read.
    orders_store: bool,
    /// The bus's connection is up.
    bus: bool,
}

impl Readiness {
    fn ready(&self) -> bool {
        self.tickets_store && self.orders_store && self.bus
    }
}

/// `GET /readyz`'s answer: 200 when both stores answer a read and the bus is connected
/// (`bus_reachable`), else 503; the body says which backend did not answer.
pub(crate) async fn readiness<TS, OS>(tickets: &TS, orders: &OS, bus_reachable: bool) -> Response
where
    TS: VersionedStore<Ticket>,
    OS: VersionedStore<TicketReplica>,
{
    // A read of an id that is never stored: it touches the backend and finds nothing.
    let probe = Id::new();
    let (tickets_store, orders_store) = tokio::join!(
        answers(tickets.find_by_id(probe)),
        answers(orders.find_by_id(probe))
    );
    let readiness = Readiness {
        tickets_store,
        orders_store,
        bus: bus_reachable,
    };
    let status = if readiness.ready() {
        StatusCode::OK
    } else {
        tracing::warn!(?readiness, "not ready");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// Whether `read` succeeds within [`READY_PROBE_TIMEOUT`].
async fn answers<T, E>(read: impl Future<Output = Result<T, E>>) -> bool {
    matches!(
        tokio::time::timeout(READY_PROBE_TIMEOUT, read).await,
        Ok(Ok(_))
    )
}
