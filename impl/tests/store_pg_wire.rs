//! What PgStore's operations cost on the wire: round trips (the times the client waits for
//! the server) and bytes, counted by a proxy between the store and PostgreSQL that reads the
//! protocol's messages. Counts, unlike timings, do not depend on the machine's load, so they
//! are asserted: a change that adds a round trip to a hot path fails here.
//!
//! A round trip is a client message that the server must answer (`Sync` or `Query`, each
//! answered by `ReadyForQuery`, or first by `ErrorResponse` when it fails) sent while no such
//! answer is outstanding: requests pipelined behind another share its round trip. Each test warms its statements first (a statement is
//! prepared once per pooled connection), on a pool of one connection.
#![cfg(not(loom))]

mod store_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use store_support::{id, order, price, ticket, user};
use ticketing::events::{Event, TicketCreated};
use ticketing::records::Ticket;
use ticketing::store::{
    OrderBook, Outbox, PgStore, PgStoreOptions, ReservationCheck, StoreError, VersionedStore,
};
use ticketing::testkit::{self, FreshDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What crossed the proxy, over all its connections.
#[derive(Default)]
struct Wire {
    round_trips: AtomicU64,
    /// `Sync` and `Query` messages: the statements (or pipelined groups) the server answered.
    requests: AtomicU64,
    /// `Parse` messages: statements prepared.
    parses: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
}

/// A snapshot of [`Wire`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    round_trips: u64,
    requests: u64,
    parses: u64,
    to_server: u64,
    to_client: u64,
}

impl Wire {
    fn counts(&self) -> Counts {
        Counts {
            round_trips: self.round_trips.load(Ordering::SeqCst),
            requests: self.requests.load(Ordering::SeqCst),
            parses: self.parses.load(Ordering::SeqCst),
            to_server: self.to_server.load(Ordering::SeqCst),
            to_client: self.to_client.load(Ordering::SeqCst),
        }
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, before: Counts) -> Counts {
        Counts {
            round_trips: self.round_trips - before.round_trips,
            requests: self.requests - before.requests,
            parses: self.parses - before.parses,
            to_server: self.to_server - before.to_server,
            to_client: self.to_client - before.to_client,
        }
    }
}

/// Splits a byte stream into protocol messages: `typed` once the start-up is over (a type byte,
/// then a length that counts itself), untyped before (a length, then a code).
struct Messages {
    buffer: Vec<u8>,
    typed: bool,
}

impl Messages {
    /// The next complete message's type (`0` for an untyped one) and body.
    fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        let header = usize::from(self.typed);
        if self.buffer.len() < header + 4 {
            return None;
        }
        let length = u32::from_be_bytes(self.buffer[header..header + 4].try_into().ok()?);
        let end = header + usize::try_from(length).ok()?;
        if self.buffer.len() < end {
            return None;
        }
        let kind = if self.typed { self.buffer[0] } else { 0 };
        let body = self.buffer[header + 4..end].to_vec();
        self.buffer.drain(..end);
        Some((kind, body))
    }
}

/// Where the store should connect: a proxy in front of the test database, counting into the
/// returned [`Wire`].
async fn counting_proxy(database: &FreshDatabase) -> (String, Arc<Wire>) {
    let config: tokio_postgres::Config = database.url().parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        other => panic!("the test database is not on TCP: {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let wire = Arc::new(Wire::default());
    let counting = Arc::clone(&wire);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            tokio::spawn(relay_connection(client, server, Arc::clone(&counting)));
        }
    });
    let url = database
        .url()
        .replacen(&format!("{host}:{port}"), &local.to_string(), 1);
    assert_ne!(url, database.url(), "the URL does not name host:port");
    (url, wire)
}

