//! The embedded broker's clockless state machine: one stream and its queue groups' durable
//! consumers, with no clock, no task, no randomness and nothing asynchronous.
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
//! - Retention (with [`Retention::Interest`], the embedded bus's): a message is released (its
//!   payload dropped, never delivered again) once every queue group that listens to its
//!   subject has settled it (acked or dead-lettered); a message no group listens to is kept
//!   until one does. A group created later starts at the oldest message still held, as a
//!   JetStream consumer created on an interest stream does. Dead letters are kept up to
//!   `dead_letters_max`, oldest dropped first and counted. [`Retention::Everything`] (the
//!   conformance harness's) keeps every message, so every status stays readable.
//!
//! Cost: a publish inserts into a `BTreeMap` (and its settling removes it); a first delivery appends to the group's window (a
//! `VecDeque` of the statuses between the group's ack floor and its delivery cursor); an ack
//! flips a status and pops settled statuses off the window's front. Only redeliveries touch a
//! `BTreeSet`, and only publish ids and dead letters allocate.

//!
//! The invariant: per queue group, every message it listens to has exactly one status at any
//! time, and acked and dead are final; a signal from a delivery that is not the current one
//! changes nothing (except an ack, which acknowledges by stream sequence).
//!
//! # Layout
//!
//! - this file: the vocabulary (ids, [`Status`], [`Effect`], [`DeliveryTicket`],
//!   [`CoreError`]) and [`BrokerCore`]'s state;
//! - `stream`: the stream, its interned subjects and the duplicate window (publishing);
//! - `groups`: the queue groups' durable consumers and their members (joining, leaving,
//!   crashing);
//! - `delivery`: a message's life with one group: delivered, settled (ack, nak, term),
//!   expired, released from a nak delay, dead-lettered; and where it stands;
//! - `retention`: releasing settled messages, and the dead letters' cap;
//! - `tests`: the unit tests of the rules above.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::{DeadLetter, QueueGroup};

mod delivery;
mod groups;
mod retention;
mod stream;
#[cfg(test)]
mod tests;

use groups::{Group, Member};
pub use retention::{DEAD_LETTERS_MAX, Retention};
use stream::{Dedup, Stored, SubjectId};

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

/// The embedded broker's state: the stream, the duplicate window, each queue group's durable
/// consumer, its members, and the dead letters. See the module docs for the rules. A clone is
/// an independent copy of all of it (the harness's snapshots of a world).
#[derive(Clone)]
pub struct BrokerCore {
    /// The messages not released, by sequence.
    stream: BTreeMap<Seq, Stored>,
    /// The last sequence stored (0 before the first publish).
    last: Seq,
    retention: Retention,
    subjects: Vec<Arc<str>>,
    subject_ids: HashMap<Arc<str>, SubjectId>,
    dedup: Dedup,
    groups: Vec<Group>,
    group_ids: HashMap<QueueGroup, GroupId>,
    members: Vec<Member>,
    dead_letters: VecDeque<DeadLetter>,
    dead_letters_max: usize,
    dead_letters_dropped: u64,
}

impl Default for BrokerCore {
    fn default() -> Self {
        Self::new(DuplicateWindow::default())
    }
}

impl std::fmt::Debug for BrokerCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCore")
            .field("stream_len", &self.stream_len())
            .field("held", &self.stream.len())
            .field("groups", &self.groups.len())
            .field("members", &self.members.len())
            .field("dead_letters", &self.dead_letters.len())
            .finish()
    }
}

impl BrokerCore {
    /// An empty broker deduplicating publish ids over `duplicate_window`, keeping every
    /// message ([`Retention::Everything`]) and up to [`DEAD_LETTERS_MAX`] dead letters.
    pub fn new(duplicate_window: DuplicateWindow) -> Self {
        Self::with_retention(duplicate_window, Retention::Everything, DEAD_LETTERS_MAX)
    }

    /// An empty broker deduplicating publish ids over `duplicate_window`, keeping messages as
    /// `retention` says and at most `dead_letters_max` dead letters (the oldest dropped first).
    pub fn with_retention(
        duplicate_window: DuplicateWindow,
        retention: Retention,
        dead_letters_max: usize,
    ) -> Self {
        Self {
            stream: BTreeMap::new(),
            last: 0,
            retention,
            subjects: Vec::new(),
            subject_ids: HashMap::new(),
            dedup: Dedup::new(duplicate_window),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            members: Vec::new(),
            dead_letters: VecDeque::new(),
            dead_letters_max,
            dead_letters_dropped: 0,
        }
    }
}
