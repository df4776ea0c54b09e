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

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ticketing::bus::BusError;
use ticketing::events::Event;
use ticketing::id::{self, Id};
use ticketing::records::Version;
use ticketing::store::StoreError;

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

/// An operation a task performed and its result, kept so that a copy of the task can be
/// re-created on a copy of the world ([`Task::recreate`]): the result is shared, never changed.
#[derive(Clone)]
struct Performed {
    op: Op,
    result: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for Performed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)
    }
}

/// A result a gated wrapper can keep and hand out again: a copy of it, if it can be copied
/// (a backend error's source cannot; the memory store never returns one).
pub trait Replayable: Sized + Send + Sync + 'static {
    /// A copy of the result.
    fn replica(&self) -> Option<Self>;
}

impl<T: Clone + Send + Sync + 'static> Replayable for Result<T, StoreError> {
    fn replica(&self) -> Option<Self> {
        Some(match self {
            Ok(value) => Ok(value.clone()),
            Err(StoreError::VersionConflict {
                kind,
                id,
                expected,
                found,
            }) => Err(StoreError::VersionConflict {
                kind,
                id: *id,
                expected: *expected,
                found: *found,
            }),
            Err(StoreError::NotFound { kind, id }) => Err(StoreError::NotFound { kind, id: *id }),
            Err(StoreError::Duplicate { kind, id }) => Err(StoreError::Duplicate { kind, id: *id }),
            Err(StoreError::TicketReserved {
                ticket_id,
                order_id,
            }) => Err(StoreError::TicketReserved {
                ticket_id: *ticket_id,
                order_id: *order_id,
            }),
            Err(StoreError::Backend { .. }) => return None,
        })
    }
}

impl<T: Clone + Send + Sync + 'static> Replayable for Result<T, BusError> {
    fn replica(&self) -> Option<Self> {
        Some(match self {
            Ok(value) => Ok(value.clone()),
            Err(BusError::Closed) => Err(BusError::Closed),
            Err(BusError::Broker(message)) => Err(BusError::Broker(message.clone())),
            Err(_) => return None,
        })
    }
}

#[derive(Debug, Default)]
struct GateState {
    waiting: Option<Op>,
    permits: u32,
    /// The operation let through whose result is not recorded yet.
    passing: Option<Op>,
    /// Every operation performed, with its result, in order.
    performed: Vec<Performed>,
    /// While a task is re-created: the original's operations not handed out again yet.
    replaying: VecDeque<Performed>,
    /// Why re-creating the task went wrong, if it did.
    astray: Option<String>,
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
                state.passing = state.waiting.take().or_else(|| op.take());
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

    /// Performs `op` for the task, as `work`: waits for a permit, runs `work`, and records a
    /// copy of its result. While the task is re-created ([`Task::recreate`]), answers instead
    /// with the result `op` had on the original, and neither waits nor runs `work`.
    pub async fn perform<T: Replayable>(&self, op: Op, work: impl AsyncFnOnce() -> T) -> T {
        if let Some(result) = self.replayed(&op) {
            return result;
        }
        self.pass(op).await;
        let result = work().await;
        self.record(&result);
        result
    }

    /// While the task is re-created, the result `op` had on the original; otherwise `None`.
    /// An operation other than the original's next one ends the re-creation: the task then
    /// parks at the gate, and [`Task::recreate`] reports it.
    fn replayed<T: Replayable>(&self, op: &Op) -> Option<T> {
        let mut state = self.state();
        let next = state.replaying.pop_front()?;
        let copied = (next.op == *op)
            .then(|| next.result.downcast_ref::<T>().and_then(T::replica))
            .flatten();
        match copied {
            Some(result) => {
                state.performed.push(next);
                Some(result)
            }
            None => {
                state.astray = Some(format!(
                    "asked for {op} where the original performed {}",
                    next.op
                ));
                state.replaying.clear();
                None
            }
        }
    }

