//! What the broker keeps: releasing messages every listening group has settled, and the
//! dead letters' cap.
//!
//! Each stored message counts the queue groups that listen to its subject and have not
//! settled it yet (its interest). A group settling it (ack, or dead-lettered) takes one off;
//! at zero, under [`Retention::Interest`], the message is released: it leaves the stream at
//! once, payload and all, whatever older message is still held. A message no group
//! listens to never reaches zero by settling, so it is kept until a group that listens is
//! created and settles it (a group created later delivers from the oldest message held).
//!
//! The invariant: a message is released only when no group that listens to it can ever be
//! delivered it again, so releasing never changes what a member receives; the dead letters
//! never number more than their cap, and every one dropped is counted.

use super::{BrokerCore, GroupId, Seq};
use crate::bus::DeadLetter;

/// The dead letters kept by default: enough to inspect a burst of poison messages, bounded
/// (about the payload's size plus 100 bytes each).
pub const DEAD_LETTERS_MAX: usize = 10_000;

/// Which messages the broker keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// Until every group that listens to the message has settled it (JetStream's interest
    /// retention): memory follows what is outstanding, not what was ever published.
    #[default]
    Interest,
    /// Every message, forever: every status stays readable (the conformance harness compares
    /// each message's status with the model's).
    Everything,
}

impl BrokerCore {
    /// A new group listens from the oldest message held: it takes an interest in each one it
    /// listens to that is not released yet. Returns the sequence it starts at.
    pub(super) fn claim_retained(&mut self, group: GroupId) -> Seq {
        let g = &self.groups[group.index()];
        for stored in self.stream.values_mut() {
            if g.listens_to(stored.subject) {
                stored.interest += 1;
            }
        }
        self.first_held()
    }

    /// `group` settled `seq` (acked it, or it died): one interest less; released at none.
    pub(super) fn settled(&mut self, seq: Seq) {
        let Retention::Interest = self.retention else {
            return;
        };
        let Some(stored) = self.stored_mut(seq) else {
            return;
        };
        stored.interest = stored.interest.saturating_sub(1);
        if stored.interest == 0 {
            self.stream.remove(&seq);
        }
    }

    /// Keeps `letter`, dropping (and counting) the oldest dead letter beyond the cap. A
    /// dropped letter's sequence is forgotten by its group too, so nothing grows with it.
    pub(super) fn keep_dead_letter(&mut self, letter: DeadLetter) {
        self.dead_letters.push_back(letter);
        while self.dead_letters.len() > self.dead_letters_max {
            let Some(dropped) = self.dead_letters.pop_front() else {
                break;
            };
            self.dead_letters_dropped += 1;
            crate::metrics::dead_letter_dropped();
            if let Some(&group) = self.group_ids.get(&dropped.queue_group) {
                self.groups[group.index()].dead.remove(&dropped.stream_seq);
            }
        }
    }

    /// Dead letters dropped because the list was full (the count a metrics exporter reads).
    pub fn dead_letters_dropped(&self) -> u64 {
        self.dead_letters_dropped
    }

    /// The most dead letters kept.
    pub fn dead_letters_max(&self) -> usize {
        self.dead_letters_max
    }

    /// Removes the dead letter of `seq` (after it was replayed); true if there was one.
    pub fn remove_dead_letter(&mut self, seq: Seq) -> bool {
        let before = self.dead_letters.len();
        self.dead_letters.retain(|letter| letter.stream_seq != seq);
        before != self.dead_letters.len()
    }
}
