//! Real `ticketing serve` processes and a private PostgreSQL cluster, for the scale-out and
//! fault tests: the built binary (`CARGO_BIN_EXE_ticketing`) started on given backends, and a
//! cluster made with `initdb` in a temporary directory on a free port, which a test may stop
//! and start again (never the shared server).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The session key every process of these tests shares.
pub const JWT_KEY: &str = "scale-out-test-key-of-at-least-32-bytes";

/// Starts `ticketing serve` with `args` (after `serve --listen 127.0.0.1:0`) and returns it
/// with its HTTP base URL, read from its first line.
pub async fn serve(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("JWT_KEY", JWT_KEY)
        // Errors only, without the per-request ones (503s are expected while a backend is down).
        .env(
            "RUST_LOG",
            "error,tower_http=off,ticketing::services::http=off",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server did not say where it listens within 30 s")
        .unwrap()
        .expect("the server exited before listening");
    let base = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (child, base)
}

/// A local port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A PostgreSQL cluster of this test's own: `initdb` in a temporary directory, served on a
/// free port with trust authentication for user `postgres`; stopped and removed on drop. Run as
/// the `postgres` user when the test runs as root (PostgreSQL refuses to run as root).
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Makes and starts the cluster; why not, if the PostgreSQL binaries are missing or refuse.
    pub fn start(label: &str) -> Result<Self, String> {
        let bin = postgres_bin()?;
        let as_postgres = running_as_root();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "ticketing-pg-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let cluster = Self {
            dir,
            port: free_port(),
            bin,
            as_postgres,
        };
        if as_postgres {
            run(std::process::Command::new("chown")
                .arg("postgres:")
                .arg(&cluster.dir))?;
        }
        let data = cluster.data();
        cluster.pg(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: open connections are cut), and waits until it is down.
    pub fn stop(&self) -> Result<(), String> {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "fast", "-w", "-t", "60", "stop"],
        )
    }

    /// Starts the server on the same port and data, and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs PostgreSQL's `tool` with `args`, as `postgres` if we are root.
    fn pg(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            std::process::Command::new(&program)
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut std::process::Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{command:?}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The newest `/usr/lib/postgresql/*/bin` that has `initdb` (or `PG_BIN`).
fn postgres_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|error| format!("no PostgreSQL binaries under {}: {error}", root.display()))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no initdb under {}/*/bin", root.display()))
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}
