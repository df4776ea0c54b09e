//! A soak run's parameters, the fault kinds, seeds derived per client and for the faults, the
//! loopback-only rule for the servers, where progress lines go, and why a run could not start.
//!
//! The invariant: a run that would touch a server off this machine is refused before anything
//! connects, unless `allow_remote` says otherwise.

use std::net::IpAddr;
use std::time::Duration;

use ticketing::variant::Variant;

/// Where progress lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The command line: a line every 10 s on stderr, and Ctrl-C ends the workload early.
    Stderr,
    /// Tests: nothing printed, signals left alone.
    Silent,
}

/// Why a soak could not run (as opposed to: it ran and a property failed).
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The options cannot be honoured (a non-loopback server, zero clients, ...).
    #[error("{0}")]
    Refused(String),
    /// A server cannot be reached.
    #[error("{service} unreachable: {why}")]
    Unreachable {
        /// "NATS JetStream" or "PostgreSQL".
        service: &'static str,
        /// Why.
        why: String,
    },
    /// The system could not be assembled on reachable servers.
    #[error("cannot start the system: {0}")]
    Start(String),
}

/// A kind of fault the soak injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A queue-group member aborted while it holds a delivery (before its handler, after
    /// the handler's write and before it settles, or right after it settles), then replaced.
    Crash,
    /// A delivery whose handler (or whose settlement) is held past the ack wait, so the
    /// broker redelivers it while the first handler still runs.
    LateAck,
    /// An already-published event published again: with its publish id (the broker must drop
    /// it) and without one (the listeners must absorb it).
    Duplicate,
    /// Every member of one queue group stopped (gracefully or killed) and restarted on a new
    /// connection, as a service process restart would.
    ConsumerRestart,
    /// A relay stopped gracefully, killed, or crashed between publishing and marking its
    /// batch, then restarted (the restarted relay publishes the batch again).
    RelayRestart,
}

impl FaultKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Crash,
        FaultKind::LateAck,
        FaultKind::Duplicate,
        FaultKind::ConsumerRestart,
        FaultKind::RelayRestart,
    ];

    /// The name `--faults` takes.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::LateAck => "late-ack",
            FaultKind::Duplicate => "duplicate",
            FaultKind::ConsumerRestart => "consumer-restart",
            FaultKind::RelayRestart => "relay-restart",
        }
    }
}

/// One fault per this much workload time, per kind, unless told otherwise.
const DEFAULT_FAULT_SPACING: Duration = Duration::from_secs(10);

/// `duration` / 10 s faults of each kind, at least one.
pub fn default_faults_per_kind(duration: Duration) -> u32 {
    let count = duration.as_secs() / DEFAULT_FAULT_SPACING.as_secs();
    u32::try_from(count).unwrap_or(u32::MAX).max(1)
}

/// Everything a soak run is made of.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// The NATS server.
    pub bus_url: String,
    /// The PostgreSQL server (a fresh database is made on it).
    pub store_url: String,
    /// How long the clients run.
    pub duration: Duration,
    /// Which faults are injected.
    pub faults: Vec<FaultKind>,
    /// How many of each.
    pub faults_per_kind: u32,
    /// Fixes the clients' choices and the fault schedule.
    pub seed: u64,
    /// Members per queue group.
    pub members: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// The design variant the services run.
    pub variant: Variant,
    /// The queue groups' ack wait.
    pub ack_wait: Duration,
    /// Deliveries before dead-lettering.
    pub max_deliver: u32,
    /// Requests in total after which the clients stop.
    pub max_requests: u64,
    /// How long the system may take to quiesce after the clients stop.
    pub quiesce_timeout: Duration,
    /// Whether servers off the loopback interface are accepted.
    pub allow_remote: bool,
}

/// The most members per group and clients a run accepts (a bound, not a tuning knob: the
/// machine has two cores).
const MEMBERS_MAX: usize = 64;
const CLIENTS_MAX: usize = 256;

impl SoakOptions {
    /// The defaults (the local servers, 60 s, every fault, 4 members, 8 clients, the
    /// reference, 2 s ack wait, 30 deliveries) with this seed.
    pub fn new(seed: u64) -> Self {
        let duration = Duration::from_secs(60);
        Self {
            bus_url: ticketing::bus::jetstream::DEFAULT_NATS_URL.to_owned(),
            store_url: ticketing::testkit::DEFAULT_DATABASE_URL.to_owned(),
            duration,
            faults: FaultKind::ALL.to_vec(),
            faults_per_kind: default_faults_per_kind(duration),
            seed,
            members: 4,
            clients: 8,
            variant: Variant::Reference,
            ack_wait: Duration::from_secs(2),
            max_deliver: ticketing::bus::DEFAULT_MAX_DELIVER,
            max_requests: 200_000,
            quiesce_timeout: Duration::from_secs(90),
            allow_remote: false,
        }
    }

