//! Deterministic stepping: gates, gated tasks, and how far one model step advances a task.
//!
//! Every future the harness runs (an HTTP domain operation, a listener handling one
//! delivery) reaches the store and the broker only through wrappers that first wait at the
//! future's own [`Gate`]. The gate records the operation the future is about to perform and
//! lets exactly one operation through per permit. The harness polls the future itself, with a
//! no-op waker: no runtime, no thread, no timer. Granting a permit and polling again runs that
//! one operation (the memory store and the broker core are synchronous) and parks the future
//! at its next gate, or completes it.
//!
//! The invariant: between two polls a task is either complete or parked at its gate with
//! exactly one recorded operation ([`Gate::waiting`]); nothing it does reaches the store or
//! the broker without a permit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ticketing::events::Event;
use ticketing::id::Id;
use ticketing::records::Version;

/// An operation a task waits to perform, with the arguments the abstraction function reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A read: a record by id (`find_by_id`, also `find_by_event`), a listing, the active
    /// order of a ticket, a reservation count.
    Read {
        /// Which read.
        what: &'static str,
        /// The record (or ticket) read.
        id: Option<Id>,
    },
    /// An insert of a record at the version it carries.
    Insert {
        /// The record kind.
        kind: &'static str,
        /// The record.
        id: Id,
        /// Its version.
        version: Version,
    },
    /// An update-if-current of a record read at `read_version`.
    Save {
        /// The record kind.
        kind: &'static str,
        /// The record.
        id: Id,
        /// The version it was read at.
        read_version: Version,
    },
    /// The order book's reservation (check-and-insert, or the racy insert).
    Reserve {
        /// The ticket reserved.
        ticket: Id,
    },
    /// The order book's cancellation.
    Cancel {
        /// The order.
        order: Id,
        /// The version it was read at.
        read_version: Version,
    },
    /// A publish of `event` (the no-outbox paths).
    Publish {
        /// The event.
        event: Event,
    },
    /// Acknowledging the delivery.
    Ack,
    /// Not acknowledging it: redeliver after `delay`.
    Nak {
        /// The delay asked for.
        delay: Duration,
    },
    /// Terminating it.
    Term,
}

/// The kinds of member step the model names (`model::state::Step` without arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// A read (or the replica's insert, which is `ticket:created`'s read-and-decide).
    Read,
    /// An update-if-current.
    Save,
    /// A publish.
    Publish,
    /// An acknowledgement.
    Ack,
}

impl Op {
    /// The member step this operation is, if the model has one for it.
    pub fn step_kind(&self) -> Option<StepKind> {
        match self {
            Op::Read { .. } | Op::Insert { .. } => Some(StepKind::Read),
            Op::Save { .. } => Some(StepKind::Save),
            Op::Publish { .. } => Some(StepKind::Publish),
            Op::Ack => Some(StepKind::Ack),
            Op::Reserve { .. } | Op::Cancel { .. } | Op::Nak { .. } | Op::Term => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Read { what, id: Some(id) } => write!(f, "{what}({id})"),
            Op::Read { what, id: None } => write!(f, "{what}"),
            Op::Insert { kind, id, version } => write!(f, "insert {kind} {id} at v{version}"),
            Op::Save {
                kind,
                id,
                read_version,
            } => write!(f, "save {kind} {id} read at v{read_version}"),
            Op::Reserve { ticket } => write!(f, "reserve ticket {ticket}"),
            Op::Cancel {
                order,
                read_version,
            } => write!(f, "cancel order {order} read at v{read_version}"),
            Op::Publish { event } => write!(
                f,
                "publish {} {} v{}",
                event.subject(),
                event.record_id(),
                event.version()
            ),
            Op::Ack => f.write_str("ack"),
            Op::Nak { delay } => write!(f, "nak (delay {delay:?})"),
            Op::Term => f.write_str("term"),
        }
    }
}

#[derive(Debug, Default)]
struct GateState {
    waiting: Option<Op>,
    permits: u32,
}

/// One task's gate. Clones share it: the task's store, publisher and message handle each
/// hold one.
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<Mutex<GateState>>);

