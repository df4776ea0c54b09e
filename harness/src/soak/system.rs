//! The system under soak: `ticketing serve`'s own assembly ([`app::serve`] in front of a
//! [`Supervisor`]) on `PgStore` and `JetStreamBus`, with the soak's hooks on it: every member's
//! deliveries go through [`MemberHooks`] (counting, and the fault injector's crash and late
//! plans), every publish through a [`CountingPublisher`]. What this module adds is the soak's
//! bookkeeping: a fresh stream and database per run, the connections opened for restarted
//! groups, the fault operations as sequences of supervisor steps, and the run's counts.
//!
//! The invariant: whatever the injector does, every member and relay runs under the
//! supervisor and is stopped by [`System::shutdown`] (each graceful stop bounded by
//! [`GRACEFUL_STOP_TIMEOUT`]); nothing outlives the run, and the stream and the database are
//! removed at the end.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use ticketing::bus::jetstream::ConsumerState;
use ticketing::bus::{Bus, BusError, DeadLetter, JetStreamBus, PublishAck, Publisher};
use ticketing::events::Event;
use ticketing::services::ServiceConfig;
use ticketing::services::app::{self, ORDERS_SCHEMA, Serving, TICKETS_SCHEMA};
use ticketing::services::auth::SessionKey;
use ticketing::services::orders::OrdersService;
use ticketing::services::relay::RelayConfig;
use ticketing::services::supervisor::{Service, Supervisor, SupervisorOptions};
use ticketing::services::tickets::TicketsService;
use ticketing::store::PgStore;
use ticketing::testkit::{FreshDatabase, FreshStream};

use super::hooks::{DeliveryStats, MemberHooks, SoakHooks};
use super::options::{SoakError, SoakOptions};
use super::publish_log::{CountingPublisher, PublishLog};

/// The queue groups, by index: 0 is the tickets service's, 1 the orders service's.
pub const GROUPS: [&str; 2] = [
    Service::Tickets.queue_group(),
    Service::Orders.queue_group(),
];
/// The relays, by index: 0 publishes the tickets outbox, 1 the orders outbox.
pub const RELAYS: [&str; 2] = [Service::Tickets.name(), Service::Orders.name()];

/// How long a graceful stop of a member, a relay or the HTTP server may take before it is
/// aborted instead (a member waits for its running handlers, a late one among them).
pub const GRACEFUL_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The services as the soak runs them.
pub type Tickets = TicketsService<PgStore, CountingPublisher>;
/// The services as the soak runs them.
pub type Orders = OrdersService<PgStore, CountingPublisher>;
/// The supervisor as the soak runs it.
pub type SoakSupervisor = Supervisor<PgStore, PgStore, CountingPublisher, JetStreamBus, SoakHooks>;

/// How a relay restart goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelayStop {
    /// Stopped with its shutdown token: it flushes, then stops.
    Graceful,
    /// Aborted wherever it was.
    Killed,
    /// Aborted, then one round run as the relay runs it up to the
    /// `relay-after-publish-before-mark` crash point: the pending batch published with its
    /// publish ids and not marked, as a crash there leaves it.
    CrashAfterPublish,
}

impl RelayStop {
    /// The mode's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            RelayStop::Graceful => "graceful",
            RelayStop::Killed => "killed",
            RelayStop::CrashAfterPublish => "crash-after-publish-before-mark",
        }
    }
}

/// Where the run's backends are, for the report.
#[derive(Clone, Debug)]
pub struct Backends {
    /// The NATS server's URL and version.
    pub nats: String,
    /// The run's stream.
    pub stream: String,
    /// The run's database (password hidden).
    pub database: String,
}

/// The assembled system.
pub struct System {
    /// Deleted when dropped: the stream and everything in it.
    stream: Option<FreshStream>,
    /// Dropped (connections and all) when dropped.
    database: Option<FreshDatabase>,
    bus: JetStreamBus,
    /// Every connection opened (members of restarted groups use new ones); each keeps its
    /// own dead-letter records.
    buses: Vec<JetStreamBus>,
    publisher: CountingPublisher,
    stats: Arc<DeliveryStats>,
    serving: Serving<PgStore, PgStore, CountingPublisher, JetStreamBus, SoakHooks>,
    /// The services' stores (clones: a `PgStore` is a handle on its pool).
    tickets_store: PgStore,
    orders_store: PgStore,
    sessions: SessionKey,
    local_addr: SocketAddr,
    backends: Backends,
}

