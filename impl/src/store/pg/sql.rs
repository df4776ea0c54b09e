//! Every statement [`super::PgStore`] runs, as named constants: each record table's
//! statements, the order book's, the outbox's and the migrations' bookkeeping.
//!
//! The invariant: a write that carries an event has a second form, the same statement with
//! the event's insert into the outbox as a further data-modifying `WITH` query that reads the
//! rows the write returned (`outboxed!`): the outbox entry is written exactly when the record
//! change is, in one statement. The write and its event are never two statements, except
//! inside the order book's functions (`0005_order_book_calls.sql`), which write both in the
//! one transaction of their call.
//!
//! Parameters are a record's values in column order, `id` first (see
//! [`super::tables::PgRecord::values`]); a write's event follows as two more, its subject and
//! its payload (`json`, sent as text).

/// A write's two forms: the statement alone, and the statement with its event's insert into
/// the outbox.
#[derive(Clone, Copy, Debug)]
pub(super) struct WriteSql {
    /// The record's write only.
    pub(super) alone: &'static str,
    /// The record's write and, for each row it wrote, the event's outbox insert.
    pub(super) with_event: &'static str,
}

/// A record table's statements.
#[derive(Debug)]
pub(super) struct TableSql {
    /// The record with id `$1`.
    pub(super) find: &'static str,
    /// Every record.
    pub(super) list: &'static str,
    /// Inserts unless the id exists; answers how many rows it inserted (0 or 1). The
    /// `version` parameter is the version to store.
    pub(super) insert: WriteSql,
    /// Update-if-current; answers the stored version, or no row when the id is missing or
    /// its version is not the `version` parameter (the version the record was read at).
    pub(super) save: WriteSql,
    /// A replica's update-if-current: like `save` (same parameters, the `version` one the
    /// version read at), and the version to store as one more parameter (the event's).
    pub(super) replace: &'static str,
    /// The stored version, to tell why a save matched no row.
    pub(super) version: &'static str,
}

/// The outbox insert of a write's `with_event` form: the event (`$outbox`: its subject and
/// payload parameters) once per row of the `WITH` query `$written`.
macro_rules! outboxed {
    ($written:literal, $outbox:literal) => {
        concat!(
            "outboxed AS (INSERT INTO outbox (subject, payload) SELECT ",
            $outbox,
            " FROM ",
            $written,
            ")"
        )
    };
}

/// An insert (`INSERT INTO ... VALUES` or `... SELECT`) that does nothing when the id exists,
/// answering how many rows it inserted.
macro_rules! insert_sql {
    ($insert:expr, outbox: $outbox:literal) => {
        WriteSql {
            alone: concat!(
                "WITH inserted AS (",
                $insert,
                " ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT count(*) FROM inserted"
            ),
            with_event: concat!(
                "WITH inserted AS (",
                $insert,
                " ON CONFLICT (id) DO NOTHING RETURNING 1), ",
                outboxed!("inserted", $outbox),
                " SELECT count(*) FROM inserted"
            ),
        }
    };
}

/// A table's statements, from its name, columns, the insert's placeholders, the save's `SET`
/// list, the placeholder of the version the record was read at, and the event's placeholders.
macro_rules! table_sql {
    (
        table: $table:literal,
        columns: $columns:expr,
        values: $values:literal,
        set: $set:literal,
        read_version: $read_version:literal,
        new_version: $new_version:literal,
        outbox: $outbox:literal $(,)?
    ) => {
        TableSql {
            find: concat!("SELECT ", $columns, " FROM ", $table, " WHERE id = $1"),
            list: concat!("SELECT ", $columns, " FROM ", $table),
            insert: insert_sql!(
                concat!(
                    "INSERT INTO ",
                    $table,
                    " (",
                    $columns,
                    ") VALUES (",
                    $values,
                    ")"
                ),
                outbox: $outbox
            ),
            save: WriteSql {
                alone: concat!(
                    "UPDATE ",
                    $table,
                    " SET ",
                    $set,
                    ", version = version + 1 WHERE id = $1 AND version = ",
                    $read_version,
                    " RETURNING version"
                ),
                with_event: concat!(
                    "WITH saved AS (UPDATE ",
                    $table,
                    " SET ",
                    $set,
                    ", version = version + 1 WHERE id = $1 AND version = ",
                    $read_version,
                    " RETURNING version), ",
                    outboxed!("saved", $outbox),
                    " SELECT version FROM saved"
                ),
            },
            replace: concat!(
                "UPDATE ",
                $table,
                " SET ",
                $set,
                ", version = ",
                $new_version,
                " WHERE id = $1 AND version = ",
                $read_version,
                " RETURNING version"
            ),
            version: concat!("SELECT version FROM ", $table, " WHERE id = $1"),
        }
    };
}

