//! `Event` and `AsyncResult`: wake everyone waiting once something happened.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::park::{self, WaitList, Waker};

use super::Waitable;

/// A flag greenlets can wait for (gevent's `Event`).
///
/// Cloning gives another handle to the same event. `!Send`: it belongs to its hub.
///
/// ```
/// use verdant_sync::Event;
///
/// let ready = Event::new();
/// let r = ready.clone();
/// let waiter = verdant_hub::spawn(move || r.wait());
/// ready.set();
/// waiter.join();
/// assert!(ready.is_set());
/// ```
#[derive(Clone, Default)]
pub struct Event {
    inner: Rc<EventInner>,
}

#[derive(Default)]
struct EventInner {
    flag: Cell<bool>,
    /// Counts calls to `set`. A waiter that sees it change was woken by a `set`, even if a
    /// `clear` came right after.
    generation: Cell<u64>,
    waiters: WaitList,
}

impl Event {
    /// A new, unset event.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the flag and wakes every greenlet waiting now. They all return from `wait`,
    /// even if [`clear`](Event::clear) is called before they run; a greenlet that starts
    /// waiting after this call is not woken by it.
    pub fn set(&self) {
        self.inner.flag.set(true);
        self.inner.generation.set(self.inner.generation.get() + 1);
        self.inner.waiters.notify_all();
    }

    /// Resets the flag; later waits block until the next `set`.
    pub fn clear(&self) {
        self.inner.flag.set(false);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.flag.get()
    }

    /// Waits until the flag is set (returns at once if it is).
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout`. Returns whether the event was set (by then, or during).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let start = self.inner.generation.get();
        loop {
            if self.inner.flag.get() || self.inner.generation.get() != start {
                return true;
            }
            self.inner.waiters.push(park::waker());
            if park::park_until(&"Event::wait()", deadline) {
                return self.inner.flag.get() || self.inner.generation.get() != start;
            }
        }
    }
}

impl Waitable for Event {
    fn is_ready(&self) -> bool {
        self.is_set()
    }

    fn add_waiter(&self, waker: Waker) {
        self.inner.waiters.push(waker);
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .field("waiting", &self.inner.waiters.len())
            .finish()
    }
}

/// A value (or an error) that will be available later, to any number of waiters
/// (gevent's `AsyncResult`). Each waiter gets its own clone of the result.
///
/// ```
/// use verdant_sync::AsyncResult;
///
/// let answer: AsyncResult<u32> = AsyncResult::new();
/// let a = answer.clone();
/// let readers: Vec<_> = (0..3).map(|_| {
///     let a = a.clone();
///     verdant_hub::spawn(move || a.get())
/// }).collect();
/// answer.set(42);
/// for r in readers {
///     assert_eq!(r.get().unwrap(), Ok(42));
/// }
/// ```
pub struct AsyncResult<T, E = String> {
    inner: Rc<AsyncInner<T, E>>,
}

struct AsyncInner<T, E> {
    result: RefCell<Option<Result<T, E>>>,
    waiters: WaitList,
}

impl<T, E> AsyncResult<T, E> {
    /// A result not set yet.
    pub fn new() -> Self {
        AsyncResult {
            inner: Rc::new(AsyncInner { result: RefCell::new(None), waiters: WaitList::new() }),
        }
    }

    /// Stores a value and wakes every waiter. A later `set`/`set_error` replaces it.
    pub fn set(&self, value: T) {
        self.store(Ok(value));
    }

    /// Stores an error and wakes every waiter.
    pub fn set_error(&self, error: E) {
        self.store(Err(error));
    }

    fn store(&self, result: Result<T, E>) {
        *self.inner.result.borrow_mut() = Some(result);
        self.inner.waiters.notify_all();
    }

    /// Whether a value or an error is stored.
    pub fn ready(&self) -> bool {
        self.inner.result.borrow().is_some()
    }

    /// Whether a value (not an error) is stored.
    pub fn successful(&self) -> bool {
        matches!(&*self.inner.result.borrow(), Some(Ok(_)))
    }

    /// Waits until a result is stored.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout`; returns whether a result is stored.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.ready() {
                return true;
            }
            self.inner.waiters.push(park::waker());
            if park::park_until(&"AsyncResult::get()", deadline) {
                return self.ready();
            }
        }
    }
}

impl<T: Clone, E: Clone> AsyncResult<T, E> {
    /// Waits for the result and returns a clone of it.
    pub fn get(&self) -> Result<T, E> {
        self.wait();
        self.peek().expect("ready after wait")
    }

    /// Waits at most `timeout` for the result; `None` if it is still not there.
    pub fn get_timeout(&self, timeout: Duration) -> Option<Result<T, E>> {
        self.wait_timeout(timeout).then(|| self.peek().expect("ready after wait"))
    }

    /// The stored result, without waiting.
    pub fn peek(&self) -> Option<Result<T, E>> {
        self.inner.result.borrow().clone()
    }

    /// The stored value, if a value (not an error) is stored.
    pub fn value(&self) -> Option<T> {
        self.peek().and_then(Result::ok)
    }

    /// The stored error, if an error is stored.
    pub fn error(&self) -> Option<E> {
        self.peek().and_then(Result::err)
    }
}

impl<T, E> Default for AsyncResult<T, E> {
    fn default() -> Self {
        AsyncResult::new()
    }
}

impl<T, E> Clone for AsyncResult<T, E> {
    fn clone(&self) -> Self {
        AsyncResult { inner: self.inner.clone() }
    }
}

impl<T, E> Waitable for AsyncResult<T, E> {
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn add_waiter(&self, waker: Waker) {
        self.inner.waiters.push(waker);
    }
}

impl<T, E> fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .field("successful", &self.successful())
            .finish()
    }
}
