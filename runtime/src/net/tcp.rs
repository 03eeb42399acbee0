//! Green TCP: `TcpListener` and `TcpStream` with the `std::net` shapes.

use std::fmt;
use std::io;
use std::net::{self, Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use verdant_hub::io::Interest;

use super::addr::{ToSocketAddrs, each_addr};
use verdant_hub::io::Green;

/// The listen backlog [`TcpListener::bind`] asks for (gevent's servers use 256, tokio 1024).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// A TCP listening socket whose `accept` blocks only the calling greenlet.
///
/// ```
/// use std::io::{Read, Write};
/// use verdant::net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// let server = verdant::spawn(move || {
///     let (mut stream, _) = listener.accept().unwrap();
///     let mut buf = [0; 5];
///     stream.read_exact(&mut buf).unwrap();
///     stream.write_all(&buf).unwrap(); // echo
/// });
/// let mut client = TcpStream::connect(addr).unwrap();
/// client.write_all(b"hello").unwrap();
/// let mut echo = [0; 5];
/// client.read_exact(&mut echo).unwrap();
/// assert_eq!(&echo, b"hello");
/// server.join();
/// ```
pub struct TcpListener {
    inner: Green<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to the first of `addr` that works (host names resolve on the thread pool) and
    /// listens with a backlog of [`DEFAULT_BACKLOG`] connections (std uses 128, which
    /// a burst of clients overflows).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let listener = each_addr(addr, net::TcpListener::bind).and_then(TcpListener::from_std)?;
        listener.set_backlog(DEFAULT_BACKLOG)?;
        Ok(listener)
    }

    /// Like [`bind`](Self::bind), with `SO_REUSEPORT` (and `SO_REUSEADDR`) set before
    /// binding: several listeners, one per hub, may then bind the same address, and the
    /// kernel spreads incoming connections over them (by a hash of the client's address
    /// and port). Each must be bound this way, by the same user. With port 0, each call
    /// picks a new port: bind the first, then the others to its
    /// [`local_addr`](Self::local_addr).
    ///
    /// ```
    /// use verdant::net::TcpListener;
    ///
    /// let first = TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
    /// let second = TcpListener::bind_reuse_port(first.local_addr().unwrap()).unwrap();
    /// assert_eq!(first.local_addr().unwrap(), second.local_addr().unwrap());
    /// ```
    pub fn bind_reuse_port<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr(addr, reuse_port_listener).and_then(TcpListener::from_std)
    }

    /// Wraps a std listener (made non-blocking and registered with this thread's hub).
    pub fn from_std(listener: net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener { inner: Green::new(mio::net::TcpListener::from_std(listener))? })
    }

    /// Sets how many connections the kernel queues while none is being accepted (capped
    /// by `net.core.somaxconn`): gevent's `backlog`.
    pub fn set_backlog(&self, backlog: u32) -> io::Result<()> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        // SAFETY: listen on a listening socket this listener owns only updates its backlog.
        if unsafe { libc::listen(self.as_raw_fd(), backlog) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        // mio accepts with `SOCK_NONBLOCK | SOCK_CLOEXEC`: one syscall per connection.
        let (stream, addr) = self.inner.read_with(mio::net::TcpListener::accept)?;
        Ok((TcpStream::from_mio(stream)?, addr))
    }

    /// An endless iterator of accepted connections (or accept errors).
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(stream, _)| stream))
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Makes `accept` give up after `timeout` (`ErrorKind::TimedOut`); `None` waits forever.
    pub fn set_accept_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    /// Sets the IP time-to-live of accepted sockets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// The pending socket error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get_ref().take_error()
    }

    /// The socket, for options this type has no method for (through socket2).
    pub fn socket(&self) -> SockRef<'_> {
        SockRef::from(self.inner.get_ref())
    }
}

/// A std listener bound to `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, listening with
/// a backlog of [`DEFAULT_BACKLOG`]. `Send`: it may be made on one thread and registered
/// with a hub on another ([`TcpListener::from_std`]).
pub(crate) fn reuse_port_listener(addr: SocketAddr) -> io::Result<net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(DEFAULT_BACKLOG).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

impl_fd!(TcpListener);

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener").field("addr", &self.local_addr().ok()).finish()
    }
}

/// A TCP connection whose reads, writes and connect block only the calling greenlet.
///
/// Implements `Read` and `Write` (also for `&TcpStream`, so one greenlet can read while
/// another writes), so any code generic over them works unchanged.
pub struct TcpStream {
    inner: Green<net::TcpStream>,
}

