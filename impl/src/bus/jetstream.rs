//! `JetStreamBus`: the bus contract on NATS JetStream (async-nats).
//!
//! # The mapping
//!
//! - **Stream**: one stream, [`JetStreamConfig::stream`] (default `TICKETING`), over exactly the
//!   four subjects, each [`JetStreamConfig::subject_prefix`] + the subject name (default prefix
//!   empty: `ticket:created`, `ticket:updated`, `order:created`, `order:cancelled`). Limits
//!   retention (every queue group reads the whole stream), file storage, no age/size/count
//!   limit, discard old, one replica, duplicate window [`JetStreamConfig::duplicate_window`]
//!   (2 minutes). Created if missing; an existing stream must have exactly these subjects.
//! - **Consumers**: one durable pull consumer per queue group, durable name = the queue group
//!   name, shared by all its members: `AckPolicy::Explicit`, `DeliverPolicy::All`,
//!   `ReplayPolicy::Instant`, `ack_wait` and `max_deliver` from [`ListenerOptions`],
//!   `max_ack_pending` [`JetStreamConfig::max_ack_pending`] (for the whole group; each member
//!   bounds itself by `max_in_flight`), `max_waiting` 512, no inactivity threshold, no backoff
//!   list (a nak names its own delay). Created by the first member if missing; an existing one
//!   is used as it is (a durable consumer keeps its settings; a mismatch is logged).
//! - **Filters**: a group listening on one subject gets `filter_subject`. A group on several
//!   subjects gets `filter_subjects` when the server is 2.10 or later; on older servers (2.9
//!   has no multi-subject filter) its consumer has no filter, and the subscription acknowledges
//!   and skips messages on subjects the group does not listen to, never handing them to the
//!   listener. The subscription applies the group's subject set in every case.
//! - **Publishing**: `Nats-Msg-Id` = the publish id when one is given; the stream's reply says
//!   whether it was a duplicate. [`JetStreamBus::publish_many`] keeps every ack in flight.
//! - **Members** pull in batches: a member asks for as many messages as it has free capacity
//!   (`max_in_flight` minus the deliveries it holds unsettled, at most
//!   [`JetStreamConfig::max_batch`]), each pull request expiring after
//!   [`JetStreamConfig::pull_expires`] (2 s): after a server restart a member pulls again
//!   within `pull_expires` + 1 s. A member that leaves reads its last request to its end
//!   before naking what it never took, so nothing is handed back into a request no one reads.
//!   Unsettled deliveries of a member that crashes come back after `ack_wait`.
//! - **Dead letters**: a term (`AckKind::Term`) is recorded by the member that sent it, with its
//!   reason; a message that ran out of deliveries is recorded from the server's advisory
//!   `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`, its payload fetched by
//!   stream sequence. Records are kept in this process ([`Bus::dead_letters`]).
//!
//! The invariant: no await on the server is unbounded. Connecting, API requests and publish
//! acks have timeouts; pull requests expire; a member's `next` waits on its own channel, which
//! the pull task feeds or closes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, ReplayPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    Bus, BusError, DeadLetter, DeadLetterReason, Delivery, ListenerOptions, MessageHandle,
    PublishAck, Publisher, QueueGroup, RawPublisher, Subscription,
};
use crate::events::{Event, Subject};
use crate::sync::Mutex;

/// The server used when `NATS_URL` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Where the stream lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStorage {
    /// On disk (survives a server restart).
    File,
    /// In memory.
    Memory,
}

/// How a [`JetStreamBus`] connects and what it creates. Every server-side setting is passed
/// explicitly; nothing is left to NATS's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// The server, `nats://host:port`.
    pub url: String,
    /// The stream's name (`TICKETING`).
    pub stream: String,
    /// Prepended to each subject name (empty: the subjects are exactly `ticket:created`, ...).
    /// Use `name.` to share a server between deployments or tests.
    pub subject_prefix: String,
    /// The stream's storage.
    pub storage: StreamStorage,
    /// How long the stream remembers publish ids (NATS's own default would be 2 minutes too;
    /// here it is stated).
    pub duplicate_window: Duration,
    /// Unacknowledged deliveries a queue group's consumer allows in total.
    pub max_ack_pending: i64,
    /// Bound on connecting at start (TCP, handshake, and the JetStream check).
    pub connect_timeout: Duration,
    /// Bound on every JetStream API request and publish ack.
    pub request_timeout: Duration,
    /// How long one pull request waits on the server for messages. A member that leaves
    /// waits for its last request to end (at most this long, plus a second) before handing
    /// back what it did not take, so nothing is handed back into a request no one reads.
    pub pull_expires: Duration,
    /// Most messages asked for in one pull request.
    pub max_batch: usize,
}

