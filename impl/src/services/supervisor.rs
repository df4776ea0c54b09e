//! The supervisor: every queue-group member and outbox relay of both services, and the orders
//! service's expiry, on any store and bus backends, each a task of its own that can be started,
//! stopped gracefully or crashed (aborted) one at a time, or all at once. `ticketing serve`
//! runs it behind its HTTP server (`app::serve`); the soak runs the same supervisor on
//! PostgreSQL and JetStream, with [`DeliveryHooks`] around every delivery for its fault
//! injection and a counting publisher inside the services, so what the soak checks is the
//! assembly `serve` runs.
//!
//! The invariant: every task it starts is tracked until it is stopped or crashed. A graceful
//! stop lets a member finish (and settle) the deliveries it is handling and a relay flush its
//! outbox, within `graceful_stop_timeout` if one is set (past it, the task is aborted, as a
//! crash). [`Supervisor::stop_all`] stops every member and the orders service's expiry before
//! any relay, so the relays flush what the last deliveries and expiries wrote. A crash loses nothing acknowledged: what a member held is
//! redelivered after the ack wait, what a relay did not mark is published again (and dropped by
//! the broker by its publish id).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusError, ListenerOptions, MessageHandle, Publisher, Subscription};
use crate::events::{Event, Subject};
use crate::services::http::{OrderStore, TicketStore};
use crate::services::listener::Listener;
use crate::services::member::{self, Member};
use crate::services::orders::expiry::run_expiry;
use crate::services::orders::{self, OrdersService};
use crate::services::relay::{RelayConfig, run_relay};
use crate::services::tickets::{self, TicketsService};
use crate::services::{ListenerError, Outcome};
use crate::store::Outbox;

/// One of the two services: each has one queue group and one outbox relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// The tickets service: queue group `tickets-service`, the tickets outbox's relay.
    Tickets,
    /// The orders service: queue group `orders-service`, the orders outbox's relay.
    Orders,
}

impl Service {
    /// Both, in the order the supervisor starts them.
    pub const ALL: [Service; 2] = [Service::Tickets, Service::Orders];

    /// Its name in logs and reports ("tickets", "orders"); also its relay's.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Tickets => "tickets",
            Service::Orders => "orders",
        }
    }

    /// Its queue group (the name its [`Listener`] impl gives).
    pub const fn queue_group(self) -> &'static str {
        match self {
            Service::Tickets => tickets::QUEUE_GROUP,
            Service::Orders => orders::QUEUE_GROUP,
        }
    }

    /// Its position in [`Service::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// How the supervisor runs its members and relays.
#[derive(Clone, Copy, Debug)]
pub struct SupervisorOptions {
    /// Members in each queue group that [`Supervisor::start_all`] starts (at least one).
    pub members: usize,
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries of one event before it is dead-lettered.
    pub max_deliver: u32,
    /// How the relays run.
    pub relay: RelayConfig,
    /// How long a graceful stop (of a member, a relay, or the HTTP server in front of them)
    /// may take before the task is aborted instead; `None`: as long as it takes.
    pub graceful_stop_timeout: Option<Duration>,
}

impl SupervisorOptions {
    /// The listener options of `L`'s queue group: its name and subjects, this ack wait and
    /// max deliver.
    fn group<L: Listener>(&self) -> ListenerOptions {
        ListenerOptions {
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            ..ListenerOptions::new(L::QUEUE_GROUP, L::SUBJECTS)
        }
    }
}

/// What the supervisor's members do around each delivery they hand to a listener: the soak's
/// fault injection and counting; nothing under `ticketing serve` ([`NoHooks`]).
pub trait DeliveryHooks: Send + Sync + 'static {
    /// One member's hook.
    type Member: MemberHook;

    /// The hook of a new member of `service`'s queue group, made as the member starts.
    fn member(&self, service: Service) -> Self::Member;
}

/// One member's hook around its deliveries.
pub trait MemberHook: Send + Sync + 'static {
    /// Hands `event` to `listener` (whose `handle` settles it through `message`), doing
    /// whatever the hook does around that; returns what the listener returned.
    fn deliver<L: Listener, M: MessageHandle>(
        &self,
        listener: &L,
        event: &Event,
        message: &M,
    ) -> impl Future<Output = Result<Outcome, ListenerError>> + Send;
}

/// No hooks: each delivery goes straight to the listener (`ticketing serve`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl DeliveryHooks for NoHooks {
    type Member = NoHooks;

    fn member(&self, _service: Service) -> NoHooks {
        NoHooks
    }
}

