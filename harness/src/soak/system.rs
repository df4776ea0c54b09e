//! The system under soak: both services on `PgStore` and `JetStreamBus`, `members` members per
//! queue group, one outbox relay per service, and the services' HTTP router on a real socket.
//!
//! It is assembled from the same public parts as `ticketing::services::app::start` (the
//! services, `http::router`, the member runtime `listener::join` + `Member::run`, the relay
//! `relay::run_relay`, the same listener options and subjects per group), with three
//! differences, all for the fault injector:
//! - each member and each relay is a task of its own, with its own stop token, so one can be
//!   stopped, aborted and replaced while the rest run (`app::start` owns them all);
//! - each member's handler is a [`SoakHandler`]: it calls the service's listener
//!   (`tickets::listeners::handle` / `orders::listeners::handle`, what `app::start`'s handler
//!   calls) and, when the injector armed its [`MemberHooks`], parks a delivery (so aborting the
//!   member crashes it at a chosen point) or settles it late (past the ack wait);
//! - every publish (relays, and the services' direct publishes on no-outbox variants) goes
//!   through a [`CountingPublisher`], which counts what the broker stored and dropped.
//!
//! The invariant: whatever the injector does, every member and relay task it starts is
//! tracked here and stopped by [`System::shutdown`]; nothing outlives the run.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use ticketing::bus::jetstream::ConsumerState;
use ticketing::bus::{
    Bus, BusError, DeadLetter, JetStreamBus, ListenerOptions, MessageHandle, PublishAck, Publisher,
};
use ticketing::events::{Event, Subject};
use ticketing::services::app::{ORDERS_SCHEMA, TICKETS_SCHEMA};
use ticketing::services::auth::SessionKey;
use ticketing::services::http::{AppState, router};
use ticketing::services::listener::Listener;
use ticketing::services::member;
use ticketing::services::orders::{self, OrdersService};
use ticketing::services::relay::{RelayConfig, run_relay};
use ticketing::services::tickets::{self, TicketsService};
use ticketing::services::{ListenerError, Outcome, ServiceConfig};
use ticketing::store::PgStore;
use ticketing::sync::Mutex;
use ticketing::testkit::{FreshDatabase, FreshStream};

use super::{SoakError, SoakOptions};

/// The queue groups, by index: 0 is the tickets service's, 1 the orders service's.
pub const GROUPS: [&str; 2] = [tickets::QUEUE_GROUP, orders::QUEUE_GROUP];
/// The relays, by index: 0 publishes the tickets outbox, 1 the orders outbox.
pub const RELAYS: [&str; 2] = ["tickets", "orders"];

/// How long a graceful stop of a member or relay may take before it is aborted instead
/// (a member waits for its running handlers, a late one among them).
const GRACEFUL_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The services as the soak runs them.
pub type Tickets = TicketsService<PgStore, CountingPublisher>;
/// The services as the soak runs them.
pub type Orders = OrdersService<PgStore, CountingPublisher>;

// --- publishing, counted ------------------------------------------------------------------

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
                    && !self.ids.lock().insert(id.to_owned())
                {
                    self.stored_twice.lock().push(id.to_owned());
                }
                let mut recent = self.recent.lock();
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
        self.recent
            .lock()
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

    /// Publishes dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
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

// --- deliveries, counted, with fault hooks ------------------------------------------------

/// Where an armed crash stops a delivery; aborting the member then is the crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrashPoint {
    /// Before the listener runs: nothing written, nothing settled.
    BeforeHandler,
    /// When the listener settles: its write (if any) is done, the ack or nak not sent.
    BeforeSettle,
    /// Right after the listener's first settlement (on `ack-before-save`, that ack comes
    /// before the write: the variant's window).
    AfterSettle,
}

impl CrashPoint {
    /// Every point, in report order.
    pub const ALL: [CrashPoint; 3] = [
        CrashPoint::BeforeHandler,
        CrashPoint::BeforeSettle,
        CrashPoint::AfterSettle,
    ];

    /// The point's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            CrashPoint::BeforeHandler => "before-handler",
            CrashPoint::BeforeSettle => "after-write-before-settle",
            CrashPoint::AfterSettle => "after-first-settle",
        }
    }
}

/// What an armed late delivery holds past the ack wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LatePoint {
    /// The whole handler starts late (the redelivery may apply the event first).
    BeforeHandler,
    /// The handler writes at once and settles late (the redelivery finds it applied).
    BeforeSettle,
}

