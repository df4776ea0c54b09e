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

use crate::state::{Event, MAX_MESSAGES, MAX_TICKETS, Member, MessageIx, State, Step, TicketIx};

impl Representative for State {
    fn representative(&self) -> Self {
        let mut state = self.clone();
        if state.tickets.len() > 1 {
            permute_tickets(&mut state);
        }
        permute_messages(&mut state);
        for members in &mut state.members {
            // Busy members first, so they stay within the configured member slots.
            members.sort_by_key(|member| (*member == Member::Idle, *member));
        }
        state.reservation_requests.as_mut_slice().sort_unstable();
        state
    }
}

/// Orders messages by content and status, and renames them in the members that hold them.
fn permute_messages(state: &mut State) {
    let count = state.messages.len();
    let mut keyed = [(0u64, 0u8); MAX_MESSAGES];
    let mut sorted = true;
    for (index, message) in state.messages.as_slice().iter().enumerate() {
        keyed[index] = (message.sort_key(), index as u8);
        sorted &= index == 0 || keyed[index - 1].0 <= keyed[index].0;
    }
    if sorted {
        return;
    }
    keyed[..count].sort_unstable();
    let mut rename = [0 as MessageIx; MAX_MESSAGES];
    let old = state.messages;
    for (new, (_, old_ix)) in keyed[..count].iter().enumerate() {
        rename[usize::from(*old_ix)] = new as MessageIx;
        state.messages.as_mut_slice()[new] = old.as_slice()[usize::from(*old_ix)];
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
fn permute_tickets(state: &mut State) {
    let count = state.tickets.len();
    let key = |t: usize| {
        (
            state.tickets.as_slice()[t],
            state.replicas[t],
            state.reservations[t],
            state.ghost.price_at[t],
            state.ghost.ticket_events_applied[t],
            state.ghost.order_events_applied[t],
        )
    };
    // A fixed array, not a `Vec`: this runs for every successor of a multi-ticket check.
    let mut order = [0usize; MAX_TICKETS];
    for (slot, ticket) in order.iter_mut().zip(0..count) {
        *slot = ticket;
    }
    let order = &mut order[..count];
    order.sort_by_key(|t| key(*t));
    if order.iter().enumerate().all(|(new, old)| new == *old) {
        return;
    }
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
        message.event = rename_event(message.event, &map);
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
