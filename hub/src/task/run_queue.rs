//! The run queue: where ready tasks wait for their turn.
//!
//! A *turn* is what was ready when it began: tasks made ready during a turn (spawned,
//! woken, yielding) wait in `next` and run in a later turn, after everything already
//! waiting. That one rule gives FIFO order, makes `yield_now` go to the back, and lets the
//! loop look at I/O and timers between turns so neither side starves the other.
//!
//! The hub owns its run queue and publishes its address for this thread
//! ([`RunQueue::publish`]), so that a [`Waker`](super::Waker) can schedule its task without
//! reaching for the whole hub.

use std::cell::{Cell, RefCell};

use super::TaskRef;

/// Ready tasks, in the order they run.
pub(crate) struct RunQueue {
    /// Tasks made ready since the current turn began, in order. They run next turn.
    next: RefCell<Vec<TaskRef>>,
    /// The rest of the current turn, in *reverse* order, so the next one is `pop()`ed.
    turn: RefCell<Vec<TaskRef>>,
}

thread_local! {
    /// The run queue of this thread's hub, for [`schedule_here`].
    ///
    /// # Invariant
    ///
    /// Null, or the address of the run queue of this thread's live hub: set by
    /// [`RunQueue::publish`] once the hub is in its final place, cleared by
    /// [`RunQueue::withdraw`] when the hub starts to drop.
    static HERE: Cell<*const RunQueue> = const { Cell::new(std::ptr::null()) };
}

impl RunQueue {
    pub(crate) fn new() -> RunQueue {
        RunQueue {
            next: RefCell::new(Vec::with_capacity(64)),
            turn: RefCell::new(Vec::with_capacity(64)),
        }
    }

    /// Makes this the queue [`schedule_here`] pushes to on this thread. `self` must stay
    /// where it is until [`withdraw`](RunQueue::withdraw) is called.
    pub(crate) fn publish(&self) {
        HERE.with(|here| here.set(self));
    }

    /// Stops [`schedule_here`] from reaching this queue (its hub is going away).
    pub(crate) fn withdraw(&self) {
        let _ = HERE.try_with(|here| here.set(std::ptr::null()));
    }

    /// Appends a task; it runs in the next turn. The caller has set its state.
    #[inline(always)]
    pub(crate) fn push(&self, task: TaskRef) {
        self.next.borrow_mut().push(task);
    }

    /// The next task of the current turn, if any is left.
    #[inline]
    pub(crate) fn pop(&self) -> Option<TaskRef> {
        self.turn.borrow_mut().pop()
    }

    /// Starts a new turn with everything made ready during the last one, and pops its
    /// first task.
    #[inline]
    pub(crate) fn open_turn(&self) -> Option<TaskRef> {
        let mut turn = self.turn.borrow_mut();
        std::mem::swap(&mut *turn, &mut *self.next.borrow_mut());
        turn.reverse();
        turn.pop()
    }

    /// Whether any task waits to run, in this turn or the next.
    pub(crate) fn is_empty(&self) -> bool {
        self.next.borrow().is_empty() && self.turn.borrow().is_empty()
    }

    /// Whether code left the queue borrowed (see `Hub::end_overflowed`).
    pub(crate) fn in_use(&self) -> bool {
        self.next.try_borrow_mut().is_err() || self.turn.try_borrow_mut().is_err()
    }

    /// Takes every queued task out without running it (the thread is ending).
    pub(crate) fn drain(&self) -> Vec<TaskRef> {
        let mut all = std::mem::take(&mut *self.turn.borrow_mut());
        all.append(&mut self.next.borrow_mut());
        all
    }
}

/// Appends `task` to the run queue of this thread's hub. Once the hub is gone (the thread
/// is ending) the task is forgotten, as the hub forgets the ones it still held: nothing
/// runs again, and running its destructors during thread teardown would be unsound.
#[inline(always)]
pub(crate) fn schedule_here(task: TaskRef) {
    let queue = HERE.try_with(Cell::get).unwrap_or(std::ptr::null());
    if queue.is_null() {
        std::mem::forget(task);
        return;
    }
    // SAFETY: by the invariant of `HERE`, a non-null address is the run queue of this
    // thread's live hub.
    unsafe { (*queue).push(task) };
}
