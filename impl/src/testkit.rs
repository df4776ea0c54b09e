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
