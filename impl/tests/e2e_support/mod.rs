//! End-to-end scenarios over real HTTP against a running application, whatever its backends.

#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

/// How long replicas get to converge before the test fails.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(90);

pub mod processes;

/// A client of a running application.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

/// A ticket as the scenario left it: the version and price its replica must reach.
#[derive(Clone, Debug)]
pub struct Expected {
    pub id: String,
    pub version: u64,
    pub price: Value,
}

impl Client {
    pub fn new(base: String, token: String) -> Self {
        Self {
            base,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            token,
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        (status, body)
    }

    /// Creates a ticket and updates its price twice; returns what its replica must reach.
    pub async fn create_and_update_twice(&self, n: usize) -> Expected {
        let (status, ticket) = self
            .send(
                reqwest::Method::POST,
                "/api/tickets",
                Some(json!({"title": format!("ticket {n}"), "price": 10})),
            )
            .await;
        assert_eq!(status, 201, "create ticket {n}: {ticket}");
        let id = ticket["id"].as_str().unwrap().to_owned();
        let mut last = ticket;
        for price in [json!(20.5), json!(n as f64 + 0.25)] {
            let (status, updated) = self
                .send(
                    reqwest::Method::PUT,
                    &format!("/api/tickets/{id}"),
                    Some(json!({"title": format!("ticket {n}"), "price": price})),
                )
                .await;
            assert_eq!(status, 200, "update ticket {n}: {updated}");
            last = updated;
        }
        assert_eq!(last["version"], 2);
        Expected {
            id,
            version: 2,
            price: last["price"].clone(),
        }
    }

    /// Runs [`Client::create_and_update_twice`] for `tickets` tickets, `concurrency` at a time.
    pub async fn create_many(&self, tickets: usize, concurrency: usize) -> Vec<Expected> {
        futures::stream::iter(0..tickets)
            .map(|n| self.create_and_update_twice(n))
            .buffer_unordered(concurrency)
            .collect()
            .await
    }

    /// Polls the replica route until every ticket's replica shows its expected version and
    /// price, or fails after [`CONVERGENCE_TIMEOUT`] naming what did not converge.
    pub async fn wait_for_replicas(&self, expected: &[Expected]) {
        let deadline = tokio::time::Instant::now() + CONVERGENCE_TIMEOUT;
        let mut pending: Vec<Expected> = expected.to_vec();
        loop {
            let mut still = Vec::new();
            for ticket in pending {
                let (status, replica) = self
                    .send(
                        reqwest::Method::GET,
                        &format!("/api/replica/tickets/{}", ticket.id),
                        None,
                    )
                    .await;
                let converged = status == 200
                    && replica["version"] == json!(ticket.version)
                    && replica["price"] == ticket.price;
                if !converged {
                    still.push(ticket);
                }
            }
            if still.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let sample: Vec<_> = still.iter().take(5).collect();
                panic!(
                    "{} of {} replicas did not converge within {CONVERGENCE_TIMEOUT:?}; e.g. {sample:?}",
                    still.len(),
                    expected.len()
                );
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