impl TcpStream {
    /// Connects to the first of `addr` that accepts (host names resolve on the thread
    /// pool).
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |addr| TcpStream::connect_addr(addr, None))
    }

    /// Connects to `addr`, giving up after `timeout` (`ErrorKind::TimedOut`).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        TcpStream::connect_addr(*addr, Instant::now().checked_add(timeout))
    }

    fn connect_addr(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        // mio starts a non-blocking connect; completion is signalled by writability.
        let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?)?;
        stream.inner.clear_ready(Interest::WRITABLE); // wait for the connect to complete
        stream.inner.wait(Interest::WRITABLE, deadline)?;
        if let Some(err) = stream.inner.get_ref().take_error()? {
            return Err(err);
        }
        // Writable without an error may still mean "not connected" on some kernels: ask.
        match stream.inner.get_ref().peer_addr() {
            Ok(_) => Ok(stream),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("could not connect to {addr}"),
            )),
            Err(err) => Err(err),
        }
    }

    /// Registers a stream mio made (so already non-blocking).
    fn from_mio(stream: mio::net::TcpStream) -> io::Result<TcpStream> {
        // SAFETY: the fd comes straight out of the mio stream, which gives up ownership.
        let stream = unsafe { net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
        Ok(TcpStream { inner: Green::new_nonblocking(stream)? })
    }

    /// Wraps a connected std stream (made non-blocking and registered with this hub).
    pub fn from_std(stream: net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream { inner: Green::new(stream)? })
    }

    /// Deregisters the stream and returns the std stream (still non-blocking).
    pub fn into_std(self) -> net::TcpStream {
        self.inner.into_inner()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Shuts down the read half, the write half, or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }

    /// Sets `TCP_NODELAY` (send small writes at once instead of batching them).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.get_ref().nodelay()
    }

    /// Makes reads give up after `timeout` with `ErrorKind::TimedOut` (the socket stays
    /// usable); `None` waits forever. A zero duration is an error, as in std. Only the
    /// calling greenlet waits.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    /// Like [`set_read_timeout`](Self::set_read_timeout), for writes.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.read_timeout())
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.write_timeout())
    }

    /// Reads without removing the data from the socket's queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_with(|s| s.peek(buf))
    }

    /// A second handle to the same connection (a duplicated fd, registered separately).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        TcpStream::from_std(self.inner.get_ref().try_clone()?)
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// The pending socket error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get_ref().take_error()
    }

    /// Sets `SO_LINGER`. `Some(Duration::ZERO)` makes closing the stream reset the
    /// connection (RST) instead of the orderly FIN, dropping unsent data: the usual use,
    /// to shed a client without a `TIME_WAIT`. `None` (the default) closes in the
    /// background. A nonzero linger makes the close itself wait, in the kernel, for unsent
    /// data to go out, up to that long; that wait blocks the whole hub thread, so avoid it.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.socket().set_linger(linger)
    }

    /// `SO_LINGER` (see [`set_linger`](Self::set_linger)).
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.socket().linger()
    }

    /// Turns TCP keep-alive probes (`SO_KEEPALIVE`) on or off; the timings are the
    /// system's unless set through [`socket`](Self::socket) (`set_tcp_keepalive`).
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.socket().set_keepalive(keepalive)
    }

    /// Sets the kernel's receive buffer size (`SO_RCVBUF`; Linux doubles it).
    pub fn set_recv_buffer_size(&self, size: usize) -> io::Result<()> {
        self.socket().set_recv_buffer_size(size)
    }

    /// Sets the kernel's send buffer size (`SO_SNDBUF`; Linux doubles it).
    pub fn set_send_buffer_size(&self, size: usize) -> io::Result<()> {
        self.socket().set_send_buffer_size(size)
    }

    /// The socket, for options this type has no method for (through socket2, re-exported
    /// as [`verdant::net::socket2`](crate::net::socket2)). Options only: reading or
    /// writing through it would block the thread and bypass the hub.
    ///
    /// ```
    /// # let listener = verdant::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// # let stream = verdant::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// stream.set_linger(Some(std::time::Duration::ZERO)).unwrap(); // reset on close
    /// assert_eq!(stream.linger().unwrap(), Some(std::time::Duration::ZERO));
    /// stream.socket().set_tcp_keepalive(
    ///     &verdant::net::socket2::TcpKeepalive::new().with_time(std::time::Duration::from_secs(60)),
    /// ).unwrap();
    /// assert!(stream.socket().keepalive().unwrap());
    /// ```
    pub fn socket(&self) -> SockRef<'_> {
        SockRef::from(self.inner.get_ref())
    }
}

impl_stream_io!(TcpStream);
impl_fd!(TcpStream);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}
