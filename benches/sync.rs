//! Criterion benches of `verdant::sync`: event set/wait, lock hand-off, queue ping-pong.
//!
//! Each measures a round trip between two greenlets, so every figure includes two
//! switches (about 13 ns each, see the `hub` benches).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use verdant::spawn;
use verdant::sync::{Event, Lock, Queue};

fn event_set_wait(c: &mut Criterion) {
    c.bench_function("event/set_then_wait_round_trip", |b| {
        b.iter_custom(|iters| {
            // Two events bounced back and forth: each side waits for its own, sets the other.
            let (ping, pong) = (Event::new(), Event::new());
            let (pi, po) = (ping.clone(), pong.clone());
            let echo = spawn(move || {
                for _ in 0..iters {
                    pi.wait();
                    pi.clear();
                    po.set();
                }
            });
            let t = Instant::now();
            for _ in 0..iters {
                ping.set();
                pong.wait();
                pong.clear();
            }
            let elapsed = t.elapsed();
            echo.join();
            elapsed
        })
    });
}

fn lock_hand_off(c: &mut Criterion) {
    c.bench_function("lock/hand_off_between_two_greenlets", |b| {
        b.iter_custom(|iters| {
            let lock = Lock::new();
            let contender = |lock: Lock| {
                spawn(move || {
                    for _ in 0..iters {
                        let _g = lock.acquire();
                        verdant::yield_now(); // hold it across a switch so the other waits
                    }
                })
            };
            let (a, b) = (contender(lock.clone()), contender(lock.clone()));
            let t = Instant::now();
            a.join();
            b.join();
            t.elapsed() / 2
        })
    });
}

fn queue_ping_pong(c: &mut Criterion) {
    c.bench_function("queue/capacity_1_message", |b| {
        b.iter_custom(|iters| {
            let q = Queue::bounded(1);
            let p = q.clone();
            let producer = spawn(move || {
                for i in 0..iters {
                    p.put(i).unwrap();
                }
            });
            let t = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(q.get().unwrap());
            }
            let elapsed = t.elapsed();
            producer.join();
            elapsed
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = event_set_wait, lock_hand_off, queue_ping_pong
}
criterion_main!(benches);