impl LatePoint {
    /// The point's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            LatePoint::BeforeHandler => "handler-late",
            LatePoint::BeforeSettle => "settle-late",
        }
    }
}

/// What the injector armed a member with: its next delivery takes it.
#[derive(Debug)]
pub enum Plan {
    /// Park the delivery at `point` and say so on `parked`.
    Crash {
        /// Where.
        point: CrashPoint,
        /// Told when the delivery is parked.
        parked: oneshot::Sender<()>,
    },
    /// Hold the delivery for `delay` at `point`; say on `taken` that a delivery took it.
    Late {
        /// Where.
        point: LatePoint,
        /// How long (more than the ack wait).
        delay: Duration,
        /// Told when a delivery took the plan.
        taken: oneshot::Sender<()>,
    },
}

/// A member's fault hooks: at most one armed plan, taken by the member's next delivery.
#[derive(Debug, Default)]
pub struct MemberHooks {
    plan: Mutex<Option<Plan>>,
}

impl MemberHooks {
    /// Arms `plan` for the member's next delivery (replacing any plan not yet taken).
    pub fn arm(&self, plan: Plan) {
        *self.plan.lock() = Some(plan);
    }

    /// Takes back a plan no delivery took; whether there was one.
    pub fn disarm(&self) -> bool {
        self.plan.lock().take().is_some()
    }

    fn take(&self) -> Option<Plan> {
        self.plan.lock().take()
    }
}

/// Deliveries across every member, counted.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Handlers running now (a parked or late one included).
    in_flight: AtomicUsize,
    /// Deliveries handed to a handler, by group.
    handled: [AtomicU64; 2],
    /// Deliveries whose count was above 1 (the broker redelivered them).
    redeliveries: AtomicU64,
    /// Deliveries that began while another delivery of the same event (same group, same
    /// publish id) was still being handled: a redelivery overtaking a late or parked handler.
    overlapping: AtomicU64,
    /// Handlers running now, per (group, publish id).
    running: Mutex<HashMap<(usize, String), u32>>,
    /// What the listeners decided, per (group, outcome).
    outcomes: Mutex<BTreeMap<(usize, &'static str), u64>>,
}

impl DeliveryStats {
    /// Handlers running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn begin(&self, group: usize, event: &Event, delivery_count: u32) -> Running<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.handled[group].fetch_add(1, Ordering::Relaxed);
        if delivery_count > 1 {
            self.redeliveries.fetch_add(1, Ordering::Relaxed);
        }
        let key = (group, event.publish_id());
        let mut running = self.running.lock();
        let count = running.entry(key.clone()).or_insert(0);
        if *count > 0 {
            self.overlapping.fetch_add(1, Ordering::Relaxed);
        }
        *count += 1;
        Running { stats: self, key }
    }

    fn record(&self, group: usize, outcome: &Result<Outcome, ListenerError>) {
        let name = match outcome {
            Ok(Outcome::Applied) => "applied",
            Ok(Outcome::AlreadyApplied) => "already-applied",
            Ok(Outcome::Waiting { .. }) => "waiting",
            Ok(Outcome::Failed { .. }) => "failed",
            Ok(Outcome::Terminated { .. }) => "terminated",
            Ok(Outcome::Dropped { .. }) => "dropped",
            Err(_) => "listener-error",
        };
        *self.outcomes.lock().entry((group, name)).or_insert(0) += 1;
    }
}

/// One running handler; counted out when dropped (an aborted handler included).
struct Running<'a> {
    stats: &'a DeliveryStats,
    key: (usize, String),
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = self.stats.running.lock();
        if let Some(count) = running.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.key);
            }
        }
        drop(running);
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A member's handler: the service's listener, counted, with the member's fault hooks.
pub struct SoakHandler<L> {
    service: Arc<L>,
    group: usize,
    hooks: Arc<MemberHooks>,
    stats: Arc<DeliveryStats>,
}

impl<L: Listener> Listener for SoakHandler<L> {
    const QUEUE_GROUP: &'static str = L::QUEUE_GROUP;
    const SUBJECTS: &'static [Subject] = L::SUBJECTS;

