//! Queue groups' durable consumers and their members.
//!
//! The invariant: a group outlives its members and keeps the settings it was created with;
//! a member that crashes or leaves gives back every message it held (pending again, or dead
//! on its last allowed delivery), and a member that left is never delivered to again.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::stream::SubjectId;
use super::{BrokerCore, CoreError, GroupId, MemberId, Seq, Status};
use crate::bus::QueueGroup;

/// A queue group's durable consumer.
///
/// Statuses are kept only for the window `base .. base + window.len()`: below `base` every
/// message the group listens to is acked or (listed in `dead`) dead; from `base +
/// window.len()` (the delivery cursor) on, every message it listens to is pending and never
/// delivered. `None` in the window marks a message on a subject the group ignores.
#[derive(Clone)]
pub(super) struct Group {
    pub(super) name: QueueGroup,
    /// Subjects listened to; empty: every subject.
    pub(super) filter: Vec<SubjectId>,
    pub(super) max_deliver: u32,
    /// The oldest message the stream held when the group was created: nothing below it was
    /// ever the group's.
    pub(super) start: Seq,
    pub(super) base: Seq,
    pub(super) window: VecDeque<Option<Status>>,
    /// Window sequences whose status is `Pending` (redeliveries, or messages a harness skipped).
    pub(super) ready: BTreeSet<Seq>,
    /// Every dead-lettered sequence (including those that left the window).
    pub(super) dead: BTreeSet<Seq>,
}

impl Group {
    pub(super) fn listens_to(&self, subject: SubjectId) -> bool {
        self.filter.is_empty() || self.filter.contains(&subject)
    }

    /// The first sequence never delivered to the group (nor skipped by it).
    pub(super) fn cursor(&self) -> Seq {
        self.base + self.window.len() as Seq
    }

    pub(super) fn slot(&self, seq: Seq) -> Option<&Option<Status>> {
        let offset = seq.checked_sub(self.base)?;
        self.window.get(usize::try_from(offset).ok()?)
    }

    pub(super) fn slot_mut(&mut self, seq: Seq) -> Option<&mut Option<Status>> {
        let offset = seq.checked_sub(self.base)?;
        self.window.get_mut(usize::try_from(offset).ok()?)
    }

    /// Pops settled statuses (and ignored subjects) off the window's front: the ack floor moves.
    pub(super) fn compact(&mut self) {
        while let Some(None | Some(Status::Acked | Status::Dead)) = self.window.front() {
            self.window.pop_front();
            self.base += 1;
        }
    }
}

/// A member of a queue group: one subscription.
#[derive(Clone)]
pub(super) struct Member {
    pub(super) group: GroupId,
    /// Deliveries currently `InFlight` to this member.
    pub(super) held: u32,
    /// Cleared when it leaves: it is never delivered to again.
    pub(super) joined: bool,
}

impl BrokerCore {
    /// The group named `name`, created (listening on `subjects`, every subject if empty, with
    /// `max_deliver`, from the oldest message the stream holds) if it does not exist. An existing group keeps the settings it was created
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
            start: 1,
            base: 1,
            window: VecDeque::new(),
            ready: BTreeSet::new(),
            dead: BTreeSet::new(),
        });
        self.group_ids.insert(name, id);
        let start = self.claim_retained(id);
        self.groups[id.index()].start = start;
        self.groups[id.index()].base = start;
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

    pub(super) fn group_ref(&self, group: GroupId) -> Result<&Group, CoreError> {
        self.groups
            .get(group.index())
            .ok_or(CoreError::UnknownGroup(group))
    }

    pub(super) fn member_ref(&self, member: MemberId) -> Result<&Member, CoreError> {
        self.members
            .get(member.index())
            .filter(|m| m.joined)
            .ok_or(CoreError::UnknownMember(member))
    }

    pub(super) fn check_member(&self, group: GroupId, member: MemberId) -> Result<(), CoreError> {
        self.group_ref(group)?;
        if self.member_ref(member)?.group != group {
            return Err(CoreError::NotAMember { group, member });
        }
        Ok(())
    }

    /// The groups, in creation order.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + use<> {
        (0..self.groups.len() as u32).map(GroupId)
    }
}
