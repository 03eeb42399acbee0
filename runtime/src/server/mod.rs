//! `StreamServer`: gevent's TCP server. One accept loop greenlet hands each connection to
//! a handler greenlet in a pool; `stop` drains the handlers gracefully.
//!
//! ```
//! use std::io::{Read, Write};
//! use verdant::net::TcpStream;
//! use verdant::server::StreamServer;
//!
//! // An echo server: the handler is plain blocking code, run in its own greenlet.
//! let server = StreamServer::new("127.0.0.1:0", |mut stream: TcpStream, _peer| {
//!     let mut buf = [0; 1024];
//!     loop {
//!         let n = stream.read(&mut buf)?;
//!         if n == 0 {
//!             return Ok::<(), std::io::Error>(()); // the peer closed
//!         }
//!         stream.write_all(&buf[..n])?;
//!     }
//! })
//! .unwrap();
//! server.start().unwrap();
//!
//! let mut client = TcpStream::connect(server.local_addr()).unwrap();
//! client.write_all(b"ping").unwrap();
//! let mut reply = [0; 4];
//! client.read_exact(&mut reply).unwrap();
//! assert_eq!(&reply, b"ping");
//! drop(client);
//! server.stop(None); // stop accepting, let the handler see EOF and finish
//! assert_eq!(server.stats().accepted, 1);
//! ```
//!
//! The accept loop:
//!
//! ```text
//!   wait for room in the pool ──► accept ──► spawn handler in the pool ──┐
//!          ▲                        │ error                               │
//!          │                        ▼                                     │
//!          │          aborted by the peer: go on at once                  │
//!          │          out of fds/memory: report, back off, go on          │
//!          │          listener broken (EBADF...): report, close ──► stop  │
//!          └──────────────────────────────────────────────────────────────┘
//! ```
//!
//! Slow clients: off by default (as in gevent), a connection may get a first-byte timeout
//! (nothing read within it: closed before the handler runs) and an idle timeout (any read
//! or write that waits longer fails with `TimedOut`, which ends the handler). Errors go to
//! `on_error`; the default report is a line on stderr written by a background thread,
//! so a stalled stderr never blocks the hub.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use verdant_hub::GreenletError;
use verdant_pool::Pool;

use crate::net::{TcpListener, TcpStream, ToSocketAddrs, UnixListener};

mod counters;
mod datagram;
mod lifecycle;
mod listener;
mod multi;

use counters::{Active, Count, Counters};
pub use datagram::{DEFAULT_MAX_DATAGRAM_SIZE, DatagramHandle, DatagramServer, DatagramStats};
use lifecycle::{Lifecycle, Serve};
pub use listener::{Connection, Listener};
pub use multi::{MultiServer, MultiServerBuilder};

/// Connections accepted in one go before the accept loop lets handlers run, unless
/// [set](StreamServer::with_max_accept) (gevent's `max_accept`).
const DEFAULT_MAX_ACCEPT: usize = 100;

/// What a handler may return: `()`, or a `Result` whose error is reported through
/// [`StreamServer::on_error`].
pub trait HandlerResult {
    /// The error to report, if any.
    fn into_error(self) -> Option<Box<dyn Error + Send + Sync>>;
}

impl HandlerResult for () {
    fn into_error(self) -> Option<Box<dyn Error + Send + Sync>> {
        None
    }
}

impl<E: Into<Box<dyn Error + Send + Sync>>> HandlerResult for Result<(), E> {
    fn into_error(self) -> Option<Box<dyn Error + Send + Sync>> {
        self.err().map(Into::into)
    }
}

