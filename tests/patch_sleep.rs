//! Sleeps, unchanged, in greenlets under `verdant::patch`: `std::thread::sleep` and
//! libc's `nanosleep`, `clock_nanosleep`, `usleep`, `poll`/`select` without fds park only
//! their greenlet; a kill or `with_timeout` ends them early. Each cooperative test fails
//! without the hooks (see `patch_support`).

mod patch_support;

use std::time::Duration;

use patch_support::{HangGuard, InFlight};
use verdant::WaitFor;
use verdant::{GreenletError, spawn, with_timeout, yield_now};

const SLEEPERS: usize = 10_000;

#[test]
fn ten_thousand_std_sleeps_of_100_ms_are_all_asleep_at_once() {
    patch_support::install();
    let _guard = HangGuard::new("10,000 std sleepers", Duration::from_secs(120));
    let asleep = InFlight::new();
    let sleepers: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            let asleep = asleep.clone();
            spawn(move || {
                if asleep.failed() {
                    return;
                }
                asleep.enter();
                std::thread::sleep(Duration::from_millis(100));
                asleep.leave();
                asleep.check(SLEEPERS);
            })
        })
        .collect();
    verdant::joinall(&sleepers, WaitFor::all());
    assert_eq!(
        asleep.max(),
        SLEEPERS,
        "the sleeps ran one after the other (at most {} asleep at once)",
        asleep.max()
    );
}

/// Runs `sleep` in 50 greenlets at once and checks they were all inside it together.
fn all_asleep_together(what: &'static str, sleep: fn()) {
    patch_support::install();
    let _guard = HangGuard::new(what, Duration::from_secs(60));
    const N: usize = 50;
    let asleep = InFlight::new();
    let sleepers: Vec<_> = (0..N)
        .map(|_| {
            let asleep = asleep.clone();
            spawn(move || {
                asleep.enter();
                sleep();
                asleep.leave();
            })
        })
        .collect();
    verdant::joinall(&sleepers, WaitFor::all());
    assert_eq!(asleep.max(), N, "{what}: at most {} asleep at once", asleep.max());
}

#[test]
fn nanosleep_is_cooperative() {
    all_asleep_together("nanosleep", || {
        let ts = libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 };
        // SAFETY: a valid timespec; no remainder wanted.
        assert_eq!(unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) }, 0);
    });
}

#[test]
fn clock_nanosleep_to_an_absolute_time_is_cooperative() {
    all_asleep_together("clock_nanosleep(TIMER_ABSTIME)", || {
        let mut at = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: writes one timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut at) };
        at.tv_nsec += 20_000_000;
        if at.tv_nsec >= 1_000_000_000 {
            at.tv_sec += 1;
            at.tv_nsec -= 1_000_000_000;
        }
        let flags = libc::TIMER_ABSTIME;
        // SAFETY: a valid timespec.
        let r = unsafe {
            libc::clock_nanosleep(libc::CLOCK_MONOTONIC, flags, &at, std::ptr::null_mut())
        };
        assert_eq!(r, 0);
    });
}

#[test]
fn usleep_is_cooperative() {
    all_asleep_together("usleep", || {
        // SAFETY: plain call.
        let r = unsafe { libc::usleep(20_000) };
        assert_eq!(r, 0);
    });
}

#[test]
fn poll_without_fds_is_a_cooperative_sleep() {
    all_asleep_together("poll(NULL, 0, 20)", || {
        // SAFETY: no fds to read.
        let r = unsafe { libc::poll(std::ptr::null_mut(), 0, 20) };
        assert_eq!(r, 0);
    });
}

#[test]
fn select_without_fds_is_a_cooperative_sleep() {
    all_asleep_together("select(0, ..., 20 ms)", || {
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 20_000 };
        let none = std::ptr::null_mut();
        // SAFETY: no sets; a valid timeval.
        assert_eq!(unsafe { libc::select(0, none, none, none, &mut tv) }, 0);
        assert_eq!((tv.tv_sec, tv.tv_usec), (0, 0), "Linux's select leaves the time left");
    });
}

#[test]
fn a_kill_during_a_std_sleep_ends_it_early_and_the_greenlet_killed() {
    patch_support::install();
    let _guard = HangGuard::new("kill during std sleep", Duration::from_secs(60));
    let sleeper = spawn(|| {
        // std's sleep resumes an EINTR with the time left; the hook reports none left, so
        // it returns at once and the kill lands when the body returns.
        std::thread::sleep(Duration::from_secs(30));
        "slept through the kill"
    });
    yield_now();
    sleeper.kill();
    assert_eq!(sleeper.get(), Err(GreenletError::Killed));
}

#[test]
fn with_timeout_around_a_std_sleep_times_out() {
    patch_support::install();
    let _guard = HangGuard::new("with_timeout around std sleep", Duration::from_secs(60));
    let g = spawn(|| {
        with_timeout(Duration::from_millis(20), || std::thread::sleep(Duration::from_secs(30)))
    });
    assert!(g.get().unwrap().is_err());
}

#[test]
fn a_std_sleep_in_the_main_code_blocks_the_thread_as_before() {
    patch_support::install();
    let ran = std::rc::Rc::new(std::cell::Cell::new(false));
    let r = ran.clone();
    let g = spawn(move || r.set(true));
    // The main code is not a greenlet: its sleep passes through, the greenlet does not run.
    std::thread::sleep(Duration::from_millis(20));
    assert!(!ran.get());
    g.join();
    assert!(ran.get());
}