impl MemberHook for NoHooks {
    fn deliver<L: Listener, M: MessageHandle>(
        &self,
        listener: &L,
        event: &Event,
        message: &M,
    ) -> impl Future<Output = Result<Outcome, ListenerError>> + Send {
        listener.handle(event, message)
    }
}

/// A member's listener with the member's hook around it: what its member runtime runs.
struct Hooked<L, K> {
    listener: Arc<L>,
    hook: Arc<K>,
}

impl<L: Listener, K: MemberHook> Listener for Hooked<L, K> {
    const QUEUE_GROUP: &'static str = L::QUEUE_GROUP;
    const SUBJECTS: &'static [Subject] = L::SUBJECTS;

    fn handle<M: MessageHandle>(
        &self,
        event: &Event,
        message: &M,
    ) -> impl Future<Output = Result<Outcome, ListenerError>> + Send {
        self.hook.deliver(&*self.listener, event, message)
    }
}

/// A running task, with the token that asks it to stop gracefully.
pub(crate) struct Task {
    what: &'static str,
    handle: JoinHandle<()>,
    stop: CancellationToken,
}

impl Task {
    /// Spawns `run`, which stops gracefully once `stop` is cancelled.
    pub(crate) fn spawn<F>(what: &'static str, stop: CancellationToken, run: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Self {
            what,
            handle: tokio::spawn(run),
            stop,
        }
    }

    /// Asks it to stop and waits for it (at most `within`, then aborts it). Whether it stopped
    /// by itself.
    pub(crate) async fn stop(self, within: Option<Duration>) -> bool {
        self.stop.cancel();
        self.join(within).await
    }

    /// Waits for a task already asked to stop (at most `within`, then aborts it). Whether it
    /// stopped by itself.
    async fn join(mut self, within: Option<Duration>) -> bool {
        let finished = match within {
            None => Some((&mut self.handle).await),
            Some(limit) => tokio::time::timeout(limit, &mut self.handle).await.ok(),
        };
        match finished {
            Some(Ok(())) => true,
            Some(Err(error)) => {
                tracing::error!(%error, "{} task failed", self.what);
                true
            }
            None => {
                tracing::warn!(?within, "{} did not stop in time; aborted", self.what);
                self.crash().await;
                false
            }
        }
    }

    /// Aborts it wherever it is, and waits until it is gone.
    async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// One member: its task and its hook.
struct MemberTask<K> {
    task: Task,
    hook: Arc<K>,
}

/// One queue group: the connection new members join on, its options, its members in order.
struct Group<B, K> {
    bus: B,
    options: ListenerOptions,
    members: Vec<MemberTask<K>>,
}

/// Both services' queue-group members and outbox relays (see the module doc).
pub struct Supervisor<TS, OS, P, B, H: DeliveryHooks = NoHooks> {
    tickets: Arc<TicketsService<TS, P>>,
    orders: Arc<OrdersService<OS, P>>,
    options: SupervisorOptions,
    hooks: H,
    /// By [`Service::index`].
    groups: [Group<B, H::Member>; 2],
    /// By [`Service::index`]; `None` while stopped.
    relays: [Option<Task>; 2],
    /// The orders service's expiry; `None` while stopped.
    expiry: Option<Task>,
}

impl<TS, OS, P, B, H: DeliveryHooks> std::fmt::Debug for Supervisor<TS, OS, P, B, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("options", &self.options)
            .field("tickets_members", &self.groups[0].members.len())
            .field("orders_members", &self.groups[1].members.len())
            .finish_non_exhaustive()
    }
}

