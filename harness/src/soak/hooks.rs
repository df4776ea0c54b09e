//! The soak's hooks on the supervisor's members: every delivery a member hands to its
//! service's listener is counted ([`DeliveryStats`]), and the fault injector can arm a member
//! ([`MemberHooks::arm`]) so that its next delivery parks at a crash point (aborting the member
//! then is the crash) or is held past the ack wait (a late handler or a late settlement).
//!
//! The invariant: a plan is taken by exactly one delivery (or disarmed), and a delivery counted
//! in is counted out when its handler ends, an aborted one included.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use std::sync::Mutex;
use ticketing::bus::{BusError, MessageHandle};
use ticketing::events::Event;
use ticketing::services::listener::Listener;
use ticketing::services::supervisor::{DeliveryHooks, MemberHook, Service};
use ticketing::services::{ListenerError, Outcome};

use crate::lock::locked;

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

/// A member's fault hooks: at most one armed plan, taken by the member's next delivery; and
/// the counting of every delivery the member hands to its listener.
#[derive(Debug)]
pub struct MemberHooks {
    /// The member's queue group, by [`Service::index`].
    group: usize,
    plan: Mutex<Option<Plan>>,
    stats: Arc<DeliveryStats>,
}

impl MemberHooks {
    /// Arms `plan` for the member's next delivery (replacing any plan not yet taken).
    pub fn arm(&self, plan: Plan) {
        *locked(&self.plan) = Some(plan);
    }

    /// Takes back a plan no delivery took; whether there was one.
    pub fn disarm(&self) -> bool {
        locked(&self.plan).take().is_some()
    }

    fn take(&self) -> Option<Plan> {
        locked(&self.plan).take()
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

    /// Deliveries handed to a listener so far, by group.
    pub fn handled(&self) -> [u64; 2] {
        std::array::from_fn(|group| self.handled[group].load(Ordering::Relaxed))
    }

    /// Deliveries so far whose count was above 1.
    pub fn redeliveries(&self) -> u64 {
        self.redeliveries.load(Ordering::Relaxed)
    }

    /// Deliveries so far that began while another delivery of the same event was handled.
    pub fn overlapping(&self) -> u64 {
        self.overlapping.load(Ordering::Relaxed)
    }

    /// What the listeners decided so far, per (group, outcome).
    pub fn outcomes(&self) -> BTreeMap<(usize, &'static str), u64> {
        locked(&self.outcomes).clone()
    }

    fn begin(&self, group: usize, event: &Event, delivery_count: u32) -> Running<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.handled[group].fetch_add(1, Ordering::Relaxed);
        if delivery_count > 1 {
            self.redeliveries.fetch_add(1, Ordering::Relaxed);
        }
        let key = (group, event.publish_id());
        let mut running = locked(&self.running);
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
        *locked(&self.outcomes).entry((group, name)).or_insert(0) += 1;
    }
}

/// One running handler; counted out when dropped (an aborted handler included).
struct Running<'a> {
    stats: &'a DeliveryStats,
    key: (usize, String),
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = locked(&self.stats.running);
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

/// The soak's hooks on the supervisor: each member gets [`MemberHooks`] counting into one
/// [`DeliveryStats`].
#[derive(Debug, Default)]
pub struct SoakHooks {
    stats: Arc<DeliveryStats>,
}

impl SoakHooks {
    /// The deliveries' counts, across every member.
    pub fn stats(&self) -> &Arc<DeliveryStats> {
        &self.stats
    }
}

impl DeliveryHooks for SoakHooks {
    type Member = MemberHooks;

    fn member(&self, service: Service) -> MemberHooks {
        MemberHooks {
            group: service.index(),
            plan: Mutex::new(None),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl MemberHook for MemberHooks {
    /// Counts the delivery and hands it to the listener, as the armed plan (if any) says:
    /// parked for a crash, or held past the ack wait.
    async fn deliver<L: Listener, M: MessageHandle>(
        &self,
        listener: &L,
        event: &Event,
        message: &M,
    ) -> Result<Outcome, ListenerError> {
        let _running = self
            .stats
            .begin(self.group, event, message.delivery_count());
        let outcome = match self.take() {
            None => listener.handle(event, message).await,
            Some(plan) => deliver_planned(plan, listener, event, message).await,
        };
        self.stats.record(self.group, &outcome);
        outcome
    }
}

/// Hands a delivery to the listener as an armed plan says.
async fn deliver_planned<L: Listener, M: MessageHandle>(
    plan: Plan,
    listener: &L,
    event: &Event,
    message: &M,
) -> Result<Outcome, ListenerError> {
    match plan {
        Plan::Crash {
            point: CrashPoint::BeforeHandler,
            parked,
        } => {
            let _ = parked.send(());
            // Parked until the injector aborts the member: the crash.
            std::future::pending().await
        }
        Plan::Crash { point, parked } => {
            let parking = Parking {
                inner: message,
                settle_first: point == CrashPoint::AfterSettle,
                parked: Mutex::new(Some(parked)),
            };
            listener.handle(event, &parking).await
        }
        Plan::Late {
            point: LatePoint::BeforeHandler,
            delay,
            taken,
        } => {
            let _ = taken.send(());
            tokio::time::sleep(delay).await;
            listener.handle(event, message).await
        }
        Plan::Late {
            point: LatePoint::BeforeSettle,
            delay,
            taken,
        } => {
            let _ = taken.send(());
            let late = LateSettle {
                inner: message,
                delay,
            };
            listener.handle(event, &late).await
        }
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
        let parked = locked(&self.parked).take();
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
