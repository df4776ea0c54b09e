//! `PgStore`: the versioned stores on PostgreSQL, for services whose records must outlive the
//! process. The contract is the traits' (the same as [`super::MemStore`]'s); how it is kept:
//!
//! - A save is one statement, `UPDATE ... SET ..., version = version + 1 WHERE id = $1 AND
//!   version = $2 RETURNING version`. Only when it matches no row does the store read the
//!   stored version to say why: none is [`StoreError::NotFound`], another version is
//!   [`StoreError::VersionConflict`] (and the read version itself, a lock holder that rolled
//!   back, means the save runs again).
//! - A record change and its outbox event are written by one statement (a data-modifying
//!   `WITH`) or one transaction, so they commit together or not at all.
//! - The orders schema allows one active (not cancelled) order per ticket: a partial unique
//!   index, whose violation is [`StoreError::TicketReserved`]. A reservation or a cancellation
//!   first locks and increments the ticket's row in `ticket_reservations` (an upsert), in the
//!   same transaction as the order write, so one ticket's reservation changes are serialised
//!   and numbered 1, 2, 3, ... in commit order; an atomic reservation checks for an active order
//!   while holding that lock.
//!
//! Storage: ids are `bytea` (the id's 12 bytes), prices `bigint` cents, versions and
//! reservation numbers `bigint`, `expires_at` `bigint` Unix milliseconds (exact, and no time
//! zone to get wrong), the outbox payload `json` (the event's encoding, verbatim).
//!
//! Each store lives in its own PostgreSQL schema, selected by `search_path` on every pooled
//! connection, so the two services can share one database without colliding. On start the
//! store applies the migrations of `impl/migrations/` (embedded in the binary) in order, in
//! one transaction, under an advisory lock keyed by the schema, and records them in
//! `schema_migrations`: two processes starting at once apply them once.
//!
//! The relay is woken by LISTEN/NOTIFY (a trigger on the outbox notifies channel
//! `outbox:<schema>`) on one dedicated connection, opened by the first
//! [`Outbox::outbox_written`]; a polling interval covers a lost listener connection.
//!
//! Statements are prepared once per pooled connection and cached. Every failure of the server
//! is a [`StoreError::Backend`] naming the server (password hidden), the schema and the
//! operation.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{AsyncMessage, NoTls, Row};

use crate::events::{Event, OrderCancelled, OrderCreated, OrderedTicket, TicketRef};
use crate::id::Id;
use crate::price::Price;
use crate::records::{
    Order, OrderStatus, Record, Reservation, Ticket, TicketReplica, Timestamp, UserId, Version,
};
use crate::store::{
    Listing, OrderBook, Outbox, OutboxEntry, ReservationCheck, StoreError, VersionedStore,
};

/// One schema migration, embedded from `impl/migrations/`.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// The migrations, in the order they apply. A released migration is never edited: a change
/// is a new file.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_tickets",
        sql: include_str!("../../migrations/0001_tickets.sql"),
    },
    Migration {
        version: 2,
        name: "0002_orders",
        sql: include_str!("../../migrations/0002_orders.sql"),
    },
    Migration {
        version: 3,
        name: "0003_outbox",
        sql: include_str!("../../migrations/0003_outbox.sql"),
    },
];

/// The partial unique index that allows one active order per ticket (`0002_orders.sql`).
const ONE_ACTIVE_ORDER_PER_TICKET: &str = "orders_one_active_per_ticket";

/// How many times a write runs again after racing a concurrent writer (a version that moved
/// while the update waited for the row lock, an active order cancelled between a refused
/// insert and the look-up of who holds the ticket). Each retry needs another writer to have
/// committed meanwhile, so a handful is plenty.
const WRITE_ATTEMPTS: usize = 8;

/// The longest schema name: PostgreSQL's identifiers hold 63 bytes, and the notification
/// channel `outbox:<schema>` must fit too.
const SCHEMA_NAME_MAX: usize = 48;

/// How a [`PgStore`] connects. [`Default`] suits a service; tests shorten `outbox_poll`.
#[derive(Clone, Debug)]
pub struct PgStoreOptions {
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long opening a connection may take before the store gives up (so a store whose
    /// server is down fails at start, quickly, instead of hanging).
    pub connect_timeout: Duration,
    /// How long an operation waits for a free pooled connection.
    pub acquire_timeout: Duration,
    /// How long [`Outbox::outbox_written`] waits for a notification before resolving anyway
    /// (the fallback if the listener connection is lost).
    pub outbox_poll: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(30),
            outbox_poll: Duration::from_secs(1),
        }
    }
}

/// The PostgreSQL store. Cloning it shares the pool (members of a queue group share their
/// service's store).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The connection settings, for the listener's own connection.
    config: tokio_postgres::Config,
    /// The server (password hidden) and schema, for messages.
    target: String,
    schema: String,
    outbox_poll: Duration,
    /// Woken by the listener on every outbox notification; a wake-up with nobody waiting is
    /// kept as a permit, so a write between two `outbox_written` calls is not missed.
    outbox_signal: Arc<Notify>,
    /// The listener task, started by the first `outbox_written`, stopped with the store.
    listener: OnceLock<AbortOnDrop>,
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// What the store was doing when something failed: "save ticket 5f8d...".
#[derive(Clone, Copy)]
struct Doing {
    operation: &'static str,
    kind: &'static str,
    id: Option<Id>,
}

impl Doing {
    const fn on(operation: &'static str, kind: &'static str, id: Id) -> Self {
        Self {
            operation,
            kind,
            id: Some(id),
        }
    }

