//! Criterion benches of `verdant::sync::shared`: items through a shared channel between two
//! hubs (and between two plain threads), against std's `mpsc::sync_channel` between two
//! threads, the baseline a thread-per-core program would use.
//!
//! Each hub is a `std::thread` running hub code. A figure is the time per item (or per
//! round trip) for the whole transfer, thread start-up excluded: both sides wait on a
//! `Barrier` before the clock starts. On a 2-core machine the two sides get a core each
//! only if nothing else runs.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use verdant::sync::shared::channel;
use verdant::{WaitFor, joinall, spawn};

const CAPACITY: usize = 1024;

/// Runs `produce` and `consume` on two threads started together; returns the time from
/// the start until both are done.
fn timed_pair(
    produce: impl FnOnce() + Send + 'static,
    consume: impl FnOnce() + Send + 'static,
) -> Duration {
    let start = Arc::new(Barrier::new(3));
    let (s1, s2) = (start.clone(), start.clone());
    let producer = thread::spawn(move || {
        s1.wait();
        produce();
    });
    let consumer = thread::spawn(move || {
        s2.wait();
        consume();
    });
    start.wait();
    let t = Instant::now();
    producer.join().unwrap();
    consumer.join().unwrap();
    t.elapsed()
}

/// `f` run as a greenlet of the calling thread's hub (made on first use).
fn on_hub(f: impl FnOnce() + 'static) -> impl FnOnce() {
    move || spawn(f).join()
}

/// `greenlets` greenlets on one hub each sending `items / greenlets` items, to `greenlets`
/// greenlets on another hub receiving until the channel disconnects.
fn hub_to_hub(items: u64, greenlets: u64) -> Duration {
    let (tx, rx) = channel::bounded::<u64>(CAPACITY);
    timed_pair(
        move || {
            let senders: Vec<_> = (0..greenlets)
                .map(|_| {
                    let tx = tx.clone();
                    spawn(move || (0..items / greenlets).for_each(|i| tx.send(i).unwrap()))
                })
                .collect();
            drop(tx);
            joinall(&senders, WaitFor::all());
        },
        move || {
            let receivers: Vec<_> = (0..greenlets)
                .map(|_| {
                    let rx = rx.clone();
                    spawn(move || {
                        rx.iter().for_each(|i| {
                            std::hint::black_box(i);
                        })
                    })
                })
                .collect();
            drop(rx);
            joinall(&receivers, WaitFor::all());
        },
    )
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_way_item");
    group.bench_function("shared_channel/hub_to_hub", |b| {
        b.iter_custom(|iters| hub_to_hub(iters, 1))
    });
    group.bench_function("shared_channel/hub_to_hub_8_greenlets_each_side", |b| {
        b.iter_custom(|iters| {
            let items = iters.div_ceil(8) * 8; // a whole number per greenlet
            hub_to_hub(items, 8).mul_f64(iters as f64 / items as f64)
        })
    });
    group.bench_function("shared_channel/thread_to_thread", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = channel::bounded::<u64>(CAPACITY);
            timed_pair(
                move || (0..iters).for_each(|i| tx.send(i).unwrap()),
                move || {
                    rx.iter().for_each(|i| {
                        std::hint::black_box(i);
                    })
                },
            )
        })
    });
    group.bench_function("std_mpsc_sync_channel/thread_to_thread", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = mpsc::sync_channel::<u64>(CAPACITY);
            timed_pair(
                move || (0..iters).for_each(|i| tx.send(i).unwrap()),
                move || {
                    rx.iter().for_each(|i| {
                        std::hint::black_box(i);
                    })
                },
            )
        })
    });
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.bench_function("shared_channel/hub_to_hub", |b| {
        b.iter_custom(|iters| {
            let (to_echo, echo_in) = channel::bounded::<u64>(1);
            let (echo_out, back) = channel::bounded::<u64>(1);
            timed_pair(
                on_hub(move || {
                    for i in 0..iters {
                        to_echo.send(i).unwrap();
                        back.recv().unwrap();
                    }
                }),
                on_hub(move || echo_in.iter().for_each(|i| echo_out.send(i).unwrap())),
            )
        })
    });
    group.bench_function("std_mpsc_sync_channel/thread_to_thread", |b| {
        b.iter_custom(|iters| {
            let (to_echo, echo_in) = mpsc::sync_channel::<u64>(1);
            let (echo_out, back) = mpsc::sync_channel::<u64>(1);
            timed_pair(
                move || {
                    for i in 0..iters {
                        to_echo.send(i).unwrap();
                        back.recv().unwrap();
                    }
                },
                move || echo_in.iter().for_each(|i| echo_out.send(i).unwrap()),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = throughput, round_trip
}
criterion_main!(benches);
