//! [`Lifecycle`]: the life cycle every server shares, written once. A
//! [`StreamServer`](super::StreamServer) and a [`DatagramServer`](super::DatagramServer)
//! differ only in what they serve from (a listener, a UDP socket) and what one turn of
//! their serving loop does (accept a connection, receive a datagram); they supply that
//! through [`Serve`], and get `start`, `serve_forever`, `close` and `stop` from it.
//!
//! The states, and what moves a server between them:
//!
//! ```text
//!   ready ──start──► serving ──close──► closed ──stop: handlers done or killed──► stopped
//!     │                 │                  ▲                                        ▲
//!     └──────close──────┼──────────────────┘                                        │
//!                       └──socket failed: closed, the error kept for serve_forever──┘
//! ```
//!
//! * ready: the socket is open, no serving greenlet. `start` moves on; `serve_forever`
//!   starts, then waits for stopped.
//! * serving: the serving greenlet runs [`Serve::serve`], handlers run in the pool.
//! * closed: the serving greenlet is killed and the socket dropped (it closes once the
//!   last `Rc` on it goes: the serving loop's, or a datagram handler's). Handlers go on.
//!   `start` fails from here on.
//! * stopped: `stop` waited for the handlers (then killed the rest), or the socket
//!   failed. [`serve_forever`](Serve::serve_forever) returns.
//!
//! The serving loop's rhythm is shared too ([`Lifecycle::serve_in_bursts`]): wait for room
//! in the pool, take one connection or datagram, and after a burst of them yield so that
//! the handlers just spawned run.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::Duration;

use verdant_hub::GreenletRef;
use verdant_pool::Pool;
use verdant_sync::Event;

use super::{DEFAULT_MAX_ACCEPT, ServerError};

/// The state a server's life cycle keeps: its socket while open, its serving greenlet, the
/// pool its handlers run in, and how it stopped. `S` is what it serves from.
pub(super) struct Lifecycle<S> {
    /// `None` once closed. The serving loop holds its own `Rc`, so closing waits for it
    /// to be killed first.
    socket: RefCell<Option<Rc<S>>>,
    /// The greenlet running [`Serve::serve`], once started; `None` again once closed.
    serving: RefCell<Option<GreenletRef>>,
    pool: RefCell<Pool>,
    /// Connections or datagrams taken per turn of the serving loop; never zero.
    burst: Cell<usize>,
    /// How long `stop(None)` lets handlers finish before killing them.
    stop_timeout: Cell<Duration>,
    /// Set when the server has stopped (gracefully or because the socket failed).
    stopped: Event,
    /// Why the socket failed, for `serve_forever` to return.
    failure: RefCell<Option<io::Error>>,
}

impl<S> Lifecycle<S> {
    /// A ready server's life cycle: open on `socket`, handlers in an unlimited pool, a
    /// stop timeout of 1 s.
    pub(super) fn new(socket: S) -> Lifecycle<S> {
        Lifecycle {
            socket: RefCell::new(Some(Rc::new(socket))),
            serving: RefCell::new(None),
            pool: RefCell::new(Pool::unlimited()),
            burst: Cell::new(DEFAULT_MAX_ACCEPT),
            stop_timeout: Cell::new(Duration::from_secs(1)),
            stopped: Event::new(),
            failure: RefCell::new(None),
        }
    }

    /// The socket, unless closed.
    pub(super) fn socket(&self) -> Option<Rc<S>> {
        self.socket.borrow().clone()
    }

    /// The pool handlers run in.
    pub(super) fn pool(&self) -> Pool {
        self.pool.borrow().clone()
    }

    /// Runs handlers in `pool` (set before starting).
    pub(super) fn set_pool(&self, pool: Pool) {
        *self.pool.borrow_mut() = pool;
    }

    /// Sets how many connections or datagrams the serving loop takes per turn (the
    /// builders refuse zero).
    pub(super) fn set_burst(&self, burst: usize) {
        self.burst.set(burst);
    }

    /// Sets how long `stop(None)` waits for handlers.
    pub(super) fn set_stop_timeout(&self, timeout: Duration) {
        self.stop_timeout.set(timeout);
    }

    /// Whether the serving greenlet is running.
    pub(super) fn is_started(&self) -> bool {
        self.serving.borrow().as_ref().is_some_and(|g| !g.ready())
    }

    /// Whether the socket is closed (after `close`, `stop`, or a socket failure).
    pub(super) fn is_closed(&self) -> bool {
        self.socket.borrow().is_none()
    }

    /// The serving loop's rhythm: runs `step` (with the pool to spawn handlers in) until
    /// it breaks, waiting for room in the pool before each step, and yielding after each
    /// burst so that the handlers just spawned (and every other greenlet) run.
    pub(super) fn serve_in_bursts(&self, mut step: impl FnMut(&Pool) -> ControlFlow<()>) {
        let pool = self.pool();
        loop {
            for _ in 0..self.burst.get() {
                if pool.is_full() {
                    pool.wait_available(); // stop taking work while full, as gevent does
                }
                if step(&pool).is_break() {
                    return;
                }
            }
            verdant_hub::yield_now();
        }
    }