impl Default for JetStreamConfig {
    /// `nats://127.0.0.1:4222`, stream `TICKETING` over the bare subject names, file storage,
    /// 2-minute duplicate window, 1024 unacknowledged per group, 2 s connect timeout, 5 s
    /// request timeout, 2 s pull expiry, batches of up to 256.
    fn default() -> Self {
        Self {
            url: DEFAULT_NATS_URL.to_owned(),
            stream: "TICKETING".to_owned(),
            subject_prefix: String::new(),
            storage: StreamStorage::File,
            duplicate_window: Duration::from_secs(120),
            max_ack_pending: 1024,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            pull_expires: Duration::from_secs(2),
            max_batch: 256,
        }
    }
}

impl JetStreamConfig {
    /// The defaults, with the server from `NATS_URL` if set.
    pub fn from_env() -> Self {
        Self {
            url: std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned()),
            ..Self::default()
        }
    }

    /// [`Self::from_env`] in a namespace of its own: stream `name`, subjects `name.ticket:created`
    /// and so on. `name` must be a valid stream name (letters, digits, `-`, `_`).
    pub fn namespaced(name: &str) -> Self {
        Self {
            stream: name.to_owned(),
            subject_prefix: format!("{name}."),
            ..Self::from_env()
        }
    }

    /// The NATS subject `subject` is published on.
    pub fn subject(&self, subject: Subject) -> String {
        format!("{}{}", self.subject_prefix, subject.as_str())
    }
}

/// A queue group's consumer, as the server reports it (for tests and operators).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerState {
    /// Messages not yet delivered to the group.
    pub num_pending: u64,
    /// Delivered and not yet acknowledged (nor terminated, nor out of deliveries).
    pub num_ack_pending: usize,
    /// Messages delivered more than once.
    pub num_redelivered: usize,
    /// The stream sequence below which every message is acknowledged (or skipped).
    pub ack_floor_stream_seq: u64,
}

/// The event bus on NATS JetStream; clones share one connection.
#[derive(Clone)]
pub struct JetStreamBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamBus")
            .field("url", &self.inner.config.url)
            .field("stream", &self.inner.config.stream)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: JetStreamConfig,
    client: async_nats::Client,
    context: jetstream::Context,
    stream: jetstream::stream::Stream,
    /// Whether the server has `filter_subjects` (2.10 and later).
    multi_filter: bool,
    dead_letters: Arc<Mutex<Vec<DeadLetter>>>,
    /// Bumped on every (re)connect.
    epoch: watch::Receiver<u64>,
    /// Stops the advisory task when the last clone goes.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES` (the fields we use).
