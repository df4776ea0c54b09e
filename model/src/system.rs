//! The transitions: what clients, services, the broker and the adversary can do.
//!
//! One step is one store or broker operation of the implementation, with three merges, each
//! sound because the merged operation's effect cannot be told apart from the same operation a
//! moment later:
//! - a delivery and the listener's first store operation (its read, or the replica's insert)
//!   are one step: the delivery changes nothing but the message's status, which no other
//!   step of that message can observe while it is in flight;
//! - a failed save and the re-read that follows are one step: the failed save changes
//!   nothing, and versions only move forward, so it would fail a moment later too;
//! - a failed delivery (a nak, or the course listener's error) returns the message at once:
//!   ack-wait expiry of a delivery nobody works on any more is always enabled;
//! - with the outbox, the relay publishes an event in the step that wrote it: the broker may
//!   hold back any delivery arbitrarily long, so a publish held back by the relay cannot be
//!   told apart from a delivery held back by the broker. A relay that crashes after
//!   publishing and before marking the entry republishes it under the same publish id, which
//!   the broker drops: that crash changes nothing, so it is not a step (the implementation's
//!   relay tests and the soak run exercise it).
//!
//! A delivery whose only effect would be "not yet" (the reference design's wait on a version
//! gap) is a stutter step and is left out: the message stays pending until it is applicable.
//! HTTP operations are single steps: the implementation re-reads and retries on a conflict,
//! which makes each one atomic at its successful save.

use std::ops::ControlFlow;

use stateright::{Model, Path, Property};

use crate::action::{Action, Actor};
use crate::config::{Config, Variant};
use crate::state::{
    Event, Group, MAX_MEMBERS, Member, Message, MessageIx, Order, OrderIx, OrderStatus, Replica,
    Service, State, Status, Step, Ticket, TicketIx, Version,
};

/// What a listener decides after reading the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
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

/// The model: the configuration checked. Implements stateright's [`Model`].
#[derive(Clone, Debug)]
pub struct TicketingModel {
    /// The bounds and variant.
    pub config: Config,
}

impl TicketingModel {
    /// A model of `config` (which should be valid: see [`Config::validate`]).
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    fn variant(&self) -> Variant {
        self.config.variant
    }

    fn members(&self) -> usize {
        usize::from(self.config.members).min(MAX_MEMBERS)
    }

