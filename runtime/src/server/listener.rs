//! [`Listener`]: what a [`StreamServer`](super::StreamServer) accepts connections from, a
//! green TCP or Unix-domain listening socket, and [`Connection`], what it hands its
//! handlers.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A listening socket a [`StreamServer`](super::StreamServer) can serve: implemented for
/// [`TcpListener`] and [`UnixListener`]. Sealed.
pub trait Listener: sealed::Sealed + 'static {
    /// An accepted connection.
    type Stream: Connection;
    /// A socket address: the listener's and the peers'.
    type Addr: Clone + fmt::Debug + Send + Sync + 'static;

    /// Waits for a connection (this greenlet only).
    fn accept(&self) -> io::Result<(Self::Stream, Self::Addr)>;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<Self::Addr>;
}

/// A connection a [`StreamServer`](super::StreamServer) can apply its timeouts to. Sealed.
pub trait Connection: sealed::Sealed + 'static {
    /// See [`TcpStream::set_read_timeout`].
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// See [`TcpStream::set_write_timeout`].
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// See [`TcpStream::peek`].
    fn peek(&self, buf: &mut [u8]) -> io::Result<usize>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::TcpListener {}
    impl Sealed for super::UnixListener {}
    impl Sealed for super::TcpStream {}
    impl Sealed for super::UnixStream {}
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Addr = std::net::SocketAddr;

    fn accept(&self) -> io::Result<(TcpStream, std::net::SocketAddr)> {
        TcpListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        TcpListener::local_addr(self)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Addr = std::os::unix::net::SocketAddr;

    fn accept(&self) -> io::Result<(UnixStream, std::os::unix::net::SocketAddr)> {
        UnixListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<std::os::unix::net::SocketAddr> {
        UnixListener::local_addr(self)
    }
}

macro_rules! impl_connection {
    ($stream:ty) => {
        impl Connection for $stream {
            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$stream>::set_read_timeout(self, timeout)
            }
            fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$stream>::set_write_timeout(self, timeout)
            }
            fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$stream>::peek(self, buf)
            }
        }
    };
}

impl_connection!(TcpStream);
impl_connection!(UnixStream);
