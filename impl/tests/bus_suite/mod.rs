//! One behavioural suite for every bus backend: the broker semantics of SPEC.md section 1,
//! written once as `pub async fn` checks over a [`Backend`], and run by `bus_embedded.rs`
//! (the embedded broker, on tokio's paused clock: deterministic) and `bus_jetstream.rs` (NATS
//! JetStream, a fresh stream and subject prefix per test). Passing the same checks is what
//! lets the embedded broker stand in for JetStream.
//!
//! Timing: every wait is bounded ([`PATIENCE`]) and fails with what it waited for; "nothing
//! arrives" is checked over [`QUIET`] (exact on the paused clock, and backed by the broker's
//! own count of unsettled deliveries on JetStream); redelivery checks use the backend's short
//! ack wait.
#![allow(dead_code)]

mod checks;

// Not every test binary that shares this suite runs its checks (jetstream_retention.rs uses
// only the helpers).
#[allow(unused_imports)]
pub use checks::*;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use ticketing::bus::{
    Bus, DeadLetterReason, Delivery, ListenerOptions, MessageHandle, PublishAck, Publisher,
    RawPublisher, Subscription,
};
use ticketing::events::{
    Event, OrderCancelled, OrderCreated, OrderedTicket, Subject, TicketCreated, TicketRef,
    TicketUpdated,
};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{OrderStatus, Timestamp, UserId};
use ticketing::services::listener::Listener;
use ticketing::services::member;
use ticketing::services::{ListenerError, Outcome};

/// The longest any check waits for something that must happen.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// How long "nothing more arrives" is watched.
pub const QUIET: Duration = Duration::from_millis(500);
/// An ack wait no check reaches: redelivery can only come from a nak or a crash.
pub const LONG_ACK_WAIT: Duration = Duration::from_secs(60);
/// The nak delay the nak check uses.
pub const NAK_DELAY: Duration = Duration::from_millis(300);

/// The orders service's queue group and subjects.
pub const ORDERS: &str = "orders-service";
/// What `orders-service` listens to.
pub const TICKET_SUBJECTS: [Subject; 2] = [Subject::TicketCreated, Subject::TicketUpdated];
/// The tickets service's queue group.
pub const TICKETS: &str = "tickets-service";
/// What `tickets-service` listens to.
pub const ORDER_SUBJECTS: [Subject; 2] = [Subject::OrderCreated, Subject::OrderCancelled];

/// A group's messages not yet settled, as the broker counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outstanding {
    /// Never delivered to the group.
    pub undelivered: u64,
    /// Delivered (or nak'ed) and not yet acked, terminated or dead-lettered.
    pub unsettled: u64,
}

/// A bus backend under test.
pub trait Backend {
    /// The bus.
    type Bus: Bus + RawPublisher;
    /// A bus on this test's own, empty broker (or namespace).
    fn bus(&self) -> impl Future<Output = Self::Bus>;
    /// The bus another process would get on the same broker, after this one's `bus` and all
    /// its subscriptions are gone.
    fn reopen(&self, bus: Self::Bus) -> impl Future<Output = Self::Bus>;
    /// What the broker counts as outstanding for `group`.
    fn outstanding(&self, bus: &Self::Bus, group: &str) -> impl Future<Output = Outstanding>;
    /// The group's ack floor: the highest stream sequence up to which every message is
    /// settled, as the broker has applied it (an ack is a one-way message on JetStream).
    fn ack_floor(&self, bus: &Self::Bus, group: &str) -> impl Future<Output = u64>;
    /// The ack wait of checks that wait for one to run out.
    fn short_ack_wait(&self) -> Duration;
}

// ----- events -----

fn id(n: u64) -> Id {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    Id::from_bytes(bytes)
}

fn price(n: u64) -> Price {
    Price::from_cents(100 + n).unwrap()
}

