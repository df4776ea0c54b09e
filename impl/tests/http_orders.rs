//! The course's route tests for the orders service, over real HTTP: create (and the single
//! reservation), show, list, cancel, the replica route, and what each publishes.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]

mod http_support;

use reqwest::Method;
use serde_json::json;

use http_support::{TestApp, id_of, messages};
use ticketing::events::Event;
use ticketing::id::Id;
use ticketing::records::{Order, OrderStatus};
use ticketing::store::{OrderBook, VersionedStore};
use ticketing::variant::Variant;

/// A ticket known to the orders service (its replica), at 20.00.
fn known_ticket(app: &TestApp) -> Id {
    let id = Id::new();
    app.put_replica(id, "concert", 2000, 0);
    id
}

async fn order(app: &TestApp, user: &str, ticket_id: Id) -> (u16, serde_json::Value) {
    app.send(
        Method::POST,
        "/api/orders",
        Some(user),
        Some(json!({"ticketId": ticket_id.to_string()})),
    )
    .await
}

#[tokio::test]
async fn returns_an_error_if_the_ticket_does_not_exist() {
    let app = TestApp::start().await;
    let (status, body) = order(&app, "u1", Id::new()).await;
    assert_eq!(status, 404);
    assert_eq!(messages(&body), ["Not Found"]);
}

#[tokio::test]
async fn requires_a_session_and_a_ticket_id() {
    let app = TestApp::start().await;
    let (status, _) = app
        .send(
            Method::POST,
            "/api/orders",
            None,
            Some(json!({"ticketId": Id::new().to_string()})),
        )
        .await;
    assert_eq!(status, 401);
    for body in [
        json!({}),
        json!({"ticketId": "nope"}),
        json!({"ticketId": 5}),
    ] {
        let (status, errors) = app
            .send(Method::POST, "/api/orders", Some("u1"), Some(body))
            .await;
        assert_eq!(status, 400);
        assert_eq!(messages(&errors), ["TicketId must be provided"]);
        assert_eq!(errors["errors"][0]["field"], "ticketId");
    }
}

#[tokio::test]
async fn cannot_reserve_a_reserved_ticket() {
    let app = TestApp::start().await;
    let ticket_id = known_ticket(&app);
    let (status, _) = order(&app, "u1", ticket_id).await;
    assert_eq!(status, 201);
    let (status, body) = order(&app, "u2", ticket_id).await;
    assert_eq!(status, 400);
    assert_eq!(messages(&body), ["Ticket is already reserved"]);
    let orders = VersionedStore::<Order>::list(&app.orders_store, ticketing::store::Listing::All)
        .await
        .unwrap();
    assert_eq!(orders.len(), 1, "no second order");
}

#[tokio::test]
async fn racy_reserve_still_refuses_a_reserved_ticket_when_requests_do_not_overlap() {
    let app = TestApp::start_with(Variant::RacyReserve).await;
    let ticket_id = known_ticket(&app);
    assert_eq!(order(&app, "u1", ticket_id).await.0, 201);
    let (status, body) = order(&app, "u2", ticket_id).await;
    assert_eq!(status, 400);
    assert_eq!(messages(&body), ["Ticket is already reserved"]);
}

