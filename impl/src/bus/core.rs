//! The embedded broker's core: a deterministic state machine of one stream and its queue
//! groups' durable consumers, with no clock, no task, no randomness and nothing asynchronous.
//!
//! Whoever drives it decides what happens next: [`super::embedded::EmbeddedBus`] drives it
//! from tokio tasks and timers; the conformance harness steps it one model action at a time
//! ("deliver message 3 to member 1", "the ack wait of that delivery expires", "member 1
//! crashes"). Both see the same rules, which are JetStream's as this project uses it:
//!
//! - The stream stores every published message at the next sequence number (1 for the first).
//!   A publish that carries a publish id already in the duplicate window is dropped.
//! - Each queue group has one durable consumer: it is created by the first subscriber, starts
//!   at the beginning of the stream (deliver-all), sees only its filter subjects, and outlives
//!   its members.
//! - Per group, each message the group listens to is, at any time, exactly one of
//!   [`Status::Pending`] (deliverable), [`Status::InFlight`] (held by one member),
//!   [`Status::Delayed`] (nak'ed with a delay, not yet deliverable), [`Status::Acked`] or
//!   [`Status::Dead`]. Acked and dead are final.
//! - Every delivery increments the message's delivery count. A delivery's nak, term, ack-wait
//!   expiry or nak-delay release names the delivery count it came from and is ignored when that
//!   is not the current delivery (a late signal from a delivery that was already redelivered).
//!   An ack is different: as in JetStream, which acknowledges by stream sequence, an ack from
//!   any delivery of the message acknowledges it.
//! - A message whose `max_deliver`-th delivery is nak'ed, expires or is held by a member that
//!   crashes is dead-lettered instead of becoming pending again; a terminated one is
//!   dead-lettered at once.
//!
//! The duplicate window is a count of recent publish ids (or unbounded), where JetStream's is
//! a duration: the core has no clock, and a count gives the same guarantee (a publisher that
//! retries within the window is deduplicated) without one.
//!
//! Cost: a publish appends to a `Vec`; a first delivery appends to the group's window (a
//! `VecDeque` of the statuses between the group's ack floor and its delivery cursor); an ack
//! flips a status and pops settled statuses off the window's front. Only redeliveries touch a
//! `BTreeSet`, and only publish ids and dead letters allocate.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::{DeadLetter, DeadLetterReason, PublishAck, QueueGroup};

/// A position in the stream: 1 for the first message stored.
pub type Seq = u64;

/// A queue group known to the core (its durable consumer). Handed out by
/// [`BrokerCore::group`], in creation order from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(u32);

impl GroupId {
    /// The group's index: 0 for the first group created, then 1, ... (for side tables).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A member of a queue group (one subscription). Handed out by [`BrokerCore::join`], in
/// joining order from 0, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u32);

impl MemberId {
    /// The member's index: 0 for the first member to join (of any group), then 1, ...
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// How many publish ids the core remembers to drop duplicate publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DuplicateWindow {
    /// The most recent `n` distinct publish ids (0: no deduplication).
    Recent(usize),
    /// Every publish id ever stored.
    Unbounded,
}

impl Default for DuplicateWindow {
    /// The 100,000 most recent ids: far more than a relay retries over, bounded in memory.
    fn default() -> Self {
        DuplicateWindow::Recent(100_000)
    }
}

/// Where one message stands with one queue group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Deliverable; delivered `deliveries` times so far (0: never).
    Pending {
        /// Deliveries so far.
        deliveries: u32,
    },
    /// Delivered to `member`, neither settled nor expired yet.
    InFlight {
        /// The member holding it.
        member: MemberId,
        /// Deliveries so far, this one included.
        deliveries: u32,
    },
    /// Nak'ed with a delay: deliverable again once the driver [`BrokerCore::release`]s it.
    Delayed {
        /// Deliveries so far.
        deliveries: u32,
    },
    /// Acknowledged: never delivered again.
    Acked,
    /// Dead-lettered (terminated, or out of deliveries): never delivered again.
    Dead,
}

/// What an operation did to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing: the signal came from an earlier delivery than the current one, or the message
    /// is already settled (or was never delivered).
    Ignored,
    /// The message's status changed.
    Changed {
        /// Its status now.
        status: Status,
        /// The member that held it and no longer does (its capacity is free again).
        released: Option<MemberId>,
    },
}

/// One delivery of one message to one member: what the member needs to handle it, and what
/// identifies the delivery when it is settled (group, seq, delivery count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryTicket {
    /// The member's queue group.
    pub group: GroupId,
    /// The message's stream sequence.
    pub seq: Seq,
    /// The member it is delivered to.
    pub member: MemberId,
    /// Deliveries of this message to the group, this one included (1 for the first).
    pub delivery_count: u32,
    /// The subject it was published on.
    pub subject: Arc<str>,
    /// The payload, as published.
    pub payload: Bytes,
}

/// A message in the stream, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredMessage<'a> {
    /// Its position.
    pub seq: Seq,
    /// The subject it was published on.
    pub subject: &'a str,
    /// Its payload.
    pub payload: &'a Bytes,
    /// The publish id it carried, if any.
    pub publish_id: Option<&'a str>,
}

