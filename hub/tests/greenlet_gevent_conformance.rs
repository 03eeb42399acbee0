//! Greenlets against gevent's own tests (`src/gevent/tests/test__greenlet.py`,
//! `test__hub_join_timeout.py`, `test__timeout.py`): each test here is the upstream test's
//! scenario and assertion, in Rust. Orders and counts come from logs and events, never
//! from how long a sleep took.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use verdant_hub::{
    GreenletError, LinkId, Timeout, TimeoutTimer, WaitFor, join_hub, join_hub_timeout, joinall,
    joinall_raising, killall, sleep, sleep_unref, spawn, spawn_later, with_timeout, yield_now,
};
use verdant_sync::{AsyncResult, Event, Waitable, wait};

/// `test_multiple_listeners_error_unlink`: two listeners each unlink the other; whichever
/// runs first removes the second before it is called, so exactly one of them runs.
#[test]
fn a_link_unlinked_by_a_running_link_is_not_called() {
    let p = spawn(|| 5);
    let results = Rc::new(RefCell::new(Vec::new()));
    let ids: Rc<RefCell<Vec<LinkId>>> = Rc::default();
    for me in 0..2 {
        let (results, all_ids) = (results.clone(), ids.clone());
        let id = p.link(move |p| {
            let other = all_ids.borrow()[1 - me];
            p.unlink(other);
            results.borrow_mut().push(5);
            panic!("listener{} fails, as gevent's does", me + 1);
        });
        ids.borrow_mut().push(id);
    }
    p.link(|_| panic!("listener3 fails"));
    p.join();
    assert_eq!(*results.borrow(), [5]);
}

/// `test_multiple_listeners_error`: a listener that fails does not keep the others from
/// being called.
#[test]
fn a_failing_link_does_not_stop_the_others() {
    let p = spawn(|| 5);
    let results = Rc::new(RefCell::new(Vec::new()));
    for value in [10, 20] {
        let results = results.clone();
        p.link(move |_| {
            results.borrow_mut().push(value);
            panic!("listener {value}");
        });
    }
    p.link(|_| panic!("listener3"));
    p.join();
    yield_now();
    assert_eq!(*results.borrow(), [10, 20]);
}

/// `TestStuff.test_wait_noerrors`: `joinall(raise_error=True)` over greenlets that all
/// succeed returns them all, and their values are there.
#[test]
fn joinall_raising_over_successes_returns_them_all() {
    let (x, y, z) = (spawn(|| 1), spawn(|| 2), spawn(|| 3));
    assert_eq!(joinall_raising(&[&x, &y, &z], WaitFor::all()), Ok(vec![0, 1, 2]));
    assert_eq!([x.value(), y.value(), z.value()], [Some(1), Some(2), Some(3)]);
}

/// `TestStuff.test_wait_error`: the failure of one greenlet is raised while another still
/// runs, and again when it is joined alone.
#[test]
fn joinall_raising_raises_a_failure_while_others_run() {
    let gate = Event::new();
    let x = spawn({
        let gate = gate.clone();
        move || {
            gate.wait();
            1
        }
    });
    let y = spawn(|| -> i32 { panic!("test_wait_error") });
    let failed = |r: Result<Vec<usize>, GreenletError>| matches!(r, Err(GreenletError::Panicked(p)) if p.message() == "test_wait_error");
    assert!(failed(joinall_raising(&[&x, &y], WaitFor::all())));
    assert!(!x.ready());
    assert!(failed(joinall_raising(&[&y], WaitFor::all())));
    gate.set();
    x.join();
}

