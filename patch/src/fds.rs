//! What the hooks know about each file descriptor: a process-wide table (is it a socket,
//! did the user make it non-blocking), and per thread the fd's registration with that
//! thread's hub.
//!
//! # The table
//!
//! One `AtomicU32` per fd number below [`TABLE_SIZE`], in a static array (4 MiB of address
//! space whose untouched pages cost nothing), so a hook reads it with one load and never
//! allocates — not even in a signal handler. Each entry packs:
//!
//! ```text
//!   31                                   3    2     1 0
//!  ┌───────────────────────────────────────┬─────────┬────┐
//!  │ generation (bumped at every close      │ user's  │kind│  kind: unknown, not a
//!  │ and every creation of this fd number)  │O_NONBLOCK│   │  socket, stream, other
//!  └───────────────────────────────────────┴─────────┴────┘  socket
//! ```
//!
//! Sockets made through the hooks (`socket`, `socketpair`, `accept`) are entered when
//! made; any other fd is looked at once (`getsockopt(SO_TYPE)`, `fcntl(F_GETFL)`) the
//! first time a hook sees it, and forgotten when it is closed. The user's non-blocking flag
//! follows `fcntl(F_SETFL)` and `ioctl(FIONBIO)`. The kernel's flag always *is* the user's
//! flag: the hooks never leave a socket in a mode the user did not ask for (they pass
//! `MSG_DONTWAIT`, or set `O_NONBLOCK` only around a single `connect` or `accept`).
//!
//! # The registrations
//!
//! A socket a greenlet waits on is registered with the thread's hub the first time it
//! would block, and stays registered (one `epoll_ctl` per socket, not per call) until the
//! hooked `close` drops the registration, before the fd is closed. A registration
//! remembers the generation it was made in: one made before a close on *another* thread
//! (which cannot reach this thread's registrations) is found stale by the generation and
//! abandoned. Fds above the table, or closed by a raw `close` syscall, are limits
//! (`docs/patch.md`).

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use verdant_hub::io::Registration;
use verdant_hub::park::WaitList;

use crate::real;

/// Fds from 0 to `TABLE_SIZE - 1` are tracked; higher ones always pass through.
pub(crate) const TABLE_SIZE: usize = 1 << 20;

static TABLE: [AtomicU32; TABLE_SIZE] = [const { AtomicU32::new(0) }; TABLE_SIZE];

const KIND_MASK: u32 = 0b11;
const NONBLOCKING: u32 = 0b100;
const GENERATION_ONE: u32 = 0b1000;

/// What kind of file an fd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Not looked at since it was opened (or not a valid fd).
    Unknown = 0,
    /// A file, pipe, terminal, eventfd...: the socket hooks pass it through.
    NotSocket = 1,
    /// A `SOCK_STREAM` socket: blocking sends and `MSG_WAITALL` reads loop until done.
    Stream = 2,
    /// A datagram, seqpacket or raw socket: one message per call.
    Message = 3,
}

impl Kind {
    fn from_bits(bits: u32) -> Kind {
        match bits & KIND_MASK {
            0 => Kind::Unknown,
            1 => Kind::NotSocket,
            2 => Kind::Stream,
            _ => Kind::Message,
        }
    }

    /// The kind of a socket of type `ty` (`SOCK_STREAM`, `SOCK_DGRAM`... with flags).
    pub(crate) fn of_type(ty: c_int) -> Kind {
        if ty & 0xf == libc::SOCK_STREAM { Kind::Stream } else { Kind::Message }
    }

    /// Whether it is a socket.
    pub(crate) fn is_socket(self) -> bool {
        matches!(self, Kind::Stream | Kind::Message)
    }
}

/// One fd's entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fd {
    pub(crate) kind: Kind,
    /// The user's `O_NONBLOCK` (meaningful for sockets).
    pub(crate) nonblocking: bool,
    pub(crate) generation: u32,
}

fn entry(fd: c_int) -> Option<&'static AtomicU32> {
    TABLE.get(usize::try_from(fd).ok()?)
}

/// What is known of `fd`, looking at it first if nothing is. `None` for an fd outside the
/// table or not open (the real call then reports `EBADF` itself).
#[inline]
pub(crate) fn get(fd: c_int) -> Option<Fd> {
    let entry = entry(fd)?;
    let bits = entry.load(Ordering::Acquire);
    if bits & KIND_MASK != Kind::Unknown as u32 {
        return Some(unpack(bits));
    }
    classify(entry, fd, bits)
}

fn unpack(bits: u32) -> Fd {
    Fd {
        kind: Kind::from_bits(bits),
        nonblocking: bits & NONBLOCKING != 0,
        generation: bits & !(KIND_MASK | NONBLOCKING),
    }
}

