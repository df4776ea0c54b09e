//! Support for tests, benchmarks and the harness that talk to real servers (PostgreSQL, NATS).
//!
//! The policy, in one place: with `REQUIRE_SERVICES=1` (set by `.ci/run`) a test that cannot
//! reach its server fails; without it (a newcomer's laptop) the test says clearly that it
//! skipped and why, and passes. Tests isolate themselves: a fresh database or stream prefix
//! per test, never shared state on the shared servers.

use std::fmt::Display;

/// Whether a missing server is a failure (`REQUIRE_SERVICES=1`) rather than a skip.
pub fn services_required() -> bool {
    std::env::var("REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// Reports that `test` cannot reach `service`: panics under `REQUIRE_SERVICES=1`, otherwise
/// prints a line saying it skipped, and why.
#[allow(clippy::panic)]
pub fn unavailable(test: &str, service: &str, why: impl Display) {
    if services_required() {
        panic!("{test}: {service} is required (REQUIRE_SERVICES=1) but unreachable: {why}");
    }
    eprintln!(
        "SKIPPED {test}: {service} unreachable ({why}); start it (see README) or set \
         REQUIRE_SERVICES=1 to make this a failure"
    );
}

#[cfg(not(loom))]
pub use postgres::{DEFAULT_DATABASE_URL, FreshDatabase, database_url, fresh_postgres};

/// A fresh PostgreSQL database per test, dropped when the test ends.
#[cfg(not(loom))]
mod postgres {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use tokio_postgres::{Client, Config, NoTls};

    use super::unavailable;
    use crate::store::pg::{error_chain, redact_password};

    /// The server tests use when `DATABASE_URL` is not set: the local one, trust auth.
    pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// Every test database's name starts with this, then the Unix second it was made: a run
    /// that died before dropping its databases leaves names a later run can date and drop.
    const PREFIX: &str = "tkt_";

    /// How old a leftover test database must be before a later run drops it (no test runs
    /// this long, so a live test's database is never taken).
    const STALE_AFTER: Duration = Duration::from_secs(2 * 60 * 60);

    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
    pub fn database_url() -> String {
        std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
    }

    /// A database made for one test on the `DATABASE_URL` server; dropped (connections and
    /// all) when this value is dropped, even if the test panics.
    #[derive(Debug)]
    pub struct FreshDatabase {
        name: String,
        url: String,
        admin: Config,
    }

    impl FreshDatabase {
        /// The URL of the fresh database, for [`crate::store::PgStore::connect`].
        pub fn url(&self) -> &str {
            &self.url
        }

        /// The database's name.
        pub fn name(&self) -> &str {
            &self.name
        }
    }

    impl Drop for FreshDatabase {
        fn drop(&mut self) {
            // Drop may run inside a runtime, where blocking on another future is not allowed:
            // a thread with its own small runtime does the work, and the test waits for it.
            let admin = self.admin.clone();
            let name = std::mem::take(&mut self.name);
            let dropper = std::thread::spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| error.to_string())?;
                runtime.block_on(async {
                    let client = admin_client(&admin).await?;
                    drop_database(&client, &name).await
                })
            });
            let outcome = dropper
                .join()
                .unwrap_or_else(|_| Err("the dropping thread panicked".to_owned()));
            if let Err(why) = outcome {
                eprintln!(
                    "could not drop test database {}: {why}; a run after {} hours will",
                    self.url,
                    STALE_AFTER.as_secs() / 3600
                );
            }
        }
    }

    /// Creates a uniquely named database for `test` on the `DATABASE_URL` server (default
    /// [`DEFAULT_DATABASE_URL`]). When the server cannot be reached, reports it through
    /// [`unavailable`] (a failure under `REQUIRE_SERVICES=1`) and returns `None`.
    pub async fn fresh_postgres(test: &str) -> Option<FreshDatabase> {
        let url = database_url();
        let shown = redact_password(&url);
        let mut admin: Config = match url.parse() {
            Ok(config) => config,
            Err(error) => {
                unavailable(
                    test,
                    "PostgreSQL",
                    format!("DATABASE_URL {shown} is not usable: {error}"),
                );
                return None;
            }
        };
        if admin.get_connect_timeout().is_none() {
            admin.connect_timeout(CONNECT_TIMEOUT);
        }
        let client = match admin_client(&admin).await {
            Ok(client) => client,
            Err(why) => {
                unavailable(test, "PostgreSQL", format!("{shown}: {why}"));
                return None;
            }
        };
        drop_stale_databases(&client).await;
        let name = database_name(test);
        // The name is made of lowercase letters, digits and underscores only.
        if let Err(error) = client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            let why = format!("cannot create database {name}: {}", error_chain(&error));
            unavailable(test, "PostgreSQL", format!("{shown}: {why}"));
            return None;
        }
        Some(FreshDatabase {
            url: with_database(&url, &name),
            name,
            admin,
        })
    }

    async fn admin_client(admin: &Config) -> Result<Client, String> {
        let (client, connection) = admin
            .connect(NoTls)
            .await
            .map_err(|error| error_chain(&error))?;
        tokio::spawn(async move {
            // Ends when the client is dropped; its errors surface through the client.
            let _ = connection.await;
        });
        Ok(client)
    }

    async fn drop_database(client: &Client, name: &str) -> Result<(), String> {
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map_err(|error| error_chain(&error))
    }

    /// Drops test databases older than [`STALE_AFTER`], left by runs that died. Best effort:
    /// another run may be dropping the same ones.
    async fn drop_stale_databases(client: &Client) {
        let Ok(rows) = client
            .query(
                "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)",
                &[&PREFIX],
            )
            .await
        else {
            return;
        };
        let now = unix_seconds();
        for row in rows {
            let Ok(name) = row.try_get::<_, String>(0) else {
                continue;
            };
            let made = name[PREFIX.len()..]
                .split('_')
                .next()
                .and_then(|seconds| seconds.parse::<u64>().ok());
            let plain = name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if plain && made.is_some_and(|made| made + STALE_AFTER.as_secs() < now) {
                let _ = drop_database(client, &name).await;
            }
        }
    }

    fn unix_seconds() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }

    /// `tkt_<unix seconds>_<pid>_<n>_<test>`, lowercase, at most 63 bytes (PostgreSQL's limit).
    fn database_name(test: &str) -> String {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        let test: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = format!(
            "{PREFIX}{}_{}_{made}_{test}",
            unix_seconds(),
            std::process::id()
        );
        name.truncate(63);
        name
    }

    /// `url` naming database `name` instead of its own.
    fn with_database(url: &str, name: &str) -> String {
        let Some(scheme_end) = url.find("://") else {
            // Key-value form: a later `dbname` wins.
            return format!("{url} dbname={name}");
        };
        let authority_start = scheme_end + 3;
        let rest = &url[authority_start..];
        let authority_end = authority_start + rest.find(['/', '?']).unwrap_or(rest.len());
        let query = url[authority_end..]
            .find('?')
            .map_or("", |start| &url[authority_end + start..]);
        format!("{}/{name}{query}", &url[..authority_end])
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn test_urls_name_the_fresh_database() {
            assert_eq!(
                with_database("postgres://postgres@127.0.0.1:5432/test", "tkt_1"),
                "postgres://postgres@127.0.0.1:5432/tkt_1"
            );
            assert_eq!(
                with_database("postgres://u:p@h/test?sslmode=disable", "tkt_1"),
                "postgres://u:p@h/tkt_1?sslmode=disable"
            );
            assert_eq!(
                with_database("postgres://h:5432", "d"),
                "postgres://h:5432/d"
            );
            assert_eq!(
                with_database("postgres://h?user=u", "d"),
                "postgres://h/d?user=u"
            );
            assert_eq!(
                with_database("host=h user=u", "d"),
                "host=h user=u dbname=d"
            );
        }

        #[test]
        fn database_names_are_plain_and_short() {
            let name = database_name(&format!("Store::{}", "x".repeat(100)));
            assert!(name.len() <= 63);
            assert!(name.starts_with(PREFIX));
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
            assert_ne!(database_name("t"), database_name("t"));
        }
    }
}
