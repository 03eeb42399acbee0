//! Unix signals for greenlets: gevent's `signal_handler`, and a wait that parks only the
//! calling greenlet until a signal comes.
//!
//! [`handler`] runs a callback as a **new greenlet** on the hub that registered it, every
//! time the signal arrives. Nothing of yours runs inside the OS signal handler, so the
//! callback may do anything a greenlet does: block, take locks, stop a server. A signal
//! may have several handlers (on one hub or on several); they run in the order they were
//! added. Dropping the returned [`SignalHandler`] unregisters it.
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use verdant::signal::{self, SIGUSR2};
//! use verdant::sync::Event;
//!
//! let arrived = Event::new();
//! let count = Rc::new(Cell::new(0));
//! let (seen, counted) = (arrived.clone(), count.clone());
//! let handler = signal::handler(SIGUSR2, move || {
//!     counted.set(counted.get() + 1); // a greenlet: it could block here
//!     seen.set();
//! })
//! .unwrap();
//! signal::raise(SIGUSR2).unwrap();
//! arrived.wait(); // parks until the handler's greenlet ran
//! assert_eq!(count.get(), 1);
//! drop(handler); // unregistered
//! ```
//!
//! [`wait`] parks the calling greenlet (or the main code) until one of several signals
//! arrives, and says which:
//!
//! ```
//! use verdant::signal::{self, SIGUSR1, SIGWINCH};
//!
//! let waiter = verdant::spawn(|| signal::wait(&[SIGUSR1, SIGWINCH]));
//! verdant::yield_now(); // let it start waiting: only later signals count
//! signal::raise(SIGWINCH).unwrap();
//! assert_eq!(waiter.take().unwrap().unwrap(), SIGWINCH);
//! ```
//!
//! # How it works
//!
//! Built on signal-hook: each hub that listens to a signal has a self-pipe whose write end
//! signal-hook writes a byte to from the signal handler, and whose read end a dispatcher
//! greenlet of that hub waits on (`listener.rs`). Several hubs (threads) listening to one
//! signal each get every delivery of it.
//!
//! # Limits, and differences from gevent
//!
//! * A signal that arrives several times before the hub runs its dispatcher is delivered
//!   once: handlers run at least once per burst (the kernel coalesces pending signals too).
//! * While a hub has a handler or a waiter for a signal, its dispatcher waits for I/O: the
//!   hub stays busy ([`join_hub`](crate::join_hub) waits, and a main code that waits is not
//!   reported as deadlocked, since a signal may still wake it). gevent's handlers are
//!   `ref=False`; drop the handler to let the hub finish.
//! * Once the last handler or waiter of a signal in the process is gone, the signal gets
//!   the action it had before (the default one: `SIGTERM` terminates again; or ignored).
//! * `SIGKILL`, `SIGSTOP` and the synchronous faults (`SIGSEGV`, `SIGILL`, `SIGFPE`)
//!   cannot be handled: [`handler`] and [`wait`] refuse them with `InvalidInput`.
//! * Signals are process-wide: a signal meant for one part of a program reaches every hub
//!   that listens to it.
//! * A handler belongs to the hub that registered it:
//!
//! ```compile_fail,E0277
//! fn assert_send<T: Send>() {}
//! assert_send::<verdant::signal::SignalHandler>();
//! ```

mod default;
mod listener;

use std::fmt;
use std::io;
use std::os::raw::c_int;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::park;

use listener::Subscription;

/// The signal numbers (`SIGTERM`, `SIGINT`, `SIGUSR1`...), from signal-hook.
pub use signal_hook::consts::signal::*;

/// Runs `callback` in a new greenlet on this thread's hub each time `signal` arrives
/// (gevent's `signal_handler`), until the returned handle is dropped or
/// [cancelled](SignalHandler::cancel).
///
/// Fails with `InvalidInput` for `SIGKILL`, `SIGSTOP`, `SIGSEGV`, `SIGILL`, `SIGFPE` and
/// numbers that are not signals. A panic in the callback ends its greenlet only.
pub fn handler(signal: c_int, callback: impl Fn() + 'static) -> io::Result<SignalHandler> {
    let subscription = Subscription::new(signal)?;
    let id = subscription.listener().add_handler(Rc::new(callback));
    Ok(SignalHandler { id, subscription })
}

