//! `block_on`: futures run inside greenlets, woken by other greenlets, by the future
//! itself, by other threads and by `async-io`'s timers; what a panic, a kill, a timeout
//! and a dropped waker do; and the same call on a thread without a hub.

use verdant_testutil as util;

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use util::{DropCounter, Log, panic_message_of};
use verdant_hub::{GreenletError, block_on, spawn, with_timeout, yield_now};
use verdant_hub::{has_hub, stats};

/// Generous: only a lost wake-up would take this long.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Runs `f` with a hang guard: a lost wake-up fails the test instead of hanging it.
fn guarded<T>(f: impl FnOnce() -> T) -> T {
    with_timeout(HANG_GUARD, f).expect("a wake-up was lost: the hang guard expired")
}

/// A future that is pending until `woken` wakes are counted in `wakes`, counting its polls.
fn count_to(
    wakes: Arc<AtomicUsize>,
    target: usize,
    waker: Arc<AtomicWaker>,
    polls: Rc<Cell<usize>>,
) -> impl Future<Output = usize> {
    poll_fn(move |cx| {
        polls.set(polls.get() + 1);
        waker.register(cx.waker());
        let seen = wakes.load(Ordering::SeqCst);
        if seen >= target { Poll::Ready(seen) } else { Poll::Pending }
    })
}

#[test]
fn a_ready_future_returns_its_output() {
    assert_eq!(block_on(async { 6 * 7 }), 42);
    let g = spawn(|| block_on(async { "in a greenlet" }));
    assert_eq!(g.get(), Ok("in a greenlet"));
}

#[test]
fn a_channel_future_is_woken_by_another_greenlet_without_the_inbox() {
    let (tx, rx) = async_channel::bounded::<u32>(1);
    let receiver = spawn(move || {
        let mut sum = 0;
        while let Ok(n) = block_on(rx.recv()) {
            sum += n;
        }
        sum
    });
    let sender = spawn(move || {
        for n in 1..=100 {
            block_on(tx.send(n)).unwrap(); // capacity 1: each send waits for the receiver
        }
    });
    let before = stats().inbox_messages;
    guarded(|| {
        sender.get().unwrap();
        assert_eq!(receiver.get(), Ok(5050));
    });
    // Every wake came from this thread: delivered directly, never through the inbox.
    assert_eq!(stats().inbox_messages, before);
}

#[test]
fn a_channel_future_in_the_main_code_is_woken_by_a_plain_thread() {
    let (tx, rx) = async_channel::bounded::<&str>(1);
    let (pending_tx, pending_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        pending_rx.recv().unwrap(); // the main code's future has returned Pending
        tx.send_blocking("from a thread").unwrap();
    });
    let mut recv = pin!(rx.recv());
    let mut announced = false;
    let before = stats().inbox_messages;
    let got = guarded(|| {
        block_on(poll_fn(|cx| {
            let poll = recv.as_mut().poll(cx);
            if poll.is_pending() && !announced {
                announced = true;
                pending_tx.send(()).unwrap();
            }
            poll
        }))
    });
    assert_eq!(got, Ok("from a thread"));
    assert!(announced);
    // The wake crossed threads: it came in through the inbox (no false deadlock meanwhile).
    assert!(stats().inbox_messages > before);
    thread.join().unwrap();
}

#[test]
fn many_wakes_between_two_polls_cost_one_poll() {
    let waker_slot: Rc<Cell<Option<Waker>>> = Rc::default();
    let polls = Rc::new(Cell::new(0));
    let done = Rc::new(Cell::new(false));
    let (slot, p, d) = (waker_slot.clone(), polls.clone(), done.clone());
    let waiter = spawn(move || {
        block_on(poll_fn(|cx| {
            p.set(p.get() + 1);
            slot.set(Some(cx.waker().clone()));
            if d.get() { Poll::Ready(()) } else { Poll::Pending }
        }))
    });
    yield_now(); // the waiter polls once and parks
    assert_eq!(polls.get(), 1);
    let waker = waker_slot.take().unwrap();
    done.set(true);
    for _ in 0..100 {
        waker.wake_by_ref();
    }
    waiter.get().unwrap();
    assert_eq!(polls.get(), 2);
}

#[test]
fn a_future_that_wakes_itself_lets_the_other_greenlets_run_between_polls() {
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let selfish = spawn(move || {
        let mut left = 3;
        block_on(poll_fn(move |cx| {
            l1.push(format!("poll {left}"));
            if left == 0 {
                return Poll::Ready(());
            }
            left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }))
    });
    let other = spawn(move || {
        for i in 0..3 {
            l2.push(format!("other {i}"));
            yield_now();
        }
    });
    selfish.get().unwrap();
    other.get().unwrap();
    assert_eq!(
        log.take(),
        ["poll 3", "other 0", "poll 2", "other 1", "poll 1", "other 2", "poll 0"]
    );
}

