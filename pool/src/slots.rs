//! A resizable count of free places, with greenlets waiting for one.

use std::cell::Cell;
use std::time::Instant;

use verdant_hub::park::WaitList;

/// What a greenlet waiting for room waits on, in deadlock reports.
const WAIT_REASON: &str = "a free place in the pool";

/// How many members a pool admits, and who waits for room.
///
/// Unlike a semaphore, the capacity can change while places are taken (eventlet's
/// `resize`): lowering it lets current members finish, and `free` goes negative meanwhile.
pub(crate) struct Slots {
    /// `None`: unbounded (tracks without limiting).
    capacity: Cell<Option<usize>>,
    used: Cell<usize>,
    waiters: WaitList,
    /// Greenlets blocked in `acquire` right now (eventlet's `waiting()`).
    blocked: Cell<usize>,
}

/// While a greenlet waits for room: if it unwinds after being woken, wake the next waiter
/// if there is still room, so the wake-up is not lost.
struct PassOn<'a>(&'a Slots);

impl Drop for PassOn<'_> {
    fn drop(&mut self) {
        self.0.blocked.set(self.0.blocked.get() - 1);
        if self.0.has_room() {
            self.0.waiters.notify_one();
        }
    }
}

impl Slots {
    pub(crate) fn new(capacity: Option<usize>) -> Slots {
        Slots {
            capacity: Cell::new(capacity),
            used: Cell::new(0),
            waiters: WaitList::new(),
            blocked: Cell::new(0),
        }
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        self.capacity.get()
    }

    pub(crate) fn used(&self) -> usize {
        self.used.get()
    }

    pub(crate) fn blocked(&self) -> usize {
        self.blocked.get()
    }

    pub(crate) fn has_room(&self) -> bool {
        self.capacity.get().is_none_or(|capacity| self.used.get() < capacity)
    }

    /// Free places: negative after a resize below the number of members.
    pub(crate) fn free(&self) -> isize {
        match self.capacity.get() {
            None => isize::MAX,
            Some(capacity) => capacity as isize - self.used.get() as isize,
        }
    }

    pub(crate) fn try_acquire(&self) -> bool {
        if !self.has_room() {
            return false;
        }
        self.used.set(self.used.get() + 1);
        true
    }

    /// Takes a place, waiting until `deadline` for one. Returns whether it got one.
    pub(crate) fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        if self.try_acquire() {
            return true;
        }
        self.blocked.set(self.blocked.get() + 1);
        let pass_on = PassOn(self);
        let got = self.waiters.wait_until(&WAIT_REASON, deadline, || self.try_acquire());
        std::mem::forget(pass_on);
        self.blocked.set(self.blocked.get() - 1);
        got
    }

    /// Waits until a place is free (without taking it), or `deadline`. Returns the number
    /// of free places then.
    pub(crate) fn wait_available(&self, deadline: Option<Instant>) -> isize {
        if self.has_room() {
            // Someone else may be waiting to take the place: leave the wake-up to them.
            return self.free();
        }
        if self.waiters.wait_until(&WAIT_REASON, deadline, || self.has_room()) {
            self.waiters.notify_one(); // we only looked: pass the wake-up on
        }
        self.free()
    }

    pub(crate) fn release(&self) {
        self.used.set(self.used.get() - 1);
        if self.has_room() {
            self.waiters.notify_one();
        }
    }

    pub(crate) fn resize(&self, capacity: Option<usize>) {
        self.capacity.set(capacity);
        // Wake everyone waiting: as many as there is room for will get in; the rest wait
        // again.
        self.waiters.notify_all();
    }
}
