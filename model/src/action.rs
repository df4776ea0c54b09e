//! What can happen in one step: the [`Action`]s, and who takes each ([`Actor`]).
//!
//! An action names what happens and to whom (a ticket, an order, a message, a member), never
//! how: what it does to the state is its transition in the `system` module, one function per
//! action kind. Actions are also the harness's vocabulary: a JSON trace is a list of them.
//!
//! The invariant: every action belongs to exactly one [`Actor`]; client and adversary actions
//! spend a budget, system actions never do, so the system can always finish what it started.

use serde::{Deserialize, Serialize};

use crate::state::{Group, MessageIx, OrderIx, Service, TicketIx};

/// Everything that can happen in one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    /// `POST /api/tickets`: creates the next ticket and writes `ticket:created`.
    CreateTicket,
    /// `PUT /api/tickets/:id` with a new price.
    UpdatePrice {
        /// The ticket.
        ticket: TicketIx,
    },
    /// `POST /api/orders`, atomic reservation: check and insert in one write.
    CreateOrder {
        /// The ticket.
        ticket: TicketIx,
    },
    /// `POST /api/orders` in `racy-reserve`, first half: the `isReserved` check passed.
    CheckReservation {
        /// The ticket.
        ticket: TicketIx,
    },
    /// `POST /api/orders` in `racy-reserve`, second half: insert the order checked earlier.
    InsertOrder {
        /// Index into the pending reservation requests.
        request: u8,
    },
    /// `DELETE /api/orders/:id`.
    CancelOrder {
        /// The order.
        order: OrderIx,
    },
    /// Without an outbox: an HTTP handler publishes the event it saved.
    PublishSaved {
        /// Which service's handler.
        service: Service,
        /// Index into its pending publishes.
        entry: u8,
    },
    /// The broker delivers a pending message to an idle member, which performs its first
    /// store operation (or, acknowledging first, its ack).
    Deliver {
        /// The member's group (the one listening on the message's subject).
        group: Group,
        /// The member.
        member: u8,
        /// The message.
        message: MessageIx,
    },
    /// A member that acknowledged first reads and decides (`ack-before-save`).
    Read {
        /// The group.
        group: Group,
        /// The member.
        member: u8,
    },
    /// A member saves (update-if-current); on a conflict it re-reads and decides again, or
    /// fails the delivery (`conflict-nak`).
    Save {
        /// The group.
        group: Group,
        /// The member.
        member: u8,
    },
    /// A member publishes the event its save produced (no outbox).
    Publish {
        /// The group.
        group: Group,
        /// The member.
        member: u8,
    },
    /// A member acknowledges its delivery.
    Ack {
        /// The group.
        group: Group,
        /// The member.
        member: u8,
    },
    /// A busy member crashes (and restarts idle); its delivery, unless acknowledged, returns
    /// to pending.
    CrashMember {
        /// The group.
        group: Group,
        /// The member.
        member: u8,
    },
    /// An HTTP handler crashes after its save, before its publish (no outbox).
    CrashBeforePublish {
        /// Which service's handler.
        service: Service,
        /// Index into its pending publishes.
        entry: u8,
    },
    /// An HTTP handler crashes between its reservation check and its insert (`racy-reserve`).
    CrashBeforeInsert {
        /// Index into the pending reservation requests.
        request: u8,
    },
    /// A delivery's ack wait expires while its member still works on it (a late ack).
    ExpireAckWait {
        /// The message.
        message: MessageIx,
    },
    /// An event already published is delivered again as a new message: a publisher's retry
    /// without publish ids, or a relay's republish after the broker's dedup window.
    DuplicatePublish {
        /// The message republished.
        message: MessageIx,
    },
}

/// Who takes an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A client issuing an HTTP request (drawn from the clients' budgets).
    Client,
    /// The adversary: crashes, late acks, publisher retries (drawn from budgets).
    Adversary,
    /// The system making progress: handlers finishing, the broker delivering, members
    /// saving and acknowledging. Never bounded by a budget.
    System,
}

impl Action {
    /// Who takes this action.
    pub const fn actor(&self) -> Actor {
        match self {
            Action::CreateTicket
            | Action::UpdatePrice { .. }
            | Action::CreateOrder { .. }
            | Action::CheckReservation { .. }
            | Action::CancelOrder { .. } => Actor::Client,
            Action::CrashMember { .. }
            | Action::CrashBeforePublish { .. }
            | Action::CrashBeforeInsert { .. }
            | Action::ExpireAckWait { .. }
            | Action::DuplicatePublish { .. } => Actor::Adversary,
            Action::InsertOrder { .. }
            | Action::PublishSaved { .. }
            | Action::Deliver { .. }
            | Action::Read { .. }
            | Action::Save { .. }
            | Action::Publish { .. }
            | Action::Ack { .. } => Actor::System,
        }
    }
}
