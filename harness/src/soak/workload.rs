//! The clients: each signs in as its own user and issues random requests over HTTP (create a
//! ticket, edit one of its tickets' price and title, order a ticket, cancel one of its orders,
//! read a ticket or its replica), recording every request with its response and times.
//!
//! Each client draws its choices from its own seeded generator. What it targets comes from
//! what it has seen: its own tickets and orders, and a pool of every ticket any client
//! created (half of its orders go to the 16 newest tickets, so orders contend for tickets).
//!
//! The invariant: a request once sent is never cancelled by the soak (it completes or times
//! out), so every entry's outcome is what the server answered or a transport error, and the
//! checker can tell an acknowledged write from an unknown one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use std::sync::Mutex;
use ticketing::id::Id;
use ticketing::records::UserId;
use ticketing::services::auth::SessionKey;

use crate::lock::locked;

use super::options::SoakOptions;

/// How long one request may take before the client gives up on it (its outcome unknown).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How many of the newest tickets count as "hot" for orders.
const HOT_TICKETS: usize = 16;

/// Requests issued so far, across clients (the budget, and the progress lines, count them).
#[derive(Debug, Default)]
pub struct Issued(pub AtomicU64);

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    /// `POST /api/tickets`.
    CreateTicket,
    /// `PUT /api/tickets/:id`.
    UpdateTicket,
    /// `POST /api/orders`.
    CreateOrder,
    /// `DELETE /api/orders/:id`.
    CancelOrder,
    /// `GET /api/tickets/:id`.
    ShowTicket,
    /// `GET /api/replica/tickets/:id`.
    ShowReplica,
}

impl RequestKind {
    /// Every kind, in report order.
    pub const ALL: [RequestKind; 6] = [
        RequestKind::CreateTicket,
        RequestKind::UpdateTicket,
        RequestKind::CreateOrder,
        RequestKind::CancelOrder,
        RequestKind::ShowTicket,
        RequestKind::ShowReplica,
    ];

    /// The kind's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            RequestKind::CreateTicket => "create ticket",
            RequestKind::UpdateTicket => "update ticket",
            RequestKind::CreateOrder => "create order",
            RequestKind::CancelOrder => "cancel order",
            RequestKind::ShowTicket => "show ticket",
            RequestKind::ShowReplica => "show replica",
        }
    }

    /// Whether it writes.
    pub const fn writes(self) -> bool {
        matches!(
            self,
            RequestKind::CreateTicket
                | RequestKind::UpdateTicket
                | RequestKind::CreateOrder
                | RequestKind::CancelOrder
        )
    }

    /// The mix: relative weights of the kinds, in [`Self::ALL`]'s order.
    const WEIGHTS: [u32; 6] = [15, 30, 20, 15, 10, 10];
}

/// One request and what came of it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Which client sent it.
    pub client: usize,
    /// What it was.
    pub kind: RequestKind,
    /// The ticket it named (for orders: the ticket ordered), if any.
    pub ticket: Option<Id>,
    /// The order it named, if any.
    pub order: Option<Id>,
    /// The body sent, if any.
    pub body: Option<Value>,
    /// When it was sent, after the workload started.
    pub started: Duration,
    /// When its answer was in.
    pub finished: Duration,
    /// The status, or `None` if no answer came (transport error or timeout).
    pub status: Option<u16>,
    /// The answer's body (`Null` if empty or not JSON), or the transport error.
    pub response: Value,
}

impl Entry {
    /// Whether the server answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }

    /// Whether the outcome is unknown: no answer, or a server error (the write may or may not
    /// have happened).
    pub fn unknown(&self) -> bool {
        self.status.is_none_or(|status| status >= 500)
    }
}

/// What every client shares.
struct Shared {
    base: String,
    sessions: SessionKey,
    /// Every ticket a client created (acknowledged), oldest first.
    pool: Mutex<Vec<Id>>,
    issued: Arc<Issued>,
    max_requests: u64,
    stop: CancellationToken,
    budget_spent: CancellationToken,
    started: Instant,
}

/// The running clients.
pub struct Clients {
    tasks: Vec<JoinHandle<Vec<Entry>>>,
}

