//! The implementation, in process, stepped one model action at a time.
//!
//! A [`World`] holds what a running system holds: the tickets service's and the orders
//! service's stores (in memory, or on PostgreSQL: [`crate::backend`]), one [`BrokerCore`] with the two queue groups and their members,
//! and the tasks in progress: each busy member's listener handling one delivery (the service's
//! `Listener::handle`, as a member runtime calls it; the queue groups' names and subjects are
//! the `Listener` impls'), and the HTTP
//! requests the model splits into two steps (a no-outbox request between its save and its
//! publish, a racy reservation between its check and its insert). Every task reaches the
//! stores and the core through gated wrappers ([`crate::gated`]), so a step runs exactly the
//! operations the model's step stands for and nothing else runs meanwhile.
//!
//! Naming (the model's, SPEC.md section 4): ticket k is the k-th ticket created, order k the
//! k-th order created, message k the stream's sequence k + 1, member m of a group the m-th
//! member that joined it. Every ticket has one owner and every order one buyer.
//!
//! The world's ghost variables are kept in its `ghosts` module. [`World::copy`] makes an
//! independent copy (the exhaustive replay branches on copies): the stores and the core are
//! copied, and each parked task is started afresh on the copy and handed its original's
//! recorded results up to where the original is parked ([`Task::recreate`]).
//!
//! The invariant between steps: no task is running; every member task is parked at its gate
//! at the operation the model's next step for that member names; with the outbox, both
//! outboxes are relayed (the model publishes in the writing step); nak delays have elapsed
//! (the model keeps a message that is not applicable yet pending and undeliverable).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use crate::backend::{Backend, Lease, Store};
use crate::gate::{Gate, Op, Parked, StepKind, Task};
use crate::gated::{
    CorePublisher, GatedHandle, GatedPublisher, GatedStore, Journal, SharedCore, lock_core,
};
pub use crate::terms::Refusal;
use crate::terms::{Ids, model_event, model_price, price_of, title_of};
use model::state::{Ghost, Group, Member, Service, State, Step};
use model::{Action, Config};
use ticketing::bus::broker::{BrokerCore, DuplicateWindow, GroupId, MemberId, Seq, Status};
use ticketing::events::{Event, Subject};
use ticketing::id::Id;
use ticketing::records::{Ticket, Version};
use ticketing::services::listener::Listener;
use ticketing::services::orders::OrdersService;
use ticketing::services::relay::relay_batch;
use ticketing::services::tickets::{TicketInput, TicketsService};
use ticketing::services::{ApiError, ListenerError, Outcome, ServiceConfig};

mod copies;
mod ghosts;

use copies::Asked;

/// The user who creates and edits every ticket.
pub const OWNER: &str = "owner";
/// The user who places and cancels every order.
pub const BUYER: &str = "buyer";

fn refuse<T>(reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(reason.into()))
}

/// A member's listener task: one delivery being handled.
pub(crate) struct Listening {
    pub(crate) task: Task<Result<Outcome, ListenerError>>,
    /// The event delivered.
    event: Event,
    /// The message's stream sequence.
    pub(crate) seq: Seq,
    /// Which delivery of it this is.
    pub(crate) delivery: u32,
    /// Set once the delivery's handle acknowledged.
    pub(crate) acked: Arc<AtomicBool>,
}

/// A message of the stream, decoded once (the stream is append-only).
#[derive(Clone)]
pub(crate) struct Streamed {
    /// The event, if the payload decodes.
    pub(crate) event: Option<Event>,
    /// The event in the model's terms, or why it cannot be.
    pub(crate) model: Result<model::state::Event, String>,
}

/// An HTTP request the model splits into two steps, parked between them.
pub(crate) struct Request {
    pub(crate) task: Task<Result<(), ApiError>>,
    asked: Asked,
}

