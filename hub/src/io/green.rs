//! [`Green`]: a non-blocking I/O object registered with the hub, whose operations park the
//! calling greenlet instead of blocking. The building block of `verdant::net`'s sockets and
//! of the process pool's pipes (async-io's `Async<T>`, for greenlets).

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use std::fmt;

use super::{Interest, Registration};

/// A non-blocking I/O object `T` (a socket, a pipe) registered with this thread's hub.
///
/// Operations are tried first; on `WouldBlock` the calling greenlet parks until the hub
/// reports readiness, within the read or write timeout. `!Send`, like the registration.
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use verdant_hub::io::Green;
///
/// let (a, b) = UnixStream::pair().unwrap();
/// let (a, b) = (Green::new(a).unwrap(), Green::new(b).unwrap());
/// let reader = verdant_hub::spawn(move || {
///     let mut buf = [0; 5];
///     let n = b.read_with(|mut s| s.read(&mut buf)).unwrap(); // parks until data comes
///     buf[..n].to_vec()
/// });
/// a.write_with(|mut s| s.write(b"hello")).unwrap();
/// assert_eq!(reader.get().unwrap(), b"hello");
/// ```
///
/// # Invariant
///
/// `registration` is declared before `io`, so it is dropped (deregistered) before `io`
/// closes the fd it registers.
pub struct Green<T: AsRawFd> {
    registration: Registration,
    io: T,
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
}

/// Puts `fd` in non-blocking mode.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller owns; F_GETFL/F_SETFL touch no memory.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl<T: AsRawFd> Green<T> {
    /// Makes `io` non-blocking and registers it with this thread's hub.
    pub fn new(io: T) -> io::Result<Green<T>> {
        set_nonblocking(io.as_raw_fd())?;
        Green::new_nonblocking(io)
    }

    /// Registers `io`, which is already in non-blocking mode (accepted with
    /// `SOCK_NONBLOCK`, or created by mio): one `fcntl` pair less per connection.
    pub fn new_nonblocking(io: T) -> io::Result<Green<T>> {
        // SAFETY: `io` owns the fd and, by the field order of `Green`, outlives the
        // registration.
        let registration = unsafe { Registration::new(io.as_raw_fd())? };
        let (read_timeout, write_timeout) = (Cell::new(None), Cell::new(None));
        Ok(Green { registration, io, read_timeout, write_timeout })
    }

    /// The wrapped object (use it for operations that never block, like addresses).
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Deregisters and returns the object (still in non-blocking mode).
    pub fn into_inner(self) -> T {
        let Green { registration, io, .. } = self;
        drop(registration); // deregister before handing the fd back
        io
    }

    /// Makes read-like operations give up after `timeout` (`ErrorKind::TimedOut`); `None`
    /// waits forever; a zero duration is `InvalidInput`, as in std.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.read_timeout.set(timeout);
        Ok(())
    }

    /// Like [`set_read_timeout`](Green::set_read_timeout), for writes.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.write_timeout.set(timeout);
        Ok(())
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout.get()
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout.get()
    }

    /// Runs a read-like operation until it does not return `WouldBlock`, parking until the
    /// fd is readable in between, within the read timeout.
    pub fn read_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.do_io(Interest::READABLE, self.read_timeout.get(), op)
    }

    /// Like [`read_with`](Green::read_with) for writes.
    pub fn write_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.do_io(Interest::WRITABLE, self.write_timeout.get(), op)
    }

    /// Reads into `buf`; a read shorter than `buf` means the socket was drained, so the
    /// next read waits for readiness instead of asking the kernel first.
    pub fn read_buf(
        &self,
        buf: &mut [u8],
        op: impl Fn(&T, &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let n = self.read_with(|io| op(io, buf))?;
        if n > 0 && n < buf.len() {
            self.registration.clear_ready(Interest::READABLE);
        }
        Ok(n)
    }

    fn do_io<R>(
        &self,
        interest: Interest,
        timeout: Option<Duration>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut deadline: Option<Instant> = None;
        loop {
            if self.registration.is_ready(interest) {
                match op(&self.io) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        self.registration.clear_ready(interest);
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    done => return done,
                }
            }
            if deadline.is_none() {
                deadline = timeout.and_then(|t| Instant::now().checked_add(t));
            }
            self.registration.wait(interest, deadline)?;
        }
    }

    /// Forgets readiness for `interest`, so the next wait really waits for an event.
    pub fn clear_ready(&self, interest: Interest) {
        self.registration.clear_ready(interest);
    }

    /// Waits until the fd is ready for `interest` (for connects).
    pub fn wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
        self.registration.wait(interest, deadline)
    }
}

fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
    }
    Ok(())
}

impl<T: AsRawFd> AsRawFd for Green<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

impl<T: AsRawFd> fmt::Debug for Green<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Green").field("fd", &self.io.as_raw_fd()).finish()
    }
}
