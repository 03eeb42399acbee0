//! [`Countdown`]: waiting for N things to happen on other threads, from greenlets (which
//! park, their hub running on), a hub's main code, or plain threads (which block).
//!
//! Built on [`block_on`](verdant_hub::block_on): the wait is a future whose `Waker` the
//! last `count_down` wakes, so it goes through the hub's cross-thread door and the hub
//! does not call the wait a deadlock while the count is above zero.

use std::future::poll_fn;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

/// A count of things still to happen, and the waiters for it to reach zero.
///
/// Invariant: `waiters` is emptied only after `remaining` reached zero; a waiter stores its
/// waker *before* its last look at `remaining`, so either it sees zero or the last
/// `count_down` (which takes the lock after its decrement) finds its waker.
#[derive(Debug)]
pub(crate) struct Countdown {
    remaining: AtomicUsize,
    waiters: Mutex<Vec<Waker>>,
}

impl Countdown {
    pub(crate) fn new(count: usize) -> Countdown {
        Countdown { remaining: AtomicUsize::new(count), waiters: Mutex::new(Vec::new()) }
    }

    /// One thing happened; the last one wakes the waiters.
    ///
    /// # Panics
    ///
    /// If called more times than the count.
    pub(crate) fn count_down(&self) {
        let before = self.remaining.fetch_sub(1, Ordering::AcqRel);
        assert_ne!(before, 0, "counted down below zero");
        if before == 1 {
            let waiters =
                std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    /// Whether everything happened.
    pub(crate) fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// Waits until everything happened: the greenlet parks, a plain thread blocks.
    pub(crate) fn wait(&self) {
        verdant_hub::block_on(poll_fn(|cx| {
            if self.is_done() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            drop(waiters);
            if self.is_done() { Poll::Ready(()) } else { Poll::Pending }
        }));
    }
}