/// Something that went wrong while serving; passed to the [`on_error`](StreamServer::on_error)
/// callback. None of these stops the server except `ListenerFailed`.
///
/// A `std::error::Error` that is `Send + Sync`, so it can go to a logging thread or into
/// `anyhow`:
///
/// ```
/// fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
/// assert_error::<verdant::server::ServerError>();
/// ```
///
/// `P` is the peers' address type: [`SocketAddr`] for TCP, a Unix-domain socket address
/// for a [`UnixStreamServer`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError<P = SocketAddr> {
    /// `accept` failed for lack of a resource (`EMFILE`: out of fds, `ENFILE`, `ENOBUFS`,
    /// `ENOMEM`) or for a reason not known to be harmless. The server stops accepting for
    /// `backoff` (doubling while the errors go on), then goes on.
    Accept {
        /// The error `accept` returned.
        error: io::Error,
        /// How long accepting pauses.
        backoff: Duration,
    },
    /// The listening socket itself failed (`EBADF`, `EINVAL`, `ENOTSOCK`): the server
    /// closed. `serve_forever` returns this error.
    ListenerFailed(io::Error),
    /// `recv_from` failed on a [`DatagramServer`]'s socket for a reason not known to be
    /// harmless: receiving pauses for `backoff` (doubling while the errors go on), then
    /// goes on.
    Receive {
        /// The error `recv_from` returned.
        error: io::Error,
        /// How long receiving pauses.
        backoff: Duration,
    },
    /// A handler returned an error.
    Handler {
        /// The client the handler served.
        peer: P,
        /// What it returned.
        error: Box<dyn Error + Send + Sync>,
    },
    /// A handler panicked, or its greenlet could not start (no stack).
    HandlerDied {
        /// The client the handler served.
        peer: P,
        /// How the greenlet ended.
        error: GreenletError,
    },
    /// A [`DatagramServer`] received a datagram longer than its
    /// [`max_datagram_size`](DatagramServer::with_max_datagram_size): it was dropped, not
    /// handled.
    Truncated {
        /// Who sent it.
        peer: P,
        /// The server's limit.
        max_datagram_size: usize,
    },
}

impl<P: fmt::Debug> fmt::Display for ServerError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Accept { error, backoff } => {
                write!(f, "accept failed: {error}; pausing accepts for {backoff:?}")
            }
            ServerError::Receive { error, backoff } => {
                write!(f, "recv_from failed: {error}; pausing for {backoff:?}")
            }
            ServerError::ListenerFailed(error) => {
                write!(f, "the listening socket failed: {error}; the server closed")
            }
            ServerError::Handler { peer, error } => {
                write!(f, "the handler for {peer:?} failed: {error}")
            }
            ServerError::HandlerDied { peer, error } => {
                write!(f, "the handler for {peer:?} {error}")
            }
            ServerError::Truncated { peer, max_datagram_size } => write!(
                f,
                "a datagram from {peer:?} was longer than max_datagram_size \
                 ({max_datagram_size} bytes): dropped"
            ),
        }
    }
}

impl<P: fmt::Debug> Error for ServerError<P> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ServerError::Accept { error, .. }
            | ServerError::Receive { error, .. }
            | ServerError::ListenerFailed(error) => Some(error),
            ServerError::Handler { error, .. } => Some(&**error),
            ServerError::HandlerDied { error, .. } => Some(error),
            ServerError::Truncated { .. } => None,
        }
    }
}

/// Counters of a [`StreamServer`], from [`StreamServer::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Handlers running now.
    pub active: usize,
    /// Failed `accept` calls (all kinds, including ones retried at once).
    pub accept_errors: u64,
    /// Handlers that returned an error, panicked or could not start.
    pub handler_errors: u64,
    /// Connections closed because the server's first-byte or idle timeout ran out (not
    /// errors: they are not reported).
    pub timed_out: u64,
}

/// How the server reacts to an `accept` error.
#[derive(Debug, PartialEq, Eq)]
enum AcceptFailure {
    /// The connection was lost before it was accepted (`accept(2)` says to retry):
    /// go on at once.
    Transient,
    /// Out of a resource, or unknown: report, pause, go on.
    BackOff,
    /// The listener is unusable: close the server.
    Fatal,
}

