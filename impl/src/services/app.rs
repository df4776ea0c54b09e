//! Assembly: both services behind one HTTP address, in front of the [`Supervisor`] that runs
//! N members in each queue group and one outbox relay per service, on any store and bus
//! backends. [`serve`] is the one assembly: `ticketing serve` ([`start`],
//! [`start_with_backends`]) runs it with no delivery hooks, the soak with its fault hooks.
//!
//! The invariant kept at shutdown, in this order: the HTTP server stops accepting and lets
//! requests in flight finish; the queue-group members stop (a delivery in progress finishes or
//! is redelivered); the relays flush their outboxes. Whatever a crash interrupts instead is
//! recovered at the next start: unacknowledged deliveries are redelivered, the outbox is
//! relayed again (deduplicated by publish id).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::bus::{
    Bus, BusError, EmbeddedBus, JetStreamBus, JetStreamConfig, ListenerOptions, Publisher,
};
use crate::services::ServiceConfig;
use crate::services::auth::{KeyError, SessionKey};
use crate::services::http::{AppState, OrderStore, TicketStore, router};
use crate::services::orders::OrdersService;
use crate::services::relay::RelayConfig;
use crate::services::supervisor::{DeliveryHooks, NoHooks, Supervisor, SupervisorOptions, Task};
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
    /// The defaults (127.0.0.1:3000, 2 members, the course's 5 s ack wait, 30 deliveries)
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

    /// What the supervisor runs with: these members, ack wait, max deliver and relay
    /// config; graceful stops take as long as they take.
    pub fn supervisor_options(&self) -> SupervisorOptions {
        SupervisorOptions {
            members: self.members,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            relay: self.relay,
            graceful_stop_timeout: None,
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
    /// No session key to serve with.
    #[error(transparent)]
    Key(#[from] KeyError),
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

/// Both services served: the HTTP server in front of a running [`Supervisor`].
pub struct Serving<TS, OS, P, B, H: DeliveryHooks = NoHooks> {
    local_addr: SocketAddr,
    http: Task,
    supervisor: Supervisor<TS, OS, P, B, H>,
}

impl<TS, OS, P, B, H: DeliveryHooks> std::fmt::Debug for Serving<TS, OS, P, B, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("local_addr", &self.local_addr)
            .field("supervisor", &self.supervisor)
            .finish_non_exhaustive()
    }
}

impl<TS, OS, P, B, H> Serving<TS, OS, P, B, H>
where
    TS: TicketStore + Outbox,
    OS: OrderStore + Outbox,
    P: Publisher + 'static,
    B: Bus,
    H: DeliveryHooks,
{
    /// Where the HTTP API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The members and relays.
    pub fn supervisor(&self) -> &Supervisor<TS, OS, P, B, H> {
        &self.supervisor
    }

    /// The members and relays, to start, stop or crash one of them.
    pub fn supervisor_mut(&mut self) -> &mut Supervisor<TS, OS, P, B, H> {
        &mut self.supervisor
    }

    /// Stops gracefully, in the module doc's order: HTTP (in-flight requests finish), then the
    /// members, then the relays (after flushing); each within the supervisor's graceful stop
    /// timeout, if it has one.
    pub async fn shutdown(mut self) {
        self.http
            .stop(self.supervisor.options().graceful_stop_timeout)
            .await;
        self.supervisor.stop_all().await;
    }
}

/// Serves both services: binds `listen`, starts every member and relay of `supervisor`, then
/// serves the HTTP API with sessions checked by `sessions`. Everything that can fail comes
/// first (the address, joining the queue groups), so a failed start leaves no task behind.
pub async fn serve<TS, OS, P, B, H>(
    listen: SocketAddr,
    sessions: SessionKey,
    mut supervisor: Supervisor<TS, OS, P, B, H>,
) -> Result<Serving<TS, OS, P, B, H>, StartError>
where
    TS: TicketStore + Outbox,
    OS: OrderStore + Outbox,
    P: Publisher + 'static,
    B: Bus,
    H: DeliveryHooks,
{
    // Installed before anything is counted, so the first requests and deliveries show.
    crate::metrics::prometheus::handle();
    let options = *supervisor.options();
    let config = &supervisor.tickets().config;
    tracing::info!(
        variant = %config.variant,
        members = options.members,
        ack_wait = ?options.ack_wait,
        max_deliver = options.max_deliver,
        redelivery_horizon = ?config.gap_backoff.horizon(options.max_deliver),
        "starting the tickets and orders services"
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Listen {
            address: listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        address: listen,
        source,
    })?;
    supervisor.start_all().await?;
    let state = AppState {
        tickets: Arc::clone(supervisor.tickets()),
        orders: Arc::clone(supervisor.orders()),
        sessions: Arc::new(sessions),
    };
    let stop = CancellationToken::new();
    let http = Task::spawn("http server", stop.clone(), async move {
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "http server failed");
        }
    });
    Ok(Serving {
        local_addr,
        http,
        supervisor,
    })
}

/// A running application (`ticketing serve`), whatever its backends.
pub struct RunningApp {
    local_addr: SocketAddr,
    serving: Box<dyn ShutDown>,
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
        self.serving.shut_down().await;
    }
}

/// [`Serving::shutdown`] whatever the backends, so one [`RunningApp`] type serves them all.
trait ShutDown: Send {
    fn shut_down(self: Box<Self>) -> BoxFuture<'static, ()>;
}

impl<TS, OS, P, B, H> ShutDown for Serving<TS, OS, P, B, H>
where
    TS: TicketStore + Outbox,
    OS: OrderStore + Outbox,
    P: Publisher + 'static,
    B: Bus,
    H: DeliveryHooks,
{
    fn shut_down(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin((*self).shutdown())
    }
}

/// Starts both services on these stores and this bus (their publisher too), with no delivery
/// hooks: [`serve`] on a [`Supervisor`] of `options`.
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
    let tickets = TicketsService::new(tickets_store, bus.clone(), options.config.clone());
    let orders = OrdersService::new(orders_store, bus.clone(), options.config.clone());
    let supervisor = Supervisor::new(
        Arc::new(tickets),
        Arc::new(orders),
        bus,
        options.supervisor_options(),
        NoHooks,
    );
    let serving = serve(options.listen, options.sessions, supervisor).await?;
    Ok(RunningApp {
        local_addr: serving.local_addr(),
        serving: Box::new(serving),
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

/// Connects to the JetStream server at `url`, in the namespace `serve --stream-prefix` names
/// (stream `TICKETING` over the bare subjects without one).
pub async fn connect_bus(url: &str, namespace: Option<&str>) -> Result<JetStreamBus, StartError> {
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
