//! The I/O driver: the hub's mio `Poll`, its event buffer, and the readiness state and
//! waiters of every registered fd. The loop calls [`IoDriver::poll`] between turns (and
//! blocks in it when nothing is ready); [`Registration`](super::Registration) reaches the
//! driver through the hub.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::task::{WaitList, Waker};

/// The token of the hub's own eventfd (the cross-thread wake).
pub(crate) const WAKE_TOKEN: Token = Token(usize::MAX);

/// Readiness state of one registered fd.
#[derive(Default)]
struct Entry {
    /// The registered fd (for traces).
    fd: RawFd,
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

/// One greenlet counted as waiting for I/O while this lives (unwinding included).
pub(crate) struct WaitingForIo<'a>(&'a Cell<usize>);

impl Drop for WaitingForIo<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl IoDriver {
    /// Whether code left the poll, its events or the registrations borrowed (see
    /// `Hub::end_overflowed`).
    pub(crate) fn in_use(&self) -> bool {
        self.poll.try_borrow_mut().is_err()
            || self.events.try_borrow_mut().is_err()
            || self.entries.try_borrow_mut().is_err()
    }

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

    /// Counts the calling greenlet as waiting for I/O until the guard is dropped.
    pub(crate) fn count_waiter(&self) -> WaitingForIo<'_> {
        self.waiters.set(self.waiters.get() + 1);
        WaitingForIo(&self.waiters)
    }

    /// Registers `fd` (edge-triggered, for reading and writing) and returns its key.
    /// Both readiness flags start set: the first operation is simply tried (an fd handed
    /// over may already be readable, a fresh socket is writable), and `WouldBlock` clears
    /// the flag.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<usize> {
        let mut entries = self.entries.borrow_mut();
        let vacant = entries.vacant_entry();
        let key = vacant.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll.borrow().registry().register(&mut SourceFd(&fd), Token(key), interest)?;
        let entry = Entry { fd, ..Entry::default() };
        entry.readable.set(true);
        entry.writable.set(true);
        vacant.insert(entry);
        Ok(key)
    }

    /// Removes a registration.
    pub(crate) fn deregister(&self, fd: RawFd, key: usize) {
        let _ = self.poll.borrow().registry().deregister(&mut SourceFd(&fd));
        self.entries.borrow_mut().try_remove(key);
    }

    /// Whether registration `key` may be ready for `interest`.
    pub(crate) fn is_ready(&self, key: usize, interest: Interest) -> bool {
        self.entries.borrow()[key].flag(interest).get()
    }

    /// Forgets readiness for `interest`, unless that direction is closed for good.
    pub(crate) fn clear_ready(&self, key: usize, interest: Interest) {
        let entries = self.entries.borrow();
        let entry = &entries[key];
        if !entry.closed(interest) {
            entry.flag(interest).set(false);
        }
    }

    /// Registers `waker` to be woken when `key` becomes ready for `interest`.
    pub(crate) fn add_waiter(&self, key: usize, interest: Interest, waker: Waker) {
        self.entries.borrow()[key].waiters(interest).push(waker);
    }

    /// Polls once (`timeout` `None` blocks until an event) and wakes the greenlets waiting
    /// on whatever became ready. The hub's own eventfd needs no handling here: the loop
    /// drains the inbox right after. With `ready` (a trace records), lists the fds that
    /// became ready there (`fd 7 (r), fd 9 (w)`).
    pub(crate) fn poll(&self, timeout: Option<Duration>, mut ready: Option<&mut String>) {
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
            if let Some(ready) = ready.as_deref_mut() {
                describe_event(ready, entry.fd, event);
            }
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

/// Appends `fd 7 (r)` (readable), `(w)`, `(rw)` or `(closed)` for a trace.
fn describe_event(out: &mut String, fd: RawFd, event: &mio::event::Event) {
    use std::fmt::Write as _;
    let how = match (event.is_readable(), event.is_writable()) {
        _ if event.is_error() || event.is_read_closed() => "closed",
        (true, true) => "rw",
        (true, false) => "r",
        (false, true) => "w",
        (false, false) => "?",
    };
    if !out.is_empty() {
        out.push_str(", ");
    }
    let _ = write!(out, "fd {fd} ({how})");
}
