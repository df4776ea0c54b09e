//! `EmbeddedBus`: the in-process broker, a tokio driver around one [`BrokerCore`].
//!
//! The core decides every rule (see [`super::broker`]); this module only decides *when*:
//! - Members pull. A member's [`Subscription::next`] delivers the group's next pending messages
//!   to it (up to 16 under one lock, buffered in the subscription) while it holds fewer than
//!   its `max_in_flight` unsettled deliveries; otherwise it waits to be woken (by a publish, a
//!   redelivery, or its own capacity coming back). Buffered deliveries are held by the member,
//!   as a JetStream member's fetched batch is: they count against `max_in_flight`, their ack
//!   wait runs, and they return to pending if the member leaves.
//! - Each delivery's ack wait is a deadline in its group's queue (deadlines of one group come
//!   in delivery order, because the ack wait is the group's); a nak's delay is a deadline in a
//!   heap. One timer task per bus expires them through the core, which ignores deadlines of
//!   deliveries settled meanwhile.
//! - Dropping a subscription is the member leaving (or crashing): what it held is pending again
//!   at once.
//!
//! The invariant: the core is touched only under the one mutex, and nothing asynchronous
//! happens while it is held (a `std` mutex, never held across an `.await`), so every operation
//! is one atomic step of the core, as the harness steps it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::broker::{
    BrokerCore, DEAD_LETTERS_MAX, DeliveryTicket, DuplicateWindow, Effect, GroupId, MemberId,
    Retention, Status,
};
use super::{
    Bus, BusError, DeadLetter, Delivery, ListenerOptions, MessageHandle, PublishAck, Publisher,
    RawPublisher, Subscription,
};
use crate::events::Event;
use crate::sync::Mutex;

/// How an [`EmbeddedBus`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// How many publish ids are remembered to drop duplicate publishes.
    pub duplicate_window: DuplicateWindow,
    /// Which messages are kept: by default until every group that listens has settled them.
    pub retention: Retention,
    /// The most dead letters kept; older ones are dropped and counted.
    pub dead_letters_max: usize,
}

impl Default for EmbeddedConfig {
    /// The default duplicate window (100,000 publish ids), interest retention, and
    /// [`DEAD_LETTERS_MAX`] dead letters.
    fn default() -> Self {
        Self {
            duplicate_window: DuplicateWindow::default(),
            retention: Retention::Interest,
            dead_letters_max: DEAD_LETTERS_MAX,
        }
    }
}

/// The embedded broker: cheap to clone (every clone is the same broker), lives as long as any
/// clone, subscription or delivery does.
#[derive(Clone)]
pub struct EmbeddedBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus").finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the timer task: a deadline earlier than the one it sleeps to, or the bus is gone.
    timer_wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The timer task holds only a weak reference; it wakes, finds the bus gone, and ends.
        self.timer_wake.notify_one();
    }
}

/// One timer: the ack wait or the nak delay of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Instant,
    group: GroupId,
    seq: u64,
    delivery_count: u32,
}

struct GroupDriver {
    ack_wait: Duration,
    /// Ack-wait deadlines, earliest first (deliveries of one group share one ack wait).
    ack_deadlines: VecDeque<Deadline>,
    /// Members waiting for a message to become pending.
    idle: Vec<MemberId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    No,
    /// In its group's idle list.
    ForMessage,
    /// Holds `max_in_flight` deliveries; woken when one is settled or expires.
    ForCapacity,
}

struct MemberDriver {
    notify: Arc<Notify>,
    max_in_flight: u32,
    waiting: Waiting,
}

struct State {
    core: BrokerCore,
    /// Indexed by [`GroupId::index`].
    groups: Vec<GroupDriver>,
    /// Indexed by [`MemberId::index`].
    members: Vec<MemberDriver>,
    /// Nak-delay deadlines, earliest on top.
    delays: BinaryHeap<Reverse<Deadline>>,
    timer_running: bool,
}

