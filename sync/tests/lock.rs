//! Semaphores and locks: limits, FIFO hand-off, fairness, ownership, nothing lost.

use verdant_testutil as util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use util::Log;
use verdant_hub::WaitFor;
use verdant_hub::{GreenletError, sleep, spawn, yield_now};
use verdant_sync::{BoundedSemaphore, Lock, RLock, Semaphore};

#[test]
fn a_semaphore_admits_at_most_n_holders() {
    let sem = Semaphore::new(2);
    let holding = Rc::new(Cell::new(0));
    let most = Rc::new(Cell::new(0));
    let gs: Vec<_> = (0..10)
        .map(|_| {
            let (sem, holding, most) = (sem.clone(), holding.clone(), most.clone());
            spawn(move || {
                let _permit = sem.acquire();
                holding.set(holding.get() + 1);
                most.set(most.get().max(holding.get()));
                sleep(Duration::from_millis(1));
                holding.set(holding.get() - 1);
            })
        })
        .collect();
    verdant_hub::joinall(&gs, WaitFor::all());
    assert_eq!(most.get(), 2);
    assert_eq!(sem.available(), 2);
}

#[test]
fn waiters_are_served_first_in_first_out() {
    let lock = Lock::new();
    let log = Log::new();
    let held = lock.acquire();
    let gs: Vec<_> = (0..5)
        .map(|i| {
            let (lock, log) = (lock.clone(), log.clone());
            spawn(move || {
                let _g = lock.acquire();
                log.push(format!("w{i}"));
                yield_now(); // hold it across a switch
            })
        })
        .collect();
    yield_now(); // all five queue up in spawn order
    assert_eq!(lock.waiting(), 5);
    drop(held);
    verdant_hub::joinall(&gs, WaitFor::all());
    assert_eq!(log.take(), ["w0", "w1", "w2", "w3", "w4"]);
}

#[test]
fn two_contending_greenlets_get_equal_shares() {
    let lock = Lock::new();
    let total = Rc::new(Cell::new(0u32));
    let contender = |lock: Lock, total: Rc<Cell<u32>>| {
        spawn(move || {
            let mut mine = 0u32;
            while total.get() < 10_000 {
                let _g = lock.acquire();
                yield_now(); // a blocking point inside the critical section
                mine += 1;
                total.set(total.get() + 1);
            }
            mine
        })
    };
    let a = contender(lock.clone(), total.clone());
    let b = contender(lock.clone(), total.clone());
    let (a, b) = (a.get().unwrap() as f64, b.get().unwrap() as f64);
    assert!((a - b).abs() / a.max(b) < 0.10, "shares {a} vs {b}");
}

#[test]
fn try_acquire_and_acquire_timeout() {
    let lock = Lock::new();
    let g = lock.try_acquire().expect("free");
    assert!(lock.locked());
    assert!(lock.try_acquire().is_none());
    let l = lock.clone();
    let waiter = spawn(move || l.acquire_timeout(Duration::from_millis(5)).is_some());
    assert_eq!(waiter.get(), Ok(false), "timed out while held");
    drop(g);
    assert!(!lock.locked());
    assert!(lock.acquire_timeout(Duration::from_millis(5)).is_some());
    assert!(lock.release().is_err(), "releasing an unlocked Lock is an error");
}

#[test]
fn a_bounded_semaphore_refuses_extra_releases() {
    let sem = BoundedSemaphore::new(1);
    assert!(sem.release().is_err());
    let permit = sem.acquire();
    std::mem::forget(permit);
    assert_eq!(sem.available(), 0);
    assert!(sem.release().is_ok());
    assert_eq!(sem.release().unwrap_err().to_string(), "BoundedSemaphore released too many times");
    let plain = Semaphore::new(0);
    plain.release();
    plain.release();
    assert_eq!(plain.available(), 2, "a plain Semaphore may grow");
}

#[test]
fn a_waiter_killed_after_being_handed_the_lock_passes_it_on() {
    let lock = Lock::new();
    let log = Log::new();
    let held = lock.acquire();
    let waiter = |name: &'static str| {
        let (lock, log) = (lock.clone(), log.clone());
        spawn(move || {
            let _g = lock.acquire();
            log.push(name);
        })
    };
    let b = waiter("b");
    let c = waiter("c");
    yield_now(); // b and c wait, in that order
    drop(held); // handed to b, which has not run yet
    b.kill_nowait(); // b dies before taking it
    c.join();
    b.join();
    assert_eq!(log.take(), ["c"]);
    assert_eq!(b.error(), Some(GreenletError::Killed));
    assert!(!lock.locked(), "the lock was neither lost nor left held");
}

#[test]
fn a_waiter_that_timed_out_is_skipped() {
    let sem = Semaphore::new(0);
    let s = sem.clone();
    let quitter = spawn(move || s.acquire_timeout(Duration::from_millis(1)).is_some());
    let s = sem.clone();
    let patient = spawn(move || {
        let g = s.acquire();
        std::mem::forget(g);
        true
    });
    yield_now();
    assert_eq!(quitter.get(), Ok(false));
    sem.release();
    assert_eq!(patient.get(), Ok(true), "the release went to the live waiter");
    assert_eq!(sem.available(), 0);
}

