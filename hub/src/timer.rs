//! The hub's timers: what to do at which instant, in deadline order, FIFO on ties.
//!
//! Generic over the action `A`: the wheel stores actions and hands them back when they are
//! due; what they mean (wake a greenlet, deliver a timeout, start a greenlet) is the
//! loop's business (`TimerAction` in `hub.rs`).
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
//! skipped when its tick comes. Such stale entries are counted: once they outnumber the
//! live timers (and a few thousand), one pass drops them all and gives back the memory the
//! burst took, so ten million short `with_timeout` scopes leave nothing behind (amortised
//! O(1) per cancel).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use slab::Slab;

/// Names one timer, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    seq: u64,
}

/// The timers of one hub. Methods take `&self`; the count of live timers sits in a `Cell`
/// so the loop can see "no timers" at every turn boundary without borrowing the wheel.
pub(crate) struct Timers<A> {
    wheel: RefCell<TimerWheel<A>>,
    live: Cell<usize>,
}

impl<A> Timers<A> {
    pub(crate) fn new() -> Timers<A> {
        Timers { wheel: RefCell::new(TimerWheel::new()), live: Cell::new(0) }
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

    pub(crate) fn insert(&self, deadline: Instant, action: A) -> TimerKey {
        let key = self.wheel.borrow_mut().insert(deadline, action);
        self.live.set(self.live.get() + 1);
        key
    }

    /// Cancels a timer. Returns `true` if it had not fired yet.
    pub(crate) fn cancel(&self, key: TimerKey) -> bool {
        let cancelled = self.wheel.borrow_mut().cancel(key);
        if cancelled {
            self.live.set(self.live.get() - 1);
        }
        cancelled
    }

    /// Whether a timer has neither fired nor been cancelled.
    pub(crate) fn is_pending(&self, key: TimerKey) -> bool {
        self.wheel.borrow().is_live(key.seq, key.slot)
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.wheel.borrow_mut().next_deadline()
    }

    /// Removes and returns the action of the earliest timer due at or before `now`.
    pub(crate) fn pop_expired(&self, now: Instant) -> Option<A> {
        let action = self.wheel.borrow_mut().pop_expired(now);
        if action.is_some() {
            self.live.set(self.live.get() - 1);
        }
        action
    }

    /// Whether code left the wheel borrowed (see `Hub::end_overflowed`).
    pub(crate) fn in_use(&self) -> bool {
        self.wheel.try_borrow_mut().is_err()
    }

    /// Takes every action out, for a hub that is shutting down.
    pub(crate) fn drain(&self) -> Vec<A> {
        self.live.set(0);
        self.wheel.borrow_mut().drain()
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
///
/// # Invariant
///
/// `stored` is the number of entries in `slots`, `overflow` and `due`, stale ones
/// included; `stored - actions.len()` of them are stale.
struct TimerWheel<A> {
    origin: Instant,
    /// Every tick before this one has been collected.
    next_tick: u64,
    slots: Vec<Vec<Entry>>,
    occupied: [u64; SLOTS / 64],
    overflow: BinaryHeap<Reverse<Entry>>,
    actions: Slab<(u64, A)>,
    next_seq: u64,
    /// Collected, sorted entries not yet handed out by `pop_expired`.
    due: VecDeque<Entry>,
    /// Entries held in `slots`, `overflow` and `due`, live and stale.
    stored: usize,
    /// Bytes of buffer capacity given back since the allocator was last asked to return
    /// free memory to the system (see [`TimerWheel::gave_back`]).
    given_back: usize,
}

/// Number of wheel slots, one per millisecond tick.
const SLOTS: usize = 1024;

/// Stale entries tolerated before a compaction, whatever the number of live timers.
const STALE_SLACK: usize = 4096;

/// `due` and the overflow heap keep at most this many entries' worth of spare capacity
/// once a burst has passed through them.
const KEEP_CAPACITY: usize = 1024;

/// A slot that held nothing on its last tick keeps capacity for at most this many entries
/// (24 bytes each: under 1 MiB for the whole wheel).
const SLOT_KEEP: usize = 32;

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

impl<A> TimerWheel<A> {
    fn new() -> TimerWheel<A> {
        TimerWheel {
            origin: Instant::now(),
            next_tick: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; SLOTS / 64],
            overflow: BinaryHeap::new(),
            actions: Slab::new(),
            next_seq: 0,
            due: VecDeque::new(),
            stored: 0,
            given_back: 0,
        }
    }

    fn nanos_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn insert(&mut self, deadline: Instant, action: A) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.actions.insert((seq, action));
        let entry = Entry { at: self.nanos_since_origin(deadline), seq, key };
        self.place(entry);
        self.stored += 1;
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
        let stale = self.stored - self.actions.len();
        if stale > STALE_SLACK && stale > self.actions.len() {
            self.compact();
        }
        true
    }

    /// Drops every stale entry and gives back the spare capacity a burst left behind.
    #[cold]
    fn compact(&mut self) {
        let actions = &self.actions;
        let live = |e: &Entry| matches!(actions.get(e.key), Some((s, _)) if *s == e.seq);
        for (slot, entries) in self.slots.iter_mut().enumerate() {
            entries.retain(live);
            let held = entries.len();
            self.given_back += shrink(entries, held);
            if entries.is_empty() {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
            }
        }
        self.overflow.retain(|Reverse(e)| live(e));
        if self.overflow.capacity() > self.overflow.len() + KEEP_CAPACITY {
            self.overflow.shrink_to_fit();
        }
        self.due.retain(live);
        if self.due.capacity() > self.due.len() + KEEP_CAPACITY {
            self.due.shrink_to_fit();
        }
        self.actions.shrink_to_fit();
        self.stored = self.actions.len();
        self.gave_back(0);
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
            let before = self.slots[slot].len();
            self.slots[slot].retain(|e| matches!(actions.get(e.key), Some((s, _)) if *s == e.seq));
            self.stored -= before - self.slots[slot].len();
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
            self.stored -= 1;
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
            } else {
                self.stored -= 1;
            }
        }
    }

    fn pop_expired(&mut self, now: Instant) -> Option<A> {
        loop {
            while let Some(entry) = self.due.pop_front() {
                self.stored -= 1;
                if self.is_live(entry.seq, entry.key) {
                    return Some(self.actions.remove(entry.key).1);
                }
            }
            if self.due.capacity() > KEEP_CAPACITY {
                self.due = VecDeque::new();
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
        let held = entries.len();
        self.due.extend(entries.drain(..));
        let freed = shrink(&mut entries, held);
        self.gave_back(freed);
        self.slots[slot] = entries; // keep the capacity for the next turn of the wheel
    }

    /// Entries in slots and the overflow heap, stale ones included (tests only).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.slots.iter().map(Vec::len).sum::<usize>() + self.overflow.len() + self.due.len()
    }

    /// Spare capacity held, in entries, across every buffer (tests only).
    #[cfg(test)]
    fn spare_capacity(&self) -> usize {
        let slots: usize = self.slots.iter().map(|v| v.capacity() - v.len()).sum();
        slots + self.overflow.capacity() - self.overflow.len() + self.due.capacity()
            - self.due.len()
    }

    fn drain(&mut self) -> Vec<A> {
        self.stored = 0;
        self.due.clear();
        self.overflow.clear();
        self.slots.iter_mut().for_each(Vec::clear);
        self.actions.drain().map(|(_, action)| action).collect()
    }
}

