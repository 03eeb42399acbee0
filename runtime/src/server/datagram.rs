//! `DatagramServer`: gevent's UDP server. One receive loop greenlet reads datagrams and
//! runs a handler greenlet for each, in a pool; handlers reply with
//! [`DatagramHandle::send_to`].
//!
//! The receive loop waits for room in the pool before each `recv_from`, so a bounded pool
//! bounds a flood: the datagrams wait in the socket's receive buffer (and past it, the
//! kernel drops them, as UDP does). It yields to the handlers every
//! [`max_burst`](DatagramServer::with_max_burst) datagrams.
//!
//! A datagram longer than [`max_datagram_size`](DatagramServer::with_max_datagram_size) is
//! dropped, counted and reported, never handed on cut: the loop receives into a buffer one
//! byte longer than the limit, so a datagram that fills it is known to be too long.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::rc::{Rc, Weak};
use std::time::Duration;

use verdant_hub::GreenletError;
use verdant_pool::Pool;

use super::lifecycle::{Lifecycle, Serve};
use super::{AcceptFailure, Backoff, HandlerResult, ServerError, classify};
use crate::net::{ToSocketAddrs, UdpSocket};

/// The receive buffer's size unless [set](DatagramServer::with_max_datagram_size): the
/// largest UDP payload fits.
pub const DEFAULT_MAX_DATAGRAM_SIZE: usize = 64 * 1024;

type Handler = dyn Fn(&[u8], SocketAddr, &DatagramHandle) -> Option<Box<dyn Error + Send + Sync>>;
type ErrorCallback = dyn Fn(ServerError);

/// Counters of a [`DatagramServer`], from [`DatagramServer::stats`] (or
/// [`DatagramHandle::stats`], which keeps the last counts once the server is gone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatagramStats {
    /// Datagrams received (each one got a handler).
    pub received: u64,
    /// Datagrams longer than the [max](DatagramServer::with_max_datagram_size): dropped
    /// (and reported) instead of handled, so not in `received`.
    pub truncated: u64,
    /// Handlers running now.
    pub active: usize,
    /// Failed `recv_from` calls.
    pub receive_errors: u64,
    /// Handlers that returned an error, panicked or could not start.
    pub handler_errors: u64,
}

/// The shared state behind every clone of a [`DatagramServer`].
struct State {
    local_addr: SocketAddr,
    /// The socket, the receive loop, the handlers' pool: started, closed, stopped. The
    /// receive loop and each running handler's [`DatagramHandle`] hold their own `Rc` on
    /// the socket: it closes when they are done.
    life: Lifecycle<UdpSocket>,
    handler: Rc<Handler>,
    on_error: RefCell<Rc<ErrorCallback>>,
    /// Never zero.
    max_datagram_size: Cell<usize>,
    /// Shared with the handles, which read the last counts once the server is gone
    /// (`active` is not kept here: the pool says).
    stats: Rc<Cell<DatagramStats>>,
}

/// A UDP server: receives datagrams and runs `handler(data, peer, server)` for each in its
/// own greenlet, gevent's `DatagramServer` (`docs/net.md` has a guide).
///
/// ```
/// use verdant::net::UdpSocket;
/// use verdant::server::{DatagramHandle, DatagramServer};
///
/// // Echoes every datagram back to its sender.
/// let server = DatagramServer::new("127.0.0.1:0", |data: &[u8], peer, server: &DatagramHandle| {
///     server.send_to(data, peer).map(drop)
/// })
/// .unwrap();
/// server.start().unwrap();
///
/// let client = UdpSocket::bind("127.0.0.1:0").unwrap();
/// client.send_to(b"ping", server.local_addr()).unwrap();
/// let mut reply = [0; 16];
/// let (n, from) = client.recv_from(&mut reply).unwrap();
/// assert_eq!((&reply[..n], from), (&b"ping"[..], server.local_addr()));
/// server.stop(None);
/// assert_eq!(server.stats().received, 1);
/// ```
///
/// * Concurrency: unlimited by default; [`with_pool`](Self::with_pool) with a bounded
///   [`Pool`] caps it: while the pool is full, nothing is read.
/// * Size: datagrams longer than [`with_max_datagram_size`](Self::with_max_datagram_size)
///   (64 KiB by default, which no UDP datagram exceeds) are dropped, counted in
///   [`DatagramStats::truncated`] and reported as [`ServerError::Truncated`]; a handler
///   never sees a cut datagram.
/// * Errors: handler errors and panics stay in their greenlet and are passed to
///   [`on_error`](Self::on_error) (by default a line on stderr from a background thread);
///   a `recv_from` error backs off briefly and goes on, unless the socket itself is broken.
/// * Lifetime: a started server runs until [`stop`](Self::stop) or [`close`](Self::close).
///   Clones share one server.
///
/// `!Send`: a server belongs to the hub of its thread.
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant::server::DatagramServer>();
/// ```
#[derive(Clone)]
pub struct DatagramServer {
    state: Rc<State>,
}