/// The implementation of one variant, in process.
pub struct World {
    pub(crate) variant: model::Variant,
    service_config: ServiceConfig,
    pub(crate) members: usize,
    pub(crate) tickets_store: Store,
    pub(crate) orders_store: Store,
    pub(crate) core: SharedCore,
    /// Indexed by `model::state::Group as usize`.
    pub(crate) groups: [GroupId; 2],
    pub(crate) member_ids: [Vec<MemberId>; 2],
    journal: Journal,
    pub(crate) ids: Ids,
    /// Busy members' tasks, by group and member.
    pub(crate) listening: [Vec<Option<Listening>>; 2],
    /// No-outbox requests between their save and their publish, by `Service as usize`.
    pub(crate) publishing: [Vec<Request>; 2],
    /// Racy reservations between their check and their insert.
    pub(crate) reserving: Vec<Request>,
    /// The stream's messages decoded so far, by sequence - 1.
    pub(crate) stream: Vec<Streamed>,
    /// The harness's ghost variables (kept in `ghosts`; the abstraction function hands them
    /// over as they are).
    pub(crate) ghost: Ghost,
    /// What the harness saw during steps that the model's state cannot express.
    pub(crate) problems: Vec<String>,
    /// The last version seen of every record, to notice one going down.
    versions: HashMap<(&'static str, Id), Version>,
    /// Hands the stores back to the backend when the world ends: last, so it drops after
    /// every task that could still write to them.
    _lease: Option<Lease>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("variant", &self.variant)
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

/// The tickets service as a stepped task runs it.
type Tickets = TicketsService<GatedStore, GatedPublisher>;
/// The orders service as a stepped task runs it.
type Orders = OrdersService<GatedStore, GatedPublisher>;

/// The model's queue group `group`: the name and subjects of the listener behind it.
fn queue_group(group: Group) -> (&'static str, &'static [Subject]) {
    match group {
        Group::Orders => (Orders::QUEUE_GROUP, Orders::SUBJECTS),
        Group::Tickets => (Tickets::QUEUE_GROUP, Tickets::SUBJECTS),
    }
}

/// The work of a member handling one delivery, as a member runtime runs it: the listener's
/// `handle`.
type Handling = Pin<Box<dyn Future<Output = Result<Outcome, ListenerError>> + Send>>;

fn handling<L: Listener + 'static>(listener: L, event: Event, handle: GatedHandle) -> Handling {
    Box::pin(async move { listener.handle(&event, &handle).await })
}

/// The implementation's variant of the model's (they are matched by SPEC.md's name).
pub fn implementation_variant(
    variant: model::Variant,
) -> Result<ticketing::variant::Variant, Refusal> {
    variant.name().parse().map_err(|error| {
        Refusal(format!(
            "the implementation has no variant {}: {error}",
            variant.name()
        ))
    })
}

/// Where a member's task stops in a step: at the operation the model's next step for it
/// names, or at an operation the model never merges into another step (a save, a publish,
/// an ack other than `ack-before-save`'s first), so a task that disagrees with the model
/// stops where it disagrees instead of running on.
fn member_stop(target: Member, delivering: bool, acks_first: bool) -> impl Fn(&Op) -> bool {
    let target = match target {
        Member::Idle => None,
        Member::Busy { step, .. } => Some(match step {
            Step::Read => StepKind::Read,
            Step::Save { .. } => StepKind::Save,
            Step::Publish { .. } => StepKind::Publish,
            Step::Ack => StepKind::Ack,
        }),
    };
    move |op| {
        let kind = op.step_kind();
        if kind.is_some() && kind == target {
            return true;
        }
        match kind {
            // Merged: the delivery's first store operation, the re-read after a failed save,
            // a failed delivery's nak.
            None | Some(StepKind::Read) => false,
            Some(StepKind::Ack) => !(delivering && acks_first),
            Some(StepKind::Save | StepKind::Publish) => true,
        }
    }
}

impl World {
    /// A fresh implementation of `config`'s variant in memory: empty stores, an empty
    /// stream, both queue groups with `config.members` members each and `config.max_deliver`.
    pub fn new(config: &Config) -> Result<Self, Refusal> {
        Self::on(config, &Backend::Memory)
    }

