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
//!
//! # A holder ended by a stack overflow
//!
//! A greenlet that overflows its stack is ended without running its frames' destructors
//! (see `GreenletError::StackOverflow`), so a guard it holds never unlocks. [`Lock`] and
//! [`RLock`] therefore know their holder (a `Holder`: a handle to the greenlet, taken on
//! every acquire; no allocation). While some greenlet waits for the lock, the holder is
//! also linked to the lock with a [`LinkHook`] the lock itself implements (no callback
//! allocated per acquire), and unlinked when it releases the lock: when it dies of a stack
//! overflow still holding the lock, the hook releases the lock on its behalf, marks it
//! *poisoned* and reports one line. A holder that overflowed while nobody waited is found
//! out by the next `acquire`, `try_acquire` or `locked`, which does the same.
//! Nothing else counts as abandoning a lock: a holder that panics or is killed unwinds and
//! drops its guard, and one that forgot its guard and ended may legitimately be released
//! by another greenlet later (gevent's `Lock.release` from any greenlet).
//!
//! Semaphores do not track holders: a permit held by a greenlet that overflows is lost
//! (the semaphore has one permit fewer).

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use verdant_hub::park::{self, WaitList};
use verdant_hub::{GreenletError, GreenletRef, LinkHook, LinkId};

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

/// The greenlet that holds a [`Lock`] or [`RLock`], watched for a stack overflow that would
/// otherwise keep the lock held for good (see the module docs).
#[derive(Default)]
struct Holder {
    /// The holder; `None` when the lock is free, held by the main code (which cannot end
    /// by a greenlet's overflow), or being handed to a waiter that has not run yet.
    greenlet: RefCell<Option<GreenletRef>>,
    /// Its link to the lock's hook, once a waiter made it worth watching.
    link: Cell<Option<LinkId>>,
    /// Counts holders, so that the hook of an earlier holder is ignored.
    tenure: Cell<usize>,
    /// Set when a holder ended by a stack overflow while holding the lock.
    poisoned: Cell<bool>,
}

impl Holder {
    /// The running greenlet just took the lock. `watch`: someone waits for it already.
    fn took(&self, hook: &dyn Fn() -> Weak<dyn LinkHook>, watch: bool) {
        let me = verdant_hub::current();
        self.tenure.set(self.tenure.get().wrapping_add(1));
        self.link.set(None);
        *self.greenlet.borrow_mut() = (!me.is_main()).then_some(me);
        if watch {
            self.watch(hook);
        }
    }

    /// A greenlet is about to wait: link the holder to the lock's hook, if it is a live
    /// greenlet not linked yet.
    fn watch(&self, hook: &dyn Fn() -> Weak<dyn LinkHook>) {
        if self.link.get().is_some() {
            return;
        }
        let holder = self.greenlet.borrow().clone();
        if let Some(holder) = holder.filter(|holder| !holder.ready()) {
            self.link.set(Some(holder.link_hook(hook(), self.tenure.get())));
        }
    }

    /// The lock is released (a guard dropped, or `release`): forget the holder.
    fn released(&self) {
        let holder = self.greenlet.borrow_mut().take();
        if let (Some(holder), Some(link)) = (holder, self.link.take()) {
            holder.unlink(link);
        }
    }

