//! `ThreadResult`: the outcome of a task on a worker thread, waited for from a greenlet
//! (cooperatively) or from a plain thread (natively).
//!
//! The outcome lives in the hub's cross-thread result cell ([`SharedResultCell`]): the
//! worker completes it, waiters and done-callbacks are told, and readers clone the value
//! (`get`) or move it out once (`take`). A done-callback is given the result, not the value,
//! so running one never uses the value up.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use verdant_hub::GreenletError;
use verdant_hub::cell::{Outcome, SharedResultCell};
use verdant_hub::park::Waker;
use verdant_sync::Waitable;

use crate::local::LocalCallback;

/// Where a worker leaves a task's outcome.
pub(crate) type Slot<T> = SharedResultCell<T, GreenletError>;

/// The outcome of a task running on a [`ThreadPool`](crate::ThreadPool) worker (gevent's
/// `ThreadResult`). `Send + Sync`; waiting on it blocks only the calling greenlet (or, on a
/// thread without a hub, the thread). Clones share the result.
///
/// The value is read with [`get`](Self::get) (a clone, as often as asked) or moved out
/// once with [`take`](Self::take); a panic or a cancellation is reported on every read.
///
/// A wait can be cut short by `with_timeout` or a kill: the task itself runs on, and its
/// result is simply dropped when nobody holds the `ThreadResult` any more.
///
/// ```
/// use verdant_threadpool::ThreadPool;
///
/// let pool = ThreadPool::new(1);
/// let result = pool.spawn(|| "on a worker".to_string());
/// assert_eq!(result.get().as_deref(), Ok("on a worker"));
/// assert_eq!(result.get().as_deref(), Ok("on a worker")); // read again
/// assert_eq!(result.take().as_deref(), Ok("on a worker")); // moved out
/// assert_eq!(result.get(), Err(verdant_hub::GreenletError::Taken));
/// ```
pub struct ThreadResult<T> {
    slot: Arc<Slot<T>>,
}

impl<T> ThreadResult<T> {
    /// A result for a task not finished yet, and the slot its worker completes.
    pub(crate) fn new() -> (ThreadResult<T>, Arc<Slot<T>>) {
        let slot = Arc::new(Slot::new());
        (ThreadResult { slot: slot.clone() }, slot)
    }

    /// Whether the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        self.slot.ready()
    }

    /// Whether the task finished and returned normally.
    pub fn successful(&self) -> bool {
        self.slot.successful()
    }

    /// Waits until the task has finished.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout`; returns whether the task has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        self.slot.wait_until(&"a thread-pool task", deadline)
    }

    /// Waits for the task and moves its value out. The value can be taken once (later
    /// `take`s and `get`s return [`GreenletError::Taken`]); a panic is reported as
    /// [`GreenletError::Panicked`] on every call, a task cancelled by `kill` or by
    /// dropping the pool as [`GreenletError::Killed`].
    pub fn take(&self) -> Result<T, GreenletError> {
        self.wait();
        read(self.slot.take())
    }
}

impl<T: Clone> ThreadResult<T> {
    /// Waits for the task and returns a clone of its value: every call, on any clone of the
    /// result, gets it again (until a [`take`](Self::take)). Failures are reported as by
    /// `take`.
    pub fn get(&self) -> Result<T, GreenletError> {
        self.wait();
        read(self.slot.cloned())
    }

    /// Like [`get`](Self::get), waiting at most `timeout`; `None` if still running.
    pub fn get_timeout(&self, timeout: Duration) -> Option<Result<T, GreenletError>> {
        self.wait_timeout(timeout).then(|| read(self.slot.cloned()))
    }
}

impl<T: 'static> ThreadResult<T> {
    /// Runs `callback` with this result on this thread's hub once the task finishes (now,
    /// at the next turn, if it already has). This thread must have a hub.
    ///
    /// The callback reads the result like anyone else (Python's `add_done_callback`): a
    /// `get` there leaves the value for later readers.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use verdant_threadpool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1);
    /// let result = pool.spawn(|| 6 * 7);
    /// let seen = Rc::new(Cell::new(0));
    /// let s = seen.clone();
    /// result.when_done(move |r| s.set(r.get().unwrap()));
    /// assert_eq!(result.get(), Ok(42));
    /// while seen.get() == 0 {
    ///     verdant_hub::yield_now(); // the callback runs at a later turn of the hub
    /// }
    /// assert_eq!(seen.get(), 42);
    /// assert_eq!(result.get(), Ok(42)); // the callback did not use it up
    /// ```
    pub fn when_done(&self, callback: impl FnOnce(&ThreadResult<T>) + 'static) {
        let me = self.clone();
        let local = LocalCallback::new(move || callback(&me));
        self.slot.on_done(move || local.fire());
    }
}

/// A finished task's outcome as a `Result`.
fn read<T>(outcome: Outcome<T, GreenletError>) -> Result<T, GreenletError> {
    outcome.into_result().expect("read after the wait: the task has finished")
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
        self.slot.add_waiter(waker);
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