#[tokio::test]
async fn creates_an_order_and_publishes_order_created() {
    let app = TestApp::start().await;
    let ticket_id = known_ticket(&app);
    let (status, created) = order(&app, "u1", ticket_id).await;
    assert_eq!(status, 201);
    assert_eq!(created["status"], "created");
    assert_eq!(created["userId"], "u1");
    assert_eq!(created["version"], 0);
    assert_eq!(
        created["ticket"],
        json!({"id": ticket_id.to_string(), "title": "concert", "price": 20, "version": 0})
    );
    let expires_at: ticketing::records::Timestamp =
        created["expiresAt"].as_str().unwrap().parse().unwrap();
    let in_15_minutes =
        ticketing::records::Timestamp::now().plus(std::time::Duration::from_secs(900));
    assert!((in_15_minutes.unix_millis() - expires_at.unix_millis()).abs() < 60_000);
    let order_id = id_of(&created);
    let event = app
        .published(
            "order:created",
            |e| matches!(e, Event::OrderCreated(o) if o.id == order_id),
        )
        .await;
    assert!(
        matches!(event, Event::OrderCreated(o) if o.ticket.id == ticket_id && o.reservation == 1 && o.ticket.price.cents() == 2000)
    );
    assert!(
        app.orders_store
            .active_order(ticket_id)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn fetches_the_users_own_orders_only() {
    let app = TestApp::start().await;
    let (first, second, third) = (known_ticket(&app), known_ticket(&app), known_ticket(&app));
    let (_, one) = order(&app, "u1", first).await;
    let (_, two) = order(&app, "u2", second).await;
    let (_, three) = order(&app, "u2", third).await;
    let (status, list) = app.send(Method::GET, "/api/orders", Some("u2"), None).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([two, three]));
    let (status, list) = app.send(Method::GET, "/api/orders", Some("u1"), None).await;
    assert_eq!((status, list), (200, json!([one])));
    let (status, _) = app.send(Method::GET, "/api/orders", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn fetches_the_order() {
    let app = TestApp::start().await;
    let (_, created) = order(&app, "u1", known_ticket(&app)).await;
    let path = format!("/api/orders/{}", created["id"].as_str().unwrap());
    let (status, shown) = app.send(Method::GET, &path, Some("u1"), None).await;
    assert_eq!((status, &shown), (200, &created));
}

#[tokio::test]
async fn returns_an_error_if_one_user_tries_to_fetch_another_users_order() {
    let app = TestApp::start().await;
    let (_, created) = order(&app, "u1", known_ticket(&app)).await;
    let path = format!("/api/orders/{}", created["id"].as_str().unwrap());
    let (status, body) = app.send(Method::GET, &path, Some("u2"), None).await;
    assert_eq!(status, 401);
    assert_eq!(messages(&body), ["Not authorized"]);
    let (status, _) = app.send(Method::DELETE, &path, Some("u2"), None).await;
    assert_eq!(status, 401);
    let (status, _) = app
        .send(
            Method::GET,
            "/api/orders/5f8d0d55b54764421b7156c9",
            Some("u1"),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn marks_an_order_as_cancelled_and_publishes_order_cancelled() {
    let app = TestApp::start().await;
    let ticket_id = known_ticket(&app);
    let (_, created) = order(&app, "u1", ticket_id).await;
    let order_id = id_of(&created);
    let path = format!("/api/orders/{order_id}");
    let (status, body) = app.send(Method::DELETE, &path, Some("u1"), None).await;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    let (_, shown) = app.send(Method::GET, &path, Some("u1"), None).await;
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(shown["version"], 1);
    let event = app
        .published(
            "order:cancelled",
            |e| matches!(e, Event::OrderCancelled(o) if o.id == order_id),
        )
        .await;
    assert!(matches!(event, Event::OrderCancelled(o) if o.reservation == 2 && o.version == 1));
    // Idempotent: cancelling again is 204 and changes nothing.
    let (status, _) = app.send(Method::DELETE, &path, Some("u1"), None).await;
    assert_eq!(status, 204);
    let stored: Order = VersionedStore::<Order>::find_by_id(&app.orders_store, order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.status, stored.version), (OrderStatus::Cancelled, 1));
    assert_eq!(
        app.orders_store.reservation_count(ticket_id).await.unwrap(),
        2
    );
    // The ticket can be ordered again.
    assert_eq!(order(&app, "u2", ticket_id).await.0, 201);
}

#[tokio::test]
async fn shows_the_replica() {
    let app = TestApp::start().await;
    let ticket_id = Id::new();
    app.put_replica(ticket_id, "concert", 1999, 3);
    let (status, replica) = app
        .send(
            Method::GET,
            &format!("/api/replica/tickets/{ticket_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        replica,
        json!({"id": ticket_id.to_string(), "title": "concert", "price": 19.99, "version": 3})
    );
    let (status, _) = app
        .send(Method::GET, "/api/replica/tickets/nope", None, None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn no_outbox_publishes_without_a_publish_id() {
    let app = TestApp::start_with(Variant::NoOutbox).await;
    let (_, created) = order(&app, "u1", known_ticket(&app)).await;
    let order_id = id_of(&created);
    assert!(app.orders_store.outbox_snapshot().is_empty());
    let published = app.publisher.events_with_ids();
    assert!(
        published
            .iter()
            .any(|(e, id)| matches!(e, Event::OrderCreated(o) if o.id == order_id) && id.is_none())
    );
}
