//! Connecting, and the mapping onto the server: the stream over the four subjects and each
//! queue group's durable pull consumer, created with every setting stated (see the mapping in
//! [`super`]).
//!
//! The invariant: connecting is bounded (`connect_timeout`, then a request timeout for the
//! JetStream check) and fails with [`BusError::Unreachable`]; an existing stream is used only
//! if it has exactly the four subjects and interest retention; an existing consumer keeps its settings (a durable
//! consumer's), and a mismatch is logged, never silently ignored.

use std::sync::Arc;
use std::time::Duration;

use async_nats::ConnectOptions;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, ReplayPolicy, pull};
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::dead_letter_stream::DeadLetterStream;
use super::dead_letters::{DeadLetters, record_advisories};
use super::{Inner, JetStreamBus, JetStreamConfig, StreamStorage, broker};
use crate::bus::{BusError, ListenerOptions};
use crate::events::Subject;

/// Requests waiting on a queue group's consumer at once (its members' pull requests).
const MAX_WAITING_PULLS: i64 = 512;

/// Publish acks a connection keeps in flight before a publish waits for one.
const MAX_ACKS_IN_FLIGHT: usize = 4096;

/// How often the client pings the server (to notice a dead connection).
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Grace on top of `connect_timeout` for the whole connect call (TCP, handshake, INFO).
const CONNECT_GRACE: Duration = Duration::from_millis(500);

/// Reconnect quickly at first, then every 2 s at most, for ever (a service outlives a broker
/// restart; every request made meanwhile still has its own timeout).
pub(super) fn reconnect_delay(attempts: usize) -> Duration {
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

/// The client's settings: reconnect for ever with [`reconnect_delay`], every request
/// bounded, and `epoch` bumped on every (re)connect (members pull again at once).
fn connect_options(config: &JetStreamConfig, epoch: watch::Sender<u64>) -> ConnectOptions {
    let epoch = Arc::new(epoch);
    ConnectOptions::new()
        .name("ticketing")
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(config.request_timeout))
        .ping_interval(PING_INTERVAL)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let epoch = Arc::clone(&epoch);
            async move {
                match event {
                    async_nats::Event::Connected => {
                        epoch.send_modify(|epoch| *epoch += 1);
                        tracing::info!("NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting");
                    }
                    other => tracing::debug!("NATS event: {other}"),
                }
            }
        })
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
        let client = tokio::time::timeout(
            config.connect_timeout + CONNECT_GRACE,
            connect_options(&config, epoch_tx).connect(config.url.as_str()),
        )
        .await
        .map_err(|_| unreachable(format!("no connection within {:?}", config.connect_timeout)))?
        .map_err(|error| unreachable(error.to_string()))?;
        let multi_filter = version(&client.server_info().version).is_some_and(|v| v >= (2, 10));
        let context = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .max_ack_inflight(MAX_ACKS_IN_FLIGHT)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let stream = ensure_stream(&context, &config)
            .await
            .map_err(|error| match error {
                StreamSetup::Unreachable(message) => unreachable(message),
                StreamSetup::Other(error) => error,
            })?;
        let dead_letter_stream = DeadLetterStream::open(&context, &stream, &config).await?;
        let dead_letters = DeadLetters::new(dead_letter_stream);
        let stop = CancellationToken::new();
        record_advisories(&client, &stream, &config, &dead_letters, &stop).await?;
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

    /// The group's durable consumer, created if missing.
    pub(super) async fn consumer(
        &self,
        options: &ListenerOptions,
    ) -> Result<PullConsumer, BusError> {
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
            max_waiting: MAX_WAITING_PULLS,
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

/// Why the stream could not be set up: the server has no JetStream (the bus is unreachable),
/// or anything else.
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
        // Each subject has exactly one consuming queue group: a message leaves the server
        // once every group that listens to it has acknowledged it (or given up on it).
        retention: RetentionPolicy::Interest,
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
    if info.config.retention != RetentionPolicy::Interest {
        return Err(StreamSetup::Other(BusError::Broker(format!(
            "stream {} exists with {:?} retention, not Interest, and NATS cannot change the \
             retention of an existing stream: once every queue group has caught up (its \
             consumer's pending count is 0), delete the stream (`nats stream rm {}`; the \
             next start creates it with interest retention), or start with another \
             --stream-prefix for a new stream",
            config.stream, info.config.retention, config.stream
        ))));
    }
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
    fn reconnect_delays_grow_and_are_capped() {
        assert!(reconnect_delay(0) < reconnect_delay(3));
        assert!(reconnect_delay(usize::MAX) <= Duration::from_secs(2));
    }
}