macro_rules! ticket_columns {
    () => {
        "id, title, price_cents, user_id, version, order_id, reservation"
    };
}

macro_rules! order_columns {
    () => {
        "id, user_id, status, expires_at_ms, ticket_id, version"
    };
}

/// The tickets service's tickets.
pub(super) const TICKETS: TableSql = table_sql! {
    table: "tickets",
    columns: ticket_columns!(),
    values: "$1, $2, $3, $4, $5, $6, $7",
    set: "title = $2, price_cents = $3, user_id = $4, order_id = $6, reservation = $7",
    read_version: "$5",
    new_version: "$8",
    outbox: "$8::text, $9::text::json",
};

/// Tickets no order holds (`GET /api/tickets`).
pub(super) const LIST_UNRESERVED_TICKETS: &str = concat!(
    "SELECT ",
    ticket_columns!(),
    " FROM tickets WHERE order_id IS NULL"
);

/// The tickets of user `$1`.
pub(super) const LIST_TICKETS_BY_USER: &str = concat!(
    "SELECT ",
    ticket_columns!(),
    " FROM tickets WHERE user_id = $1"
);

/// The orders service's replicas of tickets.
pub(super) const TICKET_REPLICAS: TableSql = table_sql! {
    table: "ticket_replicas",
    columns: "id, title, price_cents, version",
    values: "$1, $2, $3, $4",
    set: "title = $2, price_cents = $3",
    read_version: "$4",
    new_version: "$5",
    outbox: "$5::text, $6::text::json",
};

/// The orders service's orders. Their insert is also the unchecked reservation's
/// (`racy-reserve`): the one-active-order index still refuses a second active order.
pub(super) const ORDERS: TableSql = table_sql! {
    table: "orders",
    columns: order_columns!(),
    values: "$1, $2, $3, $4, $5, $6",
    set: "user_id = $2, status = $3, expires_at_ms = $4, ticket_id = $5",
    read_version: "$6",
    new_version: "$7",
    outbox: "$7::text, $8::text::json",
};

/// The orders of user `$1`.
pub(super) const LIST_ORDERS_BY_USER: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders WHERE user_id = $1"
);

/// Up to `$2` orders still `created` that expire at or before `$1` (Unix milliseconds),
/// soonest first.
pub(super) const DUE_ORDERS: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders WHERE status = 'created' AND expires_at_ms <= $1",
    " ORDER BY expires_at_ms, id LIMIT $2"
);

/// The partial unique index that allows one active order per ticket (`0002_orders.sql`).
pub(super) const ONE_ACTIVE_ORDER_PER_TICKET: &str = "orders_one_active_per_ticket";

/// The active order on ticket `$1`.
pub(super) const ACTIVE_ORDER: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders WHERE ticket_id = $1 AND status <> 'cancelled' LIMIT 1"
);

/// The reservation in one call (function `reserve_ticket`, `0005_order_book_calls.sql`): the
/// order's values in column order, then whether the check is atomic, then the event's subject
/// and its payload's text before and after the reservation number (all three NULL: no
/// event). Answers the reservation number counted; a refusal is an error, [`TICKET_RESERVED`]
/// or [`ORDER_EXISTS`].
pub(super) const RESERVE_TICKET: &str =
    "SELECT reserve_ticket($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// The cancellation in one call (function `cancel_order`): the cancelled order's values in
/// column order (`version` the one read), then the event's subject and payload around the
/// reservation number. Answers the reservation number and the version stored; an update that
/// matched no row is error [`ORDER_NOT_AT_VERSION`].
pub(super) const CANCEL_ORDER: &str =
    "SELECT reservation, version FROM cancel_order($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// The atomic reservation found an active order on the ticket; the error's DETAIL is that
/// order's id in hex.
pub(super) const TICKET_RESERVED: &str = "TK001";

/// The reservation's order id exists.
pub(super) const ORDER_EXISTS: &str = "TK002";

/// The cancellation's update matched no row; the error's DETAIL is the version stored now
/// (empty: no such order).
pub(super) const ORDER_NOT_AT_VERSION: &str = "TK003";