    async fn handle<M: MessageHandle>(
        &self,
        event: &Event,
        message: &M,
    ) -> Result<Outcome, ListenerError> {
        let _running = self
            .stats
            .begin(self.group, event, message.delivery_count());
        let outcome = match self.hooks.take() {
            None => self.service.handle(event, message).await,
            Some(Plan::Crash {
                point: CrashPoint::BeforeHandler,
                parked,
            }) => {
                let _ = parked.send(());
                // Parked until the injector aborts the member: the crash.
                return std::future::pending().await;
            }
            Some(Plan::Crash { point, parked }) => {
                let parking = Parking {
                    inner: message,
                    settle_first: point == CrashPoint::AfterSettle,
                    parked: Mutex::new(Some(parked)),
                };
                self.service.handle(event, &parking).await
            }
            Some(Plan::Late {
                point: LatePoint::BeforeHandler,
                delay,
                taken,
            }) => {
                let _ = taken.send(());
                tokio::time::sleep(delay).await;
                self.service.handle(event, message).await
            }
            Some(Plan::Late {
                point: LatePoint::BeforeSettle,
                delay,
                taken,
            }) => {
                let _ = taken.send(());
                let late = LateSettle {
                    inner: message,
                    delay,
                };
                self.service.handle(event, &late).await
            }
        };
        self.stats.record(self.group, &outcome);
        outcome
    }
}

/// A delivery that parks at its first settlement (before or after performing it) until the
/// member is aborted.
struct Parking<'a, M> {
    inner: &'a M,
    settle_first: bool,
    parked: Mutex<Option<oneshot::Sender<()>>>,
}

impl<M: MessageHandle> Parking<'_, M> {
    async fn settle<F>(&self, settlement: F) -> Result<(), BusError>
    where
        F: Future<Output = Result<(), BusError>> + Send,
    {
        let parked = self.parked.lock().take();
        let Some(parked) = parked else {
            return settlement.await;
        };
        if self.settle_first {
            settlement.await?;
        }
        let _ = parked.send(());
        std::future::pending().await
    }
}

impl<M: MessageHandle> MessageHandle for Parking<'_, M> {
    fn delivery_count(&self) -> u32 {
        self.inner.delivery_count()
    }

    async fn ack(&self) -> Result<(), BusError> {
        self.settle(self.inner.ack()).await
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.settle(self.inner.nak(delay)).await
    }

    async fn term(&self, reason: &str) -> Result<(), BusError> {
        self.settle(self.inner.term(reason)).await
    }
}

/// A delivery whose settlements wait `delay` first.
struct LateSettle<'a, M> {
    inner: &'a M,
    delay: Duration,
}

impl<M: MessageHandle> MessageHandle for LateSettle<'_, M> {
    fn delivery_count(&self) -> u32 {
        self.inner.delivery_count()
    }

    async fn ack(&self) -> Result<(), BusError> {
        tokio::time::sleep(self.delay).await;
        self.inner.ack().await
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        tokio::time::sleep(self.delay).await;
        self.inner.nak(delay).await
    }

    async fn term(&self, reason: &str) -> Result<(), BusError> {
        tokio::time::sleep(self.delay).await;
        self.inner.term(reason).await
    }
}

// --- tasks ------------------------------------------------------------------------------

/// One queue-group member task.
struct Member {
    task: JoinHandle<()>,
    stop: CancellationToken,
    hooks: Arc<MemberHooks>,
}

impl Member {
    /// Stops it: gracefully (it finishes its handlers and leaves) within
    /// [`GRACEFUL_STOP_TIMEOUT`], else, or when `graceful` is false, aborted. Whether it
    /// stopped gracefully.
    async fn stop(self, graceful: bool) -> bool {
        stop_task(self.task, &self.stop, graceful).await
    }
}

async fn stop_task(mut task: JoinHandle<()>, stop: &CancellationToken, graceful: bool) -> bool {
    if graceful {
        stop.cancel();
        if tokio::time::timeout(GRACEFUL_STOP_TIMEOUT, &mut task)
            .await
            .is_ok()
        {
            return true;
        }
    }
    task.abort();
    let _ = task.await;
    false
}

/// One queue group: its options, the connection its members use, its members.
struct Group {
    options: ListenerOptions,
    bus: JetStreamBus,
    members: Vec<Member>,
}

/// One relay task.
struct Relay {
    store: PgStore,
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl Relay {
    /// Stops it: gracefully (it flushes its outbox) within [`GRACEFUL_STOP_TIMEOUT`], else,
    /// or when `graceful` is false, aborted.
    async fn stop(self, graceful: bool) -> bool {
        stop_task(self.task, &self.stop, graceful).await
    }
}

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

// --- the system ---------------------------------------------------------------------------

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
    tickets: Arc<Tickets>,
    orders: Arc<Orders>,
    groups: [Group; 2],
    /// `None` only while a relay is being restarted.
    relays: [Option<Relay>; 2],
    relay_config: RelayConfig,
    http_stop: CancellationToken,
    http: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    sessions: SessionKey,
    stats: Arc<DeliveryStats>,
    backends: Backends,
}