/// After a slot's tick was collected, or a compaction: gives back its capacity if it is
/// far more than the `held` entries it just had (a burst has passed). The slack (4×) keeps
/// a steady stream of timers from reallocating every turn of the wheel. Returns the bytes
/// given back.
fn shrink(entries: &mut Vec<Entry>, held: usize) -> usize {
    let before = entries.capacity();
    if before > 4 * held + SLOT_KEEP {
        entries.shrink_to(2 * held + SLOT_KEEP);
    }
    (before - entries.capacity()) * size_of::<Entry>()
}

/// Bytes of buffers given back after which the allocator is asked to return its free
/// memory to the system.
const TRIM_AFTER: usize = 4 << 20;

impl<A> TimerWheel<A> {
    /// Counts `bytes` of capacity given back; once a burst's worth ([`TRIM_AFTER`]) has
    /// been, asks glibc to return free heap memory to the system. Without that, the
    /// many slot-sized blocks a burst freed stay in glibc's heap, scattered, and the
    /// process keeps the burst's memory for good.
    fn gave_back(&mut self, bytes: usize) {
        self.given_back += bytes;
        if self.given_back < TRIM_AFTER {
            return;
        }
        self.given_back = 0;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // The tests' actions are plain ids.
    fn start_action(id: u64) -> u64 {
        id
    }

    fn id_of(action: u64) -> u64 {
        action
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
        let count: u64 = if cfg!(miri) { 200 } else { 5000 };
        let mut expected: Vec<(Duration, u64)> = (0..count)
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
            timers.wheel.borrow().entries() < 5000,
            "stale entries were compacted: {}",
            timers.wheel.borrow().entries()
        );
        let next = timers.next_deadline().unwrap();
        assert!(next >= t0 && next <= t0 + Duration::from_millis(1), "{:?}", next - t0);
        assert_eq!(id_of(timers.pop_expired(t0 + Duration::from_millis(1)).unwrap()), 99);
        assert!(!timers.cancel(keep), "a fired timer is no longer cancellable");
        assert_eq!(timers.next_deadline(), None);
    }