/// A registered signal handler; dropping it unregisters the handler (a delivery already
/// under way still runs it once). `!Send`: it belongs to its hub.
#[must_use = "the handler is unregistered when this handle is dropped"]
pub struct SignalHandler {
    id: u64,
    subscription: Subscription,
}

impl SignalHandler {
    /// The signal handled.
    pub fn signal(&self) -> c_int {
        self.subscription.listener().signal()
    }

    /// Unregisters the handler (gevent's `cancel`); the same as dropping it.
    pub fn cancel(self) {}
}

impl Drop for SignalHandler {
    fn drop(&mut self) {
        self.subscription.listener().remove_handler(self.id);
    }
}

impl fmt::Debug for SignalHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalHandler").field("signal", &self.signal()).finish()
    }
}

/// Parks the calling greenlet until one of `signals` arrives, and returns it (the first in
/// `signals`, if several came). Only signals that arrive after the call count.
///
/// Fails with `InvalidInput` if `signals` is empty or holds a signal that cannot be
/// handled (see [`handler`]). Meanwhile the signals are handled by verdant: they do not
/// terminate the process.
pub fn wait(signals: &[c_int]) -> io::Result<c_int> {
    let arrived = wait_until(signals, None)?;
    Ok(arrived.expect("a wait without a deadline ends with a signal"))
}

/// Like [`wait`], giving up after `timeout`: `Ok(None)` if no signal came.
pub fn wait_timeout(signals: &[c_int], timeout: Duration) -> io::Result<Option<c_int>> {
    wait_until(signals, Instant::now().checked_add(timeout))
}

fn wait_until(signals: &[c_int], deadline: Option<Instant>) -> io::Result<Option<c_int>> {
    if signals.is_empty() {
        let message = "signal::wait needs at least one signal to wait for";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    let subscriptions = signals
        .iter()
        .map(|&signal| Subscription::new(signal).map(|s| (s.listener().deliveries(), s)))
        .collect::<io::Result<Vec<_>>>()?;
    let mut arrived = None;
    park::wait_until(
        &Signals(signals),
        deadline,
        |waker| {
            for (_, subscription) in &subscriptions {
                subscription.listener().waiters().push(waker.clone());
            }
        },
        || {
            arrived = subscriptions
                .iter()
                .find(|(start, subscription)| subscription.listener().deliveries() != *start)
                .map(|(_, subscription)| subscription.listener().signal());
            arrived.is_some()
        },
    );
    Ok(arrived)
}

/// A subscription to one signal that remembers which deliveries it has seen: the
/// subprocess module's `SIGCHLD` fallback. Take [`seen`](SignalWatch::seen) before checking
/// a condition a signal may change, then [`wait_after`](SignalWatch::wait_after) it.
pub(crate) struct SignalWatch(Subscription);

impl SignalWatch {
    pub(crate) fn new(signal: c_int) -> io::Result<SignalWatch> {
        Subscription::new(signal).map(SignalWatch)
    }

    /// Deliveries so far.
    pub(crate) fn seen(&self) -> u64 {
        self.0.listener().deliveries()
    }

    /// Parks until a delivery after `seen`, or `deadline` (returns `false`).
    pub(crate) fn wait_after(&self, seen: u64, deadline: Option<Instant>) -> bool {
        let listener = self.0.listener();
        park::wait_until(
            &Signals(&[listener.signal()]),
            deadline,
            |waker| listener.waiters().push(waker),
            || listener.deliveries() != seen,
        )
    }
}

/// Sends `signal` to this process (signal-hook's `raise`): a way to test handlers.
pub fn raise(signal: c_int) -> io::Result<()> {
    signal_hook::low_level::raise(signal)
}

/// What a wait waits on, for deadlock messages.
struct Signals<'a>(&'a [c_int]);

impl fmt::Display for Signals<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|&signal| default::name(signal)).collect();
        write!(f, "a signal ({})", names.join(", "))
    }
}
