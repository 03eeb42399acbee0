//! I/O readiness: file descriptors registered in the hub's mio `Poll`, and greenlets
//! parked until one becomes readable or writable.
//!
//! Registrations are edge-triggered (mio's model). Each keeps two readiness flags that
//! events set and that the owner clears when an operation returns `WouldBlock`; a greenlet
//! waits only while the flag it needs is clear. This is what `verdant::net` builds its
//! sockets on, and what [`wait_readable`] / [`wait_writable`] offer for any raw fd.
//!
//! ```
//! use std::io::Write;
//! use std::os::unix::net::UnixStream;
//!
//! let (mut a, b) = UnixStream::pair().unwrap();
//! let reader = verdant_hub::spawn(move || verdant_hub::io::wait_readable(&b, None));
//! a.write_all(b"x").unwrap();
//! assert!(reader.take().unwrap().is_ok());
//! ```

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use crate::hub::{try_with_hub, with_hub};
use crate::park;

pub(crate) mod driver;
mod green;

pub(crate) use driver::{IoDriver, WAKE_TOKEN};
pub use green::Green;
pub use mio::Interest;

/// A file descriptor registered with this thread's hub, edge-triggered, for reading and
/// writing. `!Send`: it belongs to the hub that registered it.
///
/// The usual pattern: try the non-blocking operation; on `WouldBlock`, call
/// [`clear_ready`](Registration::clear_ready) and then [`wait`](Registration::wait), and try
/// again.
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant_hub::io::Registration>();
/// ```
pub struct Registration {
    fd: RawFd,
    key: usize,
    _not_send: PhantomData<*const ()>,
}

impl Registration {
    /// Registers `fd` for readability and writability. The fd should be in non-blocking
    /// mode for the pattern above to work.
    ///
    /// # Safety
    ///
    /// `fd` must stay open until this registration is dropped. (If it were closed first,
    /// its number could be reused by an unrelated file, which the drop would then
    /// deregister from the hub.)
    pub unsafe fn new(fd: RawFd) -> io::Result<Registration> {
        let key = with_hub(|hub| hub.io().register(fd))?;
        Ok(Registration { fd, key, _not_send: PhantomData })
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Whether the fd may be ready for `interest`: true at registration and after an event
    /// said so, false after [`clear_ready`](Registration::clear_ready).
    pub fn is_ready(&self, interest: Interest) -> bool {
        with_hub(|hub| hub.io().is_ready(self.key, interest))
    }

    /// Forgets readiness for `interest`: call it when an operation returned `WouldBlock`
    /// (or read less than asked, so the socket is drained). Ignored once the peer closed
    /// that direction or the socket failed: then operations no longer block, and no event
    /// would come to set the flag again.
    pub fn clear_ready(&self, interest: Interest) {
        with_hub(|hub| hub.io().clear_ready(self.key, interest));
    }

    /// Parks the calling greenlet until the fd is ready for `interest` (readable or
    /// writable), or `deadline` passes (`ErrorKind::TimedOut`). Returns at once if it is
    /// ready already. Any number of greenlets may wait; all are woken by readiness.
    pub fn wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
        if self.is_ready(interest) {
            return Ok(());
        }
        let what = if interest.is_writable() { "writable" } else { "readable" };
        let ready = with_hub(|hub| {
            let io = hub.io();
            let _counted = io.count_waiter();
            park::wait_until(
                &format_args!("fd {} to become {what}", self.fd),
                deadline,
                |waker| io.add_waiter(self.key, interest, waker),
                || io.is_ready(self.key, interest),
            )
        });
        if !ready {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for I/O"));
        }
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        try_with_hub(|hub| hub.io().deregister(self.fd, self.key));
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").field("fd", &self.fd).finish()
    }
}

/// Parks the calling greenlet once, until one of `waits` (a registration and the readiness
/// it needs) may have become ready, `deadline` passes, or another waker of this wait — one
/// the caller stored elsewhere, say for a close — wakes it. Returns `Ok(true)` if the
/// deadline passed.
///
/// For code that must not unwind (a libc hook called from C): a kill or `with_timeout`
/// expiry makes it return `Err(Interrupted)` instead, and stays pending for the greenlet's
/// next blocking point, as with [`park::park_until_quietly`].
///
/// It does not look at readiness first and may return spuriously: callers check
/// [`Registration::is_ready`] in a loop around it, as [`Registration::wait`] does.
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsRawFd;
/// use std::os::unix::net::UnixStream;
/// use verdant_hub::io::{self, Interest, Registration};
///
/// let (mut a, b) = UnixStream::pair().unwrap();
/// b.set_nonblocking(true).unwrap();
/// let reader = verdant_hub::spawn(move || {
///     // SAFETY: `b` lives in this closure, longer than the registration.
///     let registration = unsafe { Registration::new(b.as_raw_fd()) }.unwrap();
///     registration.clear_ready(Interest::READABLE);
///     while !registration.is_ready(Interest::READABLE) {
///         io::park_quietly(&[(&registration, Interest::READABLE)], None).unwrap();
///     }
/// });
/// a.write_all(b"x").unwrap();
/// reader.get().unwrap();
/// ```
pub fn park_quietly(
    waits: &[(&Registration, Interest)],
    deadline: Option<Instant>,
) -> Result<bool, park::Interrupted> {
    with_hub(|hub| {
        let io = hub.io();
        let _counted = io.count_waiter();
        for (registration, interest) in waits {
            io.add_waiter(registration.key, *interest, park::waker());
        }
        let fds = waits.len();
        park::park_until_quietly(&format_args!("{fds} fd(s) to become ready (quietly)"), deadline)
    })
}

/// Parks the calling greenlet until `fd` is readable, or `timeout` passes
/// (`ErrorKind::TimedOut`): gevent's `wait_read`. Lets any fd-based code cooperate.
///
/// The fd is borrowed for the call, so nobody can close it (and have its number reused)
/// meanwhile. It is registered for the duration of the call only; it must not be
/// registered with this hub already (use [`Registration::wait`] for fds you keep
/// registered).
pub fn wait_readable(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<()> {
    wait_once(fd.as_fd(), Interest::READABLE, timeout)
}

/// Parks the calling greenlet until `fd` is writable, or `timeout` passes: gevent's
/// `wait_write`. See [`wait_readable`].
pub fn wait_writable(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<()> {
    wait_once(fd.as_fd(), Interest::WRITABLE, timeout)
}

fn wait_once(fd: BorrowedFd<'_>, interest: Interest, timeout: Option<Duration>) -> io::Result<()> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let fd = fd.as_raw_fd();
    // SAFETY: the registration is dropped before this function returns, and `fd` is
    // borrowed for the whole call, so it stays open until then.
    let registration = unsafe { Registration::new(fd) }.map_err(|err| {
        if err.raw_os_error() == Some(libc::EEXIST) {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("fd {fd} is already registered with this hub; wait on its Registration"),
            )
        } else {
            err
        }
    })?;
    // Not optimistic here: the caller asks to wait. If the fd is already ready, epoll
    // reports it on registration and the wait ends at the next poll.
    registration.clear_ready(interest);
    registration.wait(interest, deadline)
}
