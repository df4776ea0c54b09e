//! MemStore's concurrency claims, checked over every interleaving loom can schedule.
//!
//! Each test runs a few threads against MemStore's synchronous core (`find_now`, `save_now`,
//! `reserve_now`, ...; the async trait methods are the same code behind ready futures) inside
//! `loom::model`, which re-runs the closure once per interleaving of their lock operations,
//! and prints how many it explored. Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p ticketing --release --test loom -- --nocapture
//! ```
//!
//! CI runs it as above, with no `LOOM_MAX_PREEMPTIONS`: the exploration is exhaustive (every
//! interleaving of every test, about 40 s on two cores). `LOOM_MAX_PREEMPTIONS=N` bounds the
//! preemptions per interleaving, for a quick look while editing.
#![cfg(loom)]

mod loom_memstore {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use loom::thread;
    use ticketing::events::Event;
    use ticketing::id::Id;
    use ticketing::price::Price;
    use ticketing::records::{Order, OrderStatus, Ticket, Timestamp, UserId, Version};
    use ticketing::store::{MemStore, ReservationCheck, StoreError};

    fn id(n: u8) -> Id {
        Id::from_bytes([n; 12])
    }

    fn price(cents: u64) -> Price {
        Price::from_cents(cents).unwrap()
    }

    /// A ticket whose title spells its price in cents: a reader can tell a torn record.
    fn ticket(cents: u64) -> Ticket {
        Ticket {
            id: id(1),
            title: cents.to_string().into(),
            price: price(cents),
            user_id: UserId::new("owner"),
            version: 0,
            order_id: None,
            reservation: 0,
        }
    }

    fn order(n: u8) -> Order {
        Order {
            id: id(10 + n),
            user_id: UserId::new(format!("buyer-{n}")),
            status: OrderStatus::Created,
            expires_at: Timestamp::from_unix_millis(0),
            ticket_id: id(1),
            version: 0,
        }
    }

    /// Runs `check` under every interleaving loom explores and prints how many there were.
    fn explore(name: &str, check: impl Fn() + Sync + Send + 'static) {
        // Counted outside the model (a std atomic, which loom does not schedule).
        let explored = Arc::new(AtomicUsize::new(0));
        let builder = loom::model::Builder::new();
        let bound = builder.preemption_bound;
        let started = std::time::Instant::now();
        builder.check({
            let explored = Arc::clone(&explored);
            move || {
                explored.fetch_add(1, Ordering::Relaxed);
                check();
            }
        });
        let explored = explored.load(Ordering::Relaxed);
        println!(
            "{name}: loom explored {explored} interleavings (preemption bound {}) in {:.1?}",
            bound.map_or("none".to_owned(), |bound| bound.to_string()),
            started.elapsed()
        );
    }

    /// Two writers save copies of the same read version: exactly one wins, the other gets a
    /// version conflict naming both versions, and the store holds the winner's record.
    #[test]
    fn loom_two_writers_of_one_read_version_exactly_one_wins() {
        explore("two writers of one read version", || {
            let store = MemStore::new();
            store.insert_now(ticket(100)).unwrap();
            let read: Ticket = store.find_now(id(1)).unwrap();
            let writers: Vec<_> = [200, 300]
                .into_iter()
                .map(|cents| {
                    let store = store.clone();
                    let mine = Ticket {
                        price: price(cents),
                        title: cents.to_string().into(),
                        ..read.clone()
                    };
                    thread::spawn(move || (mine.clone(), store.save_now(mine)))
                })
                .collect();
            let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();

            let winners: Vec<Ticket> = results
                .iter()
                .filter_map(|(mine, result)| {
                    let version = *result.as_ref().ok()?;
                    Some(Ticket {
                        version,
                        ..mine.clone()
                    })
                })
                .collect();
            assert_eq!(winners.len(), 1, "{results:?}");
            assert_eq!(winners[0].version, 1);
            let losers: Vec<&StoreError> = results
                .iter()
                .filter_map(|(_, result)| result.as_ref().err())
                .collect();
            assert!(
                matches!(
                    losers[..],
                    [StoreError::VersionConflict {
                        expected: 0,
                        found: 1,
                        ..
                    }]
                ),
                "{losers:?}"
            );
            let stored: Ticket = store.find_now(id(1)).unwrap();
            assert_eq!(stored, winners[0], "the stored ticket is not the winner's");
        });
    }

    /// A reader racing a writer sees the ticket whole, before or after the save, never a mix
    /// (the title always spells the price, and the version matches), and never goes back.
    #[test]
    fn loom_reader_sees_a_record_whole_old_or_new() {
        explore("reader racing a writer", || {
            let store = MemStore::new();
            store.insert_now(ticket(100)).unwrap();
            let writer = {
                let store = store.clone();
                thread::spawn(move || {
                    let read: Ticket = store.find_now(id(1)).unwrap();
                    let changed = Ticket {
                        price: price(200),
                        title: "200".into(),
                        ..read
                    };
                    store.save_now(changed).unwrap();
                })
            };
            let reader = {
                let store = store.clone();
                thread::spawn(move || {
                    let mut last_version = 0;
                    for _ in 0..2 {
                        let seen: Ticket = store.find_now(id(1)).unwrap();
                        let whole = matches!(
                            (seen.version, seen.price.cents(), &*seen.title),
                            (0, 100, "100") | (1, 200, "200")
                        );
                        assert!(whole, "a torn read: {seen:?}");
                        assert!(seen.version >= last_version, "a read went back in time");
                        last_version = seen.version;
                    }
                })
            };
            writer.join().unwrap();
            reader.join().unwrap();
        });
    }

