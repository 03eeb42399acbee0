//! The socket life-cycle hooks: `socket`, `socketpair`, `accept`, `accept4` and `connect`
//! (the last three cooperative), `close` and the `dup` family (which drop the hub's
//! registration first), and `fcntl`/`ioctl` (which follow the user's `O_NONBLOCK`).
//!
//! `connect` and `accept` have no `MSG_DONTWAIT`: a cooperative call sets `O_NONBLOCK` on
//! the socket just around the one attempt and restores the user's flags right after,
//! before the greenlet parks — the socket is never left in a mode the user did not ask
//! for. (Another *thread* using the same socket during those few system calls would see
//! the flag: a limit in `docs/patch.md`.)
//!
//! # Variadic hooks
//!
//! `fcntl` and `ioctl` are C-variadic, which stable Rust cannot define. They are defined
//! with the optional argument as a third machine word: on x86-64 and AArch64 Linux a
//! variadic integer or pointer argument travels in the same register as a fixed one, so
//! the hook reads it (garbage for commands without one, passed on and ignored by libc).

use std::ffi::{c_int, c_ulong};
use std::time::{Duration, Instant};

use libc::{sockaddr, socklen_t};
use verdant_hub::io::Interest;

use crate::cooperate::{self, Direction, Shape};
use crate::fds::{self, Kind};
use crate::gate::{self, Hooked};
use crate::real;
use crate::wait::{self, Stop};

/// `socket(2)`; enters the new socket in the fd table.
///
/// # Safety
///
/// As for libc's `socket`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // SAFETY: the caller's own call.
    let fd = unsafe { real::socket(domain, ty, protocol) };
    if fd >= 0 && gate::installed() {
        fds::created(fd, Kind::of_type(ty), ty & libc::SOCK_NONBLOCK != 0);
    }
    fd
}

/// `socketpair(2)`; enters both sockets in the fd table.
///
/// # Safety
///
/// As for libc's `socketpair`: `sv` is valid for two `int`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socketpair(
    domain: c_int,
    ty: c_int,
    protocol: c_int,
    sv: *mut c_int,
) -> c_int {
    // SAFETY: the caller's own call.
    let r = unsafe { real::socketpair(domain, ty, protocol, sv) };
    if r == 0 && gate::installed() {
        for i in 0..2 {
            // SAFETY: on success the kernel wrote both fds into the caller's array.
            let fd = unsafe { *sv.add(i) };
            fds::created(fd, Kind::of_type(ty), ty & libc::SOCK_NONBLOCK != 0);
        }
    }
    r
}

/// `accept(2)`: cooperative on a blocking listener in a greenlet (waits for a connection
/// within `SO_RCVTIMEO`, as the kernel does).
///
/// # Safety
///
/// As for libc's `accept`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's own call, made cooperative or not.
    unsafe { accept_with(fd, addr, len, None) }
}

/// `accept4(2)`: cooperative like [`accept`]; `SOCK_NONBLOCK` in `flags` makes the new
/// socket non-blocking as usual.
///
/// # Safety
///
/// As for libc's `accept4`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: as in `accept`.
    unsafe { accept_with(fd, addr, len, Some(flags)) }
}

/// `accept` (`flags` `None`) or `accept4`.
///
/// # Safety
///
/// As for libc's `accept4`.
unsafe fn accept_with(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: Option<c_int>,
) -> c_int {
    // SAFETY: the caller's own call.
    let plain = || unsafe {
        match flags {
            Some(flags) => real::accept4(fd, addr, len, flags),
            None => real::accept(fd, addr, len),
        }
    };
    let new = match gate::blocking_socket(fd) {
        Some(entry) => {
            // One connection, not bytes: `peek` keeps a "short read" from meaning anything.
            let shape = Shape::One { len: 1, peek: true };
            cooperate::run(fd, entry, Direction::Read, shape, |_, nb| {
                if nb { with_nonblocking(fd, || plain() as isize) } else { plain() as isize }
            }) as c_int
        }
        None => plain(),
    };
    if new >= 0 && gate::installed() {
        let kind = fds::get(fd).map_or(Kind::Stream, |listener| listener.kind);
        let nonblocking = flags.is_some_and(|flags| flags & libc::SOCK_NONBLOCK != 0);
        fds::created(new, kind, nonblocking);
    }
    new
}

