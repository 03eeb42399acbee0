//! Wakers: how a parked task becomes ready again.
//!
//! A [`Waker`] names one wait of one task (its *epoch*, see [`park`](crate::park)); waking
//! it moves the task from `Parked` to `Ready` and onto this thread's run queue. A
//! [`WaitList`] is a FIFO of wakers waiting for the same thing. Neither needs the hub:
//! they are the vocabulary every blocking primitive, the timers and the I/O driver share.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;

use super::run_queue;
use super::{Core, State, TaskRef};

/// Wakes one particular wait of one greenlet (or of the thread's main code).
///
/// Made by [`park::waker`](crate::park::waker) before parking. Cheap to clone; `!Send`: it belongs to its hub's
/// thread (use a [`RemoteWaker`](crate::RemoteWaker) from other threads).
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant_hub::park::Waker>();
/// ```
#[derive(Clone)]
pub struct Waker {
    task: TaskRef,
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
        self.task.core().set_state(State::Ready);
        run_queue::schedule_here(self.task.clone());
        true
    }

    /// Like [`wake`](Waker::wake), for a waker that is used up by it (popped from a wait
    /// list): its reference to the task moves into the run queue instead of being cloned
    /// there and dropped here.
    #[inline]
    fn wake_consuming(self) -> bool {
        if !self.is_waiting() {
            return false;
        }
        self.task.core().set_state(State::Ready);
        run_queue::schedule_here(self.task);
        true
    }

    /// Wakes the greenlet and hands it what it waited for (a semaphore permit): like
    /// [`wake`](Waker::wake), but also raises the greenlet's *granted* flag, which it reads
    /// with [`take_grant`](crate::park::take_grant). Returns `false` (granting nothing) if the wait already ended.
    pub fn grant(&self) -> bool {
        if !self.wake() {
            return false;
        }
        self.task.core().granted.set(true);
        true
    }

    /// [`grant`](Waker::grant) for a waker used up by it (see
    /// [`wake_consuming`](Waker::wake_consuming)).
    fn grant_consuming(self) -> bool {
        if !self.is_waiting() {
            return false;
        }
        self.task.core().granted.set(true);
        self.wake_consuming()
    }

    /// Whether the wait this waker was made for is still going on.
    #[inline]
    pub fn is_waiting(&self) -> bool {
        let core = self.task.core();
        core.state() == State::Parked && core.epoch.get() == self.epoch
    }

    /// A waker for `task`'s wait in its current epoch.
    pub(crate) fn new(task: TaskRef) -> Waker {
        let epoch = task.core().epoch.get();
        Waker { task, epoch }
    }

    /// The state of the greenlet this waker wakes.
    pub(crate) fn core(&self) -> &Core {
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
            let Some(waker) = self.waiters.borrow_mut().pop_front() else { return false };
            if waker.wake_consuming() {
                return true;
            }
        }
    }

    /// Grants the longest-waiting live greenlet (see [`Waker::grant`]). Returns whether
    /// one was granted.
    pub fn grant_one(&self) -> bool {
        loop {
            let Some(waker) = self.waiters.borrow_mut().pop_front() else { return false };
            if waker.grant_consuming() {
                return true;
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
