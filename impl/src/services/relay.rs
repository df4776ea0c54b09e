//! The outbox relay: publishes a service's outbox, in order, with publish ids.
//!
//! The invariant: an entry leaves the outbox only after the broker stored it (or recognised it
//! as a duplicate of its publish id), or to quarantine when it can never be published (it does
//! not encode, or, on PostgreSQL, does not decode): one such entry never stalls the relay. A relay that crashes between publishing and marking
//! publishes the same entries again after a restart, and the broker drops them by publish id;
//! nothing written with a record change is ever lost.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, Publisher};
use crate::events::Event;
use crate::store::{Outbox, OutboxEntry, StoreError};

/// How a relay runs.
#[derive(Clone, Copy, Debug)]
pub struct RelayConfig {
    /// Entries read and published per round.
    pub batch: usize,
    /// The first delay after a failed round (doubling).
    pub retry_initial: Duration,
    /// The largest delay between failed rounds.
    pub retry_max: Duration,
    /// How long a relay keeps flushing at shutdown before it gives up (what is left stays in
    /// the outbox for the next start).
    pub flush_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a relay round stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading or marking the outbox failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing failed; the entries before it were marked.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A fail point stopped the relay as a crash would.
    #[error("crashed at fail point {0}")]
    Crashed(&'static str),
}

/// One round: publishes up to `limit` pending entries in order (through
/// [`Publisher::publish_in_order`], so a backend may keep their acks in flight together),
/// then marks them published. Returns how many were published. An entry that cannot be
/// encoded is quarantined and the relay goes on. On any other publish failure, marks the
/// entries published before it and reports the error.
pub async fn relay_batch<O, P>(outbox: &O, publisher: &P, limit: usize) -> Result<usize, RelayError>
where
    O: Outbox,
    P: Publisher,
{
    relay_observed(outbox, publisher, limit, &mut |_| {}).await
}

/// [`relay_batch`], showing `observe` what each read of the outbox found.
async fn relay_observed<O, P>(
    outbox: &O,
    publisher: &P,
    limit: usize,
    observe: &mut (dyn FnMut(&[OutboxEntry]) + Send),
) -> Result<usize, RelayError>
where
    O: Outbox,
    P: Publisher,
{
    let pending = outbox.pending(limit).await?;
    observe(&pending);
    let publish_ids: Vec<String> = pending
        .iter()
        .map(|entry| entry.event.publish_id())
        .collect();
    let events: Vec<(&Event, Option<&str>)> = pending
        .iter()
        .zip(&publish_ids)
        .map(|(entry, publish_id)| (&entry.event, Some(publish_id.as_str())))
        .collect();
    let answers = publisher.publish_in_order(&events).await;
    let mut published = Vec::with_capacity(pending.len());
    let mut failure = None;
    for (entry, answer) in pending.iter().zip(answers) {
        match answer {
            Ok(_) => published.push(entry.seq),
            // No retry can publish what does not encode: set it aside and go on.
            Err(BusError::Encode(error)) => {
                outbox.quarantine(entry.seq, &error.to_string()).await?;
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    fail::fail_point!(
        crate::services::failpoints::RELAY_AFTER_PUBLISH_BEFORE_MARK,
        |_| Err(RelayError::Crashed(
            crate::services::failpoints::RELAY_AFTER_PUBLISH_BEFORE_MARK
        ))
    );
    if !published.is_empty() {
        outbox.mark_published(&published).await?;
    }
    match failure {
        Some(error) => Err(error.into()),
        None => Ok(published.len()),
    }
}

/// Runs a relay until `shutdown`, then flushes what is pending (for at most
/// `config.flush_timeout`). Failed rounds are retried after a doubling delay, each logged.
pub async fn run_relay<O, P>(
    service: &'static str,
    outbox: &O,
    publisher: &P,
    config: RelayConfig,
    shutdown: CancellationToken,
) where
    O: Outbox,
    P: Publisher,
{
    let batch = config.batch.max(1);
    let mut retry_delay = config.retry_initial;
    let mut watch = Lag::new(service);
    loop {
        // Register interest before reading, so a write after the read still wakes us.
        let written = outbox.outbox_written();
        tokio::pin!(written);
        let mut observe = |pending: &[OutboxEntry]| watch.observe(pending);
        match relay_observed(outbox, publisher, batch, &mut observe).await {
            Ok(count) => {
                watch.metrics.published(count);
                retry_delay = config.retry_initial;
                if count == batch {
                    continue;
                }
                // Everything read was published: nothing waits until the next write.
                watch.drained();
                tokio::select! {
                    () = &mut written => {}
                    () = shutdown.cancelled() => break,
                }
            }
            Err(error) => {
                tracing::warn!(service, %error, retry_in = ?retry_delay, "outbox relay round failed");
                tokio::select! {
                    () = tokio::time::sleep(retry_delay) => {}
                    () = shutdown.cancelled() => break,
                }
                retry_delay = (retry_delay * 2).min(config.retry_max);
            }
        }
    }
    flush(service, outbox, publisher, batch, config.flush_timeout).await;
}

/// The oldest pending entry a relay has seen and since when: the relay's lag, for its
/// [`crate::metrics::Outbox`] metrics.
struct Lag {
    oldest: Option<(u64, Instant)>,
    metrics: crate::metrics::Outbox,
}

impl Lag {
    fn new(service: &'static str) -> Self {
        Self {
            oldest: None,
            metrics: crate::metrics::Outbox::new(service),
        }
    }

    fn observe(&mut self, pending: &[OutboxEntry]) {
        let now = Instant::now();
        self.oldest = match (pending.first(), self.oldest) {
            (None, _) => None,
            (Some(first), Some((seq, since))) if first.seq == seq => Some((seq, since)),
            (Some(first), _) => Some((first.seq, now)),
        };
        let waiting = self
            .oldest
            .map_or(Duration::ZERO, |(_, since)| now.duration_since(since));
        self.metrics.read(pending.len(), waiting);
    }

    fn drained(&mut self) {
        self.oldest = None;
        self.metrics.read(0, Duration::ZERO);
    }
}

async fn flush<O: Outbox, P: Publisher>(
    service: &'static str,
    outbox: &O,
    publisher: &P,
    batch: usize,
    timeout: Duration,
) {
    let drain = async {
        loop {
            match relay_batch(outbox, publisher, batch).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(error) => return Err(error),
            }
        }
    };
    match tokio::time::timeout(timeout, drain).await {
        Ok(Ok(())) => tracing::info!(service, "outbox relay flushed and stopped"),
        Ok(Err(error)) => {
            tracing::warn!(service, %error, "outbox relay stopped with entries left for the next start")
        }
        Err(_) => tracing::warn!(
            service,
            "outbox relay flush timed out; entries left for the next start"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, TicketCreated};
    use crate::id::Id;
    use crate::price::Price;
    use crate::records::{Ticket, UserId};
    use crate::services::fakes::RecordingPublisher;
    use crate::store::{MemStore, VersionedStore};

    async fn create_tickets(store: &MemStore, count: usize) -> Vec<Id> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let ticket = Ticket {
                id: Id::new(),
                title: "t".into(),
                price: Price::from_cents(100).unwrap(),
                user_id: UserId::new("u"),
                version: 0,
                order_id: None,
                reservation: 0,
            };
            let event = Event::TicketCreated(TicketCreated {
                id: ticket.id,
                version: 0,
                title: ticket.title.clone(),
                price: ticket.price,
                user_id: ticket.user_id.clone(),
            });
            ids.push(ticket.id);
            store.insert(ticket, Some(event)).await.unwrap();
        }
        ids
    }

    #[tokio::test]
    async fn publishes_in_outbox_order_with_publish_ids_then_empties_the_outbox() {
        let store = MemStore::new();
        let ids = create_tickets(&store, 3).await;
        let publisher = RecordingPublisher::new();
        assert_eq!(relay_batch(&store, &publisher, 2).await.unwrap(), 2);
        assert_eq!(relay_batch(&store, &publisher, 2).await.unwrap(), 1);
        assert_eq!(relay_batch(&store, &publisher, 2).await.unwrap(), 0);
        let published = publisher.events_with_ids();
        let order: Vec<Id> = published.iter().map(|(e, _)| e.record_id()).collect();
        assert_eq!(order, ids);
        for (event, publish_id) in published {
            assert_eq!(publish_id, Some(event.publish_id()));
        }
        assert!(store.outbox_snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_failed_publish_keeps_the_rest_for_the_next_round() {
        let store = MemStore::new();
        create_tickets(&store, 2).await;
        let publisher = RecordingPublisher::new();
        publisher.set_failing(true);
        assert!(matches!(
            relay_batch(&store, &publisher, 10).await,
            Err(RelayError::Bus(_))
        ));
        assert_eq!(store.outbox_snapshot().len(), 2, "nothing marked");
        publisher.set_failing(false);
        assert_eq!(relay_batch(&store, &publisher, 10).await.unwrap(), 2);
        assert_eq!(publisher.events().len(), 2);
    }

    #[tokio::test]
    async fn an_entry_that_cannot_be_encoded_is_quarantined_and_the_rest_flow() {
        let store = MemStore::new();
        let ids = create_tickets(&store, 3).await;
        let publisher = RecordingPublisher::new();
        publisher.set_unencodable(Some(ids[1]));
        assert_eq!(relay_batch(&store, &publisher, 10).await.unwrap(), 2);
        let published: Vec<Id> = publisher.events().iter().map(Event::record_id).collect();
        assert_eq!(published, vec![ids[0], ids[2]]);
        assert!(
            store.outbox_snapshot().is_empty(),
            "nothing left to stall on"
        );
        let quarantined = store.quarantined().await.unwrap();
        assert_eq!(quarantined.len(), 1);
        assert_eq!(quarantined[0].subject, "ticket:created");
        assert!(
            quarantined[0].payload.contains(&ids[1].to_string()),
            "the payload is kept: {}",
            quarantined[0].payload
        );
        assert!(
            quarantined[0].error.contains("cannot encode"),
            "{:?}",
            quarantined[0]
        );
        assert_eq!(relay_batch(&store, &publisher, 10).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_running_relay_publishes_what_is_written_and_stops_on_shutdown() {
        let store = MemStore::new();
        let publisher = RecordingPublisher::new();
        let stop = CancellationToken::new();
        let relay = {
            let (store, publisher, stop) = (store.clone(), publisher.clone(), stop.clone());
            tokio::spawn(async move {
                run_relay("test", &store, &publisher, RelayConfig::default(), stop).await
            })
        };
        create_tickets(&store, 1).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while publisher.events().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "relay never published"
            );
            tokio::task::yield_now().await;
        }
        stop.cancel();
        relay.await.unwrap();
        assert!(store.outbox_snapshot().is_empty());
    }
}
