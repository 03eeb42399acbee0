//! Results that arrive later: one state machine, [`Outcome`], behind every handle whose
//! value comes later (a greenlet's value, `verdant_sync::AsyncResult`, the thread pool's
//! `ThreadResult`, the process pool's `ApplyResult`, the slots of a pool map), and the two
//! cells that wait on it: [`ResultCell`] for one hub, [`SharedResultCell`] for a result
//! completed on another thread.
//!
//! ```text
//!              complete(Ok(v))              take(): v, moved out
//!   Pending ──────────────────▶ Value(v) ─────────────────────────▶ Taken
//!      │                         │    ▲
//!      │ complete(Err(e))        └────┘ cloned(): a clone of v, as often as asked
//!      ▼
//!   Failed(e) ──┐ cloned(), take(): a clone of e, on every call
//!        ▲──────┘
//! ```
//!
//! * **Written once.** `complete` stores only into `Pending`; a later `complete` is
//!   refused (its result is handed back). [`Outcome::set`] overwrites whatever is there,
//!   for gevent's `AsyncResult.set`, which may be called again.
//! * **Read many times.** A value is cloned out (`T: Clone`) as often as anyone asks, until
//!   one `take` moves it out; from then on reads report [`Taken`]. An error is never used
//!   up: every read gets a clone of it.
//! * **Ready** means not `Pending`; **succeeded** means `Value` or `Taken`.
//! * **Done-callbacks** (links, `when_done`, a pool's callbacks) are given the result's
//!   handle or `&Outcome`, never the value itself: they read it like anyone else, so
//!   running one never uses the result up.
//!
//! The cells add waiting. Reading a cell never blocks: the handles built on them wait
//! first (`wait_until`), then read.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::GreenletError;
use crate::park::{self, WaitList, Waker};
use crate::remote::RemoteWaker;

/// Where a result that arrives later is in its life (see the [module](self) diagram).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Outcome<T, E> {
    /// Nothing yet.
    #[default]
    Pending,
    /// A value, readable again and again until [`take`](Outcome::take) moves it out.
    Value(T),
    /// An error: every read gets a clone of it.
    Failed(E),
    /// The value was moved out by a `take`.
    Taken,
}

impl<T, E> Outcome<T, E> {
    /// Whether a value or an error has come (it may have been taken since).
    pub fn is_ready(&self) -> bool {
        !matches!(self, Outcome::Pending)
    }

    /// Whether a value came (it may have been taken since).
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Value(_) | Outcome::Taken)
    }

    /// Stores `result` if nothing came yet; otherwise hands it back untouched.
    pub fn complete(&mut self, result: Result<T, E>) -> Result<(), Result<T, E>> {
        if self.is_ready() {
            return Err(result);
        }
        self.set(result);
        Ok(())
    }

    /// Stores `result`, replacing whatever is there (gevent's `AsyncResult.set`).
    pub fn set(&mut self, result: Result<T, E>) {
        *self = match result {
            Ok(value) => Outcome::Value(value),
            Err(error) => Outcome::Failed(error),
        };
    }

    /// The value, if one is here (not taken).
    pub fn value(&self) -> Option<&T> {
        match self {
            Outcome::Value(value) => Some(value),
            _ => None,
        }
    }

    /// The error, if the result failed.
    pub fn error(&self) -> Option<&E> {
        match self {
            Outcome::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// Moves the value out, leaving `Taken`; anything else is returned as it is (an error
    /// cloned, so it stays for the next reader).
    pub fn take(&mut self) -> Outcome<T, E>
    where
        E: Clone,
    {
        match self {
            Outcome::Value(_) => std::mem::replace(self, Outcome::Taken),
            Outcome::Failed(error) => Outcome::Failed(error.clone()),
            Outcome::Pending => Outcome::Pending,
            Outcome::Taken => Outcome::Taken,
        }
    }

    /// The outcome as a `Result`, `Taken` converted into the error type; `None` while
    /// pending.
    ///
    /// ```
    /// use verdant_hub::GreenletError;
    /// use verdant_hub::cell::Outcome;
    ///
    /// let mut outcome: Outcome<u32, GreenletError> = Outcome::Pending;
    /// outcome.complete(Ok(7)).unwrap();
    /// assert_eq!(outcome.clone().into_result(), Some(Ok(7))); // read, and read again
    /// assert_eq!(outcome.take().into_result(), Some(Ok(7))); // moved out
    /// assert_eq!(outcome.into_result(), Some(Err(GreenletError::Taken)));
    /// ```
    pub fn into_result(self) -> Option<Result<T, E>>
    where
        E: From<Taken>,
    {
        match self {
            Outcome::Pending => None,
            Outcome::Value(value) => Some(Ok(value)),
            Outcome::Failed(error) => Some(Err(error)),
            Outcome::Taken => Some(Err(Taken.into())),
        }
    }
}

/// A read found the value already moved out by an earlier `take`. Result types turn it
/// into their own error (`GreenletError::Taken`, the process pool's `GetError::Taken`);
/// a custom error type of `verdant_sync::AsyncResult` implements `From<Taken>` for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken;

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the value was already taken by an earlier take()")
    }
}