    /// [`World::new`] with the services' stores on `backend` (fresh ones: empty).
    pub fn on(config: &Config, backend: &Backend) -> Result<Self, Refusal> {
        let variant = implementation_variant(config.variant)?;
        let stores = backend
            .stores(variant)
            .map_err(|why| Refusal(format!("the services' stores could not be made: {why}")))?;
        let mut core = BrokerCore::new(DuplicateWindow::Unbounded);
        let members = usize::from(config.members);
        let mut groups = Vec::new();
        let mut member_ids: [Vec<MemberId>; 2] = [Vec::new(), Vec::new()];
        for group in Group::ALL {
            let (name, subjects) = queue_group(group);
            let subjects: Vec<&str> = subjects.iter().map(|subject| subject.as_str()).collect();
            let id = core
                .group(name, &subjects, u32::from(config.max_deliver))
                .map_err(|error| Refusal(error.to_string()))?;
            for _ in 0..members {
                let member = core.join(id).map_err(|error| Refusal(error.to_string()))?;
                member_ids[group as usize].push(member);
            }
            groups.push(id);
        }
        let groups: [GroupId; 2] = [groups[0], groups[1]];
        Ok(Self {
            variant: config.variant,
            service_config: ServiceConfig::new(variant),
            members,
            tickets_store: stores.tickets,
            orders_store: stores.orders,
            core: Arc::new(Mutex::new(core)),
            groups,
            member_ids,
            journal: Journal::default(),
            ids: Ids::default(),
            listening: [
                (0..members).map(|_| None).collect(),
                (0..members).map(|_| None).collect(),
            ],
            publishing: [Vec::new(), Vec::new()],
            reserving: Vec::new(),
            stream: Vec::new(),
            ghost: Ghost::default(),
            problems: Vec::new(),
            versions: HashMap::new(),
            _lease: stores.lease,
        })
    }

    fn tickets_service(&self, gate: &Gate, by: Option<Seq>) -> Tickets {
        TicketsService::new(
            GatedStore::new(
                self.tickets_store.clone(),
                gate.clone(),
                self.journal.clone(),
                by,
            ),
            GatedPublisher::new(Arc::clone(&self.core), gate.clone()),
            self.service_config.clone(),
        )
    }

    fn orders_service(&self, gate: &Gate, by: Option<Seq>) -> Orders {
        OrdersService::new(
            GatedStore::new(
                self.orders_store.clone(),
                gate.clone(),
                self.journal.clone(),
                by,
            ),
            GatedPublisher::new(Arc::clone(&self.core), gate.clone()),
            self.service_config.clone(),
        )
    }

    fn ticket_id(&self, ticket: u8) -> Result<Id, Refusal> {
        match self.ids.tickets.get(usize::from(ticket)) {
            Some(id) => Ok(*id),
            None => refuse(format!("the implementation has no ticket {ticket}")),
        }
    }

    fn order_id(&self, order: u8) -> Result<Id, Refusal> {
        match self.ids.orders.get(usize::from(order)) {
            Some(id) => Ok(*id),
            None => refuse(format!("the implementation has no order {order}")),
        }
    }

    fn uses_outbox(&self) -> bool {
        self.variant.uses_outbox()
    }

    /// Takes `action`, whose outcome the model expects to be `expected`, then settles the
    /// step (journal, nak delays, relays). The expected state only says how far each task
    /// runs (where the model's step ends for it); what the task does is the implementation's.
    pub fn perform(&mut self, action: Action, expected: &State) -> Result<(), Refusal> {
        let result = self.take(action, expected);
        self.settle_step();
        result
    }