    const fn all(operation: &'static str, kind: &'static str) -> Self {
        Self {
            operation,
            kind,
            id: None,
        }
    }
}

impl fmt::Display for Doing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.operation, self.kind)?;
        match self.id {
            Some(id) => write!(f, " {id}"),
            None => Ok(()),
        }
    }
}

/// Why one attempt at a write did not complete.
enum WriteError {
    /// A final answer for the caller.
    Store(StoreError),
    /// The one-active-order index refused the write: look up who holds the ticket.
    SecondActiveOrder {
        /// The ticket.
        ticket_id: Id,
    },
    /// The update matched no row, yet the version it was read at is the one stored (a
    /// writer holding the row lock rolled back): run the attempt again.
    Raced,
}

impl From<StoreError> for WriteError {
    fn from(error: StoreError) -> Self {
        WriteError::Store(error)
    }
}

impl PgStore {
    /// Connects to the server at `url` (`postgres://user[:password]@host:port/database`),
    /// creates `schema` and its tables if needed, and returns the store. Fails within
    /// [`PgStoreOptions::connect_timeout`], with a [`StoreError::Backend`] naming the server,
    /// if the server cannot be reached.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, schema, PgStoreOptions::default()).await
    }

    /// [`PgStore::connect`] with explicit options.
    pub async fn connect_with(
        url: &str,
        schema: &str,
        options: PgStoreOptions,
    ) -> Result<Self, StoreError> {
        let target = format!("{} (schema {schema})", redact_password(url));
        check_schema_name(schema).map_err(|why| StoreError::Backend {
            message: format!("PostgreSQL at {target}: {why}"),
            source: None,
        })?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| backend_error(&target, "parse the URL", error))?;
        // Every pooled connection works in the store's schema and nowhere else.
        let search_path = format!("-c search_path={schema}");
        let startup_options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {search_path}"),
            _ => search_path,
        };
        config.options(startup_options);
        if config.get_application_name().is_none() {
            config.application_name(format!("ticketing-{schema}"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .wait_timeout(Some(options.acquire_timeout))
            .build()
            .map_err(|error| backend_error(&target, "build the connection pool", error))?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                config,
                target,
                schema: schema.to_owned(),
                outbox_poll: options.outbox_poll,
                outbox_signal: Arc::new(Notify::new()),
                listener: OnceLock::new(),
            }),
        };
        // The first connection: an unreachable server fails here, within the connect timeout.
        let client = store.client(Doing::all("open a", "connection")).await?;
        store.migrate(client).await?;
        Ok(store)
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The versions of the migrations applied to this store's schema, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i32>, StoreError> {
        let doing = Doing::all("list", "migrations");
        let rows = self
            .query(
                doing,
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(|error| self.failed(doing, error)))
            .collect()
    }

    /// Creates the schema and applies the migrations it lacks, in one transaction. The
    /// advisory lock makes a second process starting at the same time wait, then find them
    /// applied; `CREATE SCHEMA IF NOT EXISTS` alone races.
    async fn migrate(&self, mut client: Object) -> Result<(), StoreError> {
        let doing = Doing::all("migrate", "schema");
        let schema = &self.inner.schema;
        let failed = |error| self.failed(doing, error);
        let transaction = client.transaction().await.map_err(failed)?;
        let lock_key = format!("ticketing migrations {schema}");
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&lock_key],
            )
            .await
            .map_err(failed)?;
        // The schema name was checked to be a plain lowercase identifier: no quoting needed.
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 SET LOCAL search_path TO {schema};
                 CREATE TABLE IF NOT EXISTS schema_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 );"
            ))
            .await
            .map_err(failed)?;
        let applied: Vec<i32> = transaction
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(failed)?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(failed)?;
        for migration in MIGRATIONS {
            if applied.contains(&migration.version) {
                continue;
            }
            transaction
                .batch_execute(migration.sql)
                .await
                .map_err(failed)?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    &[&migration.version, &migration.name],
                )
                .await
                .map_err(failed)?;
        }
        transaction.commit().await.map_err(failed)
    }

    fn failed(&self, doing: Doing, error: impl StdError + Send + Sync + 'static) -> StoreError {
        backend_error(&self.inner.target, &doing.to_string(), error)
    }

    /// A value that does not fit its column, or a row that does not decode into a record
    /// (the table holds something no store wrote).
    fn corrupt(&self, doing: Doing, why: String) -> StoreError {
        StoreError::Backend {
            message: format!("PostgreSQL at {}: {doing}: {why}", self.inner.target),
            source: None,
        }
    }

    async fn client(&self, doing: Doing) -> Result<Object, StoreError> {
        self.inner.pool.get().await.map_err(|error| match error {
            // The connection's own error says it all; the pool's wrapper adds nothing.
            PoolError::Backend(error) => self.failed(doing, error),
            other => self.failed(doing, other),
        })
    }

    async fn query(
        &self,
        doing: Doing,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client(doing).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|error| self.failed(doing, error))?;
        client
            .query(&statement, params)
            .await
            .map_err(|error| self.failed(doing, error))
    }

    async fn query_opt(
        &self,
        doing: Doing,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let client = self.client(doing).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|error| self.failed(doing, error))?;
        client
            .query_opt(&statement, params)
            .await
            .map_err(|error| self.failed(doing, error))
    }

    /// Maps a failed write: a violation of the one-active-order index is for the caller to
    /// resolve, anything else is the backend's.
    fn write_failed(&self, doing: Doing, ticket_id: Option<Id>, error: PgError) -> WriteError {
        let second_active = error.as_db_error().is_some_and(|db| {
            db.code() == &SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some(ONE_ACTIVE_ORDER_PER_TICKET)
        });
        match ticket_id {
            Some(ticket_id) if second_active => WriteError::SecondActiveOrder { ticket_id },
            _ => WriteError::Store(self.failed(doing, error)),
        }
    }

    /// Runs `attempt` until it gives an answer: again after a race, and after the
    /// one-active-order index refused it, [`StoreError::TicketReserved`] naming the order that
    /// holds the ticket (or again, if that order was cancelled meanwhile).
    async fn until_settled<T, F, Fut>(&self, doing: Doing, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, WriteError>>,
    {
        for _ in 0..WRITE_ATTEMPTS {
            match attempt().await {
                Ok(done) => return Ok(done),
                Err(WriteError::Store(error)) => return Err(error),
                Err(WriteError::Raced) => {}
                Err(WriteError::SecondActiveOrder { ticket_id }) => {
                    if let Some(order) = self.find_active_order(ticket_id).await? {
                        return Err(StoreError::TicketReserved {
                            ticket_id,
                            order_id: order.id,
                        });
                    }
                }
            }
        }
        Err(StoreError::Backend {
            message: format!(
                "PostgreSQL at {}: {doing}: still racing concurrent writers after {WRITE_ATTEMPTS} attempts",
                self.inner.target
            ),
            source: None,
        })
    }

    async fn find_record<R: PgRecord>(&self, id: Id) -> Result<Option<R>, StoreError> {
        let doing = Doing::on("find", R::KIND, id);
        let row = self.query_opt(doing, R::FIND, &[&id]).await?;
        row.map(|row| R::from_row(&row).map_err(|why| self.corrupt(doing, why)))
            .transpose()
    }

    async fn list_records<R: PgRecord>(&self, listing: Listing) -> Result<Vec<R>, StoreError> {
        let doing = Doing::all("list", R::KIND);
        let rows = match R::listing(&listing) {
            Some(ListQuery::Plain(sql)) => self.query(doing, sql, &[]).await?,
            Some(ListQuery::ByUser(sql)) => {
                let Listing::OwnedBy(user) = &listing else {
                    return Ok(Vec::new());
                };
                self.query(doing, sql, &[&user.as_str()]).await?
            }
            None => return Ok(Vec::new()),
        };
        rows.iter()
            .map(|row| R::from_row(row).map_err(|why| self.corrupt(doing, why)))
            .collect()
    }

    async fn insert_record<R: PgRecord>(
        &self,
        record: R,
        event: Option<Event>,
        ticket_id: Option<Id>,
    ) -> Result<R, StoreError> {
        let doing = Doing::on("insert", R::KIND, record.id());
        let mut values = record.values().map_err(|why| self.corrupt(doing, why))?;
        let sql = match &event {
            Some(event) => {
                values.extend(outbox_values(event).map_err(|why| self.corrupt(doing, why))?);
                R::INSERT_WITH_EVENT
            }
            None => R::INSERT,
        };
        let (params, record) = (&as_params(&values), &record);
        self.until_settled(doing, || async move {
            let client = self.client(doing).await?;
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|error| self.failed(doing, error))?;
            let row = client
                .query_one(&statement, params)
                .await
                .map_err(|error| self.write_failed(doing, ticket_id, error))?;
            let inserted: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
            if inserted == 0 {
                return Err(StoreError::Duplicate {
                    kind: R::KIND,
                    id: record.id(),
                }
                .into());
            }
            Ok(record.clone())
        })
        .await
    }

    async fn save_record<R: PgRecord>(
        &self,
        record: R,
        event: Option<Event>,
        ticket_id: Option<Id>,
    ) -> Result<R, StoreError> {
        let doing = Doing::on("save", R::KIND, record.id());
        let mut values = record.values().map_err(|why| self.corrupt(doing, why))?;
        let sql = match &event {
            Some(event) => {
                values.extend(outbox_values(event).map_err(|why| self.corrupt(doing, why))?);
                R::SAVE_WITH_EVENT
            }
            None => R::SAVE,
        };
        let (params, record) = (&as_params(&values), &record);
        self.until_settled(doing, || async move {
            let client = self.client(doing).await?;
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|error| self.failed(doing, error))?;
            let row = client
                .query_opt(&statement, params)
                .await
                .map_err(|error| self.write_failed(doing, ticket_id, error))?;
            self.saved(doing, &client, record, row).await
        })
        .await
    }

    /// The record a save statement returned (`RETURNING version`), or, when it matched no
    /// row, why: the version stored now, read on the same connection (or transaction), tells
    /// a missing record from a conflict.
    async fn saved<R: PgRecord>(
        &self,
        doing: Doing,
        client: &impl GenericClient,
        record: &R,
        row: Option<Row>,
    ) -> Result<R, WriteError> {
        let version = |row: &Row| -> Result<Version, StoreError> {
            let value: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
            to_u64(value, "version").map_err(|why| self.corrupt(doing, why))
        };
        if let Some(row) = row {
            let mut saved = record.clone();
            saved.set_version(version(&row)?);
            return Ok(saved);
        }
        let statement = client
            .prepare_cached(R::VERSION)
            .await
            .map_err(|error| self.failed(doing, error))?;
        let stored = client
            .query_opt(&statement, &[&record.id()])
            .await
            .map_err(|error| self.failed(doing, error))?;
        let read_at = record.version();
        match stored.as_ref().map(version).transpose()? {
            None => Err(StoreError::NotFound {
                kind: R::KIND,
                id: record.id(),
            }
            .into()),
            Some(found) if found != read_at => Err(StoreError::VersionConflict {
                kind: R::KIND,
                id: record.id(),
                expected: read_at,
                found,
            }
            .into()),
            // The update matched nothing, yet the read version is stored: the save lost a race
            // it can win on a second try (a writer that held the row lock rolled back).
            Some(_) => Err(WriteError::Raced),
        }
    }

    async fn find_active_order(&self, ticket_id: Id) -> Result<Option<Order>, StoreError> {
        let doing = Doing::on("find the active order on", "ticket", ticket_id);
        let row = self.query_opt(doing, ACTIVE_ORDER, &[&ticket_id]).await?;
        row.map(|row| Order::from_row(&row).map_err(|why| self.corrupt(doing, why)))
            .transpose()
    }

    /// One attempt at [`OrderBook::reserve`], in one transaction.
    async fn try_reserve(
        &self,
        order: &Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), WriteError> {
        let doing = Doing::on("reserve", "ticket", order.ticket_id);
        let failed = |error| self.write_failed(doing, Some(order.ticket_id), error);
        let values = order.values().map_err(|why| self.corrupt(doing, why))?;
        let mut client = self.client(doing).await?;
        let transaction = client.transaction().await.map_err(failed)?;
        let reservation = count_reservation_change(&transaction, order.ticket_id)
            .await
            .map_err(failed)?;
        let insert = match check {
            ReservationCheck::Atomic => INSERT_ORDER_UNLESS_RESERVED,
            ReservationCheck::Unchecked => INSERT_ORDER,
        };
        let statement = transaction.prepare_cached(insert).await.map_err(failed)?;
        let inserted = transaction
            .execute(&statement, &as_params(&values))
            .await
            .map_err(failed)?;
        if inserted == 0 {
            // Rolled back when `transaction` drops. The ticket's counter row is still locked
            // here, so an atomic reservation's answer cannot be overtaken.
            let holder = transaction
                .query_opt(ACTIVE_ORDER_ID, &[&order.ticket_id])
                .await
                .map_err(failed)?;
            return Err(match (check, holder) {
                (ReservationCheck::Atomic, Some(row)) => StoreError::TicketReserved {
                    ticket_id: order.ticket_id,
                    order_id: row
                        .try_get::<_, Id>(0)
                        .map_err(|error| self.failed(doing, error))?,
                },
                _ => StoreError::Duplicate {
                    kind: Order::KIND,
                    id: order.id,
                },
            }
            .into());
        }
        let event = OrderCreated {
            id: order.id,
            version: order.version,
            status: order.status,
            user_id: order.user_id.clone(),
            expires_at: order.expires_at,
            ticket: OrderedTicket {
                id: order.ticket_id,
                price,
            },
            reservation,
        };
        if outbox {
            let outboxed = Event::OrderCreated(event.clone());
            let values = outbox_values(&outboxed).map_err(|why| self.corrupt(doing, why))?;
            let statement = transaction
                .prepare_cached(INSERT_OUTBOX)
                .await
                .map_err(failed)?;
            transaction
                .execute(&statement, &as_params(&values))
                .await
                .map_err(failed)?;
        }
        transaction.commit().await.map_err(failed)?;
        Ok((order.clone(), event))
    }

    /// One attempt at [`OrderBook::cancel`], in one transaction.
    async fn try_cancel(
        &self,
        order: &Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), WriteError> {
        let doing = Doing::on("cancel", Order::KIND, order.id);
        let failed = |error| self.write_failed(doing, Some(order.ticket_id), error);
        let cancelled = Order {
            status: OrderStatus::Cancelled,
            ..order.clone()
        };
        let values = cancelled.values().map_err(|why| self.corrupt(doing, why))?;
        let mut client = self.client(doing).await?;
        let transaction = client.transaction().await.map_err(failed)?;
        let reservation = count_reservation_change(&transaction, order.ticket_id)
            .await
            .map_err(failed)?;
        let statement = transaction
            .prepare_cached(Order::SAVE)
            .await
            .map_err(failed)?;
        let row = transaction
            .query_opt(&statement, &as_params(&values))
            .await
            .map_err(failed)?;
        // On any error the transaction drops, rolling back the counted change.
        let cancelled = self.saved(doing, &transaction, &cancelled, row).await?;
        let event = OrderCancelled {
            id: cancelled.id,
            version: cancelled.version,
            ticket: TicketRef {
                id: cancelled.ticket_id,
            },
            reservation,
        };
        if outbox {
            let outboxed = Event::OrderCancelled(event.clone());
            let values = outbox_values(&outboxed).map_err(|why| self.corrupt(doing, why))?;
            let statement = transaction
                .prepare_cached(INSERT_OUTBOX)
                .await
                .map_err(failed)?;
            transaction
                .execute(&statement, &as_params(&values))
                .await
                .map_err(failed)?;
        }
        transaction.commit().await.map_err(failed)?;
        Ok((cancelled, event))
    }

    /// Starts the outbox listener once.
    fn listen_for_outbox(&self) {
        self.inner.listener.get_or_init(|| {
            AbortOnDrop(tokio::spawn(outbox_listener(
                self.inner.config.clone(),
                format!("outbox:{}", self.inner.schema),
                Arc::clone(&self.inner.outbox_signal),
                self.inner.outbox_poll,
            )))
        });
    }
}

