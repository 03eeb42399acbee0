//! What is particular to Group, Pool, GreenPool and GreenPile.

use verdant_testutil as util;

use std::time::Duration;

use util::Log;
use verdant_hub::WaitFor;
use verdant_hub::{Greenlet, GreenletError, sleep, spawn, yield_now};
use verdant_pool::{GreenPile, GreenPool, Group, Pool, PoolFull, WaitallFromMember};

#[test]
fn spawn_takes_a_place_at_once_and_apply_async_never_waits() {
    // gevent's test_execute_async.
    let pool = Pool::new(2);
    let log = Log::new();
    assert_eq!(pool.free_count(), 2);
    let l = log.clone();
    let first = pool.spawn(move || l.push("1"));
    assert_eq!(pool.free_count(), 1);
    first.join();
    assert_eq!(pool.free_count(), 2);
    let async_push = |s: &'static str| {
        let l = log.clone();
        pool.apply_async(move || l.push(s))
    };
    let a = async_push("2");
    assert_eq!(pool.free_count(), 1);
    let b = async_push("3");
    assert_eq!(pool.free_count(), 0);
    let c = async_push("4"); // the pool is full: returns at once anyway
    assert_eq!(log.take(), ["1"], "nothing ran yet");
    verdant_hub::joinall(&[a, b, c], WaitFor::all());
    let mut ran = log.take();
    ran.sort();
    assert_eq!(ran, ["2", "3", "4"]);
}

#[test]
fn spawn_waits_while_the_pool_is_full() {
    let pool = Pool::new(1);
    let log = Log::new();
    let l = log.clone();
    pool.spawn(move || {
        sleep(Duration::from_millis(10));
        l.push("first done");
    });
    assert_eq!(pool.len(), 1);
    let l = log.clone();
    pool.spawn(move || l.push("second ran")); // waits for the first to finish
    log.push("second spawned");
    assert_eq!(pool.len(), 1);
    pool.join();
    assert_eq!(log.take(), ["first done", "second spawned", "second ran"]);
}

#[test]
fn add_and_start_fail_with_pool_full_without_waiting_or_after_the_timeout() {
    let pool = Pool::new(1);
    let first = spawn(|| sleep(Duration::from_secs(60)));
    let second = spawn(|| sleep(Duration::from_secs(60)));
    pool.add(&first);
    assert_eq!((pool.free_count(), pool.len()), (0, 1));
    assert_eq!(pool.try_add(&second), Err(PoolFull));
    assert_eq!(pool.add_timeout(&second, Duration::from_millis(5)), Err(PoolFull));
    let unstarted = Greenlet::new(|| ());
    assert_eq!(pool.start_timeout(&unstarted, Duration::from_millis(5)), Err(PoolFull));
    assert!(!unstarted.started());
    assert_eq!((pool.free_count(), pool.len()), (0, 1));
    verdant_hub::killall(&[first.as_ref(), second.as_ref()]);
    assert_eq!(pool.free_count(), 1, "the dead member left by itself");
}

#[test]
fn discard_frees_the_place_once() {
    let pool = Pool::new(1);
    let first = pool.spawn(|| sleep(Duration::from_secs(60)));
    pool.discard(&first);
    assert_eq!((pool.len(), pool.free_count()), (0, 1));
    first.kill();
    assert_eq!(pool.free_count(), 1, "its death does not free the place twice");
}

#[test]
fn join_with_raise_error_reports_a_member_that_failed() {
    let pool = Pool::unlimited();
    pool.spawn(|| sleep(Duration::from_millis(2)));
    pool.spawn(|| -> () {
        sleep(Duration::from_millis(1));
        panic!("member failed")
    });
    assert_eq!(pool.join_raising(), Err(GreenletError::Panicked("member failed".into())));
    pool.spawn(|| -> () { panic!("ignored") });
    pool.join();
}

#[test]
fn killone_and_kill() {
    let group = Group::new();
    let a = group.spawn(|| sleep(Duration::from_secs(60)));
    let b = group.spawn(|| sleep(Duration::from_secs(60)));
    let outsider = spawn(|| sleep(Duration::from_secs(60)));
    yield_now();
    group.killone(&outsider);
    assert!(!outsider.ready(), "not a member: left alone");
    assert_eq!(group.iter().map(|g| g.id()).collect::<Vec<_>>(), [a.id(), b.id()]);
    group.killone(&a);
    assert_eq!(a.error(), Some(GreenletError::Killed));
    assert_eq!(group.greenlets(), [b.as_ref()]);
    group.kill();
    assert!(group.is_empty());
    outsider.kill();
}

