//! What each step of a trace draws: arrows between lanes (publish, deliver, ack, nak) and
//! notes on one lane (a store write, a read, a crash, an ack-wait expiry), in the order they
//! happen within the step. The wording is the text trace's where it can be (events are
//! [`describe_event`]'s), shorter where a lane already says who acts.
//!
//! The marks are read off the action and the difference between the states before and after
//! it, as the text trace's words are; the chart's own history adds what no single state holds:
//! who published each message (a publisher's retry comes from the same lane) and which racy
//! reservation request is which (the model names them by position in a list that shrinks).
//!
//! The invariant: marks only read the trace, and every step draws at least one mark.

use super::lanes::{Lane, actor};
use crate::action::Action;
use crate::state::{Group, Member, Message, MessageIx, State, Status, Step};
use crate::trace::Trace;
use crate::words::{describe_action, describe_event};

/// The marks of one step.
pub(crate) struct Row {
    /// The step's number, as the text trace numbers it (from 1).
    pub(crate) step: usize,
    /// What it draws, top to bottom.
    pub(crate) marks: Vec<Mark>,
}

/// One thing drawn in a step.
pub(crate) enum Mark {
    /// A message between two lanes.
    Arrow {
        from: Lane,
        to: Lane,
        kind: ArrowKind,
        text: String,
    },
    /// Something one lane does on its own.
    Note {
        lane: Lane,
        kind: NoteKind,
        text: String,
    },
}

/// The kinds of arrows, each drawn in its own style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArrowKind {
    /// A publisher appends an event to the stream.
    Publish,
    /// A publisher retries an event already in the stream.
    Retry,
    /// The broker delivers a message to a member.
    Deliver,
    /// A member acknowledges a message.
    Ack,
    /// A delivery fails (a nak, an error): the message returns or is dead-lettered.
    Nak,
}

/// The kinds of notes, each drawn in its own style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoteKind {
    /// A store write: the record, its version and price.
    Write,
    /// A read, a check, a decision: nothing written.
    Read,
    /// A crash.
    Crash,
    /// An ack wait expiring while the member still works.
    Expiry,
    /// A step that breaks a rule on its own (a conflict, a reserved ticket's price changing).
    Alarm,
}

/// What the chart remembers from earlier steps.
#[derive(Default)]
struct History {
    /// The lane that published each message of the stream, by index.
    publishers: Vec<Lane>,
    /// The racy reservation requests checked and not inserted yet, in the model's order.
    requests: Vec<char>,
    /// Requests checked so far (the next is named by the next letter).
    checked: u8,
}

/// One step, as its marks are read off it.
struct StepView<'a> {
    last: &'a State,
    action: Action,
    next: &'a State,
    lane: Lane,
}

/// The marks of every step of `trace`.
pub(crate) fn rows(trace: &Trace) -> Vec<Row> {
    let mut history = History::default();
    let mut last = &trace.initial;
    let mut rows = Vec::with_capacity(trace.steps.len());
    for (index, step) in trace.steps.iter().enumerate() {
        let view = StepView {
            last,
            action: step.action,
            next: &step.state,
            lane: actor(&step.action),
        };
        let mut marks = step_marks(&view, &mut history);
        if marks.is_empty() {
            marks.push(Mark::Note {
                lane: view.lane,
                kind: NoteKind::Read,
                text: describe_action(&step.action),
            });
        }
        rows.push(Row {
            step: index + 1,
            marks,
        });
        last = &step.state;
    }
    rows
}

/// A step's marks in the order they happen: what starts it (a delivery, a check, a crash),
/// the writes, the publishes, the member's decision, and how its message settles.
fn step_marks(view: &StepView, history: &mut History) -> Vec<Mark> {
    let mut marks = Vec::new();
    let request = request_letter(view.action, history);
    opening(view, request, &mut marks);
    let wrote = writes(view, request, &mut marks);
    publishes(view, history, &mut marks);
    decision(view, wrote, &mut marks);
    settle(view, &mut marks);
    marks
}

/// The letter of the racy reservation request `action` acts on, keeping the list in step.
fn request_letter(action: Action, history: &mut History) -> Option<char> {
    match action {
        Action::CheckReservation { .. } => {
            let letter = char::from(b'A' + history.checked % 26);
            history.checked += 1;
            history.requests.push(letter);
            Some(letter)
        }
        Action::InsertOrder { request } | Action::CrashBeforeInsert { request } => {
            let index = usize::from(request);
            (index < history.requests.len()).then(|| history.requests.remove(index))
        }
        _ => None,
    }
}