/// How many reservation changes ticket `$1` has had (no row: none).
pub(super) const RESERVATION_COUNT: &str =
    "SELECT changes FROM ticket_reservations WHERE ticket_id = $1";

/// Up to `$1` outbox entries, oldest first.
pub(super) const PENDING_OUTBOX: &str =
    "SELECT seq, subject, payload::text FROM outbox ORDER BY seq LIMIT $1";

/// Deletes the published outbox entries `$1`.
pub(super) const MARK_PUBLISHED: &str = "DELETE FROM outbox WHERE seq = ANY($1)";

/// Moves outbox entry `$1` into the quarantine with error `$2`, in one statement; returns
/// its subject (no row: there was no such entry).
pub(super) const QUARANTINE: &str = "WITH moved AS (DELETE FROM outbox WHERE seq = $1 \
     RETURNING seq, subject, payload::text AS payload, written_at) \
     INSERT INTO outbox_quarantine (seq, subject, payload, error, written_at) \
     SELECT seq, subject, payload, $2, written_at FROM moved RETURNING subject";

/// The quarantined outbox entries, oldest first.
pub(super) const QUARANTINED: &str =
    "SELECT seq, subject, payload, error FROM outbox_quarantine ORDER BY seq";

/// Serialises migrations of one schema: an advisory lock keyed by `$1`, held to the end of
/// the transaction.
pub(super) const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// The versions of the applied migrations.
pub(super) const APPLIED_MIGRATIONS: &str = "SELECT version FROM schema_migrations";

/// The versions of the applied migrations, in order.
pub(super) const APPLIED_MIGRATIONS_IN_ORDER: &str =
    "SELECT version FROM schema_migrations ORDER BY version";

/// Records migration `$1` named `$2` as applied.
pub(super) const RECORD_MIGRATION: &str =
    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)";

/// Creates `schema` and its migrations table if missing, and works in it for the rest of the
/// transaction. `schema` is a checked plain lowercase identifier: no quoting needed.
pub(super) fn create_schema(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    )
}

/// Listens on notification channel `channel` (`outbox:` and a checked schema name: quoting
/// suffices).
pub(super) fn listen(channel: &str) -> String {
    format!("LISTEN \"{channel}\"")
}

/// Removes the one-active-order backstop (test-only: [`super::PgStore::set_reservation_backstop`]).
#[cfg(feature = "testkit")]
pub(super) const DROP_RESERVATION_BACKSTOP: &str =
    "DROP INDEX IF EXISTS orders_one_active_per_ticket";

/// Restores it, as migration 0002 made it.
#[cfg(feature = "testkit")]
pub(super) const RESTORE_RESERVATION_BACKSTOP: &str = "CREATE UNIQUE INDEX IF NOT EXISTS \
    orders_one_active_per_ticket ON orders (ticket_id) WHERE status <> 'cancelled'";

/// Every row of every table of the schema, in one transaction: `PgStore::clear` (feature
/// `testkit`).
#[cfg(feature = "testkit")]
pub(super) const CLEAR_STORE: &str = "BEGIN; DELETE FROM tickets; DELETE FROM ticket_replicas; \
    DELETE FROM orders; DELETE FROM ticket_reservations; DELETE FROM outbox; \
    DELETE FROM outbox_quarantine; COMMIT;";

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: [&TableSql; 3] = [&TICKETS, &TICKET_REPLICAS, &ORDERS];

    #[test]
    fn save_statements_check_the_read_version_and_increment() {
        assert!(
            TICKETS
                .save
                .alone
                .contains("version = version + 1 WHERE id = $1 AND version = $5")
        );
        assert!(ORDERS.save.with_event.contains("INSERT INTO outbox"));
        assert!(!ORDERS.save.alone.contains("outbox"));
    }

    #[test]
    fn only_the_with_event_forms_write_the_outbox_from_the_rows_written() {
        let writes = TABLES.iter().flat_map(|table| [table.insert, table.save]);
        for write in writes {
            assert!(!write.alone.contains("outbox"), "{}", write.alone);
            let written = if write.alone.starts_with("UPDATE") {
                "FROM saved)"
            } else {
                "FROM inserted)"
            };
            assert!(
                write.with_event.contains("INSERT INTO outbox")
                    && write.with_event.contains(written),
                "{}",
                write.with_event
            );
        }
    }
}
