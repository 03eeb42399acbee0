//! The hub's timers: what to do at which instant, in deadline order, FIFO on ties.
//!
//! A timing wheel of 1024 one-millisecond slots holds the timers due within about a
//! second; later ones wait in a heap and move into the wheel as it turns. Inserting and
//! firing a timer is O(1) and touches little memory, which matters with 100,000 sleeping
//! greenlets (a binary heap of that size costs a cache miss per level on every pop).
//!
//! Deadlines round *up* to the next millisecond tick, so a timer never fires early; the
//! event loop's poll timeout has millisecond resolution anyway. The entries of each tick
//! are sorted by exact deadline and creation sequence when the tick is collected, so
//! timers still fire in exact deadline order, FIFO on ties.
//!
//! Cancelling removes the action from a slab by key (O(1)); the entry left in the wheel is
//! skipped when its tick comes.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    heap: RefCell<TimerWheel>,
    live: Cell<usize>,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers { heap: RefCell::new(TimerWheel::new()), live: Cell::new(0) }
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

/// The wheel itself.
///
/// ```text
///   tick = ceil((deadline − origin) / 1 ms)
///
///   slots[tick % 1024]   timers due within the next 1024 ticks, one tick per slot
///   occupied             one bit per slot, to find the next non-empty slot quickly
///   overflow             a heap of timers further out; moved into the wheel as it turns
///   actions              what each live timer does, by key (cancel = remove from here)
/// ```
///
/// Entries of cancelled timers stay in their slot (or the heap) until reached, and are
/// skipped: their key no longer names a live action with the same sequence number.
struct TimerWheel {
    origin: Instant,
    /// Every tick before this one has been collected.
    next_tick: u64,
    slots: Vec<Vec<Entry>>,
    occupied: [u64; SLOTS / 64],
    overflow: BinaryHeap<Reverse<Entry>>,
    actions: Slab<(u64, TimerAction)>,
    next_seq: u64,
    /// Collected, sorted entries not yet handed out by `pop_expired`.
    due: VecDeque<Entry>,
}

/// Number of wheel slots, one per millisecond tick.
const SLOTS: usize = 1024;

/// One timer's place in the wheel: `(deadline in ns since origin, creation seq, key)`.
/// The derived order is the firing order: deadline, then FIFO.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: u64,
    seq: u64,
    key: usize,
}

impl Entry {
    fn tick(&self) -> u64 {
        self.at.div_ceil(1_000_000)
    }
}

