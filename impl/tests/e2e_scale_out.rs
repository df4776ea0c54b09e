//! Scale-out and faults against the real servers (issue 18, item 7), with the built binary:
//!
//! - two `serve` processes on one NATS + PostgreSQL share the queue groups (deliveries reach
//!   both, by their own `/metrics`); one is SIGKILLed under load and the other carries on:
//!   every write it acknowledged answered 2xx, nothing acknowledged by either is lost, every
//!   replica converges, one active order per ticket;
//! - PostgreSQL (a private cluster made with `initdb`, never the shared one) stopped and
//!   started under load: the pool reconnects, the only 5xx is 503 while it is down, `/readyz`
//!   says 503 then 200, every acknowledged write is present and the replicas converge.
//!
//! A fresh JetStream namespace and database per test; skipped (or failed under
//! `REQUIRE_SERVICES=1`) when a server, or PostgreSQL's binaries, cannot be had.
#![cfg(not(loom))]

mod e2e_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_support::processes::{JWT_KEY, PrivatePostgres, serve};
use e2e_support::{Client, Expected};
use reqwest::Method;
use serde_json::{Value, json};
use ticketing::records::UserId;
use ticketing::services::auth::SessionKey;
use ticketing::testkit::{FreshDatabase, fresh_jetstream, fresh_postgres, unavailable};

/// Bounds every wait for progress: far above what a healthy run takes.
const PATIENCE: Duration = Duration::from_secs(60);

fn token(user: &str) -> String {
    SessionKey::new(JWT_KEY.as_bytes())
        .issue(&UserId::new(user), "t@test.dev", Duration::from_secs(3600))
        .unwrap()
}

/// What a load saw: the highest version each ticket was acknowledged at, and every answer
/// that was not a 2xx (status and body; 0 for a request that got no answer).
#[derive(Default)]
struct Seen {
    acknowledged: HashMap<String, u64>,
    refused: Vec<(u16, Value)>,
}

/// Creates tickets and updates each twice through `client` until `stop`; writes that are not
/// acknowledged are given up on (the next ticket is tried).
async fn load(client: Arc<Client>, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let title = format!("load {n}");
        let created = send(
            &client,
            Method::POST,
            "/api/tickets",
            json!({"title": title, "price": 10}),
        );
        let Some(ticket) = record(&seen, created.await) else {
            continue;
        };
        let Some(id) = ticket["id"].as_str().map(str::to_owned) else {
            continue;
        };
        for price in [11, 12] {
            let path = format!("/api/tickets/{id}");
            let updated = send(
                &client,
                Method::PUT,
                &path,
                json!({"title": title, "price": price}),
            );
            if record(&seen, updated.await).is_none() {
                break;
            }
        }
    }
}

/// Notes an answer: a 2xx ticket as acknowledged at its version, anything else as refused.
fn record(seen: &Mutex<Seen>, answer: (u16, Value)) -> Option<Value> {
    let (status, body) = answer;
    let mut seen = seen.lock().unwrap();
    if !(200..300).contains(&status) {
        seen.refused.push((status, body));
        return None;
    }
    let (Some(id), Some(version)) = (body["id"].as_str(), body["version"].as_u64()) else {
        seen.refused.push((status, body));
        return None;
    };
    let acknowledged = seen.acknowledged.entry(id.to_owned()).or_default();
    *acknowledged = (*acknowledged).max(version);
    Some(body)
}

async fn send(client: &Client, method: Method, path: &str, body: Value) -> (u16, Value) {
    let sent = client
        .http
        .request(method, format!("{}{path}", client.base))
        .bearer_auth(&client.token)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(error) => (0, json!(error.to_string())),
    }
}

