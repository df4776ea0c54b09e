//! Where a world keeps its services' records: a [`MemStore`] per service (the default), or a
//! [`PgStore`] per service on PostgreSQL, behind the one [`Store`] that the world, the gated
//! store and the abstraction function use.
//!
//! The harness polls every task by hand with a noop waker ([`crate::gate`]). A memory-store
//! operation is ready at once; a PostgreSQL one waits on the network. So every operation a
//! gate lets through runs to completion where it stands: [`Store::finish`] awaits a
//! memory-store future in place, and blocks on a PostgreSQL one on the run's current-thread
//! tokio runtime, which drives the connection's I/O meanwhile. Nothing else runs during a
//! step, so the world stays synchronous on either backend, and a step is the same step.
//!
//! A run on PostgreSQL ([`Backend::postgres`]) makes one fresh database on the server and
//! drops it when the run ends (the last world of it dropped). Each world's services get a
//! schema each, as `ticketing serve` gives each service its own: a pair of schemas made for
//! an earlier world that has ended, emptied (`PgStore::clear`), or a new pair. Emptying is a
//! few deletes; a new schema costs its migrations, a quarter of a second on a loaded machine,
//! which would be most of a fuzz case.
//!
//! The invariant: a [`Store`] answers what the backend behind it stores; a backend failure
//! is an error for the caller to report, never a default value.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ticketing::events::{Event, OrderCancelled, OrderCreated};
use ticketing::id::Id;
use ticketing::price::Price;
use ticketing::records::{Order, Record, Reservation, Version};
use ticketing::store::{
    Listing, MemStore, OrderBook, Outbox, OutboxEntry, PgStore, PgStoreOptions, Quarantined,
    ReservationCheck, StoreError, VersionedStore,
};
use ticketing::testkit::FreshDatabase;
use ticketing::variant::Variant;
use tokio::runtime::Runtime;

/// The backend every world of a run is built on.
#[derive(Clone, Debug, Default)]
pub enum Backend {
    /// Each service's [`MemStore`].
    #[default]
    Memory,
    /// Each service's [`PgStore`], in a database of the run's own.
    Postgres(Arc<Postgres>),
}

impl Backend {
    /// A run on the PostgreSQL server at `url`: a fresh database on it, labelled `label`
    /// (dropped when the run ends). The error says why, the password hidden, when the
    /// server cannot be reached or refuses.
    pub fn postgres(url: &str, label: &str) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start a tokio runtime: {error}"))?;
        let database = runtime.block_on(FreshDatabase::create(url, label))?;
        Ok(Backend::Postgres(Arc::new(Postgres {
            runtime,
            database,
            worlds: AtomicU32::new(0),
            idle: Mutex::new(Vec::new()),
        })))
    }

    /// The stores of a new world of `variant`, empty, for as long as the [`Stores`] is kept.
    /// On PostgreSQL, a variant without the atomic reservation gets an orders schema without
    /// its backstop against a second active order ([`PgStore::set_reservation_backstop`]).
    pub fn stores(&self, variant: Variant) -> Result<Stores, String> {
        match self {
            Backend::Memory => Ok(Stores {
                tickets: Store::Memory(MemStore::unsharded()),
                orders: Store::Memory(MemStore::unsharded()),
                lease: None,
            }),
            Backend::Postgres(run) => run.stores(variant),
        }
    }

    /// The URL of the run's database, on PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        match self {
            Backend::Memory => None,
            Backend::Postgres(run) => Some(run.database.url()),
        }
    }

    /// What the backend is, for a run's header line.
    pub fn describe(&self) -> String {
        match self {
            Backend::Memory => "in memory".to_owned(),
            Backend::Postgres(run) => format!(
                "on PostgreSQL (fresh database {})",
                ticketing::store::pg::redact_password(run.database.url())
            ),
        }
    }
}

/// A world's two services' stores: the tickets service's and the orders service's.
#[derive(Debug)]
pub struct Stores {
    /// The tickets service's.
    pub tickets: Store,
    /// The orders service's.
    pub orders: Store,
    /// On PostgreSQL, what hands the schemas back to the run when the world ends.
    pub lease: Option<Lease>,
}