/// Runs `attempt` with `O_NONBLOCK` set on `fd`, then puts the user's flags back (keeping
/// `attempt`'s `errno`).
fn with_nonblocking(fd: c_int, attempt: impl FnOnce() -> isize) -> isize {
    // SAFETY: F_GETFL takes no argument.
    let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
    if flags < 0 {
        return -1;
    }
    // SAFETY: F_SETFL takes an int.
    unsafe { real::fcntl(fd, libc::F_SETFL, (flags | libc::O_NONBLOCK) as usize) };
    let r = attempt();
    let error = gate::errno();
    // SAFETY: as above.
    unsafe { real::fcntl(fd, libc::F_SETFL, flags as usize) };
    gate::set_errno(error);
    r
}

/// `connect(2)`: cooperative on a blocking socket in a greenlet. The attempt is made
/// non-blocking; on `EINPROGRESS` the greenlet parks until the socket is writable, then
/// reads the outcome from `SO_ERROR`. Within `SO_SNDTIMEO`, as the kernel does: when it
/// passes the call fails with `EINPROGRESS` (the kernel's answer too; the connection goes
/// on in the background). A kill or timeout fails it with `ECANCELED`, the connection
/// likewise going on.
///
/// # Safety
///
/// As for libc's `connect`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(entry) = gate::blocking_socket(fd) else {
        // SAFETY: the caller's own call.
        return unsafe { real::connect(fd, addr, len) };
    };
    let hooked = Hooked::enter();
    let mut deadline = None;
    loop {
        // SAFETY: the caller's address.
        let r = with_nonblocking(fd, || unsafe { real::connect(fd, addr, len) } as isize);
        if r == 0 {
            return hooked.ok(0);
        }
        let error = gate::errno();
        let deadline =
            *deadline.get_or_insert_with(|| wait::socket_deadline(fd, libc::SO_SNDTIMEO));
        match error {
            libc::EINPROGRESS => return wait_connected(hooked, fd, entry.generation, deadline),
            // A Unix socket whose listener's backlog is full: the blocking call waits for
            // room, which no event announces; retry a little later.
            libc::EAGAIN => {
                let retry = Instant::now() + Duration::from_millis(1);
                let retry = deadline.map_or(retry, |deadline| deadline.min(retry));
                if wait::until(&hooked, Some(retry)).is_err() {
                    return hooked.fail(libc::ECANCELED, -1);
                }
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return hooked.fail(libc::EAGAIN, -1);
                }
            }
            _ => return hooked.fail(error, -1),
        }
    }
}

/// The rest of a cooperative `connect` after `EINPROGRESS`.
fn wait_connected(hooked: Hooked, fd: c_int, generation: u32, deadline: Option<Instant>) -> c_int {
    loop {
        match wait::until_ready(&hooked, fd, generation, Interest::WRITABLE, deadline) {
            Ok(()) => {}
            Err(Stop::TimedOut) => return hooked.fail(libc::EINPROGRESS, -1),
            Err(Stop::Interrupted) => return hooked.fail(libc::ECANCELED, -1),
            Err(Stop::Closed) => return hooked.fail(libc::EBADF, -1),
            Err(Stop::Unavailable(_)) => return block_until_connected(hooked, fd),
        }
        if !still_connecting(fd) {
            return connect_outcome(hooked, fd);
        }
    }
}

/// Whether a connect in progress has not finished yet (the socket is not writable and has
/// no error): a readiness report can be stale.
fn still_connecting(fd: c_int) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { real::poll(&mut pfd, 1, 0) };
    r == 0
}

/// Fallback when the socket cannot be registered: wait for the connect in the kernel.
fn block_until_connected(hooked: Hooked, fd: c_int) -> c_int {
    let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd.
    while unsafe { real::poll(&mut pfd, 1, -1) } < 0 && gate::errno() == libc::EINTR {}
    connect_outcome(hooked, fd)
}

/// How a finished non-blocking connect ended, from `SO_ERROR`.
fn connect_outcome(hooked: Hooked, fd: c_int) -> c_int {
    let mut error: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `error`, a local int.
    let r = unsafe {
        real::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&raw mut error).cast(), &mut len)
    };
    if r < 0 {
        let error = gate::errno();
        return hooked.fail(error, -1);
    }
    if error == 0 { hooked.ok(0) } else { hooked.fail(error, -1) }
}