/// Why the core refused an operation (a driver bug or a harness step that is not enabled).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A group must allow at least one delivery.
    #[error("max_deliver must be at least 1")]
    ZeroMaxDeliver,
    /// No such group.
    #[error("unknown queue group {0:?}")]
    UnknownGroup(GroupId),
    /// No such member, or it has left.
    #[error("unknown member {0:?} (never joined, or left)")]
    UnknownMember(MemberId),
    /// The member belongs to another group.
    #[error("member {member:?} is not in queue group {group:?}")]
    NotAMember {
        /// The group named.
        group: GroupId,
        /// The member named.
        member: MemberId,
    },
    /// The stream has no message at this sequence.
    #[error("the stream has no message {0}")]
    NoSuchMessage(Seq),
    /// The group does not listen to the message's subject.
    #[error("message {seq} is not on a subject queue group {group:?} listens to")]
    NotForGroup {
        /// The group.
        group: GroupId,
        /// The message.
        seq: Seq,
    },
    /// Only a pending message can be delivered.
    #[error("message {seq} is not pending: {status:?}")]
    NotPending {
        /// The message.
        seq: Seq,
        /// Where it stands.
        status: Status,
    },
}

/// Interned subject: the stream stores a small index instead of a string per message.
type SubjectId = u32;

struct Stored {
    subject: SubjectId,
    payload: Bytes,
    publish_id: Option<Arc<str>>,
}

/// The publish ids in the duplicate window.
struct Dedup {
    window: DuplicateWindow,
    ids: HashMap<Arc<str>, Seq>,
    /// Ids in the order stored, to forget the oldest (only for [`DuplicateWindow::Recent`]).
    order: VecDeque<Arc<str>>,
}

impl Dedup {
    fn is_duplicate(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    fn remember(&mut self, id: &Arc<str>, seq: Seq) {
        match self.window {
            DuplicateWindow::Recent(0) => {}
            DuplicateWindow::Recent(limit) => {
                self.ids.insert(Arc::clone(id), seq);
                self.order.push_back(Arc::clone(id));
                while self.order.len() > limit {
                    if let Some(oldest) = self.order.pop_front() {
                        self.ids.remove(&*oldest);
                    }
                }
            }
            DuplicateWindow::Unbounded => {
                self.ids.insert(Arc::clone(id), seq);
            }
        }
    }
}

/// A queue group's durable consumer.
///
/// Statuses are kept only for the window `base .. base + window.len()`: below `base` every
/// message the group listens to is acked or (listed in `dead`) dead; from `base +
/// window.len()` (the delivery cursor) on, every message it listens to is pending and never
/// delivered. `None` in the window marks a message on a subject the group ignores.
struct Group {
    name: QueueGroup,
    /// Subjects listened to; empty: every subject.
    filter: Vec<SubjectId>,
    max_deliver: u32,
    base: Seq,
    window: VecDeque<Option<Status>>,
    /// Window sequences whose status is `Pending` (redeliveries, or messages a harness skipped).
    ready: BTreeSet<Seq>,
    /// Every dead-lettered sequence (including those that left the window).
    dead: BTreeSet<Seq>,
}

impl Group {
    fn listens_to(&self, subject: SubjectId) -> bool {
        self.filter.is_empty() || self.filter.contains(&subject)
    }

    /// The first sequence never delivered to the group (nor skipped by it).
    fn cursor(&self) -> Seq {
        self.base + self.window.len() as Seq
    }

    fn slot(&self, seq: Seq) -> Option<&Option<Status>> {
        let offset = seq.checked_sub(self.base)?;
        self.window.get(usize::try_from(offset).ok()?)
    }

    fn slot_mut(&mut self, seq: Seq) -> Option<&mut Option<Status>> {
        let offset = seq.checked_sub(self.base)?;
        self.window.get_mut(usize::try_from(offset).ok()?)
    }

    /// Pops settled statuses (and ignored subjects) off the window's front: the ack floor moves.
    fn compact(&mut self) {
        while let Some(None | Some(Status::Acked | Status::Dead)) = self.window.front() {
            self.window.pop_front();
            self.base += 1;
        }
    }
}

struct Member {
    group: GroupId,
    /// Deliveries currently `InFlight` to this member.
    held: u32,
    joined: bool,
}

/// The embedded broker's state: the stream, the duplicate window, each queue group's durable
/// consumer, its members, and the dead letters. See the module docs for the rules.
pub struct BrokerCore {
    stream: Vec<Stored>,
    subjects: Vec<Arc<str>>,
    subject_ids: HashMap<Arc<str>, SubjectId>,
    dedup: Dedup,
    groups: Vec<Group>,
    group_ids: HashMap<QueueGroup, GroupId>,
    members: Vec<Member>,
    dead_letters: Vec<DeadLetter>,
}

impl Default for BrokerCore {
    fn default() -> Self {
        Self::new(DuplicateWindow::default())
    }
}

impl std::fmt::Debug for BrokerCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCore")
            .field("stream_len", &self.stream.len())
            .field("groups", &self.groups.len())
            .field("members", &self.members.len())
            .field("dead_letters", &self.dead_letters.len())
            .finish()
    }
}

impl BrokerCore {
    /// An empty broker deduplicating publish ids over `duplicate_window`.
    pub fn new(duplicate_window: DuplicateWindow) -> Self {
        Self {
            stream: Vec::new(),
            subjects: Vec::new(),
            subject_ids: HashMap::new(),
            dedup: Dedup {
                window: duplicate_window,
                ids: HashMap::new(),
                order: VecDeque::new(),
            },
            groups: Vec::new(),
            group_ids: HashMap::new(),
            members: Vec::new(),
            dead_letters: Vec::new(),
        }
    }