/// Starts `options.clients` clients against `base` (`http://127.0.0.1:port`). They run until
/// `stop`, or until `options.max_requests` requests were issued in total (then they cancel
/// `budget_spent`).
pub fn spawn_clients(
    options: &SoakOptions,
    base: String,
    sessions: SessionKey,
    issued: Arc<Issued>,
    stop: CancellationToken,
    budget_spent: CancellationToken,
    started: Instant,
) -> Clients {
    let shared = Arc::new(Shared {
        base,
        sessions,
        pool: Mutex::new(Vec::new()),
        issued,
        max_requests: options.max_requests,
        stop,
        budget_spent,
        started,
    });
    let tasks = (0..options.clients)
        .map(|index| {
            let shared = Arc::clone(&shared);
            let seed = options.client_seed(index);
            tokio::spawn(async move { Client::new(index, seed, shared).run().await })
        })
        .collect();
    Clients { tasks }
}

/// Waits for every client to finish its last request; their entries, by start time.
pub async fn join_clients(clients: Clients) -> Vec<Entry> {
    let mut history = Vec::new();
    for task in clients.tasks {
        match task.await {
            Ok(entries) => history.extend(entries),
            Err(error) => tracing::error!(%error, "a soak client failed"),
        }
    }
    history.sort_by_key(|entry| (entry.started, entry.client));
    history
}

/// One client: its user, its generator, what it owns.
struct Client {
    index: usize,
    rng: StdRng,
    shared: Arc<Shared>,
    http: Option<reqwest::Client>,
    token: String,
    /// Its tickets (created with 201).
    tickets: Vec<Id>,
    /// Its orders (created with 201) and whether it believes each still active.
    orders: Vec<(Id, bool)>,
    created: u64,
    entries: Vec<Entry>,
}

impl Client {
    fn new(index: usize, seed: u64, shared: Arc<Shared>) -> Self {
        let user = UserId::new(format!("soak-client-{index}"));
        let token = shared
            .sessions
            .issue(
                &user,
                &format!("client{index}@soak.test"),
                Duration::from_secs(24 * 3600),
            )
            .unwrap_or_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .ok();
        Self {
            index,
            rng: StdRng::seed_from_u64(seed),
            shared,
            http,
            token,
            tickets: Vec::new(),
            orders: Vec::new(),
            created: 0,
            entries: Vec::new(),
        }
    }

    async fn run(mut self) -> Vec<Entry> {
        if self.http.is_none() || self.token.is_empty() {
            tracing::error!(
                client = self.index,
                "cannot build an HTTP client or a session"
            );
            return self.entries;
        }
        while !self.shared.stop.is_cancelled() {
            let issued = self.shared.issued.0.fetch_add(1, Ordering::Relaxed);
            if issued >= self.shared.max_requests {
                self.shared.budget_spent.cancel();
                break;
            }
            let kind = self.choose_kind();
            self.act(kind).await;
        }
        self.entries
    }

    fn choose_kind(&mut self) -> RequestKind {
        let total: u32 = RequestKind::WEIGHTS.iter().sum();
        let mut pick = self.rng.random_range(0..total);
        for (kind, weight) in RequestKind::ALL.iter().zip(RequestKind::WEIGHTS) {
            if pick < weight {
                return *kind;
            }
            pick -= weight;
        }
        RequestKind::CreateTicket
    }

    /// A ticket from the shared pool: half the time one of the newest, else any.
    fn pick_pool_ticket(&mut self) -> Option<Id> {
        let hot = self.rng.random_bool(0.5);
        let draw: usize = self.rng.random_range(0..usize::MAX);
        let pool = locked(&self.shared.pool);
        if pool.is_empty() {
            return None;
        }
        let index = if hot {
            pool.len() - 1 - draw % pool.len().min(HOT_TICKETS)
        } else {
            draw % pool.len()
        };
        Some(pool[index])
    }

    fn random_price(&mut self) -> (Value, u64) {
        let cents: u64 = self.rng.random_range(1..=100_000);
        let price = if cents.is_multiple_of(100) {
            json!(cents / 100)
        } else {
            json!(cents as f64 / 100.0)
        };
        (price, cents)
    }

