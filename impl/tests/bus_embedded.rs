//! The bus suite (`bus_suite`) against the embedded broker, on tokio's paused clock: ack
//! waits and nak delays elapse only when every task is idle, so each run is deterministic.
//! Plus what only the embedded broker promises: a member that leaves hands back what it held
//! at once, with no ack wait.
#![cfg(not(loom))]

mod bus_suite;

use std::time::Duration;

use bus_suite::{Backend, Members, ORDERS, Outstanding, TICKET_SUBJECTS};
use ticketing::bus::broker::Status;
use ticketing::bus::{Bus, DeadLetterReason, Delivery, EmbeddedBus, MessageHandle};
use ticketing::events::Subject;
use ticketing::services::listener::Listener;
use ticketing::services::member;
use ticketing::services::{ListenerError, Outcome};

/// The embedded backend: each test its own broker; "another process" shares the broker (the
/// core outlives its members), as a process restart on JetStream shares the server.
struct Embedded;

impl Backend for Embedded {
    type Bus = EmbeddedBus;

    async fn bus(&self) -> EmbeddedBus {
        EmbeddedBus::new()
    }

    async fn reopen(&self, bus: EmbeddedBus) -> EmbeddedBus {
        bus
    }

    async fn outstanding(&self, bus: &EmbeddedBus, group: &str) -> Outstanding {
        bus.inspect(|core| {
            let mut outstanding = Outstanding::default();
            let Some(group) = core.group_id(group) else {
                return outstanding;
            };
            for seq in 1..=core.stream_len() {
                match core.status(group, seq) {
                    Some(Status::Pending { deliveries: 0 }) => outstanding.undelivered += 1,
                    Some(
                        Status::Pending { .. } | Status::InFlight { .. } | Status::Delayed { .. },
                    ) => outstanding.unsettled += 1,
                    _ => {}
                }
            }
            outstanding
        })
    }

    async fn ack_floor(&self, bus: &EmbeddedBus, group: &str) -> u64 {
        bus.inspect(|core| {
            let Some(group) = core.group_id(group) else {
                return 0;
            };
            (1..=core.stream_len())
                .take_while(|&seq| {
                    matches!(
                        core.status(group, seq),
                        None | Some(Status::Acked | Status::Dead)
                    )
                })
                .last()
                .unwrap_or(0)
        })
    }

    fn short_ack_wait(&self) -> Duration {
        Duration::from_secs(1)
    }
}

macro_rules! suite {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $check() {
                bus_suite::$check(&Embedded).await;
            }
        )*
    };
}

suite!(
    each_event_reaches_exactly_one_member,
    every_group_gets_every_event_on_its_subjects,
    an_unacked_event_is_redelivered_after_ack_wait,
    a_nak_redelivers,
    a_poison_payload_is_dead_lettered_and_others_flow,
    a_duplicate_publish_id_is_delivered_once,
    a_crashed_member_loses_nothing,
    deliver_all_replays_earlier_events,
    a_durable_group_resumes_where_it_left_off,
    max_deliver_dead_letters_an_event_never_acked,
    a_member_never_holds_more_than_max_in_flight,
    graceful_shutdown_lets_in_flight_handlers_ack,
);

/// A member that leaves (drops its subscription) hands back what it held at once: the
/// other member gets it without any time passing, as a redelivery.
#[tokio::test(start_paused = true)]
async fn a_member_that_leaves_hands_back_what_it_held_at_once() {
    let bus = EmbeddedBus::new();
    let options = bus_suite::options(ORDERS, &TICKET_SUBJECTS, bus_suite::LONG_ACK_WAIT, 1);
    let seq = bus_suite::publish(&bus, &bus_suite::event(Subject::TicketCreated, 1), None).await;
    let mut leaving = bus.subscribe(&options).await.unwrap();
    let held = leaving.next_delivery().await;
    assert_eq!(held.stream_seq(), seq);
    let mut staying = Members::new();
    staying.add(bus.subscribe(&options).await.unwrap());
    assert!(staying.try_next().is_none());
    let start = tokio::time::Instant::now();
    drop(leaving);
    let (_, again) = staying.next("the handed-back delivery").await;
    assert_eq!((again.stream_seq(), again.delivery_count()), (seq, 2));
    assert_eq!(start.elapsed(), Duration::ZERO, "no ack wait was needed");
    // The late ack of the first delivery still acknowledges it (by stream sequence).
    held.ack().await.unwrap();
    assert_eq!(
        bus.inspect(|core| core.status(core.group_id(ORDERS).unwrap(), seq)),
        Some(Status::Acked)
    );
    drop(again);
}

