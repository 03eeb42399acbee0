//! verdant-sync against gevent's, eventlet's and CPython's own tests
//! (`src/gevent/tests/test__event.py`, `test__iwait.py`, `test__queue.py`, eventlet's
//! `tests/event_test.py`, CPython 3.13's `test_queue.py` shutdown tests): each test here is
//! the upstream test's scenario and assertion, in Rust. Orders and counts come from logs
//! and events, never from how long a sleep took.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use verdant_hub::{spawn, yield_now};
use verdant_sync::{
    AsyncResult, Event, GetError, JoinableQueue, PutError, Queue, Semaphore, WaitFor, Waitable,
    eventlet, iwait, wait,
};

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

/// CPython 3.13 `test_queue` `_shutdown_all_methods_in_one_thread(immediate=False)`:
/// puts fail at once, gets drain the items, then fail; join returns once they are done.
#[test]
fn a_shutdown_queue_lets_getters_drain_first() {
    let q = JoinableQueue::bounded(2);
    q.put("L").unwrap();
    q.put_nowait("O").unwrap();
    q.close(); // shutdown(immediate=False)
    assert_eq!(q.put("E"), Err(PutError::Closed("E")));
    assert_eq!(q.put_nowait("W"), Err(PutError::Closed("W")));
    assert!("LO".contains(q.get().unwrap()));
    q.task_done().unwrap();
    assert!("LO".contains(q.get().unwrap()));
    q.task_done().unwrap();
    q.join();
    assert_eq!(q.get(), Err(GetError::Closed));
    assert_eq!(q.get_nowait(), Err(GetError::Closed));
    assert_eq!(q.get_timeout(Duration::from_secs(1)), Err(GetError::Closed));
}

/// The same with `immediate=True`: the items are discarded, gets fail at once, there is no
/// task left to mark done, and join returns.
#[test]
fn an_immediate_shutdown_discards_the_items() {
    let q = JoinableQueue::bounded(2);
    q.put("L").unwrap();
    q.put_nowait("O").unwrap();
    q.shutdown_immediate();
    assert_eq!(q.put("E"), Err(PutError::Closed("E")));
    assert_eq!(q.put_nowait("W"), Err(PutError::Closed("W")));
    assert_eq!(q.get(), Err(GetError::Closed));
    assert_eq!(q.get_nowait(), Err(GetError::Closed));
    assert!(q.task_done().is_err());
    q.join();
}

/// `test_shutdown_immediate_...` with blocked greenlets: every getter of an empty queue
/// and every putter of a full one wakes up with the error; a joiner is released.
#[test]
fn an_immediate_shutdown_wakes_every_waiter() {
    let empty: Queue<u8> = Queue::new();
    let getters: Vec<_> = (0..3)
        .map(|_| {
            let q = empty.clone();
            spawn(move || q.get())
        })
        .collect();
    let full = JoinableQueue::bounded(1);
    full.put(0).unwrap();
    let putters: Vec<_> = (1..4)
        .map(|i| {
            let q = full.clone();
            spawn(move || q.put(i))
        })
        .collect();
    let joiner = {
        let q = full.clone();
        spawn(move || q.join())
    };
    yield_now(); // everyone waits now
    empty.shutdown_immediate();
    full.shutdown_immediate();
    for g in getters {
        assert_eq!(g.get(), Ok(Err(GetError::Closed)));
    }
    for (i, g) in (1..).zip(putters) {
        assert_eq!(g.get(), Ok(Err(PutError::Closed(i))));
    }
    joiner.join();
    assert_eq!(full.unfinished_tasks(), 0);
}

/// `test__iwait.py` `test_noiter`: a semaphore is ready for `iwait` once a permit is free;
/// waiting takes no permit.
#[test]
fn a_semaphore_is_ready_when_a_permit_is_free() {
    let (sem1, sem2) = (Semaphore::new(0), Semaphore::new(0));
    let s = sem1.clone();
    spawn(move || s.release());
    let objects: [&dyn Waitable; 2] = [&sem1, &sem2];
    assert_eq!(iwait(&objects, WaitFor::all()).next(), Some(0));
    assert_eq!(sem1.available(), 1, "waiting took no permit");
    // A permit handed straight to an acquirer does not make it ready.
    let holder = sem2.clone();
    let acquirer = spawn(move || std::mem::forget(holder.acquire()));
    yield_now();
    sem2.release(); // goes to the acquirer
    acquirer.join();
    assert_eq!(wait(&[&sem2 as &dyn Waitable], WaitFor::all().timeout(Duration::ZERO)), []);
}
