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

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::hub::{try_with_hub, with_hub};
use crate::task::{State, Task};
use crate::timer::TimerAction;

/// Wakes one particular wait of one greenlet (or of the thread's main code).
///
/// Made by [`waker`] before parking. Cheap to clone; `!Send`: it belongs to its hub's
/// thread (use a [`RemoteWaker`](crate::RemoteWaker) from other threads).
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant_hub::park::Waker>();
/// ```
#[derive(Clone)]
pub struct Waker {
    task: Rc<dyn Task>,
    epoch: u64,
}

impl Waker {
    /// Makes the greenlet ready to run if it is still parked in the wait this waker was
    /// made for. Returns whether it did; `false` means the wait already ended (woken by
    /// someone else, timed out, killed), and the caller should offer its wake-up to
    /// another waiter.
    #[inline]
    pub fn wake(&self) -> bool {
        if !self.is_waiting() {
            return false;
        }
        self.task.core().state.set(State::Ready);
        with_hub(|hub| hub.schedule(self.task.clone()));
        true
    }

    /// Wakes the greenlet and hands it what it waited for (a semaphore permit): like
    /// [`wake`](Waker::wake), but also raises the greenlet's *granted* flag, which it reads
    /// with [`take_grant`]. Returns `false` (granting nothing) if the wait already ended.
    pub fn grant(&self) -> bool {
        if !self.wake() {
            return false;
        }
        self.task.core().granted.set(true);
        true
    }

    /// Whether the wait this waker was made for is still going on.
    #[inline]
    pub fn is_waiting(&self) -> bool {
        let core = self.task.core();
        core.state.get() == State::Parked && core.epoch.get() == self.epoch
    }

    /// The state of the greenlet this waker wakes.
    pub(crate) fn core(&self) -> &crate::task::Core {
        self.task.core()
    }

    /// Id of the greenlet this waker wakes (0 for the main code).
    pub fn greenlet_id(&self) -> u64 {
        self.task.core().id
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waker")
            .field("greenlet", &self.task.core().id)
            .field("epoch", &self.epoch)
            .field("waiting", &self.is_waiting())
            .finish()
    }
}

/// A waker for the running greenlet's next (or current) wait.
#[inline]
pub fn waker() -> Waker {
    with_hub(|hub| {
        let task = hub.current_task();
        let epoch = task.core().epoch.get();
        Waker { task, epoch }
    })
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
        hub.timers.insert(deadline, TimerAction::Wake(waker()))
    });
    let _cancel = CancelTimer(timer);
    park(reason);
    // Timers never fire early, so a fired timer means the deadline passed.
    with_hub(|hub| hub.current_core().wake_timer_fired.get())
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
                hub.timers.cancel(self.0);
            }
        });
    }
}

/// A FIFO list of parked greenlets waiting for the same thing.
///
/// Wakers whose wait already ended (timed out, killed, woken elsewhere) are skipped by
/// [`notify_one`](WaitList::notify_one) and pruned as the list grows, so abandoned waits
/// cost nothing lasting.
#[derive(Default)]
pub struct WaitList {
    waiters: RefCell<VecDeque<Waker>>,
}

impl WaitList {
    /// An empty list.
    pub fn new() -> WaitList {
        WaitList { waiters: RefCell::new(VecDeque::new()) }
    }

    /// Adds a waiter at the back.
    #[inline]
    pub fn push(&self, waker: Waker) {
        let mut waiters = self.waiters.borrow_mut();
        let len = waiters.len();
        if len >= 32 && len.is_power_of_two() {
            waiters.retain(Waker::is_waiting);
        }
        waiters.push_back(waker);
    }

    /// Wakes the longest-waiting greenlet that is still waiting. Returns whether one was
    /// woken.
    #[inline]
    pub fn notify_one(&self) -> bool {
        loop {
            let next = self.waiters.borrow_mut().pop_front();
            match next {
                None => return false,
                Some(waker) if waker.wake() => return true,
                Some(_) => continue,
            }
        }
    }

    /// Grants the longest-waiting live greenlet (see [`Waker::grant`]). Returns whether
    /// one was granted.
    pub fn grant_one(&self) -> bool {
        loop {
            let next = self.waiters.borrow_mut().pop_front();
            match next {
                None => return false,
                Some(waker) if waker.grant() => return true,
                Some(_) => continue,
            }
        }
    }

    /// Wakes every greenlet waiting now; returns how many. Greenlets that start waiting
    /// after this call (even while the woken ones have not run yet) are not woken by it.
    pub fn notify_all(&self) -> usize {
        // Draining in place keeps the buffer for the next waiters. `wake` only queues the
        // greenlet (no user code runs), so nothing can touch this list meanwhile.
        self.waiters.borrow_mut().drain(..).filter(|waker| waker.wake()).count()
    }

    /// Whether no waiter is still waiting.
    pub fn is_empty(&self) -> bool {
        !self.waiters.borrow().iter().any(Waker::is_waiting)
    }

    /// How many waiters are still waiting.
    pub fn len(&self) -> usize {
        self.waiters.borrow().iter().filter(|waker| waker.is_waiting()).count()
    }
}

impl fmt::Debug for WaitList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitList").field("waiting", &self.len()).finish()
    }
}
