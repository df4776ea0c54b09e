//! Assembly: both services behind one HTTP address, N members in each queue group, one outbox
//! relay per service, on any store and bus backends.
//!
//! The invariant kept at shutdown, in this order: the HTTP server stops accepting and lets
//! requests in flight finish; the queue-group members stop (a delivery in progress finishes or
//! is redelivered); the relays flush their outboxes. Whatever a crash interrupts instead is
//! recovered at the next start: unacknowledged deliveries are redelivered, the outbox is
//! relayed again (deduplicated by publish id).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusError, EmbeddedBus, JetStreamBus, JetStreamConfig, ListenerOptions};
use crate::events::Subject;
use crate::services::ServiceConfig;
use crate::services::auth::{MissingKey, SessionKey};
use crate::services::http::{AppState, OrderStore, TicketStore, router};
use crate::services::listener::Listener;
use crate::services::member::{self, Member};
use crate::services::orders::{self, OrdersService};
use crate::services::relay::{RelayConfig, run_relay};
use crate::services::tickets::{self, TicketsService};
use crate::store::{MemStore, Outbox, PgStore, StoreError};

/// How the application runs.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// The HTTP address (port 0: any free port; see [`RunningApp::local_addr`]).
    pub listen: SocketAddr,
    /// Members in each queue group.
    pub members: usize,
    /// Variant, order expiry, backoff, bounds.
    pub config: ServiceConfig,
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries of one event before it is dead-lettered.
    pub max_deliver: u32,
    /// How the relays run.
    pub relay: RelayConfig,
    /// Verifies sessions.
    pub sessions: SessionKey,
}

impl AppOptions {
    /// The defaults (127.0.0.1:3000, 2 members, the course's 5 s ack wait, 10 deliveries)
    /// with this session key and variant.
    pub fn new(sessions: SessionKey, variant: crate::variant::Variant) -> Self {
        let defaults = ListenerOptions::new(tickets::QUEUE_GROUP, &[]);
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            members: 2,
            config: ServiceConfig::new(variant),
            ack_wait: defaults.ack_wait,
            max_deliver: defaults.max_deliver,
            relay: RelayConfig::default(),
            sessions,
        }
    }

    fn listener_options(&self, queue_group: &str, subjects: &[Subject]) -> ListenerOptions {
        ListenerOptions {
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            ..ListenerOptions::new(queue_group, subjects)
        }
    }
}

/// Which backends `ticketing serve` uses (each `None`: the embedded one).
#[derive(Clone, Debug, Default)]
pub struct Backends {
    /// NATS JetStream URL.
    pub bus: Option<String>,
    /// The JetStream namespace (stream `NAME`, subjects `NAME.ticket:created`, ...); the
    /// default stream `TICKETING` over the bare subject names if `None`.
    pub stream_prefix: Option<String>,
    /// PostgreSQL URL.
    pub store: Option<String>,
}

/// Why the application did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No session key.
    #[error(transparent)]
    MissingKey(#[from] MissingKey),
    /// The HTTP address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A store cannot be opened.
    #[error("cannot open the {service} store: {source}")]
    Store {
        /// Which service's.
        service: &'static str,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The bus cannot be reached, or a queue group cannot be joined.
    #[error("cannot start the bus: {0}")]
    Bus(#[from] BusError),
}

/// A running application.
pub struct RunningApp {
    local_addr: SocketAddr,
    http_stop: CancellationToken,
    members_stop: CancellationToken,
    relays_stop: CancellationToken,
    http: JoinHandle<()>,
    members: Vec<JoinHandle<()>>,
    relays: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RunningApp {
    /// Where the HTTP API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops gracefully: HTTP (in-flight requests finish), then the members, then the relays
    /// (after flushing).
    pub async fn shutdown(self) {
        self.http_stop.cancel();
        join("http server", self.http).await;
        self.members_stop.cancel();
        for member in self.members {
            join("queue-group member", member).await;
        }
        self.relays_stop.cancel();
        for relay in self.relays {
            join("outbox relay", relay).await;
        }
    }
}

async fn join(what: &str, task: JoinHandle<()>) {
    if let Err(error) = task.await {
        tracing::error!(%error, "{what} task failed");
    }
}

/// Starts both services on these stores and this bus.
pub async fn start<TS, OS, B>(
    options: AppOptions,
    tickets_store: TS,
    orders_store: OS,
    bus: B,
) -> Result<RunningApp, StartError>
where
    TS: TicketStore + Outbox,
    OS: OrderStore + Outbox,
    B: Bus,
{
    let horizon = options.config.gap_backoff.horizon(options.max_deliver);
    tracing::info!(
        variant = %options.config.variant,
        members = options.members,
        ack_wait = ?options.ack_wait,
        max_deliver = options.max_deliver,
        redelivery_horizon = ?horizon,
        "starting the tickets and orders services"
    );
    let tickets = Arc::new(TicketsService::new(
        tickets_store,
        bus.clone(),
        options.config.clone(),
    ));
    let orders = Arc::new(OrdersService::new(
        orders_store,
        bus.clone(),
        options.config.clone(),
    ));

    // Everything that can fail comes first, so a failed start leaves no task behind.
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| StartError::Listen {
            address: options.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        address: options.listen,
        source,
    })?;
    let tickets_group = options.listener_options(
        tickets::QUEUE_GROUP,
        &[Subject::OrderCreated, Subject::OrderCancelled],
    );
    let orders_group = options.listener_options(
        orders::QUEUE_GROUP,
        &[Subject::TicketCreated, Subject::TicketUpdated],
    );
    let mut tickets_members = Vec::with_capacity(options.members);
    let mut orders_members = Vec::with_capacity(options.members);
    for _ in 0..options.members.max(1) {
        tickets_members.push(member::join(&bus, &tickets_group).await?);
        orders_members.push(member::join(&bus, &orders_group).await?);
    }

    let relays_stop = CancellationToken::new();
    let relays = vec![
        spawn_relay(
            "tickets",
            Arc::clone(&tickets),
            |s| (&s.store, &s.publisher),
            options.relay,
            relays_stop.clone(),
        ),
        spawn_relay(
            "orders",
            Arc::clone(&orders),
            |s| (&s.store, &s.publisher),
            options.relay,
            relays_stop.clone(),
        ),
    ];
    let members_stop = CancellationToken::new();
    let mut members = Vec::with_capacity(2 * options.members);
    for member in tickets_members {
        members.push(spawn_member(
            member,
            tickets::QUEUE_GROUP,
            Arc::clone(&tickets),
            members_stop.clone(),
        ));
    }
    for member in orders_members {
        members.push(spawn_member(
            member,
            orders::QUEUE_GROUP,
            Arc::clone(&orders),
            members_stop.clone(),
        ));
    }

    let state = AppState {
        tickets,
        orders,
        sessions: Arc::new(options.sessions),
    };
    let http_stop = CancellationToken::new();
    let stop = http_stop.clone();
    let http = tokio::spawn(async move {
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "http server failed");
        }
    });
    Ok(RunningApp {
        local_addr,
        http_stop,
        members_stop,
        relays_stop,
        http,
        members,
        relays,
    })
}

