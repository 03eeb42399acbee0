//! [`MultiServer`]: one [`StreamServer`] per hub, all on one address, with the kernel
//! spreading the connections (`SO_REUSEPORT`); one stop for all, stats added up.
//!
//! How it runs:
//!
//! ```text
//!  start (caller's thread)                       hub i (its own thread)
//!  ─ bind n listeners, SO_REUSEPORT ───────────► StreamServer::from_listener(listener i,
//!  ─ Hubs::spawn                                   make_handler(i)), configure, start
//!  ─ wait: every hub started (or failed)  ◄───── started.count_down()
//!                                                 a greenlet waits for `stop i`;
//!  stop ─ count down `stop i` of every hub ─────► it calls server.stop(timeout)
//!       ─ wait: every hub ended  ◄────────────── serve_forever returns, hub ends
//! ```
//!
//! Each hub's server is an ordinary [`StreamServer`]: its handlers run on that hub only, and
//! its counters are atomics the `MultiServer` adds up from any thread.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, ThreadId};
use std::time::Duration;

use super::counters::Counters;
use super::{HandlerResult, ServerStats, StreamServer};
use crate::hubs::{Countdown, Hubs, HubsHandle};
use crate::net::{TcpListener, TcpStream, ToSocketAddrs, each_addr, reuse_port_listener};

type Configure = dyn Fn(StreamServer) -> StreamServer + Send + Sync;

/// A TCP server on many hubs: each hub runs its own [`StreamServer`] on its own
/// `SO_REUSEPORT` listener bound to the same address, and the kernel spreads incoming
/// connections over them.
///
/// ```
/// use std::io::{Read, Write};
/// use verdant::Hubs;
/// use verdant::net::TcpStream;
/// use verdant::server::MultiServer;
///
/// // An echo server on two hubs. `make_handler(hub)` runs on each hub and returns that
/// // hub's handler (which need not be `Send`).
/// let server = MultiServer::start("127.0.0.1:0", Hubs::new(2), |_hub| {
///     |mut stream: TcpStream, _peer| -> std::io::Result<()> {
///         let mut buf = [0; 64];
///         loop {
///             let n = stream.read(&mut buf)?;
///             if n == 0 {
///                 return Ok(());
///             }
///             stream.write_all(&buf[..n])?;
///         }
///     }
/// })
/// .unwrap();
///
/// let mut client = TcpStream::connect(server.local_addr()).unwrap();
/// client.write_all(b"ping").unwrap();
/// let mut reply = [0; 4];
/// client.read_exact(&mut reply).unwrap();
/// assert_eq!(&reply, b"ping");
/// drop(client);
///
/// server.stop(None); // every hub stops accepting; waits for every handler
/// assert_eq!(server.stats().accepted, 1);
/// assert_eq!(server.stats().active, 0);
/// ```
///
/// * `Send + Sync` and cheap to clone: [`stop`](Self::stop), [`stats`](Self::stats) and
///   [`wait`](Self::wait) work from any thread or greenlet, on any hub.
/// * [`stop`](Self::stop) reaches every hub: each closes its listener and waits for its
///   handlers (up to the stop timeout, then kills them), as [`StreamServer::stop`] does; it
///   returns when every hub has ended.
/// * Spreading is by a hash of the client's address and port, not by load: with few
///   clients, one hub may get most of them.
/// * Lifetime: the hubs serve until [`stop`](Self::stop), or until every listener failed,
///   even if every handle is dropped (as a started [`StreamServer`] does).
#[derive(Clone)]
pub struct MultiServer {
    shared: Arc<Shared>,
}

/// The state every hub and every handle share.
struct Shared {
    local_addr: SocketAddr,
    hubs: Vec<HubControl>,
    /// Counts the hubs that have not yet started serving (or failed to).
    started: Countdown,
    /// Counts the hubs whose server has not yet stopped (and whose thread has not ended).
    ended: Countdown,
    /// Set by the first stop; later stops only wait.
    stop_requested: AtomicBool,
    stop_timeout: Mutex<Option<Duration>>,
    /// Why a hub could not start serving, for `start` to return.
    startup_error: Mutex<Option<io::Error>>,
    /// The hubs' threads, joined by the first `wait` after they ended.
    threads: Mutex<Option<HubsHandle<io::Result<()>>>>,
}

/// One hub's part of the shared state.
#[derive(Default)]
struct HubControl {
    /// The listener bound for this hub, until the hub takes it.
    listener: Mutex<Option<net::TcpListener>>,
    /// Counted down (once) to stop this hub's server.
    stop: StopSignal,
    /// The hub's server's counters, once it started.
    counters: OnceLock<Arc<Counters>>,
    /// The hub's thread, once it started.
    thread: OnceLock<ThreadId>,
}

/// A one-shot signal a greenlet on the hub waits for.
struct StopSignal(Countdown);

impl Default for StopSignal {
    fn default() -> StopSignal {
        StopSignal(Countdown::new(1))
    }
}