    /// What a listener of `event` decides, reading the store as it is in `state`.
    fn decide(&self, state: &State, event: Event) -> Decision {
        let variant = self.variant();
        match event {
            Event::TicketCreated { ticket, .. } => {
                match (
                    state.replicas[usize::from(ticket)],
                    variant.acks_duplicates(),
                ) {
                    (None, _) => Decision::Insert,
                    (Some(_), true) => Decision::AlreadyApplied,
                    (Some(_), false) => Decision::Fail,
                }
            }
            Event::TicketUpdated {
                ticket, version, ..
            } => {
                let replica = state.replicas[usize::from(ticket)];
                if !variant.checks_version() {
                    // The course's first listener: find by id, overwrite, whatever the version.
                    return match replica {
                        Some(replica) => Decision::Save {
                            read_version: replica.version,
                        },
                        None => Decision::Fail,
                    };
                }
                match replica {
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
            Event::OrderCreated {
                ticket,
                reservation,
                ..
            }
            | Event::OrderCancelled {
                ticket,
                reservation,
                ..
            } => {
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
        }
    }

    /// Writes an event with the record change that produced it. With the outbox, the relay
    /// publishes it (with its publish id) in the same step; without, it waits in the HTTP
    /// handler's pending publishes, where a crash can lose it.
    fn write_event(&self, state: &mut State, service: Service, event: Event) {
        if self.variant().uses_outbox() {
            Self::publish(state, event, true);
        } else {
            state.outboxes[service as usize].push(event);
        }
    }

    /// Appends `event` to the stream as a pending message. With a publish id (`dedup`), an
    /// event already in the stream is dropped.
    fn publish(state: &mut State, event: Event, dedup: bool) {
        if dedup
            && state
                .messages
                .as_slice()
                .iter()
                .any(|message| message.event == event)
        {
            return;
        }
        state.messages.push(Message {
            event,
            status: Status::Pending,
            deliveries: 0,
        });
    }

    /// The delivery `delivery` of `message` failed or its member crashed: unless a later
    /// delivery superseded it (or it was acknowledged), the message returns to pending, or is
    /// dead-lettered after `max_deliver` deliveries.
    fn return_delivery(&self, state: &mut State, message: MessageIx, delivery: u8) {
        let max_deliver = self.config.max_deliver;
        let message = &mut state.messages.as_mut_slice()[usize::from(message)];
        if message.status == Status::InFlight && message.deliveries == delivery {
            message.status = if message.deliveries >= max_deliver {
                Status::Dead
            } else {
                Status::Pending
            };
        }
    }

    /// The member's next step once its write (or decision) is done: publish, ack, or nothing
    /// if it acknowledged first.
    fn after_write(acked: bool, publish: Option<Event>) -> Option<Step> {
        match (publish, acked) {
            (Some(event), _) => Some(Step::Publish { event }),
            (None, false) => Some(Step::Ack),
            (None, true) => None,
        }
    }

    /// Applies `decision` for a member holding `(message, delivery)`: performs an insert, or
    /// moves the member to its next step, or fails the delivery.
    fn follow(
        &self,
        state: &mut State,
        group: Group,
        member: usize,
        (message, delivery, acked): (MessageIx, u8, bool),
        decision: Decision,
    ) {
        let event = state.messages.as_slice()[usize::from(message)].event;
        let next = match decision {
            Decision::Insert => {
                if let Event::TicketCreated { ticket, price } = event {
                    state.replicas[usize::from(ticket)] = Some(Replica { version: 0, price });
                    state.ghost.ticket_events_applied[usize::from(ticket)] |= 1;
                }
                Self::after_write(acked, None)
            }
            Decision::Save { read_version } => Some(Step::Save { read_version }),
            Decision::AlreadyApplied => Self::after_write(acked, None),
            Decision::Wait | Decision::Fail => {
                if !acked {
                    self.return_delivery(state, message, delivery);
                }
                None
            }
        };
        Self::set_member(state, group, member, (message, delivery, acked), next);
    }

    /// The save of a member holding `event`, read at `read_version`: update-if-current. Returns
    /// the event to publish, or `Err(())` on a version conflict.
    fn save(
        &self,
        state: &mut State,
        event: Event,
        read_version: Version,
    ) -> Result<Option<Event>, ()> {
        let variant = self.variant();
        match event {
            Event::TicketCreated { .. } => Ok(None),
            Event::TicketUpdated {
                ticket,
                version,
                price,
                ..
            } => {
                let slot = &mut state.replicas[usize::from(ticket)];
                let Some(replica) = slot else { return Err(()) };
                if replica.version != read_version {
                    return Err(());
                }
                *replica = Replica {
                    version: read_version + 1,
                    price,
                };
                state.ghost.ticket_events_applied[usize::from(ticket)] |= 1 << version;
                Ok(None)
            }
            Event::OrderCreated {
                order,
                ticket,
                reservation,
            }
            | Event::OrderCancelled {
                order,
                ticket,
                reservation,
            } => {
                let holder = matches!(event, Event::OrderCreated { .. }).then_some(order);
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
    }

    /// Sets a member to hold `(message, delivery, acked)` and do `next`, or to idle.
    fn set_member(
        state: &mut State,
        group: Group,
        member: usize,
        (message, delivery, acked): (MessageIx, u8, bool),
        next: Option<Step>,
    ) {
        state.members[group as usize][member] = match next {
            Some(step) => Member::Busy {
                message,
                delivery,
                acked,
                step,
            },
            None => Member::Idle,
        };
    }

    fn busy(state: &State, group: Group, member: u8) -> Option<(MessageIx, u8, bool, Step)> {
        match state.members[group as usize][usize::from(member)] {
            Member::Busy {
                message,
                delivery,
                acked,
                step,
            } => Some((message, delivery, acked, step)),
            Member::Idle => None,
        }
    }

    fn create_order(&self, state: &mut State, ticket: TicketIx) {
        let order = state.orders.len() as OrderIx;
        state.orders.push(Order {
            ticket,
            status: OrderStatus::Created,
            version: 0,
        });
        let reservation = &mut state.reservations[usize::from(ticket)];
        *reservation += 1;
        let event = Event::OrderCreated {
            order,
            ticket,
            reservation: *reservation,
        };
        self.write_event(state, Service::Orders, event);
    }

    fn can_order(state: &State, ticket: TicketIx) -> bool {
        state.budget.orders > 0
            && state.replicas[usize::from(ticket)].is_some()
            && state.active_orders(ticket).next().is_none()
    }

    /// Calls `visit` with each enabled action, in a fixed order, until it breaks.
    pub fn for_each_action(
        &self,
        state: &State,
        visit: &mut impl FnMut(Action) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let variant = self.variant();
        let budget = state.budget;

        // Clients.
        if budget.tickets > 0 {
            visit(Action::CreateTicket)?;
        }
        for (ticket, primary) in state.tickets.as_slice().iter().enumerate() {
            let ticket = ticket as TicketIx;
            let editable = primary.order.is_none() || !variant.rejects_reserved_edits();
            if budget.updates > 0 && editable {
                visit(Action::UpdatePrice { ticket })?;
            }
            if Self::can_order(state, ticket) {
                visit(if variant.reserves_atomically() {
                    Action::CreateOrder { ticket }
                } else {
                    Action::CheckReservation { ticket }
                })?;
            }
        }
        for request in 0..state.reservation_requests.len() as u8 {
            visit(Action::InsertOrder { request })?;
            if budget.crashes > 0 {
                visit(Action::CrashBeforeInsert { request })?;
            }
        }
        if budget.cancels > 0 {
            for (order, record) in state.orders.as_slice().iter().enumerate() {
                if record.status == OrderStatus::Created {
                    visit(Action::CancelOrder {
                        order: order as OrderIx,
                    })?;
                }
            }
        }

        // Without an outbox, HTTP handlers publish what they saved (or crash first).
        if !variant.uses_outbox() {
            for service in Service::ALL {
                for entry in 0..state.outbox(service).len() as u8 {
                    visit(Action::PublishSaved { service, entry })?;
                    if budget.crashes > 0 {
                        visit(Action::CrashBeforePublish { service, entry })?;
                    }
                }
            }
        }

        // The broker and the members.
        for (index, message) in state.messages.as_slice().iter().enumerate() {
            let message_ix = index as MessageIx;
            let group = message.event.group();
            match message.status {
                Status::Pending => {
                    let applicable = !variant.acks_after_save()
                        || self.decide(state, message.event) != Decision::Wait;
                    if applicable {
                        for member in 0..self.members() {
                            if state.members[group as usize][member] == Member::Idle {
                                visit(Action::Deliver {
                                    group,
                                    member: member as u8,
                                    message: message_ix,
                                })?;
                            }
                        }
                    }
                }
                Status::InFlight => {
                    if budget.redeliveries > 0 {
                        visit(Action::ExpireAckWait {
                            message: message_ix,
                        })?;
                    }
                }
                Status::Acked | Status::Dead => {}
            }
            if budget.duplicates > 0 && !variant.uses_outbox() {
                visit(Action::DuplicatePublish {
                    message: message_ix,
                })?;
            }
        }
        for group in Group::ALL {
            for member in 0..self.members() as u8 {
                let Some((_, _, _, step)) = Self::busy(state, group, member) else {
                    continue;
                };
                visit(match step {
                    Step::Read => Action::Read { group, member },
                    Step::Save { .. } => Action::Save { group, member },
                    Step::Publish { .. } => Action::Publish { group, member },
                    Step::Ack => Action::Ack { group, member },
                })?;
                if budget.crashes > 0 {
                    visit(Action::CrashMember { group, member })?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Whether the system has nothing left to do: no system action is enabled. If clients and
    /// the adversary stop here (they may: their budgets are upper bounds), the run ends here,
    /// so this is where the liveness properties are judged.
    pub fn is_quiescent(&self, state: &State) -> bool {
        self.for_each_action(state, &mut |action| {
            if action.actor() == Actor::System {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_continue()
    }
}

impl Model for TicketingModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let config = &self.config;
        vec![State {
            budget: crate::state::Budget {
                tickets: config.tickets,
                updates: config.updates,
                orders: config.orders,
                cancels: config.cancels,
                crashes: config.crashes,
                redeliveries: config.redeliveries,
                duplicates: config.duplicates,
            },
            ..State::default()
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        let _ = self.for_each_action(state, &mut |action| {
            actions.push(action);
            ControlFlow::Continue(())
        });
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let variant = self.variant();
        let mut state = last.clone();
        match action {
            Action::CreateTicket => {
                let ticket = state.tickets.len() as TicketIx;
                state.budget.tickets -= 1;
                state.tickets.push(Ticket::default());
                self.write_event(
                    &mut state,
                    Service::Tickets,
                    Event::TicketCreated { ticket, price: 0 },
                );
            }
            Action::UpdatePrice { ticket } => {
                state.budget.updates -= 1;
                let primary = &mut state.tickets.as_mut_slice()[usize::from(ticket)];
                if primary.order.is_some() {
                    state.ghost.reserved_price_changed = true;
                }
                primary.version += 1;
                primary.price += 1;
                let primary = *primary;
                state.ghost.price_at[usize::from(ticket)][usize::from(primary.version)] =
                    primary.price;
                self.write_event(
                    &mut state,
                    Service::Tickets,
                    Event::TicketUpdated {
                        ticket,
                        version: primary.version,
                        price: primary.price,
                        order: primary.order,
                    },
                );
            }
            Action::CreateOrder { ticket } => {
                state.budget.orders -= 1;
                self.create_order(&mut state, ticket);
            }
            Action::CheckReservation { ticket } => {
                state.budget.orders -= 1;
                state.reservation_requests.push(ticket);
            }
            Action::InsertOrder { request } => {
                let ticket = state.reservation_requests.remove(usize::from(request));
                self.create_order(&mut state, ticket);
            }
            Action::CancelOrder { order } => {
                state.budget.cancels -= 1;
                let record = &mut state.orders.as_mut_slice()[usize::from(order)];
                record.status = OrderStatus::Cancelled;
                record.version += 1;
                let ticket = record.ticket;
                let reservation = &mut state.reservations[usize::from(ticket)];
                *reservation += 1;
                let event = Event::OrderCancelled {
                    order,
                    ticket,
                    reservation: *reservation,
                };
                self.write_event(&mut state, Service::Orders, event);
            }
            Action::PublishSaved { service, entry } => {
                let event = state.outboxes[service as usize].remove(usize::from(entry));
                Self::publish(&mut state, event, false);
            }
            Action::CrashBeforePublish { service, entry } => {
                state.budget.crashes -= 1;
                state.outboxes[service as usize].remove(usize::from(entry));
            }
            Action::CrashBeforeInsert { request } => {
                state.budget.crashes -= 1;
                state.reservation_requests.remove(usize::from(request));
            }
            Action::Deliver {
                group,
                member,
                message,
            } => {
                let record = &mut state.messages.as_mut_slice()[usize::from(message)];
                record.deliveries += 1;
                record.status = Status::InFlight;
                let (event, delivery) = (record.event, record.deliveries);
                if variant.acks_after_save() {
                    let decision = self.decide(&state, event);
                    self.follow(
                        &mut state,
                        group,
                        usize::from(member),
                        (message, delivery, false),
                        decision,
                    );
                } else {
                    // Acknowledge first, as the variant's listener does on receipt.
                    record.status = Status::Acked;
                    state.members[group as usize][usize::from(member)] = Member::Busy {
                        message,
                        delivery,
                        acked: true,
                        step: Step::Read,
                    };
                }
            }
            Action::Read { group, member } => {
                let (message, delivery, acked, _) = Self::busy(&state, group, member)?;
                let event = state.messages.as_slice()[usize::from(message)].event;
                let decision = self.decide(&state, event);
                self.follow(
                    &mut state,
                    group,
                    usize::from(member),
                    (message, delivery, acked),
                    decision,
                );
            }
            Action::Save { group, member } => {
                let (message, delivery, acked, step) = Self::busy(&state, group, member)?;
                let Step::Save { read_version } = step else {
                    return None;
                };
                let event = state.messages.as_slice()[usize::from(message)].event;
                match self.save(&mut state, event, read_version) {
                    Ok(published) => {
                        let publish = published.filter(|_| !variant.uses_outbox());
                        if let (Some(event), true) = (published, variant.uses_outbox()) {
                            self.write_event(&mut state, Service::Tickets, event);
                        }
                        Self::set_member(
                            &mut state,
                            group,
                            usize::from(member),
                            (message, delivery, acked),
                            Self::after_write(acked, publish),
                        );
                    }
                    Err(()) => {
                        let decision = if variant.rereads_on_conflict() {
                            self.decide(&state, event)
                        } else {
                            Decision::Fail
                        };
                        self.follow(
                            &mut state,
                            group,
                            usize::from(member),
                            (message, delivery, acked),
                            decision,
                        );
                    }
                }
            }
            Action::Publish { group, member } => {
                let (message, delivery, acked, step) = Self::busy(&state, group, member)?;
                let Step::Publish { event } = step else {
                    return None;
                };
                Self::publish(&mut state, event, false);
                Self::set_member(
                    &mut state,
                    group,
                    usize::from(member),
                    (message, delivery, acked),
                    Self::after_write(acked, None),
                );
            }
            Action::Ack { group, member } => {
                let (message, _, _, _) = Self::busy(&state, group, member)?;
                let record = &mut state.messages.as_mut_slice()[usize::from(message)];
                // An ack from any delivery acknowledges the message, as JetStream's does by
                // stream sequence; a dead-lettered message stays dead.
                if matches!(record.status, Status::Pending | Status::InFlight) {
                    record.status = Status::Acked;
                }
                state.members[group as usize][usize::from(member)] = Member::Idle;
            }
            Action::CrashMember { group, member } => {
                let (message, delivery, acked, _) = Self::busy(&state, group, member)?;
                state.budget.crashes -= 1;
                if !acked {
                    self.return_delivery(&mut state, message, delivery);
                }
                state.members[group as usize][usize::from(member)] = Member::Idle;
            }
            Action::ExpireAckWait { message } => {
                state.budget.redeliveries -= 1;
                let deliveries = state.messages.as_slice()[usize::from(message)].deliveries;
                self.return_delivery(&mut state, message, deliveries);
            }
            Action::DuplicatePublish { message } => {
                state.budget.duplicates -= 1;
                let event = state.messages.as_slice()[usize::from(message)].event;
                Self::publish(&mut state, event, false);
            }
        }
        state.forget_the_irrelevant();
        Some(state)
    }

    fn format_action(&self, action: &Action) -> String {
        crate::words::describe_action(action)
    }

    fn format_step(&self, last: &State, action: Action) -> Option<String> {
        let next = self.next_state(last, action)?;
        Some(crate::words::describe_step(last, &action, &next))
    }

    fn as_svg(&self, path: Path<State, Action>) -> Option<String> {
        Some(crate::svg::draw(self, &path))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        crate::properties::all()
    }
}
