//! One hub per OS thread, and waking a hub from other threads.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use verdant_hub::{HubGone, RemoteWaker, park, remote_handle};
use verdant_hub::{sleep, spawn, yield_now};

#[test]
fn several_threads_each_run_their_own_hub_side_by_side() {
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let gs: Vec<_> = (0..200u64)
                    .map(|i| {
                        spawn(move || {
                            sleep(Duration::from_millis(i % 7));
                            yield_now();
                            t * 1000 + i
                        })
                    })
                    .collect();
                let ids: Vec<u64> = gs.iter().map(|g| g.id()).collect();
                let sum: u64 = gs.iter().map(|g| g.get().unwrap()).sum();
                (ids[0], sum, verdant_hub::stats().spawned)
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let (first_id, sum, spawned) = h.join().unwrap();
        let t = t as u64;
        assert_eq!(first_id, 1, "each thread has its own hub with its own ids");
        assert_eq!(sum, (0..200).map(|i| t * 1000 + i).sum::<u64>());
        assert_eq!(spawned, 200);
    }
}

thread_local! {
    static SEEN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static RECEIVED: Cell<usize> = const { Cell::new(0) };
    static MAIN_WAKER: RefCell<Option<park::Waker>> = const { RefCell::new(None) };
}

#[test]
fn a_million_cross_thread_completions_arrive_exactly_once_with_coalesced_wakes() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 250_000;
    const TOTAL: usize = THREADS * PER_THREAD;
    // Only a post to a hub asleep in epoll_wait writes the eventfd; a hub that waits only
    // for other threads spins first (`HubConfig::spin`). How often it falls asleep with the
    // default 50 µs spin depends on how long the OS leaves the posters unscheduled, so
    // the spin is made far longer than any gap between two posts: the hub never sleeps
    // here, and a million completions, taken while it runs or spins, cost no write.
    verdant_hub::configure(|c| c.spin = Duration::from_secs(10)).unwrap();
    SEEN.with(|s| *s.borrow_mut() = vec![0; TOTAL]);
    let hub = remote_handle();
    let writes_before = hub.wake_writes();
    let posters: Vec<_> = (0..THREADS)
        .map(|t| {
            let hub = hub.clone();
            let work = hub.begin_work();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let n = t * PER_THREAD + i;
                    hub.post(move || {
                        SEEN.with(|s| s.borrow_mut()[n] += 1);
                        let got = RECEIVED.with(|r| {
                            r.set(r.get() + 1);
                            r.get()
                        });
                        if got == TOTAL {
                            MAIN_WAKER.with(|w| w.borrow().as_ref().map(|w| w.wake()));
                        }
                    })
                    .unwrap();
                }
                drop(work);
            })
        })
        .collect();
    while RECEIVED.with(|r| r.get()) < TOTAL {
        MAIN_WAKER.with(|w| *w.borrow_mut() = Some(park::waker()));
        park::park(&"a million completions");
    }
    for p in posters {
        p.join().unwrap();
    }
    SEEN.with(|s| assert!(s.borrow().iter().all(|&n| n == 1), "every completion exactly once"));
    let writes = hub.wake_writes() - writes_before;
    assert_eq!(writes, 0, "{TOTAL} completions to a running hub cost {writes} eventfd writes");
}

#[test]
fn jobs_from_one_thread_run_in_order_on_the_hub_thread() {
    let hub = remote_handle();
    let hub_thread = std::thread::current().id();
    let order = std::rc::Rc::new(RefCell::new(Vec::new()));
    thread_local! { static ORDER: RefCell<Vec<(usize, bool)>> = const { RefCell::new(Vec::new()) }; }
    let work = hub.begin_work();
    let h = hub.clone();
    let t = std::thread::spawn(move || {
        for i in 0..100 {
            h.post(move || {
                let here = std::thread::current().id() == hub_thread;
                ORDER.with(|o| o.borrow_mut().push((i, here)));
            })
            .unwrap();
        }
        drop(work);
    });
    t.join().unwrap();
    yield_now(); // a turn boundary drains the inbox
    ORDER.with(|o| order.borrow_mut().extend(o.borrow().iter().copied()));
    let order = order.borrow();
    assert_eq!(order.len(), 100);
    assert!(order.iter().enumerate().all(|(i, &(n, here))| i == n && here));
}

#[test]
fn a_remote_waker_wakes_a_greenlet_from_a_plain_thread() {
    let g = spawn(|| {
        let remote = RemoteWaker::new(park::waker());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            remote.wake().unwrap();
        });
        park::park(&"the plain thread");
        t.join().unwrap();
        "woken"
    });
    assert_eq!(g.get(), Ok("woken"));
}

#[test]
fn a_panicking_job_does_not_stop_the_hub() {
    let hub = remote_handle();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    hub.post(|| panic!("bad job")).unwrap();
    hub.post(move || {
        r.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    yield_now();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn a_job_that_blocks_gets_a_clear_panic_instead_of_reentering_the_loop() {
    let hub = remote_handle();
    let outcome = Arc::new(std::sync::Mutex::new(String::new()));
    let o = outcome.clone();
    hub.post(move || {
        let r = std::panic::catch_unwind(|| sleep(Duration::from_millis(1)));
        let msg = r.unwrap_err().downcast::<String>().map(|s| *s).unwrap_or_default();
        *o.lock().unwrap() = msg;
    })
    .unwrap();
    yield_now();
    let msg = outcome.lock().unwrap().clone();
    assert!(msg.contains("must not block"), "{msg}");
}

#[test]
fn posting_to_a_hub_whose_thread_ended_fails() {
    let hub = std::thread::spawn(remote_handle).join().unwrap();
    assert_eq!(hub.post(|| ()), Err(HubGone));
    let waker_hub = std::thread::spawn(|| RemoteWaker::new(park::waker())).join().unwrap();
    assert_eq!(waker_hub.wake(), Err(HubGone));
}

#[test]
fn remote_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<verdant_hub::RemoteHandle>();
    assert_send_sync::<RemoteWaker>();
}
