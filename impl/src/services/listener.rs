//! The listener seam: what a queue group does with the events delivered to it. Each service's
//! listeners implement [`Listener`] (the tickets service's in `tickets::listeners`, the orders
//! service's in `orders::listeners`): the group's name, its subjects, and `handle`, which
//! routes one decoded event to the listener of its subject.
//!
//! Everything that delivers events calls this one trait: the member runtime
//! (`services::member`) under `ticketing serve` and the soak, and the conformance
//! harness, which steps `handle` one store or broker call at a time.
//!
//! The invariant: `handle` settles the delivery itself (ack only once the effect is durable,
//! nak to see it again, term to give up on it) and reports what it decided; an event on a
//! subject the group does not listen on is terminated, since waiting cannot make it
//! applicable.

use std::future::Future;

use crate::bus::MessageHandle;
use crate::events::{Event, Subject};
use crate::services::{ListenerError, Outcome};

/// A queue group's listeners: one service's reaction to the events of its subjects.
pub trait Listener: Send + Sync + 'static {
    /// The queue group its members join (also the durable name of the group's subscription).
    const QUEUE_GROUP: &'static str;
    /// The subjects the group listens on.
    const SUBJECTS: &'static [Subject];

    /// Handles one decoded event and settles its delivery through `message` (ack when the
    /// effect is durable, nak to see it again later, term to give up on it). Returns what it
    /// decided, or why it failed (the delivery then comes back, after a nak or the ack wait).
    fn handle<M: MessageHandle>(
        &self,
        event: &Event,
        message: &M,
    ) -> impl Future<Output = Result<Outcome, ListenerError>> + Send;
}

/// Terminates a delivery on a subject the group does not listen on (`reason` names the
/// group); it cannot become applicable by waiting.
pub(crate) async fn terminate_unlistened<M: MessageHandle>(
    event: &Event,
    message: &M,
    reason: &'static str,
) -> Result<Outcome, ListenerError> {
    tracing::warn!(subject = %event.subject(), "{reason}");
    message.term(reason).await?;
    Ok(Outcome::Terminated { reason })
}