impl<TS, OS, P, B, H> Supervisor<TS, OS, P, B, H>
where
    TS: TicketStore + Outbox,
    OS: OrderStore + Outbox,
    P: Publisher + 'static,
    B: Bus,
    H: DeliveryHooks,
{
    /// The supervisor of these services, whose members join on `bus`; nothing runs yet.
    pub fn new(
        tickets: Arc<TicketsService<TS, P>>,
        orders: Arc<OrdersService<OS, P>>,
        bus: B,
        options: SupervisorOptions,
        hooks: H,
    ) -> Self {
        let group = |options: ListenerOptions| Group {
            bus: bus.clone(),
            options,
            members: Vec::new(),
        };
        Self {
            groups: [
                group(options.group::<TicketsService<TS, P>>()),
                group(options.group::<OrdersService<OS, P>>()),
            ],
            tickets,
            orders,
            options,
            hooks,
            relays: [None, None],
            expiry: None,
        }
    }

    /// The tickets service.
    pub fn tickets(&self) -> &Arc<TicketsService<TS, P>> {
        &self.tickets
    }

    /// The orders service.
    pub fn orders(&self) -> &Arc<OrdersService<OS, P>> {
        &self.orders
    }

    /// How it runs.
    pub fn options(&self) -> &SupervisorOptions {
        &self.options
    }

    /// The members of `service`'s queue group running now.
    pub fn members(&self, service: Service) -> usize {
        self.groups[service.index()].members.len()
    }

    /// The hook of member `index` of `service`'s queue group (members in the order they
    /// started).
    pub fn member_hook(&self, service: Service, index: usize) -> Option<&Arc<H::Member>> {
        self.groups[service.index()]
            .members
            .get(index)
            .map(|member| &member.hook)
    }

    /// Members of `service`'s queue group started from now on join on `bus` (a new
    /// connection, as a restarted process would have).
    pub fn set_bus(&mut self, service: Service, bus: B) {
        self.groups[service.index()].bus = bus;
    }

    /// Starts everything: [`SupervisorOptions::members`] members in each queue group (at
    /// least one) and both relays. Every member joins its group before any task starts, so
    /// a bus that cannot be joined fails the start with nothing left running.
    pub async fn start_all(&mut self) -> Result<(), BusError> {
        let count = self.options.members.max(1);
        let mut joined = [Vec::with_capacity(count), Vec::with_capacity(count)];
        for _ in 0..count {
            for service in Service::ALL {
                joined[service.index()].push(self.join(service).await?);
            }
        }
        for service in Service::ALL {
            self.start_relay(service);
        }
        self.start_expiry();
        for (service, members) in Service::ALL.into_iter().zip(joined) {
            for member in members {
                self.run_member(service, member);
            }
        }
        Ok(())
    }

    /// Stops everything gracefully, in the module doc's order: every member (each finishes
    /// the deliveries it is handling), then every relay (each flushes its outbox).
    pub async fn stop_all(&mut self) {
        let within = self.options.graceful_stop_timeout;
        let members: Vec<_> = self
            .groups
            .iter_mut()
            .flat_map(|group| std::mem::take(&mut group.members))
            .collect();
        for member in &members {
            member.task.stop.cancel();
        }
        for member in members {
            member.task.join(within).await;
        }
        if let Some(expiry) = self.expiry.take() {
            expiry.stop(within).await;
        }
        let relays: Vec<_> = self.relays.iter_mut().filter_map(Option::take).collect();
        for relay in &relays {
            relay.stop.cancel();
        }
        for relay in relays {
            relay.join(within).await;
        }
    }

    /// Starts one more member of `service`'s queue group (last in order).
    pub async fn start_member(&mut self, service: Service) -> Result<(), BusError> {
        let joined = self.join(service).await?;
        self.run_member(service, joined);
        Ok(())
    }

    /// Stops member `index` of `service`'s queue group gracefully: it stops pulling, finishes
    /// the deliveries it is handling, and leaves. Whether it stopped by itself within the
    /// graceful stop timeout (else it was aborted); `None` if there is no such member.
    pub async fn stop_member(&mut self, service: Service, index: usize) -> Option<bool> {
        let members = &mut self.groups[service.index()].members;
        if index >= members.len() {
            return None;
        }
        let member = members.remove(index);
        Some(member.task.stop(self.options.graceful_stop_timeout).await)
    }

    /// Crashes member `index` of `service`'s queue group: aborted wherever it is, its running
    /// handlers with it (what it held is redelivered after the ack wait). Whether there was
    /// such a member.
    pub async fn crash_member(&mut self, service: Service, index: usize) -> bool {
        let members = &mut self.groups[service.index()].members;
        if index >= members.len() {
            return false;
        }
        members.remove(index).task.crash().await;
        true
    }

    /// Starts `service`'s relay (a relay already running is left as it is).
    pub fn start_relay(&mut self, service: Service) {
        let slot = &mut self.relays[service.index()];
        if slot.is_some() {
            return;
        }
        let config = self.options.relay;
        *slot = Some(match service {
            Service::Tickets => spawn_relay(service, Arc::clone(&self.tickets), config, |s| {
                (&s.store, &s.publisher)
            }),
            Service::Orders => spawn_relay(service, Arc::clone(&self.orders), config, |s| {
                (&s.store, &s.publisher)
            }),
        });
    }

    /// Stops `service`'s relay gracefully (it flushes its outbox first). Whether it stopped by
    /// itself within the graceful stop timeout; `None` if it was not running.
    pub async fn stop_relay(&mut self, service: Service) -> Option<bool> {
        let relay = self.relays[service.index()].take()?;
        Some(relay.stop(self.options.graceful_stop_timeout).await)
    }

    /// Crashes `service`'s relay: aborted wherever it is (what it published and did not mark
    /// is published again by the next relay). Whether it was running.
    pub async fn crash_relay(&mut self, service: Service) -> bool {
        match self.relays[service.index()].take() {
            Some(relay) => {
                relay.crash().await;
                true
            }
            None => false,
        }
    }

    /// Starts the orders service's expiry (left as it is if it runs already).
    pub fn start_expiry(&mut self) {
        if self.expiry.is_some() {
            return;
        }
        let stop = CancellationToken::new();
        let orders = Arc::clone(&self.orders);
        let token = stop.clone();
        self.expiry = Some(Task::spawn("order expiry", stop, async move {
            run_expiry(&orders, token).await;
        }));
    }

    /// Joins `service`'s queue group as one more member, not yet running.
    async fn join(&self, service: Service) -> Result<Member<B::Subscription>, BusError> {
        let group = &self.groups[service.index()];
        member::join(&group.bus, &group.options).await
    }

    /// Runs a joined member of `service`'s queue group, with a new hook, last in order.
    fn run_member(&mut self, service: Service, joined: Member<B::Subscription>) {
        let hook = Arc::new(self.hooks.member(service));
        let task = match service {
            Service::Tickets => run_member(joined, Arc::clone(&self.tickets), Arc::clone(&hook)),
            Service::Orders => run_member(joined, Arc::clone(&self.orders), Arc::clone(&hook)),
        };
        self.groups[service.index()]
            .members
            .push(MemberTask { task, hook });
    }
}