type PgError = tokio_postgres::Error;

/// Locks the ticket's reservation counter row (creating it at 1) and counts one change.
async fn count_reservation_change(
    transaction: &deadpool_postgres::Transaction<'_>,
    ticket_id: Id,
) -> Result<Reservation, PgError> {
    let statement = transaction.prepare_cached(COUNT_RESERVATION_CHANGE).await?;
    let changes: i64 = transaction
        .query_one(&statement, &[&ticket_id])
        .await?
        .try_get(0)?;
    // The column's CHECK keeps it positive.
    Ok(changes.unsigned_abs())
}

/// Keeps one LISTEN connection open and turns its notifications into wake-ups; reconnects
/// after `retry` if the connection is lost (the relay polls meanwhile).
async fn outbox_listener(
    config: tokio_postgres::Config,
    channel: String,
    signal: Arc<Notify>,
    retry: Duration,
) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                // The channel is `outbox:` and a checked schema name: quoting suffices.
                let listen_sql = format!("LISTEN \"{channel}\"");
                let listen = client.batch_execute(&listen_sql);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        listened = &mut listen, if !listening => match listened {
                            Ok(()) => {
                                listening = true;
                                // Entries written before LISTEN took effect were not
                                // announced: have the relay look once.
                                signal.notify_one();
                            }
                            Err(error) => {
                                tracing::warn!(%error, %channel, "outbox LISTEN failed");
                                break;
                            }
                        },
                        message = messages.next() => match message {
                            Some(Ok(AsyncMessage::Notification(_))) => signal.notify_one(),
                            Some(Ok(_)) => {}
                            Some(Err(error)) => {
                                tracing::warn!(%error, %channel, "outbox listener lost its connection");
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, %channel, "outbox listener cannot connect");
            }
        }
        tokio::time::sleep(retry).await;
    }
}

