//! The transactional outbox on PostgreSQL: the relay's reads and deletes, the quarantine of
//! entries that cannot be published (table `outbox_quarantine`), the encoding of an event as
//! an outbox row, and the LISTEN/NOTIFY wake-up.
//!
//! Entries are written only by the write path ([`super::records`]), in the same statement as
//! their record change; the payload column is `json`, the event's encoding verbatim. A trigger
//! on the outbox notifies channel `outbox:<schema>` when an entry commits; one dedicated
//! connection, opened by the first [`Outbox::outbox_written`], listens on it.
//!
//! The invariant: a relay waiting in [`Outbox::outbox_written`] never misses a committed
//! entry for longer than [`super::PgStoreOptions::outbox_poll`]: a notification with nobody
//! waiting is kept as a permit, entries written before LISTEN took effect get one wake-up, and
//! the polling interval covers a lost listener connection.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls};

use super::PgStore;
use super::errors::Doing;
use super::sql::{MARK_PUBLISHED, PENDING_OUTBOX, QUARANTINE, QUARANTINED, listen};
use super::values::{Value, to_u64};
use crate::events::Event;
use crate::records::Reservation;
use crate::store::{Outbox, OutboxEntry, Quarantined, StoreError, note_quarantined};

impl Outbox for PgStore {
    /// Up to `limit` entries; an entry that does not decode is quarantined on the way (and
    /// the batch is that much shorter: the next call reads past it).
    async fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let doing = Doing::all("read", "outbox");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(doing, PENDING_OUTBOX, &[&limit]).await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
            let subject: &str = row.try_get(1).map_err(|error| self.failed(doing, error))?;
            let payload: &str = row.try_get(2).map_err(|error| self.failed(doing, error))?;
            let seq = to_u64(seq, "outbox seq").map_err(|why| self.corrupt(doing, why))?;
            match Event::decode(subject, payload.as_bytes()) {
                Ok(event) => entries.push(OutboxEntry { seq, event }),
                Err(error) => {
                    self.quarantine(seq, &format!("does not decode: {error}"))
                        .await?
                }
            }
        }
        Ok(entries)
    }

    async fn quarantine(&self, seq: u64, error: &str) -> Result<(), StoreError> {
        let doing = Doing::all("quarantine in", "outbox");
        let Ok(key) = i64::try_from(seq) else {
            return Ok(());
        };
        let rows = self.query(doing, QUARANTINE, &[&key, &error]).await?;
        if let Some(row) = rows.first() {
            let subject: &str = row.try_get(0).map_err(|error| self.failed(doing, error))?;
            note_quarantined(seq, subject, error);
        }
        Ok(())
    }

    async fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        let doing = Doing::all("read", "outbox quarantine");
        let rows = self.query(doing, QUARANTINED, &[]).await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(|error| self.failed(doing, error))?;
                Ok(Quarantined {
                    seq: to_u64(seq, "quarantined seq").map_err(|why| self.corrupt(doing, why))?,
                    subject: row.try_get(1).map_err(|error| self.failed(doing, error))?,
                    payload: row.try_get(2).map_err(|error| self.failed(doing, error))?,
                    error: row.try_get(3).map_err(|error| self.failed(doing, error))?,
                })
            })
            .collect()
    }

    async fn mark_published(&self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let doing = Doing::all("mark published in", "outbox");
        // A seq beyond bigint names no entry; dropping it deletes nothing, as intended.
        let seqs: Vec<i64> = seqs
            .iter()
            .filter_map(|seq| i64::try_from(*seq).ok())
            .collect();
        self.query(doing, MARK_PUBLISHED, &[&seqs]).await?;
        Ok(())
    }

    async fn outbox_written(&self) {
        self.listen_for_outbox();
        let notified = self.inner.outbox_signal.notified();
        // Either outcome means "look now"; the timeout is the polling fallback.
        let _ = tokio::time::timeout(self.inner.outbox_poll, notified).await;
    }
}

/// The subject and payload parameters of an outbox entry.
pub(super) fn outbox_values(event: &Event) -> Result<[Value; 2], String> {
    let payload = event.encode().map_err(|error| error.to_string())?;
    let payload = String::from_utf8(payload).map_err(|error| error.to_string())?;
    Ok([
        Value::Static(event.subject().as_str()),
        Value::Owned(payload),
    ])
}

/// A reservation number no ticket reaches: it stands for the number an order-book call will
/// count, in the event [`SplitEvent::around_reservation`] splits.
pub(super) const RESERVATION_PLACEHOLDER: Reservation = Reservation::MAX;

/// An order-book event as the server-side call takes it: its subject, and its payload's text
/// before and after the reservation number, which the call counts and puts between them. All
/// `None`: no event.
pub(super) struct SplitEvent {
    pub(super) subject: Option<&'static str>,
    pub(super) head: Option<String>,
    pub(super) tail: Option<String>,
}

