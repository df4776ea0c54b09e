//! What JetStream keeps, against the real server: interest retention (an acknowledged event
//! leaves the server, and the duplicate window still drops a republish of it), a clear refusal
//! of a stream made with another retention, and durable dead letters (kept in the dead-letter
//! stream with their headers, across a restart of the process and of the server, listed and
//! replayed by `ticketing dead-letters`).
//!
//! Each test has a stream of its own (a fresh namespace on `NATS_URL`, or a private
//! `nats-server` on a free port and a temporary store for the restart); skipped, or failed
//! under `REQUIRE_SERVICES=1`, when the server is unreachable.
#![cfg(not(loom))]

mod bus_suite;

use std::process::Command;
use std::time::Duration;

use bus_suite::{Members, ORDERS, TICKET_SUBJECTS};
use bytes::Bytes;
use ticketing::bus::{
    Bus, BusError, DeadLetterReason, Delivery, JetStreamBus, JetStreamConfig, ListenerOptions,
    MessageHandle, PublishAck, Publisher, RawPublisher,
};
use ticketing::events::Subject;
use ticketing::testkit::{NatsServer, fresh_jetstream, unavailable};

/// An acknowledged event leaves the server at once (interest retention: its one group
/// settled it), and publishing it again with the same publish id is still dropped as a
/// duplicate within the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_leave_the_server_and_duplicates_are_still_dropped() {
    let Some((_namespace, bus)) = fresh_jetstream("acknowledged_events_leave_the_server").await
    else {
        return;
    };
    let options = bus_suite::options(ORDERS, &TICKET_SUBJECTS, bus_suite::LONG_ACK_WAIT, 4);
    bus_suite::declare(&bus, &options).await;
    let event = bus_suite::event(Subject::TicketCreated, 1);
    let id = event.publish_id();
    let seq = bus_suite::publish(&bus, &event, Some(&id)).await;
    assert_eq!(
        bus.stream_messages().await.unwrap(),
        1,
        "kept for its group"
    );
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let (_, delivery) = members.next("the event").await;
    assert_eq!(delivery.stream_seq(), seq);
    delivery.ack().await.unwrap();
    bus_suite::eventually("the acknowledged event to leave the server", async || {
        (bus.stream_messages().await.ok()? == 0).then_some(())
    })
    .await;
    assert_eq!(
        bus.publish(&event, Some(&id)).await.unwrap(),
        PublishAck::Duplicate,
        "the duplicate window outlives the message"
    );
    assert_eq!(bus.stream_messages().await.unwrap(), 0);
    members.shutdown().await;
}

/// NATS cannot change the retention of an existing stream: a stream made with limits
/// retention (by an earlier version) is refused at connect, with what to do about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_another_retention_is_refused_with_what_to_do() {
    let Some((namespace, bus)) = fresh_jetstream("a_stream_with_another_retention").await else {
        return;
    };
    let config = namespace.config().clone();
    bus.delete_stream().await.unwrap();
    drop(bus);
    let client = async_nats::connect(config.url.as_str()).await.unwrap();
    let context = async_nats::jetstream::new(client);
    context
        .create_stream(async_nats::jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: Subject::ALL.iter().map(|s| config.subject(*s)).collect(),
            retention: async_nats::jetstream::stream::RetentionPolicy::Limits,
            ..Default::default()
        })
        .await
        .unwrap();
    match JetStreamBus::connect(config.clone()).await {
        Err(BusError::Broker(message)) => {
            for needed in [
                "retention",
                "nats stream rm",
                "--stream-prefix",
                &config.stream,
            ] {
                assert!(
                    message.contains(needed),
                    "{needed:?} missing from: {message}"
                );
            }
        }
        other => panic!("a limits stream was accepted: {other:?}"),
    }
}

