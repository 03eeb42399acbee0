//! A panic in a greenlet is captured: the hub and the other greenlets keep running.

use verdant_testutil as util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use util::{DropCounter, Log};
use verdant_hub::WaitFor;
use verdant_hub::{GreenletError, sleep, spawn};
use verdant_sync::Event;

#[test]
fn a_panic_is_reported_by_get_and_others_keep_running() {
    // `before` and `after` are blocked (alive) while the crasher panics, and carry on once
    // the gate opens; their order comes from the gate's FIFO wake-up, not from timers.
    let log = Log::new();
    let gate = Event::new();
    let (l, g) = (log.clone(), gate.clone());
    let before = spawn(move || {
        g.wait();
        l.push("before");
        1
    });
    let crasher = spawn(|| -> u32 { panic!("boom {}", 42) });
    let (l, g) = (log.clone(), gate.clone());
    let after = spawn(move || {
        g.wait();
        l.push("after");
        2
    });
    assert_eq!(crasher.get(), Err(GreenletError::Panicked("boom 42".into())));
    assert_eq!(crasher.get().unwrap_err().to_string(), "panicked: boom 42");
    assert!(crasher.ready());
    assert!(!crasher.successful());
    assert_eq!(crasher.error(), Some(GreenletError::Panicked("boom 42".into())));
    assert!(!before.ready() && !after.ready());
    gate.set();
    assert_eq!(before.get(), Ok(1));
    assert_eq!(after.get(), Ok(2));
    assert_eq!(log.take(), ["before", "after"]);
}

#[test]
fn a_panic_runs_the_destructors_of_the_panicking_greenlet() {
    let drops = DropCounter::new();
    let token = drops.token();
    let g = spawn(move || {
        let _held = token;
        sleep(Duration::from_millis(1));
        panic!("after a sleep");
    });
    g.join();
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn non_string_payloads_are_reported_too() {
    let g = spawn(|| std::panic::panic_any(17u8));
    assert!(
        matches!(g.get(), Err(GreenletError::Panicked(p)) if p.message().contains("non-string"))
    );
}

#[test]
fn links_fire_exactly_once_for_success_panic_and_kill() {
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    let ok = spawn(|| 1);
    ok.link(move |g| {
        assert!(g.successful());
        f.set(f.get() + 1)
    });
    let f = fired.clone();
    let bad = spawn(|| -> u8 { panic!("x") });
    bad.link(move |g| {
        assert!(!g.successful());
        f.set(f.get() + 10)
    });
    let f = fired.clone();
    let killed = spawn(|| sleep(Duration::from_secs(60)));
    killed.link(move |g| {
        assert_eq!(g.error(), Some(GreenletError::Killed));
        f.set(f.get() + 100)
    });
    verdant_hub::sleep(Duration::from_millis(1));
    killed.kill();
    verdant_hub::joinall(&[ok.as_ref(), bad.as_ref(), killed.as_ref()], WaitFor::all());
    assert_eq!(fired.get(), 111);
    sleep(Duration::from_millis(2));
    assert_eq!(fired.get(), 111, "no link fired twice");
}

#[test]
fn a_panicking_link_does_not_stop_the_others() {
    let fired = Rc::new(Cell::new(0));
    let g = spawn(|| ());
    g.link(|_| panic!("bad link"));
    let f = fired.clone();
    g.link(move |_| f.set(f.get() + 1));
    g.join();
    assert_eq!(fired.get(), 1);
}

#[test]
fn unlink_removes_a_callback_and_linking_a_dead_greenlet_runs_at_once() {
    let fired = Rc::new(Cell::new(0));
    let g = spawn(|| ());
    let f = fired.clone();
    let id = g.link(move |_| f.set(f.get() + 1));
    assert!(g.unlink(id));
    assert!(!g.unlink(id));
    g.join();
    assert_eq!(fired.get(), 0);
    let f = fired.clone();
    g.link(move |_| f.set(f.get() + 1));
    assert_eq!(fired.get(), 1, "linking a dead greenlet runs the callback now");
}

#[test]
fn joining_from_greenlets_and_from_main_both_see_the_outcome() {
    let target = spawn(|| {
        sleep(Duration::from_millis(5));
        "done"
    });
    let joiners: Vec<_> = (0..3)
        .map(|_| {
            let t = target.clone();
            spawn(move || {
                t.join();
                t.ready()
            })
        })
        .collect();
    assert_eq!(target.get(), Ok("done"));
    for j in joiners {
        assert_eq!(j.get(), Ok(true));
    }
    assert_eq!(target.get(), Ok("done"), "get leaves the value for the next reader");
    assert_eq!(target.take(), Ok("done"));
    assert_eq!(target.get(), Err(GreenletError::Taken), "take moves it out once");
}

#[test]
fn a_greenlet_joining_itself_gets_a_clear_panic() {
    let me = Rc::new(Cell::new(None));
    let slot = me.clone();
    let g = spawn(move || {
        let this: verdant_hub::GreenletRef = verdant_hub::current();
        slot.set(Some(this.id()));
        this.join();
    });
    let err = g.get().unwrap_err().to_string();
    assert!(err.contains("tried to join itself"), "{err}");
    assert_eq!(me.get(), Some(g.id()));
}

#[derive(Debug, PartialEq)]
struct Payload(u32);

#[test]
fn a_panic_keeps_its_payload_through_get_and_a_thread_pool_reraise() {
    let g = spawn(|| -> u32 { std::panic::panic_any(Payload(7)) });
    let Err(GreenletError::Panicked(panic)) = g.get() else { panic!("expected a panic") };
    assert_eq!(panic.take_payload().unwrap().downcast_ref::<Payload>(), Some(&Payload(7)));
    assert!(panic.take_payload().is_none(), "taken once");

    let pool = verdant_threadpool::ThreadPool::new(1);
    let reraised = verdant_hub::catch_panic(|| pool.apply(|| std::panic::panic_any(Payload(3))))
        .expect_err("apply re-raises the task's panic");
    assert_eq!(reraised.downcast_ref::<Payload>(), Some(&Payload(3)), "the original payload");
}

#[test]
fn catch_panic_catches_panics_but_never_a_kill_or_a_timeout() {
    let caught = verdant_hub::catch_panic(|| panic!("real")).unwrap_err();
    assert_eq!(verdant_hub::panic_message(&*caught), "real");

    let drops = DropCounter::new();
    let token = drops.token();
    let g = spawn(move || {
        let _held = token;
        let _ = verdant_hub::catch_panic(|| sleep(Duration::from_secs(3600)));
    });
    verdant_hub::yield_now();
    g.kill();
    assert_eq!(g.get(), Err(GreenletError::Killed), "the kill went through catch_panic");
    assert_eq!(drops.dropped(), 1);

    let timed = verdant_hub::with_timeout(Duration::from_millis(1), || {
        verdant_hub::catch_panic(|| sleep(Duration::from_secs(3600)))
    });
    assert!(timed.is_err(), "the expiry reached its own scope");
}
