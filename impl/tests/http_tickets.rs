//! The course's route tests for the tickets service, over real HTTP (a server on
//! 127.0.0.1:0, reqwest as the client): create, show, list, update, and what each publishes.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]

mod http_support;

use reqwest::Method;
use serde_json::json;

use http_support::{TestApp, id_of, messages};
use ticketing::events::Event;
use ticketing::records::Ticket;

#[tokio::test]
async fn has_a_route_handler_listening_for_post_requests() {
    let app = TestApp::start().await;
    let (status, _) = app
        .send(Method::POST, "/api/tickets", None, Some(json!({})))
        .await;
    assert_ne!(status, 404);
}

#[tokio::test]
async fn can_only_be_accessed_if_the_user_is_signed_in() {
    let app = TestApp::start().await;
    let (status, body) = app
        .send(
            Method::POST,
            "/api/tickets",
            None,
            Some(json!({"title": "t", "price": 10})),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(messages(&body), ["Not authorized"]);
    assert!(app.tickets_store.outbox_snapshot().is_empty());
}

#[tokio::test]
async fn returns_an_error_if_an_invalid_title_is_provided() {
    let app = TestApp::start().await;
    for body in [json!({"title": "", "price": 10}), json!({"price": 10})] {
        let (status, errors) = app
            .send(Method::POST, "/api/tickets", Some("u1"), Some(body))
            .await;
        assert_eq!(status, 400);
        assert_eq!(messages(&errors), ["Title is required"]);
        assert_eq!(errors["errors"][0]["field"], "title");
    }
}

#[tokio::test]
async fn returns_an_error_if_an_invalid_price_is_provided() {
    let app = TestApp::start().await;
    for body in [
        json!({"title": "concert", "price": -10}),
        json!({"title": "concert"}),
    ] {
        let (status, errors) = app
            .send(Method::POST, "/api/tickets", Some("u1"), Some(body))
            .await;
        assert_eq!(status, 400);
        assert_eq!(messages(&errors), ["Price must be greater than 0"]);
        assert_eq!(errors["errors"][0]["field"], "price");
    }
}

#[tokio::test]
async fn reports_every_invalid_field_at_once() {
    let app = TestApp::start().await;
    let (status, errors) = app
        .send(
            Method::POST,
            "/api/tickets",
            Some("u1"),
            Some(json!({"title": " ", "price": 0})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        messages(&errors),
        ["Title is required", "Price must be greater than 0"]
    );
}

#[tokio::test]
async fn creates_a_ticket_with_valid_inputs_and_publishes_ticket_created() {
    let app = TestApp::start().await;
    let (status, ticket) = app
        .send(
            Method::POST,
            "/api/tickets",
            Some("u1"),
            Some(json!({"title": "concert", "price": 20.5})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(ticket["title"], "concert");
    assert_eq!(ticket["price"], json!(20.5));
    assert_eq!(ticket["userId"], "u1");
    assert_eq!(ticket["version"], 0);
    assert!(ticket.get("orderId").is_none(), "{ticket}");
    let id = id_of(&ticket);
    let stored = app.tickets_store.find_now::<Ticket>(id).unwrap();
    assert_eq!((&*stored.title, stored.price.cents()), ("concert", 2050));
    let event = app
        .published(
            "ticket:created",
            |e| matches!(e, Event::TicketCreated(c) if c.id == id),
        )
        .await;
    assert!(matches!(event, Event::TicketCreated(c) if c.version == 0 && c.price.cents() == 2050));
}

#[tokio::test]
async fn returns_a_404_if_the_ticket_is_not_found() {
    let app = TestApp::start().await;
    for path in [
        "/api/tickets/5f8d0d55b54764421b7156c9",
        "/api/tickets/not-an-id",
    ] {
        let (status, body) = app.send(Method::GET, path, None, None).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(messages(&body), ["Not Found"]);
    }
}

#[tokio::test]
async fn returns_the_ticket_if_the_ticket_is_found() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let (status, shown) = app
        .send(
            Method::GET,
            &format!("/api/tickets/{}", ticket["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown, ticket);
}

#[tokio::test]
async fn can_fetch_a_list_of_unreserved_tickets() {
    let app = TestApp::start().await;
    for title in ["a", "b", "c"] {
        app.create_ticket("u1", title, 20.0).await;
    }
    // A reserved ticket is not listed.
    let reserved = id_of(&app.create_ticket("u1", "reserved", 20.0).await);
    let mut ticket = app.tickets_store.find_now::<Ticket>(reserved).unwrap();
    ticket.order_id = Some(ticketing::id::Id::new());
    app.tickets_store.save_now(ticket).unwrap();
    let (status, list) = app.send(Method::GET, "/api/tickets", None, None).await;
    assert_eq!(status, 200);
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["a", "b", "c"]);
}

#[tokio::test]
async fn update_returns_a_404_if_the_provided_id_does_not_exist() {
    let app = TestApp::start().await;
    let (status, _) = app
        .send(
            Method::PUT,
            "/api/tickets/5f8d0d55b54764421b7156c9",
            Some("u1"),
            Some(json!({"title": "t", "price": 20})),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn update_returns_a_401_if_the_user_is_not_authenticated() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let (status, _) = app
        .send(
            Method::PUT,
            &format!("/api/tickets/{}", ticket["id"].as_str().unwrap()),
            None,
            Some(json!({"title": "t", "price": 20})),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn update_returns_a_401_if_the_user_does_not_own_the_ticket() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    let (status, body) = app
        .send(
            Method::PUT,
            &path,
            Some("u2"),
            Some(json!({"title": "mine", "price": 1})),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(messages(&body), ["Not authorized"]);
    let (_, shown) = app.send(Method::GET, &path, None, None).await;
    assert_eq!(shown, ticket, "unchanged");
}

#[tokio::test]
async fn update_returns_a_400_if_the_user_provides_an_invalid_title_or_price() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    for body in [
        json!({"title": "", "price": 20}),
        json!({"title": "t", "price": -10}),
    ] {
        let (status, _) = app.send(Method::PUT, &path, Some("u1"), Some(body)).await;
        assert_eq!(status, 400);
    }
    let (_, shown) = app.send(Method::GET, &path, None, None).await;
    assert_eq!(shown, ticket, "unchanged");
}

#[tokio::test]
async fn updates_the_ticket_provided_valid_inputs_and_publishes_ticket_updated() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let id = id_of(&ticket);
    let path = format!("/api/tickets/{id}");
    let (status, updated) = app
        .send(
            Method::PUT,
            &path,
            Some("u1"),
            Some(json!({"title": "new title", "price": 100})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (updated["title"].as_str(), updated["price"].as_u64()),
        (Some("new title"), Some(100))
    );
    assert_eq!(updated["version"], 1);
    let (_, shown) = app.send(Method::GET, &path, None, None).await;
    assert_eq!(shown, updated);
    let event = app
        .published(
            "ticket:updated",
            |e| matches!(e, Event::TicketUpdated(u) if u.id == id),
        )
        .await;
    assert!(
        matches!(event, Event::TicketUpdated(u) if u.version == 1 && u.price.cents() == 10_000 && &*u.title == "new title")
    );
}

#[tokio::test]
async fn rejects_updates_if_the_ticket_is_reserved() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let id = id_of(&ticket);
    let mut stored = app.tickets_store.find_now::<Ticket>(id).unwrap();
    stored.order_id = Some(ticketing::id::Id::new());
    app.tickets_store.save_now(stored).unwrap();
    let path = format!("/api/tickets/{id}");
    let (status, body) = app
        .send(
            Method::PUT,
            &path,
            Some("u1"),
            Some(json!({"title": "new", "price": 100})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(messages(&body), ["Cannot edit a reserved ticket"]);
    // The course's order: reserved (400) before owner (401).
    let (status, _) = app
        .send(
            Method::PUT,
            &path,
            Some("u2"),
            Some(json!({"title": "new", "price": 100})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        app.tickets_store
            .find_now::<Ticket>(id)
            .unwrap()
            .price
            .cents(),
        2000
    );
}

#[tokio::test]
async fn edit_reserved_accepts_updates_of_a_reserved_ticket() {
    let app = TestApp::start_with(ticketing::variant::Variant::EditReserved).await;
    let id = id_of(&app.create_ticket("u1", "concert", 20.0).await);
    let mut stored = app.tickets_store.find_now::<Ticket>(id).unwrap();
    stored.order_id = Some(ticketing::id::Id::new());
    app.tickets_store.save_now(stored).unwrap();
    let (status, _) = app
        .send(
            Method::PUT,
            &format!("/api/tickets/{id}"),
            Some("u1"),
            Some(json!({"title": "new", "price": 100})),
        )
        .await;
    assert_eq!(status, 200);
}
