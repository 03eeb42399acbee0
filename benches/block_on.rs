//! Criterion benches of `block_on`: a future that is ready at once, and wake round trips
//! between two greenlets (same thread) and with a plain thread, each next to the same
//! round trip on the hub's own `park`/`Waker`, so the cost of the `std::task::Waker`
//! layer shows. Stack allocation is excluded: the greenlets are spawned once per sample.

use std::cell::Cell;
use std::future::{Future, poll_fn, ready};
use std::hint::black_box;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

#[path = "support/remote_wake.rs"]
mod remote_wake;

use criterion::{Criterion, criterion_group, criterion_main};
use verdant::hub::park;
use verdant::{block_on, spawn};

/// A one-bit flag a future can wait on; keeps the last waker registered, as channels do.
#[derive(Default)]
struct Flag {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Flag {
    fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.set.replace(false) {
                return Poll::Ready(());
            }
            let waker = match self.waker.take() {
                Some(waker) if waker.will_wake(cx.waker()) => waker,
                _ => cx.waker().clone(),
            };
            self.waker.set(Some(waker));
            Poll::Pending
        })
    }

    fn signal(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake_by_ref();
            self.waker.set(Some(waker));
        }
    }
}

/// Two greenlets wake each other `iters` times through `Flag` futures in `block_on`;
/// returns the time of `iters` wakes (each: one wake, one poll that is pending, one
/// switch, one poll that is ready).
fn block_on_ping_pong(iters: u64) -> Duration {
    let (a, b) = (Rc::new(Flag::default()), Rc::new(Flag::default()));
    let (a1, b1) = (a.clone(), b.clone());
    let first = spawn(move || {
        for _ in 0..iters {
            block_on(a1.wait());
            b1.signal();
        }
    });
    let second = spawn(move || {
        for _ in 0..iters {
            a.signal();
            block_on(b.wait());
        }
    });
    let t = Instant::now();
    first.join();
    second.join();
    t.elapsed() / 2
}

/// The same ping-pong on the hub's own waiters: `park` and `park::Waker`.
fn park_ping_pong(iters: u64) -> Duration {
    type Slot = Rc<(Cell<bool>, Cell<Option<park::Waker>>)>;
    fn wait(slot: &Slot) {
        while !slot.0.replace(false) {
            slot.1.set(Some(park::waker()));
            park::park(&"the other greenlet");
        }
    }
    fn signal(slot: &Slot) {
        slot.0.set(true);
        if let Some(waker) = slot.1.take() {
            waker.wake();
        }
    }
    let (a, b): (Slot, Slot) = (Rc::default(), Rc::default());
    let (a1, b1) = (a.clone(), b.clone());
    let first = spawn(move || {
        for _ in 0..iters {
            wait(&a1);
            signal(&b1);
        }
    });
    let second = spawn(move || {
        for _ in 0..iters {
            signal(&a);
            wait(&b);
        }
    });
    let t = Instant::now();
    first.join();
    second.join();
    t.elapsed() / 2
}

fn same_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("block_on");
    let _ = verdant::hub::stats(); // this thread has a hub
    group.bench_function("ready_future", |b| b.iter(|| block_on(ready(black_box(7u64)))));
    group.bench_function("same_thread_wake", |b| b.iter_custom(block_on_ping_pong));
    group.bench_function("same_thread_wake_park_baseline", |b| b.iter_custom(park_ping_pong));
    group.finish();
}

fn cross_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("block_on_cross_thread");
    let _ = verdant::hub::stats(); // this thread has a hub
    // The main code waits in block_on; a plain thread wakes it (inbox, eventfd if asleep).
    group.bench_function("wake_round_trip", |b| {
        let (to_worker, from_hub) = std::sync::mpsc::channel::<Waker>();
        let worker = std::thread::spawn(move || {
            for waker in from_hub {
                waker.wake();
            }
        });
        b.iter(|| {
            let mut sent = false;
            block_on(poll_fn(|cx| {
                if sent {
                    return Poll::Ready(());
                }
                sent = true;
                to_worker.send(cx.waker().clone()).unwrap();
                Poll::Pending
            }))
        });
        drop(to_worker);
        worker.join().unwrap();
    });
    // The same with the hub's RemoteWaker.
    group.bench_function("wake_round_trip_remote_waker_baseline", remote_wake::round_trip);
    group.finish();
}

criterion_group!(benches, same_thread, cross_thread);
criterion_main!(benches);