fn classify(error: &io::Error) -> AcceptFailure {
    match error.raw_os_error() {
        Some(
            libc::ECONNABORTED
            | libc::EPROTO
            | libc::EPERM
            | libc::EINTR
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::ENONET
            | libc::EOPNOTSUPP
            | libc::ETIMEDOUT,
        ) => AcceptFailure::Transient,
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EFAULT) => AcceptFailure::Fatal,
        _ => AcceptFailure::BackOff,
    }
}

/// The pause after an [`AcceptFailure::BackOff`] error: the shortest after the first,
/// doubling while the errors go on, up to the longest; back to the shortest after a
/// success.
#[derive(Debug, Default)]
struct Backoff {
    /// The last pause, if the last try failed.
    last: Option<Duration>,
}

impl Backoff {
    /// The pause after one more error in a row, from `min` doubling to `max`.
    fn next(&mut self, min: Duration, max: Duration) -> Duration {
        let delay = self.last.map_or(min, |d| d * 2).min(max);
        self.last = Some(delay);
        delay
    }

    /// A try succeeded: the next error pauses for `min` again.
    fn reset(&mut self) {
        self.last = None;
    }
}

type Handler<L> =
    dyn Fn(<L as Listener>::Stream, <L as Listener>::Addr) -> Option<Box<dyn Error + Send + Sync>>;
type ErrorCallback<L> = dyn Fn(ServerError<<L as Listener>::Addr>);

/// The shared state behind every clone of a [`StreamServer`].
struct ServerState<L: Listener> {
    local_addr: L::Addr,
    /// The listener, the accept loop, the handlers' pool: started, closed, stopped.
    life: Lifecycle<L>,
    handler: Rc<Handler<L>>,
    on_error: RefCell<Rc<ErrorCallback<L>>>,
    first_byte_timeout: Cell<Option<Duration>>,
    idle_timeout: Cell<Option<Duration>>,
    min_delay: Cell<Duration>,
    max_delay: Cell<Duration>,
    /// Atomics so that a [`MultiServer`] can add them up from another thread.
    counters: Arc<Counters>,
}

/// A TCP server: accepts connections and runs `handler(stream, peer)` for each in its own
/// greenlet, gevent's `StreamServer`. See the [module docs](self) for an example.
///
/// * Concurrency: unlimited by default; [`with_pool`](Self::with_pool) with a bounded
///   [`Pool`] caps it (gevent's `spawn=Pool(n)`): while the pool is full, the server stops
///   accepting and connections wait in the kernel's backlog.
/// * Errors: an `accept` error never stops the server unless the listener itself is
///   broken; running out of fds makes it back off (10 ms, doubling to 1 s) and go on.
///   Handler errors and panics stay in their greenlet; all are passed to
///   [`on_error`](Self::on_error) (by default a line on stderr, written by a background
///   thread so that it never blocks the hub) and counted in [`stats`](Self::stats).
/// * Slow clients: no timeouts by default, as in gevent;
///   [`with_first_byte_timeout`](Self::with_first_byte_timeout) and
///   [`with_idle_timeout`](Self::with_idle_timeout) close connections that send nothing
///   or stall.
/// * Lifetime: a started server runs until [`stop`](Self::stop) or [`close`](Self::close),
///   even if every handle is dropped. Clones share one server.
///
/// `!Send`: a server belongs to the hub of its thread.
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant::server::StreamServer>();
/// ```
pub struct StreamServer<L: Listener = TcpListener> {
    state: Rc<ServerState<L>>,
}

/// A [`StreamServer`] on a Unix-domain socket: handlers get a
/// [`UnixStream`](crate::net::UnixStream) and the peer's Unix address. The socket file is
/// not removed when the server closes (as with std's `UnixListener`).
///
/// ```
/// use std::io::{Read, Write};
/// use verdant::net::UnixStream;
/// use verdant::server::UnixStreamServer;
///
/// let dir = std::env::temp_dir().join(format!("verdant-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("hello.sock");
/// let server = UnixStreamServer::bind(&path, |mut stream: UnixStream, _peer| {
///     stream.write_all(b"hello")
/// })
/// .unwrap();
/// server.start().unwrap();
/// let mut reply = String::new();
/// UnixStream::connect(&path).unwrap().read_to_string(&mut reply).unwrap();
/// assert_eq!(reply, "hello");
/// server.stop(None);
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub type UnixStreamServer = StreamServer<UnixListener>;

