//! The hub's timers: what to do at which instant, in deadline order, FIFO on ties.
//!
//! A binary heap orders `(deadline, seq)` pairs; the actions live in a slab so that a
//! timer can be cancelled in O(1) by its key. Cancelled timers leave a stale heap entry
//! behind, skipped when it reaches the top; when stale entries outnumber live ones the
//! heap is rebuilt, so a loop of `with_timeout(60 s, quick)` does not grow it without
//! bound.
//!
//! `seq` increases with every insertion, so two timers with the same deadline fire in
//! the order they were created.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::Instant;

use slab::Slab;

use crate::park::Waker;
use crate::task::{Interrupt, Task};

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    /// Wake a parked greenlet (sleep, `*_timeout` waits).
    Wake(Waker),
    /// Deliver an interrupt (a `with_timeout` expiry) to a greenlet.
    Interrupt(Rc<dyn Task>, Interrupt),
    /// Put a greenlet created by `spawn_later` into the ready queue.
    Start(Rc<dyn Task>),
}

/// Names one timer, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    seq: u64,
}

/// The timers of one hub. Methods take `&self`; the count of live timers sits in a `Cell`
/// so the loop can see "no timers" at every turn boundary without borrowing the heap.
pub(crate) struct Timers {
    heap: RefCell<TimerHeap>,
    live: Cell<usize>,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers { heap: RefCell::new(TimerHeap::new()), live: Cell::new(0) }
    }

    /// Live (not yet fired, not cancelled) timers.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.live.get()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.live.get() == 0
    }

    pub(crate) fn insert(&self, deadline: Instant, action: TimerAction) -> TimerKey {
        let key = self.heap.borrow_mut().insert(deadline, action);
        self.live.set(self.live.get() + 1);
        key
    }

    /// Cancels a timer. Returns `true` if it had not fired yet.
    pub(crate) fn cancel(&self, key: TimerKey) -> bool {
        let cancelled = self.heap.borrow_mut().cancel(key);
        if cancelled {
            self.live.set(self.live.get() - 1);
        }
        cancelled
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.borrow_mut().next_deadline()
    }

    /// Removes and returns the action of the earliest timer due at or before `now`.
    pub(crate) fn pop_expired(&self, now: Instant) -> Option<TimerAction> {
        let action = self.heap.borrow_mut().pop_expired(now);
        if action.is_some() {
            self.live.set(self.live.get() - 1);
        }
        action
    }

    /// Takes every action out, for a hub that is shutting down.
    pub(crate) fn drain(&self) -> Vec<TimerAction> {
        self.live.set(0);
        self.heap.borrow_mut().drain()
    }
}

/// The heap itself: deadlines ordered with their creation sequence, actions in a slab.
struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    actions: Slab<(u64, TimerAction)>,
    next_seq: u64,
}

impl TimerHeap {
    fn new() -> TimerHeap {
        TimerHeap { heap: BinaryHeap::new(), actions: Slab::new(), next_seq: 0 }
    }

    fn insert(&mut self, deadline: Instant, action: TimerAction) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.actions.insert((seq, action));
        self.heap.push(Reverse((deadline, seq, slot)));
        TimerKey { slot, seq }
    }

    fn cancel(&mut self, key: TimerKey) -> bool {
        match self.actions.get(key.slot) {
            Some((seq, _)) if *seq == key.seq => {
                self.actions.remove(key.slot);
                self.compact_if_mostly_stale();
                true
            }
            _ => false,
        }
    }

    /// The earliest live deadline, dropping stale entries from the top on the way.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, seq, slot))) = self.heap.peek().copied() {
            if self.is_live(seq, slot) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    fn pop_expired(&mut self, now: Instant) -> Option<TimerAction> {
        loop {
            let Reverse((deadline, seq, slot)) = *self.heap.peek()?;
            if !self.is_live(seq, slot) {
                self.heap.pop();
                continue;
            }
            if deadline > now {
                return None;
            }
            self.heap.pop();
            return Some(self.actions.remove(slot).1);
        }
    }

    fn is_live(&self, seq: u64, slot: usize) -> bool {
        matches!(self.actions.get(slot), Some((s, _)) if *s == seq)
    }

    fn compact_if_mostly_stale(&mut self) {
        let stale = self.heap.len() - self.actions.len();
        if stale > 4096 && stale > 2 * self.actions.len() {
            let actions = &self.actions;
            self.heap.retain(
                |Reverse((_, seq, slot))| matches!(actions.get(*slot), Some((s, _)) if s == seq),
            );
        }
    }

    /// Heap entries including stale ones (for tests of the compaction).
    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }

    fn drain(&mut self) -> Vec<TimerAction> {
        self.heap.clear();
        self.actions.drain().map(|(_, action)| action).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Core, Kind, MainTask};
    use std::time::Duration;

    fn start_action(id: u64) -> TimerAction {
        TimerAction::Start(Rc::new(MainTask {
            core: Core::new(id, None, Kind::Greenlet, 0, false),
        }))
    }

    fn id_of(action: TimerAction) -> u64 {
        match action {
            TimerAction::Start(task) => task.core().id,
            _ => unreachable!(),
        }
    }

    #[test]
    fn fires_in_deadline_order_fifo_on_ties() {
        let timers = Timers::new();
        let t0 = Instant::now();
        timers.insert(t0 + Duration::from_millis(5), start_action(1));
        timers.insert(t0 + Duration::from_millis(1), start_action(2));
        timers.insert(t0 + Duration::from_millis(5), start_action(3));
        timers.insert(t0 + Duration::from_millis(1), start_action(4));
        assert!(timers.pop_expired(t0).is_none());
        let order: Vec<u64> =
            std::iter::from_fn(|| timers.pop_expired(t0 + Duration::from_millis(5)))
                .map(id_of)
                .collect();
        assert_eq!(order, vec![2, 4, 1, 3]);
    }

    #[test]
    fn cancel_skips_and_compacts() {
        let timers = Timers::new();
        let t0 = Instant::now();
        let keys: Vec<_> = (0..10_000)
            .map(|i| timers.insert(t0 + Duration::from_secs(60), start_action(i)))
            .collect();
        let keep = timers.insert(t0, start_action(99));
        for key in &keys {
            assert!(timers.cancel(*key));
        }
        assert!(!timers.cancel(keys[0]), "a cancelled timer cannot be cancelled twice");
        assert_eq!(timers.len(), 1);
        assert!(
            timers.heap.borrow().heap_len() < 5000,
            "stale entries were compacted: {}",
            timers.heap.borrow().heap_len()
        );
        assert_eq!(timers.next_deadline(), Some(t0));
        assert_eq!(id_of(timers.pop_expired(t0).unwrap()), 99);
        assert!(!timers.cancel(keep), "a fired timer is no longer cancellable");
    }
}