    fn intern(&mut self, subject: &str) -> SubjectId {
        // A handful of subjects in practice: comparing them beats hashing the name.
        if self.subjects.len() <= 8 {
            if let Some(index) = self.subjects.iter().position(|known| **known == *subject) {
                return index as SubjectId;
            }
        } else if let Some(&id) = self.subject_ids.get(subject) {
            return id;
        }
        let name: Arc<str> = Arc::from(subject);
        // More than 4 billion distinct subjects cannot be stored anyway.
        let id = self.subjects.len() as SubjectId;
        self.subjects.push(Arc::clone(&name));
        self.subject_ids.insert(name, id);
        id
    }

    // ----- publishing -----

    /// Stores a message, unless `publish_id` is in the duplicate window.
    pub fn publish(
        &mut self,
        subject: &str,
        payload: Bytes,
        publish_id: Option<&str>,
    ) -> PublishAck {
        if publish_id.is_some_and(|id| self.dedup.is_duplicate(id)) {
            return PublishAck::Duplicate;
        }
        let subject = self.intern(subject);
        let seq = self.stream.len() as Seq + 1;
        let publish_id = publish_id.map(Arc::<str>::from);
        if let Some(id) = &publish_id {
            self.dedup.remember(id, seq);
        }
        self.stream.push(Stored {
            subject,
            payload,
            publish_id,
        });
        PublishAck::Stored { seq }
    }

    // ----- groups and members -----

    /// The group named `name`, created (listening on `subjects`, every subject if empty, with
    /// `max_deliver`) if it does not exist. An existing group keeps the settings it was created
    /// with, as a durable consumer does.
    pub fn group<S: AsRef<str>>(
        &mut self,
        name: &str,
        subjects: &[S],
        max_deliver: u32,
    ) -> Result<GroupId, CoreError> {
        if let Some(&id) = self.group_ids.get(name) {
            return Ok(id);
        }
        if max_deliver == 0 {
            return Err(CoreError::ZeroMaxDeliver);
        }
        let mut filter: Vec<SubjectId> = subjects
            .iter()
            .map(|subject| self.intern(subject.as_ref()))
            .collect();
        filter.sort_unstable();
        filter.dedup();
        let id = GroupId(self.groups.len() as u32);
        let name: QueueGroup = Arc::from(name);
        self.groups.push(Group {
            name: Arc::clone(&name),
            filter,
            max_deliver,
            base: 1,
            window: VecDeque::new(),
            ready: BTreeSet::new(),
            dead: BTreeSet::new(),
        });
        self.group_ids.insert(name, id);
        Ok(id)
    }