impl System {
    /// Makes a fresh stream and database, and starts everything on them.
    pub async fn start(options: &SoakOptions) -> Result<Self, SoakError> {
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
            match tokio::try_join!(connect(TICKETS_SCHEMA), connect(ORDERS_SCHEMA)) {
                Ok(stores) => stores,
                Err(error) => return Err(SoakError::Start(error.to_string())),
            };
        let backends = Backends {
            nats: format!("{} (nats-server {})", options.bus_url, bus.server_version()),
            stream: stream.config().stream.clone(),
            database: ticketing::store::pg::redact_password(database.url()),
        };
        let publisher = CountingPublisher {
            bus: bus.clone(),
            log: Arc::default(),
        };
        let config = ServiceConfig::new(options.variant);
        let tickets = Arc::new(TicketsService::new(
            tickets_store.clone(),
            publisher.clone(),
            config.clone(),
        ));
        let orders = Arc::new(OrdersService::new(
            orders_store.clone(),
            publisher.clone(),
            config,
        ));
        let group_options = |index: usize, subjects: &[Subject]| ListenerOptions {
            ack_wait: options.ack_wait,
            max_deliver: options.max_deliver,
            ..ListenerOptions::new(GROUPS[index], subjects)
        };
        let stats = Arc::new(DeliveryStats::default());
        let mut groups = [
            Group {
                options: group_options(0, &[Subject::OrderCreated, Subject::OrderCancelled]),
                bus: bus.clone(),
                members: Vec::new(),
            },
            Group {
                options: group_options(1, &[Subject::TicketCreated, Subject::TicketUpdated]),
                bus: bus.clone(),
                members: Vec::new(),
            },
        ];
        for (index, group) in groups.iter_mut().enumerate() {
            for _ in 0..options.members {
                let member =
                    spawn_member(index, &group.bus, &group.options, &tickets, &orders, &stats)
                        .await
                        .map_err(|error| SoakError::Start(error.to_string()))?;
                group.members.push(member);
            }
        }
        let relay_config = RelayConfig::default();
        let relays = [
            Some(spawn_relay(0, tickets_store, &publisher, relay_config)),
            Some(spawn_relay(1, orders_store, &publisher, relay_config)),
        ];
        let sessions = SessionKey::new(&rand::random::<[u8; 32]>());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|error| SoakError::Start(format!("cannot listen on 127.0.0.1: {error}")))?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| SoakError::Start(error.to_string()))?;
        let state = AppState {
            tickets: Arc::clone(&tickets),
            orders: Arc::clone(&orders),
            sessions: Arc::new(sessions.clone()),
        };
        let http_stop = CancellationToken::new();
        let http = tokio::spawn({
            let stop = http_stop.clone();
            async move {
                let served = axum::serve(listener, router(state))
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "soak http server failed");
                }
            }
        });
        Ok(Self {
            stream: Some(stream),
            database: Some(database),
            buses: vec![bus.clone()],
            bus,
            publisher,
            tickets,
            orders,
            groups,
            relays,
            relay_config,
            http_stop,
            http: Some(http),
            local_addr,
            sessions,
            stats,
            backends,
        })
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
        &self.publisher.log
    }

    /// The deliveries' counts.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// The tickets service's store.
    pub fn tickets_store(&self) -> &PgStore {
        &self.tickets.store
    }

    /// The orders service's store.
    pub fn orders_store(&self) -> &PgStore {
        &self.orders.store
    }

    /// Members in each group now.
    pub fn members(&self, group: usize) -> usize {
        self.groups[group].members.len()
    }

    /// Member `member` of `group`'s hooks.
    pub fn hooks(&self, group: usize, member: usize) -> Option<Arc<MemberHooks>> {
        self.groups[group]
            .members
            .get(member)
            .map(|member| Arc::clone(&member.hooks))
    }

    /// Aborts member `member` of `group` (a crash: what it held is redelivered after the
    /// ack wait) and starts a replacement on the group's connection.
    pub async fn crash_member(&mut self, group: usize, member: usize) -> Result<(), BusError> {
        let members = &mut self.groups[group].members;
        let member = member.min(members.len().saturating_sub(1));
        if member < members.len() {
            members.remove(member).stop(false).await;
        }
        let replacement = spawn_member(
            group,
            &self.groups[group].bus,
            &self.groups[group].options,
            &self.tickets,
            &self.orders,
            &self.stats,
        )
        .await?;
        self.groups[group].members.insert(member, replacement);
        Ok(())
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
        let old = std::mem::take(&mut self.groups[group].members);
        let count = old.len();
        let mut all_graceful = true;
        for member in old {
            all_graceful &= member.stop(graceful).await;
        }
        self.groups[group].bus = bus;
        for _ in 0..count {
            let member = spawn_member(
                group,
                &self.groups[group].bus,
                &self.groups[group].options,
                &self.tickets,
                &self.orders,
                &self.stats,
            )
            .await?;
            self.groups[group].members.push(member);
        }
        Ok(all_graceful && graceful)
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
        let Some(stopped) = self.relays[relay].take() else {
            return Err(format!("relay {} is not running", RELAYS[relay]));
        };
        let store = stopped.store.clone();
        stopped.stop(how == RelayStop::Graceful).await;
        let unmarked = match how {
            RelayStop::CrashAfterPublish => {
                publish_without_marking(&store, &self.publisher, batch, wait).await
            }
            RelayStop::Graceful | RelayStop::Killed => Ok(0),
        };
        // Restarted whatever the crashed round came to.
        self.relays[relay] = Some(spawn_relay(
            relay,
            store,
            &self.publisher,
            self.relay_config,
        ));
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
        let log = &self.publisher.log;
        let stats = &self.stats;
        let consumers = self.consumer_states().await.map(Result::ok);
        Counts {
            backends: self.backends.clone(),
            published: std::array::from_fn(|i| log.stored[i].load(Ordering::Relaxed)),
            publish_duplicates: log.duplicates.load(Ordering::Relaxed),
            publish_failures: log.failures.load(Ordering::Relaxed),
            stored_twice: log.stored_twice.lock().clone(),
            handled: std::array::from_fn(|i| stats.handled[i].load(Ordering::Relaxed)),
            redeliveries: stats.redeliveries.load(Ordering::Relaxed),
            overlapping: stats.overlapping.load(Ordering::Relaxed),
            outcomes: stats.outcomes.lock().clone(),
            dead_letters: self.dead_letters(),
            consumers,
            connections: self.buses.len(),
        }
    }

    /// Stops everything: HTTP, the members (gracefully, bounded), the relays (flushing,
    /// bounded); then deletes the stream and drops the database.
    pub async fn shutdown(mut self) {
        self.http_stop.cancel();
        if let Some(http) = self.http.take() {
            let _ = tokio::time::timeout(GRACEFUL_STOP_TIMEOUT, http).await;
        }
        for group in &mut self.groups {
            let members = std::mem::take(&mut group.members);
            for member in &members {
                member.stop.cancel();
            }
            for member in members {
                member.stop(true).await;
            }
        }
        for relay in &mut self.relays {
            if let Some(relay) = relay.take() {
                relay.stop(true).await;
            }
        }
        // Flush acks still buffered on every connection before the stream goes.
        for bus in &self.buses {
            let _ = bus.flush().await;
        }
        self.buses.clear();
        drop(self.stream.take());
        drop(self.database.take());
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

async fn spawn_member(
    group: usize,
    bus: &JetStreamBus,
    options: &ListenerOptions,
    tickets: &Arc<Tickets>,
    orders: &Arc<Orders>,
    stats: &Arc<DeliveryStats>,
) -> Result<Member, BusError> {
    if group == 0 {
        spawn_member_of(bus, options, Arc::clone(tickets), 0, Arc::clone(stats)).await
    } else {
        spawn_member_of(bus, options, Arc::clone(orders), 1, Arc::clone(stats)).await
    }
}

async fn spawn_member_of<L: Listener>(
    bus: &JetStreamBus,
    options: &ListenerOptions,
    service: Arc<L>,
    group: usize,
    stats: Arc<DeliveryStats>,
) -> Result<Member, BusError> {
    let joined = member::join(bus, options).await?;
    let hooks = Arc::new(MemberHooks::default());
    let handler = Arc::new(SoakHandler {
        service,
        group,
        hooks: Arc::clone(&hooks),
        stats,
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            joined.run(handler, stop).await;
        }
    });
    Ok(Member { task, stop, hooks })
}

fn spawn_relay(
    index: usize,
    store: PgStore,
    publisher: &CountingPublisher,
    config: RelayConfig,
) -> Relay {
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (store, publisher, stop) = (store.clone(), publisher.clone(), stop.clone());
        async move { run_relay(RELAYS[index], &store, &publisher, config, stop).await }
    });
    Relay { store, task, stop }
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
