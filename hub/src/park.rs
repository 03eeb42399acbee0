//! Parking and waking: the one mechanism every blocking call in verdant is built on.
//!
//! A blocking primitive (join, sleep, an event, a queue, a socket) does three things:
//!
//! 1. checks its condition, and returns if it already holds;
//! 2. takes a [`Waker`] for the running greenlet and stores it where the code that will
//!    make the condition true can find it (usually a [`WaitList`]);
//! 3. calls [`park`] (or [`park_until`]), then goes back to step 1.
//!
//! Because greenlets of one hub never run at the same time, nothing can happen between
//! steps 1 and 3: no wake-up can be lost. The loop back to step 1 is still needed because
//! `park` may return without the condition holding: a kill or timeout unwinds out of it,
//! and a *spurious* return is allowed (it happens, rarely, when the hub retries a postponed
//! interrupt).
//!
//! [`wait_until`] and [`WaitList::wait_until`] are this loop, written once: blocking calls
//! give them their condition instead of writing the loop again.
//!
//! # Epochs
//!
//! Every return from `park` ends the greenlet's current *wait epoch*. A `Waker` only works
//! while its greenlet is still parked in the epoch the waker was made in, so a waker left
//! behind in some list by a wait that timed out or was killed can never wake a later,
//! unrelated wait; [`Waker::wake`] tells the caller whether it really woke someone, which
//! is what lets a queue hand its item to a live waiter instead of a dead one.
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use verdant_hub::park::{self, WaitList};
//!
//! // A one-shot flag built on the hub's waiters.
//! let flag = Rc::new((Cell::new(false), WaitList::new()));
//! let setter = flag.clone();
//! verdant_hub::spawn(move || {
//!     setter.0.set(true);
//!     setter.1.notify_all();
//! });
//! while !flag.0.get() {
//!     flag.1.push(park::waker());
//!     park::park(&"the flag");
//! }
//! assert!(flag.0.get());
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use crate::hub::{TimerAction, try_with_hub, with_hub};
pub use crate::task::{WaitList, Waker};

/// A waker for the running greenlet's next (or current) wait.
#[inline]
pub fn waker() -> Waker {
    with_hub(|hub| Waker::new(hub.current_task()))
}

/// Takes (and clears) the running greenlet's *granted* flag: whether a
/// [`Waker::grant`] handed it something since the flag was last taken.
pub fn take_grant() -> bool {
    with_hub(|hub| hub.current_core().granted.replace(false))
}

/// Suspends the running greenlet until a [`Waker`] made for this wait wakes it.
///
/// From the thread's main code this runs the hub loop meanwhile; if nothing can ever wake
/// the main code, it panics with a deadlock message naming `reason` ("waits on {reason}").
/// A kill or an expired [`with_timeout`](crate::with_timeout) unwinds out of `park`. It can
/// also return spuriously: callers re-check their condition in a loop.
#[inline(always)]
pub fn park(reason: &dyn fmt::Display) {
    with_hub(|hub| hub.park_current(reason));
}

/// Like [`park`], but also wakes up at `deadline`. Returns `true` if the wait ended
/// because the deadline passed. (The caller should still check its condition first: it
/// may hold too.)
#[inline(always)]
pub fn park_until(reason: &dyn fmt::Display, deadline: Option<Instant>) -> bool {
    let Some(deadline) = deadline else {
        park(reason);
        return false;
    };
    park_until_deadline(reason, deadline)
}

#[inline(never)]
fn park_until_deadline(reason: &dyn fmt::Display, deadline: Instant) -> bool {
    if Instant::now() >= deadline {
        // Still a blocking point: let others run and deliver interrupts.
        crate::yield_now();
        return true;
    }
    park_until_future(reason, deadline)
}

/// [`park_until`] for a deadline the caller knows is still ahead (saves a clock read).
pub(crate) fn park_until_future(reason: &dyn fmt::Display, deadline: Instant) -> bool {
    let timer = with_hub(|hub| {
        hub.current_core().wake_timer_fired.set(false);
        hub.add_timer(deadline, TimerAction::Wake(waker()))
    });
    let _cancel = CancelTimer(timer);
    park(reason);
    // Timers never fire early, so a fired timer means the deadline passed.
    with_hub(|hub| hub.current_core().wake_timer_fired.get())
}

/// A kill or a `with_timeout` expiry that cut a [`park_until_quietly`] short. It was not
/// raised: it stays pending, and unwinds the greenlet at its next blocking point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted by a kill or timeout, delivered at the next blocking point")
    }
}

impl std::error::Error for Interrupted {}

