//! Criterion benches of `verdant::pool`: spawning into a pool, and imap.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use verdant::pool::Pool;
use verdant::yield_now;

fn spawn_into_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_spawn");
    for size in [1usize, 100] {
        group.throughput(Throughput::Elements(1000));
        group.bench_with_input(BenchmarkId::new("1000_tasks", size), &size, |b, &size| {
            let pool = Pool::new(size);
            b.iter(|| {
                for i in 0..1000u32 {
                    pool.spawn(move || i);
                }
                pool.join();
            })
        });
    }
    group.finish();
}

fn imap(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_imap");
    group.throughput(Throughput::Elements(10_000));
    let pool = Pool::new(100);
    group.bench_function("ordered_10k_with_a_yield", |b| {
        b.iter(|| {
            pool.imap(
                |x: u64| {
                    yield_now();
                    x * 2
                },
                0..10_000,
            )
            .count()
        })
    });
    group.bench_function("unordered_10k_with_a_yield", |b| {
        b.iter(|| {
            pool.imap_unordered(
                |x: u64| {
                    yield_now();
                    x * 2
                },
                0..10_000,
            )
            .count()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = spawn_into_pool, imap
}
criterion_main!(benches);
