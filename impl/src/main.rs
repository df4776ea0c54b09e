//! The `ticketing` binary (see `ticketing --help`).

fn main() {}
