//! Semaphores and locks, with first-in first-out hand-off.
//!
//! When a permit is released while greenlets wait, it is not put back in the pool for
//! whoever asks first: it is *handed* to the longest-waiting greenlet ([`Waker::grant`]),
//! which owns it from that moment. So a greenlet that releases a lock and immediately asks
//! for it again queues up behind the waiters; two greenlets contending for one lock take
//! turns. A waiter that is killed or times out after being handed a permit passes it on.
//!
//! [`Waker::grant`]: verdant_hub::park::Waker::grant
//!
//! [`Semaphore<K>`](Semaphore) is one type for gevent's two semaphores; its kind `K` says
//! what a release without a guard may do: [`Unbounded`] (`verdant_sync::Semaphore`) adds a
//! permit, [`Bounded`] (`verdant_sync::BoundedSemaphore`) refuses to go past the initial
//! count. Everything else is written once, for both. [`Lock`] and [`RLock`] share the
//! permit counter.

use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::park::{self, WaitList};

/// The permit counter and FIFO waiters shared by every type in this module.
struct Permits {
    available: Cell<usize>,
    /// The permits it was made with: what a [`Bounded`] semaphore's release may not exceed.
    initial: usize,
    waiters: WaitList,
    /// `wait`/`iwait` callers, woken when a permit becomes free (they take none).
    watchers: WaitList,
}

impl Permits {
    fn new(count: usize) -> Permits {
        Permits {
            available: Cell::new(count),
            initial: count,
            waiters: WaitList::new(),
            watchers: WaitList::new(),
        }
    }

    fn try_acquire(&self) -> bool {
        let available = self.available.get();
        if available == 0 {
            return false;
        }
        self.available.set(available - 1);
        true
    }

    /// Takes a permit, waiting (FIFO) until `deadline`. Returns whether it got one.
    fn acquire_until(&self, deadline: Option<Instant>, reason: &dyn fmt::Display) -> bool {
        if self.try_acquire() {
            return true;
        }
        park::take_grant(); // start clean: a grant now can only be for this wait
        let pass_on = PassOnGrant(self);
        // Done when a release handed this greenlet a permit; a spurious wake-up waits again
        // (at the back of the queue).
        let granted = self.waiters.wait_until(reason, deadline, park::take_grant);
        std::mem::forget(pass_on);
        granted
    }

    /// Returns a permit: to the longest-waiting live greenlet if there is one, else to
    /// the pool.
    fn release(&self) {
        if !self.waiters.grant_one() {
            let available = self.available.get();
            self.available.set(available + 1);
            if available == 0 {
                // It just became ready: tell `wait`/`iwait` (only they watch a semaphore
                // without a permit, and they register only while none is free).
                self.watchers.notify_all();
            }
        }
    }
}

/// While a greenlet waits for a permit: if it unwinds (killed, timed out) after a permit
/// was already handed to it, give the permit to the next waiter so it is not lost.
struct PassOnGrant<'a>(&'a Permits);

impl Drop for PassOnGrant<'_> {
    fn drop(&mut self) {
        if park::take_grant() {
            self.0.release();
        }
    }
}

/// The error of releasing more often than acquiring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseError(&'static str);

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Error for ReleaseError {}

/// What a release without a guard may do: the kind of a [`Semaphore`]. Implemented by
/// [`Unbounded`] and [`Bounded`] only.
pub trait Kind: sealed::Kind {}

/// The kind of gevent's `Semaphore`: a release without a guard always adds a permit, even
/// past the initial count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unbounded;

/// The kind of gevent's `BoundedSemaphore`: a release without a guard that would push the
/// free permits past the initial count is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounded;

mod sealed {
    /// What differs between the kinds, apart from `release`.
    pub trait Kind {
        /// The name of the semaphore type, for `Debug` and for what a waiter waits on.
        const NAME: &'static str;
        /// The name of its guard type, for `Debug`.
        const GUARD: &'static str;
    }
}

impl sealed::Kind for Unbounded {
    const NAME: &'static str = "Semaphore";
    const GUARD: &'static str = "SemaphoreGuard";
}

impl sealed::Kind for Bounded {
    const NAME: &'static str = "BoundedSemaphore";
    const GUARD: &'static str = "BoundedSemaphoreGuard";
}

impl Kind for Unbounded {}
impl Kind for Bounded {}

/// A counting semaphore: at most `n` holders at once; waiters are served first-in
/// first-out. `verdant_sync::Semaphore` is `Semaphore<Unbounded>` (gevent's `Semaphore`),
/// `verdant_sync::BoundedSemaphore` is `Semaphore<Bounded>` (gevent's `BoundedSemaphore`);
/// they differ only in [`release`](Semaphore::release).
///
/// ```
/// use verdant_sync::Semaphore;
///
/// let slots = Semaphore::new(2);
/// let a = slots.acquire();
/// let _b = slots.acquire();
/// assert!(slots.try_acquire().is_none());
/// drop(a);
/// assert!(slots.try_acquire().is_some());
/// ```
pub struct Semaphore<K = Unbounded> {
    permits: Rc<Permits>,
    kind: PhantomData<K>,
}

