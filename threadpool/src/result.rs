//! `ThreadResult`: the outcome of a task on a worker thread, waited for from a greenlet
//! (cooperatively) or from a plain thread (natively).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use verdant_hub::park::{self, Waker};
use verdant_hub::{GreenletError, RemoteWaker};
use verdant_sync::Waitable;

use crate::local::LocalCallback;

/// Who to tell when a task finishes.
pub(crate) enum Notify {
    /// A parked greenlet on some hub.
    Wake(RemoteWaker),
    /// A callback parked on some hub's thread.
    Run(LocalCallback),
}

/// Where a worker leaves a task's outcome, and who waits for it.
pub(crate) struct Slot<T> {
    /// Set (with `Release`) once the outcome is stored: lets `ready()` skip the lock.
    done: AtomicBool,
    state: Mutex<SlotState<T>>,
    /// For waiters on threads without a hub.
    finished: Condvar,
}

struct SlotState<T> {
    value: Option<T>,
    error: Option<GreenletError>,
    taken: bool,
    notify: Vec<Notify>,
    native_waiters: usize,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Slot<T>> {
        Arc::new(Slot {
            done: AtomicBool::new(false),
            state: Mutex::new(SlotState {
                value: None,
                error: None,
                taken: false,
                notify: Vec::new(),
                native_waiters: 0,
            }),
            finished: Condvar::new(),
        })
    }

    /// Stores the outcome (once) and tells everyone waiting.
    pub(crate) fn complete(&self, outcome: Result<T, GreenletError>) {
        self.complete_then(outcome, || {});
    }

    /// Stores the outcome (once), runs `before_waking`, then marks the slot done and tells
    /// everyone waiting: whatever `before_waking` does is seen by anyone who sees the
    /// outcome, whether woken or polling `is_done`.
    pub(crate) fn complete_then<R>(
        &self,
        outcome: Result<T, GreenletError>,
        before_waking: impl FnOnce() -> R,
    ) -> R {
        let (notify, native, result) = {
            let mut state = self.state.lock();
            if self.done.load(Ordering::Relaxed) {
                drop(state);
                return before_waking();
            }
            match outcome {
                Ok(value) => state.value = Some(value),
                Err(error) => state.error = Some(error),
            }
            let result = before_waking();
            self.done.store(true, Ordering::Release);
            (std::mem::take(&mut state.notify), state.native_waiters > 0, result)
        };
        for target in notify {
            match target {
                Notify::Wake(waker) => {
                    let _ = waker.wake();
                }
                Notify::Run(callback) => callback.fire(),
            }
        }
        if native {
            self.finished.notify_all();
        }
        result
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Registers `target`, or fires it now if the task is already done.
    pub(crate) fn notify(&self, target: Notify) {
        {
            let mut state = self.state.lock();
            if !self.done.load(Ordering::Relaxed) {
                state.notify.push(target);
                return;
            }
        }
        match target {
            Notify::Wake(waker) => {
                let _ = waker.wake();
            }
            Notify::Run(callback) => callback.fire(),
        }
    }

    /// Waits until done or `deadline`; returns whether done.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.is_done() {
            return true;
        }
        if !verdant_hub::has_hub() {
            return self.wait_natively(deadline);
        }
        loop {
            self.notify(Notify::Wake(RemoteWaker::new(park::waker())));
            if park::park_until(&"a thread-pool task", deadline) && !self.is_done() {
                return false;
            }
            if self.is_done() {
                return true;
            }
        }
    }

    /// Blocks the OS thread (there is no hub to run meanwhile).
    fn wait_natively(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.state.lock();
        state.native_waiters += 1;
        while !self.done.load(Ordering::Relaxed) {
            match deadline {
                None => self.finished.wait(&mut state),
                Some(deadline) => {
                    if self.finished.wait_until(&mut state, deadline).timed_out() {
                        break;
                    }
                }
            }
        }
        state.native_waiters -= 1;
        self.done.load(Ordering::Relaxed)
    }

    /// Moves the outcome out (the value once; the error every time).
    pub(crate) fn take(&self) -> Result<T, GreenletError> {
        let mut state = self.state.lock();
        if let Some(error) = &state.error {
            return Err(error.clone());
        }
        match state.value.take() {
            Some(value) => {
                state.taken = true;
                Ok(value)
            }
            None if state.taken => Err(GreenletError::Taken),
            None => unreachable!("take() after the slot is done"),
        }
    }

    pub(crate) fn successful(&self) -> bool {
        self.is_done() && self.state.lock().error.is_none()
    }
}

/// The outcome of a task running on a [`ThreadPool`](crate::ThreadPool) worker (gevent's
/// `ThreadResult`). `Send + Sync`; waiting on it blocks only the calling greenlet (or, on a
/// thread without a hub, the thread).
///
/// A wait can be cut short by `with_timeout` or a kill: the task itself runs on, and its
/// result is simply dropped when nobody holds the `ThreadResult` any more.
pub struct ThreadResult<T> {
    pub(crate) slot: Arc<Slot<T>>,
}

impl<T> ThreadResult<T> {
    /// Whether the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        self.slot.is_done()
    }

    /// Whether the task finished and returned normally.
    pub fn successful(&self) -> bool {
        self.slot.successful()
    }

    /// Waits until the task has finished.
    pub fn wait(&self) {
        self.slot.wait_until(None);
    }

    /// Waits at most `timeout`; returns whether the task has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.slot.wait_until(Instant::now().checked_add(timeout))
    }

    /// Waits for the task and moves its value out. The value can be taken once (later
    /// calls return [`GreenletError::Taken`]); a panic is reported as
    /// [`GreenletError::Panicked`] on every call, a task cancelled by `kill` or by dropping
    /// the pool as [`GreenletError::Killed`].
    pub fn get(&self) -> Result<T, GreenletError> {
        self.wait();
        self.slot.take()
    }

    /// Like [`get`](Self::get), waiting at most `timeout`; `None` if still running.
    pub fn get_timeout(&self, timeout: Duration) -> Option<Result<T, GreenletError>> {
        self.wait_timeout(timeout).then(|| self.slot.take())
    }
}

impl<T: 'static> ThreadResult<T> {
    /// Runs `callback` with the outcome on this thread's hub once the task finishes (now,
    /// at the next turn, if it already has). This thread must have a hub.
    pub fn when_done(self, callback: impl FnOnce(Result<T, GreenletError>) + 'static) {
        let slot = self.slot.clone();
        self.slot.notify(Notify::Run(LocalCallback::new(move || callback(slot.take()))));
    }
}

impl<T> Clone for ThreadResult<T> {
    fn clone(&self) -> Self {
        ThreadResult { slot: self.slot.clone() }
    }
}

impl<T> Waitable for ThreadResult<T> {
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn add_waiter(&self, waker: Waker) {
        self.slot.notify(Notify::Wake(RemoteWaker::new(waker)));
    }
}

impl<T> fmt::Debug for ThreadResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadResult")
            .field("ready", &self.ready())
            .field("successful", &self.successful())
            .finish()
    }
}
