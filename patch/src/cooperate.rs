//! The loop that turns a non-blocking attempt into what the blocking call would have
//! returned, parking the greenlet whenever the kernel says `EAGAIN`.
//!
//! ```text
//!   attempt (MSG_DONTWAIT) ──► done? ─────────────────────────────► return it, errno as before
//!        ▲                      │ EAGAIN
//!        │                      ▼
//!        │         really non-blocking in the kernel? ── yes ──► EAGAIN (the user's flag)
//!        │                      │ no
//!        │                      ▼
//!        └──── ready ◄─── park until the hub reports readiness,
//!                          within SO_RCVTIMEO / SO_SNDTIMEO ──► timed out: EAGAIN
//!                                      │ kill / with_timeout: ECANCELED
//!                                      │ closed by another greenlet: EBADF
//!                                      │ cannot register the fd: the real blocking call
//! ```
//!
//! A call that moves a byte count ([`Shape::All`]: a send on a stream socket, a
//! `MSG_WAITALL` receive) goes round until everything is moved, as the kernel's blocking
//! call does, and returns the partial count if it stops after some progress.

use std::ffi::c_int;
use std::time::Instant;

use verdant_hub::io::Interest;

use crate::fds::{self, Fd};
use crate::gate::{self, Hooked};
use crate::real;
use crate::wait::{self, Stop};

/// How much one blocking call moves.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape {
    /// Returns after the first successful attempt (a receive, a datagram send).
    One {
        /// Bytes asked for: a stream read shorter than this drained the socket.
        len: usize,
        /// `MSG_PEEK`: reads nothing off the socket, so a short one proves nothing.
        peek: bool,
    },
    /// Goes on until `total` bytes are moved (or the peer closes, for a receive).
    All { total: usize },
}

/// Which direction a call waits for, and the socket option that bounds the wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Direction {
    /// Waits to read; `SO_RCVTIMEO`.
    Read,
    /// Waits to write; `SO_SNDTIMEO`.
    Write,
}

impl Direction {
    fn interest(self) -> Interest {
        match self {
            Direction::Read => Interest::READABLE,
            Direction::Write => Interest::WRITABLE,
        }
    }

    fn timeout_option(self) -> c_int {
        match self {
            Direction::Read => libc::SO_RCVTIMEO,
            Direction::Write => libc::SO_SNDTIMEO,
        }
    }
}

/// Runs a hooked call on blocking socket `fd` cooperatively. `attempt(done, nonblocking)`
/// makes the call on what remains after `done` bytes — non-blocking when `nonblocking`
/// (`MSG_DONTWAIT` or a temporary `O_NONBLOCK`), otherwise exactly as the caller asked
/// (the fallback when the fd cannot be registered) — and returns its result, `errno` set
/// on failure.
pub(crate) fn run(
    fd: c_int,
    entry: Fd,
    direction: Direction,
    shape: Shape,
    mut attempt: impl FnMut(usize, bool) -> isize,
) -> isize {
    let hooked = Hooked::enter();
    let mut call = Call { fd, entry, direction, shape, done: 0, deadline: None };
    // Known not ready (a short read drained it, or an EAGAIN): wait before asking.
    let mut skip = call.known_not_ready();
    loop {
        if !skip {
            match call.try_once(&mut attempt) {
                Attempt::Finished(r) => return hooked.ok(r),
                Attempt::Failed(error) => return finish(hooked, call.done, error),
                Attempt::Again => continue,
                Attempt::WouldBlock => {}
            }
        }
        skip = false;
        match call.wait(&hooked) {
            Ok(()) => {}
            Err(Stop::Unavailable(_)) => return call.blocking(hooked, &mut attempt),
            Err(stop) => return finish(hooked, call.done, stop_errno(stop)),
        }
    }
}

/// One cooperative call in progress.
struct Call {
    fd: c_int,
    entry: Fd,
    direction: Direction,
    shape: Shape,
    /// Bytes moved so far (for [`Shape::All`]).
    done: usize,
    /// From `SO_RCVTIMEO`/`SO_SNDTIMEO`, read at the first wait.
    deadline: Option<Option<Instant>>,
}