    /// Regression: ten million short `with_timeout` scopes left their cancelled entries in
    /// the wheel's slots (and the slots' capacity) for good: 126 MB that never came back.
    #[test]
    fn a_burst_of_cancelled_timers_leaves_no_entries_or_capacity_behind() {
        let timers = Timers::new();
        let t0 = Instant::now();
        let keep = timers.insert(t0 + Duration::from_secs(3600), start_action(0));
        // Miri interprets every step: a burst a few times the slack still compacts often.
        let burst: u64 = if cfg!(miri) { 3 * STALE_SLACK as u64 } else { 1_000_000 };
        for i in 0..burst {
            // 50 ms ahead, as a `with_timeout(50 ms)` that finishes early; time does not
            // advance, as in a burst that never blocks.
            let at = t0 + Duration::from_millis(50) + Duration::from_nanos(i);
            let key = timers.insert(at, start_action(i));
            assert!(timers.cancel(key));
            let wheel = timers.wheel.borrow();
            assert!(wheel.stored <= 2 * STALE_SLACK + 2, "{} entries held", wheel.stored);
        }
        let wheel = timers.wheel.borrow();
        assert_eq!(wheel.stored, wheel.entries(), "the count of stored entries is exact");
        let most = SLOTS * SLOT_KEEP + 2 * KEEP_CAPACITY;
        assert!(wheel.spare_capacity() <= most, "{}", wheel.spare_capacity());
        drop(wheel);
        // The same with time passing, so every slot of the wheel sees its share.
        let mut now = t0;
        for i in 0..burst {
            if i % 300 == 0 {
                now += Duration::from_micros(100);
                while timers.pop_expired(now).is_some() {}
            }
            let key = timers.insert(now + Duration::from_millis(50), start_action(i));
            assert!(timers.cancel(key));
        }
        let wheel = timers.wheel.borrow();
        let most = SLOTS * SLOT_KEEP + 2 * KEEP_CAPACITY;
        assert!(wheel.spare_capacity() <= most, "{}", wheel.spare_capacity());
        drop(wheel);
        assert_eq!(timers.len(), 1);
        assert!(timers.cancel(keep));
    }

    /// The count of stored entries stays exact through inserts, cancels, firing and
    /// compaction, whatever the mix.
    #[test]
    fn the_stored_count_is_exact_under_a_random_mix() {
        let timers = Timers::new();
        let t0 = Instant::now();
        let mut keys = Vec::new();
        let mut x: u64 = 99;
        let mut now = t0;
        // Fewer steps under Miri, which interprets every one.
        let steps: u64 = if cfg!(miri) { 12_000 } else { 200_000 };
        for step in 0..steps {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            match (x >> 60) % 4 {
                0 | 1 => {
                    let at = now + Duration::from_micros((x >> 20) % 2_500_000);
                    keys.push(timers.insert(at, start_action(step)));
                }
                2 if !keys.is_empty() => {
                    let key = keys.swap_remove(((x >> 8) % keys.len() as u64) as usize);
                    timers.cancel(key);
                }
                _ => {
                    now += Duration::from_micros(300);
                    while timers.pop_expired(now).is_some() {}
                }
            }
            if step % 997 == 0 {
                timers.next_deadline();
                let wheel = timers.wheel.borrow();
                assert_eq!(wheel.stored, wheel.entries(), "step {step}");
            }
        }
    }
}