impl Gate {
    /// A closed gate with no permit.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        // Nothing panics while holding it; a poisoned gate's state is still consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a permit lets `op` through (the caller performs `op` right after).
    pub async fn pass(&self, op: Op) {
        let mut op = Some(op);
        std::future::poll_fn(move |_| {
            let mut state = self.state();
            if state.permits > 0 {
                state.permits -= 1;
                state.waiting = None;
                Poll::Ready(())
            } else {
                if let Some(op) = op.take() {
                    state.waiting = Some(op);
                }
                Poll::Pending
            }
        })
        .await
    }

    /// The operation the task is parked at, if it is parked at this gate.
    pub fn waiting(&self) -> Option<Op> {
        self.state().waiting.clone()
    }

    /// Lets one operation through (at the task's next poll).
    pub fn grant(&self) {
        self.state().permits += 1;
    }
}

/// Why a task could not be advanced as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// More operations than one model step can hold: the task does not stop where the
    /// model's step ends.
    #[error("more than {limit} operations in one step (last: {last})")]
    TooManyOperations {
        /// The bound.
        limit: usize,
        /// The operation it was parked at when the bound was hit.
        last: Op,
    },
    /// The task returned `Pending` without waiting at its gate: it awaits something the
    /// harness does not control (a timer, a channel).
    #[error("the task is parked outside its gate")]
    ParkedOutsideGate,
    /// The task already completed.
    #[error("the task already completed")]
    Completed,
}

/// Where a task stands after [`Task::advance`].
#[derive(Debug, PartialEq, Eq)]
pub enum Parked<T> {
    /// Parked at its gate, waiting to perform this operation.
    At(Op),
    /// Completed with this output.
    Done(T),
}

/// Operations a task may pass in one model step before the harness calls it a divergence.
pub const OPERATIONS_PER_STEP: usize = 32;

/// A future the harness polls by hand, with its gate.
pub struct Task<T> {
    future: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
    gate: Gate,
    started: bool,
    /// Every operation let through, in order (for reports).
    passed: Vec<Op>,
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("waiting", &self.gate.waiting())
            .field("passed", &self.passed)
            .field("done", &self.future.is_none())
            .finish()
    }
}