    fn take(&mut self, action: Action, expected: &State) -> Result<(), Refusal> {
        match action {
            Action::CreateTicket => {
                let request = self.ticket_request(None)?;
                self.client_request(Service::Tickets, request, false)
            }
            Action::UpdatePrice { ticket } => {
                let request = self.ticket_request(Some(ticket))?;
                self.client_request(Service::Tickets, request, false)
            }
            Action::CreateOrder { ticket } => {
                let request = self.order_request(ticket)?;
                self.client_request(Service::Orders, request, false)
            }
            Action::CheckReservation { ticket } => self.check_reservation(ticket),
            Action::InsertOrder { request } => {
                let request = take_parked(&mut self.reserving, request, "reservation request")?;
                self.client_request(Service::Orders, request, true)
            }
            Action::CancelOrder { order } => {
                let request = self.cancel_request(order)?;
                self.client_request(Service::Orders, request, false)
            }
            Action::PublishSaved { service, entry } => {
                let parked = &mut self.publishing[service as usize];
                let mut request = take_parked(parked, entry, "request waiting to publish")?;
                match request.task.run_to_completion()? {
                    Ok(()) => Ok(()),
                    Err(error) => refuse(format!("the request failed: {error}")),
                }
            }
            // Dropping a parked request is the crash: it never publishes, or never inserts.
            Action::CrashBeforePublish { service, entry } => {
                let parked = &mut self.publishing[service as usize];
                take_parked(parked, entry, "request waiting to publish").map(drop)
            }
            Action::CrashBeforeInsert { request } => {
                take_parked(&mut self.reserving, request, "reservation request").map(drop)
            }
            Action::Deliver {
                group,
                member,
                message,
            } => self.deliver(group, member, message, expected),
            Action::Read { group, member }
            | Action::Save { group, member }
            | Action::Publish { group, member }
            | Action::Ack { group, member } => {
                let (g, m) = (group as usize, usize::from(member));
                let Some(listening) = self.listening[g].get_mut(m).and_then(Option::take) else {
                    return refuse(format!("{} member {member} is idle", group.name()));
                };
                self.advance_member(group, member, listening, false, expected)
            }
            Action::CrashMember { group, member } => self.crash_member(group, member),
            Action::ExpireAckWait { message } => self.expire_ack_wait(message),
            Action::DuplicatePublish { message } => self.duplicate_publish(message),
        }
    }

    /// `POST /api/tickets` (no ticket) or `PUT /api/tickets/:id`: the client edits what it
    /// sees, the ticket's price one edit further (and the title at that price).
    fn ticket_request(&self, ticket: Option<u8>) -> Result<Request, Refusal> {
        let edited = match ticket {
            None => None,
            Some(ticket) => {
                let id = self.ticket_id(ticket)?;
                let found = self.tickets_store.find_now::<Ticket>(id).map_err(|error| {
                    Refusal(format!("ticket {ticket} could not be read: {error}"))
                })?;
                let Some(current) = found else {
                    return refuse(format!("ticket {ticket} is not in the tickets store"));
                };
                let Some(price) = model_price(current.price).and_then(|p| p.checked_add(1)) else {
                    return refuse(format!(
                        "ticket {ticket}'s price {} is not one the harness set",
                        current.price.cents()
                    ));
                };
                Some((id, price))
            }
        };
        let price = edited.map_or(0, |(_, price)| price);
        let input = TicketInput {
            title: title_of(price).into(),
            price: price_of(price)?,
        };
        Ok(self.request(match edited {
            None => Asked::CreateTicket(input),
            Some((id, _)) => Asked::UpdateTicket(id, input),
        }))
    }

    /// `DELETE /api/orders/:id`.
    fn cancel_request(&self, order: u8) -> Result<Request, Refusal> {
        Ok(self.request(Asked::CancelOrder(self.order_id(order)?)))
    }

    /// The racy `POST /api/orders`, up to its insert (after its `isReserved` check).
    fn check_reservation(&mut self, ticket: u8) -> Result<(), Refusal> {
        let mut request = self.order_request(ticket)?;
        match request
            .task
            .advance(false, |op| matches!(op, Op::Reserve { .. }))?
        {
            Parked::At(_) => {
                self.reserving.push(request);
                Ok(())
            }
            Parked::Done(result) => refuse(format!(
                "the order request finished before its insert: {}",
                describe_result(&result)
            )),
        }
    }