/// First look at an fd: a socket (of which type) or not, and its `O_NONBLOCK`.
#[cold]
fn classify(entry: &AtomicU32, fd: c_int, seen: u32) -> Option<Fd> {
    let mut ty: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`, a local `c_int`.
    let r = unsafe {
        real::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut ty).cast::<c_void>(),
            &mut len,
        )
    };
    let errno = crate::gate::errno();
    let kind = if r == 0 {
        Kind::of_type(ty)
    } else if errno == libc::ENOTSOCK {
        Kind::NotSocket
    } else {
        return None; // EBADF: not open
    };
    let mut bits = (seen & !(KIND_MASK | NONBLOCKING)) | kind as u32;
    if kind.is_socket() {
        // SAFETY: F_GETFL takes no argument.
        let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
        if flags < 0 {
            return None;
        }
        if flags & libc::O_NONBLOCK != 0 {
            bits |= NONBLOCKING;
        }
    }
    // Only if nothing happened to the fd number meanwhile (a close, a creation).
    let _ = entry.compare_exchange(seen, bits, Ordering::AcqRel, Ordering::Relaxed);
    Some(unpack(bits))
}

/// A new fd `fd` was made (by a hook) as a socket of `kind`, blocking or not.
pub(crate) fn created(fd: c_int, kind: Kind, nonblocking: bool) {
    let Some(entry) = entry(fd) else { return };
    let flags = kind as u32 | if nonblocking { NONBLOCKING } else { 0 };
    let _ = entry.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |bits| {
        Some(next_generation(bits) | flags)
    });
}

/// `fd` is being closed or reused (`close`, `dup2` onto it, a `dup` that returned it):
/// whatever was known is forgotten, and registrations of it made on any thread become
/// stale.
pub(crate) fn forget(fd: c_int) {
    let Some(entry) = entry(fd) else { return };
    let _ =
        entry.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |bits| Some(next_generation(bits)));
}

fn next_generation(bits: u32) -> u32 {
    (bits & !(KIND_MASK | NONBLOCKING)).wrapping_add(GENERATION_ONE)
}

/// The user changed `fd`'s `O_NONBLOCK` (through the hooked `fcntl` or `ioctl`).
pub(crate) fn set_nonblocking(fd: c_int, nonblocking: bool) {
    let Some(entry) = entry(fd) else { return };
    let _ = entry.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |bits| {
        Some(if nonblocking { bits | NONBLOCKING } else { bits & !NONBLOCKING })
    });
}

/// An fd registered with this thread's hub, shared by the greenlets waiting on it.
pub(crate) struct Slot {
    /// Dropped (deregistered) when the slot is, unless the fd was closed under it.
    registration: ManuallyDrop<Registration>,
    /// The table generation the registration was made in.
    generation: u32,
    /// Set when the fd was closed while greenlets still held the slot (they were
    /// waiting on it): they give up with `EBADF`, and the registration is leaked rather
    /// than deregistered, since its fd number may already name another file.
    closed: Cell<bool>,
    /// Greenlets waiting on the slot, woken by a close.
    waiters: WaitList,
}

impl Slot {
    pub(crate) fn registration(&self) -> &Registration {
        &self.registration
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub(crate) fn waiters(&self) -> &WaitList {
        &self.waiters
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.closed.get() {
            // SAFETY: dropped exactly once, here.
            unsafe { ManuallyDrop::drop(&mut self.registration) };
        }
    }
}

thread_local! {
    /// This thread's slots, by fd number.
    static SLOTS: RefCell<Vec<Option<Rc<Slot>>>> = const { RefCell::new(Vec::new()) };
}

/// The slot of `fd` (in generation `generation`) on this thread, registering the fd with
/// the hub if needed. Errors are those of `epoll_ctl` (`EPERM` for a regular file...).
pub(crate) fn slot(fd: c_int, generation: u32) -> Result<Rc<Slot>, c_int> {
    let index = usize::try_from(fd).map_err(|_| libc::EBADF)?;
    let stale = SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        match slots.get_mut(index) {
            Some(Some(slot)) if slot.generation == generation => Ok(slot.clone()),
            Some(existing) => Err(existing.take()),
            None => Err(None),
        }
    });
    let stale = match stale {
        Ok(slot) => return Ok(slot),
        Err(stale) => stale,
    };
    if let Some(stale) = stale {
        // Closed on another thread: its fd number may name a new file now, which a
        // deregistration would wrongly remove from the hub. Leak it instead.
        stale.closed.set(true);
        stale.waiters.notify_all();
    }
    // See the module doc for closes that bypass the hooks.
    // SAFETY: the registration is dropped before `fd` is closed: the hooked `close` (and
    // `dup2`/`dup3` onto it) drop this thread's slot first; a close on another thread
    // makes it stale and leaked, never deregistered.
    let registration = unsafe { Registration::new(fd) }
        .map_err(|err| err.raw_os_error().unwrap_or(libc::EINVAL))?;
    let slot = Rc::new(Slot {
        registration: ManuallyDrop::new(registration),
        generation,
        closed: Cell::new(false),
        waiters: WaitList::new(),
    });
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        slots[index] = Some(slot.clone());
    });
    Ok(slot)
}

/// The slot of `fd` on this thread if it has one in `generation`, without registering.
#[inline]
pub(crate) fn existing_slot(fd: c_int, generation: u32) -> Option<Rc<Slot>> {
    let index = usize::try_from(fd).ok()?;
    SLOTS.with(|slots| {
        let slots = slots.borrow();
        slots.get(index)?.as_ref().filter(|slot| slot.generation == generation).cloned()
    })
}

/// `fd` is about to be closed (or stops being waited on, having turned non-blocking):
/// deregisters it from this thread's hub now, or, if greenlets are parked on it, wakes them
/// to fail with `EBADF` and leaks the registration (see [`Slot`]).
///
/// Touches thread-local state: skipped while the thread is busy (a signal handler) or has
/// no hub; a skipped slot is found stale later by its generation.
pub(crate) fn drop_slot(fd: c_int, closing: bool) {
    if crate::gate::busy() || !verdant_hub::has_hub() {
        return;
    }
    let Ok(index) = usize::try_from(fd) else { return };
    let taken = SLOTS
        .try_with(|slots| {
            let mut slots = slots.try_borrow_mut().ok()?;
            slots.get_mut(index)?.take()
        })
        .ok()
        .flatten();
    let Some(slot) = taken else { return };
    // If greenlets still hold it (parked on it): for a close they fail with EBADF and
    // `closed` makes the registration leak; for a mere switch to non-blocking they finish
    // their call and the last one deregisters.
    if Rc::strong_count(&slot) > 1 && closing {
        slot.closed.set(true);
        slot.waiters.notify_all();
    }
    drop(slot);
}
