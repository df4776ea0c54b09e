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
        match FreshDatabase::create(&database_url(), test).await {
            Ok(database) => Some(database),
            Err(why) => {
                unavailable(test, "PostgreSQL", why);
                None
            }
        }
    }

    impl FreshDatabase {
        /// Creates a uniquely named database, labelled `label`, on the server at `url` (a
        /// tool's own server, where [`fresh_postgres`] takes `DATABASE_URL`). Fails with the
        /// reason, the password hidden, when the server cannot be reached or refuses.
        pub async fn create(url: &str, label: &str) -> Result<Self, String> {
            let shown = redact_password(url);
            let mut admin: Config = url
                .parse()
                .map_err(|error| format!("{shown} is not usable: {error}"))?;
            if admin.get_connect_timeout().is_none() {
                admin.connect_timeout(CONNECT_TIMEOUT);
            }
            let client = admin_client(&admin)
                .await
                .map_err(|why| format!("{shown}: {why}"))?;
            drop_stale_databases(&client).await;
            let name = database_name(label);
            // The name is made of lowercase letters, digits and underscores only.
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .map_err(|error| {
                    format!(
                        "{shown}: cannot create database {name}: {}",
                        error_chain(&error)
                    )
                })?;
            Ok(Self {
                url: with_database(url, &name),
                name,
                admin,
            })
        }
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

#[cfg(not(loom))]
pub use nats::{FreshStream, NatsServer, fresh_jetstream, nats_url};

/// NATS for tests: a fresh JetStream namespace per test on the shared server, and a private
/// `nats-server` a test may stop and restart.
#[cfg(not(loom))]
mod nats {
    use std::net::{SocketAddr, TcpListener};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use futures::StreamExt;

    use super::unavailable;
    use crate::bus::jetstream::DEFAULT_NATS_URL;
    use crate::bus::{BusError, JetStreamBus, JetStreamConfig};

    /// Every test stream's name starts with this, then the Unix second it was made, so a later
    /// run can date and delete what a dead run left behind.
    const PREFIX: &str = "TKT_";

    /// How old a leftover test stream must be before a later run deletes it.
    const STALE_AFTER: Duration = Duration::from_secs(2 * 60 * 60);

    /// How long a private server may take to accept connections and answer JetStream.
    const START_TIMEOUT: Duration = Duration::from_secs(15);

    /// `NATS_URL`, or [`DEFAULT_NATS_URL`].
    pub fn nats_url() -> String {
        std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
    }

    fn unix_seconds() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }

    /// `TKT_<unix seconds>_<pid>_<n>`: a valid stream name and subject token.
    fn stream_name() -> String {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        format!("{PREFIX}{}_{}_{made}", unix_seconds(), std::process::id())
    }

    /// A JetStream namespace of one test's own: stream `TKT_...` over subjects `TKT_....<name>`
    /// on the `NATS_URL` server. The stream and its dead-letter stream are deleted when this is
    /// dropped, even if the test panics.
    #[derive(Debug)]
    pub struct FreshStream {
        config: JetStreamConfig,
    }

    impl FreshStream {
        /// The namespace's configuration (stream name, subject prefix, server).
        pub fn config(&self) -> &JetStreamConfig {
            &self.config
        }

        /// A new connection to the namespace (another "process").
        pub async fn connect(&self) -> Result<JetStreamBus, BusError> {
            JetStreamBus::connect(self.config.clone()).await
        }
    }

    impl Drop for FreshStream {
        fn drop(&mut self) {
            // Drop may run inside a runtime, where blocking on a future is not allowed: a thread
            // with its own small runtime deletes the stream, and the test waits for it.
            let config = self.config.clone();
            let deleter = std::thread::spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| error.to_string())?;
                runtime.block_on(async {
                    let client = async_nats::connect(config.url.as_str())
                        .await
                        .map_err(|error| error.to_string())?;
                    let context = async_nats::jetstream::new(client);
                    // Its dead-letter stream first (absent if never connected: fine).
                    let _ = context
                        .delete_stream(crate::bus::jetstream::dead_letter_stream_name(&config))
                        .await;
                    context
                        .delete_stream(&config.stream)
                        .await
                        .map(|_| ())
                        .map_err(|error| error.to_string())
                })
            });
            let outcome = deleter
                .join()
                .unwrap_or_else(|_| Err("the deleting thread panicked".to_owned()));
            if let Err(why) = outcome {
                eprintln!(
                    "could not delete test stream {}: {why}; a run after {} hours will",
                    self.config.stream,
                    STALE_AFTER.as_secs() / 3600
                );
            }
        }
    }

    /// A fresh namespace for `test` on the `NATS_URL` server (default [`DEFAULT_NATS_URL`]),
    /// and a bus connected to it. When the server cannot be reached, reports it through
    /// [`unavailable`] (a failure under `REQUIRE_SERVICES=1`) and returns `None`.
    pub async fn fresh_jetstream(test: &str) -> Option<(FreshStream, JetStreamBus)> {
        match FreshStream::create(&nats_url()).await {
            Ok(fresh) => Some(fresh),
            Err(error) => {
                unavailable(test, "NATS JetStream", error);
                None
            }
        }
    }

    impl FreshStream {
        /// A fresh namespace on the server at `url` (a tool's own server, where
        /// [`fresh_jetstream`] takes `NATS_URL`), and a bus connected to it; the error when
        /// the server or its JetStream cannot be reached.
        pub async fn create(url: &str) -> Result<(Self, JetStreamBus), BusError> {
            let mut config = JetStreamConfig::namespaced(&stream_name());
            config.url = url.to_owned();
            let bus = JetStreamBus::connect(config.clone()).await?;
            delete_stale_streams(&config.url).await;
            Ok((Self { config }, bus))
        }
    }

    /// Deletes test streams older than [`STALE_AFTER`], left by runs that died. Best effort.
    async fn delete_stale_streams(url: &str) {
        let Ok(client) = async_nats::connect(url).await else {
            return;
        };
        let context = async_nats::jetstream::new(client);
        let names: Vec<String> = context
            .stream_names()
            .filter_map(|name| async move { name.ok() })
            .collect()
            .await;
        let now = unix_seconds();
        for name in names {
            let made = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|seconds| seconds.parse::<u64>().ok());
            if made.is_some_and(|made| made + STALE_AFTER.as_secs() < now) {
                let _ = context.delete_stream(&name).await;
            }
        }
    }

    /// A private `nats-server` with JetStream, on a free port and a temporary store directory,
    /// that a test may stop, kill and restart (the shared server is never restarted). Killed,
    /// and its directory removed, when dropped.
    #[derive(Debug)]
    pub struct NatsServer {
        binary: PathBuf,
        port: u16,
        store_dir: PathBuf,
        jetstream: bool,
        child: Option<Child>,
    }

    /// `NATS_SERVER_BIN`, `/usr/sbin/nats-server`, or `nats-server` on the `PATH`.
    fn find_binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
            return Some(PathBuf::from(path));
        }
        let usual = Path::new("/usr/sbin/nats-server");
        if usual.is_file() {
            return Some(usual.to_owned());
        }
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    }

    fn free_port() -> Result<u16, String> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|error| error.to_string())?;
        listener
            .local_addr()
            .map(|address| address.port())
            .map_err(|error| error.to_string())
    }

    impl NatsServer {
        /// Starts a server and waits (at most 15 s) until it answers JetStream requests.
        pub async fn start() -> Result<Self, String> {
            Self::start_with(true).await
        }

        /// Starts a server without JetStream (core NATS only), as a misconfigured deployment
        /// would; waits until it accepts connections.
        pub async fn start_without_jetstream() -> Result<Self, String> {
            Self::start_with(false).await
        }

        async fn start_with(jetstream: bool) -> Result<Self, String> {
            static MADE: AtomicU32 = AtomicU32::new(0);
            let binary = find_binary().ok_or(
                "no nats-server binary (set NATS_SERVER_BIN, or install /usr/sbin/nats-server)",
            )?;
            let store_dir = std::env::temp_dir().join(format!(
                "ticketing-nats-{}-{}-{}",
                std::process::id(),
                MADE.fetch_add(1, Ordering::Relaxed),
                unix_seconds()
            ));
            std::fs::create_dir_all(&store_dir)
                .map_err(|error| format!("cannot create {}: {error}", store_dir.display()))?;
            let mut server = Self {
                binary,
                port: free_port()?,
                store_dir,
                jetstream,
                child: None,
            };
            server.launch().await?;
            Ok(server)
        }

        /// `nats://127.0.0.1:<port>`.
        pub fn url(&self) -> String {
            format!("nats://127.0.0.1:{}", self.port)
        }

        async fn launch(&mut self) -> Result<(), String> {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.store_dir.join("server.log"))
                .map_err(|error| error.to_string())?;
            let mut command = Command::new(&self.binary);
            command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
            if self.jetstream {
                command
                    .args(["-js", "-sd"])
                    .arg(self.store_dir.join("jetstream"));
            }
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|error| format!("cannot start {}: {error}", self.binary.display()))?;
            self.child = Some(child);
            self.wait_until_ready().await
        }

        async fn wait_until_ready(&mut self) -> Result<(), String> {
            let deadline = tokio::time::Instant::now() + START_TIMEOUT;
            let address = SocketAddr::from(([127, 0, 0, 1], self.port));
            let mut last = String::from("not tried");
            while tokio::time::Instant::now() < deadline {
                if let Some(child) = self.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(format!(
                        "nats-server exited ({status}); see {}",
                        self.store_dir.join("server.log").display()
                    ));
                }
                if tokio::net::TcpStream::connect(address).await.is_ok() {
                    if !self.jetstream {
                        return Ok(());
                    }
                    match jetstream_answers(&self.url()).await {
                        Ok(()) => return Ok(()),
                        Err(why) => last = why,
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(format!(
                "nats-server on port {} not ready within {START_TIMEOUT:?}: {last}",
                self.port
            ))
        }

        /// Stops the server gracefully (SIGTERM: it flushes its stores), waiting at most 10 s
        /// before killing it.
        pub async fn stop(&mut self) -> Result<(), String> {
            let Some(mut child) = self.child.take() else {
                return Ok(());
            };
            let signalled = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .map_err(|error| error.to_string())?;
            if !signalled.success() {
                let _ = child.kill();
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return Ok(()),
                    Ok(None) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err("nats-server ignored SIGTERM for 10 s; killed".to_owned());
                    }
                }
            }
        }

        /// Kills the server at once (SIGKILL), as a crash would.
        pub fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Stops the server gracefully and starts it again on the same port and store.
        pub async fn restart(&mut self) -> Result<(), String> {
            self.stop().await?;
            self.launch().await
        }
    }

    /// Whether the server at `url` answers a JetStream account-info request without error.
    async fn jetstream_answers(url: &str) -> Result<(), String> {
        let client = tokio::time::timeout(Duration::from_secs(2), async_nats::connect(url))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|error| error.to_string())?;
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.request("$JS.API.INFO", bytes::Bytes::new()),
        )
        .await
        .map_err(|_| "JetStream did not answer".to_owned())?
        .map_err(|error| error.to_string())?;
        let answer: serde_json::Value =
            serde_json::from_slice(&reply.payload).map_err(|error| error.to_string())?;
        match answer.get("error") {
            None => Ok(()),
            Some(error) => Err(format!("JetStream answered {error}")),
        }
    }

    impl Drop for NatsServer {
        fn drop(&mut self) {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.store_dir);
        }
    }
}