/// A fresh stream and database, and the two stores on the database.
struct Fresh {
    stream: FreshStream,
    bus: JetStreamBus,
    database: FreshDatabase,
    tickets_store: PgStore,
    orders_store: PgStore,
    backends: Backends,
}

impl Fresh {
    /// Makes a fresh stream and database on `options`' servers, and connects the stores.
    async fn create(options: &SoakOptions) -> Result<Self, SoakError> {
        let (stream, bus) = FreshStream::create(&options.bus_url)
            .await
            .map_err(|error| SoakError::Unreachable {
                service: "NATS JetStream",
                why: error.to_string(),
            })?;
        let database = FreshDatabase::create(&options.store_url, "soak")
            .await
            .map_err(|why| SoakError::Unreachable {
                service: "PostgreSQL",
                why,
            })?;
        let connect = |schema| PgStore::connect(database.url(), schema);
        let (tickets_store, orders_store) =
            tokio::try_join!(connect(TICKETS_SCHEMA), connect(ORDERS_SCHEMA))
                .map_err(|error| SoakError::Start(error.to_string()))?;
        let backends = Backends {
            nats: format!("{} (nats-server {})", options.bus_url, bus.server_version()),
            stream: stream.config().stream.clone(),
            database: ticketing::store::pg::redact_password(database.url()),
        };
        Ok(Self {
            stream,
            bus,
            database,
            tickets_store,
            orders_store,
            backends,
        })
    }
}

/// The supervisor of `options`' run: the services on these stores publishing through
/// `publisher`, members joining on `bus`, the soak's hooks on every member.
fn supervisor(
    options: &SoakOptions,
    (tickets_store, orders_store): (PgStore, PgStore),
    publisher: &CountingPublisher,
    bus: JetStreamBus,
    hooks: SoakHooks,
) -> SoakSupervisor {
    let config = ServiceConfig::new(options.variant);
    let tickets = TicketsService::new(tickets_store, publisher.clone(), config.clone());
    let orders = OrdersService::new(orders_store, publisher.clone(), config);
    let supervisor_options = SupervisorOptions {
        members: options.members,
        ack_wait: options.ack_wait,
        max_deliver: options.max_deliver,
        relay: RelayConfig::default(),
        graceful_stop_timeout: Some(GRACEFUL_STOP_TIMEOUT),
    };
    Supervisor::new(
        Arc::new(tickets),
        Arc::new(orders),
        bus,
        supervisor_options,
        hooks,
    )
}

impl System {
    /// Makes a fresh stream and database, and serves both services on them as `ticketing
    /// serve` does (HTTP on `127.0.0.1:0`), with the soak's hooks.
    pub async fn start(options: &SoakOptions) -> Result<Self, SoakError> {
        let fresh = Fresh::create(options).await?;
        let publisher = CountingPublisher::new(fresh.bus.clone());
        let hooks = SoakHooks::default();
        let stats = Arc::clone(hooks.stats());
        let supervisor = supervisor(
            options,
            (fresh.tickets_store.clone(), fresh.orders_store.clone()),
            &publisher,
            fresh.bus.clone(),
            hooks,
        );
        let sessions = SessionKey::new(&rand::random::<[u8; 32]>());
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let serving = app::serve(listen, sessions.clone(), supervisor)
            .await
            .map_err(|error| SoakError::Start(error.to_string()))?;
        Ok(Self {
            stream: Some(fresh.stream),
            database: Some(fresh.database),
            buses: vec![fresh.bus.clone()],
            bus: fresh.bus,
            publisher,
            stats,
            local_addr: serving.local_addr(),
            serving,
            tickets_store: fresh.tickets_store,
            orders_store: fresh.orders_store,
            sessions,
            backends: fresh.backends,
        })
    }