/// Ack waits are timers of the driver: on the paused clock a delivery expires exactly at its
/// ack wait, and the delivery that runs out of attempts is dead-lettered then.
#[tokio::test(start_paused = true)]
async fn ack_waits_expire_exactly_on_time() {
    let bus = EmbeddedBus::new();
    let ack_wait = Duration::from_secs(5);
    let options = ticketing::bus::ListenerOptions {
        max_deliver: 2,
        ..bus_suite::options(ORDERS, &TICKET_SUBJECTS, ack_wait, 1)
    };
    let seq = bus_suite::publish(&bus, &bus_suite::event(Subject::TicketCreated, 1), None).await;
    let mut member = bus.subscribe(&options).await.unwrap();
    let start = tokio::time::Instant::now();
    let first = member.next_delivery().await;
    let second = member.next_delivery().await;
    assert_eq!(start.elapsed(), ack_wait);
    assert_eq!((second.stream_seq(), second.delivery_count()), (seq, 2));
    drop((first, second));
    let tick = Duration::from_millis(1);
    tokio::time::sleep(ack_wait - tick).await;
    assert!(
        bus.dead_letters().is_empty(),
        "dead-lettered before its ack wait ran out"
    );
    tokio::time::sleep(2 * tick).await;
    let dead = bus.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadLetterReason::MaxDeliveries(2));
}

/// Test-only convenience: the next delivery, which must come.
trait NextDelivery {
    type Delivery;
    async fn next_delivery(&mut self) -> Self::Delivery;
}

impl<S: ticketing::bus::Subscription> NextDelivery for S {
    type Delivery = S::Delivery;
    async fn next_delivery(&mut self) -> S::Delivery {
        tokio::time::timeout(bus_suite::PATIENCE, self.next())
            .await
            .expect("a delivery in time")
            .expect("the subscription is open")
            .expect("no bus error")
    }
}

/// The member runtime runs at most `max_in_flight` handlers at once: with two slots and five
/// events, two handlers start and the rest wait for them.
#[tokio::test(start_paused = true)]
async fn the_member_runtime_runs_at_most_max_in_flight_handlers() {
    let bus = EmbeddedBus::new();
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let recorder = bus_suite::Recorder::gated(gate);
    let stop = tokio_util::sync::CancellationToken::new();
    let options = bus_suite::options(ORDERS, &TICKET_SUBJECTS, bus_suite::LONG_ACK_WAIT, 2);
    let running = tokio::spawn({
        let (bus, recorder, stop) = (bus.clone(), std::sync::Arc::clone(&recorder), stop.clone());
        async move { member::run_member(&bus, &options, recorder, stop).await }
    });
    for n in 0..5 {
        bus_suite::publish(&bus, &bus_suite::event(Subject::TicketCreated, n), None).await;
    }
    tokio::time::sleep(bus_suite::QUIET).await;
    assert_eq!(
        recorder.entered(),
        2,
        "handlers started beyond max_in_flight"
    );
    open_gate.send(true).unwrap();
    bus_suite::eventually("all five handled", async || {
        (recorder.acked() == 5).then_some(())
    })
    .await;
    stop.cancel();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.handled, 5);
}

