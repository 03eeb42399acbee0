//! Criterion benches of the hub's basic operations, for day-to-day work.
//!
//! The `workloads` example measures the same operations the way WORKLOADS.md defines them
//! for comparison with other runtimes; these benches are for spotting regressions. Stack
//! allocation is excluded: stacks come from the hub's free list after the first iteration.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "support/remote_wake.rs"]
mod remote_wake;

use criterion::{Criterion, criterion_group, criterion_main};
use verdant::hub::{self, StackMode};
use verdant::{spawn, with_timeout, yield_now};

/// Two greenlets yield to each other `iters` times each; returns the time per switch.
fn ping_pong(iters: u64) -> Duration {
    let ping = || {
        spawn(move || {
            for _ in 0..iters {
                yield_now();
            }
        })
    };
    let (a, b) = (ping(), ping());
    let t = Instant::now();
    a.join();
    b.join();
    t.elapsed() / 2
}

fn switch(c: &mut Criterion) {
    let mut group = c.benchmark_group("switch");
    group.bench_function("guarded", |b| b.iter_custom(ping_pong));
    group.bench_function("shared_one_stack", |b| {
        hub::configure(|c| {
            c.stack_mode = StackMode::Shared;
            c.shared_stacks = 1; // both greenlets on one stack: a copy out and in per switch
        })
        .unwrap();
        b.iter_custom(ping_pong);
        hub::configure(|c| c.stack_mode = StackMode::Guarded).unwrap();
    });
    group.finish();
}

fn spawn_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_join");
    group.bench_function("one", |b| b.iter(|| spawn(|| black_box(7u64)).get().unwrap()));
    group.bench_function("batch_of_1000", |b| {
        b.iter(|| {
            let gs: Vec<_> = (0..1000u64).map(|i| spawn(move || i)).collect();
            gs.iter().map(|g| g.get().unwrap()).sum::<u64>()
        })
    });
    group.finish();
}

fn timers(c: &mut Criterion) {
    let mut group = c.benchmark_group("timers");
    group.bench_function("with_timeout_not_expiring", |b| {
        b.iter(|| with_timeout(Duration::from_secs(60), || black_box(1)).unwrap())
    });
    group.finish();
}

fn cross_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_thread");
    // A plain thread wakes the parked main code: eventfd write, epoll wake, drain.
    group.bench_function("remote_wake_round_trip", remote_wake::round_trip);
    group.finish();
}

criterion_group!(benches, switch, spawn_join, timers, cross_thread);
criterion_main!(benches);