#[test]
fn an_async_io_timer_wakes_the_greenlet_from_the_reactor_thread() {
    let started = Instant::now();
    let sleepers: Vec<_> = (1..=10u64)
        .map(|i| spawn(move || block_on(async_io::Timer::after(Duration::from_millis(i)))))
        .collect();
    let ticker = spawn(|| {
        // Runs while the sleepers wait: they park, they do not hold the thread.
        yield_now();
        "ran"
    });
    guarded(|| {
        assert_eq!(ticker.get(), Ok("ran"));
        for sleeper in &sleepers {
            sleeper.get().unwrap();
        }
    });
    assert!(started.elapsed() >= Duration::from_millis(10)); // timers never fire early
    // From the main code: the reactor thread holds the waker, so this is no deadlock.
    guarded(|| block_on(async_io::Timer::after(Duration::from_millis(1))));
}

#[test]
fn ten_thousand_cross_thread_wakes_lose_none() {
    const N: usize = 10_000;
    let wakes = Arc::new(AtomicUsize::new(0));
    let waker = Arc::new(AtomicWaker::new());
    let polls = Rc::new(Cell::new(0));
    let (w, aw) = (wakes.clone(), waker.clone());
    let (pending_tx, pending_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        pending_rx.recv().unwrap(); // the future has been polled (and is pending)
        for _ in 0..N {
            w.fetch_add(1, Ordering::SeqCst);
            aw.wake();
        }
    });
    let counting = count_to(wakes, N, waker, polls.clone());
    let mut counting = pin!(counting);
    let seen = guarded(|| {
        block_on(poll_fn(|cx| {
            let poll = counting.as_mut().poll(cx);
            let _ = pending_tx.send(()); // only the first one is read
            poll
        }))
    });
    assert_eq!(seen, N);
    assert!(polls.get() >= 2);
    thread.join().unwrap();
}

#[test]
fn a_greenlet_and_a_thread_play_ping_pong_through_async_channels() {
    let (to_thread, from_hub) = async_channel::bounded::<u64>(1);
    let (to_hub, from_thread) = async_channel::bounded::<u64>(1);
    let thread = std::thread::spawn(move || {
        futures::executor::block_on(async {
            while let Ok(n) = from_hub.recv().await {
                to_hub.send(n + 1).await.unwrap();
            }
        })
    });
    let player = spawn(move || {
        let mut n = 0;
        for _ in 0..2_000 {
            block_on(to_thread.send(n)).unwrap();
            n = block_on(from_thread.recv()).unwrap();
        }
        n
    });
    assert_eq!(guarded(|| player.get()), Ok(2_000));
    thread.join().unwrap();
}

#[test]
fn a_future_that_panics_makes_the_greenlet_panicked() {
    let at_once = spawn(|| block_on(async { panic!("the future failed") }));
    assert_eq!(at_once.get(), Err(GreenletError::Panicked("the future failed".into())));

    // After a wake: the panic comes out of a later poll.
    let (tx, rx) = async_channel::bounded::<()>(1);
    let later = spawn(move || {
        block_on(async move {
            rx.recv().await.unwrap();
            panic!("failed after a wake")
        })
    });
    yield_now();
    tx.try_send(()).unwrap();
    assert_eq!(later.get(), Err(GreenletError::Panicked("failed after a wake".into())));
    // The hub goes on.
    assert_eq!(spawn(|| block_on(async { 1 })).get(), Ok(1));
}

#[test]
fn a_kill_while_parked_in_block_on_drops_the_future() {
    let drops = DropCounter::new();
    let token = drops.token();
    let (_tx, rx) = async_channel::bounded::<()>(1); // kept: the waker may still fire
    let g = spawn(move || {
        block_on(async move {
            let _token = token;
            rx.recv().await.unwrap();
        })
    });
    yield_now(); // g parks in block_on
    assert_eq!(drops.dropped(), 0);
    g.kill();
    assert_eq!(g.get(), Err(GreenletError::Killed));
    assert_eq!(drops.dropped(), 1);

    // A timeout unwinds the same way.
    let token = drops.token();
    let (_tx, rx) = async_channel::bounded::<()>(1);
    let timed_out = with_timeout(Duration::from_millis(5), || {
        block_on(async move {
            let _token = token;
            rx.recv().await.unwrap();
        })
    });
    assert!(timed_out.is_err());
    assert_eq!(drops.dropped(), 2);
}

#[test]
fn a_future_whose_wakers_were_all_dropped_is_a_deadlock_for_the_main_code() {
    let _ = verdant_hub::stats(); // this thread has a hub
    // Dropped on another thread.
    let msg = panic_message_of(|| {
        block_on(poll_fn(|cx| {
            let waker = cx.waker().clone();
            std::thread::spawn(move || drop(waker));
            Poll::<()>::Pending
        }))
    });
    assert!(msg.contains("deadlock"), "{msg}");
    assert!(msg.contains("a future in block_on whose Wakers were all dropped"), "{msg}");

    // Dropped by a greenlet of this hub.
    let msg = panic_message_of(|| {
        block_on(poll_fn(|cx| {
            let waker = cx.waker().clone();
            spawn(move || {
                yield_now();
                drop(waker);
            });
            Poll::<()>::Pending
        }))
    });
    assert!(msg.contains("deadlock"), "{msg}");

    // Never kept at all.
    let msg = panic_message_of(|| block_on(std::future::pending::<()>()));
    assert!(msg.contains("deadlock"), "{msg}");

    // The hub goes on.
    assert_eq!(block_on(async { 5 }), 5);
}

