//! What a task is started from, so that it can be started again: a client request's
//! [`Asked`] (a delivery's is its event, kept in [`Listening`]); and [`World::copy`], which
//! copies the stores and the broker core and starts every parked task again on the copy,
//! handed its original's recorded results up to where the original is parked.
//!
//! The invariant: a copy is independent of its original (nothing but immutable recorded
//! results is shared), and observes as the original does.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use model::state::{Group, Service};
use ticketing::id::Id;
use ticketing::records::UserId;
use ticketing::services::tickets::{self, TicketInput};
use ticketing::services::{ApiError, orders};

use super::{BUYER, Listening, OWNER, Request, World};
use crate::answers;
use crate::gate::{Gate, Task};
use crate::gated::lock_core;
use crate::terms::Refusal;

/// What a client request asks: enough to start its work again on a copy of the world.
#[derive(Clone, Debug)]
pub(super) enum Asked {
    CreateTicket(TicketInput),
    UpdateTicket(Id, TicketInput),
    CreateOrder(Id),
    CancelOrder(Id),
}

impl World {
    /// A client request asking `asked`, not started.
    pub(super) fn request(&self, asked: Asked) -> Request {
        let gate = Gate::new();
        Request {
            task: Task::new(gate.clone(), self.request_work(asked.clone(), &gate)),
            asked,
        }
    }

    /// The work of a request asking `asked`, reaching this world through `gate`.
    fn request_work(
        &self,
        asked: Asked,
        gate: &Gate,
    ) -> impl Future<Output = Result<(), ApiError>> + Send + 'static {
        let outbox = self.uses_outbox();
        let (tickets, orders) = (
            self.tickets_service(gate, None),
            self.orders_service(gate, None),
        );
        let (tickets_store, orders_store) = (self.tickets_store.clone(), self.orders_store.clone());
        let (owner, buyer) = (UserId::new(OWNER), UserId::new(BUYER));
        async move {
            match asked {
                Asked::CreateTicket(input) => {
                    let answer = tickets::create_ticket(&tickets, &owner, input).await;
                    answers::checked(answer, &tickets_store, outbox)
                }
                Asked::UpdateTicket(id, input) => {
                    let answer = tickets::update_ticket(&tickets, &owner, id, input).await;
                    answers::checked(answer, &tickets_store, outbox)
                }
                Asked::CreateOrder(ticket) => {
                    let answer = orders::create_order(&orders, &buyer, ticket).await;
                    answers::checked(answer, &orders_store, outbox)
                }
                Asked::CancelOrder(order) => {
                    let answer = orders::cancel_order(&orders, &buyer, order).await;
                    answers::checked(answer, &orders_store, outbox)
                }
            }
        }
    }

    /// An independent copy of this world, for the exhaustive replay's depth-first walk: the
    /// stores and the broker core are copied, and every parked task is re-created on the copy
    /// ([`Task::recreate`]), parked where the original is. Only memory stores are copied.
    pub fn copy(&self) -> Result<World, Refusal> {
        let mut world = World {
            variant: self.variant,
            service_config: self.service_config.clone(),
            members: self.members,
            tickets_store: self.tickets_store.copy()?,
            orders_store: self.orders_store.copy()?,
            core: Arc::new(Mutex::new(lock_core(&self.core).clone())),
            groups: self.groups,
            member_ids: self.member_ids.clone(),
            journal: self.journal.copy(),
            ids: self.ids.clone(),
            listening: [
                (0..self.members).map(|_| None).collect(),
                (0..self.members).map(|_| None).collect(),
            ],
            publishing: [Vec::new(), Vec::new()],
            reserving: Vec::new(),
            stream: self.stream.clone(),
            ghost: self.ghost,
            problems: self.problems.clone(),
            versions: self.versions.clone(),
            _lease: None,
        };
        for group in Group::ALL {
            for (member, slot) in self.listening[group as usize].iter().enumerate() {
                if let Some(listening) = slot {
                    let copy = world.copy_listening(group, listening)?;
                    world.listening[group as usize][member] = Some(copy);
                }
            }
        }
        for service in [Service::Tickets, Service::Orders] {
            for request in &self.publishing[service as usize] {
                let copy = world.copy_request(request)?;
                world.publishing[service as usize].push(copy);
            }
        }
        for request in &self.reserving {
            let copy = world.copy_request(request)?;
            world.reserving.push(copy);
        }
        Ok(world)
    }

    fn copy_listening(&self, group: Group, original: &Listening) -> Result<Listening, Refusal> {
        let gate = Gate::new();
        let acked = Arc::new(AtomicBool::new(original.acked.load(Ordering::SeqCst)));
        let at = (original.seq, original.delivery);
        let work = self.handling(group, &original.event, at, &gate, &acked);
        let task = Task::recreate(&original.task, gate, work)
            .map_err(|why| Refusal(format!("{} member's task: {why}", group.name())))?;
        Ok(Listening {
            task,
            event: original.event.clone(),
            seq: original.seq,
            delivery: original.delivery,
            acked,
        })
    }

    fn copy_request(&self, original: &Request) -> Result<Request, Refusal> {
        let gate = Gate::new();
        let work = self.request_work(original.asked.clone(), &gate);
        let task = Task::recreate(&original.task, gate, work)
            .map_err(|why| Refusal(format!("request {:?}: {why}", original.asked)))?;
        Ok(Request {
            task,
            asked: original.asked.clone(),
        })
    }
}