/// `TestStuff.test_joinall_exception_order`: of two failures, the one that happened first
/// is raised, whatever the order of the list.
#[test]
fn joinall_raising_raises_the_earliest_failure() {
    let gate = Event::new();
    let a = spawn({
        let gate = gate.clone();
        move || -> i32 {
            gate.wait();
            panic!("first")
        }
    });
    let b = spawn(|| -> i32 { panic!("second") });
    let raised = joinall_raising(&[&a, &b], WaitFor::all());
    assert!(matches!(raised, Err(GreenletError::Panicked(p)) if p.message() == "second"));
    gate.set();
    assert_eq!(joinall(&[&a, &b], WaitFor::all()), [1, 0], "b died first");
}

/// `TestStuff.test_joinall_count_raise_error`: without raising, `count` still limits the
/// wait: the greenlet that failed is ready, the one that loops forever is not.
#[test]
fn joinall_with_a_count_returns_after_that_many() {
    let sleeper = spawn(|| {
        loop {
            yield_now();
        }
    });
    let raiser = spawn(|| panic!("count"));
    assert_eq!(joinall(&[sleeper.as_ref(), raiser.as_ref()], WaitFor::any()), [1]);
    assert!(raiser.ready());
    assert!(!sleeper.ready());
    sleeper.kill();
    assert!(sleeper.ready());
}

/// `test__joinall.py`: a greenlet listed twice is joined (and reported) twice.
#[test]
fn joinall_accepts_a_greenlet_listed_twice() {
    let (a, b) = (spawn(|| ()), spawn(|| ()));
    assert_eq!(joinall(&[&a, &b, &a], WaitFor::all()), [0, 1, 2]);
}

/// gevent's `kill(block=False)`, `kill(timeout=t)` and `killall(...)` as methods that read
/// at the call site: a greenlet whose cleanup blocks is not dead after `kill_nowait`, nor
/// after a `kill_timeout` shorter than its cleanup; `killall` waits it out.
#[test]
fn kill_forms_read_at_the_call_site() {
    let gate = Event::new();
    let g = spawn({
        let gate = gate.clone();
        move || {
            struct Cleanup(Event);
            impl Drop for Cleanup {
                fn drop(&mut self) {
                    self.0.wait();
                }
            }
            let _cleanup = Cleanup(gate);
            sleep(LONG);
        }
    });
    yield_now();
    g.kill_nowait();
    assert!(!g.ready());
    assert!(!g.kill_timeout(Duration::ZERO));
    spawn(move || gate.set());
    killall(&[&g]);
    assert_eq!(g.error(), Some(GreenletError::Killed));
}

/// `TestLink.test_link_to_asyncresult`: a link to an async result copies the value into
/// it, also when linked after the greenlet died.
#[test]
fn a_link_to_an_async_result_copies_the_value() {
    let p = spawn(|| 100);
    let event: AsyncResult<i32> = AsyncResult::new();
    p.link(event.link_target());
    assert_eq!(event.get(), Ok(100));
    for _ in 0..3 {
        let event2: AsyncResult<i32> = AsyncResult::new();
        p.link(event2.link_target());
        assert_eq!(event2.get(), Ok(100));
    }
}

/// `TestLink.test_link_to_asyncresult_exception`: the failure is copied instead.
#[test]
fn a_link_to_an_async_result_copies_the_failure() {
    let p = spawn(|| -> i32 { panic!("test_link_to_asyncresult_exception") });
    let is_it = |r: Result<i32, GreenletError>| matches!(r, Err(GreenletError::Panicked(p)) if p.message() == "test_link_to_asyncresult_exception");
    let event: AsyncResult<i32, GreenletError> = AsyncResult::new();
    p.link(event.link_target());
    assert!(is_it(event.get()));
    for _ in 0..3 {
        let event2: AsyncResult<i32, GreenletError> = AsyncResult::new();
        p.link(event2.link_target());
        assert!(is_it(event2.get()));
    }
}