/// Runs a joined member handing its deliveries to `listener` through `hook`, until stopped.
fn run_member<S, L, K>(joined: Member<S>, listener: Arc<L>, hook: Arc<K>) -> Task
where
    S: Subscription,
    L: Listener,
    K: MemberHook,
{
    let stop = CancellationToken::new();
    let hooked = Arc::new(Hooked { listener, hook });
    Task::spawn("queue-group member", stop.clone(), async move {
        let report = joined.run(hooked, stop).await;
        tracing::info!(
            queue_group = L::QUEUE_GROUP,
            ?report,
            "queue-group member stopped"
        );
    })
}

/// Runs the relay of `service`'s outbox (`parts` picks the outbox and the publisher out of the
/// service) until stopped.
fn spawn_relay<T, O, P>(
    service: Service,
    owner: Arc<T>,
    config: RelayConfig,
    parts: fn(&T) -> (&O, &P),
) -> Task
where
    T: Send + Sync + 'static,
    O: Outbox + 'static,
    P: Publisher + 'static,
{
    let stop = CancellationToken::new();
    Task::spawn("outbox relay", stop.clone(), async move {
        let (outbox, publisher) = parts(&owner);
        run_relay(service.name(), outbox, publisher, config, stop).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::EmbeddedBus;
    use crate::price::Price;
    use crate::records::{TicketReplica, UserId};
    use crate::services::ServiceConfig;
    use crate::services::tickets::{TicketInput, create_ticket};
    use crate::store::{MemStore, VersionedStore};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the deliveries every member hands on, per service; with `stall`, a member's
    /// deliveries never reach the listener (the member cannot stop by itself while one runs).
    #[derive(Default)]
    struct Counting {
        delivered: Arc<[AtomicUsize; 2]>,
        stall: bool,
    }

    struct CountingMember {
        service: Service,
        delivered: Arc<[AtomicUsize; 2]>,
        stall: bool,
    }

    impl DeliveryHooks for Counting {
        type Member = CountingMember;

        fn member(&self, service: Service) -> CountingMember {
            CountingMember {
                service,
                delivered: Arc::clone(&self.delivered),
                stall: self.stall,
            }
        }
    }

    impl MemberHook for CountingMember {
        async fn deliver<L: Listener, M: MessageHandle>(
            &self,
            listener: &L,
            event: &Event,
            message: &M,
        ) -> Result<Outcome, ListenerError> {
            self.delivered[self.service.index()].fetch_add(1, Ordering::SeqCst);
            if self.stall {
                std::future::pending::<()>().await;
            }
            listener.handle(event, message).await
        }
    }

    type TestSupervisor = Supervisor<MemStore, MemStore, EmbeddedBus, EmbeddedBus, Counting>;

    fn supervisor(members: usize, hooks: Counting) -> TestSupervisor {
        let bus = EmbeddedBus::new();
        let config = ServiceConfig::default();
        let options = SupervisorOptions {
            members,
            ack_wait: Duration::from_secs(5),
            max_deliver: 10,
            relay: RelayConfig::default(),
            graceful_stop_timeout: Some(Duration::from_secs(2)),
        };
        Supervisor::new(
            Arc::new(TicketsService::new(
                MemStore::new(),
                bus.clone(),
                config.clone(),
            )),
            Arc::new(OrdersService::new(MemStore::new(), bus.clone(), config)),
            bus,
            options,
            hooks,
        )
    }

    async fn create_a_ticket(supervisor: &TestSupervisor) -> crate::id::Id {
        let input = TicketInput {
            title: "concert".into(),
            price: Price::from_cents(1000).unwrap(),
        };
        create_ticket(supervisor.tickets(), &UserId::new("owner"), input)
            .await
            .unwrap()
            .id
    }

    /// A ticket created on the tickets service reaches the orders service's replica through
    /// the tickets relay, an orders member and its hook: the assembly runs end to end.
    #[tokio::test(start_paused = true)]
    async fn a_ticket_reaches_the_replica_through_a_relay_a_member_and_its_hook() {
        let hooks = Counting::default();
        let delivered = Arc::clone(&hooks.delivered);
        let mut supervisor = supervisor(2, hooks);
        supervisor.start_all().await.unwrap();
        assert_eq!(supervisor.members(Service::Tickets), 2);
        assert_eq!(supervisor.members(Service::Orders), 2);
        let id = create_a_ticket(&supervisor).await;
        let replicated = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let found =
                    VersionedStore::<TicketReplica>::find_by_id(&supervisor.orders().store, id)
                        .await
                        .unwrap();
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(replicated.is_ok(), "the replica never appeared");
        assert_eq!(delivered[Service::Orders.index()].load(Ordering::SeqCst), 1);
        assert_eq!(
            delivered[Service::Tickets.index()].load(Ordering::SeqCst),
            0
        );
        supervisor.stop_all().await;
        assert_eq!(supervisor.members(Service::Tickets), 0);
        assert_eq!(supervisor.members(Service::Orders), 0);
    }

    /// Members and relays start, stop and crash one at a time, and say when there was nothing
    /// to stop.
    #[tokio::test(start_paused = true)]
    async fn members_and_relays_start_stop_and_crash_one_at_a_time() {
        let mut supervisor = supervisor(2, Counting::default());
        supervisor.start_all().await.unwrap();
        assert_eq!(
            supervisor.stop_member(Service::Tickets, 1).await,
            Some(true)
        );
        assert_eq!(supervisor.members(Service::Tickets), 1);
        assert!(supervisor.crash_member(Service::Tickets, 0).await);
        assert_eq!(supervisor.members(Service::Tickets), 0);
        assert_eq!(supervisor.stop_member(Service::Tickets, 0).await, None);
        assert!(!supervisor.crash_member(Service::Tickets, 0).await);
        supervisor.start_member(Service::Tickets).await.unwrap();
        assert_eq!(supervisor.members(Service::Tickets), 1);
        assert!(supervisor.member_hook(Service::Tickets, 0).is_some());
        assert_eq!(
            supervisor.members(Service::Orders),
            2,
            "the other group untouched"
        );

        assert_eq!(supervisor.stop_relay(Service::Tickets).await, Some(true));
        assert_eq!(supervisor.stop_relay(Service::Tickets).await, None);
        assert!(supervisor.crash_relay(Service::Orders).await);
        assert!(!supervisor.crash_relay(Service::Orders).await);
        supervisor.start_relay(Service::Tickets);
        supervisor.start_relay(Service::Orders);
        assert_eq!(supervisor.stop_relay(Service::Orders).await, Some(true));
        supervisor.stop_all().await;
        assert_eq!(supervisor.members(Service::Orders), 0);
    }

    /// A member whose delivery never finishes does not stop by itself: a graceful stop waits
    /// for it up to the timeout, then aborts it.
    #[tokio::test(start_paused = true)]
    async fn a_graceful_stop_past_its_timeout_aborts_the_member() {
        let hooks = Counting {
            stall: true,
            ..Counting::default()
        };
        let delivered = Arc::clone(&hooks.delivered);
        let mut supervisor = supervisor(1, hooks);
        supervisor.start_all().await.unwrap();
        create_a_ticket(&supervisor).await;
        tokio::time::timeout(Duration::from_secs(30), async {
            while delivered[Service::Orders.index()].load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the orders member took the delivery");
        let started = tokio::time::Instant::now();
        assert_eq!(
            supervisor.stop_member(Service::Orders, 0).await,
            Some(false)
        );
        assert!(started.elapsed() >= Duration::from_secs(2));
        supervisor.stop_all().await;
    }
}
