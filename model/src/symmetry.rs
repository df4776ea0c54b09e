//! Symmetry reduction: members of a queue group are interchangeable, and so are tickets and
//! the positions of messages in the stream.
//!
//! [`Representative`] maps a state to a representative of its class under permutations of
//! members (within each group), of tickets, and of messages (the broker delivers any pending
//! message, so a message's position names it and nothing more: two publishers racing produce
//! the same system in either order). It only ever permutes: two states with the
//! same representative are permutations of each other, hence behave the same, and every
//! property is invariant under these permutations, so checking one per class is sound.
//! Ties between tickets are broken by their original order, so the representative is not
//! always canonical (some symmetric states stay apart): that costs states, never soundness.
//!
//! The invariant: the representative is a permutation of the state (of members within a
//! group, of tickets, of messages), with every index renamed wherever it appears; it never
//! changes anything else.

use stateright::Representative;

use crate::state::{
    Event, MAX_MEMBERS, MAX_MESSAGES, MAX_TICKETS, MAX_VERSIONS, Member, Message, MessageIx, State,
    Step, TicketIx,
};

impl Representative for State {
    fn representative(&self) -> Self {
        let mut state = self.clone();
        let renamed = state.tickets.len() > 1 && permute_tickets(&mut state);
        // The messages are permuted from a copy of themselves only if the tickets' renaming
        // changed them; otherwise from `self`'s (a copy of the stream per successor saved).
        let copy;
        let messages = if renamed {
            copy = state.messages;
            &copy
        } else {
            &self.messages
        };
        permute_messages(&mut state, messages.as_slice());
        for members in &mut state.members {
            sort_members(members);
        }
        state.reservation_requests.as_mut_slice().sort_unstable();
        state
    }
}

/// Sorts a group's members busy first (so they stay within the configured member slots),
/// then by what they hold, comparing each member's `Member::sort_key` (computed once, not per
/// comparison); most successors change one member, so the group is usually sorted already.
/// Any key that is injective on members gives the same classes (the sorted group is the same
/// multiset in a fixed order), so the key is the member's packed word, not its derived order.
fn sort_members(members: &mut [Member; MAX_MEMBERS]) {
    let mut keys = [0u64; MAX_MEMBERS];
    for (key, member) in keys.iter_mut().zip(members.iter()) {
        *key = member.sort_key();
    }
    if keys.is_sorted() {
        return;
    }
    // Insertion sort of at most three: stable, as `sort_by_key` was.
    for next in 1..MAX_MEMBERS {
        let mut at = next;
        while at > 0 && keys[at - 1] > keys[at] {
            keys.swap(at - 1, at);
            members.swap(at - 1, at);
            at -= 1;
        }
    }
}

/// Orders messages by content and status, and renames them in the members that hold them.
/// Each message's sort key is shifted past a byte holding its index: the keys are then
/// distinct, a plain `u64` sort orders them as the stable sort by key would, and the index
/// rides along (this runs for every successor, and few successors' streams are in order).
/// `old` is the stream as `state` holds it on entry.
fn permute_messages(state: &mut State, old: &[Message]) {
    let count = old.len();
    let mut keys = [0u64; MAX_MESSAGES];
    let mut sorted = true;
    for (index, message) in old.iter().enumerate() {
        let key = message.sort_key() << 8 | index as u64;
        sorted &= index == 0 || keys[index - 1] < key;
        keys[index] = key;
    }
    if sorted {
        return;
    }
    for next in 1..count {
        let key = keys[next];
        let mut at = next;
        while at > 0 && keys[at - 1] > key {
            keys[at] = keys[at - 1];
            at -= 1;
        }
        keys[at] = key;
    }
    let mut rename = [0 as MessageIx; MAX_MESSAGES];
    let messages = state.messages.as_mut_slice();
    for (new, key) in keys[..count].iter().enumerate() {
        let old_ix = (key & 0xff) as usize;
        rename[old_ix] = new as MessageIx;
        messages[new] = old[old_ix];
    }
    for members in &mut state.members {
        for member in members.iter_mut() {
            if let Member::Busy { message, .. } = member {
                *message = rename[usize::from(*message)];
            }
        }
    }
}