/// Forwards one connection both ways, counting. Requests still unanswered decide whether a
/// client message starts a round trip; the server's answer is counted before it is forwarded,
/// so the client cannot send its next request before the count is settled.
async fn relay_connection(client: TcpStream, server: TcpStream, wire: Arc<Wire>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // The start-up message is answered by a ReadyForQuery too.
    let outstanding = Arc::new(AtomicI64::new(1));
    let upward = {
        let (wire, outstanding) = (Arc::clone(&wire), Arc::clone(&outstanding));
        async move {
            let mut messages = Messages {
                buffer: Vec::new(),
                typed: false,
            };
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let read = from_client.read(&mut chunk).await.unwrap_or(0);
                if read == 0 {
                    break;
                }
                messages.buffer.extend_from_slice(&chunk[..read]);
                while let Some((kind, body)) = messages.next() {
                    wire.to_server.fetch_add(
                        body.len() as u64 + 4 + u64::from(kind != 0),
                        Ordering::SeqCst,
                    );
                    match kind {
                        // SSLRequest and GSSENCRequest are followed by another untyped message.
                        0 => {
                            let code = body.get(..4).map(|code| {
                                u32::from_be_bytes(code.try_into().unwrap_or_default())
                            });
                            messages.typed = !matches!(code, Some(80_877_103 | 80_877_104));
                        }
                        b'S' | b'Q' => {
                            if outstanding.fetch_add(1, Ordering::SeqCst) == 0 {
                                wire.round_trips.fetch_add(1, Ordering::SeqCst);
                            }
                            wire.requests.fetch_add(1, Ordering::SeqCst);
                        }
                        b'P' => {
                            wire.parses.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                }
                if to_server.write_all(&chunk[..read]).await.is_err() {
                    break;
                }
            }
        }
    };
    let downward = async move {
        let mut messages = Messages {
            buffer: Vec::new(),
            typed: true,
        };
        let mut chunk = vec![0u8; 64 * 1024];
        // A failing request is answered by its ErrorResponse: the client returns the error at
        // once and may send its next request before the ReadyForQuery that follows has crossed
        // the proxy, so that ReadyForQuery must not settle a second request.
        let mut failed = false;
        loop {
            let read = from_server.read(&mut chunk).await.unwrap_or(0);
            if read == 0 {
                break;
            }
            wire.to_client.fetch_add(read as u64, Ordering::SeqCst);
            messages.buffer.extend_from_slice(&chunk[..read]);
            while let Some((kind, _)) = messages.next() {
                match kind {
                    b'E' if !failed => {
                        failed = true;
                        outstanding.fetch_sub(1, Ordering::SeqCst);
                    }
                    b'Z' if failed => failed = false,
                    b'Z' => {
                        outstanding.fetch_sub(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
            if to_client.write_all(&chunk[..read]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(upward, downward);
}

/// A store of one pooled connection behind a counting proxy, in schema `schema` of a fresh
/// database.
async fn counted_store(test: &str, schema: &str) -> Option<(PgStore, Arc<Wire>, FreshDatabase)> {
    let database = testkit::fresh_postgres(test).await?;
    let (url, wire) = counting_proxy(&database).await;
    let options = PgStoreOptions {
        pool_size: 1,
        ..PgStoreOptions::default()
    };
    let store = PgStore::connect_with(&url, schema, options)
        .await
        .unwrap_or_else(|error| panic!("{test}: connecting through the proxy: {error}"));
    Some((store, wire, database))
}

/// What `work` cost on the wire.
async fn counted<T>(wire: &Wire, work: impl Future<Output = T>) -> (T, Counts) {
    let before = wire.counts();
    let done = work.await;
    (done, wire.counts() - before)
}

async fn read_and_save(store: &PgStore, wire: &Wire, cents: u64) -> Counts {
    let (_, counts) = counted(wire, async {
        let read = VersionedStore::<Ticket>::find_by_id(store, id(1))
            .await
            .unwrap()
            .unwrap();
        let edited = Ticket {
            price: price(cents),
            ..read
        };
        store.save(edited, None).await.unwrap();
    })
    .await;
    counts
}

/// The benchmark's operation (`store_pg`): a ticket read, then saved at the version read.
#[tokio::test]
async fn a_read_and_a_save_are_one_round_trip_each() {
    let test = "a_read_and_a_save_are_one_round_trip_each";
    let Some((store, wire, _database)) = counted_store(test, "tickets").await else {
        return;
    };
    store.insert(ticket(1, 100), None).await.unwrap();
    read_and_save(&store, &wire, 200).await;
    let counts = read_and_save(&store, &wire, 300).await;
    eprintln!("find_by_id + save: {counts:?}");
    assert_eq!(counts.round_trips, 2, "{counts:?}");
    assert_eq!(
        counts.parses, 0,
        "a statement was prepared again: {counts:?}"
    );
}

/// A reservation and a cancellation, each with its event in the outbox, and a refused
/// reservation: one round trip each.
#[tokio::test]
async fn reserve_and_cancel_are_one_round_trip_each() {
    let test = "reserve_and_cancel_are_one_round_trip_each";
    let Some((store, wire, _database)) = counted_store(test, "orders").await else {
        return;
    };
    let atomic = ReservationCheck::Atomic;
    // Warm: every statement of the three operations prepared once.
    let (warm, _) = store
        .reserve(order(10, 1), price(100), atomic, true)
        .await
        .unwrap();
    let refused = store.reserve(order(11, 1), price(100), atomic, true).await;
    assert!(matches!(refused, Err(StoreError::TicketReserved { .. })));
    store.cancel(warm, true).await.unwrap();

    let (placed, reserved) =
        counted(&wire, store.reserve(order(12, 1), price(100), atomic, true)).await;
    let (placed, created) = placed.unwrap();
    let (refused, refusal) =
        counted(&wire, store.reserve(order(13, 1), price(100), atomic, true)).await;
    let (cancelled, cancel) = counted(&wire, store.cancel(placed.clone(), true)).await;
    let (_, cancelled_event) = cancelled.unwrap();
    eprintln!("reserve: {reserved:?}\nrefused reserve: {refusal:?}\ncancel: {cancel:?}");

    assert_eq!(created.reservation, 3);
    assert!(
        matches!(refused, Err(StoreError::TicketReserved { order_id, .. }) if order_id == placed.id),
        "{refused:?}"
    );
    assert_eq!(cancelled_event.reservation, 4);
    for (what, counts) in [
        ("reserve", reserved),
        ("refusal", refusal),
        ("cancel", cancel),
    ] {
        assert_eq!(counts.round_trips, 1, "{what}: {counts:?}");
        assert_eq!(counts.parses, 0, "{what} prepared again: {counts:?}");
    }
}

/// The relay's round: reading a batch of entries and deleting them once published costs two
/// round trips, however many entries the batch holds.
#[tokio::test]
async fn a_relay_round_is_two_round_trips_for_the_whole_batch() {
    let test = "a_relay_round_is_two_round_trips_for_the_whole_batch";
    let Some((store, wire, _database)) = counted_store(test, "tickets").await else {
        return;
    };
    const ENTRIES: u8 = 5;
    for n in 1..=ENTRIES + 1 {
        let created = ticket(n, 100);
        let event = Event::TicketCreated(TicketCreated {
            id: created.id,
            version: 0,
            title: created.title.clone(),
            price: created.price,
            user_id: user(1),
        });
        store.insert(created, Some(event)).await.unwrap();
    }
    // Warm, with the first entry.
    let first = store.pending(1).await.unwrap();
    store.mark_published(&[first[0].seq]).await.unwrap();

    let (round, counts) = counted(&wire, async {
        let pending = store.pending(256).await.unwrap();
        let seqs: Vec<u64> = pending.iter().map(|entry| entry.seq).collect();
        store.mark_published(&seqs).await.unwrap();
        pending.len()
    })
    .await;
    eprintln!("relay round of {round} entries: {counts:?}");
    assert_eq!(round, usize::from(ENTRIES));
    assert_eq!(counts.round_trips, 2, "{counts:?}");
    assert!(store.pending(256).await.unwrap().is_empty());
}
