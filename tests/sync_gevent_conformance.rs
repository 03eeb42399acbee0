//! verdant-sync against gevent's, eventlet's and CPython's own tests
//! (`src/gevent/tests/test__event.py`, `test__iwait.py`, `test__queue.py`, eventlet's
//! `tests/event_test.py`, CPython 3.13's `test_queue.py` shutdown tests): each test here is
//! the upstream test's scenario and assertion, in Rust. Orders and counts come from logs
//! and events, never from how long a sleep took.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use verdant::sync::{AsyncResult, Event, WaitFor, Waitable, eventlet, wait};
use verdant::{spawn, yield_now};

/// `TestEventBasics.test_wait_while_notifying`: two greenlets wait; main sets the event and
/// waits on it itself. The two woken by `set` return from `wait` first.
#[test]
fn a_new_waiter_on_a_set_event_lets_the_woken_ones_run_first() {
    let event = Event::new();
    let results = Rc::new(RefCell::new(Vec::new()));
    let wait_then_append = {
        let (event, results) = (event.clone(), results.clone());
        move |arg: u32| {
            event.wait();
            results.borrow_mut().push(arg);
        }
    };
    for arg in [1, 2] {
        let f = wait_then_append.clone();
        spawn(move || f(arg));
    }
    yield_now(); // gevent.idle(): both are waiting now
    event.set();
    wait_then_append(3);
    assert_eq!(*results.borrow(), [1, 2, 3]);
}

/// `TestGeventWaitOnEvent.test_set_during_wait`: a waiter woken by `set` clears the event;
/// a `wait` on it afterwards must not see it ready.
#[test]
fn a_cleared_event_is_not_reported_by_a_later_wait() {
    let event = Event::new();
    let waiter = {
        let event = event.clone();
        spawn(move || {
            let setter = {
                let event = event.clone();
                spawn(move || event.set())
            };
            event.wait();
            assert!(event.is_set());
            setter.join();
            event.clear();
            assert!(!event.is_set());
            let ready = wait(&[&event as &dyn Waitable], WaitFor::all().timeout(Duration::ZERO));
            assert!(!event.is_set());
            assert!(ready.is_empty(), "{ready:?}");
        })
    };
    waiter.get().unwrap();
}

/// `TestWait`, `TestWait_count1`, `TestWait_count2` (without the timeout, which makes
/// the upstream test timing-dependent): a sender sets five events and five async results
/// one at a time, from the end of each list; `wait` returns `count` of them, in the order
/// they were set, and returns before the sender is done when `count` is smaller.
#[test]
fn wait_returns_at_most_count_in_the_order_they_became_ready() {
    let in_order = [4, 9, 3, 8, 2, 7, 1, 6, 0, 5];
    for count in [None, Some(1), Some(2)] {
        let events: Vec<Event> = (0..5).map(|_| Event::new()).collect();
        let asyncs: Vec<AsyncResult<u8>> = (0..5).map(|_| AsyncResult::new()).collect();
        let sender = spawn({
            let (mut events, mut asyncs) = (events.clone(), asyncs.clone());
            move || {
                while !events.is_empty() || !asyncs.is_empty() {
                    yield_now(); // gevent.sleep(period)
                    events.pop().inspect(Event::set);
                    yield_now();
                    asyncs.pop().inspect(|a| a.set(1));
                }
            }
        });
        let objects: Vec<&dyn Waitable> = (events.iter().map(|e| e as &dyn Waitable))
            .chain(asyncs.iter().map(|a| a as &dyn Waitable))
            .collect();
        let results = wait(&objects, WaitFor { count, timeout: None });
        match count {
            None => {
                assert_eq!(results, in_order);
                sender.join();
            }
            Some(n) => {
                assert_eq!(results, in_order[..n], "count {n}");
                assert!(!sender.ready());
                sender.kill();
            }
        }
    }
}

/// `test_gevent_wait_twice_when_already_set`: waiting twice on a set event returns it
/// both times.
#[test]
fn waiting_twice_on_a_set_event_returns_it_twice() {
    let event = Event::new();
    event.set();
    assert_eq!(wait(&[&event as &dyn Waitable], WaitFor::all()), [0]);
    assert_eq!(wait(&[&event as &dyn Waitable], WaitFor::all()), [0]);
}

/// eventlet `test_waiting_for_event`: a value sent by another greenlet reaches `wait`.
#[test]
fn eventlet_event_delivers_what_is_sent() {
    let evt: eventlet::Event<&str> = eventlet::Event::new();
    let e = evt.clone();
    spawn(move || e.send("some stuff").unwrap());
    assert_eq!(evt.wait(), Ok("some stuff"));
}

/// eventlet `test_multiple_waiters` / `_with_exception`: every waiter wakes.
#[test]
fn eventlet_event_wakes_every_waiter() {
    for exception in [false, true] {
        let evt: eventlet::Event<()> = eventlet::Event::new();
        let results = Rc::new(RefCell::new(Vec::new()));
        let waiters: Vec<eventlet::Event<()>> = (0..5).map(|_| eventlet::Event::new()).collect();
        for i_am_done in &waiters {
            let (evt, results, i_am_done) = (evt.clone(), results.clone(), i_am_done.clone());
            spawn(move || {
                evt.wait().unwrap();
                results.borrow_mut().push(true);
                i_am_done.send(()).unwrap();
                assert!(!exception, "a waiter that fails after waking");
            });
        }
        yield_now(); // let the spawns start waiting
        evt.send(()).unwrap();
        for w in &waiters {
            w.wait().unwrap();
        }
        assert_eq!(results.borrow().len(), 5);
    }
}

/// eventlet `test_reset`: reset before a send is an error; a second send without a reset
/// is an error and the first value stays; after a reset a new value can be sent.
#[test]
fn eventlet_event_sends_once_until_reset() {
    let evt: eventlet::Event<&str> = eventlet::Event::new();
    assert_eq!(evt.reset(), Err(eventlet::NotSent));
    let e = evt.clone();
    spawn(move || e.send("some stuff").unwrap());
    assert_eq!(evt.wait(), Ok("some stuff"));
    assert_eq!(evt.send("second stuff"), Err(eventlet::AlreadySent("second stuff")));
    assert_eq!(evt.wait(), Ok("some stuff"));
    evt.reset().unwrap();
    let e = evt.clone();
    spawn(move || e.send("second stuff").unwrap());
    assert_eq!(evt.wait(), Ok("second stuff"));
}

/// eventlet `test_double_exception`: an exception sent is raised by `wait`; after a reset
/// it is not seen again (the wait times out).
#[test]
fn eventlet_event_forgets_an_exception_on_reset() {
    let evt: eventlet::Event<(), String> = eventlet::Event::new();
    evt.send_exception("from test_double_exception".to_string()).unwrap();
    assert!(evt.has_exception());
    assert_eq!(evt.wait(), Err("from test_double_exception".to_string()));
    evt.reset().unwrap();
    assert_eq!(evt.wait_timeout(Duration::from_millis(1)), None);
}