    fn crash_member(&mut self, group: Group, member: u8) -> Result<(), Refusal> {
        let (g, m) = (group as usize, usize::from(member));
        let Some(slot) = self.listening[g].get_mut(m) else {
            return refuse(format!("{} has no member {member}", group.name()));
        };
        // Dropping the task is the crash: it performs nothing more.
        if slot.take().is_none() {
            return refuse(format!("{} member {member} is idle", group.name()));
        }
        lock_core(&self.core)
            .crash(self.groups[g], self.member_ids[g][m])
            .map(drop)
            .map_err(|error| Refusal(error.to_string()))
    }

    fn expire_ack_wait(&mut self, message: u8) -> Result<(), Refusal> {
        let seq = Seq::from(message) + 1;
        let mut core = lock_core(&self.core);
        let Some(group) = self.groups.into_iter().find(|g| core.listens_to(*g, seq)) else {
            return refuse(format!("no queue group listens to message {message}"));
        };
        match core.status(group, seq) {
            Some(Status::InFlight { deliveries, .. }) => {
                core.expire(group, seq, deliveries);
                Ok(())
            }
            other => refuse(format!("message {message} is not in flight: {other:?}")),
        }
    }

    fn duplicate_publish(&mut self, message: u8) -> Result<(), Refusal> {
        let seq = Seq::from(message) + 1;
        let mut core = lock_core(&self.core);
        let Some(stored) = core.message(seq) else {
            return refuse(format!("the stream has no message {message}"));
        };
        let (subject, payload) = (stored.subject.to_owned(), stored.payload.clone());
        // Published again without a publish id (a publisher's retry, or a relay's republish
        // after the broker's dedup window): the broker stores it again.
        core.publish(&subject, payload, None);
        Ok(())
    }

    fn order_request(&self, ticket: u8) -> Result<Request, Refusal> {
        Ok(self.request(Asked::CreateOrder(self.ticket_id(ticket)?)))
    }

    /// Runs a client's request through the step: to completion with the outbox; without,
    /// to its publish, where it waits as the model's pending publish.
    fn client_request(
        &mut self,
        service: Service,
        mut request: Request,
        pass_first: bool,
    ) -> Result<(), Refusal> {
        let outbox = self.uses_outbox();
        let parked = request
            .task
            .advance(pass_first, |op| !outbox && matches!(op, Op::Publish { .. }))?;
        match parked {
            Parked::At(_) => {
                self.publishing[service as usize].push(request);
                Ok(())
            }
            Parked::Done(Ok(())) if outbox => Ok(()),
            Parked::Done(result) => refuse(format!(
                "the {} request {}",
                service.name(),
                match result {
                    Ok(()) => "completed without publishing its event".to_owned(),
                    Err(error) => format!("failed: {error}"),
                }
            )),
        }
    }

    fn deliver(
        &mut self,
        group: Group,
        member: u8,
        message: u8,
        expected: &State,
    ) -> Result<(), Refusal> {
        let (g, m) = (group as usize, usize::from(member));
        match self.listening[g].get(m) {
            None => return refuse(format!("{} has no member {member}", group.name())),
            Some(Some(_)) => return refuse(format!("{} member {member} is busy", group.name())),
            Some(None) => {}
        }
        let seq = Seq::from(message) + 1;
        let delivery = lock_core(&self.core)
            .deliver(self.groups[g], seq, self.member_ids[g][m])
            .map_err(|error| Refusal(format!("the broker refused the delivery: {error}")))?;
        let event = Event::decode(&delivery.subject, &delivery.payload)
            .map_err(|error| Refusal(format!("message {message} does not decode: {error}")))?;
        let gate = Gate::new();
        let acked = Arc::new(AtomicBool::new(false));
        let work = self.handling(group, &event, (seq, delivery.delivery_count), &gate, &acked);
        let listening = Listening {
            task: Task::new(gate, work),
            event,
            seq,
            delivery: delivery.delivery_count,
            acked,
        };
        self.advance_member(group, member, listening, true, expected)
    }