impl<L: Listener> Clone for StreamServer<L> {
    fn clone(&self) -> Self {
        StreamServer { state: self.state.clone() }
    }
}

impl StreamServer<UnixListener> {
    /// Binds the Unix-domain socket `path` and prepares a server that runs `handler` for
    /// each connection; see [`UnixStreamServer`].
    pub fn bind<P, F, R>(path: P, handler: F) -> io::Result<UnixStreamServer>
    where
        P: AsRef<std::path::Path>,
        F: Fn(crate::net::UnixStream, std::os::unix::net::SocketAddr) -> R + 'static,
        R: HandlerResult,
    {
        Ok(StreamServer::from_listener(UnixListener::bind(path)?, handler))
    }
}

impl StreamServer<TcpListener> {
    /// Binds `addr` (backlog [`DEFAULT_BACKLOG`](crate::net::DEFAULT_BACKLOG)) and prepares
    /// a server that runs `handler` for each connection. Nothing is accepted before
    /// [`start`](Self::start) or [`serve_forever`](Self::serve_forever).
    pub fn new<A, F, R>(addr: A, handler: F) -> io::Result<StreamServer>
    where
        A: ToSocketAddrs,
        F: Fn(TcpStream, SocketAddr) -> R + 'static,
        R: HandlerResult,
    {
        Ok(StreamServer::from_listener(TcpListener::bind(addr)?, handler))
    }

    /// Like [`new`](Self::new), binding with `SO_REUSEPORT`
    /// ([`TcpListener::bind_reuse_port`]): run one on each hub, on the same address, and
    /// the kernel spreads the connections over them. [`MultiServer`] does that for you
    /// (and stops and counts them together).
    pub fn reuse_port<A, F, R>(addr: A, handler: F) -> io::Result<StreamServer>
    where
        A: ToSocketAddrs,
        F: Fn(TcpStream, SocketAddr) -> R + 'static,
        R: HandlerResult,
    {
        Ok(StreamServer::from_listener(TcpListener::bind_reuse_port(addr)?, handler))
    }

    /// Like [`new`](Self::new), for a handler that reaches its server: it gets a
    /// [`ServerHandle`] as third argument, to stop the server, or read its address and
    /// stats (gevent's handlers reach theirs through a closure).
    ///
    /// ```
    /// use std::io::Write;
    /// use verdant::net::TcpStream;
    /// use verdant::server::{ServerHandle, StreamServer};
    ///
    /// // Serves one client, then stops.
    /// let server = StreamServer::with_handle(
    ///     "127.0.0.1:0",
    ///     |mut stream: TcpStream, _peer, server: &ServerHandle| {
    ///         writeln!(stream, "served by {}", server.local_addr())?;
    ///         server.stop(None);
    ///         Ok::<(), std::io::Error>(())
    ///     },
    /// )
    /// .unwrap();
    /// let client = verdant::spawn({
    ///     let addr = server.local_addr();
    ///     move || std::io::read_to_string(TcpStream::connect(addr).unwrap()).unwrap()
    /// });
    /// server.serve_forever().unwrap();
    /// assert_eq!(client.get().unwrap(), format!("served by {}\n", server.local_addr()));
    /// ```
    pub fn with_handle<A, F, R>(addr: A, handler: F) -> io::Result<StreamServer>
    where
        A: ToSocketAddrs,
        F: Fn(TcpStream, SocketAddr, &ServerHandle) -> R + 'static,
        R: HandlerResult,
    {
        Ok(StreamServer::from_listener_with_handle(TcpListener::bind(addr)?, handler))
    }
}

