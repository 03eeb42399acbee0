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
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//!
//! let (mut a, b) = UnixStream::pair().unwrap();
//! let fd = b.as_raw_fd();
//! let reader = verdant_hub::spawn(move || verdant_hub::io::wait_readable(fd, None));
//! a.write_all(b"x").unwrap();
//! assert!(reader.get().unwrap().is_ok());
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Poll, Token};
use slab::Slab;

use crate::hub::{try_with_hub, with_hub};
use crate::park::{self, WaitList};

mod green;

pub use green::Green;
pub use mio::Interest;

/// The token of the hub's own eventfd (the cross-thread wake).
pub(crate) const WAKE_TOKEN: Token = Token(usize::MAX);

/// Readiness state of one registered fd.
#[derive(Default)]
struct Entry {
    readable: Cell<bool>,
    writable: Cell<bool>,
    /// The peer closed its writing side, or the socket failed: reads never block again,
    /// so `readable` stays set (no further event would come to set it again).
    read_closed: Cell<bool>,
    /// The socket can no longer be written (hang-up or error): writes fail at once.
    write_closed: Cell<bool>,
    readers: WaitList,
    writers: WaitList,
}

impl Entry {
    fn flag(&self, interest: Interest) -> &Cell<bool> {
        if interest.is_writable() { &self.writable } else { &self.readable }
    }

    fn closed(&self, interest: Interest) -> bool {
        if interest.is_writable() { self.write_closed.get() } else { self.read_closed.get() }
    }

    fn waiters(&self, interest: Interest) -> &WaitList {
        if interest.is_writable() { &self.writers } else { &self.readers }
    }
}

/// The hub's half of I/O: the `Poll`, its event buffer, and the registered fds.
pub(crate) struct IoDriver {
    poll: RefCell<Poll>,
    events: RefCell<Events>,
    entries: RefCell<Slab<Entry>>,
    /// Greenlets parked waiting for readiness right now.
    waiters: Cell<usize>,
}

impl IoDriver {
    pub(crate) fn new() -> io::Result<IoDriver> {
        Ok(IoDriver {
            poll: RefCell::new(Poll::new()?),
            events: RefCell::new(Events::with_capacity(256)),
            entries: RefCell::new(Slab::new()),
            waiters: Cell::new(0),
        })
    }

    pub(crate) fn new_waker(&self, token: Token) -> io::Result<mio::Waker> {
        mio::Waker::new(self.poll.borrow().registry(), token)
    }

    /// Greenlets parked on I/O: while any are, the loop polls between turns.
    pub(crate) fn waiters(&self) -> usize {
        self.waiters.get()
    }

    /// Polls once (`timeout` `None` blocks until an event) and wakes the greenlets waiting
    /// on whatever became ready. The hub's own eventfd needs no handling here: the loop
    /// drains the inbox right after.
    pub(crate) fn poll(&self, timeout: Option<Duration>) {
        let mut events = self.events.borrow_mut();
        if let Err(err) = self.poll.borrow_mut().poll(&mut events, timeout) {
            if err.kind() == io::ErrorKind::Interrupted {
                return;
            }
            panic!("verdant: the hub's epoll_wait failed: {err}");
        }
        let entries = self.entries.borrow();
        for event in events.iter() {
            let Some(entry) = entries.get(event.token().0) else { continue };
            let failed = event.is_error() || (event.is_read_closed() && event.is_write_closed());
            if event.is_read_closed() || failed {
                entry.read_closed.set(true);
            }
            if event.is_write_closed() || failed {
                entry.write_closed.set(true);
            }
            if event.is_readable() || event.is_read_closed() || failed {
                entry.readable.set(true);
                entry.readers.notify_all();
            }
            if event.is_writable() || event.is_write_closed() || failed {
                entry.writable.set(true);
                entry.writers.notify_all();
            }
        }
    }