#[derive(Debug, Deserialize)]
struct MaxDeliveriesAdvisory {
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

fn broker(error: impl std::fmt::Display) -> BusError {
    BusError::Broker(error.to_string())
}

/// Reconnect quickly at first, then every 2 s at most, for ever (a service outlives a broker
/// restart; every request made meanwhile still has its own timeout).
fn reconnect_delay(attempts: usize) -> Duration {
    let exponent = u32::try_from(attempts.min(6)).unwrap_or(6);
    Duration::from_millis(25u64 << exponent).min(Duration::from_secs(2))
}

/// `(major, minor)` of a version string such as `2.9.10`.
fn version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl JetStreamBus {
    /// Connects to `config.url`, creates the stream if it is missing, and starts recording
    /// max-deliveries advisories. Fails with [`BusError::Unreachable`] within
    /// `config.connect_timeout` (plus a request timeout for the JetStream check) if the server or
    /// its JetStream cannot be reached.
    pub async fn connect(config: JetStreamConfig) -> Result<Self, BusError> {
        let unreachable = |message: String| BusError::Unreachable {
            url: config.url.clone(),
            message,
        };
        let (epoch_tx, epoch) = watch::channel(0u64);
        let epoch_tx = Arc::new(epoch_tx);
        let options = async_nats::ConnectOptions::new()
            .name("ticketing")
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.request_timeout))
            .ping_interval(Duration::from_secs(10))
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let epoch_tx = Arc::clone(&epoch_tx);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            epoch_tx.send_modify(|epoch| *epoch += 1);
                            tracing::info!("NATS connected");
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS disconnected; reconnecting");
                        }
                        other => tracing::debug!("NATS event: {other}"),
                    }
                }
            });
        let client = tokio::time::timeout(
            config.connect_timeout + Duration::from_millis(500),
            options.connect(config.url.as_str()),
        )
        .await
        .map_err(|_| unreachable(format!("no connection within {:?}", config.connect_timeout)))?
        .map_err(|error| unreachable(error.to_string()))?;
        let multi_filter = version(&client.server_info().version).is_some_and(|v| v >= (2, 10));
        let context = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .max_ack_inflight(4096)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let stream = ensure_stream(&context, &config)
            .await
            .map_err(|error| match error {
                StreamSetup::Unreachable(message) => unreachable(message),
                StreamSetup::Other(error) => error,
            })?;

        let dead_letters = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let advisories = client
            .subscribe(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
                config.stream
            ))
            .await
            .map_err(broker)?;
        // The subscription must be registered before any delivery can run out.
        client.flush().await.map_err(broker)?;
        tokio::spawn(record_max_deliveries(
            advisories,
            stream.clone(),
            config.clone(),
            Arc::clone(&dead_letters),
            stop.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                client,
                context,
                stream,
                multi_filter,
                dead_letters,
                epoch,
                stop,
            }),
        })
    }

    /// The configuration this bus was connected with.
    pub fn config(&self) -> &JetStreamConfig {
        &self.inner.config
    }

    /// The server's version, as it announced itself.
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }

    /// Whether queue groups on several subjects get a server-side filter (`filter_subjects`,
    /// servers 2.10 and later) rather than the subscription's ack-and-skip.
    pub fn uses_multi_subject_filters(&self) -> bool {
        self.inner.multi_filter
    }

    /// Waits (at most the request timeout) until everything this process sent so far, acks
    /// included, has reached the server. Acks are one-way messages; a process about to exit
    /// flushes so that the acks it sent are not lost with its connection.
    pub async fn flush(&self) -> Result<(), BusError> {
        flush(&self.inner.client, self.inner.config.request_timeout).await
    }

    /// The queue group's consumer, as the server reports it now.
    pub async fn consumer_state(&self, queue_group: &str) -> Result<ConsumerState, BusError> {
        let info = self
            .inner
            .stream
            .consumer_info(queue_group)
            .await
            .map_err(broker)?;
        Ok(ConsumerState {
            num_pending: info.num_pending,
            num_ack_pending: info.num_ack_pending,
            num_redelivered: info.num_redelivered,
            ack_floor_stream_seq: info.ack_floor.stream_sequence,
        })
    }

    /// Deletes the stream, its messages and its consumers (tests clean up with it).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.inner
            .context
            .delete_stream(&self.inner.config.stream)
            .await
            .map(|_| ())
            .map_err(broker)
    }

    /// Publishes several events and only then waits for their acks, so the server's replies
    /// overlap (one round trip for the lot rather than one each). Results in input order.
    pub async fn publish_many<'a>(
        &self,
        events: impl IntoIterator<Item = (&'a Event, Option<&'a str>)>,
    ) -> Vec<Result<PublishAck, BusError>> {
        let mut pending = Vec::new();
        for (event, publish_id) in events {
            let sent = match event.encode() {
                Ok(payload) => {
                    self.send(event.subject().as_str(), Bytes::from(payload), publish_id)
                        .await
                }
                Err(error) => Err(BusError::from(error)),
            };
            pending.push(sent);
        }
        let mut acks = Vec::with_capacity(pending.len());
        for sent in pending {
            acks.push(match sent {
                Ok(ack) => stored(ack.await),
                Err(error) => Err(error),
            });
        }
        acks
    }

    async fn send(
        &self,
        subject: &str,
        payload: Bytes,
        publish_id: Option<&str>,
    ) -> Result<jetstream::context::PublishAckFuture, BusError> {
        let mut publish = PublishMessage::build().payload(payload);
        if let Some(id) = publish_id {
            publish = publish.message_id(id);
        }
        let subject = format!("{}{subject}", self.inner.config.subject_prefix);
        self.inner
            .context
            .send_publish(subject, publish)
            .await
            .map_err(broker)
    }

    async fn publish_bytes(
        &self,
        subject: &str,
        payload: Bytes,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        let ack = self.send(subject, payload, publish_id).await?;
        stored(ack.await)
    }

    /// The group's durable consumer, created if missing.
    async fn consumer(&self, options: &ListenerOptions) -> Result<PullConsumer, BusError> {
        let name: &str = &options.queue_group;
        if name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(BusError::InvalidOptions(format!(
                "queue group {name:?} is not a valid durable consumer name"
            )));
        }
        let config = &self.inner.config;
        let subjects: Vec<String> = options
            .subjects
            .iter()
            .map(|s| config.subject(*s))
            .collect();
        let (filter_subject, filter_subjects) = match subjects.as_slice() {
            [one] => (one.clone(), Vec::new()),
            several if self.inner.multi_filter => (String::new(), several.to_vec()),
            _ => (String::new(), Vec::new()),
        };
        let wanted = pull::Config {
            durable_name: Some(name.to_owned()),
            description: Some(format!("ticketing queue group {name}")),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            max_deliver: i64::from(options.max_deliver),
            filter_subject,
            filter_subjects,
            replay_policy: ReplayPolicy::Instant,
            max_ack_pending: config.max_ack_pending,
            max_waiting: 512,
            inactive_threshold: Duration::ZERO,
            memory_storage: false,
            headers_only: false,
            backoff: Vec::new(),
            ..Default::default()
        };
        let consumer: PullConsumer = self
            .inner
            .stream
            .get_or_create_consumer(name, wanted.clone())
            .await
            .map_err(|error| broker(format!("consumer {name}: {error}")))?;
        let found = &consumer.cached_info().config;
        if found.ack_wait != wanted.ack_wait
            || found.max_deliver != wanted.max_deliver
            || found.filter_subject != wanted.filter_subject
            || found.filter_subjects != wanted.filter_subjects
        {
            tracing::warn!(
                queue_group = name,
                "the durable consumer exists with other settings (ack_wait {:?}, max_deliver {}, \
                 filter {:?}{:?}); it keeps them: delete it to apply ack_wait {:?}, max_deliver {}",
                found.ack_wait,
                found.max_deliver,
                found.filter_subject,
                found.filter_subjects,
                wanted.ack_wait,
                wanted.max_deliver,
            );
        }
        Ok(consumer)
    }
}