impl<L: Listener> StreamServer<L> {
    /// A server on a listener that is already bound (TCP or Unix-domain).
    pub fn from_listener<F, R>(listener: L, handler: F) -> StreamServer<L>
    where
        F: Fn(L::Stream, L::Addr) -> R + 'static,
        R: HandlerResult,
    {
        StreamServer::build(listener, |_| {
            Rc::new(move |stream, peer| handler(stream, peer).into_error())
        })
    }

    /// [`from_listener`](Self::from_listener) for a handler that gets a [`ServerHandle`],
    /// as with [`with_handle`](StreamServer::with_handle).
    pub fn from_listener_with_handle<F, R>(listener: L, handler: F) -> StreamServer<L>
    where
        F: Fn(L::Stream, L::Addr, &ServerHandle<L>) -> R + 'static,
        R: HandlerResult,
    {
        StreamServer::build(listener, |server| {
            Rc::new(move |stream, peer| handler(stream, peer, &server).into_error())
        })
    }

    /// A handle on this server for a handler to capture; see [`ServerHandle`].
    pub fn handle(&self) -> ServerHandle<L> {
        ServerHandle {
            state: Rc::downgrade(&self.state),
            local_addr: self.state.local_addr.clone(),
            counters: self.state.counters.clone(),
        }
    }

    /// A server on `listener` whose handler `make_handler` makes, given a handle on the
    /// server (weak, so that the handler holding it keeps no cycle alive).
    fn build(
        listener: L,
        make_handler: impl FnOnce(ServerHandle<L>) -> Rc<Handler<L>>,
    ) -> StreamServer<L> {
        let local_addr = listener.local_addr().expect("a bound listener has a local address");
        let addr = local_addr.clone();
        let report_to_stderr: Rc<ErrorCallback<L>> = Rc::new(move |error| {
            verdant_hub::report::report(format!("verdant: StreamServer on {addr:?}: {error}"));
        });
        let counters = Arc::<Counters>::default();
        let state = Rc::new_cyclic(|weak| ServerState {
            handler: make_handler(ServerHandle {
                state: weak.clone(),
                local_addr: local_addr.clone(),
                counters: counters.clone(),
            }),
            local_addr,
            life: Lifecycle::new(listener),
            on_error: RefCell::new(report_to_stderr),
            first_byte_timeout: Cell::new(None),
            idle_timeout: Cell::new(None),
            min_delay: Cell::new(Duration::from_millis(10)),
            max_delay: Cell::new(Duration::from_secs(1)),
            counters,
        });
        StreamServer { state }
    }

    /// Runs handlers in `pool` (set before starting). A bounded pool limits how many
    /// connections are served at once.
    pub fn with_pool(self, pool: Pool) -> StreamServer<L> {
        self.state.life.set_pool(pool);
        self
    }

    /// Calls `callback` for every [`ServerError`] instead of printing it to stderr
    /// (gevent's `handle_error`). It runs in the greenlet that hit the error, so it must
    /// not block the thread: a callback that writes to a file or a pipe itself stops
    /// every greenlet of the hub while the write waits.
    ///
    /// The default report never blocks: lines go through a bounded queue to one
    /// background thread that writes them to stderr. When stderr does not keep up, lines
    /// are dropped and counted (`verdant: N error reports dropped`), and identical lines
    /// in a row are folded into a count.
    pub fn on_error(self, callback: impl Fn(ServerError<L::Addr>) + 'static) -> StreamServer<L> {
        *self.state.on_error.borrow_mut() = Rc::new(callback);
        self
    }

    /// How long [`stop`](Self::stop)`(None)` lets handlers finish before killing them
    /// (gevent's `stop_timeout`; 1 s by default).
    pub fn with_stop_timeout(self, timeout: Duration) -> StreamServer<L> {
        self.state.life.set_stop_timeout(timeout);
        self
    }

