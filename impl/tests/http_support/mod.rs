//! A test server for the HTTP route tests: both services' router on a real socket
//! (127.0.0.1:0) over memory stores, with each service's outbox relay publishing to a
//! recording publisher, so a test sees exactly what the services published. No listeners run:
//! a test that needs a replica puts it in the orders store, as the course's route tests built
//! their tickets directly.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use ticketing::events::Event;
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{TicketReplica, UserId};
use ticketing::services::ServiceConfig;
use ticketing::services::auth::SessionKey;
use ticketing::services::fakes::RecordingPublisher;
use ticketing::services::http::{AppState, router};
use ticketing::services::orders::OrdersService;
use ticketing::services::relay::{RelayConfig, run_relay};
use ticketing::services::tickets::TicketsService;
use ticketing::store::MemStore;
use ticketing::variant::Variant;

/// How long a test waits for something asynchronous (a relay publishing) before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub tickets_store: MemStore,
    pub orders_store: MemStore,
    pub publisher: RecordingPublisher,
    pub key: SessionKey,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(Variant::Reference).await
    }

    pub async fn start_with(variant: Variant) -> Self {
        let tickets_store = MemStore::new();
        let orders_store = MemStore::new();
        let publisher = RecordingPublisher::new();
        let key = SessionKey::new(b"http-test-key");
        let config = ServiceConfig::new(variant);
        let state = AppState {
            tickets: Arc::new(TicketsService::new(
                tickets_store.clone(),
                publisher.clone(),
                config.clone(),
            )),
            orders: Arc::new(OrdersService::new(
                orders_store.clone(),
                publisher.clone(),
                config,
            )),
            sessions: Arc::new(key.clone()),
        };
        let shutdown = CancellationToken::new();
        for (service, store) in [
            ("tickets", tickets_store.clone()),
            ("orders", orders_store.clone()),
        ] {
            let (publisher, shutdown) = (publisher.clone(), shutdown.clone());
            tokio::spawn(async move {
                run_relay(
                    service,
                    &store,
                    &publisher,
                    RelayConfig::default(),
                    shutdown,
                )
                .await
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .unwrap();
        });
        Self {
            base,
            client: reqwest::Client::new(),
            tickets_store,
            orders_store,
            publisher,
            key,
            shutdown,
        }
    }

    /// A session token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.key
            .issue(
                &UserId::new(user),
                &format!("{user}@test.dev"),
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional session and JSON body; returns the status and the
    /// body as JSON (`Null` when empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(user) = user {
            request = request.bearer_auth(self.token(user));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }

    /// Creates a ticket through HTTP and returns it.
    pub async fn create_ticket(&self, user: &str, title: &str, price: f64) -> Value {
        let (status, ticket) = self
            .send(
                reqwest::Method::POST,
                "/api/tickets",
                Some(user),
                Some(serde_json::json!({"title": title, "price": price})),
            )
            .await;
        assert_eq!(status, 201, "{ticket}");
        ticket
    }

    /// Puts the orders service's replica of a ticket in place, as if `ticket:created` had
    /// been applied.
    pub fn put_replica(&self, id: Id, title: &str, cents: u64, version: u64) {
        self.orders_store
            .insert_now(TicketReplica {
                id,
                title: title.into(),
                price: Price::from_cents(cents).unwrap(),
                version,
            })
            .unwrap();
    }

    /// Waits (bounded) until an event matching `wanted` has been published, and returns it.
    pub async fn published(&self, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(event) = self.publisher.events().into_iter().find(|e| wanted(e)) {
                return event;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for {what} to be published; published: {:?}",
                self.publisher.events()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&bytes)))
    };
    (status, body)
}

/// The error messages of an error body, asserting its shape.
pub fn messages(body: &Value) -> Vec<String> {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("not the error shape: {body}"));
    errors
        .iter()
        .map(|error| {
            let object = error.as_object().unwrap();
            assert!(
                object.keys().all(|key| key == "message" || key == "field"),
                "{body}"
            );
            error["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

pub fn id_of(value: &Value) -> Id {
    value["id"].as_str().unwrap().parse().unwrap()
}