    /// Refuses what cannot run: no client, no member, absurd sizes, a zero ack wait, or a
    /// server off the loopback interface (unless allowed).
    pub fn validate(&self) -> Result<(), SoakError> {
        let refuse = |why: String| Err(SoakError::Refused(why));
        if !(1..=CLIENTS_MAX).contains(&self.clients) {
            return refuse(format!("--clients must be 1 to {CLIENTS_MAX}"));
        }
        if !(1..=MEMBERS_MAX).contains(&self.members) {
            return refuse(format!("--members must be 1 to {MEMBERS_MAX}"));
        }
        if self.ack_wait.is_zero() || self.max_deliver == 0 {
            return refuse("--ack-wait-ms and --max-deliver must be at least 1".to_owned());
        }
        if self.duration.is_zero() {
            return refuse("--duration must be at least 1 second".to_owned());
        }
        if !self.allow_remote {
            for (what, url) in [("--bus", &self.bus_url), ("--store", &self.store_url)] {
                if let Err(why) = check_loopback(url) {
                    return refuse(format!(
                        "{what} {}: {why} (the soak creates and deletes a stream and a \
                         database there; pass --allow-remote to accept it)",
                        ticketing::store::pg::redact_password(url)
                    ));
                }
            }
        }
        Ok(())
    }

    /// The command that reruns this experiment.
    pub fn rerun_command(&self) -> String {
        let faults = if self.faults.is_empty() {
            "none".to_owned()
        } else {
            self.faults
                .iter()
                .map(|kind| kind.name())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut command = format!(
            "cargo run --release -p harness -- soak --seed {} --duration {} --faults {faults} \
             --faults-per-kind {} --members {} --clients {} --variant {} --ack-wait-ms {} \
             --max-deliver {} --max-requests {}",
            self.seed,
            self.duration.as_secs(),
            self.faults_per_kind,
            self.members,
            self.clients,
            self.variant,
            self.ack_wait.as_millis(),
            self.max_deliver,
            self.max_requests,
        );
        if self.bus_url != ticketing::bus::jetstream::DEFAULT_NATS_URL {
            command.push_str(&format!(" --bus {}", self.bus_url));
        }
        if self.store_url != ticketing::testkit::DEFAULT_DATABASE_URL {
            command.push_str(&format!(
                " --store {}",
                ticketing::store::pg::redact_password(&self.store_url)
            ));
        }
        if self.allow_remote {
            command.push_str(" --allow-remote");
        }
        command
    }

    /// The seed of client `index`'s choices.
    pub fn client_seed(&self, index: usize) -> u64 {
        mix(self.seed, 1 + index as u64)
    }

    /// The seed of the fault schedule and of each fault's choices.
    pub fn fault_seed(&self) -> u64 {
        mix(self.seed, 0xFA17_FA17)
    }
}

/// SplitMix64 of `seed` and `stream`: independent-looking seeds from one.
fn mix(seed: u64, stream: u64) -> u64 {
    let mut x = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Whether `url` names a server on this machine: a loopback address, `localhost`, a Unix
/// socket, or no host at all (PostgreSQL's default socket). Key-value PostgreSQL strings are
/// not parsed: use a URL, or `--allow-remote`.
pub fn check_loopback(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|error| format!("not a URL I can check ({error})"))?;
    let mut hosts: Vec<String> = parsed.host_str().map(str::to_owned).into_iter().collect();
    for (key, value) in parsed.query_pairs() {
        if key == "host" || key == "hostaddr" {
            hosts.extend(value.split(',').map(str::to_owned));
        }
    }
    for host in &hosts {
        if !is_local(host) {
            return Err(format!("{host} is not a loopback address"));
        }
    }
    Ok(())
}

fn is_local(host: &str) -> bool {
    if host.starts_with('/') || host.eq_ignore_ascii_case("localhost") || host.is_empty() {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_accepted() {
        for local in [
            "nats://127.0.0.1:4222",
            "nats://localhost:4222",
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://postgres@[::1]:5432/test",
            "postgres://postgres@127.0.0.2/test?sslmode=disable",
            "postgres:///test?host=/var/run/postgresql",
        ] {
            assert_eq!(check_loopback(local), Ok(()), "{local}");
        }
        for remote in [
            "nats://10.0.0.5:4222",
            "nats://nats.example.com:4222",
            "postgres://u:secret@db.example.com/test",
            "postgres://u@127.0.0.1/test?host=db.example.com",
            "host=127.0.0.1 user=postgres",
        ] {
            assert!(check_loopback(remote).is_err(), "{remote}");
        }
    }

    #[test]
    fn remote_servers_are_refused_unless_allowed() {
        let mut options = SoakOptions::new(1);
        options.store_url = "postgres://u:secret@db.example.com/test".to_owned();
        let refused = options.validate().unwrap_err().to_string();
        assert!(refused.contains("--allow-remote"), "{refused}");
        assert!(!refused.contains("secret"), "password shown: {refused}");
        options.allow_remote = true;
        assert!(options.validate().is_ok());
    }

    #[test]
    fn derived_seeds_differ_per_client_and_repeat_per_seed() {
        let options = SoakOptions::new(42);
        assert_ne!(options.client_seed(0), options.client_seed(1));
        assert_ne!(options.client_seed(0), options.fault_seed());
        assert_eq!(options.client_seed(3), SoakOptions::new(42).client_seed(3));
    }

    #[test]
    fn one_fault_of_each_kind_per_ten_seconds() {
        assert_eq!(default_faults_per_kind(Duration::from_secs(60)), 6);
        assert_eq!(default_faults_per_kind(Duration::from_secs(5)), 1);
    }
}
