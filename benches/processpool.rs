//! Criterion benches of `verdant::processpool`: `map` over 100,000 small items with
//! chunksize 1 and 1,000, and the round trip of one `apply`, on 2 worker processes.
//! `benches/multiprocessing_pool.py` measures the same work with Python's
//! `multiprocessing.Pool` for comparison.
//!
//! The bench has its own `main`: worker processes re-execute this binary and must leave
//! through `worker_main()` first.

use std::time::Duration;

use criterion::Criterion;
use verdant::processpool::ProcessPool;

fn double(x: u64) -> u64 {
    x * 2
}

fn map_100k(c: &mut Criterion) {
    let pool = ProcessPool::new(Some(2)).unwrap();
    let mut group = c.benchmark_group("processpool");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for chunksize in [1, 1000] {
        group.bench_function(format!("map_100k_items_chunksize_{chunksize}"), |b| {
            b.iter(|| {
                let doubled = pool.map(double, 0..100_000u64, Some(chunksize)).unwrap();
                assert_eq!(doubled.len(), 100_000);
            })
        });
    }
    group.finish();
}

fn apply_round_trip(c: &mut Criterion) {
    let pool = ProcessPool::new(Some(2)).unwrap();
    c.bench_function("processpool/apply_round_trip", |b| {
        b.iter(|| pool.apply(double, 21).unwrap())
    });
}

fn main() {
    verdant::processpool::worker_main();
    let mut criterion = Criterion::default().configure_from_args();
    map_100k(&mut criterion);
    apply_round_trip(&mut criterion);
    criterion.final_summary();
}
