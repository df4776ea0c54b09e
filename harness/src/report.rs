//! Divergence reports: which fields of the model's expected state and of the implementation's
//! observed state differ, side by side, with the path that led there.
//!
//! The invariant: a report names every field that differs (observable fields first, ghost
//! variables separately), so an empty difference list means the two states are equal.

use std::fmt::Write as _;

use model::state::{
    Group, MAX_MEMBERS, MAX_TICKETS, MAX_VERSIONS, Member, Message, Order, Replica, Service, State,
    Status, Step, Ticket,
};
use model::words::describe_event;
use model::{Action, Variant};

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The field, in words ("replica 0", "message 3", "orders-service member 1").
    pub field: String,
    /// The model's value.
    pub model: String,
    /// The implementation's value.
    pub implementation: String,
    /// Whether it is a ghost variable (history only the properties read).
    pub ghost: bool,
}

fn ticket(ticket: Option<&Ticket>) -> String {
    ticket.map_or("absent".into(), |t| {
        format!(
            "v{} price {} {} reservation {}",
            t.version,
            t.price,
            t.order.map_or("no order".into(), |o| format!("order {o}")),
            t.reservation
        )
    })
}

fn replica(replica: Option<Replica>) -> String {
    replica.map_or("none".into(), |r| {
        format!("v{} price {}", r.version, r.price)
    })
}

fn order(order: Option<&Order>) -> String {
    order.map_or("absent".into(), |o| {
        format!("ticket {} {:?} v{}", o.ticket, o.status, o.version).to_lowercase()
    })
}

fn message(message: Option<&Message>) -> String {
    message.map_or("absent".into(), |m| {
        let status = match m.status {
            Status::Pending => "pending",
            Status::InFlight => "in flight",
            Status::Acked => "acked",
            Status::Dead => "DEAD",
        };
        format!(
            "{} {status}, {} deliveries",
            describe_event(&m.event()),
            m.deliveries
        )
    })
}

fn member(member: Member) -> String {
    match member {
        Member::Idle => "idle".into(),
        Member::Busy {
            message,
            delivery,
            acked,
            step,
        } => {
            let next = match step {
                Step::Read => "read".to_owned(),
                Step::Save { read_version } => format!("save (read at v{read_version})"),
                Step::Publish { event } => format!("publish {}", describe_event(&event)),
                Step::Ack => "ack".to_owned(),
            };
            format!(
                "message {message} delivery {delivery}{}, next: {next}",
                if acked { " (acked)" } else { "" }
            )
        }
    }
}

fn events(events: &[model::state::Event]) -> String {
    if events.is_empty() {
        return "empty".into();
    }
    events
        .iter()
        .map(describe_event)
        .collect::<Vec<_>>()
        .join(", ")
}

fn bits(value: u16) -> String {
    let set: Vec<String> = (0..16)
        .filter(|bit| value & (1 << bit) != 0)
        .map(|bit| bit.to_string())
        .collect();
    format!("{{{}}}", set.join(", "))
}

