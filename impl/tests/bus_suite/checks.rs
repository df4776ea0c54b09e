//! The checks themselves: each one a broker behaviour of SPEC.md section 1, run against any
//! [`Backend`] by `bus_embedded.rs` and `bus_jetstream.rs`.

use super::*;

/// Each event reaches exactly one member of a queue group: three members, thirty events, each
/// delivered once (every delivery acked at once, with an ack wait no check reaches).
pub async fn each_event_reaches_exactly_one_member<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let options = options(ORDERS, &TICKET_SUBJECTS, LONG_ACK_WAIT, 8);
    let mut members = Members::new();
    for _ in 0..3 {
        members.add(bus.subscribe(&options).await.unwrap());
    }
    let published = publish_ticket_events(&bus, 30).await;
    let mut delivered_to: BTreeMap<u64, usize> = BTreeMap::new();
    while delivered_to.len() < published.len() {
        let (member, delivery) = members.next("every event delivered to the group").await;
        let seq = delivery.stream_seq();
        assert_eq!(
            delivery.delivery_count(),
            1,
            "seq {seq} redelivered though every delivery was acked at once"
        );
        if let Some(earlier) = delivered_to.insert(seq, member) {
            panic!("seq {seq} delivered to member {earlier} and again to member {member}");
        }
        delivery.ack().await.unwrap();
    }
    assert_eq!(delivered_to.keys().copied().collect::<Vec<_>>(), published);
    settled(backend, &bus, ORDERS).await;
    assert!(
        members.try_next().is_none(),
        "a delivery after every event was acked"
    );
}

/// Two queue groups each get every event on their subjects, and only those: orders-service
/// gets the ticket events, tickets-service the order events, each over two members.
pub async fn every_group_gets_every_event_on_its_subjects<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    for (group, subjects) in [(ORDERS, TICKET_SUBJECTS), (TICKETS, ORDER_SUBJECTS)] {
        declare(&bus, &options(group, &subjects, LONG_ACK_WAIT, 8)).await;
    }
    let mut expected: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for n in 0..5 {
        for subject in Subject::ALL {
            let seq = publish(&bus, &event(subject, n), None).await;
            let group = if TICKET_SUBJECTS.contains(&subject) {
                ORDERS
            } else {
                TICKETS
            };
            expected.entry(group).or_default().insert(seq);
        }
    }
    for (group, subjects) in [(ORDERS, TICKET_SUBJECTS), (TICKETS, ORDER_SUBJECTS)] {
        let options = options(group, &subjects, LONG_ACK_WAIT, 8);
        let mut members = Members::new();
        for _ in 0..2 {
            members.add(bus.subscribe(&options).await.unwrap());
        }
        let mut got = BTreeSet::new();
        while got.len() < expected[group].len() {
            let (_, delivery) = members.next(&format!("{group}'s events")).await;
            let subject: Subject = delivery.subject().parse().unwrap();
            assert!(
                subjects.contains(&subject),
                "{group} was given seq {} on {subject}, which it does not listen to",
                delivery.stream_seq()
            );
            assert!(
                got.insert(delivery.stream_seq()),
                "{group} got seq {} twice",
                delivery.stream_seq()
            );
            delivery.ack().await.unwrap();
        }
        assert_eq!(got, expected[group], "{group}'s events");
        settled(backend, &bus, group).await;
        assert!(members.try_next().is_none(), "{group}: an extra delivery");
    }
}