/// A distinct, well-formed event on `subject` (its record id is `n`).
pub fn event(subject: Subject, n: u64) -> Event {
    match subject {
        Subject::TicketCreated => Event::TicketCreated(TicketCreated {
            id: id(n),
            version: 0,
            title: format!("show {n}").into(),
            price: price(n),
            user_id: UserId::new("user-1"),
        }),
        Subject::TicketUpdated => Event::TicketUpdated(TicketUpdated {
            id: id(n),
            version: 1,
            title: format!("show {n}").into(),
            price: price(n),
            user_id: UserId::new("user-1"),
            order_id: None,
        }),
        Subject::OrderCreated => Event::OrderCreated(OrderCreated {
            id: id(n),
            version: 0,
            status: OrderStatus::Created,
            user_id: UserId::new("user-2"),
            expires_at: Timestamp::from_unix_millis(1_795_791_600_000),
            ticket: OrderedTicket {
                id: id(n + 1_000_000),
                price: price(n),
            },
            reservation: 1,
        }),
        Subject::OrderCancelled => Event::OrderCancelled(OrderCancelled {
            id: id(n),
            version: 1,
            ticket: TicketRef {
                id: id(n + 1_000_000),
            },
            reservation: 2,
        }),
    }
}

/// Publishes `event`, which must be stored; returns its stream sequence.
/// Creates the group's durable subscription with no member yet: under interest retention
/// (JetStream's) an event is kept only for the groups that exist when it is published.
pub async fn declare(bus: &impl Bus, options: &ListenerOptions) {
    bus.declare(options)
        .await
        .unwrap_or_else(|error| panic!("declare {}: {error}", options.queue_group));
}

pub async fn publish(bus: &impl Publisher, event: &Event, publish_id: Option<&str>) -> u64 {
    match bus.publish(event, publish_id).await.unwrap() {
        PublishAck::Stored { seq } => seq,
        PublishAck::Duplicate => panic!("{event:?} was taken for a duplicate"),
    }
}

/// Publishes `count` ticket events (created and updated, alternately).
async fn publish_ticket_events(bus: &impl Publisher, count: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    for n in 0..count {
        let subject = TICKET_SUBJECTS[(n % 2) as usize];
        seqs.push(publish(bus, &event(subject, n), None).await);
    }
    seqs
}

/// A group's options with the given ack wait and capacity, 10 deliveries.
pub fn options(
    group: &str,
    subjects: &[Subject],
    ack_wait: Duration,
    max_in_flight: usize,
) -> ListenerOptions {
    ListenerOptions {
        ack_wait,
        max_deliver: 10,
        max_in_flight,
        ..ListenerOptions::new(group, subjects)
    }
}

// ----- waiting -----

