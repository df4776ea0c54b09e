//! What an operator relies on (issue 18, items 5 and 6): `serve` refuses the public
//! development key off a loopback address and a `JWT_KEY` under 32 bytes; `/metrics` counts
//! requests by route and status with a latency histogram, and deliveries, acks, terms, dead
//! letters and the outbox per queue group and service; `/healthz` and `/readyz` answer.
//!
//! Every application in this test binary counts into the process's one recorder, so each
//! check reads a counter before and after what it does and asserts the difference.
#![cfg(not(loom))]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use ticketing::records::UserId;
use ticketing::services::app::{AppOptions, Backends, RunningApp, start_with_backends};
use ticketing::services::auth::SessionKey;
use ticketing::variant::Variant;

/// Bounds every wait: far above what a healthy run takes.
const PATIENCE: Duration = Duration::from_secs(10);

struct App {
    running: RunningApp,
    base: String,
    client: reqwest::Client,
    token: String,
}

async fn start() -> App {
    let key = SessionKey::new(&[42; 32]);
    let mut options = AppOptions::new(key.clone(), Variant::Reference);
    options.listen = "127.0.0.1:0".parse().unwrap();
    let running = start_with_backends(options, Backends::default())
        .await
        .unwrap();
    let token = key
        .issue(&UserId::new("u1"), "u1@test.dev", Duration::from_secs(600))
        .unwrap();
    App {
        base: format!("http://{}", running.local_addr()),
        running,
        client: reqwest::Client::new(),
        token,
    }
}

impl App {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The sum of every sample of `name` whose labels include `labels`.
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        samples(&text)
            .into_iter()
            .filter(|(sample, found, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(key, value)| found.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// Waits until `name{labels}` is at least `at_least`.
    async fn wait_for(&self, name: &str, labels: &[(&str, &str)], at_least: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.metric(name, labels).await;
            if value >= at_least {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}{labels:?} stayed at {value}, below {at_least}"
            );
            tokio::task::yield_now().await;
        }
    }
}

/// Prometheus text: every sample as (name, labels, value).
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').unwrap();
                            (key.to_owned(), value.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            (name, labels, value)
        })
        .collect()
}

