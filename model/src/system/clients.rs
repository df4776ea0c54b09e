//! The clients' transitions: each HTTP operation as the service's handler performs it, one
//! step each (the implementation re-reads and retries on a conflict, so each is atomic at its
//! successful save), except the racy reservation, which checks and inserts in two.
//!
//! The invariant: every client transition spends one unit of its budget (the racy
//! reservation's insert spends none: its check did), and every record it writes comes with
//! the event it writes, through the outbox or the handler's pending publishes.

use super::TicketingModel;
use crate::state::{Event, Order, OrderIx, OrderStatus, Service, State, Ticket, TicketIx};

impl TicketingModel {
    /// `Action::CreateTicket`: `POST /api/tickets` creates the next ticket at version 0,
    /// price 0, and writes `ticket:created`.
    pub(crate) fn create_ticket(&self, state: &mut State) {
        let ticket = state.tickets.len() as TicketIx;
        state.budget.tickets -= 1;
        state.tickets.push(Ticket::default());
        self.write_event(
            state,
            Service::Tickets,
            Event::TicketCreated { ticket, price: 0 },
        );
    }

    /// `Action::UpdatePrice`: `PUT /api/tickets/:id` moves `ticket` to its next version and
    /// price (the ghost notes an edit of a reserved ticket) and writes `ticket:updated`.
    pub(crate) fn update_price(&self, state: &mut State, ticket: TicketIx) {
        state.budget.updates -= 1;
        let primary = &mut state.tickets.as_mut_slice()[usize::from(ticket)];
        if primary.order.is_some() {
            state.ghost.reserved_price_changed = true;
        }
        let before = primary.version;
        primary.version += 1;
        primary.price += 1;
        let primary = *primary;
        state.ghost.note_write(before, primary.version);
        state.ghost.price_at[usize::from(ticket)][usize::from(primary.version)] = primary.price;
        self.write_event(
            state,
            Service::Tickets,
            Event::TicketUpdated {
                ticket,
                version: primary.version,
                price: primary.price,
                order: primary.order,
            },
        );
    }

    /// `Action::CreateOrder`: `POST /api/orders` with the atomic reservation: the check and
    /// the insert are one write.
    pub(crate) fn create_order(&self, state: &mut State, ticket: TicketIx) {
        state.budget.orders -= 1;
        self.place_order(state, ticket);
    }

    /// `Action::CheckReservation`: `POST /api/orders` in `racy-reserve`, first half: the
    /// `isReserved` check passed; the request waits to insert.
    pub(crate) fn check_reservation(&self, state: &mut State, ticket: TicketIx) {
        state.budget.orders -= 1;
        state.reservation_requests.push(ticket);
    }

    /// `Action::InsertOrder`: the racy reservation's second half inserts the order checked
    /// earlier, whatever happened since.
    pub(crate) fn insert_order(&self, state: &mut State, request: u8) {
        let ticket = state.reservation_requests.remove(usize::from(request));
        self.place_order(state, ticket);
    }

    /// `Action::CancelOrder`: `DELETE /api/orders/:id` cancels `order` (its next version),
    /// counts a reservation change on its ticket and writes `order:cancelled`.
    pub(crate) fn cancel_order(&self, state: &mut State, order: OrderIx) {
        state.budget.cancels -= 1;
        let record = &mut state.orders.as_mut_slice()[usize::from(order)];
        record.status = OrderStatus::Cancelled;
        let before = record.version;
        record.version += 1;
        let (ticket, after) = (record.ticket, record.version);
        state.ghost.note_write(before, after);
        let reservation = &mut state.reservations[usize::from(ticket)];
        *reservation += 1;
        let event = Event::OrderCancelled {
            order,
            ticket,
            reservation: *reservation,
        };
        self.write_event(state, Service::Orders, event);
    }

    /// Inserts the next order on `ticket`, counts a reservation change on it and writes
    /// `order:created` (both reservations' insert).
    fn place_order(&self, state: &mut State, ticket: TicketIx) {
        let order = state.orders.len() as OrderIx;
        state.orders.push(Order {
            ticket,
            status: OrderStatus::Created,
            version: 0,
        });
        let reservation = &mut state.reservations[usize::from(ticket)];
        *reservation += 1;
        let event = Event::OrderCreated {
            order,
            ticket,
            reservation: *reservation,
        };
        self.write_event(state, Service::Orders, event);
    }
}
