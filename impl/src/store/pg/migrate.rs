//! The schema's migrations: the SQL files of `impl/migrations/`, embedded in the binary and
//! applied in order when a store connects.
//!
//! The invariant: each migration applies once per schema. They apply in one transaction,
//! under an advisory lock keyed by the schema, and are recorded in `schema_migrations`: two
//! processes starting at once apply them once (`CREATE SCHEMA IF NOT EXISTS` alone races). A
//! released migration is never edited: a change is a new file.

use deadpool_postgres::Object;

use super::PgStore;
use super::errors::Doing;
use super::sql::{
    APPLIED_MIGRATIONS, APPLIED_MIGRATIONS_IN_ORDER, LOCK_MIGRATIONS, RECORD_MIGRATION,
    create_schema,
};
#[cfg(feature = "testkit")]
use super::sql::{CLEAR_STORE, DROP_RESERVATION_BACKSTOP, RESTORE_RESERVATION_BACKSTOP};
use crate::store::StoreError;

/// One schema migration, embedded from `impl/migrations/`.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// The migrations, in the order they apply.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_tickets",
        sql: include_str!("../../../migrations/0001_tickets.sql"),
    },
    Migration {
        version: 2,
        name: "0002_orders",
        sql: include_str!("../../../migrations/0002_orders.sql"),
    },
    Migration {
        version: 3,
        name: "0003_outbox",
        sql: include_str!("../../../migrations/0003_outbox.sql"),
    },
    Migration {
        version: 4,
        name: "0004_outbox_quarantine",
        sql: include_str!("../../../migrations/0004_outbox_quarantine.sql"),
    },
    Migration {
        version: 5,
        name: "0005_order_book_calls",
        sql: include_str!("../../../migrations/0005_order_book_calls.sql"),
    },
];

impl PgStore {
    /// The versions of the migrations applied to this store's schema, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i32>, StoreError> {
        let doing = Doing::all("list", "migrations");
        let rows = self.query(doing, APPLIED_MIGRATIONS_IN_ORDER, &[]).await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(|error| self.failed(doing, error)))
            .collect()
    }

    /// Creates the schema and applies the migrations it lacks, in one transaction. The
    /// advisory lock makes a second process starting at the same time wait, then find them
    /// applied.
    pub(super) async fn migrate(&self, mut client: Object) -> Result<(), StoreError> {
        let doing = Doing::all("migrate", "schema");
        let schema = &self.inner.schema;
        let failed = |error| self.failed(doing, error);
        let transaction = client.transaction().await.map_err(failed)?;
        let lock_key = format!("ticketing migrations {schema}");
        transaction
            .execute(LOCK_MIGRATIONS, &[&lock_key])
            .await
            .map_err(failed)?;
        transaction
            .batch_execute(&create_schema(schema))
            .await
            .map_err(failed)?;
        let applied: Vec<i32> = transaction
            .query(APPLIED_MIGRATIONS, &[])
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
                .execute(RECORD_MIGRATION, &[&migration.version, &migration.name])
                .await
                .map_err(failed)?;
        }
        transaction.commit().await.map_err(failed)
    }

    /// Deletes everything this store holds (records, outbox, quarantine, reservation counts),
    /// in one transaction: an empty store again, in its schema as migrated. For tools that
    /// need many fresh stores (the harness's worlds): a new schema costs its migrations, this
    /// a few deletes. Test-only (feature `testkit`).
    #[cfg(feature = "testkit")]
    pub async fn clear(&self) -> Result<(), StoreError> {
        let doing = Doing::all("clear", "store");
        let client = self.client(doing).await?;
        client
            .batch_execute(CLEAR_STORE)
            .await
            .map_err(|error| self.failed(doing, error))
    }

    /// Removes (`false`) or restores (`true`) the schema's backstop against a second active
    /// order on a ticket, the partial unique index `orders_one_active_per_ticket`. A replay of
    /// a variant without the atomic reservation (`racy-reserve`, `course`) removes it: the
    /// index is that design element's second line, and the variant is the design without it.
    /// `ticketing serve` never calls this; its schema always has the index. Test-only
    /// (feature `testkit`).
    #[cfg(feature = "testkit")]
    pub async fn set_reservation_backstop(&self, on: bool) -> Result<(), StoreError> {
        let doing = Doing::all("set the reservation backstop of", "store");
        let client = self.client(doing).await?;
        let sql = if on {
            RESTORE_RESERVATION_BACKSTOP
        } else {
            DROP_RESERVATION_BACKSTOP
        };
        client
            .batch_execute(sql)
            .await
            .map_err(|error| self.failed(doing, error))
    }
}
