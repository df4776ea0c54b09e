//! Store throughput: update-if-current (read the record, compare its version, save version + 1)
//! on the project's stores against what a Rust engineer would use directly.
//!
//! - `store_uniform` / `store_hot`: `MemStore` (`find_now` + `save_now`) over 10,000 tickets,
//!   uniform keys or one hot key, 1 and 2 threads; yardsticks: `dashmap` 6 (read a clone, then
//!   compare-and-set through `entry`), `RwLock<HashMap>` and one `Mutex<HashMap>`, all holding
//!   the same `Ticket` records and doing the same read, compare and write. A diagnostic
//!   (no goal), `Mutex-HashMap-returning`, also returns the saved record, as `save` did before
//!   it answered the new version.
//! - `store_pg`: `PgStore` (`find_by_id` + `save`) at 1, 2 and 8 connections; yardstick: the
//!   same loop sent raw with tokio-postgres and prepared statements (`SELECT version`, then
//!   `UPDATE ... WHERE id = $1 AND version = $2`), on the same server, in a fresh database per
//!   run, on identical tables (every schema is made by the store's migrations). A diagnostic
//!   (no goal), `tokio-postgres-same-sql`, sends PgStore's own statements raw (full row read,
//!   full row written, `RETURNING version`), to split the gap into statement shape and client.
//!
//! A version conflict (two threads on one record) counts as an operation done: it is the
//! store's answer, and the yardsticks count theirs the same way.

mod common;

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as DashEntry;

use benches::workload::{
    KeyStream, Keys, RECORDS, prices, record_id, run_threads, scattered, tickets,
};
use ticketing::id::Id;
use ticketing::records::Ticket;
use ticketing::store::{MemStore, PgStore, PgStoreOptions, StoreError, VersionedStore};
use ticketing::testkit;

/// The in-memory stores under test, each holding the same tickets.
trait UpdateIfCurrent: Sync {
    /// Reads the record, sets its price, and saves it if its version is still the one read.
    /// Returns whether the save won (false: a version conflict).
    fn update(&self, id: Id, price_index: usize) -> bool;
}

impl UpdateIfCurrent for MemStore {
    #[inline]
    fn update(&self, id: Id, price_index: usize) -> bool {
        let Some(mut ticket) = self.find_now::<Ticket>(id) else {
            panic!("ticket {id} missing");
        };
        ticket.price = prices()[price_index & 1];
        match self.save_now(ticket) {
            Ok(saved_at) => {
                black_box(saved_at);
                true
            }
            Err(StoreError::VersionConflict { .. }) => false,
            Err(error) => panic!("save failed: {error}"),
        }
    }
}

/// `dashmap` 6: a read takes a clone under the shard's read lock; the write compares and sets
/// through `entry` (the shard's write lock).
struct Dash(DashMap<Id, Ticket>);

impl UpdateIfCurrent for Dash {
    #[inline]
    fn update(&self, id: Id, price_index: usize) -> bool {
        let read = self.0.get(&id).map(|found| found.clone());
        let (ticket, read_at) = edited(read, id, price_index);
        match self.0.entry(id) {
            DashEntry::Occupied(mut stored) if stored.get().version == read_at => {
                stored.insert(ticket);
                true
            }
            DashEntry::Occupied(_) => false,
            DashEntry::Vacant(_) => panic!("ticket {id} missing"),
        }
    }
}

/// One `std::sync::RwLock<HashMap>`: read under the read lock, compare and write under the
/// write lock.
struct Locked(RwLock<HashMap<Id, Ticket>>);

impl UpdateIfCurrent for Locked {
    #[inline]
    fn update(&self, id: Id, price_index: usize) -> bool {
        let read = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let (ticket, read_at) = edited(read, id, price_index);
        let mut write = self.0.write().unwrap_or_else(|p| p.into_inner());
        save_if_current(write.entry(id), ticket, read_at)
    }
}

/// One `std::sync::Mutex<HashMap>`, locked once to read and once to compare and write.
///
/// With `RETURNS_SAVED`, a diagnostic rather than a goal: it keeps `save`'s contract before
/// it answered the new version, returning the saved record and so storing a copy of it (on `Ticket`, two reference-count
/// increments and, when it is replaced, two decrements that the plain yardstick does not pay).
struct Single<const RETURNS_SAVED: bool>(Mutex<HashMap<Id, Ticket>>);

