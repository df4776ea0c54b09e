//! The member runtime: one queue-group member pulls deliveries on any [`Bus`], decodes them,
//! terminates what does not decode, hands each event to the group's [`Listener`], logs the
//! outcome, and shuts down gracefully. The path of a delivery is bus -> member runtime ->
//! service listener, nothing in between.
//!
//! What it guarantees (the invariant):
//! - It pulls only while fewer than `max_in_flight` handlers run (and the bus itself never lets
//!   the member hold more than `max_in_flight` unsettled deliveries).
//! - Deliveries about one ticket are handled one after the other, in the order the bus
//!   handed them to this member ([`TicketLanes`]); deliveries about different tickets run
//!   side by side.
//! - A payload that does not decode as its subject's event is terminated with its reason
//!   (logged, and dead-lettered by the bus): never redelivered, never given to the listener.
//! - The listener settles each delivery itself (ack, nak with a delay, or term): the runtime
//!   never acknowledges on its behalf, so "ack only after the write is durable" is the
//!   listener's to keep.
//! - On shutdown it stops pulling, waits for the running handlers to finish (and settle), and
//!   then leaves the group. Nothing acknowledged is lost; anything left unsettled (a handler
//!   that did not settle, or panicked) is redelivered by the bus.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::{
    Bus, BusError, Delivery, ListenerOptions, MessageHandle, QueueGroup, Subscription,
};
use crate::events::Event;
use crate::id::{Id, IdMap};
use crate::metrics::Settled;
use crate::services::listener::Listener;
use crate::services::update::counted_as;
use crate::services::{ListenerError, Outcome};

/// What one member did, counted, when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberReport {
    /// Events handed to the listener.
    pub handled: u64,
    /// Deliveries terminated because their payload did not decode.
    pub malformed: u64,
    /// Handlers that panicked (their deliveries, unsettled, come back after the ack wait).
    pub handler_panics: u64,
    /// Errors the subscription reported (the bus keeps retrying).
    pub bus_errors: u64,
}

/// One member of a queue group, joined and ready to [`Member::run`].
pub struct Member<S> {
    subscription: S,
    options: ListenerOptions,
}

impl<S> std::fmt::Debug for Member<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("queue_group", &self.options.queue_group)
            .finish_non_exhaustive()
    }
}

/// Joins `options.queue_group` as one more member (creating the group's durable subscription
/// if needed). Separate from [`Member::run`] so a service fails at start, not later, when the
/// bus cannot be joined.
pub async fn join<B: Bus>(
    bus: &B,
    options: &ListenerOptions,
) -> Result<Member<B::Subscription>, BusError> {
    let subscription = bus.subscribe(options).await?;
    Ok(Member {
        subscription,
        options: options.clone(),
    })
}

/// [`join`], then [`Member::run`] until `shutdown`.
pub async fn run_member<B: Bus, L: Listener>(
    bus: &B,
    options: &ListenerOptions,
    listener: Arc<L>,
    shutdown: CancellationToken,
) -> Result<MemberReport, BusError> {
    Ok(join(bus, options).await?.run(listener, shutdown).await)
}

/// Pause after a subscription error before pulling again (the bus retries on its own; this
/// only keeps a failing bus from spinning the loop).
const ERROR_PAUSE: Duration = Duration::from_millis(100);

impl<S: Subscription> Member<S> {
    /// Pulls and handles deliveries until `shutdown` is cancelled (or the subscription
    /// closes), then lets the running handlers finish, leaves the group, and reports.
    pub async fn run<L: Listener>(
        self,
        listener: Arc<L>,
        shutdown: CancellationToken,
    ) -> MemberReport {
        let Member {
            mut subscription,
            options,
        } = self;
        let limit = options.max_in_flight.max(1);
        let mut handlers = Handlers::new(listener, options.queue_group.clone());
        let mut report = MemberReport::default();
        loop {
            while let Some(done) = handlers.try_join_next() {
                handlers.settle(&mut report, done).await;
            }
            if handlers.in_flight() >= limit {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    Some(done) = handlers.join_next() => handlers.settle(&mut report, done).await,
                }
                continue;
            }
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // A delivery waiting in a lane starts when the handler before it ends, whether
                // or not the subscription has more to give.
                Some(done) = handlers.join_next(), if handlers.lanes.waiting > 0 => {
                    handlers.settle(&mut report, done).await;
                    continue;
                }
                next = subscription.next() => next,
            };
            match next {
                None => break,
                Some(Err(error)) => {
                    report.bus_errors += 1;
                    tracing::warn!(queue_group = %options.queue_group, "subscription error: {error}");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                }
                Some(Ok(delivery)) => {
                    crate::metrics::delivery(&options.queue_group, delivery.delivery_count());
                    let delivery = Counted {
                        delivery,
                        queue_group: options.queue_group.clone(),
                    };
                    match Event::decode(delivery.delivery.subject(), delivery.delivery.payload()) {
                        Ok(event) => {
                            report.handled += 1;
                            handlers.start_in_turn(&mut report, event, delivery).await;
                        }
                        Err(error) => {
                            report.malformed += 1;
                            terminate_malformed(&options, &delivery, &error.to_string()).await;
                        }
                    }
                }
            }
        }
        // Stop pulling (done: the loop is left), let the running handlers, and the deliveries
        // waiting in their lanes, settle; then leave.
        while let Some(done) = handlers.join_next().await {
            handlers.settle(&mut report, done).await;
        }
        drop(subscription);
        report
    }
}

