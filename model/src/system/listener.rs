//! What a queue-group member does with a delivery: read the store and decide, write
//! (update-if-current), and move on to its next step. The broker's delivery and the members'
//! own steps share it, so every variant's listener lives in one place.
//!
//! The invariant: a member is busy with exactly one delivery, and its next step is the one
//! the last decision or write left it: a member that acknowledged first never acks again, and
//! a failed delivery returns its message unless it was acknowledged.

use super::TicketingModel;
use crate::state::{
    Event, Group, Member, MessageIx, OrderIx, Price, Replica, Reservation, State, Step, TicketIx,
    Version,
};

/// What a listener decides after reading the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Insert the replica now (`ticket:created`; the insert is the read).
    Insert,
    /// The record is at `read_version` and the event applies to it: save next.
    Save { read_version: Version },
    /// The event's effect is already in the store: acknowledge.
    AlreadyApplied,
    /// A gap: not yet (reference design: wait; a stutter, so not a step).
    Wait,
    /// The course's "not found" error: the delivery fails, no ack.
    Fail,
}

/// The delivery a busy member holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Holding {
    /// The message delivered.
    pub(super) message: MessageIx,
    /// Which delivery of it (stale once the message was delivered again).
    pub(super) delivery: u8,
    /// Whether the member acknowledged it on receipt (`ack-before-save`).
    pub(super) acked: bool,
}

/// What `member` of `group` holds and does next, if it is busy.
pub(super) fn busy(state: &State, group: Group, member: u8) -> Option<(Holding, Step)> {
    match state.members[group as usize][usize::from(member)] {
        Member::Busy {
            message,
            delivery,
            acked,
            step,
        } => Some((
            Holding {
                message,
                delivery,
                acked,
            },
            step,
        )),
        Member::Idle => None,
    }
}

/// Sets `member` of `group` to hold `holding` and do `next`, or to idle.
pub(super) fn set_member(
    state: &mut State,
    group: Group,
    member: u8,
    holding: Holding,
    next: Option<Step>,
) {
    state.members[group as usize][usize::from(member)] = match next {
        Some(step) => Member::Busy {
            message: holding.message,
            delivery: holding.delivery,
            acked: holding.acked,
            step,
        },
        None => Member::Idle,
    };
}

/// The member's next step once its write (or decision) is done: publish, ack, or nothing
/// if it acknowledged first.
pub(super) fn after_write(acked: bool, publish: Option<Event>) -> Option<Step> {
    match (publish, acked) {
        (Some(event), _) => Some(Step::Publish { event }),
        (None, false) => Some(Step::Ack),
        (None, true) => None,
    }
}

impl TicketingModel {
    /// What a listener of `event` decides, reading the store as it is in `state`.
    pub(super) fn decide(&self, state: &State, event: Event) -> Decision {
        match event {
            Event::TicketCreated { ticket, .. } => {
                match (
                    state.replicas[usize::from(ticket)],
                    self.variant().acks_duplicates(),
                ) {
                    (None, _) => Decision::Insert,
                    (Some(_), true) => Decision::AlreadyApplied,
                    (Some(_), false) => Decision::Fail,
                }
            }
            Event::TicketUpdated {
                ticket, version, ..
            } => self.decide_ticket_updated(state, ticket, version),
            Event::OrderCreated {
                ticket,
                reservation,
                ..
            }
            | Event::OrderCancelled {
                ticket,
                reservation,
                ..
            } => self.decide_order_event(state, ticket, reservation),
        }
    }

    /// The orders service's listener of `ticket:updated` bringing `ticket` to `version`.
    fn decide_ticket_updated(&self, state: &State, ticket: TicketIx, version: Version) -> Decision {
        let variant = self.variant();
        let replica = state.replicas[usize::from(ticket)];
        match replica {
            // `naive-version` removes the version check and nothing else: whatever version
            // arrives is applied to the replica it finds (a missing replica waits, as in the
            // reference).
            Some(replica) if !variant.checks_version() => Decision::Save {
                read_version: replica.version,
            },
            Some(replica) if replica.version + 1 == version => Decision::Save {
                read_version: replica.version,
            },
            Some(replica) if replica.version >= version && variant.acks_duplicates() => {
                Decision::AlreadyApplied
            }
            _ if variant.acks_duplicates() => Decision::Wait,
            // The course's `findByEvent`: not found at `version - 1` is an error.
            _ => Decision::Fail,
        }
    }

