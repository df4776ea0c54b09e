//! End to end on the embedded profile (embedded broker, memory stores), over real HTTP:
//! 200 tickets created and each updated twice, concurrently, with 4 members in each queue
//! group; every replica of the orders service converges to its ticket's final price and
//! version. Then the app shuts down cleanly with nothing dead-lettered.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]

mod e2e_support;

use std::time::Duration;

use e2e_support::Client;
use ticketing::bus::{Bus, EmbeddedBus};
use ticketing::records::UserId;
use ticketing::services::app::{self, AppOptions};
use ticketing::services::auth::SessionKey;
use ticketing::store::MemStore;
use ticketing::variant::Variant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_with_four_members_per_queue_group() {
    let key = SessionKey::new(b"e2e-embedded");
    let mut options = AppOptions::new(key.clone(), Variant::Reference);
    options.listen = "127.0.0.1:0".parse().unwrap();
    options.members = 4;
    let bus = EmbeddedBus::new();
    let running = app::start(options, MemStore::new(), MemStore::new(), bus.clone())
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