impl Error for Taken {}

impl From<Taken> for GreenletError {
    fn from(_: Taken) -> GreenletError {
        GreenletError::Taken
    }
}

impl From<Taken> for String {
    /// For results whose errors are plain messages (`AsyncResult<T>`'s default).
    fn from(taken: Taken) -> String {
        taken.to_string()
    }
}

/// A result that arrives later, waited for by greenlets of one hub. `!Send`; share it with
/// an `Rc`.
///
/// ```
/// use std::rc::Rc;
/// use verdant_hub::cell::{Outcome, ResultCell};
///
/// let cell: Rc<ResultCell<String, String>> = Rc::default();
/// let completer = cell.clone();
/// verdant_hub::spawn(move || completer.complete(Ok("done".to_string())));
/// assert!(cell.wait_until(&"the example's result", None));
/// assert_eq!(cell.cloned(), Outcome::Value("done".to_string())); // as often as asked
/// assert_eq!(cell.take(), Outcome::Value("done".to_string())); // once
/// assert_eq!(cell.take(), Outcome::Taken);
/// ```
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant_hub::cell::ResultCell<u8, u8>>();
/// ```
pub struct ResultCell<T, E> {
    outcome: RefCell<Outcome<T, E>>,
    /// Woken, all of them, when a result is stored.
    waiters: WaitList,
}

impl<T, E> ResultCell<T, E> {
    /// A cell with nothing in it yet.
    pub fn new() -> ResultCell<T, E> {
        ResultCell { outcome: RefCell::new(Outcome::Pending), waiters: WaitList::new() }
    }

    /// Stores `result` and wakes every waiter, if nothing came yet; otherwise hands it back.
    pub fn complete(&self, result: Result<T, E>) -> Result<(), Result<T, E>> {
        self.outcome.borrow_mut().complete(result)?;
        self.waiters.notify_all();
        Ok(())
    }

    /// Stores `result` whatever is there, and wakes every waiter.
    pub fn set(&self, result: Result<T, E>) {
        let mut new = Outcome::Pending;
        new.set(result);
        // The old outcome is dropped after the borrow ends: its drop may run any code.
        let old = std::mem::replace(&mut *self.outcome.borrow_mut(), new);
        drop(old);
        self.waiters.notify_all();
    }

    /// Whether a value or an error has come.
    pub fn ready(&self) -> bool {
        self.outcome.borrow().is_ready()
    }

    /// Whether a value came (it may have been taken since).
    pub fn successful(&self) -> bool {
        self.outcome.borrow().succeeded()
    }

    /// Waits until a result is here or `deadline` passes; returns whether it is here.
    /// `reason` names the wait in deadlock reports.
    pub fn wait_until(&self, reason: &dyn fmt::Display, deadline: Option<Instant>) -> bool {
        self.waiters.wait_until(reason, deadline, || self.ready())
    }

    /// Registers `waker` to be woken when a result is stored (for `wait`/`iwait`).
    pub fn add_waiter(&self, waker: Waker) {
        self.waiters.push(waker);
    }

    /// A copy of the outcome, without waiting: a value stays for the next reader.
    pub fn cloned(&self) -> Outcome<T, E>
    where
        T: Clone,
        E: Clone,
    {
        self.outcome.borrow().clone()
    }

    /// The outcome, without waiting, the value moved out (see [`Outcome::take`]).
    pub fn take(&self) -> Outcome<T, E>
    where
        E: Clone,
    {
        self.outcome.borrow_mut().take()
    }

