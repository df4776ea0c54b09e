//! Locking the harness's shared bookkeeping.
//!
//! The invariant: every critical section in the harness leaves its data consistent before it
//! can panic, so a lock poisoned by a panicking task (a listener the soak aborts, a failing
//! assertion elsewhere) still guards good data, and [`locked`] hands it out instead of
//! failing a second time.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Holds `mutex`, poisoned or not (see the module docs).
pub fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
