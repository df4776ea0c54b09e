//! The `ticketing` binary: `ticketing serve` runs both services behind one address (on the
//! embedded broker and memory stores by default, or on NATS JetStream and PostgreSQL);
//! `ticketing token` prints a session token for local use. See `ticketing --help`.

// The loom build (`RUSTFLAGS="--cfg loom"`, which builds every target) checks the library's
// MemStore only; the command line needs the network crates that build leaves out (see
// Cargo.toml), so there the binary is an empty `main`.
#[cfg(not(loom))]
mod cli;

#[cfg(not(loom))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(loom)]
fn main() {}
