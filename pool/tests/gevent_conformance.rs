//! Pools against the scenarios gevent's and eventlet's own tests pin down (issue 11), each
//! test in the shape of the upstream one: gevent's `test__greenletset.py` (a member is
//! shot once; kill with and without blocking), `test__pool.py` (join with and without a
//! timeout; an imap over a blocking input), eventlet's `greenpool_test.py` (a reentrant
//! spawn into a full pool; piles spawned into from other greenlets, the stress ordering
//! check; the defaults).
//!
//! Order and counts come from events, counters and yields, never from how long a sleep
//! took: the one timeout here (`kill_timeout` on greenlets that never die) can only expire.

use verdant_testutil as util;

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;

use util::panic_message_of;
use verdant_hub::{GreenletError, GreenletRef, sleep, spawn, yield_now};
use verdant_pool::{GreenPile, GreenPool, Group, MapError, Pool};
use verdant_sync::{Event, Queue};

// ----- gevent test__greenletset.py: Group.kill / killone --------------------------------

/// gevent's `Undead`: a greenlet that catches every kill and counts it, until `released`
/// (gevent's `SpecialError`).
struct Undead {
    shots: Rc<Cell<u32>>,
    released: Rc<Cell<bool>>,
}

impl Undead {
    fn spawn() -> (GreenletRef, Undead) {
        let undead = Undead { shots: Rc::default(), released: Rc::default() };
        let (shots, released) = (undead.shots.clone(), undead.released.clone());
        let greenlet = spawn(move || {
            loop {
                // A plain catch_unwind swallows the kill, as `except:` swallows GreenletExit.
                match std::panic::catch_unwind(|| sleep(Duration::from_secs(1))) {
                    Ok(()) => {}
                    Err(_) if released.get() => break,
                    Err(_) => shots.set(shots.get() + 1),
                }
            }
        });
        (greenlet.as_ref(), undead)
    }

    fn release(&self, greenlet: &GreenletRef) {
        self.released.set(true);
        greenlet.kill();
    }
}

#[test]
fn kill_fires_once() {
    let (p1, u1) = Undead::spawn();
    let (p2, u2) = Undead::spawn();
    let check = |count1: u32, count2: u32| {
        assert!(!p1.ready() && !p2.ready(), "the undead live on");
        assert_eq!((u1.shots.get(), u2.shots.get()), (count1, count2));
    };
    yield_now(); // both start and sleep
    let s: Group = [p1.clone(), p2.clone()].into_iter().collect();
    assert_eq!(s.len(), 2);
    check(0, 0);
    s.killone_nowait(&p1);
    check(0, 0);
    yield_now();
    check(1, 0);
    s.killone(&p1); // dying already: not shot again, and no wait
    check(1, 0);
    s.killone(&p1);
    check(1, 0);
    s.kill_nowait();
    s.kill_nowait();
    s.kill_nowait();
    check(1, 0);
    yield_now();
    check(1, 1);
    // Blocking: it waits for the undead to die, shooting nobody again.
    assert!(!s.kill_timeout(Duration::from_millis(20)));
    assert_eq!(s.len(), 2);
    check(1, 1);

    u1.release(&p1);
    u2.release(&p2);
    assert!(s.is_empty());
}

#[test]
fn kill_block() {
    let s = Group::new();
    s.spawn(|| sleep(Duration::from_secs(60)));
    s.spawn(|| sleep(Duration::from_secs(120)));
    assert_eq!(s.len(), 2);
    s.kill();
    assert!(s.is_empty());
}

#[test]
fn kill_noblock() {
    let s = Group::new();
    s.spawn(|| sleep(Duration::from_secs(60)));
    s.spawn(|| sleep(Duration::from_secs(120)));
    assert_eq!(s.len(), 2);
    // Started: a greenlet killed before it started is dead (and gone) at once, as its
    // links run right away here, where gevent runs them at the next loop iteration.
    yield_now();
    s.kill_nowait();
    assert_eq!(s.len(), 2, "not dead before they run");
    yield_now();
    assert!(s.is_empty());
}