/// `close(2)`: drops this thread's hub registration of `fd` first (waking greenlets parked
/// on it, which fail with `EBADF`), and forgets the fd in the table.
///
/// # Safety
///
/// As for libc's `close`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if gate::installed() {
        closing(fd);
    }
    // SAFETY: the caller's own call.
    unsafe { real::close(fd) }
}

/// Before `fd` is closed (or replaced by `dup2`/`dup3`): the table forgets it first, so
/// no thread can register the number's next file under the old generation, then this
/// thread's registration is dropped while the fd is still open.
fn closing(fd: c_int) {
    let saved = gate::errno();
    fds::forget(fd);
    fds::drop_slot(fd, true);
    gate::set_errno(saved);
}

/// `dup(2)`; the new fd starts unknown in the table.
///
/// # Safety
///
/// As for libc's `dup`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: the caller's own call.
    let new = unsafe { real::dup(fd) };
    if new >= 0 && gate::installed() {
        fds::forget(new);
    }
    new
}

/// `dup2(2)`: `new` is closed first, so its registration is dropped first, as by `close`.
///
/// # Safety
///
/// As for libc's `dup2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(fd: c_int, new: c_int) -> c_int {
    if gate::installed() && fd != new {
        closing(new);
    }
    // SAFETY: the caller's own call.
    let r = unsafe { real::dup2(fd, new) };
    if r >= 0 && gate::installed() {
        fds::forget(r);
    }
    r
}

/// `dup3(2)`: as [`dup2`].
///
/// # Safety
///
/// As for libc's `dup3`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(fd: c_int, new: c_int, flags: c_int) -> c_int {
    if gate::installed() && fd != new {
        closing(new);
    }
    // SAFETY: the caller's own call.
    let r = unsafe { real::dup3(fd, new, flags) };
    if r >= 0 && gate::installed() {
        fds::forget(r);
    }
    r
}

/// `fcntl(2)`: follows `F_SETFL`'s `O_NONBLOCK` (a socket turned non-blocking is no longer
/// waited on, so its registration is dropped: `verdant::net` may register it next) and
/// `F_DUPFD`; everything else passes through.
///
/// # Safety
///
/// As for libc's `fcntl`, on x86-64 or AArch64 Linux (see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    // SAFETY: the caller's own call.
    let r = unsafe { real::fcntl(fd, cmd, arg) };
    after_fcntl(fd, cmd, arg, r);
    r
}

/// `fcntl64`: glibc's name for `fcntl` with 64-bit file offsets; as [`fcntl`].
///
/// # Safety
///
/// As for [`fcntl`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    // SAFETY: the caller's own call.
    let r = unsafe { real::fcntl64(fd, cmd, arg) };
    after_fcntl(fd, cmd, arg, r);
    r
}

fn after_fcntl(fd: c_int, cmd: c_int, arg: usize, r: c_int) {
    if r < 0 || !gate::installed() {
        return;
    }
    match cmd {
        libc::F_SETFL => nonblocking_changed(fd, arg as c_int & libc::O_NONBLOCK != 0),
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => fds::forget(r),
        _ => {}
    }
}

/// The user set or cleared `O_NONBLOCK` on `fd`.
fn nonblocking_changed(fd: c_int, nonblocking: bool) {
    let saved = gate::errno();
    fds::set_nonblocking(fd, nonblocking);
    if nonblocking {
        fds::drop_slot(fd, false);
    }
    gate::set_errno(saved);
}

/// `ioctl(2)`: follows `FIONBIO` (the other way to set `O_NONBLOCK`); everything else
/// passes through.
///
/// # Safety
///
/// As for libc's `ioctl`, on x86-64 or AArch64 Linux (see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: usize) -> c_int {
    // SAFETY: the caller's own call.
    let r = unsafe { real::ioctl(fd, request, arg) };
    if r == 0 && request == libc::FIONBIO && gate::installed() && arg != 0 {
        // SAFETY: FIONBIO's argument is an `int *`, which the kernel just read.
        let on = unsafe { *(arg as *const c_int) } != 0;
        nonblocking_changed(fd, on);
    }
    r
}
