//! Socket addresses, and resolving host names without blocking the hub.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::OnceLock;

use verdant_threadpool::ThreadPool;

/// How many threads resolve host names at once unless told otherwise: 10, the size of
/// gevent's hub thread pool, which its default ("thread") resolver runs `getaddrinfo` on.
/// Each thread is started only when a look-up needs it, and lingers idle a while after.
pub const DEFAULT_RESOLVER_THREADS: usize = 10;

/// The environment variable that sets the resolver's thread count (read once, when the
/// first look-up starts the pool); [`set_resolver_threads`] overrides it at any time.
pub const RESOLVER_THREADS_ENV: &str = "VERDANT_RESOLVER_THREADS";

/// The thread pool host names are resolved on (gevent's default "thread" resolver):
/// `getaddrinfo` blocks, so it runs on worker threads, never on a hub.
fn resolver() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| ThreadPool::new(threads_from_env()))
}

/// [`RESOLVER_THREADS_ENV`] if it holds a positive number, else the default. A bad value
/// is reported (once) rather than ignored silently.
fn threads_from_env() -> usize {
    let Ok(value) = std::env::var(RESOLVER_THREADS_ENV) else {
        return DEFAULT_RESOLVER_THREADS;
    };
    match value.trim().parse::<usize>() {
        Ok(threads) if threads > 0 => threads,
        _ => {
            verdant_hub::report::report(format!(
                "verdant: {RESOLVER_THREADS_ENV}={value:?} is not a positive number of \
                 threads; resolving on {DEFAULT_RESOLVER_THREADS}"
            ));
            DEFAULT_RESOLVER_THREADS
        }
    }
}

/// Sets how many threads may resolve host names at once (gevent's `threadpool.maxsize`):
/// more lets more look-ups of a slow DNS server wait in parallel. Takes effect at once;
/// `0` is `InvalidInput` (no look-up could ever finish).
///
/// ```
/// verdant::net::set_resolver_threads(32).unwrap();
/// assert_eq!(verdant::net::resolver_threads(), 32);
/// assert!(verdant::net::set_resolver_threads(0).is_err());
/// ```
pub fn set_resolver_threads(threads: usize) -> io::Result<()> {
    if threads == 0 {
        let message = "the resolver needs at least one thread";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    resolver().set_maxsize(threads);
    Ok(())
}

/// How many threads may resolve host names at once ([`DEFAULT_RESOLVER_THREADS`] unless
/// set by [`set_resolver_threads`] or [`RESOLVER_THREADS_ENV`]).
pub fn resolver_threads() -> usize {
    resolver().maxsize()
}

/// Resolves `"host:port"` to socket addresses on a thread pool, blocking only the calling
/// greenlet (std's `ToSocketAddrs` would block the whole thread while the resolver works).
/// Up to [`resolver_threads`] look-ups run at once; the others queue. With the green
/// resolver chosen ([`dns::set_resolver`](super::dns::set_resolver)), DNS queries go out over
/// green sockets instead, with no thread and no limit.
///
/// ```
/// let addrs = verdant::net::lookup_host("localhost:80").unwrap();
/// assert!(addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()));
/// ```
pub fn lookup_host(host_and_port: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(addr) = host_and_port.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if super::dns::resolver() == super::dns::Resolver::Green {
        return super::dns::system_green()?.lookup_host(host_and_port);
    }
    let query = host_and_port.to_string();
    resolver()
        .apply(move || std::net::ToSocketAddrs::to_socket_addrs(&query).map(Iterator::collect))
}

/// What can be turned into socket addresses for `bind` and `connect`: like
/// `std::net::ToSocketAddrs`, but host names are resolved with [`lookup_host`], so only the
/// calling greenlet waits for the resolver.
pub trait ToSocketAddrs {
    /// The addresses, in the order they should be tried.
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>>;
}

impl ToSocketAddrs for SocketAddr {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![*self])
    }
}

impl ToSocketAddrs for SocketAddrV4 {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::V4(*self)])
    }
}

impl ToSocketAddrs for SocketAddrV6 {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::V6(*self)])
    }
}

impl ToSocketAddrs for (IpAddr, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(self.0, self.1)])
    }
}

impl ToSocketAddrs for (Ipv4Addr, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(IpAddr::V4(self.0), self.1)])
    }
}

impl ToSocketAddrs for (Ipv6Addr, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(IpAddr::V6(self.0), self.1)])
    }
}

impl ToSocketAddrs for (&str, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, self.1)]),
            Err(_) => lookup_host(&format!("{}:{}", self.0, self.1)),
        }
    }
}

impl ToSocketAddrs for str {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        lookup_host(self)
    }
}

impl ToSocketAddrs for String {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        lookup_host(self)
    }
}

impl ToSocketAddrs for [SocketAddr] {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(self.to_vec())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).to_socket_addrs()
    }
}

/// Tries `f` on each address in turn; returns the first success or the last error.
pub(crate) fn each_addr<A: ToSocketAddrs, T>(
    addr: A,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_error = None;
    for addr in addr.to_socket_addrs()? {
        match f(addr) {
            Ok(value) => return Ok(value),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to use")))
}