    fn supervisor(&self) -> &SoakSupervisor {
        self.serving.supervisor()
    }

    fn supervisor_mut(&mut self) -> &mut SoakSupervisor {
        self.serving.supervisor_mut()
    }

    /// The HTTP base URL, `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The key sessions are signed with.
    pub fn sessions(&self) -> &SessionKey {
        &self.sessions
    }

    /// Where the backends are.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The main connection (what the relays publish on).
    pub fn bus(&self) -> &JetStreamBus {
        &self.bus
    }

    /// What the system published.
    pub fn publish_log(&self) -> &PublishLog {
        self.publisher.log()
    }

    /// The deliveries' counts.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// The tickets service's store.
    pub fn tickets_store(&self) -> &PgStore {
        &self.tickets_store
    }

    /// The orders service's store.
    pub fn orders_store(&self) -> &PgStore {
        &self.orders_store
    }

    /// Members in each group now.
    pub fn members(&self, group: usize) -> usize {
        self.supervisor().members(Service::ALL[group])
    }

    /// Member `member` of `group`'s hooks.
    pub fn hooks(&self, group: usize, member: usize) -> Option<Arc<MemberHooks>> {
        self.supervisor()
            .member_hook(Service::ALL[group], member)
            .map(Arc::clone)
    }

    /// Aborts member `member` of `group` (a crash: what it held is redelivered after the
    /// ack wait) and starts a replacement on the group's connection.
    pub async fn crash_member(&mut self, group: usize, member: usize) -> Result<(), BusError> {
        let service = Service::ALL[group];
        let supervisor = self.supervisor_mut();
        let member = member.min(supervisor.members(service).saturating_sub(1));
        supervisor.crash_member(service, member).await;
        supervisor.start_member(service).await
    }

    /// Stops every member of `group` (gracefully, or killed), and starts as many again on a
    /// new connection, as a restarted service process would. Whether every member stopped
    /// gracefully.
    pub async fn restart_group(&mut self, group: usize, graceful: bool) -> Result<bool, BusError> {
        let Some(stream) = self.stream.as_ref() else {
            return Err(BusError::Closed);
        };
        let bus = stream.connect().await?;
        self.buses.push(bus.clone());
        let service = Service::ALL[group];
        let supervisor = self.supervisor_mut();
        let count = supervisor.members(service);
        let mut all_graceful = graceful;
        for _ in 0..count {
            if graceful {
                all_graceful &= supervisor.stop_member(service, 0).await.unwrap_or(true);
            } else {
                supervisor.crash_member(service, 0).await;
            }
        }
        supervisor.set_bus(service, bus);
        for _ in 0..count {
            supervisor.start_member(service).await?;
        }
        Ok(all_graceful)
    }

    /// Stops relay `relay` as `how` says and starts it again. For
    /// [`RelayStop::CrashAfterPublish`], waits (at most `wait`) for `batch` entries to be
    /// pending (the clients keep writing while the relay is down), and returns how many were
    /// published and left unmarked.
    pub async fn restart_relay(
        &mut self,
        relay: usize,
        how: RelayStop,
        batch: usize,
        wait: Duration,
    ) -> Result<usize, String> {
        let service = Service::ALL[relay];
        let store = [&self.tickets_store, &self.orders_store][relay].clone();
        let publisher = self.publisher.clone();
        let supervisor = self.supervisor_mut();
        let was_running = match how {
            RelayStop::Graceful => supervisor.stop_relay(service).await.is_some(),
            RelayStop::Killed | RelayStop::CrashAfterPublish => {
                supervisor.crash_relay(service).await
            }
        };
        if !was_running {
            return Err(format!("relay {} is not running", RELAYS[relay]));
        }
        let unmarked = match how {
            RelayStop::CrashAfterPublish => {
                publish_without_marking(&store, &publisher, batch, wait).await
            }
            RelayStop::Graceful | RelayStop::Killed => Ok(0),
        };
        // Restarted whatever the crashed round came to.
        self.supervisor_mut().start_relay(service);
        unmarked.map_err(|error| error.to_string())
    }