/// Like [`park_until`], for code that must not unwind (a libc hook called from C, whose
/// frames an unwind must not cross): a kill or `with_timeout` expiry makes it return
/// `Err(Interrupted)` instead, and stays pending until the greenlet's next blocking point
/// (the next `park`, `sleep`, `yield_now`...), where it unwinds as usual. If no blocking
/// point comes first, it is delivered when control is back where it may be: a pending
/// kill makes the greenlet end as killed when its body returns, a pending expiry makes
/// its `with_timeout` return `Err(Timeout)`. Returns `Ok(true)` if the deadline passed.
///
/// ```
/// use std::time::{Duration, Instant};
/// use verdant_hub::park::{self, Interrupted};
///
/// let g = verdant_hub::spawn(|| {
///     let never = Instant::now() + Duration::from_secs(3600);
///     let quiet = park::park_until_quietly(&"a C call", Some(never));
///     assert_eq!(quiet, Err(Interrupted)); // killed, but not unwound here
///     verdant_hub::yield_now(); // the kill unwinds here
///     unreachable!();
/// });
/// verdant_hub::yield_now();
/// g.kill();
/// assert_eq!(g.get(), Err(verdant_hub::GreenletError::Killed));
/// ```
pub fn park_until_quietly(
    reason: &dyn fmt::Display,
    deadline: Option<Instant>,
) -> Result<bool, Interrupted> {
    let timer = deadline.map(|deadline| {
        with_hub(|hub| {
            hub.current_core().wake_timer_fired.set(false);
            hub.add_timer(deadline, TimerAction::Wake(waker()))
        })
    });
    let _cancel = timer.map(CancelTimer);
    if with_hub(|hub| hub.park_current_quietly(reason)) {
        return Err(Interrupted);
    }
    Ok(timer.is_some() && with_hub(|hub| hub.current_core().wake_timer_fired.get()))
}

/// Like [`park_until`] with a deadline `timeout` from now. Returns `true` if it passed.
pub fn park_timeout(reason: &dyn fmt::Display, timeout: Duration) -> bool {
    park_until(reason, Instant::now().checked_add(timeout))
}

/// Cancels a wait's wake timer when the wait ends, however it ends, unless the timer is
/// known to have fired already.
struct CancelTimer(crate::timer::TimerKey);

impl Drop for CancelTimer {
    fn drop(&mut self) {
        try_with_hub(|hub| {
            if !hub.current_core().wake_timer_fired.get() {
                hub.cancel_timer(self.0);
            }
        });
    }
}

/// Waits until `ready()` holds or `deadline` passes: the one wait loop every blocking call
/// is written with (the listen → re-check → wait of `event-listener`). Returns whether
/// `ready()` held; `false` means the deadline passed first.
///
/// ```text
///   loop {
///       ready()?          → true            1. check
///       register(waker)                      2. leave a waker where the completer looks
///       ready()?          → true            3. re-check: it may have come meanwhile
///       park_until(...)   → deadline passed? → return ready()
///   }                                        4. woken or spurious: check again
/// ```
///
/// Step 3 is what makes it safe for conditions made true on *other* threads (a thread-pool
/// result registers a [`RemoteWaker`](crate::RemoteWaker)): a completion between 1 and 2
/// wakes nobody, and is seen there. For waiters on this hub nothing can happen between 1
/// and 4; use [`WaitList::wait_until`], which skips step 3.
///
/// A kill or an expired [`with_timeout`](crate::with_timeout) unwinds out of it (a guard
/// dropped on the way can pass a wake-up it consumed on to the next waiter); a spurious
/// return from `park` registers again. `ready` may do the work it checks for (take the
/// item, take the permit) and record it in a variable it borrows.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use verdant_hub::park::{self, Waker};
///
/// // A slot one greenlet fills and one reader waits on, with a single waker.
/// let slot: Rc<(RefCell<Option<u32>>, RefCell<Option<Waker>>)> = Rc::default();
/// let filler = slot.clone();
/// verdant_hub::spawn(move || {
///     *filler.0.borrow_mut() = Some(7);
///     if let Some(reader) = filler.1.borrow_mut().take() {
///         reader.wake();
///     }
/// });
/// let filled = park::wait_until(
///     &"the slot",
///     None,
///     |waker| *slot.1.borrow_mut() = Some(waker),
///     || slot.0.borrow().is_some(),
/// );
/// assert!(filled);
/// assert_eq!(*slot.0.borrow(), Some(7));
/// ```
#[inline]
pub fn wait_until(
    reason: &dyn fmt::Display,
    deadline: Option<Instant>,
    register: impl FnMut(Waker),
    ready: impl FnMut() -> bool,
) -> bool {
    wait_loop::<true>(reason, deadline, register, ready)
}

impl WaitList {
    /// Waits in this list until `ready()` holds or `deadline` passes; returns whether
    /// `ready()` held. [`park::wait_until`](wait_until) with this list as the place to
    /// register, for conditions only this hub's greenlets change (then nothing can happen
    /// between the check and the park, and the re-check is skipped).
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use verdant_hub::park::WaitList;
    ///
    /// let flag = Rc::new((Cell::new(false), WaitList::new()));
    /// let setter = flag.clone();
    /// verdant_hub::spawn(move || {
    ///     setter.0.set(true);
    ///     setter.1.notify_all();
    /// });
    /// assert!(flag.1.wait_until(&"the flag", None, || flag.0.get()));
    /// ```
    #[inline]
    pub fn wait_until(
        &self,
        reason: &dyn fmt::Display,
        deadline: Option<Instant>,
        ready: impl FnMut() -> bool,
    ) -> bool {
        wait_loop::<false>(reason, deadline, |waker| self.push(waker), ready)
    }
}

/// The loop of [`wait_until`] and [`WaitList::wait_until`], written once; `RECHECK` says
/// whether to look again between registering and parking (see [`wait_until`]).
#[inline(always)]
fn wait_loop<const RECHECK: bool>(
    reason: &dyn fmt::Display,
    deadline: Option<Instant>,
    mut register: impl FnMut(Waker),
    mut ready: impl FnMut() -> bool,
) -> bool {
    loop {
        if ready() {
            return true;
        }
        register(waker());
        if RECHECK && ready() {
            return true;
        }
        if park_until(reason, deadline) {
            return ready();
        }
    }
}
