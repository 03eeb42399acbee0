//! Cooperative libc: unmodified blocking code — `std::net`, `std::thread::sleep`, crates
//! like `ureq` or `redis`, C libraries — suspends only its greenlet instead of the whole
//! hub thread. gevent's `monkey.patch_all()`, done at the C level (Linux, glibc).
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//!
//! verdant_patch::install();
//! static ASLEEP: AtomicUsize = AtomicUsize::new(0);
//! let sleepers: Vec<_> = (0..100)
//!     .map(|_| {
//!         verdant_hub::spawn(|| {
//!             ASLEEP.fetch_add(1, Ordering::SeqCst);
//!             std::thread::sleep(Duration::from_millis(20)); // parks this greenlet only
//!             ASLEEP.load(Ordering::SeqCst)
//!         })
//!     })
//!     .collect();
//! // Every sleeper saw all 100 asleep at once: none blocked the thread.
//! assert!(sleepers.iter().all(|g| g.get().unwrap() == 100));
//! ```
//!
//! # How
//!
//! This crate defines `#[no_mangle] extern "C"` functions named like libc's (`recv`,
//! `connect`, `poll`, `clock_nanosleep`...). An executable's own definition of a symbol
//! wins over a shared library's, for the executable, every crate linked into it, and the
//! shared libraries it loads; each hook finds the real function with
//! `dlsym(RTLD_NEXT, ..)`. Linking the crate is what interposes; [`install`] turns the
//! hooks on (before it, all of them pass straight through).
//!
//! A hooked call is made cooperative only when the caller is a greenlet (not a thread's
//! main code, not a plain thread, not a signal handler, not the hub itself) and, for
//! socket calls, the fd is a socket the user left in blocking mode. Then the call is made
//! non-blocking (`MSG_DONTWAIT`, or `O_NONBLOCK` just around one `connect`/`accept`) and
//! on `EAGAIN` the greenlet parks until the hub reports readiness. Everything else goes to
//! the real function unchanged, `errno` included. `docs/patch.md` has the whole story:
//! the hooks, what a kill does at a hooked call (`ECANCELED`), and the limits.
//!
//! | module | what it owns |
//! |---|---|
//! | `real.rs` | the real libc functions, found once with `dlsym` |
//! | `gate.rs` | when a call may be cooperative; the thread's re-entrancy count; `errno` |
//! | `fds.rs` | the process-wide fd table and each thread's hub registrations |
//! | `wait.rs` | the quiet waits: for readiness, for a deadline |
//! | `cooperate.rs` | the loop that makes a non-blocking attempt act like the blocking call |
//! | `socket.rs` | `socket`, `accept`, `connect`, `close`, `dup*`, `fcntl`, `ioctl` |
//! | `io.rs` | `recv*`, `send*`, `read`/`write`/`readv`/`writev` on sockets |
//! | `poll.rs` | `poll`, `ppoll`, `select` |
//! | `sleep.rs` | `nanosleep`, `clock_nanosleep`, `sleep`, `usleep` |
//! | `dns.rs` | `getaddrinfo`, `gethostbyname` on resolver threads |
//! | `signal.rs` | knowing when a signal handler runs |

#![doc(test(attr(deny(warnings))))]

#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("verdant-patch hooks glibc on Linux (x86-64 or AArch64) only");

mod cooperate;
mod dns;
mod fds;
mod gate;
mod io;
mod poll;
mod real;
mod signal;
mod sleep;
mod socket;
mod wait;

/// Turns the hooks on, for every thread of the process, from now on: gevent's
/// `monkey.patch_all()`. Call it once, early in `main`; calling it again does nothing.
///
/// Before it (and in any program that links this crate without calling it), every hook
/// passes straight through to libc. It also looks up every real libc function now, and
/// wraps the signal handlers installed so far (so that calls made from a handler are
/// never cooperative).
///
/// # Panics
///
/// Never; a libc function that cannot be found (a fully static binary) aborts the process
/// with a message instead, since the hooks could not work at all.
pub fn install() {
    if gate::installed() {
        return;
    }
    real::resolve_all();
    gate::set_installed();
    signal::wrap_installed();
}

/// Whether [`install`] was called.
pub fn is_installed() -> bool {
    gate::installed()
}
