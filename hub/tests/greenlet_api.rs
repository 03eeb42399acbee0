//! The Greenlet handle: ids, names, current(), new/start, join_timeout, get.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use verdant_hub::{Builder, Greenlet, GreenletError, current, sleep, spawn, yield_now};
use verdant_sync::Event;

#[test]
fn ids_are_unique_and_current_names_the_running_greenlet() {
    let main = current();
    assert!(main.is_main());
    assert_eq!(main.id(), 0);
    let g = spawn(|| current().id());
    let id = g.id();
    assert!(id > 0);
    assert_eq!(g.get(), Ok(id));
    assert_ne!(spawn(|| ()).id(), id);
}

#[test]
fn names_and_debug() {
    let g = Builder::new().name("fetcher").spawn(|| current().name().map(String::from)).unwrap();
    assert_eq!(g.name(), Some("fetcher"));
    let debug = format!("{g:?}");
    assert!(debug.contains("fetcher"), "{debug}");
    assert_eq!(g.get(), Ok(Some("fetcher".to_string())));
    assert!(format!("{g:?}").contains("Ok"));
}

#[test]
fn a_new_greenlet_runs_only_once_started() {
    let g = Greenlet::new(|| 5);
    assert!(!g.started());
    yield_now();
    assert!(!g.ready(), "not started: never scheduled");
    g.start();
    g.start(); // a second start does nothing
    assert!(g.started());
    assert_eq!(g.get(), Ok(5));
}

#[test]
fn join_timeout_reports_whether_the_greenlet_died() {
    // The greenlet ends only when the gate opens, so the first wait must time out however
    // long its 1 ms takes.
    let gate = Event::new();
    let g = spawn({
        let gate = gate.clone();
        move || gate.wait()
    });
    assert!(!g.join_timeout(Duration::from_millis(1)));
    assert!(!g.ready());
    gate.set();
    assert!(g.join_timeout(Duration::from_secs(30)));
    assert!(g.successful());
}

#[test]
fn the_value_is_read_until_taken_and_errors_repeat() {
    let g = spawn(|| String::from("value"));
    let clone = g.clone();
    assert_eq!(g.get().as_deref(), Ok("value"));
    assert_eq!(clone.get().as_deref(), Ok("value"), "get leaves the value for the next reader");
    assert_eq!(clone.take().as_deref(), Ok("value"));
    assert_eq!(g.get(), Err(GreenletError::Taken), "take moved it out, for every handle");
    assert_eq!(g.take(), Err(GreenletError::Taken));
    assert_eq!(g.value(), None);
    assert!(clone.successful());
    let bad = spawn(|| -> u8 { panic!("always") });
    assert!(bad.get().is_err());
    assert_eq!(bad.get(), Err(GreenletError::Panicked("always".into())));
}

/// gevent's `test__greenlet`: `get()` of a finished greenlet returns its value each time.
#[test]
fn get_twice_returns_the_value_both_times() {
    let g = spawn(|| vec![1, 2, 3]);
    assert_eq!(g.get(), Ok(vec![1, 2, 3]));
    assert_eq!(g.get(), Ok(vec![1, 2, 3]));
    assert_eq!(g.value(), Some(vec![1, 2, 3]));
    assert!(g.successful());
}

/// gevent: a link added to a greenlet that already finished runs (at once here), and the
/// value is still there for it and for later readers.
#[test]
fn a_link_after_the_end_runs_and_the_value_stays() {
    let g = spawn(|| String::from("value"));
    g.join();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    g.link(move |g| *s.borrow_mut() = Some(g.get()));
    assert_eq!(*seen.borrow(), Some(Ok("value".to_string())));
    assert_eq!(g.get().as_deref(), Ok("value"));
}

/// gevent: `value` is `None` until the greenlet succeeded; a failure is reported by every
/// `get`, never as a value.
#[test]
fn value_is_none_before_the_end_and_after_a_failure() {
    let g = spawn(|| 5u8);
    assert_eq!(g.value(), None, "not run yet");
    assert_eq!(g.get(), Ok(5));
    assert_eq!(g.value(), Some(5));
    let killed = spawn(|| sleep(Duration::from_secs(3600)));
    yield_now();
    killed.kill();
    assert_eq!(killed.value(), None);
    assert_eq!(killed.get(), Err(GreenletError::Killed));
    assert_eq!(killed.get(), Err(GreenletError::Killed));
}

#[test]
fn greenlets_spawn_greenlets() {
    let outer = spawn(|| {
        let inner: Vec<_> = (0..10).map(|i| spawn(move || i * 2)).collect();
        inner.iter().map(|g| g.get().unwrap()).sum::<i32>()
    });
    assert_eq!(outer.get(), Ok(90));
}

#[test]
fn untyped_handles_compare_and_join() {
    let g = spawn(|| sleep(Duration::from_millis(1)));
    let r = g.as_ref();
    assert_eq!(r, g.as_ref());
    assert_ne!(r, current());
    r.join();
    assert!(g.ready());
}

#[test]
fn the_hub_counts_greenlets_spawned_and_finished_whatever_their_end() {
    let before = verdant_hub::stats();
    let gate = verdant_sync::Event::new();
    let returns = spawn(|| 1);
    let panics = spawn(|| panic!("on purpose"));
    let killed_before_start = spawn(|| ());
    killed_before_start.kill();
    let g = gate.clone();
    let waiting = spawn(move || g.wait());
    yield_now();
    let _ = (returns.get(), panics.get());
    let now = verdant_hub::stats();
    assert_eq!(now.spawned - before.spawned, 4);
    assert_eq!(now.finished - before.finished, 3, "one is still alive");
    gate.set();
    waiting.join();
    assert_eq!(verdant_hub::stats().finished - before.finished, 4);
}

/// Links run in the order they were added, whether kept inline (the first two) or
/// spilled to the greenlet's cold part, with unlinks before the end and during it.
#[test]
fn links_run_in_order_across_inline_and_spilled_ones() {
    let g = verdant_hub::spawn(|| 7);
    let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let ids: std::rc::Rc<std::cell::RefCell<Vec<verdant_hub::LinkId>>> = Default::default();
    for n in 0..6 {
        let (log, all) = (log.clone(), ids.clone());
        let id = g.link(move |g| {
            log.borrow_mut().push(n);
            if n == 2 {
                g.unlink(all.borrow()[4]); // a spilled link, removed while links run
            }
        });
        ids.borrow_mut().push(id);
    }
    g.unlink(ids.borrow()[1]); // an inline one: the spilled ones move up behind it
    let late = log.clone();
    g.link(move |_| late.borrow_mut().push(6)); // added after the removal: runs last
    g.join();
    assert_eq!(*log.borrow(), [0, 2, 3, 5, 6]);
}