    /// Closes a connection on which nothing arrives within `timeout` of its accept,
    /// without running the handler (off by default). For protocols where the client
    /// speaks first, like HTTP: a handler that greets first would never get to greet.
    /// Costs one `recv(MSG_PEEK)` per connection, in the handler's greenlet.
    ///
    /// # Panics
    ///
    /// If `timeout` is zero.
    pub fn with_first_byte_timeout(self, timeout: Duration) -> StreamServer<L> {
        assert!(!timeout.is_zero(), "a zero first-byte timeout would close every connection");
        self.state.first_byte_timeout.set(Some(timeout));
        self
    }

    /// Gives every connection an idle timeout (off by default, as in gevent): a read or a
    /// write on the stream that waits longer than `timeout` fails with
    /// `ErrorKind::TimedOut`, which ends a handler that passes errors on (`?`), and so
    /// closes the connection. A handler that returns that `TimedOut` error is counted in
    /// [`ServerStats::timed_out`], not reported.
    ///
    /// It is the stream's [`set_read_timeout`](TcpStream::set_read_timeout) and
    /// [`set_write_timeout`](TcpStream::set_write_timeout), set before the handler runs:
    /// the handler may change them, and a `try_clone` of the stream starts without.
    ///
    /// # Panics
    ///
    /// If `timeout` is zero.
    pub fn with_idle_timeout(self, timeout: Duration) -> StreamServer<L> {
        assert!(!timeout.is_zero(), "a zero idle timeout would fail every wait");
        self.state.idle_timeout.set(Some(timeout));
        self
    }

    /// The first and the longest pause after an `accept` error (gevent's `min_delay` and
    /// `max_delay`; 10 ms and 1 s by default).
    pub fn with_accept_backoff(self, min: Duration, max: Duration) -> StreamServer<L> {
        self.state.min_delay.set(min);
        self.state.max_delay.set(max.max(min));
        self
    }