#[test]
fn a_blocking_killone_on_a_member_already_dead_returns_at_once() {
    let s = Group::new();
    let dead = s.spawn(|| 7);
    let alive = s.spawn(|| sleep(Duration::from_secs(60)));
    dead.join();
    // Anything ready would run if killone switched away.
    let switched = Rc::new(Cell::new(false));
    let flag = switched.clone();
    spawn(move || flag.set(true));
    s.killone(&dead);
    assert!(s.killone_timeout(&dead, Duration::from_secs(60)));
    assert!(!switched.get(), "killone of a dead member did not wait");
    assert_eq!(dead.get(), Ok(7), "left alone");
    s.killone(&alive);
    assert_eq!(alive.error(), Some(GreenletError::Killed));
    assert!(s.is_empty());
}

#[test]
fn waitall_with_raise_error() {
    // test_waitall: `join(raise_error=True)` waits for every member.
    let s = Group::new();
    let gate = Event::new();
    for _ in 0..2 {
        let gate = gate.clone();
        s.spawn(move || gate.wait());
    }
    spawn(move || gate.set());
    assert_eq!(s.join_raising(), Ok(()));
    assert!(s.is_empty());
    // ...and reports a member that failed.
    s.spawn(|| -> () { panic!("member failed") });
    assert_eq!(s.join_raising(), Err(GreenletError::Panicked("member failed".into())));
}

// ----- gevent test__pool.py: join -------------------------------------------------------

#[test]
fn join_empty() {
    // TestJoinEmpty: true at once, without switching.
    let switched = Rc::new(Cell::new(false));
    let flag = switched.clone();
    spawn(move || flag.set(true));
    let p = Pool::default();
    p.join();
    assert!(p.join_timeout(Duration::ZERO));
    assert_eq!(p.join_raising_timeout(Duration::ZERO), Ok(true));
    assert!(!switched.get());
}

#[test]
fn spawn_and_wait() {
    // TestSpawn.testSpawnAndWait: a join that times out on a full pool says so.
    let p = Pool::new(1);
    let gate = Event::new();
    let g = gate.clone();
    p.spawn(move || g.wait());
    assert_eq!(p.len(), 1);
    assert!(!p.join_timeout(Duration::from_millis(10)), "waiting on a full pool: false");
    gate.set();
    p.join();
    assert_eq!(p.len(), 0);
}

// ----- gevent test__pool.py: a kill while the map reads its input ----------------------

/// An input that takes its items from a queue (gevent issue #423's `imap(f, queue)`), and
/// sets `reading` each time it waits for one.
fn queue_input(
    q: &Queue<u64>,
    reading: &Rc<RefCell<Option<Event>>>,
) -> impl Iterator<Item = u64> + use<> {
    let (q, reading) = (q.clone(), reading.clone());
    std::iter::from_fn(move || {
        if let Some(event) = reading.borrow().as_ref() {
            event.set();
        }
        q.get().ok()
    })
}

#[test]
fn killing_the_pool_while_its_map_reads_the_input_reports_a_kill() {
    for unordered in [false, true] {
        let pool = Pool::new(3);
        let q = Queue::new();
        q.put(123).unwrap();
        let reading = Rc::new(RefCell::new(None));
        let input = queue_input(&q, &reading);
        let mut it =
            if unordered { pool.imap_unordered(|x| x, input) } else { pool.imap(|x| x, input) };
        let second_read = Event::new();
        *reading.borrow_mut() = Some(second_read.clone());
        assert_eq!(it.next(), Some(Ok(123)));
        second_read.wait(); // the feeder is inside the input, waiting on the queue
        pool.kill();
        assert_eq!(it.next(), Some(Err(MapError::Killed { index: 1 })), "unordered: {unordered}");
        assert_eq!(it.next(), None);
    }
}

#[test]
fn a_map_killed_with_its_pool_fails_as_killed() {
    let pool = Group::new();
    let q: Queue<u64> = Queue::new();
    let reading = Rc::new(RefCell::new(Some(Event::new())));
    let entered = reading.borrow().clone().unwrap();
    let input = queue_input(&q, &reading);
    let result = pool.map_async(|x| x, input);
    entered.wait();
    pool.kill();
    let error = result.get().unwrap().unwrap_err();
    assert_eq!(error, MapError::Killed { index: 0 });
    assert_eq!(error.to_string(), "the map was killed after 0 items");
}

