//! A member of a queue group on JetStream: its subscription, and the task that pulls for it
//! in batches as large as the member's free capacity, with the next request sent while the
//! current one drains.
//!
//! The invariant: a member never holds more than `max_in_flight` unsettled deliveries (each
//! holds a permit of its member's capacity, and the open pull requests together ask for no
//! more than the free permits); one task reads the requests one after the other, so
//! deliveries keep the server's order; and a member that leaves hands back everything it
//! fetched and never took, only once its last pull requests are over (the current one and the
//! one sent ahead), so nothing is handed back into a request no one reads.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dead_letters::DeadLetters;
use super::delivery::JetStreamDelivery;
use super::setup::reconnect_delay;
use super::{JetStreamBus, flush};
use crate::bus::{Bus, BusError, DeadLetter, Delivery, ListenerOptions, QueueGroup, Subscription};
use crate::sync::Mutex;

impl Bus for JetStreamBus {
    type Subscription = JetStreamSubscription;

    async fn declare(&self, options: &ListenerOptions) -> Result<(), BusError> {
        options.validate()?;
        self.consumer(options).await.map(drop)
    }

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
            dead_letters: self.inner.dead_letters.clone(),
            max_deliver: options.max_deliver,
            expires: config.pull_expires,
            max_batch: config.max_batch.max(1),
            ahead_at: (options.max_in_flight.min(config.max_batch.max(1)) / 2).max(1),
            ahead: None,
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
        self.inner.dead_letters.all()
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
    dead_letters: DeadLetters,
    /// The deliveries the group asked for (a durable consumer made earlier with another
    /// `max_deliver` keeps its own; then the dead-letter advisory's fetch is the fallback).
    max_deliver: u32,
    expires: Duration,
    max_batch: usize,
    /// Free permits at which the next pull request is sent while the current one drains:
    /// half of the largest request (`max_in_flight` or `max_batch`), at least one.
    ahead_at: usize,
    /// The pull request sent ahead, read once the current one has ended.
    ahead: Option<Request>,
    /// Deliveries the member never took, sent back by the subscription when it is dropped.
    untaken: Option<oneshot::Receiver<Vec<JetStreamDelivery>>>,
}

/// A pull request sent and not yet read to its end.
struct Request {
    batch: pull::Batch,
    /// One permit per message asked for and not yet arrived.
    permits: OwnedSemaphorePermit,
    /// When to stop waiting for the server's answer (it answers an expired request; if it is
    /// gone, restarted, give up a little later).
    deadline: Instant,
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
            // The request sent ahead while the last one drained, or a new one.
            let current = match self.ahead.take() {
                Some(request) => Ok(request),
                None => {
                    let permits = tokio::select! {
                        biased;
                        () = self.stop.cancelled() => return self.leave(Vec::new()).await,
                        permit = Arc::clone(&self.capacity).acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return self.leave(Vec::new()).await,
                        },
                    };
                    self.request(permits).await
                }
            };
            let pulled = match current {
                Ok(request) => self.read(request).await,
                Err(why) => Pulled::Failed(why),
            };
            match pulled {
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

    /// Sends one pull request for as many messages as there is capacity (at least the one
    /// permit held), up to the batch size.
    async fn request(&self, mut permits: OwnedSemaphorePermit) -> Result<Request, String> {
        let more = self
            .capacity
            .available_permits()
            .min(self.max_batch.saturating_sub(permits.num_permits()));
        if more > 0
            && let Ok(extra) =
                Arc::clone(&self.capacity).try_acquire_many_owned(u32::try_from(more).unwrap_or(0))
        {
            permits.merge(extra);
        }
        let wanted = permits.num_permits();
        tracing::trace!(queue_group = %self.queue_group, wanted, "pull request");
        // Not cancelled by `stop`: a request sent must be read to its end (see `leave`).
        let batch = self
            .consumer
            .batch()
            .max_messages(wanted)
            .expires(self.expires)
            .messages()
            .await
            .map_err(|error| error.to_string())?;
        // A reconnect does not end the request early: the server may still hold it (a
        // dropped connection, not a restart), and the client re-subscribes its inbox, so
        // messages may still come; dropping it would strand them until their ack wait.
        let deadline = Instant::now() + self.expires + Duration::from_secs(1);
        Ok(Request {
            batch,
            permits,
            deadline,
        })
    }

    /// Sends the next pull request while the current one still drains, once at least
    /// `ahead_at` permits are free (so the server has the next request before the current
    /// one is filled, as async-nats's `stream()` does). Only one is ever sent ahead, and it is
    /// read only after the current one ended, by this same task, so deliveries keep the
    /// order the server gave them.
    async fn request_ahead(&mut self) {
        if self.ahead.is_some() {
            return;
        }
        let free = self.capacity.available_permits().min(self.max_batch);
        if free < self.ahead_at {
            return;
        }
        let Ok(permits) =
            Arc::clone(&self.capacity).try_acquire_many_owned(u32::try_from(free).unwrap_or(0))
        else {
            return;
        };
        match self.request(permits).await {
            Ok(request) => self.ahead = Some(request),
            // Asked again, and the failure reported, once the current request has ended.
            Err(why) => {
                tracing::debug!(queue_group = %self.queue_group, "pull ahead failed: {why}")
            }
        }
    }

    /// Reads one pull request to its end, handing each message to the member (and sending
    /// the next request ahead once there is room for it).
    async fn read(&mut self, mut current: Request) -> Pulled {
        loop {
            let next = tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    return Pulled::Stop(drain(current.batch, current.deadline).await);
                }
                next = tokio::time::timeout_at(current.deadline, current.batch.next()) => next,
            };
            let message = match next {
                Err(_) | Ok(None) => return Pulled::Done,
                Ok(Some(Err(error))) => return Pulled::Failed(error.to_string()),
                Ok(Some(Ok(message))) => message,
            };
            let Some(permit) = current.permits.split(1) else {
                // More than asked for cannot happen; let the ack wait redeliver it.
                return Pulled::Done;
            };
            if let Some(delivery) = self.delivery(message, permit).await {
                tracing::trace!(
                    queue_group = %self.queue_group,
                    stream_seq = delivery.stream_seq,
                    delivery_count = delivery.delivery_count,
                    "delivered"
                );
                if let Err(mpsc::error::SendError(Ok(delivery))) =
                    self.deliveries.send(Ok(delivery))
                {
                    // The member left while this was on its way.
                    let mut late = drain(current.batch, current.deadline).await;
                    late.push(delivery.message);
                    return Pulled::Stop(late);
                }
            }
            self.request_ahead().await;
        }
    }

    /// The member left: hands back (nak, for another member at once) what reached it late and
    /// what it never took. Only now, with its last pull request over: a nak while that request
    /// was open could be answered by redelivering into it, to be lost until the ack wait.
    async fn leave(&mut self, mut late: Vec<jetstream::Message>) {
        if let Some(ahead) = self.ahead.take() {
            late.extend(drain(ahead.batch, ahead.deadline).await);
        }
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
        let last_attempt = delivery_count >= self.max_deliver;
        let delivery = JetStreamDelivery {
            message,
            stream_seq,
            delivery_count,
            prefix_len: self.prefix_len,
            permit: Mutex::new(Some(permit)),
            queue_group: Arc::clone(&self.queue_group),
            dead_letters: self.dead_letters.clone(),
            last_attempt,
        };
        if last_attempt {
            self.dead_letters.keep_last_attempt(
                &self.queue_group,
                stream_seq,
                delivery.subject(),
                delivery.payload(),
            );
        }
        Some(delivery)
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