async fn flush(client: &async_nats::Client, timeout: Duration) -> Result<(), BusError> {
    tokio::time::timeout(timeout, client.flush())
        .await
        .map_err(|_| broker(format!("flush: no answer within {timeout:?}")))?
        .map_err(broker)
}

fn stored(
    ack: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) -> Result<PublishAck, BusError> {
    let ack = ack.map_err(broker)?;
    Ok(if ack.duplicate {
        PublishAck::Duplicate
    } else {
        PublishAck::Stored { seq: ack.sequence }
    })
}

enum StreamSetup {
    Unreachable(String),
    Other(BusError),
}

async fn ensure_stream(
    context: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<jetstream::stream::Stream, StreamSetup> {
    let subjects: Vec<String> = Subject::ALL.iter().map(|s| config.subject(*s)).collect();
    let wanted = jetstream::stream::Config {
        name: config.stream.clone(),
        description: Some(
            "ticketing events: ticket:created, ticket:updated, order:created, order:cancelled"
                .to_owned(),
        ),
        subjects: subjects.clone(),
        retention: RetentionPolicy::Limits,
        storage: match config.storage {
            StreamStorage::File => StorageType::File,
            StreamStorage::Memory => StorageType::Memory,
        },
        discard: DiscardPolicy::Old,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        max_message_size: -1,
        max_consumers: -1,
        num_replicas: 1,
        duplicate_window: config.duplicate_window,
        no_ack: false,
        allow_direct: false,
        ..Default::default()
    };
    let mut stream = context
        .get_or_create_stream(wanted)
        .await
        .map_err(|error| {
            use async_nats::jetstream::context::CreateStreamErrorKind;
            match error.kind() {
                // No JetStream on the server: nothing answers the API (no responders).
                CreateStreamErrorKind::JetStreamUnavailable | CreateStreamErrorKind::TimedOut => {
                    StreamSetup::Unreachable(format!("JetStream is not available: {error}"))
                }
                _ => StreamSetup::Other(broker(format!("stream {}: {error}", config.stream))),
            }
        })?;
    let info = stream
        .info()
        .await
        .map_err(|error| StreamSetup::Other(broker(error)))?;
    let mut found = info.config.subjects.clone();
    let mut expected = subjects;
    found.sort();
    expected.sort();
    if found != expected {
        return Err(StreamSetup::Other(BusError::Broker(format!(
            "stream {} exists with subjects {found:?}, not {expected:?}",
            config.stream
        ))));
    }
    Ok(stream)
}

/// Records messages that ran out of deliveries, from the server's advisories, until stopped.
async fn record_max_deliveries(
    mut advisories: async_nats::Subscriber,
    stream: jetstream::stream::Stream,
    config: JetStreamConfig,
    dead_letters: Arc<Mutex<Vec<DeadLetter>>>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = advisories.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let advisory: MaxDeliveriesAdvisory = match serde_json::from_slice(&message.payload) {
            Ok(advisory) => advisory,
            Err(error) => {
                tracing::warn!("unreadable max-deliveries advisory: {error}");
                continue;
            }
        };
        let fetched = tokio::time::timeout(
            config.request_timeout,
            stream.get_raw_message(advisory.stream_seq),
        )
        .await;
        let (subject, payload) = match fetched {
            Ok(Ok(stored)) => (
                strip_prefix(&config.subject_prefix, &stored.subject).to_owned(),
                stored.payload.to_vec(),
            ),
            Ok(Err(error)) => {
                tracing::warn!(
                    stream_seq = advisory.stream_seq,
                    "cannot fetch a dead letter: {error}"
                );
                (String::new(), Vec::new())
            }
            Err(_) => {
                tracing::warn!(
                    stream_seq = advisory.stream_seq,
                    "fetching a dead letter timed out"
                );
                (String::new(), Vec::new())
            }
        };
        tracing::warn!(
            queue_group = %advisory.consumer,
            stream_seq = advisory.stream_seq,
            deliveries = advisory.deliveries,
            "dead-lettered after max deliveries"
        );
        dead_letters.lock().push(DeadLetter {
            queue_group: QueueGroup::from(advisory.consumer),
            subject,
            stream_seq: advisory.stream_seq,
            payload,
            reason: DeadLetterReason::MaxDeliveries(
                u32::try_from(advisory.deliveries).unwrap_or(u32::MAX),
            ),
        });
    }
}