impl SplitEvent {
    /// Splits `event`, whose reservation number is [`RESERVATION_PLACEHOLDER`], around that
    /// number. The placeholder is found as the `reservation` key's value: inside a JSON
    /// string a quote is escaped, so no string field can hold that text.
    pub(super) fn around_reservation(event: Option<&Event>) -> Result<Self, String> {
        let Some(event) = event else {
            return Ok(Self {
                subject: None,
                head: None,
                tail: None,
            });
        };
        let payload = event.encode().map_err(|error| error.to_string())?;
        let payload = String::from_utf8(payload).map_err(|error| error.to_string())?;
        let key = "\"reservation\":";
        let field = format!("{key}{RESERVATION_PLACEHOLDER}");
        let mut found = payload.match_indices(&field);
        let (Some((at, _)), None) = (found.next(), found.next()) else {
            return Err(format!(
                "the {} payload does not hold one reservation field: {payload}",
                event.subject()
            ));
        };
        let number_at = at + key.len();
        Ok(Self {
            subject: Some(event.subject().as_str()),
            head: Some(payload[..number_at].to_owned()),
            tail: Some(payload[number_at + field.len() - key.len()..].to_owned()),
        })
    }

    /// The three statement parameters: subject, head, tail.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.subject, &self.head, &self.tail]
    }
}

/// Aborts its task when dropped: the listener stops with the store.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStore {
    /// Starts the outbox listener once.
    fn listen_for_outbox(&self) {
        self.inner.listener.get_or_init(|| {
            AbortOnDrop(tokio::spawn(outbox_listener(
                self.inner.config.clone(),
                format!("outbox:{}", self.inner.schema),
                Arc::clone(&self.inner.outbox_signal),
                self.inner.outbox_poll,
            )))
        });
    }
}

/// Keeps one LISTEN connection open and turns its notifications into wake-ups; reconnects
/// after `retry` if the connection is lost (the relay polls meanwhile).
async fn outbox_listener(
    config: tokio_postgres::Config,
    channel: String,
    signal: Arc<Notify>,
    retry: Duration,
) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                let listen_sql = listen(&channel);
                let listen = client.batch_execute(&listen_sql);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        listened = &mut listen, if !listening => match listened {
                            Ok(()) => {
                                listening = true;
                                // Entries written before LISTEN took effect were not
                                // announced: have the relay look once.
                                signal.notify_one();
                            }
                            Err(error) => {
                                tracing::warn!(%error, %channel, "outbox LISTEN failed");
                                break;
                            }
                        },
                        message = messages.next() => match message {
                            Some(Ok(AsyncMessage::Notification(_))) => signal.notify_one(),
                            Some(Ok(_)) => {}
                            Some(Err(error)) => {
                                tracing::warn!(%error, %channel, "outbox listener lost its connection");
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, %channel, "outbox listener cannot connect");
            }
        }
        tokio::time::sleep(retry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::Price;
    use crate::records::{Order, OrderStatus, Timestamp, UserId};

    /// An order whose user id holds the placeholder's digits and the key's text, to be
    /// mistaken for the field if anything could be.
    fn order() -> Order {
        Order {
            id: "5f8d0d55b54764421b7156ca".parse().unwrap(),
            user_id: UserId::new(format!("\"reservation\":{RESERVATION_PLACEHOLDER}")),
            status: OrderStatus::Created,
            expires_at: Timestamp::from_unix_millis(1_795_791_600_000),
            ticket_id: "5f8d0d55b54764421b7156c9".parse().unwrap(),
            version: 0,
        }
    }

    fn joined(split: &SplitEvent, reservation: Reservation) -> String {
        let (Some(head), Some(tail)) = (&split.head, &split.tail) else {
            panic!("no payload");
        };
        format!("{head}{reservation}{tail}")
    }

    #[test]
    fn a_split_payload_joined_around_the_number_is_the_events_own_encoding() {
        fn created(order: &Order, reservation: Reservation) -> Event {
            let price = Price::from_cents(1050).unwrap();
            Event::OrderCreated(order.created_event(price, reservation))
        }
        fn cancelled(order: &Order, reservation: Reservation) -> Event {
            Event::OrderCancelled(order.cancelled_event(reservation))
        }
        let cases: [fn(&Order, Reservation) -> Event; 2] = [created, cancelled];
        for event_at in cases {
            let order = order();
            let placeholder = event_at(&order, RESERVATION_PLACEHOLDER);
            let split = SplitEvent::around_reservation(Some(&placeholder)).unwrap();
            assert_eq!(split.subject, Some(placeholder.subject().as_str()));
            for reservation in [1, 7, 1234] {
                let expected = event_at(&order, reservation).encode().unwrap();
                assert_eq!(joined(&split, reservation).as_bytes(), expected.as_slice());
            }
        }
    }

    #[test]
    fn no_event_is_no_parameters() {
        let split = SplitEvent::around_reservation(None).unwrap();
        assert!(split.subject.is_none() && split.head.is_none() && split.tail.is_none());
    }
}