/// Configures a [`MultiServer`] before it starts: [`MultiServer::builder`].
#[must_use = "a builder does nothing until `start`"]
pub struct MultiServerBuilder {
    hubs: Hubs,
    configure: Arc<Configure>,
}

impl MultiServer {
    /// Binds `addr` once per hub of `hubs` (with `SO_REUSEPORT`; port 0 picks one port for
    /// all), starts the hubs, and on each runs a [`StreamServer`] whose handler is
    /// `make_handler(hub_index)`. Returns once every hub accepts.
    ///
    /// Fails if the address cannot be bound, or if a hub cannot start (its thread, or
    /// `make_handler` panicked): then the hubs that did start are stopped first.
    pub fn start<A, M, H, R>(addr: A, hubs: Hubs, make_handler: M) -> io::Result<MultiServer>
    where
        A: ToSocketAddrs,
        M: Fn(usize) -> H + Send + Sync + 'static,
        H: Fn(TcpStream, SocketAddr) -> R + 'static,
        R: HandlerResult,
    {
        MultiServer::builder(hubs).start(addr, make_handler)
    }

    /// A builder, to configure each hub's server before it starts.
    pub fn builder(hubs: Hubs) -> MultiServerBuilder {
        MultiServerBuilder { hubs, configure: Arc::new(|server| server) }
    }

    /// The address every hub listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// How many hubs serve.
    pub fn hubs(&self) -> usize {
        self.shared.hubs.len()
    }

    /// The counters of every hub's server, added up.
    pub fn stats(&self) -> ServerStats {
        self.hub_stats().into_iter().sum()
    }

    /// Each hub's counters, in hub order.
    pub fn hub_stats(&self) -> Vec<ServerStats> {
        let stats = |hub: &HubControl| hub.counters.get().map(|c| c.stats()).unwrap_or_default();
        self.shared.hubs.iter().map(stats).collect()
    }

    /// Stops every hub's server gracefully (each as [`StreamServer::stop`] with `timeout`:
    /// closes its listener, lets its handlers finish for up to `timeout` or the stop
    /// timeout, then kills the rest) and waits until every hub has ended. A greenlet
    /// parks meanwhile; a plain thread blocks. Later calls only wait.
    ///
    /// Called on one of the server's own hubs (from a handler, say), it only starts the
    /// stop and returns: waiting there would wait for itself. Call [`wait`](Self::wait)
    /// elsewhere to know when it is over.
    pub fn stop(&self, timeout: Option<Duration>) {
        self.request_stop(timeout);
        if !self.on_own_hub() {
            self.shared.ended.wait();
        }
    }

    /// Starts the stop on every hub and returns at once.
    pub fn request_stop(&self, timeout: Option<Duration>) {
        self.shared.request_stop(timeout);
    }

    /// Waits until every hub's server has stopped (by [`stop`](Self::stop), or because its
    /// listener failed): [`StreamServer::serve_forever`] for all hubs. The first call
    /// after they ended also joins the hubs' threads and returns the first failure (a
    /// listener error, or a hub that panicked); other calls return `Ok`.
    pub fn wait(&self) -> io::Result<()> {
        self.shared.ended.wait();
        let threads = self.shared.threads.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(threads) = threads else { return Ok(()) };
        let mut first_failure = Ok(());
        for outcome in threads.join() {
            let failure = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error,
                Err(hub_error) => io::Error::other(hub_error),
            };
            if first_failure.is_ok() {
                first_failure = Err(failure);
            }
        }
        first_failure
    }

    /// Whether every hub's server has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.ended.is_done()
    }

    fn on_own_hub(&self) -> bool {
        let me = thread::current().id();
        self.shared.hubs.iter().any(|hub| hub.thread.get() == Some(&me))
    }
}

impl fmt::Debug for MultiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiServer")
            .field("local_addr", &self.shared.local_addr)
            .field("hubs", &self.hubs())
            .field("stopped", &self.is_stopped())
            .field("stats", &self.stats())
            .finish()
    }
}

impl MultiServerBuilder {
    /// Applies `configure` to each hub's server before it starts (on that hub): a pool,
    /// timeouts, an error callback.
    ///
    /// ```
    /// use std::time::Duration;
    /// use verdant::Hubs;
    /// use verdant::server::MultiServer;
    ///
    /// let server = MultiServer::builder(Hubs::new(2))
    ///     .configure(|server| server.with_idle_timeout(Duration::from_secs(30)))
    ///     .start("127.0.0.1:0", |_hub| |_stream, _peer| ())
    ///     .unwrap();
    /// server.stop(None);
    /// ```
    pub fn configure(
        mut self,
        configure: impl Fn(StreamServer) -> StreamServer + Send + Sync + 'static,
    ) -> MultiServerBuilder {
        self.configure = Arc::new(configure);
        self
    }

