//! ThreadPool: work on native threads, results waking the submitting greenlet's hub.

use verdant_testutil as util;

#[path = "../examples/support/cpu.rs"]
#[allow(dead_code)] // only own_cpu is needed here
mod cpu;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use util::panic_message_of;
use verdant::hub::{self, has_hub};
use verdant::pool::MapError;
use verdant::sync::{WaitFor, Waitable, iwait, wait};
use verdant::threadpool::{ThreadPool, ThreadPoolExecutor};
use verdant::{GreenletError, sleep, spawn, with_timeout, yield_now};

/// Busy-waits on the calling OS thread (a CPU-bound task).
fn burn(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[test]
fn greenlets_keep_running_while_a_worker_computes() {
    // The task computes until the ticker greenlet has ticked 5 times: `apply` returns 7
    // only if the hub kept running greenlets while the caller waited for the worker.
    let pool = ThreadPool::new(2);
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = spawn(move || {
        loop {
            t.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_millis(1));
        }
    });
    let t = ticks.clone();
    let value = pool.apply(move || {
        let deadline = Instant::now() + Duration::from_secs(30); // a hang guard
        while t.load(Ordering::SeqCst) < 5 {
            if Instant::now() >= deadline {
                return 0;
            }
            burn(Duration::from_micros(100));
        }
        7
    });
    assert_eq!(value, 7, "the hub kept running greenlets: {} ticks", ticks.load(Ordering::SeqCst));
    ticker.kill();
}

#[test]
fn a_panic_reaches_the_caller_and_the_worker_survives() {
    let pool = ThreadPool::new(1);
    let msg = panic_message_of(|| {
        pool.apply(|| -> u8 { panic!("in a worker") });
    });
    assert_eq!(msg, "in a worker");
    assert_eq!(
        pool.spawn(|| -> u8 { panic!("again") }).get(),
        Err(GreenletError::Panicked("again".into()))
    );
    assert_eq!(pool.apply(|| 5), 5, "the worker still serves");
    assert_eq!(pool.size(), 1, "no worker was lost");
}

#[test]
fn apply_from_a_worker_of_the_same_pool_runs_inline() {
    let pool = ThreadPool::new(1);
    let inner = pool.clone();
    let (outer_thread, inner_thread) = pool
        .apply(move || (std::thread::current().id(), inner.apply(|| std::thread::current().id())));
    assert_eq!(outer_thread, inner_thread, "a one-worker pool would deadlock otherwise");
    assert_ne!(outer_thread, std::thread::current().id());
}

#[test]
fn a_plain_thread_without_a_hub_waits_natively() {
    let pool = ThreadPool::new(2);
    let p = pool.clone();
    let (value, had_hub) = std::thread::spawn(move || {
        let value = p.apply(|| 40 + 2);
        let result = p.spawn(|| 1);
        assert!(result.wait_timeout(Duration::from_secs(30)));
        (value, has_hub())
    })
    .join()
    .unwrap();
    assert_eq!(value, 42);
    assert!(!had_hub, "waiting did not create a hub on the plain thread");
}

#[test]
fn results_go_to_the_hub_of_the_submitting_thread() {
    let pool = ThreadPool::new(2);
    let threads: Vec<_> = (0..3u64)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let gs: Vec<_> = (0..20u64)
                    .map(|i| {
                        let pool = pool.clone();
                        spawn(move || pool.apply(move || t * 100 + i))
                    })
                    .collect();
                gs.iter().map(|g| g.get().unwrap()).sum::<u64>()
            })
        })
        .collect();
    for (t, thread) in threads.into_iter().enumerate() {
        let t = t as u64;
        assert_eq!(thread.join().unwrap(), (0..20).map(|i| t * 100 + i).sum::<u64>());
    }
}

#[test]
fn workers_start_lazily_up_to_maxsize() {
    let pool = ThreadPool::new(2);
    assert_eq!((pool.size(), pool.maxsize()), (0, 2));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Arc::new(std::sync::Mutex::new(gate));
    let blocked: Vec<_> = (0..3)
        .map(|_| {
            let gate = gate.clone();
            pool.spawn(move || {
                let _ = gate.lock().unwrap().recv();
            })
        })
        .collect();
    assert_eq!(pool.size(), 2, "no more workers than maxsize");
    assert_eq!(pool.len(), 3, "three unfinished tasks");
    for _ in 0..3 {
        release.send(()).unwrap();
    }
    for result in &blocked {
        result.get().unwrap();
    }
    pool.join();
    assert!(pool.is_empty());
}

