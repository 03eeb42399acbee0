//! The readiness hooks: `poll`, `ppoll` (without a signal mask), glibc's checked
//! `__poll_chk`, and `select`. In a greenlet, with a timeout other than zero, they park it
//! until one of the fds — any number, of any pollable kind: sockets, pipes, eventfds,
//! terminals — becomes ready, or the timeout passes.
//!
//! How: ask the kernel with a zero timeout; if nothing is ready, register each fd with the
//! hub (the same per-thread registrations the socket hooks use) and park on all of them at
//! once; when woken, ask the kernel again. The kernel's answer is the one returned, so
//! `revents` are exactly what `poll` would report. A kill or `with_timeout` expiry fails
//! the call with `ECANCELED` (not `EINTR`, which callers retry at once).

use std::ffi::c_int;
use std::time::{Duration, Instant};

use libc::{nfds_t, pollfd, sigset_t, size_t, timespec};
use verdant_hub::io::Interest;

use crate::fds;
use crate::gate::{self, Hooked};
use crate::real;
use crate::wait::{self, Stop};

/// The hub interests that may change `events`' answer: reading for anything but output
/// (errors and hang-ups set the hub's readable flag too), writing for output.
fn interests(events: i16) -> impl Iterator<Item = Interest> {
    let write = events & (libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND) != 0;
    let read = events & !(libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND) != 0 || !write;
    [read.then_some(Interest::READABLE), write.then_some(Interest::WRITABLE)].into_iter().flatten()
}

/// Polls `fds` cooperatively until one is ready or `deadline`. Returns what `poll` would,
/// `errno` set on failure.
fn cooperative_poll(fds_: &mut [pollfd], deadline: Option<Instant>) -> c_int {
    let hooked = Hooked::enter();
    loop {
        // SAFETY: `fds_` is a valid slice of pollfds; zero timeout.
        let r = unsafe { real::poll(fds_.as_mut_ptr(), fds_.len() as nfds_t, 0) };
        if r != 0 {
            return if r > 0 { hooked.ok(r) } else { hooked.fail(gate::errno(), r) };
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return hooked.ok(0);
        }
        let mut waits = Vec::with_capacity(fds_.len());
        for pfd in fds_.iter().filter(|pfd| pfd.fd >= 0) {
            let slot = fds::get(pfd.fd)
                .ok_or(libc::EBADF)
                .and_then(|entry| fds::slot(pfd.fd, entry.generation));
            let Ok(slot) = slot else {
                // Not registrable (above the table, a regular file asked for no events...):
                // block in the kernel for the rest of the time.
                return blocking_rest(hooked, fds_, deadline);
            };
            for interest in interests(pfd.events) {
                slot.registration().clear_ready(interest);
                waits.push((slot.clone(), interest));
            }
        }
        if waits.is_empty() {
            // No fds: a sleep (`poll(NULL, 0, ms)` is a classic one).
            return match wait::until(&hooked, deadline) {
                Ok(()) => hooked.ok(0),
                Err(_) => hooked.fail(libc::ECANCELED, -1),
            };
        }
        match wait::any_ready(&hooked, &waits, deadline) {
            Ok(_) | Err(Stop::Closed) => {} // ask the kernel again (a closed fd: POLLNVAL)
            Err(Stop::Interrupted) => return hooked.fail(libc::ECANCELED, -1),
            Err(Stop::TimedOut | Stop::Unavailable(_)) => unreachable!("not from any_ready"),
        }
    }
}

/// The fallback: a real, blocking `poll` for the time left.
fn blocking_rest(hooked: Hooked, fds_: &mut [pollfd], deadline: Option<Instant>) -> c_int {
    let timeout = deadline.map_or(-1, |deadline| {
        let left = deadline.saturating_duration_since(Instant::now());
        left.as_millis().min(c_int::MAX as u128) as c_int
    });
    // SAFETY: a valid slice of pollfds.
    let r = unsafe { real::poll(fds_.as_mut_ptr(), fds_.len() as nfds_t, timeout) };
    if r >= 0 { hooked.ok(r) } else { hooked.fail(gate::errno(), r) }
}