    /// Drops the socket and kills the serving greenlet; handlers go on. The socket goes
    /// first: when the caller *is* the serving greenlet (an `on_error` callback closing
    /// its server), the kill unwinds it at once and nothing after the kill runs.
    pub(super) fn close(&self) {
        self.socket.borrow_mut().take();
        let serving = self.serving.borrow_mut().take();
        if let Some(serving) = serving {
            serving.kill();
        }
    }

    /// Whether the calling greenlet is one `stop` would wait for: the serving greenlet
    /// or a handler.
    fn is_own_greenlet(&self) -> bool {
        let me = verdant_hub::current();
        let serving = self.serving.borrow().as_ref() == Some(&me);
        serving || self.pool.borrow().contains(&me)
    }

    /// Closes, waits up to `timeout` for the handlers, kills the rest, and marks the
    /// server stopped.
    fn drain(&self, timeout: Duration) {
        self.close();
        let pool = self.pool();
        if !pool.join_timeout(timeout) {
            pool.kill_timeout(Duration::from_secs(1));
        }
        self.stopped.set();
    }

    /// The socket failed: closes and marks the server stopped with `error`.
    fn fail(&self, error: io::Error) {
        self.socket.borrow_mut().take();
        *self.failure.borrow_mut() = Some(error);
        self.stopped.set();
    }

    /// Waits until stopped; the socket's failure if it failed.
    fn wait_stopped(&self) -> io::Result<()> {
        self.stopped.wait();
        match self.failure.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// What a server supplies to its [`Lifecycle`], and the life cycle's operations that need
/// the whole server (a greenlet they spawn keeps it alive). Implemented by the state
/// behind each server's `Rc`.
pub(super) trait Serve: Sized + 'static {
    /// What the server serves from: a listener, a UDP socket.
    type Socket: 'static;
    /// The peers' address type, in the errors it reports.
    type Peer;

    /// The server's life cycle.
    fn lifecycle(&self) -> &Lifecycle<Self::Socket>;

    /// The serving greenlet's name, e.g. `StreamServer(127.0.0.1:80) accept loop`.
    fn serving_name(&self) -> String;

    /// The serving loop: runs until killed by `close`, or until the socket fails (then it
    /// calls [`fail`](Self::fail) and returns).
    fn serve(self: &Rc<Self>, socket: &Rc<Self::Socket>);

    /// Passes `error` to the server's `on_error` callback.
    fn report(&self, error: ServerError<Self::Peer>);

    /// Starts serving in a new greenlet. Fails if already started or closed.
    fn start(self: &Rc<Self>) -> io::Result<()> {
        let life = self.lifecycle();
        if life.is_started() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the server is already started",
            ));
        }
        let Some(socket) = life.socket() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "the server is closed"));
        };
        let state = self.clone();
        let serving = verdant_hub::Builder::new()
            .name(self.serving_name())
            .spawn(move || state.serve(&socket))?;
        *life.serving.borrow_mut() = Some(serving.as_ref());
        Ok(())
    }

    /// Starts (unless started) and waits until stopped; the socket's failure if it
    /// failed. If the calling greenlet unwinds meanwhile (killed, timed out), the server
    /// is stopped in a new greenlet.
    fn serve_forever(self: &Rc<Self>) -> io::Result<()> {
        if !self.lifecycle().is_started() {
            self.start()?;
        }
        let stop_on_unwind = StopOnUnwind(self);
        let result = self.lifecycle().wait_stopped();
        std::mem::forget(stop_on_unwind);
        result
    }

    /// Closes, waits up to `timeout` (`None`: the stop timeout) for the handlers, then
    /// kills the rest. From the serving greenlet or a handler, it drops the socket at
    /// once and leaves the rest to a new greenlet, since the caller is one of the
    /// greenlets to wait for.
    fn stop(self: &Rc<Self>, timeout: Option<Duration>) {
        let life = self.lifecycle();
        let timeout = timeout.unwrap_or(life.stop_timeout.get());
        if life.is_own_greenlet() {
            life.socket.borrow_mut().take();
            let state = self.clone();
            verdant_hub::spawn(move || state.stop(Some(timeout)));
            return;
        }
        life.drain(timeout);
    }

    /// The socket failed: reports it, closes, and wakes `serve_forever` with `error`.
    fn fail(&self, error: io::Error) {
        self.report(ServerError::ListenerFailed(io::Error::new(error.kind(), error.to_string())));
        self.lifecycle().fail(error);
    }
}

/// Stops the server (in a new greenlet) if `serve_forever` unwinds: a kill or a timeout
/// of the greenlet waiting in it ends the server too.
struct StopOnUnwind<'a, S: Serve>(&'a Rc<S>);

impl<S: Serve> Drop for StopOnUnwind<'_, S> {
    fn drop(&mut self) {
        let state = self.0.clone();
        verdant_hub::spawn(move || state.stop(None));
    }
}
