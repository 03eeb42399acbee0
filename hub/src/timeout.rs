//! `with_timeout` and [`TimeoutTimer`]: bound the time a piece of blocking code may take.
//! `with_timeout` is the closure form; `TimeoutTimer` is gevent's `Timeout` object, for
//! code ported from `Timeout(5).start()` / `with Timeout(5):` / `with Timeout(5, False):`.
//! Both raise the same [`Timeout`] error.
//!
//! A timer posts a [`Timeout`](crate::task::Interrupt::Timeout) interrupt naming this
//! scope to the greenlet that entered it. The interrupt travels like a kill: it is raised
//! as an unwind from the greenlet's next blocking point, runs destructors on the way out,
//! and is caught by the `catch_unwind` of the scope it names. A nested scope catches only
//! its own expiry and lets an outer one pass through.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::TimeoutUnwind;
use crate::hub::{TimerAction, try_with_hub, with_hub};
use crate::task::{Core, Interrupt, TaskRef};
use crate::timer::TimerKey;

/// The error of a [`with_timeout`] whose time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    /// The duration the scope was given.
    pub after: Duration,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?}", self.after)
    }
}

impl Error for Timeout {}

/// Runs `f`, but gives up at the first blocking point inside it after `timeout` has
/// passed, returning [`Err(Timeout)`](Timeout). Destructors of everything `f` holds run as
/// it is abandoned.
///
/// Works from greenlets and from the thread's main code. Nested scopes each catch only
/// their own expiry. If `f` returns in time, the timer is cancelled and never fires. If
/// the expiry cut short a wait that must not unwind (one made with
/// [`park::park_until_quietly`](crate::park::park_until_quietly), as libc hooks do), `f`
/// goes on until it returns or blocks again, and the scope then returns `Err(Timeout)`.
///
/// # Limits
///
/// The timeout is delivered at a *blocking point* (sleep, join, waiting for I/O, a lock,
/// a queue, `yield_now`...). CPU-bound code that never blocks cannot be interrupted: it
/// runs to completion and `with_timeout` then returns its value. Call
/// [`yield_now`](crate::yield_now) now and then in long computations.
///
/// ```
/// use std::time::Duration;
/// use verdant_hub::{sleep, with_timeout};
///
/// let slow = with_timeout(Duration::from_millis(10), || sleep(Duration::from_secs(10)));
/// assert!(slow.is_err());
/// let fast = with_timeout(Duration::from_secs(10), || 7);
/// assert_eq!(fast, Ok(7));
/// ```
pub fn with_timeout<T>(timeout: Duration, f: impl FnOnce() -> T) -> Result<T, Timeout> {
    let id = next_scope_id();
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        return Ok(f()); // effectively infinite
    };
    let scope = Scope::enter(id, deadline);
    let result = catch_unwind(AssertUnwindSafe(f));
    let expired_quietly = scope.leave();
    match result {
        // The expiry came during a wait that must not unwind (a libc hook under C frames,
        // `park::park_until_quietly`), which reported it and cut the wait short: `f` did
        // not return in time, and the scope's end is the delivery point.
        Ok(_) if expired_quietly => Err(Timeout { after: timeout }),
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast_ref::<TimeoutUnwind>() {
            Some(TimeoutUnwind(caught)) if *caught == id => {
                // A kill that arrived while we were unwinding must not get lost.
                with_hub(|hub| hub.raise_pending_interrupt());
                Err(Timeout { after: timeout })
            }
            _ => resume_unwind(payload),
        },
    }
}

/// A fresh id for a timeout scope: ids grow, so an older (outer) scope has a smaller one.
fn next_scope_id() -> u64 {
    static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);
    NEXT_SCOPE.fetch_add(1, Ordering::Relaxed)
}

/// Withdraws an expiry of scope `id` that was posted to `core` but not raised yet.
/// Returns whether there was one.
fn withdraw_expiry(core: &Core, id: u64) -> bool {
    match core.interrupt.get() {
        Some(Interrupt::Timeout { id: pending, .. }) if pending == id => {
            core.interrupt.set(None);
            true
        }
        _ => false,
    }
}