/// The deadline of a `poll` timeout in milliseconds (negative: none).
fn deadline_ms(timeout: c_int) -> Option<Instant> {
    let timeout = u64::try_from(timeout).ok()?;
    Instant::now().checked_add(Duration::from_millis(timeout))
}

/// `poll(2)`: cooperative in a greenlet when the timeout is not zero.
///
/// # Safety
///
/// As for libc's `poll`: `fds` is valid for `nfds` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    if timeout != 0 && gate::may_suspend() && (nfds == 0 || !fds.is_null()) {
        // SAFETY: the caller's array.
        let slice = unsafe { pollfds(fds, nfds) };
        return cooperative_poll(slice, deadline_ms(timeout));
    }
    // SAFETY: the caller's own call.
    unsafe { real::poll(fds, nfds, timeout) }
}

/// The caller's pollfds as a slice.
///
/// # Safety
///
/// `fds` is valid for `nfds` entries (or `nfds` is 0).
unsafe fn pollfds<'a>(fds: *mut pollfd, nfds: nfds_t) -> &'a mut [pollfd] {
    if nfds == 0 {
        return &mut [];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) }
}

/// `ppoll(2)`: as [`poll`] when `sigmask` is null. With a signal mask it passes through:
/// swapping the mask atomically around the wait cannot be done for one greenlet.
///
/// # Safety
///
/// As for libc's `ppoll`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    if sigmask.is_null() && gate::may_suspend() && (nfds == 0 || !fds.is_null()) {
        // SAFETY: the caller's timespec, if any.
        let deadline = match unsafe { timeout.as_ref() } {
            None => Some(None),
            Some(ts) if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) => None,
            Some(ts) if ts.tv_sec == 0 && ts.tv_nsec == 0 => None, // zero: a plain check
            Some(ts) => {
                Some(Instant::now().checked_add(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)))
            }
        };
        if let Some(deadline) = deadline {
            // SAFETY: the caller's array.
            let slice = unsafe { pollfds(fds, nfds) };
            return cooperative_poll(slice, deadline);
        }
    }
    // SAFETY: the caller's own call.
    unsafe { real::ppoll(fds, nfds, timeout, sigmask) }
}

/// glibc's checked `poll` (`_FORTIFY_SOURCE`).
///
/// # Safety
///
/// As for glibc's `__poll_chk`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: c_int,
    fdslen: size_t,
) -> c_int {
    if !gate::installed() {
        // SAFETY: the caller's own call.
        return unsafe { real::__poll_chk(fds, nfds, timeout, fdslen) };
    }
    if fdslen / size_of::<pollfd>() < nfds as usize {
        unsafe extern "C" {
            fn __chk_fail() -> !;
        }
        // SAFETY: glibc's abort for this very case.
        unsafe { __chk_fail() }
    }
    // SAFETY: the array holds `nfds` entries.
    unsafe { poll(fds, nfds, timeout) }
}

/// `select(2)`: in a greenlet with a non-zero timeout, turned into the cooperative `poll`
/// over the same fds; the sets and (as Linux does) `*timeout` are updated as the real call
/// would. `select(0, NULL, NULL, NULL, &tv)` is a cooperative sleep.
///
/// # Safety
///
/// As for libc's `select`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    nfds: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    except: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    // SAFETY: the caller's timeval, if any.
    let wait = match unsafe { timeout.as_ref() } {
        None => Some(None),
        Some(tv) if tv.tv_sec < 0 || !(0..1_000_000).contains(&tv.tv_usec) => None,
        Some(tv) if tv.tv_sec == 0 && tv.tv_usec == 0 => None,
        Some(tv) => Some(Some(Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000))),
    };
    let valid = (0..=libc::FD_SETSIZE as c_int).contains(&nfds);
    if let (Some(wait), true, true) = (wait, valid, gate::may_suspend()) {
        let started = Instant::now();
        let deadline = wait.and_then(|wait| started.checked_add(wait));
        // SAFETY: the caller's sets, valid for `nfds` bits.
        let r = unsafe { select_by_poll(nfds, read, write, except, deadline) };
        // SAFETY: the caller's timeval.
        if let (Some(wait), Some(tv)) = (wait, unsafe { timeout.as_mut() }) {
            let left = wait.saturating_sub(started.elapsed());
            tv.tv_sec = left.as_secs() as libc::time_t;
            tv.tv_usec = left.subsec_micros() as libc::suseconds_t;
        }
        return r;
    }
    // SAFETY: the caller's own call.
    unsafe { real::select(nfds, read, write, except, timeout) }
}