/// What starts the step before any write: a delivery, a reservation check, a crash, an
/// expiry, a save's version conflict.
fn opening(view: &StepView, request: Option<char>, marks: &mut Vec<Mark>) {
    let note = |kind, text| Mark::Note {
        lane: view.lane,
        kind,
        text,
    };
    let request = request.map_or(String::new(), |letter| format!("request {letter}"));
    match view.action {
        Action::Deliver { message, .. } => {
            let before = message_at(view.last, message);
            marks.push(Mark::Arrow {
                from: Lane::Broker,
                to: view.lane,
                kind: ArrowKind::Deliver,
                text: format!(
                    "deliver #{message} {}, delivery {}",
                    describe_event(&before.event()),
                    before.deliveries + 1
                ),
            });
        }
        Action::CheckReservation { ticket } => marks.push(note(
            NoteKind::Read,
            format!("{request} orders t{ticket}: isReserved? no, so it will insert"),
        )),
        Action::CrashBeforeInsert { .. } => marks.push(note(
            NoteKind::Crash,
            format!("CRASH: {request} dies between its check and its insert: no order"),
        )),
        Action::CrashBeforePublish { service, entry } => {
            let lost = view.last.outbox(service).get(usize::from(entry));
            marks.push(note(
                NoteKind::Crash,
                format!(
                    "CRASH after saving, before publishing: {} is lost",
                    lost.map_or("the event".into(), describe_event)
                ),
            ));
        }
        Action::CrashMember { group, member } => {
            marks.push(note(NoteKind::Crash, crash_text(view, group, member)))
        }
        Action::ExpireAckWait { message } => {
            marks.push(note(NoteKind::Expiry, expiry_text(view, message)))
        }
        Action::Save { group, member } if stores_unchanged(view) => {
            if let Some((message, Step::Save { read_version }, _)) = held(view.last, group, member)
            {
                let ticket = message_at(view.last, message).event().ticket();
                marks.push(note(
                    NoteKind::Alarm,
                    format!(
                        "save conflicts: {} moved since v{read_version}",
                        record(group, ticket)
                    ),
                ));
            }
        }
        _ => {}
    }
}

fn crash_text(view: &StepView, group: Group, member: u8) -> String {
    let Some((message, step, acked)) = held(view.last, group, member) else {
        return "CRASH mid-handler".into();
    };
    let next = match step {
        Step::Read => "read",
        Step::Save { .. } => "save",
        Step::Publish { .. } => "publish",
        Step::Ack => "ack",
    };
    let outcome = if acked {
        format!("#{message} was acked on receipt: never redelivered")
    } else {
        returned(view, message)
            .unwrap_or_else(|| format!("its delivery of #{message} was already superseded"))
    };
    format!("CRASH mid-handler holding #{message} (next: {next}) → {outcome}")
}

fn expiry_text(view: &StepView, message: MessageIx) -> String {
    let holder = Group::ALL.into_iter().find_map(|group| {
        view.last
            .group_members(group)
            .iter()
            .position(|m| matches!(m, Member::Busy { message: held, acked: false, .. } if *held == message))
            .map(|member| format!("{} member {member}", group.name()))
    });
    format!(
        "ACK WAIT of #{message} expires while {} still works on it → {}",
        holder.unwrap_or_else(|| "its member".into()),
        returned(view, message).unwrap_or_else(|| "no change".into())
    )
}

/// Where `message` went if this step returned its delivery: pending again, or dead-lettered.
fn returned(view: &StepView, message: MessageIx) -> Option<String> {
    let before = message_at(view.last, message);
    let after = message_at(view.next, message);
    let delivered_now = matches!(view.action, Action::Deliver { .. });
    let deliveries = before.deliveries + u8::from(delivered_now);
    let was_out = before.status == Status::InFlight || delivered_now;
    match after.status {
        Status::Pending if was_out => Some(format!("#{message} pending again")),
        Status::Dead if before.status != Status::Dead => Some(format!(
            "#{message} DEAD-LETTERED after {deliveries} deliveries"
        )),
        _ => None,
    }
}