    /// `writers` threads each add one cent to the price with update-if-current, re-reading
    /// and retrying on a conflict. No increment is lost; each writer's reads see strictly
    /// increasing versions; the successful saves produced versions 1..=writers, each once.
    fn incrementers_lose_no_update(writers: u64) {
        explore(&format!("{writers} incrementers"), move || {
            let store = MemStore::new();
            store.insert_now(ticket(100)).unwrap();
            let threads: Vec<_> = (0..writers)
                .map(|_| {
                    let store = store.clone();
                    thread::spawn(move || {
                        let mut versions_read: Vec<Version> = Vec::new();
                        loop {
                            let read: Ticket = store.find_now(id(1)).unwrap();
                            versions_read.push(read.version);
                            // A retry needs another writer to have succeeded: bounded.
                            assert!(versions_read.len() as u64 <= writers, "livelock");
                            let next = Ticket {
                                price: price(read.price.cents() + 1),
                                ..read
                            };
                            match store.save_now(next) {
                                Ok(saved_at) => return (versions_read, saved_at),
                                Err(conflict @ StoreError::VersionConflict { .. }) => {
                                    drop(conflict)
                                }
                                Err(other) => panic!("an increment failed: {other}"),
                            }
                        }
                    })
                })
                .collect();
            let mut saved_versions = BTreeSet::new();
            for thread in threads {
                let (versions_read, saved) = thread.join().unwrap();
                assert!(
                    versions_read.windows(2).all(|pair| pair[0] < pair[1]),
                    "a writer's reads went back: {versions_read:?}"
                );
                assert!(saved_versions.insert(saved), "version {saved} saved twice");
            }
            assert_eq!(saved_versions, (1..=writers).collect::<BTreeSet<_>>());
            let last: Ticket = store.find_now(id(1)).unwrap();
            assert_eq!(last.price.cents(), 100 + writers, "an increment was lost");
            assert_eq!(last.version, writers);
        });
    }

    #[test]
    fn loom_two_incrementers_lose_no_update() {
        incrementers_lose_no_update(2);
    }

    #[test]
    fn loom_three_incrementers_lose_no_update() {
        incrementers_lose_no_update(3);
    }

    /// Two atomic reservations of one ticket: exactly one succeeds, the other is told which
    /// order holds the ticket; one active order exists, one reservation change is counted, one
    /// `order:created` is in the outbox.
    #[test]
    fn loom_two_atomic_reservations_exactly_one_wins() {
        explore("two atomic reservations", || {
            let store = MemStore::new();
            let reservers: Vec<_> = [1, 2]
                .into_iter()
                .map(|n| {
                    let store = store.clone();
                    thread::spawn(move || {
                        store.reserve_now(order(n), price(500), ReservationCheck::Atomic, true)
                    })
                })
                .collect();
            let results: Vec<_> = reservers.into_iter().map(|r| r.join().unwrap()).collect();

            let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(winners.len(), 1, "{results:?}");
            let (winner, event) = winners[0];
            assert_eq!(event.reservation, 1);
            let refused = results.iter().find_map(|r| r.as_ref().err());
            match refused {
                Some(StoreError::TicketReserved {
                    ticket_id,
                    order_id,
                }) => assert_eq!((*ticket_id, *order_id), (id(1), winner.id)),
                other => panic!("the loser got {other:?}"),
            }
            let active: Vec<Order> = [1, 2]
                .into_iter()
                .filter_map(|n| store.find_order_now(order(n).id))
                .filter(|order| order.status.is_active())
                .collect();
            assert_eq!(active, vec![winner.clone()], "not exactly one active order");
            assert_eq!(store.active_order_now(id(1)).as_ref(), Some(winner));
            assert_eq!(store.reservation_count_now(id(1)), 1);
            let outbox = store.outbox_snapshot();
            assert_eq!(outbox.len(), 1);
            assert_eq!(outbox[0].event, Event::OrderCreated(event.clone()));
        });
    }

    /// The negative control: the course's reservation (`racy-reserve`: check for an active
    /// order, then insert without checking) double-books in some interleaving, and loom finds
    /// it. Proves the exploration reaches the race the atomic reservation closes.
    #[test]
    fn loom_check_then_insert_reservations_can_double_book() {
        static DOUBLE_BOOKED: AtomicBool = AtomicBool::new(false);
        explore("check-then-insert reservations", || {
            let store = MemStore::new();
            let reservers: Vec<_> = [1, 2]
                .into_iter()
                .map(|n| {
                    let store = store.clone();
                    thread::spawn(move || {
                        if store.active_order_now(id(1)).is_none() {
                            let reserved = store.reserve_now(
                                order(n),
                                price(500),
                                ReservationCheck::Unchecked,
                                true,
                            );
                            assert!(reserved.is_ok(), "{reserved:?}");
                        }
                    })
                })
                .collect();
            for reserver in reservers {
                reserver.join().unwrap();
            }
            let active = [1, 2]
                .into_iter()
                .filter_map(|n| store.find_order_now(order(n).id))
                .filter(|order| order.status.is_active())
                .count();
            assert!(active >= 1);
            if active == 2 {
                DOUBLE_BOOKED.store(true, Ordering::Relaxed);
            }
        });
        assert!(
            DOUBLE_BOOKED.load(Ordering::Relaxed),
            "loom found no interleaving in which check-then-insert double-books"
        );
    }
}