/// An event not acknowledged within the ack wait is redelivered (to either member; here the
/// first holds its only slot), with its delivery count raised, not before the ack wait.
pub async fn an_unacked_event_is_redelivered_after_ack_wait<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let ack_wait = backend.short_ack_wait();
    let options = options(ORDERS, &TICKET_SUBJECTS, ack_wait, 1);
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    members.add(bus.subscribe(&options).await.unwrap());
    let seq = publish(&bus, &event(Subject::TicketCreated, 1), None).await;

    let (first_member, first) = members.next("the first delivery").await;
    let held_since = Instant::now();
    assert_eq!((first.stream_seq(), first.delivery_count()), (seq, 1));
    let (second_member, second) = members.next("a redelivery after the ack wait").await;
    let waited = held_since.elapsed();
    assert_eq!(
        (second.stream_seq(), second.delivery_count()),
        (seq, 2),
        "member {first_member} held seq {seq} unacked; member {second_member} got this instead"
    );
    assert!(
        waited >= ack_wait.mul_f64(0.9),
        "redelivered after {waited:?}, before the ack wait of {ack_wait:?} ran out"
    );
    second.ack().await.unwrap();
    drop(first);
    settled(backend, &bus, ORDERS).await;
}

/// A nak redelivers: at once with no delay (long before the ack wait), after the delay with
/// one; each redelivery counts.
pub async fn a_nak_redelivers<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let options = options(ORDERS, &TICKET_SUBJECTS, LONG_ACK_WAIT, 4);
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let seq = publish(&bus, &event(Subject::TicketUpdated, 1), None).await;

    let (_, first) = members.next("the first delivery").await;
    assert_eq!((first.stream_seq(), first.delivery_count()), (seq, 1));
    let naked_at = Instant::now();
    first.nak(Duration::ZERO).await.unwrap();
    let (_, second) = members.next("the redelivery after a nak").await;
    assert_eq!((second.stream_seq(), second.delivery_count()), (seq, 2));
    assert!(
        naked_at.elapsed() < LONG_ACK_WAIT,
        "came back by ack wait, not by the nak"
    );

    let naked_at = Instant::now();
    second.nak(NAK_DELAY).await.unwrap();
    let (_, third) = members.next("the redelivery after a delayed nak").await;
    let waited = naked_at.elapsed();
    assert_eq!((third.stream_seq(), third.delivery_count()), (seq, 3));
    assert!(
        waited >= NAK_DELAY.mul_f64(0.9) && waited < LONG_ACK_WAIT,
        "a nak delayed {NAK_DELAY:?} came back after {waited:?}"
    );
    third.ack().await.unwrap();
    settled(backend, &bus, ORDERS).await;
}

/// A payload that does not decode is terminated by the member runtime and dead-lettered with
/// its reason, delivered once and never to the handler, while the events after it flow.
pub async fn a_poison_payload_is_dead_lettered_and_others_flow<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let recorder = Recorder::open();
    let stop = CancellationToken::new();
    let options = options(ORDERS, &TICKET_SUBJECTS, LONG_ACK_WAIT, 4);
    let member = member::join(&bus, &options).await.unwrap();
    let running = tokio::spawn(member.run(Arc::clone(&recorder), stop.clone()));

    let poison: &[u8] = br#"{"id": "5f8d0d55b54764421b7156c9", "version": "one"}"#;
    let poison_seq = match bus
        .publish_raw("ticket:updated", Bytes::from_static(poison), None)
        .await
        .unwrap()
    {
        PublishAck::Stored { seq } => seq,
        PublishAck::Duplicate => panic!("no publish id: cannot be a duplicate"),
    };
    let good: Vec<Event> = (0..3).map(|n| event(Subject::TicketCreated, n)).collect();
    for event in &good {
        publish(&bus, event, None).await;
    }

    eventually("the good events to be handled", async || {
        (recorder.acked() == good.len()).then_some(())
    })
    .await;
    let dead = eventually("the poison payload to be dead-lettered", async || {
        let dead = bus.dead_letters();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead = &dead[0];
    assert_eq!(dead.stream_seq, poison_seq);
    assert_eq!(&*dead.queue_group, ORDERS);
    assert_eq!(dead.subject, "ticket:updated");
    assert_eq!(dead.payload, poison);
    assert!(
        matches!(&dead.reason, DeadLetterReason::Terminated(why) if why.contains("malformed")),
        "{:?}",
        dead.reason
    );
    let mut handled = recorder.events();
    handled.sort_by_key(|event| event.record_id());
    assert_eq!(
        handled, good,
        "the handler sees the good events, and only them"
    );
    settled(backend, &bus, ORDERS).await;

    stop.cancel();
    let report = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the member stops after shutdown")
        .unwrap();
    assert_eq!(
        (report.handled, report.malformed),
        (3, 1),
        "the poison was delivered once: {report:?}"
    );
}

/// A publish whose publish id the broker already stored is dropped, and the event is
/// delivered once.
pub async fn a_duplicate_publish_id_is_delivered_once<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let options = options(ORDERS, &TICKET_SUBJECTS, LONG_ACK_WAIT, 4);
    declare(&bus, &options).await;
    let created = event(Subject::TicketCreated, 1);
    let id = created.publish_id();
    let seq = publish(&bus, &created, Some(&id)).await;
    assert_eq!(
        bus.publish(&created, Some(&id)).await.unwrap(),
        PublishAck::Duplicate
    );
    let updated = event(Subject::TicketUpdated, 1);
    let next_seq = publish(&bus, &updated, Some(&updated.publish_id())).await;
    assert_eq!(
        next_seq,
        seq + 1,
        "the duplicate took no place in the stream"
    );

    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    for expected in [seq, next_seq] {
        let (_, delivery) = members.next("the stored events").await;
        assert_eq!(
            (delivery.stream_seq(), delivery.delivery_count()),
            (expected, 1)
        );
        delivery.ack().await.unwrap();
    }
    settled(backend, &bus, ORDERS).await;
    assert!(members.try_next().is_none(), "the duplicate was delivered");
}

