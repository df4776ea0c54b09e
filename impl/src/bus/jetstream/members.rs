//! A member of a queue group on JetStream: its subscription, and the task that pulls for it
//! in batches as large as the member's free capacity.
//!
//! The invariant: a member never holds more than `max_in_flight` unsettled deliveries (each
//! holds a permit of its member's capacity, and a pull request asks for no more than the free
//! permits), and a member that leaves hands back everything it fetched and never took, only
//! once its last pull request is over, so nothing is handed back into a request no one reads.

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
use crate::bus::{Bus, BusError, DeadLetter, ListenerOptions, QueueGroup, Subscription};
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
            dead_letters: self.dead_letters.clone(),
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