impl<K: Kind> Semaphore<K> {
    /// A semaphore with `n` permits.
    pub fn new(n: usize) -> Semaphore<K> {
        Semaphore { permits: Rc::new(Permits::new(n)), kind: PhantomData }
    }

    /// Waits (first-in first-out) for a permit; the guard returns it when dropped.
    pub fn acquire(&self) -> SemaphoreGuard<'_, K> {
        self.permits.acquire_until(None, &format_args!("{}::acquire()", K::NAME));
        SemaphoreGuard { owner: self }
    }

    /// Waits at most `timeout` for a permit.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_, K>> {
        let deadline = Instant::now().checked_add(timeout);
        self.permits
            .acquire_until(deadline, &format_args!("{}::acquire_timeout()", K::NAME))
            .then(|| SemaphoreGuard { owner: self })
    }

    /// Takes a permit if one is free right now.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_, K>> {
        self.permits.try_acquire().then(|| SemaphoreGuard { owner: self })
    }

    /// Free permits right now (gevent's `counter`).
    pub fn available(&self) -> usize {
        self.permits.available.get()
    }

    /// Whether no permit is free (an `acquire` would wait).
    pub fn locked(&self) -> bool {
        self.available() == 0
    }

    /// Greenlets waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.permits.waiters.len()
    }
}

impl Semaphore<Unbounded> {
    /// Adds a permit without a guard (gevent's `release`), handing it to the
    /// longest-waiting greenlet if any.
    pub fn release(&self) {
        self.permits.release();
    }
}

impl Semaphore<Bounded> {
    /// Returns a permit taken without a guard (see [`std::mem::forget`] on a guard).
    ///
    /// ```
    /// let sem = verdant_sync::BoundedSemaphore::new(1);
    /// std::mem::forget(sem.acquire());
    /// assert!(sem.release().is_ok());
    /// assert!(sem.release().is_err()); // would make two free permits out of one
    /// ```
    ///
    /// # Errors
    ///
    /// If all `n` permits are already free.
    pub fn release(&self) -> Result<(), ReleaseError> {
        if self.available() >= self.permits.initial {
            return Err(ReleaseError("BoundedSemaphore released too many times"));
        }
        self.permits.release();
        Ok(())
    }
}

/// A semaphore is ready when a permit is free (gevent's `wait`/`iwait` on a `Semaphore`):
/// waiting for it takes no permit.
///
/// ```
/// use verdant_sync::{Semaphore, WaitFor, Waitable, iwait};
///
/// let (sem1, sem2) = (Semaphore::new(0), Semaphore::new(0));
/// let s = sem1.clone();
/// verdant_hub::spawn(move || s.release());
/// let objects: [&dyn Waitable; 2] = [&sem1, &sem2];
/// assert_eq!(iwait(&objects, WaitFor::all()).next(), Some(0));
/// assert_eq!(sem1.available(), 1); // still there to take
/// ```
impl<K> crate::Waitable for Semaphore<K> {
    fn is_ready(&self) -> bool {
        self.permits.available.get() > 0
    }

    fn add_waiter(&self, waker: verdant_hub::park::Waker) {
        self.permits.watchers.push(waker);
    }
}

impl<K> Clone for Semaphore<K> {
    fn clone(&self) -> Self {
        Semaphore { permits: self.permits.clone(), kind: PhantomData }
    }
}

impl<K: Kind> fmt::Debug for Semaphore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(K::NAME)
            .field("available", &self.available())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// Holds one permit of a [`Semaphore`]; dropping it returns the permit (to the next waiter
/// first). `verdant_sync::SemaphoreGuard` and `verdant_sync::BoundedSemaphoreGuard` are
/// this type for each kind.
#[must_use = "dropping the guard releases the permit at once"]
pub struct SemaphoreGuard<'a, K = Unbounded> {
    owner: &'a Semaphore<K>,
}

impl<K> Drop for SemaphoreGuard<'_, K> {
    fn drop(&mut self) {
        self.owner.permits.release();
    }
}

impl<K: Kind> fmt::Debug for SemaphoreGuard<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(K::GUARD)
    }
}

/// A mutual-exclusion lock between greenlets (gevent's `Lock`), first-in first-out.
///
/// It protects nothing by itself (greenlets of one thread already never run at the same
/// time); it orders greenlets around a section of code that *blocks*, such as a protocol
/// exchange on a shared connection.
///
/// ```
/// use verdant_sync::Lock;
///
/// let lock = Lock::new();
/// {
///     let _held = lock.acquire();
///     assert!(lock.locked());
/// }
/// assert!(!lock.locked());
/// ```
#[derive(Clone)]
pub struct Lock {
    permits: Rc<Permits>,
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl Lock {
    /// An unlocked lock.
    pub fn new() -> Lock {
        Lock { permits: Rc::new(Permits::new(1)) }
    }

    /// Waits (first-in first-out) for the lock.
    pub fn acquire(&self) -> LockGuard<'_> {
        self.permits.acquire_until(None, &"Lock::acquire()");
        LockGuard { lock: self }
    }

