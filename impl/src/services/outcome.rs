//! What a listener did with a delivery, and the one place that acknowledges or naks it.
//!
//! The invariant: a delivery is settled at most once. On `ack-before-save` it is acknowledged
//! before any write, and every later decision ("wait", "fail") can no longer reach the broker:
//! the event is then lost, which is the flaw that variant exists to show.

use std::time::Duration;

use crate::bus::MessageHandle;
use crate::services::update::{Ended, OnConflict};
use crate::services::{ListenerError, ServiceConfig};
use crate::store::StoreError;

/// What a listener decided about one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event's effect was written, and the delivery acknowledged.
    Applied,
    /// The event's effect was already in the store; the delivery was acknowledged.
    AlreadyApplied,
    /// The event is not applicable yet (a gap before it): nak'ed, to come back after `delay`.
    Waiting {
        /// When the broker redelivers it.
        delay: Duration,
    },
    /// The course's listener error ("Ticket not found", a duplicate, a version conflict in
    /// `conflict-nak`): not acknowledged; nak'ed with no delay, so the broker redelivers it at
    /// once and counts the delivery towards `max_deliver`.
    Failed {
        /// Why, in words.
        reason: &'static str,
    },
    /// Terminated: an event this queue group cannot ever apply (never redelivered; the bus
    /// dead-letters it).
    Terminated {
        /// Why, in words.
        reason: &'static str,
    },
    /// Acknowledged before the write (`ack-before-save`), and the write did not happen: the
    /// event is gone.
    Dropped {
        /// Why the write did not happen.
        reason: &'static str,
    },
}

/// A listener's decision that writes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The effect is already in the store: acknowledge.
    AlreadyApplied,
    /// Not applicable yet (a gap before it): come back after the gap backoff.
    Wait,
    /// The course's listener error: redeliver at once.
    Fail(&'static str),
}

/// Settles one delivery: acks and naks go through here.
pub(crate) struct Settle<'a, H> {
    message: &'a H,
    acked_before_save: bool,
    /// When to redeliver if the delivery waits on a gap or the store fails: the gap backoff
    /// at this delivery's count.
    retry_delay: Duration,
}

impl<'a, H: MessageHandle> Settle<'a, H> {
    /// Starts handling a delivery: on `ack-before-save`, acknowledges it at once (then the
    /// "after-ack-before-save" crash point).
    pub(crate) async fn begin(
        message: &'a H,
        config: &ServiceConfig,
    ) -> Result<Self, ListenerError> {
        let retry_delay = config.gap_backoff.delay(message.delivery_count());
        if config.variant.acks_after_save() {
            return Ok(Self {
                message,
                acked_before_save: false,
                retry_delay,
            });
        }
        message.ack().await?;
        fail::fail_point!(crate::services::failpoints::AFTER_ACK_BEFORE_SAVE, |_| Err(
            ListenerError::Crashed(crate::services::failpoints::AFTER_ACK_BEFORE_SAVE)
        ));
        Ok(Self {
            message,
            acked_before_save: true,
            retry_delay,
        })
    }

    /// The write is done: acknowledge.
    pub(crate) async fn applied(self) -> Result<Outcome, ListenerError> {
        self.ack().await?;
        Ok(Outcome::Applied)
    }

    /// The effect was already there: acknowledge.
    pub(crate) async fn already_applied(self) -> Result<Outcome, ListenerError> {
        self.ack().await?;
        Ok(Outcome::AlreadyApplied)
    }

    /// Not applicable yet: come back after the gap backoff.
    pub(crate) async fn wait(self) -> Result<Outcome, ListenerError> {
        let delay = self.retry_delay;
        if self.acked_before_save {
            return Ok(Outcome::Dropped {
                reason: "not applicable yet",
            });
        }
        self.message.nak(delay).await?;
        Ok(Outcome::Waiting { delay })
    }

    /// The course's listener error: no ack, redeliver at once.
    pub(crate) async fn fail(self, reason: &'static str) -> Result<Outcome, ListenerError> {
        if self.acked_before_save {
            return Ok(Outcome::Dropped { reason });
        }
        self.message.nak(Duration::ZERO).await?;
        Ok(Outcome::Failed { reason })
    }

    /// The store failed: redeliver after the gap backoff (best effort: if the nak fails too,
    /// `ack_wait` redelivers), and report the store's error.
    pub(crate) async fn backend_failed(self, error: StoreError) -> Result<Outcome, ListenerError> {
        if !self.acked_before_save
            && let Err(nak_error) = self.message.nak(self.retry_delay).await
        {
            tracing::warn!(%nak_error, "cannot nak after a store failure; ack_wait will redeliver");
        }
        Err(error.into())
    }

    /// Settles what a listener's read-decide-save came to: a write is applied; a decision
    /// without one is skipped as it says; a store failure, a conflict the variant fails on,
    /// and conflicts on every attempt as their own methods say.
    pub(crate) async fn ended<T>(self, ended: Ended<T, Skip>) -> Result<Outcome, ListenerError> {
        match ended {
            Ended::Written(_) => self.applied().await,
            Ended::Decided(Skip::AlreadyApplied) => self.already_applied().await,
            Ended::Decided(Skip::Wait) => self.wait().await,
            Ended::Decided(Skip::Fail(reason)) => self.fail(reason).await,
            Ended::Failed(error) => self.backend_failed(error).await,
            Ended::Conflicted {
                on_conflict: OnConflict::Fail,
                ..
            } => self.fail("version conflict").await,
            Ended::Conflicted {
                on_conflict: OnConflict::Reread,
                attempts,
            } => self.too_many_conflicts(attempts),
        }
    }

    /// Re-reading after conflicts did not settle the delivery: leave it to `ack_wait`.
    pub(crate) fn too_many_conflicts(self, attempts: u32) -> Result<Outcome, ListenerError> {
        tracing::error!(
            attempts,
            "listener gave up re-reading after version conflicts; ack_wait will redeliver"
        );
        Err(ListenerError::TooManyConflicts { attempts })
    }

    async fn ack(&self) -> Result<(), ListenerError> {
        if !self.acked_before_save {
            self.message.ack().await?;
        }
        Ok(())
    }
}