fn strip_prefix<'a>(prefix: &str, subject: &'a str) -> &'a str {
    subject.strip_prefix(prefix).unwrap_or(subject)
}

impl Publisher for JetStreamBus {
    async fn publish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        let payload = Bytes::from(event.encode()?);
        self.publish_bytes(event.subject().as_str(), payload, publish_id)
            .await
    }
}

impl RawPublisher for JetStreamBus {
    async fn publish_raw(
        &self,
        subject: &str,
        payload: Bytes,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        self.publish_bytes(subject, payload, publish_id).await
    }
}

impl Bus for JetStreamBus {
    type Subscription = JetStreamSubscription;

    async fn subscribe(
        &self,
        options: &ListenerOptions,
    ) -> Result<JetStreamSubscription, BusError> {
        options.validate()?;
        let consumer = self.consumer(options).await?;
        let (deliveries, receiver) = mpsc::unbounded_channel();
        let (return_untaken, untaken) = oneshot::channel();
        let stop = CancellationToken::new();
        let config = &self.inner.config;
        let puller = Puller {
            consumer,
            client: self.inner.client.clone(),
            request_timeout: config.request_timeout,
            capacity: Arc::new(Semaphore::new(options.max_in_flight)),
            deliveries,
            stop: stop.clone(),
            epoch: self.inner.epoch.clone(),
            subjects: options
                .subjects
                .iter()
                .map(|s| config.subject(*s))
                .collect(),
            prefix_len: config.subject_prefix.len(),
            queue_group: Arc::clone(&options.queue_group),
            dead_letters: Arc::clone(&self.inner.dead_letters),
            expires: config.pull_expires,
            max_batch: config.max_batch.max(1),
            untaken: Some(untaken),
        };
        tokio::spawn(puller.run());
        Ok(JetStreamSubscription {
            receiver,
            stop,
            return_untaken: Some(return_untaken),
        })
    }

    fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner.dead_letters.lock().clone()
    }
}

/// A member's pull loop: asks for as many messages as the member has capacity for.
struct Puller {
    consumer: PullConsumer,
    /// Keeps the connection open until the member's last acks and naks are flushed.
    client: async_nats::Client,
    request_timeout: Duration,
    /// `max_in_flight` permits; each delivery holds one until it is settled or dropped, and a
    /// pull request holds one per message it asks for.
    capacity: Arc<Semaphore>,
    deliveries: mpsc::UnboundedSender<Result<JetStreamDelivery, BusError>>,
    stop: CancellationToken,
    epoch: watch::Receiver<u64>,
    /// NATS subjects the group listens to (empty: all).
    subjects: HashSet<String>,
    prefix_len: usize,
    queue_group: QueueGroup,
    dead_letters: Arc<Mutex<Vec<DeadLetter>>>,
    expires: Duration,
    max_batch: usize,
    /// Deliveries the member never took, sent back by the subscription when it is dropped.
    untaken: Option<oneshot::Receiver<Vec<JetStreamDelivery>>>,
}

/// How a pull request ended.
enum Pulled {
    /// Expired or filled: ask again.
    Done,
    /// Failed: ask again after a pause.
    Failed(String),
    /// The subscription is gone; these messages reached it after that (the request was
    /// still open on the server) and must be handed back.
    Stop(Vec<jetstream::Message>),
}

