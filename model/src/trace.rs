//! Counterexamples, for people and for the harness.
//!
//! For people: each step is one numbered line saying what happened, followed by the state
//! change that matters (records written, messages published or acknowledged, members'
//! progress). For the harness: a JSON [`Trace`] of actions with the model state expected after
//! each (SPEC.md section 4).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use stateright::{Model, Path};

use crate::action::{Action, Actor};
use crate::config::{Config, Variant};
use crate::properties::Prop;
use crate::state::{Event, Group, Member, Service, State, Status, Step};
use crate::system::TicketingModel;

/// A path through the model, with the state expected after every action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The design checked.
    pub variant: Variant,
    /// The bounds it was checked at.
    pub config: Config,
    /// The property this trace violates, if it is a counterexample.
    pub violates: Option<String>,
    /// The initial state.
    pub initial: State,
    /// The steps.
    pub steps: Vec<TraceStep>,
}

/// One step of a [`Trace`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// What happened.
    pub action: Action,
    /// In words.
    pub description: String,
    /// The state after it.
    pub state: State,
}

impl Trace {
    /// The trace of `path` (as stateright reports a discovery).
    pub fn from_path(
        model: &TicketingModel,
        violates: Option<Prop>,
        path: &Path<State, Action>,
    ) -> Self {
        let pairs = path.clone().into_vec();
        let initial = pairs
            .first()
            .map(|(state, _)| state.clone())
            .unwrap_or_default();
        let mut steps = Vec::new();
        for window in pairs.windows(2) {
            let (last, action) = &window[0];
            let (next, _) = &window[1];
            if let Some(action) = action {
                steps.push(TraceStep {
                    action: *action,
                    description: describe_step(last, action, next),
                    state: next.clone(),
                });
            }
        }
        Self {
            variant: model.config.variant,
            config: model.config,
            violates: violates.map(|prop| prop.name().to_owned()),
            initial,
            steps,
        }
    }

    /// The trace of `actions` taken from the initial state, or the index of the first action
    /// that is not enabled.
    pub fn from_actions(model: &TicketingModel, actions: &[Action]) -> Result<Self, usize> {
        let initial = model.init_states().remove(0);
        let mut state = initial.clone();
        let mut steps = Vec::new();
        for (index, action) in actions.iter().enumerate() {
            let next = model.step(&state, *action).ok_or(index)?;
            steps.push(TraceStep {
                action: *action,
                description: describe_step(&state, action, &next),
                state: next.clone(),
            });
            state = next;
        }
        Ok(Self {
            variant: model.config.variant,
            config: model.config,
            violates: None,
            initial,
            steps,
        })
    }

    /// Checks the model itself reproduces the trace: each action enabled, each state as
    /// recorded. Returns the first step that differs.
    pub fn check_against(&self, model: &TicketingModel) -> Result<(), String> {
        let mut state = model.init_states().remove(0);
        if state != self.initial {
            return Err("the initial state differs from the model's".into());
        }
        for (number, step) in self.steps.iter().enumerate() {
            let next = model
                .step(&state, step.action)
                .ok_or_else(|| format!("step {}: {:?} is not enabled", number + 1, step.action))?;
            if next != step.state {
                return Err(format!(
                    "step {}: the model reaches a different state",
                    number + 1
                ));
            }
            state = next;
        }
        Ok(())
    }

    /// The numbered, human-readable form.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (number, step) in self.steps.iter().enumerate() {
            let _ = writeln!(text, "{:>4}. {}", number + 1, step.description);
        }
        text
    }
}

/// A liveness counterexample completed to a quiescent state: the checker reports a liveness
/// violation as soon as it is inevitable (see [`crate::properties::doomed`]); this lets the
/// system finish its work (clients and the adversary stop: system actions only, the first
/// enabled each time) until it has nothing left to do, so the trace ends where the property
/// is judged. Safety counterexamples are returned as they are.
///
/// # Panics
/// If the completed run ends converged: the doomed predicate that reported the violation
/// was wrong, a bug in the model that must not go unnoticed.
pub fn complete_to_quiescence(
    model: &TicketingModel,
    prop: Prop,
    path: Path<State, Action>,
) -> Path<State, Action> {
    if !prop.is_liveness() || model.is_quiescent(path.last_state()) {
        return path;
    }
    let pairs = path.into_vec();
    let initial = pairs[0].0.clone();
    let mut actions: Vec<Action> = pairs.iter().filter_map(|(_, action)| *action).collect();
    let mut state = pairs[pairs.len() - 1].0.clone();
    while let Some(action) = first_system_action(model, &state) {
        let Some(next) = model.next_state(&state, action) else {
            break;
        };
        actions.push(action);
        state = next;
    }
    assert!(
        !prop.converged(&state),
        "model bug: a run doomed to violate {} ended converged",
        prop.name()
    );
    Path::from_actions(model, initial, &actions)
        .expect("a path built from enabled actions is a path of the model")
}