/// How one non-blocking attempt went.
enum Attempt {
    /// The call is over: return this (`errno` as the caller had it).
    Finished(isize),
    /// The call is over with this error (or the partial count, if bytes were moved).
    Failed(c_int),
    /// Some bytes moved, more to go: attempt again at once.
    Again,
    /// Nothing (more) to do now: wait for readiness.
    WouldBlock,
}

impl Call {
    /// Whether the fd's registration already says it is not ready: the kernel need not
    /// be asked before the first wait.
    fn known_not_ready(&self) -> bool {
        let wants_bytes = match self.shape {
            Shape::One { len, .. } => len > 0,
            Shape::All { total } => total > 0,
        };
        wants_bytes
            && fds::existing_slot(self.fd, self.entry.generation)
                .is_some_and(|slot| !slot.registration().is_ready(self.direction.interest()))
    }

    /// Makes one non-blocking attempt and says what comes next.
    fn try_once(&mut self, attempt: &mut impl FnMut(usize, bool) -> isize) -> Attempt {
        let r = attempt(self.done, true);
        if r >= 0 {
            return self.progressed(r as usize);
        }
        let error = gate::errno();
        if error != libc::EAGAIN && error != libc::EWOULDBLOCK {
            return Attempt::Failed(error);
        }
        if kernel_nonblocking(self.fd) {
            // The user made it non-blocking behind the table's back (a raw syscall):
            // EAGAIN is the answer they asked for.
            fds::set_nonblocking(self.fd, true);
            return Attempt::Failed(libc::EAGAIN);
        }
        Attempt::WouldBlock
    }

    /// An attempt moved `n` bytes.
    fn progressed(&mut self, n: usize) -> Attempt {
        let reading = matches!(self.direction, Direction::Read);
        match self.shape {
            Shape::One { len, peek } => {
                if reading && !peek && n < len {
                    drained(self.fd, self.entry, self.direction.interest());
                }
                Attempt::Finished(n as isize)
            }
            Shape::All { total } => {
                self.done += n;
                if self.done >= total || (n == 0 && reading) {
                    Attempt::Finished(self.done as isize)
                } else {
                    Attempt::Again
                }
            }
        }
    }

    /// Parks until the fd may be ready, within the socket's timeout.
    fn wait(&mut self, hooked: &Hooked) -> Result<(), Stop> {
        let (fd, option) = (self.fd, self.direction.timeout_option());
        let deadline = *self.deadline.get_or_insert_with(|| wait::socket_deadline(fd, option));
        wait::until_ready(hooked, fd, self.entry.generation, self.direction.interest(), deadline)
    }

    /// The fd cannot be registered with the hub: make the real, blocking call.
    fn blocking(&self, hooked: Hooked, attempt: &mut impl FnMut(usize, bool) -> isize) -> isize {
        match attempt(self.done, false) {
            r if r >= 0 => hooked.ok(self.done as isize + r),
            _ => finish(hooked, self.done, gate::errno()),
        }
    }
}

/// The `errno` a call fails with when its wait stopped.
fn stop_errno(stop: Stop) -> c_int {
    match stop {
        Stop::TimedOut => libc::EAGAIN,
        Stop::Interrupted => libc::ECANCELED,
        Stop::Closed => libc::EBADF,
        Stop::Unavailable(error) => error,
    }
}

/// A stream read came back short: the socket is drained, so the next read waits for an
/// event instead of asking the kernel first (as `verdant::net` does).
fn drained(fd: c_int, entry: Fd, interest: Interest) {
    if entry.kind == fds::Kind::Stream
        && let Some(slot) = fds::existing_slot(fd, entry.generation)
    {
        slot.registration().clear_ready(interest);
    }
}

/// Ends a call that stopped on `error`: with the partial count if some bytes were moved
/// (as the kernel's blocking call does), else -1 and `errno`.
fn finish(hooked: Hooked, done: usize, error: c_int) -> isize {
    if done > 0 { hooked.ok(done as isize) } else { hooked.fail(error, -1) }
}

/// Whether `fd` is non-blocking in the kernel right now.
pub(crate) fn kernel_nonblocking(fd: c_int) -> bool {
    // SAFETY: F_GETFL takes no argument.
    let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}
