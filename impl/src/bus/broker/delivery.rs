//! A message's life with one queue group: delivered to a member, then acknowledged, nak'ed
//! (at once or after a delay the driver keeps), terminated, expired, or given back by a
//! member that crashed; dead-lettered after its last allowed delivery; and where it stands.
//!
//! The invariant: a nak, term, expiry or release names the delivery it came from and changes
//! nothing unless that is the message's current delivery; an ack from any delivery
//! acknowledges (JetStream acknowledges by stream sequence); acked and dead are final.

use std::sync::Arc;

use super::groups::Group;
use super::stream::SubjectId;
use super::{BrokerCore, CoreError, DeliveryTicket, Effect, GroupId, MemberId, Seq, Status};
use crate::bus::{DeadLetter, DeadLetterReason};

impl BrokerCore {
    /// The next message a driver should deliver to the group: the lowest pending sequence
    /// (redeliveries come first, as they are older than anything never delivered). Messages on
    /// subjects the group ignores are skipped for good on the way.
    pub fn next_pending(&mut self, group: GroupId) -> Option<Seq> {
        let stream_len = self.stream_len();
        let first = self.first_held();
        let g = self.groups.get_mut(group.index())?;
        if let Some(&seq) = g.ready.first() {
            return Some(seq);
        }
        g.compact();
        if g.cursor() < first && g.window.is_empty() {
            // Everything below `first` was released, so none of it is the group's to deliver
            // (what it listened to there, it settled).
            g.base = first;
        }
        let mut seq = g.cursor();
        while seq <= stream_len {
            if let Some(stored) = self.stream.get(&seq)
                && g.listens_to(stored.subject)
            {
                g.compact();
                return Some(seq);
            }
            g.window.push_back(None);
            seq += 1;
        }
        g.compact();
        None
    }

    /// Whether message `seq` is held, not released, and on a subject `group` listens to.
    fn deliverable_to(&self, group: GroupId, seq: Seq) -> bool {
        self.stored(seq)
            .is_some_and(|stored| self.groups[group.index()].listens_to(stored.subject))
    }

    /// Every message deliverable to the group now, in stream order.
    pub fn pending(&self, group: GroupId) -> Vec<Seq> {
        let Some(g) = self.groups.get(group.index()) else {
            return Vec::new();
        };
        let mut pending: Vec<Seq> = g.ready.iter().copied().collect();
        let from = g.cursor().max(self.first_held());
        pending.extend((from..=self.stream_len()).filter(|&seq| self.deliverable_to(group, seq)));
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
        let Some(stored) = self.stored(seq) else {
            return Err(CoreError::NoSuchMessage(seq));
        };
        let stored_subject = stored.subject;
        let deliverable: Vec<bool> = {
            // Which messages from the group's cursor up to `seq` it would take (below).
            let cursor = self.groups[group.index()].cursor().max(self.first_held());
            (cursor..seq)
                .map(|skipped| self.deliverable_to(group, skipped))
                .collect()
        };
        let g = &mut self.groups[group.index()];
        let deliveries = if seq < g.cursor() {
            g.deliver_again(group, seq, member, stored_subject)?
        } else {
            g.deliver_first(group, seq, member, stored_subject, deliverable)?
        };
        self.members[member.index()].held += 1;
        let Some(stored) = self.stream.get(&seq) else {
            return Err(CoreError::NoSuchMessage(seq));
        };
        Ok(DeliveryTicket {
            group,
            seq,
            member,
            delivery_count: deliveries,
            subject: Arc::clone(&self.subjects[stored.subject as usize]),
            payload: stored.payload.clone(),
        })
    }

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
        self.settled(seq);
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
    pub(super) fn in_flight(
        &self,
        group: GroupId,
        seq: Seq,
        delivery_count: u32,
    ) -> Option<MemberId> {
        match self.groups.get(group.index())?.slot(seq)? {
            Some(Status::InFlight { member, deliveries }) if *deliveries == delivery_count => {
                Some(*member)
            }
            _ => None,
        }
    }