impl DatagramServer {
    /// Binds `addr` and prepares a server that runs `handler` for each datagram. Nothing
    /// is received before [`start`](Self::start) or [`serve_forever`](Self::serve_forever).
    pub fn new<A, F, R>(addr: A, handler: F) -> io::Result<DatagramServer>
    where
        A: ToSocketAddrs,
        F: Fn(&[u8], SocketAddr, &DatagramHandle) -> R + 'static,
        R: HandlerResult,
    {
        DatagramServer::from_socket(UdpSocket::bind(addr)?, handler)
    }

    /// A server on a socket that is already bound.
    pub fn from_socket<F, R>(socket: UdpSocket, handler: F) -> io::Result<DatagramServer>
    where
        F: Fn(&[u8], SocketAddr, &DatagramHandle) -> R + 'static,
        R: HandlerResult,
    {
        let local_addr = socket.local_addr()?;
        let report_to_stderr: Rc<ErrorCallback> = Rc::new(move |error| {
            verdant_hub::report::report(format!(
                "verdant: DatagramServer on {local_addr}: {error}"
            ));
        });
        let state = State {
            local_addr,
            life: Lifecycle::new(socket),
            handler: Rc::new(move |data, peer, server| handler(data, peer, server).into_error()),
            on_error: RefCell::new(report_to_stderr),
            max_datagram_size: Cell::new(DEFAULT_MAX_DATAGRAM_SIZE),
            stats: Rc::default(),
        };
        Ok(DatagramServer { state: Rc::new(state) })
    }

    /// Runs handlers in `pool` (set before starting). A bounded pool limits how many
    /// datagrams are handled at once, and so bounds a flood.
    pub fn with_pool(self, pool: Pool) -> DatagramServer {
        self.state.life.set_pool(pool);
        self
    }

    /// Calls `callback` for every [`ServerError`] instead of printing it to stderr; see
    /// [`StreamServer::on_error`](super::StreamServer::on_error).
    pub fn on_error(self, callback: impl Fn(ServerError) + 'static) -> DatagramServer {
        *self.state.on_error.borrow_mut() = Rc::new(callback);
        self
    }

    /// How long [`stop`](Self::stop)`(None)` lets handlers finish before killing them
    /// (1 s by default).
    pub fn with_stop_timeout(self, timeout: Duration) -> DatagramServer {
        self.state.life.set_stop_timeout(timeout);
        self
    }

    /// The longest datagram handled (64 KiB by default): longer ones are dropped, counted
    /// in [`DatagramStats::truncated`] and reported as [`ServerError::Truncated`] (gevent
    /// reads 8192 bytes and cuts the rest off silently).
    ///
    /// # Panics
    ///
    /// If `size` is zero.
    pub fn with_max_datagram_size(self, size: usize) -> DatagramServer {
        assert!(size > 0, "a zero max_datagram_size would cut every datagram to nothing");
        self.state.max_datagram_size.set(size);
        self
    }

    /// How many datagrams the receive loop takes in one turn before it yields (100 by
    /// default; [`StreamServer::with_max_accept`](super::StreamServer::with_max_accept)).
    ///
    /// # Panics
    ///
    /// If `max_burst` is zero.
    pub fn with_max_burst(self, max_burst: usize) -> DatagramServer {
        assert!(max_burst > 0, "a zero max_burst would never receive a datagram");
        self.state.life.set_burst(max_burst);
        self
    }