/// The store writes of the step, on the acting lane; whether there were any.
fn writes(view: &StepView, request: Option<char>, marks: &mut Vec<Mark>) -> bool {
    let prefix = match (view.action, request) {
        (Action::InsertOrder { .. }, Some(letter)) => format!("request {letter} inserts: "),
        (Action::UpdatePrice { .. }, _) => "edit: ".into(),
        _ => String::new(),
    };
    let written = store_writes(view.last, view.next);
    let wrote = !written.is_empty();
    for text in written {
        marks.push(Mark::Note {
            lane: view.lane,
            kind: NoteKind::Write,
            text: format!("{prefix}{text}"),
        });
    }
    if !view.last.ghost.reserved_price_changed && view.next.ghost.reserved_price_changed {
        marks.push(Mark::Note {
            lane: view.lane,
            kind: NoteKind::Alarm,
            text: reserved_price_change(view.last, view.next),
        });
    }
    for service in crate::state::Service::ALL {
        let (before, after) = (view.last.outbox(service), view.next.outbox(service));
        if let Some(event) = after
            .as_slice()
            .last()
            .filter(|_| after.len() > before.len())
        {
            marks.push(Mark::Note {
                lane: view.lane,
                kind: NoteKind::Read,
                text: format!("saved; will publish {} later", describe_event(event)),
            });
        }
    }
    wrote
}

/// Which reserved ticket's price changed between `last` and `next`, in words.
fn reserved_price_change(last: &State, next: &State) -> String {
    let changed = last
        .tickets
        .as_slice()
        .iter()
        .zip(next.tickets.as_slice())
        .enumerate()
        .find_map(|(ticket, (before, after))| {
            let order = before.order.filter(|_| before.price != after.price)?;
            Some(format!(
                "t{ticket} names order o{order}, yet its price changed {} -> {}",
                before.price, after.price
            ))
        });
    changed.unwrap_or_else(|| "the price of a ticket that names an order changed".into())
}

/// The records written between `last` and `next`, with their versions and prices.
fn store_writes(last: &State, next: &State) -> Vec<String> {
    let mut written = Vec::new();
    for (ticket, after) in next.tickets.as_slice().iter().enumerate() {
        let order = after
            .order
            .map_or(", no order".into(), |o| format!(", order o{o}"));
        match last.tickets.get(ticket) {
            None => written.push(format!(
                "ticket t{ticket} created at v{} price {}",
                after.version, after.price
            )),
            Some(before) if before != after => written.push(format!(
                "ticket t{ticket} v{} -> v{} price {}{order}",
                before.version, after.version, after.price
            )),
            Some(_) => {}
        }
    }
    for ticket in 0..next.tickets.len() {
        let (before, after) = (last.replicas[ticket], next.replicas[ticket]);
        if let Some(after) = after.filter(|after| before != Some(*after)) {
            written.push(format!(
                "replica t{ticket} {} -> v{} price {}",
                before.map_or("none".into(), |b| format!("v{}", b.version)),
                after.version,
                after.price
            ));
        }
    }
    for (order, after) in next.orders.as_slice().iter().enumerate() {
        let reservation = next.reservations[usize::from(after.ticket)];
        match last.orders.get(order) {
            None => written.push(format!(
                "order o{order} created on t{} (reservation {reservation})",
                after.ticket
            )),
            Some(before) if before.status != after.status => written.push(format!(
                "order o{order} cancelled (reservation {reservation})"
            )),
            Some(_) => {}
        }
    }
    written
}

/// An arrow to the broker for every message the step appended to the stream.
fn publishes(view: &StepView, history: &mut History, marks: &mut Vec<Mark>) {
    let published = view.last.messages.len()..view.next.messages.len();
    for (message, index) in view.next.messages.as_slice()[published.clone()]
        .iter()
        .zip(published)
    {
        let event = describe_event(&message.event());
        let (from, kind, text) = match view.action {
            Action::DuplicatePublish { message: original } => (
                history
                    .publishers
                    .get(usize::from(original))
                    .copied()
                    .unwrap_or(Lane::Broker),
                ArrowKind::Retry,
                format!("retry of #{original}: stored again as #{index} {event}"),
            ),
            _ => (
                view.lane,
                ArrowKind::Publish,
                format!("publish #{index} {event}"),
            ),
        };
        history.publishers.resize(index, Lane::Broker);
        history.publishers.push(from);
        marks.push(Mark::Arrow {
            from,
            to: Lane::Broker,
            kind,
            text,
        });
    }
}

