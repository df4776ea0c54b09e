//! Synchronisation primitives, from `std` normally and from `loom` under `--cfg loom`.
//!
//! The rest of the crate imports locks from here and never names `std::sync` or `loom::sync`,
//! so the loom tests explore exactly the code that runs in production. Lock poisoning is not
//! an error here: every critical section in this crate leaves its data consistent before it can
//! panic (there is nothing that can panic inside one), so a poisoned lock's data is still good.

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
use loom::sync::{Mutex as InnerMutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Mutex as InnerMutex, MutexGuard};

/// A mutual-exclusion lock whose `lock` never fails (see the module docs on poisoning).
#[derive(Debug, Default)]
pub struct Mutex<T>(InnerMutex<T>);

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Self(InnerMutex::new(value))
    }

    /// Blocks until the lock is held.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