    /// The work of `group`'s member handling delivery `delivery` of `event` (stream sequence
    /// `seq`), reaching this world through `gate`; `acked` is set once it acknowledges.
    fn handling(
        &self,
        group: Group,
        event: &Event,
        (seq, delivery): (Seq, u32),
        gate: &Gate,
        acked: &Arc<AtomicBool>,
    ) -> Handling {
        let handle = GatedHandle::new(
            Arc::clone(&self.core),
            gate.clone(),
            (self.groups[group as usize], seq, delivery),
            Arc::clone(acked),
        );
        match group {
            Group::Orders => handling(self.orders_service(gate, Some(seq)), event.clone(), handle),
            Group::Tickets => {
                handling(self.tickets_service(gate, Some(seq)), event.clone(), handle)
            }
        }
    }

    /// Advances a member's task through one step: a delivery starts it; any other step lets
    /// the operation it waits at through first. It stops where the model's next step for the
    /// member begins (or completes, if the model's member is idle after the step).
    fn advance_member(
        &mut self,
        group: Group,
        member: u8,
        mut listening: Listening,
        delivering: bool,
        expected: &State,
    ) -> Result<(), Refusal> {
        let target = expected.group_members(group)[usize::from(member)];
        let stop = member_stop(target, delivering, !self.variant.acks_after_save());
        let parked = listening.task.advance(!delivering, stop)?;
        let slot = &mut self.listening[group as usize][usize::from(member)];
        match parked {
            Parked::At(_) => {
                *slot = Some(listening);
                Ok(())
            }
            Parked::Done(Ok(_outcome)) => Ok(()),
            Parked::Done(Err(error)) => refuse(format!(
                "{} member {member}'s listener failed: {error}",
                group.name()
            )),
        }
    }

    /// After every step: journal into ghost variables, elapsed nak delays, the relays, and
    /// version regressions.
    fn settle_step(&mut self) {
        self.apply_journal();
        {
            let mut core = lock_core(&self.core);
            let stream_len = core.stream_len();
            for group in self.groups {
                for seq in 1..=stream_len {
                    if let Some(Status::Delayed { deliveries }) = core.status(group, seq) {
                        core.release(group, seq, deliveries);
                    }
                }
            }
        }
        if self.uses_outbox() {
            let publisher = CorePublisher::new(Arc::clone(&self.core));
            for (service, store) in [
                ("tickets", &self.tickets_store),
                ("orders", &self.orders_store),
            ] {
                match store.run_now(relay_batch(store, &publisher, 1024)) {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => self
                        .problems
                        .push(format!("the {service} relay failed: {error}")),
                    None => self
                        .problems
                        .push(format!("the {service} relay did not finish at once")),
                }
            }
        }
        self.decode_new_messages();
        self.notice_regressions();
    }

    /// Decodes the messages published since the last step (their records are all known by
    /// now: an event is published after the write that creates its record).
    pub(crate) fn decode_new_messages(&mut self) {
        let core = lock_core(&self.core);
        for seq in self.stream.len() as Seq + 1..=core.stream_len() {
            let event = core
                .message(seq)
                .ok_or_else(|| "missing from the stream".to_owned())
                .and_then(|stored| {
                    Event::decode(stored.subject, stored.payload).map_err(|e| e.to_string())
                });
            self.stream.push(match event {
                Ok(event) => Streamed {
                    model: model_event(&self.ids, &event),
                    event: Some(event),
                },
                Err(problem) => Streamed {
                    event: None,
                    model: Err(problem),
                },
            });
        }
    }

    /// The event of the message at `seq`, decoded.
    pub(crate) fn stream_event(&self, seq: Seq) -> Option<Event> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.stream.get(index)?.event.clone()
    }
}

