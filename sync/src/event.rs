//! `Event` and `AsyncResult`: wake everyone waiting once something happened. An
//! `AsyncResult` is the hub's one result cell ([`ResultCell`]), settable again.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::cell::{ResultCell, Taken};
use verdant_hub::park::{WaitList, Waker};
use verdant_hub::{Greenlet, GreenletError};

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
    /// Greenlets the last `set` woke that have not returned from `wait` yet. While there
    /// are some, a greenlet that finds the flag set waits its turn behind them (gevent's
    /// notification order). Best effort: one killed after being woken is never counted
    /// down, which only costs later waiters on the set event a yield, until the next `set`.
    woken_unrun: Cell<usize>,
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
    ///
    /// As in gevent, the greenlets this call woke return from `wait` first: a greenlet
    /// that calls `wait` on the set event before they ran (the setter itself, say) yields
    /// once, to queue up behind them.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use verdant_sync::Event;
    ///
    /// let (event, log) = (Event::new(), Rc::new(RefCell::new(Vec::new())));
    /// for n in [1, 2] {
    ///     let (event, log) = (event.clone(), log.clone());
    ///     verdant_hub::spawn(move || { event.wait(); log.borrow_mut().push(n) });
    /// }
    /// verdant_hub::yield_now(); // both wait now
    /// event.set();
    /// event.wait(); // set already, but 1 and 2 were woken first: they go first
    /// log.borrow_mut().push(3);
    /// assert_eq!(*log.borrow(), [1, 2, 3]);
    /// ```
    pub fn set(&self) {
        self.inner.flag.set(true);
        self.inner.generation.set(self.inner.generation.get() + 1);
        self.inner.woken_unrun.set(self.inner.waiters.notify_all());
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
        let inner = &self.inner;
        if inner.flag.get() {
            if inner.woken_unrun.get() > 0 {
                verdant_hub::yield_now(); // behind the greenlets `set` woke
            }
            return true;
        }
        let start = inner.generation.get();
        let set = || inner.flag.get() || inner.generation.get() != start;
        let woken = inner.waiters.wait_until(&"Event::wait()", deadline, set);
        if woken {
            inner.woken_unrun.set(inner.woken_unrun.get().saturating_sub(1));
        }
        woken
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
/// (gevent's `AsyncResult`). Each reader gets its own clone of the result, as often as it
/// asks; [`take`](AsyncResult::take) moves a value out instead (for values that are not
/// `Clone`), after which reads report [`Taken`] until the next `set`.
///
/// It is a [`ResultCell`] (the hub's one result cell) that may be set again.
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
/// assert_eq!(answer.get(), Ok(42)); // and again
/// ```
///
/// A custom error type implements `From<Taken>`, for reads after a `take`:
///
/// ```
/// use verdant_hub::cell::Taken;
/// use verdant_sync::AsyncResult;
///
/// #[derive(Clone, Debug, PartialEq)]
/// enum Failure {
///     Refused,
///     AlreadyTaken,
/// }
///
/// impl From<Taken> for Failure {
///     fn from(_: Taken) -> Failure {
///         Failure::AlreadyTaken
///     }
/// }
///
/// let result: AsyncResult<Vec<u8>, Failure> = AsyncResult::new();
/// result.set(vec![1, 2]);
/// assert_eq!(result.take(), Ok(vec![1, 2]));
/// assert_eq!(result.get(), Err(Failure::AlreadyTaken));
/// result.set_error(Failure::Refused);
/// assert_eq!(result.get(), Err(Failure::Refused));
/// ```
///
/// [`Taken`]: verdant_hub::cell::Taken
pub struct AsyncResult<T, E = String> {
    cell: Rc<ResultCell<T, E>>,
}

impl<T, E> AsyncResult<T, E> {
    /// A result not set yet.
    pub fn new() -> Self {
        AsyncResult { cell: Rc::new(ResultCell::new()) }
    }

    /// Stores a value and wakes every waiter. A later `set`/`set_error` replaces it.
    pub fn set(&self, value: T) {
        self.cell.set(Ok(value));
    }

    /// Stores an error and wakes every waiter.
    pub fn set_error(&self, error: E) {
        self.cell.set(Err(error));
    }

    /// Whether a value or an error is stored (a value taken since counts).
    pub fn ready(&self) -> bool {
        self.cell.ready()
    }

    /// Whether a value (not an error) is stored (a value taken since counts).
    pub fn successful(&self) -> bool {
        self.cell.successful()
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
        self.cell.wait_until(&"AsyncResult::get()", deadline)
    }
}

impl<T, E: Clone + From<Taken>> AsyncResult<T, E> {
    /// Waits for the result and moves a value out (an error is cloned: it stays). Later
    /// reads report [`Taken`](verdant_hub::cell::Taken), converted into `E`, until the
    /// next `set`.
    pub fn take(&self) -> Result<T, E> {
        self.wait();
        self.cell.take().into_result().expect("ready after wait")
    }
}

impl<T: Clone, E: Clone + From<Taken>> AsyncResult<T, E> {
    /// Waits for the result and returns a clone of it; it stays for the next reader.
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
        self.cell.cloned().into_result()
    }
}

impl<T: Clone, E: Clone> AsyncResult<T, E> {
    /// The stored value, if a value (not an error) is stored and was not taken.
    pub fn value(&self) -> Option<T> {
        self.cell.with(|outcome| outcome.value().cloned())
    }

    /// The stored error, if an error is stored.
    pub fn error(&self) -> Option<E> {
        self.cell.with(|outcome| outcome.error().cloned())
    }
}

impl<T: Clone + 'static, E: From<GreenletError> + 'static> AsyncResult<T, E> {
    /// A link callback that copies a greenlet's outcome into this result: its value, or
    /// its error converted into `E` (gevent's `greenlet.link(async_result)`; also with
    /// [`link_value`](verdant_hub::Greenlet::link_value) and
    /// [`link_exception`](verdant_hub::Greenlet::link_exception)).
    ///
    /// ```
    /// use verdant_sync::AsyncResult;
    ///
    /// let g = verdant_hub::spawn(|| 100);
    /// let result: AsyncResult<i32> = AsyncResult::new();
    /// g.link(result.link_target());
    /// assert_eq!(result.get(), Ok(100));
    /// ```
    pub fn link_target(&self) -> impl FnOnce(&Greenlet<T>) + 'static {
        let target = self.clone();
        move |greenlet| match greenlet.get() {
            Ok(value) => target.set(value),
            Err(error) => target.set_error(error.into()),
        }
    }
}

impl<T, E> Default for AsyncResult<T, E> {
    fn default() -> Self {
        AsyncResult::new()
    }
}

impl<T, E> Clone for AsyncResult<T, E> {
    fn clone(&self) -> Self {
        AsyncResult { cell: self.cell.clone() }
    }
}

impl<T, E> Waitable for AsyncResult<T, E> {
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn add_waiter(&self, waker: Waker) {
        self.cell.add_waiter(waker);
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