// ----- eventlet greenpool_test.py: GreenPool --------------------------------------------

#[test]
fn reentrant() {
    let pool = GreenPool::new(1);
    let p = pool.clone();
    let outer = pool.spawn(move || {
        let waiter = p.spawn(|| "reenter");
        assert_eq!(waiter.get(), Ok("reenter"));
        assert!(waiter.ready(), "ran inline: dead when returned");
    });
    assert_eq!(outer.get(), Ok(()));

    let evt = Event::new();
    let (p, e) = (pool.clone(), evt.clone());
    pool.spawn_n(move || {
        p.spawn_n(|| "reenter");
        e.set();
    });
    evt.wait();
    pool.waitall().unwrap();
}

#[test]
fn a_reentrant_spawn_with_room_spawns_a_member() {
    // Only a full pool runs a member's spawn inline: with room, it is a new member.
    let pool = GreenPool::new(2);
    let p = pool.clone();
    let running_inside = pool.spawn(move || {
        let inner = p.spawn(yield_now);
        let running = p.running();
        inner.join();
        running
    });
    assert_eq!(running_inside.get(), Ok(2));
}

#[test]
fn a_panic_in_an_inline_spawn_goes_on_in_the_caller() {
    let pool = GreenPool::new(1);
    let p = pool.clone();
    let outer = pool.spawn(move || {
        let msg = panic_message_of(|| {
            p.spawn(|| -> u8 { panic!("inline") });
        });
        p.spawn_n(|| -> u8 { panic!("dropped, as eventlet's spawn_n drops it") });
        msg
    });
    assert_eq!(outer.get().as_deref(), Ok("inline"));
}

#[test]
fn greenpool_defaults() {
    // GreenPool() and GreenPile() are eventlet's 1000; gevent's Pool() is unlimited.
    assert_eq!(GreenPool::default().size(), Some(1000));
    assert_eq!(GreenPile::<()>::default().pool().size(), Some(1000));
    assert_eq!(Pool::default().size(), None);
    assert!(Group::default().is_empty());
    // test_greenpool_type_check: sizes 0 and 1 are fine.
    assert_eq!(GreenPool::new(0).free(), 0);
    assert_eq!(GreenPool::new(1).free(), 1);
}

// ----- eventlet greenpool_test.py: GreenPile --------------------------------------------

/// eventlet's `passthru`: yields a varying number of times, then returns its argument.
fn passthru<T>(arg: T, yields: usize) -> T {
    for _ in 0..yields % 3 {
        yield_now();
    }
    arg
}

#[test]
fn pile() {
    let p = GreenPile::new(4);
    for i in 0..10usize {
        p.spawn(move || passthru(i, i));
    }
    assert_eq!(p.map(Result::unwrap).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
}

#[test]
fn empty_pile() {
    let p = GreenPile::<u8>::new(4);
    assert_eq!(p.count(), 0);
}

#[test]
fn constructing_from_pool() {
    let pool = GreenPool::new(2);
    let pile1 = GreenPile::with_pool(&pool);
    let pile2 = GreenPile::with_pool(&pool);
    let bunch_of_work = |pile: &GreenPile<usize>, unique: usize| {
        let pile = pile.clone();
        spawn(move || {
            for i in 0..10 {
                pile.spawn(move || passthru(i + unique, i));
            }
        });
    };
    bunch_of_work(&pile1, 0);
    bunch_of_work(&pile2, 100);
    yield_now();
    assert_eq!(pile2.map(Result::unwrap).collect::<Vec<_>>(), (100..110).collect::<Vec<_>>());
    assert_eq!(pile1.map(Result::unwrap).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
}

/// eventlet's `StressException`: a task's failure carrying its token.
struct Stress((usize, usize));

/// Keeps the expected `Stress` panics off stderr; every other panic is printed as usual.
fn quiet_stress_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Stress>() {
                print(info);
            }
        }));
    });
}

/// eventlet's `pressure`: yields a varying number of times, then returns its token or
/// (one time in five) fails with it.
fn pressure(token: (usize, usize)) -> (usize, usize) {
    let token = passthru(token, token.1 + token.0);
    if (token.1 + token.0) % 5 == 4 {
        std::panic::panic_any(Stress(token));
    }
    token
}