    /// Waits at most `timeout` for the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
        let deadline = Instant::now().checked_add(timeout);
        self.permits
            .acquire_until(deadline, &"Lock::acquire_timeout()")
            .then(|| LockGuard { lock: self })
    }

    /// Takes the lock if it is free.
    pub fn try_acquire(&self) -> Option<LockGuard<'_>> {
        self.permits.try_acquire().then(|| LockGuard { lock: self })
    }

    /// Unlocks a lock whose guard was forgotten (gevent's `release`; any greenlet may).
    ///
    /// # Errors
    ///
    /// If the lock is not locked.
    pub fn release(&self) -> Result<(), ReleaseError> {
        if !self.locked() {
            return Err(ReleaseError("release of an unlocked Lock"));
        }
        self.permits.release();
        Ok(())
    }

    /// Whether the lock is held.
    pub fn locked(&self) -> bool {
        self.permits.available.get() == 0
    }

    /// Greenlets waiting for the lock.
    pub fn waiting(&self) -> usize {
        self.permits.waiters.len()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.locked())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// Holds a [`Lock`]; dropping it unlocks (handing the lock to the next waiter first).
#[must_use = "dropping the guard unlocks at once"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.permits.release();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// A reentrant lock (gevent's `RLock`): the greenlet that holds it may acquire it again;
/// it is free once released as many times. Only the holder may release it.
///
/// ```
/// use verdant_sync::RLock;
///
/// let lock = RLock::new();
/// let outer = lock.acquire();
/// let inner = lock.acquire(); // same greenlet: does not wait
/// drop(inner);
/// assert!(lock.locked());
/// drop(outer);
/// assert!(!lock.locked());
/// ```
#[derive(Clone)]
pub struct RLock {
    inner: Rc<RLockInner>,
}

struct RLockInner {
    permits: Permits,
    /// The holder's greenlet id (0 for the main code).
    owner: Cell<Option<u64>>,
    depth: Cell<usize>,
}

impl Default for RLock {
    fn default() -> Self {
        RLock::new()
    }
}

fn current_id() -> u64 {
    verdant_hub::current().id()
}

impl RLock {
    /// An unlocked reentrant lock.
    pub fn new() -> RLock {
        RLock {
            inner: Rc::new(RLockInner {
                permits: Permits::new(1),
                owner: Cell::new(None),
                depth: Cell::new(0),
            }),
        }
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let me = current_id();
        if self.inner.owner.get() == Some(me) {
            self.inner.depth.set(self.inner.depth.get() + 1);
            return true;
        }
        if !self.inner.permits.acquire_until(deadline, &"RLock::acquire()") {
            return false;
        }
        self.inner.owner.set(Some(me));
        self.inner.depth.set(1);
        true
    }

    /// Waits for the lock unless the calling greenlet holds it already.
    pub fn acquire(&self) -> RLockGuard<'_> {
        self.acquire_until(None);
        RLockGuard { lock: self }
    }

    /// Waits at most `timeout` for the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<RLockGuard<'_>> {
        self.acquire_until(Instant::now().checked_add(timeout)).then(|| RLockGuard { lock: self })
    }

    /// Takes the lock if it is free or already held by the calling greenlet.
    pub fn try_acquire(&self) -> Option<RLockGuard<'_>> {
        let me = current_id();
        if self.inner.owner.get() == Some(me) || self.inner.permits.try_acquire() {
            self.inner.owner.set(Some(me));
            self.inner.depth.set(self.inner.depth.get() + 1);
            return Some(RLockGuard { lock: self });
        }
        None
    }

    /// Releases one level of a lock whose guard was forgotten.
    ///
    /// # Errors
    ///
    /// If the calling greenlet does not hold the lock.
    pub fn release(&self) -> Result<(), ReleaseError> {
        if self.inner.owner.get() != Some(current_id()) {
            return Err(ReleaseError("release of an RLock by a greenlet that does not hold it"));
        }
        self.release_level();
        Ok(())
    }

    fn release_level(&self) {
        let depth = self.inner.depth.get() - 1;
        self.inner.depth.set(depth);
        if depth == 0 {
            self.inner.owner.set(None);
            self.inner.permits.release();
        }
    }

    /// Whether some greenlet holds the lock.
    pub fn locked(&self) -> bool {
        self.inner.owner.get().is_some()
    }

    /// Whether the calling greenlet holds the lock.
    pub fn is_owned(&self) -> bool {
        self.inner.owner.get() == Some(current_id())
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("owner", &self.inner.owner.get())
            .field("depth", &self.inner.depth.get())
            .finish()
    }
}

/// Holds one level of an [`RLock`]; dropping it releases that level.
#[must_use = "dropping the guard releases at once"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release_level();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}
