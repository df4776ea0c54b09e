//! Bus throughput: publish -> handle -> ack, events/s, with 1 and 2 members of one queue group.
//!
//! - `bus_embedded`: `EmbeddedBus` driven as the services drive it (`Publisher::publish` with
//!   the event's publish id, members running the member runtime, whose handler acks);
//!   yardstick: a tokio `mpsc(1024)` hand-off per member (round robin) carrying the same
//!   payloads, encoded by the producer and decoded by the consumer as the bus's members do.
//!   Two diagnostics (no goal) split the gap: `EmbeddedBus-no-publish-id` publishes without
//!   publish ids (no duplicate window), and `EmbeddedBus-subscription` has each member pull,
//!   decode and ack on its `Subscription` directly, without the member runtime (no task per
//!   delivery).
//! - `bus_jetstream`: `JetStreamBus` (`publish_many`, its sliding window of 256 acks in flight,
//!   with publish ids; members running the member runtime); yardstick: raw async-nats publishes
//!   with a sliding window of 256 acks in flight (the same `Nats-Msg-Id`s) and one pull
//!   consumer task per member acking each message, on the same server, on a stream made with
//!   the same settings. A fresh stream per run (one per benchmark), purged between samples,
//!   and a fresh durable consumer per sample with the settings the bus gives its groups.
//!   A diagnostic (no goal), `JetStreamBus-in-flight-256`, gives each member `max_in_flight`
//!   256 (pull batches as large as the yardstick's) instead of the services' 64.
//!
//! Each sample subscribes its members first (untimed), then times from the first publish to
//! the last ack, so publishing and consuming overlap as they do in the services.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use benches::workload::ticket_updates;
use ticketing::bus::{
    Bus, EmbeddedBus, JetStreamBus, JetStreamConfig, ListenerOptions, MessageHandle, Publisher,
};
use ticketing::events::{Event, Subject};
use ticketing::services::listener::Listener;
use ticketing::services::member;
use ticketing::services::{ListenerError, Outcome};
use ticketing::testkit;

/// Counts acknowledged events and wakes the benchmark when the expected number is reached.
#[derive(Default)]
struct AckCounter {
    acked: AtomicU64,
    target: AtomicU64,
    done: Notify,
}

impl AckCounter {
    fn expect(&self, events: u64) {
        self.acked.store(0, Ordering::SeqCst);
        self.target.store(events, Ordering::SeqCst);
    }

    fn count(&self) {
        let acked = self.acked.fetch_add(1, Ordering::AcqRel) + 1;
        if acked == self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }

    /// Waits until every expected event is acknowledged; fails loudly after `limit`.
    async fn all_acked(&self, limit: Duration) {
        let waited = tokio::time::timeout(limit, async {
            while self.acked.load(Ordering::Acquire) < self.target.load(Ordering::Acquire) {
                self.done.notified().await;
            }
        })
        .await;
        if waited.is_err() {
            panic!(
                "only {} of {} events acknowledged within {limit:?}",
                self.acked.load(Ordering::Acquire),
                self.target.load(Ordering::Acquire)
            );
        }
    }
}

/// The "handle" of publish -> handle -> ack: the event is decoded by the runtime; the listener
/// looks at it and acknowledges. Its queue group and subjects are nominal: each benchmark
/// joins the group its [`ListenerOptions`] name.
impl Listener for AckCounter {
    const QUEUE_GROUP: &'static str = "bench";
    const SUBJECTS: &'static [Subject] = &[Subject::TicketUpdated];

    async fn handle<M: MessageHandle>(
        &self,
        event: &Event,
        message: &M,
    ) -> Result<Outcome, ListenerError> {
        std::hint::black_box(event);
        if let Err(error) = message.ack().await {
            panic!("ack failed: {error}");
        }
        self.count();
        Ok(Outcome::Applied)
    }
}

/// The services' `max_in_flight` (`ListenerOptions::new`'s default).
const IN_FLIGHT: usize = 64;

/// How long one sample may take before the benchmark calls it stuck.
const SAMPLE_LIMIT: Duration = Duration::from_secs(120);