    /// The group named `name`, if it exists.
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.group_ids.get(name).copied()
    }

    /// The group's name.
    pub fn group_name(&self, group: GroupId) -> Option<&QueueGroup> {
        self.groups.get(group.index()).map(|g| &g.name)
    }

    /// The group's `max_deliver`.
    pub fn max_deliver(&self, group: GroupId) -> Option<u32> {
        self.groups.get(group.index()).map(|g| g.max_deliver)
    }

    /// A new member of `group`.
    pub fn join(&mut self, group: GroupId) -> Result<MemberId, CoreError> {
        self.group_ref(group)?;
        let id = MemberId(self.members.len() as u32);
        self.members.push(Member {
            group,
            held: 0,
            joined: true,
        });
        Ok(id)
    }

    /// The member leaves its group for good: as [`BrokerCore::crash`], then it can no longer
    /// be delivered to. Returns how many messages it held.
    pub fn leave(&mut self, member: MemberId) -> Result<usize, CoreError> {
        let group = self.member_ref(member)?.group;
        let held = self.crash(group, member)?;
        if let Some(m) = self.members.get_mut(member.index()) {
            m.joined = false;
        }
        Ok(held)
    }

    /// The member crashed: every message it holds becomes pending again, or is dead-lettered
    /// if that was its `max_deliver`-th delivery. The member stays in the group (a restarted
    /// process may be delivered to again). Returns how many messages it held.
    pub fn crash(&mut self, group: GroupId, member: MemberId) -> Result<usize, CoreError> {
        self.check_member(group, member)?;
        let (base, held): (Seq, Vec<(Seq, u32)>) = {
            let g = self.group_ref(group)?;
            let held = g
                .window
                .iter()
                .enumerate()
                .filter_map(|(offset, slot)| match slot {
                    Some(Status::InFlight {
                        member: holder,
                        deliveries,
                    }) if *holder == member => Some((offset as Seq, *deliveries)),
                    _ => None,
                })
                .collect();
            (g.base, held)
        };
        let count = held.len();
        for (offset, deliveries) in held {
            self.give_back(group, base + offset, deliveries, false);
        }
        Ok(count)
    }

    /// Messages the member holds (delivered to it, not yet settled or expired).
    pub fn held(&self, member: MemberId) -> u32 {
        self.members.get(member.index()).map_or(0, |m| m.held)
    }

    fn group_ref(&self, group: GroupId) -> Result<&Group, CoreError> {
        self.groups
            .get(group.index())
            .ok_or(CoreError::UnknownGroup(group))
    }

    fn member_ref(&self, member: MemberId) -> Result<&Member, CoreError> {
        self.members
            .get(member.index())
            .filter(|m| m.joined)
            .ok_or(CoreError::UnknownMember(member))
    }

    fn check_member(&self, group: GroupId, member: MemberId) -> Result<(), CoreError> {
        self.group_ref(group)?;
        if self.member_ref(member)?.group != group {
            return Err(CoreError::NotAMember { group, member });
        }
        Ok(())
    }

    // ----- delivering -----

    /// The next message a driver should deliver to the group: the lowest pending sequence
    /// (redeliveries come first, as they are older than anything never delivered). Messages on
    /// subjects the group ignores are skipped for good on the way.
    pub fn next_pending(&mut self, group: GroupId) -> Option<Seq> {
        let stream_len = self.stream.len() as Seq;
        let g = self.groups.get_mut(group.index())?;
        if let Some(&seq) = g.ready.first() {
            return Some(seq);
        }
        let mut seq = g.cursor();
        while seq <= stream_len {
            let subject = self.stream[(seq - 1) as usize].subject;
            if g.listens_to(subject) {
                g.compact();
                return Some(seq);
            }
            g.window.push_back(None);
            seq += 1;
        }
        g.compact();
        None
    }

    /// Every message deliverable to the group now, in stream order.
    pub fn pending(&self, group: GroupId) -> Vec<Seq> {
        let Some(g) = self.groups.get(group.index()) else {
            return Vec::new();
        };
        let mut pending: Vec<Seq> = g.ready.iter().copied().collect();
        let from = g.cursor();
        pending.extend(
            (from..=self.stream.len() as Seq)
                .filter(|&seq| g.listens_to(self.stream[(seq - 1) as usize].subject)),
        );
        pending
    }

    /// Delivers pending message `seq` to `member` of `group` (any pending message, not only
    /// the next: a harness chooses).
    pub fn deliver(
        &mut self,
        group: GroupId,
        seq: Seq,
        member: MemberId,
    ) -> Result<DeliveryTicket, CoreError> {
        self.check_member(group, member)?;
        let stream_len = self.stream.len() as Seq;
        if seq == 0 || seq > stream_len {
            return Err(CoreError::NoSuchMessage(seq));
        }
        let stored_subject = self.stream[(seq - 1) as usize].subject;
        let g = &mut self.groups[group.index()];
        let deliveries;
        if seq < g.cursor() {
            let status = match g.slot(seq) {
                None => {
                    // Below the ack floor: settled, or ignored by the group.
                    if !g.listens_to(stored_subject) {
                        return Err(CoreError::NotForGroup { group, seq });
                    }
                    let status = if g.dead.contains(&seq) {
                        Status::Dead
                    } else {
                        Status::Acked
                    };
                    return Err(CoreError::NotPending { seq, status });
                }
                Some(None) => return Err(CoreError::NotForGroup { group, seq }),
                Some(Some(status)) => *status,
            };
            let Status::Pending { deliveries: before } = status else {
                return Err(CoreError::NotPending { seq, status });
            };
            deliveries = before + 1;
            if let Some(slot) = g.slot_mut(seq) {
                *slot = Some(Status::InFlight { member, deliveries });
            }
            g.ready.remove(&seq);
        } else {
            if !g.listens_to(stored_subject) {
                return Err(CoreError::NotForGroup { group, seq });
            }
            // Messages the harness skipped over stay pending, in the window.
            for skipped in g.cursor()..seq {
                let subject = self.stream[(skipped - 1) as usize].subject;
                if g.listens_to(subject) {
                    g.window.push_back(Some(Status::Pending { deliveries: 0 }));
                    g.ready.insert(skipped);
                } else {
                    g.window.push_back(None);
                }
            }
            deliveries = 1;
            g.window
                .push_back(Some(Status::InFlight { member, deliveries }));
            g.compact();
        }
        self.members[member.index()].held += 1;
        let stored = &self.stream[(seq - 1) as usize];
        Ok(DeliveryTicket {
            group,
            seq,
            member,
            delivery_count: deliveries,
            subject: Arc::clone(&self.subjects[stored.subject as usize]),
            payload: stored.payload.clone(),
        })
    }

    // ----- settling -----

    /// Acknowledges `seq` for `group`, from any delivery of it (JetStream acknowledges by
    /// stream sequence). Ignored if it is settled already or was never delivered.
    pub fn ack(&mut self, group: GroupId, seq: Seq) -> Effect {
        let Some(g) = self.groups.get_mut(group.index()) else {
            return Effect::Ignored;
        };
        let Some(slot) = g.slot_mut(seq) else {
            return Effect::Ignored;
        };
        let released = match *slot {
            Some(Status::InFlight { member, .. }) => Some(member),
            Some(Status::Pending { deliveries }) if deliveries > 0 => None,
            Some(Status::Delayed { .. }) => None,
            _ => return Effect::Ignored,
        };
        *slot = Some(Status::Acked);
        g.ready.remove(&seq);
        g.compact();
        if let Some(member) = released {
            self.release_member(member);
        }
        Effect::Changed {
            status: Status::Acked,
            released,
        }
    }

    /// Not now: the current delivery (`delivery_count`) of `seq` becomes pending at once, or
    /// is dead-lettered if it was the `max_deliver`-th. Ignored when stale.
    pub fn nak(&mut self, group: GroupId, seq: Seq, delivery_count: u32) -> Effect {
        match self.in_flight(group, seq, delivery_count) {
            Some(_) => self.give_back(group, seq, delivery_count, false),
            None => Effect::Ignored,
        }
    }

    /// Not now, and not before a delay the driver keeps: as [`BrokerCore::nak`], but the
    /// message becomes [`Status::Delayed`] until [`BrokerCore::release`]d.
    pub fn nak_delayed(&mut self, group: GroupId, seq: Seq, delivery_count: u32) -> Effect {
        match self.in_flight(group, seq, delivery_count) {
            Some(_) => self.give_back(group, seq, delivery_count, true),
            None => Effect::Ignored,
        }
    }

    /// The nak delay of delivery `delivery_count` of `seq` has elapsed: delayed becomes
    /// pending. Ignored when stale (acked meanwhile, or not delayed).
    pub fn release(&mut self, group: GroupId, seq: Seq, delivery_count: u32) -> Effect {
        let Some(g) = self.groups.get_mut(group.index()) else {
            return Effect::Ignored;
        };
        let Some(slot) = g.slot_mut(seq) else {
            return Effect::Ignored;
        };
        if *slot
            != Some(Status::Delayed {
                deliveries: delivery_count,
            })
        {
            return Effect::Ignored;
        }
        let status = Status::Pending {
            deliveries: delivery_count,
        };
        *slot = Some(status);
        g.ready.insert(seq);
        Effect::Changed {
            status,
            released: None,
        }
    }

    /// Never: the current delivery of `seq` is terminated and the message dead-lettered with
    /// `reason`. Ignored when stale.
    pub fn term(&mut self, group: GroupId, seq: Seq, delivery_count: u32, reason: &str) -> Effect {
        let Some(member) = self.in_flight(group, seq, delivery_count) else {
            return Effect::Ignored;
        };
        self.release_member(member);
        self.kill(group, seq, DeadLetterReason::Terminated(reason.to_owned()));
        Effect::Changed {
            status: Status::Dead,
            released: Some(member),
        }
    }

    /// The ack wait of delivery `delivery_count` of `seq` ran out: the message becomes pending
    /// again, or is dead-lettered if that was its `max_deliver`-th delivery. Ignored when stale
    /// (settled meanwhile, or already redelivered).
    pub fn expire(&mut self, group: GroupId, seq: Seq, delivery_count: u32) -> Effect {
        match self.in_flight(group, seq, delivery_count) {
            Some(_) => self.give_back(group, seq, delivery_count, false),
            None => Effect::Ignored,
        }
    }

    /// The member holding delivery `delivery_count` of `seq`, if that is the current delivery
    /// and it is in flight.
    fn in_flight(&self, group: GroupId, seq: Seq, delivery_count: u32) -> Option<MemberId> {
        match self.groups.get(group.index())?.slot(seq)? {
            Some(Status::InFlight { member, deliveries }) if *deliveries == delivery_count => {
                Some(*member)
            }
            _ => None,
        }
    }

    /// Takes an in-flight message back from its member: pending (or delayed) again, or dead
    /// after `max_deliver` deliveries.
    fn give_back(&mut self, group: GroupId, seq: Seq, deliveries: u32, delayed: bool) -> Effect {
        let Some(member) = self.in_flight(group, seq, deliveries) else {
            return Effect::Ignored;
        };
        self.release_member(member);
        if deliveries >= self.groups[group.index()].max_deliver {
            self.kill(group, seq, DeadLetterReason::MaxDeliveries(deliveries));
            return Effect::Changed {
                status: Status::Dead,
                released: Some(member),
            };
        }
        let g = &mut self.groups[group.index()];
        let status = if delayed {
            Status::Delayed { deliveries }
        } else {
            g.ready.insert(seq);
            Status::Pending { deliveries }
        };
        if let Some(slot) = g.slot_mut(seq) {
            *slot = Some(status);
        }
        Effect::Changed {
            status,
            released: Some(member),
        }
    }

    fn release_member(&mut self, member: MemberId) {
        if let Some(m) = self.members.get_mut(member.index()) {
            m.held = m.held.saturating_sub(1);
        }
    }

    fn kill(&mut self, group: GroupId, seq: Seq, reason: DeadLetterReason) {
        let stored = &self.stream[(seq - 1) as usize];
        let g = &mut self.groups[group.index()];
        if let Some(slot) = g.slot_mut(seq) {
            *slot = Some(Status::Dead);
        }
        g.ready.remove(&seq);
        g.dead.insert(seq);
        g.compact();
        self.dead_letters.push(DeadLetter {
            queue_group: Arc::clone(&g.name),
            subject: self.subjects[stored.subject as usize].to_string(),
            stream_seq: seq,
            payload: stored.payload.to_vec(),
            reason,
        });
    }

    // ----- inspection -----

    /// Where message `seq` stands with `group`; `None` if there is no such message or group,
    /// or the group does not listen to its subject.
    pub fn status(&self, group: GroupId, seq: Seq) -> Option<Status> {
        let g = self.groups.get(group.index())?;
        let stored = self
            .stream
            .get(usize::try_from(seq.checked_sub(1)?).ok()?)?;
        if !g.listens_to(stored.subject) {
            return None;
        }
        if seq < g.base {
            return Some(if g.dead.contains(&seq) {
                Status::Dead
            } else {
                Status::Acked
            });
        }
        match g.slot(seq) {
            Some(slot) => *slot,
            None => Some(Status::Pending { deliveries: 0 }),
        }
    }

    /// Whether delivery `delivery_count` of `seq` is the group's current, unsettled delivery
    /// (drivers use it to forget timers of settled deliveries).
    pub fn is_in_flight(&self, group: GroupId, seq: Seq, delivery_count: u32) -> bool {
        self.in_flight(group, seq, delivery_count).is_some()
    }

    /// Whether `seq` is delayed after delivery `delivery_count` (see [`Self::is_in_flight`]).
    pub fn is_delayed(&self, group: GroupId, seq: Seq, delivery_count: u32) -> bool {
        self.groups
            .get(group.index())
            .and_then(|g| g.slot(seq))
            .is_some_and(|slot| {
                *slot
                    == Some(Status::Delayed {
                        deliveries: delivery_count,
                    })
            })
    }

    /// Whether the group listens to message `seq`'s subject.
    pub fn listens_to(&self, group: GroupId, seq: Seq) -> bool {
        let Some(g) = self.groups.get(group.index()) else {
            return false;
        };
        seq.checked_sub(1)
            .and_then(|index| self.stream.get(usize::try_from(index).ok()?))
            .is_some_and(|stored| g.listens_to(stored.subject))
    }

    /// The groups, in creation order.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + use<> {
        (0..self.groups.len() as u32).map(GroupId)
    }

    /// Everything dead-lettered so far, oldest first.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }

    /// Messages stored.
    pub fn stream_len(&self) -> u64 {
        self.stream.len() as u64
    }

    /// Message `seq`, as stored.
    pub fn message(&self, seq: Seq) -> Option<StoredMessage<'_>> {
        let stored = self
            .stream
            .get(usize::try_from(seq.checked_sub(1)?).ok()?)?;
        Some(StoredMessage {
            seq,
            subject: &self.subjects[stored.subject as usize],
            payload: &stored.payload,
            publish_id: stored.publish_id.as_deref(),
        })
    }

    /// Every stored message, in stream order.
    pub fn messages(&self) -> impl Iterator<Item = StoredMessage<'_>> + '_ {
        (1..=self.stream.len() as Seq).filter_map(|seq| self.message(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: &str = "ticket:created";
    const UPDATED: &str = "ticket:updated";
    const ORDER: &str = "order:created";

    fn core() -> BrokerCore {
        BrokerCore::new(DuplicateWindow::Unbounded)
    }

    fn publish(core: &mut BrokerCore, subject: &str, body: &str) -> Seq {
        match core.publish(subject, Bytes::copy_from_slice(body.as_bytes()), None) {
            PublishAck::Stored { seq } => seq,
            PublishAck::Duplicate => panic!("no publish id, cannot be a duplicate"),
        }
    }

    /// A core with `n` messages on `ticket:created` and group "orders" (max_deliver 3) with
    /// two members.
    fn setup(n: usize) -> (BrokerCore, GroupId, MemberId, MemberId) {
        let mut core = core();
        for i in 0..n {
            publish(&mut core, CREATED, &format!("m{i}"));
        }
        let group = core.group("orders", &[CREATED, UPDATED], 3).unwrap();
        let a = core.join(group).unwrap();
        let b = core.join(group).unwrap();
        (core, group, a, b)
    }

    #[test]
    fn publish_numbers_messages_from_one_and_stores_them() {
        let mut core = core();
        assert_eq!(publish(&mut core, CREATED, "a"), 1);
        assert_eq!(publish(&mut core, ORDER, "b"), 2);
        let second = core.message(2).unwrap();
        assert_eq!(second.subject, ORDER);
        assert_eq!(&second.payload[..], b"b");
        assert_eq!(core.stream_len(), 2);
        assert!(core.message(0).is_none() && core.message(3).is_none());
    }

    #[test]
    fn a_publish_id_in_the_window_is_dropped() {
        let mut core = core();
        let ack = core.publish(CREATED, Bytes::from_static(b"a"), Some("id-1"));
        assert_eq!(ack, PublishAck::Stored { seq: 1 });
        let again = core.publish(CREATED, Bytes::from_static(b"a"), Some("id-1"));
        assert_eq!(again, PublishAck::Duplicate);
        let other = core.publish(CREATED, Bytes::from_static(b"b"), Some("id-2"));
        assert_eq!(other, PublishAck::Stored { seq: 2 });
        assert_eq!(core.message(1).unwrap().publish_id, Some("id-1"));
        assert_eq!(core.stream_len(), 2);
    }

    #[test]
    fn a_count_window_forgets_the_oldest_ids() {
        let mut core = BrokerCore::new(DuplicateWindow::Recent(2));
        for id in ["a", "b", "c"] {
            assert!(matches!(
                core.publish(CREATED, Bytes::new(), Some(id)),
                PublishAck::Stored { .. }
            ));
        }
        // "a" fell out of the window of 2; "b" and "c" are still in it.
        assert!(matches!(
            core.publish(CREATED, Bytes::new(), Some("a")),
            PublishAck::Stored { .. }
        ));
        assert_eq!(
            core.publish(CREATED, Bytes::new(), Some("c")),
            PublishAck::Duplicate
        );
        let mut none = BrokerCore::new(DuplicateWindow::Recent(0));
        none.publish(CREATED, Bytes::new(), Some("a"));
        assert!(matches!(
            none.publish(CREATED, Bytes::new(), Some("a")),
            PublishAck::Stored { .. }
        ));
    }

    #[test]
    fn a_new_group_delivers_everything_from_the_start_of_the_stream() {
        let (mut core, group, a, _) = setup(3);
        assert_eq!(core.pending(group), vec![1, 2, 3]);
        assert_eq!(core.next_pending(group), Some(1));
        let ticket = core.deliver(group, 1, a).unwrap();
        assert_eq!(
            (ticket.seq, ticket.delivery_count, ticket.member),
            (1, 1, a)
        );
        assert_eq!(&*ticket.subject, CREATED);
        assert_eq!(&ticket.payload[..], b"m0");
        assert_eq!(
            core.status(group, 1),
            Some(Status::InFlight {
                member: a,
                deliveries: 1
            })
        );
        assert_eq!(core.pending(group), vec![2, 3]);
        assert_eq!(core.held(a), 1);
    }

    #[test]
    fn a_group_never_sees_subjects_it_does_not_listen_to() {
        let mut core = core();
        publish(&mut core, ORDER, "x");
        publish(&mut core, CREATED, "y");
        publish(&mut core, ORDER, "z");
        let group = core.group("orders", &[CREATED], 3).unwrap();
        let a = core.join(group).unwrap();
        assert_eq!(core.pending(group), vec![2]);
        assert_eq!(core.next_pending(group), Some(2));
        assert_eq!(
            core.deliver(group, 1, a),
            Err(CoreError::NotForGroup { group, seq: 1 })
        );
        core.deliver(group, 2, a).unwrap();
        assert_eq!(core.next_pending(group), None);
        assert_eq!(core.status(group, 3), None);
        let all = core.group("all", &[] as &[&str], 3).unwrap();
        assert_eq!(core.pending(all), vec![1, 2, 3]);
    }

    #[test]
    fn any_pending_message_can_be_delivered_and_skipped_ones_stay_pending() {
        let (mut core, group, a, b) = setup(4);
        core.deliver(group, 3, a).unwrap();
        assert_eq!(core.pending(group), vec![1, 2, 4]);
        core.deliver(group, 1, b).unwrap();
        assert_eq!(core.pending(group), vec![2, 4]);
        assert_eq!(core.next_pending(group), Some(2));
        let err = core.deliver(group, 3, b).unwrap_err();
        assert!(matches!(err, CoreError::NotPending { seq: 3, .. }));
        assert_eq!(core.deliver(group, 9, b), Err(CoreError::NoSuchMessage(9)));
    }

    #[test]
    fn an_ack_from_any_delivery_acknowledges_the_message() {
        let (mut core, group, a, b) = setup(2);
        core.deliver(group, 1, a).unwrap();
        assert_eq!(
            core.ack(group, 1),
            Effect::Changed {
                status: Status::Acked,
                released: Some(a)
            }
        );
        assert_eq!(core.held(a), 0);
        assert_eq!(core.ack(group, 1), Effect::Ignored, "already acked");
        // A late ack from the first delivery, after the message was redelivered, still acks.
        core.deliver(group, 2, a).unwrap();
        core.expire(group, 2, 1);
        core.deliver(group, 2, b).unwrap();
        assert_eq!(
            core.ack(group, 2),
            Effect::Changed {
                status: Status::Acked,
                released: Some(b)
            }
        );
        assert_eq!(core.status(group, 2), Some(Status::Acked));
        assert!(core.pending(group).is_empty());
        assert_eq!(core.ack(group, 7), Effect::Ignored, "never delivered");
    }

    #[test]
    fn a_late_ack_after_expiry_acknowledges_the_pending_message() {
        let (mut core, group, a, _) = setup(1);
        core.deliver(group, 1, a).unwrap();
        core.expire(group, 1, 1);
        assert_eq!(core.pending(group), vec![1]);
        assert!(matches!(core.ack(group, 1), Effect::Changed { .. }));
        assert!(core.pending(group).is_empty());
    }

    #[test]
    fn a_nak_makes_the_current_delivery_pending_and_counts_it() {
        let (mut core, group, a, b) = setup(1);
        core.deliver(group, 1, a).unwrap();
        assert_eq!(
            core.nak(group, 1, 1),
            Effect::Changed {
                status: Status::Pending { deliveries: 1 },
                released: Some(a)
            }
        );
        let again = core.deliver(group, 1, b).unwrap();
        assert_eq!(again.delivery_count, 2);
        assert_eq!(core.nak(group, 1, 1), Effect::Ignored, "stale nak");
        assert_eq!(
            core.status(group, 1),
            Some(Status::InFlight {
                member: b,
                deliveries: 2
            })
        );
    }

    #[test]
    fn a_delayed_nak_waits_for_its_release() {
        let (mut core, group, a, _) = setup(1);
        core.deliver(group, 1, a).unwrap();
        assert_eq!(
            core.nak_delayed(group, 1, 1),
            Effect::Changed {
                status: Status::Delayed { deliveries: 1 },
                released: Some(a)
            }
        );
        assert!(core.pending(group).is_empty());
        assert_eq!(core.next_pending(group), None);
        assert_eq!(core.expire(group, 1, 1), Effect::Ignored, "not in flight");
        assert_eq!(core.release(group, 1, 2), Effect::Ignored, "stale release");
        assert_eq!(
            core.release(group, 1, 1),
            Effect::Changed {
                status: Status::Pending { deliveries: 1 },
                released: None
            }
        );
        assert_eq!(core.pending(group), vec![1]);
    }

    #[test]
    fn a_term_dead_letters_at_once_with_its_reason() {
        let (mut core, group, a, _) = setup(2);
        core.deliver(group, 1, a).unwrap();
        assert_eq!(core.term(group, 1, 2, "stale"), Effect::Ignored);
        assert_eq!(
            core.term(group, 1, 1, "bad json"),
            Effect::Changed {
                status: Status::Dead,
                released: Some(a)
            }
        );
        assert_eq!(core.status(group, 1), Some(Status::Dead));
        let dead = &core.dead_letters()[0];
        assert_eq!(dead.stream_seq, 1);
        assert_eq!(&*dead.queue_group, "orders");
        assert_eq!(dead.subject, CREATED);
        assert_eq!(dead.payload, b"m0");
        assert_eq!(
            dead.reason,
            DeadLetterReason::Terminated("bad json".to_owned())
        );
        assert_eq!(core.pending(group), vec![2]);
        assert_eq!(core.ack(group, 1), Effect::Ignored, "dead is final");
    }

    #[test]
    fn expiry_redelivers_until_max_deliver_then_dead_letters() {
        let (mut core, group, a, b) = setup(1);
        for delivery in 1..=3 {
            let member = if delivery % 2 == 1 { a } else { b };
            let ticket = core.deliver(group, 1, member).unwrap();
            assert_eq!(ticket.delivery_count, delivery);
            assert_eq!(core.expire(group, 1, delivery - 1), Effect::Ignored);
            let effect = core.expire(group, 1, delivery);
            let expected = if delivery < 3 {
                Status::Pending {
                    deliveries: delivery,
                }
            } else {
                Status::Dead
            };
            assert_eq!(
                effect,
                Effect::Changed {
                    status: expected,
                    released: Some(member)
                }
            );
        }
        assert_eq!(
            core.dead_letters()[0].reason,
            DeadLetterReason::MaxDeliveries(3)
        );
        assert!(core.pending(group).is_empty());
        assert_eq!(core.held(a) + core.held(b), 0);
    }

    #[test]
    fn a_nak_of_the_last_allowed_delivery_dead_letters() {
        let (mut core, group, a, _) = setup(1);
        for delivery in 1..=3 {
            core.deliver(group, 1, a).unwrap();
            core.nak(group, 1, delivery);
        }
        assert_eq!(core.status(group, 1), Some(Status::Dead));
        assert_eq!(core.dead_letters().len(), 1);
    }

    #[test]
    fn a_crash_returns_what_the_member_held_and_nothing_else() {
        let (mut core, group, a, b) = setup(4);
        core.deliver(group, 1, a).unwrap();
        core.deliver(group, 2, b).unwrap();
        core.deliver(group, 3, a).unwrap();
        assert_eq!(core.crash(group, a), Ok(2));
        assert_eq!(core.held(a), 0);
        assert_eq!(core.pending(group), vec![1, 3, 4]);
        assert_eq!(
            core.status(group, 2),
            Some(Status::InFlight {
                member: b,
                deliveries: 1
            })
        );
        // The crashed member's late signals are stale; its late ack still acknowledges.
        assert_eq!(core.nak(group, 1, 1), Effect::Ignored);
        assert!(matches!(core.ack(group, 3), Effect::Changed { .. }));
        // It stays in the group and can be delivered to again.
        assert_eq!(core.deliver(group, 1, a).unwrap().delivery_count, 2);
    }

    #[test]
    fn a_crash_on_the_last_allowed_delivery_dead_letters() {
        let (mut core, group, a, _) = setup(1);
        for delivery in 1..=2 {
            core.deliver(group, 1, a).unwrap();
            core.expire(group, 1, delivery);
        }
        core.deliver(group, 1, a).unwrap();
        assert_eq!(core.crash(group, a), Ok(1));
        assert_eq!(core.status(group, 1), Some(Status::Dead));
        assert_eq!(
            core.dead_letters()[0].reason,
            DeadLetterReason::MaxDeliveries(3)
        );
    }

    #[test]
    fn a_member_that_left_cannot_be_delivered_to_but_the_group_lives_on() {
        let (mut core, group, a, _) = setup(2);
        core.deliver(group, 1, a).unwrap();
        core.ack(group, 1);
        core.deliver(group, 2, a).unwrap();
        assert_eq!(core.leave(a), Ok(1));
        assert_eq!(core.deliver(group, 2, a), Err(CoreError::UnknownMember(a)));
        // The durable group remembers its acks: a new member resumes where the old one left.
        let c = core.join(group).unwrap();
        assert_eq!(core.pending(group), vec![2]);
        assert_eq!(core.deliver(group, 2, c).unwrap().delivery_count, 2);
    }

    #[test]
    fn groups_are_independent_and_keep_their_first_settings() {
        let (mut core, orders, a, _) = setup(2);
        let again = core.group("orders", &[ORDER], 9).unwrap();
        assert_eq!(again, orders);
        assert_eq!(core.max_deliver(orders), Some(3));
        let tickets = core.group("tickets", &[CREATED], 5).unwrap();
        let t = core.join(tickets).unwrap();
        core.deliver(orders, 1, a).unwrap();
        core.ack(orders, 1);
        assert_eq!(core.pending(tickets), vec![1, 2]);
        assert_eq!(
            core.deliver(tickets, 1, a),
            Err(CoreError::NotAMember {
                group: tickets,
                member: a
            })
        );
        core.deliver(tickets, 1, t).unwrap();
        assert_eq!(
            core.group("x", &[CREATED], 0),
            Err(CoreError::ZeroMaxDeliver)
        );
    }

    #[test]
    fn the_window_shrinks_as_the_ack_floor_moves() {
        let (mut core, group, a, _) = setup(100);
        for seq in 1..=100 {
            let next = core.next_pending(group).unwrap();
            assert_eq!(next, seq);
            core.deliver(group, next, a).unwrap();
            core.ack(group, next);
        }
        let g = &core.groups[group.index()];
        assert!(g.window.is_empty(), "every message acked: nothing kept");
        assert_eq!(g.base, 101);
        assert_eq!(core.status(group, 50), Some(Status::Acked));
        assert_eq!(core.next_pending(group), None);
    }
}