macro_rules! record_statements {
    (
        table: $table:literal,
        columns: $columns:literal,
        values: $values:literal,
        set: $set:literal,
        read_version: $read_version:literal,
        outbox: $outbox:literal $(,)?
    ) => {
        const FIND: &'static str = concat!("SELECT ", $columns, " FROM ", $table, " WHERE id = $1");
        const LIST: &'static str = concat!("SELECT ", $columns, " FROM ", $table);
        const INSERT: &'static str = concat!(
            "WITH inserted AS (INSERT INTO ",
            $table,
            " (",
            $columns,
            ") VALUES (",
            $values,
            ") ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT count(*) FROM inserted"
        );
        const INSERT_WITH_EVENT: &'static str = concat!(
            "WITH inserted AS (INSERT INTO ",
            $table,
            " (",
            $columns,
            ") VALUES (",
            $values,
            ") ON CONFLICT (id) DO NOTHING RETURNING 1), ",
            "outboxed AS (INSERT INTO outbox (subject, payload) SELECT ",
            $outbox,
            " FROM inserted) SELECT count(*) FROM inserted"
        );
        const SAVE: &'static str = concat!(
            "UPDATE ",
            $table,
            " SET ",
            $set,
            ", version = version + 1 WHERE id = $1 AND version = ",
            $read_version,
            " RETURNING version"
        );
        const SAVE_WITH_EVENT: &'static str = concat!(
            "WITH saved AS (UPDATE ",
            $table,
            " SET ",
            $set,
            ", version = version + 1 WHERE id = $1 AND version = ",
            $read_version,
            " RETURNING version), ",
            "outboxed AS (INSERT INTO outbox (subject, payload) SELECT ",
            $outbox,
            " FROM saved) SELECT version FROM saved"
        );
        const VERSION: &'static str = concat!("SELECT version FROM ", $table, " WHERE id = $1");
    };
}