impl Puller {
    async fn run(mut self) {
        self.epoch.borrow_and_update();
        let mut failures: u32 = 0;
        loop {
            let permits = tokio::select! {
                biased;
                () = self.stop.cancelled() => return self.leave(Vec::new()).await,
                permit = Arc::clone(&self.capacity).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return self.leave(Vec::new()).await,
                },
            };
            match self.pull(permits).await {
                Pulled::Stop(late) => return self.leave(late).await,
                Pulled::Done => failures = 0,
                Pulled::Failed(why) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(queue_group = %self.queue_group, failures, "pull failed: {why}");
                    if failures == 1 && self.deliveries.send(Err(BusError::Broker(why))).is_err() {
                        return self.leave(Vec::new()).await;
                    }
                    let pause = reconnect_delay(failures as usize);
                    tokio::select! {
                        () = self.stop.cancelled() => return self.leave(Vec::new()).await,
                        () = tokio::time::sleep(pause) => {}
                        _ = self.epoch.changed() => {}
                    }
                }
            }
        }
    }

    /// One pull request for as many messages as there is capacity (at least one permit held).
    async fn pull(&mut self, mut permits: OwnedSemaphorePermit) -> Pulled {
        let more = self
            .capacity
            .available_permits()
            .min(self.max_batch.saturating_sub(1));
        if more > 0
            && let Ok(extra) =
                Arc::clone(&self.capacity).try_acquire_many_owned(u32::try_from(more).unwrap_or(0))
        {
            permits.merge(extra);
        }
        let wanted = permits.num_permits();
        tracing::trace!(queue_group = %self.queue_group, wanted, "pull request");
        let request = self
            .consumer
            .batch()
            .max_messages(wanted)
            .expires(self.expires)
            .messages();
        // Not cancelled by `stop`: a request sent must be read to its end (see `leave`).
        let mut batch = tokio::select! {
            batch = request => match batch {
                Ok(batch) => batch,
                Err(error) => return Pulled::Failed(error.to_string()),
            },
        };
        // The server answers an expired request; if it is gone (restarted), give up a little
        // later and ask again. A reconnect does not end the request early: the server may
        // still hold it (a dropped connection, not a restart), and the client re-subscribes
        // its inbox, so messages may still come; dropping it would strand them until their
        // ack wait.
        let deadline = Instant::now() + self.expires + Duration::from_secs(1);
        loop {
            let next = tokio::select! {
                biased;
                () = self.stop.cancelled() => return Pulled::Stop(drain(batch, deadline).await),
                next = tokio::time::timeout_at(deadline, batch.next()) => next,
            };
            let message = match next {
                Err(_) | Ok(None) => return Pulled::Done,
                Ok(Some(Err(error))) => return Pulled::Failed(error.to_string()),
                Ok(Some(Ok(message))) => message,
            };
            let Some(permit) = permits.split(1) else {
                // More than asked for cannot happen; let the ack wait redeliver it.
                return Pulled::Done;
            };
            let Some(delivery) = self.delivery(message, permit).await else {
                continue;
            };
            tracing::trace!(
                queue_group = %self.queue_group,
                stream_seq = delivery.stream_seq,
                delivery_count = delivery.delivery_count,
                "delivered"
            );
            if let Err(mpsc::error::SendError(Ok(delivery))) = self.deliveries.send(Ok(delivery)) {
                // The member left while this was on its way.
                let mut late = drain(batch, deadline).await;
                late.push(delivery.message);
                return Pulled::Stop(late);
            }
        }
    }

    /// The member left: hands back (nak, for another member at once) what reached it late and
    /// what it never took. Only now, with its last pull request over: a nak while that request
    /// was open could be answered by redelivering into it, to be lost until the ack wait.
    async fn leave(&mut self, mut late: Vec<jetstream::Message>) {
        if let Some(untaken) = self.untaken.take()
            && let Ok(Ok(untaken)) = tokio::time::timeout(Duration::from_secs(1), untaken).await
        {
            late.extend(untaken.into_iter().map(|delivery| delivery.message));
        }
        if !late.is_empty() {
            tracing::debug!(
                queue_group = %self.queue_group,
                count = late.len(),
                "handing back deliveries a leaving member never took"
            );
        }
        for message in late {
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
        // The member's acks and these naks must reach the server even if the bus is dropped
        // meanwhile: this task holds the connection open until they have.
        if let Err(error) = flush(&self.client, self.request_timeout).await {
            tracing::warn!(queue_group = %self.queue_group, "leaving member: {error}");
        }
    }

    /// Wraps a message as a delivery, or acknowledges and skips it if the group does not
    /// listen to its subject (a consumer without a server-side filter).
    async fn delivery(
        &self,
        message: jetstream::Message,
        permit: OwnedSemaphorePermit,
    ) -> Option<JetStreamDelivery> {
        if !self.subjects.is_empty() && !self.subjects.contains(message.subject.as_str()) {
            if let Err(error) = message.ack().await {
                tracing::warn!(queue_group = %self.queue_group, "cannot skip a message: {error}");
            }
            return None;
        }
        let (stream_seq, delivery_count) = match message.info() {
            Ok(info) => (
                info.stream_sequence,
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
            ),
            Err(error) => {
                tracing::warn!(queue_group = %self.queue_group, "a message without JetStream metadata: {error}");
                return None;
            }
        };
        Some(JetStreamDelivery {
            message,
            stream_seq,
            delivery_count,
            prefix_len: self.prefix_len,
            permit: Mutex::new(Some(permit)),
            queue_group: Arc::clone(&self.queue_group),
            dead_letters: Arc::clone(&self.dead_letters),
        })
    }
}

/// Reads a pull request to its end (the server's expiry answer, the last message asked for,
/// or `deadline`), keeping what arrives.
async fn drain(mut batch: pull::Batch, deadline: Instant) -> Vec<jetstream::Message> {
    let mut late = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, batch.next()).await {
        match item {
            Ok(message) => late.push(message),
            Err(_) => break,
        }
    }
    late
}