fn options(queue_group: &str) -> ListenerOptions {
    ListenerOptions::new(queue_group, &[Subject::TicketUpdated])
}

/// Joins `members` members (untimed), runs them, publishes with `publish`, and returns the
/// time from the first publish to the last ack.
async fn through_bus<B, P, Fut>(
    bus: &B,
    queue_group: &str,
    (members, max_in_flight): (usize, usize),
    events: u64,
    publish: P,
) -> Duration
where
    B: Bus,
    P: FnOnce(Vec<(Event, String)>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let counter = Arc::new(AckCounter::default());
    counter.expect(events);
    let options = ListenerOptions {
        max_in_flight,
        ..options(queue_group)
    };
    let stop = CancellationToken::new();
    let mut running = Vec::with_capacity(members);
    for _ in 0..members {
        let member = member::join(bus, &options)
            .await
            .unwrap_or_else(|e| panic!("join: {e}"));
        running.push(tokio::spawn(member.run(Arc::clone(&counter), stop.clone())));
    }
    let batch = ticket_updates(events as usize);
    let started = Instant::now();
    publish(batch).await;
    counter.all_acked(SAMPLE_LIMIT).await;
    let elapsed = started.elapsed();
    stop.cancel();
    for member in running {
        let _ = member.await;
    }
    elapsed
}

/// The diagnostic without the member runtime: each member pulls from its subscription,
/// decodes and acks in one loop, as the runtime does minus its task per delivery.
async fn through_subscriptions(members: usize, events: u64) -> Duration {
    use ticketing::bus::{Delivery, Subscription};
    let bus = EmbeddedBus::new();
    let counter = Arc::new(AckCounter::default());
    counter.expect(events);
    let mut consumers = Vec::with_capacity(members);
    for _ in 0..members {
        let mut subscription = bus
            .subscribe(&options("bench"))
            .await
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        let counter = Arc::clone(&counter);
        consumers.push(tokio::spawn(async move {
            while let Some(Ok(delivery)) = subscription.next().await {
                let event = Event::decode(delivery.subject(), delivery.payload())
                    .unwrap_or_else(|e| panic!("decode: {e}"));
                std::hint::black_box(&event);
                delivery.ack().await.unwrap_or_else(|e| panic!("ack: {e}"));
                counter.count();
            }
        }));
    }
    let batch = ticket_updates(events as usize);
    let started = Instant::now();
    for (event, id) in &batch {
        if let Err(error) = bus.publish(event, Some(id)).await {
            panic!("publish: {error}");
        }
    }
    counter.all_acked(SAMPLE_LIMIT).await;
    let elapsed = started.elapsed();
    for consumer in consumers {
        consumer.abort();
    }
    elapsed
}

/// The mpsc yardstick: one channel of 1024 per member, events dealt round robin.
async fn through_mpsc(members: usize, events: u64) -> Duration {
    let counter = Arc::new(AckCounter::default());
    counter.expect(events);
    let mut senders = Vec::with_capacity(members);
    let mut consumers = Vec::with_capacity(members);
    for _ in 0..members {
        let (sender, mut receiver) = mpsc::channel::<(Subject, Bytes)>(1024);
        senders.push(sender);
        let counter = Arc::clone(&counter);
        consumers.push(tokio::spawn(async move {
            while let Some((subject, payload)) = receiver.recv().await {
                match Event::decode(subject.as_str(), &payload) {
                    Ok(event) => {
                        std::hint::black_box(&event);
                        counter.count();
                    }
                    Err(error) => panic!("decode: {error}"),
                }
            }
        }));
    }
    let batch = ticket_updates(events as usize);
    let started = Instant::now();
    for (n, (event, _)) in batch.iter().enumerate() {
        let payload = Bytes::from(event.encode().unwrap_or_else(|e| panic!("encode: {e}")));
        if senders[n % members]
            .send((event.subject(), payload))
            .await
            .is_err()
        {
            panic!("a consumer is gone");
        }
    }
    counter.all_acked(SAMPLE_LIMIT).await;
    let elapsed = started.elapsed();
    drop(senders);
    for consumer in consumers {
        let _ = consumer.await;
    }
    elapsed
}

