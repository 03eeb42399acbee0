//! Crash isolation with `verdant::processpool`: a "parser" that aborts the whole process
//! on some inputs runs in worker processes, so the program only sees an error for those
//! inputs and goes on, while a greenlet keeps ticking on the main hub.
//!
//! ```text
//! cargo run --release --example processpool_isolation
//! ```

use std::time::{Duration, Instant};

use verdant::processpool::{ProcessPool, TaskError};

/// Pretend native parsing code: on input that contains `!` it brings the process down
/// the way a bug in a C library would.
fn fragile_parse(input: String) -> usize {
    if input.contains('!') {
        std::process::abort();
    }
    std::thread::sleep(Duration::from_millis(20)); // some real work
    input.split_whitespace().count()
}

fn main() {
    verdant::processpool::worker_main(); // worker processes leave main here

    let pool = ProcessPool::new(Some(2)).expect("start the worker processes");
    println!("worker processes: {:?}", pool.pids());
    let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let ticker = verdant::spawn({
        let ticks = ticks.clone();
        move || loop {
            verdant::sleep(Duration::from_millis(1));
            ticks.set(ticks.get() + 1);
        }
    });

    let inputs = ["a b c", "one two", "boom!", "x y z w", "also bad!", "fine"];
    let started = Instant::now();
    let results: Vec<_> =
        inputs.iter().map(|s| pool.apply_async(fragile_parse, s.to_string())).collect();
    for (input, result) in inputs.iter().zip(&results) {
        match result.get(None) {
            Ok(words) => println!("{input:>10?} -> {words} words"),
            Err(verdant::processpool::GetError::Failed(TaskError::WorkerDied(how))) => {
                println!("{input:>10?} -> crashed its worker ({how}); the pool replaced it")
            }
            Err(other) => println!("{input:>10?} -> {other}"),
        }
    }
    ticker.kill();
    println!(
        "done in {:?}; the main hub ticked {} times meanwhile; workers now: {:?}",
        started.elapsed(),
        ticks.get(),
        pool.pids()
    );
}
