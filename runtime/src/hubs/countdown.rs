//! [`Countdown`]: waiting for N other threads to finish something, from a greenlet (which
//! parks, its hub running on), a hub's main code, or a plain thread (which blocks).
//!
//! Built on [`block_on`](verdant_hub::block_on): the wait is a future whose `Waker` the
//! last `count_down` wakes, so it goes through the hub's cross-thread door and the hub
//! does not call the wait a deadlock while the count is above zero.

use std::future::poll_fn;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

/// A count of things still to happen, and the one waiter for it to reach zero.
///
/// Invariant: `waiter` is taken only after `remaining` reached zero, or replaced by the
/// waiter itself; the waiter stores its waker *before* its last look at `remaining`, so
/// either it sees zero or the last `count_down` finds its waker (lock order).
#[derive(Debug)]
pub(crate) struct Countdown {
    remaining: AtomicUsize,
    waiter: Mutex<Option<Waker>>,
}

impl Countdown {
    pub(crate) fn new(count: usize) -> Countdown {
        Countdown { remaining: AtomicUsize::new(count), waiter: Mutex::new(None) }
    }

    /// One thing happened; the last one wakes the waiter.
    pub(crate) fn count_down(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(waker) = waker {
                waker.wake();
            }
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
            *self.waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            if self.is_done() { Poll::Ready(()) } else { Poll::Pending }
        }));
    }
}