#[tokio::test]
async fn requests_are_counted_by_route_pattern_and_status_with_their_latency() {
    // Tests of this binary run at once: these two series are this test's alone.
    let updated = [
        ("method", "PUT"),
        ("route", "/api/tickets/{id}"),
        ("status", "200"),
    ];
    let shown = [
        ("method", "GET"),
        ("route", "/api/tickets/{id}"),
        ("status", "200"),
    ];
    let app = start().await;
    let before = app.metric("ticketing_http_requests_total", &updated).await;
    let shown_before = app.metric("ticketing_http_requests_total", &shown).await;
    let latency_before = app
        .metric("ticketing_http_request_duration_seconds_count", &updated)
        .await;
    let (status, ticket) = app
        .post("/api/tickets", json!({"title": "concert", "price": 10}))
        .await;
    assert_eq!(status, 201, "{ticket}");
    let id = ticket["id"].as_str().unwrap();
    let path = format!("/api/tickets/{id}");
    let response = app
        .client
        .put(format!("{}{path}", app.base))
        .bearer_auth(&app.token)
        .json(&json!({"title": "concert", "price": 12}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(app.get(&path).await.0, 200);
    assert_eq!(
        app.metric("ticketing_http_requests_total", &updated).await,
        before + 1.0
    );
    assert_eq!(
        app.metric("ticketing_http_requests_total", &shown).await,
        shown_before + 1.0,
        "counted under the route's pattern, not the ticket's path"
    );
    assert_eq!(
        app.metric("ticketing_http_request_duration_seconds_count", &updated)
            .await,
        latency_before + 1.0
    );
    let mut slowest_bucket = updated.to_vec();
    slowest_bucket.push(("le", "+Inf"));
    assert!(
        app.metric(
            "ticketing_http_request_duration_seconds_bucket",
            &slowest_bucket
        )
        .await
            >= 1.0,
        "latency is a histogram with buckets"
    );
    let (_, text) = app.get("/metrics").await;
    assert!(
        !text.contains(id),
        "a record id became a label value:\n{text}"
    );
    app.running.shutdown().await;
}

#[tokio::test]
async fn deliveries_acks_and_the_outbox_are_counted_per_queue_group_and_service() {
    let app = start().await;
    let orders = [("queue_group", "orders-service")];
    let tickets_outbox = [("service", "tickets")];
    let deliveries = app.metric("ticketing_deliveries_total", &orders).await;
    let acks = app.metric("ticketing_acks_total", &orders).await;
    let published = app
        .metric("ticketing_outbox_published_total", &tickets_outbox)
        .await;
    let (status, _) = app
        .post("/api/tickets", json!({"title": "concert", "price": 10}))
        .await;
    assert_eq!(status, 201);
    app.wait_for(
        "ticketing_outbox_published_total",
        &tickets_outbox,
        published + 1.0,
    )
    .await;
    app.wait_for("ticketing_deliveries_total", &orders, deliveries + 1.0)
        .await;
    app.wait_for("ticketing_acks_total", &orders, acks + 1.0)
        .await;
    let (_, text) = app.get("/metrics").await;
    for gauge in [
        "ticketing_outbox_depth{service=\"tickets\"}",
        "ticketing_outbox_relay_lag_seconds{service=\"tickets\"}",
    ] {
        assert!(text.contains(gauge), "no {gauge} in:\n{text}");
    }
    app.running.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_answer_on_the_embedded_profile() {
    let app = start().await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let readiness: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        readiness,
        json!({"tickets_store": true, "orders_store": true, "bus": true})
    );
    app.running.shutdown().await;
}

/// Runs `ticketing serve` with these arguments and `JWT_KEY` (unset if `None`); it must exit
/// by itself, before listening. Its exit success and stderr.
fn serve_refused(args: &[&str], jwt_key: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
    command.arg("serve").args(args).env("RUST_LOG", "error");
    match jwt_key {
        Some(key) => command.env("JWT_KEY", key),
        None => command.env_remove("JWT_KEY"),
    };
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn serve_refuses_the_development_key_off_loopback_and_keys_under_32_bytes() {
    let (succeeded, stderr) = serve_refused(&["--listen", "0.0.0.0:0"], None);
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains("JWT_KEY is not set") && stderr.contains("loopback"),
        "{stderr}"
    );
    assert!(stderr.contains("set JWT_KEY"), "{stderr}");
    let (succeeded, stderr) = serve_refused(&["--listen", "127.0.0.1:0"], Some("short"));
    assert!(!succeeded, "{stderr}");
    assert!(stderr.contains("JWT_KEY is 5 bytes long"), "{stderr}");
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
}

#[tokio::test]
async fn a_poison_event_is_counted_as_terminated_and_dead_lettered() {
    use ticketing::bus::{Bus, EmbeddedBus, RawPublisher};
    use ticketing::services::app::start as start_on;
    use ticketing::store::MemStore;

    let key = SessionKey::new(&[42; 32]);
    let mut options = AppOptions::new(key, Variant::Reference);
    options.listen = "127.0.0.1:0".parse().unwrap();
    let bus = EmbeddedBus::new();
    let running = start_on(options, MemStore::new(), MemStore::new(), bus.clone())
        .await
        .unwrap();
    let app = App {
        base: format!("http://{}", running.local_addr()),
        running,
        client: reqwest::Client::new(),
        token: String::new(),
    };
    let orders = [("queue_group", "orders-service")];
    let dead = [("queue_group", "orders-service"), ("reason", "terminated")];
    let terms = app.metric("ticketing_terms_total", &orders).await;
    let dead_letters = app.metric("ticketing_dead_letters_total", &dead).await;
    bus.publish_raw(
        "ticket:created",
        bytes::Bytes::from_static(b"not json"),
        None,
    )
    .await
    .unwrap();
    app.wait_for("ticketing_terms_total", &orders, terms + 1.0)
        .await;
    app.wait_for("ticketing_dead_letters_total", &dead, dead_letters + 1.0)
        .await;
    assert_eq!(bus.dead_letters().len(), 1);
    app.running.shutdown().await;
}
