//! The abstraction function: the implementation's state, as a model [`State`].
//!
//! Values and records are named in the model's terms ([`crate::terms`]): prices and titles by
//! the model's price, versions and reservation numbers as they are, records, orders and
//! messages by their index in creation order (see [`crate::world`]); every stored title is
//! checked against the title at its price.
//!
//! What is read, and from where:
//! - tickets (version, price, order, reservation): the tickets service's store;
//! - replicas (version, price), reservation counts and orders (ticket, status, version): the
//!   orders service's store;
//! - outboxes: with the outbox, the stores' outboxes (empty after every step's relay, as the
//!   model's are); without, the HTTP requests parked at their publish, in order;
//! - reservation requests: the racy requests parked at their insert;
//! - messages: the stream, each with its status and delivery count in the queue group that
//!   listens on its subject;
//! - members: idle without a task; busy with the task's message, delivery count, whether its
//!   handle acknowledged, and the step named by the operation it is parked at.
//!
//! The budget is not observable (it is what the model's clients and adversary have left) and
//! is copied from the expected state. The ghost variables are the harness's own
//! ([`crate::world`] keeps them from the journal of gated writes and from versions seen
//! between steps). Finally `forget_the_irrelevant` is applied, as the model does after every
//! step. The invariant: the result is a model state only if everything observed could be
//! expressed in the model's terms; anything else is listed in [`Observation::problems`].

use model::state::{
    self, MAX_MESSAGES, MAX_ORDERS, MAX_OUTBOX, MAX_TICKETS, Member, Message, OrderStatus, Replica,
    Service, State, Status, Step,
};
use ticketing::bus::broker::Status as CoreStatus;
use ticketing::events;
use ticketing::price::Price;
use ticketing::records::{self, Ticket, TicketReplica};
use ticketing::store::StoreError;

use crate::gate::Op;
use crate::gated::lock_core;
use crate::terms::{Ids, model_event, model_price, title_of};
use crate::world::World;

/// The implementation's state in the model's terms.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The state (meaningful where `problems` is empty).
    pub state: State,
    /// What could not be expressed in the model's terms (each one a divergence).
    pub problems: Vec<String>,
}

fn version(value: u64, what: &str, problems: &mut Vec<String>) -> u8 {
    u8::try_from(value).unwrap_or_else(|_| {
        problems.push(format!(
            "{what}: version {value} is beyond what the model holds"
        ));
        u8::MAX
    })
}

fn price(value: Price, what: &str, problems: &mut Vec<String>) -> state::Price {
    model_price(value).unwrap_or_else(|| {
        problems.push(format!(
            "{what}: price {} cents is not one the harness set",
            value.cents()
        ));
        u8::MAX
    })
}

fn check_title(title: &str, at: state::Price, what: &str, problems: &mut Vec<String>) {
    if title != title_of(at) {
        problems.push(format!(
            "{what}: title {title:?} is not the title at price {at} ({:?})",
            title_of(at)
        ));
    }
}

/// What a store read found; a failed read is a problem (and reads as nothing).
fn read<T>(
    found: Result<Option<T>, StoreError>,
    what: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    found.unwrap_or_else(|error| {
        problems.push(format!("{what}: the store could not be read: {error}"));
        None
    })
}

/// The model step a task parked at `op` takes next.
fn step_of(ids: &Ids, op: &Op) -> Result<Step, String> {
    match op {
        Op::Read { .. } | Op::Insert { .. } => Ok(Step::Read),
        Op::Save { read_version, .. } => Ok(Step::Save {
            read_version: u8::try_from(*read_version)
                .map_err(|_| format!("read at v{read_version}"))?,
        }),
        Op::Publish { event } => Ok(Step::Publish {
            event: model_event(ids, event)?,
        }),
        Op::Ack => Ok(Step::Ack),
        other => Err(format!(
            "parked at {other}, which is no step of the model's"
        )),
    }
}

