//! The model in words: events, actions, steps and members as people read them, in
//! counterexample traces, the explorer's action list and drawing, and the harness's reports.
//!
//! A step is worded as its action followed by the state changes that matter: records written,
//! messages published, delivered, acknowledged or dead-lettered, members' progress.
//!
//! The invariant: wording only reads states and actions, never decides anything; a trace's
//! words can change without any verdict, state count or JSON trace's actions changing.

use crate::action::Action;
use crate::state::{Event, Group, Member, Message, Service, State, Status, Step};

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
            format!(
                "message {message} is published again (a retry, or a republish after the dedup window)"
            )
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
                describe_event(&after.event())
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

/// A member's progress, briefly: `msg 2 (delivery 1, acked): next save (read v1)`.
pub(crate) fn member_progress(member: &Member) -> String {
    match member {
        Member::Idle => "idle".into(),
        Member::Busy {
            message,
            delivery,
            acked,
            step,
        } => {
            let next = match step {
                Step::Read => "read".to_string(),
                Step::Save { read_version } => format!("save (read v{read_version})"),
                Step::Publish { .. } => "publish".to_string(),
                Step::Ack => "ack".to_string(),
            };
            format!(
                "msg {message} (delivery {delivery}{}): next {next}",
                if *acked { ", acked" } else { "" }
            )
        }
    }
}

/// Where a message stands, briefly: `pending, 1 deliveries so far`, `DEAD-LETTERED`.
pub(crate) fn message_status(message: &Message) -> String {
    match message.status {
        Status::Pending => format!("pending, {} deliveries so far", message.deliveries),
        Status::InFlight => format!("in flight (delivery {})", message.deliveries),
        Status::Acked => "acked".to_string(),
        Status::Dead => "DEAD-LETTERED".to_string(),
    }
}
