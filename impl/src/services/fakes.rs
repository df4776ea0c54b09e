//! Recording stand-ins for the broker, for driving listeners and relays directly (tests, the
//! harness): a [`RecordingHandle`] remembers how a delivery was settled, a
//! [`RecordingPublisher`] remembers what was published and drops repeated publish ids as the
//! broker's duplicate window does.
//!
//! The invariant: they record every call in call order and never fail unless told to.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::bus::{BusError, MessageHandle, PublishAck, Publisher};
use crate::events::{EncodeError, Event};
use crate::id::Id;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in here can panic while holding the lock; a poisoned lock's data is still good.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a delivery was settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Acknowledged.
    Ack,
    /// Nak'ed, to be redelivered after the delay.
    Nak(Duration),
    /// Terminated with a reason.
    Term(String),
}

/// A delivery's handle that records its settlements.
#[derive(Debug)]
pub struct RecordingHandle {
    delivery_count: u32,
    settlements: Mutex<Vec<Settlement>>,
}

impl RecordingHandle {
    /// The handle of the `delivery_count`-th delivery of an event (1 for the first).
    pub fn new(delivery_count: u32) -> Self {
        Self {
            delivery_count,
            settlements: Mutex::new(Vec::new()),
        }
    }

    /// Every settlement so far, in call order.
    pub fn settlements(&self) -> Vec<Settlement> {
        lock(&self.settlements).clone()
    }

    /// Whether the delivery was acknowledged.
    pub fn acked(&self) -> bool {
        self.settlements().contains(&Settlement::Ack)
    }
}

impl MessageHandle for RecordingHandle {
    fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    async fn ack(&self) -> Result<(), BusError> {
        lock(&self.settlements).push(Settlement::Ack);
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        lock(&self.settlements).push(Settlement::Nak(delay));
        Ok(())
    }

    async fn term(&self, reason: &str) -> Result<(), BusError> {
        lock(&self.settlements).push(Settlement::Term(reason.to_owned()));
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Published {
    events: Vec<(Event, Option<String>)>,
    publish_ids: HashSet<String>,
    failing: bool,
    unencodable: Option<Id>,
}

/// A publisher that records what it stores. Clones share the record.
#[derive(Clone, Debug, Default)]
pub struct RecordingPublisher {
    published: Arc<Mutex<Published>>,
}

impl RecordingPublisher {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events stored (duplicates by publish id left out), in publish order.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.published)
            .events
            .iter()
            .map(|(event, _)| event.clone())
            .collect()
    }

    /// The events stored, with the publish id each came with.
    pub fn events_with_ids(&self) -> Vec<(Event, Option<String>)> {
        lock(&self.published).events.clone()
    }

    /// From now on every publish fails with [`BusError::Broker`] (`true`), or succeeds again.
    pub fn set_failing(&self, failing: bool) {
        lock(&self.published).failing = failing;
    }

    /// From now on every event of record `record` fails to encode ([`BusError::Encode`]), as
    /// an event no retry can publish; `None`: none does.
    pub fn set_unencodable(&self, record: Option<Id>) {
        lock(&self.published).unencodable = record;
    }
}

impl Publisher for RecordingPublisher {
    async fn publish(
        &self,
        event: &Event,
        publish_id: Option<&str>,
    ) -> Result<PublishAck, BusError> {
        let mut published = lock(&self.published);
        if published.failing {
            return Err(BusError::Broker("recording publisher set to fail".into()));
        }
        if published.unencodable == Some(event.record_id()) {
            return Err(BusError::Encode(EncodeError::new(
                event.subject(),
                "this record's events are set not to encode",
            )));
        }
        if let Some(id) = publish_id
            && !published.publish_ids.insert(id.to_owned())
        {
            return Ok(PublishAck::Duplicate);
        }
        published
            .events
            .push((event.clone(), publish_id.map(str::to_owned)));
        Ok(PublishAck::Stored {
            seq: published.events.len() as u64,
        })
    }
}