/// The implementation's state in the model's terms; `expected` supplies only the budget.
pub fn observe(world: &World, expected: &State) -> Observation {
    let mut problems = world.problems.clone();
    let mut state = State::default();
    let ids = &world.ids;
    observe_stores(world, &mut state, &mut problems);
    observe_pending_requests(world, &mut state, &mut problems);
    observe_broker(world, &mut state, &mut problems);
    for group in state::Group::ALL {
        for member in 0..world.members.min(state::MAX_MEMBERS) {
            let Some(listening) = &world.listening[group as usize][member] else {
                continue;
            };
            let what = format!("{} member {member}", group.name());
            let step = match listening.task.waiting() {
                Some(op) => step_of(ids, &op).unwrap_or_else(|problem| {
                    problems.push(format!("{what}: {problem}"));
                    Step::Read
                }),
                None => {
                    problems.push(format!("{what}: its task is not parked at its gate"));
                    Step::Read
                }
            };
            state.members[group as usize][member] = Member::Busy {
                message: u8::try_from(listening.seq - 1).unwrap_or(u8::MAX),
                delivery: u8::try_from(listening.delivery).unwrap_or(u8::MAX),
                acked: listening.acked.load(std::sync::atomic::Ordering::SeqCst),
                step,
            };
        }
    }
    state.budget = expected.budget;
    state.ghost = world.ghost;
    state.forget_the_irrelevant();
    Observation { state, problems }
}

fn observe_stores(world: &World, state: &mut State, problems: &mut Vec<String>) {
    let ids = &world.ids;
    if ids.tickets.len() > MAX_TICKETS || ids.orders.len() > MAX_ORDERS {
        problems.push(format!(
            "{} tickets and {} orders, more than the model holds",
            ids.tickets.len(),
            ids.orders.len()
        ));
    }
    for (t, id) in ids.tickets.iter().take(MAX_TICKETS).enumerate() {
        let what = format!("ticket {t}");
        let Some(ticket) = read(world.tickets_store.find_now::<Ticket>(*id), &what, problems)
        else {
            problems.push(format!("{what} is not in the tickets store"));
            continue;
        };
        let p = price(ticket.price, &what, problems);
        check_title(&ticket.title, p, &what, problems);
        let order = ticket.order_id.map(|order| {
            ids.order(order).unwrap_or_else(|| {
                problems.push(format!("{what} names unknown order {order}"));
                u8::MAX
            })
        });
        state.tickets.push(state::Ticket {
            version: version(ticket.version, &what, problems),
            price: p,
            order,
            reservation: version(ticket.reservation, &what, problems),
        });
        let what = format!("replica {t}");
        let replica = world.orders_store.find_now::<TicketReplica>(*id);
        if let Some(replica) = read(replica, &what, problems) {
            let p = price(replica.price, &what, problems);
            check_title(&replica.title, p, &what, problems);
            state.replicas[t] = Some(Replica {
                version: version(replica.version, &what, problems),
                price: p,
            });
        }
        let what = format!("reservations of ticket {t}");
        let count = world.orders_store.reservation_count_now(*id);
        state.reservations[t] = version(
            read(count.map(Some), &what, problems).unwrap_or(0),
            &what,
            problems,
        );
    }
    for (o, id) in ids.orders.iter().take(MAX_ORDERS).enumerate() {
        let what = format!("order {o}");
        let Some(order) = read(
            world.orders_store.find_now::<records::Order>(*id),
            &what,
            problems,
        ) else {
            problems.push(format!("{what} is not in the orders store"));
            continue;
        };
        let status = match order.status {
            records::OrderStatus::Created => OrderStatus::Created,
            records::OrderStatus::Cancelled => OrderStatus::Cancelled,
            other => {
                problems.push(format!("{what} is {}", other.as_str()));
                OrderStatus::Created
            }
        };
        state.orders.push(state::Order {
            ticket: ids.ticket(order.ticket_id).unwrap_or_else(|| {
                problems.push(format!("{what} is on unknown ticket {}", order.ticket_id));
                u8::MAX
            }),
            status,
            version: version(order.version, &what, problems),
        });
    }
}

