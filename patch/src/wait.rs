//! The waits a hooked call makes instead of blocking the thread: until fds are ready, or
//! until a deadline. Each parks only the calling greenlet, and never unwinds: a kill or a
//! `with_timeout` expiry ends the wait with [`Stop::Interrupted`] and stays pending for
//! the greenlet's next verdant blocking point (see `docs/patch.md`).

use std::ffi::{c_int, c_void};
use std::time::{Duration, Instant};

use verdant_hub::io::{self, Interest};
use verdant_hub::park::{self, Interrupted};

use crate::fds::{self, Slot};
use crate::gate::Hooked;
use crate::real;

/// Why a wait ended without the fd being ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The socket's `SO_RCVTIMEO`/`SO_SNDTIMEO`, or the call's own timeout, passed.
    TimedOut,
    /// A kill or `with_timeout` expiry is pending: the call fails with `ECANCELED`.
    Interrupted,
    /// Another greenlet closed the fd meanwhile: the call fails with `EBADF`.
    Closed,
    /// The fd cannot be registered with the hub (this `errno`): the caller makes the real,
    /// blocking call instead.
    Unavailable(c_int),
}

impl From<Interrupted> for Stop {
    fn from(_: Interrupted) -> Stop {
        Stop::Interrupted
    }
}

/// Parks until `fd` (of table generation `generation`) may be ready for `interest`, or
/// `deadline`. The caller saw `EAGAIN` for it just now, so the slot's readiness is cleared
/// first: only an event from the hub ends the wait.
pub(crate) fn until_ready(
    hooked: &Hooked,
    fd: c_int,
    generation: u32,
    interest: Interest,
    deadline: Option<Instant>,
) -> Result<(), Stop> {
    let slot = fds::slot(fd, generation).map_err(Stop::Unavailable)?;
    slot.registration().clear_ready(interest);
    wait_slot(hooked, &slot, interest, deadline)
}

/// Parks until `slot` may be ready for `interest`, or `deadline`.
pub(crate) fn wait_slot(
    hooked: &Hooked,
    slot: &Slot,
    interest: Interest,
    deadline: Option<Instant>,
) -> Result<(), Stop> {
    loop {
        if slot.is_closed() {
            return Err(Stop::Closed);
        }
        if slot.registration().is_ready(interest) {
            return Ok(());
        }
        slot.waiters().push(park::waker());
        let timed_out =
            hooked.parked(|| io::park_quietly(&[(slot.registration(), interest)], deadline))?;
        if timed_out && !slot.registration().is_ready(interest) {
            return Err(Stop::TimedOut);
        }
    }
}

/// Parks until one of `waits` may be ready, or `deadline` passes (`Ok(true)`). Their
/// readiness was cleared by the caller, who checks the fds itself afterwards.
pub(crate) fn any_ready(
    hooked: &Hooked,
    waits: &[(std::rc::Rc<Slot>, Interest)],
    deadline: Option<Instant>,
) -> Result<bool, Stop> {
    for (slot, _) in waits {
        if slot.is_closed() {
            return Err(Stop::Closed);
        }
        slot.waiters().push(park::waker());
    }
    let registrations: Vec<_> = waits.iter().map(|(s, i)| (s.registration(), *i)).collect();
    Ok(hooked.parked(|| io::park_quietly(&registrations, deadline))?)
}

/// Parks until `deadline` (a sleep; `None` sleeps until interrupted). A deadline that has
/// passed still lets the other ready greenlets run once.
pub(crate) fn until(hooked: &Hooked, deadline: Option<Instant>) -> Result<(), Interrupted> {
    loop {
        let passed = hooked.parked(|| park::park_until_quietly(&"a hooked sleep", deadline))?;
        if passed || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(());
        }
    }
}

/// The deadline a blocking call on socket `fd` has from its `SO_RCVTIMEO` or
/// `SO_SNDTIMEO` (`option`), counted from now; `None` when the option is zero (no timeout).
pub(crate) fn socket_deadline(fd: c_int, option: c_int) -> Option<Instant> {
    let mut value = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, a local timeval.
    let r = unsafe {
        real::getsockopt(fd, libc::SOL_SOCKET, option, (&raw mut value).cast::<c_void>(), &mut len)
    };
    if r != 0 || (value.tv_sec == 0 && value.tv_usec == 0) {
        return None;
    }
    let timeout = Duration::new(value.tv_sec.max(0) as u64, 0)
        + Duration::from_micros(value.tv_usec.max(0) as u64);
    Instant::now().checked_add(timeout)
}