    /// Calls `f` with the outcome as it is now (without waiting, without using it up).
    pub fn with<R>(&self, f: impl FnOnce(&Outcome<T, E>) -> R) -> R {
        f(&self.outcome.borrow())
    }
}

impl<T, E> Default for ResultCell<T, E> {
    fn default() -> Self {
        ResultCell::new()
    }
}

impl<T, E> fmt::Debug for ResultCell<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultCell")
            .field("ready", &self.ready())
            .field("successful", &self.successful())
            .field("waiting", &self.waiters.len())
            .finish()
    }
}

/// A result that arrives later from another thread: completed anywhere, waited for by
/// greenlets of any hub (through their inbox) or by plain threads. `Send + Sync` when `T`
/// and `E` are `Send`; share it with an `Arc`.
///
/// # Invariant
///
/// `done` is set, with `Release`, after the outcome is stored and before anyone is told;
/// the listeners are taken out under the same lock that stores the outcome. So a listener
/// registered under the lock while `done` is false is always told, and one that finds
/// `done` set is told at once: no wake-up is lost.
///
/// ```
/// use std::sync::Arc;
/// use verdant_hub::GreenletError;
/// use verdant_hub::cell::SharedResultCell;
///
/// let cell: Arc<SharedResultCell<u64, GreenletError>> = Arc::default();
/// let completer = cell.clone();
/// let worker = std::thread::spawn(move || completer.complete(Ok(42)));
/// assert!(cell.wait_until(&"the worker", None)); // parks this greenlet only
/// assert_eq!(cell.cloned().into_result(), Some(Ok(42)));
/// worker.join().unwrap().unwrap();
/// ```
pub struct SharedResultCell<T, E> {
    /// Set (with `Release`) once the outcome is stored: lets `ready()` skip the lock.
    done: AtomicBool,
    state: Mutex<SharedState<T, E>>,
    /// Waiters on threads without a hub.
    finished: Condvar,
}

struct SharedState<T, E> {
    outcome: Outcome<T, E>,
    /// Told once, when the outcome is stored; always empty afterwards.
    listeners: Vec<Listener>,
    native_waiters: usize,
}

/// Who to tell when a shared result completes.
enum Listener {
    /// A greenlet parked on some hub.
    Wake(RemoteWaker),
    /// A callback, run on the completing thread.
    Call(Box<dyn FnOnce() + Send>),
}

impl Listener {
    fn tell(self) {
        match self {
            Listener::Wake(waker) => {
                let _ = waker.wake(); // a hub that is gone has nobody left to wake
            }
            Listener::Call(callback) => callback(),
        }
    }
}

impl<T, E> SharedResultCell<T, E> {
    /// A cell with nothing in it yet.
    pub fn new() -> SharedResultCell<T, E> {
        SharedResultCell {
            done: AtomicBool::new(false),
            state: Mutex::new(SharedState {
                outcome: Outcome::Pending,
                listeners: Vec::new(),
                native_waiters: 0,
            }),
            finished: Condvar::new(),
        }
    }

    /// Stores `result` and tells everyone waiting, if nothing came yet; otherwise hands it
    /// back.
    pub fn complete(&self, result: Result<T, E>) -> Result<(), Result<T, E>> {
        self.complete_then(result, || {}).0
    }

    /// Like [`complete`](Self::complete), running `before_waking` after the outcome is
    /// stored and before it becomes visible: whatever `before_waking` does is seen by
    /// anyone who sees the outcome, woken or polling [`ready`](Self::ready). It runs (under
    /// the cell's lock: keep it short) whether or not `result` was stored.
    pub fn complete_then<R>(
        &self,
        result: Result<T, E>,
        before_waking: impl FnOnce() -> R,
    ) -> (Result<(), Result<T, E>>, R) {
        let (listeners, native, after) = {
            let mut state = self.state.lock();
            if let Err(refused) = state.outcome.complete(result) {
                drop(state);
                return (Err(refused), before_waking());
            }
            let after = before_waking();
            self.done.store(true, Ordering::Release);
            (std::mem::take(&mut state.listeners), state.native_waiters > 0, after)
        };
        listeners.into_iter().for_each(Listener::tell);
        if native {
            self.finished.notify_all();
        }
        (Ok(()), after)
    }

