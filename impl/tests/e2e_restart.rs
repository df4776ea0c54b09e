//! The `ticketing` binary on real backends survives SIGKILL under load: nothing a client was
//! told succeeded is lost, and once restarted on the same stream and databases every replica
//! converges to its ticket (the outbox is relayed again, unacknowledged deliveries are
//! redelivered). A fresh JetStream namespace and a fresh database; skipped (or failed under
//! `REQUIRE_SERVICES=1`) when a server is unreachable.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]

mod e2e_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::process::Child;

use e2e_support::processes::{self, JWT_KEY};
use e2e_support::{Client, Expected};
use ticketing::records::UserId;
use ticketing::services::auth::SessionKey;
use ticketing::testkit::{fresh_jetstream, fresh_postgres};

const TEST: &str = "e2e_restart::sigkill_under_load_loses_nothing_acknowledged";

/// Starts `ticketing serve` on the given backends and returns it with its HTTP base URL.
async fn serve(nats: &str, stream: &str, postgres: &str) -> (Child, String) {
    processes::serve(&[
        "--members",
        "4",
        "--bus",
        nats,
        "--stream-prefix",
        stream,
        "--store",
        postgres,
    ])
    .await
}

/// Acknowledged writes: for each ticket, the highest version a 2xx response reported.
type Acknowledged = Arc<Mutex<HashMap<String, u64>>>;

/// Creates tickets and updates each twice, recording every acknowledged write, until the
/// server goes away (errors are expected then and ignored).
async fn load(client: Arc<Client>, acknowledged: Acknowledged) {
    for n in 0.. {
        let (status, ticket) = match try_send(
            &client,
            reqwest::Method::POST,
            "/api/tickets",
            json!({"title": format!("t{n}"), "price": 10}),
        )
        .await
        {
            Some(answer) => answer,
            None => return,
        };
        assert_eq!(status, 201, "{ticket}");
        let id = ticket["id"].as_str().unwrap().to_owned();
        acknowledged.lock().unwrap().insert(id.clone(), 0);
        for price in [11, 12] {
            let path = format!("/api/tickets/{id}");
            let Some((status, updated)) = try_send(
                &client,
                reqwest::Method::PUT,
                &path,
                json!({"title": format!("t{n}"), "price": price}),
            )
            .await
            else {
                return;
            };
            assert_eq!(status, 200, "{updated}");
            acknowledged
                .lock()
                .unwrap()
                .insert(id.clone(), updated["version"].as_u64().unwrap());
        }
    }
}

async fn try_send(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> Option<(u16, serde_json::Value)> {
    let response = client
        .http
        .request(method, format!("{}{path}", client.base))
        .bearer_auth(&client.token)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.ok()?;
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let Some(database) = fresh_postgres(TEST).await else {
        return;
    };
    let Some((stream, _bus)) = fresh_jetstream(TEST).await else {
        return;
    };
    let config = stream.config().clone();
    assert_eq!(
        config.subject_prefix,
        format!("{}.", config.stream),
        "--stream-prefix's namespace"
    );
    let token = SessionKey::new(JWT_KEY.as_bytes())
        .issue(
            &UserId::new("loader"),
            "l@test.dev",
            Duration::from_secs(3600),
        )
        .unwrap();

    let (mut first, base) = serve(&config.url, &config.stream, database.url()).await;
    let client = Arc::new(Client::new(base, token.clone()));
    let acknowledged: Acknowledged = Arc::default();
    let loader = tokio::spawn(load(Arc::clone(&client), Arc::clone(&acknowledged)));
    // Kill it mid-load, once a fair amount has been acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load made no progress in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), loader)
        .await
        .expect("the load did not stop after the kill")
        .unwrap();

    let (_second, base) = serve(&config.url, &config.stream, database.url()).await;
    let client = Client::new(base, token);
    let acknowledged = acknowledged.lock().unwrap().clone();
    let mut expected = Vec::new();
    for (id, acked_version) in &acknowledged {
        let (status, ticket) = client
            .send(reqwest::Method::GET, &format!("/api/tickets/{id}"), None)
            .await;
        assert_eq!(status, 200, "acknowledged ticket {id} lost: {ticket}");
        let version = ticket["version"].as_u64().unwrap();
        assert!(
            version >= *acked_version,
            "ticket {id}: acknowledged version {acked_version} lost (now {version})"
        );
        expected.push(Expected {
            id: id.clone(),
            version,
            price: ticket["price"].clone(),
        });
    }
    client.wait_for_replicas(&expected).await;
}