/// How a listing is queried.
enum ListQuery {
    /// No parameter.
    Plain(&'static str),
    /// `$1` is the user id.
    ByUser(&'static str),
}

/// A record kind with a table: its statements and how it maps to a row.
///
/// Statement parameters are [`PgRecord::values`] in column order, `id` first; in an insert
/// the `version` parameter is the version to store, in a save the version the record was
/// read at. The event's subject and payload follow.
trait PgRecord: Record {
    const FIND: &'static str;
    const LIST: &'static str;
    const INSERT: &'static str;
    const INSERT_WITH_EVENT: &'static str;
    const SAVE: &'static str;
    const SAVE_WITH_EVENT: &'static str;
    /// The stored version, to tell why a save matched no row.
    const VERSION: &'static str;

    fn values(&self) -> Result<Vec<Value>, String>;
    fn from_row(row: &Row) -> Result<Self, String>;
    /// The query for `listing`, or `None` when it selects nothing.
    fn listing(listing: &Listing) -> Option<ListQuery>;
}

impl PgRecord for Ticket {
    record_statements! {
        table: "tickets",
        columns: "id, title, price_cents, user_id, version, order_id, reservation",
        values: "$1, $2, $3, $4, $5, $6, $7",
        set: "title = $2, price_cents = $3, user_id = $4, order_id = $6, reservation = $7",
        read_version: "$5",
        outbox: "$8::text, $9::text::json",
    }

    fn values(&self) -> Result<Vec<Value>, String> {
        Ok(vec![
            Value::Id(self.id),
            Value::Text(Arc::clone(&self.title)),
            Value::Bigint(to_i64(self.price.cents(), "price")?),
            Value::Text(Arc::clone(&self.user_id.0)),
            Value::Bigint(to_i64(self.version, "version")?),
            Value::OptionalId(self.order_id),
            Value::Bigint(to_i64(self.reservation, "reservation")?),
        ])
    }

    fn from_row(row: &Row) -> Result<Self, String> {
        Ok(Ticket {
            id: column(row, 0)?,
            title: column::<&str>(row, 1)?.into(),
            price: price(column(row, 2)?)?,
            user_id: UserId::new(column::<&str>(row, 3)?),
            version: to_u64(column(row, 4)?, "version")?,
            order_id: column(row, 5)?,
            reservation: to_u64(column(row, 6)?, "reservation")?,
        })
    }

    fn listing(listing: &Listing) -> Option<ListQuery> {
        Some(match listing {
            Listing::All => ListQuery::Plain(Self::LIST),
            Listing::Unreserved => ListQuery::Plain(LIST_UNRESERVED_TICKETS),
            Listing::OwnedBy(_) => ListQuery::ByUser(LIST_TICKETS_BY_USER),
        })
    }
}

const LIST_UNRESERVED_TICKETS: &str = "SELECT id, title, price_cents, user_id, version, order_id, reservation FROM tickets WHERE order_id IS NULL";
const LIST_TICKETS_BY_USER: &str = "SELECT id, title, price_cents, user_id, version, order_id, reservation FROM tickets WHERE user_id = $1";

impl PgRecord for TicketReplica {
    record_statements! {
        table: "ticket_replicas",
        columns: "id, title, price_cents, version",
        values: "$1, $2, $3, $4",
        set: "title = $2, price_cents = $3",
        read_version: "$4",
        outbox: "$5::text, $6::text::json",
    }

    fn values(&self) -> Result<Vec<Value>, String> {
        Ok(vec![
            Value::Id(self.id),
            Value::Text(Arc::clone(&self.title)),
            Value::Bigint(to_i64(self.price.cents(), "price")?),
            Value::Bigint(to_i64(self.version, "version")?),
        ])
    }

    fn from_row(row: &Row) -> Result<Self, String> {
        Ok(TicketReplica {
            id: column(row, 0)?,
            title: column::<&str>(row, 1)?.into(),
            price: price(column(row, 2)?)?,
            version: to_u64(column(row, 3)?, "version")?,
        })
    }

    fn listing(listing: &Listing) -> Option<ListQuery> {
        // A replica has no owner and no reservation: as MemStore, every replica is
        // "unreserved" and none is anybody's.
        match listing {
            Listing::All | Listing::Unreserved => Some(ListQuery::Plain(Self::LIST)),
            Listing::OwnedBy(_) => None,
        }
    }
}

impl PgRecord for Order {
    record_statements! {
        table: "orders",
        columns: "id, user_id, status, expires_at_ms, ticket_id, version",
        values: "$1, $2, $3, $4, $5, $6",
        set: "user_id = $2, status = $3, expires_at_ms = $4, ticket_id = $5",
        read_version: "$6",
        outbox: "$7::text, $8::text::json",
    }

    fn values(&self) -> Result<Vec<Value>, String> {
        Ok(vec![
            Value::Id(self.id),
            Value::Text(Arc::clone(&self.user_id.0)),
            Value::Static(self.status.as_str()),
            Value::Bigint(self.expires_at.unix_millis()),
            Value::Id(self.ticket_id),
            Value::Bigint(to_i64(self.version, "version")?),
        ])
    }

    fn from_row(row: &Row) -> Result<Self, String> {
        Ok(Order {
            id: column(row, 0)?,
            user_id: UserId::new(column::<&str>(row, 1)?),
            status: column::<&str>(row, 2)?.parse()?,
            expires_at: Timestamp::from_unix_millis(column(row, 3)?),
            ticket_id: column(row, 4)?,
            version: to_u64(column(row, 5)?, "version")?,
        })
    }

    fn listing(listing: &Listing) -> Option<ListQuery> {
        Some(match listing {
            Listing::All | Listing::Unreserved => ListQuery::Plain(Self::LIST),
            Listing::OwnedBy(_) => ListQuery::ByUser(LIST_ORDERS_BY_USER),
        })
    }
}

/// The unchecked reservation's insert (`racy-reserve`): nothing when the id exists; the
/// one-active-order index still refuses a second active order.
const INSERT_ORDER: &str = "INSERT INTO orders (id, user_id, status, expires_at_ms, ticket_id, version) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
const LIST_ORDERS_BY_USER: &str =
    "SELECT id, user_id, status, expires_at_ms, ticket_id, version FROM orders WHERE user_id = $1";
const ACTIVE_ORDER: &str = "SELECT id, user_id, status, expires_at_ms, ticket_id, version FROM orders WHERE ticket_id = $1 AND status <> 'cancelled' LIMIT 1";
const ACTIVE_ORDER_ID: &str =
    "SELECT id FROM orders WHERE ticket_id = $1 AND status <> 'cancelled' LIMIT 1";
/// The atomic reservation's insert: nothing when the ticket has an active order (checked
/// while the ticket's counter row is locked) or the id exists.
const INSERT_ORDER_UNLESS_RESERVED: &str = "INSERT INTO orders (id, user_id, status, expires_at_ms, ticket_id, version) SELECT $1::bytea, $2::text, $3::text, $4::bigint, $5::bytea, $6::bigint WHERE NOT EXISTS (SELECT 1 FROM orders WHERE ticket_id = $5 AND status <> 'cancelled') ON CONFLICT (id) DO NOTHING";
const COUNT_RESERVATION_CHANGE: &str = "INSERT INTO ticket_reservations (ticket_id, changes) VALUES ($1, 1) ON CONFLICT (ticket_id) DO UPDATE SET changes = ticket_reservations.changes + 1 RETURNING changes";
const RESERVATION_COUNT: &str = "SELECT changes FROM ticket_reservations WHERE ticket_id = $1";
const INSERT_OUTBOX: &str = "INSERT INTO outbox (subject, payload) VALUES ($1, $2::text::json)";
const PENDING_OUTBOX: &str = "SELECT seq, subject, payload::text FROM outbox ORDER BY seq LIMIT $1";
const MARK_PUBLISHED: &str = "DELETE FROM outbox WHERE seq = ANY($1)";

impl VersionedStore<Ticket> for PgStore {
    async fn insert(&self, ticket: Ticket, event: Option<Event>) -> Result<Ticket, StoreError> {
        self.insert_record(ticket, event, None).await
    }

    async fn find_by_id(&self, id: Id) -> Result<Option<Ticket>, StoreError> {
        self.find_record(id).await
    }

    async fn save(&self, ticket: Ticket, event: Option<Event>) -> Result<Ticket, StoreError> {
        self.save_record(ticket, event, None).await
    }

    async fn list(&self, listing: Listing) -> Result<Vec<Ticket>, StoreError> {
        self.list_records(listing).await
    }
}

impl VersionedStore<TicketReplica> for PgStore {
    async fn insert(
        &self,
        replica: TicketReplica,
        event: Option<Event>,
    ) -> Result<TicketReplica, StoreError> {
        self.insert_record(replica, event, None).await
    }

    async fn find_by_id(&self, id: Id) -> Result<Option<TicketReplica>, StoreError> {
        self.find_record(id).await
    }

    async fn save(
        &self,
        replica: TicketReplica,
        event: Option<Event>,
    ) -> Result<TicketReplica, StoreError> {
        self.save_record(replica, event, None).await
    }

    async fn list(&self, listing: Listing) -> Result<Vec<TicketReplica>, StoreError> {
        self.list_records(listing).await
    }
}

impl VersionedStore<Order> for PgStore {
    async fn insert(&self, order: Order, event: Option<Event>) -> Result<Order, StoreError> {
        let ticket_id = order.ticket_id;
        self.insert_record(order, event, Some(ticket_id)).await
    }

    async fn find_by_id(&self, id: Id) -> Result<Option<Order>, StoreError> {
        self.find_record(id).await
    }

    async fn save(&self, order: Order, event: Option<Event>) -> Result<Order, StoreError> {
        let ticket_id = order.ticket_id;
        self.save_record(order, event, Some(ticket_id)).await
    }

    async fn list(&self, listing: Listing) -> Result<Vec<Order>, StoreError> {
        self.list_records(listing).await
    }
}

impl OrderBook for PgStore {
    async fn active_order(&self, ticket_id: Id) -> Result<Option<Order>, StoreError> {
        self.find_active_order(ticket_id).await
    }

    async fn reserve(
        &self,
        order: Order,
        price: Price,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), StoreError> {
        let doing = Doing::on("reserve", "ticket", order.ticket_id);
        let order = &order;
        self.until_settled(doing, || self.try_reserve(order, price, check, outbox))
            .await
    }

    async fn cancel(
        &self,
        order: Order,
        outbox: bool,
    ) -> Result<(Order, OrderCancelled), StoreError> {
        let doing = Doing::on("cancel", Order::KIND, order.id);
        let order = &order;
        self.until_settled(doing, || self.try_cancel(order, outbox))
            .await
    }

    async fn reservation_count(&self, ticket_id: Id) -> Result<Reservation, StoreError> {
        let doing = Doing::on("count reservations of", "ticket", ticket_id);
        let row = self
            .query_opt(doing, RESERVATION_COUNT, &[&ticket_id])
            .await?;
        match row {
            None => Ok(0),
            Some(row) => {
                let changes: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
                to_u64(changes, "reservation count").map_err(|why| self.corrupt(doing, why))
            }
        }
    }
}

impl Outbox for PgStore {
    async fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let doing = Doing::all("read", "outbox");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(doing, PENDING_OUTBOX, &[&limit]).await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
                let subject: &str = row.try_get(1).map_err(|error| self.failed(doing, error))?;
                let payload: &str = row.try_get(2).map_err(|error| self.failed(doing, error))?;
                let event = Event::decode(subject, payload.as_bytes())
                    .map_err(|error| self.corrupt(doing, format!("outbox entry {seq}: {error}")))?;
                let seq = to_u64(seq, "outbox seq").map_err(|why| self.corrupt(doing, why))?;
                Ok(OutboxEntry { seq, event })
            })
            .collect()
    }

    async fn mark_published(&self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let doing = Doing::all("mark published in", "outbox");
        // A seq beyond bigint names no entry; dropping it deletes nothing, as intended.
        let seqs: Vec<i64> = seqs
            .iter()
            .filter_map(|seq| i64::try_from(*seq).ok())
            .collect();
        self.query(doing, MARK_PUBLISHED, &[&seqs]).await?;
        Ok(())
    }

    async fn outbox_written(&self) {
        self.listen_for_outbox();
        let notified = self.inner.outbox_signal.notified();
        // Either outcome means "look now"; the timeout is the polling fallback.
        let _ = tokio::time::timeout(self.inner.outbox_poll, notified).await;
    }
}

