//! Event and AsyncResult: who is woken, and exactly once.

use verdant_testutil as util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use util::panic_message_of;
use verdant_hub::WaitFor;
use verdant_hub::{sleep, spawn, yield_now};
use verdant_sync::{AsyncResult, Event};

#[test]
fn set_wakes_all_thousand_waiters_even_if_clear_follows_at_once() {
    let event = Event::new();
    let first = Rc::new(Cell::new(0));
    let second = Rc::new(Cell::new(0));
    let gs: Vec<_> = (0..1000)
        .map(|_| {
            let (e, first, second) = (event.clone(), first.clone(), second.clone());
            spawn(move || {
                e.wait();
                first.set(first.get() + 1);
                e.wait(); // waits again during the wake-up pass: not woken by that set
                second.set(second.get() + 1);
            })
        })
        .collect();
    yield_now(); // all 1000 park
    event.set();
    event.clear();
    yield_now();
    yield_now();
    assert_eq!(first.get(), 1000, "every waiter of that moment woke");
    assert_eq!(second.get(), 0, "re-waiting during the pass is not woken by it");
    event.set();
    verdant_hub::joinall(&gs, WaitFor::all());
    assert_eq!(second.get(), 1000);
}

#[test]
fn wait_returns_at_once_when_set_and_wait_timeout_reports() {
    let event = Event::new();
    assert!(!event.wait_timeout(Duration::from_millis(5)));
    event.set();
    event.wait();
    assert!(event.wait_timeout(Duration::from_millis(5)));
    assert!(event.is_set());
    event.clear();
    assert!(!event.is_set());
    let e = event.clone();
    spawn(move || {
        sleep(Duration::from_millis(2));
        e.set()
    });
    assert!(event.wait_timeout(Duration::from_secs(30)));
}

#[test]
fn waiting_on_an_event_nothing_sets_is_a_deadlock() {
    let event = Event::new();
    let msg = panic_message_of(|| event.wait());
    assert!(msg.contains("deadlock") && msg.contains("Event::wait()"), "{msg}");
}

#[test]
fn every_waiter_gets_the_async_result() {
    let result: AsyncResult<String> = AsyncResult::new();
    let readers: Vec<_> = (0..5)
        .map(|_| {
            let r = result.clone();
            spawn(move || r.get())
        })
        .collect();
    yield_now();
    assert!(!result.ready());
    result.set("done".to_string());
    for reader in readers {
        assert_eq!(reader.get().unwrap(), Ok("done".to_string()));
    }
    assert!(result.ready() && result.successful());
    assert_eq!(result.value().as_deref(), Some("done"));
    assert_eq!(result.error(), None);
}

/// gevent's `AsyncResult.get()` returns the value on every call; `take` moves it out (for
/// values that are not `Clone`) until the next `set`.
#[test]
fn an_async_result_is_read_again_until_taken() {
    let result: AsyncResult<String> = AsyncResult::new();
    result.set("v".to_string());
    assert_eq!(result.get().as_deref(), Ok("v"));
    assert_eq!(result.get().as_deref(), Ok("v"));
    assert_eq!(result.take().as_deref(), Ok("v"));
    assert!(result.get().unwrap_err().contains("taken"));
    assert_eq!(result.value(), None);
    assert!(result.ready() && result.successful(), "taken, it still came");
    result.set("again".to_string());
    assert_eq!(result.get().as_deref(), Ok("again"), "a later set replaces it");
}

#[test]
fn an_async_error_reaches_every_waiter() {
    let result: AsyncResult<u8, String> = AsyncResult::new();
    let r = result.clone();
    let reader = spawn(move || r.get());
    yield_now();
    result.set_error("failed".into());
    assert_eq!(reader.get().unwrap(), Err("failed".into()));
    assert!(result.ready() && !result.successful());
    assert_eq!(result.value(), None);
    assert_eq!(result.error().as_deref(), Some("failed"));
}

#[test]
fn async_result_timeouts() {
    let result: AsyncResult<u8> = AsyncResult::new();
    assert_eq!(result.get_timeout(Duration::from_millis(2)), None);
    assert!(!result.wait_timeout(Duration::from_millis(2)));
    result.set(1);
    assert_eq!(result.get_timeout(Duration::from_millis(2)), Some(Ok(1)));
    let msg = panic_message_of(|| {
        AsyncResult::<u8>::new().wait();
    });
    assert!(msg.contains("AsyncResult::get()"), "{msg}");
}