    /// Publishes `event` again on the main connection, straight to the bus (not counted as
    /// the system's own publish).
    pub async fn republish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        self.bus.publish(event, publish_id).await
    }

    /// The groups' consumers as the server reports them.
    pub async fn consumer_states(&self) -> [Result<ConsumerState, BusError>; 2] {
        let (tickets, orders) = tokio::join!(
            self.bus.consumer_state(GROUPS[0]),
            self.bus.consumer_state(GROUPS[1])
        );
        [tickets, orders]
    }

    /// Everything dead-lettered, on any connection, once each.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        let mut seen = HashSet::new();
        let mut letters = Vec::new();
        for bus in &self.buses {
            for letter in bus.dead_letters() {
                if seen.insert((letter.queue_group.clone(), letter.stream_seq)) {
                    letters.push(letter);
                }
            }
        }
        letters.sort_by_key(|letter| letter.stream_seq);
        letters
    }

    /// The counts so far.
    pub async fn counts(&self) -> Counts {
        let log = self.publisher.log();
        let stats = &self.stats;
        let consumers = self.consumer_states().await.map(Result::ok);
        Counts {
            backends: self.backends.clone(),
            published: log.stored_by_subject(),
            publish_duplicates: log.duplicates(),
            publish_failures: log.failures(),
            stored_twice: log.stored_twice(),
            handled: stats.handled(),
            redeliveries: stats.redeliveries(),
            overlapping: stats.overlapping(),
            outcomes: stats.outcomes(),
            dead_letters: self.dead_letters(),
            consumers,
            connections: self.buses.len(),
        }
    }

    /// Stops everything as `ticketing serve` stops: HTTP, the members (gracefully, bounded),
    /// the relays (flushing, bounded); then deletes the stream and drops the database.
    pub async fn shutdown(self) {
        let System {
            stream,
            database,
            buses,
            serving,
            ..
        } = self;
        serving.shutdown().await;
        // Flush acks still buffered on every connection before the stream goes.
        for bus in &buses {
            let _ = bus.flush().await;
        }
        drop(buses);
        drop(stream);
        drop(database);
    }
}

/// Counts over the whole run.
#[derive(Clone, Debug)]
pub struct Counts {
    /// Where it ran.
    pub backends: Backends,
    /// Events the broker stored from the system's publishers, by subject.
    pub published: [u64; 4],
    /// The system's publishes the broker dropped as duplicates of their publish id.
    pub publish_duplicates: u64,
    /// The system's publishes that failed.
    pub publish_failures: u64,
    /// Publish ids the broker stored twice from the system's publishers.
    pub stored_twice: Vec<String>,
    /// Deliveries handled, by group.
    pub handled: [u64; 2],
    /// Deliveries with a count above 1.
    pub redeliveries: u64,
    /// Deliveries that overtook a still-running delivery of the same event.
    pub overlapping: u64,
    /// Listener outcomes per (group, outcome).
    pub outcomes: BTreeMap<(usize, &'static str), u64>,
    /// Everything dead-lettered.
    pub dead_letters: Vec<DeadLetter>,
    /// The consumers at the end, as the server reports them.
    pub consumers: [Option<ConsumerState>; 2],
    /// NATS connections opened.
    pub connections: usize,
}

/// What `relay::relay_batch` does up to its `relay-after-publish-before-mark` crash point:
/// reads a pending batch and publishes it in order with its publish ids, and marks nothing.
/// Waits (at most `wait`) for `batch` entries to be pending, and takes what there is then.
/// Returns how many it published.
async fn publish_without_marking(
    store: &PgStore,
    publisher: &CountingPublisher,
    batch: usize,
    wait: Duration,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    use ticketing::store::Outbox;
    let batch = batch.max(1);
    let deadline = Instant::now() + wait;
    let pending = loop {
        let pending = store.pending(batch).await?;
        if pending.len() >= batch || Instant::now() >= deadline {
            break pending;
        }
        // Bounded polling: the clients keep writing, so entries come soon.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for entry in &pending {
        publisher
            .publish(&entry.event, Some(&entry.event.publish_id()))
            .await?;
    }
    Ok(pending.len())
}