/// `select` through [`cooperative_poll`].
///
/// # Safety
///
/// Each non-null set is valid; `0 <= nfds <= FD_SETSIZE`.
unsafe fn select_by_poll(
    nfds: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    except: *mut libc::fd_set,
    deadline: Option<Instant>,
) -> c_int {
    let sets = [read, write, except];
    // SAFETY: the caller's sets.
    let mut pfds = unsafe { pollfds_of_sets(nfds, sets) };
    let r = cooperative_poll(&mut pfds, deadline);
    if r < 0 {
        return r;
    }
    if pfds.iter().any(|pfd| pfd.revents & libc::POLLNVAL != 0) {
        gate::set_errno(libc::EBADF);
        return -1;
    }
    // SAFETY: the caller's sets, which hold every fd of `pfds` (all below `nfds`).
    unsafe { answer_in_sets(&pfds, sets) }
}

/// What each set asks for (read, write, except) in `poll`'s terms, and what `poll`
/// reports that `select` counts as that set's answer.
const SET_EVENTS: [(i16, i16); 3] = [
    (libc::POLLIN, libc::POLLIN | libc::POLLHUP | libc::POLLERR),
    (libc::POLLOUT, libc::POLLOUT | libc::POLLERR),
    (libc::POLLPRI, libc::POLLPRI),
];

/// A pollfd for each fd below `nfds` that is in one of `sets` (read, write, except).
///
/// # Safety
///
/// Each non-null set is valid; `0 <= nfds <= FD_SETSIZE`.
unsafe fn pollfds_of_sets(nfds: c_int, sets: [*mut libc::fd_set; 3]) -> Vec<pollfd> {
    // SAFETY: the caller's sets (FD_ISSET only reads).
    let has =
        |set: *mut libc::fd_set, fd: c_int| !set.is_null() && unsafe { libc::FD_ISSET(fd, set) };
    (0..nfds)
        .filter_map(|fd| {
            let events = sets
                .iter()
                .zip(SET_EVENTS)
                .filter(|(set, _)| has(**set, fd))
                .fold(0, |events, (_, (asked, _))| events | asked);
            (events != 0).then_some(pollfd { fd, events, revents: 0 })
        })
        .collect()
}

/// Rewrites `sets` to hold the fds `poll` found ready; returns how many bits are set.
///
/// # Safety
///
/// Each non-null set is valid, and every fd of `pfds` is below `FD_SETSIZE`.
unsafe fn answer_in_sets(pfds: &[pollfd], sets: [*mut libc::fd_set; 3]) -> c_int {
    for set in sets.into_iter().filter(|set| !set.is_null()) {
        // SAFETY: the caller's set.
        unsafe { libc::FD_ZERO(set) };
    }
    let mut count = 0;
    for pfd in pfds {
        for (set, (asked, reported)) in sets.into_iter().zip(SET_EVENTS) {
            if pfd.events & asked != 0 && pfd.revents & reported != 0 {
                // SAFETY: the caller's set (non-null: `asked` came from it); the fd fits.
                unsafe { libc::FD_SET(pfd.fd, set) };
                count += 1;
            }
        }
    }
    count
}