/// What a member decided after reading, when it wrote nothing: it will save what it read, it
/// found the event already applied, or (having acked on receipt) it is done.
fn decision(view: &StepView, wrote: bool, marks: &mut Vec<Mark>) {
    let Lane::Member(group, member) = view.lane else {
        return;
    };
    let message = match view.action {
        Action::Deliver { message, .. } => message,
        Action::Read { .. } | Action::Save { .. } => match held(view.last, group, member) {
            Some((message, ..)) => message,
            None => return,
        },
        _ => return,
    };
    let ticket = message_at(view.last, message).event().ticket();
    let record = record(group, ticket);
    let after = view.next.group_members(group)[usize::from(member)];
    let text = match after {
        Member::Busy {
            step: Step::Save { read_version },
            ..
        } => {
            let again = if matches!(view.action, Action::Save { .. }) {
                "re-read"
            } else {
                "read"
            };
            format!("{again} {record} at v{read_version}: will save")
        }
        Member::Busy {
            step: Step::Ack, ..
        } if !wrote => format!("{record} already has this event: will ack"),
        Member::Idle if !wrote && matches!(view.action, Action::Read { .. }) => format!(
            "read {}: nothing to write (acked on receipt: done)",
            record_at(view.next, group, ticket)
        ),
        _ => return,
    };
    marks.push(Mark::Note {
        lane: view.lane,
        kind: NoteKind::Read,
        text,
    });
}

/// How the message in play settles: acknowledged (an ack arrow), or failed back to pending or
/// dead-lettered (a nak arrow). Crashes and expiries say it in their notes.
fn settle(view: &StepView, marks: &mut Vec<Mark>) {
    let Lane::Member(group, member) = view.lane else {
        return;
    };
    let message = match view.action {
        Action::Deliver { message, .. } => message,
        Action::Read { .. } | Action::Save { .. } | Action::Ack { .. } => {
            match held(view.last, group, member) {
                Some((message, ..)) => message,
                None => return,
            }
        }
        _ => return,
    };
    let before = message_at(view.last, message).status;
    let after = message_at(view.next, message).status;
    let (kind, text) = match (view.action, before, after) {
        (Action::Ack { .. }, Status::InFlight, _) => (ArrowKind::Ack, format!("ack #{message}")),
        (Action::Ack { .. }, Status::Pending, _) => (
            ArrowKind::Ack,
            format!("late ack #{message}: acknowledged all the same"),
        ),
        (Action::Ack { .. }, Status::Acked, _) => (
            ArrowKind::Ack,
            format!("ack #{message}: already acknowledged, no effect"),
        ),
        (Action::Ack { .. }, Status::Dead, _) => (
            ArrowKind::Ack,
            format!("ack #{message}: dead-lettered, no effect"),
        ),
        (Action::Deliver { .. }, _, Status::Acked) => (
            ArrowKind::Ack,
            format!("ack #{message} on receipt, before any write"),
        ),
        (Action::Deliver { .. }, _, _) => match returned(view, message) {
            // Failed on receipt: say what the member found, which is why.
            Some(outcome) => {
                let ticket = message_at(view.last, message).event().ticket();
                let found = record_at(view.last, group, ticket);
                (
                    ArrowKind::Nak,
                    format!("read {found}: fails, no ack → {outcome}"),
                )
            }
            None => return,
        },
        _ => match returned(view, message) {
            Some(outcome) => (ArrowKind::Nak, format!("nak, no ack → {outcome}")),
            None => return,
        },
    };
    marks.push(Mark::Arrow {
        from: view.lane,
        to: Lane::Broker,
        kind,
        text,
    });
}

/// The message a member of `group` holds, its next step and whether it acked on receipt.
fn held(state: &State, group: Group, member: u8) -> Option<(MessageIx, Step, bool)> {
    match state.group_members(group).get(usize::from(member))? {
        Member::Busy {
            message,
            step,
            acked,
            ..
        } => Some((*message, *step, *acked)),
        Member::Idle => None,
    }
}

/// Message `index` of the stream (a default one if the trace is inconsistent: the chart
/// draws, it does not judge).
fn message_at(state: &State, index: MessageIx) -> Message {
    state
        .messages
        .get(usize::from(index))
        .copied()
        .unwrap_or_default()
}

fn stores_unchanged(view: &StepView) -> bool {
    view.last.tickets == view.next.tickets && view.last.replicas == view.next.replicas
}

/// The record a member of `group` reads and writes for `ticket`.
fn record(group: Group, ticket: u8) -> String {
    match group {
        Group::Orders => format!("replica t{ticket}"),
        Group::Tickets => format!("ticket t{ticket}"),
    }
}

/// The record with its version in `state`: `replica t0 at v1`, `replica t0 (none yet)`.
fn record_at(state: &State, group: Group, ticket: u8) -> String {
    let version = match group {
        Group::Orders => state
            .replicas
            .get(usize::from(ticket))
            .copied()
            .flatten()
            .map(|replica| replica.version),
        Group::Tickets => state
            .tickets
            .get(usize::from(ticket))
            .map(|primary| primary.version),
    };
    match version {
        Some(version) => format!("{} at v{version}", record(group, ticket)),
        None => format!("{} (none yet)", record(group, ticket)),
    }
}
