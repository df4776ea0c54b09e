//! The stream: every published message at the next sequence number, its subject interned,
//! and the duplicate window of publish ids.
//!
//! The stream holds only the messages not released (see `retention`), by sequence: a
//! released message leaves at once, whatever older message is still held, so a slow message
//! never makes the stream keep what came after it.
//!
//! The invariant: sequence numbers start at 1 and never skip or repeat; a publish whose
//! publish id is in the duplicate window stores nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::{BrokerCore, DuplicateWindow, Seq, StoredMessage};
use crate::bus::PublishAck;

/// Interned subject: the stream stores a small index instead of a string per message.
pub(super) type SubjectId = u32;

/// A message as the stream keeps it.
#[derive(Clone)]
pub(super) struct Stored {
    pub(super) subject: SubjectId,
    pub(super) payload: Bytes,
    pub(super) publish_id: Option<Arc<str>>,
    /// Queue groups that listen to it and have not settled it yet.
    pub(super) interest: u32,
}

/// The publish ids in the duplicate window.
#[derive(Clone)]
pub(super) struct Dedup {
    window: DuplicateWindow,
    /// Hashed with foldhash (randomly seeded): SipHash on the three look-ups per publish was a
    /// tenth of the embedded bus's time, and the ids are the services' own, not a client's.
    pub(super) ids: HashMap<Arc<str>, Seq, foldhash::fast::RandomState>,
    /// Ids in the order stored, to forget the oldest (only for [`DuplicateWindow::Recent`]).
    order: VecDeque<Arc<str>>,
    /// Whether `ids` has been sized for twice the window (done once, as the window first fills).
    sized_for_window: bool,
}

impl Dedup {
    pub(super) fn new(window: DuplicateWindow) -> Self {
        Self {
            window,
            ids: HashMap::default(),
            order: VecDeque::new(),
            sized_for_window: false,
        }
    }

    fn is_duplicate(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    fn remember(&mut self, id: &Arc<str>, seq: Seq) {
        match self.window {
            DuplicateWindow::Recent(0) => {}
            DuplicateWindow::Recent(limit) => {
                self.ids.insert(Arc::clone(id), seq);
                self.order.push_back(Arc::clone(id));
                if self.order.len() > limit && !self.sized_for_window {
                    // From the first eviction on, every insert pairs with a removal, which
                    // may leave a tombstone. A hash map clears tombstones by rehashing in
                    // place when it is at most half full, by doubling otherwise. Sized once
                    // for twice the window as it first fills, it never grows again: the
                    // window's memory is fixed from then on. (Deciding by `capacity()` would
                    // not do: tombstones lower it, and reserving then doubles the map.)
                    self.ids.reserve(2 * limit - self.ids.len());
                    self.sized_for_window = true;
                }
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

impl BrokerCore {
    pub(super) fn intern(&mut self, subject: &str) -> SubjectId {
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
        let seq = self.last + 1;
        self.last = seq;
        let publish_id = publish_id.map(Arc::<str>::from);
        if let Some(id) = &publish_id {
            self.dedup.remember(id, seq);
        }
        let interest = self.groups.iter().filter(|g| g.listens_to(subject)).count() as u32;
        self.stream.insert(
            seq,
            Stored {
                subject,
                payload,
                publish_id,
                interest,
            },
        );
        PublishAck::Stored { seq }
    }

    /// The last sequence stored (0 before the first publish): messages published so far,
    /// released ones included.
    pub fn stream_len(&self) -> u64 {
        self.last
    }

    /// The oldest sequence the stream holds (the next one to be stored if it holds none).
    pub(super) fn first_held(&self) -> Seq {
        self.stream.keys().next().copied().unwrap_or(self.last + 1)
    }

    /// The message at `seq` as the stream keeps it; `None` if it was never stored or was
    /// released.
    pub(super) fn stored(&self, seq: Seq) -> Option<&Stored> {
        self.stream.get(&seq)
    }

    pub(super) fn stored_mut(&mut self, seq: Seq) -> Option<&mut Stored> {
        self.stream.get_mut(&seq)
    }

    /// Message `seq`, as stored; `None` if there is none or it was released.
    pub fn message(&self, seq: Seq) -> Option<StoredMessage<'_>> {
        let stored = self.stored(seq)?;
        Some(StoredMessage {
            seq,
            subject: &self.subjects[stored.subject as usize],
            payload: &stored.payload,
            publish_id: stored.publish_id.as_deref(),
        })
    }

    /// Every message the stream holds (not released), in stream order.
    pub fn messages(&self) -> impl Iterator<Item = StoredMessage<'_>> + '_ {
        self.stream.keys().filter_map(|&seq| self.message(seq))
    }

    /// Messages the stream holds now (payloads not released), whatever was published before.
    pub fn retained(&self) -> usize {
        self.stream.len()
    }
}
