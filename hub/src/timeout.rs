//! `with_timeout`: bound the time a piece of blocking code may take.
//!
//! A timer posts a [`Timeout`](crate::task::Interrupt::Timeout) interrupt naming this
//! scope to the greenlet that entered it. The interrupt travels like a kill: it is raised
//! as an unwind from the greenlet's next blocking point, runs destructors on the way out,
//! and is caught by the `catch_unwind` of the scope it names. A nested scope catches only
//! its own expiry and lets an outer one pass through.

use std::error::Error;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::TimeoutUnwind;
use crate::hub::{TimerAction, try_with_hub, with_hub};
use crate::task::Interrupt;
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
    static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_SCOPE.fetch_add(1, Ordering::Relaxed);
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
            let core = hub.current_task();
            let core = core.core();
            if let Some(Interrupt::Timeout { id, .. }) = core.interrupt.get()
                && id == self.id
            {
                core.interrupt.set(None);
                return true;
            }
            false
        })
        .unwrap_or(false)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.end();
    }
}
