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
    let interest = direction.interest();
    let mut done = 0usize;
    let mut deadline: Option<Option<Instant>> = None;
    // Known not ready (a short read drained it, or an EAGAIN): wait before asking.
    let wants_bytes = match shape {
        Shape::One { len, .. } => len > 0,
        Shape::All { total } => total > 0,
    };
    let mut skip = wants_bytes
        && fds::existing_slot(fd, entry.generation)
            .is_some_and(|slot| !slot.registration().is_ready(interest));
    loop {
        if !skip {
            let r = attempt(done, true);
            if r >= 0 {
                let n = r as usize;
                match shape {
                    Shape::One { len, peek } => {
                        if direction_is_read(direction) && !peek && n < len {
                            drained(fd, entry, interest);
                        }
                        return hooked.ok(r);
                    }
                    Shape::All { total } => {
                        done += n;
                        if done >= total || (n == 0 && direction_is_read(direction)) {
                            return hooked.ok(done as isize);
                        }
                        continue;
                    }
                }
            }
            let error = gate::errno();
            if error != libc::EAGAIN && error != libc::EWOULDBLOCK {
                return finish(hooked, done, error);
            }
            if kernel_nonblocking(fd) {
                // The user made it non-blocking behind the table's back (a raw syscall):
                // EAGAIN is the answer they asked for.
                fds::set_nonblocking(fd, true);
                return finish(hooked, done, libc::EAGAIN);
            }
        }
        skip = false;
        let deadline =
            *deadline.get_or_insert_with(|| wait::socket_deadline(fd, direction.timeout_option()));
        match wait::until_ready(&hooked, fd, entry.generation, interest, deadline) {
            Ok(()) => {}
            Err(Stop::TimedOut) => return finish(hooked, done, libc::EAGAIN),
            Err(Stop::Interrupted) => return finish(hooked, done, libc::ECANCELED),
            Err(Stop::Closed) => return finish(hooked, done, libc::EBADF),
            Err(Stop::Unavailable(_)) => {
                // Not registrable with the hub: make the real, blocking call.
                let r = attempt(done, false);
                return match r {
                    r if r >= 0 => hooked.ok(done as isize + r),
                    _ => finish(hooked, done, gate::errno()),
                };
            }
        }
    }
}

fn direction_is_read(direction: Direction) -> bool {
    matches!(direction, Direction::Read)
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