/// A member that crashes before acknowledging loses nothing: what it held comes back (counted
/// as redeliveries) and reaches another member, with what it never got.
pub async fn a_crashed_member_loses_nothing<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let ack_wait = backend.short_ack_wait();
    let mut members = Members::new();
    let crashing = members.add(
        bus.subscribe(&options(ORDERS, &TICKET_SUBJECTS, ack_wait, 3))
            .await
            .unwrap(),
    );
    let published: BTreeSet<u64> = publish_ticket_events(&bus, 5).await.into_iter().collect();
    let mut held = Vec::new();
    for _ in 0..3 {
        let (member, delivery) = members.next("the crashing member's deliveries").await;
        assert_eq!(member, crashing);
        held.push(delivery);
    }
    let held_seqs: BTreeSet<u64> = held.iter().map(|d| d.stream_seq()).collect();
    members.crash(crashing).await;
    drop(held);

    let survivor = members.add(
        bus.subscribe(&options(ORDERS, &TICKET_SUBJECTS, ack_wait, 10))
            .await
            .unwrap(),
    );
    let mut got = BTreeSet::new();
    while got.len() < published.len() {
        let (member, delivery) = members.next("every event at the surviving member").await;
        assert_eq!(member, survivor, "the crashed member got a delivery");
        let seq = delivery.stream_seq();
        if held_seqs.contains(&seq) {
            assert!(
                delivery.delivery_count() >= 2,
                "seq {seq} was delivered before the crash"
            );
        }
        got.insert(seq);
        delivery.ack().await.unwrap();
    }
    assert_eq!(got, published);
    members.settle_all(backend, &bus, ORDERS).await;
}

/// A queue group's first member gets everything the group was kept, in order: events
/// published after the group was declared but before any member joined are replayed.
pub async fn deliver_all_replays_earlier_events<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let options = options(ORDERS, &TICKET_SUBJECTS, LONG_ACK_WAIT, 10);
    declare(&bus, &options).await;
    let published = publish_ticket_events(&bus, 5).await;
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let mut got = Vec::new();
    for _ in &published {
        let (_, delivery) = members.next("the events published before the group").await;
        got.push(delivery.stream_seq());
        delivery.ack().await.unwrap();
    }
    assert_eq!(got, published);
    settled(backend, &bus, ORDERS).await;
}