    /// The tickets service's listener of an order event with `ticket`'s reservation-change
    /// number `reservation`.
    fn decide_order_event(
        &self,
        state: &State,
        ticket: TicketIx,
        reservation: Reservation,
    ) -> Decision {
        let variant = self.variant();
        let Some(primary) = state.tickets.get(usize::from(ticket)) else {
            // Unreachable (an order needs a replica, a replica needs its primary), but
            // decided as the implementation decides it.
            return if variant.orders_order_events() && variant.acks_duplicates() {
                Decision::Wait
            } else {
                Decision::Fail
            };
        };
        if !variant.orders_order_events() {
            return Decision::Save {
                read_version: primary.version,
            };
        }
        if primary.reservation + 1 == reservation {
            Decision::Save {
                read_version: primary.version,
            }
        } else if !variant.acks_duplicates() {
            Decision::Fail
        } else if primary.reservation >= reservation {
            Decision::AlreadyApplied
        } else {
            Decision::Wait
        }
    }

    /// Applies `decision` for `member` of `group` holding `holding`: performs an insert, or
    /// moves the member to its next step, or fails the delivery.
    pub(super) fn follow(
        &self,
        state: &mut State,
        group: Group,
        member: u8,
        holding: Holding,
        decision: Decision,
    ) {
        let event = state.messages.as_slice()[usize::from(holding.message)].event();
        let next = match decision {
            Decision::Insert => {
                if let Event::TicketCreated { ticket, price } = event {
                    state.replicas[usize::from(ticket)] = Some(Replica { version: 0, price });
                    state.ghost.ticket_events_applied[usize::from(ticket)] |= 1;
                }
                after_write(holding.acked, None)
            }
            Decision::Save { read_version } => Some(Step::Save { read_version }),
            Decision::AlreadyApplied => after_write(holding.acked, None),
            Decision::Wait | Decision::Fail => {
                if !holding.acked {
                    self.return_delivery(state, holding.message, holding.delivery);
                }
                None
            }
        };
        set_member(state, group, member, holding, next);
    }

    /// The write of a listener holding `event`, read at `read_version`: update-if-current.
    /// Returns the event the write produced (to publish), or `Err(())` on a version conflict.
    pub(super) fn update_if_current(
        &self,
        state: &mut State,
        event: Event,
        read_version: Version,
    ) -> Result<Option<Event>, ()> {
        match event {
            Event::TicketCreated { .. } => Ok(None),
            Event::TicketUpdated {
                ticket,
                version,
                price,
                ..
            } => write_replica(state, ticket, version, price, read_version),
            Event::OrderCreated {
                order,
                ticket,
                reservation,
            } => self.write_reservation(state, ticket, Some(order), reservation, read_version),
            Event::OrderCancelled {
                ticket,
                reservation,
                ..
            } => self.write_reservation(state, ticket, None, reservation, read_version),
        }
    }

    /// The tickets service's write of an order event: the ticket's `order` names `holder`
    /// (the order created, or none once cancelled) at the next version; unless the variant
    /// publishes nothing on reservation, the write produces a `ticket:updated` for it.
    fn write_reservation(
        &self,
        state: &mut State,
        ticket: TicketIx,
        holder: Option<OrderIx>,
        reservation: Reservation,
        read_version: Version,
    ) -> Result<Option<Event>, ()> {
        let variant = self.variant();
        let primary = &mut state.tickets.as_mut_slice()[usize::from(ticket)];
        if primary.version != read_version {
            return Err(());
        }
        primary.version += 1;
        primary.order = holder;
        if variant.orders_order_events() {
            primary.reservation = reservation;
        }
        let (version, price) = (primary.version, primary.price);
        state.ghost.note_write(read_version, version);
        state.ghost.price_at[usize::from(ticket)][usize::from(version)] = price;
        state.ghost.order_events_applied[usize::from(ticket)] |= 1 << reservation;
        Ok(variant
            .publishes_reservations()
            .then_some(Event::TicketUpdated {
                ticket,
                version,
                price,
                order: holder,
            }))
    }
}

/// The orders service's write of `ticket:updated` bringing `ticket` to `version` at `price`,
/// if its replica is still at `read_version`.
/// The replica stores the event's version (SPEC.md section 2: it does not count its own
/// saves), so a design that applies an older event after a newer one lowers it.
fn write_replica(
    state: &mut State,
    ticket: TicketIx,
    version: Version,
    price: Price,
    read_version: Version,
) -> Result<Option<Event>, ()> {
    let slot = &mut state.replicas[usize::from(ticket)];
    let Some(replica) = slot else { return Err(()) };
    if replica.version != read_version {
        return Err(());
    }
    *replica = Replica { version, price };
    state.ghost.note_write(read_version, version);
    state.ghost.ticket_events_applied[usize::from(ticket)] |= 1 << version;
    Ok(None)
}
