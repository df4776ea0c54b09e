//! The chart's lanes: who acts. One lane per client, one per member of each queue group, one
//! for the broker, laid out by service: the tickets service's client and members on the left,
//! the broker in the middle, the orders service's members and client on the right, so an
//! event crosses from its service to the broker and on to the other service.
//!
//! The clients' lanes are also their services' HTTP handlers: the owner's requests (create,
//! edit) are exactly the tickets service's handlers and the buyer's (order, cancel) the orders
//! service's, so one lane tells both stories: who asked, and which handler saved and published.
//!
//! The invariant: every action has exactly one lane that acts ([`actor`]), and it is one of
//! [`lanes`] for any member index the configuration allows.

use crate::action::Action;
use crate::state::{Group, Service};

/// One vertical lane of the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The ticket's owner, through the tickets service's HTTP handlers.
    Owner,
    /// A member of a queue group.
    Member(Group, u8),
    /// The broker: the stream and its per-group consumers.
    Broker,
    /// The buyer, through the orders service's HTTP handlers.
    Buyer,
}

impl Lane {
    /// The client lane whose requests `service`'s HTTP handlers serve.
    pub(crate) const fn of_service(service: Service) -> Lane {
        match service {
            Service::Tickets => Lane::Owner,
            Service::Orders => Lane::Buyer,
        }
    }

    /// The lane's title, in two lines.
    pub(crate) fn title(self) -> [String; 2] {
        match self {
            Lane::Owner => ["owner".into(), "tickets HTTP handler".into()],
            Lane::Member(group, member) => [group.name().into(), format!("member {member}")],
            Lane::Broker => ["broker".into(), "stream".into()],
            Lane::Buyer => ["buyer".into(), "orders HTTP handler".into()],
        }
    }

    /// The service whose part of the chart the lane is in (the broker's is its own).
    pub(crate) const fn service(self) -> Option<Service> {
        match self {
            Lane::Owner | Lane::Member(Group::Tickets, _) => Some(Service::Tickets),
            Lane::Buyer | Lane::Member(Group::Orders, _) => Some(Service::Orders),
            Lane::Broker => None,
        }
    }
}

/// The lanes of a system with `members` members per queue group, left to right.
pub(crate) fn lanes(members: u8) -> Vec<Lane> {
    let mut lanes = vec![Lane::Owner];
    lanes.extend((0..members).map(|member| Lane::Member(Group::Tickets, member)));
    lanes.push(Lane::Broker);
    lanes.extend((0..members).map(|member| Lane::Member(Group::Orders, member)));
    lanes.push(Lane::Buyer);
    lanes
}

/// The lane that takes `action`. A publisher's retry is drawn on the lane that published the
/// message first, which only the chart's history knows: here it is the broker's.
pub(crate) const fn actor(action: &Action) -> Lane {
    match *action {
        Action::CreateTicket | Action::UpdatePrice { .. } => Lane::Owner,
        Action::CreateOrder { .. }
        | Action::CheckReservation { .. }
        | Action::InsertOrder { .. }
        | Action::CancelOrder { .. }
        | Action::CrashBeforeInsert { .. } => Lane::Buyer,
        Action::PublishSaved { service, .. } | Action::CrashBeforePublish { service, .. } => {
            Lane::of_service(service)
        }
        Action::Deliver { group, member, .. }
        | Action::Read { group, member }
        | Action::Save { group, member }
        | Action::Publish { group, member }
        | Action::Ack { group, member }
        | Action::CrashMember { group, member } => Lane::Member(group, member),
        Action::ExpireAckWait { .. } | Action::DuplicatePublish { .. } => Lane::Broker,
    }
}
