//! The verdant demo: a handful of greenlets on one thread, sleeping, talking, failing
//! and being killed, with the hub's own counters at the end.
//!
//! Run it with `cargo run --release --example hello`.

use std::time::{Duration, Instant};

use verdant::{hub, sleep, spawn, with_timeout};

fn main() {
    let started = Instant::now();
    println!("main: spawning 5 greenlets that each sleep 100 ms");
    let sleepers: Vec<_> = (1..=5)
        .map(|n| {
            spawn(move || {
                sleep(Duration::from_millis(100));
                println!("  greenlet #{n} woke after {:?}", started.elapsed());
                n * 10
            })
        })
        .collect();
    let total: u32 = sleepers.iter().map(|g| g.get().unwrap()).sum();
    println!("main: all five slept at the same time: total {total} after {:?}", started.elapsed());

    let crasher = spawn(|| -> u32 { panic!("this greenlet fails on purpose") });
    println!("main: a panicking greenlet reports: {}", crasher.get().unwrap_err());

    let endless = spawn(|| {
        loop {
            sleep(Duration::from_millis(10));
        }
    });
    sleep(Duration::from_millis(30));
    endless.kill();
    println!("main: a looping greenlet was killed: {}", endless.get().unwrap_err());

    let slow = with_timeout(Duration::from_millis(50), || sleep(Duration::from_secs(60)));
    println!("main: with_timeout around a 60 s sleep: {slow:?}");

    let many = 100_000;
    let t = Instant::now();
    let greenlets: Vec<_> = (0..many).map(|i| spawn(move || i as u64)).collect();
    let sum: u64 = greenlets.iter().map(|g| g.get().unwrap()).sum();
    println!("main: spawned and joined {many} greenlets in {:?} (sum {sum})", t.elapsed());

    let stats = hub::stats();
    println!(
        "hub: {} greenlets spawned, {} switches, {} loop turns, {} timers fired, {} stacks kept for reuse",
        stats.spawned, stats.switches, stats.turns, stats.timers_fired, stats.stacks_free
    );
}