/// The member runtime handles one ticket's deliveries one after the other, in delivery order,
/// and other tickets' beside them: with ticket A's v1 held in its handler, A's v2 waits while
/// B's v1 (delivered after it) runs. Deterministic on the current-thread runtime: without the
/// lane, A's v2 (spawned before B's v1) would start first.
#[tokio::test(start_paused = true)]
async fn the_member_runtime_handles_one_tickets_deliveries_in_turn() {
    use ticketing::events::{Event, TicketUpdated};
    use ticketing::id::Id;
    use ticketing::records::Version;

    struct HoldsTheFirst {
        entered: std::sync::Mutex<Vec<(Id, Version)>>,
        release: tokio::sync::watch::Receiver<bool>,
    }
    impl Listener for HoldsTheFirst {
        const QUEUE_GROUP: &'static str = ORDERS;
        const SUBJECTS: &'static [Subject] = &TICKET_SUBJECTS;

        async fn handle<M: MessageHandle>(
            &self,
            event: &Event,
            message: &M,
        ) -> Result<Outcome, ListenerError> {
            let first = {
                let mut entered = self.entered.lock().unwrap();
                entered.push((event.ticket_id(), event.version()));
                entered.len() == 1
            };
            if first {
                let mut release = self.release.clone();
                release.wait_for(|open| *open).await.unwrap();
            }
            message.ack().await.unwrap();
            Ok(Outcome::Applied)
        }
    }
    let update = |n: u64, version: Version| {
        let Event::TicketUpdated(updated) = bus_suite::event(Subject::TicketUpdated, n) else {
            unreachable!("a ticket:updated event");
        };
        Event::TicketUpdated(TicketUpdated { version, ..updated })
    };
    let (a1, a2, b1) = (update(1, 1), update(1, 2), update(2, 1));
    let bus = EmbeddedBus::new();
    let (open, release) = tokio::sync::watch::channel(false);
    let listener = std::sync::Arc::new(HoldsTheFirst {
        entered: std::sync::Mutex::new(Vec::new()),
        release,
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let options = bus_suite::options(ORDERS, &TICKET_SUBJECTS, bus_suite::LONG_ACK_WAIT, 4);
    let running = tokio::spawn({
        let (bus, listener, stop) = (bus.clone(), std::sync::Arc::clone(&listener), stop.clone());
        async move { member::run_member(&bus, &options, listener, stop).await }
    });
    for event in [&a1, &a2, &b1] {
        bus_suite::publish(&bus, event, None).await;
    }
    let key = |event: &Event| (event.ticket_id(), event.version());
    bus_suite::eventually("ticket B's handler to start", async || {
        listener
            .entered
            .lock()
            .unwrap()
            .contains(&key(&b1))
            .then_some(())
    })
    .await;
    assert_eq!(
        *listener.entered.lock().unwrap(),
        [key(&a1), key(&b1)],
        "ticket A's v2 started while its v1 was still being handled"
    );
    open.send(true).unwrap();
    bus_suite::eventually("all three handled", async || {
        (listener.entered.lock().unwrap().len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        *listener.entered.lock().unwrap(),
        [key(&a1), key(&b1), key(&a2)]
    );
    stop.cancel();
    assert_eq!(running.await.unwrap().unwrap().handled, 3);
}

/// A handler that panics frees its ticket's lane: the delivery waiting behind it runs at once,
/// not after the panicked one's redelivery; the panicked delivery comes back after the ack wait
/// and is handled in turn.
#[tokio::test(start_paused = true)]
async fn a_panicking_handler_lets_its_tickets_next_delivery_run() {
    use ticketing::events::{Event, TicketUpdated};
    use ticketing::records::Version;

    struct PanicsOnV1First(std::sync::Mutex<Vec<(Version, u32)>>);
    impl Listener for PanicsOnV1First {
        const QUEUE_GROUP: &'static str = ORDERS;
        const SUBJECTS: &'static [Subject] = &TICKET_SUBJECTS;

        async fn handle<M: MessageHandle>(
            &self,
            event: &Event,
            message: &M,
        ) -> Result<Outcome, ListenerError> {
            let delivery = message.delivery_count();
            self.0.lock().unwrap().push((event.version(), delivery));
            if event.version() == 1 && delivery == 1 {
                panic!("a handler bug");
            }
            message.ack().await.unwrap();
            Ok(Outcome::Applied)
        }
    }
    let update = |version: Version| {
        let Event::TicketUpdated(updated) = bus_suite::event(Subject::TicketUpdated, 1) else {
            unreachable!("a ticket:updated event");
        };
        Event::TicketUpdated(TicketUpdated { version, ..updated })
    };
    let bus = EmbeddedBus::new();
    let listener = std::sync::Arc::new(PanicsOnV1First(std::sync::Mutex::new(Vec::new())));
    let stop = tokio_util::sync::CancellationToken::new();
    let ack_wait = Duration::from_secs(10);
    let options = bus_suite::options(ORDERS, &TICKET_SUBJECTS, ack_wait, 4);
    let member = member::join(&bus, &options).await.unwrap();
    let running = tokio::spawn(member.run(std::sync::Arc::clone(&listener), stop.clone()));
    let start = tokio::time::Instant::now();
    for version in [1, 2] {
        bus_suite::publish(&bus, &update(version), None).await;
    }
    bus_suite::eventually("v2 handled after v1's panic", async || {
        listener.0.lock().unwrap().contains(&(2, 1)).then_some(())
    })
    .await;
    assert!(
        start.elapsed() < ack_wait,
        "v2 waited for v1's redelivery: its lane stayed taken after the panic"
    );
    bus_suite::eventually("v1 redelivered and handled", async || {
        (listener.0.lock().unwrap().len() == 3).then_some(())
    })
    .await;
    assert_eq!(*listener.0.lock().unwrap(), [(1, 1), (2, 1), (1, 2)]);
    stop.cancel();
    let report = running.await.unwrap();
    assert_eq!((report.handled, report.handler_panics), (3, 1));
}

/// A handler that panics leaves its delivery unsettled: the member runtime counts it, keeps
/// going, and the bus redelivers the event after the ack wait.
#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_counted_and_its_event_redelivered() {
    struct PanicsOnFirstDelivery(std::sync::Mutex<Vec<u32>>);
    impl Listener for PanicsOnFirstDelivery {
        const QUEUE_GROUP: &'static str = ORDERS;
        const SUBJECTS: &'static [Subject] = &TICKET_SUBJECTS;

        async fn handle<M: MessageHandle>(
            &self,
            _event: &ticketing::events::Event,
            message: &M,
        ) -> Result<Outcome, ListenerError> {
            self.0.lock().unwrap().push(message.delivery_count());
            if message.delivery_count() == 1 {
                panic!("a handler bug");
            }
            message.ack().await.unwrap();
            Ok(Outcome::Applied)
        }
    }
    let bus = EmbeddedBus::new();
    let handler = std::sync::Arc::new(PanicsOnFirstDelivery(std::sync::Mutex::new(Vec::new())));
    let stop = tokio_util::sync::CancellationToken::new();
    let ack_wait = Duration::from_secs(2);
    let options = bus_suite::options(ORDERS, &TICKET_SUBJECTS, ack_wait, 4);
    let member = member::join(&bus, &options).await.unwrap();
    let running = tokio::spawn(member.run(std::sync::Arc::clone(&handler), stop.clone()));
    let start = tokio::time::Instant::now();
    bus_suite::publish(&bus, &bus_suite::event(Subject::TicketCreated, 1), None).await;
    bus_suite::eventually("the redelivery to be acked", async || {
        (handler.0.lock().unwrap().as_slice() == [1, 2]).then_some(())
    })
    .await;
    assert!(
        start.elapsed() >= ack_wait,
        "redelivered before the ack wait"
    );
    stop.cancel();
    let report = running.await.unwrap();
    assert_eq!((report.handled, report.handler_panics), (2, 1));
    assert!(bus.dead_letters().is_empty());
}

/// Interest retention on the embedded bus: once its one group acknowledged every event, the
/// broker holds none of them; a dead letter replayed is stored again as a new message, reaches
/// the group, and leaves the dead-letter list.
#[tokio::test(start_paused = true)]
async fn acknowledged_events_are_released_and_a_replayed_dead_letter_flows_again() {
    use ticketing::bus::{PublishAck, RawPublisher};
    let bus = EmbeddedBus::new();
    let options = bus_suite::options(ORDERS, &TICKET_SUBJECTS, bus_suite::LONG_ACK_WAIT, 4);
    let mut member = bus.subscribe(&options).await.unwrap();
    for n in 0..3 {
        bus_suite::publish(&bus, &bus_suite::event(Subject::TicketCreated, n), None).await;
        member.next_delivery().await.ack().await.unwrap();
    }
    assert_eq!(bus.inspect(|core| core.retained()), 0, "all acknowledged");
    let poison = bytes::Bytes::from_static(b"not an event");
    let Ok(PublishAck::Stored { seq: poison_seq }) = bus
        .publish_raw("ticket:updated", poison.clone(), None)
        .await
    else {
        panic!("a raw publish without publish id is stored");
    };
    member.next_delivery().await.term("poison").await.unwrap();
    assert_eq!(bus.dead_letters().len(), 1);
    assert_eq!(
        bus.inspect(|core| core.retained()),
        0,
        "dead is settled too"
    );
    assert_eq!(bus.dead_letters_dropped(), 0);

    let Some(PublishAck::Stored { seq: replayed }) = bus.replay_dead_letter(poison_seq) else {
        panic!("the dead letter is replayed as a new message");
    };
    assert!(replayed > poison_seq);
    assert!(bus.dead_letters().is_empty(), "replayed: off the list");
    let again = member.next_delivery().await;
    assert_eq!(
        (again.stream_seq(), again.payload()),
        (replayed, &poison[..])
    );
    again.ack().await.unwrap();
    assert_eq!(bus.replay_dead_letter(poison_seq), None, "replayed once");
}