fn observe_pending_requests(world: &World, state: &mut State, problems: &mut Vec<String>) {
    let ids = &world.ids;
    for service in Service::ALL {
        let what = format!("{} outbox", service.name());
        let events: Vec<events::Event> = if world.variant.uses_outbox() {
            let store = match service {
                Service::Tickets => &world.tickets_store,
                Service::Orders => &world.orders_store,
            };
            read(store.outbox_now().map(Some), &what, problems)
                .unwrap_or_default()
                .into_iter()
                .map(|entry| entry.event)
                .collect()
        } else {
            world.publishing[service as usize]
                .iter()
                .filter_map(|request| match request.task.waiting() {
                    Some(Op::Publish { event }) => Some(event),
                    other => {
                        problems.push(format!("{what}: a request parked at {other:?}"));
                        None
                    }
                })
                .collect()
        };
        if events.len() > MAX_OUTBOX {
            problems.push(format!(
                "{what}: {} events, more than the model holds",
                events.len()
            ));
        }
        for event in events.iter().take(MAX_OUTBOX) {
            match model_event(ids, event) {
                Ok(event) => state.outboxes[service as usize].push(event),
                Err(problem) => problems.push(format!("{what}: {problem}")),
            }
        }
    }
    for request in world.reserving.iter().take(MAX_ORDERS) {
        match request.task.waiting() {
            Some(Op::Reserve { ticket }) => match ids.ticket(ticket) {
                Some(ticket) => state.reservation_requests.push(ticket),
                None => problems.push(format!("a reservation request for unknown ticket {ticket}")),
            },
            other => problems.push(format!("a reservation request parked at {other:?}")),
        }
    }
}