impl<T> Task<T> {
    /// A task running `future`, which must reach the outside world only through `gate`. It
    /// does not run until first advanced.
    pub fn new(gate: Gate, future: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            future: Some(Box::pin(future)),
            gate,
            started: false,
            passed: Vec::new(),
        }
    }

    /// The operation the task is parked at.
    pub fn waiting(&self) -> Option<Op> {
        if self.future.is_some() {
            self.gate.waiting()
        } else {
            None
        }
    }

    /// Every operation let through so far, in order.
    pub fn passed(&self) -> &[Op] {
        &self.passed
    }

    fn poll(&mut self) -> Result<Poll<T>, GateError> {
        let future = self.future.as_mut().ok_or(GateError::Completed)?;
        self.started = true;
        let mut context = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => {
                self.future = None;
                Ok(Poll::Ready(output))
            }
            Poll::Pending if self.gate.waiting().is_none() => Err(GateError::ParkedOutsideGate),
            Poll::Pending => Ok(Poll::Pending),
        }
    }

    fn grant_and_poll(&mut self) -> Result<Poll<T>, GateError> {
        if let Some(op) = self.gate.waiting() {
            self.passed.push(op);
        }
        self.gate.grant();
        self.poll()
    }

    /// Runs the task until it parks at an operation `stop` accepts, or completes. A task not
    /// started yet is started first; with `pass_first`, the operation it is parked at is let
    /// through before `stop` is consulted (a step that performs the operation the task waits
    /// at). At most [`OPERATIONS_PER_STEP`] operations pass.
    pub fn advance(
        &mut self,
        pass_first: bool,
        stop: impl Fn(&Op) -> bool,
    ) -> Result<Parked<T>, GateError> {
        if self.future.is_none() {
            return Err(GateError::Completed);
        }
        // A task parked already is looked at before anything is let through.
        let mut polled = if self.started {
            Poll::Pending
        } else {
            self.poll()?
        };
        if pass_first && polled.is_pending() {
            polled = self.grant_and_poll()?;
        }
        let mut passed = 0;
        loop {
            match polled {
                Poll::Ready(output) => return Ok(Parked::Done(output)),
                Poll::Pending => {
                    let op = self.gate.waiting().ok_or(GateError::ParkedOutsideGate)?;
                    if stop(&op) {
                        return Ok(Parked::At(op));
                    }
                    if passed == OPERATIONS_PER_STEP {
                        return Err(GateError::TooManyOperations {
                            limit: OPERATIONS_PER_STEP,
                            last: op,
                        });
                    }
                    passed += 1;
                    polled = self.grant_and_poll()?;
                }
            }
        }
    }

    /// Runs the task to completion (every operation let through, within the bound).
    pub fn run_to_completion(&mut self) -> Result<T, GateError> {
        match self.advance(false, |_| false)? {
            Parked::Done(output) => Ok(output),
            Parked::At(last) => Err(GateError::TooManyOperations {
                limit: OPERATIONS_PER_STEP,
                last,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(what: &'static str) -> Op {
        Op::Read { what, id: None }
    }

    /// A task that passes three gated operations, counting each one performed.
    fn counting_task() -> (Task<u32>, Arc<Mutex<u32>>) {
        let gate = Gate::new();
        let performed = Arc::new(Mutex::new(0));
        let (inner, count) = (gate.clone(), Arc::clone(&performed));
        let task = Task::new(gate, async move {
            for what in ["first", "second", "third"] {
                inner.pass(read(what)).await;
                *count.lock().unwrap() += 1;
            }
            *count.lock().unwrap()
        });
        (task, performed)
    }

    #[test]
    fn a_task_parks_at_its_first_operation_without_performing_it() {
        let (mut task, performed) = counting_task();
        assert_eq!(task.waiting(), None, "not started");
        let parked = task.advance(false, |_| true).unwrap();
        assert_eq!(parked, Parked::At(read("first")));
        assert_eq!(*performed.lock().unwrap(), 0);
        assert_eq!(task.waiting(), Some(read("first")));
    }

    #[test]
    fn one_permit_lets_exactly_one_operation_through() {
        let (mut task, performed) = counting_task();
        task.advance(false, |_| true).unwrap();
        let parked = task.advance(true, |_| true).unwrap();
        assert_eq!(parked, Parked::At(read("second")));
        assert_eq!(*performed.lock().unwrap(), 1);
        assert_eq!(task.passed(), &[read("first")]);
    }

    #[test]
    fn advance_passes_operations_until_the_stop_accepts_one() {
        let (mut task, performed) = counting_task();
        let parked = task.advance(false, |op| *op == read("third")).unwrap();
        assert_eq!(parked, Parked::At(read("third")));
        assert_eq!(*performed.lock().unwrap(), 2);
        assert_eq!(task.run_to_completion().unwrap(), 3);
        assert_eq!(task.waiting(), None);
        assert_eq!(task.advance(true, |_| true), Err(GateError::Completed));
    }

    #[test]
    fn a_task_that_never_stops_is_cut_off_at_the_bound() {
        let gate = Gate::new();
        let inner = gate.clone();
        let mut task = Task::new(gate, async move {
            loop {
                inner.pass(Op::Ack).await;
            }
        });
        let error = task.run_to_completion().unwrap_err();
        assert_eq!(
            error,
            GateError::TooManyOperations {
                limit: OPERATIONS_PER_STEP,
                last: Op::Ack
            }
        );
    }

    #[test]
    fn a_task_waiting_on_anything_but_its_gate_is_reported() {
        let mut task = Task::new(Gate::new(), std::future::pending::<()>());
        assert_eq!(
            task.advance(false, |_| true),
            Err(GateError::ParkedOutsideGate)
        );
    }

    #[test]
    fn operations_name_the_member_step_the_model_has_for_them() {
        let id = Id::new();
        assert_eq!(read("find").step_kind(), Some(StepKind::Read));
        let insert = Op::Insert {
            kind: "ticket replica",
            id,
            version: 0,
        };
        assert_eq!(insert.step_kind(), Some(StepKind::Read));
        let save = Op::Save {
            kind: "ticket",
            id,
            read_version: 2,
        };
        assert_eq!(save.step_kind(), Some(StepKind::Save));
        assert_eq!(Op::Ack.step_kind(), Some(StepKind::Ack));
        assert_eq!(
            Op::Nak {
                delay: Duration::ZERO
            }
            .step_kind(),
            None
        );
        assert_eq!(Op::Reserve { ticket: id }.step_kind(), None);
    }
}
