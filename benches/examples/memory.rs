//! Memory under steady load: the embedded system (embedded broker, memory stores, served over
//! a real socket as `ticketing serve` runs it) takes `--updates` ticket updates (200,000) over
//! a fixed set of `--tickets` tickets (64), `--in-flight` at a time, and reports the process's
//! resident memory every `--every` updates (10,000), once the listeners have settled every
//! event published so far (the steady state, not the backlog of the last round).
//!
//! The record set never grows, so neither should the process once it is warm: after
//! `--warm-up` updates (100,000: the embedded broker's duplicate window of 100,000 publish
//! ids is full by then, and the allocator has its working set), the resident memory may not
//! grow by more than `--tolerance-percent` (10) over the warm figure, or the run exits
//! non-zero.
//!
//! `cargo run --release -p benches --example memory` (figures in docs/PERFORMANCE.md,
//! "Memory under steady load").

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};

use ticketing::bus::{Bus, EmbeddedBus};
use ticketing::records::UserId;
use ticketing::services::app::{self, AppOptions};
use ticketing::services::auth::SessionKey;
use ticketing::store::MemStore;
use ticketing::variant::Variant;

/// The session key of this run (a test key: the server listens on loopback only).
const KEY: &[u8] = b"memory-benchmark-session-key-32-bytes!";

#[derive(Parser, Debug)]
#[command(about = "Resident memory of the embedded system under a steady update load")]
struct Options {
    /// Ticket updates in all.
    #[arg(long, default_value_t = 200_000)]
    updates: u64,
    /// Tickets updated (the fixed record set).
    #[arg(long, default_value_t = 64)]
    tickets: usize,
    /// Updates in flight at once.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Report the resident memory every this many updates.
    #[arg(long, default_value_t = 10_000)]
    every: u64,
    /// Updates before the memory is expected to stay flat.
    #[arg(long, default_value_t = 100_000)]
    warm_up: u64,
    /// Most growth allowed after the warm-up, in percent of the warm figure.
    #[arg(long, default_value_t = 10.0)]
    tolerance_percent: f64,
}

/// Resident memory of this process, in bytes: the second field of `/proc/self/statm` (pages)
/// times the page size (4 KiB on the Linux machines this project is measured on).
fn resident_bytes() -> Result<u64, String> {
    const PAGE_BYTES: u64 = 4096;
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|e| format!("read /proc/self/statm: {e}"))?;
    let pages = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse::<u64>().ok())
        .ok_or_else(|| format!("unexpected /proc/self/statm: {statm:?}"))?;
    Ok(pages * PAGE_BYTES)
}

/// Waits (at most [`DRAIN_LIMIT`]) until the listeners have settled every event published so
/// far, so each figure is the steady state and not the backlog of the last round; returns the
/// events the broker still holds.
async fn drained(bus: &EmbeddedBus) -> usize {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let held = bus.inspect(|core| core.retained());
        if held == 0 || Instant::now() >= deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The longest wait for the listeners to catch up after a round (a version gap's redelivery
/// backoff can hold an event for tens of seconds).
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Client {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{path}: {status} {body}"));
        }
        Ok(body)
    }
}

/// The whole measurement, in the order it happens (serve, create, update and sample, judge):
/// one function so the sampling points and what happens between them read top to bottom.
async fn run(options: Options) -> Result<(), String> {
    let key = SessionKey::new(KEY);
    let token = key
        .issue(
            &UserId::new("memory"),
            "memory@test.dev",
            Duration::from_secs(24 * 3600),
        )
        .map_err(|e| format!("token: {e}"))?;
    let mut app_options = AppOptions::new(key, Variant::Reference);
    app_options.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let bus = EmbeddedBus::new();
    let running = app::start(app_options, MemStore::new(), MemStore::new(), bus.clone())
        .await
        .map_err(|e| format!("start the app: {e}"))?;
    let client = Client {
        base: format!("http://{}", running.local_addr()),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(options.in_flight)
            .build()
            .map_err(|e| format!("client: {e}"))?,
        token,
    };
    let mut ids = Vec::with_capacity(options.tickets);
    for n in 0..options.tickets {
        let ticket = client
            .send(
                reqwest::Method::POST,
                "/api/tickets",
                json!({"title": format!("ticket {n}"), "price": 10}),
            )
            .await?;
        let id = ticket["id"]
            .as_str()
            .ok_or_else(|| format!("a created ticket without an id: {ticket}"))?;
        ids.push(id.to_owned());
    }

    println!("| updates | resident MiB | updates/s | events held |");
    println!("|--------:|-------------:|----------:|------------:|");
    println!("| 0 | {:.1} | | |", mib(resident_bytes()?));
    let mut warm: Option<u64> = None;
    let mut peak_after_warm_up = 0_u64;
    let mut done = 0_u64;
    while done < options.updates {
        let round = options.every.min(options.updates - done);
        let started = Instant::now();
        let results: Vec<Result<Value, String>> = futures::stream::iter(done..done + round)
            .map(|n| {
                let (client, id) = (&client, &ids[n as usize % ids.len()]);
                async move {
                    let price = 10.0 + (n % 1000) as f64 / 4.0;
                    client
                        .send(
                            reqwest::Method::PUT,
                            &format!("/api/tickets/{id}"),
                            json!({"title": format!("ticket {id}"), "price": price}),
                        )
                        .await
                }
            })
            .buffer_unordered(options.in_flight)
            .collect()
            .await;
        if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
            return Err(format!("an update failed: {error}"));
        }
        done += round;
        let rate = round as f64 / started.elapsed().as_secs_f64();
        let backlog = drained(&bus).await;
        let resident = resident_bytes()?;
        println!("| {done} | {:.1} | {rate:.0} | {backlog} |", mib(resident));
        if done == options.warm_up {
            warm = Some(resident);
        } else if done > options.warm_up {
            peak_after_warm_up = peak_after_warm_up.max(resident);
        }
    }
    println!(
        "broker at the end: {}",
        bus.inspect(|core| format!("{core:?}, {} messages not released", core.retained()))
    );
    let dead = bus.dead_letters();
    if let Some(first) = dead.first() {
        println!(
            "{} dead letters (after {} updates); the first: {:?} seq {} after {:?}",
            dead.len(),
            options.updates,
            first.subject,
            first.stream_seq,
            first.reason
        );
    }
    running.shutdown().await;

    let Some(warm) = warm else {
        return Err(format!(
            "--warm-up {} is not a multiple of --every {} within --updates {}",
            options.warm_up, options.every, options.updates
        ));
    };
    let growth = (peak_after_warm_up.max(warm) as f64 / warm as f64 - 1.0) * 100.0;
    println!(
        "after warm-up ({} updates): {:.1} MiB; highest after: {:.1} MiB; growth {growth:.1}% \
         (allowed {}%)",
        options.warm_up,
        mib(warm),
        mib(peak_after_warm_up),
        options.tolerance_percent
    );
    if growth > options.tolerance_percent {
        return Err(format!(
            "resident memory grew {growth:.1}% after warm-up, more than {}%",
            options.tolerance_percent
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot build the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("memory: {error}");
            ExitCode::FAILURE
        }
    }
}