fn prices(row: &[u8; MAX_VERSIONS]) -> String {
    row.iter()
        .enumerate()
        .map(|(v, p)| format!("v{v}:{p}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every field in which `observed` differs from `expected`.
pub fn differences(expected: &State, observed: &State) -> Vec<Difference> {
    let mut found = Fields::default();
    found.records(expected, observed);
    found.broker(expected, observed);
    found.ghosts(expected, observed);
    let mut found = found.0;
    if found.is_empty() && expected != observed {
        found.push(Difference {
            field: "(a field this report does not list)".into(),
            model: format!("{expected:?}"),
            implementation: format!("{observed:?}"),
            ghost: false,
        });
    }
    found
}

/// The differing fields found so far.
#[derive(Default)]
struct Fields(Vec<Difference>);

impl Fields {
    /// Notes field `name` if the model's and the implementation's renderings differ.
    fn field(&mut self, name: String, model: String, implementation: String, ghost: bool) {
        if model != implementation {
            self.0.push(Difference {
                field: name,
                model,
                implementation,
                ghost,
            });
        }
    }

    /// Tickets, replicas, reservation counts, orders, outboxes, reservation requests.
    fn records(&mut self, expected: &State, observed: &State) {
        let tickets = expected.tickets.len().max(observed.tickets.len());
        for t in 0..tickets {
            self.field(
                format!("ticket {t}"),
                ticket(expected.tickets.get(t)),
                ticket(observed.tickets.get(t)),
                false,
            );
        }
        for t in 0..MAX_TICKETS {
            self.field(
                format!("replica {t}"),
                replica(expected.replicas[t]),
                replica(observed.replicas[t]),
                false,
            );
            self.field(
                format!("reservation count of ticket {t}"),
                expected.reservations[t].to_string(),
                observed.reservations[t].to_string(),
                false,
            );
        }
        for o in 0..expected.orders.len().max(observed.orders.len()) {
            self.field(
                format!("order {o}"),
                order(expected.orders.get(o)),
                order(observed.orders.get(o)),
                false,
            );
        }
        for service in Service::ALL {
            self.field(
                format!("{} outbox", service.name()),
                events(expected.outbox(service).as_slice()),
                events(observed.outbox(service).as_slice()),
                false,
            );
        }
        self.field(
            "reservation requests (tickets)".into(),
            format!("{:?}", expected.reservation_requests.as_slice()),
            format!("{:?}", observed.reservation_requests.as_slice()),
            false,
        );
    }

    /// Messages, members, and the budget.
    fn broker(&mut self, expected: &State, observed: &State) {
        for m in 0..expected.messages.len().max(observed.messages.len()) {
            self.field(
                format!("message {m}"),
                message(expected.messages.get(m)),
                message(observed.messages.get(m)),
                false,
            );
        }
        for group in Group::ALL {
            for m in 0..MAX_MEMBERS {
                self.field(
                    format!("{} member {m}", group.name()),
                    member(expected.group_members(group)[m]),
                    member(observed.group_members(group)[m]),
                    false,
                );
            }
        }
        self.field(
            "budget".into(),
            format!("{:?}", expected.budget),
            format!("{:?}", observed.budget),
            false,
        );
    }

    /// The ghost variables.
    fn ghosts(&mut self, expected: &State, observed: &State) {
        let (e, o) = (&expected.ghost, &observed.ghost);
        for t in 0..MAX_TICKETS {
            self.field(
                format!("price history of ticket {t}"),
                prices(&e.price_at[t]),
                prices(&o.price_at[t]),
                true,
            );
            self.field(
                format!("ticket events applied to replica {t} (versions)"),
                bits(e.ticket_events_applied[t]),
                bits(o.ticket_events_applied[t]),
                true,
            );
            self.field(
                format!("order events applied to ticket {t} (reservations)"),
                bits(e.order_events_applied[t]),
                bits(o.order_events_applied[t]),
                true,
            );
        }
        self.field(
            "a version went down".into(),
            e.version_regressed.to_string(),
            o.version_regressed.to_string(),
            true,
        );
        self.field(
            "a reserved ticket's price changed".into(),
            e.reserved_price_changed.to_string(),
            o.reserved_price_changed.to_string(),
            true,
        );
    }
}

/// How the implementation departed from the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Departure {
    /// The implementation could not take the step as the model did.
    Refused {
        /// Why, in words.
        reason: String,
    },
    /// The model does not enable the action (the caller asked for a step that is no step).
    NotInModel,
    /// After the step, the states differ (or the implementation's state has something the
    /// model cannot express).
    States {
        /// What differs.
        differences: Vec<Difference>,
        /// What could not be expressed in the model's terms.
        problems: Vec<String>,
    },
}

/// The first step at which the implementation departed from the model, with the path there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The design replayed.
    pub variant: Variant,
    /// The path, up to and including the diverging step (empty: the initial state differs).
    pub actions: Vec<Action>,
    /// Each step of the path in the model's words (what it did in the model).
    pub descriptions: Vec<String>,
    /// How many of the last actions are stutter probes (deliveries the model leaves out;
    /// see `Replay::probe_stutters` in the replay module) rather than steps of the model.
    pub probes: usize,
    /// How it departed.
    pub departure: Departure,
}

impl Divergence {
    /// The diverging step's number (1-based; 0 for the initial state).
    pub fn step(&self) -> usize {
        self.actions.len()
    }

    /// The steps of the path that are steps of the model (the path without its probes).
    pub fn model_path(&self) -> &[Action] {
        &self.actions[..self.actions.len().saturating_sub(self.probes)]
    }

    /// The report, for people.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let at = match self.descriptions.last() {
            Some(last) => format!("step {}: {last}", self.step()),
            None => "the initial state".into(),
        };
        let _ = writeln!(text, "DIVERGENCE ({}) at {at}", self.variant.name());
        let _ = writeln!(
            text,
            "path ({} steps, as the model took them):",
            self.step()
        );
        for (number, description) in self.descriptions.iter().enumerate() {
            let _ = writeln!(text, "{:>4}. {description}", number + 1);
        }
        match &self.departure {
            Departure::NotInModel => {
                let _ = writeln!(text, "the model does not enable the last step");
            }
            Departure::Refused { reason } => {
                let _ = writeln!(
                    text,
                    "the implementation could not take the last step: {reason}"
                );
            }
            Departure::States {
                differences,
                problems,
            } => {
                for problem in problems {
                    let _ = writeln!(text, "not expressible in the model: {problem}");
                }
                let (ghost, observable): (Vec<&Difference>, Vec<&Difference>) =
                    differences.iter().partition(|d| d.ghost);
                if observable.is_empty() {
                    let _ = writeln!(text, "observable state: equal");
                } else {
                    let _ = writeln!(text, "observable state after the step differs:");
                    write_table(&mut text, &observable);
                }
                if ghost.is_empty() {
                    let _ = writeln!(text, "ghost variables: equal");
                } else {
                    let _ = writeln!(text, "ghost variables differ:");
                    write_table(&mut text, &ghost);
                }
            }
        }
        text
    }
}

