//! Read, decide, save, and re-read on a version conflict: the one loop behind every change a
//! request or a delivery makes to a record it read (a ticket edit, an order cancel, a
//! reservation change on a ticket, a replica brought to an event's version).
//!
//! Each caller gives two steps: *read and decide* (read the record and decide: write this, or
//! end here with that, for example "already applied", "wait", "fail", an HTTP error), and
//! *write* (an update-if-current `save`, or the order book's `cancel`). The helper runs them
//! and, when the write meets a version conflict, either reads and decides again
//! ([`OnConflict::Reread`]) or ends on the conflict ([`OnConflict::Fail`], the course's
//! listeners in `conflict-nak` and `course`).
//!
//! The invariant: this is the only place with the attempts loop. A change reads before every
//! write, writes only what the latest read decided, and makes at most `conflict_attempts`
//! writes (at least one); each read and each write is one awaited store call, so the harness
//! steps the loop exactly as before: read, save, and after a conflict read again.

use std::future::Future;

use crate::bus::QueueGroup;
use crate::store::StoreError;
use crate::variant::Variant;

tokio::task_local! {
    /// Who is running the read-decide-save (a queue group's delivery, the expiry): the
    /// `origin` its version conflicts are counted under; unset on HTTP requests.
    static ORIGIN: QueueGroup;
}

/// Runs `work` with its version conflicts counted under `origin` (see
/// [`crate::metrics::version_conflict`]).
///
/// A plain function, not an `async fn`: an `async fn` would keep `work` beside the scope it
/// moved `work` into, and the member runtime spawns one of these per delivery.
pub(crate) fn counted_as<F: Future>(
    origin: QueueGroup,
    work: F,
) -> impl Future<Output = F::Output> {
    ORIGIN.scope(origin, work)
}

fn count_conflict() {
    let counted = ORIGIN.try_with(|origin| crate::metrics::version_conflict(origin));
    if counted.is_err() {
        crate::metrics::version_conflict(crate::metrics::ORIGIN_HTTP);
    }
}

/// What a read decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decided<W, D> {
    /// Write this (the record as read, changed).
    Write(W),
    /// Write nothing, and end with this.
    Done(D),
}

/// What a version conflict on the write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnConflict {
    /// Read again and decide again (HTTP paths always; the reference's listeners).
    Reread,
    /// End on the conflict (the course's listeners: `conflict-nak`, `course`).
    Fail,
}

impl OnConflict {
    /// What a listener of `variant` does on a conflict.
    pub(crate) fn for_listeners(variant: Variant) -> Self {
        if variant.rereads_on_conflict() {
            OnConflict::Reread
        } else {
            OnConflict::Fail
        }
    }
}

/// How a read-decide-save ended.
#[derive(Debug)]
pub(crate) enum Ended<T, D> {
    /// The write went through; what it returned.
    Written(T),
    /// The decision wrote nothing.
    Decided(D),
    /// A read or a write failed other than by a version conflict.
    Failed(StoreError),
    /// Version conflicts ended it after `attempts` writes: the first conflict under
    /// [`OnConflict::Fail`], a conflict on every attempt under [`OnConflict::Reread`] (then
    /// `attempts` is the bound).
    Conflicted {
        /// Writes tried.
        attempts: u32,
        /// The policy that ended it.
        on_conflict: OnConflict,
    },
}

