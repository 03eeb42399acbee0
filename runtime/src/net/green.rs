//! The building block of every green socket: a std socket in non-blocking mode, registered
//! with the hub, whose operations park the calling greenlet instead of blocking.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use verdant_hub::io::{Interest, Registration};

/// A non-blocking I/O object `T` registered with this thread's hub.
///
/// # Invariant
///
/// `registration` is declared before `io`, so it is dropped (deregistered) before `io`
/// closes the fd it registers.
pub(crate) struct Green<T: AsRawFd> {
    registration: Registration,
    io: T,
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
}

/// Puts `fd` in non-blocking mode.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
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
    pub(crate) fn new(io: T) -> io::Result<Green<T>> {
        set_nonblocking(io.as_raw_fd())?;
        Green::new_nonblocking(io)
    }

    /// Registers `io`, which is already in non-blocking mode (accepted with
    /// `SOCK_NONBLOCK`, or created by mio): one `fcntl` pair less per connection.
    pub(crate) fn new_nonblocking(io: T) -> io::Result<Green<T>> {
        // SAFETY: `io` owns the fd and, by the field order of `Green`, outlives the
        // registration.
        let registration = unsafe { Registration::new(io.as_raw_fd())? };
        let (read_timeout, write_timeout) = (Cell::new(None), Cell::new(None));
        Ok(Green { registration, io, read_timeout, write_timeout })
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.io
    }

    pub(crate) fn into_inner(self) -> T {
        let Green { registration, io, .. } = self;
        drop(registration); // deregister before handing the fd back
        io
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.read_timeout.set(timeout);
        Ok(())
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.write_timeout.set(timeout);
        Ok(())
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout.get()
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout.get()
    }

    /// Runs a read-like operation until it does not return `WouldBlock`, parking until the
    /// fd is readable in between, within the read timeout.
    pub(crate) fn read_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.do_io(Interest::READABLE, self.read_timeout.get(), op)
    }

    /// Like [`read_with`](Green::read_with) for writes.
    pub(crate) fn write_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.do_io(Interest::WRITABLE, self.write_timeout.get(), op)
    }

    /// Reads into `buf`; a read shorter than `buf` means the socket was drained, so the
    /// next read waits for readiness instead of asking the kernel first.
    pub(crate) fn read_buf(
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
    pub(crate) fn clear_ready(&self, interest: Interest) {
        self.registration.clear_ready(interest);
    }

    /// Waits until the fd is ready for `interest` (for connects).
    pub(crate) fn wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
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