/// A decoded delivery, waiting in its ticket's lane or being handled.
struct Handling<D> {
    event: Event,
    delivery: Counted<D>,
}

/// How a handler ended: its ticket (whose lane moves on) and whether it panicked.
type Ended = (Id, bool);

/// The member's running handlers, one per ticket at most, and the deliveries waiting behind
/// them in their [`TicketLanes`].
struct Handlers<L, D> {
    listener: Arc<L>,
    queue_group: QueueGroup,
    running: JoinSet<Ended>,
    lanes: TicketLanes<Handling<D>>,
}

impl<L: Listener, D: Delivery> Handlers<L, D> {
    fn new(listener: Arc<L>, queue_group: QueueGroup) -> Self {
        Self {
            listener,
            queue_group,
            running: JoinSet::new(),
            lanes: TicketLanes::default(),
        }
    }

    /// Deliveries this member holds unsettled: handled now or waiting in a lane.
    fn in_flight(&self) -> usize {
        self.running.len() + self.lanes.waiting
    }

    /// Starts the delivery's handler, or, if one of its ticket's is running, queues it behind.
    async fn start_in_turn(
        &mut self,
        report: &mut MemberReport,
        event: Event,
        delivery: Counted<D>,
    ) {
        let ticket = event.ticket_id();
        if let Some(free) = self.lanes.enter(ticket, Handling { event, delivery }) {
            self.start(report, ticket, free).await;
        }
    }

    /// Runs `handling`'s handler as far as it goes without waiting, here in the member's task,
    /// and spawns it only if it must wait; a handler that ended at once lets its lane's next
    /// delivery start the same way.
    ///
    /// Why: most handlers end in their first poll (a memory store's write, an ack the bus
    /// takes at once), and a task spawned for them cost an allocation and two context switches
    /// per delivery, which the JetStream profile put at a tenth of the member path. A spawned
    /// handler is polled by its own task from where it stopped (its next poll registers that
    /// task's waker, so the member's, registered by this poll, is at most woken once for
    /// nothing).
    async fn start(&mut self, report: &mut MemberReport, ticket: Id, handling: Handling<D>) {
        let mut next = Some(handling);
        while let Some(handling) = next.take() {
            let mut handler = Box::pin(self.handler(ticket, handling));
            match futures::poll!(handler.as_mut()) {
                Poll::Ready((_, panicked)) => next = self.ended(report, ticket, panicked),
                Poll::Pending => {
                    self.running.spawn(handler);
                }
            }
        }
    }

    /// The delivery's handler: the listener's handling, its outcome logged, and a panic caught
    /// (the lane must learn its ticket and move on; the delivery, dropped unsettled, comes
    /// back after the ack wait).
    fn handler(
        &self,
        ticket: Id,
        handling: Handling<D>,
    ) -> impl Future<Output = Ended> + Send + 'static {
        let listener = Arc::clone(&self.listener);
        let queue_group = self.queue_group.clone();
        counted_as(self.queue_group.clone(), async move {
            let Handling { event, delivery } = handling;
            let handled = AssertUnwindSafe(listener.handle(&event, &delivery))
                .catch_unwind()
                .await;
            let panicked = match handled {
                Ok(outcome) => {
                    log_outcome(&queue_group, &event, &delivery, outcome);
                    false
                }
                Err(_) => true,
            };
            (ticket, panicked)
        })
    }

    fn try_join_next(&mut self) -> Option<Result<Ended, tokio::task::JoinError>> {
        self.running.try_join_next()
    }

    async fn join_next(&mut self) -> Option<Result<Ended, tokio::task::JoinError>> {
        self.running.join_next().await
    }

    /// Counts how a spawned handler ended and starts the next delivery in its ticket's lane.
    async fn settle(
        &mut self,
        report: &mut MemberReport,
        done: Result<Ended, tokio::task::JoinError>,
    ) {
        match done {
            Ok((ticket, panicked)) => {
                if let Some(next) = self.ended(report, ticket, panicked) {
                    self.start(report, ticket, next).await;
                }
            }
            // Only a runtime shutting down cancels a handler: no lane needs to move on then.
            Err(error) => {
                report.handler_panics += 1;
                tracing::error!(
                    queue_group = %self.queue_group,
                    "a handler was cancelled ({error}); its delivery is redelivered after the ack wait"
                );
            }
        }
    }

    /// Counts how `ticket`'s handler ended, and gives the next delivery in its lane to start.
    fn ended(
        &mut self,
        report: &mut MemberReport,
        ticket: Id,
        panicked: bool,
    ) -> Option<Handling<D>> {
        if panicked {
            report.handler_panics += 1;
            tracing::error!(
                queue_group = %self.queue_group,
                "a handler panicked; its delivery is redelivered after the ack wait"
            );
        }
        self.lanes.leave(ticket)
    }
}