    /// Takes an in-flight message back from its member: pending (or delayed) again, or dead
    /// after `max_deliver` deliveries.
    pub(super) fn give_back(
        &mut self,
        group: GroupId,
        seq: Seq,
        deliveries: u32,
        delayed: bool,
    ) -> Effect {
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
        let Some(stored) = self.stored(seq) else {
            return;
        };
        let letter = DeadLetter {
            queue_group: Arc::clone(&self.groups[group.index()].name),
            subject: self.subjects[stored.subject as usize].to_string(),
            stream_seq: seq,
            payload: stored.payload.to_vec(),
            reason,
        };
        let g = &mut self.groups[group.index()];
        if let Some(slot) = g.slot_mut(seq) {
            *slot = Some(Status::Dead);
        }
        g.ready.remove(&seq);
        g.dead.insert(seq);
        g.compact();
        letter.reason.count(&letter.queue_group);
        self.keep_dead_letter(letter);
        self.settled(seq);
    }

    /// Where message `seq` stands with `group`; `None` if there is no such message or group,
    /// or the group does not listen to its subject.
    ///
    /// Under [`super::Retention::Interest`], a message that left the stream reads as settled
    /// (dead while its dead letter is kept, else acked) with every group whose ack floor
    /// passed it, whether the group listened to it or not: its subject went with it.
    pub fn status(&self, group: GroupId, seq: Seq) -> Option<Status> {
        let g = self.groups.get(group.index())?;
        if seq < g.start || seq > self.stream_len() {
            return None;
        }
        let settled = || {
            Some(if g.dead.contains(&seq) {
                Status::Dead
            } else {
                Status::Acked
            })
        };
        let Some(stored) = self.stored(seq) else {
            // Released: settled by every group that listened (the window, if it still holds
            // the message, says how), never the group's if it was released before the group
            // reached it.
            if seq < g.base {
                return settled();
            }
            return match g.slot(seq) {
                Some(Some(status)) => Some(*status),
                _ => None,
            };
        };
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
        self.stored(seq)
            .is_some_and(|stored| g.listens_to(stored.subject))
    }

    /// The dead letters kept (at most the cap; see [`BrokerCore::dead_letters_dropped`]),
    /// oldest first.
    pub fn dead_letters(&self) -> impl ExactSizeIterator<Item = &DeadLetter> + '_ {
        self.dead_letters.iter()
    }
}

impl Group {
    /// Delivers `seq`, below the group's cursor, again: it must still be pending. Returns its
    /// delivery count.
    fn deliver_again(
        &mut self,
        group: GroupId,
        seq: Seq,
        member: MemberId,
        subject: SubjectId,
    ) -> Result<u32, CoreError> {
        let status = match self.slot(seq) {
            None => {
                // Below the ack floor: settled, or ignored by the group.
                if !self.listens_to(subject) {
                    return Err(CoreError::NotForGroup { group, seq });
                }
                let status = if self.dead.contains(&seq) {
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
        let deliveries = before + 1;
        if let Some(slot) = self.slot_mut(seq) {
            *slot = Some(Status::InFlight { member, deliveries });
        }
        self.ready.remove(&seq);
        Ok(deliveries)
    }

    /// Delivers `seq`, at or past the group's cursor, for the first time; the messages the
    /// harness skipped over (`deliverable` says which the group takes) stay pending in the
    /// window. Returns its delivery count, 1.
    fn deliver_first(
        &mut self,
        group: GroupId,
        seq: Seq,
        member: MemberId,
        subject: SubjectId,
        deliverable: Vec<bool>,
    ) -> Result<u32, CoreError> {
        if !self.listens_to(subject) {
            return Err(CoreError::NotForGroup { group, seq });
        }
        let skipped_from = seq - deliverable.len() as Seq;
        self.compact();
        if self.window.is_empty() && self.cursor() < skipped_from {
            self.base = skipped_from;
        }
        while self.cursor() < skipped_from {
            self.window.push_back(None);
        }
        for (skipped, deliverable) in (skipped_from..seq).zip(deliverable) {
            if deliverable {
                self.window
                    .push_back(Some(Status::Pending { deliveries: 0 }));
                self.ready.insert(skipped);
            } else {
                self.window.push_back(None);
            }
        }
        let deliveries = 1;
        self.window
            .push_back(Some(Status::InFlight { member, deliveries }));
        self.compact();
        Ok(deliveries)
    }
}
