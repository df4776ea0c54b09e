//! The services end to end, over a real socket, on the embedded profile (embedded broker,
//! memory stores), started on `127.0.0.1:0` as the e2e tests start them.
//!
//! - `services_http`: create-then-update request pairs (`POST /api/tickets`, then
//!   `PUT /api/tickets/{id}`), 16 pairs in flight, requests/s, while the relays and members
//!   replicate in the background. Yardstick: a bare axum server with the same routes and
//!   bodies over one `Mutex<HashMap>` (no session, no validation, no outbox, no bus), driven
//!   by the same client: the floor of HTTP and JSON on this machine.
//! - `services_converge`: the course's load, 200 tickets x (create, update, update), 50
//!   tickets in flight, timed from the first request until every replica shows its ticket's
//!   final version and price (polling `GET /api/replica/tickets/{id}`), on a fresh app per
//!   run. Yardstick: the same load and polls against the bare server, whose "replica" is the
//!   ticket itself (converged as soon as the load is done).
//!
//! Conformance throughput (the exhaustive replay) is the `harness` group's.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use ticketing::bus::EmbeddedBus;
use ticketing::records::UserId;
use ticketing::services::app::{self, AppOptions, RunningApp};
use ticketing::services::auth::SessionKey;
use ticketing::store::MemStore;
use ticketing::variant::Variant;

/// Request pairs in flight in the throughput benchmark.
const PAIRS_IN_FLIGHT: usize = 16;
/// The course's load: tickets, each created then updated twice, this many at a time.
const LOAD_TICKETS: usize = 200;
const LOAD_IN_FLIGHT: usize = 50;
/// How long a run may take to converge before the benchmark calls it stuck.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(90);
/// Pause between two rounds of polling replicas that have not converged yet.
const POLL_PAUSE: Duration = Duration::from_millis(2);

/// A server under test: the app, or the bare yardstick.
enum Server {
    App(RunningApp),
    Bare {
        address: SocketAddr,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Server {
    async fn app() -> Self {
        let key = SessionKey::new(b"benchmarks");
        let mut options = AppOptions::new(key, Variant::Reference);
        options.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let running = app::start(
            options,
            MemStore::new(),
            MemStore::new(),
            EmbeddedBus::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("start the app: {e}"));
        Server::App(running)
    }

    async fn bare() -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("address: {e}"));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, bare_router())
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Server::Bare {
            address,
            stop,
            task,
        }
    }

    fn base(&self) -> String {
        match self {
            Server::App(running) => format!("http://{}", running.local_addr()),
            Server::Bare { address, .. } => format!("http://{address}"),
        }
    }

    async fn stop(self) {
        match self {
            Server::App(running) => running.shutdown().await,
            Server::Bare { stop, task, .. } => {
                stop.cancel();
                let _ = task.await;
            }
        }
    }
}

// ----- the bare yardstick -----

#[derive(Clone, Default)]
struct Bare {
    tickets: Arc<Mutex<HashMap<u64, Value>>>,
    next_id: Arc<AtomicU64>,
}

fn bare_router() -> Router {
    Router::new()
        .route("/api/tickets", post(bare_create))
        .route("/api/tickets/{id}", put(bare_update))
        .route("/api/replica/tickets/{id}", get(bare_show))
        .with_state(Bare::default())
}

async fn bare_create(
    State(bare): State<Bare>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let id = bare.next_id.fetch_add(1, Ordering::Relaxed);
    let ticket = json!({
        "id": id.to_string(), "title": body["title"], "price": body["price"],
        "userId": "bench", "version": 0
    });
    bare.tickets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, ticket.clone());
    (StatusCode::CREATED, Json(ticket))
}

async fn bare_update(
    State(bare): State<Bare>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    let mut tickets = bare.tickets.lock().unwrap_or_else(|p| p.into_inner());
    let ticket = tickets.get_mut(&id).ok_or(StatusCode::NOT_FOUND)?;
    let version = ticket["version"].as_u64().unwrap_or(0) + 1;
    ticket["title"] = body["title"].clone();
    ticket["price"] = body["price"].clone();
    ticket["version"] = json!(version);
    Ok(Json(ticket.clone()))
}

