//! Killing greenlets: delivered at the blocking point by unwinding; cleanup always runs.

use verdant_testutil as util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use util::{DropCounter, Log};
use verdant_hub::park::{self, WaitList};
use verdant_hub::{
    GreenletError, WaitFor, current, killall, killall_timeout, sleep, spawn, with_timeout,
    yield_now,
};
use verdant_sync::Event;

/// Holds a "lock" flag while alive; releasing it is what a guard's destructor does.
struct Guard(Rc<Cell<bool>>);

impl Guard {
    fn acquire(flag: &Rc<Cell<bool>>) -> Guard {
        assert!(!flag.replace(true), "already held");
        Guard(flag.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

#[test]
fn kill_unwinds_at_the_blocking_point_and_guards_release() {
    let held = Rc::new(Cell::new(false));
    let log = Log::new();
    let (h, l) = (held.clone(), log.clone());
    let g = spawn(move || {
        let _guard = Guard::acquire(&h);
        l.push("holding");
        sleep(Duration::from_secs(60));
        l.push("never reached");
    });
    yield_now();
    assert!(held.get());
    g.kill();
    assert!(!held.get(), "the guard's destructor ran");
    assert_eq!(g.get(), Err(GreenletError::Killed));
    assert_eq!(g.get().unwrap_err().to_string(), "killed");
    assert_eq!(log.take(), ["holding"]);
}

#[test]
fn a_greenlet_killed_before_it_starts_never_runs() {
    let ran = Rc::new(Cell::new(false));
    let drops = DropCounter::new();
    let (r, token) = (ran.clone(), drops.token());
    let g = spawn(move || {
        let _t = token;
        r.set(true);
    });
    g.kill_nowait();
    assert!(g.ready(), "dead at once");
    sleep(Duration::from_millis(2));
    assert!(!ran.get());
    assert_eq!(drops.dropped(), 1, "its closure was dropped");
    assert_eq!(g.get(), Err(GreenletError::Killed));
}

#[test]
fn a_spawn_later_greenlet_killed_before_its_delay_never_runs() {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let g = verdant_hub::spawn_later(Duration::from_millis(5), move || r.set(true));
    g.kill();
    sleep(Duration::from_millis(20));
    assert!(!ran.get());
}

#[test]
fn killing_a_dead_greenlet_does_nothing() {
    let g = spawn(|| 5);
    g.join();
    g.kill();
    assert!(g.successful());
    assert_eq!(g.get(), Ok(5));
}

/// A destructor that blocks: cleanup that itself needs the hub (flushing, closing).
struct SlowCleanup {
    log: Log,
    millis: u64,
}

impl Drop for SlowCleanup {
    fn drop(&mut self) {
        self.log.push("cleanup started");
        sleep(Duration::from_millis(self.millis));
        self.log.push("cleanup finished");
    }
}

/// A destructor that blocks until the test opens its gate: cleanup that takes exactly as
/// long as the test wants, however loaded the machine is.
struct GatedCleanup {
    log: Log,
    gate: Event,
}

impl Drop for GatedCleanup {
    fn drop(&mut self) {
        self.log.push("cleanup started");
        self.gate.wait();
        self.log.push("cleanup finished");
    }
}

#[test]
fn blocking_kill_returns_only_after_the_cleanup_ran() {
    let log = Log::new();
    let l = log.clone();
    let g = spawn(move || {
        let _c = SlowCleanup { log: l, millis: 20 };
        sleep(Duration::from_secs(60));
    });
    yield_now();
    g.kill();
    assert_eq!(log.take(), ["cleanup started", "cleanup finished"]);
    assert!(g.ready());
}

#[test]
fn non_blocking_kill_and_kill_with_a_timeout() {
    let log = Log::new();
    let gate = Event::new();
    let g = spawn({
        let (log, gate) = (log.clone(), gate.clone());
        move || {
            let _c = GatedCleanup { log, gate };
            sleep(Duration::from_secs(60));
        }
    });
    yield_now();
    g.kill_nowait();
    assert!(!g.ready(), "not dead yet: the kill travels at the next turn");
    assert!(!g.kill_timeout(Duration::from_millis(5)), "the cleanup waits for the gate");
    assert_eq!(log.take(), ["cleanup started"]);
    assert!(!g.ready());
    gate.set();
    g.join();
    assert_eq!(log.take(), ["cleanup finished"]);
    assert_eq!(g.error(), Some(GreenletError::Killed));
}

#[test]
fn a_second_kill_during_cleanup_does_not_cut_it_short() {
    let log = Log::new();
    let gate = Event::new();
    let target = spawn({
        let (log, gate) = (log.clone(), gate.clone());
        move || {
            let _c = GatedCleanup { log, gate };
            sleep(Duration::from_secs(60));
        }
    });
    yield_now();
    target.kill_nowait();
    yield_now(); // the target unwinds and blocks inside its destructor
    assert_eq!(log.take(), ["cleanup started"]);
    let t = target.clone();
    let second = spawn(move || t.kill());
    yield_now(); // the second greenlet sends its kill and waits for the target
    yield_now(); // the target is woken by that kill inside its cleanup, which goes on
    assert!(!second.ready() && !target.ready());
    assert!(log.take().is_empty(), "the cleanup was not cut short");
    gate.set();
    second.join();
    assert_eq!(log.take(), ["cleanup finished"]);
    assert_eq!(target.get(), Err(GreenletError::Killed));
}

#[test]
fn a_kill_during_a_panics_unwinding_waits_for_the_cleanup() {
    let log = Log::new();
    let l = log.clone();
    let target = spawn(move || {
        let _c = SlowCleanup { log: l, millis: 30 };
        panic!("real failure");
    });
    yield_now(); // target starts, panics, blocks in its destructor
    assert_eq!(log.take(), ["cleanup started"]);
    target.kill();
    assert_eq!(log.take(), ["cleanup finished"]);
    assert_eq!(target.get(), Err(GreenletError::Panicked("real failure".into())));
}

#[test]
fn a_greenlet_can_kill_itself() {
    let log = Log::new();
    let l = log.clone();
    let g = spawn(move || {
        l.push("before");
        current().kill();
        l.push("after");
    });
    assert_eq!(g.get(), Err(GreenletError::Killed));
    assert_eq!(log.take(), ["before"]);
}

#[test]
fn a_kill_a_quiet_wait_reported_is_delivered_when_the_body_returns() {
    // A libc hook cannot unwind through C frames: its wait reports the kill and returns.
    // The body goes on without blocking again and returns; the greenlet still ends killed,
    // and its value is dropped, never handed out.
    let dropped = DropCounter::new();
    let token = dropped.clone();
    let g = spawn(move || {
        let quiet = park::park_until_quietly(&"a C call", None);
        assert_eq!(quiet, Err(park::Interrupted));
        token.token()
    });
    yield_now();
    g.kill();
    assert_eq!(g.take().err(), Some(GreenletError::Killed));
    drop(g);
    assert_eq!(dropped.dropped(), 1);
}

#[test]
fn kill_reaches_a_greenlet_that_is_ready_or_joining() {
    let yielder = spawn(|| {
        loop {
            yield_now();
        }
    });
    let blocker = spawn(|| sleep(Duration::from_secs(60)));
    let b = blocker.clone();
    let joiner = spawn(move || b.join());
    yield_now();
    killall(&[yielder.as_ref(), joiner.as_ref()]);
    assert_eq!(yielder.error(), Some(GreenletError::Killed));
    assert_eq!(joiner.error(), Some(GreenletError::Killed));
    assert!(!blocker.ready(), "killing the joiner leaves its target alone");
    blocker.kill();
}

/// A destructor that blocks until the test releases it.
struct HeldCleanup(Rc<(Cell<bool>, WaitList)>);

impl Drop for HeldCleanup {
    fn drop(&mut self) {
        while !self.0.0.get() {
            self.0.1.push(park::waker());
            park::park(&"the test to release the cleanup");
        }
    }
}

#[test]
fn killall_with_a_timeout_reports_stragglers() {
    let release = Rc::new((Cell::new(false), WaitList::new()));
    let quick = spawn(|| sleep(Duration::from_secs(60)));
    let r = release.clone();
    let straggler = spawn(move || {
        let _c = HeldCleanup(r);
        sleep(Duration::from_secs(60));
    });
    yield_now();
    let both = [quick.as_ref(), straggler.as_ref()];
    assert!(!killall_timeout(&both, Duration::from_millis(50)));
    assert!(quick.ready() && !straggler.ready());
    release.0.set(true);
    release.1.notify_all();
    assert_eq!(verdant_hub::joinall(&both, WaitFor::all()), [0, 1]);
    assert_eq!(straggler.error(), Some(GreenletError::Killed));
}

#[test]
fn a_kill_beats_a_pending_timeout() {
    let g = spawn(|| with_timeout(Duration::from_millis(1), || sleep(Duration::from_secs(60))));
    yield_now(); // g parks inside its with_timeout
    // Spin past the deadline without blocking: the hub cannot fire the timer meanwhile.
    let until = std::time::Instant::now() + Duration::from_millis(5);
    while std::time::Instant::now() < until {}
    g.kill_nowait(); // Kill posted first; the timeout fires at the next turn
    assert_eq!(g.get(), Err(GreenletError::Killed));
}