/// A durable group resumes where it left off: every member (and the process's bus) goes
/// away after acking the first four events; a new process's member gets exactly the rest.
pub async fn a_durable_group_resumes_where_it_left_off<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let ack_wait = backend.short_ack_wait();
    let options = options(ORDERS, &TICKET_SUBJECTS, ack_wait, 2);
    declare(&bus, &options).await;
    let published = publish_ticket_events(&bus, 10).await;
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let mut acked = BTreeSet::new();
    while acked.len() < 4 {
        let (_, delivery) = members.next("the first process's deliveries").await;
        acked.insert(delivery.stream_seq());
        delivery.ack().await.unwrap();
    }
    assert_eq!(acked, published[..4].iter().copied().collect());
    eventually("the broker to apply the four acks", async || {
        (backend.ack_floor(&bus, ORDERS).await >= published[3]).then_some(())
    })
    .await;
    members.shutdown().await;
    let bus = backend.reopen(bus).await;

    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let rest: BTreeSet<u64> = published[4..].iter().copied().collect();
    let mut got = BTreeSet::new();
    while got != rest {
        let (_, delivery) = members.next("the events the first process left").await;
        let seq = delivery.stream_seq();
        assert!(
            !acked.contains(&seq),
            "seq {seq} was acked before the restart"
        );
        got.insert(seq);
        delivery.ack().await.unwrap();
    }
    // What the first process held unacked may come back once more; never what it acked.
    for (seq, _) in members.settle_all(backend, &bus, ORDERS).await {
        assert!(
            rest.contains(&seq),
            "seq {seq} was acked before the restart"
        );
    }
}

/// An event never acknowledged is dead-lettered after `max_deliver` deliveries (two naks,
/// then an ack wait that runs out), and never delivered again; the next event is unaffected.
pub async fn max_deliver_dead_letters_an_event_never_acked<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let options = ListenerOptions {
        max_deliver: 3,
        ..options(ORDERS, &TICKET_SUBJECTS, backend.short_ack_wait(), 4)
    };
    declare(&bus, &options).await;
    let doomed = event(Subject::TicketCreated, 1);
    let doomed_seq = publish(&bus, &doomed, None).await;
    let fine_seq = publish(&bus, &event(Subject::TicketUpdated, 2), None).await;
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());

    let mut doomed_deliveries = Vec::new();
    let mut fine_acked = false;
    while doomed_deliveries.len() < 3 || !fine_acked {
        let (_, delivery) = members.next("three deliveries of the doomed event").await;
        if delivery.stream_seq() == fine_seq {
            delivery.ack().await.unwrap();
            fine_acked = true;
            continue;
        }
        assert_eq!(delivery.stream_seq(), doomed_seq);
        doomed_deliveries.push(delivery.delivery_count());
        if delivery.delivery_count() < 3 {
            delivery.nak(Duration::ZERO).await.unwrap();
        }
        // The third is dropped unsettled: its ack wait runs out.
    }
    assert_eq!(doomed_deliveries, [1, 2, 3]);
    let dead = eventually("the doomed event to be dead-lettered", async || {
        let dead = bus.dead_letters();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].stream_seq, doomed_seq);
    assert_eq!(dead[0].reason, DeadLetterReason::MaxDeliveries(3));
    assert_eq!(dead[0].subject, "ticket:created");
    assert_eq!(dead[0].payload, doomed.encode().unwrap());
    assert_eq!(&*dead[0].queue_group, ORDERS);
    settled(backend, &bus, ORDERS).await;
    if let Some((_, again)) = members.try_next() {
        panic!(
            "seq {} delivered again (delivery {}) after being dead-lettered",
            again.stream_seq(),
            again.delivery_count()
        );
    }
}