/// Waits until `seen` holds at least `count` acknowledged tickets.
async fn wait_for_acknowledged(seen: &Mutex<Seen>, count: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.lock().unwrap().acknowledged.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `ticketing_deliveries_total` of `queue_group`, from the process at `base`.
async fn deliveries(client: &Client, queue_group: &str) -> f64 {
    let text = client
        .http
        .get(format!("{}/metrics", client.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("ticketing_deliveries_total{{queue_group=\"{queue_group}\"}} ");
    text.lines()
        .filter_map(|line| line.strip_prefix(&series))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum()
}

/// Every acknowledged write is there (at its version or later, read through `client`), and
/// every replica converges to its ticket.
async fn nothing_acknowledged_is_lost(client: &Client, acknowledged: &HashMap<String, u64>) {
    let mut expected = Vec::new();
    for (id, acked) in acknowledged {
        let (status, ticket) = client
            .send(Method::GET, &format!("/api/tickets/{id}"), None)
            .await;
        assert_eq!(status, 200, "acknowledged ticket {id} lost: {ticket}");
        let version = ticket["version"].as_u64().unwrap();
        assert!(
            version >= *acked,
            "ticket {id}: acknowledged version {acked} lost (now {version})"
        );
        expected.push(Expected {
            id: id.clone(),
            version,
            price: ticket["price"].clone(),
        });
    }
    client.wait_for_replicas(&expected).await;
}

/// Two buyers race for each ticket, each through its own process: exactly one order is
/// placed, the other told "Ticket is already reserved"; then the store holds one active order
/// per ticket.
async fn one_active_order_per_ticket(buyers: [&Client; 2], tickets: &[String], database: &str) {
    for id in tickets {
        let body = json!({"ticketId": id});
        let (first, second) = tokio::join!(
            buyers[0].send(Method::POST, "/api/orders", Some(body.clone())),
            buyers[1].send(Method::POST, "/api/orders", Some(body.clone())),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 400], "ticket {id}: {first:?} {second:?}");
    }
    let (client, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let doubly_held = client
        .query(
            "SELECT ticket_id FROM orders.orders WHERE status <> 'cancelled' \
             GROUP BY ticket_id HAVING count(*) > 1",
            &[],
        )
        .await
        .unwrap();
    assert!(
        doubly_held.is_empty(),
        "{} tickets with two active orders",
        doubly_held.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_queue_groups_and_one_carries_on_when_the_other_is_killed() {
    const TEST: &str = "e2e_scale_out::two_processes";
    let Some(database) = fresh_postgres(TEST).await else {
        return;
    };
    let Some((stream, _bus)) = fresh_jetstream(TEST).await else {
        return;
    };
    let config = stream.config().clone();
    let args = [
        "--members",
        "1",
        "--ack-wait",
        "1s",
        "--bus",
        &config.url,
        "--stream-prefix",
        &config.stream,
        "--store",
        database.url(),
    ];
    let (mut doomed_process, doomed_base) = serve(&args).await;
    let (_survivor, survivor_base) = serve(&args).await;
    let doomed = Arc::new(Client::new(doomed_base, token("loader")));
    let survivor = Arc::new(Client::new(survivor_base, token("loader")));
    let stop = Arc::new(AtomicBool::new(false));
    let (on_doomed, on_survivor) = (Arc::<Mutex<Seen>>::default(), Arc::<Mutex<Seen>>::default());
    let loads = [
        tokio::spawn(load(
            Arc::clone(&doomed),
            Arc::clone(&on_doomed),
            Arc::clone(&stop),
        )),
        tokio::spawn(load(
            Arc::clone(&survivor),
            Arc::clone(&on_survivor),
            Arc::clone(&stop),
        )),
    ];
    wait_for_acknowledged(&on_doomed, 30).await;
    wait_for_acknowledged(&on_survivor, 30).await;
    // Deliveries reach both processes' members (each counts its own).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for client in [&doomed, &survivor] {
        while deliveries(client, "orders-service").await < 1.0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} got no delivery",
                client.base
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    doomed_process.kill().await.unwrap();
    let acknowledged_after_kill = on_survivor.lock().unwrap().acknowledged.len();
    wait_for_acknowledged(&on_survivor, acknowledged_after_kill + 30).await;
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        tokio::time::timeout(PATIENCE, load)
            .await
            .expect("a load did not stop")
            .unwrap();
    }
    let refused = std::mem::take(&mut on_survivor.lock().unwrap().refused);
    assert!(
        refused.is_empty(),
        "the survivor refused writes: {refused:?}"
    );
    let mut acknowledged = on_doomed.lock().unwrap().acknowledged.clone();
    acknowledged.extend(on_survivor.lock().unwrap().acknowledged.clone());
    nothing_acknowledged_is_lost(&survivor, &acknowledged).await;
    let buyers = [
        Client::new(survivor.base.clone(), token("buyer-1")),
        Client::new(survivor.base.clone(), token("buyer-2")),
    ];
    let some: Vec<String> = acknowledged.keys().take(20).cloned().collect();
    one_active_order_per_ticket([&buyers[0], &buyers[1]], &some, database.url()).await;
}

/// One story told in order (start, load, stop PostgreSQL, restart it, check): a test that
/// reads top to bottom, so it stays one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_under_load_loses_nothing_and_answers_only_503() {
    const TEST: &str = "e2e_scale_out::postgres_restart";
    let cluster = match PrivatePostgres::start("restart") {
        Ok(cluster) => cluster,
        Err(why) => return unavailable(TEST, "a private PostgreSQL cluster (initdb)", why),
    };
    let database = FreshDatabase::create(&cluster.url(), "restart")
        .await
        .unwrap_or_else(|why| panic!("a database on the private cluster: {why}"));
    let Some((stream, _bus)) = fresh_jetstream(TEST).await else {
        return;
    };
    let config = stream.config().clone();
    let args = [
        "--members",
        "2",
        "--ack-wait",
        "1s",
        "--bus",
        &config.url,
        "--stream-prefix",
        &config.stream,
        "--store",
        database.url(),
    ];
    let (_first, first_base) = serve(&args).await;
    let (_second, second_base) = serve(&args).await;
    let clients = [
        Arc::new(Client::new(first_base, token("loader"))),
        Arc::new(Client::new(second_base, token("loader"))),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let seen = [Arc::<Mutex<Seen>>::default(), Arc::default()];
    let loads: Vec<_> = clients
        .iter()
        .zip(&seen)
        .map(|(client, seen)| {
            tokio::spawn(load(
                Arc::clone(client),
                Arc::clone(seen),
                Arc::clone(&stop),
            ))
        })
        .collect();
    wait_for_acknowledged(&seen[0], 20).await;
    cluster.stop().unwrap();
    let (status, readiness) = clients[0].send(Method::GET, "/readyz", None).await;
    assert_eq!(status, 503, "ready with PostgreSQL down: {readiness}");
    assert_eq!(readiness["tickets_store"], json!(false), "{readiness}");
    // Writes are refused (503) while it is down: wait for the loads to see that.
    let refusals = seen[0].lock().unwrap().refused.len();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen[0].lock().unwrap().refused.len() < refusals + 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no write was refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.start_again().unwrap();
    let acknowledged_before = seen[0].lock().unwrap().acknowledged.len();
    wait_for_acknowledged(&seen[0], acknowledged_before + 20).await;
    let (status, readiness) = clients[0].send(Method::GET, "/readyz", None).await;
    assert_eq!(
        status, 200,
        "not ready after PostgreSQL came back: {readiness}"
    );
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        tokio::time::timeout(PATIENCE, load)
            .await
            .expect("a load did not stop")
            .unwrap();
    }
    let mut acknowledged = HashMap::new();
    let mut statuses = BTreeMap::<u16, usize>::new();
    for seen in &seen {
        let seen = seen.lock().unwrap();
        acknowledged.extend(seen.acknowledged.clone());
        for (status, body) in &seen.refused {
            assert_eq!(*status, 503, "only 503 while PostgreSQL is down: {body}");
            *statuses.entry(*status).or_default() += 1;
        }
    }
    eprintln!("refused while PostgreSQL was down: {statuses:?}");
    nothing_acknowledged_is_lost(&clients[1], &acknowledged).await;
    let buyers = [
        Client::new(clients[0].base.clone(), token("buyer-1")),
        Client::new(clients[1].base.clone(), token("buyer-2")),
    ];
    let some: Vec<String> = acknowledged.keys().take(20).cloned().collect();
    one_active_order_per_ticket([&buyers[0], &buyers[1]], &some, database.url()).await;
}
