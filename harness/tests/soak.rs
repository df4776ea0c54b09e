//! `harness soak`, short, against the real servers (NATS JetStream at `NATS_URL`, PostgreSQL
//! at `DATABASE_URL`, the local ones by default): every fault kind is injected and every
//! property holds on the reference; and the same checks catch a variant that breaks
//! convergence, so the soak can fail. Each run makes its own stream and database and removes
//! them. Skipped (or failed under `REQUIRE_SERVICES=1`) when a server is unreachable.

use std::time::Duration;

use harness::soak::workload::RequestKind;
use harness::soak::{FaultKind, Progress, SoakError, SoakOptions, SoakReport, soak};
use ticketing::testkit::{database_url, nats_url, unavailable};
use ticketing::variant::Variant;

/// The seed of the reference run (a failure prints the rerun command with it).
const SEED: u64 = 20_240_601;

fn options(seed: u64) -> SoakOptions {
    let mut options = SoakOptions::new(seed);
    options.bus_url = nats_url();
    options.store_url = database_url();
    options
}

/// Runs the soak; `None` (after reporting the skip) when a server is unreachable.
async fn run(test: &str, options: SoakOptions) -> Option<SoakReport> {
    match soak(options, Progress::Silent).await {
        Ok(report) => Some(report),
        Err(SoakError::Unreachable { service, why }) => {
            unavailable(test, service, why);
            None
        }
        Err(error) => panic!("{test}: the soak could not run: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_with_every_fault_keeps_every_property_on_the_reference() {
    let mut options = options(SEED);
    options.duration = Duration::from_secs(12);
    options.faults_per_kind = 2;
    let Some(report) = run("soak::reference", options).await else {
        return;
    };
    assert!(report.all_hold(), "a property is violated:\n{report}");
    // Two of each are scheduled; one due after the clients stopped (a slow machine) is
    // skipped, never injected into the quiescence.
    for kind in FaultKind::ALL {
        assert_eq!(report.faults.scheduled(kind), 2, "{report}");
        assert!(
            report.faults.injected(kind) >= 1,
            "{} never injected:\n{report}",
            kind.name()
        );
    }
    for kind in [
        RequestKind::CreateTicket,
        RequestKind::UpdateTicket,
        RequestKind::CreateOrder,
        RequestKind::CancelOrder,
    ] {
        assert!(
            report.history.succeeded(kind) > 0,
            "no successful {}:\n{report}",
            kind.name()
        );
    }
    // Crashed members' deliveries come back after the ack wait: redelivery was exercised.
    assert!(
        report.counts.redeliveries > 0,
        "nothing redelivered:\n{report}"
    );
    assert!(
        report.state.reserved > 0 || report.state.cancelled > 0,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_catches_a_variant_whose_replicas_never_converge() {
    // `no-reserve-publish`: reserving a ticket bumps its version without an event, so the
    // replica of every ordered ticket stays behind (SPEC.md section 2).
    let mut options = options(SEED + 1);
    options.variant = Variant::NoReservePublish;
    options.duration = Duration::from_secs(4);
    options.faults.clear();
    options.quiesce_timeout = Duration::from_secs(4);
    let Some(report) = run("soak::no_reserve_publish", options).await else {
        return;
    };
    assert!(!report.all_hold(), "the broken variant passed:\n{report}");
    let fidelity = report
        .verdict("replica fidelity and convergence")
        .expect("the replica check ran");
    assert_eq!(
        fidelity.status,
        harness::soak::check::Status::Violated,
        "{report}"
    );
    assert!(
        fidelity
            .examples
            .iter()
            .any(|example| example.contains("replica v")),
        "{report}"
    );
}
