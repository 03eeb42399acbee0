//! A `ThreadPool` and a `ProcessPool` used by greenlets of several hubs at once.
//!
//! A `ThreadPool` is `Send + Sync`: every hub holds a clone and waits on its results. A
//! `ProcessPool` is `!Send` (its supervisors are greenlets of the hub that built it), so
//! hubs share one the way they share anything a hub owns: they send requests over a
//! `verdant::sync::shared` channel to the owning hub, which answers on a reply channel.
//! Several hubs may also own a process pool each, at the same time.
//!
//! This test binary has its own `main` (`harness = false`): the process pool re-executes
//! the binary to make workers, and `worker_main()` must run first in `main`. Each hub is a
//! `std::thread` whose closure runs hub code. Assertions come from results and counters.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use verdant::processpool::ProcessPool;
use verdant::sync::shared::channel;
use verdant::threadpool::ThreadPool;
use verdant::{WaitFor, joinall, spawn};

const HUBS: u64 = 3;
const GREENLETS: u64 = 10;

fn square(x: u64) -> u64 {
    x * x
}

fn cube(x: u64) -> u64 {
    x * x * x
}

/// Runs `greenlet(hub, index)` in `GREENLETS` greenlets on each of `HUBS` hub threads;
/// returns every value, in (hub, index) order.
fn on_every_hub<T: Send + 'static>(
    greenlet: impl Fn(u64, u64) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let hubs: Vec<_> = (0..HUBS)
        .map(|hub| {
            let greenlet = greenlet.clone();
            thread::spawn(move || {
                let greenlets: Vec<_> = (0..GREENLETS)
                    .map(|i| {
                        let greenlet = greenlet.clone();
                        spawn(move || greenlet(hub, i))
                    })
                    .collect();
                joinall(&greenlets, WaitFor::all());
                greenlets.iter().map(|g| g.take().expect("a greenlet failed")).collect::<Vec<_>>()
            })
        })
        .collect();
    hubs.into_iter().flat_map(|hub| hub.join().unwrap()).collect()
}

fn one_thread_pool_serves_greenlets_of_three_hubs_and_a_plain_thread_at_once() {
    let pool = ThreadPool::new(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let plain = {
        let (pool, ran) = (pool.clone(), ran.clone());
        thread::spawn(move || {
            (0..20u64)
                .map(|x| {
                    let ran = ran.clone();
                    pool.apply(move || {
                        ran.fetch_add(1, Ordering::Relaxed);
                        x + 1
                    })
                })
                .sum::<u64>()
        })
    };
    let got = on_every_hub({
        let (pool, ran) = (pool.clone(), ran.clone());
        move |hub, i| {
            let x = hub * GREENLETS + i;
            let ran_a = ran.clone();
            let spawned = pool.spawn(move || {
                ran_a.fetch_add(1, Ordering::Relaxed);
                square(x)
            });
            let ran_b = ran.clone();
            let applied = pool.apply(move || {
                ran_b.fetch_add(1, Ordering::Relaxed);
                cube(x)
            });
            (spawned.get().unwrap(), applied)
        }
    });
    let expected: Vec<_> = (0..HUBS * GREENLETS).map(|x| (square(x), cube(x))).collect();
    assert_eq!(got, expected);
    assert_eq!(plain.join().unwrap(), (1..=20).sum::<u64>());
    assert_eq!(ran.load(Ordering::Relaxed), (2 * HUBS * GREENLETS + 20) as usize);
}

/// A request to the hub that owns the process pool, and where to send its answer.
type Request = (u64, channel::Sender<Result<u64, String>>);

fn one_process_pool_serves_greenlets_of_three_hubs_through_a_shared_channel() {
    let (requests, inbox) = channel::unbounded::<Request>();
    let owner = thread::spawn(move || {
        let pool = Rc::new(ProcessPool::new(Some(2)).unwrap());
        let mut served = Vec::new();
        // Each request gets a greenlet of its own: the pool works on many at once.
        while let Ok((x, reply)) = inbox.recv() {
            let pool = pool.clone();
            served.push(spawn(move || {
                let answer = pool.apply(square, x).map_err(|e| e.to_string());
                let _ = reply.send(answer);
            }));
        }
        joinall(&served, WaitFor::all());
        assert!(served.iter().all(|g| g.error().is_none()));
        served.len()
    });
    let got = on_every_hub(move |hub, i| {
        let x = hub * GREENLETS + i;
        let (reply, answer) = channel::bounded(1);
        requests.send((x, reply)).unwrap();
        answer.recv().unwrap().unwrap()
    });
    // `on_every_hub` dropped its clones of `requests`: the owner's loop ends.
    let expected: Vec<_> = (0..HUBS * GREENLETS).map(square).collect();
    assert_eq!(got, expected);
    assert_eq!(owner.join().unwrap(), (HUBS * GREENLETS) as usize);
}

fn hubs_may_each_own_a_process_pool_at_the_same_time() {
    let hubs: Vec<_> = (0..HUBS)
        .map(|hub| {
            thread::spawn(move || {
                let pool = Rc::new(ProcessPool::new(Some(1)).unwrap());
                let greenlets: Vec<_> = (0..GREENLETS)
                    .map(|i| {
                        let pool = pool.clone();
                        spawn(move || pool.apply(cube, hub * GREENLETS + i).unwrap())
                    })
                    .collect();
                joinall(&greenlets, WaitFor::all());
                greenlets.iter().map(|g| g.take().unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let got: Vec<_> = hubs.into_iter().flat_map(|hub| hub.join().unwrap()).collect();
    let expected: Vec<_> = (0..HUBS * GREENLETS).map(cube).collect();
    assert_eq!(got, expected);
}

fn main() {
    verdant::processpool::worker_main();

    let tests: &[(&str, fn())] = &[
        (
            "one_thread_pool_serves_greenlets_of_three_hubs_and_a_plain_thread_at_once",
            one_thread_pool_serves_greenlets_of_three_hubs_and_a_plain_thread_at_once,
        ),
        (
            "one_process_pool_serves_greenlets_of_three_hubs_through_a_shared_channel",
            one_process_pool_serves_greenlets_of_three_hubs_through_a_shared_channel,
        ),
        (
            "hubs_may_each_own_a_process_pool_at_the_same_time",
            hubs_may_each_own_a_process_pool_at_the_same_time,
        ),
    ];
    verdant_testutil::run_tests(tests);
}