#[test]
fn a_group_tracks_without_limiting() {
    let group = Group::new();
    let started: Vec<_> = (0..50).map(|i| group.spawn(move || i)).collect();
    assert_eq!(group.len(), 50);
    let unstarted = Greenlet::new(|| 7);
    group.start(&unstarted);
    assert!(group.contains(&unstarted));
    let dead = spawn(|| ());
    dead.join();
    group.add(&dead);
    assert!(!group.contains(&dead), "a dead greenlet leaves at once");
    group.join();
    assert!(started.iter().all(|g| g.successful()));
    assert_eq!(Group::new().join_raising_timeout(Duration::ZERO), Ok(true), "empty: true at once");
}

#[test]
fn greenpool_counts_running_waiting_and_free() {
    let pool = GreenPool::new(2);
    let gate = verdant_sync::Event::new();
    for _ in 0..2 {
        let g = gate.clone();
        pool.spawn_n(move || g.wait());
    }
    let p = pool.clone();
    let blocked_spawner = spawn(move || p.spawn(|| ()));
    yield_now();
    assert_eq!((pool.running(), pool.free(), pool.waiting()), (2, 0, 1));
    gate.set();
    blocked_spawner.join();
    pool.waitall().unwrap();
    assert_eq!((pool.running(), pool.free(), pool.waiting()), (0, 2, 0));
}

#[test]
fn greenpool_resize_lets_running_greenlets_finish() {
    let pool = GreenPool::new(3);
    let gate = verdant_sync::Event::new();
    for _ in 0..3 {
        let g = gate.clone();
        pool.spawn_n(move || g.wait());
    }
    yield_now();
    pool.resize(1);
    assert_eq!(pool.free(), -2, "free goes negative");
    assert_eq!(pool.running(), 3, "nobody was stopped");
    let p = pool.clone();
    let late = spawn(move || p.spawn(|| ()).join());
    yield_now();
    assert!(!late.ready(), "no new greenlet until fewer than 1 run");
    gate.set();
    late.join();
    pool.resize(4);
    assert_eq!(pool.free(), 4);
}

#[test]
fn waitall_from_a_member_is_an_error() {
    let pool = GreenPool::new(2);
    let p = pool.clone();
    let member = pool.spawn(move || p.waitall());
    assert_eq!(member.get(), Ok(Err(WaitallFromMember)));
    assert!(pool.waitall().is_ok());
}

#[test]
fn starmap_destructures_tuples() {
    let pool = GreenPool::new(4);
    let sums: Vec<u32> = pool
        .starmap(|(a, b): (u32, u32)| a + b, vec![(1, 2), (3, 4)])
        .map(Result::unwrap)
        .collect();
    assert_eq!(sums, [3, 7]);
}

#[test]
fn a_greenpile_returns_results_in_spawn_order_with_errors_in_place() {
    let mut pile = GreenPile::new(10);
    for ms in [20u64, 1, 10] {
        pile.spawn(move || {
            sleep(Duration::from_millis(ms));
            assert!(ms != 10, "ten");
            ms
        });
    }
    assert_eq!(pile.len(), 3);
    let results: Vec<_> = pile.by_ref().collect();
    assert_eq!(results, [Ok(20), Ok(1), Err(GreenletError::Panicked("ten".into()))]);
    assert!(pile.is_empty());
}

#[test]
fn greenpiles_share_a_pools_limit() {
    let pool = GreenPool::new(1);
    let mut a: GreenPile<u8> = GreenPile::with_pool(&pool);
    let mut b: GreenPile<u8> = GreenPile::with_pool(&pool);
    a.spawn(|| {
        sleep(Duration::from_millis(5));
        1
    });
    let t = std::time::Instant::now();
    b.spawn(|| 2); // waits for a's task: the pool has one place
    assert!(t.elapsed() >= Duration::from_millis(4), "b waited for the shared place");
    assert_eq!((a.next(), b.next()), (Some(Ok(1)), Some(Ok(2))));
}

/// A map's items report through their group: they still do when the pool handle is
/// dropped while they run, and when an item is discarded from the group mid-run.
#[test]
fn map_items_report_after_the_pool_is_dropped_or_they_are_discarded() {
    let gate = verdant_sync::Event::new();
    let released = gate.clone();
    let pool = Pool::new(3);
    let results = pool.imap(
        move |x: u64| {
            released.wait();
            x * 10
        },
        0..3u64,
    );
    yield_now(); // all three items start and wait at the gate
    let members = pool.greenlets();
    assert_eq!(members.len(), 3);
    pool.discard(&members[1]);
    drop(pool);
    gate.set();
    let values: Vec<u64> = results.map(Result::unwrap).collect();
    assert_eq!(values, [0, 10, 20]);
}