    /// Keeps a copy of `result`, the result of the operation just let through.
    fn record<T: Replayable>(&self, result: &T) {
        let mut state = self.state();
        let Some(op) = state.passing.take() else {
            return;
        };
        match result.replica() {
            Some(copy) => state.performed.push(Performed {
                op,
                result: Arc::new(copy),
            }),
            // The task cannot be re-created past this operation.
            None => state.astray = Some(format!("the result of {op} cannot be copied")),
        }
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
    /// Every id the task made, in order ([`id::script`]).
    ids: Vec<Id>,
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
            ids: Vec::new(),
        }
    }

    /// A copy of `original` for a copy of its world: `future` is the original's work made
    /// afresh, reaching the copy's stores and broker through `gate` (a new one). Each
    /// operation the original performed is answered with the original's result instead of
    /// being performed again, and each id it made is made again, so the copy parks where the
    /// original is parked and changes nothing on the way. `Err` says where the copy went
    /// another way (the work is not deterministic given its results and ids).
    pub fn recreate(
        original: &Task<T>,
        gate: Gate,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<Task<T>, String> {
        if original.future.is_none() {
            return Err("the task already completed".into());
        }
        let mut task = Task::new(gate, future);
        if !original.started {
            return Ok(task);
        }
        {
            let performed = original.gate.state();
            if let Some(why) = &performed.astray {
                return Err(why.clone());
            }
            task.gate.state().replaying = performed.performed.iter().cloned().collect();
        }
        let mut ids: VecDeque<Id> = original.ids.iter().copied().collect();
        let polled = task
            .poll_with(&mut ids)
            .map_err(|error| error.to_string())?;
        let mut state = task.gate.state();
        if let Some(why) = state.astray.take() {
            return Err(why);
        }
        if polled.is_ready() {
            return Err("the copy completed where the original is parked".into());
        }
        if !state.replaying.is_empty() || !ids.is_empty() {
            return Err("the copy parked before the original's last operation".into());
        }
        let parked = original.gate.waiting();
        if state.waiting != parked {
            return Err(format!(
                "the copy parked at {:?} where the original is parked at {parked:?}",
                state.waiting
            ));
        }
        drop(state);
        task.passed = original.passed.clone();
        Ok(task)
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
        self.poll_with(&mut VecDeque::new())
    }

    /// Polls once, with [`Id::new`] answered from `ids` first; every id made is kept.
    fn poll_with(&mut self, ids: &mut VecDeque<Id>) -> Result<Poll<T>, GateError> {
        let future = self.future.as_mut().ok_or(GateError::Completed)?;
        self.started = true;
        let mut context = Context::from_waker(Waker::noop());
        let polled = id::script::run(ids, &mut self.ids, || future.as_mut().poll(&mut context));
        match polled {
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

    /// A task whose three reads each go through [`Gate::perform`], as the gated wrappers do:
    /// answered from the original's record while re-created, else performed (the result is
    /// the count of reads `performed` so far) and recorded. It returns the results' sum.
    fn recording_task(gate: Gate, performed: Arc<Mutex<u32>>) -> Task<u32> {
        let inner = gate.clone();
        Task::new(gate, async move {
            let mut sum = 0;
            for what in ["first", "second", "third"] {
                let result: Result<u32, StoreError> = inner
                    .perform(read(what), async || {
                        let mut count = performed.lock().unwrap();
                        *count += 1;
                        Ok(*count)
                    })
                    .await;
                sum += result.unwrap();
            }
            sum
        })
    }

    #[test]
    fn a_recreated_task_parks_where_the_original_is_with_its_results_and_performs_nothing() {
        let performed = Arc::new(Mutex::new(0));
        let mut original = recording_task(Gate::new(), Arc::clone(&performed));
        original.advance(false, |op| *op == read("third")).unwrap();
        assert_eq!(*performed.lock().unwrap(), 2);

        let (gate, elsewhere) = (Gate::new(), Arc::new(Mutex::new(0)));
        let fresh = recording_task(gate.clone(), Arc::clone(&elsewhere));
        let mut copy = Task::recreate(&original, gate, fresh.future.unwrap()).unwrap();
        assert_eq!(copy.waiting(), Some(read("third")));
        assert_eq!(copy.passed(), original.passed());
        assert_eq!(*elsewhere.lock().unwrap(), 0, "the copy performed nothing");

        // The copy goes on with the original's results (1 and 2) and its own third read (its
        // first); the original with its own.
        assert_eq!(copy.run_to_completion().unwrap(), 1 + 2 + 1);
        assert_eq!(original.run_to_completion().unwrap(), 1 + 2 + 3);
        assert_eq!(
            *performed.lock().unwrap(),
            3,
            "the copy never touched the original's"
        );
    }

    #[test]
    fn a_copy_that_asks_for_other_operations_than_the_original_is_refused() {
        let mut original = recording_task(Gate::new(), Arc::new(Mutex::new(0)));
        original.advance(false, |op| *op == read("third")).unwrap();
        let gate = Gate::new();
        let inner = gate.clone();
        let astray = async move {
            let performed: Result<u32, StoreError> =
                inner.perform(read("another"), async || Ok(0)).await;
            performed.unwrap_or_default()
        };
        let refused = Task::recreate(&original, gate, astray).unwrap_err();
        assert!(refused.contains("another"), "{refused}");
    }

    #[test]
    fn a_recreated_task_makes_the_ids_the_original_made() {
        let make = |gate: Gate| {
            let inner = gate.clone();
            Task::new(gate, async move {
                let made = Id::new();
                inner.pass(Op::Ack).await;
                made
            })
        };
        let mut original = make(Gate::new());
        original.advance(false, |_| true).unwrap();
        let gate = Gate::new();
        let fresh = make(gate.clone());
        let mut copy = Task::recreate(&original, gate, fresh.future.unwrap()).unwrap();
        assert_eq!(copy.run_to_completion(), original.run_to_completion());
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