/// gevent's `Timeout` object: a timer that, once [started](TimeoutTimer::start), raises a
/// [`Timeout`] in the greenlet that started it, at that greenlet's first blocking point
/// after the time ran out. It can be cancelled, and started again (after it fired or was
/// cancelled). The expiry unwinds to the [`catch`](TimeoutTimer::catch) or
/// [`scope`](TimeoutTimer::scope) of this timer around the blocking call; a nested scope of
/// another timeout lets it pass. One that no scope catches ends the greenlet as a panic.
///
/// | gevent | verdant |
/// |---|---|
/// | `t = Timeout(5)` | `let t = TimeoutTimer::new(d)` |
/// | `t.start()`, `t.cancel()`, `t.pending` | `t.start()`, `t.cancel()`, `t.pending()` |
/// | `Timeout.start_new(5)` | `TimeoutTimer::start_new(d)` |
/// | `try: ... except Timeout as e: if e is t` | `t.catch(\|\| ...)`: `Err(Timeout)` |
/// | `with Timeout(5): ...` | `TimeoutTimer::new(d).scope(\|\| ...)` (or [`with_timeout`]) |
/// | `with Timeout(5, False): ...` | `TimeoutTimer::new(d).scope_silent(\|\| ...)`: `None` if it fired |
/// | `t.close()`, end of a `with` | dropping `t` cancels it |
///
/// Dropping the timer cancels it, so `let _t = TimeoutTimer::start_new(d);` bounds the
/// rest of the block, for an outer `catch` to catch (the scope-guard form).
///
/// ```
/// use std::time::Duration;
/// use verdant_hub::{Timeout, TimeoutTimer, sleep};
///
/// let t = TimeoutTimer::new(Duration::from_millis(5));
/// t.start();
/// assert!(t.pending());
/// assert_eq!(t.catch(|| sleep(Duration::from_secs(3600))), Err(Timeout { after: t.after() }));
/// assert!(!t.pending());
/// t.start(); // again, after it fired
/// t.cancel();
/// assert_eq!(t.catch(|| sleep(Duration::from_millis(10))), Ok(())); // cancelled: no expiry
///
/// let line = TimeoutTimer::new(Duration::from_millis(5)).scope_silent(|| {
///     sleep(Duration::from_secs(3600)); // a read that never comes
///     "a line"
/// });
/// assert_eq!(line, None); // `with Timeout(5, False)`: just left the block
/// ```
///
/// A `TimeoutTimer` belongs to its thread (`!Send`).
pub struct TimeoutTimer {
    after: Duration,
    /// The id of the latest start: the expiry its `catch` recognises.
    id: Cell<u64>,
    /// The timer and the greenlet it is aimed at, while started (fired or not).
    armed: RefCell<Option<Armed>>,
}

/// One start of a [`TimeoutTimer`].
struct Armed {
    timer: TimerKey,
    target: TaskRef,
}

impl TimeoutTimer {
    /// A timeout of `after`, not started (gevent's `Timeout(seconds)`).
    pub fn new(after: Duration) -> TimeoutTimer {
        TimeoutTimer { after, id: Cell::new(0), armed: RefCell::new(None) }
    }

    /// A timeout of `after`, started now in the calling greenlet (`Timeout.start_new`).
    pub fn start_new(after: Duration) -> TimeoutTimer {
        let timeout = TimeoutTimer::new(after);
        timeout.start();
        timeout
    }

    /// The duration it was made with.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// Starts the countdown, aimed at the calling greenlet (or main code). A duration too
    /// long to represent never fires.
    ///
    /// # Panics
    ///
    /// If it is pending already: cancel it first (gevent raises `AssertionError`).
    pub fn start(&self) {
        assert!(!self.pending(), "verdant: {self:?} is already started: cancel it first");
        self.cancel(); // forget an earlier start that fired
        let id = next_scope_id();
        self.id.set(id);
        let Some(deadline) = Instant::now().checked_add(self.after) else { return };
        let armed = with_hub(|hub| {
            let target = hub.current_task();
            let interrupt = Interrupt::Timeout { id, in_unwind: std::thread::panicking() };
            let timer = hub.add_timer(deadline, TimerAction::Interrupt(target.clone(), interrupt));
            Armed { timer, target }
        });
        *self.armed.borrow_mut() = Some(armed);
    }