    /// Whether a value or an error has come.
    pub fn ready(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Whether a value came (it may have been taken since).
    pub fn successful(&self) -> bool {
        self.ready() && self.state.lock().outcome.succeeded()
    }

    /// Registers `waker` (a greenlet of this thread's hub) to be woken, through its hub's
    /// inbox, when a result is stored; wakes it now if one is here.
    pub fn add_waiter(&self, waker: Waker) {
        self.listen(Listener::Wake(RemoteWaker::new(waker)));
    }

    /// Runs `callback` once a result is stored: on the thread that stores it, or now, on
    /// this thread, if one is here already. Keep it short (send something somewhere).
    pub fn on_done(&self, callback: impl FnOnce() + Send + 'static) {
        self.listen(Listener::Call(Box::new(callback)));
    }

    fn listen(&self, listener: Listener) {
        {
            let mut state = self.state.lock();
            if !self.done.load(Ordering::Relaxed) {
                state.listeners.push(listener);
                return;
            }
        }
        listener.tell();
    }

    /// Waits until a result is here or `deadline` passes; returns whether it is here. In a
    /// greenlet (a thread with a hub) only the greenlet waits; a thread without a hub
    /// blocks. `reason` names the wait in deadlock reports.
    pub fn wait_until(&self, reason: &dyn fmt::Display, deadline: Option<Instant>) -> bool {
        if self.ready() {
            return true;
        }
        if !crate::has_hub() {
            return self.wait_natively(deadline);
        }
        park::wait_until(reason, deadline, |waker| self.add_waiter(waker), || self.ready())
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

    /// A copy of the outcome, without waiting: a value stays for the next reader.
    pub fn cloned(&self) -> Outcome<T, E>
    where
        T: Clone,
        E: Clone,
    {
        self.state.lock().outcome.clone()
    }

    /// The outcome, without waiting, the value moved out (see [`Outcome::take`]).
    pub fn take(&self) -> Outcome<T, E>
    where
        E: Clone,
    {
        self.state.lock().outcome.take()
    }

    /// Calls `f` with the outcome as it is now, under the cell's lock (keep it short).
    pub fn with<R>(&self, f: impl FnOnce(&Outcome<T, E>) -> R) -> R {
        f(&self.state.lock().outcome)
    }
}

impl<T, E> Default for SharedResultCell<T, E> {
    fn default() -> Self {
        SharedResultCell::new()
    }
}

impl<T, E> fmt::Debug for SharedResultCell<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedResultCell")
            .field("ready", &self.ready())
            .field("successful", &self.successful())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_cloned_until_taken_and_an_error_repeats() {
        let mut value: Outcome<String, GreenletError> = Outcome::Pending;
        assert!(!value.is_ready());
        value.complete(Ok("v".into())).unwrap();
        assert_eq!(value.complete(Ok("second".into())), Err(Ok("second".into())));
        assert_eq!(value.clone(), Outcome::Value("v".into()));
        assert_eq!(value.take(), Outcome::Value("v".into()));
        assert_eq!(value.take(), Outcome::Taken);
        assert!(value.succeeded() && value.is_ready());

        let mut error: Outcome<String, GreenletError> = Outcome::Pending;
        error.complete(Err(GreenletError::Killed)).unwrap();
        for _ in 0..3 {
            assert_eq!(error.take(), Outcome::Failed(GreenletError::Killed));
        }
        assert!(!error.succeeded());
    }

    #[test]
    fn set_replaces_what_complete_would_refuse() {
        let cell: ResultCell<u8, String> = ResultCell::new();
        cell.set(Err("first".into()));
        cell.set(Ok(2));
        assert_eq!(cell.cloned(), Outcome::Value(2));
    }

    #[test]
    fn shared_cells_tell_listeners_once_even_when_they_come_late() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        let cell: SharedResultCell<u8, String> = SharedResultCell::new();
        let told = Arc::new(AtomicUsize::new(0));
        let early = told.clone();
        cell.on_done(move || {
            early.fetch_add(1, Ordering::SeqCst);
        });
        assert!(cell.complete(Ok(1)).is_ok());
        assert!(cell.complete(Ok(2)).is_err());
        let late = told.clone();
        cell.on_done(move || {
            late.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(told.load(Ordering::SeqCst), 2);
        assert_eq!(cell.cloned(), Outcome::Value(1));
    }

    #[test]
    fn cells_are_send_only_when_shared() {
        fn check<C: Send + Sync>() {}
        check::<SharedResultCell<u8, GreenletError>>();
    }
}