/// Per ticket with a handler running, the deliveries of it that arrived since, in order: a
/// delivery about a busy ticket waits here, and starts when the one before it ends.
///
/// Why: a ticket's events apply in version (and reservation-number) order, and two of its
/// deliveries handled at once race. The later one finds the earlier one's write missing, naks
/// on the gap, and comes back after the gap backoff, spending a delivery; under a burst of
/// one ticket's updates the misses chain (each one doubles the next wait) until the chain's
/// tail runs out of deliveries and is dead-lettered long after its gap closed. A lane keeps a
/// member's own deliveries of a ticket from racing; races across members remain, and cost a
/// short nak each. A delivery about an idle ticket costs one map insert and one remove.
struct TicketLanes<T> {
    busy: IdMap<VecDeque<T>>,
    /// Deliveries queued in all lanes.
    waiting: usize,
}

impl<T> Default for TicketLanes<T> {
    fn default() -> Self {
        Self {
            busy: IdMap::default(),
            waiting: 0,
        }
    }
}

impl<T> TicketLanes<T> {
    /// Gives `next` back when `ticket`'s lane is free (it is now busy: start `next`), or
    /// queues it at the lane's end.
    fn enter(&mut self, ticket: Id, next: T) -> Option<T> {
        match self.busy.entry(ticket) {
            Entry::Occupied(mut lane) => {
                lane.get_mut().push_back(next);
                self.waiting += 1;
                None
            }
            Entry::Vacant(lane) => {
                lane.insert(VecDeque::new());
                Some(next)
            }
        }
    }

    /// `ticket`'s running delivery ended: the next one in its lane to start, or none (the
    /// lane is free again).
    fn leave(&mut self, ticket: Id) -> Option<T> {
        let Entry::Occupied(mut lane) = self.busy.entry(ticket) else {
            return None;
        };
        let next = lane.get_mut().pop_front();
        match next {
            Some(_) => self.waiting -= 1,
            None => {
                lane.remove();
            }
        }
        next
    }
}

/// Logs what the listener decided: at debug what is normal (applied, already applied,
/// waiting on a gap), at warn an event not applied or a listener error (redelivered).
fn log_outcome<M: MessageHandle>(
    queue_group: &QueueGroup,
    event: &Event,
    message: &M,
    outcome: Result<Outcome, ListenerError>,
) {
    let queue_group = &**queue_group;
    let subject = event.subject();
    let record = event.record_id();
    let version = event.version();
    let delivery = message.delivery_count();
    match outcome {
        Ok(Outcome::Applied | Outcome::AlreadyApplied | Outcome::Waiting { .. }) => {
            tracing::debug!(queue_group, %subject, %record, version, delivery, ?outcome, "handled");
        }
        Ok(outcome) => {
            tracing::warn!(queue_group, %subject, %record, version, delivery, ?outcome, "event not applied");
        }
        Err(error) => {
            tracing::warn!(
                queue_group, %subject, %record, version, delivery, %error,
                "listener failed; the event is redelivered"
            );
        }
    }
}

/// A delivery whose settling is counted under its queue group ([`crate::metrics::settled`]):
/// what the listener acknowledges, naks or terminates through.
struct Counted<D> {
    delivery: D,
    queue_group: QueueGroup,
}

impl<D: Delivery> Counted<D> {
    fn stream_seq(&self) -> u64 {
        self.delivery.stream_seq()
    }

    fn subject(&self) -> &str {
        self.delivery.subject()
    }
}

impl<D: Delivery> MessageHandle for Counted<D> {
    fn delivery_count(&self) -> u32 {
        self.delivery.delivery_count()
    }

    async fn ack(&self) -> Result<(), BusError> {
        self.delivery.ack().await?;
        crate::metrics::settled(&self.queue_group, Settled::Ack);
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.delivery.nak(delay).await?;
        crate::metrics::settled(&self.queue_group, Settled::Nak);
        Ok(())
    }

    async fn term(&self, reason: &str) -> Result<(), BusError> {
        self.delivery.term(reason).await?;
        crate::metrics::settled(&self.queue_group, Settled::Term);
        Ok(())
    }
}

async fn terminate_malformed<D: Delivery>(
    options: &ListenerOptions,
    delivery: &Counted<D>,
    error: &str,
) {
    let reason = format!("malformed event: {error}");
    tracing::warn!(
        queue_group = %options.queue_group,
        subject = delivery.subject(),
        stream_seq = delivery.stream_seq(),
        "terminating a delivery that does not decode: {reason}"
    );
    if let Err(error) = delivery.term(&reason).await {
        tracing::warn!(
            queue_group = %options.queue_group,
            stream_seq = delivery.stream_seq(),
            "could not terminate a malformed delivery ({error}); the bus redelivers it"
        );
    }
}