/// A statement parameter: the few column types the tables use.
#[derive(Debug)]
enum Value {
    Id(Id),
    OptionalId(Option<Id>),
    Text(Arc<str>),
    Static(&'static str),
    Owned(String),
    Bigint(i64),
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Id(id) => id.to_sql(ty, out),
            Value::OptionalId(id) => id.to_sql(ty, out),
            Value::Text(text) => (&**text).to_sql(ty, out),
            Value::Static(text) => text.to_sql(ty, out),
            Value::Owned(text) => text.to_sql(ty, out),
            Value::Bigint(number) => number.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <Id as ToSql>::accepts(ty) || <&str as ToSql>::accepts(ty) || <i64 as ToSql>::accepts(ty)
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // `accepts` cannot see which variant it is asked about: check the pair here, so a
        // statement and its parameters that disagree fail instead of sending wrong bytes.
        match self {
            Value::Id(id) => id.to_sql_checked(ty, out),
            Value::OptionalId(id) => id.to_sql_checked(ty, out),
            Value::Text(text) => (&**text).to_sql_checked(ty, out),
            Value::Static(text) => text.to_sql_checked(ty, out),
            Value::Owned(text) => text.to_sql_checked(ty, out),
            Value::Bigint(number) => number.to_sql_checked(ty, out),
        }
    }
}

