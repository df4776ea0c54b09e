//! A message's life with one queue group: delivered to a member, then acknowledged, nak'ed
//! (at once or after a delay the driver keeps), terminated, expired, or given back by a
//! member that crashed; dead-lettered after its last allowed delivery; and where it stands.
//!
//! The invariant: a nak, term, expiry or release names the delivery it came from and changes
//! nothing unless that is the message's current delivery; an ack from any delivery
//! acknowledges (JetStream acknowledges by stream sequence); acked and dead are final.

use std::sync::Arc;

use super::{BrokerCore, CoreError, DeliveryTicket, Effect, GroupId, MemberId, Seq, Status};
use crate::bus::{DeadLetter, DeadLetterReason};

impl BrokerCore {
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
        let stored = &self.stream[(seq - 1) as usize];
        let g = &mut self.groups[group.index()];
        if let Some(slot) = g.slot_mut(seq) {
            *slot = Some(Status::Dead);
        }
        g.ready.remove(&seq);
        g.dead.insert(seq);
        g.compact();
        let dead = DeadLetter {
            queue_group: Arc::clone(&g.name),
            subject: self.subjects[stored.subject as usize].to_string(),
            stream_seq: seq,
            payload: stored.payload.to_vec(),
            reason,
        };
        dead.reason.count(&dead.queue_group);
        self.dead_letters.push(dead);
    }

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

    /// Everything dead-lettered so far, oldest first.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }
}