#[test]
fn maxsize_zero_holds_tasks_until_raised_and_lowering_retires_workers() {
    let pool = ThreadPool::new(0);
    let held = pool.spawn(|| "ran");
    assert!(!held.wait_timeout(Duration::from_millis(20)), "no worker may run it");
    pool.set_maxsize(3);
    assert_eq!(held.get(), Ok("ran"));
    let busy: Vec<_> = (0..3).map(|_| pool.spawn(|| burn(Duration::from_millis(20)))).collect();
    busy.iter().for_each(|r| r.wait());
    pool.set_maxsize(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.size() > 1 && Instant::now() < deadline {
        sleep(Duration::from_millis(1));
    }
    assert_eq!(pool.size(), 1, "idle workers above the new maxsize retired");
}

/// Waits (spinning, on a worker thread) until `count` reaches `target`; false after a
/// 30 s hang guard.
fn wait_for_count(count: &AtomicUsize, target: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::SeqCst) < target {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// gevent's `TestSize`: `pool.size = n` within `maxsize`, read back at once.
#[test]
fn size_is_set_now_within_maxsize_as_in_gevent() {
    let pool = ThreadPool::new(2);
    assert_eq!(pool.size(), 0);
    pool.set_size(1).unwrap();
    assert_eq!(pool.size(), 1);
    pool.set_size(2).unwrap();
    assert_eq!(pool.size(), 2);
    pool.set_size(1).unwrap();
    assert_eq!(pool.size(), 1);
    let err = pool.set_size(3).unwrap_err();
    assert_eq!((err.size, err.maxsize), (3, 2));
    assert_eq!(pool.size(), 1, "a refused size changes nothing");
    pool.set_size(0).unwrap();
    assert_eq!(pool.size(), 0);
    pool.set_size(2).unwrap();
    assert_eq!(pool.size(), 2);
    assert_eq!(pool.apply(|| 7), 7, "the workers it started serve");
}

#[test]
fn growing_the_size_lets_that_many_tasks_run_at_once() {
    // Each task waits until all four are running: they finish only if four ran at once,
    // on the four workers set_size started (no more were needed).
    let pool = ThreadPool::new(4);
    pool.set_size(4).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let together: Vec<_> = (0..4)
        .map(|_| {
            let running = running.clone();
            pool.spawn(move || {
                running.fetch_add(1, Ordering::SeqCst);
                wait_for_count(&running, 4)
            })
        })
        .collect();
    for result in &together {
        assert_eq!(result.get(), Ok(true), "the four tasks ran at once");
    }
    assert_eq!(pool.size(), 4);
}

#[test]
fn shrinking_waits_for_the_pending_tasks_and_never_drops_them() {
    // Two tasks hold both workers at a gate, a third is queued behind them; set_size(0)
    // from a greenlet waits, the three tasks still run, then the workers are gone.
    let pool = ThreadPool::new(2);
    let (started, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..3usize)
        .map(|i| {
            let (started, open) = (started.clone(), open.clone());
            pool.spawn(move || {
                started.fetch_add(1, Ordering::SeqCst);
                wait_for_count(&open, 1).then_some(i)
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < 2 {
        yield_now(); // both workers hold a task
    }
    let shrinker = spawn({
        let pool = pool.clone();
        move || pool.set_size(0)
    });
    yield_now(); // the shrinker runs until it waits
    assert!(!shrinker.ready(), "busy workers with a task queued behind them do not retire");
    assert_eq!(pool.size(), 2);
    open.store(1, Ordering::SeqCst);
    assert_eq!(shrinker.get(), Ok(Ok(())));
    assert_eq!(pool.size(), 0);
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(task.get(), Ok(Some(i)), "no pending task was dropped");
    }
    assert_eq!(pool.apply(|| 5), 5, "a later task starts a worker again, as in gevent");
}

#[test]
fn kill_cancels_queued_tasks_and_their_waiters_get_an_error() {
    let pool = ThreadPool::new(1);
    let (release, gate) = mpsc::channel::<()>();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let running = pool.spawn(move || {
        s.store(true, Ordering::SeqCst);
        let _ = gate.recv();
        "finished"
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.load(Ordering::SeqCst) && Instant::now() < deadline {
        yield_now(); // until the worker has taken the first task
    }
    let queued: Vec<_> = (0..5).map(|i| pool.spawn(move || i)).collect();
    let waiter = {
        let q = queued[0].clone();
        spawn(move || q.get())
    };
    yield_now();
    assert_eq!(pool.kill(), 5);
    assert_eq!(
        waiter.get().unwrap(),
        Err(GreenletError::Killed),
        "the waiter was not left hanging"
    );
    assert!(queued.iter().all(|r| r.get() == Err(GreenletError::Killed)));
    release.send(()).unwrap();
    assert_eq!(running.get(), Ok("finished"), "a running task finishes");
    assert_eq!(pool.apply(|| 1), 1, "the pool stays usable");
}

#[test]
fn dropping_the_pool_cancels_what_is_queued() {
    let pool = ThreadPool::new(0);
    let orphan = pool.spawn(|| 1);
    drop(pool);
    assert_eq!(orphan.get(), Err(GreenletError::Killed));
}

#[test]
fn with_timeout_interrupts_a_waiting_greenlet_and_the_task_runs_on() {
    let pool = ThreadPool::new(1);
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let (release, gate) = mpsc::channel::<()>();
    let result = pool.spawn(move || {
        let _ = gate.recv(); // runs until the test releases it
        f.store(true, Ordering::SeqCst);
        vec![1u8; 1024] // dropped safely when nobody takes it
    });
    let r = result.clone();
    let gave_up = with_timeout(Duration::from_millis(2), move || r.get());
    assert!(gave_up.is_err());
    assert!(!finished.load(Ordering::SeqCst));
    drop(result);
    release.send(()).unwrap();
    pool.join();
    assert!(finished.load(Ordering::SeqCst), "the task ran on");
}

#[test]
fn thread_results_are_waitable() {
    // `slow` runs until released, which happens only once iwait has yielded `fast`.
    let pool = ThreadPool::new(2);
    let (release, gate) = mpsc::channel::<()>();
    let slow = pool.spawn(move || {
        let _ = gate.recv();
    });
    let fast = pool.spawn(|| ());
    let objects: [&dyn Waitable; 2] = [&slow, &fast];
    let mut order = Vec::new();
    for i in iwait(&objects, WaitFor::all()) {
        order.push(i);
        let _ = release.send(()); // after the first: let `slow` finish
    }
    assert_eq!(order, [1, 0]);
    assert_eq!(wait(&objects, WaitFor::all()), [0, 1]);
}

#[test]
fn outstanding_tasks_keep_the_deadlock_check_quiet() {
    let pool = ThreadPool::new(1);
    let result = pool.spawn(|| {
        std::thread::sleep(Duration::from_millis(20)); // a blocking call on the worker
        3
    });
    assert_eq!(result.get(), Ok(3)); // the main code waits: not a deadlock
    let cb_ran = Rc::new(Cell::new(false));
    let c = cb_ran.clone();
    pool.spawn(|| std::thread::sleep(Duration::from_millis(10))).when_done(move |_| c.set(true));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cb_ran.get() && Instant::now() < deadline {
        yield_now();
    }
    assert!(cb_ran.get(), "the completion callback ran on this hub");
}

/// concurrent.futures' `add_done_callback`: the callback gets the future, and reading the
/// result there does not use it up: `get` after the callback ran returns the value.
#[test]
fn when_done_leaves_the_value_for_get() {
    let pool = ThreadPool::new(1);
    let result = pool.spawn(|| vec![6, 7]);
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    result.when_done(move |r| *s.borrow_mut() = Some(r.get()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.borrow().is_none() && Instant::now() < deadline {
        yield_now();
    }
    assert_eq!(*seen.borrow(), Some(Ok(vec![6, 7])), "the callback ran and read the value");
    assert_eq!(result.get(), Ok(vec![6, 7]), "and the value is still there");
    assert_eq!(result.get(), Ok(vec![6, 7]));
    assert_eq!(result.take(), Ok(vec![6, 7]));
    assert_eq!(result.get(), Err(GreenletError::Taken));

    // A callback added after the end runs too, and a failure is reported to every reader.
    let failed = pool.spawn(|| -> u8 { panic!("twice") });
    failed.wait();
    let told = Rc::new(Cell::new(false));
    let t = told.clone();
    failed.when_done(move |r| t.set(r.get().is_err()));
    while !told.get() && Instant::now() < deadline {
        yield_now();
    }
    assert!(told.get());
    assert!(matches!(failed.get(), Err(GreenletError::Panicked(_))));
    assert!(matches!(failed.take(), Err(GreenletError::Panicked(_))));
}

#[test]
fn completions_coalesce_into_few_eventfd_writes() {
    // The eventfd is written only for a hub asleep in epoll_wait. A hub that waits only for
    // thread-pool results spins (`HubConfig::spin`) before it sleeps; with a spin far
    // longer than any gap between two completions it never sleeps here, so 10,000
    // completions cost no write at all. (With the default 50 µs, how often it sleeps
    // depends on how long the OS leaves the workers unscheduled: not a thing to assert.)
    hub::configure(|c| c.spin = Duration::from_secs(10)).unwrap();
    let pool = ThreadPool::new(2);
    let before = hub::stats().wake_writes;
    let gs: Vec<_> = (0..1000u64)
        .map(|i| {
            let pool = pool.clone();
            spawn(move || (0..10).map(|j| pool.apply(move || i * 10 + j)).sum::<u64>())
        })
        .collect();
    let total: u64 = gs.iter().map(|g| g.get().unwrap()).sum();
    assert_eq!(total, (0..10_000).sum::<u64>());
    let writes = hub::stats().wake_writes - before;
    assert_eq!(writes, 0, "{writes} eventfd writes for 10,000 completions to a spinning hub");
}

#[test]
fn map_imap_and_imap_unordered_share_the_pool_machinery() {
    let pool = ThreadPool::new(3);
    assert_eq!(pool.map(|x: u64| x * x, 0..100), Ok((0..100).map(|x| x * x).collect()));
    let got: Vec<_> = pool
        .imap(
            |x: u64| {
                assert!(x != 2, "two");
                x
            },
            0..4,
        )
        .collect();
    assert_eq!(got[..2], [Ok(0), Ok(1)]);
    assert!(
        matches!(&got[2], Err(MapError::Task { index: 2, error: GreenletError::Panicked(m) }) if m.message() == "two")
    );
    assert_eq!(got[3], Ok(3));
    let mut unordered: Vec<u64> =
        pool.imap_unordered(|x: u64| x + 1, 0..50).map(Result::unwrap).collect();
    unordered.sort();
    assert_eq!(unordered, (1..51).collect::<Vec<_>>());
    assert_eq!(pool.map(|x: u8| x, Vec::new()), Ok(vec![]));
}

#[test]
fn apply_async_and_apply_cb_call_back_with_the_value() {
    let pool = ThreadPool::new(1);
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    let g = pool.apply_async(|| 21 * 2, move |v| s.set(*v));
    assert_eq!(g.get(), Ok(42));
    assert_eq!(seen.get(), 42);
    let s = seen.clone();
    assert_eq!(pool.apply_cb(|| 1, move |v| s.set(*v)), 1);
    assert_eq!(seen.get(), 1);
}

/// Run alone in a child process by `an_idle_hub_and_idle_workers_use_no_cpu`: CPU time is
/// per process, and other tests run in parallel threads.
#[test]
fn idle_cpu_child() {
    if !util::is_child_for("idle_cpu_child") {
        return;
    }
    let pool = ThreadPool::new(2);
    pool.map(|x: u32| x, 0..100).unwrap();
    // A worker may drop its work guard just after the hub took the last result. Wait until
    // every guard is gone: with nothing outstanding, parking main is reported as a
    // deadlock, and not before (the hub spins meanwhile).
    let msg = panic_message_of(|| verdant::hub::park::park(&"the work guards to drop"));
    assert!(msg.contains("deadlock"), "{msg}");
    let spins = hub::stats().spins;
    let cpu = cpu::own_cpu();
    sleep(Duration::from_millis(300)); // nothing outstanding: no spinning anywhere
    let used = cpu::own_cpu() - cpu;
    assert_eq!(hub::stats().spins, spins, "the hub did not spin without outstanding work");
    assert!(used < Duration::from_millis(30), "{used:?} of CPU while idle for 300 ms");
}

#[test]
fn an_idle_hub_and_idle_workers_use_no_cpu() {
    util::assert_test_passes_in_child("idle_cpu_child");
}

#[test]
fn an_executor_submits_maps_and_shuts_down() {
    let executor = ThreadPoolExecutor::new(2);
    let futures: Vec<_> = (0..5u32).map(|i| executor.submit(move || i * 3).unwrap()).collect();
    let objects: Vec<&dyn Waitable> = futures.iter().map(|f| f as &dyn Waitable).collect();
    assert_eq!(wait(&objects, WaitFor::all().timeout(Duration::from_secs(30))).len(), 5);
    assert_eq!(futures.iter().map(|f| f.get().unwrap()).collect::<Vec<_>>(), [0, 3, 6, 9, 12]);
    assert_eq!(executor.map(|x: u8| x + 1, [1, 2]).map(Result::unwrap).collect::<Vec<_>>(), [2, 3]);
    executor.shutdown(true);
    assert!(executor.submit(|| ()).is_err());
}

/// A million tasks from greenlets and plain threads: each result arrives exactly once.
#[test]
fn a_million_tasks_from_greenlets_and_threads_nothing_lost_or_duplicated() {
    const THREADS: u64 = 3;
    const PER_THREAD: u64 = 200_000;
    const GREENLETS: u64 = 100;
    const PER_GREENLET: u64 = 4_000;
    let pool = ThreadPool::new(2);
    let seen: Arc<Vec<AtomicUsize>> = Arc::new(
        (0..(THREADS * PER_THREAD + GREENLETS * PER_GREENLET))
            .map(|_| AtomicUsize::new(0))
            .collect(),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, seen) = (pool.clone(), seen.clone());
            std::thread::spawn(move || {
                // A plain thread: submit in batches, then wait natively.
                for batch in 0..PER_THREAD / 1000 {
                    let results: Vec<_> = (0..1000)
                        .map(|i| {
                            let id = t * PER_THREAD + batch * 1000 + i;
                            pool.spawn(move || id)
                        })
                        .collect();
                    for r in results {
                        seen[r.get().unwrap() as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let base = THREADS * PER_THREAD;
    let gs: Vec<_> = (0..GREENLETS)
        .map(|g| {
            let (pool, seen) = (pool.clone(), seen.clone());
            spawn(move || {
                for i in 0..PER_GREENLET {
                    let id = base + g * PER_GREENLET + i;
                    let got = pool.apply(move || id);
                    seen[got as usize].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    verdant::joinall(&gs, WaitFor::all());
    for t in threads {
        t.join().unwrap();
    }
    let wrong: Vec<usize> =
        (0..seen.len()).filter(|&i| seen[i].load(Ordering::Relaxed) != 1).take(5).collect();
    assert!(wrong.is_empty(), "ids not seen exactly once: {wrong:?}");
    assert!(pool.is_empty());
}

/// Regression: `len()` dropped only after the result was delivered, so a waiter that had
/// its result could still count its own task as unfinished (and `join` could return before
/// a result was visible). A plain thread polls `ready()` and checks both at that moment.
#[test]
fn a_result_seen_is_no_longer_counted_and_a_finished_join_sees_every_result() {
    let pool = ThreadPool::new(1);
    std::thread::spawn(move || {
        for round in 0..3_000 {
            let result = pool.spawn(move || round);
            while !result.ready() {
                std::hint::spin_loop();
            }
            assert_eq!(pool.len(), 0, "round {round}: a finished task still counted");
            let result = pool.spawn(move || round);
            pool.join();
            assert!(result.ready(), "round {round}: join returned before the result");
        }
    })
    .join()
    .unwrap();
}