    async fn act(&mut self, kind: RequestKind) {
        match kind {
            RequestKind::CreateTicket => self.create_ticket().await,
            RequestKind::UpdateTicket => {
                let own = self.rng.random_bool(0.9) && !self.tickets.is_empty();
                let target = if own {
                    let index = self.rng.random_range(0..self.tickets.len());
                    Some(self.tickets[index])
                } else {
                    self.pick_pool_ticket()
                };
                match target {
                    Some(id) => self.update_ticket(id).await,
                    None => self.create_ticket().await,
                }
            }
            RequestKind::CreateOrder => match self.pick_pool_ticket() {
                Some(id) => self.create_order(id).await,
                None => self.create_ticket().await,
            },
            RequestKind::CancelOrder => {
                let active: Vec<Id> = self
                    .orders
                    .iter()
                    .filter(|(_, active)| *active)
                    .map(|(id, _)| *id)
                    .collect();
                // Mostly an active order; sometimes any (cancelling twice is idempotent).
                let candidates = if active.is_empty() || self.rng.random_bool(0.1) {
                    self.orders.iter().map(|(id, _)| *id).collect()
                } else {
                    active
                };
                if candidates.is_empty() {
                    match self.pick_pool_ticket() {
                        Some(id) => self.create_order(id).await,
                        None => self.create_ticket().await,
                    }
                } else {
                    let order = candidates[self.rng.random_range(0..candidates.len())];
                    self.cancel_order(order).await;
                }
            }
            RequestKind::ShowTicket | RequestKind::ShowReplica => match self.pick_pool_ticket() {
                Some(id) => {
                    let path = if kind == RequestKind::ShowTicket {
                        format!("/api/tickets/{id}")
                    } else {
                        format!("/api/replica/tickets/{id}")
                    };
                    self.send(kind, Method::GET, &path, Some(id), None, None)
                        .await;
                }
                None => self.create_ticket().await,
            },
        }
    }

    async fn create_ticket(&mut self) {
        self.created += 1;
        let (price, _) = self.random_price();
        let body = json!({"title": format!("c{} t{}", self.index, self.created), "price": price});
        let entry = self
            .send(
                RequestKind::CreateTicket,
                Method::POST,
                "/api/tickets",
                None,
                None,
                Some(body),
            )
            .await;
        if entry.status == Some(201)
            && let Some(id) = id_field(&entry.response, "id")
        {
            self.tickets.push(id);
            locked(&self.shared.pool).push(id);
        }
    }

    async fn update_ticket(&mut self, id: Id) {
        let (price, _) = self.random_price();
        let title = if self.rng.random_bool(0.3) {
            format!("c{} edit {}", self.index, self.rng.random_range(0..1000u32))
        } else {
            format!("c{} same", self.index)
        };
        let body = json!({"title": title, "price": price});
        self.send(
            RequestKind::UpdateTicket,
            Method::PUT,
            &format!("/api/tickets/{id}"),
            Some(id),
            None,
            Some(body),
        )
        .await;
    }

    async fn create_order(&mut self, ticket: Id) {
        let body = json!({"ticketId": ticket.to_string()});
        let entry = self
            .send(
                RequestKind::CreateOrder,
                Method::POST,
                "/api/orders",
                Some(ticket),
                None,
                Some(body),
            )
            .await;
        if entry.status == Some(201)
            && let Some(id) = id_field(&entry.response, "id")
        {
            self.orders.push((id, true));
        }
    }

    async fn cancel_order(&mut self, order: Id) {
        let entry = self
            .send(
                RequestKind::CancelOrder,
                Method::DELETE,
                &format!("/api/orders/{order}"),
                None,
                Some(order),
                None,
            )
            .await;
        if entry.status == Some(204) {
            for (id, active) in &mut self.orders {
                if *id == order {
                    *active = false;
                }
            }
        }
    }

    /// Sends one request, records it, and returns the recorded entry.
    async fn send(
        &mut self,
        kind: RequestKind,
        method: Method,
        path: &str,
        ticket: Option<Id>,
        order: Option<Id>,
        body: Option<Value>,
    ) -> Entry {
        let started = self.shared.started.elapsed();
        let (status, response) = match &self.http {
            Some(http) => {
                let mut request = http
                    .request(method, format!("{}{path}", self.shared.base))
                    .bearer_auth(&self.token);
                if let Some(body) = &body {
                    request = request.json(body);
                }
                exchange(request).await
            }
            None => (None, Value::String("no HTTP client".to_owned())),
        };
        let entry = Entry {
            client: self.index,
            kind,
            ticket,
            order,
            body,
            started,
            finished: self.shared.started.elapsed(),
            status,
            response,
        };
        self.entries.push(entry.clone());
        entry
    }
}

/// Sends and reads the answer: its status and JSON body, or no status and the error.
async fn exchange(request: reqwest::RequestBuilder) -> (Option<u16>, Value) {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return (None, Value::String(error.to_string())),
    };
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(bytes) if bytes.is_empty() => (Some(status), Value::Null),
        Ok(bytes) => (
            Some(status),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ),
        Err(error) => (None, Value::String(error.to_string())),
    }
}

/// The id in `body[field]`, if it is one.
pub fn id_field(body: &Value, field: &str) -> Option<Id> {
    body.get(field)?.as_str()?.parse().ok()
}