/// Reads and decides, writes what was decided, and on a version conflict does what
/// `on_conflict` says, at most `attempts` times (at least once).
pub(crate) async fn read_decide_save<W, D, T, R, RF, S, SF>(
    attempts: u32,
    on_conflict: OnConflict,
    mut read_and_decide: R,
    mut write: S,
) -> Ended<T, D>
where
    R: FnMut() -> RF,
    RF: Future<Output = Result<Decided<W, D>, StoreError>>,
    S: FnMut(W) -> SF,
    SF: Future<Output = Result<T, StoreError>>,
{
    let attempts = attempts.max(1);
    for attempt in 1..=attempts {
        let change = match read_and_decide().await {
            Ok(Decided::Write(change)) => change,
            Ok(Decided::Done(done)) => return Ended::Decided(done),
            Err(error) => return Ended::Failed(error),
        };
        match write(change).await {
            Ok(written) => return Ended::Written(written),
            Err(error) if error.is_conflict() => {
                count_conflict();
                match on_conflict {
                    OnConflict::Reread => continue,
                    OnConflict::Fail => {
                        return Ended::Conflicted {
                            attempts: attempt,
                            on_conflict,
                        };
                    }
                }
            }
            Err(error) => return Ended::Failed(error),
        }
    }
    Ended::Conflicted {
        attempts,
        on_conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use std::cell::{Cell, RefCell};

    fn conflict() -> StoreError {
        StoreError::VersionConflict {
            kind: "ticket",
            id: Id::new(),
            expected: 0,
            found: 1,
        }
    }

    /// Runs the helper over a script of write results; how many reads it made, and the end.
    fn run(
        on_conflict: OnConflict,
        attempts: u32,
        writes: Vec<Result<u32, StoreError>>,
    ) -> (u32, Ended<u32, &'static str>) {
        let reads = Cell::new(0);
        let writes = RefCell::new(writes.into_iter());
        let ended = futures::executor::block_on(read_decide_save(
            attempts,
            on_conflict,
            || {
                reads.set(reads.get() + 1);
                async { Ok::<_, StoreError>(Decided::<u32, &'static str>::Write(7)) }
            },
            |change| {
                let next = writes.borrow_mut().next();
                async move {
                    assert_eq!(change, 7, "writes what the read decided");
                    next.unwrap_or_else(|| panic!("more writes than scripted"))
                }
            },
        ));
        (reads.get(), ended)
    }

    #[test]
    fn a_conflict_reads_again_and_the_next_write_wins() {
        let (reads, ended) = run(OnConflict::Reread, 5, vec![Err(conflict()), Ok(8)]);
        assert_eq!(reads, 2, "one read before each write");
        assert!(matches!(ended, Ended::Written(8)), "{ended:?}");
    }

    #[test]
    fn a_conflict_ends_the_course_listener_without_a_second_read() {
        let (reads, ended) = run(OnConflict::Fail, 5, vec![Err(conflict())]);
        assert_eq!(reads, 1);
        assert!(
            matches!(
                ended,
                Ended::Conflicted {
                    attempts: 1,
                    on_conflict: OnConflict::Fail
                }
            ),
            "{ended:?}"
        );
    }

    #[test]
    fn conflicts_on_every_attempt_give_up_after_the_bound() {
        let (reads, ended) = run(
            OnConflict::Reread,
            3,
            (0..3).map(|_| Err(conflict())).collect(),
        );
        assert_eq!(reads, 3);
        assert!(
            matches!(ended, Ended::Conflicted { attempts: 3, .. }),
            "{ended:?}"
        );
        let (reads, ended) = run(OnConflict::Reread, 0, vec![Err(conflict())]);
        assert_eq!(reads, 1, "zero attempts still tries once");
        assert!(
            matches!(ended, Ended::Conflicted { attempts: 1, .. }),
            "{ended:?}"
        );
    }

    #[test]
    fn another_store_error_ends_at_once() {
        let unavailable = StoreError::Backend {
            message: "down".to_owned(),
            source: None,
        };
        let (reads, ended) = run(OnConflict::Reread, 5, vec![Err(unavailable)]);
        assert_eq!(reads, 1);
        assert!(matches!(ended, Ended::Failed(_)), "{ended:?}");
    }

    #[test]
    fn a_decision_to_write_nothing_ends_before_any_write() {
        let ended = futures::executor::block_on(read_decide_save(
            5,
            OnConflict::Reread,
            || async { Ok::<_, StoreError>(Decided::<u32, _>::Done("already applied")) },
            |_: u32| async { panic!("nothing to write") as Result<u32, StoreError> },
        ));
        assert!(
            matches!(ended, Ended::Decided("already applied")),
            "{ended:?}"
        );
    }
}