/// A world's two PostgreSQL stores (tickets, orders), and whether the orders schema has its
/// reservation backstop now (a new schema is migrated with it).
#[derive(Debug)]
struct Pair {
    tickets: PgStore,
    orders: PgStore,
    backstop: bool,
}

/// A world's pair of PostgreSQL stores, handed back to the run's idle pairs when dropped (the
/// world, and every task that could write to them, ended).
#[derive(Debug)]
pub struct Lease {
    pair: Option<Pair>,
    run: Arc<Postgres>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pair) = self.pair.take() {
            crate::lock::locked(&self.run.idle).push(pair);
        }
    }
}

/// A run's PostgreSQL database and the runtime its stores' connections live on.
pub struct Postgres {
    // Dropped before the database: the runtime ends the stores' connection tasks first.
    runtime: Runtime,
    database: FreshDatabase,
    /// Schema pairs made so far: pair n's schemas are `wn_tickets` and `wn_orders`.
    worlds: AtomicU32,
    /// Pairs whose world ended, to be emptied and used again.
    idle: Mutex<Vec<Pair>>,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("database", &self.database.name())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// An idle pair emptied, or a new pair; the orders schema with the reservation backstop
    /// only if `variant` reserves atomically (a pair is reused across variants).
    fn stores(self: &Arc<Self>, variant: Variant) -> Result<Stores, String> {
        let idle = crate::lock::locked(&self.idle).pop();
        let mut pair = match idle {
            Some(pair) => {
                for store in [&pair.tickets, &pair.orders] {
                    self.runtime
                        .block_on(store.clear())
                        .map_err(|error| error.to_string())?;
                }
                pair
            }
            None => {
                let world = self.worlds.fetch_add(1, Ordering::Relaxed);
                Pair {
                    tickets: self.store(&format!("w{world}_tickets"))?,
                    orders: self.store(&format!("w{world}_orders"))?,
                    backstop: true,
                }
            }
        };
        let backstop = variant.reserves_atomically();
        if pair.backstop != backstop {
            self.runtime
                .block_on(pair.orders.set_reservation_backstop(backstop))
                .map_err(|error| error.to_string())?;
            pair.backstop = backstop;
        }
        let store = |store: &PgStore| Store::Postgres {
            store: store.clone(),
            run: Arc::clone(self),
        };
        Ok(Stores {
            tickets: store(&pair.tickets),
            orders: store(&pair.orders),
            lease: Some(Lease {
                pair: Some(pair),
                run: Arc::clone(self),
            }),
        })
    }

    /// A store in a fresh `schema` of the run's database. One operation runs at a time, so
    /// two pooled connections are plenty (a write that reads why it failed takes a second).
    fn store(&self, schema: &str) -> Result<PgStore, String> {
        let options = PgStoreOptions {
            pool_size: 2,
            acquire_timeout: Duration::from_secs(10),
            ..PgStoreOptions::default()
        };
        self.runtime
            .block_on(PgStore::connect_with(self.database.url(), schema, options))
            .map_err(|error| error.to_string())
    }
}

/// One service's store in a world, on the run's backend. Cloning shares the store.
#[derive(Clone, Debug)]
pub enum Store {
    /// In memory.
    Memory(MemStore),
    /// On PostgreSQL; `run` keeps the runtime and the database alive while the store is.
    Postgres {
        /// The store.
        store: PgStore,
        /// The run it belongs to.
        run: Arc<Postgres>,
    },
}

/// Polls a future once: its output if it is ready at once.
pub(crate) fn ready<T>(future: impl Future<Output = T>) -> Option<T> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

fn not_ready(doing: &str) -> StoreError {
    StoreError::Backend {
        message: format!("the memory store did not {doing} at once"),
        source: None,
    }
}

impl Store {
    /// The memory store, if this is one.
    pub fn memory(&self) -> Option<&MemStore> {
        match self {
            Store::Memory(store) => Some(store),
            Store::Postgres { .. } => None,
        }
    }

    /// An independent copy of this store's contents (a world's snapshot): only in memory.
    pub fn copy(&self) -> Result<Store, crate::terms::Refusal> {
        match self {
            Store::Memory(store) => Ok(Store::Memory(store.copy())),
            Store::Postgres { .. } => Err(crate::terms::Refusal(
                "a store on PostgreSQL cannot be copied in process".into(),
            )),
        }
    }

