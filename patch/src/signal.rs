//! Knowing when a signal handler runs: a hooked call made from a handler must never
//! suspend the greenlet it interrupted (the interrupted code may hold libc's locks, and
//! the signal stays blocked for as long as the handler has not returned).
//!
//! The hooked `sigaction` and `signal` install a trampoline in place of the user's
//! handler. The trampoline counts the thread as busy (see `gate.rs`) for as long as the
//! user's handler runs, so every hook inside it passes through. [`install`](crate::install)
//! wraps the handlers installed before it the same way. Asking for the current handler
//! returns the user's, never the trampoline.
//!
//! Fault signals (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`) are left alone: their handlers
//! (std's and the hub's stack-overflow reporters) run on alternate stacks, report and
//! abort, and a handler that `siglongjmp`s out would leave the count raised. A handler
//! that jumps out of any other signal leaves it raised too: the thread's hooks then pass
//! through (they stay correct, only no longer cooperative) — a limit in `docs/patch.md`.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{SIG_DFL, SIG_IGN, sigaction as sigaction_t, sighandler_t, siginfo_t};

use crate::gate;
use crate::real;

/// Signal numbers 1..=64 (Linux's `SIGRTMAX`).
const SIGNALS: usize = 65;

/// The user's handler for each wrapped signal (0: none wrapped).
static HANDLERS: [AtomicUsize; SIGNALS] = [const { AtomicUsize::new(0) }; SIGNALS];

/// Whether that handler wants three arguments (`SA_SIGINFO`).
static SIGINFO: [AtomicBool; SIGNALS] = [const { AtomicBool::new(false) }; SIGNALS];

fn wrappable(sig: c_int) -> bool {
    (1..SIGNALS as c_int).contains(&sig)
        && !matches!(
            sig,
            libc::SIGSEGV
                | libc::SIGBUS
                | libc::SIGILL
                | libc::SIGFPE
                | libc::SIGKILL
                | libc::SIGSTOP
        )
}

/// What every wrapped signal runs: the user's handler, with the thread counted as busy.
extern "C" fn trampoline(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let Some(index) = usize::try_from(sig).ok().filter(|&i| i < SIGNALS) else { return };
    let handler = HANDLERS[index].load(Ordering::Acquire);
    if handler == 0 || handler == SIG_DFL || handler == SIG_IGN {
        return;
    }
    gate::enter_handler();
    if SIGINFO[index].load(Ordering::Acquire) {
        // SAFETY: the user installed this address as an SA_SIGINFO handler.
        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, context);
    } else {
        // SAFETY: the user installed this address as a one-argument handler.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
    gate::leave_handler();
}

fn trampoline_address() -> sighandler_t {
    trampoline as extern "C" fn(c_int, *mut siginfo_t, *mut c_void) as sighandler_t
}

/// `sigaction(2)`: installs a trampoline around a handler function (see the module doc);
/// reports the user's handler, not the trampoline, as the old one.
///
/// # Safety
///
/// As for libc's `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const sigaction_t,
    old: *mut sigaction_t,
) -> c_int {
    if !gate::installed() || !wrappable(sig) {
        // SAFETY: the caller's own call.
        return unsafe { real::sigaction(sig, act, old) };
    }
    // SAFETY: the caller's own call, with the handler swapped for the trampoline.
    unsafe { wrap(sig, act, old) }
}

/// `sigaction` for a wrappable signal.
///
/// # Safety
///
/// As for libc's `sigaction`.
unsafe fn wrap(sig: c_int, act: *const sigaction_t, old: *mut sigaction_t) -> c_int {
    let (slot, siginfo) = (&HANDLERS[sig as usize], &SIGINFO[sig as usize]);
    let previous = (slot.load(Ordering::Acquire), siginfo.load(Ordering::Acquire));
    // SAFETY: the caller's `act`, if any.
    let ours = unsafe { act.as_ref() }.map(|act| {
        let mut ours = *act;
        let handler = act.sa_sigaction;
        if handler != SIG_DFL && handler != SIG_IGN {
            siginfo.store(act.sa_flags & libc::SA_SIGINFO != 0, Ordering::Release);
            slot.store(handler, Ordering::Release);
            ours.sa_sigaction = trampoline_address();
            ours.sa_flags |= libc::SA_SIGINFO;
        }
        ours
    });
    let ours_ptr = ours.as_ref().map_or(std::ptr::null(), |ours| ours as *const sigaction_t);
    // SAFETY: a valid action (or none) and the caller's `old`.
    let r = unsafe { real::sigaction(sig, ours_ptr, old) };
    if r != 0 {
        siginfo.store(previous.1, Ordering::Release);
        slot.store(previous.0, Ordering::Release);
        return r;
    }
    // SAFETY: the kernel just filled the caller's `old`, if any.
    if let Some(old) = unsafe { old.as_mut() }
        && old.sa_sigaction == trampoline_address()
    {
        old.sa_sigaction = previous.0;
        if !previous.1 {
            old.sa_flags &= !libc::SA_SIGINFO;
        }
    }
    r
}

/// `signal(2)`: for a wrappable signal once installed, glibc's BSD semantics
/// (`SA_RESTART`, the handler stays installed) through the hooked `sigaction`; otherwise
/// libc's own.
///
/// # Safety
///
/// As for libc's `signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    if !gate::installed() || !wrappable(sig) {
        // SAFETY: the caller's own call.
        return unsafe { real::signal(sig, handler) };
    }
    // SAFETY: sigaction is plain data; zero is "no flags, empty mask".
    let mut act: sigaction_t = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: `act.sa_mask` is a valid sigset (an invalid `sig` makes sigaddset fail with
    // EINVAL, and then sigaction too).
    unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaddset(&mut act.sa_mask, sig);
    }
    // SAFETY: sigaction is plain data.
    let mut old: sigaction_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid action and old action.
    if unsafe { sigaction(sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// Wraps the handlers installed before [`install`](crate::install).
pub(crate) fn wrap_installed() {
    for sig in 1..SIGNALS as c_int {
        if !wrappable(sig) {
            continue;
        }
        // SAFETY: sigaction is plain data.
        let mut current: sigaction_t = unsafe { std::mem::zeroed() };
        // SAFETY: query only.
        if unsafe { real::sigaction(sig, std::ptr::null(), &mut current) } != 0 {
            continue;
        }
        let handler = current.sa_sigaction;
        if handler == SIG_DFL || handler == SIG_IGN || handler == trampoline_address() {
            continue;
        }
        // SAFETY: re-installs the same action through the wrapper.
        unsafe { wrap(sig, &current, std::ptr::null_mut()) };
    }
}