/// eventlet's `spawn_order_check`: three greenlets spawn into one pile while the main
/// code iterates it; each one's results come out in its spawn order, and all of them.
fn spawn_order_check(concurrency: usize) {
    quiet_stress_panics();
    let p = GreenPile::new(concurrency);
    let iters = 300;
    let makework = |unique: usize| {
        let p = p.clone();
        spawn(move || {
            for i in 0..iters {
                p.spawn(move || pressure((unique, i)));
            }
        });
    };
    makework(1);
    makework(2);
    makework(3);
    p.spawn(|| pressure((0, 0)));
    let mut latest = [None; 4];
    let mut received = 0;
    for result in p.clone() {
        let (unique, order) = match result {
            Ok(token) => token,
            Err(GreenletError::Panicked(panic)) => {
                let payload = panic.take_payload().expect("the payload");
                payload.downcast::<Stress>().map(|s| s.0).unwrap_or_else(|_| panic!("not ours"))
            }
            Err(other) => panic!("{other}"),
        };
        received += 1;
        if received % 5 == 0 {
            yield_now();
        }
        assert!(latest[unique] < Some(order), "{unique}: {order} after {:?}", latest[unique]);
        latest[unique] = Some(order);
    }
    assert_eq!(latest[1..], [Some(iters - 1); 3]);
    assert_eq!(received, 3 * iters + 1);
    assert!(p.is_empty());
}

#[test]
fn ordering_5() {
    spawn_order_check(5);
}

#[test]
fn ordering_50() {
    spawn_order_check(50);
}

#[test]
fn a_pile_whose_spawn_is_killed_while_waiting_does_not_wait_for_it() {
    // test_pile_spawn_times_out: a spawn into a full pool that gives up does not break the
    // sequence (here a kill stands for eventlet's Timeout).
    let p = GreenPile::new(4);
    let gate = Event::new();
    for i in 0..4usize {
        let gate = gate.clone();
        p.spawn(move || {
            gate.wait();
            i
        });
    }
    let pile = p.clone();
    let stuck = spawn(move || pile.spawn(|| 99));
    yield_now();
    assert_eq!(p.len(), 5, "counted while it waits for a place");
    stuck.kill();
    assert_eq!(p.len(), 4);
    gate.set();
    for i in 4..10usize {
        p.spawn(move || passthru(i, i));
    }
    assert_eq!(p.map(Result::unwrap).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_reader_waiting_on_a_spawn_that_fails_ends() {
    // The reader waits for a spawn in progress; when that spawn is killed, it ends.
    let full = GreenPool::new(1);
    let gate = Event::new();
    let g = gate.clone();
    full.spawn(move || g.wait());
    let p = GreenPile::<u8>::with_pool(&full);
    let pile = p.clone();
    let stuck = spawn(move || pile.spawn(|| 1));
    yield_now();
    let reader = spawn(move || p.count());
    yield_now();
    assert!(!reader.ready(), "the reader waits for the spawn in progress");
    stuck.kill();
    assert_eq!(reader.get(), Ok(0));
    gate.set();
    full.waitall().unwrap();
}

#[test]
fn a_kill_of_an_undead_is_not_repeated_by_later_kills_of_its_pool() {
    // The pool form of kill_fires_once: members that survive are waited for, not re-shot.
    let pool = Pool::new(2);
    let shots = Rc::new(Cell::new(0u32));
    let released = Rc::new(Cell::new(false));
    let members: Vec<_> = (0..2)
        .map(|_| {
            let (shots, released) = (shots.clone(), released.clone());
            pool.spawn(move || {
                loop {
                    let slept = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        sleep(Duration::from_secs(1))
                    }));
                    match slept {
                        Ok(()) => {}
                        Err(_) if released.get() => break,
                        Err(_) => shots.set(shots.get() + 1),
                    }
                }
            })
        })
        .collect();
    yield_now();
    for _ in 0..3 {
        pool.kill_nowait();
        yield_now();
    }
    assert_eq!(shots.get(), 2, "each member shot once");
    released.set(true);
    for member in &members {
        member.kill();
    }
    assert!(pool.is_empty());
}