#[test]
fn a_waker_of_a_finished_call_does_not_wake_a_later_one() {
    let _ = stats(); // this thread has a hub
    let mut old = None;
    block_on(poll_fn(|cx| {
        old = Some(cx.waker().clone());
        Poll::Ready(())
    }));
    let old = old.unwrap();
    let polls = Rc::new(Cell::new(0));
    let p = polls.clone();
    let (tx, rx) = async_channel::bounded::<()>(1);
    let waiter = spawn(move || {
        let mut recv = pin!(rx.recv());
        block_on(poll_fn(|cx| {
            p.set(p.get() + 1);
            recv.as_mut().poll(cx)
        }))
    });
    yield_now(); // polled once, parked
    old.wake(); // the earlier call's waker: nobody waits on it
    yield_now();
    assert_eq!(polls.get(), 1);
    tx.try_send(()).unwrap();
    assert_eq!(waiter.get(), Ok(Ok(())));
    assert_eq!(polls.get(), 2);
}

#[test]
fn a_waker_kept_past_its_call_is_no_outstanding_work_and_its_wakes_are_ignored() {
    let _ = stats(); // this thread has a hub
    let (tx, rx) = async_channel::bounded::<u32>(1);
    let mut kept = None;
    let mut recv = pin!(rx.recv());
    let got = block_on(poll_fn(|cx| {
        kept = Some(cx.waker().clone()); // like a channel keeping the last registration
        if tx.try_send(7).is_ok() {
            cx.waker().wake_by_ref(); // poll again: the value is there now
        }
        recv.as_mut().poll(cx)
    }));
    assert_eq!(got, Ok(7));
    let kept = kept.unwrap();
    // Nothing else can wake the main code: the kept waker must not make the hub wait.
    let msg = panic_message_of(|| verdant_hub::park::park(&"nothing at all"));
    assert!(msg.contains("deadlock"), "{msg}");
    // A wake of it from another thread is dropped before it reaches the inbox.
    let before = stats().inbox_messages;
    std::thread::spawn(move || kept.wake()).join().unwrap();
    yield_now();
    assert_eq!(stats().inbox_messages, before);
}

#[test]
fn on_a_thread_without_a_hub_it_parks_the_thread_and_makes_no_hub() {
    let (tx, rx) = async_channel::bounded::<u32>(1);
    let waker_thread = std::thread::spawn(move || {
        for n in 0..100 {
            tx.send_blocking(n).unwrap();
        }
    });
    let worker = std::thread::spawn(move || {
        assert!(!has_hub());
        let mut sum = 0;
        while let Ok(n) = block_on(rx.recv()) {
            sum += n;
        }
        let deadlock = panic_message_of(|| {
            block_on(poll_fn(|cx| {
                let waker = cx.waker().clone();
                std::thread::spawn(move || drop(waker));
                Poll::<()>::Pending
            }))
        });
        (sum, has_hub(), deadlock)
    });
    let (sum, made_a_hub, deadlock) = worker.join().unwrap();
    waker_thread.join().unwrap();
    assert_eq!(sum, 4950);
    assert!(!made_a_hub);
    assert!(deadlock.contains("deadlock"), "{deadlock}");
    assert!(deadlock.contains("whose Wakers were all dropped"), "{deadlock}");
}

#[test]
fn a_future_that_spawns_a_greenlet_on_a_thread_without_a_hub_lets_it_run() {
    let got = std::thread::spawn(|| {
        assert!(!has_hub());
        let (tx, rx) = async_channel::bounded::<&str>(1);
        let mut tx = Some(tx);
        let mut recv = pin!(rx.recv());
        let got = block_on(poll_fn(move |cx| {
            if let Some(tx) = tx.take() {
                // Makes this thread's hub, mid-poll: the greenlet must get to run.
                spawn(move || block_on(tx.send("from a greenlet")).unwrap());
            }
            recv.as_mut().poll(cx)
        }));
        (got, has_hub())
    })
    .join()
    .unwrap();
    assert_eq!(got, (Ok("from a greenlet"), true));
}

#[test]
fn a_waker_may_outlive_its_hub_thread() {
    let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
    let k = kept.clone();
    std::thread::spawn(move || {
        // A greenlet parks in block_on and is abandoned when its thread ends.
        spawn(move || {
            block_on(poll_fn(|cx| {
                *k.lock().unwrap() = Some(cx.waker().clone());
                Poll::<()>::Pending
            }))
        });
        yield_now();
    })
    .join()
    .unwrap();
    let waker = kept.lock().unwrap().take().unwrap();
    waker.wake_by_ref(); // the hub is gone: nothing happens
    drop(waker);
}