fn observe_broker(world: &World, state: &mut State, problems: &mut Vec<String>) {
    let core = lock_core(&world.core);
    let stream_len = core.stream_len();
    if stream_len > MAX_MESSAGES as u64 {
        problems.push(format!("{stream_len} messages, more than the model holds"));
    }
    for seq in 1..=stream_len.min(MAX_MESSAGES as u64) {
        let what = format!("message {}", seq - 1);
        let decoded = usize::try_from(seq - 1)
            .ok()
            .and_then(|index| world.stream.get(index));
        let event = match decoded.map(|streamed| &streamed.model) {
            Some(Ok(event)) => *event,
            Some(Err(problem)) => {
                problems.push(format!("{what}: {problem}"));
                continue;
            }
            None => {
                problems.push(format!("{what} was never decoded"));
                continue;
            }
        };
        let group = world.groups[event.group() as usize];
        let (status, deliveries) = match core.status(group, seq) {
            Some(CoreStatus::Pending { deliveries } | CoreStatus::Delayed { deliveries }) => {
                (Status::Pending, deliveries)
            }
            Some(CoreStatus::InFlight { deliveries, .. }) => (Status::InFlight, deliveries),
            Some(CoreStatus::Acked) => (Status::Acked, 0),
            Some(CoreStatus::Dead) => (Status::Dead, 0),
            None => {
                problems.push(format!(
                    "{what}: {} does not listen to it",
                    event.group().name()
                ));
                continue;
            }
        };
        state.messages.push(Message::new(
            event,
            status,
            u8::try_from(deliveries).unwrap_or(u8::MAX),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::state::{Budget, Event, Group, Order, Ticket as ModelTicket};
    use model::{Config, Variant};
    use ticketing::events::{OrderCreated, OrderedTicket, TicketCreated, TicketUpdated};
    use ticketing::id::Id;
    use ticketing::records::{Order as Record, Timestamp, UserId};
    use ticketing::store::ReservationCheck;

    use crate::gated::publish_to_core;
    use crate::terms::price_of;

    fn ticket(id: Id, version: u64, price: u8, order_id: Option<Id>) -> Ticket {
        Ticket {
            id,
            title: title_of(price).into(),
            price: price_of(price).unwrap(),
            user_id: UserId::new("owner"),
            version,
            order_id,
            reservation: u64::from(order_id.is_some()),
        }
    }

    /// A world built by hand: ticket 0 at v2 (edited once, then reserved by order 0), its
    /// replica at v1, order 0 active, and three messages in various states. Over 80 lines
    /// because it is one fixture written out field by field, to be read beside the model state
    /// it must abstract to.
    fn hand_built() -> (World, Id, Id) {
        let mut world = World::new(&Config::new(Variant::Reference)).unwrap();
        let (ticket_id, order_id) = (Id::new(), Id::new());
        world.ids.tickets.push(ticket_id);
        world.ids.orders.push(order_id);
        world
            .tickets_store
            .memory()
            .unwrap()
            .insert_now(ticket(ticket_id, 2, 1, Some(order_id)))
            .unwrap();
        world
            .orders_store
            .memory()
            .unwrap()
            .insert_now(TicketReplica {
                id: ticket_id,
                title: title_of(1).into(),
                price: price_of(1).unwrap(),
                version: 1,
            })
            .unwrap();
        let order = Record {
            id: order_id,
            user_id: UserId::new("buyer"),
            status: records::OrderStatus::Created,
            expires_at: Timestamp::from_unix_millis(0),
            ticket_id,
            version: 0,
        };
        world
            .orders_store
            .memory()
            .unwrap()
            .reserve_now(order, price_of(1).unwrap(), ReservationCheck::Atomic, false)
            .unwrap();
        let created = events::Event::TicketCreated(TicketCreated {
            id: ticket_id,
            version: 0,
            title: title_of(0).into(),
            price: price_of(0).unwrap(),
            user_id: UserId::new("owner"),
        });
        let updated = events::Event::TicketUpdated(TicketUpdated {
            id: ticket_id,
            version: 1,
            title: title_of(1).into(),
            price: price_of(1).unwrap(),
            user_id: UserId::new("owner"),
            order_id: None,
        });
        let ordered = events::Event::OrderCreated(OrderCreated {
            id: order_id,
            version: 0,
            status: records::OrderStatus::Created,
            user_id: UserId::new("buyer"),
            expires_at: Timestamp::from_unix_millis(0),
            ticket: OrderedTicket {
                id: ticket_id,
                price: price_of(1).unwrap(),
            },
            reservation: 1,
        });
        for event in [&created, &updated, &ordered] {
            publish_to_core(&world.core, event, None).unwrap();
        }
        {
            let mut core = lock_core(&world.core);
            let (orders, tickets) = (world.groups[0], world.groups[1]);
            // Message 0 acknowledged, message 1 pending after one failed delivery, message 2
            // in flight.
            core.deliver(orders, 1, first_member(&world, Group::Orders))
                .unwrap();
            core.ack(orders, 1);
            core.deliver(orders, 2, first_member(&world, Group::Orders))
                .unwrap();
            core.nak(orders, 2, 1);
            core.deliver(tickets, 3, first_member(&world, Group::Tickets))
                .unwrap();
        }
        world.decode_new_messages();
        (world, ticket_id, order_id)
    }

    fn first_member(world: &World, group: Group) -> ticketing::bus::broker::MemberId {
        world.member_ids[group as usize][0]
    }

    #[test]
    fn a_hand_built_world_maps_onto_the_model_state_it_stands_for() {
        let (world, _, _) = hand_built();
        let mut expected = State::default();
        expected.tickets.push(ModelTicket {
            version: 2,
            price: 1,
            order: Some(0),
            reservation: 1,
        });
        expected.replicas[0] = Some(Replica {
            version: 1,
            price: 1,
        });
        expected.reservations[0] = 1;
        expected.orders.push(Order {
            ticket: 0,
            status: OrderStatus::Created,
            version: 0,
        });
        for (event, status, deliveries) in [
            (
                Event::TicketCreated {
                    ticket: 0,
                    price: 0,
                },
                Status::Acked,
                0,
            ),
            (
                Event::TicketUpdated {
                    ticket: 0,
                    version: 1,
                    price: 1,
                    order: None,
                },
                Status::Pending,
                1,
            ),
            (
                Event::OrderCreated {
                    order: 0,
                    ticket: 0,
                    reservation: 1,
                },
                Status::InFlight,
                1,
            ),
        ] {
            expected
                .messages
                .push(Message::new(event, status, deliveries));
        }
        expected.budget = Budget {
            tickets: 3,
            ..Budget::default()
        };
        let observation = observe(&world, &expected);
        assert_eq!(observation.problems, Vec::<String>::new());
        assert_eq!(observation.state, expected);
    }

    #[test]
    fn what_the_model_cannot_express_is_reported() {
        let (world, ticket_id, _) = hand_built();
        // A title that is not the title at the ticket's price, and an order nobody placed.
        let store = world.tickets_store.memory().unwrap();
        let stored = store.find_now::<Ticket>(ticket_id).unwrap();
        store
            .save_now(Ticket {
                title: "Concert".into(),
                order_id: Some(Id::new()),
                ..stored
            })
            .unwrap();
        let observation = observe(&world, &State::default());
        assert_eq!(observation.problems.len(), 2, "{:?}", observation.problems);
        assert!(observation.problems[0].contains("title \"Concert\""));
        assert!(observation.problems[1].contains("unknown order"));
    }
}