impl State {
    /// Delivers up to `batch` of the group's pending messages to `member`, as far as its
    /// capacity goes, into `into`; if it delivers none, records what the member waits for.
    /// Returns whether the timer task must look at a new earliest deadline.
    fn deliver_batch(
        &mut self,
        group: GroupId,
        member: MemberId,
        now: Instant,
        batch: usize,
        into: &mut VecDeque<DeliveryTicket>,
    ) -> Result<bool, BusError> {
        let Some(slot) = self.members.get(member.index()) else {
            return Err(BusError::Closed);
        };
        let max_in_flight = slot.max_in_flight;
        let mut wake_timer = false;
        let mut delivered = 0;
        while delivered < batch && self.core.held(member) < max_in_flight {
            let Some(seq) = self.core.next_pending(group) else {
                break;
            };
            let ticket = self
                .core
                .deliver(group, seq, member)
                .map_err(|error| BusError::Broker(error.to_string()))?;
            wake_timer |= self.arm_ack_wait(&ticket, now);
            into.push_back(ticket);
            delivered += 1;
        }
        let slot = &mut self.members[member.index()];
        let was = slot.waiting;
        slot.waiting = if delivered > 0 {
            Waiting::No
        } else if self.core.held(member) >= max_in_flight {
            Waiting::ForCapacity
        } else {
            Waiting::ForMessage
        };
        match (
            was == Waiting::ForMessage,
            slot.waiting == Waiting::ForMessage,
        ) {
            (false, true) => self.groups[group.index()].idle.push(member),
            (true, false) => self.groups[group.index()]
                .idle
                .retain(|&idle| idle != member),
            _ => {}
        }
        Ok(wake_timer)
    }

    /// The group's id, its durable consumer (and driver) created if missing.
    fn declare(&mut self, options: &ListenerOptions) -> Result<GroupId, BusError> {
        let subjects: Vec<&str> = options.subjects.iter().map(|s| s.as_str()).collect();
        let group = self
            .core
            .group(&options.queue_group, &subjects, options.max_deliver)
            .map_err(|error| BusError::Broker(error.to_string()))?;
        if group.index() == self.groups.len() {
            self.groups.push(GroupDriver {
                ack_wait: options.ack_wait,
                ack_deadlines: VecDeque::new(),
                idle: Vec::new(),
            });
        }
        Ok(group)
    }

    /// Starts the ack-wait timer of a delivery; true if the timer task must be woken.
    fn arm_ack_wait(&mut self, ticket: &DeliveryTicket, now: Instant) -> bool {
        let driver = &mut self.groups[ticket.group.index()];
        // Deadlines of settled deliveries are dropped from the front as we go, so the queue
        // stays about as long as what is in flight.
        while let Some(front) = driver.ack_deadlines.front() {
            if self
                .core
                .is_in_flight(front.group, front.seq, front.delivery_count)
            {
                break;
            }
            driver.ack_deadlines.pop_front();
        }
        let was_empty = driver.ack_deadlines.is_empty();
        driver.ack_deadlines.push_back(Deadline {
            at: now + driver.ack_wait,
            group: ticket.group,
            seq: ticket.seq,
            delivery_count: ticket.delivery_count,
        });
        was_empty
    }

    /// Starts a nak delay; true if it is the new earliest one.
    fn arm_delay(&mut self, deadline: Deadline) -> bool {
        while let Some(Reverse(top)) = self.delays.peek() {
            if self.core.is_delayed(top.group, top.seq, top.delivery_count) {
                break;
            }
            self.delays.pop();
        }
        self.delays.push(Reverse(deadline));
        self.delays.peek() == Some(&Reverse(deadline))
    }

    /// Wakes whoever an effect concerns: the member that got capacity back, and the group's
    /// idle members if a message became pending.
    fn after(&mut self, group: GroupId, effect: Effect) {
        let Effect::Changed { status, released } = effect else {
            return;
        };
        if let Some(member) = released
            && let Some(slot) = self.members.get_mut(member.index())
            && slot.waiting == Waiting::ForCapacity
        {
            slot.waiting = Waiting::No;
            slot.notify.notify_one();
        }
        if let Status::Pending { .. } = status {
            self.wake_idle(group);
        }
    }

    /// Wakes every idle member of the group: each looks again and the first takes the message.
    /// (Waking only one could pick a member whose `next` was cancelled and that no longer
    /// pulls; waking all never strands a message, and groups have a handful of members.)
    fn wake_idle(&mut self, group: GroupId) {
        let Some(driver) = self.groups.get_mut(group.index()) else {
            return;
        };
        for member in driver.idle.drain(..) {
            if let Some(slot) = self.members.get_mut(member.index()) {
                slot.waiting = Waiting::No;
                slot.notify.notify_one();
            }
        }
    }

    /// A message was stored at `seq`: wake the groups that listen to it.
    fn published(&mut self, seq: u64) {
        for group in self.core.groups() {
            if !self.groups[group.index()].idle.is_empty() && self.core.listens_to(group, seq) {
                self.wake_idle(group);
            }
        }
    }