/// The first enabled system action, if any.
pub fn first_system_action(model: &TicketingModel, state: &State) -> Option<Action> {
    let mut first = None;
    let _ = model.for_each_action(state, &mut |action| {
        if action.actor() == Actor::System {
            first = Some(action);
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    first
}

impl TicketingModel {
    /// The state after `action`, if it is enabled in `state`.
    pub fn step(&self, state: &State, action: Action) -> Option<State> {
        let mut enabled = Vec::new();
        self.actions(state, &mut enabled);
        if !enabled.contains(&action) {
            return None;
        }
        self.next_state(state, action)
    }
}

/// An event, compactly: `ticket:updated(t0 v2 price 2 order o1)`.
pub fn describe_event(event: &Event) -> String {
    match *event {
        Event::TicketCreated { ticket, price } => {
            format!("ticket:created(t{ticket} v0 price {price})")
        }
        Event::TicketUpdated {
            ticket,
            version,
            price,
            order,
        } => format!(
            "ticket:updated(t{ticket} v{version} price {price}{})",
            order.map_or(String::new(), |o| format!(" order o{o}"))
        ),
        Event::OrderCreated {
            order,
            ticket,
            reservation,
        } => format!("order:created(o{order} t{ticket} reservation {reservation})"),
        Event::OrderCancelled {
            order,
            ticket,
            reservation,
        } => format!("order:cancelled(o{order} t{ticket} reservation {reservation})"),
    }
}

fn member_name(group: Group, member: u8) -> String {
    format!("{} member {member}", group.name())
}

/// What an action is, in words (stateright's explorer lists actions with this).
pub fn describe_action(action: &Action) -> String {
    match *action {
        Action::CreateTicket => "client creates a ticket".into(),
        Action::UpdatePrice { ticket } => format!("client updates the price of ticket {ticket}"),
        Action::CreateOrder { ticket } => format!("client orders ticket {ticket}"),
        Action::CheckReservation { ticket } => {
            format!("client orders ticket {ticket}: isReserved says no")
        }
        Action::InsertOrder { request } => {
            format!("reservation request {request} inserts its order")
        }
        Action::CancelOrder { order } => format!("client cancels order {order}"),
        Action::PublishSaved { service, entry } => {
            format!(
                "{} HTTP handler publishes saved event {entry}",
                service.name()
            )
        }
        Action::Deliver {
            group,
            member,
            message,
        } => format!(
            "broker delivers message {message} to {}",
            member_name(group, member)
        ),
        Action::Read { group, member } => format!("{} reads", member_name(group, member)),
        Action::Save { group, member } => format!("{} saves", member_name(group, member)),
        Action::Publish { group, member } => format!("{} publishes", member_name(group, member)),
        Action::Ack { group, member } => format!("{} acks", member_name(group, member)),
        Action::CrashMember { group, member } => {
            format!("CRASH: {} dies mid-handler", member_name(group, member))
        }
        Action::CrashBeforePublish { service, entry } => format!(
            "CRASH: {} HTTP handler dies after saving, before publishing event {entry}",
            service.name()
        ),
        Action::CrashBeforeInsert { request } => {
            format!("CRASH: reservation request {request} dies between its check and its insert")
        }
        Action::ExpireAckWait { message } => {
            format!("ack wait of message {message} expires while it is still being handled")
        }
        Action::DuplicatePublish { message } => {
            format!("a publisher retries message {message}")
        }
    }
}

/// A step in words: the action and the state change that matters.
pub fn describe_step(last: &State, action: &Action, next: &State) -> String {
    let mut changes = Vec::new();
    diff_stores(last, next, &mut changes);
    diff_broker(last, action, next, &mut changes);
    diff_members(last, next, &mut changes);
    if !last.ghost.reserved_price_changed && next.ghost.reserved_price_changed {
        changes.push("the price of a reserved ticket changed".into());
    }
    let stores_unchanged = last.tickets == next.tickets && last.replicas == next.replicas;
    if let (Action::Save { .. }, true) = (action, stores_unchanged) {
        changes.insert(
            0,
            "version conflict (the record moved since it was read)".into(),
        );
    }
    if changes.is_empty() {
        describe_action(action)
    } else {
        format!("{}: {}", describe_action(action), changes.join("; "))
    }
}

fn diff_stores(last: &State, next: &State, changes: &mut Vec<String>) {
    for (ticket, after) in next.tickets.as_slice().iter().enumerate() {
        match last.tickets.get(ticket) {
            None => changes.push(format!(
                "ticket {ticket} created at v0 price {}",
                after.price
            )),
            Some(before) if before != after => changes.push(format!(
                "ticket {ticket} v{} -> v{} price {}{}",
                before.version,
                after.version,
                after.price,
                after
                    .order
                    .map_or(", no order".into(), |o| format!(", order o{o}"))
            )),
            Some(_) => {}
        }
    }
    for ticket in 0..next.tickets.len() {
        let (before, after) = (last.replicas[ticket], next.replicas[ticket]);
        if let Some(after) = after.filter(|after| before != Some(*after)) {
            changes.push(format!(
                "replica {ticket} {} -> v{} price {}",
                before.map_or("none".into(), |b| format!("v{}", b.version)),
                after.version,
                after.price
            ));
        }
    }
    for (order, after) in next.orders.as_slice().iter().enumerate() {
        match last.orders.get(order) {
            None => changes.push(format!(
                "order {order} created on ticket {} (reservation {})",
                after.ticket,
                next.reservations[usize::from(after.ticket)]
            )),
            Some(before) if before.status != after.status => changes.push(format!(
                "order {order} cancelled (reservation {})",
                next.reservations[usize::from(after.ticket)]
            )),
            Some(_) => {}
        }
    }
    for service in Service::ALL {
        let (before, after) = (last.outbox(service), next.outbox(service));
        if let Some(event) = after
            .as_slice()
            .last()
            .filter(|_| after.len() > before.len())
        {
            changes.push(format!(
                "{} outbox + {}",
                service.name(),
                describe_event(event)
            ));
        }
    }
}

fn diff_broker(last: &State, action: &Action, next: &State, changes: &mut Vec<String>) {
    for (index, after) in next.messages.as_slice().iter().enumerate() {
        let Some(before) = last.messages.get(index) else {
            changes.push(format!(
                "published message {index}: {}",
                describe_event(&after.event)
            ));
            continue;
        };
        let delivered_now =
            matches!(action, Action::Deliver { message, .. } if usize::from(*message) == index);
        let deliveries = before.deliveries + u8::from(delivered_now);
        let status = match (after.status, delivered_now) {
            (Status::Pending, true) => format!("delivery {deliveries} failed: pending again"),
            (status, _) if status == before.status => continue,
            (Status::Pending, false) => "pending again".to_string(),
            (Status::InFlight, _) => format!("in flight (delivery {})", after.deliveries),
            (Status::Acked, _) => "acknowledged".to_string(),
            (Status::Dead, _) => format!("DEAD-LETTERED after {deliveries} deliveries"),
        };
        changes.push(format!("message {index} {status}"));
    }
}

fn diff_members(last: &State, next: &State, changes: &mut Vec<String>) {
    for group in Group::ALL {
        for (member, after) in next.group_members(group).iter().enumerate() {
            if last.group_members(group)[member] == *after {
                continue;
            }
            let doing = match after {
                Member::Idle => "idle".to_string(),
                Member::Busy { message, step, .. } => match step {
                    Step::Read => format!("holds message {message}, will read"),
                    Step::Save { read_version } => {
                        format!("holds message {message}, read v{read_version}, will save")
                    }
                    Step::Publish { event } => {
                        format!(
                            "holds message {message}, will publish {}",
                            describe_event(event)
                        )
                    }
                    Step::Ack => format!("holds message {message}, will ack"),
                },
            };
            changes.push(format!("{} {doing}", member_name(group, member as u8)));
        }
    }
}