fn write_table(text: &mut String, rows: &[&Difference]) {
    let width = |pick: fn(&Difference) -> &str, header: &str| {
        rows.iter()
            .map(|d| pick(d).chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let field_width = width(|d| &d.field, "field");
    let model_width = width(|d| &d.model, "model");
    let _ = writeln!(
        text,
        "  {:<field_width$}  {:<model_width$}  implementation",
        "field", "model"
    );
    for row in rows {
        let _ = writeln!(
            text,
            "  {:<field_width$}  {:<model_width$}  {}",
            row.field, row.model, row.implementation
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::state::{Event, OrderStatus};

    fn state() -> State {
        let mut state = State::default();
        state.tickets.push(Ticket {
            version: 1,
            price: 1,
            order: None,
            reservation: 0,
        });
        state.replicas[0] = Some(Replica {
            version: 1,
            price: 1,
        });
        state.orders.push(Order {
            ticket: 0,
            status: OrderStatus::Created,
            version: 0,
        });
        state.messages.push(Message::new(
            Event::TicketCreated {
                ticket: 0,
                price: 0,
            },
            Status::Acked,
            0,
        ));
        state
    }

    #[test]
    fn equal_states_have_no_differences() {
        assert!(differences(&state(), &state()).is_empty());
    }

    #[test]
    fn each_differing_field_is_named_with_both_values() {
        let expected = state();
        let mut observed = state();
        observed.replicas[0] = Some(Replica {
            version: 0,
            price: 0,
        });
        observed.messages.as_mut_slice()[0].status = Status::Pending;
        observed.ghost.version_regressed = true;
        let found = differences(&expected, &observed);
        let fields: Vec<&str> = found.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["replica 0", "message 0", "a version went down"]);
        assert_eq!(found[0].model, "v1 price 1");
        assert_eq!(found[0].implementation, "v0 price 0");
        assert!(!found[1].ghost && found[2].ghost);
    }

    #[test]
    fn a_report_shows_the_path_and_the_fields_side_by_side() {
        let expected = state();
        let mut observed = state();
        observed.tickets.as_mut_slice()[0].price = 2;
        let divergence = Divergence {
            variant: Variant::Reference,
            actions: vec![Action::CreateTicket],
            descriptions: vec!["client creates a ticket".into()],
            probes: 0,
            departure: Departure::States {
                differences: differences(&expected, &observed),
                problems: vec![],
            },
        };
        let text = divergence.render();
        assert!(text.starts_with("DIVERGENCE (reference) at step 1: client creates a ticket"));
        assert!(text.contains("   1. client creates a ticket"));
        assert!(text.contains("ticket 0  v1 price 1 no order reservation 0  v1 price 2"));
        assert!(text.contains("ghost variables: equal"));
    }
}
