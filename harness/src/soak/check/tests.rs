use std::time::Duration;

use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::OrderStatus;

use super::history::{Seen, regression};
use super::*;
use crate::soak::quiesce::FinalState;
use crate::soak::workload::{Entry, RequestKind};
use serde_json::json;
use ticketing::records::{Order, Ticket, TicketReplica, Timestamp, UserId};

fn seen(started: u64, finished: u64, version: u64) -> Seen {
    Seen {
        started: Duration::from_millis(started),
        finished: Duration::from_millis(finished),
        version,
    }
}

#[test]
fn a_version_seen_after_a_newer_one_finished_is_a_regression() {
    assert!(regression(&[seen(0, 10, 3), seen(20, 30, 2)]).is_some());
    // Overlapping requests may see either order.
    assert!(regression(&[seen(0, 25, 3), seen(20, 30, 2)]).is_none());
    assert!(regression(&[seen(0, 10, 1), seen(20, 30, 2), seen(40, 50, 2)]).is_none());
}

fn price(cents: u64) -> Price {
    Price::from_cents(cents).unwrap()
}

fn ticket(id: Id, version: u64, cents: u64, order_id: Option<Id>, reservation: u64) -> Ticket {
    Ticket {
        id,
        title: "t".into(),
        price: price(cents),
        user_id: UserId::new("soak-client-0"),
        version,
        order_id,
        reservation,
    }
}

fn replica(id: Id, version: u64, cents: u64) -> TicketReplica {
    TicketReplica {
        id,
        title: "t".into(),
        price: price(cents),
        version,
    }
}

fn order(id: Id, ticket_id: Id, status: OrderStatus) -> Order {
    Order {
        id,
        user_id: UserId::new("soak-client-1"),
        status,
        expires_at: Timestamp::from_unix_millis(0),
        ticket_id,
        version: 0,
    }
}

fn entry(kind: RequestKind, ticket: Option<Id>, status: u16, response: serde_json::Value) -> Entry {
    Entry {
        client: 0,
        kind,
        ticket,
        order: None,
        body: None,
        started: Duration::ZERO,
        finished: Duration::from_millis(1),
        status: Some(status),
        response,
    }
}

#[test]
fn a_replica_behind_its_ticket_is_reported() {
    let id = Id::new();
    let mut state = FinalState::default();
    state.tickets.insert(id, ticket(id, 2, 500, None, 0));
    state.replicas.insert(id, replica(id, 2, 500));
    assert_eq!(replicas_equal_primaries(&state).status, Status::Holds);
    state.replicas.insert(id, replica(id, 1, 400));
    let verdict = replicas_equal_primaries(&state);
    assert_eq!(verdict.status, Status::Violated);
    assert!(verdict.examples[0].contains("replica v1"), "{verdict}");
}

#[test]
fn two_active_orders_and_a_stale_order_id_are_reported() {
    let (t, a, b) = (Id::new(), Id::new(), Id::new());
    let mut state = FinalState::default();
    state.tickets.insert(t, ticket(t, 3, 500, Some(a), 3));
    state.orders.insert(a, order(a, t, OrderStatus::Cancelled));
    state.orders.insert(b, order(b, t, OrderStatus::Created));
    state.reservations.insert(t, 3);
    assert_eq!(single_reservation(&state).status, Status::Holds);
    let verdict = reservations_converge(&state);
    assert_eq!(verdict.status, Status::Violated, "{verdict}");
    state.tickets.insert(t, ticket(t, 3, 500, Some(b), 3));
    assert_eq!(reservations_converge(&state).status, Status::Holds);
    state.orders.insert(a, order(a, t, OrderStatus::Created));
    assert_eq!(single_reservation(&state).status, Status::Violated);
}

#[test]
fn an_acknowledged_edit_missing_from_the_store_is_reported() {
    let id = Id::new();
    let created = json!({"id": id.to_string(), "title": "t", "price": 5, "version": 0});
    let edited = json!({"id": id.to_string(), "title": "t", "price": 6, "version": 1});
    let history = vec![
        entry(RequestKind::CreateTicket, None, 201, created),
        entry(RequestKind::UpdateTicket, Some(id), 200, edited),
    ];
    let mut state = FinalState::default();
    state.tickets.insert(id, ticket(id, 1, 600, None, 0));
    assert_eq!(
        acknowledged_writes_kept(&history, &state).status,
        Status::Holds
    );
    // The edit lost: the store still has the creation.
    state.tickets.insert(id, ticket(id, 0, 500, None, 0));
    let verdict = acknowledged_writes_kept(&history, &state);
    assert_eq!(verdict.status, Status::Violated, "{verdict}");
    // Version right, price of another write.
    state.tickets.insert(id, ticket(id, 1, 700, None, 0));
    assert_eq!(
        acknowledged_writes_kept(&history, &state).status,
        Status::Violated
    );
}

#[test]
fn an_edit_answered_with_an_order_id_is_reported() {
    let id = Id::new();
    let order = Id::new();
    let reserved = json!({
        "id": id.to_string(), "title": "t", "price": 6, "version": 2,
        "orderId": order.to_string()
    });
    let history = vec![entry(RequestKind::UpdateTicket, Some(id), 200, reserved)];
    assert_eq!(reserved_tickets_frozen(&history).status, Status::Violated);
}