fn embedded(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("bus_embedded");
    common::configure(
        &mut group,
        20,
        Duration::from_millis(500),
        Duration::from_secs(3),
    );
    group.throughput(Throughput::Elements(1));
    for members in [1, 2] {
        group.bench_with_input(
            BenchmarkId::new("EmbeddedBus", members),
            &members,
            |b, &m| {
                b.iter_custom(|events| {
                    runtime.block_on(async {
                        let bus = EmbeddedBus::new();
                        let publisher = &bus;
                        through_bus(&bus, "bench", (m, IN_FLIGHT), events, |batch| async move {
                            for (event, id) in &batch {
                                if let Err(error) = publisher.publish(event, Some(id)).await {
                                    panic!("publish: {error}");
                                }
                            }
                        })
                        .await
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("EmbeddedBus-no-publish-id", members),
            &members,
            |b, &m| {
                b.iter_custom(|events| {
                    runtime.block_on(async {
                        let bus = EmbeddedBus::new();
                        let publisher = &bus;
                        through_bus(&bus, "bench", (m, IN_FLIGHT), events, |batch| async move {
                            for (event, _) in &batch {
                                if let Err(error) = publisher.publish(event, None).await {
                                    panic!("publish: {error}");
                                }
                            }
                        })
                        .await
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("EmbeddedBus-subscription", members),
            &members,
            |b, &m| b.iter_custom(|events| runtime.block_on(through_subscriptions(m, events))),
        );
        group.bench_with_input(BenchmarkId::new("mpsc", members), &members, |b, &m| {
            b.iter_custom(|events| runtime.block_on(through_mpsc(m, events)));
        });
    }
    group.finish();
}

// ----- JetStream -----

/// Publish acks in flight (the bus keeps as many: `PUBLISH_WINDOW`), and the diagnostic's pull
/// batch.
const WINDOW: usize = 256;

/// Empties the stream and removes the previous sample's consumer, so each sample's new
/// durable consumer starts at the sample's first event.
async fn reset(context: &jetstream::Context, config: &JetStreamConfig, old_consumer: &str) {
    let stream = context
        .get_stream(&config.stream)
        .await
        .unwrap_or_else(|e| panic!("stream: {e}"));
    let _ = stream.delete_consumer(old_consumer).await;
    stream
        .purge()
        .await
        .unwrap_or_else(|e| panic!("purge: {e}"));
}

/// The raw yardstick: the consumer the bus would make for a group (same settings), one pull
/// task per member acking each message, publishes with a sliding window of acks. One function
/// on purpose: the yardstick is meant to be read in one piece, as the fastest plain async-nats
/// a reader would write, so splitting it would hide what the bus is compared with.
async fn through_raw_nats(
    context: &jetstream::Context,
    config: &JetStreamConfig,
    queue_group: &str,
    members: usize,
    events: u64,
) -> Duration {
    let subject = config.subject(Subject::TicketUpdated);
    let defaults = options(queue_group);
    let stream = context
        .get_stream(&config.stream)
        .await
        .unwrap_or_else(|e| panic!("stream: {e}"));
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            queue_group,
            pull::Config {
                durable_name: Some(queue_group.to_owned()),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: defaults.ack_wait,
                max_deliver: i64::from(defaults.max_deliver),
                filter_subject: subject.clone(),
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                max_ack_pending: config.max_ack_pending,
                max_waiting: 512,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let counter = Arc::new(AckCounter::default());
    counter.expect(events);
    let stop = CancellationToken::new();
    let mut pullers = Vec::with_capacity(members);
    for _ in 0..members {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(WINDOW)
            .expires(config.pull_expires)
            .messages()
            .await
            .unwrap_or_else(|e| panic!("pull: {e}"));
        let (counter, stop) = (Arc::clone(&counter), stop.clone());
        pullers.push(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        let event = Event::decode(
                            &message.subject[message.subject.len() - "ticket:updated".len()..],
                            &message.payload,
                        )
                        .unwrap_or_else(|e| panic!("decode: {e}"));
                        std::hint::black_box(&event);
                        message.ack().await.unwrap_or_else(|e| panic!("ack: {e}"));
                        counter.count();
                    }
                    Some(Err(error)) => panic!("pull: {error}"),
                    None => return,
                }
            }
        }));
    }
    let batch = ticket_updates(events as usize);
    let started = Instant::now();
    let mut acks = VecDeque::with_capacity(WINDOW);
    for (event, id) in &batch {
        if acks.len() == WINDOW
            && let Some(ack) = acks.pop_front()
        {
            wait_ack(ack).await;
        }
        let payload = Bytes::from(event.encode().unwrap_or_else(|e| panic!("encode: {e}")));
        let ack = context
            .send_publish(
                subject.clone(),
                PublishMessage::build().payload(payload).message_id(id),
            )
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
        acks.push_back(ack);
    }
    for ack in acks {
        wait_ack(ack).await;
    }
    counter.all_acked(SAMPLE_LIMIT).await;
    let elapsed = started.elapsed();
    stop.cancel();
    for puller in pullers {
        let _ = puller.await;
    }
    elapsed
}

async fn wait_ack(ack: jetstream::context::PublishAckFuture) {
    match ack.await {
        Ok(ack) if !ack.duplicate => {}
        Ok(_) => panic!("a fresh publish id was taken for a duplicate"),
        Err(error) => panic!("publish ack: {error}"),
    }
}

fn jetstream_bus(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("bus_jetstream");
    common::configure(
        &mut group,
        10,
        Duration::from_secs(1),
        Duration::from_secs(4),
    );
    group.throughput(Throughput::Elements(1));
    for members in [1, 2] {
        let Some((ours, bus)) =
            runtime.block_on(testkit::fresh_jetstream(&format!("bench_bus_{members}")))
        else {
            return;
        };
        let Some((theirs, raw_setup)) =
            runtime.block_on(testkit::fresh_jetstream(&format!("bench_raw_{members}")))
        else {
            return;
        };
        // The raw side only needed the stream the bus made with its settings.
        drop(raw_setup);
        let context = runtime.block_on(async {
            let client = async_nats::connect(ours.config().url.as_str())
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            jetstream::new(client)
        });
        let mut sample = 0u64;
        for (name, in_flight) in [
            ("JetStreamBus", IN_FLIGHT),
            ("JetStreamBus-in-flight-256", WINDOW),
        ] {
            group.bench_with_input(BenchmarkId::new(name, members), &members, |b, &m| {
                b.iter_custom(|events| {
                    runtime.block_on(async {
                        sample += 1;
                        reset(&context, ours.config(), &format!("bench-{}", sample - 1)).await;
                        let group = format!("bench-{sample}");
                        let publisher = &bus;
                        through_bus(&bus, &group, (m, in_flight), events, |batch| async move {
                            publish_windowed(publisher, &batch).await;
                        })
                        .await
                    })
                });
            });
        }
        group.bench_with_input(
            BenchmarkId::new("async-nats", members),
            &members,
            |b, &m| {
                b.iter_custom(|events| {
                    runtime.block_on(async {
                        sample += 1;
                        reset(&context, theirs.config(), &format!("raw-{}", sample - 1)).await;
                        let group = format!("raw-{sample}");
                        through_raw_nats(&context, theirs.config(), &group, m, events).await
                    })
                });
            },
        );
        drop(bus);
        drop((ours, theirs));
    }
    group.finish();
}

/// Publishes through the bus's pipelined path, `publish_many` with its publish ids: a sliding
/// window of [`ticketing::bus::jetstream::PUBLISH_WINDOW`] acks in flight, as the yardstick's.
async fn publish_windowed(bus: &JetStreamBus, batch: &[(Event, String)]) {
    let acks = bus
        .publish_many(batch.iter().map(|(event, id)| (event, Some(id.as_str()))))
        .await;
    for ack in acks {
        if let Err(error) = ack {
            panic!("publish: {error}");
        }
    }
}

criterion_group!(benches, embedded, jetstream_bus);
criterion_main!(benches);