impl TimerWheel {
    fn new() -> TimerWheel {
        TimerWheel {
            origin: Instant::now(),
            next_tick: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; SLOTS / 64],
            overflow: BinaryHeap::new(),
            actions: Slab::new(),
            next_seq: 0,
            due: VecDeque::new(),
        }
    }

    fn nanos_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn insert(&mut self, deadline: Instant, action: TimerAction) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.actions.insert((seq, action));
        let entry = Entry { at: self.nanos_since_origin(deadline), seq, key };
        self.place(entry);
        TimerKey { slot: key, seq }
    }

    /// Puts an entry in its slot, or in the overflow heap if it is beyond the horizon.
    /// An entry whose tick was already collected goes in the next slot to be collected.
    fn place(&mut self, entry: Entry) {
        let tick = entry.tick().max(self.next_tick);
        if tick >= self.next_tick + SLOTS as u64 {
            self.overflow.push(Reverse(entry));
            return;
        }
        let slot = (tick % SLOTS as u64) as usize;
        self.slots[slot].push(entry);
        self.occupied[slot / 64] |= 1 << (slot % 64);
    }

    fn cancel(&mut self, key: TimerKey) -> bool {
        if !self.is_live(key.seq, key.slot) {
            return false;
        }
        self.actions.remove(key.slot);
        let stale = self.overflow.len().saturating_sub(self.actions.len());
        if stale > 4096 && stale > 2 * self.actions.len() {
            let actions = &self.actions;
            self.overflow
                .retain(|Reverse(e)| matches!(actions.get(e.key), Some((s, _)) if *s == e.seq));
        }
        true
    }

    fn is_live(&self, seq: u64, key: usize) -> bool {
        matches!(self.actions.get(key), Some((s, _)) if *s == seq)
    }

    /// The deadline of the earliest live timer (rounded up to its tick).
    fn next_deadline(&mut self) -> Option<Instant> {
        if let Some(entry) = self.due.front() {
            return Some(self.origin + Duration::from_nanos(entry.at));
        }
        self.refill_from_overflow();
        for offset in 0..SLOTS as u64 {
            let slot = ((self.next_tick + offset) % SLOTS as u64) as usize;
            if self.occupied[slot / 64] & (1 << (slot % 64)) == 0 {
                continue;
            }
            let actions = &self.actions;
            self.slots[slot].retain(|e| matches!(actions.get(e.key), Some((s, _)) if *s == e.seq));
            if self.slots[slot].is_empty() {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
                continue;
            }
            let tick = self.next_tick + offset;
            return Some(self.origin + Duration::from_millis(tick));
        }
        while let Some(Reverse(entry)) = self.overflow.peek().copied() {
            if self.is_live(entry.seq, entry.key) {
                return Some(self.origin + Duration::from_nanos(entry.at));
            }
            self.overflow.pop();
        }
        None
    }

    /// Moves overflow entries that are now within the horizon into their slots.
    fn refill_from_overflow(&mut self) {
        let horizon = self.next_tick + SLOTS as u64;
        while let Some(Reverse(entry)) = self.overflow.peek().copied() {
            if entry.tick() >= horizon {
                break;
            }
            self.overflow.pop();
            if self.is_live(entry.seq, entry.key) {
                self.place(entry);
            }
        }
    }

    fn pop_expired(&mut self, now: Instant) -> Option<TimerAction> {
        loop {
            while let Some(entry) = self.due.pop_front() {
                if self.is_live(entry.seq, entry.key) {
                    return Some(self.actions.remove(entry.key).1);
                }
            }
            let now_tick = self.nanos_since_origin(now) / 1_000_000;
            if now_tick < self.next_tick {
                return None;
            }
            self.collect_tick();
        }
    }

    /// Moves the live entries of tick `next_tick` into `due`, sorted, and advances.
    fn collect_tick(&mut self) {
        self.refill_from_overflow();
        let slot = (self.next_tick % SLOTS as u64) as usize;
        self.next_tick += 1;
        if self.occupied[slot / 64] & (1 << (slot % 64)) == 0 {
            return;
        }
        self.occupied[slot / 64] &= !(1 << (slot % 64));
        let mut entries = std::mem::take(&mut self.slots[slot]);
        entries.sort_unstable();
        self.due.extend(entries.drain(..));
        self.slots[slot] = entries; // keep the capacity
    }

    /// Entries in slots and the overflow heap, stale ones included (tests only).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.slots.iter().map(Vec::len).sum::<usize>() + self.overflow.len() + self.due.len()
    }

    fn drain(&mut self) -> Vec<TimerAction> {
        self.due.clear();
        self.overflow.clear();
        self.slots.iter_mut().for_each(Vec::clear);
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
    fn fires_in_deadline_order_fifo_on_ties_never_early() {
        let timers = Timers::new();
        let t0 = Instant::now();
        timers.insert(t0 + Duration::from_millis(5), start_action(1));
        timers.insert(t0 + Duration::from_millis(1), start_action(2));
        timers.insert(t0 + Duration::from_millis(5), start_action(3));
        timers.insert(t0 + Duration::from_millis(1), start_action(4));
        assert!(timers.pop_expired(t0 + Duration::from_micros(999)).is_none(), "never early");
        // At most one tick (1 ms) late:
        let order: Vec<u64> =
            std::iter::from_fn(|| timers.pop_expired(t0 + Duration::from_millis(6)))
                .map(id_of)
                .collect();
        assert_eq!(order, vec![2, 4, 1, 3]);
        assert!(timers.is_empty());
    }

    #[test]
    fn random_deadlines_fire_in_sorted_order_across_the_horizon() {
        let timers = Timers::new();
        let t0 = Instant::now();
        let mut x: u64 = 12345;
        let mut expected: Vec<(Duration, u64)> = (0..5000u64)
            .map(|id| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // 0..3 s: two thirds beyond the wheel's ~1 s horizon; many exact ties.
                let at = Duration::from_micros((x >> 33) % 3_000_000 / 250 * 250);
                timers.insert(t0 + at, start_action(id));
                (at, id)
            })
            .collect();
        expected.sort(); // by deadline, then id (= creation order)
        let mut fired = Vec::new();
        let mut now = t0;
        while fired.len() < expected.len() {
            now += Duration::from_micros(700);
            while let Some(action) = timers.pop_expired(now) {
                let id = id_of(action);
                let at = expected.iter().find(|(_, i)| *i == id).unwrap().0;
                assert!(t0 + at <= now, "timer {id} fired early");
                assert!(now - (t0 + at) < Duration::from_millis(2), "timer {id} fired late");
                fired.push(id);
            }
        }
        let expected_ids: Vec<u64> = expected.iter().map(|(_, id)| *id).collect();
        assert_eq!(fired, expected_ids);
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
            timers.heap.borrow().entries() < 5000,
            "stale entries were compacted: {}",
            timers.heap.borrow().entries()
        );
        let next = timers.next_deadline().unwrap();
        assert!(next >= t0 && next <= t0 + Duration::from_millis(1), "{:?}", next - t0);
        assert_eq!(id_of(timers.pop_expired(t0 + Duration::from_millis(1)).unwrap()), 99);
        assert!(!timers.cancel(keep), "a fired timer is no longer cancellable");
        assert_eq!(timers.next_deadline(), None);
    }
}