    /// The address the server receives on.
    pub fn local_addr(&self) -> SocketAddr {
        self.state.local_addr
    }

    /// The pool handlers run in.
    pub fn pool(&self) -> Pool {
        self.state.life.pool()
    }

    /// A handle for code that needs to reach the server without owning it: send
    /// datagrams from its socket, stop it, read its stats.
    pub fn handle(&self) -> DatagramHandle {
        DatagramHandle {
            state: Rc::downgrade(&self.state),
            socket: self.state.life.socket(),
            local_addr: self.state.local_addr,
            stats: self.state.stats.clone(),
        }
    }

    /// Whether the receive loop is running.
    pub fn is_started(&self) -> bool {
        self.state.life.is_started()
    }

    /// Whether the socket is closed (after `close`, `stop`, or a socket failure).
    pub fn is_closed(&self) -> bool {
        self.state.life.is_closed()
    }

    /// The counters.
    pub fn stats(&self) -> DatagramStats {
        DatagramStats { active: self.pool().len(), ..self.state.stats.get() }
    }

    /// Starts receiving in a new greenlet and returns at once. Fails if the server is
    /// already started or closed.
    pub fn start(&self) -> io::Result<()> {
        self.state.start()
    }

    /// Starts (unless started) and serves until the server is stopped (or its socket
    /// failed: then the error is returned). If the calling greenlet is killed meanwhile,
    /// the server is stopped in a new greenlet.
    pub fn serve_forever(&self) -> io::Result<()> {
        self.state.serve_forever()
    }

    /// Stops receiving; running handlers go on (and can still reply: the socket closes
    /// when the last of them ends).
    pub fn close(&self) {
        self.state.life.close();
    }

    /// Stops gracefully: stops receiving, waits up to `timeout` (`None`: the stop
    /// timeout) for running handlers to finish, then kills the rest. Wakes
    /// [`serve_forever`](Self::serve_forever). From a handler, the waiting is left to a
    /// new greenlet, as with [`StreamServer::stop`](super::StreamServer::stop).
    pub fn stop(&self, timeout: Option<Duration>) {
        self.state.stop(timeout);
    }
}

impl fmt::Debug for DatagramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramServer")
            .field("local_addr", &self.state.local_addr)
            .field("started", &self.is_started())
            .field("closed", &self.is_closed())
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a [`DatagramServer`]'s handler gets to reach its server: send datagrams from the
/// server's socket (gevent's `self.socket.sendto`), stop it, read its address and stats.
///
/// It keeps the socket open (so that a handler can reply while the server stops), not
/// the server: once the server is gone, `stop` and `close` do nothing, and the address and
/// the last stats stay readable (as with [`ServerHandle`](super::ServerHandle)). Cheap to
/// clone; `!Send` like the server.
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant::server::DatagramHandle>();
/// ```
#[derive(Clone)]
pub struct DatagramHandle {
    state: Weak<State>,
    /// `None` if the server was closed when the handle was made.
    socket: Option<Rc<UdpSocket>>,
    local_addr: SocketAddr,
    /// The server's counters, kept after the server is gone.
    stats: Rc<Cell<DatagramStats>>,
}

impl DatagramHandle {
    /// Sends `data` to `addr` from the server's socket (this greenlet waits while the
    /// socket's buffer is full). Fails with `NotConnected` on a handle made after the
    /// server closed.
    pub fn send_to<A: ToSocketAddrs>(&self, data: &[u8], addr: A) -> io::Result<usize> {
        match &self.socket {
            Some(socket) => socket.send_to(data, addr),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "the server is closed")),
        }
    }

    /// The server, if it is still alive.
    pub fn server(&self) -> Option<DatagramServer> {
        self.state.upgrade().map(|state| DatagramServer { state })
    }

    /// The address the server receives on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters ([`DatagramServer::stats`]); once the server is gone, its
    /// last counts (with no handler active: each running handler keeps its server alive).
    pub fn stats(&self) -> DatagramStats {
        self.server().map_or_else(|| self.stats.get(), |server| server.stats())
    }

    /// [`DatagramServer::stop`].
    pub fn stop(&self, timeout: Option<Duration>) {
        if let Some(server) = self.server() {
            server.stop(timeout);
        }
    }

    /// [`DatagramServer::close`].
    pub fn close(&self) {
        if let Some(server) = self.server() {
            server.close();
        }
    }
}