    /// Expires every deadline at or before `now`.
    fn fire(&mut self, now: Instant) {
        for index in 0..self.groups.len() {
            while let Some(&front) = self.groups[index].ack_deadlines.front() {
                if front.at > now {
                    break;
                }
                self.groups[index].ack_deadlines.pop_front();
                let effect = self
                    .core
                    .expire(front.group, front.seq, front.delivery_count);
                self.after(front.group, effect);
            }
        }
        while let Some(&Reverse(top)) = self.delays.peek() {
            if top.at > now {
                break;
            }
            self.delays.pop();
            let effect = self.core.release(top.group, top.seq, top.delivery_count);
            self.after(top.group, effect);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let ack = self
            .groups
            .iter()
            .filter_map(|driver| driver.ack_deadlines.front().map(|d| d.at));
        let delay = self.delays.peek().map(|Reverse(d)| d.at);
        ack.chain(delay).min()
    }

    fn leave(&mut self, group: GroupId, member: MemberId) {
        let held = self.core.leave(member).unwrap_or(0);
        if let Some(driver) = self.groups.get_mut(group.index()) {
            driver.idle.retain(|&idle| idle != member);
        }
        if let Some(slot) = self.members.get_mut(member.index()) {
            slot.waiting = Waiting::No;
        }
        if held > 0 {
            self.wake_idle(group);
        }
    }
}

/// Expires ack waits and nak delays until the bus is dropped.
async fn run_timers(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut state = shared.state.lock();
            state.fire(Instant::now());
            state.next_deadline()
        };
        // `notify_one` keeps a permit when nobody waits, so a deadline armed between the
        // computation above and this wait is not missed.
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl Default for EmbeddedBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedBus {
    /// A new, empty broker with the default configuration.
    pub fn new() -> Self {
        Self::with_config(EmbeddedConfig::default())
    }

    /// A new, empty broker.
    pub fn with_config(config: EmbeddedConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    core: BrokerCore::with_retention(
                        config.duplicate_window,
                        config.retention,
                        config.dead_letters_max,
                    ),
                    groups: Vec::new(),
                    members: Vec::new(),
                    delays: BinaryHeap::new(),
                    timer_running: false,
                }),
                timer_wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// Looks at the broker's state (stream, statuses, dead letters) in one consistent step.
    pub fn inspect<R>(&self, look: impl FnOnce(&BrokerCore) -> R) -> R {
        look(&self.shared.state.lock().core)
    }

    /// Dead letters dropped because more than `dead_letters_max` were kept (where a metrics
    /// exporter reads the count).
    pub fn dead_letters_dropped(&self) -> u64 {
        self.inspect(BrokerCore::dead_letters_dropped)
    }

    /// Republishes the dead letter of stream sequence `seq` on its subject (as a new message,
    /// with no publish id) and removes it from the list. `None` if no dead letter has `seq`.
    pub fn replay_dead_letter(&self, seq: u64) -> Option<PublishAck> {
        let mut state = self.shared.state.lock();
        let letter = state
            .core
            .dead_letters()
            .find(|letter| letter.stream_seq == seq)
            .cloned()?;
        let ack = state
            .core
            .publish(&letter.subject, Bytes::from(letter.payload), None);
        if let PublishAck::Stored { seq } = ack {
            state.published(seq);
        }
        state.core.remove_dead_letter(seq);
        Some(ack)
    }

    fn store(&self, subject: &str, payload: Bytes, publish_id: Option<&str>) -> PublishAck {
        let mut state = self.shared.state.lock();
        let ack = state.core.publish(subject, payload, publish_id);
        if let PublishAck::Stored { seq } = ack {
            state.published(seq);
        }
        ack
    }
}

impl Publisher for EmbeddedBus {
    async fn publish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        let payload = Bytes::from(event.encode()?);
        Ok(self.store(event.subject().as_str(), payload, publish_id))
    }
}

impl RawPublisher for EmbeddedBus {
    async fn publish_raw(
        &self,
        subject: &str,
        payload: Bytes,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        Ok(self.store(subject, payload, publish_id))
    }
}

impl Bus for EmbeddedBus {
    type Subscription = EmbeddedSubscription;

    async fn declare(&self, options: &ListenerOptions) -> Result<(), BusError> {
        options.validate()?;
        self.shared.state.lock().declare(options)?;
        Ok(())
    }

    async fn subscribe(&self, options: &ListenerOptions) -> Result<EmbeddedSubscription, BusError> {
        options.validate()?;
        let max_in_flight = u32::try_from(options.max_in_flight).unwrap_or(u32::MAX);
        let notify = Arc::new(Notify::new());
        let mut state = self.shared.state.lock();
        let group = state.declare(options)?;
        let member = state
            .core
            .join(group)
            .map_err(|error| BusError::Broker(error.to_string()))?;
        debug_assert_eq!(member.index(), state.members.len());
        state.members.push(MemberDriver {
            notify: Arc::clone(&notify),
            max_in_flight,
            waiting: Waiting::No,
        });
        if !state.timer_running {
            state.timer_running = true;
            tokio::spawn(run_timers(
                Arc::downgrade(&self.shared),
                Arc::clone(&self.shared.timer_wake),
            ));
        }
        Ok(EmbeddedSubscription {
            shared: Arc::clone(&self.shared),
            group,
            member,
            notify,
            buffered: VecDeque::new(),
        })
    }

    fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inspect(|core| core.dead_letters().cloned().collect())
    }
}

/// One member of a queue group on the embedded broker. Dropping it is the member leaving:
/// what it holds unsettled is pending again at once.
pub struct EmbeddedSubscription {
    shared: Arc<Shared>,
    group: GroupId,
    member: MemberId,
    notify: Arc<Notify>,
    /// Delivered to this member under one lock, not yet returned by `next` (they count
    /// against `max_in_flight`, as a JetStream member's fetched batch does).
    buffered: VecDeque<DeliveryTicket>,
}

/// Most deliveries made to a member under one lock (fewer lock round trips when busy).
const BATCH: usize = 16;

impl std::fmt::Debug for EmbeddedSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedSubscription")
            .field("group", &self.group)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl EmbeddedSubscription {
    /// This member's id in the core (as [`BrokerCore::status`] reports holders).
    pub fn member(&self) -> MemberId {
        self.member
    }

    /// The queue group's id in the core.
    pub fn group(&self) -> GroupId {
        self.group
    }
}

impl Subscription for EmbeddedSubscription {
    type Delivery = EmbeddedDelivery;

    /// Never yields `None` (the embedded broker does not close). Cancel-safe: deliveries are
    /// made under the lock into this member's own buffer, so dropping the future loses nothing.
    async fn next(&mut self) -> Option<Result<EmbeddedDelivery, BusError>> {
        loop {
            if let Some(ticket) = self.buffered.pop_front() {
                return Some(Ok(EmbeddedDelivery {
                    shared: Arc::clone(&self.shared),
                    ticket,
                }));
            }
            let attempt = {
                let mut state = self.shared.state.lock();
                state.deliver_batch(
                    self.group,
                    self.member,
                    Instant::now(),
                    BATCH,
                    &mut self.buffered,
                )
            };
            match attempt {
                Err(error) => return Some(Err(error)),
                Ok(wake_timer) => {
                    if wake_timer {
                        self.shared.timer_wake.notify_one();
                    }
                }
            }
            if self.buffered.is_empty() {
                // `notify_one` stores a permit if we are not waiting yet: no lost wake-up.
                self.notify.notified().await;
            }
        }
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        self.shared.state.lock().leave(self.group, self.member);
    }
}

/// One delivery from the embedded broker.
pub struct EmbeddedDelivery {
    shared: Arc<Shared>,
    ticket: DeliveryTicket,
}

impl std::fmt::Debug for EmbeddedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDelivery")
            .field("seq", &self.ticket.seq)
            .field("subject", &self.ticket.subject)
            .field("delivery_count", &self.ticket.delivery_count)
            .field("member", &self.ticket.member)
            .finish_non_exhaustive()
    }
}

impl EmbeddedDelivery {
    /// The member it was delivered to.
    pub fn member(&self) -> MemberId {
        self.ticket.member
    }

    fn settle(&self, settle: impl FnOnce(&mut BrokerCore, &DeliveryTicket) -> Effect) {
        let mut state = self.shared.state.lock();
        let effect = settle(&mut state.core, &self.ticket);
        state.after(self.ticket.group, effect);
    }
}

impl MessageHandle for EmbeddedDelivery {
    fn delivery_count(&self) -> u32 {
        self.ticket.delivery_count
    }

    async fn ack(&self) -> Result<(), BusError> {
        self.settle(|core, t| core.ack(t.group, t.seq));
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let t = &self.ticket;
        if delay.is_zero() {
            self.settle(|core, t| core.nak(t.group, t.seq, t.delivery_count));
            return Ok(());
        }
        let wake_timer = {
            let mut state = self.shared.state.lock();
            let effect = state.core.nak_delayed(t.group, t.seq, t.delivery_count);
            state.after(t.group, effect);
            effect != Effect::Ignored
                && state.core.is_delayed(t.group, t.seq, t.delivery_count)
                && state.arm_delay(Deadline {
                    at: Instant::now() + delay,
                    group: t.group,
                    seq: t.seq,
                    delivery_count: t.delivery_count,
                })
        };
        if wake_timer {
            self.shared.timer_wake.notify_one();
        }
        Ok(())
    }

    async fn term(&self, reason: &str) -> Result<(), BusError> {
        self.settle(|core, t| core.term(t.group, t.seq, t.delivery_count, reason));
        Ok(())
    }
}

impl Delivery for EmbeddedDelivery {
    fn subject(&self) -> &str {
        &self.ticket.subject
    }

    fn payload(&self) -> &[u8] {
        &self.ticket.payload
    }

    fn stream_seq(&self) -> u64 {
        self.ticket.seq
    }
}
