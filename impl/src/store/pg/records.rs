//! Reading and writing records: find, list, and the one write path that every insert and
//! save goes through (the order book's reservation and cancellation are calls of their own,
//! `order_book`).
//!
//! The invariant: a record change and its outbox event are one statement. [`PgStore::run_write`]
//! is the only place a record's write meets its event: it runs the write's `with_event` form, whose
//! outbox insert reads the rows the write returned, so the event is stored exactly when the
//! change is, and neither without the other. A save is update-if-current: it stores version + 1
//! only where the stored version is the one the record was read at, and when it matches no row
//! the version stored now, read on the same connection or transaction, says why.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PgStore;
use super::errors::{Doing, WriteError};
use super::outbox::outbox_values;
use super::sql::{TableSql, WriteSql};
use super::tables::{ListQuery, PgRecord};
use super::values::{Value, as_params, to_i64, to_u64};
use crate::events::Event;
use crate::id::Id;
use crate::records::{Order, Ticket, TicketReplica, Version};
use crate::store::{Listing, StoreError, VersionedStore};

/// Which write a record's statement makes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Write {
    /// A new record, at the version it carries; nothing when the id exists.
    Insert,
    /// Update-if-current, at the version the record was read at.
    Save,
}

impl Write {
    fn verb(self) -> &'static str {
        match self {
            Write::Insert => "insert",
            Write::Save => "save",
        }
    }

    fn sql(self, table: &TableSql) -> WriteSql {
        match self {
            Write::Insert => table.insert,
            Write::Save => table.save,
        }
    }
}

impl PgStore {
    async fn find_record<R: PgRecord>(&self, id: Id) -> Result<Option<R>, StoreError> {
        let doing = Doing::on("find", R::KIND, id);
        let row = self.query_opt(doing, R::SQL.find, &[&id]).await?;
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

    /// [`VersionedStore::insert`] or [`VersionedStore::save`] on a pooled connection, run
    /// again after a race. Returns the version stored.
    async fn write_record<R: PgRecord>(
        &self,
        write: Write,
        record: &R,
        event: Option<Event>,
    ) -> Result<Version, StoreError> {
        let doing = Doing::on(write.verb(), R::KIND, record.id());
        let event = event.as_ref();
        self.until_settled(doing, || async move {
            let client = self.client(doing).await?;
            self.write(&client, doing, write, record, event).await
        })
        .await
    }

    /// [`VersionedStore::replace_if_current`] on a pooled connection, run again after a race:
    /// the save's statement with the version to store as a parameter of its own.
    async fn replace_record<R: PgRecord>(
        &self,
        record: R,
        read_version: Version,
    ) -> Result<Version, StoreError> {
        let doing = Doing::on("replace", R::KIND, record.id());
        let mut read = record.clone();
        read.set_version(read_version);
        let (record, read) = (&record, &read);
        self.until_settled(doing, || async move {
            let client = self.client(doing).await?;
            let mut values = read.values().map_err(|why| self.corrupt(doing, why))?;
            let version =
                to_i64(record.version(), "version").map_err(|why| self.corrupt(doing, why))?;
            values.push(Value::Bigint(version));
            let sql = WriteSql {
                alone: R::SQL.replace,
                with_event: R::SQL.replace,
            };
            let row = self
                .run_write(&client, doing, sql, values, None, record.reserved_ticket())
                .await?;
            self.saved(doing, &client, read, row).await
        })
        .await
    }

    /// One attempt at `write` of `record` (and `event`, in the same statement) on `client`.
    /// Returns the version
    /// stored (an insert's is the record's own; a save's, the row's it wrote), so no write
    /// copies the record it was given.
    pub(super) async fn write<R: PgRecord>(
        &self,
        client: &impl GenericClient,
        doing: Doing,
        write: Write,
        record: &R,
        event: Option<&Event>,
    ) -> Result<Version, WriteError> {
        let values = record.values().map_err(|why| self.corrupt(doing, why))?;
        let sql = write.sql(R::SQL);
        let row = self
            .run_write(client, doing, sql, values, event, record.reserved_ticket())
            .await?;
        match write {
            Write::Insert if self.inserted(doing, row.as_ref())? => Ok(record.version()),
            Write::Insert => Err(StoreError::Duplicate {
                kind: R::KIND,
                id: record.id(),
            }
            .into()),
            Write::Save => self.saved(doing, client, record, row).await,
        }
    }

    /// Runs write `sql` with the record's `values` on `client`: alone, or, with an `event`, in
    /// its form that also puts the event in the outbox. Returns the row the statement answers.
    /// `reserved_ticket` is the ticket whose one-active-order index the write can trip.
    pub(super) async fn run_write(
        &self,
        client: &impl GenericClient,
        doing: Doing,
        sql: WriteSql,
        mut values: Vec<Value>,
        event: Option<&Event>,
        reserved_ticket: Option<Id>,
    ) -> Result<Option<Row>, WriteError> {
        let sql = match event {
            Some(event) => {
                values.extend(outbox_values(event).map_err(|why| self.corrupt(doing, why))?);
                sql.with_event
            }
            None => sql.alone,
        };
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|error| self.failed(doing, error))?;
        client
            .query_opt(&statement, &as_params(&values))
            .await
            .map_err(|error| self.write_failed(doing, reserved_ticket, error))
    }

    /// Whether an insert stored its row, from the count it answered.
    pub(super) fn inserted(&self, doing: Doing, row: Option<&Row>) -> Result<bool, WriteError> {
        let Some(row) = row else {
            return Err(self
                .corrupt(doing, "the insert answered no count".to_owned())
                .into());
        };
        let inserted: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
        Ok(inserted > 0)
    }

    /// The version a save statement stored (`RETURNING version`), or, when it matched no
    /// row, why: the version stored now, read on the same connection (or transaction), tells
    /// a missing record from a conflict.
    async fn saved<R: PgRecord>(
        &self,
        doing: Doing,
        client: &impl GenericClient,
        record: &R,
        row: Option<Row>,
    ) -> Result<Version, WriteError> {
        let version = |row: &Row| -> Result<Version, StoreError> {
            let value: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
            to_u64(value, "version").map_err(|why| self.corrupt(doing, why))
        };
        if let Some(row) = row {
            return Ok(version(&row)?);
        }
        let statement = client
            .prepare_cached(R::SQL.version)
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
}

/// The store's tables: one impl per record kind, each through [`PgStore::write_record`].
macro_rules! pg_versioned_store {
    ($record:ty) => {
        impl VersionedStore<$record> for PgStore {
            async fn insert(
                &self,
                record: $record,
                event: Option<Event>,
            ) -> Result<$record, StoreError> {
                self.write_record(Write::Insert, &record, event).await?;
                Ok(record)
            }

            async fn find_by_id(&self, id: Id) -> Result<Option<$record>, StoreError> {
                self.find_record(id).await
            }

            async fn save(
                &self,
                record: $record,
                event: Option<Event>,
            ) -> Result<Version, StoreError> {
                self.write_record(Write::Save, &record, event).await
            }

            async fn replace_if_current(
                &self,
                record: $record,
                read_version: Version,
            ) -> Result<Version, StoreError> {
                self.replace_record(record, read_version).await
            }

            async fn list(&self, listing: Listing) -> Result<Vec<$record>, StoreError> {
                self.list_records(listing).await
            }
        }
    };
}

pg_versioned_store!(Ticket);
pg_versioned_store!(TicketReplica);
pg_versioned_store!(Order);