/// `TestAsyncResultAsLinkTarget.test_set` / `test_set_exception`: `link`, `link_value` and
/// `link_exception` into three async results; only the matching ones are set.
#[test]
fn link_value_and_link_exception_fire_only_on_their_outcome() {
    let g = spawn(|| 1);
    let [s1, s2, s3]: [AsyncResult<i32>; 3] = Default::default();
    g.link(s1.link_target());
    g.link_value(s2.link_target());
    g.link_exception(s3.link_target());
    assert_eq!(s1.get(), Ok(1));
    assert_eq!(s2.get(), Ok(1));
    assert!(!s3.ready(), "every link has run by now: the failure link did nothing");

    let g = spawn(|| -> i32 { panic!("test_set_exception") });
    let [s1, s2, s3]: [AsyncResult<i32>; 3] = Default::default();
    g.link(s1.link_target());
    g.link_value(s2.link_target());
    g.link_exception(s3.link_target());
    assert_eq!(s1.get(), Err("panicked: test_set_exception".to_string()));
    assert!(!s2.ready(), "every link has run by now: the value link did nothing");
    assert_eq!(s3.get(), Err("panicked: test_set_exception".to_string()));
}

/// `TestUnlink._test_func` with `link`, `link_value` and `link_exception`: each kind of
/// link can be unlinked before it runs.
#[test]
fn every_kind_of_link_can_be_unlinked() {
    let p = spawn(|| ());
    let ran = Rc::new(RefCell::new(Vec::new()));
    let log = |name: &'static str| {
        let ran = ran.clone();
        move |_: &verdant_hub::Greenlet<()>| ran.borrow_mut().push(name)
    };
    let ids = [p.link(log("link")), p.link_value(log("value")), p.link_exception(log("error"))];
    for id in ids {
        assert!(p.unlink(id));
        assert!(!p.unlink(id), "gone already");
    }
    p.join();
    assert!(ran.borrow().is_empty());
}

const LONG: Duration = Duration::from_secs(3600);
const TICK: Duration = Duration::from_millis(1);

/// `test__hub_join.py` `test_join_many_times`: joining an idle hub returns true, again
/// and again, and the hub stays usable.
#[test]
fn the_hub_can_be_joined_many_times() {
    assert!(join_hub());
    assert!(join_hub());
    sleep(TICK);
    assert!(join_hub());
}

/// `test__hub_join_timeout.py` `test_callback` and `test_later`: `wait()` with no objects
/// returns once a spawned greenlet, and a `spawn_later` one (a timer), finished.
#[test]
fn joining_the_hub_waits_for_spawned_and_later_greenlets() {
    for _ in 0..2 {
        let x = spawn(|| 5);
        assert!(join_hub_timeout(LONG));
        assert_eq!(x.value(), Some(5));
        let later = spawn_later(TICK, || 5);
        assert!(join_hub_timeout(LONG));
        assert_eq!(later.value(), Some(5));
    }
}

/// `test_timeout`: with a greenlet due in an hour, a short `wait(timeout=)` gives up and
/// returns false; once it is killed, `wait()` returns true.
#[test]
fn joining_the_hub_with_a_timeout_gives_up() {
    let x = spawn_later(LONG, || 5);
    assert!(!join_hub_timeout(TICK));
    assert!(!x.ready());
    x.kill();
    assert!(join_hub());
}

/// `test_event`: waiting on an event returns it while a later greenlet is still pending;
/// joining the hub after killing that greenlet returns true.
#[test]
fn waiting_on_objects_does_not_wait_for_the_hub() {
    let x = spawn_later(LONG, || 5);
    let event = Event::new();
    let event_set = spawn_later(TICK, {
        let event = event.clone();
        move || event.set()
    });
    assert_eq!(wait(&[&event as &dyn Waitable], WaitFor::all()), [0]);
    assert!(!x.ready());
    assert!(event_set.ready());
    assert!(event.is_set());
    x.kill();
    assert!(join_hub());
}

