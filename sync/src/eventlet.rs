//! eventlet's `Event`: a one-shot value (or error) that waiters receive, sent once and
//! reset explicitly. gevent's `Event` is a flag ([`crate::Event`]); eventlet's carries a
//! result and refuses a second `send` until [`reset`](Event::reset), so it is a type of
//! its own here, named after eventlet (`verdant::sync::eventlet::Event`).
//!
//! | eventlet | verdant |
//! |---|---|
//! | `evt.send(v)` (twice: `AssertionError`) | `evt.send(v)` (twice: `Err(AlreadySent(v))`) |
//! | `evt.send_exception(e)` | `evt.send_exception(e)` |
//! | `evt.wait()`, `evt.wait(timeout)` | `evt.wait()`, `evt.wait_timeout(d)` (`None` if none came) |
//! | `evt.reset()` (before a send: `AssertionError`) | `evt.reset()` (before a send: `Err(NotSent)`) |
//! | `ready()`, `has_result()`, `has_exception()`, `poll()` | the same |

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::cell::Outcome;
use verdant_hub::park::{WaitList, Waker};

use super::Waitable;

/// eventlet's `Event`: [`send`](Event::send) a value (or
/// [`send_exception`](Event::send_exception) an error) once; every waiter, present and
/// future, gets a clone of it until [`reset`](Event::reset).
///
/// ```
/// use verdant_sync::eventlet::{AlreadySent, Event};
///
/// let evt: Event<&str> = Event::new();
/// let e = evt.clone();
/// verdant_hub::spawn(move || e.send("some stuff"));
/// assert_eq!(evt.wait(), Ok("some stuff"));
/// assert_eq!(evt.send("second stuff"), Err(AlreadySent("second stuff")));
/// assert_eq!(evt.wait(), Ok("some stuff")); // the same value again
/// evt.reset().unwrap();
/// evt.send("second stuff").unwrap();
/// assert_eq!(evt.wait(), Ok("second stuff"));
/// ```
pub struct Event<T, E = String> {
    inner: Rc<Inner<T, E>>,
}

struct Inner<T, E> {
    outcome: RefCell<Outcome<T, E>>,
    waiters: WaitList,
}

/// A second `send` (or `send_exception`) without a [`reset`](Event::reset) in between;
/// what was sent comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlreadySent<T>(pub T);

impl<T> fmt::Display for AlreadySent<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event was already sent: reset() it before sending again")
    }
}

impl<T: fmt::Debug> Error for AlreadySent<T> {}

/// A [`reset`](Event::reset) of an event that was not sent since it was made or reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotSent;

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reset() of an event that was not sent")
    }
}

impl Error for NotSent {}

impl<T, E> Event<T, E> {
    /// An event nothing was sent to.
    pub fn new() -> Self {
        Event { inner: Rc::new(Inner { outcome: RefCell::default(), waiters: WaitList::new() }) }
    }

    /// Sends `value` to every waiter, present and future (until `reset`).
    ///
    /// # Errors
    ///
    /// If something was sent already: the value comes back.
    pub fn send(&self, value: T) -> Result<(), AlreadySent<T>> {
        self.complete(Ok(value)).map_err(|back| AlreadySent(back.ok().expect("sent a value")))
    }

    /// Sends an error: waiters get `Err(error)`.
    ///
    /// # Errors
    ///
    /// If something was sent already: the error comes back.
    pub fn send_exception(&self, error: E) -> Result<(), AlreadySent<E>> {
        let sent = self.complete(Err(error));
        sent.map_err(|back| AlreadySent(back.err().expect("sent an error")))
    }

    fn complete(&self, result: Result<T, E>) -> Result<(), Result<T, E>> {
        self.inner.outcome.borrow_mut().complete(result)?;
        self.inner.waiters.notify_all();
        Ok(())
    }

    /// Forgets what was sent: waits block again until the next `send`.
    ///
    /// # Errors
    ///
    /// If nothing was sent since the event was made or last reset (eventlet asserts).
    pub fn reset(&self) -> Result<(), NotSent> {
        let old = std::mem::take(&mut *self.inner.outcome.borrow_mut());
        if old.is_ready() { Ok(()) } else { Err(NotSent) }
    }

    /// Whether something was sent (and not reset since).
    pub fn ready(&self) -> bool {
        self.inner.outcome.borrow().is_ready()
    }

    /// Whether a value was sent.
    pub fn has_result(&self) -> bool {
        self.inner.outcome.borrow().succeeded()
    }

    /// Whether an error was sent.
    pub fn has_exception(&self) -> bool {
        self.ready() && !self.has_result()
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        self.inner.waiters.wait_until(&"eventlet Event::wait()", deadline, || self.ready())
    }
}

impl<T: Clone, E: Clone> Event<T, E> {
    /// Waits until something is sent, and returns a clone of it.
    pub fn wait(&self) -> Result<T, E> {
        self.wait_until(None);
        self.poll().expect("sent, after the wait")
    }

    /// Waits at most `timeout`; `None` if nothing was sent by then.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T, E>> {
        self.wait_until(Instant::now().checked_add(timeout));
        self.poll()
    }

    /// What was sent, without waiting; `None` if nothing was.
    pub fn poll(&self) -> Option<Result<T, E>> {
        match &*self.inner.outcome.borrow() {
            Outcome::Value(value) => Some(Ok(value.clone())),
            Outcome::Failed(error) => Some(Err(error.clone())),
            Outcome::Pending | Outcome::Taken => None,
        }
    }
}

impl<T, E> Default for Event<T, E> {
    fn default() -> Self {
        Event::new()
    }
}

impl<T, E> Clone for Event<T, E> {
    fn clone(&self) -> Self {
        Event { inner: self.inner.clone() }
    }
}

impl<T, E> Waitable for Event<T, E> {
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn add_waiter(&self, waker: Waker) {
        self.inner.waiters.push(waker);
    }
}

impl<T, E> fmt::Debug for Event<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("eventlet::Event")
            .field("ready", &self.ready())
            .field("waiting", &self.inner.waiters.len())
            .finish()
    }
}
