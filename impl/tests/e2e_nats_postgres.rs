//! End to end on real backends (NATS JetStream and PostgreSQL), over real HTTP: 200 tickets
//! created and each updated twice, concurrently, with 4 members in each queue group; every
//! replica converges to its ticket's final price and version. A fresh JetStream namespace and
//! a fresh database per test; skipped (or failed under `REQUIRE_SERVICES=1`) when a server is
//! unreachable.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]

mod e2e_support;

use std::time::Duration;

use e2e_support::Client;
use ticketing::bus::Bus;
use ticketing::records::UserId;
use ticketing::services::app::{self, AppOptions, ORDERS_SCHEMA, TICKETS_SCHEMA};
use ticketing::services::auth::SessionKey;
use ticketing::store::PgStore;
use ticketing::testkit::{fresh_jetstream, fresh_postgres, unavailable};
use ticketing::variant::Variant;

const TEST: &str = "e2e_nats_postgres::replicas_converge";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_with_four_members_per_queue_group() {
    let Some(database) = fresh_postgres(TEST).await else {
        return;
    };
    let Some((_stream, bus)) = fresh_jetstream(TEST).await else {
        return;
    };
    let stores = async {
        let tickets = PgStore::connect(database.url(), TICKETS_SCHEMA).await?;
        let orders = PgStore::connect(database.url(), ORDERS_SCHEMA).await?;
        Ok::<_, ticketing::store::StoreError>((tickets, orders))
    };
    let (tickets, orders) = match stores.await {
        Ok(stores) => stores,
        Err(error) => return unavailable(TEST, "PostgreSQL", error),
    };
    let key = SessionKey::new(b"e2e-real");
    let mut options = AppOptions::new(key.clone(), Variant::Reference);
    options.listen = "127.0.0.1:0".parse().unwrap();
    options.members = 4;
    let running = app::start(options, tickets, orders, bus.clone())
        .await
        .unwrap();
    let token = key
        .issue(
            &UserId::new("e2e"),
            "e2e@test.dev",
            Duration::from_secs(3600),
        )
        .unwrap();
    let client = Client::new(format!("http://{}", running.local_addr()), token);
    let expected = client.create_many(200, 50).await;
    client.wait_for_replicas(&expected).await;
    running.shutdown().await;
    assert_eq!(bus.dead_letters(), vec![], "nothing dead-lettered");
}