/// Runs `ticketing dead-letters ARGS --bus URL --stream-prefix NAME`; its stdout, and
/// whether it succeeded.
fn dead_letters_command(args: &[&str], url: &str, namespace: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .arg("dead-letters")
        .args(args)
        .args(["--bus", url, "--stream-prefix", namespace])
        .output()
        .unwrap_or_else(|error| panic!("run ticketing dead-letters: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.is_empty() {
        eprintln!("ticketing dead-letters {args:?}: {stderr}");
    }
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A terminated event and one that ran out of deliveries go to the dead-letter stream with
/// their payload and headers, and leave the event stream; both survive a restart of the
/// process (a new connection) and of the server (a private one, stopped and started on its
/// store); `ticketing dead-letters list` shows them, `replay` republishes one on its subject
/// and removes it from the list. One story told in order, so one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_survive_restarts_and_replay_republishes_them() {
    const TEST: &str = "dead_letters_survive_restarts_and_replay_republishes_them";
    const NAMESPACE: &str = "POISON";
    let mut server = match NatsServer::start().await {
        Ok(server) => server,
        Err(why) => return unavailable(TEST, "a private nats-server", why),
    };
    let config = JetStreamConfig {
        url: server.url(),
        ..JetStreamConfig::namespaced(NAMESPACE)
    };
    let options = ListenerOptions {
        max_deliver: 2,
        ..bus_suite::options(ORDERS, &TICKET_SUBJECTS, Duration::from_secs(1), 4)
    };
    let bus = JetStreamBus::connect(config.clone()).await.unwrap();
    bus_suite::declare(&bus, &options).await;
    let poison = Bytes::from_static(br#"{"not": "an event"}"#);
    let PublishAck::Stored { seq: poison_seq } = bus
        .publish_raw("ticket:updated", poison.clone(), None)
        .await
        .unwrap()
    else {
        panic!("no publish id: cannot be a duplicate");
    };
    let doomed = bus_suite::event(Subject::TicketCreated, 7);
    let doomed_seq = bus_suite::publish(&bus, &doomed, None).await;

    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let mut doomed_deliveries = 0;
    while doomed_deliveries < 2 {
        let (_, delivery) = members.next("the poison, and the doomed event twice").await;
        if delivery.stream_seq() == poison_seq {
            delivery.term("malformed payload (test)").await.unwrap();
        } else {
            doomed_deliveries += 1;
            delivery.nak(Duration::ZERO).await.unwrap();
        }
    }
    let kept = bus_suite::eventually("both dead letters in the dead-letter stream", async || {
        let kept = bus.durable_dead_letters().await.ok()?;
        (kept.len() == 2).then_some(kept)
    })
    .await;
    let poisoned = kept
        .iter()
        .find(|k| k.letter.stream_seq == poison_seq)
        .unwrap();
    assert_eq!(poisoned.letter.subject, "ticket:updated");
    assert_eq!(poisoned.letter.payload, poison.to_vec());
    assert_eq!(poisoned.deliveries, 1);
    assert_eq!(&*poisoned.letter.queue_group, ORDERS);
    assert_eq!(
        poisoned.letter.reason,
        DeadLetterReason::Terminated("malformed payload (test)".into())
    );
    assert!(
        time::OffsetDateTime::parse(
            &poisoned.dead_at,
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "dead_at {:?} is not RFC 3339",
        poisoned.dead_at
    );
    let ran_out = kept
        .iter()
        .find(|k| k.letter.stream_seq == doomed_seq)
        .unwrap();
    assert_eq!(ran_out.letter.reason, DeadLetterReason::MaxDeliveries(2));
    assert_eq!(ran_out.deliveries, 2);
    assert_eq!(ran_out.letter.payload, doomed.encode().unwrap());
    bus_suite::eventually("dead letters to leave the event stream", async || {
        (bus.stream_messages().await.ok()? == 0).then_some(())
    })
    .await;
    members.shutdown().await;
    drop(bus);

    server.restart().await.unwrap();
    let url = server.url();
    let (listed, lines) = dead_letters_command(&["list"], &url, NAMESPACE);
    assert!(listed, "list failed");
    assert_eq!(
        lines,
        format!(
            "ticket:updated {poison_seq} 1 terminated: malformed payload (test)\n\
             ticket:created {doomed_seq} 2 max deliveries\n"
        )
    );

    let (replayed, said) =
        dead_letters_command(&["replay", &doomed_seq.to_string()], &url, NAMESPACE);
    assert!(replayed, "replay failed: {said}");
    let (_, lines) = dead_letters_command(&["list"], &url, NAMESPACE);
    assert_eq!(
        lines,
        format!("ticket:updated {poison_seq} 1 terminated: malformed payload (test)\n"),
        "the replayed dead letter left the list"
    );
    let (missing, _) = dead_letters_command(&["replay", "999"], &url, NAMESPACE);
    assert!(
        !missing,
        "replaying a sequence with no dead letter must fail"
    );

    let bus = JetStreamBus::connect(config.clone()).await.unwrap();
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let (_, again) = members.next("the replayed event").await;
    assert!(again.stream_seq() > doomed_seq, "a new message");
    assert_eq!(again.subject(), "ticket:created");
    assert_eq!(again.payload(), &doomed.encode().unwrap()[..]);
    again.ack().await.unwrap();
    members.shutdown().await;
    bus.delete_stream().await.unwrap();
}

/// A dead letter keeps its payload even when the message left the stream between the
/// server's max-deliveries advisory and the bus's fetch of it (interest retention drops it
/// once the group's ack floor moves past it): the member's last attempt kept a copy. The
/// server sends no advisory for a message already gone, so the test removes the message and
/// then publishes the advisory the server would have sent a moment earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_its_payload_after_the_message_left_the_stream() {
    let Some((namespace, bus)) = fresh_jetstream("a_dead_letter_keeps_its_payload").await else {
        return;
    };
    let options = ListenerOptions {
        max_deliver: 1,
        ..bus_suite::options(ORDERS, &TICKET_SUBJECTS, bus_suite::LONG_ACK_WAIT, 4)
    };
    bus_suite::declare(&bus, &options).await;
    let doomed = bus_suite::event(Subject::TicketUpdated, 3);
    let seq = bus_suite::publish(&bus, &doomed, None).await;
    let mut members = Members::new();
    members.add(bus.subscribe(&options).await.unwrap());
    let (_, delivery) = members.next("the one allowed delivery").await;
    assert_eq!((delivery.stream_seq(), delivery.delivery_count()), (seq, 1));

    let config = namespace.config();
    let client = async_nats::connect(config.url.as_str()).await.unwrap();
    let stream = async_nats::jetstream::new(client.clone())
        .get_stream(&config.stream)
        .await
        .unwrap();
    assert!(
        stream.delete_message(seq).await.unwrap(),
        "the message was in the stream"
    );
    let advisory = serde_json::json!({"consumer": ORDERS, "stream_seq": seq, "deliveries": 1});
    client
        .publish(
            format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{ORDERS}",
                config.stream
            ),
            advisory.to_string().into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();

    let dead = bus_suite::eventually("the dead letter", async || {
        bus.dead_letters().into_iter().find(|d| d.stream_seq == seq)
    })
    .await;
    assert_eq!(dead.reason, DeadLetterReason::MaxDeliveries(1));
    assert_eq!(dead.subject, "ticket:updated");
    assert_eq!(dead.payload, doomed.encode().unwrap());
    drop(delivery);
    members.shutdown().await;
}