    /// Whether it is started and has not fired yet (gevent's `pending`).
    pub fn pending(&self) -> bool {
        let armed = self.armed.borrow();
        armed.as_ref().is_some_and(|armed| with_hub(|hub| hub.timer_pending(armed.timer)))
    }

    /// Stops the countdown, and withdraws an expiry that fired but was not raised yet. It
    /// can be started again. Does nothing if it is not started.
    pub fn cancel(&self) {
        let Some(armed) = self.armed.borrow_mut().take() else { return };
        try_with_hub(|hub| hub.cancel_timer(armed.timer));
        withdraw_expiry(armed.target.core(), self.id.get());
    }

    /// Runs `f`, catching this timer's expiry if it comes during `f` (gevent's `except
    /// Timeout as t: if t is timer`): `Err(Timeout)`. Neither starts nor cancels the timer;
    /// other timeouts' expiries pass through.
    pub fn catch<T>(&self, f: impl FnOnce() -> T) -> Result<T, Timeout> {
        let result = catch_unwind(AssertUnwindSafe(f));
        let expired = Err(Timeout { after: self.after });
        match result {
            // Reported by a wait that must not unwind: the end of `f` is the delivery point.
            Ok(_) if with_hub(|hub| withdraw_expiry(hub.current_core(), self.id.get())) => expired,
            Ok(value) => Ok(value),
            Err(payload) => match payload.downcast_ref::<TimeoutUnwind>() {
                Some(TimeoutUnwind(caught)) if *caught == self.id.get() => {
                    with_hub(|hub| hub.raise_pending_interrupt()); // a kill must not get lost
                    expired
                }
                _ => resume_unwind(payload),
            },
        }
    }

    /// Runs `f` bounded by this timer (gevent's `with timeout:`): starts it unless it is
    /// pending, cancels it when `f` ends however it ends, and returns `Err(Timeout)` if it
    /// fired during `f`.
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> Result<T, Timeout> {
        if !self.pending() {
            self.start();
        }
        let _cancel = CancelOnExit(self);
        self.catch(f)
    }

    /// Like [`scope`](Self::scope), but an expiry just leaves the block: `None` (gevent's
    /// `with Timeout(seconds, False):`).
    pub fn scope_silent<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        self.scope(f).ok()
    }
}

impl Drop for TimeoutTimer {
    /// Cancels the countdown (gevent's `close()`).
    fn drop(&mut self) {
        self.cancel();
    }
}

impl fmt::Debug for TimeoutTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutTimer")
            .field("after", &self.after)
            .field("pending", &self.pending())
            .finish()
    }
}

/// Cancels a timer when a scope ends, however it ends.
struct CancelOnExit<'a>(&'a TimeoutTimer);

impl Drop for CancelOnExit<'_> {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The live part of one `with_timeout` call: its timer, cancelled (and any expiry of it
/// not yet delivered withdrawn) when the scope ends, however it ends.
struct Scope {
    id: u64,
    timer: TimerKey,
}

impl Scope {
    fn enter(id: u64, deadline: Instant) -> Scope {
        with_hub(|hub| {
            let task = hub.current_task();
            let interrupt = Interrupt::Timeout { id, in_unwind: std::thread::panicking() };
            let timer = hub.add_timer(deadline, TimerAction::Interrupt(task, interrupt));
            Scope { id, timer }
        })
    }
}

impl Scope {
    /// Ends the scope (see [`Scope::end`]).
    fn leave(self) -> bool {
        std::mem::ManuallyDrop::new(self).end()
    }

    /// Cancels the timer and withdraws an expiry of this scope that fired but was not
    /// delivered. Returns whether there was one.
    fn end(&self) -> bool {
        try_with_hub(|hub| {
            hub.cancel_timer(self.timer);
            withdraw_expiry(hub.current_core(), self.id)
        })
        .unwrap_or(false)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.end();
    }
}