/// Backpressure: a member never holds more than `max_in_flight` unacknowledged deliveries;
/// each ack lets exactly one more through.
pub async fn a_member_never_holds_more_than_max_in_flight<B: Backend>(backend: &B) {
    const MAX_IN_FLIGHT: usize = 3;
    let bus = backend.bus().await;
    let options = options(ORDERS, &TICKET_SUBJECTS, LONG_ACK_WAIT, MAX_IN_FLIGHT);
    declare(&bus, &options).await;
    let published = publish_ticket_events(&bus, 10).await;
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());

    let mut held = std::collections::VecDeque::new();
    for _ in 0..MAX_IN_FLIGHT {
        held.push_back(members.next("deliveries up to max_in_flight").await.1);
    }
    if let Some((_, extra)) = members.within_quiet().await {
        panic!(
            "seq {} delivered while {MAX_IN_FLIGHT} were unacked",
            extra.stream_seq()
        );
    }
    let outstanding = backend.outstanding(&bus, ORDERS).await;
    assert_eq!(
        outstanding.unsettled, MAX_IN_FLIGHT as u64,
        "{outstanding:?}"
    );

    let mut acked = BTreeSet::new();
    while let Some(oldest) = held.pop_front() {
        acked.insert(oldest.stream_seq());
        oldest.ack().await.unwrap();
        if acked.len() + held.len() < published.len() {
            held.push_back(members.next("one more delivery per ack").await.1);
        }
        // The broker may apply an ack after it serves the next pull (JetStream's acks are
        // one-way): the count may be high for a moment, never for good.
        outstanding_until(
            backend,
            &bus,
            ORDERS,
            &format!(
                "at most {MAX_IN_FLIGHT} unsettled while the member holds {}",
                held.len()
            ),
            |o| o.unsettled == held.len() as u64,
        )
        .await;
        assert!(
            members.try_next().is_none(),
            "more than one delivery for one ack"
        );
    }
    assert_eq!(acked, published.iter().copied().collect());
    settled(backend, &bus, ORDERS).await;
}

/// Graceful shutdown: the member stops pulling, lets its running handlers finish and ack,
/// and only then returns; nothing acked is lost and nothing it did not take is dropped (a new
/// member gets the events published after the shutdown began).
pub async fn graceful_shutdown_lets_in_flight_handlers_ack<B: Backend>(backend: &B) {
    let bus = backend.bus().await;
    let (open_gate, gate) = watch::channel(false);
    let recorder = Recorder::gated(gate);
    let stop = CancellationToken::new();
    let options = options(ORDERS, &TICKET_SUBJECTS, LONG_ACK_WAIT, 4);
    let member = member::join(&bus, &options).await.unwrap();
    let mut running = tokio::spawn(member.run(Arc::clone(&recorder), stop.clone()));

    let before = publish_ticket_events(&bus, 3).await;
    eventually("three handlers running", async || {
        (recorder.entered() == 3).then_some(())
    })
    .await;
    stop.cancel();
    let after = vec![
        publish(&bus, &event(Subject::TicketCreated, 10), None).await,
        publish(&bus, &event(Subject::TicketCreated, 11), None).await,
    ];
    assert!(
        tokio::time::timeout(QUIET, &mut running).await.is_err(),
        "the member returned while its handlers were still running"
    );
    open_gate.send(true).unwrap();
    let report = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the member returns once its handlers finish")
        .unwrap();
    assert_eq!(
        recorder.acked(),
        3,
        "every running handler acked before the member returned"
    );
    assert_eq!(
        report.handled, 3,
        "nothing was handed out after the shutdown: {report:?}"
    );

    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let mut got = BTreeSet::new();
    while got.len() < after.len() {
        let (_, delivery) = members
            .next("the events published after the shutdown")
            .await;
        assert!(
            !before.contains(&delivery.stream_seq()),
            "seq {} was acked by the stopped member",
            delivery.stream_seq()
        );
        got.insert(delivery.stream_seq());
        delivery.ack().await.unwrap();
    }
    assert_eq!(got, after.into_iter().collect());
    settled(backend, &bus, ORDERS).await;
    assert!(bus.dead_letters().is_empty());
}