    /// The thread is ending: forget parked waiters without running anything.
    pub(crate) fn abandon_waiters(&self) {
        for (_, entry) in self.entries.borrow_mut().iter_mut() {
            std::mem::forget(std::mem::take(&mut entry.readers));
            std::mem::forget(std::mem::take(&mut entry.writers));
        }
    }
}

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
        with_hub(|hub| {
            let mut entries = hub.io.entries.borrow_mut();
            let vacant = entries.vacant_entry();
            let key = vacant.key();
            let interest = Interest::READABLE | Interest::WRITABLE;
            hub.io.poll.borrow().registry().register(&mut SourceFd(&fd), Token(key), interest)?;
            // Optimistic: the first operation is simply tried (an fd handed over may already
            // be readable, a fresh socket is writable); `WouldBlock` clears the flag.
            let entry = Entry::default();
            entry.readable.set(true);
            entry.writable.set(true);
            vacant.insert(entry);
            Ok(Registration { fd, key, _not_send: PhantomData })
        })
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Whether the fd may be ready for `interest`: true at registration and after an event
    /// said so, false after [`clear_ready`](Registration::clear_ready).
    pub fn is_ready(&self, interest: Interest) -> bool {
        with_hub(|hub| hub.io.entries.borrow()[self.key].flag(interest).get())
    }

    /// Forgets readiness for `interest`: call it when an operation returned `WouldBlock`
    /// (or read less than asked, so the socket is drained). Ignored once the peer closed
    /// that direction or the socket failed: then operations no longer block, and no event
    /// would come to set the flag again.
    pub fn clear_ready(&self, interest: Interest) {
        with_hub(|hub| {
            let entries = hub.io.entries.borrow();
            let entry = &entries[self.key];
            if !entry.closed(interest) {
                entry.flag(interest).set(false);
            }
        });
    }

    /// Parks the calling greenlet until the fd is ready for `interest` (readable or
    /// writable), or `deadline` passes (`ErrorKind::TimedOut`). Returns at once if it is
    /// ready already. Any number of greenlets may wait; all are woken by readiness.
    pub fn wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
        loop {
            if self.is_ready(interest) {
                return Ok(());
            }
            let counted = WaiterCount::start();
            with_hub(|hub| hub.io.entries.borrow()[self.key].waiters(interest).push(park::waker()));
            let what = if interest.is_writable() { "writable" } else { "readable" };
            let timed_out =
                park::park_until(&format_args!("fd {} to become {what}", self.fd), deadline);
            drop(counted);
            if self.is_ready(interest) {
                return Ok(());
            }
            if timed_out {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for I/O"));
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        try_with_hub(|hub| {
            let _ = hub.io.poll.borrow().registry().deregister(&mut SourceFd(&self.fd));
            hub.io.entries.borrow_mut().try_remove(self.key);
        });
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").field("fd", &self.fd).finish()
    }
}

/// Counts one greenlet as waiting for I/O for as long as it lives (unwinding included).
struct WaiterCount;

impl WaiterCount {
    fn start() -> WaiterCount {
        with_hub(|hub| hub.io.waiters.set(hub.io.waiters.get() + 1));
        WaiterCount
    }
}

impl Drop for WaiterCount {
    fn drop(&mut self) {
        try_with_hub(|hub| hub.io.waiters.set(hub.io.waiters.get() - 1));
    }
}

/// Parks the calling greenlet until `fd` is readable, or `timeout` passes
/// (`ErrorKind::TimedOut`): gevent's `wait_read`. Lets any fd-based code cooperate.
///
/// The fd is registered for the duration of the call only; it must not be registered
/// with this hub already (use [`Registration::wait`] for fds you keep registered).
pub fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<()> {
    wait_once(fd, Interest::READABLE, timeout)
}

/// Parks the calling greenlet until `fd` is writable, or `timeout` passes: gevent's
/// `wait_write`. See [`wait_readable`].
pub fn wait_writable(fd: RawFd, timeout: Option<Duration>) -> io::Result<()> {
    wait_once(fd, Interest::WRITABLE, timeout)
}

fn wait_once(fd: RawFd, interest: Interest, timeout: Option<Duration>) -> io::Result<()> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    // SAFETY: the registration is dropped before this function returns, while the
    // caller's fd is still open (the caller cannot close it during this call).
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