    /// If the holder (of `tenure`, when given) is dead of a stack overflow: forgets it,
    /// marks the lock poisoned and returns the line to report. The caller then releases
    /// the permit on its behalf.
    fn abandoned(&self, tenure: Option<usize>, lock: &str) -> Option<String> {
        if tenure.is_some_and(|tenure| tenure != self.tenure.get()) {
            return None;
        }
        let error = match &*self.greenlet.borrow() {
            Some(holder) if holder.ready() => holder.error(),
            _ => None,
        };
        let Some(GreenletError::StackOverflow { name, id, .. }) = error else { return None };
        *self.greenlet.borrow_mut() = None;
        self.link.set(None);
        self.poisoned.set(true);
        let who = match name {
            Some(name) => format!("greenlet '{name}' (id {id})"),
            None => format!("greenlet {id}"),
        };
        Some(format!(
            "verdant: {who} overflowed its stack while holding a {lock}: the {lock} was \
             released on its behalf and is marked poisoned ({lock}::poisoned), since what it \
             protects may have been left half-updated"
        ))
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
pub struct ReleaseError(pub(crate) &'static str);

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
/// A holder that overflows its stack never drops its guard; the lock is then released on
/// its behalf and marked [`poisoned`](Lock::poisoned), so waiters are not deadlocked (see
/// the module docs).
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
    inner: Rc<LockInner>,
}

struct LockInner {
    permits: Permits,
    holder: Holder,
}

/// Called when a watched holder dies (see the module docs).
impl LinkHook for LockInner {
    fn finished(&self, tenure: usize) {
        if let Some(line) = self.holder.abandoned(Some(tenure), "Lock") {
            verdant_hub::report::report(line);
            self.permits.release();
        }
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl Lock {
    /// An unlocked lock.
    pub fn new() -> Lock {
        Lock { inner: Rc::new(LockInner { permits: Permits::new(1), holder: Holder::default() }) }
    }

    /// Waits (first-in first-out) for the lock.
    pub fn acquire(&self) -> LockGuard<'_> {
        self.acquire_until(None, &"Lock::acquire()");
        LockGuard { lock: self }
    }

    /// Waits at most `timeout` for the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
        let deadline = Instant::now().checked_add(timeout);
        self.acquire_until(deadline, &"Lock::acquire_timeout()").then(|| LockGuard { lock: self })
    }

    /// Takes the lock if it is free.
    pub fn try_acquire(&self) -> Option<LockGuard<'_>> {
        let inner = &self.inner;
        let free = inner.permits.try_acquire() || (self.reclaim() && inner.permits.try_acquire());
        if !free {
            return None;
        }
        inner.holder.took(&|| self.hook(), false);
        Some(LockGuard { lock: self })
    }

    fn acquire_until(&self, deadline: Option<Instant>, reason: &dyn fmt::Display) -> bool {
        let inner = &self.inner;
        if !inner.permits.try_acquire() {
            if !self.reclaim() {
                inner.holder.watch(&|| self.hook());
            }
            if !inner.permits.acquire_until(deadline, reason) {
                return false;
            }
        }
        inner.holder.took(&|| self.hook(), !inner.permits.waiters.is_empty());
        true
    }

    /// Releases the lock on behalf of a holder that died of a stack overflow holding it.
    fn reclaim(&self) -> bool {
        let Some(line) = self.inner.holder.abandoned(None, "Lock") else { return false };
        verdant_hub::report::report(line);
        self.inner.permits.release();
        true
    }

    fn hook(&self) -> Weak<dyn LinkHook> {
        Rc::downgrade(&self.inner) as Weak<dyn LinkHook>
    }

    fn unlock(&self) {
        self.inner.holder.released();
        self.inner.permits.release();
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
        self.unlock();
        Ok(())
    }

    /// Whether the lock is held. A lock whose holder died of a stack overflow is released
    /// here, if no waiter released it first.
    pub fn locked(&self) -> bool {
        self.inner.permits.available.get() == 0 && !self.reclaim()
    }

    /// Greenlets waiting for the lock.
    pub fn waiting(&self) -> usize {
        self.inner.permits.waiters.len()
    }

    /// Whether a greenlet that held this lock was ended by a stack overflow: its guard
    /// never dropped, so the lock was released on its behalf (handed to the next waiter),
    /// and what it protects may have been left half-updated. Stays set until
    /// [`clear_poison`](Lock::clear_poison).
    ///
    /// ```
    /// let lock = verdant_sync::Lock::new();
    /// assert!(!lock.poisoned());
    /// ```
    pub fn poisoned(&self) -> bool {
        self.inner.holder.poisoned.get()
    }

    /// Clears the poisoned mark (once what the lock protects was checked or repaired).
    pub fn clear_poison(&self) {
        self.inner.holder.poisoned.set(false);
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &(self.inner.permits.available.get() == 0))
            .field("waiting", &self.waiting())
            .field("poisoned", &self.poisoned())
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
        self.lock.unlock();
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
    holder: Holder,
}

impl RLockInner {
    /// Releases every level on behalf of a holder that died of a stack overflow holding
    /// it (the hook's `tenure`, or whoever holds it now).
    fn reclaim(&self, tenure: Option<usize>) -> bool {
        let Some(line) = self.holder.abandoned(tenure, "RLock") else { return false };
        verdant_hub::report::report(line);
        self.owner.set(None);
        self.depth.set(0);
        self.permits.release();
        true
    }
}

/// Called when a watched holder dies (see the module docs).
impl LinkHook for RLockInner {
    fn finished(&self, tenure: usize) {
        self.reclaim(Some(tenure));
    }
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
                holder: Holder::default(),
            }),
        }
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let me = current_id();
        if self.inner.owner.get() == Some(me) {
            self.inner.depth.set(self.inner.depth.get() + 1);
            return true;
        }
        let inner = &self.inner;
        if !inner.permits.try_acquire() {
            if !inner.reclaim(None) {
                inner.holder.watch(&|| self.hook());
            }
            if !inner.permits.acquire_until(deadline, &"RLock::acquire()") {
                return false;
            }
        }
        inner.owner.set(Some(me));
        inner.depth.set(1);
        inner.holder.took(&|| self.hook(), !inner.permits.waiters.is_empty());
        true
    }

    fn hook(&self) -> Weak<dyn LinkHook> {
        Rc::downgrade(&self.inner) as Weak<dyn LinkHook>
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
        let (me, inner) = (current_id(), &self.inner);
        if inner.owner.get() != Some(me) {
            let free =
                inner.permits.try_acquire() || (inner.reclaim(None) && inner.permits.try_acquire());
            if !free {
                return None;
            }
            inner.holder.took(&|| self.hook(), false);
        }
        inner.owner.set(Some(me));
        inner.depth.set(inner.depth.get() + 1);
        Some(RLockGuard { lock: self })
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
            self.inner.holder.released();
            self.inner.permits.release();
        }
    }

    /// Whether some greenlet holds the lock. A lock whose holder died of a stack overflow
    /// is released here, if no waiter released it first.
    pub fn locked(&self) -> bool {
        self.inner.owner.get().is_some() && !self.inner.reclaim(None)
    }

    /// Whether a greenlet that held this lock was ended by a stack overflow (see
    /// [`Lock::poisoned`]). Stays set until [`clear_poison`](RLock::clear_poison).
    pub fn poisoned(&self) -> bool {
        self.inner.holder.poisoned.get()
    }

    /// Clears the poisoned mark.
    pub fn clear_poison(&self) {
        self.inner.holder.poisoned.set(false);
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
            .field("poisoned", &self.poisoned())
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