    /// Binds and starts: see [`MultiServer::start`].
    pub fn start<A, M, H, R>(self, addr: A, make_handler: M) -> io::Result<MultiServer>
    where
        A: ToSocketAddrs,
        M: Fn(usize) -> H + Send + Sync + 'static,
        H: Fn(TcpStream, SocketAddr) -> R + 'static,
        R: HandlerResult,
    {
        let listeners = bind_listeners(addr, self.hubs.count())?;
        let local_addr = listeners[0].local_addr()?;
        let count = listeners.len();
        let shared = Arc::new(Shared {
            local_addr,
            hubs: listeners
                .into_iter()
                .map(|l| HubControl { listener: Mutex::new(Some(l)), ..HubControl::default() })
                .collect(),
            started: Countdown::new(count),
            ended: Countdown::new(count),
            stop_requested: AtomicBool::new(false),
            stop_timeout: Mutex::new(None),
            startup_error: Mutex::new(None),
            threads: Mutex::new(None),
        });
        let (hub_shared, failed_shared) = (shared.clone(), shared.clone());
        let configure = self.configure;
        let threads = self.hubs.spawn_noting_failures(
            move |index| serve_on_hub(&hub_shared, index, &make_handler, &*configure),
            move |index| failed_shared.hub_failed(index, "its thread did not start"),
        );
        *shared.threads.lock().unwrap_or_else(|e| e.into_inner()) = Some(threads);
        shared.started.wait();
        let server = MultiServer { shared };
        let startup_error =
            server.shared.startup_error.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(error) = startup_error {
            server.stop(None);
            let _ = server.wait();
            return Err(error);
        }
        Ok(server)
    }
}

impl fmt::Debug for MultiServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiServerBuilder").field("hubs", &self.hubs).finish_non_exhaustive()
    }
}

/// `count` listeners on one address, all with `SO_REUSEPORT`: the first picks the port
/// (when `addr` says 0), the others bind to it.
fn bind_listeners(addr: impl ToSocketAddrs, count: usize) -> io::Result<Vec<net::TcpListener>> {
    let first = each_addr(addr, reuse_port_listener)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(reuse_port_listener(addr)?);
    }
    Ok(listeners)
}

impl Shared {
    fn request_stop(&self, timeout: Option<Duration>) {
        if self.stop_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.stop_timeout.lock().unwrap_or_else(|e| e.into_inner()) = timeout;
        for hub in &self.hubs {
            hub.stop.0.count_down();
        }
    }

    fn stop_timeout(&self) -> Option<Duration> {
        *self.stop_timeout.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hub `index` will never serve: remember why (for `start`), and count it as started
    /// and ended.
    fn hub_failed(&self, index: usize, why: &str) {
        let error = io::Error::other(format!("hub {index} of the MultiServer failed: {why}"));
        self.startup_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
        self.started.count_down();
        self.ended.count_down();
    }
}

/// Counts `ended` down when dropped (so also when its hub's closure unwinds).
struct Ended<'a>(&'a Shared);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.ended.count_down();
    }
}

/// Counts `started` down once the hub serves; dropped before that (an error or a panic
/// while starting), it records the failure for `start` first.
struct Starting<'a> {
    shared: &'a Shared,
    index: usize,
    done: bool,
}

impl Starting<'_> {
    fn serving(mut self) {
        self.done = true;
        self.shared.started.count_down();
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if !self.done {
            let error = io::Error::other(format!(
                "hub {} of the MultiServer failed while starting its server",
                self.index
            ));
            self.shared
                .startup_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(error);
            self.shared.started.count_down();
        }
    }
}

/// Hub `index`'s main code: its server, from start to stop.
fn serve_on_hub<H, R>(
    shared: &Arc<Shared>,
    index: usize,
    make_handler: &(impl Fn(usize) -> H + ?Sized),
    configure: &Configure,
) -> io::Result<()>
where
    H: Fn(TcpStream, SocketAddr) -> R + 'static,
    R: HandlerResult,
{
    let hub = &shared.hubs[index];
    let _ = hub.thread.set(thread::current().id());
    let _ended = Ended(shared);
    let starting = Starting { shared, index, done: false };
    let server = match start_server(hub, index, make_handler, configure) {
        Ok(server) => server,
        Err(error) => {
            let message = format!("{error}");
            shared.startup_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
            return Err(io::Error::other(message));
        }
    };
    let _ = hub.counters.set(server.counters());
    let (stopper, stop_shared) = (server.clone(), shared.clone());
    verdant_hub::Builder::new().name(format!("MultiServer hub {index} stop")).spawn(move || {
        stop_shared.hubs[index].stop.0.wait();
        stopper.stop(stop_shared.stop_timeout());
    })?;
    starting.serving();
    server.serve_forever()
}

/// Hub `index`'s server, started.
fn start_server<H, R>(
    hub: &HubControl,
    index: usize,
    make_handler: &(impl Fn(usize) -> H + ?Sized),
    configure: &Configure,
) -> io::Result<StreamServer>
where
    H: Fn(TcpStream, SocketAddr) -> R + 'static,
    R: HandlerResult,
{
    let listener = hub.listener.lock().unwrap_or_else(|e| e.into_inner()).take();
    let listener = listener.ok_or_else(|| io::Error::other("the hub's listener is gone"))?;
    let server = StreamServer::from_listener(TcpListener::from_std(listener)?, make_handler(index));
    let server = configure(server);
    server.start()?;
    Ok(server)
}
