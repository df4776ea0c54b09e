//! The world's ghost variables, kept from what the implementation wrote: the journal of gated
//! writes (a ticket's price at each version, which order and ticket events were applied, a
//! reserved ticket whose price changed) and the versions seen between steps (a version that
//! went down). The model keeps the same variables in its own steps; the abstraction function
//! hands these over as they are.
//!
//! The invariant: every write a step let through is journalled in that step, and a write the
//! model cannot express is listed among the world's problems, never dropped.

use model::state::{MAX_TICKETS, MAX_VERSIONS};
use ticketing::events::Event;
use ticketing::id::Id;
use ticketing::records::{Order, Ticket, TicketReplica, Version};
use ticketing::store::StoreError;

use crate::gated::Written;
use crate::terms::model_price;

use super::{Seq, World};

impl World {
    /// Journals the writes the last step let through into ghost variables (and learns the
    /// ids of the records they created).
    pub(super) fn apply_journal(&mut self) {
        for written in self.journal.drain() {
            match written {
                Written::Ticket { before, after, by } => {
                    if before.is_none() && self.ids.ticket(after.id).is_none() {
                        self.ids.tickets.push(after.id);
                    }
                    self.journal_ticket(before, &after, by);
                }
                Written::Replica { before, after, by } => {
                    self.journal_replica(before, &after, by);
                }
                Written::Order { after } => {
                    if self.ids.order(after.id).is_none() {
                        self.ids.orders.push(after.id);
                    }
                }
            }
        }
    }

    fn journal_ticket(&mut self, before: Option<Ticket>, after: &Ticket, by: Option<Seq>) {
        let Some(ticket) = self.ids.ticket(after.id) else {
            self.problems
                .push(format!("a write to ticket {} no request created", after.id));
            return;
        };
        let t = usize::from(ticket);
        match (model_price(after.price), usize::try_from(after.version)) {
            (Some(price), Ok(version)) if t < MAX_TICKETS && version < MAX_VERSIONS => {
                self.ghost.price_at[t][version] = price;
            }
            _ => self.problems.push(format!(
                "ticket {ticket} written at v{} with price {} cents, beyond what the model holds",
                after.version,
                after.price.cents()
            )),
        }
        if let Some(before) = &before {
            if after.version < before.version {
                self.ghost.version_regressed = true;
            }
            if before.order_id.is_some() && before.price != after.price {
                self.ghost.reserved_price_changed = true;
            }
        }
        if let Some(seq) = by {
            match self.stream_event(seq) {
                Some(Event::OrderCreated(event)) => {
                    self.mark_order_event(t, event.reservation);
                }
                Some(Event::OrderCancelled(event)) => {
                    self.mark_order_event(t, event.reservation);
                }
                other => self.problems.push(format!(
                    "ticket {ticket} written for message {} ({other:?}), not an order event",
                    seq - 1
                )),
            }
        }
    }

    fn mark_order_event(&mut self, t: usize, reservation: u64) {
        match u32::try_from(reservation) {
            Ok(bit) if bit < 16 && t < MAX_TICKETS => {
                self.ghost.order_events_applied[t] |= 1 << bit;
            }
            _ => self.problems.push(format!(
                "reservation {reservation} of ticket {t} is beyond what the model holds"
            )),
        }
    }

    fn journal_replica(
        &mut self,
        before: Option<TicketReplica>,
        after: &TicketReplica,
        by: Option<Seq>,
    ) {
        let Some(ticket) = self.ids.ticket(after.id) else {
            self.problems.push(format!(
                "a replica of ticket {} no request created",
                after.id
            ));
            return;
        };
        let t = usize::from(ticket);
        if before.is_some_and(|before| after.version < before.version) {
            self.ghost.version_regressed = true;
        }
        let version = match by.and_then(|seq| self.stream_event(seq)) {
            Some(Event::TicketCreated(_)) => 0,
            Some(Event::TicketUpdated(event)) => event.version,
            other => {
                self.problems.push(format!(
                    "replica {ticket} written for {other:?}, not a ticket event"
                ));
                return;
            }
        };
        match u32::try_from(version) {
            Ok(bit) if bit < 16 && t < MAX_TICKETS => {
                self.ghost.ticket_events_applied[t] |= 1 << bit;
            }
            _ => self.problems.push(format!(
                "ticket {ticket}'s event v{version} is beyond what the model holds"
            )),
        }
    }

    /// Version monotonicity as observed between steps, over every record of both stores.
    pub(super) fn notice_regressions(&mut self) {
        let mut seen = Vec::new();
        let mut failed = Vec::new();
        let mut note =
            |key: (&'static str, Id), found: Result<Option<Version>, StoreError>| match found {
                Ok(Some(version)) => seen.push((key, version)),
                Ok(None) => {}
                Err(error) => failed.push(format!("reading {} {}: {error}", key.0, key.1)),
            };
        for id in &self.ids.tickets {
            let ticket = self.tickets_store.find_now::<Ticket>(*id);
            note(("ticket", *id), ticket.map(|t| t.map(|t| t.version)));
            let replica = self.orders_store.find_now::<TicketReplica>(*id);
            note(
                ("ticket replica", *id),
                replica.map(|r| r.map(|r| r.version)),
            );
        }
        for id in &self.ids.orders {
            let order = self.orders_store.find_now::<Order>(*id);
            note(("order", *id), order.map(|o| o.map(|o| o.version)));
        }
        self.problems.extend(failed);
        for (key, version) in seen {
            if let Some(before) = self.versions.insert(key, version)
                && version < before
            {
                self.ghost.version_regressed = true;
            }
        }
    }
}