/// Takes the parked request at `index` (the model's index into the same list).
fn take_parked(parked: &mut Vec<Request>, index: u8, what: &str) -> Result<Request, Refusal> {
    let index = usize::from(index);
    if index >= parked.len() {
        return refuse(format!("no {what} {index} is waiting"));
    }
    Ok(parked.remove(index))
}

fn describe_result(result: &Result<(), ApiError>) -> String {
    match result {
        Ok(()) => "it succeeded".to_owned(),
        Err(error) => format!("it failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Variant;

    fn world(variant: Variant) -> World {
        World::new(&Config::new(variant)).unwrap()
    }

    #[test]
    fn every_model_variant_has_an_implementation_variant() {
        for variant in Variant::ALL {
            let implementation = implementation_variant(variant).unwrap();
            assert_eq!(implementation.name(), variant.name());
        }
    }

    #[test]
    fn a_member_stops_where_its_next_model_step_begins() {
        let save = Member::Busy {
            message: 0,
            delivery: 1,
            acked: false,
            step: Step::Save { read_version: 0 },
        };
        let stop = member_stop(save, true, false);
        let id = Id::new();
        let read = Op::Read {
            what: "ticket",
            id: Some(id),
        };
        assert!(!stop(&read), "a delivery's read is part of the delivery");
        assert!(stop(&Op::Save {
            kind: "ticket",
            id,
            read_version: 0
        }));
        assert!(
            stop(&Op::Ack),
            "an ack the model does not expect is not run"
        );
        let stop_idle = member_stop(Member::Idle, true, true);
        assert!(!stop_idle(&Op::Ack), "ack-before-save acks as it receives");
        assert!(!stop_idle(&Op::Nak {
            delay: std::time::Duration::ZERO
        }));
    }

    #[test]
    fn creating_a_ticket_with_the_outbox_stores_and_publishes_it_in_one_step() {
        let mut world = world(Variant::Reference);
        let model = model::TicketingModel::new(Config::new(Variant::Reference));
        let initial = stateright::Model::init_states(&model).remove(0);
        let expected = model.step(&initial, Action::CreateTicket).unwrap();
        world.perform(Action::CreateTicket, &expected).unwrap();
        assert_eq!(world.ids.tickets.len(), 1);
        assert_eq!(lock_core(&world.core).stream_len(), 1);
        assert!(world.tickets_store.outbox_now().unwrap().is_empty());
        assert!(world.problems.is_empty(), "{:?}", world.problems);
    }

    #[test]
    fn without_the_outbox_a_request_waits_at_its_publish() {
        let mut world = world(Variant::NoOutbox);
        let model = model::TicketingModel::new(Config::new(Variant::NoOutbox));
        let initial = stateright::Model::init_states(&model).remove(0);
        let expected = model.step(&initial, Action::CreateTicket).unwrap();
        world.perform(Action::CreateTicket, &expected).unwrap();
        assert_eq!(world.publishing[Service::Tickets as usize].len(), 1);
        assert_eq!(lock_core(&world.core).stream_len(), 0, "not published yet");
        let publish = Action::PublishSaved {
            service: Service::Tickets,
            entry: 0,
        };
        let next = model.step(&expected, publish).unwrap();
        world.perform(publish, &next).unwrap();
        assert_eq!(lock_core(&world.core).stream_len(), 1);
        assert!(world.publishing[Service::Tickets as usize].is_empty());
    }

    #[test]
    fn an_action_on_something_that_does_not_exist_is_refused() {
        let mut world = world(Variant::Reference);
        let state = State::default();
        assert!(
            world
                .perform(Action::UpdatePrice { ticket: 0 }, &state)
                .is_err()
        );
        let deliver = Action::Deliver {
            group: Group::Orders,
            member: 0,
            message: 0,
        };
        let refusal = world.perform(deliver, &state).unwrap_err();
        assert!(refusal.0.contains("refused the delivery"), "{refusal}");
    }
}
