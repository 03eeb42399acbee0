//! Reporting greenlet stack overflows by name instead of as a bare segfault.
//!
//! A greenlet that overflows its stack touches its guard page and the kernel raises
//! `SIGSEGV`. The hub installs (once per process) a handler that runs on the thread's
//! alternate signal stack — the Rust runtime gives every thread it starts one — and checks
//! whether the faulting address lies in the guard page of the greenlet that is running on
//! this thread. If so it prints what happened and which knob to turn, then aborts: the
//! greenlet's stack is gone and there is nothing to unwind into. Any other fault is passed
//! on to the handler that was installed before (the Rust runtime's own, which reports
//! main-thread overflows and otherwise restores the default action).
//!
//! The running greenlet's guard page and a pointer to its [`Core`] are published in a
//! thread-local that the loop sets before every resume ([`publish_running`]); the report
//! names the greenlet (its name and id) from that `Core`.

use std::cell::Cell;
use std::sync::{Once, OnceLock};

use libc::{c_int, c_void, siginfo_t};

use crate::task::Core;

/// Where the running greenlet's guard page starts, and the greenlet.
///
/// # Invariant
///
/// `core` points at the `Core` of the greenlet that was last resumed on this thread, whose
/// stack has its guard page at `guard_low`. It may be stale (that greenlet suspended or
/// finished since), so it is only dereferenced when a fault hits that guard page: only
/// code running on that very stack can touch it, so the greenlet is running, and alive.
#[derive(Clone, Copy)]
struct ActiveStack {
    guard_low: usize,
    core: *const Core,
}

const NO_STACK: ActiveStack = ActiveStack { guard_low: 0, core: std::ptr::null() };

thread_local! {
    static ACTIVE: Cell<ActiveStack> = const { Cell::new(NO_STACK) };
}

/// Publishes the greenlet the loop is about to resume on this thread, and its guard page.
///
/// It is not cleared afterwards: a guard page can only be hit by code running on its own
/// stack, so a stale entry never misattributes a fault (a fault elsewhere falls outside
/// it), and skipping the clear keeps one thread-local write off every switch.
#[inline]
pub(crate) fn publish_running(core: &Core) {
    let active = ActiveStack { guard_low: core.guard_low.get(), core };
    ACTIVE.with(|a| a.set(active));
}

/// The `Core` of the greenlet the loop resumed last on this thread (null if none yet).
/// Stale once that greenlet suspended: dereference it only from code that knows the
/// greenlet runs (see the monitor's probe handler). Async-signal-safe.
pub(crate) fn running_core() -> *const Core {
    ACTIVE.try_with(|a| a.get().core).unwrap_or(std::ptr::null())
}

struct PreviousActions {
    segv: libc::sigaction,
    bus: libc::sigaction,
}

// SAFETY: `sigaction` is plain data (integers, a signal mask and a function pointer);
// it is written once, before any handler can read it, and never changed afterwards.
unsafe impl Sync for PreviousActions {}
// SAFETY: as above; the value holds no thread-bound resources.
unsafe impl Send for PreviousActions {}

static PREVIOUS: OnceLock<PreviousActions> = OnceLock::new();

/// Installs the overflow reporter for `SIGSEGV` and `SIGBUS`, once per process.
pub(crate) fn install_reporter() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a zeroed struct is the documented way to set a handler;
        // the handler only reads thread-locals and calls async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut segv: libc::sigaction = std::mem::zeroed();
            let mut bus: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut segv);
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut bus);
            let _ = PREVIOUS.set(PreviousActions { segv, bus });
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

extern "C" fn on_fault(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    let active = ACTIVE.try_with(|a| a.get()).unwrap_or(NO_STACK);
    // A frame larger than the probe step may fault a little below the guard page.
    let slack = 64 * 1024;
    // The page size was read (and cached) when the hub mapped its first stack.
    let guard_high = active.guard_low + crate::stack::page_size();
    if active.guard_low != 0
        && address >= active.guard_low.saturating_sub(slack)
        && address < guard_high
    {
        // SAFETY: the fault hit the published guard page, so by the invariant of
        // `ActiveStack` its greenlet is the one running, and its `Core` is alive.
        report_overflow(unsafe { &*active.core });
    }
    // SAFETY: forwards the same arguments the kernel gave us to the previous handler.
    unsafe { forward(signum, info, context) };
}

/// Writes what happened and which knob to turn, then aborts. Runs in the signal handler:
/// no allocation, no locks, only `write(2)` and `abort(3)`.
fn report_overflow(core: &Core) -> ! {
    let mut message = Message::default();
    message.put(b"\nverdant: greenlet ");
    match &core.name {
        Some(name) => {
            message.put(b"'");
            message.put(name.as_bytes());
            message.put(b"' (id ");
            message.put_number(core.id);
            message.put(b")");
        }
        None => message.put_number(core.id),
    }
    message.put(b" overflowed its stack of ");
    message.put_number((core.stack_size() / 1024) as u64);
    message.put(b" KiB (stack overflow: it hit its guard page). Give it a bigger stack with ");
    message.put(b"Builder::stack_size, or raise HubConfig::stack_size. Aborting.\n");
    // SAFETY: write(2) and abort(3) are async-signal-safe; the buffer is valid.
    unsafe {
        libc::write(2, message.bytes.as_ptr().cast(), message.len);
        libc::abort();
    }
}

/// A fixed buffer for the report (a signal handler must not allocate); text beyond its
/// end is cut.
struct Message {
    bytes: [u8; 512],
    len: usize,
}

impl Default for Message {
    fn default() -> Message {
        Message { bytes: [0; 512], len: 0 }
    }
}

impl Message {
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn put_number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[start..]);
    }
}

/// Passes a fault that is not a greenlet overflow to whoever handled it before us.
///
/// # Safety
///
/// Must be called from the signal handler with the arguments the kernel passed to it.
unsafe fn forward(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let previous = PREVIOUS.get().map(|p| if signum == libc::SIGBUS { p.bus } else { p.segv });
    let Some(previous) = previous else { return restore_default(signum) };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Reinstall the old disposition and return: the faulting instruction runs again
        // and the kernel applies the default action (a core dump).
        // SAFETY: `previous` is a disposition the kernel gave us.
        unsafe { libc::sigaction(signum, &previous, std::ptr::null_mut()) };
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the stored address is a three-argument handler.
        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signum, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the stored address is a one-argument handler.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(signum);
    }
}

fn restore_default(signum: c_int) {
    // SAFETY: resetting a signal to SIG_DFL is always valid.
    unsafe { libc::signal(signum, libc::SIG_DFL) };
}