/// `test_ref_arg` / `test_ref_attribute`: an unref'd timer (an hour-long
/// `sleep(ref=False)`) does not keep `wait()` waiting.
#[test]
fn an_unrefd_sleep_does_not_keep_the_hub_busy() {
    for _ in 0..2 {
        let reporter = spawn(|| sleep_unref(LONG));
        assert!(join_hub());
        assert!(!reporter.ready());
        reporter.kill();
    }
    // A plain sleep next to it still counts.
    let background = spawn(|| sleep_unref(LONG));
    let sleeper = spawn(|| sleep(TICK));
    assert!(join_hub());
    assert!(sleeper.ready() && !background.ready());
}

/// `test__timeout.py` `Test._check_expires` (`test_expires`, `test_expires_false`): a
/// started timeout raises itself in the greenlet that started it, at its next blocking
/// point; started again after it fired, it raises again.
#[test]
fn a_started_timeout_expires_and_can_be_restarted() {
    let timeout = TimeoutTimer::new(TICK);
    timeout.start();
    let switch_forever = || Event::new().wait_timeout(LONG);
    assert_eq!(timeout.catch(switch_forever), Err(Timeout { after: TICK }), "must raise");
    assert!(!timeout.pending());
    timeout.start(); // restart
    assert!(timeout.pending());
    assert_eq!(timeout.catch(switch_forever), Err(Timeout { after: TICK }), "must raise again");
}

/// `test_context_manager` and `test_context_manager_false`: `with Timeout(t):` raises out
/// of the block; `with Timeout(t, False):` just leaves it.
#[test]
fn the_scope_forms_raise_or_leave_silently() {
    let raised = TimeoutTimer::new(TICK).scope(|| sleep(LONG));
    assert_eq!(raised, Err(Timeout { after: TICK }));
    let mut data = None;
    let left = TimeoutTimer::new(TICK).scope_silent(|| {
        sleep(LONG);
        data = Some("a line");
    });
    assert_eq!(left, None);
    assert_eq!(data, None, "the block was left at its blocking point");
    assert_eq!(TimeoutTimer::new(LONG).scope_silent(|| 7), Some(7));
}

/// `test_cancel`: a cancelled timeout does not fire, and is not pending.
#[test]
fn a_cancelled_timeout_never_fires() {
    let timeout = TimeoutTimer::new(TICK);
    timeout.start();
    timeout.cancel();
    assert_eq!(timeout.catch(|| sleep(Duration::from_millis(5))), Ok(()));
    assert!(!timeout.pending());
}

/// The scope-guard form: `let _t = TimeoutTimer::start_new(d)` bounds the rest of the
/// block for an outer `catch`, and cancels the countdown when dropped.
#[test]
fn a_timeout_guard_cancels_on_drop() {
    let timeout = TimeoutTimer::new(TICK);
    let caught = timeout.catch(|| {
        timeout.start(); // `Timeout.start_new()` inside the try block
        sleep(LONG);
    });
    assert_eq!(caught, Err(Timeout { after: TICK }));
    {
        let guard = TimeoutTimer::start_new(TICK);
        assert!(guard.pending());
    } // dropped: cancelled, so nothing fires into the sleep below
    sleep(Duration::from_millis(5));
    // Nested: an inner scope lets the outer timer's expiry pass through.
    let outer = TimeoutTimer::new(TICK);
    let inner = TimeoutTimer::new(LONG);
    let result = outer.scope(|| inner.scope(|| sleep(LONG)));
    assert_eq!(result, Err(Timeout { after: TICK }));
    assert!(!inner.pending(), "the inner scope's end cancelled it");
}

/// `test_with_timeout`: `with_timeout` stays: it raises on expiry, returns the value
/// otherwise.
#[test]
fn with_timeout_stays() {
    assert_eq!(with_timeout(TICK, || sleep(LONG)), Err(Timeout { after: TICK }));
    assert_eq!(with_timeout(TICK, || sleep(LONG)).unwrap_or(()), ());
    assert_eq!(with_timeout(LONG, || sleep(TICK)), Ok(()));
}