#[test]
fn an_rlock_is_reentrant_and_owned() {
    let lock = RLock::new();
    let outer = lock.acquire();
    let inner = lock.acquire();
    assert!(lock.is_owned());
    let l = lock.clone();
    let other = spawn(move || {
        let refused = l.release().is_err();
        let got = l.acquire_timeout(Duration::from_secs(30)).is_some();
        (refused, got)
    });
    yield_now();
    drop(inner);
    yield_now();
    assert!(!other.ready(), "still held once");
    drop(outer);
    assert_eq!(other.get(), Ok((true, true)));
    assert!(!lock.locked());
    assert!(lock.release().is_err());
}

/// A waker left behind by a wait that timed out belongs to that wait only (its epoch): a
/// release must skip it, even while its greenlet is parked again on something else, and
/// give the permit to the greenlet still waiting.
#[test]
fn a_release_skips_a_waiter_whose_wait_timed_out_and_now_waits_elsewhere() {
    let sem = Rc::new(Semaphore::new(0));
    let elsewhere = verdant_sync::Event::new();
    let moved_on = Rc::new(Cell::new(false));
    let stale = spawn({
        let (sem, elsewhere, moved_on) = (sem.clone(), elsewhere.clone(), moved_on.clone());
        move || {
            assert!(sem.acquire_timeout(Duration::from_millis(1)).is_none());
            moved_on.set(true);
            elsewhere.wait(); // parked again, with its old waker still in the semaphore's list
        }
    });
    let live = spawn({
        let sem = sem.clone();
        move || std::mem::forget(sem.acquire())
    });
    while !moved_on.get() {
        sleep(Duration::from_millis(1));
    }
    sem.release();
    assert!(live.join_timeout(Duration::from_secs(30)), "the permit went to a dead wait");
    assert!(!stale.ready(), "the stale waiter was not woken for good");
    elsewhere.set();
    stale.join();
}

/// A greenlet with a small stack that takes `lock`, lets the others run once (so they
/// queue up behind it), and overflows its stack while holding it.
fn overflow_holding(lock: &Lock, name: &str) -> verdant_hub::Greenlet<u64> {
    let lock = lock.clone();
    verdant_hub::Builder::new()
        .name(name)
        .stack_size(32 * 1024)
        .spawn(move || {
            let _held = lock.acquire(); // never dropped: the overflow skips destructors
            yield_now();
            util::recurse_forever(0)
        })
        .unwrap()
}

fn died_of_overflow<T>(g: &verdant_hub::Greenlet<T>) -> bool {
    matches!(g.error(), Some(GreenletError::StackOverflow { .. }))
}

/// Run in a child process by `a_lock_whose_holder_overflows_is_released_and_poisoned`.
#[test]
fn lock_overflow_child() {
    if !util::is_child_for("lock_overflow_child") {
        return;
    }
    // A waiter was queued when the holder overflowed: the lock is handed to it.
    let lock = Lock::new();
    let holder = overflow_holding(&lock, "holder");
    let l = lock.clone();
    let waiter = spawn(move || {
        let _g = l.acquire();
        l.poisoned()
    });
    assert_eq!(waiter.get(), Ok(true), "the waiter got the lock, marked poisoned");
    assert!(died_of_overflow(&holder));
    assert!(!lock.locked());
    lock.clear_poison();
    assert!(!lock.poisoned());

    // Nobody waited: the next look at the lock releases it (try_acquire, locked, acquire).
    let lonely = overflow_holding(&lock, "lonely");
    lonely.join();
    assert!(lock.try_acquire().is_some(), "try_acquire takes over an abandoned lock");
    assert!(lock.poisoned());
    lock.clear_poison();
    overflow_holding(&lock, "again").join();
    assert!(!lock.locked(), "locked() releases an abandoned lock");
    overflow_holding(&lock, "and again").join();
    drop(lock.acquire()); // the main code's acquire does not wait for a dead holder
    assert!(lock.poisoned() && !lock.locked());
    lock.clear_poison();

    // Only an overflow abandons a lock: a panic unwinds and drops the guard, and a guard
    // forgotten by a greenlet that then ends normally keeps it locked (gevent's rule: any
    // greenlet may release it later).
    let l = lock.clone();
    let panicked = spawn(move || {
        let _g = l.acquire();
        panic!("boom");
    });
    panicked.join();
    assert!(!lock.locked() && !lock.poisoned());
    let l = lock.clone();
    spawn(move || std::mem::forget(l.acquire())).join();
    assert!(lock.locked() && !lock.poisoned());
    assert!(lock.release().is_ok());

    // An RLock held two levels deep: released whole, for the waiter.
    let rlock = RLock::new();
    let r = rlock.clone();
    let holder = verdant_hub::Builder::new()
        .name("reentrant")
        .stack_size(32 * 1024)
        .spawn(move || {
            let _outer = r.acquire();
            let _inner = r.acquire();
            yield_now();
            util::recurse_forever(0)
        })
        .unwrap();
    let r = rlock.clone();
    let waiter = spawn(move || {
        let _g = r.acquire();
        (r.is_owned(), r.poisoned())
    });
    assert_eq!(waiter.get(), Ok((true, true)));
    assert!(died_of_overflow(&holder));
    assert!(!rlock.locked());
}

#[test]
fn a_lock_whose_holder_overflows_is_released_and_poisoned() {
    util::assert_test_passes_in_child("lock_overflow_child");
}