fn spawn_relay<T, O, P>(
    service_name: &'static str,
    service: Arc<T>,
    parts: fn(&T) -> (&O, &P),
    config: RelayConfig,
    stop: CancellationToken,
) -> JoinHandle<()>
where
    T: Send + Sync + 'static,
    O: Outbox + 'static,
    P: crate::bus::Publisher + 'static,
{
    tokio::spawn(async move {
        let (outbox, publisher) = parts(&service);
        run_relay(service_name, outbox, publisher, config, stop).await;
    })
}

/// Runs a joined member until `stop`.
fn spawn_member<S, L>(
    member: Member<S>,
    queue_group: &'static str,
    listener: Arc<L>,
    stop: CancellationToken,
) -> JoinHandle<()>
where
    S: crate::bus::Subscription,
    L: Listener,
{
    tokio::spawn(async move {
        let report = member.run(listener, stop).await;
        tracing::info!(queue_group, ?report, "queue-group member stopped");
    })
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Starts `ticketing serve` on the backends named: memory stores unless `backends.store`
/// names a PostgreSQL server (schemas `tickets` and `orders`), the embedded broker unless
/// `backends.bus` names a NATS server.
pub async fn start_with_backends(
    options: AppOptions,
    backends: Backends,
) -> Result<RunningApp, StartError> {
    match (backends.store.as_deref(), backends.bus.as_deref()) {
        (None, None) => {
            start(
                options,
                MemStore::new(),
                MemStore::new(),
                EmbeddedBus::new(),
            )
            .await
        }
        (None, Some(url)) => {
            let bus = connect_bus(url, backends.stream_prefix.as_deref()).await?;
            start(options, MemStore::new(), MemStore::new(), bus).await
        }
        (Some(url), None) => {
            let (tickets, orders) = connect_stores(url).await?;
            start(options, tickets, orders, EmbeddedBus::new()).await
        }
        (Some(store_url), Some(bus_url)) => {
            let (tickets, orders) = connect_stores(store_url).await?;
            let bus = connect_bus(bus_url, backends.stream_prefix.as_deref()).await?;
            start(options, tickets, orders, bus).await
        }
    }
}

/// The PostgreSQL schema of the tickets service's store.
pub const TICKETS_SCHEMA: &str = "tickets";
/// The PostgreSQL schema of the orders service's store.
pub const ORDERS_SCHEMA: &str = "orders";

async fn connect_stores(url: &str) -> Result<(PgStore, PgStore), StartError> {
    let tickets = PgStore::connect(url, TICKETS_SCHEMA)
        .await
        .map_err(|source| StartError::Store {
            service: "tickets",
            source,
        })?;
    let orders = PgStore::connect(url, ORDERS_SCHEMA)
        .await
        .map_err(|source| StartError::Store {
            service: "orders",
            source,
        })?;
    Ok((tickets, orders))
}

async fn connect_bus(url: &str, namespace: Option<&str>) -> Result<JetStreamBus, StartError> {
    let config = match namespace {
        Some(name) => JetStreamConfig::namespaced(name),
        None => JetStreamConfig::default(),
    };
    Ok(JetStreamBus::connect(JetStreamConfig {
        url: url.to_owned(),
        ..config
    })
    .await?)
}