/// One member of a queue group on JetStream. Dropping it stops its pulls; deliveries it
/// fetched but never handed out are nak'ed (once its last pull request is over, at most
/// `pull_expires` + 1 s later) so another member gets them, and those it handed out and were
/// not settled come back after the ack wait.
pub struct JetStreamSubscription {
    receiver: mpsc::UnboundedReceiver<Result<JetStreamDelivery, BusError>>,
    stop: CancellationToken,
    return_untaken: Option<oneshot::Sender<Vec<JetStreamDelivery>>>,
}

impl std::fmt::Debug for JetStreamSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSubscription")
            .finish_non_exhaustive()
    }
}

impl Subscription for JetStreamSubscription {
    type Delivery = JetStreamDelivery;

    /// Cancel-safe: deliveries wait in the member's channel until taken. Yields an error
    /// (once per failure streak) while pulls fail, and keeps retrying.
    async fn next(&mut self) -> Option<Result<JetStreamDelivery, BusError>> {
        self.receiver.recv().await
    }
}

impl Drop for JetStreamSubscription {
    fn drop(&mut self) {
        self.stop.cancel();
        self.receiver.close();
        let mut untaken = Vec::new();
        while let Ok(item) = self.receiver.try_recv() {
            if let Ok(delivery) = item {
                untaken.push(delivery);
            }
        }
        if let Some(return_untaken) = self.return_untaken.take() {
            // The pull task hands them back once its last request is over; if it is gone
            // already, they come back after the ack wait.
            let _ = return_untaken.send(untaken);
        }
    }
}

/// One delivery from JetStream.
pub struct JetStreamDelivery {
    message: jetstream::Message,
    stream_seq: u64,
    delivery_count: u32,
    prefix_len: usize,
    /// The member's capacity this delivery holds, given back when it is settled or dropped.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    queue_group: QueueGroup,
    dead_letters: Arc<Mutex<Vec<DeadLetter>>>,
}

impl std::fmt::Debug for JetStreamDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamDelivery")
            .field("subject", &self.message.subject)
            .field("stream_seq", &self.stream_seq)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

impl JetStreamDelivery {
    async fn settle(&self, kind: AckKind) -> Result<(), BusError> {
        self.message.ack_with(kind).await.map_err(broker)?;
        self.permit.lock().take();
        Ok(())
    }
}

impl MessageHandle for JetStreamDelivery {
    fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    async fn ack(&self) -> Result<(), BusError> {
        self.settle(AckKind::Ack).await
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.settle(AckKind::Nak(delay)).await
    }

    async fn term(&self, reason: &str) -> Result<(), BusError> {
        self.settle(AckKind::Term).await?;
        self.dead_letters.lock().push(DeadLetter {
            queue_group: Arc::clone(&self.queue_group),
            subject: self.subject().to_owned(),
            stream_seq: self.stream_seq,
            payload: self.message.payload.to_vec(),
            reason: DeadLetterReason::Terminated(reason.to_owned()),
        });
        Ok(())
    }
}

impl Delivery for JetStreamDelivery {
    fn subject(&self) -> &str {
        let subject = self.message.subject.as_str();
        subject.get(self.prefix_len..).unwrap_or(subject)
    }

    fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    fn stream_seq(&self) -> u64 {
        self.stream_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_major_and_minor() {
        assert_eq!(version("2.9.10"), Some((2, 9)));
        assert_eq!(version("v2.10.0-beta"), Some((2, 10)));
        assert_eq!(version("nonsense"), None);
        assert!(version("2.9.10").is_some_and(|v| v < (2, 10)));
    }

    #[test]
    fn the_default_mapping_uses_the_bare_subject_names() {
        let config = JetStreamConfig::default();
        assert_eq!(config.stream, "TICKETING");
        assert_eq!(config.subject(Subject::TicketCreated), "ticket:created");
        let namespaced = JetStreamConfig::namespaced("T1");
        assert_eq!(namespaced.stream, "T1");
        assert_eq!(
            namespaced.subject(Subject::OrderCancelled),
            "T1.order:cancelled"
        );
    }

    #[test]
    fn reconnect_delays_grow_and_are_capped() {
        assert!(reconnect_delay(0) < reconnect_delay(3));
        assert!(reconnect_delay(usize::MAX) <= Duration::from_secs(2));
    }
}
