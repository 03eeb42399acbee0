//! The gate every hook passes first: may this call be made cooperative, or must it go
//! straight to libc?
//!
//! A call may suspend the calling greenlet only when all of these hold:
//!
//! * [`install`](crate::install) was called (before that, every hook passes through);
//! * the caller runs in a greenlet ([`verdant_hub::in_greenlet`]): not a thread's main
//!   code, not a plain thread, not the hub's own loop (no greenlet is current while it
//!   runs, so the hub's own `read` of its eventfd passes through);
//! * the thread is not *busy*: not inside a hook's own code (the hub calls a hook makes
//!   never come back here as cooperative calls) and not inside a signal handler
//!   (`signal.rs` counts those).
//!
//! Each hook then adds its own condition on the fd (a socket the user left blocking).

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// How many hook bodies and signal handlers are running on this thread's current
    /// stack. A hook holds one unit while it runs its own code and gives it back while its
    /// greenlet is parked (other greenlets of the thread then run hooks of their own).
    static BUSY: Cell<u32> = const { Cell::new(0) };
}

/// Turns the hooks on (see [`install`](crate::install)).
pub(crate) fn set_installed() {
    INSTALLED.store(true, Ordering::Release);
}

/// Whether [`install`](crate::install) was called.
#[inline(always)]
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Whether the calling code may be suspended (see the module doc).
#[inline(always)]
pub(crate) fn may_suspend() -> bool {
    installed() && verdant_hub::in_greenlet() && BUSY.with(Cell::get) == 0
}

/// Whether hook code or a signal handler is running on this thread: bookkeeping that
/// touches thread-local state (not just atomics) is skipped then.
#[inline]
pub(crate) fn busy() -> bool {
    BUSY.with(Cell::get) != 0
}

/// One more busy unit (a signal handler starts).
pub(crate) fn enter_handler() {
    BUSY.with(|busy| busy.set(busy.get() + 1));
}

/// One busy unit less (a signal handler returned).
pub(crate) fn leave_handler() {
    BUSY.with(|busy| busy.set(busy.get().saturating_sub(1)));
}

/// A hook running its own code: the thread counts as busy, and the caller's `errno` is
/// kept to be restored on success (a successful call must not show the `EAGAIN`s of the
/// attempts that came before it).
pub(crate) struct Hooked {
    errno: c_int,
}

impl Hooked {
    /// Enters hook code. Call only after [`may_suspend`] said yes.
    #[inline]
    pub(crate) fn enter() -> Hooked {
        BUSY.with(|busy| busy.set(busy.get() + 1));
        Hooked { errno: errno() }
    }

    /// Runs `park`, a wait that lets other greenlets of the thread run: the thread is not
    /// busy with this hook meanwhile.
    #[inline]
    pub(crate) fn parked<R>(&self, park: impl FnOnce() -> R) -> R {
        BUSY.with(|busy| busy.set(busy.get() - 1));
        let result = park();
        BUSY.with(|busy| busy.set(busy.get() + 1));
        result
    }

    /// Leaves with success: `errno` as the caller had it.
    #[inline]
    pub(crate) fn ok<T>(self, value: T) -> T {
        set_errno(self.errno);
        value
    }

    /// Leaves with failure: `errno` set to `error`, and `value` (-1, usually) returned.
    #[inline]
    pub(crate) fn fail<T>(self, error: c_int, value: T) -> T {
        set_errno(error);
        value
    }
}

impl Drop for Hooked {
    fn drop(&mut self) {
        BUSY.with(|busy| busy.set(busy.get() - 1));
    }
}

/// This thread's `errno`.
#[inline]
pub(crate) fn errno() -> c_int {
    // SAFETY: glibc's errno location is valid for the calling thread's lifetime.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's `errno`.
#[inline]
pub(crate) fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value };
}

/// `fd`'s table entry if a call on it may suspend the caller: the caller may be suspended
/// ([`may_suspend`]) and `fd` is a socket the user left in blocking mode.
#[inline(always)]
pub(crate) fn blocking_socket(fd: c_int) -> Option<crate::fds::Fd> {
    if !may_suspend() {
        return None;
    }
    let entry = crate::fds::get(fd)?;
    (entry.kind.is_socket() && !entry.nonblocking).then_some(entry)
}
