//! Green Unix-domain sockets: `UnixListener` and `UnixStream`.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::time::Duration;

use verdant_hub::io::Interest;

use verdant_hub::io::Green;

/// A Unix-domain listening socket whose `accept` blocks only the calling greenlet.
pub struct UnixListener {
    inner: Green<net::UnixListener>,
}

impl UnixListener {
    /// Binds to a filesystem path.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::from_std(net::UnixListener::bind(path)?)
    }

    /// Wraps a std listener (made non-blocking and registered with this hub).
    pub fn from_std(listener: net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener { inner: Green::new(listener)? })
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (stream, addr) = self.inner.read_with(net::UnixListener::accept)?;
        Ok((UnixStream::from_std(stream)?, addr))
    }

    /// An endless iterator of accepted connections (or accept errors).
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<UnixStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(stream, _)| stream))
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }
}

impl_fd!(UnixListener);

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener").field("addr", &self.local_addr().ok()).finish()
    }
}

/// A Unix-domain stream socket whose I/O blocks only the calling greenlet; `Read` and
/// `Write` are implemented for it and for `&UnixStream`.
///
/// ```
/// use std::io::{Read, Write};
/// use verdant::net::UnixStream;
///
/// let (mut a, mut b) = UnixStream::pair().unwrap();
/// let reader = verdant::spawn(move || {
///     let mut s = String::new();
///     b.read_to_string(&mut s).unwrap();
///     s
/// });
/// a.write_all(b"over a socketpair").unwrap();
/// drop(a);
/// assert_eq!(reader.get().unwrap(), "over a socketpair");
/// ```
pub struct UnixStream {
    inner: Green<net::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket at `path`.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let pending = mio::net::UnixStream::connect(path)?;
        // SAFETY: the fd comes straight out of the mio stream, which gives up ownership.
        let stream =
            UnixStream::from_std(unsafe { net::UnixStream::from_raw_fd(pending.into_raw_fd()) })?;
        stream.inner.clear_ready(Interest::WRITABLE);
        stream.inner.wait(Interest::WRITABLE, None)?;
        match stream.inner.get_ref().take_error()? {
            Some(err) => Err(err),
            None => Ok(stream),
        }
    }

    /// A connected pair of sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// Wraps a connected std stream (made non-blocking and registered with this hub).
    pub fn from_std(stream: net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream { inner: Green::new(stream)? })
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// Shuts down the read half, the write half, or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
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

    /// The pending socket error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get_ref().take_error()
    }

    /// Reads into `buf` without taking the bytes from the socket: the next read sees them
    /// again. Waits (this greenlet only, up to the read timeout) while nothing has come.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout, and `peek` only writes
        // initialized bytes into the buffer, so `buf` stays initialized.
        let uninit = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [std::mem::MaybeUninit<u8>]) };
        self.inner.read_with(|stream| socket2::SockRef::from(stream).peek(uninit))
    }

    /// A second handle to the same connection.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        UnixStream::from_std(self.inner.get_ref().try_clone()?)
    }
}

impl_stream_io!(UnixStream);
impl_fd!(UnixStream);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream").field("peer", &self.peer_addr().ok()).finish()
    }
}