    /// How many connections the accept loop takes in one turn before it yields to let the
    /// handlers just spawned (and every other greenlet) run (gevent's `max_accept`; 100 by
    /// default). Lower it to favour the latency of running handlers over the rate of new
    /// connections; raise it for bursts of short connections.
    ///
    /// # Panics
    ///
    /// If `max_accept` is zero.
    pub fn with_max_accept(self, max_accept: usize) -> StreamServer<L> {
        assert!(max_accept > 0, "a zero max_accept would never accept a connection");
        self.state.life.set_burst(max_accept);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> L::Addr {
        self.state.local_addr.clone()
    }

    /// The pool handlers run in.
    pub fn pool(&self) -> Pool {
        self.state.life.pool()
    }

    /// Whether the accept loop is running.
    pub fn is_started(&self) -> bool {
        self.state.life.is_started()
    }

    /// Whether the listener is closed (after `close`, `stop`, or a listener failure).
    pub fn is_closed(&self) -> bool {
        self.state.life.is_closed()
    }

    /// The counters.
    pub fn stats(&self) -> ServerStats {
        ServerStats { active: self.pool().len(), ..self.state.counters.stats() }
    }

    /// The counters, shared with a [`MultiServer`] that adds them up.
    pub(crate) fn counters(&self) -> Arc<Counters> {
        self.state.counters.clone()
    }

    /// Starts accepting in a new greenlet and returns at once. Fails if the server is
    /// already started or closed.
    pub fn start(&self) -> io::Result<()> {
        self.state.start()
    }

    /// Starts (unless started) and serves until the server is stopped, by
    /// [`stop`](Self::stop) from another greenlet or because the listener failed (then
    /// the error is returned). If the calling greenlet is killed or timed out meanwhile,
    /// the server is stopped in a new greenlet, as gevent does.
    pub fn serve_forever(&self) -> io::Result<()> {
        self.state.serve_forever()
    }

    /// Stops accepting and closes the listener; running handlers go on (gevent's
    /// `close`). Connections waiting in the backlog are refused.
    pub fn close(&self) {
        self.state.life.close();
    }

    /// Stops gracefully: closes the listener, waits up to `timeout` (`None`: the stop
    /// timeout, 1 s unless [set](Self::with_stop_timeout)) for running handlers to finish,
    /// then kills the rest. Wakes [`serve_forever`](Self::serve_forever).
    ///
    /// Called from a handler (or `on_error`), it closes the listener at once and leaves the
    /// waiting to a new greenlet, since the caller is one of the greenlets to wait for.
    pub fn stop(&self, timeout: Option<Duration>) {
        self.state.stop(timeout);
    }
}

/// A handle on a [`StreamServer`] for its handlers: stop it, read its address and stats,
/// without a thread-local or an `Rc` cycle. Handlers get one as their third argument
/// with [`StreamServer::with_handle`]; [`StreamServer::handle`] gives one to any other code.
///
/// Weak: it does not keep the server alive. A started server stays alive until it is
/// stopped, so from a handler every call reaches it; once the server is gone, `stop` and
/// `close` do nothing, and the address and stats stay readable.
///
/// Cheap to clone, and `!Send` like the server:
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant::server::ServerHandle>();
/// ```
pub struct ServerHandle<L: Listener = TcpListener> {
    state: std::rc::Weak<ServerState<L>>,
    local_addr: L::Addr,
    counters: Arc<Counters>,
}

impl<L: Listener> Clone for ServerHandle<L> {
    fn clone(&self) -> Self {
        ServerHandle {
            state: self.state.clone(),
            local_addr: self.local_addr.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<L: Listener> ServerHandle<L> {
    /// The server, if it is still alive.
    pub fn server(&self) -> Option<StreamServer<L>> {
        self.state.upgrade().map(|state| StreamServer { state })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> L::Addr {
        self.local_addr.clone()
    }

    /// The server's counters ([`StreamServer::stats`]).
    pub fn stats(&self) -> ServerStats {
        self.server().map_or_else(|| self.counters.stats(), |server| server.stats())
    }

    /// [`StreamServer::stop`]: from a handler, closes the listener at once and lets a new
    /// greenlet wait for the handlers (this one included) to finish.
    pub fn stop(&self, timeout: Option<Duration>) {
        if let Some(server) = self.server() {
            server.stop(timeout);
        }
    }

    /// [`StreamServer::close`]: stops accepting; running handlers go on.
    pub fn close(&self) {
        if let Some(server) = self.server() {
            server.close();
        }
    }

    /// Whether the listener is closed (also once the server is gone).
    pub fn is_closed(&self) -> bool {
        self.server().is_none_or(|server| server.is_closed())
    }
}

impl<L: Listener> fmt::Debug for ServerHandle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle").field("local_addr", &self.local_addr).finish()
    }
}

impl<L: Listener> fmt::Debug for StreamServer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamServer")
            .field("local_addr", &self.state.local_addr)
            .field("started", &self.is_started())
            .field("closed", &self.is_closed())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<L: Listener> Serve for ServerState<L> {
    type Socket = L;
    type Peer = L::Addr;

    fn lifecycle(&self) -> &Lifecycle<L> {
        &self.life
    }

    fn serving_name(&self) -> String {
        format!("StreamServer({:?}) accept loop", self.local_addr)
    }

    fn serve(self: &Rc<Self>, listener: &Rc<L>) {
        accept_loop(self, listener);
    }

    fn report(&self, error: ServerError<L::Addr>) {
        let callback = self.on_error.borrow().clone();
        callback(error);
    }
}

impl<L: Listener> ServerState<L> {
    /// `accept` failed: counts it, then goes on at once, after a pause, or not at all.
    fn accept_failed(&self, error: io::Error, backoff: &mut Backoff) -> ControlFlow<()> {
        self.counters.count(Count::AcceptError);
        match classify(&error) {
            AcceptFailure::Transient => {}
            AcceptFailure::BackOff => {
                let delay = backoff.next(self.min_delay.get(), self.max_delay.get());
                self.report(ServerError::Accept { error, backoff: delay });
                verdant_hub::sleep(delay);
            }
            AcceptFailure::Fatal => {
                self.fail(error);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Runs the handler for one connection in the pool (room was waited for already).
    fn spawn_handler(self: &Rc<ServerState<L>>, pool: &Pool, stream: L::Stream, peer: L::Addr) {
        self.counters.count(Count::Accepted);
        let state = self.clone();
        let active = Active::begin(&self.counters);
        let linked_peer = peer.clone();
        let greenlet = pool.spawn(move || {
            let _active = active;
            if !state.apply_timeouts(&stream) {
                return; // nothing came in time: drop the connection
            }
            if let Some(error) = (state.handler)(stream, peer.clone()) {
                state.handler_failed(peer, error);
            }
        });
        let state = self.clone();
        greenlet.link(move |greenlet| match greenlet.error() {
            None | Some(GreenletError::Killed) => {}
            Some(error) => {
                state.counters.count(Count::HandlerError);
                state.report(ServerError::HandlerDied { peer: linked_peer.clone(), error });
            }
        });
    }

    /// Waits for the first byte (if there is a first-byte timeout), then sets the idle
    /// timeout. `false` if the first byte did not come in time.
    fn apply_timeouts(&self, stream: &L::Stream) -> bool {
        let (first_byte, idle) = (self.first_byte_timeout.get(), self.idle_timeout.get());
        if first_byte.is_some() {
            // Cannot fail: the builders refuse zero durations.
            let _ = stream.set_read_timeout(first_byte);
            // Data, EOF or an error: the handler's first read sees it.
            if let Err(err) = stream.peek(&mut [0]) {
                if err.kind() == io::ErrorKind::TimedOut {
                    self.counters.count(Count::TimedOut);
                    return false;
                }
            }
        }
        if first_byte.is_some() || idle.is_some() {
            let _ = stream.set_read_timeout(idle);
            let _ = stream.set_write_timeout(idle);
        }
        true
    }

    /// A handler returned `error`: a timeout of the server's own is a normal end,
    /// anything else is reported.
    fn handler_failed(&self, peer: L::Addr, error: Box<dyn Error + Send + Sync>) {
        let has_timeouts =
            self.first_byte_timeout.get().is_some() || self.idle_timeout.get().is_some();
        let timed_out =
            error.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::TimedOut);
        if has_timeouts && timed_out {
            self.counters.count(Count::TimedOut);
            return;
        }
        self.counters.count(Count::HandlerError);
        self.report(ServerError::Handler { peer, error });
    }
}

/// The accept loop's body: runs until killed by `close`, or until the listener fails.
fn accept_loop<L: Listener>(state: &Rc<ServerState<L>>, listener: &L) {
    let mut backoff = Backoff::default();
    state.life.serve_in_bursts(|pool| match listener.accept() {
        Ok(_) if state.life.is_closed() => ControlFlow::Break(()), // closed meanwhile
        Ok((stream, peer)) => {
            backoff.reset();
            state.spawn_handler(pool, stream, peer);
            ControlFlow::Continue(())
        }
        Err(error) => state.accept_failed(error, &mut backoff),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_classified_as_accept_2_advises() {
        let of = |errno| classify(&io::Error::from_raw_os_error(errno));
        assert_eq!(of(libc::ECONNABORTED), AcceptFailure::Transient);
        assert_eq!(of(libc::EMFILE), AcceptFailure::BackOff);
        assert_eq!(of(libc::ENFILE), AcceptFailure::BackOff);
        assert_eq!(of(libc::ENOBUFS), AcceptFailure::BackOff);
        assert_eq!(of(libc::EBADF), AcceptFailure::Fatal);
        assert_eq!(of(libc::ENOTSOCK), AcceptFailure::Fatal);
    }

    #[test]
    fn backoff_doubles_from_min_to_max_and_a_success_resets_it() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(35));
        let mut backoff = Backoff::default();
        let pauses: Vec<_> = (0..4).map(|_| backoff.next(min, max)).collect();
        let ms = Duration::from_millis;
        assert_eq!(pauses, [ms(10), ms(20), ms(35), ms(35)]);
        backoff.reset();
        assert_eq!(backoff.next(min, max), min);
    }
}
