//! Connecting a [`PgStore`]: its options, the connection pool, and running one statement on a
//! pooled connection.
//!
//! The invariant: every pooled connection works in the store's schema and nowhere else
//! (`search_path` set at connection start-up, to a schema name checked to be a plain
//! lowercase identifier before it is used anywhere), and no wait on the server is unbounded:
//! opening a connection and waiting for a free one both have timeouts, so a store whose server
//! is down fails at start, quickly, instead of hanging.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use super::errors::{Doing, backend_error};
use super::{Inner, PgStore};
use crate::store::StoreError;

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
    /// How long [`crate::store::Outbox::outbox_written`] waits for a notification before
    /// resolving anyway (the fallback if the listener connection is lost).
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
        let config = connection_config(url, schema, &options)
            .map_err(|error| backend_error(&target, "parse the URL", error))?;
        let pool = pool(config.clone(), &options)
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

    /// A pooled connection, waited for at most [`PgStoreOptions::acquire_timeout`].
    pub(super) async fn client(&self, doing: Doing) -> Result<Object, StoreError> {
        self.inner.pool.get().await.map_err(|error| match error {
            // The connection's own error says it all; the pool's wrapper adds nothing.
            PoolError::Backend(error) => self.failed(doing, error),
            other => self.failed(doing, other),
        })
    }

    /// A pooled connection with `sql` prepared on it (prepared once per connection, then
    /// taken from the connection's cache).
    async fn prepared(&self, doing: Doing, sql: &str) -> Result<(Object, Statement), StoreError> {
        let client = self.client(doing).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|error| self.failed(doing, error))?;
        Ok((client, statement))
    }

    /// The rows `sql` answers on a pooled connection.
    pub(super) async fn query(
        &self,
        doing: Doing,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let (client, statement) = self.prepared(doing, sql).await?;
        client
            .query(&statement, params)
            .await
            .map_err(|error| self.failed(doing, error))
    }

    /// The row, if any, `sql` answers on a pooled connection.
    pub(super) async fn query_opt(
        &self,
        doing: Doing,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let (client, statement) = self.prepared(doing, sql).await?;
        client
            .query_opt(&statement, params)
            .await
            .map_err(|error| self.failed(doing, error))
    }
}

/// The connection settings of `url`, confined to `schema`, named after it, and with the
/// connect timeout unless the URL sets one.
fn connection_config(
    url: &str,
    schema: &str,
    options: &PgStoreOptions,
) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
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
    Ok(config)
}

/// The connection pool: `pool_size` connections, each opened within the connect timeout and
/// waited for within the acquire timeout.
fn pool(
    config: tokio_postgres::Config,
    options: &PgStoreOptions,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(options.connect_timeout))
        .wait_timeout(Some(options.acquire_timeout))
        .build()
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
}