async fn bare_show(
    State(bare): State<Bare>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, StatusCode> {
    let tickets = bare.tickets.lock().unwrap_or_else(|p| p.into_inner());
    tickets
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

// ----- the client -----

struct Client {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Client {
    fn new(server: &Server) -> Self {
        let token = SessionKey::new(b"benchmarks")
            .issue(
                &UserId::new("bench"),
                "bench@test.dev",
                Duration::from_secs(3600),
            )
            .unwrap_or_else(|e| panic!("token: {e}"));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_else(|e| panic!("client: {e}"));
        Self {
            base: server.base(),
            http,
            token,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn create(&self, n: usize) -> String {
        let (status, ticket) = self
            .send(
                reqwest::Method::POST,
                "/api/tickets",
                Some(json!({"title": format!("ticket {n}"), "price": 10})),
            )
            .await;
        assert_eq!(status, 201, "create: {ticket}");
        match ticket["id"].as_str() {
            Some(id) => id.to_owned(),
            None => panic!("a created ticket without an id: {ticket}"),
        }
    }

    async fn update(&self, n: usize, id: &str, price: Value) -> Value {
        let (status, ticket) = self
            .send(
                reqwest::Method::PUT,
                &format!("/api/tickets/{id}"),
                Some(json!({"title": format!("ticket {n}"), "price": price})),
            )
            .await;
        assert_eq!(status, 200, "update: {ticket}");
        ticket
    }

    /// `pairs` create-then-update pairs, [`PAIRS_IN_FLIGHT`] at a time.
    async fn create_then_update(&self, pairs: u64) {
        futures::stream::iter(0..pairs as usize)
            .map(|n| async move {
                let id = self.create(n).await;
                self.update(n, &id, json!(20.5)).await;
            })
            .buffer_unordered(PAIRS_IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
    }

    /// The course's load; returns each ticket's id, final version and price.
    async fn course_load(&self) -> Vec<(String, Value, Value)> {
        futures::stream::iter(0..LOAD_TICKETS)
            .map(|n| async move {
                let id = self.create(n).await;
                self.update(n, &id, json!(20.5)).await;
                let last = self.update(n, &id, json!(n as f64 + 0.25)).await;
                (id, last["version"].clone(), last["price"].clone())
            })
            .buffer_unordered(LOAD_IN_FLIGHT)
            .collect()
            .await
    }

    /// Polls the replica route until every ticket's replica shows its final version and price.
    async fn wait_for_replicas(&self, mut pending: Vec<(String, Value, Value)>) {
        let deadline = Instant::now() + CONVERGENCE_LIMIT;
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} replicas did not converge within {CONVERGENCE_LIMIT:?}",
                pending.len()
            );
            let checked: Vec<_> = futures::stream::iter(pending)
                .map(|expected| async move {
                    let path = format!("/api/replica/tickets/{}", expected.0);
                    let (status, replica) = self.send(reqwest::Method::GET, &path, None).await;
                    let converged = status == 200
                        && replica["version"] == expected.1
                        && replica["price"] == expected.2;
                    (!converged).then_some(expected)
                })
                .buffer_unordered(PAIRS_IN_FLIGHT)
                .collect()
                .await;
            pending = checked.into_iter().flatten().collect();
            if !pending.is_empty() {
                tokio::time::sleep(POLL_PAUSE).await;
            }
        }
    }
}

fn http_throughput(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("services_http");
    common::configure(
        &mut group,
        10,
        Duration::from_secs(1),
        Duration::from_secs(4),
    );
    // One element per request: a pair is two.
    group.throughput(Throughput::Elements(2));
    for (name, bare) in [("app", false), ("bare-axum", true)] {
        let server = runtime.block_on(async {
            if bare {
                Server::bare().await
            } else {
                Server::app().await
            }
        });
        let client = Client::new(&server);
        group.bench_function(BenchmarkId::new(name, "create-update"), |b| {
            b.iter_custom(|pairs| {
                runtime.block_on(async {
                    let started = Instant::now();
                    client.create_then_update(pairs).await;
                    started.elapsed()
                })
            });
        });
        runtime.block_on(server.stop());
    }
    group.finish();
}

fn convergence(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("services_converge");
    common::configure(
        &mut group,
        10,
        Duration::from_secs(1),
        Duration::from_secs(8),
    );
    for (name, bare) in [("app", false), ("bare-axum", true)] {
        group.bench_function(BenchmarkId::new(name, "200x3"), |b| {
            b.iter_custom(|runs| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..runs {
                        let server = if bare {
                            Server::bare().await
                        } else {
                            Server::app().await
                        };
                        let client = Client::new(&server);
                        let started = Instant::now();
                        let expected = client.course_load().await;
                        client.wait_for_replicas(expected).await;
                        total += started.elapsed();
                        server.stop().await;
                    }
                    total
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, http_throughput, convergence);
criterion_main!(benches);