/// An id is stored as its 12 bytes.
impl ToSql for Id {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.as_bytes().as_slice().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::BYTEA
    }

    to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for Id {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let bytes = <&[u8]>::from_sql(ty, raw)?;
        let bytes: [u8; 12] = bytes
            .try_into()
            .map_err(|_| format!("an id is 12 bytes, found {}", bytes.len()))?;
        Ok(Id::from_bytes(bytes))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::BYTEA
    }
}

fn as_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| value as &(dyn ToSql + Sync))
        .collect()
}

/// The subject and payload parameters of an outbox entry.
fn outbox_values(event: &Event) -> Result<[Value; 2], String> {
    let payload = event.encode().map_err(|error| error.to_string())?;
    let payload = String::from_utf8(payload).map_err(|error| error.to_string())?;
    Ok([
        Value::Static(event.subject().as_str()),
        Value::Owned(payload),
    ])
}

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, String> {
    row.try_get(index)
        .map_err(|error| format!("column {index}: {}", error_chain(&error)))
}

fn price(cents: i64) -> Result<Price, String> {
    let cents = to_u64(cents, "price")?;
    Price::from_cents(cents).map_err(|error| format!("price of {cents} cents: {error}"))
}

fn to_i64(value: u64, what: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{what} {value} does not fit a bigint"))
}

