//! The sleep hooks: `nanosleep`, `clock_nanosleep` (what `std::thread::sleep` calls),
//! `sleep` and `usleep`. In a greenlet they park it on a hub timer instead of the thread;
//! anywhere else they pass through.
//!
//! # A kill or timeout during a hooked sleep
//!
//! The sleep ends early and reports a signal-style interruption with *no time left*:
//! `nanosleep`/`usleep` fail with `EINTR` (and `*rem` zero), `clock_nanosleep` returns
//! `EINTR` (and `*rem` zero), `sleep` returns 0. Callers that resume an interrupted sleep
//! with the time left — `std::thread::sleep` does, and asserts the error *is* `EINTR` —
//! then stop at once instead of spinning on a kill that stays pending until their
//! greenlet's next verdant blocking point.

use std::ffi::{c_int, c_uint};
use std::time::{Duration, Instant};

use libc::{clockid_t, timespec};

use crate::gate::{self, Hooked};
use crate::real;
use crate::wait;

/// A valid relative `timespec` as a duration (`None`: let libc report `EINVAL`).
///
/// # Safety
///
/// `ts` is null or valid for reads.
unsafe fn duration(ts: *const timespec) -> Option<Duration> {
    // SAFETY: the caller's promise.
    let ts = unsafe { ts.as_ref()? };
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Parks for `duration`; `Err(())` if a kill or timeout cut it short.
fn park_for(duration: Duration) -> Result<(), ()> {
    let hooked = Hooked::enter();
    let deadline = Instant::now().checked_add(duration); // None: "forever"
    let result = wait::until(&hooked, deadline).map_err(|_| ());
    hooked.ok(result)
}

/// Writes "no time left" to `rem`, if given.
///
/// # Safety
///
/// `rem` is null or valid for writes.
unsafe fn no_time_left(rem: *mut timespec) {
    // SAFETY: the caller's promise.
    if let Some(rem) = unsafe { rem.as_mut() } {
        *rem = timespec { tv_sec: 0, tv_nsec: 0 };
    }
}

/// `nanosleep(2)`: in a greenlet, parks it instead of the thread.
///
/// # Safety
///
/// As for libc's `nanosleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    if gate::may_suspend()
        // SAFETY: the caller's `req`.
        && let Some(duration) = unsafe { duration(req) }
    {
        if park_for(duration).is_ok() {
            return 0;
        }
        // SAFETY: the caller's `rem`.
        unsafe { no_time_left(rem) };
        gate::set_errno(libc::EINTR);
        return -1;
    }
    // SAFETY: the caller's own call.
    unsafe { real::nanosleep(req, rem) }
}

/// `clock_nanosleep(2)`: in a greenlet, parks it instead of the thread, for relative and
/// absolute (`TIMER_ABSTIME`) sleeps on `CLOCK_MONOTONIC`, `CLOCK_BOOTTIME` and
/// `CLOCK_REALTIME` (an absolute realtime sleep is turned into a duration when it starts:
/// later clock changes do not move it). Other clocks pass through.
///
/// # Safety
///
/// As for libc's `clock_nanosleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let supported =
        matches!(clock, libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME | libc::CLOCK_REALTIME);
    if supported
        && gate::may_suspend()
        // SAFETY: the caller's `req`.
        && let Some(requested) = unsafe { duration(req) }
    {
        let absolute = flags & libc::TIMER_ABSTIME != 0;
        let duration = if absolute { until_absolute(clock, requested) } else { Some(requested) };
        if let Some(duration) = duration {
            if park_for(duration).is_ok() {
                return 0;
            }
            if !absolute {
                // SAFETY: the caller's `rem`.
                unsafe { no_time_left(rem) };
            }
            return libc::EINTR;
        }
    }
    // SAFETY: the caller's own call.
    unsafe { real::clock_nanosleep(clock, flags, req, rem) }
}

/// How long from now until `clock` reads `at` (zero if it already has).
fn until_absolute(clock: clockid_t, at: Duration) -> Option<Duration> {
    let mut now = timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec; clock_gettime is not hooked.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    let now = Duration::new(now.tv_sec.max(0) as u64, now.tv_nsec as u32);
    Some(at.saturating_sub(now))
}

/// `sleep(3)`: in a greenlet, parks it instead of the thread. Returns 0, also when a kill
/// or timeout cut it short (see the module doc).
///
/// # Safety
///
/// As for libc's `sleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    if gate::may_suspend() {
        let _ = park_for(Duration::from_secs(seconds.into()));
        return 0;
    }
    // SAFETY: the caller's own call.
    unsafe { real::sleep(seconds) }
}

/// `usleep(3)`: in a greenlet, parks it instead of the thread; `EINTR` if a kill or
/// timeout cut it short.
///
/// # Safety
///
/// As for libc's `usleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usleep(usec: libc::useconds_t) -> c_int {
    if gate::may_suspend() {
        if park_for(Duration::from_micros(usec.into())).is_ok() {
            return 0;
        }
        gate::set_errno(libc::EINTR);
        return -1;
    }
    // SAFETY: the caller's own call.
    unsafe { real::usleep(usec) }
}