impl fmt::Debug for DatagramHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramHandle").field("local_addr", &self.local_addr).finish()
    }
}

impl Serve for State {
    type Socket = UdpSocket;
    type Peer = SocketAddr;

    fn lifecycle(&self) -> &Lifecycle<UdpSocket> {
        &self.life
    }

    fn serving_name(&self) -> String {
        format!("DatagramServer({}) receive loop", self.local_addr)
    }

    fn serve(self: &Rc<Self>, socket: &Rc<UdpSocket>) {
        receive_loop(self, socket);
    }

    fn report(&self, error: ServerError) {
        let callback = self.on_error.borrow().clone();
        callback(error);
    }
}

impl State {
    /// `recv_from` failed: counts it, then goes on at once (a peer's ICMP error shows up
    /// as `ECONNREFUSED` here), after a pause, or not at all.
    fn receive_failed(&self, error: io::Error, backoff: &mut Backoff) -> ControlFlow<()> {
        self.count(|s| s.receive_errors += 1);
        match classify(&error) {
            AcceptFailure::Fatal => {
                self.fail(error);
                return ControlFlow::Break(());
            }
            _ if error.raw_os_error() == Some(libc::ECONNREFUSED) => {}
            AcceptFailure::Transient => {}
            AcceptFailure::BackOff => {
                let delay = backoff.next(Duration::from_millis(10), Duration::from_secs(1));
                self.report(ServerError::Receive { error, backoff: delay });
                verdant_hub::sleep(delay);
            }
        }
        ControlFlow::Continue(())
    }

    fn count(&self, update: impl FnOnce(&mut DatagramStats)) {
        let mut stats = self.stats.get();
        update(&mut stats);
        self.stats.set(stats);
    }

    /// Runs the handler for one datagram in the pool (room was waited for already).
    fn spawn_handler(
        self: &Rc<State>,
        pool: &Pool,
        socket: &Rc<UdpSocket>,
        data: Vec<u8>,
        peer: SocketAddr,
    ) {
        self.count(|s| s.received += 1);
        let server = DatagramHandle {
            state: Rc::downgrade(self),
            socket: Some(socket.clone()),
            local_addr: self.local_addr,
            stats: self.stats.clone(),
        };
        let state = self.clone();
        let greenlet = pool.spawn(move || {
            if let Some(error) = (state.handler)(&data, peer, &server) {
                state.count(|s| s.handler_errors += 1);
                state.report(ServerError::Handler { peer, error });
            }
        });
        let state = self.clone();
        greenlet.link(move |greenlet| match greenlet.error() {
            None | Some(GreenletError::Killed) => {}
            Some(error) => {
                state.count(|s| s.handler_errors += 1);
                state.report(ServerError::HandlerDied { peer, error });
            }
        });
    }
}

/// The receive loop's body: runs until killed by `close`, or until the socket fails.
fn receive_loop(state: &Rc<State>, socket: &Rc<UdpSocket>) {
    let max = state.max_datagram_size.get();
    // One byte more than the longest datagram handled: a datagram that fills it was cut.
    let mut buf = vec![0; max.saturating_add(1)];
    let mut backoff = Backoff::default();
    state.life.serve_in_bursts(|pool| {
        match socket.recv_from(&mut buf) {
            Ok(_) if state.life.is_closed() => return ControlFlow::Break(()), // closed meanwhile
            Ok((n, peer)) if n > max => {
                backoff.reset();
                state.count(|s| s.truncated += 1);
                state.report(ServerError::Truncated { peer, max_datagram_size: max });
            }
            Ok((n, peer)) => {
                backoff.reset();
                state.spawn_handler(pool, socket, buf[..n].to_vec(), peer);
            }
            Err(error) => return state.receive_failed(error, &mut backoff),
        }
        ControlFlow::Continue(())
    });
}
