//! with_timeout: expiry at a blocking point, nesting, and what it cannot interrupt.

use verdant_testutil as util;

use std::time::{Duration, Instant};

use util::{DropCounter, Log};
use verdant_hub as hub;
use verdant_hub::{Timeout, sleep, spawn, with_timeout, yield_now};

#[test]
fn expires_at_a_blocking_point_and_runs_destructors() {
    let drops = DropCounter::new();
    let token = drops.token();
    let t = Instant::now();
    let result = with_timeout(Duration::from_millis(10), move || {
        let _held = token;
        sleep(Duration::from_secs(60));
    });
    assert_eq!(result, Err(Timeout { after: Duration::from_millis(10) }));
    assert_eq!(result.unwrap_err().to_string(), "timed out after 10ms");
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn works_inside_greenlets_and_leaves_others_alone() {
    let slow = spawn(|| with_timeout(Duration::from_millis(5), || sleep(Duration::from_secs(60))));
    let fast = spawn(|| with_timeout(Duration::from_secs(60), || 3));
    let bystander = spawn(|| {
        sleep(Duration::from_millis(20));
        "fine"
    });
    assert!(slow.get().unwrap().is_err());
    assert_eq!(fast.get().unwrap(), Ok(3));
    assert_eq!(bystander.get(), Ok("fine"));
}

#[test]
fn an_inner_scope_catches_only_its_own_expiry() {
    let log = Log::new();
    let l = log.clone();
    let outer = with_timeout(Duration::from_secs(60), move || {
        let inner = with_timeout(Duration::from_millis(5), || sleep(Duration::from_secs(60)));
        l.push(format!("inner: {}", inner.is_err()));
        "outer finished"
    });
    assert_eq!(outer, Ok("outer finished"));
    assert_eq!(log.take(), ["inner: true"]);
}

#[test]
fn an_outer_expiry_passes_through_an_inner_scope() {
    let log = Log::new();
    let l = log.clone();
    let outer = with_timeout(Duration::from_millis(5), move || {
        let inner = with_timeout(Duration::from_secs(60), || sleep(Duration::from_secs(60)));
        l.push(format!("inner returned {inner:?}"));
    });
    assert!(outer.is_err());
    assert!(log.take().is_empty(), "the inner scope did not swallow the outer expiry");
}

#[test]
fn a_timeout_whose_body_returned_never_fires() {
    let pending = hub::stats().timers_pending;
    for _ in 0..100 {
        assert_eq!(with_timeout(Duration::from_millis(1), || 1), Ok(1));
    }
    assert_eq!(hub::stats().timers_pending, pending, "every timer was cancelled");
    sleep(Duration::from_millis(10)); // would unwind here if a stray expiry were pending
    let g = spawn(|| {
        let r = with_timeout(Duration::from_millis(1), || 5);
        sleep(Duration::from_millis(10)); // a stray expiry would unwind out of here
        r
    });
    assert_eq!(g.get().unwrap(), Ok(5));
}

#[test]
fn an_expiry_that_fires_during_a_panics_unwinding_is_withdrawn_with_its_scope() {
    // The body panics; a destructor blocks during the unwinding, and the scope's timer
    // fires meanwhile. Raising it then would abort the process, so it is held back; when
    // the scope ends it must be withdrawn, and the greenlet must report the real panic.
    struct BlockingDrop;
    impl Drop for BlockingDrop {
        fn drop(&mut self) {
            sleep(Duration::from_millis(20));
        }
    }
    let g = spawn(|| {
        let caught = std::panic::catch_unwind(|| {
            with_timeout(Duration::from_millis(2), || {
                let _d = BlockingDrop;
                panic!("the real failure");
            })
        });
        let message = caught.unwrap_err().downcast::<&str>().map(|m| *m).unwrap_or("other");
        sleep(Duration::from_millis(5)); // a stray expiry would unwind out of here
        message
    });
    assert_eq!(g.get(), Ok("the real failure"));
}

#[test]
fn an_expiry_a_quiet_wait_reported_is_delivered_when_the_scope_returns() {
    // A libc hook cannot unwind through C frames: its wait reports the expiry and returns.
    // The code goes on without blocking again and returns; the scope still times out.
    let g = spawn(|| {
        with_timeout(Duration::from_millis(5), || {
            let never = Instant::now() + Duration::from_secs(3600);
            let quiet = hub::park::park_until_quietly(&"a C call", Some(never));
            assert_eq!(quiet, Err(hub::park::Interrupted));
            "returned after the expiry"
        })
    });
    assert_eq!(g.get().unwrap(), Err(Timeout { after: Duration::from_millis(5) }));
}

#[test]
fn cpu_bound_code_cannot_be_interrupted() {
    let result = with_timeout(Duration::from_millis(1), || {
        let until = Instant::now() + Duration::from_millis(20);
        let mut spins = 0u64;
        while Instant::now() < until {
            spins += 1;
        }
        spins
    });
    assert!(result.is_ok(), "no blocking point: the body runs to completion");
    // The expired (undelivered) timer must not leak out of the scope:
    sleep(Duration::from_millis(2));
}

#[test]
fn a_timeout_inside_a_destructor_during_a_kill_still_works() {
    struct FlushOnDrop(Log);
    impl Drop for FlushOnDrop {
        fn drop(&mut self) {
            let r = with_timeout(Duration::from_millis(10), || sleep(Duration::from_secs(60)));
            self.0.push(format!("flush timed out: {}", r.is_err()));
        }
    }
    let log = Log::new();
    let l = log.clone();
    let g = spawn(move || {
        let _f = FlushOnDrop(l);
        sleep(Duration::from_secs(60));
    });
    yield_now();
    assert!(g.kill_timeout(Duration::from_secs(20)), "cleanup did not hang");
    assert_eq!(log.take(), ["flush timed out: true"]);
}

#[test]
fn timeouts_in_many_greenlets_each_catch_their_own() {
    // Even greenlets block far past their limit; odd ones never block, so they cannot be
    // interrupted whatever the timing.
    let gs: Vec<_> = (0..50u64)
        .map(|i| {
            spawn(move || {
                let limit = Duration::from_millis(1 + i % 5);
                with_timeout(limit, || {
                    if i % 2 == 0 {
                        sleep(Duration::from_secs(60));
                    }
                })
                .is_ok()
            })
        })
        .collect();
    for (i, g) in gs.iter().enumerate() {
        assert_eq!(g.get().unwrap(), i % 2 == 1, "greenlet {i}");
    }
}

/// Resident memory of this process, in bytes (from `/proc/self/statm`).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf only reads a system constant.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

#[test]
fn timer_burst_child() {
    if !util::is_child_for("timer_burst_child") {
        return;
    }
    // Warm up: the hub, its wheel and a few timers exist before the baseline.
    for _ in 0..10_000 {
        with_timeout(Duration::from_millis(50), || ()).unwrap();
    }
    let before = resident_bytes();
    for i in 0..4_000_000u32 {
        with_timeout(Duration::from_millis(50), || {
            if i % 64 == 0 {
                yield_now(); // a turn boundary now and then: the wheel turns as time passes
            }
        })
        .unwrap();
    }
    let after = resident_bytes();
    let grown = after.saturating_sub(before);
    assert!(grown < 8 << 20, "a burst of short timeouts kept {} KiB", grown >> 10);
}

/// Regression: millions of `with_timeout` scopes that ended early left their cancelled
/// timers (and the wheel slots' capacity) in memory for good.
#[test]
fn a_burst_of_short_timeouts_gives_its_memory_back() {
    util::assert_test_passes_in_child("timer_burst_child");
}