/// Polls `probe` until it gives a value, for at most [`PATIENCE`].
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the broker's count of `group`'s outstanding messages satisfies `done`; a
/// timeout names the last count seen.
pub async fn outstanding_until<B: Backend>(
    backend: &B,
    bus: &B::Bus,
    group: &str,
    what: &str,
    done: impl Fn(Outstanding) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let outstanding = backend.outstanding(bus, group).await;
        if done(outstanding) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {group}: {what}; last seen {outstanding:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the broker counts nothing outstanding for `group`.
pub async fn settled<B: Backend>(backend: &B, bus: &B::Bus, group: &str) {
    outstanding_until(backend, bus, group, "everything settled", |o| {
        o == Outstanding::default()
    })
    .await;
}

// ----- members the checks drive by hand -----

/// Subscriptions whose deliveries are forwarded to the check, tagged with the member's index.
/// A member pulls on its own (as a real one does) and is bounded by its `max_in_flight`: what
/// the check holds unsettled counts against it.
pub struct Members<D> {
    deliveries: mpsc::UnboundedReceiver<(usize, D)>,
    sender: mpsc::UnboundedSender<(usize, D)>,
    tasks: Vec<JoinHandle<()>>,
}

impl<D: Delivery + Send> Members<D> {
    /// No members yet.
    pub fn new() -> Self {
        let (sender, deliveries) = mpsc::unbounded_channel();
        Self {
            deliveries,
            sender,
            tasks: Vec::new(),
        }
    }

    /// Adds a member pulling from `subscription`; returns its index.
    pub fn add<S: Subscription<Delivery = D>>(&mut self, mut subscription: S) -> usize {
        let index = self.tasks.len();
        let sender = self.sender.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                match subscription.next().await {
                    Some(Ok(delivery)) => {
                        if sender.send((index, delivery)).is_err() {
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        eprintln!("member {index}: {error}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    None => return,
                }
            }
        }));
        index
    }

    /// The next delivery to any member.
    pub async fn next(&mut self, what: &str) -> (usize, D) {
        match tokio::time::timeout(PATIENCE, self.deliveries.recv()).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => panic!("members closed while waiting for: {what}"),
            Err(_) => panic!("timed out after {PATIENCE:?} waiting for: {what}"),
        }
    }

    /// A delivery arriving within [`QUIET`], if any.
    pub async fn within_quiet(&mut self) -> Option<(usize, D)> {
        tokio::time::timeout(QUIET, self.deliveries.recv())
            .await
            .ok()
            .flatten()
    }

    /// A delivery already arrived, if any.
    pub fn try_next(&mut self) -> Option<(usize, D)> {
        self.deliveries.try_recv().ok()
    }

    /// Member `index` crashes: its task is aborted and its subscription dropped.
    pub async fn crash(&mut self, index: usize) {
        let task = &self.tasks[index];
        task.abort();
        while !task.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    /// Acks whatever arrives until the broker counts nothing outstanding for `group`; returns
    /// what arrived, as (stream sequence, delivery count). For checks where a redelivery may
    /// legitimately still be on its way (a crashed member's prefetch, a late hand-back).
    pub async fn settle_all<B: Backend>(
        &mut self,
        backend: &B,
        bus: &B::Bus,
        group: &str,
    ) -> Vec<(u64, u32)> {
        let deadline = Instant::now() + PATIENCE;
        let mut arrived = Vec::new();
        loop {
            while let Some((_, delivery)) = self.try_next() {
                arrived.push((delivery.stream_seq(), delivery.delivery_count()));
                delivery.ack().await.unwrap();
            }
            let outstanding = backend.outstanding(bus, group).await;
            if outstanding == Outstanding::default() && self.deliveries.is_empty() {
                return arrived;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {PATIENCE:?} settling {group}; last seen {outstanding:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every member leaves (their subscriptions are dropped), and so do deliveries not taken.
    pub async fn shutdown(mut self) {
        for index in 0..self.tasks.len() {
            self.crash(index).await;
        }
    }
}

impl<D> Drop for Members<D> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// ----- a listener's handler -----

/// A listener (of `orders-service`, on the ticket subjects) that records what it is given and
/// acks it, optionally only once a gate opens.
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    entered: AtomicUsize,
    acked: AtomicUsize,
    gate: Option<watch::Receiver<bool>>,
}

impl Recorder {
    /// Acks at once.
    pub fn open() -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(Vec::new()),
            entered: AtomicUsize::new(0),
            acked: AtomicUsize::new(0),
            gate: None,
        })
    }

    /// Acks once `gate` is true.
    pub fn gated(gate: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(Vec::new()),
            entered: AtomicUsize::new(0),
            acked: AtomicUsize::new(0),
            gate: Some(gate),
        })
    }

    /// Handlers started.
    pub fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }

    /// Deliveries acked.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Events handled, in the order their handlers finished.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl Listener for Recorder {
    const QUEUE_GROUP: &'static str = ORDERS;
    const SUBJECTS: &'static [Subject] = &TICKET_SUBJECTS;

    async fn handle<M: MessageHandle>(
        &self,
        event: &Event,
        message: &M,
    ) -> Result<Outcome, ListenerError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            let mut gate = gate.clone();
            gate.wait_for(|open| *open).await.unwrap();
        }
        message.ack().await.unwrap();
        self.events.lock().unwrap().push(event.clone());
        self.acked.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::Applied)
    }
}