/// Orders tickets by everything known about each of them alone, and renames them everywhere.
/// Says whether it changed anything.
fn permute_tickets(state: &mut State) -> bool {
    let count = state.tickets.len();
    // Each ticket's key once (a comparison of two arrays, not of six-field tuples), in
    // fixed arrays: this runs for every successor of a multi-ticket check.
    let mut keys = [[0u8; TICKET_KEY]; MAX_TICKETS];
    for (ticket, key) in keys.iter_mut().enumerate().take(count) {
        *key = ticket_key(state, ticket);
    }
    if keys[..count].is_sorted() {
        return false;
    }
    let mut order = [0usize; MAX_TICKETS];
    for (slot, ticket) in order.iter_mut().zip(0..count) {
        *slot = ticket;
    }
    // Insertion sort of at most three: stable, so ties keep their original order.
    for next in 1..count {
        let mut at = next;
        while at > 0 && keys[order[at - 1]] > keys[order[at]] {
            order.swap(at - 1, at);
            at -= 1;
        }
    }
    let order = &order[..count];
    let mut rename = [0 as TicketIx; MAX_TICKETS];
    for (new, old) in order.iter().enumerate() {
        rename[*old] = new as TicketIx;
    }
    // Only the per-ticket parts are copied (the state is several hundred bytes).
    let (tickets, replicas, reservations) = (state.tickets, state.replicas, state.reservations);
    let ghost = (
        state.ghost.price_at,
        state.ghost.ticket_events_applied,
        state.ghost.order_events_applied,
    );
    for (new, old_ix) in order.iter().enumerate() {
        state.tickets.as_mut_slice()[new] = tickets.as_slice()[*old_ix];
        state.replicas[new] = replicas[*old_ix];
        state.reservations[new] = reservations[*old_ix];
        state.ghost.price_at[new] = ghost.0[*old_ix];
        state.ghost.ticket_events_applied[new] = ghost.1[*old_ix];
        state.ghost.order_events_applied[new] = ghost.2[*old_ix];
    }
    let map = |ticket: TicketIx| rename[usize::from(ticket)];
    for order in state.orders.as_mut_slice() {
        order.ticket = map(order.ticket);
    }
    for request in state.reservation_requests.as_mut_slice() {
        *request = map(*request);
    }
    for outbox in &mut state.outboxes {
        for event in outbox.as_mut_slice() {
            *event = rename_event(*event, &map);
        }
    }
    for message in state.messages.as_mut_slice() {
        message.set_event(rename_event(message.event(), &map));
    }
    for members in &mut state.members {
        for member in members.iter_mut() {
            if let Member::Busy {
                step: Step::Publish { event },
                ..
            } = member
            {
                *event = rename_event(*event, &map);
            }
        }
    }
    true
}

/// Bytes in a ticket's sort key.
const TICKET_KEY: usize = 4 + 3 + 1 + MAX_VERSIONS + 4;

/// Everything known about `ticket` alone, as bytes whose order is the derived order of
/// (primary, replica, reservation count, prices by version, ticket events applied, order
/// events applied): fields in that order, big-endian, `None` below every `Some`.
fn ticket_key(state: &State, ticket: usize) -> [u8; TICKET_KEY] {
    let primary = state.tickets.as_slice()[ticket];
    let replica = state.replicas[ticket];
    let mut key = [0u8; TICKET_KEY];
    key[..4].copy_from_slice(&[
        primary.version,
        primary.price,
        primary.order.map_or(0, |o| o + 1),
        primary.reservation,
    ]);
    key[4..7].copy_from_slice(&match replica {
        None => [0, 0, 0],
        Some(replica) => [1, replica.version, replica.price],
    });
    key[7] = state.reservations[ticket];
    key[8..8 + MAX_VERSIONS].copy_from_slice(&state.ghost.price_at[ticket]);
    key[8 + MAX_VERSIONS..10 + MAX_VERSIONS]
        .copy_from_slice(&state.ghost.ticket_events_applied[ticket].to_be_bytes());
    key[10 + MAX_VERSIONS..]
        .copy_from_slice(&state.ghost.order_events_applied[ticket].to_be_bytes());
    key
}

fn rename_event(event: Event, map: &impl Fn(TicketIx) -> TicketIx) -> Event {
    match event {
        Event::TicketCreated { ticket, price } => Event::TicketCreated {
            ticket: map(ticket),
            price,
        },
        Event::TicketUpdated {
            ticket,
            version,
            price,
            order,
        } => Event::TicketUpdated {
            ticket: map(ticket),
            version,
            price,
            order,
        },
        Event::OrderCreated {
            order,
            ticket,
            reservation,
        } => Event::OrderCreated {
            order,
            ticket: map(ticket),
            reservation,
        },
        Event::OrderCancelled {
            order,
            ticket,
            reservation,
        } => Event::OrderCancelled {
            order,
            ticket: map(ticket),
            reservation,
        },
    }
}