impl<const RETURNS_SAVED: bool> UpdateIfCurrent for Single<RETURNS_SAVED> {
    #[inline]
    fn update(&self, id: Id, price_index: usize) -> bool {
        let read = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let (ticket, read_at) = edited(read, id, price_index);
        let saved = RETURNS_SAVED.then(|| ticket.clone());
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let won = save_if_current(map.entry(id), ticket, read_at);
        drop(map);
        black_box(saved);
        won
    }
}

/// What a yardstick writes back: the record it read with the next price and version, and the
/// version it was read at.
#[inline]
fn edited(read: Option<Ticket>, id: Id, price_index: usize) -> (Ticket, u64) {
    let Some(mut ticket) = read else {
        panic!("ticket {id} missing");
    };
    let read_at = ticket.version;
    ticket.price = prices()[price_index & 1];
    ticket.version = read_at + 1;
    (ticket, read_at)
}

fn save_if_current(entry: MapEntry<'_, Id, Ticket>, ticket: Ticket, read_at: u64) -> bool {
    match entry {
        MapEntry::Occupied(mut stored) if stored.get().version == read_at => {
            stored.insert(ticket);
            true
        }
        MapEntry::Occupied(_) => false,
        MapEntry::Vacant(_) => panic!("ticket missing"),
    }
}

fn mem_store() -> MemStore {
    let store = MemStore::new();
    for ticket in tickets(RECORDS) {
        if let Err(error) = store.insert_now(ticket) {
            panic!("seeding MemStore: {error}");
        }
    }
    store
}

fn seeded_map() -> HashMap<Id, Ticket> {
    tickets(RECORDS).into_iter().map(|t| (t.id, t)).collect()
}

/// Runs `ops` updates over `threads` threads and returns the time taken.
fn drive(store: &dyn UpdateIfCurrent, keys: Keys, threads: usize, ops: u64) -> Duration {
    let ids: Vec<Id> = (0..RECORDS).map(record_id).collect();
    let won = AtomicU64::new(0);
    let elapsed = run_threads(threads, ops, |thread, ops| {
        let mut stream = KeyStream::new(keys, thread);
        let mut wins = 0u64;
        for op in 0..ops {
            wins += u64::from(store.update(ids[stream.next_index()], op as usize));
        }
        won.fetch_add(wins, Ordering::Relaxed);
    });
    // On one thread nothing can conflict: every update must have won.
    assert!(
        threads > 1 || won.into_inner() == ops,
        "a lone writer lost a save"
    );
    elapsed
}

fn in_memory(c: &mut Criterion) {
    for keys in [Keys::Uniform, Keys::Hot] {
        let mut group = c.benchmark_group(format!("store_{}", keys.name()));
        common::configure(
            &mut group,
            20,
            Duration::from_millis(500),
            Duration::from_secs(2),
        );
        group.throughput(Throughput::Elements(1));
        let stores: [(&str, Box<dyn UpdateIfCurrent>); 5] = [
            ("MemStore", Box::new(mem_store())),
            (
                "dashmap",
                Box::new(Dash(seeded_map().into_iter().collect())),
            ),
            (
                "RwLock-HashMap",
                Box::new(Locked(RwLock::new(seeded_map()))),
            ),
            (
                "Mutex-HashMap",
                Box::new(Single::<false>(Mutex::new(seeded_map()))),
            ),
            (
                "Mutex-HashMap-returning",
                Box::new(Single::<true>(Mutex::new(seeded_map()))),
            ),
        ];
        for threads in [1, 2] {
            for (name, store) in &stores {
                group.bench_with_input(BenchmarkId::new(*name, threads), &threads, |b, &n| {
                    b.iter_custom(|ops| drive(store.as_ref(), keys, n, ops));
                });
            }
        }
        group.finish();
    }
}

// ----- PostgreSQL -----

const STORE_SCHEMA: &str = "bench_store";
const RAW_SCHEMA: &str = "bench_raw";
const SAME_SQL_SCHEMA: &str = "bench_same_sql";

/// Seeds `schema.tickets` with the benchmark's tickets (ids as [`record_id`] makes them).
async fn seed(client: &tokio_postgres::Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.tickets (id, title, price_cents, user_id, version, order_id, reservation) \
             SELECT decode(lpad(to_hex(n), 24, '0'), 'hex'), 'ticket ' || n, 1000, 'user-' || n, 0, NULL, 0 \
             FROM generate_series(0, {last}) AS n; \
             ANALYZE {schema}.tickets;",
            last = RECORDS - 1
        ))
        .await
}