fn to_u64(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("{what} {value} is negative"))
}

/// A backend error naming the server and what the store was doing, with the whole chain of
/// causes (tokio-postgres's own message is only "db error" or "error connecting to server").
fn backend_error(
    target: &str,
    doing: &str,
    error: impl StdError + Send + Sync + 'static,
) -> StoreError {
    StoreError::Backend {
        message: format!(
            "PostgreSQL at {target}: cannot {doing}: {}",
            error_chain(&error)
        ),
        source: Some(Box::new(error)),
    }
}

/// An error and its causes, "outer: inner: innermost", each said once.
pub(crate) fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

/// A schema name is a plain lowercase identifier (so it needs no quoting anywhere), not one
/// of PostgreSQL's own, short enough for the notification channel.
fn check_schema_name(schema: &str) -> Result<(), String> {
    let mut chars = schema.chars();
    let plain = chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain || schema.len() > SCHEMA_NAME_MAX || schema.starts_with("pg_") {
        return Err(format!(
            "invalid schema name {schema:?}: use 1 to {SCHEMA_NAME_MAX} lowercase letters, \
             digits and underscores, starting with a letter, not starting with pg_"
        ));
    }
    Ok(())
}

/// The URL with its password, if any, replaced by `***` (URL form `user:password@` and key
/// `password=`), for messages and logs.
pub fn redact_password(url: &str) -> String {
    let mut redacted = url.to_owned();
    if let Some(scheme_end) = redacted.find("://") {
        let authority_start = scheme_end + 3;
        let rest = &redacted[authority_start..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            redacted.replace_range(authority_start + colon + 1..authority_start + at, "***");
        }
    }
    let mut searched = 0;
    while let Some(found) = redacted[searched..].find("password=") {
        let value_start = searched + found + "password=".len();
        let value_end = redacted[value_start..]
            .find(['&', ' '])
            .map_or(redacted.len(), |end| value_start + end);
        redacted.replace_range(value_start..value_end, "***");
        searched = value_start + 3;
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_password("postgres://app:hunter2@db:5432/tickets"),
            "postgres://app:***@db:5432/tickets"
        );
        assert_eq!(
            redact_password("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(
            redact_password("host=db user=app password=hunter2 dbname=x"),
            "host=db user=app password=*** dbname=x"
        );
        assert_eq!(
            redact_password("postgres://db/x?user=app&password=hunter2&sslmode=disable"),
            "postgres://db/x?user=app&password=***&sslmode=disable"
        );
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["tickets", "orders", "_t1", "case_12"] {
            assert_eq!(check_schema_name(good), Ok(()), "{good}");
        }
        let too_long = "x".repeat(SCHEMA_NAME_MAX + 1);
        for bad in [
            "",
            "Tickets",
            "1tickets",
            "tick-ets",
            "a;drop",
            "pg_catalog",
            "\"x\"",
            too_long.as_str(),
        ] {
            assert!(check_schema_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn save_statements_check_the_read_version_and_increment() {
        assert!(Ticket::SAVE.contains("version = version + 1 WHERE id = $1 AND version = $5"));
        assert!(Order::SAVE_WITH_EVENT.contains("INSERT INTO outbox"));
        assert!(!Order::SAVE.contains("outbox"));
    }
}