    /// Runs `future`, an operation on this store, to completion inside a task the harness
    /// polls by hand: awaited in place in memory (it is ready at once; if it were not, the
    /// task would pend outside its gate, which the harness reports), blocked on with the
    /// run's runtime on PostgreSQL. Must not be called from inside that runtime.
    pub async fn finish<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
    {
        match self {
            Store::Memory(_) => future.await,
            Store::Postgres { run, .. } => run.runtime.block_on(future),
        }
    }

    /// Runs `future`, an operation on this store, to completion outside any task: `None`
    /// if a memory-store operation was not ready at once.
    pub fn run_now<F: Future>(&self, future: F) -> Option<F::Output> {
        match self {
            Store::Memory(_) => ready(future),
            Store::Postgres { run, .. } => Some(run.runtime.block_on(future)),
        }
    }

    /// The record with this id, as stored now.
    pub fn find_now<R: Record>(&self, id: Id) -> Result<Option<R>, StoreError>
    where
        Self: VersionedStore<R>,
    {
        self.run_now(VersionedStore::<R>::find_by_id(self, id))
            .unwrap_or_else(|| Err(not_ready("find a record")))
    }

    /// The ticket's count of reservation changes, as stored now.
    pub fn reservation_count_now(&self, ticket_id: Id) -> Result<Reservation, StoreError> {
        self.run_now(self.reservation_count(ticket_id))
            .unwrap_or_else(|| Err(not_ready("count reservations")))
    }

    /// Every entry of the outbox not yet relayed, oldest first.
    pub fn outbox_now(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        match self {
            Store::Memory(store) => Ok(store.outbox_snapshot()),
            Store::Postgres { store, run } => run.runtime.block_on(store.pending(usize::MAX)),
        }
    }
}

/// Forwards a call to the store behind.
macro_rules! forward {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Memory($store) => $call.await,
            Store::Postgres { store: $store, .. } => $call.await,
        }
    };
}

impl<R: Record> VersionedStore<R> for Store
where
    MemStore: VersionedStore<R>,
    PgStore: VersionedStore<R>,
{
    async fn insert(&self, record: R, event: Option<Event>) -> Result<R, StoreError> {
        forward!(self, store => VersionedStore::<R>::insert(store, record, event))
    }

    async fn find_by_id(&self, id: Id) -> Result<Option<R>, StoreError> {
        forward!(self, store => VersionedStore::<R>::find_by_id(store, id))
    }

    async fn save(&self, record: R, event: Option<Event>) -> Result<Version, StoreError> {
        forward!(self, store => VersionedStore::<R>::save(store, record, event))
    }

    async fn replace_if_current(
        &self,
        record: R,
        read_version: Version,
    ) -> Result<Version, StoreError> {
        forward!(self, store => VersionedStore::<R>::replace_if_current(store, record, read_version))
    }

    async fn list(&self, listing: Listing) -> Result<Vec<R>, StoreError> {
        forward!(self, store => VersionedStore::<R>::list(store, listing))
    }
}

impl OrderBook for Store {
    async fn active_order(&self, ticket_id: Id) -> Result<Option<Order>, StoreError> {
        forward!(self, store => store.active_order(ticket_id))
    }

    async fn reserve(
        &self,
        order: Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), StoreError> {
        forward!(self, store => store.reserve(order, price, check, outbox))
    }

    async fn cancel(
        &self,
        order: Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), StoreError> {
        forward!(self, store => store.cancel(order, outbox))
    }

    async fn reservation_count(&self, ticket_id: Id) -> Result<Reservation, StoreError> {
        forward!(self, store => store.reservation_count(ticket_id))
    }
}

impl Outbox for Store {
    async fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        forward!(self, store => store.pending(limit))
    }

    async fn mark_published(&self, seqs: &[u64]) -> Result<(), StoreError> {
        forward!(self, store => store.mark_published(seqs))
    }

    async fn quarantine(&self, seq: u64, error: &str) -> Result<(), StoreError> {
        forward!(self, store => store.quarantine(seq, error))
    }

    async fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        forward!(self, store => store.quarantined())
    }

    async fn outbox_written(&self) {
        forward!(self, store => store.outbox_written())
    }
}
