//! Criterion benches of `verdant::threadpool`: one round trip from a greenlet, and the
//! throughput of 1,000 greenlets submitting tasks at the same time.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use verdant::spawn;
use verdant::threadpool::ThreadPool;

fn round_trip(c: &mut Criterion) {
    let pool = ThreadPool::new(1);
    pool.apply(|| ()); // start the worker
    c.bench_function("threadpool/round_trip_from_a_greenlet", |b| {
        b.iter_custom(|iters| {
            let pool = pool.clone();
            spawn(move || {
                let t = Instant::now();
                let mut x = 0u64;
                for _ in 0..iters {
                    x = pool.apply(move || x + 1);
                }
                t.elapsed()
            })
            .get()
            .unwrap()
        })
    });
}

fn many_greenlets(c: &mut Criterion) {
    let mut group = c.benchmark_group("threadpool");
    group.throughput(Throughput::Elements(10_000));
    let pool = ThreadPool::new(2);
    group.bench_function("1000_greenlets_x_10_tasks", |b| {
        b.iter(|| {
            let gs: Vec<_> = (0..1000u64)
                .map(|g| {
                    let pool = pool.clone();
                    spawn(move || (0..10u64).map(|i| pool.apply(move || g ^ i)).sum::<u64>())
                })
                .collect();
            gs.iter().map(|g| g.get().unwrap()).sum::<u64>()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = round_trip, many_greenlets
}
criterion_main!(benches);
