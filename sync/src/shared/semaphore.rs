//! `Send + Sync` semaphores, first-in first-out with hand-off, for greenlets on any hub
//! and plain threads.
//!
//! As with [`crate::semaphore`], a released permit is *handed* to the longest waiter,
//! which owns it from that moment: a holder that releases and asks again queues up behind
//! the waiters, wherever they wait. A waiter handed a permit just as it is killed or its
//! `with_timeout` expires passes the permit on (see `waiters.rs`); one whose own timeout
//! passes at the same moment keeps it and returns a guard. So a permit is never lost.
//!
//! [`Semaphore<K>`](Semaphore) is one type for both kinds, as in [`crate::semaphore`]:
//! `shared::Semaphore` is `Semaphore<Unbounded>`, `shared::BoundedSemaphore` is
//! `Semaphore<Bounded>`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::waiters::{Wait, WaitQueue, Wakes};
use crate::semaphore::{Bounded, Kind, ReleaseError, Unbounded};

/// The permit counter and its FIFO waiters, under the semaphore's lock.
struct Permits {
    /// Free permits. Never above zero while someone waits: a release hands its permit over.
    available: usize,
    /// The permits it was made with: what a [`Bounded`] release may not exceed.
    initial: usize,
    waiters: WaitQueue,
}

impl Permits {
    /// Returns a permit: to the longest waiter if any, else to the pool.
    fn release(&mut self, wakes: &mut Wakes<Self>) {
        match self.waiters.notify_one() {
            Some(wake) => wakes.add(Some(wake), Permits::release),
            None => self.available += 1,
        }
    }
}

/// A counting semaphore shared by greenlets on any hub and plain threads; waiters are
/// served first-in first-out. Cloning gives another handle to the same semaphore.
///
/// ```
/// use verdant_sync::shared::Semaphore;
///
/// let slots = Semaphore::new(1);
/// let held = slots.acquire();
/// let s = slots.clone();
/// let thread = std::thread::spawn(move || {
///     let _permit = s.acquire(); // waits for `held`
///     s.available()
/// });
/// while slots.waiting() == 0 {
///     std::thread::yield_now();
/// }
/// drop(held); // handed to the waiting thread
/// assert_eq!(thread.join().unwrap(), 0);
/// assert_eq!(slots.available(), 1);
/// ```
pub struct Semaphore<K = Unbounded> {
    permits: Arc<Mutex<Permits>>,
    kind: PhantomData<K>,
}

impl<K: Kind> Semaphore<K> {
    /// A semaphore with `n` permits.
    pub fn new(n: usize) -> Semaphore<K> {
        let permits = Permits { available: n, initial: n, waiters: WaitQueue::default() };
        Semaphore { permits: Arc::new(Mutex::new(permits)), kind: PhantomData }
    }

    /// Waits (first-in first-out) for a permit; the guard returns it when dropped.
    pub fn acquire(&self) -> SemaphoreGuard<'_, K> {
        self.acquire_until(None, &format_args!("shared::{}::acquire()", K::NAME));
        SemaphoreGuard { owner: self }
    }

    /// Waits at most `timeout` for a permit.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_, K>> {
        let deadline = Instant::now().checked_add(timeout);
        self.acquire_until(deadline, &format_args!("shared::{}::acquire_timeout()", K::NAME))
            .then(|| SemaphoreGuard { owner: self })
    }

    /// Takes a permit if one is free right now.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_, K>> {
        let mut permits = self.permits.lock();
        if permits.available == 0 {
            return None;
        }
        permits.available -= 1;
        Some(SemaphoreGuard { owner: self })
    }

    fn acquire_until(&self, deadline: Option<Instant>, reason: &dyn fmt::Display) -> bool {
        let wait = Wait {
            lock: &self.permits,
            queue: |permits: &mut Permits| &mut permits.waiters,
            pass_on: Permits::release,
            reason,
            deadline,
        };
        let got = wait.run(|permits, granted, _| {
            if granted {
                return Some(()); // handed over by a release
            }
            // No waiter is ever passed here: a free permit means nobody waits.
            (permits.available > 0).then(|| permits.available -= 1)
        });
        got.is_some()
    }

    /// Free permits right now (gevent's `counter`).
    pub fn available(&self) -> usize {
        self.permits.lock().available
    }

    /// Whether no permit is free (an `acquire` would wait).
    pub fn locked(&self) -> bool {
        self.available() == 0
    }

    /// Greenlets and threads waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.permits.lock().waiters.len()
    }

    fn release_one(&self) {
        let mut wakes = Wakes::default();
        self.permits.lock().release(&mut wakes);
        wakes.fire(&self.permits);
    }
}

impl Semaphore<Unbounded> {
    /// Adds a permit without a guard (gevent's `release`), handing it to the longest
    /// waiter if any.
    pub fn release(&self) {
        self.release_one();
    }
}

impl Semaphore<Bounded> {
    /// Returns a permit taken without a guard (see [`std::mem::forget`] on a guard).
    ///
    /// ```
    /// let sem = verdant_sync::shared::BoundedSemaphore::new(1);
    /// std::mem::forget(sem.acquire());
    /// assert!(sem.release().is_ok());
    /// assert!(sem.release().is_err()); // would make two free permits out of one
    /// ```
    ///
    /// # Errors
    ///
    /// If all `n` permits are already free.
    pub fn release(&self) -> Result<(), ReleaseError> {
        let mut wakes = Wakes::default();
        {
            let mut permits = self.permits.lock();
            if permits.available >= permits.initial {
                return Err(ReleaseError("shared::BoundedSemaphore released too many times"));
            }
            permits.release(&mut wakes);
        }
        wakes.fire(&self.permits);
        Ok(())
    }
}

impl<K> Clone for Semaphore<K> {
    fn clone(&self) -> Self {
        Semaphore { permits: self.permits.clone(), kind: PhantomData }
    }
}

impl<K: Kind> fmt::Debug for Semaphore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let permits = self.permits.lock();
        f.debug_struct(&format!("shared::{}", K::NAME))
            .field("available", &permits.available)
            .field("waiting", &permits.waiters.len())
            .finish()
    }
}

/// Holds one permit of a shared [`Semaphore`]; dropping it returns the permit (to the
/// longest waiter first).
#[must_use = "dropping the guard releases the permit at once"]
pub struct SemaphoreGuard<'a, K: Kind = Unbounded> {
    owner: &'a Semaphore<K>,
}

impl<K: Kind> Drop for SemaphoreGuard<'_, K> {
    fn drop(&mut self) {
        self.owner.release_one();
    }
}

impl<K: Kind> fmt::Debug for SemaphoreGuard<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared::{}", K::GUARD)
    }
}