/// One database for one connection count: the store's schema and the raw loop's, seeded.
struct PgBench {
    store: PgStore,
    raw: Vec<Arc<RawConnection>>,
    same_sql: Vec<Arc<RawConnection>>,
    /// Last: dropped after the connections that use it.
    _database: testkit::FreshDatabase,
}

/// The yardstick's connection and its two prepared statements.
struct RawConnection {
    client: tokio_postgres::Client,
    read: tokio_postgres::Statement,
    update: tokio_postgres::Statement,
}

async fn pg_bench(connections: usize) -> Option<PgBench> {
    let database = testkit::fresh_postgres(&format!("bench_store_pg_{connections}")).await?;
    let options = PgStoreOptions {
        pool_size: connections,
        ..PgStoreOptions::default()
    };
    let fail = |what: &str, error: &dyn std::fmt::Display| -> ! {
        panic!("PostgreSQL benchmark setup: {what}: {error}")
    };
    let store = PgStore::connect_with(database.url(), STORE_SCHEMA, options.clone())
        .await
        .unwrap_or_else(|e| fail("connect the store", &e));
    // The yardsticks' tables come from the same migrations, in schemas of their own.
    for schema in [RAW_SCHEMA, SAME_SQL_SCHEMA] {
        drop(
            PgStore::connect_with(database.url(), schema, options.clone())
                .await
                .unwrap_or_else(|e| fail("migrate a raw schema", &e)),
        );
    }
    let raw_sql = (
        format!("SELECT version FROM {RAW_SCHEMA}.tickets WHERE id = $1"),
        format!(
            "UPDATE {RAW_SCHEMA}.tickets SET price_cents = $3, version = version + 1 \
             WHERE id = $1 AND version = $2"
        ),
    );
    // The statements PgStore sends for a ticket (`find_by_id`, then `save`), verbatim.
    let same_sql = (
        format!(
            "SELECT id, title, price_cents, user_id, version, order_id, reservation \
             FROM {SAME_SQL_SCHEMA}.tickets WHERE id = $1"
        ),
        format!(
            "UPDATE {SAME_SQL_SCHEMA}.tickets SET title = $2, price_cents = $3, user_id = $4, \
             order_id = $6, reservation = $7, version = version + 1 \
             WHERE id = $1 AND version = $5 RETURNING version"
        ),
    );
    let mut raw = Vec::with_capacity(connections);
    let mut same = Vec::with_capacity(connections);
    for _ in 0..connections {
        raw.push(raw_connection(database.url(), &raw_sql).await);
        same.push(raw_connection(database.url(), &same_sql).await);
    }
    for schema in [STORE_SCHEMA, RAW_SCHEMA, SAME_SQL_SCHEMA] {
        seed(&raw[0].client, schema)
            .await
            .unwrap_or_else(|e| fail("seed", &e));
    }
    // Every side starts from vacuumed tables (hint bits set, pages all-visible), so the first
    // side measured does not pay for the seeding's clean-up in its window. VACUUM cannot run
    // in a transaction block, hence one call per table.
    for schema in [STORE_SCHEMA, RAW_SCHEMA, SAME_SQL_SCHEMA] {
        raw[0]
            .client
            .batch_execute(&format!("VACUUM (ANALYZE) {schema}.tickets"))
            .await
            .unwrap_or_else(|e| fail("vacuum", &e));
    }
    Some(PgBench {
        store,
        raw,
        same_sql: same,
        _database: database,
    })
}

/// A raw connection with `(read, update)` prepared.
async fn raw_connection(url: &str, (read, update): &(String, String)) -> Arc<RawConnection> {
    let fail = |what: &str, error: &dyn std::fmt::Display| -> ! {
        panic!("PostgreSQL benchmark setup: {what}: {error}")
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| fail("connect raw", &e));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let read = client
        .prepare(read)
        .await
        .unwrap_or_else(|e| fail("prepare", &e));
    let update = client
        .prepare(update)
        .await
        .unwrap_or_else(|e| fail("prepare", &e));
    Arc::new(RawConnection {
        client,
        read,
        update,
    })
}

