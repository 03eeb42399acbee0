//! Greenlets keep serving while a `ThreadPool` does CPU-heavy work.
//!
//! Fifty "request handler" greenlets each answer a request every millisecond. Meanwhile
//! the main code hashes 128 MiB: first on the hub's own thread (the handlers stall: no
//! greenlet runs while the CPU is busy), then through a `ThreadPool` (the handlers keep
//! going). The program prints how many requests were answered during each.
//!
//! ```text
//! cargo run --release --example threadpool_hashing
//! ```

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant::threadpool::ThreadPool;
use verdant::{sleep, spawn};

const CHUNKS: usize = 32;
const CHUNK_BYTES: usize = 4 << 20; // 32 × 4 MiB = 128 MiB

/// FNV-1a over a chunk of pseudo-random bytes (generated on the fly: no big allocation).
fn hash_chunk(seed: u64) -> u64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for _ in 0..CHUNK_BYTES / 8 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for byte in state.to_le_bytes() {
            hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn main() {
    let answered = Rc::new(Cell::new(0u64));
    let handlers: Vec<_> = (0..50)
        .map(|_| {
            let answered = answered.clone();
            spawn(move || {
                loop {
                    sleep(Duration::from_millis(1)); // wait for the next request
                    answered.set(answered.get() + 1);
                }
            })
        })
        .collect();
    sleep(Duration::from_millis(20)); // let them get going

    let before = answered.get();
    let t = Instant::now();
    let inline: u64 = (0..CHUNKS as u64).map(hash_chunk).fold(0, |a, h| a ^ h);
    let inline_time = t.elapsed();
    let during_inline = answered.get() - before; // read before any greenlet could run
    println!(
        "hashing 128 MiB on the hub thread took {inline_time:?}: {during_inline} requests answered \
         meanwhile (every greenlet was stalled)"
    );

    let pool = ThreadPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let before = answered.get();
    let t = Instant::now();
    let pooled = pool
        .map(hash_chunk, 0..CHUNKS as u64)
        .expect("hashing failed")
        .into_iter()
        .fold(0, |a, h| a ^ h);
    let pooled_time = t.elapsed();
    let during_pool = answered.get() - before;
    assert_eq!(inline, pooled, "same digest either way");
    println!(
        "hashing 128 MiB on {} worker threads took {pooled_time:?}: {during_pool} requests \
         answered meanwhile ({:.1} per ms)",
        pool.maxsize(),
        during_pool as f64 / pooled_time.as_secs_f64() / 1000.0
    );
    println!("digest {pooled:016x}");
    verdant::killall(&handlers);
}
