//! Counters of what a hub has done, for tests, benches and the curious.

use std::cell::Cell;

/// Live counters of the loop, bumped as it works (plain `Cell`s: the hub is one thread).
/// Subsystems keep their own counts; [`stats`](crate::stats) gathers them all.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) spawned: Cell<u64>,
    pub(crate) finished: Cell<u64>,
    pub(crate) turns: Cell<u64>,
    pub(crate) polls_nonblocking: Cell<u64>,
    pub(crate) polls_blocking: Cell<u64>,
    pub(crate) timers_fired: Cell<u64>,
    pub(crate) spins: Cell<u64>,
}

/// A snapshot of this thread's hub counters, from [`stats`](crate::stats). All counts start
/// at hub creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Greenlets created.
    pub spawned: u64,
    /// Greenlets that have died (returned, panicked, were killed, or never got a stack);
    /// `spawned - finished` are alive.
    pub finished: u64,
    /// Times the loop resumed a greenlet.
    pub switches: u64,
    /// Times the blocked-hub monitor reported this hub blocked (one per episode; see
    /// [`HubConfig::max_blocking_time`](crate::HubConfig::max_blocking_time)).
    pub blocking_reports: u64,
    /// Loop turns (each starts with a turn boundary: inbox, I/O, timers).
    pub turns: u64,
    /// `poll` calls with a zero timeout (something was ready to run).
    pub polls_nonblocking: u64,
    /// `poll` calls that could block (nothing was ready to run).
    pub polls_blocking: u64,
    /// Timers that fired.
    pub timers_fired: u64,
    /// Times the cross-thread inbox was found non-empty and drained.
    pub inbox_batches: u64,
    /// Cross-thread messages handled.
    pub inbox_messages: u64,
    /// Times another thread wrote the hub's wake eventfd.
    pub wake_writes: u64,
    /// Times the hub spun waiting for cross-thread work before sleeping.
    pub spins: u64,
    /// Greenlet stacks in use now (running or suspended greenlets).
    pub stacks_in_use: usize,
    /// Stacks kept for reuse now.
    pub stacks_free: usize,
    /// Live timers now.
    pub timers_pending: usize,
    /// Shared stacks mapped now ([`StackMode::Shared`](crate::StackMode::Shared)).
    pub shared_stacks: usize,
    /// Bytes copied between shared stacks and greenlets' heap buffers (out plus in).
    pub shared_bytes_copied: u64,
}

impl Stats {
    /// Adds one to `counter`.
    #[inline(always)]
    pub(crate) fn bump(counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }
}