/// `ops` loops over `workers` concurrent tasks, each running `one(worker, op)`.
async fn concurrently<F, Fut>(workers: usize, ops: u64, one: F) -> Duration
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let share = ops / workers as u64;
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let count = if worker == 0 {
                ops - share * (workers as u64 - 1)
            } else {
                share
            };
            let one = one.clone();
            tokio::spawn(async move {
                for op in 0..count {
                    one(worker, op as usize).await;
                }
            })
        })
        .collect();
    for task in tasks {
        if let Err(error) = task.await {
            panic!("a PostgreSQL worker failed: {error}");
        }
    }
    started.elapsed()
}

async fn store_loop(store: PgStore, id: Id, op: usize) {
    let found: Option<Ticket> = VersionedStore::<Ticket>::find_by_id(&store, id)
        .await
        .unwrap_or_else(|e| panic!("find: {e}"));
    let Some(mut ticket) = found else {
        panic!("ticket {id} missing")
    };
    ticket.price = prices()[op & 1];
    match store.save(ticket, None).await {
        Ok(_) | Err(StoreError::VersionConflict { .. }) => {}
        Err(error) => panic!("save: {error}"),
    }
}

async fn raw_loop(raw: Arc<RawConnection>, id: Id, op: usize) {
    let key: &[u8] = id.as_bytes();
    let row = raw
        .client
        .query_one(&raw.read, &[&key])
        .await
        .unwrap_or_else(|e| panic!("read: {e}"));
    let version: i64 = row.get(0);
    let price = prices()[op & 1].cents() as i64;
    raw.client
        .execute(&raw.update, &[&key, &version, &price])
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
}

/// The diagnostic: PgStore's own statements sent raw (the full row read, the full row written,
/// `RETURNING version`), so the gap to the yardstick splits into statement shape and client.
async fn same_sql_loop(raw: Arc<RawConnection>, id: Id, op: usize) {
    let key: &[u8] = id.as_bytes();
    let row = raw
        .client
        .query_one(&raw.read, &[&key])
        .await
        .unwrap_or_else(|e| panic!("read: {e}"));
    let title: &str = row.get(1);
    let user: &str = row.get(3);
    let version: i64 = row.get(4);
    let order: Option<&[u8]> = row.get(5);
    let reservation: i64 = row.get(6);
    let price = prices()[op & 1].cents() as i64;
    raw.client
        .query_opt(
            &raw.update,
            &[&key, &title, &price, &user, &version, &order, &reservation],
        )
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
}

fn postgres(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("store_pg");
    common::configure(
        &mut group,
        10,
        Duration::from_secs(1),
        Duration::from_secs(4),
    );
    group.throughput(Throughput::Elements(1));
    for connections in [1, 2, 8] {
        let Some(bench) = runtime.block_on(pg_bench(connections)) else {
            // testkit said why (and failed instead under REQUIRE_SERVICES=1).
            return;
        };
        let key_of = |worker: usize, op: usize| record_id(scattered(worker, op));
        let store = bench.store.clone();
        group.bench_with_input(
            BenchmarkId::new("PgStore", connections),
            &connections,
            |b, &n| {
                b.iter_custom(|ops| {
                    let store = store.clone();
                    runtime.block_on(concurrently(n, ops, move |worker, op| {
                        store_loop(store.clone(), key_of(worker, op), op)
                    }))
                });
            },
        );
        let raw = bench.raw.clone();
        group.bench_with_input(
            BenchmarkId::new("tokio-postgres", connections),
            &connections,
            |b, &n| {
                b.iter_custom(|ops| {
                    let raw = raw.clone();
                    runtime.block_on(concurrently(n, ops, move |worker, op| {
                        raw_loop(Arc::clone(&raw[worker]), key_of(worker, op), op)
                    }))
                });
            },
        );
        let same = bench.same_sql.clone();
        group.bench_with_input(
            BenchmarkId::new("tokio-postgres-same-sql", connections),
            &connections,
            |b, &n| {
                b.iter_custom(|ops| {
                    let same = same.clone();
                    runtime.block_on(concurrently(n, ops, move |worker, op| {
                        same_sql_loop(Arc::clone(&same[worker]), key_of(worker, op), op)
                    }))
                });
            },
        );
        // Dropping the bench drops its database (after its connections).
        runtime.block_on(async move { drop(bench) });
    }
    group.finish();
}

criterion_group!(benches, in_memory, postgres);
criterion_main!(benches);
